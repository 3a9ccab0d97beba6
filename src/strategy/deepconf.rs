//! DeepConf online ("Deep Think with Confidence", Fu et al., 2025): best-of-N that stops
//! unsure traces early and stops sampling once the vote is settled.
//!
//! 1. `warmup` traces are sampled in full; the `percentile`-th percentile of their lowest group
//!    confidences ([`lowest_group`] over windows of `confidence.window` tokens) becomes the
//!    threshold.
//! 2. The remaining traces, `batch` at a time, are sampled with a [`ConfidenceStop`] at that
//!    threshold: a trace whose last `window` tokens average below it stops at once (the llama.cpp
//!    backend stops decoding it; its node is released) and does not vote.
//! 3. The answer is the vote over the finished traces, each weighted by its lowest group
//!    confidence. After the warm-up and after every batch, sampling ends when the leading answer
//!    holds at least `consensus` of the weight.
//!
//! A low `percentile` (10, DeepConf-high) stops few traces; a high one (90, DeepConf-low) stops
//! most of them and saves more tokens at more risk.

use serde::{Deserialize, Serialize};

use super::{
    from_root, Candidate, ConfidenceSignals, Observer, Outcome, Problem, PromptConfig, Strategy,
};
use crate::error::{ConfigError, Error};
use crate::lm::{ConfidenceStop, FinishReason, GenRequest, Generation, Lm, SamplingParams};
use crate::reward::confidence::{lowest_group, percentile, ConfidenceConfig};
use crate::reward::vote;

/// Configuration of this strategy (the module's [`Strategy`] implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepConfConfig {
    /// Most traces in all (warm-up included), 1..=256.
    pub n: u32,
    /// Warm-up traces sampled in full to set the threshold, 1..=`n`.
    pub warmup: u32,
    /// Traces sampled together after the warm-up, 1..=`n`.
    pub batch: u32,
    /// The threshold is this percentile (0..=100) of the warm-up traces' lowest group confidence.
    pub percentile: f64,
    /// Stop sampling when the leading answer holds this share (0, 1] of the confidence-weighted
    /// vote (1 = only when unanimous).
    pub consensus: f64,
    /// New tokens per trace, at most.
    pub max_tokens: u32,
    /// Sampling parameters; trace i uses `seed + i`.
    pub sampling: SamplingParams,
    /// How the solver is asked.
    pub prompt: PromptConfig,
    /// The group window (`confidence.window`); the vote weighs by lowest group confidence.
    pub confidence: ConfidenceConfig,
}

impl Default for DeepConfConfig {
    fn default() -> Self {
        Self {
            n: 8,
            warmup: 4,
            batch: 2,
            percentile: 10.0,
            consensus: 0.95,
            max_tokens: 384,
            sampling: SamplingParams::default(),
            prompt: PromptConfig::default(),
            confidence: ConfidenceConfig {
                window: 32,
                ..ConfidenceConfig::default()
            },
        }
    }
}

impl DeepConfConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=256).contains(&self.n) {
            return Err(ConfigError::new(
                "n",
                format!("{} traces is outside 1..=256", self.n),
            ));
        }
        if !(1..=self.n).contains(&self.warmup) {
            return Err(ConfigError::new(
                "warmup",
                format!("{} is outside 1..=n ({})", self.warmup, self.n),
            ));
        }
        if !(1..=self.n).contains(&self.batch) {
            return Err(ConfigError::new(
                "batch",
                format!("{} is outside 1..=n ({})", self.batch, self.n),
            ));
        }
        if !(0.0..=100.0).contains(&self.percentile) {
            return Err(ConfigError::new(
                "percentile",
                format!(
                    "{} is outside 0..=100 (10 stops few traces, 90 most)",
                    self.percentile
                ),
            ));
        }
        if !(self.consensus > 0.0 && self.consensus <= 1.0) {
            return Err(ConfigError::new(
                "consensus",
                format!(
                    "{} is outside (0, 1]; use 1 to sample all n traces unless unanimous",
                    self.consensus
                ),
            ));
        }
        if self.max_tokens == 0 {
            return Err(ConfigError::new(
                "max_tokens",
                "0 would generate nothing; ask for at least 1 token",
            ));
        }
        ConfigError::check_range(
            "max_tokens",
            self.max_tokens,
            1..=super::limits::MAX_TOKENS,
            "tokens",
        )?;
        self.confidence.validate()?;
        self.sampling.validate()
    }
}

sampling_strategy!(DeepConfConfig, "deepconf", seed: sampling.seed, votes: true);

/// Runs DeepConf online.
fn run(
    config: &DeepConfConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
) -> Result<Outcome, Error> {
    let plan = Batches {
        first: config.warmup,
        batch: config.batch,
        n: config.n,
        filter: Some(config.percentile),
        max_tokens: config.max_tokens,
        sampling: &config.sampling,
        confidence: &config.confidence,
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
        |t| ballots(config, problem, t).1,
    )
}

/// How a voting strategy draws its samples: `first` together, then `batch` at a time up to `n`
/// until it is settled; with `filter`, the later ones carry a [`ConfidenceStop`] at that
/// percentile of the first ones' lowest group confidences (over `confidence.window` tokens).
pub(super) struct Batches<'a> {
    pub first: u32,
    pub batch: u32,
    pub n: u32,
    pub filter: Option<f64>,
    pub max_tokens: u32,
    pub sampling: &'a SamplingParams,
    pub confidence: &'a ConfidenceConfig,
}

/// Draws samples as `plan` says until `settled`, then votes with `weights` over their
/// [`ballot`]s: DeepConf's and adaptive consistency's shared loop.
#[allow(clippy::too_many_arguments)]
pub(super) fn vote_in_batches(
    name: &'static str,
    prompt: &PromptConfig,
    plan: &Batches<'_>,
    settled: impl Fn(&[Generation]) -> bool,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
    weights: impl Fn(&[Generation]) -> Vec<f64>,
) -> Result<Outcome, Error> {
    let (traces, frame) = from_root(lm, prompt, problem, |lm, root, made| {
        let mut traces: Vec<Generation> = Vec::new();
        let result = sample(plan, &settled, lm, problem, observer, root, &mut traces);
        made.extend(traces.iter().map(|g| g.node));
        result.map(|()| traces)
    })?;
    let answers: Vec<Option<String>> = traces.iter().map(|g| ballot(problem, g)).collect();
    let (scores, chosen) = vote::shares_and_pick(&answers, &weights(&traces));
    let candidates: Vec<Candidate> = traces
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut c = Candidate::from_generation(g, answers[i].clone(), problem, None, scores[i]);
            c.confidence = ConfidenceSignals::of(g, plan.confidence);
            c
        })
        .collect();
    Ok(Outcome::pick(
        name,
        problem,
        candidates,
        chosen,
        Vec::new(),
        frame,
    ))
}

/// Samples the first batch, then batches (under the threshold, with a filter) until settled,
/// into `traces` (whose nodes the caller releases, on error too).
fn sample(
    plan: &Batches<'_>,
    settled: &impl Fn(&[Generation]) -> bool,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
    root: crate::lm::Node,
    traces: &mut Vec<Generation>,
) -> Result<(), Error> {
    let window = plan.confidence.window;
    let request = |i: u32, stop: Option<ConfidenceStop>| GenRequest {
        confidence_stop: stop,
        ..GenRequest::sample(root, plan.sampling, i, plan.max_tokens)
    };
    let first: Vec<GenRequest> = (0..plan.first).map(|i| request(i, None)).collect();
    traces.extend(lm.generate(&first)?);
    observer.samples(0, traces, |g| ballot(problem, g))?;
    let stop = plan.filter.map(|p| {
        let lows: Vec<f64> = traces
            .iter()
            .map(|g| lowest_group(&g.confidence, window as usize))
            .collect();
        ConfidenceStop {
            window,
            threshold: percentile(&lows, p).unwrap_or(0.0) as f32,
        }
    });
    let mut next = plan.first;
    while next < plan.n && !settled(traces) {
        let k = plan.batch.min(plan.n - next);
        let batch: Vec<GenRequest> = (next..next + k).map(|i| request(i, stop)).collect();
        let got = lm.generate(&batch)?;
        // Stopped traces leave the cache at once.
        for g in &got {
            if g.finish == FinishReason::LowConfidence {
                lm.release(g.node);
            }
        }
        observer.samples(traces.len(), &got, |g| ballot(problem, g))?;
        traces.extend(got);
        next += k;
    }
    Ok(())
}

/// A trace's answer: none for one stopped for low confidence (it does not vote), else the
/// problem's rule for how it ended ([`Problem::answer_of`]: a trace cut off at `max_tokens` has
/// only an answer it stated, never the last number of its unfinished working).
pub(super) fn ballot(problem: &Problem, g: &Generation) -> Option<String> {
    (g.finish != FinishReason::LowConfidence).then(|| problem.answer_of(&g.text, &g.finish))?
}

/// Each trace's answer ([`ballot`]) and its vote weight, its lowest group confidence.
fn ballots(
    config: &DeepConfConfig,
    problem: &Problem,
    traces: &[Generation],
) -> (Vec<Option<String>>, Vec<f64>) {
    let window = config.confidence.window as usize;
    let answers = traces.iter().map(|g| ballot(problem, g)).collect();
    let weights = traces
        .iter()
        .map(|g| lowest_group(&g.confidence, window))
        .collect();
    (answers, weights)
}

/// Whether the leading answer holds at least `consensus` of the confidence weight of every
/// trace not stopped for low confidence. A trace that ran out of tokens before it stated an
/// answer does not vote, but its weight counts against consensus: otherwise one answered trace
/// among cut-off ones holds all the weight, and sampling stops on a single vote (what happened
/// on problems harder than the development set, where most traces hit `max_tokens`).
fn settled(config: &DeepConfConfig, problem: &Problem, traces: &[Generation]) -> bool {
    let (answers, weights) = ballots(config, problem, traces);
    let Some(leader) = vote::weighted(&answers, &weights) else {
        return false;
    };
    let total: f64 = traces
        .iter()
        .zip(&weights)
        .filter(|(g, _)| g.finish != FinishReason::LowConfidence)
        .map(|(_, &w)| if w.is_finite() && w > 0.0 { w } else { 0.0 })
        .sum();
    total > 0.0 && leader.weight / total >= config.consensus
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};
    use crate::strategy::StrategyConfig;

    /// Traces 0..4 are sure and say 7 (two) or 5 (two); later traces alternate between an unsure
    /// ramble (confidence collapsing after 8 tokens) and a sure 7.
    fn model() -> ScriptedLm {
        ScriptedLm::new(
            |q| {
                let unsure = q.ordinal >= 4 && q.ordinal % 2 == 0;
                let answer = if q.ordinal < 4 && q.ordinal % 2 == 1 {
                    5
                } else {
                    7
                };
                ScriptedStep {
                    text: format!(
                        "Let me think about this for a long while. The answer is {answer}."
                    ),
                    eos: true,
                    logprob_per_token: -0.5,
                    confidence: if unsure {
                        vec![5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.2]
                    } else {
                        vec![5.0]
                    },
                    ..Default::default()
                }
            },
            |_| 0.5,
        )
    }

    fn config() -> DeepConfConfig {
        DeepConfConfig {
            n: 8,
            warmup: 4,
            batch: 2,
            consensus: 0.95,
            confidence: ConfidenceConfig {
                window: 4,
                ..ConfidenceConfig::default()
            },
            ..DeepConfConfig::default()
        }
    }

    #[test]
    fn a_trace_cut_off_without_an_answer_does_not_vote_its_last_number() {
        use crate::strategy::{Event, Flow};
        // Every trace is cut at 24 tokens (bytes here), after "3 apples" and before its answer.
        let mut lm = ScriptedLm::new(
            |_| ScriptedStep {
                text: "I count 3 apples, then 4 more. The answer is 7.".into(),
                eos: true,
                logprob_per_token: -0.5,
                confidence: vec![5.0],
                ..Default::default()
            },
            |_| 0.5,
        );
        let config = DeepConfConfig {
            max_tokens: 24,
            ..config()
        };
        let mut events = Vec::new();
        let mut record = |e: &Event| {
            events.push(e.clone());
            Flow::Continue
        };
        let out = run(
            &config,
            &mut lm,
            &Problem::new("Q?"),
            &mut Observer::new(&mut record),
        )
        .unwrap();
        assert!(out
            .candidates
            .iter()
            .all(|c| c.finish == FinishReason::MaxTokens && c.answer.is_none()));
        assert_eq!(
            out.answer, None,
            "no vote for the 3 or 4 of unfinished working"
        );
        // The live events say what the candidates say.
        let sampled: Vec<Option<String>> = events
            .iter()
            .filter_map(|e| match e {
                Event::Sample { answer, .. } => Some(answer.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(sampled.len(), out.candidates.len());
        assert!(sampled.iter().all(Option::is_none));
    }

    #[test]
    fn unsure_traces_stop_early_and_do_not_vote() {
        let mut lm = model();
        let out = run(
            &config(),
            &mut lm,
            &Problem::new("Q?"),
            &mut Observer::default(),
        )
        .unwrap();
        assert_eq!(out.answer.as_deref(), Some("7"));
        assert_eq!(out.candidates.len(), 8);
        let stopped: Vec<_> = out
            .candidates
            .iter()
            .filter(|c| c.finish == FinishReason::LowConfidence)
            .collect();
        assert_eq!(stopped.len(), 2, "{:?}", out.candidates);
        for c in stopped {
            assert!(c.answer.is_none());
            // Stopped within a window of the collapse, long before the end of the text.
            assert!(c.tokens <= 12, "{}", c.tokens);
        }
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn a_settled_vote_stops_sampling() {
        let mut lm = ScriptedLm::new(
            |_| ScriptedStep {
                text: "The answer is 3.".into(),
                eos: true,
                logprob_per_token: -0.5,
                confidence: vec![4.0],
                ..Default::default()
            },
            |_| 0.5,
        );
        let out = run(
            &config(),
            &mut lm,
            &Problem::new("Q?"),
            &mut Observer::default(),
        )
        .unwrap();
        // The four warm-up traces agree: nothing more is sampled.
        assert_eq!(out.candidates.len(), 4);
        assert_eq!(out.answer.as_deref(), Some("3"));
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn cut_off_traces_count_against_consensus() {
        // Warm-up trace 0 answers; traces 1..4 run out of tokens before stating one. The lone
        // vote is not a consensus: sampling goes on to n.
        let mut lm = ScriptedLm::new(
            |q| ScriptedStep {
                text: if q.ordinal == 0 {
                    "The answer is 3.".into()
                } else {
                    "First I add the apples to the pears, then I take away the".into()
                },
                eos: q.ordinal == 0,
                logprob_per_token: -0.5,
                confidence: vec![4.0],
                ..Default::default()
            },
            |_| 0.5,
        );
        let config = DeepConfConfig {
            max_tokens: 20,
            ..config()
        };
        let out = run(
            &config,
            &mut lm,
            &Problem::new("Q?"),
            &mut Observer::default(),
        )
        .unwrap();
        assert_eq!(out.candidates.len(), 8);
        assert_eq!(out.answer.as_deref(), Some("3"));
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn config_parses_as_a_strategy_and_ranges_are_checked() {
        let c = StrategyConfig::from_json("deepconf", r#"{"n": 16, "warmup": 4}"#).unwrap();
        assert_eq!(c.name(), "deepconf");
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""type":"deepconf""#), "{json}");
        for (bad, field) in [
            (r#"{"warmup": 9}"#, "warmup"),
            (r#"{"batch": 0}"#, "batch"),
            (r#"{"percentile": 101}"#, "percentile"),
            (r#"{"consensus": 0}"#, "consensus"),
            (r#"{"n": 0}"#, "n"),
        ] {
            let e = StrategyConfig::from_json("deepconf", bad).unwrap_err();
            assert_eq!(e.field, field, "{bad}");
        }
    }
}
