//! Best-of-N: N samples in one batch from one prefill of the prompt, reranked by the self-judge,
//! by token confidence, by sequence log-probability, or by a (weighted, filtered) vote over their
//! answers.
//!
//! The self-judge reads its verdict *in place* by default: the verifier question is appended as a
//! new user turn to each candidate's own node ([`Judge::score_inline`], as MCTS does), so only the
//! question's few tokens are decoded per candidate. `judge_prompt: true` uses the separate verifier
//! prompt instead, which prefills every candidate's text again after the instructions.
//!
//! Which rerankers other strategies use: beam search and MCTS rank partial paths with the in-place
//! step judge (their `judge`), and every terminal [`Candidate`] they report carries its confidence
//! signals; [`Rerank`] itself is best-of-N's (and DeepConf's vote is [`Rerank::ConfidenceVote`]
//! with early stopping, see [`super::deepconf`]).

use serde::{Deserialize, Serialize};

use super::{
    from_root, limits, Candidate, ConfidenceSignals, Observer, Outcome, Problem, PromptConfig,
    Strategy,
};
use crate::error::{ConfigError, Error};
use crate::lm::{GenRequest, Lm, SamplingParams};
use crate::reward::confidence::ConfidenceConfig;
use crate::reward::judge::{Judge, JudgeConfig, Verdict};
use crate::reward::{r3, seqlogp, vote};

/// How candidates are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rerank {
    /// The self-judge's outcome score (in place, or through the separate prompt with
    /// `judge_prompt`).
    Judge,
    /// Token confidence: the [`ConfidenceConfig::signal`] of each trace (DeepConf).
    Confidence,
    /// Sequence log-probability (mean per token when `length_normalise`, else the sum).
    Logprob,
    /// Majority vote over extracted answers.
    #[default]
    Vote,
    /// Vote weighted by the self-judge's scores.
    WeightedVote,
    /// Vote weighted by each trace's confidence signal (DeepConf).
    ConfidenceVote,
    /// Confidence-weighted vote over the most confident `keep_percent` % of traces only
    /// (DeepConf's offline filtering).
    FilteredVote,
    /// Self-certainty (Kang et al., 2025): the trace whose token distributions are furthest
    /// from uniform on average ([`ConfidenceSignals::self_certainty`]).
    SelfCertainty,
    /// Self-certainty's Borda vote: the traces ranked by self-certainty, the one ranked r of N
    /// votes for its answer with weight (N − r + 1)^`borda_power`.
    BordaVote,
    /// The trace with the lowest mean entropy over its last [`ConfidenceConfig::tail`] tokens,
    /// where the answer is written ([`ConfidenceSignals::tail_entropy`]).
    TailEntropy,
    /// Confidence-informed self-consistency (CISC, Taubenfeld et al., 2025): a vote weighted by
    /// the softmax, at `cisc_temperature`, of each trace's log-probability score (mean per
    /// token with `length_normalise`).
    Cisc,
    /// CISC with the self-judge's P(yes) as each trace's confidence.
    CiscJudge,
}

impl Rerank {
    /// Every reranker, in the order of [`Rerank::parse`]'s list.
    pub const ALL: [Rerank; 12] = [
        Rerank::Judge,
        Rerank::Confidence,
        Rerank::Logprob,
        Rerank::Vote,
        Rerank::WeightedVote,
        Rerank::ConfidenceVote,
        Rerank::FilteredVote,
        Rerank::SelfCertainty,
        Rerank::BordaVote,
        Rerank::TailEntropy,
        Rerank::Cisc,
        Rerank::CiscJudge,
    ];

    /// Parses `judge`, `confidence`, `logprob`, `vote`, `weighted_vote`, `confidence_vote`,
    /// `filtered_vote`, `self_certainty`, `borda_vote`, `tail_entropy`, `cisc`, `cisc_judge`
    /// (`-` for `_` too).
    ///
    /// # Errors
    /// [`ConfigError`] listing the known rerankers.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        match name.replace('-', "_").as_str() {
            "judge" => Ok(Self::Judge),
            "confidence" => Ok(Self::Confidence),
            "logprob" => Ok(Self::Logprob),
            "vote" => Ok(Self::Vote),
            "weighted_vote" => Ok(Self::WeightedVote),
            "confidence_vote" => Ok(Self::ConfidenceVote),
            "filtered_vote" => Ok(Self::FilteredVote),
            "self_certainty" => Ok(Self::SelfCertainty),
            "borda_vote" => Ok(Self::BordaVote),
            "tail_entropy" => Ok(Self::TailEntropy),
            "cisc" => Ok(Self::Cisc),
            "cisc_judge" => Ok(Self::CiscJudge),
            other => Err(ConfigError::new(
                "rerank",
                format!(
                    "unknown reranker {other:?}; use judge, confidence, logprob, vote, \
                     weighted_vote, confidence_vote, filtered_vote, self_certainty, \
                     borda_vote, tail_entropy, cisc or cisc_judge"
                ),
            )),
        }
    }

    /// Whether this reranker needs the self-judge's verdicts.
    pub fn needs_judge(self) -> bool {
        matches!(self, Self::Judge | Self::WeightedVote | Self::CiscJudge)
    }

    /// Whether this reranker needs each token's whole distribution (self-certainty, entropy),
    /// which only the in-process backend gives.
    pub fn needs_distributions(self) -> bool {
        matches!(
            self,
            Self::SelfCertainty | Self::BordaVote | Self::TailEntropy
        )
    }

    /// Whether this reranker votes over answers (rather than picking one trace).
    pub fn votes(self) -> bool {
        matches!(
            self,
            Self::Vote
                | Self::WeightedVote
                | Self::ConfidenceVote
                | Self::FilteredVote
                | Self::BordaVote
                | Self::Cisc
                | Self::CiscJudge
        )
    }
}

/// Configuration of this strategy (the module's [`Strategy`] implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BestOfNConfig {
    /// Number of samples, 1..=256.
    pub n: u32,
    /// New tokens per sample, at most.
    pub max_tokens: u32,
    /// Sampling parameters; sample i uses `seed + i`.
    pub sampling: SamplingParams,
    /// How the solver is asked.
    pub prompt: PromptConfig,
    /// How candidates are ranked (default: majority vote, the best measured on the reasoner;
    /// README "Rerankers").
    pub rerank: Rerank,
    /// For `logprob`: rank by the mean per-token log-probability instead of the sum.
    pub length_normalise: bool,
    /// The self-judge (used by `judge` and `weighted_vote`).
    pub judge: JudgeConfig,
    /// R3 (DRO) of every candidate against the reference, computed while the candidates are in
    /// the cache ([`r3::label`]); it labels candidates ([`Outcome::r3`]) and picks the highest
    /// R3 only for an oracle-guided problem. Needs a reference; ignored without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r3: Option<r3::R3Config>,
    /// Read the judge's verdict through the separate verifier prompt
    /// ([`JudgeConfig::outcome_prompt`], every candidate prefilled again) instead of in place
    /// ([`JudgeConfig::inline_outcome_prompt`] appended to the candidate's own node).
    pub judge_prompt: bool,
    /// The confidence signal (used by `confidence`, `confidence_vote`, `filtered_vote`).
    pub confidence: ConfidenceConfig,
    /// For `filtered_vote`: the percentage η of most confident traces that vote, in (0, 100]
    /// (DeepConf uses 10 and 90); at least one trace always votes.
    pub keep_percent: f64,
    /// For `cisc` and `cisc_judge`: the softmax temperature over the traces' confidences, in
    /// (0, 100] (small: the most confident trace's vote dominates; large: a plain vote).
    pub cisc_temperature: f64,
    /// For `borda_vote`: the power p of the Borda weights (N − r + 1)^p, in [0, 8] (0: a plain
    /// vote).
    pub borda_power: f64,
}

impl Default for BestOfNConfig {
    fn default() -> Self {
        Self {
            n: 8,
            max_tokens: 384,
            sampling: SamplingParams::default(),
            prompt: PromptConfig::default(),
            rerank: Rerank::default(),
            length_normalise: true,
            judge: JudgeConfig::default(),
            r3: None,
            judge_prompt: false,
            confidence: ConfidenceConfig::default(),
            keep_percent: 50.0,
            cisc_temperature: 0.1,
            borda_power: 0.5,
        }
    }
}

impl BestOfNConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=limits::MAX_SAMPLES).contains(&self.n) {
            return Err(ConfigError::new(
                "n",
                format!("{} samples is outside 1..=256", self.n),
            ));
        }
        limits::check_max_tokens("max_tokens", self.max_tokens)?;
        if let Some(r) = &self.r3 {
            r.validate()?;
        }
        if !(self.keep_percent > 0.0 && self.keep_percent <= 100.0) {
            return Err(ConfigError::new(
                "keep_percent",
                format!(
                    "{} is outside (0, 100]; use 100 to keep every trace",
                    self.keep_percent
                ),
            ));
        }
        if !(self.cisc_temperature > 0.0 && self.cisc_temperature <= 100.0) {
            return Err(ConfigError::new(
                "cisc_temperature",
                format!("{} is outside (0, 100]", self.cisc_temperature),
            ));
        }
        if self.judge_prompt && self.judge.check_tokens > 0 {
            return Err(ConfigError::new(
                "judge.check_tokens",
                "a generated check runs in place, on the candidate's own node; drop judge_prompt \
                 or set judge.check_tokens to 0",
            ));
        }
        if !(0.0..=8.0).contains(&self.borda_power) {
            return Err(ConfigError::new(
                "borda_power",
                format!("{} is outside [0, 8]", self.borda_power),
            ));
        }
        self.confidence.validate()?;
        self.sampling.validate()
    }
}

impl Strategy for BestOfNConfig {
    strategy_fields!("best_of_n", seed: sampling.seed);

    fn votes(&self) -> bool {
        self.rerank.votes()
    }

    search_by!(run);
}

/// Samples `config.n` candidates and picks one.
fn run(
    config: &BestOfNConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    observer: &mut Observer<'_>,
) -> Result<Outcome, Error> {
    let (((candidates, chosen), r3), frame) =
        from_root(lm, &config.prompt, problem, |lm, root, made| {
            let requests: Vec<GenRequest> = (0..config.n)
                .map(|i| GenRequest::sample(root, &config.sampling, i, config.max_tokens))
                .collect();
            let generations = lm.generate(&requests)?;
            made.extend(generations.iter().map(|g| g.node));
            observer.samples(0, &generations, |g| problem.answer_of(&g.text, &g.finish))?;
            let ranked = rank(config, lm, problem, &generations)?;
            let scores = match (&config.r3, problem.answer.as_deref()) {
                (Some(c), Some(reference)) => {
                    Some(r3::label(lm, c, root, &generations, reference)?)
                }
                _ => None,
            };
            Ok((ranked, scores))
        })?;
    // `--oracle-guided` with R3: the reference steers the pick through R3.
    let chosen = match &r3 {
        Some(s) if problem.oracle_guided => s.best().unwrap_or(chosen),
        _ => chosen,
    };
    let mut outcome = Outcome::pick(
        config.name(),
        problem,
        candidates,
        chosen,
        Vec::new(),
        frame,
    );
    outcome.r3 = r3;
    Ok(outcome)
}

fn rank(
    config: &BestOfNConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    generations: &[crate::lm::Generation],
) -> Result<(Vec<Candidate>, usize), Error> {
    let answers: Vec<Option<String>> = generations
        .iter()
        .map(|g| problem.answer_of(&g.text, &g.finish))
        .collect();
    let judged = if config.rerank.needs_judge() {
        Some(judge_scores(config, lm, problem, generations)?)
    } else {
        None
    };
    let confidence: Vec<f64> = generations
        .iter()
        .map(|g| config.confidence.score(&g.confidence))
        .collect();
    let logprobs: Vec<f64> = generations
        .iter()
        .map(|g| seqlogp::of_generation(g).score(config.length_normalise))
        .collect();
    let signals: Vec<Option<ConfidenceSignals>> = generations
        .iter()
        .map(|g| ConfidenceSignals::of(g, &config.confidence))
        .collect();
    let certainty: Option<Vec<f64>> = signals.iter().map(|s| (*s)?.self_certainty).collect();
    let tail_entropy: Option<Vec<f64>> = signals.iter().map(|s| (*s)?.tail_entropy).collect();
    if config.rerank.needs_distributions() && certainty.is_none() {
        return Err(ConfigError::new(
            "rerank",
            format!(
                "{:?} needs each token's whole distribution, which this backend does not give \
                 (a remote server returns only the top log-probabilities); use vote, logprob, \
                 confidence or cisc",
                config.rerank
            ),
        )
        .into());
    }
    let ballots = Ballots {
        answers: &answers,
        judged: judged.as_deref(),
        confidence: &confidence,
        logprobs: &logprobs,
        certainty: certainty.as_deref(),
        tail_entropy: tail_entropy.as_deref(),
    };
    let (scores, chosen) = choose(config.rerank, config, &ballots);

    // `--oracle-guided`: a right candidate, the best-scored one, when there is one.
    let right = |i: usize| problem.check(answers[i].as_deref()) == Some(true);
    let chosen = if problem.oracle_guided && !right(chosen) {
        (0..answers.len())
            .filter(|&i| right(i))
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
            .unwrap_or(chosen)
    } else {
        chosen
    };
    let candidates = generations
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut c = Candidate::from_generation(
                g,
                answers[i].clone(),
                problem,
                judged.as_ref().map(|j| j[i]),
                scores[i],
            );
            c.confidence = signals[i];
            c
        })
        .collect();
    Ok((candidates, chosen))
}

/// The self-judge's outcome score of every generation: in place on its own node (after a
/// generated check with `judge.check_tokens`), or through the separate verifier prompt with
/// `judge_prompt`.
fn judge_scores(
    config: &BestOfNConfig,
    lm: &mut dyn Lm,
    problem: &Problem,
    generations: &[crate::lm::Generation],
) -> Result<Vec<f64>, Error> {
    let judge = Judge::new(lm, config.judge.clone())?;
    if config.judge_prompt {
        let verifier = judge.prepare(lm, &problem.question, Verdict::Outcome)?;
        let texts: Vec<&str> = generations.iter().map(|g| g.text.as_str()).collect();
        let scores = judge.score(lm, &verifier, &texts);
        verifier.release(lm);
        Ok(scores?.into_iter().map(|s| s.score).collect())
    } else if config.judge.check_tokens > 0 {
        let nodes: Vec<_> = generations.iter().map(|g| g.node).collect();
        let (scores, ..) = judge.score_generative(lm, &nodes)?;
        Ok(scores.into_iter().map(|s| s.score).collect())
    } else {
        let queries: Vec<_> = generations
            .iter()
            .map(|g| (g.node, Verdict::Outcome))
            .collect();
        let (scores, _) = judge.score_inline(lm, &queries)?;
        Ok(scores.into_iter().map(|s| s.score).collect())
    }
}

/// What the rerankers read of N candidates: one entry per candidate in every list.
#[derive(Debug, Clone, Copy)]
pub struct Ballots<'a> {
    /// Each candidate's extracted answer.
    pub answers: &'a [Option<String>],
    /// The self-judge's P(yes), when judged.
    pub judged: Option<&'a [f64]>,
    /// The configured confidence signal ([`ConfidenceConfig::signal`]).
    pub confidence: &'a [f64],
    /// The log-probability score (mean per token or sum).
    pub logprobs: &'a [f64],
    /// Self-certainty ([`ConfidenceSignals::self_certainty`]), when the backend gives it.
    pub certainty: Option<&'a [f64]>,
    /// Tail entropy ([`ConfidenceSignals::tail_entropy`]), when the backend gives it.
    pub tail_entropy: Option<&'a [f64]>,
}

/// Per-candidate scores and the chosen index (ties: the lowest index) under `rerank`, with
/// `config`'s `keep_percent`, `cisc_temperature` and `borda_power`. A reranker whose signal is
/// missing (`judge`, `weighted_vote` and `cisc_judge` without verdicts, the certainty rerankers
/// without distributions) falls back to the plain vote. The rerankers that pick the best score
/// pick it among the candidates that reached an answer, when one did: a trace cut at
/// `max_tokens` before its answer (often a loop, which reads as confident) answers nothing.
/// `ponder eval` and `ponder bench` use it to score every reranker on the same samples.
pub fn choose(rerank: Rerank, config: &BestOfNConfig, b: &Ballots<'_>) -> (Vec<f64>, usize) {
    let weighted = |weights: Vec<f64>| vote::shares_and_pick(b.answers, &weights);
    let argmax = |scores: &[f64]| argmax_answered(scores, b.answers);
    match (rerank, b.judged, b.certainty, b.tail_entropy) {
        (Rerank::Judge, Some(j), ..) => (j.to_vec(), argmax(j)),
        (Rerank::Confidence, ..) => (b.confidence.to_vec(), argmax(b.confidence)),
        (Rerank::Logprob, ..) => (b.logprobs.to_vec(), argmax(b.logprobs)),
        (Rerank::WeightedVote, Some(j), ..) => weighted(j.to_vec()),
        (Rerank::ConfidenceVote, ..) => weighted(b.confidence.to_vec()),
        (Rerank::FilteredVote, ..) => {
            weighted(filter_most_confident(b.confidence, config.keep_percent))
        }
        (Rerank::SelfCertainty, _, Some(c), _) => (c.to_vec(), argmax(c)),
        (Rerank::BordaVote, _, Some(c), _) => weighted(borda_weights(c, config.borda_power)),
        (Rerank::TailEntropy, .., Some(h)) => {
            let sure: Vec<f64> = h.iter().map(|&x| -x).collect();
            let best = argmax(&sure);
            (sure, best)
        }
        (Rerank::Cisc, ..) => weighted(softmax_weights(b.logprobs, config.cisc_temperature)),
        (Rerank::CiscJudge, Some(j), ..) => weighted(softmax_weights(j, config.cisc_temperature)),
        (
            Rerank::Vote
            | Rerank::Judge
            | Rerank::WeightedVote
            | Rerank::CiscJudge
            | Rerank::SelfCertainty
            | Rerank::BordaVote
            | Rerank::TailEntropy,
            ..,
        ) => weighted(vec![1.0; b.answers.len()]),
    }
}

/// Borda weights of `scores` (higher = better): the candidate ranked r of N (1 = best; ties
/// keep index order) weighs (N − r + 1)^`power`.
pub(crate) fn borda_weights(scores: &[f64], power: f64) -> Vec<f64> {
    let n = scores.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut w = vec![0.0; n];
    for (r, &i) in order.iter().enumerate() {
        w[i] = ((n - r) as f64).powf(power);
    }
    w
}

/// CISC's weights: softmax of `scores` at `temperature` (relative to the largest, so that the
/// largest weighs 1 and nothing overflows).
pub(crate) fn softmax_weights(scores: &[f64], temperature: f64) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    scores
        .iter()
        .map(|&s| ((s - max) / temperature).exp())
        .collect()
}

/// The weights of DeepConf's filtered vote: each trace's confidence if it is among the most
/// confident `keep_percent` % (at least one trace), else 0.
pub(crate) fn filter_most_confident(confidence: &[f64], keep_percent: f64) -> Vec<f64> {
    let keep = ((confidence.len() as f64 * keep_percent / 100.0).ceil() as usize)
        .clamp(1, confidence.len().max(1));
    let mut order: Vec<usize> = (0..confidence.len()).collect();
    order.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]).then(a.cmp(&b)));
    let mut w = vec![0.0; confidence.len()];
    for &i in order.iter().take(keep) {
        w[i] = confidence[i];
    }
    w
}

/// Index of the largest value among the candidates with an answer (all of them when none has
/// one); ties go to the lowest index.
fn argmax_answered(xs: &[f64], answers: &[Option<String>]) -> usize {
    let any = answers.iter().any(Option::is_some);
    let eligible = |i: usize| !any || answers.get(i).is_some_and(Option::is_some);
    let mut best: Option<usize> = None;
    for (i, &x) in xs.iter().enumerate() {
        if eligible(i) && best.is_none_or(|b| x > xs[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_the_first_of_equals() {
        let all = vec![Some("1".to_string()); 4];
        assert_eq!(argmax_answered(&[0.1, 0.5, 0.5, 0.2], &all), 1);
        assert_eq!(argmax_answered(&[1.0], &all[..1]), 0);
    }

    #[test]
    fn score_rerankers_pick_among_the_answered() {
        // The best score belongs to a trace cut before its answer: the best answered one wins.
        let answers = [None, Some("4".to_string()), Some("5".to_string()), None];
        let scores = [0.9, 0.2, 0.6, 0.95];
        assert_eq!(argmax_answered(&scores, &answers), 2);
        // No candidate answered: the best score, as before.
        assert_eq!(argmax_answered(&scores, &[None, None, None, None]), 3);
        let config = BestOfNConfig::default();
        let ballots = Ballots {
            answers: &answers,
            judged: Some(&scores),
            confidence: &scores,
            logprobs: &scores,
            certainty: Some(&scores),
            tail_entropy: Some(&[0.1, 0.9, 0.3, 0.0]),
        };
        for rerank in [
            Rerank::Judge,
            Rerank::Confidence,
            Rerank::Logprob,
            Rerank::SelfCertainty,
            Rerank::TailEntropy,
        ] {
            let (kept, pick) = choose(rerank, &config, &ballots);
            assert_eq!((pick, kept.len()), (2, 4), "{rerank:?}");
        }
    }

    #[test]
    fn the_filtered_vote_keeps_the_most_confident_traces() {
        let w = filter_most_confident(&[1.0, 4.0, 2.0, 3.0], 50.0);
        assert_eq!(w, vec![0.0, 4.0, 0.0, 3.0]);
        // At least one trace votes, however small η.
        assert_eq!(filter_most_confident(&[1.0, 4.0], 1.0), vec![0.0, 4.0]);
        assert_eq!(filter_most_confident(&[1.0, 4.0], 100.0), vec![1.0, 4.0]);
    }

    #[test]
    fn each_sample_is_reported_before_the_candidates_and_a_stop_there_cancels() {
        use crate::lm::scripted::StepQuery;
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        use crate::lm::FinishReason;
        use crate::strategy::{Event, Flow, StrategyConfig};
        let script = |q: &StepQuery<'_>| ScriptedStep {
            text: format!("The answer is {}.", q.ordinal % 2 + 4),
            eos: true,
            logprob_per_token: -1.0,
            confidence: vec![1.0],
            ..Default::default()
        };
        let mut lm = ScriptedLm::new(script, |_| 0.5);
        let strategy = StrategyConfig::BestOfN(BestOfNConfig {
            n: 3,
            rerank: Rerank::Vote,
            ..BestOfNConfig::default()
        });
        let problem = Problem::new("Q?");
        let mut events = Vec::new();
        let mut record = |e: &Event| {
            events.push(e.clone());
            Flow::Continue
        };
        strategy
            .run_observed(&mut lm, &problem, &mut Observer::new(&mut record))
            .unwrap();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::Sample { .. } => "sample",
                Event::Candidate { .. } => "candidate",
                Event::Done { .. } => "done",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "sample",
                "sample",
                "sample",
                "candidate",
                "candidate",
                "candidate",
                "done"
            ]
        );
        let Event::Sample {
            index,
            tokens,
            answer,
            finish,
        } = &events[1]
        else {
            unreachable!()
        };
        assert_eq!((*index, *finish == FinishReason::Eos), (1, true));
        assert!(*tokens > 0 && answer.is_some(), "{:?}", events[1]);

        // A stop on the first sample cancels the solve: no outcome, nothing left in the cache.
        let mut lm = ScriptedLm::new(script, |_| 0.5);
        let mut stop = |_: &Event| Flow::Stop;
        let err = strategy
            .run_observed(&mut lm, &problem, &mut Observer::new(&mut stop))
            .unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn confidence_rerankers_follow_the_confident_traces() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        // Five unsure traces say 5, three sure ones say 7: the vote picks 5, the confidence
        // rerankers 7.
        let mut lm = ScriptedLm::new(
            |q| {
                let sure = q.ordinal % 3 == 0;
                ScriptedStep {
                    text: format!("The answer is {}.", if sure { 7 } else { 5 }),
                    eos: true,
                    logprob_per_token: -1.0,
                    confidence: vec![if sure { 6.0 } else { 1.0 }],
                    ..Default::default()
                }
            },
            |_| 0.5,
        );
        let problem = Problem::new("Q?");
        for (rerank, want) in [
            (Rerank::Vote, "5"),
            (Rerank::Confidence, "7"),
            (Rerank::ConfidenceVote, "7"),
            (Rerank::FilteredVote, "7"),
        ] {
            let config = BestOfNConfig {
                rerank,
                keep_percent: 40.0,
                ..BestOfNConfig::default()
            };
            let out = run(&config, &mut lm, &problem, &mut Observer::default()).unwrap();
            assert_eq!(out.answer.as_deref(), Some(want), "{rerank:?}");
        }
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn borda_and_cisc_weights_are_exact() {
        // Ranks by score: index 1 first, then 2, then 0.
        let w = borda_weights(&[0.3, 0.9, 0.5], 0.5);
        assert_eq!(w, vec![1.0, 3f64.sqrt(), 2f64.sqrt()]);
        // Ties keep index order; power 0 is a plain vote.
        assert_eq!(borda_weights(&[1.0, 1.0], 1.0), vec![2.0, 1.0]);
        assert_eq!(borda_weights(&[0.1, 0.7, 0.2], 0.0), vec![1.0; 3]);
        let w = softmax_weights(&[-0.1, -0.3, -0.1], 0.1);
        assert_eq!(w[0], 1.0);
        assert!((w[1] - (-2f64).exp()).abs() < 1e-12, "{w:?}");
        assert_eq!(w[2], 1.0);
    }

    #[test]
    fn certainty_rerankers_follow_the_certain_traces() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        // Samples 0 and 1 say 4 (uncertain, flat, less likely); sample 2 says 5 (certain,
        // low entropy at the end, more likely per token).
        let script = |q: &crate::lm::scripted::StepQuery<'_>| {
            let sure = q.ordinal % 3 == 2;
            ScriptedStep {
                text: format!("The answer is {}.", if sure { 5 } else { 4 }),
                eos: true,
                logprob_per_token: if sure { -0.1 } else { -0.5 },
                confidence: vec![1.0],
                certainty: vec![if sure { 9.0 } else { 1.0 }],
                entropy: vec![if sure { 0.2 } else { 2.0 }],
            }
        };
        let mut lm = ScriptedLm::new(script, |_| 0.5);
        let problem = Problem::new("Q?");
        // Borda at p = 0.5: 4 gets √2 + 1 = 2.41, 5 gets √3 = 1.73; at p = 2: 4 + 1 against 9.
        // CISC at T = 0.1: 5 weighs 1, each 4 weighs e^-4; at T = 100 the weights are nearly
        // equal and the two 4s win.
        for (rerank, borda_power, cisc_temperature, want) in [
            (Rerank::Vote, 0.5, 0.1, "4"),
            (Rerank::SelfCertainty, 0.5, 0.1, "5"),
            (Rerank::BordaVote, 0.5, 0.1, "4"),
            (Rerank::BordaVote, 2.0, 0.1, "5"),
            (Rerank::TailEntropy, 0.5, 0.1, "5"),
            (Rerank::Cisc, 0.5, 0.1, "5"),
            (Rerank::Cisc, 0.5, 100.0, "4"),
        ] {
            let config = BestOfNConfig {
                n: 3,
                rerank,
                borda_power,
                cisc_temperature,
                ..BestOfNConfig::default()
            };
            let out = run(&config, &mut lm, &problem, &mut Observer::default()).unwrap();
            assert_eq!(
                out.answer.as_deref(),
                Some(want),
                "{rerank:?} p={borda_power}"
            );
            let c = out.candidates[2].confidence.unwrap();
            assert_eq!(c.self_certainty, Some(9.0));
            assert_eq!(c.tail_entropy, Some(0.2f32 as f64));
        }
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn cisc_judge_weighs_votes_by_the_verdicts() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        // Two samples say 4, one says 5; the judge trusts only the 5 (P(yes) 0.9 against 0.1).
        let mut lm = ScriptedLm::new(
            |q| ScriptedStep {
                text: format!("The answer is {}.", if q.ordinal % 3 == 2 { 5 } else { 4 }),
                eos: true,
                logprob_per_token: -0.5,
                ..Default::default()
            },
            |text| {
                if text.contains("answer is 5") {
                    0.9
                } else {
                    0.1
                }
            },
        );
        let problem = Problem::new("Q?");
        // At T = 0.1 each 4 weighs e^-8 against the 5's 1; at T = 100 the two 4s win.
        for (t, want) in [(0.1, "5"), (100.0, "4")] {
            let config = BestOfNConfig {
                n: 3,
                rerank: Rerank::CiscJudge,
                cisc_temperature: t,
                ..BestOfNConfig::default()
            };
            let out = run(&config, &mut lm, &problem, &mut Observer::default()).unwrap();
            assert_eq!(out.answer.as_deref(), Some(want), "T={t}");
        }
    }

    #[test]
    fn the_generative_judge_reads_its_verdict_after_its_own_check() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        use crate::reward::judge::JudgeConfig;
        // Samples 0 and 1 say 5, sample 2 says 4. Asked to check, the model redoes the sum and
        // writes "right" only after the 4; the verdict follows the check, not the candidate.
        let mut lm = ScriptedLm::new(
            |q| {
                let text = if q.text.contains("Check the solution above") {
                    if q.text.contains("answer is 4") {
                        "2 + 2 = 4: right.".to_string()
                    } else {
                        "2 + 2 = 4, not 5: wrong.".to_string()
                    }
                } else {
                    format!("The answer is {}.", if q.ordinal == 2 { 4 } else { 5 })
                };
                ScriptedStep {
                    text,
                    eos: true,
                    logprob_per_token: -0.5,
                    ..Default::default()
                }
            },
            |text| {
                // The verdict node holds the check and, after it, the verdict question.
                assert!(text.contains("Is the solution above correct?"), "{text}");
                if text.contains(": right.") {
                    0.75
                } else {
                    0.25
                }
            },
        );
        let problem = Problem::new("What is 2 + 2?");
        let config = BestOfNConfig {
            n: 3,
            rerank: Rerank::Judge,
            judge: JudgeConfig {
                check_tokens: 64,
                ..JudgeConfig::default()
            },
            ..BestOfNConfig::default()
        };
        let out = run(&config, &mut lm, &problem, &mut Observer::default()).unwrap();
        assert_eq!(out.answer.as_deref(), Some("4"));
        let judged: Vec<f64> = out.candidates.iter().map(|c| c.judge.unwrap()).collect();
        assert_eq!(judged, vec![0.25, 0.25, 0.75]);
        assert_eq!(lm.live_nodes(), 0);
        // In place only.
        let e = BestOfNConfig {
            judge_prompt: true,
            ..config
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "judge.check_tokens");
    }

    #[test]
    fn certainty_rerankers_refuse_a_backend_without_distributions() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        // No certainty or entropy per token: what a remote server gives.
        let mut lm = ScriptedLm::new(
            |_| ScriptedStep {
                text: "The answer is 4.".into(),
                eos: true,
                logprob_per_token: -0.5,
                ..Default::default()
            },
            |_| 0.5,
        );
        for rerank in [
            Rerank::SelfCertainty,
            Rerank::BordaVote,
            Rerank::TailEntropy,
        ] {
            let config = BestOfNConfig {
                n: 2,
                rerank,
                ..BestOfNConfig::default()
            };
            let e = run(
                &config,
                &mut lm,
                &Problem::new("Q?"),
                &mut Observer::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("whole distribution") && e.contains("use vote"),
                "{e}"
            );
        }
        assert_eq!(lm.live_nodes(), 0);
        for (field, config) in [
            (
                "cisc_temperature",
                BestOfNConfig {
                    cisc_temperature: 0.0,
                    ..BestOfNConfig::default()
                },
            ),
            (
                "borda_power",
                BestOfNConfig {
                    borda_power: -1.0,
                    ..BestOfNConfig::default()
                },
            ),
        ] {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn the_in_place_judge_reads_the_candidates_own_nodes() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep};
        // The judge sees the solver's conversation with the inline question after the
        // candidate in place, and the verifier prompt's "Check the following solution" with
        // `judge_prompt`.
        let problem = Problem::new("Q?");
        for judge_prompt in [false, true] {
            let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
            let log = seen.clone();
            let mut lm = ScriptedLm::new(
                |q| ScriptedStep {
                    text: format!("The answer is {}.", q.ordinal),
                    eos: true,
                    logprob_per_token: -1.0,
                    confidence: Vec::new(),
                    ..Default::default()
                },
                move |text| {
                    log.lock().push(text.to_string());
                    if text.contains("The answer is 2.") {
                        0.9
                    } else {
                        0.1
                    }
                },
            );
            let config = BestOfNConfig {
                n: 4,
                rerank: Rerank::Judge,
                judge_prompt,
                ..BestOfNConfig::default()
            };
            let out = run(&config, &mut lm, &problem, &mut Observer::default()).unwrap();
            assert_eq!(out.answer.as_deref(), Some("2"));
            // The verdicts read after a candidate (the separate prompt also reads its shared
            // prefix, which holds no candidate).
            let texts: Vec<String> = seen
                .lock()
                .iter()
                .filter(|t| t.contains("The answer is"))
                .cloned()
                .collect();
            assert_eq!(texts.len(), 4, "{texts:?}");
            let inline = "Is the solution above correct?";
            assert!(
                texts.iter().all(|t| t.contains(inline) != judge_prompt
                    && t.contains("Check the following solution") == judge_prompt),
                "{texts:?}"
            );
            assert_eq!(lm.live_nodes(), 0);
        }
    }

    #[test]
    fn rerankers_parse_and_unknown_ones_are_named() {
        assert_eq!(
            Rerank::parse("weighted-vote").unwrap(),
            Rerank::WeightedVote
        );
        let e = Rerank::parse("oracle").unwrap_err();
        assert_eq!(e.field, "rerank");
        assert!(e.reason.contains("judge, confidence, logprob, vote"));
        for r in Rerank::ALL {
            let name = serde_json::to_string(&r).unwrap();
            assert_eq!(Rerank::parse(name.trim_matches('"')).unwrap(), r);
        }
    }

    #[test]
    fn config_round_trips_through_the_tagged_enum() {
        let c = super::super::StrategyConfig::from_json(
            "best-of-n",
            r#"{"n": 4, "rerank": "vote", "sampling": {"temperature": 0.5}}"#,
        )
        .unwrap();
        let super::super::StrategyConfig::BestOfN(b) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(
            (b.n, b.rerank, b.sampling.temperature),
            (4, Rerank::Vote, 0.5)
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""type":"best_of_n""#), "{json}");
        for bad in [
            r#"{"n": 0}"#,
            r#"{"rerank": "magic"}"#,
            r#"{"nn": 3}"#,
            r#"[1]"#,
            r#"{"n": 2"#,
            r#"{"keep_percent": 0}"#,
            r#"{"confidence": {"window": 0}}"#,
        ] {
            assert!(
                super::super::StrategyConfig::from_json("best-of-n", bad).is_err(),
                "{bad}"
            );
        }
    }
}
