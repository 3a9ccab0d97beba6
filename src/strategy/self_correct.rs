//! Self-correction: attempt, self-check, revise, up to R rounds, as one continuing conversation.
//!
//! The default prompts follow the two-attempt protocol of SCoRe ("Training Language Models to
//! Self-Correct via Reinforcement Learning"): a step-by-step first attempt ending in a fixed
//! final-answer sentence, then a user turn asking to find and correct an error, if any, and
//! rewrite the solution. Each revision request is appended to the live branch, so only the new
//! tokens are decoded: the conversation so far is never prefilled again.

use serde::{Deserialize, Serialize};

use super::{
    from_root, limits, Candidate, EntryKind, Observer, Outcome, Problem, PromptConfig, Strategy,
    TimelineEntry,
};
use crate::error::{ConfigError, Error};
use crate::lm::{user_turn_tokens, GenRequest, Lm, Node, SamplingParams};
use crate::reward::judge::{Judge, JudgeConfig, Verdict};

/// Which attempt the outcome keeps when the judge never accepts one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The last attempt.
    #[default]
    Last,
    /// The attempt the self-judge scored highest (ties: the later one).
    BestJudged,
}

/// Configuration of this strategy (the module's [`Strategy`] implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfCorrectConfig {
    /// Revision rounds after the first attempt, at least 1 (1 = SCoRe's two attempts).
    pub rounds: u32,
    /// New tokens per attempt, at most.
    pub max_tokens: u32,
    /// Sampling for every attempt (greedy by default, as in SCoRe's evaluation).
    pub sampling: SamplingParams,
    /// The first turn.
    pub prompt: PromptConfig,
    /// The user turn asking for a revision.
    pub revision_prompt: String,
    /// Stop before revising when the self-judge scores the current attempt at least this high;
    /// `null` never stops early (and skips the judge unless `keep` needs it).
    pub accept_threshold: Option<f64>,
    /// Which attempt to keep when none is accepted.
    pub keep: Keep,
    /// The self-judge.
    pub judge: JudgeConfig,
}

impl Default for SelfCorrectConfig {
    fn default() -> Self {
        Self {
            rounds: 1,
            max_tokens: 384,
            sampling: SamplingParams::greedy(),
            prompt: PromptConfig {
                system: None,
                template: "{question}\n\nSolve the problem step by step. End your solution with the sentence \"Final Answer: The final answer is X. I hope it is correct.\" where X is the final answer.".into(),
            },
            revision_prompt: "There might be an error in the solution above because of lack of understanding of the question. Please correct the error, if any, and rewrite the solution. End your solution with the sentence \"Final Answer: The final answer is X. I hope it is correct.\" where X is the final answer.".into(),
            accept_threshold: Some(0.9),
            keep: Keep::Last,
            judge: JudgeConfig::default(),
        }
    }
}

impl SelfCorrectConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rounds == 0 {
            return Err(ConfigError::new(
                "rounds",
                "0 revision rounds is a single attempt; use best_of_n with n=1, or rounds >= 1",
            ));
        }
        ConfigError::check_range("rounds", self.rounds, 1..=limits::MAX_ROUNDS, "rounds")?;
        limits::check_max_tokens("max_tokens", self.max_tokens)?;
        if self.revision_prompt.trim().is_empty() {
            return Err(ConfigError::new(
                "revision_prompt",
                "is empty; say what the model should do with its solution",
            ));
        }
        if let Some(t) = self.accept_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(ConfigError::new(
                    "accept_threshold",
                    format!("{t} is outside [0, 1] (or null to never stop early)"),
                ));
            }
        }
        self.sampling.validate()
    }
}

sampling_strategy!(SelfCorrectConfig, "self_correct", seed: sampling.seed, votes: false);

/// Runs attempt → check → revise.
fn run(
    config: &SelfCorrectConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
) -> Result<Outcome, Error> {
    let ((candidates, timeline), frame) =
        from_root(lm, &config.prompt, problem, |lm, root, made| {
            let prompt_len = lm.node_len(root)?;
            attempts(config, lm, problem, observer, root, prompt_len, made)
        })?;
    let chosen = match config.keep {
        Keep::Last => candidates.len() - 1,
        Keep::BestJudged => candidates
            .iter()
            .enumerate()
            .max_by(|a, b| {
                let score = |c: &Candidate| c.judge.unwrap_or(0.0);
                score(a.1).total_cmp(&score(b.1)).then(a.0.cmp(&b.0))
            })
            .map_or(0, |(i, _)| i),
    };
    // An accepted attempt ends the loop, so it is the last one: `Last` keeps it.
    Ok(Outcome::pick(
        config.name(),
        problem,
        candidates,
        chosen,
        timeline,
        frame,
    ))
}

fn attempts(
    config: &SelfCorrectConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
    root: Node,
    prompt_len: usize,
    made: &mut Vec<Node>,
) -> Result<(Vec<Candidate>, Vec<TimelineEntry>), Error> {
    let needs_judge = config.accept_threshold.is_some() || config.keep == Keep::BestJudged;
    let judge = if needs_judge {
        Some(Judge::new(lm, config.judge.clone())?)
    } else {
        None
    };
    let verifier = match &judge {
        Some(j) => Some(j.prepare(lm, &problem.question, Verdict::Outcome)?),
        None => None,
    };
    if let Some(v) = &verifier {
        made.push(v.node());
    }

    let mut candidates = Vec::new();
    let mut timeline = Vec::new();
    let mut parent = root;
    for round in 0..=config.rounds {
        if round > 0 {
            let turn = user_turn_tokens(lm, parent, &config.revision_prompt)?;
            let offset = lm.node_len(parent)? - prompt_len;
            parent = lm.extend_tokens(parent, &turn)?;
            made.push(parent);
            timeline.push(TimelineEntry {
                branch: 0,
                kind: EntryKind::Revision,
                offset,
                tokens: turn.len(),
                text: config.revision_prompt.clone(),
                logprob: 0.0,
                answer: None,
                correct: None,
            });
        }
        let offset = lm.node_len(parent)? - prompt_len;
        let g = lm
            .generate(&[GenRequest::sample(
                parent,
                &config.sampling,
                round,
                config.max_tokens,
            )])?
            .remove(0);
        made.push(g.node);
        parent = g.node;
        let answer = problem.answer_of(&g.text, &g.finish);
        observer.samples(round as usize, std::slice::from_ref(&g), |_| answer.clone())?;
        let judged = match (&judge, &verifier) {
            (Some(j), Some(v)) => Some(j.score(lm, v, &[&g.text])?[0].score),
            _ => None,
        };
        let candidate = Candidate::from_generation(
            &g,
            answer,
            problem,
            judged,
            judged.unwrap_or(g.mean_logprob()),
        );
        timeline.push(TimelineEntry {
            branch: 0,
            kind: EntryKind::Generated,
            offset,
            tokens: g.tokens as usize,
            logprob: g.logprob,
            text: g.text,
            answer: candidate.answer.clone(),
            correct: candidate.correct,
        });
        candidates.push(candidate);
        if let (Some(t), Some(s)) = (config.accept_threshold, judged) {
            if s >= t {
                break;
            }
        }
    }
    Ok((candidates, timeline))
}
