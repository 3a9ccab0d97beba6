//! DRO's Reasoning Reflection Reward (R3): how much a chain of thought raises the model's
//! likelihood of the *reference* answer, emphasising the reference tokens whose likelihood depends
//! most on the reasoning (Xu et al., 2025, "Direct Reasoning Optimization: LLMs Can Reward And
//! Refine Their Own Reasoning for Open-Ended Tasks").
//!
//! For one problem with reference `y = y_1 … y_n` and K candidate reasonings `c_1 … c_K`:
//!
//! ```text
//! l[k][j] = log p(y_j | prompt, c_k, marker, y_<j)        (the reference forced after each reasoning)
//! p[k][j] = exp(l[k][j])
//! σ_j     = sqrt( (1/K) Σ_k (p[k][j] − mean_k p[k][j])² )   (population std across the K reasonings)
//! w_j     = σ_j / Σ_i σ_i                                  (uniform 1/n when every σ is 0)
//! R3(c_k) = Σ_j w_j · l[k][j]
//! ```
//!
//! The weights sum to 1, so R3 is a weighted mean log-likelihood per token: comparable across
//! problems whatever the reference's length. With one candidate (or candidates the reference
//! does not tell apart) every σ is 0 and R3 is the plain mean log-likelihood.
//!
//! Deviations from the paper, on purpose: the paper feeds the same σ into a weighting function
//! and adds a correction for certainty propagated from earlier reference tokens; here the
//! weights are σ normalised to sum 1 and there is no propagation correction. Everything needed
//! to recompute another weighting is kept: [`R3Scores`] holds every per-token log-probability, σ
//! and weight.
//!
//! DRO's data filter keeps a problem only when R3 separates its reasonings; [`R3Scores::spread`]
//! (the largest R3 minus the smallest) is what `ponder synth --reward r3` compares with
//! [`R3Config::min_spread`].
//!
//! **Cost.** The reference is forced after every reasoning's own node in one
//! [`Lm::forced_logprobs`] call: the prompt and the reasoning are in the cache already and are not
//! decoded again, so scoring K reasonings decodes K × (reference tokens) tokens, plus the marker's
//! tokens for a reasoning that did not write the marker itself (see [`answer_nodes`]).
//!
//! R3 needs the reference: it is a reference-based reward. It labels candidates; it steers a
//! search (best-of-N picks the highest R3) only when the problem is `oracle_guided`, and traces
//! say which.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, DecodeError};
use crate::lm::{FinishReason, Generation, Lm, Node};

/// The default answer marker: where the reasoning ends and the answer begins.
pub const DEFAULT_MARKER: &str = "Answer:";

/// How R3 is computed and used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct R3Config {
    /// The text that introduces the answer. A candidate is cut right after its last occurrence
    /// (what follows is the model's own answer, replaced by the reference); a candidate without
    /// it gets `"\n\n" + marker` appended. The reference is forced after it with a leading space.
    pub marker: String,
    /// DRO filtering in `ponder synth`: a problem whose R3 spread (largest minus smallest R3 of
    /// its candidates) is below this is dropped (its trace is kept, its training records are not
    /// written). 0 keeps every problem.
    pub min_spread: f64,
}

impl Default for R3Config {
    fn default() -> Self {
        Self {
            marker: DEFAULT_MARKER.into(),
            min_spread: 0.0,
        }
    }
}

impl R3Config {
    /// Checks the fields.
    ///
    /// # Errors
    /// [`ConfigError`] for an empty marker or a negative or non-finite `min_spread`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.marker.trim().is_empty() {
            return Err(ConfigError::new(
                "r3.marker",
                "it is empty; give the text that introduces the answer, for example \"Answer:\"",
            ));
        }
        if !(self.min_spread.is_finite() && self.min_spread >= 0.0) {
            return Err(ConfigError::new(
                "r3.min_spread",
                format!(
                    "{} is not allowed; use a finite value >= 0 (0 keeps every problem)",
                    self.min_spread
                ),
            ));
        }
        Ok(())
    }
}

/// R3 of K candidates of one problem, with everything needed to recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct R3Scores {
    /// The reference as forced: its tokens' texts, in order.
    pub tokens: Vec<String>,
    /// Per candidate, the log-probability of each reference token.
    pub logprobs: Vec<Vec<f32>>,
    /// Per reference token, the standard deviation of its probability across the candidates.
    pub std: Vec<f64>,
    /// Per reference token, its weight (sums to 1).
    pub weights: Vec<f64>,
    /// Per candidate, R3.
    pub r3: Vec<f64>,
    /// The largest R3 minus the smallest (0 for fewer than two candidates).
    pub spread: f64,
}

impl R3Scores {
    /// R3 from per-candidate, per-token log-probabilities of the reference (all rows as long as
    /// `tokens`).
    ///
    /// # Panics
    /// If a row's length differs from `tokens.len()`.
    pub fn from_logprobs(tokens: Vec<String>, logprobs: Vec<Vec<f32>>) -> Self {
        assert!(
            logprobs.iter().all(|row| row.len() == tokens.len()),
            "one log-probability per reference token"
        );
        let (std, weights) = token_weights(&logprobs, tokens.len());
        let r3: Vec<f64> = logprobs
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&weights)
                    .map(|(&l, &w)| w * f64::from(l))
                    .sum()
            })
            .collect();
        let spread = if r3.len() < 2 {
            0.0
        } else {
            let max = r3.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = r3.iter().copied().fold(f64::INFINITY, f64::min);
            max - min
        };
        Self {
            tokens,
            logprobs,
            std,
            weights,
            r3,
            spread,
        }
    }

    /// The candidate with the highest R3 (ties: the lowest index); `None` without candidates.
    pub fn best(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, &x) in self.r3.iter().enumerate() {
            if best.is_none_or(|b| x > self.r3[b]) {
                best = Some(i);
            }
        }
        best
    }
}

/// Per reference token, σ (std of its probability across candidates) and its weight
/// `σ_j / Σ σ` (uniform when all σ are 0).
fn token_weights(logprobs: &[Vec<f32>], n: usize) -> (Vec<f64>, Vec<f64>) {
    let k = logprobs.len() as f64;
    let std: Vec<f64> = (0..n)
        .map(|j| {
            if logprobs.is_empty() {
                return 0.0;
            }
            let p: Vec<f64> = logprobs.iter().map(|r| f64::from(r[j]).exp()).collect();
            let mean = p.iter().sum::<f64>() / k;
            (p.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k).sqrt()
        })
        .collect();
    let total: f64 = std.iter().sum();
    let weights = if total > 0.0 {
        std.iter().map(|s| s / total).collect()
    } else {
        vec![1.0 / n.max(1) as f64; n]
    };
    (std, weights)
}

/// R3 of the reasonings ending at `nodes` (each right where the answer would begin), in one
/// [`Lm::forced_logprobs`] call.
///
/// # Errors
/// [`DecodeError::InvalidRequest`] for an empty reference; as [`Lm::forced_logprobs`].
pub fn score(lm: &mut dyn Lm, nodes: &[Node], reference: &str) -> Result<R3Scores, DecodeError> {
    if reference.trim().is_empty() {
        return Err(ConfigError::new(
            "answer",
            "the reference answer is empty; R3 needs a reference to score against",
        )
        .into());
    }
    let forced = format!(" {}", reference.trim());
    let tokens: Vec<String> = lm
        .tokenize(&forced)?
        .into_iter()
        .map(|t| lm.token_text(t))
        .collect();
    let queries: Vec<(Node, &str)> = nodes.iter().map(|&n| (n, forced.as_str())).collect();
    let logprobs = lm.forced_logprobs(&queries)?;
    Ok(R3Scores::from_logprobs(tokens, logprobs))
}

/// For each sampled candidate (a child of `root`), a node that ends where its answer begins:
///
/// - the candidate wrote `marker`: its tokens up to the one that completes the last occurrence
///   (the candidate's own node when nothing follows). The new node shares the candidate's cache,
///   so nothing of the prompt or the reasoning is decoded again;
/// - it did not: the whole candidate (without its end-of-turn token) followed by
///   `"\n\n" + marker`.
///
/// Returns the nodes and, for each, whether it was made here (the caller releases those).
///
/// # Errors
/// Unknown nodes; tokenizer errors.
pub fn answer_nodes(
    lm: &mut dyn Lm,
    root: Node,
    generations: &[Generation],
    marker: &str,
) -> Result<Vec<(Node, bool)>, DecodeError> {
    let root_len = lm.node_len(root)?;
    let mut out = Vec::with_capacity(generations.len());
    for g in generations {
        let all = lm.node_tokens(g.node)?;
        let own = &all[root_len.min(all.len())..];
        // The text so far after each token, to find where the marker ends.
        let mut text = String::new();
        let mut ends = Vec::with_capacity(own.len());
        for &t in own {
            text.push_str(&lm.token_text(t));
            ends.push(text.len());
        }
        let cut = text
            .rfind(marker)
            .map(|at| at + marker.len())
            .and_then(|end| ends.iter().position(|&e| e >= end));
        let made = match cut {
            Some(i) if i + 1 == own.len() => None,
            Some(i) => Some(lm.extend_tokens(root, &own[..=i])?),
            None => {
                let body = if g.finish == FinishReason::Eos && !own.is_empty() {
                    &own[..own.len() - 1]
                } else {
                    own
                };
                let mut tokens = body.to_vec();
                tokens.extend(lm.tokenize(&format!("\n\n{marker}"))?);
                Some(lm.extend_tokens(root, &tokens)?)
            }
        };
        out.push(match made {
            Some(n) => (n, true),
            None => (g.node, false),
        });
    }
    Ok(out)
}

/// R3 of sampled candidates (children of `root`) against `reference`: [`answer_nodes`], then
/// [`score`]; the nodes made on the way are released.
///
/// # Errors
/// As [`answer_nodes`] and [`score`].
pub fn label(
    lm: &mut dyn Lm,
    config: &R3Config,
    root: Node,
    generations: &[Generation],
    reference: &str,
) -> Result<R3Scores, DecodeError> {
    let nodes = answer_nodes(lm, root, generations, &config.marker)?;
    let handles: Vec<Node> = nodes.iter().map(|&(n, _)| n).collect();
    let result = score(lm, &handles, reference);
    for (n, made) in nodes {
        if made {
            lm.release(n);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};
    use crate::lm::GenRequest;

    /// Equal up to f32 rounding (log-probabilities are f32).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn weights_follow_the_spread_of_each_tokens_probability() {
        let ln = |p: f64| p.ln() as f32;
        // Token 0: the same for both reasonings; token 1: 0.9 vs 0.1; token 2: 0.6 vs 0.4.
        let lps = vec![
            vec![ln(0.5), ln(0.9), ln(0.6)],
            vec![ln(0.5), ln(0.1), ln(0.4)],
        ];
        let s = R3Scores::from_logprobs(vec!["a".into(), "b".into(), "c".into()], lps.clone());
        assert!(s.std[0] < 1e-6, "{:?}", s.std);
        assert!(close(s.std[1], 0.4) && (s.std[2] - 0.1).abs() < 1e-6);
        assert!((s.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(s.weights[0] < 1e-6 && (s.weights[1] - 0.8).abs() < 1e-6);
        // R3 is the weighted sum, so the token that does not depend on the reasoning counts for
        // nothing, and the first reasoning wins.
        for (k, row) in lps.iter().enumerate() {
            let want: f64 = row
                .iter()
                .zip(&s.weights)
                .map(|(&l, &w)| w * f64::from(l))
                .sum();
            assert!(close(s.r3[k], want));
        }
        assert_eq!(s.best(), Some(0));
        assert!(close(s.spread, s.r3[0] - s.r3[1]));
    }

    #[test]
    fn one_candidate_or_no_variation_gives_the_mean_log_likelihood() {
        let s = R3Scores::from_logprobs(vec!["a".into(), "b".into()], vec![vec![-1.0, -3.0]]);
        assert_eq!(s.weights, vec![0.5, 0.5]);
        assert!(close(s.r3[0], -2.0));
        assert_eq!(s.spread, 0.0);
        let same = R3Scores::from_logprobs(
            vec!["a".into(), "b".into()],
            vec![vec![-1.0, -3.0], vec![-1.0, -3.0]],
        );
        assert_eq!(same.weights, vec![0.5, 0.5]);
        assert_eq!(same.spread, 0.0);
        let empty = R3Scores::from_logprobs(Vec::new(), vec![Vec::new(), Vec::new()]);
        assert_eq!(empty.r3, vec![0.0, 0.0]);
    }

    /// A scripted model whose forced log-probability of a reference byte is high after a
    /// reasoning that mentions "blue" and low otherwise, except for spaces, which every
    /// reasoning predicts equally.
    fn scripted() -> ScriptedLm {
        ScriptedLm::new(
            |q| ScriptedStep {
                text: if q.ordinal == 0 {
                    "The sky scatters blue light. Answer: blue".into()
                } else {
                    "Grass is green. Answer: green".into()
                },
                eos: true,
                logprob_per_token: -0.5,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        )
        .with_forced(|context, _forced, token| {
            if token == " " {
                -0.1
            } else if context.contains("blue") {
                -0.2
            } else {
                -3.0
            }
        })
    }

    #[test]
    fn scripted_candidates_are_cut_at_the_marker_and_scored_in_one_call() {
        let mut lm = scripted();
        let root = lm.root_text("Q: what colour is the sky?\n").unwrap();
        let req = GenRequest::new(root, 64);
        let gens = lm.generate(&[req.clone(), req]).unwrap();
        let before = lm.usage();
        let live = lm.live_nodes();
        let s = label(&mut lm, &R3Config::default(), root, &gens, "blue sky").unwrap();
        assert_eq!(lm.live_nodes(), live, "the cut nodes are released");
        assert_eq!(s.tokens.concat(), " blue sky");
        assert_eq!(s.logprobs.len(), 2);
        // The space tokens do not vary: weight 0; every other token carries the same weight.
        for (t, w) in s.tokens.iter().zip(&s.weights) {
            if t == " " {
                assert_eq!(*w, 0.0);
            } else {
                assert!(close(*w, 1.0 / 7.0), "{w}");
            }
        }
        assert!(close(s.r3[0], -0.2) && close(s.r3[1], -3.0), "{:?}", s.r3);
        assert_eq!(s.best(), Some(0));
        // One forced call; the answer after the marker (" blue", " green") was cut off, so the
        // reference follows the marker directly.
        let used = lm.usage().since(&before);
        assert_eq!(used.forward_passes, 1);
        assert_eq!(lm.forced_contexts().len(), 2);
        for c in lm.forced_contexts() {
            assert!(c.ends_with("Answer:"), "{c:?}");
        }
    }

    #[test]
    fn a_candidate_without_the_marker_gets_it_appended_after_its_text() {
        let mut lm = ScriptedLm::new(
            |_| ScriptedStep {
                text: "I think it is blue.".into(),
                eos: true,
                logprob_per_token: -0.5,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        );
        let root = lm.root_text("Q\n").unwrap();
        let gens = lm.generate(&[GenRequest::new(root, 64)]).unwrap();
        let s = label(&mut lm, &R3Config::default(), root, &gens, "blue").unwrap();
        assert_eq!(s.r3.len(), 1);
        let ctx = &lm.forced_contexts()[0];
        assert!(ctx.ends_with("I think it is blue.\n\nAnswer:"), "{ctx:?}");
    }

    #[test]
    fn config_is_checked() {
        assert!(R3Config::default().validate().is_ok());
        let bad = R3Config {
            marker: " ".into(),
            ..R3Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "r3.marker");
        let bad = R3Config {
            min_spread: -1.0,
            ..R3Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "r3.min_spread");
        let mut lm = scripted();
        let root = lm.root_text("Q\n").unwrap();
        assert!(score(&mut lm, &[root], "  ").is_err());
    }
}
