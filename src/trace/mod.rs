//! Training traces: what one solve found, in a stable, documented JSON shape that the exports in
//! [`export`] turn into training records.
//!
//! A [`Trace`] is a tree of steps. For the tree searches (`mcts`, `beam`) it is the search tree
//! itself. For strategies that sample whole solutions (`best_of_n`, `self_correct`,
//! `deepening`), every candidate becomes a chain of its steps under the root — its text split
//! after each blank line — and its token count, log-probability, judge score and value sit on its
//! last step.
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
//! let oracle = ExportOptions { oracle: true, ..Default::default() };
//! for record in export::records(&trace, Format::Prm, &oracle) {
//!     println!("{record}");
//! }
//! # Ok(())
//! # }
//! ```

pub mod export;

use serde::{Deserialize, Serialize};

use crate::lm::{Message, Usage};
use crate::strategy::{Outcome, Problem, StopReason, StrategyConfig};

pub use crate::backend::ModelId;

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

/// One step of a trace (node 0 is the question).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceNode {
    /// Index in [`Trace::nodes`].
    pub id: usize,
    /// The parent's id (`None` for the root).
    pub parent: Option<usize>,
    /// The step's text, delimiter included (empty for the root).
    pub text: String,
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

    /// The trace of `outcome`, a solve of `problem` (whose id is `id`).
    pub fn from_outcome(
        id: impl Into<String>,
        problem: &Problem,
        outcome: &Outcome,
        provenance: Provenance,
    ) -> Self {
        // The conversation as the search sent it; rendered from the strategy's prompt settings
        // only for an outcome that did not record it (written before it was recorded).
        let prompt = if outcome.prompt.is_empty() {
            provenance.strategy.prompt().messages(&problem.question)
        } else {
            outcome.prompt.clone()
        };
        let mut trace = Self {
            format: TRACE_FORMAT,
            id: id.into(),
            question: problem.question.clone(),
            reference: problem.answer.clone(),
            prompt,
            strategy: outcome.strategy.clone(),
            nodes: Vec::new(),
            candidates: Vec::new(),
            chosen: Vec::new(),
            answer: outcome.answer.clone(),
            correct: outcome.correct,
            stop: outcome.tree.as_ref().map(|t| t.stop),
            usage: outcome.usage,
            provenance,
            r3: outcome.r3.clone(),
        };
        match &outcome.tree {
            Some(tree) => {
                trace.nodes = tree
                    .nodes
                    .iter()
                    .map(|n| TraceNode {
                        id: n.id,
                        parent: n.parent,
                        text: n.text.clone(),
                        tokens: n.tokens,
                        logprob: n.logprob,
                        judge: n.judge,
                        visits: n.visits,
                        value: n.value,
                        terminal: n.terminal,
                        answer: n.answer.clone(),
                        correct: n.correct,
                    })
                    .collect();
                trace.candidates = tree
                    .nodes
                    .iter()
                    .filter(|n| n.terminal)
                    .map(|n| n.id)
                    .collect();
                let last = *tree.chosen.last().unwrap_or(&0);
                if !trace.candidates.contains(&last) && last != 0 {
                    trace.candidates.push(last);
                }
                trace.chosen = tree.chosen.clone();
            }
            None => {
                trace.nodes.push(TraceNode {
                    id: 0,
                    parent: None,
                    text: String::new(),
                    tokens: 0,
                    logprob: 0.0,
                    judge: None,
                    visits: outcome.candidates.len() as u32,
                    value: 0.0,
                    terminal: false,
                    answer: None,
                    correct: None,
                });
                for (i, c) in outcome.candidates.iter().enumerate() {
                    let steps = split_steps(&c.text);
                    let mut parent = 0;
                    for (k, step) in steps.iter().enumerate() {
                        let id = trace.nodes.len();
                        let last = k + 1 == steps.len();
                        trace.nodes.push(TraceNode {
                            id,
                            parent: Some(parent),
                            text: step.to_string(),
                            tokens: if last { c.tokens } else { 0 },
                            logprob: if last { c.logprob } else { 0.0 },
                            judge: if last { c.judge } else { None },
                            visits: 1,
                            value: if last { c.score.clamp(0.0, 1.0) } else { 0.0 },
                            terminal: last,
                            answer: if last { c.answer.clone() } else { None },
                            correct: if last { c.correct } else { None },
                        });
                        parent = id;
                    }
                    trace.candidates.push(parent);
                    if i == outcome.chosen {
                        trace.chosen = trace.path(parent);
                    }
                }
                if trace.chosen.is_empty() {
                    trace.chosen = vec![0];
                }
            }
        }
        trace
    }

    /// Ids from the root to `id`.
    pub fn path(&self, id: usize) -> Vec<usize> {
        let mut path = vec![id];
        let mut at = id;
        while let Some(p) = self.nodes[at].parent {
            path.push(p);
            at = p;
        }
        path.reverse();
        path
    }

    /// The steps' texts from the root (excluded) to `id`.
    pub fn steps(&self, id: usize) -> Vec<&str> {
        self.path(id)
            .into_iter()
            .skip(1)
            .map(|i| self.nodes[i].text.as_str())
            .collect()
    }

    /// The text from the root to `id`.
    pub fn text(&self, id: usize) -> String {
        self.steps(id).concat()
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

/// The sha256 of a file, lower-case hex.
///
/// # Errors
/// The file cannot be read.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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

    #[test]
    fn the_trace_keeps_the_prompt_the_search_sent() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep, StepQuery};
        use crate::strategy::{BeamConfig, BestOfNConfig, PromptConfig};
        let prompt = PromptConfig {
            system: Some("Be brief.".into()),
            template: "Q: {question}".into(),
        };
        let problem = Problem::new("What is 2 + 2?").with_answer("4");
        let model = ModelId {
            name: "scripted".into(),
            sha256: String::new(),
        };
        for strategy in [
            StrategyConfig::BestOfN(BestOfNConfig {
                n: 2,
                prompt: prompt.clone(),
                ..BestOfNConfig::default()
            }),
            StrategyConfig::Beam(BeamConfig {
                prompt: prompt.clone(),
                ..BeamConfig::default()
            }),
        ] {
            let mut lm = ScriptedLm::new(
                |_: &StepQuery<'_>| ScriptedStep {
                    text: "The answer is 4.".into(),
                    eos: true,
                    logprob_per_token: -0.5,
                    confidence: Vec::new(),
                },
                |_| 0.9,
            );
            let outcome = strategy.run(&mut lm, &problem).unwrap();
            let sent = vec![
                Message::system("Be brief."),
                Message::user("Q: What is 2 + 2?"),
            ];
            assert_eq!(outcome.prompt, sent, "{}", strategy.name());
            // The trace takes the prompt from the outcome, not from the provenance's config.
            let other = StrategyConfig::default_for(strategy.name()).unwrap();
            let trace = Trace::from_outcome(
                "q",
                &problem,
                &outcome,
                Provenance::new(&model, &other, false),
            );
            assert_eq!(trace.prompt, sent);
        }
    }
}
