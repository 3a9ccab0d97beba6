//! Search strategies: each one file, one config struct, one variant of [`StrategyConfig`].
//!
//! A strategy takes an [`Lm`] and a [`Problem`] and returns an [`Outcome`]: the chosen answer and
//! text, its score, every candidate it considered with their scores, and the work it took.

pub mod best_of_n;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error};
use crate::lm::{FinishReason, Lm, Message, Usage};
use crate::reward::answer;

pub use best_of_n::{BestOfNConfig, Rerank};

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
}

impl Problem {
    /// A problem without id or reference answer.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            id: None,
            question: question.into(),
            answer: None,
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
    pub fn check(&self, answer: Option<&str>) -> Option<bool> {
        let reference = self.answer.as_deref()?;
        Some(answer.is_some_and(|a| answer::equivalent(a, reference)))
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

/// Every strategy's configuration, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StrategyConfig {
    /// See [`best_of_n`].
    BestOfN(BestOfNConfig),
}

impl StrategyConfig {
    /// The strategy's name, as in `"type"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::BestOfN(_) => "best_of_n",
        }
    }

    /// The default configuration of the strategy called `name` (`best_of_n` or `best-of-n`).
    ///
    /// # Errors
    /// [`ConfigError`] naming the known strategies.
    pub fn default_for(name: &str) -> Result<Self, ConfigError> {
        match name.replace('-', "_").as_str() {
            "best_of_n" => Ok(Self::BestOfN(BestOfNConfig::default())),
            other => Err(ConfigError::new(
                "strategy",
                format!("unknown strategy {other:?}; known: best-of-n"),
            )),
        }
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
        match self {
            Self::BestOfN(c) => c.validate(),
        }
    }

    /// Runs the strategy.
    ///
    /// # Errors
    /// Invalid problem or configuration; model errors.
    pub fn run(&self, lm: &mut dyn Lm, problem: &Problem) -> Result<Outcome, Error> {
        problem.validate()?;
        self.validate()?;
        match self {
            Self::BestOfN(c) => best_of_n::run(c, lm, problem),
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
    /// The work this solve took.
    pub usage: Usage,
}
