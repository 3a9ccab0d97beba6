//! Self-reward: the pieces every strategy ranks candidates with.
//!
//! - [`answer`]: extract a final answer and compare answers after normalisation;
//! - [`judge`]: the model, prompted as a verifier, scores whole solutions and single steps from
//!   its next-token probabilities of "Yes" and "No" (one forward pass, no sampling);
//! - [`confidence`]: DeepConf token-confidence signals (mean, tail, lowest group) of a trace;
//! - [`seqlogp`]: the sequence log-likelihood of a candidate (the "sharpening" verifier);
//! - [`r3`]: DRO's Reasoning Reflection Reward, the reference's likelihood after a reasoning;
//! - [`vote`]: majority and weighted votes over extracted answers.

pub mod answer;
pub mod confidence;
pub mod judge;
pub mod r3;
pub mod seqlogp;
pub mod vote;
