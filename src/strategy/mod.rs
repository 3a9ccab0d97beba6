//! Search strategies: each one file, one config struct, one variant of [`StrategyConfig`].
//!
//! A strategy takes an [`Lm`] and a [`Problem`] and returns an [`Outcome`]: the chosen answer and
//! text, its score, every candidate it considered with their scores, and the work it took.

/// The parts of a [`Strategy`] impl that only name things: `name`, `prompt`, `seed` (the path of
/// the sampling seed's field) and `validate` (the config's own inherent `validate`).
macro_rules! strategy_fields {
    ($name:literal, seed: $($seed:ident).+) => {
        fn name(&self) -> &'static str {
            $name
        }

        fn prompt(&self) -> &$crate::strategy::PromptConfig {
            &self.prompt
        }

        fn seed(&self) -> u64 {
            self.$($seed).+
        }

        fn validate(&self) -> Result<(), $crate::error::ConfigError> {
            Self::validate(self)
        }
    };
}

/// [`Strategy::search`] for a sampling strategy: its `run(config, lm, problem, observer)`,
/// which reports each sample as it is drawn.
macro_rules! search_by {
    ($run:path) => {
        fn search(
            &self,
            lm: &mut dyn $crate::lm::Lm,
            problem: &$crate::strategy::Problem,
            observer: &mut $crate::strategy::Observer<'_>,
        ) -> Result<$crate::strategy::Outcome, $crate::error::Error> {
            $run(self, lm, problem, observer)
        }
    };
}

pub mod adaptive;
pub mod beam;
pub mod best_of_n;
pub mod deepconf;
pub mod deepening;
pub mod mcts;
pub mod self_correct;
pub mod tree;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error};
use crate::lm::{FinishReason, Lm, Message, Node, Usage};
use crate::reward::answer;
use crate::reward::confidence::ConfidenceConfig;

pub use adaptive::AdaptiveConfig;
pub use beam::{BeamAnswer, BeamConfig};
pub use best_of_n::{BestOfNConfig, Rerank};
pub use deepconf::DeepConfConfig;
pub use deepening::DeepeningConfig;
pub use mcts::{AnswerBy, Backup, MctsConfig, RolloutConfig, Selection, Widen};
pub use self_correct::{Keep, SelfCorrectConfig};
pub use tree::{Budget, Limit, SearchTree, StepConfig, StopReason, TreeNode, ValueSignal};

/// A problem to solve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// An identifier carried into outcomes and traces.
    #[serde(default)]
    pub id: Option<String>,
    /// The question, as the user wrote it.
    pub question: String,
    /// The reference answer, if known. It labels candidates (`correct`); it never steers the
    /// search.
    #[serde(default)]
    pub answer: Option<String>,
    /// Let the reference answer steer the search (off by default): tree searches value a
    /// finished solution 1 when right and 0 when wrong instead of the judge's score, and best-of-N
    /// picks a right candidate when there is one. For data synthesis (`--oracle-guided`);
    /// self-correction and deepening ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oracle_guided: bool,
    /// What kind of answer the problem has: a number (the default) or free text.
    #[serde(default, skip_serializing_if = "AnswerKind::is_numeric")]
    pub answer_kind: AnswerKind,
}

/// What kind of answer a problem has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// A number (or a short expression): extracted from `\boxed{}`, `####`, "The answer is" or
    /// the last number, compared numerically.
    #[default]
    Numeric,
    /// Free text (a rewritten sentence, a phrase): the text after the last answer marker
    /// ("Answer:", "The answer is"), compared after lower-casing and trimming spaces and
    /// punctuation. Never a number pulled out of the text; votes are not available.
    Text,
}

impl AnswerKind {
    /// Whether this is [`AnswerKind::Numeric`].
    pub fn is_numeric(&self) -> bool {
        *self == Self::Numeric
    }

    /// Parses `numeric` or `text`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the two kinds.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        match name {
            "numeric" => Ok(Self::Numeric),
            "text" => Ok(Self::Text),
            other => Err(ConfigError::new(
                "answer_kind",
                format!("unknown answer kind {other:?}; use numeric or text"),
            )),
        }
    }
}

impl Problem {
    /// A problem without id or reference answer.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            id: None,
            question: question.into(),
            answer: None,
            oracle_guided: false,
            answer_kind: AnswerKind::Numeric,
        }
    }

    /// This problem with a reference answer.
    pub fn with_answer(self, answer: impl Into<String>) -> Self {
        Self {
            answer: Some(answer.into()),
            ..self
        }
    }

    /// Checks that there is a question.
    ///
    /// # Errors
    /// [`ConfigError`] for an empty or blank question.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.question.trim().is_empty() {
            return Err(ConfigError::new(
                "question",
                "it is empty; give the model something to solve",
            ));
        }
        Ok(())
    }

    /// Whether `answer` matches the reference (`None` without a reference or without an answer).
    /// Text answers match when equal after lower-casing and trimming spaces and punctuation.
    pub fn check(&self, answer: Option<&str>) -> Option<bool> {
        let reference = self.answer.as_deref()?;
        Some(answer.is_some_and(|a| match self.answer_kind {
            AnswerKind::Numeric => answer::equivalent(a, reference),
            AnswerKind::Text => answer::text_equivalent(a, reference),
        }))
    }

    /// The final answer of `solution` for this problem's kind of answer: [`answer::extract`]
    /// for numbers, [`answer::extract_text`] for text.
    pub fn extract(&self, solution: &str) -> Option<String> {
        match self.answer_kind {
            AnswerKind::Numeric => answer::extract(solution),
            AnswerKind::Text => answer::extract_text(solution),
        }
    }

    /// The final answer of a generated `solution` that ended with `finish`: as
    /// [`Problem::extract`], but a cut-off solution ([`FinishReason::is_cut_off`]) has only the
    /// answer it stated with an explicit marker ([`Problem::explicit`]), never the last number of
    /// its unfinished working.
    pub fn answer_of(&self, solution: &str, finish: &FinishReason) -> Option<String> {
        if finish.is_cut_off() {
            self.explicit(solution)
        } else {
            self.extract(solution)
        }
    }

    /// The answer `solution` states with an explicit marker: [`answer::explicit`] for numbers,
    /// [`answer::extract_text`] (which needs a marker) for text.
    pub fn explicit(&self, solution: &str) -> Option<String> {
        match self.answer_kind {
            AnswerKind::Numeric => answer::explicit(solution),
            AnswerKind::Text => answer::extract_text(solution),
        }
    }
}

/// How the solver is asked: an optional system message and a user-message template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptConfig {
    /// An optional system message.
    pub system: Option<String>,
    /// The user message; `{question}` is replaced by the question.
    pub template: String,
}

impl Default for PromptConfig {
    fn default() -> Self {
        Self {
            system: None,
            template: "{question}\n\nSolve the problem step by step, then finish with the sentence \"The answer is\" followed by the final number.".into(),
        }
    }
}

impl PromptConfig {
    /// The messages for `question`.
    pub fn messages(&self, question: &str) -> Vec<Message> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(self.template.replace("{question}", question)));
        messages
    }
}

/// The documented range of every count and budget of the strategies (the README's table lists
/// them with their fields). A configuration outside them is refused with a [`ConfigError`] before
/// any work, so that no setting can make a solve run practically forever.
pub mod limits {
    /// Tokens one generation may ask for (`max_tokens`, `step.max_tokens`, `l0`, …): 1..=this.
    /// The context window bounds a generation further.
    pub const MAX_TOKENS: u32 = 131_072;
    /// Samples or branches started at once (`n`, deepening's `width`): 1..=this.
    pub const MAX_SAMPLES: u32 = 256;
    /// Children of one expansion and beam sizes (`k`, `width`, `expansions`): 1..=this.
    pub const MAX_CHILDREN: u32 = 64;
    /// Revision rounds of self-correction: 1..=this.
    pub const MAX_ROUNDS: u32 = 16;
    /// Steps of one path of a tree search (`step.max_depth`): 1..=this.
    pub const MAX_DEPTH: u32 = 1024;
    /// Re-samplings of a step that was too short (`step.retries`): 0..=this.
    pub const MAX_RETRIES: u32 = 16;
    /// `step.min_chars`: 0..=this.
    pub const MAX_MIN_CHARS: u32 = 100_000;
    /// Tokens a whole search may generate (`budget.tokens`, deepening's `total_budget`):
    /// 1..=this.
    pub const MAX_BUDGET_TOKENS: u64 = 10_000_000;
    /// `budget.forward_passes`: 1..=this.
    pub const MAX_FORWARD_PASSES: u64 = 100_000_000;
    /// `budget.wall_ms`: 1..=this (one day).
    pub const MAX_WALL_MS: u64 = 86_400_000;
    /// `budget.iterations`: 1..=this.
    pub const MAX_ITERATIONS: u32 = 100_000;
    /// Deepening's `gamma`: 1..=this.
    pub const MAX_GAMMA: f64 = 16.0;

    /// Checks a per-generation token count `field` against 1..=[`MAX_TOKENS`].
    pub(crate) fn check_max_tokens(
        field: &'static str,
        value: u32,
    ) -> Result<(), crate::error::ConfigError> {
        if value == 0 {
            return Err(crate::error::ConfigError::new(
                field,
                "0 would generate nothing; ask for at least 1 token",
            ));
        }
        crate::error::ConfigError::check_range(field, value, 1..=MAX_TOKENS, "tokens")
    }
}

/// Every strategy's configuration, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StrategyConfig {
    /// See [`best_of_n`].
    BestOfN(BestOfNConfig),
    /// See [`self_correct`].
    SelfCorrect(SelfCorrectConfig),
    /// See [`deepening`].
    Deepening(DeepeningConfig),
    /// See [`mcts`].
    Mcts(MctsConfig),
    /// See [`beam`].
    Beam(BeamConfig),
    /// See [`deepconf`].
    #[serde(rename = "deepconf")]
    DeepConf(DeepConfConfig),
    /// See [`adaptive`].
    Adaptive(AdaptiveConfig),
}

/// A search strategy, implemented by each strategy's configuration. [`StrategyConfig`] holds one
/// of them and delegates to it through [`StrategyConfig::strategy`], so a new strategy is its
/// own file (its config implementing this trait) plus one variant and its arm there.
pub trait Strategy {
    /// The strategy's name, as `"type"` spells it.
    fn name(&self) -> &'static str;

    /// How the strategy asks the model.
    fn prompt(&self) -> &PromptConfig;

    /// The base seed of the strategy's sampling.
    fn seed(&self) -> u64;

    /// Whether the strategy picks its answer by a vote over extracted answers (see
    /// [`StrategyConfig::votes`]).
    fn votes(&self) -> bool;

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Searches for the answer to `problem` (already validated, as is `self`), reporting to
    /// `observer`. [`StrategyConfig::run_observed`] wraps it: validation before, the candidate
    /// and done events after.
    ///
    /// # Errors
    /// Model errors; cancellation.
    fn search(
        &self,
        lm: &mut dyn Lm,
        problem: &Problem,
        observer: &mut Observer<'_>,
    ) -> Result<Outcome, Error>;
}

/// `strategy`'s search without an observer (the strategies' unit tests).
#[cfg(test)]
pub(crate) fn search_alone(
    strategy: &dyn Strategy,
    lm: &mut dyn Lm,
    problem: &Problem,
) -> Result<Outcome, Error> {
    strategy.search(lm, problem, &mut Observer::default())
}

/// The frame that every strategy sampling from one prompt shares (best-of-N, self-correction,
/// deepening, DeepConf): the prompt's root, `search` from it (each node it makes pushed onto
/// its list), every node released afterwards, on error too, and the usage of the whole solve.
/// The tree searches get the same from [`tree::Search`].
pub(crate) fn from_root<T>(
    lm: &mut dyn Lm,
    prompt: &PromptConfig,
    problem: &Problem,
    search: impl FnOnce(&mut dyn Lm, Node, &mut Vec<Node>) -> Result<T, Error>,
) -> Result<(T, Frame), Error> {
    let before = lm.usage();
    let messages = prompt.messages(&problem.question);
    let root = lm.root(&messages)?;
    let mut made = vec![root];
    let result = search(lm, root, &mut made);
    for n in made {
        lm.release(n);
    }
    let frame = Frame {
        usage: lm.usage().since(&before),
        prompt: messages,
    };
    Ok((result?, frame))
}

/// What every search records about itself besides its candidates: the work it took and the
/// conversation it was rooted on, as sent to the model.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frame {
    pub usage: Usage,
    pub prompt: Vec<Message>,
}

impl StrategyConfig {
    /// The strategy this configuration is: every method below delegates to it.
    pub fn strategy(&self) -> &dyn Strategy {
        match self {
            Self::BestOfN(c) => c,
            Self::SelfCorrect(c) => c,
            Self::Deepening(c) => c,
            Self::Mcts(c) => c,
            Self::Beam(c) => c,
            Self::DeepConf(c) => c,
            Self::Adaptive(c) => c,
        }
    }

    /// The strategy's name, as in `"type"`.
    pub fn name(&self) -> &'static str {
        self.strategy().name()
    }

    /// How the strategy asks the model.
    pub fn prompt(&self) -> &PromptConfig {
        self.strategy().prompt()
    }

    /// The base seed of the strategy's sampling.
    pub fn seed(&self) -> u64 {
        self.strategy().seed()
    }

    /// Every strategy's name, as `"type"` spells it.
    pub const NAMES: &'static [&'static str] = &[
        "best_of_n",
        "self_correct",
        "deepening",
        "mcts",
        "beam",
        "deepconf",
        "adaptive",
    ];

    /// The default configuration of the strategy called `name` (`best_of_n` or `best-of-n`).
    ///
    /// # Errors
    /// [`ConfigError`] naming the known strategies.
    pub fn default_for(name: &str) -> Result<Self, ConfigError> {
        match name.replace('-', "_").as_str() {
            "best_of_n" => Ok(Self::BestOfN(BestOfNConfig::default())),
            "self_correct" => Ok(Self::SelfCorrect(SelfCorrectConfig::default())),
            "deepening" => Ok(Self::Deepening(DeepeningConfig::default())),
            "mcts" => Ok(Self::Mcts(MctsConfig::default())),
            "beam" => Ok(Self::Beam(BeamConfig::default())),
            "deepconf" | "deep_conf" => Ok(Self::DeepConf(DeepConfConfig::default())),
            "adaptive" => Ok(Self::Adaptive(AdaptiveConfig::default())),
            other => Err(ConfigError::new(
                "strategy",
                format!(
                    "unknown strategy {other:?}; known: {}",
                    Self::NAMES.join(", ")
                ),
            )),
        }
    }

    /// Whether the strategy picks its answer by a vote over extracted answers (best-of-N's
    /// `vote`, `weighted_vote`, `confidence_vote` and `filtered_vote`, deepening, DeepConf, MCTS
    /// and beam answering by vote). Votes need answers that can be compared, so they are not
    /// available for text answers.
    pub fn votes(&self) -> bool {
        self.strategy().votes()
    }

    /// Checks that the strategy can answer problems of `kind`: no vote over text answers.
    ///
    /// # Errors
    /// [`ConfigError`] (field `answer_kind`) saying what to use instead.
    pub fn check_answer_kind(&self, kind: AnswerKind) -> Result<(), ConfigError> {
        if kind == AnswerKind::Text && self.votes() {
            return Err(ConfigError::new(
                "answer_kind",
                format!(
                    "{} picks its answer by a vote, and free-text answers cannot be voted on; for text answers use best-of-n with --rerank judge or logprob, self-correct, or mcts/beam answering by value",
                    self.name()
                ),
            ));
        }
        Ok(())
    }

    /// Parses a configuration from JSON: either a whole `{"type": …, …}` object, or the fields of
    /// the strategy called `name` alone.
    ///
    /// # Errors
    /// [`ConfigError`] with serde's message (unknown field, wrong type, unknown variant, …).
    pub fn from_json(name: &str, json: &str) -> Result<Self, ConfigError> {
        let mut value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new("config", format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| ConfigError::new("config", "must be a JSON object"))?;
        if !obj.contains_key("type") {
            if name.is_empty() {
                return Err(ConfigError::new(
                    "strategy",
                    format!(
                        "\"type\" is missing; say which strategy, one of {} (e.g. {{\"type\": \"best_of_n\", \"n\": 8}})",
                        Self::NAMES.join(", ")
                    ),
                ));
            }
            let ty = Self::default_for(name)?.name();
            obj.insert("type".into(), serde_json::Value::String(ty.into()));
        }
        let config: Self =
            serde_json::from_value(value).map_err(|e| ConfigError::new("config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.strategy().validate()
    }

    /// Runs the strategy.
    ///
    /// # Errors
    /// Invalid problem or configuration; model errors.
    pub fn run(&self, lm: &mut dyn Lm, problem: &Problem) -> Result<Outcome, Error> {
        self.run_observed(lm, problem, &mut Observer::default())
    }

    /// Runs the strategy, reporting [`Event`]s to `observer`; the search stops as soon as the
    /// observer asks: a tree search (MCTS, beam) returns the best of what it found until then,
    /// with [`StopReason::Cancelled`]; the other strategies fail with [`Error::Cancelled`].
    ///
    /// # Errors
    /// Invalid problem or configuration; model errors; cancellation.
    pub fn run_observed(
        &self,
        lm: &mut dyn Lm,
        problem: &Problem,
        observer: &mut Observer<'_>,
    ) -> Result<Outcome, Error> {
        problem.validate()?;
        self.validate()?;
        self.check_answer_kind(problem.answer_kind)?;
        let outcome = self.strategy().search(lm, problem, observer)?;
        // A cancelled tree search returns what it found; the caller asked for no more events.
        if outcome
            .tree
            .as_ref()
            .is_some_and(|t| t.stop == StopReason::Cancelled)
        {
            return Ok(outcome);
        }
        // The search has finished: a stop asked for now ends the events, never the outcome.
        for (index, c) in outcome.candidates.iter().enumerate() {
            observer.notify(Event::Candidate {
                index,
                answer: c.answer.clone(),
                score: c.score,
            });
        }
        observer.notify(Event::Done {
            answer: outcome.answer.clone(),
            score: outcome.score,
        });
        Ok(outcome)
    }
}

/// Something a search did, reported while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A tree search added a step (`node` indexes its [`SearchTree`]).
    Step {
        /// The new node.
        node: usize,
        /// Its parent.
        parent: usize,
        /// Steps from the root.
        depth: u32,
        /// Tokens of the step.
        tokens: u32,
        /// The step's text.
        text: String,
    },
    /// A tree search valued a step.
    Scored {
        /// The node.
        node: usize,
        /// The self-judge's score (NaN when the search values steps without the judge: MCTS and
        /// beam with `value: logprob`).
        judge: f64,
        /// The node's value.
        value: f64,
    },
    /// A sampling strategy finished a sample, before it is scored: each of best-of-N's samples
    /// once the batch is decoded, each self-correction attempt, each DeepConf trace, each
    /// segment of a deepening branch (its answer is the branch's so far). A [`Flow::Stop`]
    /// cancels the solve, as for a step.
    Sample {
        /// The sample's number in the order this solve drew them (0, 1, …).
        index: usize,
        /// Tokens it generated.
        tokens: u32,
        /// Its answer (none when it stated none, e.g. cut off).
        answer: Option<String>,
        /// Why it ended.
        finish: FinishReason,
    },
    /// A candidate of the finished search, in the outcome's order.
    Candidate {
        /// Its index in [`Outcome::candidates`].
        index: usize,
        /// Its answer.
        answer: Option<String>,
        /// Its score.
        score: f64,
    },
    /// The solve is complete.
    Done {
        /// The chosen answer.
        answer: Option<String>,
        /// Its score.
        score: f64,
    },
}

/// What an event callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Cancel the search.
    Stop,
}

/// Receives a strategy's [`Event`]s and tells it to stop. A stop request is shared through
/// [`Observer::stop_flag`] so that the model can also be interrupted between forward passes.
#[derive(Default)]
pub struct Observer<'a> {
    callback: Option<&'a mut dyn FnMut(&Event) -> Flow>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Observer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("callback", &self.callback.is_some())
            .field("stop", &self.stop)
            .finish()
    }
}

impl<'a> Observer<'a> {
    /// An observer calling `callback` for every event.
    pub fn new(callback: &'a mut dyn FnMut(&Event) -> Flow) -> Self {
        Self {
            callback: Some(callback),
            stop: std::sync::Arc::default(),
        }
    }

    /// The flag set when a stop is requested (by the callback or by anyone holding it).
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.clone()
    }

    /// Reports `event`.
    ///
    /// # Errors
    /// [`DecodeError::Cancelled`](crate::DecodeError::Cancelled) once a stop was requested.
    pub fn emit(&mut self, event: Event) -> Result<(), crate::error::DecodeError> {
        use std::sync::atomic::Ordering;
        if let Some(cb) = self.callback.as_mut() {
            if cb(&event) == Flow::Stop {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
        self.check()
    }

    /// Reports `event` about work that is already done, unless a stop was requested before; a
    /// stop requested now only ends the events.
    pub fn notify(&mut self, event: Event) {
        use std::sync::atomic::Ordering;
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        if let Some(cb) = self.callback.as_mut() {
            if cb(&event) == Flow::Stop {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Reports each of `generations` as an [`Event::Sample`], numbered from `first`, with the
    /// answer its candidate will have (`answer` of it: the strategy's own rule, so that the
    /// event and the candidate never disagree).
    ///
    /// # Errors
    /// [`DecodeError::Cancelled`](crate::DecodeError::Cancelled) once a stop was requested.
    pub(crate) fn samples(
        &mut self,
        first: usize,
        generations: &[crate::lm::Generation],
        answer: impl Fn(&crate::lm::Generation) -> Option<String>,
    ) -> Result<(), crate::error::DecodeError> {
        for (i, g) in generations.iter().enumerate() {
            self.emit(Event::Sample {
                index: first + i,
                tokens: g.tokens,
                answer: answer(g),
                finish: g.finish.clone(),
            })?;
        }
        Ok(())
    }

    /// [`DecodeError::Cancelled`](crate::DecodeError::Cancelled) once a stop was requested.
    ///
    /// # Errors
    /// As said.
    pub fn check(&self) -> Result<(), crate::error::DecodeError> {
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            Err(crate::error::DecodeError::Cancelled)
        } else {
            Ok(())
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};

    #[test]
    fn a_cut_off_solution_has_only_the_answer_it_stated() {
        let p = Problem::new("What is 6 * 7?");
        let unfinished = "6 * 7 means 6 added 7 times: 6 + 6 = 12, 12 + 6 = 18";
        assert_eq!(
            p.answer_of(unfinished, &FinishReason::Eos).as_deref(),
            Some("18")
        );
        assert_eq!(p.answer_of(unfinished, &FinishReason::MaxTokens), None);
        assert_eq!(p.answer_of(unfinished, &FinishReason::ContextFull), None);
        let stated = "6 * 7 = 42. The answer is 42. Let me check: 6 + 6 = 12";
        assert_eq!(
            p.answer_of(stated, &FinishReason::MaxTokens).as_deref(),
            Some("42")
        );
    }

    fn field_of(json: &str) -> &'static str {
        StrategyConfig::from_json("", json).expect_err(json).field
    }

    #[test]
    fn every_count_and_budget_has_an_upper_bound() {
        for (json, field) in [
            (r#"{"type":"best_of_n","n":257}"#, "n"),
            (r#"{"type":"best_of_n","max_tokens":131073}"#, "max_tokens"),
            (r#"{"type":"self_correct","rounds":1000000}"#, "rounds"),
            (
                r#"{"type":"self_correct","max_tokens":4000000000}"#,
                "max_tokens",
            ),
            (r#"{"type":"deepening","width":257}"#, "width"),
            (
                r#"{"type":"deepening","l0":200000,"total_budget":300000}"#,
                "l0",
            ),
            (r#"{"type":"deepening","gamma":100.0}"#, "gamma"),
            (
                r#"{"type":"deepening","total_budget":4000000000}"#,
                "total_budget",
            ),
            (r#"{"type":"mcts","k":65}"#, "k"),
            (
                r#"{"type":"mcts","budget":{"tokens":10000001}}"#,
                "budget.tokens",
            ),
            (
                r#"{"type":"mcts","budget":{"forward_passes":100000001}}"#,
                "budget.forward_passes",
            ),
            (
                r#"{"type":"mcts","budget":{"wall_ms":86400001}}"#,
                "budget.wall_ms",
            ),
            (
                r#"{"type":"mcts","budget":{"iterations":100001}}"#,
                "budget.iterations",
            ),
            (
                r#"{"type":"mcts","rollout":{"alpha":0.5,"max_tokens":200000}}"#,
                "rollout.max_tokens",
            ),
            (
                r#"{"type":"mcts","step":{"max_tokens":200000}}"#,
                "step.max_tokens",
            ),
            (
                r#"{"type":"beam","step":{"max_depth":1025}}"#,
                "step.max_depth",
            ),
            (r#"{"type":"beam","step":{"retries":17}}"#, "step.retries"),
            (
                r#"{"type":"beam","step":{"min_chars":100001}}"#,
                "step.min_chars",
            ),
            (r#"{"type":"beam","width":65}"#, "width"),
            (r#"{"type":"beam","expansions":65}"#, "expansions"),
        ] {
            assert_eq!(field_of(json), field, "{json}");
        }
        // The bounds themselves are accepted.
        for json in [
            r#"{"type":"self_correct","rounds":16}"#,
            r#"{"type":"mcts","budget":{"tokens":10000000,"iterations":100000}}"#,
            r#"{"type":"best_of_n","max_tokens":131072}"#,
        ] {
            StrategyConfig::from_json("", json).expect(json);
        }
    }

    #[test]
    fn a_missing_type_is_named_with_the_spellings_type_takes() {
        let e = StrategyConfig::from_json("", "{}").unwrap_err();
        assert!(e.reason.contains("\"type\" is missing"), "{e}");
        for name in StrategyConfig::NAMES {
            assert!(e.reason.contains(name), "{e}");
            let json = format!(r#"{{"type":"{name}"}}"#);
            assert_eq!(StrategyConfig::from_json("", &json).unwrap().name(), *name);
        }
        let e = StrategyConfig::default_for("magic").unwrap_err();
        assert!(e.reason.contains("best_of_n, self_correct"), "{e}");
    }

    fn lm() -> ScriptedLm {
        ScriptedLm::new(
            |q| ScriptedStep {
                text: format!("Swap them. Answer: The mouse was chased {}.", q.ordinal),
                eos: true,
                logprob_per_token: -0.5,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        )
    }

    #[test]
    fn text_answers_are_extracted_as_text_and_votes_on_them_are_refused() {
        let problem = Problem {
            answer_kind: AnswerKind::Text,
            ..Problem::new("Rewrite in the passive voice.").with_answer("the mouse was chased 0")
        };
        let logprob = StrategyConfig::BestOfN(BestOfNConfig {
            n: 2,
            rerank: Rerank::Logprob,
            ..BestOfNConfig::default()
        });
        let out = logprob.run(&mut lm(), &problem).unwrap();
        assert_eq!(
            out.candidates[0].answer.as_deref(),
            Some("The mouse was chased 0.")
        );
        assert_eq!(out.candidates[0].correct, Some(true));
        assert_eq!(out.candidates[1].correct, Some(false));

        let vote = StrategyConfig::BestOfN(BestOfNConfig {
            rerank: Rerank::Vote,
            ..BestOfNConfig::default()
        });
        assert!(vote.votes());
        let Err(Error::Config(e)) = vote.run(&mut lm(), &problem) else {
            panic!("a vote on text answers must be refused")
        };
        assert_eq!(e.field, "answer_kind");
        assert!(e.reason.contains("logprob"), "{}", e.reason);
        assert!(StrategyConfig::default_for("deepening").unwrap().votes());
        assert!(!StrategyConfig::default_for("self-correct").unwrap().votes());
        assert_eq!(AnswerKind::parse("text").unwrap(), AnswerKind::Text);
        assert_eq!(AnswerKind::parse("words").unwrap_err().field, "answer_kind");
    }

    #[test]
    fn best_of_n_with_r3_labels_and_steers_only_when_oracle_guided() {
        // The first candidate is the one the forced reference likes; logprob ranks them equal,
        // so without guidance the pick is the first by index either way: use a judge that
        // prefers the second.
        let scripted = || {
            ScriptedLm::new(
                |q| ScriptedStep {
                    text: if q.ordinal == 0 {
                        "The mouse is the object. Answer: x".into()
                    } else {
                        "Cats sleep. Answer: y".into()
                    },
                    eos: true,
                    logprob_per_token: -0.5,
                    confidence: Vec::new(),
                    ..Default::default()
                },
                |text| if text.contains("Cats") { 0.9 } else { 0.1 },
            )
            .with_forced(|context, _, _| {
                if context.contains("mouse is") {
                    -0.1
                } else {
                    -2.0
                }
            })
        };
        let config = StrategyConfig::BestOfN(BestOfNConfig {
            n: 2,
            rerank: Rerank::Judge,
            r3: Some(crate::reward::r3::R3Config::default()),
            ..BestOfNConfig::default()
        });
        let problem = Problem {
            answer_kind: AnswerKind::Text,
            ..Problem::new("Rewrite.").with_answer("The mouse was chased by the cat.")
        };
        let out = config.run(&mut scripted(), &problem).unwrap();
        let r3 = out.r3.as_ref().expect("R3 labels");
        assert_eq!(r3.best(), Some(0));
        assert_eq!(out.chosen, 1, "the judge picks; R3 only labels");
        let guided = Problem {
            oracle_guided: true,
            ..problem.clone()
        };
        let out = config.run(&mut scripted(), &guided).unwrap();
        assert_eq!(out.chosen, 0, "oracle-guided: the highest R3");
        // Without a reference there is nothing to compute R3 against.
        let out = config
            .run(&mut scripted(), &Problem::new("Rewrite."))
            .unwrap();
        assert!(out.r3.is_none());
    }
}
