//! Sequence self-reward: how likely the model finds its own candidate (the "sharpening" verifier).

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::lm::{Generation, Lm, Node};

/// A candidate's log-likelihood under the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeqLogp {
    /// Sum of the tokens' log-probabilities.
    pub sum: f64,
    /// `sum / tokens` (0 for an empty candidate): comparable across lengths.
    pub mean: f64,
    /// Number of tokens.
    pub tokens: u32,
}

impl SeqLogp {
    /// From a sum over `tokens` tokens.
    pub fn new(sum: f64, tokens: u32) -> Self {
        let mean = if tokens == 0 {
            0.0
        } else {
            sum / f64::from(tokens)
        };
        Self { sum, mean, tokens }
    }

    /// The score used for ranking: the mean when `length_normalised`, else the sum.
    pub fn score(&self, length_normalised: bool) -> f64 {
        if length_normalised {
            self.mean
        } else {
            self.sum
        }
    }
}

/// A sampled candidate's log-likelihood: already known from sampling, no model call.
pub fn of_generation(g: &Generation) -> SeqLogp {
    SeqLogp::new(g.logprob, g.tokens)
}

/// The log-likelihood of each `text` forced after its node (for candidates that were not sampled
/// from that node: written by hand, or from another prompt), in one batched call.
///
/// # Errors
/// As [`Lm::forced_logprobs`].
pub fn of_texts(lm: &mut dyn Lm, queries: &[(Node, &str)]) -> Result<Vec<SeqLogp>, DecodeError> {
    Ok(lm
        .forced_logprobs(queries)?
        .into_iter()
        .map(|lps| SeqLogp::new(lps.iter().map(|&l| f64::from(l)).sum(), lps.len() as u32))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_is_length_normalised() {
        let s = SeqLogp::new(-6.0, 3);
        assert_eq!(s.mean, -2.0);
        assert_eq!(s.score(true), -2.0);
        assert_eq!(s.score(false), -6.0);
        assert_eq!(SeqLogp::new(0.0, 0).mean, 0.0);
    }
}
