//! ponder: an embeddable engine for inference-time self-refinement.
//!
//! ponder runs GGUF models in-process through llama.cpp and lets the model search over its own
//! outputs. This release provides the foundation every strategy stands on:
//!
//! - [`lm`]: the [`Lm`] trait, a tree of token prefixes ([`Node`]s) that can be forked, extended,
//!   sampled from in batches ([`Lm::generate`]) and scored ([`Lm::next_token_probs`],
//!   [`Lm::forced_logprobs`]); and its llama.cpp implementation [`LlamaLm`], where forks share KV
//!   cache and every live branch advances in one forward pass per step.
//! - [`error`]: typed errors whose messages say what to do.
//!
//! # Example
//!
//! ```no_run
//! use ponder::lm::{ContextOptions, GenRequest, Lm, Message, Model, ModelOptions};
//!
//! # fn main() -> ponder::Result<()> {
//! let model = Model::load(&ModelOptions::default())?; // $PONDER_MODEL or models/…
//! let mut lm = model.session(&ContextOptions::default())?;
//! let root = lm.root(&[Message::user("What is 7 * 6?")])?;
//! // Eight samples from one prefill of the prompt, decoded in lockstep.
//! let requests: Vec<GenRequest> = (0..8)
//!     .map(|seed| {
//!         let mut r = GenRequest::new(root, 64);
//!         r.sampling.seed = seed;
//!         r
//!     })
//!     .collect();
//! for g in lm.generate(&requests)? {
//!     println!("{:.2} {}", g.mean_logprob(), g.text);
//! }
//! println!("{:?}", lm.usage());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod eval;
pub mod lm;
pub mod reward;
pub mod strategy;

pub use engine::Engine;
pub use error::{ConfigError, DecodeError, Error, LoadError, Result};
pub use lm::llama::{ContextOptions, LlamaLm, Model, ModelOptions};
pub use lm::{
    FinishReason, GenRequest, Generation, Lm, Message, Node, SamplingParams, TokenId, Usage,
};
pub use strategy::{Candidate, Outcome, Problem, StrategyConfig};
