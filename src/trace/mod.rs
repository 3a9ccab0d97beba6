//! Training traces: what one solve found, in a stable, documented JSON shape that the exports in
//! [`export`] turn into training records.
//!
//! A [`Trace`] is a tree of steps. For the tree searches (`mcts`, `beam`) it is the search tree
//! itself. For the strategies that sample whole solutions it is built from what the strategy
//! made, as the outcome recorded it ([`Outcome::timeline`]):
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
use crate::strategy::{EntryKind, Outcome, Problem, StopReason, StrategyConfig};

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
                        kind: NodeKind::Generated,
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
            None => trace.push_sampled(outcome),
        }
        trace
    }

    /// The nodes of a sampling strategy's outcome: its generations, inserted texts and user turns
    /// as its timeline recorded them, or, for strategies without one (`best_of_n`, `deepconf`),
    /// one generation per candidate.
    fn push_sampled(&mut self, outcome: &Outcome) {
        self.nodes.push(TraceNode {
            visits: outcome.candidates.len() as u32,
            ..TraceNode::new(0, None, NodeKind::Generated, String::new())
        });
        let ends = match self.push_timeline(outcome) {
            Some(ends) if ends.len() == outcome.candidates.len() => ends,
            // No timeline, or one that does not fit the candidates (an outcome edited by hand):
            // each candidate's text is one generation.
            _ => {
                self.nodes.truncate(1);
                outcome
                    .candidates
                    .iter()
                    .map(|c| self.push_generation(0, &c.text, c.tokens, c.logprob))
                    .collect()
            }
        };
        for (i, (&end, c)) in ends.iter().zip(&outcome.candidates).enumerate() {
            let node = &mut self.nodes[end];
            node.judge = c.judge;
            node.value = c.score.clamp(0.0, 1.0);
            node.terminal = true;
            node.answer = c.answer.clone();
            node.correct = c.correct;
            self.candidates.push(end);
            if i == outcome.chosen {
                self.chosen = self.path(end);
            }
        }
        if self.chosen.is_empty() {
            self.chosen = vec![0];
        }
    }

    /// Chains for the timeline's branches, in branch order; returns the nodes where candidates
    /// end: an assistant message ends before a user turn and at its branch's end (so a
    /// self-correction's attempts each end one, a deepening branch ends one). `None` without a
    /// timeline.
    fn push_timeline(&mut self, outcome: &Outcome) -> Option<Vec<usize>> {
        let branches = outcome.timeline.iter().map(|e| e.branch).max()? + 1;
        let mut ends = Vec::new();
        for branch in 0..branches {
            let entries: Vec<_> = outcome
                .timeline
                .iter()
                .filter(|e| e.branch == branch)
                .collect();
            let mut at = 0;
            for (k, e) in entries.iter().enumerate() {
                at = match e.kind {
                    EntryKind::Generated => {
                        self.push_generation(at, &e.text, e.tokens as u32, e.logprob)
                    }
                    EntryKind::Trigger => self.push_node(at, NodeKind::Inserted, &e.text),
                    EntryKind::Revision => self.push_node(at, NodeKind::UserTurn, &e.text),
                };
                let message_ends = entries
                    .get(k + 1)
                    .is_none_or(|next| next.kind == EntryKind::Revision);
                if e.kind == EntryKind::Generated && message_ends {
                    ends.push(at);
                }
            }
        }
        Some(ends)
    }

    /// One generation below `parent`, split after blank lines; its tokens and log-probability
    /// on its last step. Returns that step's id.
    fn push_generation(&mut self, parent: usize, text: &str, tokens: u32, logprob: f64) -> usize {
        let mut at = parent;
        for step in split_steps(text) {
            at = self.push_node(at, NodeKind::Generated, step);
        }
        let last = &mut self.nodes[at];
        last.tokens = tokens;
        last.logprob = logprob;
        at
    }

    fn push_node(&mut self, parent: usize, kind: NodeKind, text: &str) -> usize {
        let id = self.nodes.len();
        self.nodes
            .push(TraceNode::new(id, Some(parent), kind, text.to_string()));
        id
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

    fn scripted(
        step: impl FnMut(&crate::lm::scripted::StepQuery<'_>) -> String + Send + 'static,
    ) -> crate::lm::scripted::ScriptedLm {
        let mut step = step;
        crate::lm::scripted::ScriptedLm::new(
            move |q: &crate::lm::scripted::StepQuery<'_>| crate::lm::scripted::ScriptedStep {
                text: step(q),
                eos: true,
                logprob_per_token: -0.25,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        )
    }

    fn provenance(strategy: &StrategyConfig) -> Provenance {
        let model = ModelId {
            name: "scripted".into(),
            sha256: String::new(),
        };
        Provenance::new(&model, strategy, false)
    }

    #[test]
    fn a_self_correction_is_one_conversation_of_attempts_and_requests() {
        use crate::strategy::SelfCorrectConfig;
        use crate::trace::export::{self, ExportOptions, Format};
        let config = SelfCorrectConfig {
            rounds: 1,
            accept_threshold: None,
            ..SelfCorrectConfig::default()
        };
        let revision = config.revision_prompt.clone();
        let first = "3 + 4 = 8.\n\nThe answer is 8.";
        let second = "I added wrongly.\n\n3 + 4 = 7.\n\nThe answer is 7.";
        let asked = revision.clone();
        let mut lm = scripted(move |q| {
            if q.text.contains(&asked) {
                second
            } else {
                first
            }
            .to_string()
        });
        let problem = Problem::new("What is 3 + 4?").with_answer("7");
        let strategy = StrategyConfig::SelfCorrect(config);
        let outcome = strategy.run(&mut lm, &problem).unwrap();
        let trace = Trace::from_outcome("q", &problem, &outcome, provenance(&strategy));
        trace.validate().unwrap();
        let [a, b] = trace.candidates[..] else {
            panic!("two attempts: {:?}", trace.candidates)
        };
        // Attempt 2 hangs below attempt 1 and the request, as the model saw it.
        let turn = trace.nodes[b].parent.map(|p| trace.path(p)).unwrap();
        let turn = *turn
            .iter()
            .find(|&&i| trace.nodes[i].kind == NodeKind::UserTurn)
            .unwrap();
        assert_eq!(trace.nodes[turn].parent, Some(a));
        assert_eq!(trace.nodes[turn].text, revision);
        assert!(trace.path(b).contains(&a));
        for (end, candidate) in [(a, &outcome.candidates[0]), (b, &outcome.candidates[1])] {
            assert_eq!(trace.text(end), candidate.text);
            let tokens: u32 = trace.message_path(end)[1..]
                .iter()
                .map(|&i| trace.nodes[i].tokens)
                .sum();
            assert_eq!(tokens, candidate.tokens);
            assert_eq!(trace.nodes[end].correct, candidate.correct);
        }
        assert_eq!(trace.steps(b).len(), 3, "{:?}", trace.steps(b));
        let mut context = outcome.prompt.clone();
        assert_eq!(trace.context(a), context);
        context.push(Message::new("assistant", first));
        context.push(Message::user(revision));
        assert_eq!(trace.context(b), context);
        assert_eq!(trace.chosen, trace.path(b));

        // The exports: the right second attempt is an SFT conversation of four messages; the
        // wrong first one's steps reach no right answer (the one below the request is another
        // message's), so its PRM labels fall to 0; the two attempts answer different
        // conversations and make no preference pair.
        let oracle = ExportOptions {
            oracle: true,
            ..ExportOptions::default()
        };
        let sft = export::sft::records(&trace, &oracle);
        assert_eq!(sft.len(), 1);
        assert_eq!(sft[0].messages[..3], context[..]);
        assert_eq!(sft[0].messages[3].content, second);
        let prm = export::prm::records(&trace, &oracle);
        assert_eq!(
            prm.len(),
            1,
            "only the first attempt has a one-prompt record"
        );
        assert_eq!(prm[0].completions.join("\n\n"), first);
        assert_eq!(prm[0].values.last(), Some(&0.0), "{:?}", prm[0].values);
        match &prm[0].labels {
            export::prm::Labels::Bool(v) => assert_eq!(v.last(), Some(&false), "{v:?}"),
            other => panic!("{other:?}"),
        }
        assert!(export::preference::records(&trace, &oracle).is_empty());
        // No splice crosses the request: the first attempt's continuation is not the second.
        for record in export::records(&trace, Format::Correction, &oracle) {
            assert!(!record.to_string().contains("3 + 4 = 7"), "{record}");
        }
        // And the JSON reads back the same.
        let json = serde_json::to_string(&trace).unwrap();
        assert!(json.contains(r#""kind":"user_turn""#));
        assert_eq!(Trace::from_json(&json).unwrap(), trace);
    }

    #[test]
    fn a_deepening_branch_is_its_segments_and_the_inserted_triggers() {
        use crate::strategy::DeepeningConfig;
        let config = DeepeningConfig {
            width: 2,
            ..DeepeningConfig::default()
        };
        let trigger = config.trigger.clone();
        let mut lm = scripted(|_| "2 * 3 = 6.\n\nThe answer is 6.".to_string());
        let problem = Problem::new("What is 2 * 3?").with_answer("6");
        let strategy = StrategyConfig::Deepening(config);
        let outcome = strategy.run(&mut lm, &problem).unwrap();
        let trace = Trace::from_outcome("q", &problem, &outcome, provenance(&strategy));
        trace.validate().unwrap();
        assert_eq!(trace.candidates.len(), 2);
        for (&end, candidate) in trace.candidates.iter().zip(&outcome.candidates) {
            let path = trace.message_path(end);
            assert_eq!(path[0], 0, "one message from the root");
            assert_eq!(trace.text(end), candidate.text);
            let inserted: Vec<usize> = path
                .iter()
                .copied()
                .filter(|&i| trace.nodes[i].kind == NodeKind::Inserted)
                .collect();
            assert!(
                !inserted.is_empty(),
                "the segments are joined by the trigger"
            );
            for &i in &inserted {
                assert_eq!(trace.nodes[i].text, trigger);
                assert_eq!(trace.nodes[i].tokens, 0);
            }
            let tokens: u32 = path.iter().map(|&i| trace.nodes[i].tokens).sum();
            assert_eq!(tokens, candidate.tokens);
            let logprob: f64 = path.iter().map(|&i| trace.nodes[i].logprob).sum();
            assert!((logprob - candidate.logprob).abs() < 1e-9);
        }
    }

    #[test]
    fn a_best_of_n_candidate_is_one_generation_in_steps() {
        let strategy = StrategyConfig::default_for("best_of_n").unwrap();
        let mut lm = scripted(|_| "2 + 2 = 4.\n\nThe answer is 4.".to_string());
        let problem = Problem::new("What is 2 + 2?").with_answer("4");
        let outcome = strategy.run(&mut lm, &problem).unwrap();
        let trace = Trace::from_outcome("q", &problem, &outcome, provenance(&strategy));
        for (&end, candidate) in trace.candidates.iter().zip(&outcome.candidates) {
            let path = trace.path(end);
            assert_eq!(path.len(), 3, "root and two steps");
            assert!(path.iter().all(|&i| trace.nodes[i].kind.is_generated()));
            assert_eq!(trace.nodes[path[1]].tokens, 0);
            assert_eq!(trace.nodes[end].tokens, candidate.tokens);
            assert_eq!(trace.context(end), outcome.prompt);
        }
        assert!(!serde_json::to_string(&trace).unwrap().contains(r#""kind""#));
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
                    ..Default::default()
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
