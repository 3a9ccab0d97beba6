//! Adaptive consistency (Aggarwal et al., 2023): majority voting that stops sampling as soon as
//! the leading answer is settled.
//!
//! 1. `first` samples are drawn together;
//! 2. after each batch the votes are counted: with `a` votes for the leading answer and `b` for
//!    the runner-up, the Beta stopping rule asks how likely the leader's true share is the larger
//!    one, P(p₁ > p₂) under a uniform prior, which is P(X > ½) for X ~ Beta(a + 1, b + 1)
//!    ([`settled_probability`]); sampling stops once that reaches `confidence`, or once the
//!    samples left to draw could not overtake the leader (`a > b + left`: the answer is then
//!    the one all `n` samples would vote for);
//! 3. otherwise `batch` more samples are drawn, up to `n` in all, and the answer is the majority
//!    vote over every sample drawn.
//!
//! A problem the model finds easy settles after a few unanimous samples (at `confidence` 0.95,
//! four agreeing votes); a contested one draws all `n`. That is where the compute is saved.
//!
//! With `filter` (DeepConf's online filter, [`super::deepconf`]), the samples after the first
//! batch stop early when their lowest group confidence falls below that percentile of the first
//! batch's, and a stopped sample does not vote.

use serde::{Deserialize, Serialize};

use super::deepconf::{ballot, vote_in_batches, Batches};
use super::{Observer, Outcome, Problem, PromptConfig, Strategy};
use crate::error::{ConfigError, Error};
use crate::lm::{Generation, Lm, SamplingParams};
use crate::reward::confidence::ConfidenceConfig;
use crate::reward::vote;

/// Configuration of this strategy (the module's [`Strategy`] implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Most samples in all, 1..=256.
    pub n: u32,
    /// Samples drawn together before the first check, 1..=`n`.
    pub first: u32,
    /// Samples drawn together after each check that is not settled, 1..=`n`.
    pub batch: u32,
    /// Stop when the probability that the leading answer's true share beats the runner-up's
    /// reaches this, in [0.5, 1) (the Beta rule). The paper uses 0.95; the default 0.8 (after 3
    /// samples, then 1 at a time) kept vote@8's accuracy on both development sets with the
    /// fewest tokens (the guide's adaptive-consistency page).
    pub confidence: f64,
    /// DeepConf's online filter: later samples stop early below this percentile (0..=100) of the
    /// first batch's lowest group confidences, and do not vote. `None`: no filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<f64>,
    /// New tokens per sample, at most.
    pub max_tokens: u32,
    /// Sampling parameters; sample i uses `seed + i`.
    pub sampling: SamplingParams,
    /// How the solver is asked.
    pub prompt: PromptConfig,
    /// The group window of the filter (`confidence.window`).
    #[serde(rename = "confidence_signal")]
    pub signal: ConfidenceConfig,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            n: 8,
            first: 3,
            batch: 1,
            confidence: 0.8,
            filter: None,
            max_tokens: 384,
            sampling: SamplingParams::default(),
            prompt: PromptConfig::default(),
            signal: ConfidenceConfig {
                window: 32,
                ..ConfidenceConfig::default()
            },
        }
    }
}

impl AdaptiveConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("n", self.n, 1..=super::limits::MAX_SAMPLES, "samples")?;
        for (field, v) in [("first", self.first), ("batch", self.batch)] {
            if !(1..=self.n).contains(&v) {
                return Err(ConfigError::new(
                    field,
                    format!("{v} is outside 1..=n ({})", self.n),
                ));
            }
        }
        if !(0.5..1.0).contains(&self.confidence) {
            return Err(ConfigError::new(
                "confidence",
                format!(
                    "{} is outside [0.5, 1); 0.95 stops after four agreeing samples",
                    self.confidence
                ),
            ));
        }
        if let Some(p) = self.filter {
            if !(0.0..=100.0).contains(&p) {
                return Err(ConfigError::new(
                    "filter",
                    format!("{p} is outside 0..=100 (10 stops few samples, 90 most)"),
                ));
            }
        }
        super::limits::check_max_tokens("max_tokens", self.max_tokens)?;
        self.signal.validate()?;
        self.sampling.validate()
    }
}

sampling_strategy!(AdaptiveConfig, "adaptive", seed: sampling.seed, votes: true);

/// P(X > ½) for X ~ Beta(a + 1, b + 1): under a uniform prior, the probability that an answer
/// seen `a` times has a larger true share than one seen `b` times. For integers this is
/// P(Binomial(a + b + 1, ½) ≤ a), summed exactly.
pub fn settled_probability(a: u32, b: u32) -> f64 {
    let n = a + b + 1;
    // term_k = C(n, k) / 2^n, from term_0 = 2^-n (n ≤ 513 here: no underflow to 0).
    let mut term = 0.5f64.powi(n as i32);
    let mut sum = term;
    for k in 0..a {
        term *= f64::from(n - k) / f64::from(k + 1);
        sum += term;
    }
    sum.min(1.0)
}

/// Samples in batches until the vote is settled, then votes.
fn run(
    config: &AdaptiveConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
) -> Result<Outcome, Error> {
    let plan = Batches {
        first: config.first,
        batch: config.batch,
        n: config.n,
        filter: config.filter,
        max_tokens: config.max_tokens,
        sampling: &config.sampling,
        confidence: &config.signal,
    };
    let settled = |traces: &[Generation]| settled(config, problem, traces);
    vote_in_batches(
        config.name(),
        &config.prompt,
        &plan,
        settled,
        lm,
        problem,
        observer,
        |t| vec![1.0; t.len()],
    )
}

/// Whether the votes so far pass the Beta rule at `confidence`, or the samples left could not
/// overtake the leader.
fn settled(config: &AdaptiveConfig, problem: &Problem, traces: &[Generation]) -> bool {
    let answers: Vec<Option<String>> = traces.iter().map(|g| ballot(problem, g)).collect();
    settled_answers(config, &answers)
}

/// [`settled`] on the answers of the samples drawn so far (in order; `None` does not vote).
fn settled_answers(config: &AdaptiveConfig, answers: &[Option<String>]) -> bool {
    let mut counts: Vec<u32> = vote::tally(answers, &vec![1.0; answers.len()])
        .iter()
        .map(|g| g.members.len() as u32)
        .collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let left = config.n.saturating_sub(answers.len() as u32);
    let (a, b) = match counts.as_slice() {
        [] => return false,
        [a] => (*a, 0),
        [a, b, ..] => (*a, *b),
    };
    a > b + left || settled_probability(a, b) >= config.confidence
}

/// How many of `answers` (the answers of samples drawn in order, as best-of-N draws them with
/// the same seeds) this strategy would have drawn before stopping: the replay `ponder bench`
/// scores stopping rules with on a best-of-N rung's own samples. At most `answers.len()`.
pub fn samples_drawn(config: &AdaptiveConfig, answers: &[Option<String>]) -> usize {
    let all = answers.len().min(config.n as usize);
    let mut drawn = (config.first as usize).min(all);
    while drawn < all && !settled_answers(config, &answers[..drawn]) {
        drawn = (drawn + config.batch as usize).min(all);
    }
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};
    use crate::strategy::StrategyConfig;

    #[test]
    fn the_beta_rule_is_exact() {
        // Beta(5, 1): 1 - 2^-5.
        assert_eq!(settled_probability(4, 0), 1.0 - 1.0 / 32.0);
        assert_eq!(settled_probability(3, 0), 1.0 - 1.0 / 16.0);
        // Beta(7, 2): P(Bin(8, ½) ≤ 6) = 1 - 9/256.
        assert_eq!(settled_probability(6, 1), 1.0 - 9.0 / 256.0);
        // Even counts are a coin toss.
        assert_eq!(settled_probability(3, 3), 0.5);
        assert!(settled_probability(200, 0) <= 1.0);
    }

    /// Sample i says `answers(i)`.
    fn model(answers: fn(usize) -> u32) -> ScriptedLm {
        ScriptedLm::new(
            move |q| ScriptedStep {
                text: format!("The answer is {}.", answers(q.ordinal)),
                eos: true,
                logprob_per_token: -0.5,
                ..Default::default()
            },
            |_| 0.5,
        )
    }

    /// The paper's rule: 0.95 after 4 samples, then 2 at a time.
    fn paper() -> AdaptiveConfig {
        AdaptiveConfig {
            first: 4,
            batch: 2,
            confidence: 0.95,
            ..AdaptiveConfig::default()
        }
    }

    fn solve(lm: &mut ScriptedLm, config: AdaptiveConfig) -> Outcome {
        StrategyConfig::Adaptive(config)
            .run(lm, &Problem::new("Q?"))
            .unwrap()
    }

    #[test]
    fn unanimous_samples_stop_after_the_first_batch() {
        let mut lm = model(|_| 7);
        let out = solve(&mut lm, paper());
        assert_eq!(out.candidates.len(), 4);
        assert_eq!(out.answer.as_deref(), Some("7"));
        assert_eq!(lm.live_nodes(), 0);
        // The default rule, 0.8 after 3, stops after three agreeing votes (0.9375).
        assert_eq!(
            solve(&mut lm, AdaptiveConfig::default()).candidates.len(),
            3
        );
        // At 0.97 four agreeing votes (0.969) are not enough: one more batch.
        let out = solve(
            &mut lm,
            AdaptiveConfig {
                confidence: 0.97,
                ..paper()
            },
        );
        assert_eq!(out.candidates.len(), 6);
    }

    #[test]
    fn a_contested_vote_draws_every_sample() {
        // 7, 5, 7, 5, …: never settled, all 8 drawn, the tie goes to the first answer seen.
        let mut lm = model(|i| if i % 2 == 0 { 7 } else { 5 });
        let out = solve(&mut lm, paper());
        assert_eq!(out.candidates.len(), 8);
        assert_eq!(out.answer.as_deref(), Some("7"));
        // 7, 7, 7, 5, then 7s: 3–1 (0.8125) draws a batch, 5–1 (0.9375) another, 7–1 stops.
        let mut lm = model(|i| if i == 3 { 5 } else { 7 });
        let out = solve(&mut lm, AdaptiveConfig { n: 16, ..paper() });
        assert_eq!(out.candidates.len(), 8);
        assert_eq!(out.answer.as_deref(), Some("7"));
        // With n = 8 the same votes stop at 5–1: two samples left cannot overtake the 7s.
        let mut lm = model(|i| if i == 3 { 5 } else { 7 });
        let out = solve(&mut lm, paper());
        assert_eq!(out.candidates.len(), 6);
        assert_eq!(out.answer.as_deref(), Some("7"));
    }

    #[test]
    fn the_replay_draws_what_the_strategy_draws() {
        let answers = |xs: &[u32]| -> Vec<Option<String>> {
            xs.iter().map(|x| Some(x.to_string())).collect()
        };
        let c = paper();
        assert_eq!(samples_drawn(&c, &answers(&[7; 8])), 4);
        assert_eq!(samples_drawn(&c, &answers(&[7, 7, 7, 5, 7, 7, 7, 7])), 6);
        assert_eq!(samples_drawn(&c, &answers(&[7, 5, 7, 5, 7, 5, 7, 5])), 8);
        // Fewer samples than `first`: all of them.
        assert_eq!(samples_drawn(&c, &answers(&[7, 7])), 2);
        // The default: three agreeing votes settle it; alternating ones never do.
        let d = AdaptiveConfig::default();
        assert_eq!(samples_drawn(&d, &answers(&[7, 7, 7, 5, 7, 7, 7, 7])), 3);
        assert_eq!(samples_drawn(&d, &answers(&[7, 5, 7, 5, 7, 5, 7, 5])), 8);
        // The same as the strategy on the scripted model.
        let mut lm = model(|i| if i == 3 { 5 } else { 7 });
        assert_eq!(solve(&mut lm, c).candidates.len(), 6);
        let mut lm = model(|i| if i == 3 { 5 } else { 7 });
        assert_eq!(solve(&mut lm, d).candidates.len(), 3);
    }

    #[test]
    fn out_of_range_fields_are_named() {
        for (field, c) in [
            (
                "first",
                AdaptiveConfig {
                    first: 9,
                    ..AdaptiveConfig::default()
                },
            ),
            (
                "batch",
                AdaptiveConfig {
                    batch: 0,
                    ..AdaptiveConfig::default()
                },
            ),
            (
                "confidence",
                AdaptiveConfig {
                    confidence: 1.0,
                    ..AdaptiveConfig::default()
                },
            ),
            (
                "filter",
                AdaptiveConfig {
                    filter: Some(101.0),
                    ..AdaptiveConfig::default()
                },
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }
}
