//! The in-process llama.cpp backend of [`Lm`].
//!
//! One `llama_context` serves a whole tree of nodes, in one of two KV layouts ([`KvLayout`]):
//! `unified` (one pool of cells shared by all sequences) or `streams` (a stream of cells per
//! sequence, as `llama-server` runs).
//!
//! - A node that holds cache owns a sequence id. A new sequence starts as a copy
//!   (`llama_memory_seq_cp`) of the live sequence that shares the longest token prefix with it; in
//!   `unified` that copy only tags the existing cells, in `streams` it copies the source's whole
//!   stream and then cuts it back to the shared prefix. Only the tokens past the shared prefix are
//!   decoded.
//! - Every live branch of a [`Lm::generate`] call advances in one `llama_decode` per step; prefills
//!   of many nodes go into one batch too.
//! - Under sequence-id or KV-cell pressure the least recently used idle node is *parked*: its
//!   sequence is removed and its tokens kept. Using it again re-attaches it as above, which usually
//!   costs nothing (a child or sibling still shares its prefix) or decodes only the difference.
//! - Each node's next-token logits are kept for a bounded number of nodes, so the first token of
//!   many children of one parent costs no forward pass.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate};
use llama_cpp_2::token::LlamaToken;

mod cache;
mod context;
mod model;
mod options;
mod reference;
mod sample;
mod sched;
mod shared;
pub(crate) use model::llama_backend;
pub use model::{devices, Device, Model};
pub use options::{
    default_model_path, ContextOptions, KvLayout, ModelOptions, Sizing, DEFAULT_MODEL_PATH,
};
pub use reference::ReferenceDecode;
pub(crate) use sched::Owner;
pub use shared::{ContextLoad, SharedLlama, SolveLm};

use super::nodes::NodeTable;
use super::sampler::{self, Scratch};
use super::{
    GenRequest, Generation, Lm, Message, Node, TokenId, TokenLogprob, Usage, MAX_TOP_LOGPROBS,
};
use crate::error::{ConfigError, DecodeError, Error};
use cache::{Decoded, NodeData, Pending};
use context::ModelContext;
use sched::{Need, Output, Work};

/// An inference context over a [`Model`] with a tree of nodes: the llama.cpp [`Lm`].
///
/// Thread rules: a `LlamaLm` may move between threads (`Send`) but serves one caller at a time
/// (`&mut self`); share it behind a mutex.
pub struct LlamaLm {
    ctx: ModelContext,
    batch: LlamaBatch<'static>,
    model: Model,
    /// The model's own chat template; `None` for models without one (base models), which get
    /// a plain `User: … / Assistant:` rendering instead.
    template: Option<LlamaChatTemplate>,
    /// The layout and sizes the context was made with.
    sizing: Sizing,
    /// Bytes one stream copy moves (`streams`; an estimate from the model's shape, f16 cells).
    stream_bytes: u64,
    n_batch: usize,
    logits_cache: usize,
    nodes: NodeTable<NodeData>,
    free_seqs: Vec<i32>,
    clock: u64,
    usage: Usage,
    wall_us: u64,
    scratch: Scratch,
    interrupt: Option<super::Interrupt>,
    /// Whose call is being served: node handles of other owners are unknown to it.
    caller: Owner,
    /// The counters of each owner but 0 (whose counters are `usage`, the context's total).
    by_owner: HashMap<Owner, Usage>,
    /// Decoding calls in progress (see [`sched`]).
    jobs: Vec<sched::Job>,
    next_job: u64,
    deterministic: bool,
    /// [`ContextOptions::max_seqs_per_solve`] (`n_seq_max` when 0).
    seqs_per_owner: usize,
    /// [`ContextOptions::max_cells_per_solve`] (`None` when 0: no cap).
    cells_per_owner: Option<usize>,
}

impl fmt::Debug for LlamaLm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlamaLm")
            .field("model", &self.model)
            .field("sizing", &self.sizing)
            .field("nodes", &self.node_count())
            .field("live_sequences", &self.live_sequences())
            .finish()
    }
}

impl LlamaLm {
    /// Loads `model` and creates a context: [`Model::load`] then [`Model::session`].
    ///
    /// # Errors
    /// As those two.
    pub fn open(model: &ModelOptions, context: &ContextOptions) -> Result<Self, Error> {
        // Checked before the (slow) load, so that a bad setting fails at once.
        context.validate()?;
        Model::load(model)?.session(context)
    }

    fn new(model: Model, options: &ContextOptions) -> Result<Self, Error> {
        options.validate()?;
        let sizing = options.sizing();
        let (ctx, n_batch) = ModelContext::open(&model, options, &sizing)?;
        let template = model.inner.chat_template(None).ok();
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(n_batch as usize, sizing.n_seq_max as i32),
            template,
            stream_bytes: model.kv_bytes_per_cell() * u64::from(sizing.cells_per_seq),
            sizing,
            n_batch: n_batch as usize,
            logits_cache: options.logits_cache as usize,
            nodes: NodeTable::new(),
            free_seqs: (0..sizing.n_seq_max as i32).collect(),
            clock: 0,
            usage: Usage::default(),
            wall_us: 0,
            scratch: Scratch::default(),
            interrupt: None,
            caller: 0,
            by_owner: HashMap::new(),
            jobs: Vec::new(),
            next_job: 0,
            deterministic: options.deterministic,
            seqs_per_owner: match options.max_seqs_per_solve {
                0 => sizing.n_seq_max as usize,
                n => n as usize,
            },
            cells_per_owner: (options.max_cells_per_solve > 0)
                .then_some(options.max_cells_per_solve as usize),
            model,
        })
    }

    /// The model this context runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The context size in tokens (KV cells in all).
    pub fn n_ctx(&self) -> u32 {
        self.sizing.n_ctx
    }

    /// The most sequences live at once.
    pub fn n_seq_max(&self) -> u32 {
        self.sizing.n_seq_max
    }

    /// The layout and sizes the context was made with (`auto` and defaults resolved).
    pub fn sizing(&self) -> Sizing {
        self.sizing
    }

    fn streams(&self) -> bool {
        self.sizing.layout == KvLayout::Streams
    }

    /// Whether it was opened with [`ContextOptions::deterministic`].
    pub fn deterministic(&self) -> bool {
        self.deterministic
    }

    /// Adds to the counters of the context and of `owner`.
    fn count(&mut self, owner: Owner, add: impl Fn(&mut Usage)) {
        add(&mut self.usage);
        if owner != 0 {
            add(self.by_owner.entry(owner).or_default());
        }
    }

    /// Nodes not yet released.
    pub fn node_count(&self) -> usize {
        self.nodes.count()
    }

    /// KV cells held by `owner`'s attached nodes beyond the prefixes they inherit (their own
    /// tokens): what [`ContextOptions::max_cells_per_solve`] caps.
    fn owner_cells(&self, owner: Owner) -> usize {
        self.nodes
            .iter()
            .map(|(_, n)| n)
            .filter(|n| n.owner == owner && n.seq.is_some())
            .map(|n| n.kv_len.saturating_sub(n.own_start))
            .sum()
    }

    /// Sequences currently holding cache.
    pub fn live_sequences(&self) -> usize {
        self.sizing.n_seq_max as usize - self.free_seqs.len()
    }

    /// KV cells the live sequences hold: the distinct token prefixes (position and all tokens
    /// before it) in their caches, so a prefix shared by many sequences counts once. llama.cpp's
    /// API (as of llama-cpp-2 0.1.160) has no used-cell count, so this is ponder's own: it equals
    /// the cache's when every shared prefix is stored once, as ponder does (new sequences copy
    /// the longest live prefix; equal pending tokens of several sequences are decoded into one
    /// cell), and is lower by the tokens two sequences decoded separately although equal.
    /// Linear in the tokens held (sorted by prefix): meant for monitoring, not per step. In
    /// `streams` nothing is shared: the sum of every live sequence's tokens.
    pub fn kv_cells_used(&self) -> usize {
        if self.streams() {
            return self
                .nodes
                .iter()
                .filter(|(_, n)| n.seq.is_some())
                .map(|(_, n)| n.kv_len)
                .sum();
        }
        let mut held: Vec<&[LlamaToken]> = self
            .nodes
            .iter()
            .map(|(_, n)| n)
            .filter(|n| n.seq.is_some())
            .map(|n| &n.tokens[..n.kv_len])
            .collect();
        held.sort_unstable();
        let mut cells = 0;
        let mut previous: &[LlamaToken] = &[];
        for tokens in held {
            let shared = tokens
                .iter()
                .zip(previous)
                .take_while(|(a, b)| a == b)
                .count();
            cells += tokens.len() - shared;
            previous = tokens;
        }
        cells
    }

    /// Whether `node` currently holds a sequence (false for a parked or never-decoded node).
    ///
    /// # Errors
    /// [`DecodeError::UnknownNode`].
    pub fn is_attached(&self, node: Node) -> Result<bool, DecodeError> {
        Ok(self.data(self.index(node)?).seq.is_some())
    }
}

impl LlamaLm {
    fn check_vocab(&self, field: &'static str, tokens: &[TokenId]) -> Result<(), DecodeError> {
        let vocab = self.vocab_size();
        match tokens.iter().find(|&&t| t < 0 || t as usize >= vocab) {
            Some(&bad) => Err(ConfigError::new(
                field,
                format!("token id {bad} is outside the vocabulary (0..{vocab})"),
            )
            .into()),
            None => Ok(()),
        }
    }

    fn check_fits(&self, what: &'static str, tokens: usize) -> Result<(), DecodeError> {
        let s = self.sizing;
        if tokens > s.cells_per_seq as usize {
            return Err(if self.streams() {
                DecodeError::StreamOverflow {
                    what,
                    tokens,
                    cells_per_seq: s.cells_per_seq,
                    n_ctx: s.n_ctx,
                    n_seq_max: s.n_seq_max,
                }
            } else {
                DecodeError::ContextOverflow {
                    what,
                    tokens,
                    n_ctx: s.n_ctx,
                }
            });
        }
        Ok(())
    }

    fn new_root(&mut self, tokens: Vec<LlamaToken>) -> Result<Node, DecodeError> {
        if tokens.is_empty() {
            return Err(ConfigError::new("prompt", "it is empty; give the model some text").into());
        }
        // Leave room for at least one generated token.
        self.check_fits("the prompt (plus one generated token)", tokens.len() + 1)?;
        let owner = self.caller;
        self.count(owner, |u| u.prompt_tokens += tokens.len() as u64);
        self.clock += 1;
        Ok(self.insert(NodeData::detached(
            tokens,
            0,
            false,
            0,
            self.caller,
            self.clock,
        )))
    }

    fn tokenize_raw(&self, text: &str, add_special: bool) -> Vec<LlamaToken> {
        self.model
            .inner
            .vocab()
            .tokenize(text.as_bytes(), add_special, true)
    }

    fn piece(&self, token: LlamaToken) -> Vec<u8> {
        self.model.inner.vocab().token_to_piece(token, false, None)
    }

    fn timed<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let start = Instant::now();
        let out = f(self);
        self.wall_us += start.elapsed().as_micros() as u64;
        self.usage.wall_ms = self.wall_us / 1000;
        out
    }

    /// The job of a [`Lm::generate`] call (requests checked); `top`: record every token's
    /// log-probability and that many alternatives ([`Lm::generate_logprobs`]).
    fn generate_work(
        &mut self,
        requests: &[GenRequest],
        top: Option<u32>,
    ) -> Result<Work, DecodeError> {
        for r in requests {
            r.validate()?;
        }
        check_top(top)?;
        let parents = requests
            .iter()
            .map(|r| self.index(r.parent))
            .collect::<Result<Vec<_>, _>>()?;
        let need = Need::new(self, parents.clone());
        Ok(Work::Generate {
            requests: requests.to_vec(),
            parents,
            need,
            sample: None,
            top: top.map(|k| k as usize),
        })
    }

    /// The job of a [`Lm::next_token_probs`] call: the logits of every node.
    fn logits_work(&mut self, queries: &[(Node, &[TokenId])]) -> Result<Work, DecodeError> {
        let ids = queries
            .iter()
            .map(|(n, cands)| {
                self.check_vocab("candidates", cands)?;
                self.index(*n)
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(Work::Logits {
            need: Need::new(self, ids),
        })
    }

    /// The job of a [`Lm::forced_logprobs`] call.
    fn forced_work(&mut self, queries: &[(Node, &str)]) -> Result<Work, DecodeError> {
        let queries = queries
            .iter()
            .map(|&(node, text)| (node, self.tokenize_raw(text, false)))
            .collect();
        self.forced_tokens_work(queries, None)
    }

    /// The job of a [`Lm::forced_top_logprobs`] call (tokens checked).
    fn forced_top_work(
        &mut self,
        queries: &[(Node, &[TokenId])],
        top: u32,
    ) -> Result<Work, DecodeError> {
        check_top(Some(top))?;
        let queries = queries
            .iter()
            .map(|&(node, tokens)| {
                self.check_vocab("tokens", tokens)?;
                Ok((node, tokens.iter().map(|&t| LlamaToken(t)).collect()))
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        self.forced_tokens_work(queries, Some(top as usize))
    }

    /// The job of forcing each query's tokens after its node; `top`: also the alternatives.
    fn forced_tokens_work(
        &mut self,
        queries: Vec<(Node, Vec<LlamaToken>)>,
        top: Option<usize>,
    ) -> Result<Work, DecodeError> {
        let mut children = Vec::with_capacity(queries.len());
        let mut parents = Vec::with_capacity(queries.len());
        for (node, own) in queries {
            let p = self.index(node)?;
            self.check_fits(
                "the forced continuation",
                self.data(p).tokens.len() + own.len(),
            )?;
            parents.push(p);
            children.push(own);
        }
        let need = Need::new(self, parents.clone());
        Ok(Work::Forced {
            need,
            out: Vec::with_capacity(parents.len()),
            parents,
            children,
            out_top: Vec::new(),
            top,
            temp: Vec::new(),
            queue: VecDeque::new(),
            active: Vec::new(),
            started: false,
        })
    }

    /// Runs a job of this context's own caller to its end.
    fn run_own(&mut self, work: Work) -> Result<Output, DecodeError> {
        let id = self.submit(0, self.interrupt.clone(), work);
        self.run_to_end(id)
    }

    /// Frees node `i` (any owner's).
    fn release_index(&mut self, i: u32) {
        let Some(data) = self.nodes.take(i) else {
            return;
        };
        if let Some(seq) = data.seq {
            self.free_seq(seq);
        }
    }

    /// The probabilities of `queries`' candidates from their nodes' logits.
    fn candidate_probs(queries: &[(Node, &[TokenId])], logits: Vec<Arc<[f32]>>) -> Vec<Vec<f32>> {
        queries
            .iter()
            .zip(logits)
            .map(|((_, cands), l)| {
                let lse = sampler::log_sum_exp(&l);
                cands
                    .iter()
                    .map(|&t| sampler::logprob(&l, lse, t as usize).exp() as f32)
                    .collect()
            })
            .collect()
    }
}

/// A conversation as plain text, for models without a chat template (base models): a model
/// trained on raw text continues "Assistant:" more sensibly than special markers it never saw.
fn plain_chat(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        match m.role.as_str() {
            "system" => out.push_str(&m.content),
            "user" => {
                out.push_str("User: ");
                out.push_str(&m.content);
            }
            "assistant" => {
                out.push_str("Assistant: ");
                out.push_str(&m.content);
            }
            other => {
                out.push_str(other);
                out.push_str(": ");
                out.push_str(&m.content);
            }
        }
        out.push_str("\n\n");
    }
    out.push_str("Assistant:");
    out
}

/// Refuses more alternatives per token than [`MAX_TOP_LOGPROBS`].
fn check_top(top: Option<u32>) -> Result<(), DecodeError> {
    match top {
        Some(k) if k > MAX_TOP_LOGPROBS => Err(ConfigError::new(
            "top_logprobs",
            format!("{k} alternatives per token asked for; at most {MAX_TOP_LOGPROBS}"),
        )
        .into()),
        _ => Ok(()),
    }
}

impl Lm for LlamaLm {
    fn chat_text(&self, messages: &[Message]) -> Result<String, DecodeError> {
        let Some(template) = &self.template else {
            return Ok(plain_chat(messages));
        };
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| DecodeError::NulByte {
                what: "a chat message",
            })?;
        self.model
            .inner
            .apply_chat_template(template, &chat, true)
            .map_err(|e| DecodeError::ChatTemplate(e.to_string()))
    }

    fn root_text(&mut self, text: &str) -> Result<Node, DecodeError> {
        self.timed(|lm| {
            let mut tokens = lm.tokenize_raw(text, true);
            // A template that writes BOS itself plus the tokenizer's own BOS would double it.
            let bos = lm.model.inner.vocab().bos();
            if tokens.len() >= 2 && tokens[0] == bos && tokens[1] == bos {
                tokens.remove(0);
            }
            lm.new_root(tokens)
        })
    }

    fn root_tokens(&mut self, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.check_vocab("tokens", tokens)?;
        let tokens = tokens.iter().map(|&t| LlamaToken(t)).collect();
        self.timed(|lm| lm.new_root(tokens))
    }

    fn extend_tokens(&mut self, node: Node, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        let p = self.index(node)?;
        self.check_vocab("tokens", tokens)?;
        self.check_fits(
            "the extended node",
            self.data(p).tokens.len() + tokens.len(),
        )?;
        let own: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        self.touch(p);
        let data = self.child_of(p, &own, false);
        Ok(self.insert(data))
    }

    fn generate(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError> {
        // Timed by the steps.
        let work = self.generate_work(requests, None)?;
        Ok(self.run_own(work)?.generations())
    }

    fn generate_logprobs(
        &mut self,
        requests: &[GenRequest],
        top: u32,
    ) -> Result<Vec<Generation>, DecodeError> {
        let work = self.generate_work(requests, Some(top))?;
        Ok(self.run_own(work)?.generations())
    }

    fn forced_top_logprobs(
        &mut self,
        queries: &[(Node, &[TokenId])],
        top: u32,
    ) -> Result<Vec<Vec<TokenLogprob>>, DecodeError> {
        let work = self.forced_top_work(queries, top)?;
        Ok(self.run_own(work)?.token_logprobs())
    }

    fn next_token_probs(
        &mut self,
        queries: &[(Node, &[TokenId])],
    ) -> Result<Vec<Vec<f32>>, DecodeError> {
        // Timed by the steps.
        let work = self.logits_work(queries)?;
        Ok(Self::candidate_probs(queries, self.run_own(work)?.logits()))
    }

    fn forced_logprobs(&mut self, queries: &[(Node, &str)]) -> Result<Vec<Vec<f32>>, DecodeError> {
        // Timed by the steps.
        let work = self.forced_work(queries)?;
        Ok(self.run_own(work)?.logprobs())
    }

    fn release(&mut self, node: Node) {
        if let Ok(i) = self.index(node) {
            self.release_index(i);
        }
    }

    fn set_interrupt(&mut self, interrupt: Option<super::Interrupt>) {
        self.interrupt = interrupt;
    }

    fn interrupt(&self) -> Option<super::Interrupt> {
        self.interrupt.clone()
    }

    fn reset(&mut self) -> bool {
        if self.node_count() > 0 {
            return false;
        }
        self.ctx.clear();
        self.free_seqs = (0..self.sizing.n_seq_max as i32).collect();
        true
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, DecodeError> {
        Ok(self.tokenize_raw(text, false).iter().map(|t| t.0).collect())
    }

    fn token_text(&self, token: TokenId) -> String {
        if token < 0 || token as usize >= self.vocab_size() {
            return String::new();
        }
        String::from_utf8_lossy(&self.piece(LlamaToken(token))).into_owned()
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn node_len(&self, node: Node) -> Result<usize, DecodeError> {
        Ok(self.data(self.index(node)?).tokens.len())
    }

    fn node_tokens(&self, node: Node) -> Result<Vec<TokenId>, DecodeError> {
        Ok(self
            .data(self.index(node)?)
            .tokens
            .iter()
            .map(|t| t.0)
            .collect())
    }
}
