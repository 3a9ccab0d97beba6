//! A tree search in progress ([`Search`]): expanding nodes by sampled steps, valuing them (in-place
//! judge, likelihood, rollouts), checking the budget, and turning the chosen path into the
//! outcome.

use std::time::Instant;

use super::{
    Budget, Limit, RolloutRecord, SearchTree, StepConfig, StopReason, TreeNode, ValueSignal,
};
use crate::error::Error;
use crate::lm::{FinishReason, GenRequest, Lm, Message, Node, SamplingParams, Usage};
use crate::reward::judge::{Judge, JudgeConfig, Verdict};
use crate::strategy::{Candidate, Event, Frame, Observer, Outcome, Problem, PromptConfig};

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

    #[test]
    fn steps_normalise_for_repetition() {
        assert_eq!(
            normalise_step("  Step 1:\n 2 + 2 = 4\n\n"),
            "step 1: 2 + 2 = 4"
        );
    }
}
