//! Step-level Monte Carlo tree search guided by the model's own process reward, after
//! ReST-MCTS* and AlphaLLM.
//!
//! A node is a reasoning step ([`StepConfig`]: it ends at a blank line, or where the model ends
//! its turn or states an answer). One iteration:
//!
//! 1. **Select.** From the root, while the node has children: if it may widen ([`Widen`]: its
//!    children's values disagree by at least `spread` and it has fewer than `max_children`), stop
//!    there; else go to a child: an unvisited one first (UCT: the highest value; PUCT: the highest
//!    `V + c·P·√N`), else the one with the highest UCT `V + c·√(ln N / n)` or PUCT
//!    `V + c·P·√N / (1 + n)` (`N` the parent's visits, `n` the child's, `P` the child's prior: a
//!    softmax over the siblings' mean token log-probabilities at `prior_temperature`). Ties go to
//!    the earlier child. Only children whose subtree can still grow are candidates.
//! 2. **Expand.** The selected node gets `k` children (or up to `max_children` when widening),
//!    sampled in one batched call; rejected steps are sampled again ([`StepConfig::retries`]).
//! 3. **Evaluate.** All new children are valued ([`ValueSignal`], `value`): by default by the
//!    path's likelihood (`exp` of the mean token log-probability from the first step to the new
//!    one; no model call), or with `value: judge` in one batched call, in place: a step by the
//!    inline step question, a finished solution by the inline outcome question. With
//!    [`RolloutConfig`], each unfinished child also gets a greedy rollout to an answer, valued as
//!    a finished solution; its value is `(1 − α)·step + α·outcome`. New children have 0 visits.
//!    With `dive` (default), the best new child then goes on one sampled step at a time (each
//!    step a node, valued the same way) until it finishes or dead-ends, and the selected path is
//!    extended by that chain; a node a dive went through has fewer than `k` children and gets the
//!    missing ones when it is selected again.
//! 4. **Backup.** Every node on the selected path gets one more visit, and its value becomes
//!    ([`Backup`]) the visit-weighted mean of its children's values, each child weighing its
//!    visits + 1 (ReST-MCTS*), or the running mean of its own evaluation and every reward backed
//!    up through it, a reward being the mean value of one expansion's new children.
//!
//! The search stops when a finished solution's value reaches `end_gate` (off by default), when
//! the budget runs out, or when nothing is left to expand. The answer ([`AnswerBy`]): the end
//! gate's node when it stopped the search; else a value-weighted vote over the finished
//! solutions' answers (default), or the path followed greedily by value (or by visits) through
//! subtrees that hold a finished solution.
//!
//! Why these defaults (measured on the reasoner, Qwen2.5-Coder-0.5B:
//! `docs/src/measurements/2026-12-01-tree-search.md`): the judge-valued,
//! breadth-first search of ReST-MCTS* spent 1024 tokens three steps deep, seldom reached a
//! finished solution (the answer was then the last number of a partial path), and its in-place
//! step judge ranked right paths below wrong ones (AUC 0.10). Dives make every iteration end in a
//! finished solution, the likelihood discriminates where the judge does not, and the vote over
//! the finished solutions is what buys accuracy, as in best-of-N.

use serde::{Deserialize, Serialize};

use super::tree::{Budget, Search, StepConfig, StopReason, TreeNode, ValueSignal};
use super::{limits, Outcome, PromptConfig, Strategy};
use crate::error::{ConfigError, Error};
use crate::reward::judge::JudgeConfig;
use crate::reward::vote;

/// The selection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// `V + c·√(ln N / n)`.
    #[default]
    Uct,
    /// `V + c·P·√N / (1 + n)`, `P` from the steps' normalised log-probabilities.
    Puct,
}

/// How values flow up the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backup {
    /// The children's values weighted by their visits + 1 (ReST-MCTS*).
    #[default]
    VisitWeighted,
    /// The mean of the node's own evaluation and every reward backed up through it.
    Mean,
}

/// How the final answer is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerBy {
    /// Greedy by value from the root.
    Value,
    /// Greedy by visits from the root (value breaks ties).
    Visits,
    /// Vote over finished solutions' answers, weighted by their values (the default; numeric
    /// answers only: free text cannot be voted on).
    #[default]
    Vote,
}

/// Adaptive width: give a node more children when its children disagree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widen {
    /// Widen when the children's values span at least this much (max − min), in [0, 1].
    pub spread: f64,
    /// Children per node, at most.
    pub max_children: u32,
}

/// Greedy rollouts mixed into new children's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Weight of the rollout's outcome score, in [0, 1].
    pub alpha: f64,
    /// Tokens per rollout, at most.
    pub max_tokens: u32,
}

/// Configuration of this strategy (the module's [`Strategy`] implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MctsConfig {
    /// Children per expansion, 1..=64.
    pub k: u32,
    /// The selection rule.
    pub selection: Selection,
    /// Exploration constant, ≥ 0.
    pub c: f64,
    /// PUCT: temperature of the softmax over mean log-probabilities that makes the priors (> 0).
    pub prior_temperature: f64,
    /// Adaptive width (off when null).
    pub widen: Option<Widen>,
    /// Rollouts (off when null).
    pub rollout: Option<RolloutConfig>,
    /// Continue the best new child of every expansion, one sampled step at a time, to a finished
    /// solution (ReST-MCTS*'s simulation, kept in the tree): every iteration ends with a finished
    /// solution to value and vote on, and a step a dive went through gets its missing children
    /// when the search selects it again.
    pub dive: bool,
    /// What a new node's value is made of: `logprob` (default), the path's likelihood, or
    /// `judge`, the in-place self-judge's verdict.
    pub value: ValueSignal,
    /// The backup rule.
    pub backup: Backup,
    /// Stop when a finished solution's value reaches this, in [0, 1] (null: never).
    pub end_gate: Option<f64>,
    /// How the answer is chosen.
    pub answer_by: AnswerBy,
    /// How steps are sampled and checked.
    pub step: StepConfig,
    /// When to stop.
    pub budget: Budget,
    /// How the solver is asked.
    pub prompt: PromptConfig,
    /// The self-judge.
    pub judge: JudgeConfig,
}

impl Default for MctsConfig {
    fn default() -> Self {
        Self {
            k: 2,
            selection: Selection::Uct,
            c: 1.0,
            prior_temperature: 1.0,
            widen: None,
            rollout: None,
            dive: true,
            value: ValueSignal::default(),
            backup: Backup::VisitWeighted,
            end_gate: None,
            answer_by: AnswerBy::Vote,
            step: StepConfig::default(),
            budget: Budget::default(),
            prompt: PromptConfig::default(),
            judge: JudgeConfig::default(),
        }
    }
}

impl MctsConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=limits::MAX_CHILDREN).contains(&self.k) {
            return Err(ConfigError::new(
                "k",
                format!("{} children per expansion is outside 1..=64", self.k),
            ));
        }
        if !(self.c.is_finite() && self.c >= 0.0) {
            return Err(ConfigError::new(
                "c",
                format!(
                    "{} is not a valid exploration constant; use a number ≥ 0 (0: pure exploitation)",
                    self.c
                ),
            ));
        }
        if !(self.prior_temperature.is_finite() && self.prior_temperature > 0.0) {
            return Err(ConfigError::new(
                "prior_temperature",
                format!("{} must be a number > 0", self.prior_temperature),
            ));
        }
        if let Some(g) = self.end_gate {
            if !(0.0..=1.0).contains(&g) {
                return Err(ConfigError::new(
                    "end_gate",
                    format!(
                        "{g} is outside [0, 1]; values are probabilities (null: never stop early)"
                    ),
                ));
            }
        }
        if let Some(w) = &self.widen {
            if !(0.0..=1.0).contains(&w.spread) {
                return Err(ConfigError::new(
                    "widen.spread",
                    format!("{} is outside [0, 1]", w.spread),
                ));
            }
            if w.max_children < self.k || w.max_children > 256 {
                return Err(ConfigError::new(
                    "widen.max_children",
                    format!("{} must be between k ({}) and 256", w.max_children, self.k),
                ));
            }
        }
        if let Some(r) = &self.rollout {
            if !(0.0..=1.0).contains(&r.alpha) {
                return Err(ConfigError::new(
                    "rollout.alpha",
                    format!("{} is outside [0, 1]", r.alpha),
                ));
            }
            limits::check_max_tokens("rollout.max_tokens", r.max_tokens)?;
        }
        self.step.validate()?;
        self.budget.validate()
    }
}

tree_strategy!(MctsConfig, "mcts", votes: AnswerBy::Vote);

/// Runs the search, reporting every step and verdict through `search`'s observer.
fn run(config: &MctsConfig, mut search: Search<'_, '_>) -> Result<Outcome, Error> {
    let stop = loop {
        if let Some(limit) = search.exceeded() {
            break StopReason::Budget { limit };
        }
        let Some((leaf, path)) = select(config, &search.tree.nodes) else {
            break StopReason::Exhausted;
        };
        search.tree.iterations += 1;
        let have = search.tree.nodes[leaf].children.len() as u32;
        let count = match (&config.widen, have) {
            _ if config.dive && have < config.k => config.k - have,
            (Some(w), h) if h > 0 => config.k.min(w.max_children - h),
            _ => config.k,
        };
        let children = match search.expand(&[(leaf, count)]) {
            Ok(c) => c,
            Err(e) => break search.stop_for(e)?,
        };
        if !children.is_empty() {
            if let Err(e) = search.evaluate(&children, config.value) {
                break search.stop_for(e)?;
            }
            if let Some(r) = &config.rollout {
                if search.resources_exceeded().is_none() {
                    let outcomes = match search.rollouts(&children, r.max_tokens, config.value) {
                        Ok(o) => o,
                        Err(e) => break search.stop_for(e)?,
                    };
                    for (&c, o) in children.iter().zip(outcomes) {
                        if let Some(o) = o {
                            let node = &mut search.tree.nodes[c];
                            node.value = (1.0 - r.alpha) * node.value + r.alpha * o;
                        }
                    }
                }
            }
            set_priors(config, &mut search.tree.nodes, leaf);
        }
        // With `dive`, the best new child goes on one sampled step at a time to a finished
        // solution (each step a node, valued like the others), and the values back up from there.
        let (mut path, mut new) = (path, children.clone());
        let mut dived = Vec::new();
        if config.dive {
            let nodes = &search.tree.nodes;
            let best = children
                .iter()
                .copied()
                .filter(|&c| nodes[c].expandable())
                .max_by(|&a, &b| nodes[a].value.total_cmp(&nodes[b].value).then(b.cmp(&a)));
            if let Some(mut at) = best {
                let mut cancelled = None;
                while search.tree.nodes[at].expandable() && search.resources_exceeded().is_none() {
                    let next = match search.expand(&[(at, 1)]) {
                        Ok(c) => c,
                        Err(e) => {
                            cancelled = Some(e);
                            break;
                        }
                    };
                    let Some(&next) = next.first() else {
                        break;
                    };
                    if let Err(e) = search.evaluate(&[next], config.value) {
                        cancelled = Some(e);
                        break;
                    }
                    set_priors(config, &mut search.tree.nodes, at);
                    dived.push(next);
                    path.push(at);
                    new = vec![next];
                    at = next;
                }
                if let Some(e) = cancelled {
                    backup(config.backup, &mut search.tree.nodes, &path, &new);
                    break search.stop_for(e)?;
                }
            }
        }
        backup(config.backup, &mut search.tree.nodes, &path, &new);
        if let Some(gate) = config.end_gate {
            let passed = children
                .iter()
                .chain(&dived)
                .copied()
                .filter(|&c| search.tree.nodes[c].terminal && search.tree.nodes[c].value >= gate)
                .max_by(|&a, &b| {
                    let (va, vb) = (search.tree.nodes[a].value, search.tree.nodes[b].value);
                    va.total_cmp(&vb).then(b.cmp(&a))
                });
            if let Some(node) = passed {
                break StopReason::EndGate { node };
            }
        }
    };
    let chosen = match stop {
        StopReason::EndGate { node } => node,
        _ => choose(config.answer_by, &search.tree.nodes),
    };
    Ok(search.finish(config.name(), chosen, stop))
}

/// Whether the subtree under `id` can still grow (an expandable leaf, or a node that may widen).
fn open(config: &MctsConfig, nodes: &[TreeNode], id: usize) -> bool {
    let n = &nodes[id];
    if !n.expandable() {
        return false;
    }
    n.children.is_empty()
        || may_widen(config, nodes, id)
        || partial(config, n)
        || n.children.iter().any(|&c| open(config, nodes, c))
}

/// With `dive`: an expandable node with fewer than `k` children (a step a dive went through)
/// gets its missing children when selected.
fn partial(config: &MctsConfig, n: &TreeNode) -> bool {
    config.dive && n.expandable() && !n.children.is_empty() && (n.children.len() as u32) < config.k
}

fn may_widen(config: &MctsConfig, nodes: &[TreeNode], id: usize) -> bool {
    let Some(w) = &config.widen else {
        return false;
    };
    let n = &nodes[id];
    if n.children.len() < 2 || n.children.len() as u32 >= w.max_children || !n.expandable() {
        return false;
    }
    let values = n.children.iter().map(|&c| nodes[c].value);
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    let min = values.fold(f64::INFINITY, f64::min);
    max - min >= w.spread
}

/// The node to expand and the path to it, or `None` when nothing can grow.
fn select(config: &MctsConfig, nodes: &[TreeNode]) -> Option<(usize, Vec<usize>)> {
    if !open(config, nodes, 0) {
        return None;
    }
    let mut at = 0;
    let mut path = vec![0];
    loop {
        let n = &nodes[at];
        if n.children.is_empty() || may_widen(config, nodes, at) || partial(config, n) {
            return Some((at, path));
        }
        let parent_visits = f64::from(n.visits);
        let candidates: Vec<usize> = n
            .children
            .iter()
            .copied()
            .filter(|&c| open(config, nodes, c))
            .collect();
        // `open(at)` holds and `at` does not widen, so some child is open.
        let unvisited: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&c| nodes[c].visits == 0)
            .collect();
        let score = |c: usize| {
            let child = &nodes[c];
            let v = child.value;
            let n = f64::from(child.visits);
            match config.selection {
                Selection::Uct if child.visits == 0 => v,
                Selection::Uct => v + config.c * (parent_visits.max(1.0).ln() / n).sqrt(),
                Selection::Puct => {
                    v + config.c * child.prior.unwrap_or(0.0) * parent_visits.sqrt() / (1.0 + n)
                }
            }
        };
        let pool = if unvisited.is_empty() {
            &candidates
        } else {
            &unvisited
        };
        let mut best = pool[0];
        for &c in &pool[1..] {
            if score(c) > score(best) {
                best = c;
            }
        }
        at = best;
        path.push(at);
    }
}

/// Priors of `parent`'s children: a softmax over their mean token log-probabilities.
fn set_priors(config: &MctsConfig, nodes: &mut [TreeNode], parent: usize) {
    let children = nodes[parent].children.clone();
    let logits: Vec<f64> = children
        .iter()
        .map(|&c| {
            let n = &nodes[c];
            let mean = if n.tokens == 0 {
                0.0
            } else {
                n.logprob / f64::from(n.tokens)
            };
            mean / config.prior_temperature
        })
        .collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    for (&c, e) in children.iter().zip(exps) {
        nodes[c].prior = Some(e / total);
    }
}

/// One more visit along `path` (root first) and values updated bottom-up; `new` are the
/// children just added to the path's last node (empty when nothing could be added).
fn backup(rule: Backup, nodes: &mut [TreeNode], path: &[usize], new: &[usize]) {
    // The reward of this iteration: the mean value of the new children, or the leaf's own value
    // when it got none.
    let leaf = *path.last().expect("a path has the root");
    let reward = if new.is_empty() {
        nodes[leaf].value
    } else {
        new.iter().map(|&c| nodes[c].value).sum::<f64>() / new.len() as f64
    };
    for &id in path.iter().rev() {
        nodes[id].visits += 1;
        match rule {
            Backup::VisitWeighted => {
                let children = &nodes[id].children;
                if children.is_empty() {
                    continue;
                }
                let (mut sum, mut weight) = (0.0, 0.0);
                for &c in children {
                    let w = f64::from(nodes[c].visits) + 1.0;
                    sum += w * nodes[c].value;
                    weight += w;
                }
                nodes[id].value = sum / weight;
            }
            Backup::Mean => {
                let n = &mut nodes[id];
                n.reward_sum += reward;
                n.value = match n.judge {
                    Some(own) => (own + n.reward_sum) / (1.0 + f64::from(n.visits)),
                    None => n.reward_sum / f64::from(n.visits),
                };
            }
        }
    }
}

/// The chosen node by `rule` (see the module docs).
fn choose(rule: AnswerBy, nodes: &[TreeNode]) -> usize {
    if rule == AnswerBy::Vote {
        let finished: Vec<usize> = nodes
            .iter()
            .filter(|n| n.terminal && n.answer.is_some())
            .map(|n| n.id)
            .collect();
        let answers: Vec<Option<String>> =
            finished.iter().map(|&i| nodes[i].answer.clone()).collect();
        let weights: Vec<f64> = finished.iter().map(|&i| nodes[i].value).collect();
        if let Some(w) = vote::weighted(&answers, &weights) {
            return w
                .members
                .iter()
                .map(|&m| finished[m])
                .max_by(|&a, &b| nodes[a].value.total_cmp(&nodes[b].value).then(b.cmp(&a)))
                .expect("a winner has members");
        }
    }
    // Greedy descent, through subtrees holding a finished solution when there is one.
    let mut finished_below = vec![false; nodes.len()];
    for n in nodes.iter().rev() {
        if n.terminal || n.children.iter().any(|&c| finished_below[c]) {
            finished_below[n.id] = true;
        }
    }
    let any = finished_below[0];
    let mut at = 0;
    loop {
        let pool: Vec<usize> = nodes[at]
            .children
            .iter()
            .copied()
            .filter(|&c| !any || finished_below[c])
            .collect();
        if pool.is_empty() {
            return at;
        }
        let key = |c: usize| match rule {
            AnswerBy::Visits => (f64::from(nodes[c].visits), nodes[c].value),
            _ => (nodes[c].value, f64::from(nodes[c].visits)),
        };
        let mut best = pool[0];
        for &c in &pool[1..] {
            let (a, b) = (key(c), key(best));
            if a.0 > b.0 || (a.0 == b.0 && a.1 > b.1) {
                best = c;
            }
        }
        at = best;
        if nodes[at].terminal {
            return at;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};
    use crate::lm::Lm;
    use crate::strategy::search_alone as run;
    use crate::strategy::Problem;

    /// The label of the last step in `text`: what is inside its last `[…]`.
    fn label(text: &str) -> String {
        text.rfind('[')
            .map(|i| text[i + 1..].split(']').next().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// Child `j` of the step labelled `p` is labelled `p` followed by `j`; its judge value and
    /// per-token log-probability come from the tables (0.5 and -1 otherwise); labels in
    /// `finished` state an answer and end the turn.
    fn scripted(values: &[(&str, f64)], logprobs: &[(&str, f64)], finished: &[&str]) -> ScriptedLm {
        let values: HashMap<String, f64> =
            values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let logprobs: HashMap<String, f64> =
            logprobs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let finished: Vec<String> = finished.iter().map(|s| s.to_string()).collect();
        ScriptedLm::new(
            move |q| {
                let child = format!("{}{}", label(q.text), q.ordinal);
                let end = finished.contains(&child);
                ScriptedStep {
                    text: if end {
                        format!("[{child}] The answer is 7.")
                    } else {
                        format!("[{child}]\n\n")
                    },
                    eos: end,
                    logprob_per_token: *logprobs.get(&child).unwrap_or(&-1.0),
                    confidence: Vec::new(),
                    ..Default::default()
                }
            },
            move |text| *values.get(&label(text)).unwrap_or(&0.5),
        )
    }

    /// The classic search the tests below pin down: judge values, no dive, greedy answer.
    fn config(iterations: u32) -> MctsConfig {
        MctsConfig {
            k: 2,
            end_gate: None,
            dive: false,
            value: ValueSignal::Judge,
            answer_by: AnswerBy::Value,
            budget: Budget {
                tokens: None,
                iterations: Some(iterations),
                ..Budget::default()
            },
            ..MctsConfig::default()
        }
    }

    /// (visits, value) by label, and labels in creation order.
    fn summary(outcome: &Outcome) -> (HashMap<String, (u32, f64)>, Vec<String>) {
        let tree = outcome.tree.as_ref().expect("mcts keeps its tree");
        let by_label = tree
            .nodes
            .iter()
            .map(|n| (label(&n.text), (n.visits, n.value)))
            .collect();
        let order = tree.nodes.iter().map(|n| label(&n.text)).collect();
        (by_label, order)
    }

    fn assert_node(s: &HashMap<String, (u32, f64)>, label: &str, visits: u32, value: f64) {
        let (n, v) = s[label];
        assert_eq!(n, visits, "visits of [{label}]");
        assert!(
            (v - value).abs() < 1e-6,
            "value of [{label}]: {v} vs {value}"
        );
    }

    const VALUES: &[(&str, f64)] = &[
        ("0", 0.6),
        ("1", 0.4),
        ("00", 0.2),
        ("01", 0.3),
        ("10", 0.9),
        ("11", 0.7),
    ];

    #[test]
    fn uct_with_visit_weighted_backup() {
        let mut lm = scripted(VALUES, &[], &[]);
        let outcome = run(&config(4), &mut lm, &Problem::new("q")).unwrap();
        let (s, order) = summary(&outcome);
        // 1: the root gets [0] .6, [1] .4; root = (.6 + .4) / 2.
        // 2: both unvisited, [0] has the higher value: [00] .2, [01] .3; [0] = .25;
        //    root = (2·.25 + 1·.4) / 3.
        // 3: [1] is unvisited: [10] .9, [11] .7; [1] = .8; root = (2·.25 + 2·.8) / 4.
        // 4: UCT .25 + √(ln 3) < .8 + √(ln 3): [1]; its children are unvisited, [10] is higher:
        //    [100], [101] .5 each; [10] = .5; [1] = (2·.5 + .7) / 3; root = (2·.25 + 3·[1]) / 5.
        assert_eq!(order, ["", "0", "1", "00", "01", "10", "11", "100", "101"]);
        assert_node(&s, "", 4, (0.5 + 3.0 * (1.7 / 3.0)) / 5.0);
        assert_node(&s, "0", 1, 0.25);
        assert_node(&s, "1", 2, 1.7 / 3.0);
        assert_node(&s, "10", 1, 0.5);
        assert_node(&s, "11", 0, 0.7);
        assert_node(&s, "00", 0, 0.2);
        let tree = outcome.tree.as_ref().unwrap();
        assert_eq!(
            tree.stop,
            StopReason::Budget {
                limit: super::super::Limit::Iterations
            }
        );
        assert_eq!(tree.iterations, 4);
        // No finished solution: the greedy path by value ends at a leaf: root → [1] → [11].
        assert_eq!(label(&tree.nodes[*tree.chosen.last().unwrap()].text), "11");
        assert_eq!(lm.live_nodes(), 0, "every model node is released");
    }

    #[test]
    fn puct_with_running_mean_backup() {
        let mut lm = scripted(VALUES, &[("0", -1.0), ("1", -0.5)], &[]);
        let c = MctsConfig {
            selection: Selection::Puct,
            backup: Backup::Mean,
            ..config(4)
        };
        let outcome = run(&c, &mut lm, &Problem::new("q")).unwrap();
        let (s, order) = summary(&outcome);
        let p1 = 1.0 / (1.0 + (-0.5f64).exp()); // softmax(-1, -0.5)[1]
        let p0 = 1.0 - p1;
        // 1: [0] .6, [1] .4; reward .5; root = .5.
        // 2: both unvisited: PUCT .6 + P0·√1 < .4 + P1·√1, so [1] (UCT would take [0]):
        //    [10] .9, [11] .7; reward .8; [1] = (.4 + .8) / 2; root = (.5 + .8) / 2.
        assert!(0.6 + p0 < 0.4 + p1);
        // 3: [0] is the unvisited one: [00] .2, [01] .3; reward .25; [0] = (.6 + .25) / 2;
        //    root = 1.55 / 3.
        // 4: [0] .425 + P0·√3/2 < [1] .6 + P1·√3/2: [1]; then [10] (.9 + .5 > .7 + .5):
        //    [100], [101] .5; reward .5; [10] = (.9 + .5) / 2; [1] = (.4 + .8 + .5) / 3;
        //    root = 2.05 / 4.
        assert!(0.425 + p0 * 3f64.sqrt() / 2.0 < 0.6 + p1 * 3f64.sqrt() / 2.0);
        assert_eq!(order, ["", "0", "1", "10", "11", "00", "01", "100", "101"]);
        assert_node(&s, "", 4, 2.05 / 4.0);
        assert_node(&s, "1", 2, 1.7 / 3.0);
        assert_node(&s, "0", 1, 0.425);
        assert_node(&s, "10", 1, 0.7);
        assert_node(&s, "11", 0, 0.7);
        let tree = outcome.tree.as_ref().unwrap();
        let prior = |l: &str| {
            tree.nodes
                .iter()
                .find(|n| label(&n.text) == l)
                .unwrap()
                .prior
                .unwrap()
        };
        assert!((prior("1") - p1).abs() < 1e-6 && (prior("0") - p0).abs() < 1e-6);
    }

    #[test]
    fn adaptive_width_widens_disagreeing_children_up_to_the_cap() {
        let mut lm = scripted(&[("0", 0.9), ("1", 0.3)], &[], &[]);
        let c = MctsConfig {
            widen: Some(Widen {
                spread: 0.3,
                max_children: 3,
            }),
            ..config(3)
        };
        let outcome = run(&c, &mut lm, &Problem::new("q")).unwrap();
        let (s, order) = summary(&outcome);
        // 1: [0] .9, [1] .3. 2: they differ by .6 ≥ .3 and the root has 2 < 3 children: it
        // widens by min(k, 3 − 2) = 1: [2] .5. 3: at the cap, no widening; [0] (unvisited, the
        // highest) gets [00], [01] .5 each.
        assert_eq!(order, ["", "0", "1", "2", "00", "01"]);
        assert_node(&s, "", 3, (2.0 * 0.5 + 0.3 + 0.5) / 4.0);
        assert_node(&s, "0", 1, 0.5);
        assert_node(&s, "1", 0, 0.3);
        assert_node(&s, "2", 0, 0.5);
    }

    #[test]
    fn end_gate_stops_at_a_good_finished_solution() {
        let mut lm = scripted(&[("0", 0.4), ("1", 0.95), ("00", 0.99)], &[], &["1", "00"]);
        let c = MctsConfig {
            end_gate: Some(0.9),
            ..config(10)
        };
        let outcome = run(&c, &mut lm, &Problem::new("q").with_answer("7")).unwrap();
        let tree = outcome.tree.as_ref().unwrap();
        // The first expansion already finds [1], a finished solution judged .95 ≥ .9.
        assert_eq!(tree.stop, StopReason::EndGate { node: 2 });
        assert_eq!(tree.iterations, 1);
        assert_eq!(outcome.answer.as_deref(), Some("7"));
        assert_eq!(outcome.correct, Some(true));
        assert_eq!(tree.chosen, [0, 2]);
        assert!(tree.nodes[2].terminal);
    }

    #[test]
    fn finished_solutions_win_the_answer_and_vote_weighs_values() {
        // [0] and [1] both finish (answer 7); [2]'s subtree does not.
        let mut lm = scripted(&[("0", 0.3), ("1", 0.6), ("2", 0.8)], &[], &["0", "1"]);
        let c = MctsConfig {
            k: 3,
            answer_by: AnswerBy::Vote,
            ..config(2)
        };
        let outcome = run(&c, &mut lm, &Problem::new("q")).unwrap();
        let tree = outcome.tree.as_ref().unwrap();
        // Vote: both finished say 7; the member with the larger value, [1], is chosen.
        assert_eq!(label(&tree.nodes[*tree.chosen.last().unwrap()].text), "1");
        assert_eq!(outcome.candidates.len(), 2);
        let mut lm = scripted(&[("0", 0.3), ("1", 0.6), ("2", 0.8)], &[], &["0", "1"]);
        let by_value = run(&config(2).clone(), &mut lm, &Problem::new("q")).unwrap();
        let t = by_value.tree.as_ref().unwrap();
        // k = 2: [0], [1] finish; the greedy path by value stays among finished subtrees.
        assert!(t.nodes[*t.chosen.last().unwrap()].terminal);
        // Nothing left to expand after the root's two finished children.
        assert_eq!(t.stop, StopReason::Exhausted);
    }

    #[test]
    fn logprob_values_are_path_likelihoods_and_ask_no_judge() {
        // [0] is surer than [1]; [10] is very sure. The judge would say the opposite.
        let mut lm = scripted(
            &[("0", 0.1), ("1", 0.9), ("10", 0.1), ("11", 0.9)],
            &[("0", -0.1), ("1", -1.0), ("10", -0.05), ("11", -2.0)],
            &[],
        );
        let c = MctsConfig {
            value: ValueSignal::Logprob,
            ..config(2)
        };
        let outcome = run(&c, &mut lm, &Problem::new("q")).unwrap();
        let tree = outcome.tree.as_ref().unwrap();
        assert_eq!(tree.judge_tokens, 0, "no judge question was asked");
        assert!(tree.nodes.iter().all(|n| n.judge.is_none()));
        let by = |l: &str| tree.nodes.iter().find(|n| label(&n.text) == l).unwrap();
        // A first step: exp of its per-token log-probability.
        assert!((by("1").value - (-1.0f64).exp()).abs() < 1e-9);
        // Iteration 2 expands [0], the likelier ((e^-0.1 > e^-1; the judge would have taken
        // [1]): its children are valued over the whole path, token-weighted ("[0]\n\n" and
        // "[00]\n\n" are 5 and 6 tokens), and [0] backs up their mean.
        let labels: Vec<String> = tree.nodes.iter().map(|n| label(&n.text)).collect();
        assert_eq!(labels, ["", "0", "1", "00", "01"]);
        let (t0, t1) = (5.0, 6.0);
        let path = |lp: f64| ((t0 * -0.1 + t1 * lp) / (t0 + t1)).exp();
        assert!((by("00").value - path(-1.0)).abs() < 1e-9);
        assert!((by("01").value - path(-1.0)).abs() < 1e-9);
        assert!((by("0").value - path(-1.0)).abs() < 1e-9);
    }

    #[test]
    fn dives_finish_a_solution_every_iteration_and_the_vote_answers() {
        // Steps [..0] are likelier than [..1]; depth-3 steps finish: [000] says 7, [001] and
        // [100] say 7 too, but [010] says 9 (scripted below).
        let mut lm = ScriptedLm::new(
            |q| {
                let parent = label(q.text);
                let child = format!("{parent}{}", q.ordinal);
                let end = child.len() == 3;
                let answer = if child == "010" { 9 } else { 7 };
                ScriptedStep {
                    text: if end {
                        format!("[{child}] The answer is {answer}.")
                    } else {
                        format!("[{child}]\n\n")
                    },
                    eos: end,
                    logprob_per_token: if child.ends_with('0') { -0.1 } else { -0.5 },
                    confidence: Vec::new(),
                    ..Default::default()
                }
            },
            |_| 0.5,
        );
        let c = MctsConfig {
            budget: Budget {
                tokens: None,
                iterations: Some(3),
                ..Budget::default()
            },
            ..MctsConfig::default()
        };
        assert!(c.dive && c.value == ValueSignal::Logprob && c.answer_by == AnswerBy::Vote);
        let outcome = run(&c, &mut lm, &Problem::new("q").with_answer("7")).unwrap();
        let tree = outcome.tree.as_ref().unwrap();
        let labels: Vec<String> = tree.nodes.iter().map(|n| label(&n.text)).collect();
        // 1: the root gets [0], [1]; [0] is likelier and dives: [00], then [000] (finished).
        // 2: [1] is unvisited: it gets [10], [11]; [10] dives to [100].
        // 3: both root children are visited; [0] (higher value, UCT) went through a dive and
        //    has one child of k = 2: it gets its missing one, [01], which dives to [010].
        assert_eq!(
            labels,
            ["", "0", "1", "00", "000", "10", "11", "100", "01", "010"]
        );
        let finished: Vec<&str> = tree
            .nodes
            .iter()
            .filter(|n| n.terminal)
            .map(|n| n.answer.as_deref().unwrap())
            .collect();
        assert_eq!(finished, ["7", "7", "9"]);
        // The vote: 7 twice against 9 once.
        assert_eq!(outcome.answer.as_deref(), Some("7"));
        assert_eq!(outcome.candidates.len(), 3);
        assert_eq!(tree.iterations, 3);
        // Each dive's values back up from its finished leaf: [00] holds only [000].
        let by = |l: &str| tree.nodes.iter().find(|n| label(&n.text) == l).unwrap();
        assert!((by("00").value - by("000").value).abs() < 1e-9);
        assert_eq!(by("00").visits, 1);
        assert_eq!(by("0").visits, 2);
        assert_eq!(tree.nodes[0].visits, 3);
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn repeated_and_empty_steps_are_sampled_again() {
        let mut lm = ScriptedLm::new(
            |q| ScriptedStep {
                text: match q.ordinal {
                    0 | 1 => "[a]\n\n".into(), // the second repeats its sibling
                    2 => "\n\n".into(),        // blank
                    _ => format!("[b{}]\n\n", q.ordinal),
                },
                eos: false,
                logprob_per_token: -1.0,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        );
        let outcome = run(&config(1), &mut lm, &Problem::new("q")).unwrap();
        let tree = outcome.tree.as_ref().unwrap();
        let texts: Vec<&str> = tree.nodes[0]
            .children
            .iter()
            .map(|&c| tree.nodes[c].text.as_str())
            .collect();
        // Attempt 1 samples ordinals 0, 1 ([a], [a] rejected); attempt 2 samples 2 (blank,
        // rejected); attempt 3 samples 3.
        assert_eq!(texts, ["[a]\n\n", "[b3]\n\n"]);
        assert_eq!(tree.rejected_steps, 2);
    }

    #[test]
    fn bad_configs_are_named() {
        let cases: Vec<(&str, MctsConfig)> = vec![
            (
                "k",
                MctsConfig {
                    k: 0,
                    ..MctsConfig::default()
                },
            ),
            (
                "c",
                MctsConfig {
                    c: -0.5,
                    ..MctsConfig::default()
                },
            ),
            (
                "c",
                MctsConfig {
                    c: f64::NAN,
                    ..MctsConfig::default()
                },
            ),
            (
                "end_gate",
                MctsConfig {
                    end_gate: Some(1.5),
                    ..MctsConfig::default()
                },
            ),
            (
                "end_gate",
                MctsConfig {
                    end_gate: Some(-0.1),
                    ..MctsConfig::default()
                },
            ),
            (
                "budget.tokens",
                MctsConfig {
                    budget: Budget {
                        tokens: Some(0),
                        ..Budget::default()
                    },
                    ..MctsConfig::default()
                },
            ),
            (
                "budget",
                MctsConfig {
                    budget: Budget {
                        tokens: None,
                        forward_passes: None,
                        wall_ms: None,
                        iterations: None,
                    },
                    ..MctsConfig::default()
                },
            ),
            (
                "widen.max_children",
                MctsConfig {
                    widen: Some(Widen {
                        spread: 0.2,
                        max_children: 1,
                    }),
                    ..MctsConfig::default()
                },
            ),
            (
                "rollout.alpha",
                MctsConfig {
                    rollout: Some(RolloutConfig {
                        alpha: 2.0,
                        max_tokens: 8,
                    }),
                    ..MctsConfig::default()
                },
            ),
        ];
        for (field, c) in cases {
            let mut lm = scripted(&[], &[], &[]);
            let e = run(&c, &mut lm, &Problem::new("q")).unwrap_err();
            match e {
                Error::Config(e) => assert_eq!(e.field, field),
                other => panic!("{field}: {other}"),
            }
            assert_eq!(lm.usage().generated_tokens, 0, "{field}: nothing ran");
        }
        let e = super::super::StrategyConfig::from_json("mcts", r#"{"k": 0}"#).unwrap_err();
        assert_eq!(e.field, "k");
        // The value signal is one of two names; a wrong one is refused with both spelled out.
        let e = super::super::StrategyConfig::from_json("mcts", r#"{"value": "vibes"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("judge") && e.contains("logprob"), "{e}");
        let c = super::super::StrategyConfig::from_json(
            "mcts",
            r#"{"value": "judge", "dive": false, "answer_by": "value"}"#,
        )
        .unwrap();
        match c {
            super::super::StrategyConfig::Mcts(m) => {
                assert!(m.value == ValueSignal::Judge && !m.dive && m.answer_by == AnswerBy::Value)
            }
            other => panic!("{other:?}"),
        }
    }
}
