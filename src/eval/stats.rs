//! Statistics over solved problems, shared by `eval`, `bench` and `synth`: the AUC of a signal
//! against correctness, every candidate's signals as one record, the accuracy each best-of-N
//! reranker would have had on the same samples, the distinct answers among candidates and
//! B-STaR's balance score of a problem's training samples.
//!
//! Everything here is computed from [`CandidateSignals`], which a strategy's [`Outcome`] gives
//! ([`CandidateSignals::of`]) and which `bench` keeps per problem in its `results.jsonl`, so a
//! report rebuilt from files and one made while solving count the same way.

use serde::{Deserialize, Serialize};

use crate::reward::answer;
use crate::reward::confidence::ConfidenceSignal;
use crate::strategy::adaptive::{samples_drawn, AdaptiveConfig};
use crate::strategy::best_of_n::{choose, Ballots, BestOfNConfig};
use crate::strategy::{ConfidenceSignals, Outcome, Rerank, StrategyConfig};

/// One candidate's signals, as the metrics read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateSignals {
    /// Its answer.
    pub answer: Option<String>,
    /// Whether it is right.
    pub correct: Option<bool>,
    /// Tokens generated for it.
    pub tokens: u32,
    /// The score the strategy ranked it by (its reranker's signal).
    pub score: f64,
    /// The self-judge's score, when judged.
    pub judge: Option<f64>,
    /// Mean log-probability per token.
    pub mean_logprob: f64,
    /// Its token-confidence signals (sampled candidates; absent in records written before
    /// they were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<ConfidenceSignals>,
}

impl CandidateSignals {
    /// Every candidate of `outcome`.
    pub fn of(outcome: &Outcome) -> Vec<Self> {
        outcome
            .candidates
            .iter()
            .map(|c| Self {
                answer: c.answer.clone(),
                correct: c.correct,
                tokens: c.tokens,
                score: c.score,
                judge: c.judge,
                mean_logprob: c.mean_logprob,
                confidence: c.confidence,
            })
            .collect()
    }

    fn signal(&self, s: ConfidenceSignal) -> Option<f64> {
        self.confidence.map(|x| match s {
            ConfidenceSignal::Mean => x.mean,
            ConfidenceSignal::Tail => x.tail,
            ConfidenceSignal::LowestGroup => x.lowest_group,
        })
    }

    fn self_certainty(&self) -> Option<f64> {
        self.confidence?.self_certainty
    }

    fn tail_entropy(&self) -> Option<f64> {
        self.confidence?.tail_entropy
    }
}

/// Area under the ROC curve of `score` for predicting the label (Mann–Whitney U, ties count ½):
/// the chance that a right candidate scores above a wrong one. `None` without both kinds.
pub fn auc(samples: &[(f64, bool)]) -> Option<f64> {
    let pos: Vec<f64> = samples.iter().filter(|s| s.1).map(|s| s.0).collect();
    let neg: Vec<f64> = samples.iter().filter(|s| !s.1).map(|s| s.0).collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for &p in &pos {
        for &n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// The AUC of one signal over the labelled candidates that carry it (non-finite values, such
/// as a judge that did not run, are left out), and how many were counted.
pub fn signal_auc<'a>(
    candidates: impl IntoIterator<Item = &'a CandidateSignals>,
    signal: impl Fn(&CandidateSignals) -> Option<f64>,
) -> (Option<f64>, usize) {
    let samples: Vec<(f64, bool)> = candidates
        .into_iter()
        .filter_map(|c| {
            let ok = c.correct?;
            signal(c).filter(|v| v.is_finite()).map(|v| (v, ok))
        })
        .collect();
    (auc(&samples), samples.len())
}

/// AUC of each self-reward signal against correctness, over the labelled candidates that carry
/// it. `None` where no candidate has the signal or the labels are all one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalAuc {
    /// Labelled candidates counted.
    pub candidates: usize,
    /// The self-judge's verdict (only judged candidates).
    #[serde(default)]
    pub judge: Option<f64>,
    /// Judged candidates counted.
    #[serde(default)]
    pub judged_candidates: usize,
    /// Mean token confidence.
    pub mean_confidence: Option<f64>,
    /// Tail confidence.
    pub tail_confidence: Option<f64>,
    /// Lowest group confidence.
    pub lowest_group_confidence: Option<f64>,
    /// Mean log-probability per token.
    pub mean_logprob: Option<f64>,
    /// Self-certainty (absent in reports written before it was kept).
    #[serde(default)]
    pub self_certainty: Option<f64>,
    /// Minus the tail entropy (so that, as for every column, above 0.5 means "higher is
    /// right more often").
    #[serde(default)]
    pub tail_entropy: Option<f64>,
}

impl SignalAuc {
    /// The AUCs over `candidates`.
    pub fn of<'a>(candidates: impl IntoIterator<Item = &'a CandidateSignals> + Clone) -> Self {
        let by = |s: ConfidenceSignal| signal_auc(candidates.clone(), |c| c.signal(s)).0;
        let (judge, judged_candidates) = signal_auc(candidates.clone(), |c| c.judge);
        Self {
            candidates: candidates
                .clone()
                .into_iter()
                .filter(|c| c.correct.is_some())
                .count(),
            judge,
            judged_candidates,
            mean_confidence: by(ConfidenceSignal::Mean),
            tail_confidence: by(ConfidenceSignal::Tail),
            lowest_group_confidence: by(ConfidenceSignal::LowestGroup),
            mean_logprob: signal_auc(candidates.clone(), |c| Some(c.mean_logprob)).0,
            self_certainty: signal_auc(candidates.clone(), |c| c.self_certainty()).0,
            tail_entropy: signal_auc(candidates, |c| c.tail_entropy().map(|h| -h)).0,
        }
    }
}

/// One reranker's accuracy on a best-of-N run's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankerAccuracy {
    /// The reranker (`vote`, `judge`, `confidence:lowest_group`, …).
    pub rerank: String,
    /// Problems it chose a right candidate for.
    pub correct: usize,
    /// Problems counted (those whose candidates all carry the signal it needs).
    #[serde(default)]
    pub problems: usize,
    /// `correct` over `problems`.
    pub accuracy: f64,
    /// For a stopping rule replayed on the samples (`adaptive@…`): the tokens of the samples it
    /// would have drawn, per problem. `None` for a reranker, which reads every sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_problem: Option<f64>,
}

/// The stopping rules `ponder bench` replays on best-of-N samples: adaptive consistency at its
/// defaults (the Beta rule at 0.8 after 3 samples, then 1 at a time) and at the paper's (0.95
/// after 4, then 2 at a time).
pub fn adaptive_replays() -> [(String, AdaptiveConfig); 2] {
    [
        ("adaptive".into(), AdaptiveConfig::default()),
        (
            "adaptive:0.95/4+2".into(),
            AdaptiveConfig {
                first: 4,
                batch: 2,
                confidence: 0.95,
                ..AdaptiveConfig::default()
            },
        ),
    ]
}

/// Right picks per reranker, over best-of-N problems whose candidates are all labelled: what
/// each reranker would have chosen from the same samples.
#[derive(Debug)]
pub struct RerankerTally {
    /// The best-of-N configuration (its `keep_percent`, `cisc_temperature`, `borda_power`);
    /// `None` counts nothing.
    config: Option<BestOfNConfig>,
    /// Per reranker: right picks, problems counted, tokens drawn (stopping rules only).
    tally: Vec<(String, usize, usize, Option<u64>)>,
}

impl RerankerTally {
    /// A tally for the problems solved by `strategy`: only best-of-N's are counted (with its
    /// reranker settings).
    pub fn new(strategy: &StrategyConfig) -> Self {
        Self {
            config: match strategy {
                StrategyConfig::BestOfN(c) => Some(c.clone()),
                _ => None,
            },
            tally: Vec::new(),
        }
    }

    /// Counts one problem's candidates. Problems of other strategies than best-of-N, or with an
    /// unlabelled candidate, are not counted; a reranker whose signal some candidate lacks is
    /// not counted for that problem.
    pub fn add(&mut self, c: &[CandidateSignals]) {
        use ConfidenceSignal as S;
        let Some(config) = &self.config else {
            return;
        };
        if c.is_empty() || c.iter().any(|c| c.correct.is_none()) {
            return;
        }
        let answers: Vec<Option<String>> = c.iter().map(|c| c.answer.clone()).collect();
        let judged: Option<Vec<f64>> = c
            .iter()
            .map(|c| c.judge.filter(|v| v.is_finite()))
            .collect();
        let logprobs: Vec<f64> = c.iter().map(|c| c.mean_logprob).collect();
        let certainty: Option<Vec<f64>> = c.iter().map(CandidateSignals::self_certainty).collect();
        let tail_entropy: Option<Vec<f64>> = c.iter().map(CandidateSignals::tail_entropy).collect();
        let plain = vec![0.0; c.len()];
        let ballots = Ballots {
            answers: &answers,
            judged: judged.as_deref(),
            confidence: &plain,
            logprobs: &logprobs,
            certainty: certainty.as_deref(),
            tail_entropy: tail_entropy.as_deref(),
        };
        let pick = |r: Rerank, b: &Ballots<'_>| choose(r, config, b).1;
        let mut picks: Vec<(String, usize)> = vec![
            ("vote".into(), pick(Rerank::Vote, &ballots)),
            ("logprob".into(), pick(Rerank::Logprob, &ballots)),
            ("cisc".into(), pick(Rerank::Cisc, &ballots)),
        ];
        if judged.is_some() {
            for (r, name) in [
                (Rerank::Judge, "judge"),
                (Rerank::WeightedVote, "weighted_vote"),
                (Rerank::CiscJudge, "cisc_judge"),
            ] {
                picks.push((name.into(), pick(r, &ballots)));
            }
        }
        if certainty.is_some() {
            for (r, name) in [
                (Rerank::SelfCertainty, "self_certainty"),
                (Rerank::BordaVote, "borda_vote"),
            ] {
                picks.push((name.into(), pick(r, &ballots)));
            }
        }
        if tail_entropy.is_some() {
            picks.push(("tail_entropy".into(), pick(Rerank::TailEntropy, &ballots)));
        }
        for (s, sname) in [
            (S::Mean, "mean"),
            (S::Tail, "tail"),
            (S::LowestGroup, "lowest_group"),
        ] {
            let Some(conf) = c.iter().map(|c| c.signal(s)).collect::<Option<Vec<f64>>>() else {
                continue;
            };
            let b = Ballots {
                confidence: &conf,
                ..ballots
            };
            for (r, rname) in [
                (Rerank::Confidence, "confidence"),
                (Rerank::ConfidenceVote, "confidence_vote"),
                (Rerank::FilteredVote, "filtered_vote"),
            ] {
                picks.push((format!("{rname}:{sname}"), pick(r, &b)));
            }
        }
        let mut counted: Vec<(String, usize, Option<u64>)> =
            picks.into_iter().map(|(n, p)| (n, p, None)).collect();
        // Adaptive consistency replayed: the majority over the samples it would have drawn.
        for (name, rule) in adaptive_replays() {
            // `samples_drawn` caps `first` and each batch at the samples there are.
            let rule = AdaptiveConfig {
                n: c.len() as u32,
                ..rule
            };
            let drawn = samples_drawn(&rule, &answers);
            let b = Ballots {
                answers: &answers[..drawn],
                ..ballots
            };
            let tokens = c[..drawn].iter().map(|c| u64::from(c.tokens)).sum();
            counted.push((name, pick(Rerank::Vote, &b), Some(tokens)));
        }
        for (name, pick, tokens) in counted {
            let right = usize::from(c[pick].correct == Some(true));
            match self.tally.iter_mut().find(|(n, ..)| *n == name) {
                Some(e) => {
                    e.1 += right;
                    e.2 += 1;
                    e.3 = e.3.zip(tokens).map(|(a, b)| a + b);
                }
                None => self.tally.push((name, right, 1, tokens)),
            }
        }
    }

    /// Each reranker's accuracy, in the order first seen.
    pub fn report(self) -> Vec<RerankerAccuracy> {
        self.tally
            .into_iter()
            .map(|(rerank, correct, problems, tokens)| RerankerAccuracy {
                rerank,
                correct,
                problems,
                accuracy: correct as f64 / problems.max(1) as f64,
                tokens_per_problem: tokens.map(|t| t as f64 / problems.max(1) as f64),
            })
            .collect()
    }
}

/// How many different answers `answers` hold (compared as [`answer::normalize`] writes them;
/// candidates without an answer do not count).
pub fn distinct_answers<'a>(answers: impl IntoIterator<Item = Option<&'a str>>) -> usize {
    answers
        .into_iter()
        .flatten()
        .map(answer::normalize)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// B-STaR's `n*` (Zeng et al., 2024): how many distinct right samples a query needs for full
/// exploration credit.
pub const BALANCE_N_STAR: f64 = 4.0;

/// B-STaR's balance score of one query: `sqrt(min(u / n*, 1)) · u / s`, with `s` the samples
/// selected for training and `u` the distinct right ones among them (0 when none was selected).
pub fn balance_score(selected: usize, unique_right: usize) -> f64 {
    if selected == 0 {
        return 0.0;
    }
    let (s, u) = (selected as f64, unique_right as f64);
    (u / BALANCE_N_STAR).min(1.0).sqrt() * (u / s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_scores() {
        assert_eq!(auc(&[(0.9, true), (0.1, false)]), Some(1.0));
        assert_eq!(auc(&[(0.1, true), (0.9, false)]), Some(0.0));
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), Some(0.5));
        assert_eq!(
            auc(&[(0.8, true), (0.4, true), (0.6, false), (0.2, false)]),
            Some(0.75)
        );
        assert_eq!(auc(&[(0.8, true)]), None);
    }

    fn cand(answer: &str, ok: bool, judge: f64, lowest: f64) -> CandidateSignals {
        CandidateSignals {
            answer: Some(answer.into()),
            correct: Some(ok),
            tokens: 10,
            score: 0.0,
            judge: Some(judge),
            mean_logprob: -0.1,
            confidence: Some(ConfidenceSignals {
                mean: lowest,
                tail: lowest,
                lowest_group: lowest,
                self_certainty: None,
                tail_entropy: None,
            }),
        }
    }

    #[test]
    fn rerankers_are_scored_on_the_same_samples() {
        // Two wrong answers agree; the right one has the judge's and the confidence's favour.
        let c = [
            cand("3", false, 0.2, 1.0),
            cand("3", false, 0.3, 1.5),
            cand("4", true, 0.9, 9.0),
        ];
        let mut t = RerankerTally::new(&StrategyConfig::BestOfN(Default::default()));
        t.add(&c);
        let mut other = RerankerTally::new(&StrategyConfig::Mcts(Default::default()));
        other.add(&c);
        assert!(other.report().is_empty());
        let r = t.report();
        let acc = |n: &str| r.iter().find(|r| r.rerank == n).unwrap().correct;
        assert!(r.iter().all(|r| r.problems == 1));
        assert_eq!(acc("vote"), 0);
        assert_eq!(acc("judge"), 1);
        assert_eq!(acc("confidence:lowest_group"), 1);
        assert_eq!(acc("filtered_vote:lowest_group"), 1);
        // Adaptive replayed on 3 samples: the 3s lead 2–0 after the first 3 (all of them).
        let adaptive = r.iter().find(|r| r.rerank == "adaptive").unwrap();
        assert_eq!(
            (adaptive.correct, adaptive.tokens_per_problem),
            (0, Some(30.0))
        );
        // No certainty in these records: no certainty rerankers counted.
        assert!(r.iter().all(|r| r.rerank != "self_certainty"));
        let a = SignalAuc::of(&c);
        assert_eq!(a.candidates, 3);
        assert_eq!(a.judge, Some(1.0));
        assert_eq!(a.lowest_group_confidence, Some(1.0));
        assert_eq!(a.mean_logprob, Some(0.5));
    }

    #[test]
    fn distinct_answers_compare_normalised_and_skip_missing_ones() {
        assert_eq!(
            distinct_answers([Some("17"), Some("17.0"), None, Some("$17"), Some("18")]),
            2
        );
        assert_eq!(distinct_answers([None, None]), 0);
    }

    #[test]
    fn balance_rewards_distinct_right_samples_up_to_n_star() {
        assert_eq!(balance_score(0, 0), 0.0);
        assert_eq!(balance_score(4, 4), 1.0);
        assert_eq!(balance_score(8, 4), 0.5);
        assert_eq!(balance_score(1, 1), 0.5);
        assert_eq!(balance_score(8, 8), 1.0);
    }
}
