//! Iterative deepening sampling ("Iterative Deepening Sampling for Large Language Models"):
//! generate within a budget L0; at the budget boundary, or as soon as the model ends its answer
//! early, inject a reflection trigger into the live branch and continue with budget L0·γ^i, until
//! the total budget is spent or (optionally) the answer after a trigger confirms the one before.
//! `width` branches deepen together, in one batch per round, and the final answer is their
//! majority vote.

use serde::{Deserialize, Serialize};

use super::{
    from_root, limits, Candidate, EntryKind, Event, Observer, Outcome, Problem, PromptConfig,
    Strategy, TimelineEntry,
};
use crate::error::{ConfigError, Error};
use crate::lm::{FinishReason, GenRequest, Lm, Node, SamplingParams};
use crate::reward::{answer, vote};

/// Configuration of this strategy (the module's [`Strategy`] implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepeningConfig {
    /// Branches deepening together, 1..=256.
    pub width: u32,
    /// Token budget of the first segment, at least 1.
    pub l0: u32,
    /// Growth of the budget per trigger, at least 1: segment i gets `floor(l0 · gamma^i)`.
    pub gamma: f64,
    /// Tokens per branch in all (generated plus injected triggers); never exceeded.
    pub total_budget: u32,
    /// The reflection trigger, injected into the model's own turn.
    pub trigger: String,
    /// Stop a branch when the answer after a trigger equals the answer before it.
    pub stop_on_confirm: bool,
    /// Sampling; branch b uses `seed + b`.
    pub sampling: SamplingParams,
    /// How the solver is asked.
    pub prompt: PromptConfig,
    /// Keep generating after the model's end-of-turn token instead of treating it as an early
    /// answer (for fixed-budget experiments).
    pub ignore_eos: bool,
}

impl Default for DeepeningConfig {
    fn default() -> Self {
        Self {
            width: 4,
            l0: 128,
            gamma: 1.5,
            total_budget: 640,
            trigger: "\n\nWait, I may have made a mistake. Let me check my solution again step by step.\n".into(),
            stop_on_confirm: true,
            sampling: SamplingParams::default(),
            prompt: PromptConfig::default(),
            ignore_eos: false,
        }
    }
}

impl DeepeningConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=limits::MAX_SAMPLES).contains(&self.width) {
            return Err(ConfigError::new(
                "width",
                format!("{} branches is outside 1..=256", self.width),
            ));
        }
        if self.l0 == 0 {
            return Err(ConfigError::new(
                "l0",
                "a first budget of 0 tokens generates nothing; use at least 1",
            ));
        }
        if !(self.gamma.is_finite() && self.gamma >= 1.0) {
            return Err(ConfigError::new(
                "gamma",
                format!(
                    "{} would shrink the budgets; use a growth factor >= 1",
                    self.gamma
                ),
            ));
        }
        if self.total_budget < self.l0 {
            return Err(ConfigError::new(
                "total_budget",
                format!(
                    "{} is below l0 = {}; the total must hold the first segment",
                    self.total_budget, self.l0
                ),
            ));
        }
        ConfigError::check_range("l0", self.l0, 1..=limits::MAX_TOKENS, "tokens")?;
        ConfigError::check_range("gamma", self.gamma, 1.0..=limits::MAX_GAMMA, "")?;
        ConfigError::check_range(
            "total_budget",
            u64::from(self.total_budget),
            1..=limits::MAX_BUDGET_TOKENS,
            "tokens",
        )?;
        if self.trigger.trim().is_empty() {
            return Err(ConfigError::new(
                "trigger",
                "is empty; give the model a sentence that makes it re-check",
            ));
        }
        self.sampling.validate()
    }

    /// The budget of segment `i` (0 = the first), before capping by what is left.
    pub fn segment_budget(&self, i: u32) -> u32 {
        let b = f64::from(self.l0) * self.gamma.powi(i as i32);
        if b >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            b.floor() as u32
        }
    }
}

struct Branch {
    /// The live node to continue.
    node: Node,
    /// Tokens spent so far (generated and injected).
    spent: u32,
    /// Segments generated so far.
    segments: u32,
    /// All generated and injected text after the prompt.
    text: String,
    generated: u32,
    logprob: f64,
    last_answer: Option<String>,
    finish: FinishReason,
    done: bool,
}

sampling_strategy!(DeepeningConfig, "deepening", seed: sampling.seed, votes: true);

/// Runs iterative deepening over `width` branches.
fn run(
    config: &DeepeningConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
) -> Result<Outcome, Error> {
    let ((branches, timeline), frame) =
        from_root(lm, &config.prompt, problem, |lm, root, made| {
            deepen(config, lm, problem, observer, root, made)
        })?;

    let answers: Vec<Option<String>> = branches.iter().map(|b| b.last_answer.clone()).collect();
    let winner = vote::majority(&answers);
    let share = |a: &Option<String>| -> f64 {
        match (&winner, a) {
            (Some(w), Some(a)) if answer::normalize(a) == w.answer => w.share,
            _ => 0.0,
        }
    };
    let candidates: Vec<Candidate> = branches
        .iter()
        .map(|b| Candidate {
            text: b.text.clone(),
            answer: b.last_answer.clone(),
            tokens: b.generated,
            logprob: b.logprob,
            mean_logprob: if b.generated == 0 {
                0.0
            } else {
                b.logprob / f64::from(b.generated)
            },
            judge: None,
            score: share(&b.last_answer),
            finish: b.finish.clone(),
            correct: problem.check(b.last_answer.as_deref()),
            confidence: None,
        })
        .collect();
    let chosen = winner.as_ref().map_or(0, |w| w.members[0]);
    Ok(Outcome::pick(
        config.name(),
        problem,
        candidates,
        chosen,
        timeline,
        frame,
    ))
}

fn deepen(
    config: &DeepeningConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
    root: Node,
    made: &mut Vec<Node>,
) -> Result<(Vec<Branch>, Vec<TimelineEntry>), Error> {
    let trigger = lm.tokenize(&config.trigger)?;
    let mut branches: Vec<Branch> = (0..config.width)
        .map(|_| Branch {
            node: root,
            spent: 0,
            segments: 0,
            text: String::new(),
            generated: 0,
            logprob: 0.0,
            last_answer: None,
            finish: FinishReason::MaxTokens,
            done: false,
        })
        .collect();
    let mut timeline = Vec::new();
    let mut segments = 0;
    loop {
        // One generate call for every live branch: each gets its own segment budget.
        let live: Vec<usize> = (0..branches.len()).filter(|&b| !branches[b].done).collect();
        if live.is_empty() {
            break;
        }
        let requests: Vec<GenRequest> = live
            .iter()
            .map(|&b| {
                let br = &branches[b];
                let budget = config
                    .segment_budget(br.segments)
                    .min(config.total_budget - br.spent);
                GenRequest {
                    ignore_eos: config.ignore_eos,
                    ..GenRequest::sample(br.node, &config.sampling, b as u32, budget)
                }
            })
            .collect();
        let gens = lm.generate(&requests)?;
        for (&b, g) in live.iter().zip(gens) {
            made.push(g.node);
            let br = &mut branches[b];
            let offset = br.spent as usize;
            br.spent += g.tokens;
            br.generated += g.tokens;
            br.logprob += g.logprob;
            br.segments += 1;
            br.text.push_str(&g.text);
            br.finish = g.finish.clone();
            let previous = br.last_answer.clone();
            let now = problem.extract(&br.text);
            timeline.push(TimelineEntry {
                branch: b,
                kind: EntryKind::Generated,
                offset,
                tokens: g.tokens as usize,
                text: g.text.clone(),
                logprob: g.logprob,
                answer: now.clone(),
                correct: problem.check(now.as_deref()),
            });
            observer.emit(Event::Sample {
                index: segments,
                tokens: g.tokens,
                answer: now.clone(),
                finish: g.finish.clone(),
            })?;
            segments += 1;
            // The answer after a trigger confirms the one before it.
            let confirmed = br.segments > 1
                && match (&previous, &now) {
                    (Some(p), Some(n)) => answer::equivalent(p, n),
                    _ => false,
                };
            br.last_answer = now;
            let room = config.total_budget - br.spent;
            if (config.stop_on_confirm && confirmed)
                || room <= trigger.len() as u32
                || g.finish == FinishReason::ContextFull
            {
                br.done = true;
                br.node = g.node;
                continue;
            }
            // Continue the model's own turn: drop its end-of-turn token if it stopped itself,
            // then inject the trigger.
            let mut continued = g.node;
            if g.finish == FinishReason::Eos {
                let mut tokens = lm.node_tokens(g.node)?;
                tokens.pop();
                // The dropped end-of-turn token does not stay in the branch.
                br.spent -= 1;
                let parent_len = lm.node_len(br.node)?;
                continued = lm.extend_tokens(br.node, &tokens[parent_len..])?;
                made.push(continued);
            }
            let node = lm.extend_tokens(continued, &trigger)?;
            made.push(node);
            timeline.push(TimelineEntry {
                branch: b,
                kind: EntryKind::Trigger,
                offset: br.spent as usize,
                tokens: trigger.len(),
                text: config.trigger.clone(),
                logprob: 0.0,
                answer: None,
                correct: None,
            });
            br.spent += trigger.len() as u32;
            br.text.push_str(&config.trigger);
            br.node = node;
        }
    }
    Ok((branches, timeline))
}
