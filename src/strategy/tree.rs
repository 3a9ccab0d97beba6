//! What the step-level tree searches ([`mcts`](super::mcts), [`beam`](super::beam)) share: the
//! search tree they record, their budget, how a step is sampled and checked, and how nodes are
//! judged in place.
//!
//! A tree node is one reasoning step. Its tokens live in the [`Lm`]'s prefix tree as a child of
//! its parent step's node, so the question and the steps above it are never decoded again: a
//! child costs its own tokens, and the self-judge's verdict on it costs the few tokens of the
//! inline question ([`Judge::score_inline`]) appended to it and released after.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{limits, Candidate, Event, Frame, Observer, Outcome, Problem, PromptConfig};
use crate::error::{ConfigError, Error};
use crate::lm::{FinishReason, GenRequest, Lm, Message, Node, SamplingParams, Usage};
use crate::reward::judge::{Judge, JudgeConfig, Verdict};

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

/// What a tree node's value is made of (`value` of [`mcts`](super::mcts) and
/// [`beam`](super::beam)).
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
    fn root() -> Self {
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

impl SearchTree {
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

/// A step's text reduced for repetition checks: lower case, words separated by single spaces.
fn normalise_step(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A search in progress: the tree, the model's node for each tree node, the judge and the budget.
/// Dropping it releases every model node it holds.
pub(crate) struct Search<'a, 'o> {
    pub lm: &'a mut dyn Lm,
    observer: &'a mut Observer<'o>,
    pub tree: SearchTree,
    handles: Vec<Option<Node>>,
    judge: Judge,
    step: StepConfig,
    budget: Budget,
    problem: &'a Problem,
    /// The conversation the root was made from, for the outcome.
    prompt: Vec<Message>,
    samples: u64,
    start: Instant,
    before: Usage,
    /// With a wall-time budget: when it runs out, and the model's interrupt check from before
    /// the search (put back when the search ends).
    deadline: Option<(Instant, Option<crate::lm::Interrupt>)>,
}

impl Drop for Search<'_, '_> {
    fn drop(&mut self) {
        if let Some((_, outer)) = self.deadline.take() {
            self.lm.set_interrupt(outer);
        }
        for h in self.handles.drain(..).flatten() {
            self.lm.release(h);
        }
    }
}

impl<'a, 'o> Search<'a, 'o> {
    /// Renders the prompt and starts the tree.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lm: &'a mut dyn Lm,
        observer: &'a mut Observer<'o>,
        problem: &'a Problem,
        prompt: &PromptConfig,
        judge: &JudgeConfig,
        step: &StepConfig,
        budget: &Budget,
    ) -> Result<Self, Error> {
        let before = lm.usage();
        let start = Instant::now();
        let judge = Judge::new(lm, judge.clone())?;
        let messages = prompt.messages(&problem.question);
        let root = lm.root(&messages)?;
        let prompt_tokens = lm.node_len(root)? as u64;
        // A wall-time budget stops the model within one forward pass (through its interrupt
        // check), not only between iterations.
        let deadline = budget.wall_ms.map(|ms| {
            let at = start + std::time::Duration::from_millis(ms);
            let outer = lm.interrupt();
            let inner = outer.clone();
            lm.set_interrupt(Some(std::sync::Arc::new(move || {
                Instant::now() >= at || inner.as_ref().is_some_and(|f| f())
            })));
            (at, outer)
        });
        Ok(Self {
            lm,
            observer,
            tree: SearchTree {
                nodes: vec![TreeNode::root()],
                chosen: vec![0],
                stop: StopReason::Exhausted,
                prompt_tokens,
                judge_tokens: 0,
                rejected_steps: 0,
                rejected_tokens: 0,
                rollout_tokens: 0,
                iterations: 0,
            },
            handles: vec![Some(root)],
            judge,
            step: step.clone(),
            budget: budget.clone(),
            problem,
            prompt: messages,
            samples: 0,
            start,
            before,
            deadline,
        })
    }

    /// Why the search must stop, when `e` is the model's cancellation: the caller cancelled
    /// ([`StopReason::Cancelled`]) or the wall-time budget ran out. Any other error is returned.
    ///
    /// # Errors
    /// `e`, when it is not a cancellation.
    pub fn stop_for(&self, e: Error) -> Result<StopReason, Error> {
        if !matches!(e, Error::Cancelled) {
            return Err(e);
        }
        let outer_fired = match &self.deadline {
            Some((_, outer)) => outer.as_ref().is_some_and(|f| f()),
            None => true,
        };
        match &self.deadline {
            Some((at, _)) if !outer_fired && Instant::now() >= *at => Ok(StopReason::Budget {
                limit: Limit::WallTime,
            }),
            _ => Ok(StopReason::Cancelled),
        }
    }

    /// The work done so far.
    pub fn usage(&self) -> Usage {
        self.lm.usage().since(&self.before)
    }

    /// The first limit reached, if any.
    pub fn exceeded(&self) -> Option<Limit> {
        self.resources_exceeded().or_else(|| {
            let limit = self.budget.iterations?;
            (self.tree.iterations >= limit).then_some(Limit::Iterations)
        })
    }

    /// The first limit on tokens, passes or time reached, if any: checked between the batched
    /// calls of one iteration (the iteration limit counts whole iterations).
    pub fn resources_exceeded(&self) -> Option<Limit> {
        let used = self.usage();
        let over = |limit: Option<u64>, value: u64| limit.is_some_and(|l| value >= l);
        if over(self.budget.tokens, used.generated_tokens) {
            Some(Limit::Tokens)
        } else if over(self.budget.forward_passes, used.forward_passes) {
            Some(Limit::ForwardPasses)
        } else if over(self.budget.wall_ms, self.start.elapsed().as_millis() as u64) {
            Some(Limit::WallTime)
        } else {
            None
        }
    }

    fn next_sampling(&mut self) -> SamplingParams {
        let s = self
            .step
            .sampling
            .with_seed(self.step.sampling.seed.wrapping_add(self.samples));
        self.samples += 1;
        s
    }

    /// Samples `count` new children for each `(parent, count)` in one batched call, sampling
    /// rejected ones again (at most `step.retries` more calls, while the budget lasts). Returns
    /// the accepted children's ids in order; a parent that got none becomes a dead end.
    pub fn expand(&mut self, requests: &[(usize, u32)]) -> Result<Vec<usize>, Error> {
        let mut missing: Vec<(usize, u32)> = requests.to_vec();
        let mut added = Vec::new();
        for attempt in 0..=self.step.retries {
            if missing.iter().all(|&(_, n)| n == 0)
                || (attempt > 0 && self.resources_exceeded().is_some())
            {
                break;
            }
            let mut owners = Vec::new();
            let mut batch = Vec::new();
            for &(parent, n) in &missing {
                let node = self.handles[parent].expect("expandable nodes hold a model node");
                for _ in 0..n {
                    owners.push(parent);
                    batch.push(GenRequest {
                        parent: node,
                        sampling: self.next_sampling(),
                        stop: self.step.delimiters.clone(),
                        max_tokens: self.step.max_tokens,
                        ignore_eos: false,
                        confidence_stop: None,
                    });
                }
            }
            let generations = self.lm.generate(&batch)?;
            for (g, parent) in generations.into_iter().zip(owners) {
                if self.acceptable(parent, &g.text) {
                    added.push(self.add_child(parent, g));
                    if let Some(m) = missing.iter_mut().find(|(p, _)| *p == parent) {
                        m.1 -= 1;
                    }
                } else {
                    self.tree.rejected_steps += 1;
                    self.tree.rejected_tokens += u64::from(g.tokens);
                    self.lm.release(g.node);
                }
            }
        }
        for &(parent, _) in requests {
            if self.tree.nodes[parent].children.is_empty() {
                self.tree.nodes[parent].dead_end = true;
            }
        }
        // Reported once every sampled node is in the tree (or released), so that a stop
        // requested by the observer leaves nothing behind.
        for &id in &added {
            let n = &self.tree.nodes[id];
            self.observer.emit(Event::Step {
                node: id,
                parent: n.parent.expect("a child has a parent"),
                depth: n.depth,
                tokens: n.tokens,
                text: n.text.clone(),
            })?;
        }
        Ok(added)
    }

    /// Whether `text` is an acceptable next step after `parent`: not blank, at least
    /// `min_chars` non-blank characters, not a repeat of a step above it or of a sibling.
    fn acceptable(&self, parent: usize, text: &str) -> bool {
        let norm = normalise_step(text);
        if norm.chars().filter(|c| !c.is_whitespace()).count() < self.step.min_chars.max(1) as usize
        {
            return false;
        }
        let path = self.tree.path(parent);
        let siblings = &self.tree.nodes[parent].children;
        !path
            .iter()
            .chain(siblings)
            .any(|&i| i != 0 && normalise_step(&self.tree.nodes[i].text) == norm)
    }

    fn add_child(&mut self, parent: usize, g: crate::lm::Generation) -> usize {
        let id = self.tree.nodes.len();
        let depth = self.tree.nodes[parent].depth + 1;
        let path_text = self.tree.path_text(parent) + &g.text;
        let marked = self.problem.explicit(&path_text);
        let ended = g.finish == FinishReason::Eos;
        let terminal = marked.is_some() || ended;
        let answer = if terminal {
            marked.or_else(|| self.problem.extract(&path_text))
        } else {
            None
        };
        let dead_end =
            !terminal && (g.finish == FinishReason::ContextFull || depth >= self.step.max_depth);
        self.tree.nodes.push(TreeNode {
            id,
            parent: Some(parent),
            children: Vec::new(),
            depth,
            text: g.text,
            tokens: g.tokens,
            logprob: g.logprob,
            finish: Some(g.finish),
            judge: None,
            prior: None,
            visits: 0,
            value: 0.0,
            terminal,
            dead_end,
            correct: if terminal {
                self.problem.check(answer.as_deref())
            } else {
                None
            },
            answer,
            rollout: None,
            reward_sum: 0.0,
            evaluated: false,
        });
        self.tree.nodes[parent].children.push(id);
        self.handles.push(Some(g.node));
        id
    }

    /// Values `ids` by `signal`. [`ValueSignal::Judge`]: judged in place in one batched call,
    /// finished solutions by the outcome question, other steps by the step question; sets each
    /// node's `judge` and `value` (the score). [`ValueSignal::Logprob`]: the path's likelihood
    /// ([`Search::path_likelihood`]), no model call; `judge` stays unset.
    pub fn evaluate(&mut self, ids: &[usize], signal: ValueSignal) -> Result<(), Error> {
        let scores: Vec<f64> = match signal {
            ValueSignal::Judge => {
                let queries: Vec<(Node, Verdict)> = ids
                    .iter()
                    .map(|&i| {
                        let kind = if self.tree.nodes[i].terminal {
                            Verdict::Outcome
                        } else {
                            Verdict::Step
                        };
                        (self.handles[i].expect("tree nodes hold a model node"), kind)
                    })
                    .collect();
                let (scores, tokens) = self.judge.score_inline(self.lm, &queries)?;
                self.tree.judge_tokens += tokens as u64;
                for (&i, s) in ids.iter().zip(&scores) {
                    self.tree.nodes[i].judge = Some(s.score);
                }
                scores.into_iter().map(|s| s.score).collect()
            }
            ValueSignal::Logprob => ids
                .iter()
                .map(|&i| self.path_likelihood(i, 0.0, 0))
                .collect(),
        };
        for (&i, score) in ids.iter().zip(scores) {
            let node = &mut self.tree.nodes[i];
            node.evaluated = true;
            node.value = match node.correct {
                // `--oracle-guided`: the reference answer values finished solutions.
                Some(right) if self.problem.oracle_guided && node.terminal => {
                    f64::from(u8::from(right))
                }
                _ => score,
            };
            let (judge, value) = (node.judge.unwrap_or(f64::NAN), node.value);
            self.observer.emit(Event::Scored {
                node: i,
                judge,
                value,
            })?;
        }
        Ok(())
    }

    /// The likelihood of the path from the first step to `id`, followed by `extra_tokens` more
    /// tokens of summed log-probability `extra_logprob` (a rollout): `exp` of the mean token
    /// log-probability, the geometric mean of the tokens' probabilities, in (0, 1] (1 for a path
    /// without tokens).
    pub fn path_likelihood(&self, id: usize, extra_logprob: f64, extra_tokens: u32) -> f64 {
        let path = self.tree.path(id);
        let tokens: u64 = path
            .iter()
            .map(|&i| u64::from(self.tree.nodes[i].tokens))
            .sum::<u64>()
            + u64::from(extra_tokens);
        let logprob: f64 = path
            .iter()
            .map(|&i| self.tree.nodes[i].logprob)
            .sum::<f64>()
            + extra_logprob;
        if tokens == 0 {
            1.0
        } else {
            (logprob / tokens as f64).exp().clamp(0.0, 1.0)
        }
    }

    /// Greedy rollouts of at most `max_tokens` from each expandable node of `ids` (one batched
    /// call), each judged as a finished solution (one batched call). Returns the outcome score
    /// per id (`None` for nodes that got no rollout).
    pub fn rollouts(
        &mut self,
        ids: &[usize],
        max_tokens: u32,
        signal: ValueSignal,
    ) -> Result<Vec<Option<f64>>, Error> {
        let targets: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| self.tree.nodes[i].expandable())
            .collect();
        if targets.is_empty() {
            return Ok(vec![None; ids.len()]);
        }
        let batch: Vec<GenRequest> = targets
            .iter()
            .map(|&i| GenRequest {
                parent: self.handles[i].expect("tree nodes hold a model node"),
                sampling: SamplingParams::greedy(),
                stop: Vec::new(),
                max_tokens,
                ignore_eos: false,
                confidence_stop: None,
            })
            .collect();
        let generations = self.lm.generate(&batch)?;
        let nodes: Vec<Node> = generations.iter().map(|g| g.node).collect();
        let judged = match signal {
            ValueSignal::Judge => {
                let queries: Vec<(Node, Verdict)> =
                    nodes.iter().map(|&n| (n, Verdict::Outcome)).collect();
                self.judge
                    .score_inline(self.lm, &queries)
                    .map(|(s, t)| (s.into_iter().map(|s| s.score).collect(), t))
            }
            ValueSignal::Logprob => Ok((
                generations
                    .iter()
                    .zip(&targets)
                    .map(|(g, &i)| self.path_likelihood(i, g.logprob, g.tokens))
                    .collect::<Vec<f64>>(),
                0,
            )),
        };
        for &n in &nodes {
            self.lm.release(n);
        }
        let (scores, tokens) = judged?;
        self.tree.judge_tokens += tokens as u64;
        let mut out = vec![None; ids.len()];
        for ((g, score), &i) in generations.into_iter().zip(scores).zip(&targets) {
            self.tree.rollout_tokens += u64::from(g.tokens);
            let full = self.tree.path_text(i) + &g.text;
            let answer = self.problem.extract(&full);
            self.tree.nodes[i].rollout = Some(RolloutRecord {
                tokens: g.tokens,
                text: g.text,
                correct: self.problem.check(answer.as_deref()),
                answer,
                score,
            });
            let at = ids
                .iter()
                .position(|&x| x == i)
                .expect("a target is in ids");
            out[at] = Some(score);
        }
        Ok(out)
    }

    /// Ends the search: the tree with `chosen` (a node id) and `stop`, and the outcome built from
    /// it. Candidates are the finished solutions in the order they were found, then the chosen
    /// node's path if it is not one of them.
    pub fn finish(mut self, strategy: &str, chosen: usize, stop: StopReason) -> Outcome {
        self.tree.chosen = self.tree.path(chosen);
        self.tree.stop = stop;
        let usage = self.usage();
        let tree = std::mem::replace(
            &mut self.tree,
            SearchTree {
                nodes: Vec::new(),
                chosen: Vec::new(),
                stop,
                prompt_tokens: 0,
                judge_tokens: 0,
                rejected_steps: 0,
                rejected_tokens: 0,
                rollout_tokens: 0,
                iterations: 0,
            },
        );
        let mut ids: Vec<usize> = tree
            .nodes
            .iter()
            .filter(|n| n.terminal)
            .map(|n| n.id)
            .collect();
        if !ids.contains(&chosen) {
            ids.push(chosen);
        }
        let candidates: Vec<Candidate> = ids
            .iter()
            .map(|&i| path_candidate(&tree, i, self.problem))
            .collect();
        let index = ids.iter().position(|&i| i == chosen).expect("pushed above");
        let frame = Frame {
            usage,
            prompt: std::mem::take(&mut self.prompt),
        };
        let mut outcome =
            Outcome::pick(strategy, self.problem, candidates, index, Vec::new(), frame);
        outcome.tree = Some(Box::new(tree));
        outcome
    }
}

/// The path from the root to `id` as a candidate solution.
fn path_candidate(tree: &SearchTree, id: usize, problem: &Problem) -> Candidate {
    let path = tree.path(id);
    let node = &tree.nodes[id];
    let tokens: u32 = path.iter().map(|&i| tree.nodes[i].tokens).sum();
    let logprob: f64 = path.iter().map(|&i| tree.nodes[i].logprob).sum();
    let text = tree.path_text(id);
    let answer = if node.terminal {
        node.answer.clone()
    } else {
        problem.extract(&text)
    };
    Candidate {
        correct: problem.check(answer.as_deref()),
        answer,
        text,
        tokens,
        logprob,
        mean_logprob: if tokens == 0 {
            0.0
        } else {
            logprob / f64::from(tokens)
        },
        judge: node.judge,
        score: node.value,
        finish: node.finish.clone().unwrap_or(FinishReason::MaxTokens),
        confidence: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn steps_normalise_for_repetition() {
        assert_eq!(
            normalise_step("  Step 1:\n 2 + 2 = 4\n\n"),
            "step 1: 2 + 2 = 4"
        );
    }

    #[test]
    fn dot_escapes_quotes_and_newlines() {
        assert_eq!(dot_escape("a \"b\"\nc\\"), "a \\\"b\\\"\\nc\\\\");
    }
}
