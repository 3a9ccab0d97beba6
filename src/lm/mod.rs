//! The language-model layer: a tree of token prefixes that strategies fork, extend, sample from in
//! batches, and score.
//!
//! A [`Node`] is a token prefix: a prompt, or a parent node plus some tokens. Strategies never see
//! sequence ids, batches or logit arrays; they ask the [`Lm`] for many things at once and the backend
//! ([`llama::LlamaLm`]) turns each call into as few forward passes as it can.

pub mod llama;
pub use llama::{
    default_model_path, devices, ContextLoad, ContextOptions, Device, KvLayout, LlamaLm, Model,
    ModelOptions, SharedLlama, Sizing, SolveLm, DEFAULT_MODEL_PATH,
};
mod model_id;
pub use model_id::{sha256_file, ModelId};
pub(crate) mod nodes;
#[cfg(feature = "remote")]
pub mod remote;
#[cfg(feature = "remote")]
pub use remote::{RemoteLm, RemoteOptions, ServerStats, SharedRemote};
pub(crate) mod sampler;
#[cfg(any(test, feature = "test-util"))]
pub mod scripted;
#[cfg(feature = "remote")]
pub(crate) mod tokenizer;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, DecodeError};

/// A check the backend calls before every forward pass (llama.cpp: before each `llama_decode`,
/// also between the chunks of one long prefill; remote: before each HTTP attempt and during
/// backoff, so a request already sent runs to its end, at most `timeout_ms`); when it returns
/// true, the operation in progress stops with [`DecodeError::Cancelled`] (its new nodes
/// released).
pub type Interrupt = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// A token id of the model's vocabulary.
pub type TokenId = i32;

/// A handle to a token prefix in an [`Lm`]'s tree.
///
/// Handles are cheap to copy. A handle is valid on the model that issued it until it is passed to
/// [`Lm::release`]; using it afterwards gives [`DecodeError::UnknownNode`], never another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Node {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl Node {
    /// A number that identifies the node among the live nodes of its model (slots are reused after
    /// release, so this is not unique over a model's lifetime).
    pub fn index(self) -> u32 {
        self.index
    }
}

/// One chat message, rendered through the model's own chat template by [`Lm::root`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
}

/// How to pick each next token.
///
/// Filters apply in the order top-k, top-p, min-p, then the temperature-scaled distribution is
/// sampled with a generator seeded by `seed` alone, so a request's result does not depend on the
/// other requests of its batch. `temperature == 0` is greedy decoding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Softmax temperature, `>= 0`; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 disables.
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability sums to at least `top_p`; in (0, 1].
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; in [0, 1).
    pub min_p: f32,
    /// Seed of this request's random generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
        }
    }

    /// These parameters with another seed.
    pub fn with_seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field out of range and the range it must lie in.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(ConfigError::new(
                "temperature",
                format!(
                    "{} is not allowed; use a finite value >= 0 (0 = greedy)",
                    self.temperature
                ),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(ConfigError::new(
                "top_p",
                format!(
                    "{} is outside (0, 1]; use 1 to disable nucleus sampling",
                    self.top_p
                ),
            ));
        }
        if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            return Err(ConfigError::new(
                "min_p",
                format!("{} is outside [0, 1); use 0 to disable", self.min_p),
            ));
        }
        Ok(())
    }
}

/// One branch to sample: where from, how, and when to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    /// The node to continue.
    pub parent: Node,
    /// Sampling parameters (including the seed).
    pub sampling: SamplingParams,
    /// Stop as soon as the generated text contains one of these (the stop text is kept in the
    /// child; see [`Generation::finish`]).
    pub stop: Vec<String>,
    /// At most this many new tokens; at least 1.
    pub max_tokens: u32,
    /// Keep sampling after an end-of-generation token (benchmarks use this for fixed lengths).
    pub ignore_eos: bool,
    /// Stop early when the model grows unsure (DeepConf online): see [`ConfidenceStop`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_stop: Option<ConfidenceStop>,
}

/// Ends a generation with [`FinishReason::LowConfidence`] as soon as the mean token confidence
/// ([`Generation::confidence`]) of its last `window` tokens falls below `threshold`; checked after
/// every token once `window` tokens are generated.
///
/// The llama.cpp backend stops decoding the branch at once. A remote server cannot be stopped
/// mid-request: [`RemoteLm`] reads the whole completion and reports `LowConfidence` when the
/// condition held at any point (the vote drops the trace as it would have; no tokens are saved).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceStop {
    /// Tokens per group, at least 1.
    pub window: u32,
    /// The lowest group confidence allowed.
    pub threshold: f32,
}

impl ConfidenceStop {
    /// Whether the confidences so far (one per token) end with a group below the threshold.
    pub fn triggered(&self, confidence: &[f32]) -> bool {
        let w = self.window as usize;
        if w == 0 || confidence.len() < w {
            return false;
        }
        let group = &confidence[confidence.len() - w..];
        let mean = group.iter().map(|&c| f64::from(c)).sum::<f64>() / w as f64;
        mean < f64::from(self.threshold)
    }

    /// The index of the first token after which [`ConfidenceStop::triggered`] holds, if any.
    pub fn first_trigger(&self, confidence: &[f32]) -> Option<usize> {
        let w = self.window as usize;
        if w == 0 || confidence.len() < w {
            return None;
        }
        let mut sum: f64 = confidence[..w].iter().map(|&c| f64::from(c)).sum();
        let t = f64::from(self.threshold) * w as f64;
        if sum < t {
            return Some(w - 1);
        }
        for i in w..confidence.len() {
            sum += f64::from(confidence[i]) - f64::from(confidence[i - w]);
            if sum < t {
                return Some(i);
            }
        }
        None
    }
}

impl GenRequest {
    /// A request with default sampling, no stop strings, and `max_tokens` new tokens.
    pub fn new(parent: Node, max_tokens: u32) -> Self {
        Self {
            parent,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            max_tokens,
            ignore_eos: false,
            confidence_stop: None,
        }
    }

    /// Sample `i` of a set drawn from `parent`: `sampling` with its seed advanced by `i` (so
    /// each sample of the set has its own, reproducible seed), no stop strings, at most
    /// `max_tokens` new tokens.
    pub fn sample(parent: Node, sampling: &SamplingParams, i: u32, max_tokens: u32) -> Self {
        Self {
            sampling: sampling.with_seed(sampling.seed.wrapping_add(u64::from(i))),
            ..Self::new(parent, max_tokens)
        }
    }

    /// Checks the request's parameters.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the invalid field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sampling.validate()?;
        if self.max_tokens == 0 {
            return Err(ConfigError::new(
                "max_tokens",
                "0 would generate nothing; ask for at least 1 token",
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "stop",
                "an empty stop string would stop at once; remove it",
            ));
        }
        if let Some(c) = &self.confidence_stop {
            if c.window == 0 || !c.threshold.is_finite() {
                return Err(ConfigError::new(
                    "confidence_stop",
                    "use a window of at least 1 token and a finite threshold",
                ));
            }
        }
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum FinishReason {
    /// The text contains the stop string with this index in [`GenRequest::stop`].
    Stop(usize),
    /// The model produced an end-of-generation token (kept as the child's last token).
    Eos,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The branch reached the end of the context window.
    ContextFull,
    /// The request's [`ConfidenceStop`] ended it: its last group of tokens was too unsure.
    LowConfidence,
}

impl FinishReason {
    /// Whether the generation was cut off (by its token limit or the context) rather than
    /// ending by itself: its text may stop mid-sentence, and a number in it is not an answer.
    pub fn is_cut_off(&self) -> bool {
        matches!(self, Self::MaxTokens | Self::ContextFull)
    }
}

impl std::fmt::Display for FinishReason {
    /// In words, for people: "stop string 2", "end of text", "max tokens", "context full".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stop(i) => write!(f, "stop string {}", i + 1),
            Self::Eos => f.write_str("end of text"),
            Self::MaxTokens => f.write_str("max tokens"),
            Self::ContextFull => f.write_str("context full"),
            Self::LowConfidence => f.write_str("low confidence"),
        }
    }
}

/// The result of one [`GenRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The new child node: the parent plus the generated tokens.
    pub node: Node,
    /// The generated text (end-of-generation tokens are not rendered).
    pub text: String,
    /// The number of generated tokens.
    pub tokens: u32,
    /// Sum over the generated tokens of the model's log-probability of each (temperature 1, no
    /// filters): the sequence log-likelihood.
    pub logprob: f64,
    /// Why it ended.
    pub finish: FinishReason,
    /// DeepConf token confidence of each generated token: minus the mean log-probability of the
    /// [`CONFIDENCE_TOP_K`] most likely tokens at that position (high = sure). Empty where the
    /// backend cannot tell (see [`RemoteLm`] for servers that give no top log-probabilities).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confidence: Vec<f32>,
    /// Self-certainty of each generated token (Kang et al., 2025): KL(U ‖ p), the divergence of
    /// the uniform distribution over the vocabulary from the model's distribution at that
    /// position, in nats (high = sure). Empty where the backend cannot tell (a remote server
    /// gives no full distribution).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certainty: Vec<f32>,
    /// Entropy of the model's distribution at each generated token, in nats (low = sure). Empty
    /// where the backend cannot tell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entropy: Vec<f32>,
    /// Each generated token with its log-probability and the most likely tokens at its
    /// position: filled by [`Lm::generate_logprobs`] only (empty from [`Lm::generate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_logprobs: Vec<TokenLogprob>,
}

/// One token of a text with the model's log-probability of it (temperature 1, no filters) and
/// the most likely tokens at its position, as [`Lm::generate_logprobs`] and
/// [`Lm::forced_top_logprobs`] report them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token.
    pub token: TokenId,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely tokens at this position with their log-probabilities, most likely first
    /// (ties: lower id first); as many as were asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<(TokenId, f32)>,
}

/// The most alternatives [`Lm::generate_logprobs`] and [`Lm::forced_top_logprobs`] report per
/// token (OpenAI's cap on `top_logprobs`).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// How many of the most likely tokens [`Generation::confidence`] averages over (DeepConf uses
/// k in 5..20).
pub const CONFIDENCE_TOP_K: usize = 20;

impl Generation {
    /// The mean per-token log-probability (0 for an empty generation).
    pub fn mean_logprob(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.logprob / f64::from(self.tokens)
        }
    }
}

/// Counters of the work an [`Lm`] has done since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of all root prompts.
    pub prompt_tokens: u64,
    /// Forced tokens (prompts, extensions) run through the model for the first time.
    pub prefill_tokens: u64,
    /// Tokens sampled by [`Lm::generate`].
    pub generated_tokens: u64,
    /// Sampled tokens run through the model. Branches that sampled the same tokens after the
    /// same prefix share them, so this can be below `generated_tokens`.
    pub decoded_tokens: u64,
    /// Tokens a new sequence got by sharing another sequence's cache instead of decoding them.
    pub reused_tokens: u64,
    /// Tokens run through the model again because their cache had been parked or their logits
    /// dropped: the price of parking.
    pub recomputed_tokens: u64,
    /// Calls to `llama_decode` that succeeded.
    pub forward_passes: u64,
    /// Nodes whose sequence was freed under sequence or cache pressure.
    pub parked: u64,
    /// Parked nodes brought back.
    pub reactivated: u64,
    /// Whole KV streams copied (layout `streams`: a fork, or a move that keeps the sequences
    /// decoded together next to each other; `unified` forks copy nothing).
    #[serde(default)]
    pub kv_copies: u64,
    /// Bytes those copies moved (estimated from the model's shape: one stream of f16 cells).
    #[serde(default)]
    pub kv_copy_bytes: u64,
    /// Wall time spent inside the model's operations, in milliseconds.
    pub wall_ms: u64,
}

impl Usage {
    /// The work done since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.saturating_sub(earlier.prompt_tokens),
            prefill_tokens: self.prefill_tokens.saturating_sub(earlier.prefill_tokens),
            generated_tokens: self
                .generated_tokens
                .saturating_sub(earlier.generated_tokens),
            decoded_tokens: self.decoded_tokens.saturating_sub(earlier.decoded_tokens),
            reused_tokens: self.reused_tokens.saturating_sub(earlier.reused_tokens),
            recomputed_tokens: self
                .recomputed_tokens
                .saturating_sub(earlier.recomputed_tokens),
            forward_passes: self.forward_passes.saturating_sub(earlier.forward_passes),
            parked: self.parked.saturating_sub(earlier.parked),
            reactivated: self.reactivated.saturating_sub(earlier.reactivated),
            kv_copies: self.kv_copies.saturating_sub(earlier.kv_copies),
            kv_copy_bytes: self.kv_copy_bytes.saturating_sub(earlier.kv_copy_bytes),
            wall_ms: self.wall_ms.saturating_sub(earlier.wall_ms),
        }
    }

    /// Adds `other`'s counters to these (another solve's, or one call's).
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.prefill_tokens += other.prefill_tokens;
        self.generated_tokens += other.generated_tokens;
        self.decoded_tokens += other.decoded_tokens;
        self.reused_tokens += other.reused_tokens;
        self.recomputed_tokens += other.recomputed_tokens;
        self.forward_passes += other.forward_passes;
        self.parked += other.parked;
        self.reactivated += other.reactivated;
        self.kv_copies += other.kv_copies;
        self.kv_copy_bytes += other.kv_copy_bytes;
        self.wall_ms += other.wall_ms;
    }
}

/// A tree of token prefixes over one model, with batched operations.
///
/// All methods take slices so that a backend can serve many branches with one forward pass.
pub trait Lm {
    /// Renders `messages` through the model's chat template (ending with the assistant's turn
    /// opened) and returns the prompt's node. Nothing is decoded until a node below it is used.
    ///
    /// # Errors
    /// [`DecodeError::ContextOverflow`] if the prompt does not leave room for one token;
    /// [`DecodeError::ChatTemplate`] if the messages cannot be rendered.
    fn root(&mut self, messages: &[Message]) -> Result<Node, DecodeError> {
        let text = self.chat_text(messages)?;
        self.root_text(&text)
    }

    /// `messages` rendered through the model's chat template, ending with the assistant's turn
    /// opened: the text [`Lm::root`] tokenizes.
    ///
    /// # Errors
    /// [`DecodeError::ChatTemplate`], [`DecodeError::NulByte`].
    fn chat_text(&self, messages: &[Message]) -> Result<String, DecodeError>;

    /// A root from raw text, without chat template (for base models and benchmarks).
    ///
    /// # Errors
    /// As [`Lm::root`].
    fn root_text(&mut self, text: &str) -> Result<Node, DecodeError>;

    /// A root from token ids, used as given (no BOS is added).
    ///
    /// # Errors
    /// As [`Lm::root`]; [`DecodeError::InvalidRequest`] for an id outside the vocabulary.
    fn root_tokens(&mut self, tokens: &[TokenId]) -> Result<Node, DecodeError>;

    /// A child of `node` with `text` appended verbatim (a reflection trigger, a judge question).
    ///
    /// # Errors
    /// [`DecodeError::UnknownNode`]; [`DecodeError::ContextOverflow`] if the result would not fit.
    fn extend(&mut self, node: Node, text: &str) -> Result<Node, DecodeError> {
        // An unknown node fails before the text is tokenised.
        self.node_len(node)?;
        let tokens = self.tokenize(text)?;
        self.extend_tokens(node, &tokens)
    }

    /// A child of `node` with `tokens` appended.
    ///
    /// # Errors
    /// As [`Lm::extend`].
    fn extend_tokens(&mut self, node: Node, tokens: &[TokenId]) -> Result<Node, DecodeError>;

    /// Samples every request, all branches advancing together; one result per request, in order.
    ///
    /// # Errors
    /// [`DecodeError::InvalidRequest`] for an invalid request (checked before any work);
    /// [`DecodeError::UnknownNode`]; cache or decode failures.
    fn generate(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError>;

    /// For each `(node, candidates)`, the probability (temperature 1) of each candidate token as the
    /// token right after `node`.
    ///
    /// # Errors
    /// [`DecodeError::UnknownNode`]; [`DecodeError::InvalidRequest`] for a token id outside the vocabulary.
    fn next_token_probs(
        &mut self,
        queries: &[(Node, &[TokenId])],
    ) -> Result<Vec<Vec<f32>>, DecodeError>;

    /// For each `(node, text)`, the log-probability of each token of `text` forced after `node`.
    ///
    /// # Errors
    /// [`DecodeError::UnknownNode`]; [`DecodeError::ContextOverflow`].
    fn forced_logprobs(&mut self, queries: &[(Node, &str)]) -> Result<Vec<Vec<f32>>, DecodeError>;

    /// As [`Lm::generate`], also recording every generated token's log-probability and the `top`
    /// most likely tokens at its position in [`Generation::token_logprobs`] (one more pass over
    /// the vocabulary per token, no model call).
    ///
    /// # Errors
    /// As [`Lm::generate`]; [`DecodeError::InvalidRequest`] for `top` above [`MAX_TOP_LOGPROBS`];
    /// [`DecodeError::Unsupported`] on backends that do not see the logits.
    fn generate_logprobs(
        &mut self,
        requests: &[GenRequest],
        top: u32,
    ) -> Result<Vec<Generation>, DecodeError> {
        let _ = (requests, top);
        Err(DecodeError::Unsupported {
            what: "per-token top log-probabilities of sampled tokens",
            hint: "use the llama.cpp backend".into(),
        })
    }

    /// For each `(node, tokens)`, each token forced after `node` with its log-probability and
    /// the `top` most likely tokens at its position (scoring a given text, as
    /// [`Lm::forced_logprobs`] does, with the alternatives).
    ///
    /// # Errors
    /// As [`Lm::forced_logprobs`]; [`DecodeError::InvalidRequest`] for a token outside the vocabulary
    /// or `top` above [`MAX_TOP_LOGPROBS`]; [`DecodeError::Unsupported`] on backends that do
    /// not see the logits.
    fn forced_top_logprobs(
        &mut self,
        queries: &[(Node, &[TokenId])],
        top: u32,
    ) -> Result<Vec<Vec<TokenLogprob>>, DecodeError> {
        let _ = (queries, top);
        Err(DecodeError::Unsupported {
            what: "per-token top log-probabilities of forced tokens",
            hint: "use the llama.cpp backend".into(),
        })
    }

    /// The caller no longer needs `node`: its sequence and logits are freed. Releasing an unknown
    /// or already released node does nothing.
    fn release(&mut self, node: Node);

    /// Work done so far.
    fn usage(&self) -> Usage;

    /// When no node is live, returns the backend's cache to the state of a fresh one, so that
    /// what follows gives the same results as in a new process (llama.cpp's CPU kernels are not
    /// independent of where cells sit in the cache). Does nothing and returns `false` while any
    /// node is live. [`crate::Engine::solve`] calls it before every solve.
    fn reset(&mut self) -> bool {
        false
    }

    /// Installs (or, with `None`, removes) a check that can stop long operations between
    /// forward passes. Backends that cannot be interrupted ignore it.
    fn set_interrupt(&mut self, interrupt: Option<Interrupt>) {
        let _ = interrupt;
    }

    /// The check installed by [`Lm::set_interrupt`], so that a caller can add its own condition
    /// (a deadline) and put the original back afterwards.
    fn interrupt(&self) -> Option<Interrupt> {
        None
    }

    /// Tokenises `text` as [`Lm::extend`] would.
    ///
    /// # Errors
    /// [`DecodeError::NulByte`].
    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, DecodeError>;

    /// The text of one token, as the model would print it.
    fn token_text(&self, token: TokenId) -> String;

    /// The number of tokens in the vocabulary.
    fn vocab_size(&self) -> usize;

    /// The number of tokens in `node`'s whole prefix.
    ///
    /// # Errors
    /// [`DecodeError::UnknownNode`].
    fn node_len(&self, node: Node) -> Result<usize, DecodeError>;

    /// The token ids of `node`'s whole prefix.
    ///
    /// # Errors
    /// [`DecodeError::UnknownNode`].
    fn node_tokens(&self, node: Node) -> Result<Vec<TokenId>, DecodeError>;
}

/// The tokens that close the assistant turn ending at `node` and open a new user turn with `text`
/// followed by the assistant's turn, as the model's chat template writes them. When `node` already
/// ends with the template's end-of-turn token (the model stopped by itself), that token is not
/// repeated.
///
/// # Errors
/// [`DecodeError::ChatTemplate`] when the template drops the assistant's text; tokenizer and
/// unknown-node errors.
pub fn user_turn_tokens(lm: &dyn Lm, node: Node, text: &str) -> Result<Vec<TokenId>, DecodeError> {
    const MARK: &str = "\u{1}PONDER-TURN\u{1}";
    let rendered = lm.chat_text(&[
        Message::user("q"),
        Message::new("assistant", MARK),
        Message::user(text),
    ])?;
    let after = rendered
        .split_once(MARK)
        .map(|(_, a)| a.to_string())
        .ok_or_else(|| {
            DecodeError::ChatTemplate("the chat template dropped the assistant's text".into())
        })?;
    let mut tokens = lm.tokenize(&after)?;
    let last = lm.node_tokens(node)?.last().copied();
    if !tokens.is_empty() && last == Some(tokens[0]) {
        tokens.remove(0);
    }
    Ok(tokens)
}
