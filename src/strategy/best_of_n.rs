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
}

impl Rerank {
    /// Every reranker, in the order of [`Rerank::parse`]'s list.
    pub const ALL: [Rerank; 7] = [
        Rerank::Judge,
        Rerank::Confidence,
        Rerank::Logprob,
        Rerank::Vote,
        Rerank::WeightedVote,
        Rerank::ConfidenceVote,
        Rerank::FilteredVote,
    ];

    /// Parses `judge`, `confidence`, `logprob`, `vote`, `weighted_vote`, `confidence_vote`,
    /// `filtered_vote` (`-` for `_` too).
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
            other => Err(ConfigError::new(
                "rerank",
                format!(
                    "unknown reranker {other:?}; use judge, confidence, logprob, vote, \
                     weighted_vote, confidence_vote or filtered_vote"
                ),
            )),
        }
    }

    /// Whether this reranker needs the self-judge's verdicts.
    pub fn needs_judge(self) -> bool {
        matches!(self, Self::Judge | Self::WeightedVote)
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
        self.confidence.validate()?;
        self.sampling.validate()
    }
}

impl Strategy for BestOfNConfig {
    strategy_fields!("best_of_n", seed: sampling.seed);

    fn votes(&self) -> bool {
        matches!(
            self.rerank,
            Rerank::Vote | Rerank::WeightedVote | Rerank::ConfidenceVote | Rerank::FilteredVote
        )
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
    let (scores, chosen) = choose(
        config.rerank,
        config.keep_percent,
        &answers,
        judged.as_deref(),
        &confidence,
        &logprobs,
    );

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
            c.confidence = ConfidenceSignals::of(&g.confidence, &config.confidence);
            c
        })
        .collect();
    Ok((candidates, chosen))
}

/// The self-judge's outcome score of every generation: in place on its own node, or through
/// the separate verifier prompt with `judge_prompt`.
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
    } else {
        let queries: Vec<_> = generations
            .iter()
            .map(|g| (g.node, Verdict::Outcome))
            .collect();
        let (scores, _) = judge.score_inline(lm, &queries)?;
        Ok(scores.into_iter().map(|s| s.score).collect())
    }
}

/// Per-candidate scores and the chosen index (ties: the lowest index) under `rerank`, from each
/// candidate's answer, judge score (`None` when not judged: `judge` and `weighted_vote` then
/// fall back to the plain vote), confidence signal and log-probability score. `ponder eval`
/// uses it to score every reranker on the same samples.
pub fn choose(
    rerank: Rerank,
    keep_percent: f64,
    answers: &[Option<String>],
    judged: Option<&[f64]>,
    confidence: &[f64],
    logprobs: &[f64],
) -> (Vec<f64>, usize) {
    let weighted = |weights: Vec<f64>| vote::shares_and_pick(answers, &weights);
    match (rerank, judged) {
        (Rerank::Judge, Some(j)) => (j.to_vec(), argmax(j)),
        (Rerank::Confidence, _) => (confidence.to_vec(), argmax(confidence)),
        (Rerank::Logprob, _) => (logprobs.to_vec(), argmax(logprobs)),
        (Rerank::WeightedVote, Some(j)) => weighted(j.to_vec()),
        (Rerank::ConfidenceVote, _) => weighted(confidence.to_vec()),
        (Rerank::FilteredVote, _) => weighted(filter_most_confident(confidence, keep_percent)),
        (Rerank::Vote | Rerank::Judge | Rerank::WeightedVote, _) => {
            weighted(vec![1.0; answers.len()])
        }
    }
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

/// Index of the largest value; ties go to the lowest index.
fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_the_first_of_equals() {
        assert_eq!(argmax(&[0.1, 0.5, 0.5, 0.2]), 1);
        assert_eq!(argmax(&[1.0]), 0);
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
        assert!(
            matches!(err, Error::Decode(crate::error::DecodeError::Cancelled)),
            "{err}"
        );
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
