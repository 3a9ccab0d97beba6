//! Training traces: what one solve found, in a stable, documented JSON shape that the exports in
//! [`export`] turn into training records.
//!
//! A [`Trace`] is a tree of steps. For the tree searches (`mcts`, `beam`) it is the search tree
//! itself. For the strategies that sample whole solutions it is built from what the strategy
//! made, as the outcome recorded it ([`Outcome::timeline`](crate::strategy::Outcome::timeline)):
//!
//! - every generation becomes a chain of [`NodeKind::Generated`] steps, its text split after each
//!   blank line ([`split_steps`]); the generation's token count and log-probability sit on its
//!   last step (the steps before it show 0: a generation is decoded as one piece);
//! - text the strategy put into the model's message is a node of its own,
//!   [`NodeKind::Inserted`] (deepening's trigger, between a branch's segments);
//! - a user turn the strategy appended is a [`NodeKind::UserTurn`] node (self-correction's
//!   revision request): attempt 2 hangs below attempt 1 and the request, as the model saw it;
//! - a candidate's judge score, value, answer and correctness sit on the node where it ends.
//!
//! So a `best_of_n` or `deepconf` candidate is one chain under the root, a `deepening` branch a
//! chain of segments and triggers, and a `self_correct` run one chain of attempts and requests
//! whose candidates are the ends of its attempts. An assistant message is the run of nodes after
//! the root or the last user turn ([`Trace::message_path`]); the exports label its steps and put
//! the turns before it in the record's conversation ([`Trace::context`]).
//!
//! Field names are part of the format ([`TRACE_FORMAT`]); new fields may be added, existing ones
//! are not renamed.
//!
//! ```no_run
//! use ponder::strategy::{Budget, MctsConfig, Selection};
//! use ponder::trace::export::{self, ExportOptions, Format};
//! use ponder::trace::{Provenance, Trace};
//! use ponder::{ContextOptions, Engine, ModelOptions, Problem, StrategyConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::load(&ModelOptions::default(), &ContextOptions::default())?;
//! let mcts = StrategyConfig::Mcts(MctsConfig {
//!     k: 3,
//!     selection: Selection::Puct,
//!     budget: Budget { tokens: Some(1024), ..Default::default() },
//!     ..Default::default()
//! });
//! let problem = Problem::new("What is 7 * 6?").with_answer("42");
//! let outcome = engine.solve(&problem, &mcts)?;
//! let tree = outcome.tree.as_ref().expect("tree searches keep their tree");
//! std::fs::write("tree.dot", tree.to_dot())?;
//! let provenance = Provenance::for_model(&ModelOptions::default().path, &mcts, false)?;
//! let trace = Trace::from_outcome("q1", &problem, &outcome, provenance);
//! let oracle = ExportOptions::by_oracle();
//! for record in export::records(&trace, Format::Prm, &oracle) {
//!     println!("{record}");
//! }
//! # Ok(())
//! # }
//! ```

mod build;
pub mod export;

use serde::{Deserialize, Serialize};

use crate::lm::{Message, Usage};
use crate::strategy::{StopReason, StrategyConfig};

pub use crate::lm::{sha256_file, ModelId};

/// Version of the trace format.
pub const TRACE_FORMAT: u32 = 1;

/// Where a trace came from: enough to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The model file's name.
    pub model: String,
    /// The model file's sha256, lower-case hex.
    pub model_sha256: String,
    /// ponder's version (Cargo.toml).
    pub ponder_version: String,
    /// The strategy's whole configuration.
    pub strategy: StrategyConfig,
    /// The base seed of its sampling.
    pub seed: u64,
    /// Whether the reference answer steered the search (`--oracle-guided`).
    pub oracle_guided: bool,
}

impl Provenance {
    /// Provenance for `strategy` run on the model file at `model_path`, hashing the file.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn for_model(
        model_path: &std::path::Path,
        strategy: &StrategyConfig,
        oracle_guided: bool,
    ) -> std::io::Result<Self> {
        Ok(Self::new(
            &ModelId::of_file(model_path)?,
            strategy,
            oracle_guided,
        ))
    }

    /// Provenance for `strategy` run on `model`.
    pub fn new(model: &ModelId, strategy: &StrategyConfig, oracle_guided: bool) -> Self {
        Self {
            model: model.name.clone(),
            model_sha256: model.sha256.clone(),
            ponder_version: env!("CARGO_PKG_VERSION").to_string(),
            strategy: strategy.clone(),
            seed: strategy.seed(),
            oracle_guided,
        }
    }
}

/// What made a node's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// The model generated it: every node of a tree search, and a step of a sampled generation.
    #[default]
    Generated,
    /// The strategy put it into the model's own message (deepening's trigger): part of the
    /// assistant message, not generated (0 tokens).
    Inserted,
    /// A user turn the strategy appended (self-correction's revision request): the assistant
    /// message above it ends there and a new one starts below it.
    UserTurn,
}

impl NodeKind {
    /// `Generated` (the default, left out of the JSON).
    pub fn is_generated(&self) -> bool {
        *self == NodeKind::Generated
    }
}

/// One step of a trace (node 0 is the question).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceNode {
    /// Index in [`Trace::nodes`].
    pub id: usize,
    /// The parent's id (`None` for the root).
    pub parent: Option<usize>,
    /// The step's text, delimiter included (empty for the root).
    pub text: String,
    /// What made the text (absent in the JSON for generated steps and in traces written before
    /// it was recorded).
    #[serde(default, skip_serializing_if = "NodeKind::is_generated")]
    pub kind: NodeKind,
    /// Tokens generated for the step.
    pub tokens: u32,
    /// Sum of the step's token log-probabilities.
    pub logprob: f64,
    /// The self-judge's score of the step (or, for a finished solution, of the solution).
    pub judge: Option<f64>,
    /// Search iterations through the node.
    pub visits: u32,
    /// The node's value in [0, 1] (the strategy's score for the candidate ending here).
    pub value: f64,
    /// A finished solution ends here.
    pub terminal: bool,
    /// The final answer, for terminal nodes.
    pub answer: Option<String>,
    /// Whether that answer matches the reference, when one was given.
    pub correct: Option<bool>,
}

/// Everything one solve found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// [`TRACE_FORMAT`].
    pub format: u32,
    /// The problem's id.
    pub id: String,
    /// The question.
    pub question: String,
    /// The reference answer, if known.
    pub reference: Option<String>,
    /// The messages the solver was given (system and user).
    pub prompt: Vec<Message>,
    /// The strategy's name.
    pub strategy: String,
    /// The steps; `nodes[0]` is the question.
    pub nodes: Vec<TraceNode>,
    /// Ids of the nodes where candidate solutions end, in the strategy's order.
    pub candidates: Vec<usize>,
    /// Node ids from the root to the chosen candidate's end.
    pub chosen: Vec<usize>,
    /// The chosen answer.
    pub answer: Option<String>,
    /// Whether the chosen answer is right, when a reference was given.
    pub correct: Option<bool>,
    /// Why a tree search stopped.
    pub stop: Option<StopReason>,
    /// The work the solve took.
    pub usage: Usage,
    /// Model, configuration, seeds, version.
    pub provenance: Provenance,
    /// R3 (DRO) of each candidate, in the order of `candidates`, with the reference's tokens, their
    /// per-candidate log-probabilities and weights, so that a trainer can recompute it. R3 is
    /// computed from the reference: a label, and a search signal only when
    /// `provenance.oracle_guided`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r3: Option<crate::reward::r3::R3Scores>,
}

impl Trace {
    /// Reads a trace (a line of `traces.jsonl`) and checks that its structure is one the exports
    /// can walk: node ids equal their index, every parent precedes its child, and the candidates
    /// and the chosen path name existing nodes, the path running parent to child from the root.
    ///
    /// # Errors
    /// A [`ConfigError`](crate::ConfigError) (field `trace`) saying what is wrong.
    pub fn from_json(text: &str) -> Result<Self, crate::ConfigError> {
        let trace: Trace = serde_json::from_str(text)
            .map_err(|e| crate::ConfigError::new("trace", format!("not a ponder trace: {e}")))?;
        trace.validate()?;
        Ok(trace)
    }

    /// Checks the structure [`Trace::from_json`] checks.
    ///
    /// # Errors
    /// As [`Trace::from_json`].
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        let bad = |m: String| Err(crate::ConfigError::new("trace", m));
        if self.format != TRACE_FORMAT {
            return bad(format!(
                "format {} is not {TRACE_FORMAT}, the one this version reads",
                self.format
            ));
        }
        let n = self.nodes.len();
        if n == 0 || self.nodes[0].parent.is_some() {
            return bad("nodes[0] must be the question, without a parent".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id != i {
                return bad(format!("nodes[{i}] has id {}", node.id));
            }
            if i > 0 && node.parent.is_none_or(|p| p >= i) {
                return bad(format!(
                    "node {i}'s parent {:?} does not precede it",
                    node.parent
                ));
            }
        }
        if let Some(t) = self
            .nodes
            .iter()
            .find(|t| t.kind == NodeKind::UserTurn && t.terminal)
        {
            return bad(format!(
                "node {} is a user turn and cannot end a solution",
                t.id
            ));
        }
        if let Some(r3) = &self.r3 {
            if r3.r3.len() != self.candidates.len()
                || r3.logprobs.iter().any(|row| row.len() != r3.tokens.len())
                || r3.weights.len() != r3.tokens.len()
            {
                return bad(format!(
                    "r3 holds {} scores for {} candidates, or rows that do not match its {} reference tokens",
                    r3.r3.len(),
                    self.candidates.len(),
                    r3.tokens.len()
                ));
            }
        }
        if let Some(&c) = self.candidates.iter().find(|&&c| c >= n) {
            return bad(format!("candidate {c} is not a node"));
        }
        if self.chosen.first().is_some_and(|&c| c != 0)
            || self.chosen.iter().any(|&c| c >= n)
            || self
                .chosen
                .windows(2)
                .any(|w| self.nodes[w[1]].parent != Some(w[0]))
        {
            return bad(format!(
                "the chosen path {:?} is not a path from the root",
                self.chosen
            ));
        }
        Ok(())
    }

    /// Ids from the root to `id`.
    pub fn path(&self, id: usize) -> Vec<usize> {
        crate::strategy::tree::root_path(id, |at| self.nodes[at].parent)
    }

    /// The assistant message that ends at `id`: the node it starts below (the root, or the last
    /// user turn on the path), then its nodes up to `id`.
    pub fn message_path(&self, id: usize) -> Vec<usize> {
        let mut path = self.path(id);
        let start = self.message_start(id);
        path.drain(..path.iter().position(|&i| i == start).expect("on the path"));
        path
    }

    /// The node the assistant message ending at `id` starts below: the last user turn above `id`,
    /// else the root. Two messages with the same start answer the same conversation.
    pub fn message_start(&self, id: usize) -> usize {
        let mut at = id;
        while let Some(p) = self.nodes[at].parent {
            if self.nodes[p].kind == NodeKind::UserTurn {
                return p;
            }
            at = p;
        }
        0
    }

    /// The steps' texts of the assistant message that ends at `id` (from the root, or the last
    /// user turn, excluded).
    pub fn steps(&self, id: usize) -> Vec<&str> {
        self.message_path(id)
            .into_iter()
            .skip(1)
            .map(|i| self.nodes[i].text.as_str())
            .collect()
    }

    /// The text of the assistant message that ends at `id`.
    pub fn text(&self, id: usize) -> String {
        self.steps(id).concat()
    }

    /// The conversation before the assistant message that ends at `id`: the prompt, then for each
    /// user turn above it the assistant message before that turn (trimmed) and the turn.
    pub fn context(&self, id: usize) -> Vec<Message> {
        let mut messages = self.prompt.clone();
        let start = self.message_start(id);
        let mut text = String::new();
        for i in self.path(start).into_iter().skip(1) {
            let node = &self.nodes[i];
            if node.kind == NodeKind::UserTurn {
                messages.push(Message::new("assistant", text.trim().to_string()));
                messages.push(Message::user(node.text.clone()));
                text.clear();
            } else {
                text.push_str(&node.text);
            }
        }
        messages
    }

    /// Children of every node (index = node id).
    pub fn children(&self) -> Vec<Vec<usize>> {
        let mut children = vec![Vec::new(); self.nodes.len()];
        for n in &self.nodes {
            if let Some(p) = n.parent {
                children[p].push(n.id);
            }
        }
        children
    }
}

impl TraceNode {
    /// A node with `text` and nothing else: no tokens, one visit, not terminal.
    fn new(id: usize, parent: Option<usize>, kind: NodeKind, text: String) -> Self {
        Self {
            id,
            parent,
            text,
            kind,
            tokens: 0,
            logprob: 0.0,
            judge: None,
            visits: 1,
            value: 0.0,
            terminal: false,
            answer: None,
            correct: None,
        }
    }
}

/// `text` split after each blank line (each piece keeps its delimiter); a text without blank
/// lines is one step. Empty pieces are dropped.
pub fn split_steps(text: &str) -> Vec<&str> {
    let mut steps = Vec::new();
    let mut start = 0;
    while let Some(at) = text[start..].find("\n\n") {
        let mut end = start + at + 2;
        // Keep a run of newlines with the step it ends.
        while text[end..].starts_with('\n') {
            end += 1;
        }
        steps.push(&text[start..end]);
        start = end;
    }
    if start < text.len() {
        steps.push(&text[start..]);
    }
    steps.retain(|s| !s.trim().is_empty());
    if steps.is_empty() {
        steps.push(text);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_split_after_blank_lines() {
        assert_eq!(split_steps("a\n\nb\n\n\nc"), ["a\n\n", "b\n\n\n", "c"]);
        assert_eq!(split_steps("one step"), ["one step"]);
        assert_eq!(split_steps(""), [""]);
        assert_eq!(split_steps("x\n\n"), ["x\n\n"]);
    }
}
