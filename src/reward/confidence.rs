//! Token-confidence signals (DeepConf, "Deep Think with Confidence", Fu et al., 2025).
//!
//! Every generated token carries a confidence ([`crate::lm::Generation::confidence`]): minus the
//! mean log-probability of the [`crate::lm::CONFIDENCE_TOP_K`] most likely tokens at its position.
//! It is high where the model is sure. A trace's signals summarise those numbers:
//!
//! - [`mean`]: the average over the whole trace (DeepConf's "average trace confidence");
//! - [`tail`]: the average over its last `n` tokens, where the answer is written;
//! - [`lowest_group`]: the lowest average over a sliding window of `w` consecutive tokens (the
//!   window shrinks to the trace's length when the trace is shorter): one confused stretch is
//!   enough to mark a trace as doubtful.
//!
//! They cost nothing: the confidences are computed while sampling, from the same logits.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Which summary of a trace's token confidences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfidenceSignal {
    /// [`mean`] over the whole trace.
    Mean,
    /// [`tail`] over the last [`ConfidenceConfig::tail`] tokens.
    Tail,
    /// [`lowest_group`] over windows of [`ConfidenceConfig::window`] tokens.
    #[default]
    LowestGroup,
}

/// Window sizes of the confidence signals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfidenceConfig {
    /// Which signal ranks and weighs candidates.
    pub signal: ConfidenceSignal,
    /// Tokens per group for [`lowest_group`], 1..=4096 (DeepConf uses 2048 on traces of
    /// thousands of tokens; ponder's solutions are a few hundred, so the default is 64).
    pub window: u32,
    /// Tokens of the tail for [`tail`], 1..=4096.
    pub tail: u32,
}

impl Default for ConfidenceConfig {
    fn default() -> Self {
        Self {
            signal: ConfidenceSignal::LowestGroup,
            window: 64,
            tail: 64,
        }
    }
}

impl ConfidenceConfig {
    /// Checks the window sizes.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field out of 1..=4096.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("confidence.window", self.window),
            ("confidence.tail", self.tail),
        ] {
            if !(1..=4096).contains(&v) {
                return Err(ConfigError::new(
                    field,
                    format!("{v} tokens is outside 1..=4096"),
                ));
            }
        }
        Ok(())
    }

    /// The configured signal of one trace's confidences.
    pub fn score(&self, confidence: &[f32]) -> f64 {
        self.score_with(self.signal, confidence)
    }

    /// `signal` of one trace's confidences, with this configuration's windows.
    pub fn score_with(&self, signal: ConfidenceSignal, confidence: &[f32]) -> f64 {
        match signal {
            ConfidenceSignal::Mean => mean(confidence),
            ConfidenceSignal::Tail => tail(confidence, self.tail as usize),
            ConfidenceSignal::LowestGroup => lowest_group(confidence, self.window as usize),
        }
    }
}

/// The mean confidence (0 for an empty trace).
pub fn mean(confidence: &[f32]) -> f64 {
    if confidence.is_empty() {
        return 0.0;
    }
    confidence.iter().map(|&c| f64::from(c)).sum::<f64>() / confidence.len() as f64
}

/// The mean confidence of the last `n` tokens (all of them when there are fewer).
pub fn tail(confidence: &[f32], n: usize) -> f64 {
    mean(&confidence[confidence.len().saturating_sub(n.max(1))..])
}

/// The lowest mean confidence over windows of `w` consecutive tokens; the window is the whole
/// trace when the trace is shorter than `w` (0 for an empty trace).
pub fn lowest_group(confidence: &[f32], w: usize) -> f64 {
    let w = w.clamp(1, confidence.len().max(1));
    if confidence.is_empty() {
        return 0.0;
    }
    let mut sum: f64 = confidence[..w].iter().map(|&c| f64::from(c)).sum();
    let mut lowest = sum;
    for i in w..confidence.len() {
        sum += f64::from(confidence[i]) - f64::from(confidence[i - w]);
        lowest = lowest.min(sum);
    }
    lowest / w as f64
}

/// The `q`-th percentile (0..=100, linear between ranks) of `xs`; `None` for an empty list.
pub fn percentile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = (q.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};
    use crate::lm::{ConfidenceStop, FinishReason, GenRequest, Lm, SamplingParams};

    #[test]
    fn signals_of_a_known_trace() {
        let c = [4.0f32, 4.0, 1.0, 1.0, 4.0, 4.0, 3.0, 3.0];
        assert!((mean(&c) - 3.0).abs() < 1e-9);
        assert!((tail(&c, 2) - 3.0).abs() < 1e-9);
        assert!((tail(&c, 100) - 3.0).abs() < 1e-9);
        assert!((lowest_group(&c, 2) - 1.0).abs() < 1e-9);
        assert!((lowest_group(&c, 4) - 2.5).abs() < 1e-9);
        // A window longer than the trace is the whole trace.
        assert!((lowest_group(&c, 64) - 3.0).abs() < 1e-9);
        assert_eq!(lowest_group(&[], 8), 0.0);
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0], 10.0), Some(1.1));
        assert_eq!(percentile(&[], 10.0), None);
    }

    #[test]
    fn windows_out_of_range_are_named() {
        let bad = ConfidenceConfig {
            window: 0,
            ..ConfidenceConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "confidence.window");
        let bad = ConfidenceConfig {
            tail: 5000,
            ..ConfidenceConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "confidence.tail");
        assert!(ConfidenceConfig::default().validate().is_ok());
    }

    /// A scripted model whose sure trace and unsure trace differ only in their confidences.
    fn two_traces() -> ScriptedLm {
        ScriptedLm::new(
            |q| ScriptedStep {
                text: "The answer is 7.".into(),
                eos: true,
                logprob_per_token: -0.5,
                confidence: if q.ordinal == 0 {
                    vec![5.0]
                } else {
                    // Sure at first, then a confused stretch from the sixth token on.
                    vec![5.0, 5.0, 5.0, 5.0, 5.0, 0.5]
                },
                ..Default::default()
            },
            |_| 0.5,
        )
    }

    #[test]
    fn generations_carry_one_confidence_per_token_and_the_signals_separate_them() {
        let mut lm = two_traces();
        let root = lm.root_text("Q").unwrap();
        let gens = lm
            .generate(&[GenRequest::new(root, 64), GenRequest::new(root, 64)])
            .unwrap();
        for g in &gens {
            assert_eq!(g.confidence.len(), g.tokens as usize);
        }
        let cfg = ConfidenceConfig {
            window: 4,
            tail: 4,
            ..ConfidenceConfig::default()
        };
        for signal in [
            ConfidenceSignal::Mean,
            ConfidenceSignal::Tail,
            ConfidenceSignal::LowestGroup,
        ] {
            let (sure, unsure) = (
                cfg.score_with(signal, &gens[0].confidence),
                cfg.score_with(signal, &gens[1].confidence),
            );
            assert!(sure > unsure, "{signal:?}: {sure} vs {unsure}");
        }
        assert!((cfg.score(&gens[1].confidence) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_confidence_stop_ends_the_unsure_trace_early() {
        let mut lm = two_traces();
        let root = lm.root_text("Q").unwrap();
        let stop = Some(ConfidenceStop {
            window: 2,
            threshold: 3.0,
        });
        let req = GenRequest {
            confidence_stop: stop,
            sampling: SamplingParams::greedy(),
            ..GenRequest::new(root, 64)
        };
        let gens = lm.generate(&[req.clone(), req]).unwrap();
        assert_eq!(gens[0].finish, FinishReason::Eos);
        assert_eq!(gens[1].finish, FinishReason::LowConfidence);
        // Tokens 5 and 6 average (5 + 0.5) / 2 = 2.75 < 3: it stops after the sixth token.
        assert_eq!(gens[1].tokens, 6);
        assert_eq!(gens[1].confidence.len(), 6);
    }
}
