//! One llama.cpp context serving many solves at once: [`SharedLlama`] and its per-solve
//! [`SolveLm`] handles.
//!
//! Each handle is an [`Lm`] with its own nodes (the nodes of other solves are invisible to it),
//! its own interrupt and its own usage counters. Its decoding calls become jobs in the context's
//! job table (see [`super::sched`]); whichever waiting caller holds the context runs the next
//! step, which serves the jobs of every solve with one `llama_decode`, then lets the others in.
//! A call returns when its own job is done. No scheduler thread: the callers drive the loop (while
//! several handles are alive, the `llama_decode` of each step runs on the context's one decoding
//! thread, see `ModelContext::decode_on_one_thread`).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};

use super::sched::{Output, Work};
use super::{LlamaLm, Owner};
use crate::error::DecodeError;
use crate::lm::{
    GenRequest, Generation, Interrupt, Lm, Message, Node, TokenId, TokenLogprob, Usage,
};

/// A [`LlamaLm`] shared by concurrent solves: hand each solve a [`SharedLlama::solve_lm`].
///
/// Thread rules: `Send + Sync`; handles may live on any threads, each used by one at a time.
pub struct SharedLlama {
    core: Mutex<LlamaLm>,
    next_owner: AtomicU32,
    /// Handles alive: with more than one, their threads take turns at stepping, and one thread
    /// of the context's own decodes for all of them (see `ModelContext::decode_on_one_thread`).
    handles: AtomicUsize,
}

impl fmt::Debug for SharedLlama {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLlama").finish_non_exhaustive()
    }
}

/// What a shared context holds right now (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContextLoad {
    /// Sequences holding cache.
    pub live_sequences: usize,
    /// The most sequences at once.
    pub n_seq_max: u32,
    /// Nodes of all solves not yet released.
    pub nodes: usize,
    /// Decoding calls in progress.
    pub jobs: usize,
    /// KV cells the live sequences hold, counted by ponder (see [`LlamaLm::kv_cells_used`]).
    pub kv_cells_used: usize,
    /// KV cells of the context (`n_ctx`).
    pub kv_cells_capacity: u32,
}

impl SharedLlama {
    /// Shares `lm` (it should have no live nodes: its own caller's nodes are invisible to the
    /// handles).
    pub fn new(lm: LlamaLm) -> Arc<Self> {
        Arc::new(Self {
            core: Mutex::new(lm),
            next_owner: AtomicU32::new(1),
            handles: AtomicUsize::new(0),
        })
    }

    /// A new handle: an [`Lm`] for one solve. Its nodes are released when it is dropped.
    pub fn solve_lm(self: &Arc<Self>) -> SolveLm {
        self.handles.fetch_add(1, Ordering::Relaxed);
        SolveLm {
            shared: self.clone(),
            owner: self.next_owner.fetch_add(1, Ordering::Relaxed).max(1),
            interrupt: None,
            wall_us: 0,
        }
    }

    /// The work done by the context for all solves so far.
    pub fn usage(&self) -> Usage {
        self.core.lock().usage
    }

    /// Sequences, nodes and calls in progress now.
    pub fn load(&self) -> ContextLoad {
        let core = self.core.lock();
        ContextLoad {
            live_sequences: core.live_sequences(),
            n_seq_max: core.sizing.n_seq_max,
            nodes: core.node_count(),
            jobs: core.jobs.len(),
            kv_cells_used: core.kv_cells_used(),
            kv_cells_capacity: core.sizing.n_ctx,
        }
    }

    /// Runs `f` on the context itself (no solve may be running: its nodes would be visible to
    /// nobody).
    pub fn with_core<T>(&self, f: impl FnOnce(&mut LlamaLm) -> T) -> T {
        f(&mut self.core.lock())
    }
}

/// One solve's view of a [`SharedLlama`]: an [`Lm`] whose decoding calls share forward passes
/// with the calls of every other handle.
pub struct SolveLm {
    shared: Arc<SharedLlama>,
    owner: Owner,
    interrupt: Option<Interrupt>,
    wall_us: u64,
}

impl fmt::Debug for SolveLm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SolveLm")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl SolveLm {
    /// The context, with this handle's nodes visible.
    fn core(&self) -> MutexGuard<'_, LlamaLm> {
        let mut core = self.shared.core.lock();
        core.caller = self.owner;
        core
    }

    /// Submits the job that `make` builds and steps the shared loop until it is done.
    fn run(
        &mut self,
        make: impl FnOnce(&mut LlamaLm) -> Result<Work, DecodeError>,
    ) -> Result<Output, DecodeError> {
        let start = Instant::now();
        let result = (|| {
            let mut core = self.core();
            let many = self.shared.handles.load(Ordering::Relaxed) > 1;
            core.ctx.decode_on_one_thread(many);
            let work = make(&mut core)?;
            let id = core.submit(self.owner, self.interrupt.clone(), work);
            loop {
                if let Some(result) = core.take_done(id) {
                    return result;
                }
                core.step();
                // Let the other solves submit their calls and collect their results.
                MutexGuard::bump(&mut core);
            }
        })();
        self.wall_us += start.elapsed().as_micros() as u64;
        result
    }

    /// Runs `f` on the context with this handle's nodes visible.
    fn with<T>(&mut self, f: impl FnOnce(&mut LlamaLm) -> T) -> T {
        f(&mut self.core())
    }
}

impl Drop for SolveLm {
    fn drop(&mut self) {
        self.shared.handles.fetch_sub(1, Ordering::Relaxed);
        let mut core = self.shared.core.lock();
        let mine: Vec<u32> = core
            .nodes
            .iter()
            .filter(|(_, n)| n.owner == self.owner)
            .map(|(i, _)| i)
            .collect();
        for i in mine {
            core.release_index(i);
        }
        core.by_owner.remove(&self.owner);
    }
}

impl Lm for SolveLm {
    fn root(&mut self, messages: &[Message]) -> Result<Node, DecodeError> {
        self.with(|lm| lm.root(messages))
    }

    fn chat_text(&self, messages: &[Message]) -> Result<String, DecodeError> {
        self.core().chat_text(messages)
    }

    fn root_text(&mut self, text: &str) -> Result<Node, DecodeError> {
        self.with(|lm| lm.root_text(text))
    }

    fn root_tokens(&mut self, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.with(|lm| lm.root_tokens(tokens))
    }

    fn extend(&mut self, node: Node, text: &str) -> Result<Node, DecodeError> {
        self.with(|lm| lm.extend(node, text))
    }

    fn extend_tokens(&mut self, node: Node, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.with(|lm| lm.extend_tokens(node, tokens))
    }

    fn generate(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError> {
        Ok(self
            .run(|lm| lm.generate_work(requests, None))?
            .generations())
    }

    fn generate_logprobs(
        &mut self,
        requests: &[GenRequest],
        top: u32,
    ) -> Result<Vec<Generation>, DecodeError> {
        Ok(self
            .run(|lm| lm.generate_work(requests, Some(top)))?
            .generations())
    }

    fn forced_top_logprobs(
        &mut self,
        queries: &[(Node, &[TokenId])],
        top: u32,
    ) -> Result<Vec<Vec<TokenLogprob>>, DecodeError> {
        Ok(self
            .run(|lm| lm.forced_top_work(queries, top))?
            .token_logprobs())
    }

    fn next_token_probs(
        &mut self,
        queries: &[(Node, &[TokenId])],
    ) -> Result<Vec<Vec<f32>>, DecodeError> {
        Ok(LlamaLm::candidate_probs(
            queries,
            self.run(|lm| lm.logits_work(queries))?.logits(),
        ))
    }

    fn forced_logprobs(&mut self, queries: &[(Node, &str)]) -> Result<Vec<Vec<f32>>, DecodeError> {
        Ok(self.run(|lm| lm.forced_work(queries))?.logprobs())
    }

    fn release(&mut self, node: Node) {
        self.with(|lm| lm.release(node));
    }

    fn usage(&self) -> Usage {
        let core = self.core();
        Usage {
            wall_ms: self.wall_us / 1000,
            ..core.by_owner.get(&self.owner).copied().unwrap_or_default()
        }
    }

    /// Resets the shared cache when no node of any solve is live (a solve alone then runs as in
    /// a fresh process).
    fn reset(&mut self) -> bool {
        self.with(|lm| lm.reset())
    }

    fn set_interrupt(&mut self, interrupt: Option<Interrupt>) {
        self.interrupt = interrupt;
    }

    fn interrupt(&self) -> Option<Interrupt> {
        self.interrupt.clone()
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, DecodeError> {
        self.core().tokenize(text)
    }

    fn token_text(&self, token: TokenId) -> String {
        self.core().token_text(token)
    }

    fn vocab_size(&self) -> usize {
        self.core().vocab_size()
    }

    fn node_len(&self, node: Node) -> Result<usize, DecodeError> {
        self.core().node_len(node)
    }

    fn node_tokens(&self, node: Node) -> Result<Vec<TokenId>, DecodeError> {
        self.core().node_tokens(node)
    }
}
