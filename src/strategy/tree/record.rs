//! The record a tree search leaves: its [`SearchTree`] of [`TreeNode`]s (one reasoning step
//! each) with their [`RolloutRecord`]s, and the tree drawn as Graphviz DOT.

use serde::{Deserialize, Serialize};

use super::StopReason;
use crate::lm::FinishReason;

/// A rollout: a greedy continuation of a step to a finished solution, judged as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Tokens generated.
    pub tokens: u32,
    /// The rollout's text (after the step).
    pub text: String,
    /// The answer the rollout reached.
    pub answer: Option<String>,
    /// Whether that answer matches the reference, when one was given.
    pub correct: Option<bool>,
    /// The self-judge's outcome score of the finished solution.
    pub score: f64,
}

/// One node of a search tree: a reasoning step (node 0 is the question).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Index in [`SearchTree::nodes`].
    pub id: usize,
    /// The parent's id (`None` for the root).
    pub parent: Option<usize>,
    /// Children's ids, in the order they were sampled.
    pub children: Vec<usize>,
    /// Steps from the root.
    pub depth: u32,
    /// The step's text (empty for the root).
    pub text: String,
    /// The step's tokens.
    pub tokens: u32,
    /// Sum of the step's token log-probabilities.
    pub logprob: f64,
    /// Why the step's generation ended.
    pub finish: Option<FinishReason>,
    /// The self-judge's score: of the step (is it correct?), or for a finished solution of the
    /// whole solution.
    pub judge: Option<f64>,
    /// MCTS: the prior from the step's normalised log-probability among its siblings.
    pub prior: Option<f64>,
    /// How many search iterations went through the node (beam: nodes judged in its subtree).
    pub visits: u32,
    /// The node's value in [0, 1].
    pub value: f64,
    /// The path ends here with an answer (or the model ended its turn).
    pub terminal: bool,
    /// The path cannot go on: no answer within the depth limit or the context, or no acceptable
    /// step could be sampled.
    pub dead_end: bool,
    /// For terminal nodes: the final answer of the path.
    pub answer: Option<String>,
    /// For terminal nodes with a reference answer: whether the answer is right.
    pub correct: Option<bool>,
    /// MCTS with rollouts: the greedy rollout from this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutRecord>,
    /// Running sum of backed-up rewards (MCTS running-mean backup).
    #[serde(skip)]
    pub(crate) reward_sum: f64,
    /// Whether the search valued the node ([`Search::evaluate`]).
    #[serde(skip)]
    pub(crate) evaluated: bool,
}

impl TreeNode {
    pub(super) fn root() -> Self {
        Self {
            id: 0,
            parent: None,
            children: Vec::new(),
            depth: 0,
            text: String::new(),
            tokens: 0,
            logprob: 0.0,
            finish: None,
            judge: None,
            prior: None,
            visits: 0,
            value: 0.0,
            terminal: false,
            dead_end: false,
            answer: None,
            correct: None,
            rollout: None,
            reward_sum: 0.0,
            evaluated: false,
        }
    }

    /// Whether the node can get children.
    pub fn expandable(&self) -> bool {
        !self.terminal && !self.dead_end
    }
}

/// A search's tree: every node it kept, the chosen path and why it stopped — the record the
/// training-data exports are made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchTree {
    /// The nodes; `nodes[0]` is the question.
    pub nodes: Vec<TreeNode>,
    /// Node ids from the root to the chosen node.
    pub chosen: Vec<usize>,
    /// Why the search stopped.
    pub stop: StopReason,
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the self-judge's inline questions, all of them.
    pub judge_tokens: u64,
    /// Steps sampled and rejected (empty, too short, repeated).
    pub rejected_steps: u32,
    /// Tokens of the rejected steps.
    pub rejected_tokens: u64,
    /// Tokens of rollouts.
    pub rollout_tokens: u64,
    /// Search iterations run.
    pub iterations: u32,
}

/// The ids from the root to `id`, given each node's parent.
pub(crate) fn root_path(id: usize, parent: impl Fn(usize) -> Option<usize>) -> Vec<usize> {
    let mut path = vec![id];
    let mut at = id;
    while let Some(p) = parent(at) {
        path.push(p);
        at = p;
    }
    path.reverse();
    path
}

impl SearchTree {
    /// Ids from the root to `id`.
    pub fn path(&self, id: usize) -> Vec<usize> {
        root_path(id, |at| self.nodes[at].parent)
    }

    /// The steps' text from the root to `id`.
    pub fn path_text(&self, id: usize) -> String {
        self.path(id)
            .into_iter()
            .map(|i| self.nodes[i].text.as_str())
            .collect()
    }

    /// Tokens of all kept steps.
    pub fn node_tokens(&self) -> u64 {
        self.nodes.iter().map(|n| u64::from(n.tokens)).sum()
    }

    /// Every token the tree holds or held: prompt, kept steps, rejected steps, rollouts and judge
    /// questions. A search that decodes nothing twice processes exactly these.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens
            + self.node_tokens()
            + self.rejected_tokens
            + self.rollout_tokens
            + self.judge_tokens
    }

    /// The tree as Graphviz `dot` text: one box per step with its value, visits and judge score;
    /// the chosen path in bold blue; finished solutions green when right, red when wrong, grey
    /// when unlabelled; dead ends dashed. Render with `dot -Tsvg tree.dot -o tree.svg`.
    pub fn to_dot(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::from(
            "digraph search {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n",
        );
        let on_path = |id: usize| self.chosen.contains(&id);
        for n in &self.nodes {
            let mut label = if n.id == 0 {
                "question".to_string()
            } else {
                let flat = n.text.split_whitespace().collect::<Vec<_>>().join(" ");
                let t: String = flat.chars().take(48).collect();
                let ellipsis = if flat.chars().count() > 48 { "…" } else { "" };
                format!("{t}{ellipsis}")
            };
            let _ = write!(label, "\nV={:.2} n={}", n.value, n.visits);
            if let Some(j) = n.judge {
                let _ = write!(label, " judge={j:.2}");
            }
            if let Some(a) = &n.answer {
                let _ = write!(label, "\nanswer: {a}");
            }
            let mut attrs = vec![format!("label=\"{}\"", dot_escape(&label))];
            if n.terminal {
                let color = match n.correct {
                    Some(true) => "palegreen",
                    Some(false) => "lightpink",
                    None => "lightgrey",
                };
                attrs.push(format!("style=filled, fillcolor={color}"));
            } else if n.dead_end {
                attrs.push("style=dashed".into());
            }
            if on_path(n.id) {
                attrs.push("penwidth=3, color=blue".into());
            }
            let _ = writeln!(s, "  n{} [{}];", n.id, attrs.join(", "));
        }
        for n in &self.nodes {
            if let Some(p) = n.parent {
                let style = if on_path(n.id) && on_path(p) {
                    " [penwidth=3, color=blue]"
                } else {
                    ""
                };
                let _ = writeln!(s, "  n{p} -> n{}{style};", n.id);
            }
        }
        s.push_str("}\n");
        s
    }
}

fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_escapes_quotes_and_newlines() {
        assert_eq!(dot_escape("a \"b\"\nc\\"), "a \\\"b\\\"\\nc\\\\");
    }
}
