//! ponder: an embeddable engine for inference-time self-refinement.
//!
//! ponder runs GGUF models in-process through llama.cpp and lets the model search over its own
//! outputs, score them itself, and pick among them. The parts, bottom to top:
//!
//! - [`lm`]: the [`Lm`] trait, a tree of token prefixes ([`Node`]s) that can be forked, extended,
//!   sampled from in batches ([`Lm::generate`]) and scored ([`Lm::next_token_probs`],
//!   [`Lm::forced_logprobs`]); and its llama.cpp implementation [`LlamaLm`], where forks share KV
//!   cache and every live branch advances in one forward pass per step; and [`RemoteLm`], the
//!   same tree over models served by OpenAI-compatible engines (llama-server, vLLM, SGLang).
//! - [`reward`]: answer extraction and comparison, the model as its own verifier (outcome and
//!   step scores), token confidence, sequence log-likelihood, votes, DRO's R3.
//! - [`strategy`]: search strategies behind one serde-tagged [`StrategyConfig`]: best-of-N,
//!   DeepConf online, self-correction, iterative deepening, step-level MCTS and beam search
//!   (whose [`SearchTree`](strategy::SearchTree)s record every step with its score, visits and
//!   value).
//! - [`Engine`]: a loaded model (or a connection to servers) serving concurrent solves;
//!   [`Engine::solve`] runs a strategy on a [`Problem`] and returns an [`Outcome`] with every
//!   candidate and its scores.
//! - [`eval`]: the dataset runner behind `ponder eval`; `bench` (feature `bench`): the strategy
//!   ladder behind `ponder bench` (report and test-time-scaling plot); [`runner`]: the ordered
//!   worker pool, durable writes and resume checks they and `synth` share.
//! - [`trace`]: every solve as a [`Trace`](trace::Trace) and its exports to training records;
//!   [`synth`]: the resumable dataset runner behind `ponder synth`.
//! - `serve` (feature `serve`): `ponder serve`, an OpenAI-compatible server whose model names
//!   pick searches.
//! - [`error`]: typed errors whose messages say what to do.
//!
//! # Features
//!
//! Without features the crate is the embeddable core: the in-process engine, the strategies,
//! rewards, traces and exports, synth and eval, built on llama.cpp, serde and little else. The
//! apps are opt-in:
//!
//! | feature | adds | pulls in |
//! |---|---|---|
//! | `remote` | the remote backend ([`RemoteLm`], `BackendConfig::Remote`) | ureq, url, tokenizers |
//! | `serve` | `ponder::serve`, the OpenAI-compatible server (implies `remote`) | tokio, axum |
//! | `bench` | `ponder::bench`, ladders of strategies with plots | plotters |
//! | `cuda`, `vulkan`, `metal` | GPU offload in llama.cpp | the GPU toolkit |
//!
//! The CLI (`ponder-cli`) turns on `remote`, `serve` and `bench`; the C ABI (`ponder-capi`)
//! turns on `remote`.
//!
//! The guide — each strategy with its measured numbers, the engine's cache, traces and exports,
//! the CLI, the server, the C ABI — is the mdBook in `docs/src/` of the repository (`make docs`
//! builds it); `docs/ARCHITECTURE.md` is the map of the code.
//!
//! # Example
//!
//! ```no_run
//! use ponder::strategy::{BestOfNConfig, Rerank};
//! use ponder::{ContextOptions, Engine, ModelOptions, Problem, StrategyConfig};
//!
//! # fn main() -> ponder::Result<()> {
//! // $PONDER_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf (`make model` fetches it).
//! let engine = Engine::load(&ModelOptions::default(), &ContextOptions::default())?;
//! let strategy = StrategyConfig::BestOfN(BestOfNConfig {
//!     n: 8,
//!     rerank: Rerank::Judge,
//!     ..BestOfNConfig::default()
//! });
//! let outcome = engine.solve(&Problem::new("What is 7 * 6?").with_answer("42"), &strategy)?;
//! for c in &outcome.candidates {
//!     println!("{:.3} {:?} {:?}", c.score, c.answer, c.correct);
//! }
//! println!("chosen: {:?} · {:?}", outcome.answer, outcome.usage);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod backend;
#[cfg(feature = "bench")]
pub mod bench;
pub mod engine;
pub mod error;
pub mod eval;
pub mod lm;
pub mod reward;
pub mod runner;
#[cfg(feature = "serve")]
pub mod serve;
pub mod strategy;
pub mod synth;
pub mod trace;

pub use backend::{Backend, BackendConfig, ModelId};
pub use engine::{CancelToken, Engine};
pub use error::{
    ConfigError, ConfigFileError, DecodeError, Error, IoError, LoadError, RemoteError, Result,
    TokenizerError,
};
pub use lm::llama::{
    devices, ContextOptions, Device, KvLayout, LlamaLm, Model, ModelOptions, Sizing,
};
#[cfg(feature = "remote")]
pub use lm::remote::{RemoteLm, RemoteOptions};
pub use lm::{
    ConfidenceStop, FinishReason, GenRequest, Generation, Lm, Message, Node, SamplingParams,
    TokenId, Usage,
};
pub use strategy::{Candidate, Outcome, Problem, StrategyConfig};

// Every Rust block of the README and of the guide's pages (docs/src/) is a doctest: the examples
// there compile against this crate (`cargo test --doc`). A page that gains a Rust block is listed
// here; `scripts/check-docs.sh` fails when one is missing.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// One item per page of the guide, so that rustdoc compiles their Rust blocks.
#[cfg(doctest)]
pub mod guide {
    #[doc = include_str!("../docs/src/introduction.md")]
    pub struct Introduction;
    #[doc = include_str!("../docs/src/getting-started.md")]
    pub struct GettingStarted;
    #[doc = include_str!("../docs/src/cli.md")]
    pub struct Cli;
    #[doc = include_str!("../docs/src/rust-api.md")]
    pub struct RustApi;
    #[doc = include_str!("../docs/src/c-abi.md")]
    pub struct CAbi;
    #[doc = include_str!("../docs/src/engine.md")]
    pub struct Engine;
    #[doc = include_str!("../docs/src/reward.md")]
    pub struct Reward;
    #[doc = include_str!("../docs/src/strategies.md")]
    pub struct Strategies;
    #[doc = include_str!("../docs/src/strategies/best-of-n.md")]
    pub struct StrategiesBestOfN;
    #[doc = include_str!("../docs/src/strategies/deepconf.md")]
    pub struct StrategiesDeepconf;
    #[doc = include_str!("../docs/src/strategies/self-correct.md")]
    pub struct StrategiesSelfCorrect;
    #[doc = include_str!("../docs/src/strategies/deepening.md")]
    pub struct StrategiesDeepening;
    #[doc = include_str!("../docs/src/strategies/tree-search.md")]
    pub struct StrategiesTreeSearch;
    #[doc = include_str!("../docs/src/strategies/open-ended.md")]
    pub struct StrategiesOpenEnded;
    #[doc = include_str!("../docs/src/traces.md")]
    pub struct Traces;
    #[doc = include_str!("../docs/src/synth.md")]
    pub struct Synth;
    #[doc = include_str!("../docs/src/bench.md")]
    pub struct Bench;
    #[doc = include_str!("../docs/src/serve.md")]
    pub struct Serve;
    // Its example connects to a server: it compiles only with the remote feature.
    #[cfg(feature = "remote")]
    #[doc = include_str!("../docs/src/remote.md")]
    pub struct Remote;
    #[doc = include_str!("../docs/src/gpu.md")]
    pub struct Gpu;
    #[doc = include_str!("../docs/src/errors.md")]
    pub struct Errors;
    #[doc = include_str!("../docs/src/reliability.md")]
    pub struct Reliability;
}
