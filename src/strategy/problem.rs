//! The problem a strategy solves (question, reference answer, kind of answer), how the solver is
//! asked ([`PromptConfig`]), and the documented [`limits`] of every count and budget.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::lm::{FinishReason, Message};
use crate::reward::answer;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
