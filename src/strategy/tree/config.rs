//! The settings a tree search takes: its [`Budget`] and the [`Limit`] that stopped it, why it
//! stopped ([`StopReason`]), how a step is sampled and checked ([`StepConfig`]) and what values a
//! node ([`ValueSignal`]).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::lm::SamplingParams;
use crate::strategy::limits;

/// When a search stops: whichever limit is reached first. Limits are checked before every batched
/// call to the model, so a search ends at most one batch step (one `generate` call and the
/// judging of its results) past a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Generated tokens (accepted steps, rejected steps and rollouts), at most.
    pub tokens: Option<u64>,
    /// Forward passes of the model, at most.
    pub forward_passes: Option<u64>,
    /// Wall time in milliseconds, at most.
    pub wall_ms: Option<u64>,
    /// Search iterations (MCTS: selections; beam: depth levels), at most.
    pub iterations: Option<u32>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            tokens: Some(1024),
            forward_passes: None,
            wall_ms: None,
            iterations: Some(64),
        }
    }
}

impl Budget {
    /// Checks that at least one limit is set and none is zero.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let set = [
            (
                "budget.tokens",
                self.tokens,
                limits::MAX_BUDGET_TOKENS,
                "tokens",
            ),
            (
                "budget.forward_passes",
                self.forward_passes,
                limits::MAX_FORWARD_PASSES,
                "forward passes",
            ),
            ("budget.wall_ms", self.wall_ms, limits::MAX_WALL_MS, "ms"),
            (
                "budget.iterations",
                self.iterations.map(u64::from),
                u64::from(limits::MAX_ITERATIONS),
                "iterations",
            ),
        ];
        for (field, limit, max, unit) in set {
            if limit == Some(0) {
                return Err(ConfigError::new(
                    field,
                    "a zero budget allows no work; give a positive limit or null for none",
                ));
            }
            if let Some(l) = limit {
                ConfigError::check_range(field, l, 1..=max, unit)?;
            }
        }
        if set.iter().all(|(_, l, _, _)| l.is_none()) {
            return Err(ConfigError::new(
                "budget",
                "no limit is set, so the search could run forever; set tokens, forward_passes, wall_ms or iterations",
            ));
        }
        Ok(())
    }
}

/// Which limit of a [`Budget`] ended a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// [`Budget::tokens`].
    Tokens,
    /// [`Budget::forward_passes`].
    ForwardPasses,
    /// [`Budget::wall_ms`].
    WallTime,
    /// [`Budget::iterations`].
    Iterations,
}

impl std::fmt::Display for Limit {
    /// The budget field's name: `tokens`, `forward_passes`, `wall_ms`, `iterations`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tokens => "tokens",
            Self::ForwardPasses => "forward_passes",
            Self::WallTime => "wall_ms",
            Self::Iterations => "iterations",
        })
    }
}

/// Why a search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum StopReason {
    /// A finished solution's value passed the end gate.
    EndGate {
        /// The node that passed.
        node: usize,
    },
    /// A budget limit was reached.
    Budget {
        /// Which one.
        limit: Limit,
    },
    /// Nothing was left to expand (every leaf is finished or a dead end).
    Exhausted,
    /// Beam search: enough beams finished, or none is left.
    Complete,
    /// The caller cancelled the search ([`crate::Engine::cancel`], or an event callback that
    /// asked to stop); the outcome holds the best of what was found until then.
    Cancelled,
}

impl StopReason {
    /// Whether the search ran out of budget.
    pub fn is_budget(self) -> bool {
        matches!(self, Self::Budget { .. })
    }
}

/// What a tree node's value is made of (`value` of [`mcts`](crate::strategy::mcts) and
/// [`beam`](crate::strategy::beam)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSignal {
    /// The self-judge's verdict read in place: the step question appended to the step's own node
    /// (the outcome question for a finished solution), P(yes)/(P(yes)+P(no)).
    Judge,
    /// The path's likelihood: `exp` of the mean token log-probability of the steps from the first
    /// to this one (the geometric mean of its tokens' probabilities), in (0, 1]. Costs no model
    /// call: the log-probabilities come with the sampled tokens.
    #[default]
    Logprob,
}

/// How steps are sampled and which are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepConfig {
    /// A step ends at the first of these (kept in the step). Default:
    /// [`StepConfig::default_delimiters`]: a blank line, a new numbered item `\n2. ` … `\n9. `
    /// on the next line, and a Markdown heading `\n### ` (reasoning models number their steps,
    /// `1. **…**` or `### Step 1:`, and set them apart with blank lines). The number of the next
    /// step stays at the end of the step it closes.
    pub delimiters: Vec<String>,
    /// Tokens per step, at most.
    pub max_tokens: u32,
    /// Steps shorter than this many non-blank characters are rejected and sampled again.
    pub min_chars: u32,
    /// How many times rejected steps (empty, too short, or repeating an earlier step of the same
    /// path or a sibling) are sampled again, at most, per expansion.
    pub retries: u32,
    /// Steps per path, at most; a step at this depth that gives no answer is a dead end.
    pub max_depth: u32,
    /// Sampling parameters; every sample gets its own seed (`seed`, `seed + 1`, …, in order).
    pub sampling: SamplingParams,
}

impl Default for StepConfig {
    fn default() -> Self {
        Self {
            delimiters: Self::default_delimiters(),
            max_tokens: 128,
            min_chars: 2,
            retries: 2,
            max_depth: 10,
            sampling: SamplingParams::default(),
        }
    }
}

impl StepConfig {
    /// The default step boundaries: `"\n\n"`, `"\n2. "` … `"\n9. "`, `"\n### "`.
    pub fn default_delimiters() -> Vec<String> {
        let mut d = vec!["\n\n".to_string()];
        d.extend((2..=9).map(|k| format!("\n{k}. ")));
        d.push("\n### ".into());
        d
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.delimiters.is_empty() || self.delimiters.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "step.delimiters",
                "give at least one non-empty delimiter (the default is a blank line, \"\\n\\n\")",
            ));
        }
        limits::check_max_tokens("step.max_tokens", self.max_tokens)?;
        if self.max_depth == 0 {
            return Err(ConfigError::new(
                "step.max_depth",
                "0 allows no step; use at least 1",
            ));
        }
        ConfigError::check_range(
            "step.max_depth",
            self.max_depth,
            1..=limits::MAX_DEPTH,
            "steps",
        )?;
        ConfigError::check_range("step.retries", self.retries, 0..=limits::MAX_RETRIES, "")?;
        ConfigError::check_range(
            "step.min_chars",
            self.min_chars,
            0..=limits::MAX_MIN_CHARS,
            "characters",
        )?;
        self.sampling.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::{FinishReason, GenRequest, Lm};

    /// The steps the default delimiters cut `solution` into, sampled through the scripted model
    /// exactly as a tree search samples them (stop strings, kept in the step).
    fn segment(solution: &'static str) -> Vec<String> {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        const PROMPT: &str = "<|user|>\nQ\n<|assistant|>\n";
        let mut lm = ScriptedLm::new(
            move |q| ScriptedStep {
                text: solution[q.text.len() - PROMPT.len()..].to_string(),
                eos: true,
                logprob_per_token: -1.0,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        );
        let mut node = lm.root_text(PROMPT).unwrap();
        let mut steps = Vec::new();
        loop {
            let g = lm
                .generate(&[GenRequest {
                    stop: StepConfig::default().delimiters,
                    ..GenRequest::new(node, 1000)
                }])
                .unwrap()
                .remove(0);
            steps.push(g.text.clone());
            node = g.node;
            if g.finish == FinishReason::Eos {
                return steps;
            }
        }
    }

    #[test]
    fn default_delimiters_cut_at_the_reasoners_numbered_steps() {
        // Blank lines between numbered steps, display math inside them.
        let steps = segment(
            "To find the total, follow these steps:\n\n1. **Red balloons**:\n   \\[\n   3 \\times 4 = 12\n   \\]\n\n2. **Add the blue ones**:\n   \\[\n   12 + 5 = 17\n   \\]\n\nSo the total is \\(\\boxed{17}\\).",
        );
        assert_eq!(steps.len(), 4, "{steps:#?}");
        assert!(steps[1].starts_with("1. **Red") && steps[1].contains("= 12"));
        assert!(steps[2].starts_with("2. **Add") && steps[2].contains("= 17"));
        // Numbered items on consecutive lines: each is a step, the next number closing it.
        let steps = segment("1. Tom has 4 bags.\n2. Each bag holds 3.\n3. So 12 apples.");
        assert_eq!(
            steps,
            [
                "1. Tom has 4 bags.\n2. ",
                "Each bag holds 3.\n3. ",
                "So 12 apples."
            ]
        );
        // Markdown step headings.
        let steps = segment("### Step 1: Count\n7 + 5 = 12\n### Step 2: Answer\n\\boxed{12}");
        assert_eq!(steps.len(), 2, "{steps:#?}");
        assert!(steps[0].ends_with("\n### ") && steps[1].starts_with("Step 2"));
        // The step numbers left at a step's end are never the answer.
        assert_eq!(
            crate::reward::answer::extract(&steps[..1].concat()).as_deref(),
            Some("12")
        );
    }

    #[test]
    fn budgets_need_a_positive_limit() {
        assert!(Budget::default().validate().is_ok());
        let zero = Budget {
            tokens: Some(0),
            ..Budget::default()
        };
        assert_eq!(zero.validate().unwrap_err().field, "budget.tokens");
        let none = Budget {
            tokens: None,
            forward_passes: None,
            wall_ms: None,
            iterations: None,
        };
        assert_eq!(none.validate().unwrap_err().field, "budget");
    }
}
