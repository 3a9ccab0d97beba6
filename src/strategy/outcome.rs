//! What a strategy found: the [`Outcome`], its [`Candidate`]s with their confidence signals, and
//! the timeline of each branch.

use serde::{Deserialize, Serialize};

use crate::lm::{FinishReason, Message, Usage};
use crate::reward::confidence::ConfidenceConfig;

use super::{Frame, Problem, SearchTree};

/// One candidate a strategy considered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The candidate's text.
    pub text: String,
    /// Its extracted final answer.
    pub answer: Option<String>,
    /// Tokens generated.
    pub tokens: u32,
    /// Sum of its tokens' log-probabilities.
    pub logprob: f64,
    /// Mean log-probability per token.
    pub mean_logprob: f64,
    /// The self-judge's score, if it was judged.
    pub judge: Option<f64>,
    /// The score the strategy ranked it by.
    pub score: f64,
    /// Why its generation ended.
    pub finish: FinishReason,
    /// Whether its answer matches the reference, when one was given.
    pub correct: Option<bool>,
    /// Its token-confidence signals (sampled candidates of best-of-N and DeepConf; `None` where
    /// the strategy builds candidates from tree paths or does not track confidences).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<ConfidenceSignals>,
}

/// The token-level signals of one candidate: DeepConf's confidences
/// ([`crate::reward::confidence`]) and the verifier-free certainty signals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceSignals {
    /// Mean confidence of the whole trace.
    pub mean: f64,
    /// Mean confidence of its last [`ConfidenceConfig::tail`] tokens.
    pub tail: f64,
    /// Lowest mean confidence over windows of [`ConfidenceConfig::window`] tokens.
    pub lowest_group: f64,
    /// Self-certainty of the trace (Kang et al., 2025): the mean over its tokens of
    /// [`crate::lm::Generation::certainty`] (high = sure). `None` where the backend gives no
    /// full distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_certainty: Option<f64>,
    /// Mean entropy of its last [`ConfidenceConfig::tail`] tokens
    /// ([`crate::lm::Generation::entropy`]; low = sure). `None` as `self_certainty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_entropy: Option<f64>,
}

impl ConfidenceSignals {
    /// The signals of one generation (`None` when it carries no token confidences).
    pub fn of(g: &crate::lm::Generation, config: &ConfidenceConfig) -> Option<Self> {
        use crate::reward::confidence::{self as conf, ConfidenceSignal as S};
        let confidence = &g.confidence;
        (!confidence.is_empty()).then(|| Self {
            mean: config.score_with(S::Mean, confidence),
            tail: config.score_with(S::Tail, confidence),
            lowest_group: config.score_with(S::LowestGroup, confidence),
            self_certainty: (!g.certainty.is_empty()).then(|| conf::mean(&g.certainty)),
            tail_entropy: (!g.entropy.is_empty())
                .then(|| conf::tail(&g.entropy, config.tail as usize)),
        })
    }
}

/// What a strategy found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The problem's id.
    pub id: Option<String>,
    /// The strategy's name.
    pub strategy: String,
    /// The chosen final answer.
    pub answer: Option<String>,
    /// The chosen candidate's text.
    pub text: String,
    /// The chosen candidate's score.
    pub score: f64,
    /// Index of the chosen candidate in `candidates`.
    pub chosen: usize,
    /// Whether the chosen answer matches the reference, when one was given.
    pub correct: Option<bool>,
    /// Every candidate, in generation order.
    pub candidates: Vec<Candidate>,
    /// What happened along each branch, in order: attempts, revision requests, triggers (empty
    /// for strategies that only sample).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
    /// The work this solve took.
    pub usage: Usage,
    /// The conversation the search was rooted on, as sent to the model (its chat template
    /// renders it); empty in outcomes written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt: Vec<Message>,
    /// Tree searches (`mcts`, `beam`): the whole search tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Box<SearchTree>>,
    /// R3 (DRO) of every candidate against the reference, when asked for (best-of-N's `r3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r3: Option<crate::reward::r3::R3Scores>,
}

impl Outcome {
    /// The outcome that picks `candidates[chosen]`.
    pub(crate) fn pick(
        strategy: &str,
        problem: &Problem,
        candidates: Vec<Candidate>,
        chosen: usize,
        timeline: Vec<TimelineEntry>,
        frame: Frame,
    ) -> Self {
        let pick = &candidates[chosen];
        Self {
            id: problem.id.clone(),
            strategy: strategy.into(),
            answer: pick.answer.clone(),
            text: pick.text.clone(),
            score: pick.score,
            chosen,
            correct: problem.check(pick.answer.as_deref()),
            usage: frame.usage,
            prompt: frame.prompt,
            candidates,
            timeline,
            tree: None,
            r3: None,
        }
    }
}

impl Candidate {
    /// A sampled candidate with its extracted answer, labelled against `problem`'s reference.
    pub(crate) fn from_generation(
        g: &crate::lm::Generation,
        answer: Option<String>,
        problem: &Problem,
        judge: Option<f64>,
        score: f64,
    ) -> Self {
        Self {
            correct: problem.check(answer.as_deref()),
            answer,
            text: g.text.clone(),
            tokens: g.tokens,
            logprob: g.logprob,
            mean_logprob: g.mean_logprob(),
            judge,
            score,
            finish: g.finish.clone(),
            confidence: ConfidenceSignals::of(g, &ConfidenceConfig::default()),
        }
    }
}

/// What a timeline entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Text the model generated.
    Generated,
    /// A revision request appended as a new user turn (self-correction).
    Revision,
    /// A reflection trigger injected into the model's own turn (iterative deepening).
    Trigger,
}

/// One span of a branch: generated text or injected text, with its token offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Which branch (candidate index for `self_correct`'s attempts: always 0).
    pub branch: usize,
    /// What the span is.
    pub kind: EntryKind,
    /// Tokens of this branch after the prompt before this span starts.
    pub offset: usize,
    /// The span's length in tokens.
    pub tokens: usize,
    /// The span's text.
    pub text: String,
    /// For generated spans: the sum of its tokens' log-probabilities (0 for injected spans and in
    /// outcomes written before it was recorded).
    #[serde(default)]
    pub logprob: f64,
    /// For generated spans: the answer extracted from the branch's text so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// For generated spans with a reference: whether that answer is right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
}
