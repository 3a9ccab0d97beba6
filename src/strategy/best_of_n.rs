//! Best-of-N: N samples in one batch from one prefill of the prompt, reranked by the self-judge,
//! by sequence log-probability, or by a (judge-weighted) vote over their answers.

use serde::{Deserialize, Serialize};

use super::{limits, Candidate, Outcome, Problem, PromptConfig};
use crate::error::{ConfigError, Error};
use crate::lm::{GenRequest, Lm, SamplingParams};
use crate::reward::judge::{Judge, JudgeConfig, Verdict};
use crate::reward::{r3, seqlogp, vote};

/// How candidates are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rerank {
    /// The self-judge's outcome score.
    #[default]
    Judge,
    /// Sequence log-probability (mean per token when `length_normalise`, else the sum).
    Logprob,
    /// Majority vote over extracted answers.
    Vote,
    /// Vote weighted by the self-judge's scores.
    WeightedVote,
}

impl Rerank {
    /// Parses `judge`, `logprob`, `vote`, `weighted_vote` (or `weighted-vote`).
    ///
    /// # Errors
    /// [`ConfigError`] listing the known rerankers.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        match name.replace('-', "_").as_str() {
            "judge" => Ok(Self::Judge),
            "logprob" => Ok(Self::Logprob),
            "vote" => Ok(Self::Vote),
            "weighted_vote" => Ok(Self::WeightedVote),
            other => Err(ConfigError::new(
                "rerank",
                format!("unknown reranker {other:?}; use judge, logprob, vote or weighted_vote"),
            )),
        }
    }
}

/// Configuration of [`run`].
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
    /// How candidates are ranked.
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
}

impl Default for BestOfNConfig {
    fn default() -> Self {
        Self {
            n: 8,
            max_tokens: 384,
            sampling: SamplingParams::default(),
            prompt: PromptConfig::default(),
            rerank: Rerank::Judge,
            length_normalise: true,
            judge: JudgeConfig::default(),
            r3: None,
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
        self.sampling.validate()
    }
}

/// Samples `config.n` candidates and picks one.
///
/// # Errors
/// Model errors; an invalid judge configuration.
pub fn run(config: &BestOfNConfig, lm: &mut dyn Lm, problem: &Problem) -> Result<Outcome, Error> {
    let before = lm.usage();
    let root = lm.root(&config.prompt.messages(&problem.question))?;
    let requests: Vec<GenRequest> = (0..config.n)
        .map(|i| GenRequest {
            parent: root,
            sampling: config
                .sampling
                .with_seed(config.sampling.seed.wrapping_add(u64::from(i))),
            stop: Vec::new(),
            max_tokens: config.max_tokens,
            ignore_eos: false,
        })
        .collect();
    let generations = match lm.generate(&requests) {
        Ok(g) => g,
        Err(e) => {
            lm.release(root);
            return Err(e.into());
        }
    };
    let nodes: Vec<_> = generations.iter().map(|g| g.node).collect();
    let result = rank(config, lm, problem, &generations).and_then(|ranked| {
        let scores = match (&config.r3, problem.answer.as_deref()) {
            (Some(c), Some(reference)) => Some(r3::label(lm, c, root, &generations, reference)?),
            _ => None,
        };
        Ok((ranked, scores))
    });
    for n in nodes.into_iter().chain([root]) {
        lm.release(n);
    }
    let ((candidates, chosen), r3) = result?;
    // `--oracle-guided` with R3: the reference steers the pick through R3.
    let chosen = match &r3 {
        Some(s) if problem.oracle_guided => s.best().unwrap_or(chosen),
        _ => chosen,
    };
    let mut outcome = Outcome::pick(
        "best_of_n",
        problem,
        candidates,
        chosen,
        Vec::new(),
        lm.usage().since(&before),
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
        .map(|g| problem.extract(&g.text))
        .collect();
    let judged = match config.rerank {
        Rerank::Judge | Rerank::WeightedVote => {
            let judge = Judge::new(lm, config.judge.clone())?;
            let verifier = judge.prepare(lm, &problem.question, Verdict::Outcome)?;
            let texts: Vec<&str> = generations.iter().map(|g| g.text.as_str()).collect();
            let scores = judge.score(lm, &verifier, &texts);
            verifier.release(lm);
            Some(scores?.into_iter().map(|s| s.score).collect::<Vec<f64>>())
        }
        Rerank::Logprob | Rerank::Vote => None,
    };

    // Per-candidate scores, and the chosen index (ties: the lowest index).
    let (scores, chosen): (Vec<f64>, usize) = match config.rerank {
        Rerank::Judge => {
            let s = judged.clone().expect("judged above");
            let c = argmax(&s);
            (s, c)
        }
        Rerank::Logprob => {
            let s: Vec<f64> = generations
                .iter()
                .map(|g| seqlogp::of_generation(g).score(config.length_normalise))
                .collect();
            let c = argmax(&s);
            (s, c)
        }
        Rerank::Vote | Rerank::WeightedVote => {
            let weights = match &judged {
                Some(j) => j.clone(),
                None => vec![1.0; generations.len()],
            };
            let winner = vote::weighted(&answers, &weights);
            // Each candidate scores its answer group's share of the vote.
            let mut s = vec![0.0; answers.len()];
            for group in vote::tally(&answers, &weights) {
                for &m in &group.members {
                    s[m] = group.share;
                }
            }
            let c = match winner {
                // Within the winning group, the member with the largest weight.
                Some(w) => *w
                    .members
                    .iter()
                    .max_by(|&&a, &&b| weights[a].total_cmp(&weights[b]).then(b.cmp(&a)))
                    .expect("a winner has members"),
                None => 0,
            };
            (s, c)
        }
    };

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
            Candidate::from_generation(
                g,
                answers[i].clone(),
                problem,
                judged.as_ref().map(|j| j[i]),
                scores[i],
            )
        })
        .collect();
    Ok((candidates, chosen))
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
    fn rerankers_parse_and_unknown_ones_are_named() {
        assert_eq!(
            Rerank::parse("weighted-vote").unwrap(),
            Rerank::WeightedVote
        );
        let e = Rerank::parse("oracle").unwrap_err();
        assert_eq!(e.field, "rerank");
        assert!(e.reason.contains("judge, logprob, vote"));
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
        ] {
            assert!(
                super::super::StrategyConfig::from_json("best-of-n", bad).is_err(),
                "{bad}"
            );
        }
    }
}
