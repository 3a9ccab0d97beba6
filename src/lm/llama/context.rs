//! [`ModelContext`]: a llama.cpp context that owns a share of the model it was made from.
//!
//! `llama-cpp-2` ties a `LlamaContext<'a>` to a borrow of its `LlamaModel`, so a struct cannot
//! hold both by plain borrowing. This module is the one place that erases that lifetime, and it
//! keeps the erased context private: callers get it only as `&LlamaContext<'_>` tied to their
//! borrow of the owner, or through the few `&mut` operations below, never as a value they could
//! move out or swap.

use std::num::NonZeroU32;
use std::sync::{mpsc, Arc};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::LlamaContextLoadError;

use super::{llama_backend, ContextOptions, KvLayout, Model, Sizing};
use crate::error::LoadError;

/// llama.cpp mutates the model while creating a context, so contexts are created one at a time.
static CONTEXT_CREATION: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// A llama.cpp context together with the model it borrows.
///
/// Invariant: `ctx` was created from `*_model` and is dropped before `_model`. Rust drops a
/// struct's fields in declaration order, so `ctx` must stay declared first.
pub(crate) struct ModelContext {
    ctx: LlamaContext<'static>,
    /// Only read by the context (through llama.cpp's pointer): held to keep the model alive.
    _model: Arc<LlamaModel>,
    /// `unified` or `streams`: decides how [`ModelContext::fork`] copies.
    layout: KvLayout,
    /// The one thread that runs `llama_decode` when the context is shared by many threads (see
    /// [`ModelContext::decode_on_one_thread`]); `None`: the caller's thread runs it.
    decoder: Option<DecodeThread>,
    /// Whether `decoder` runs the decoding calls now.
    decoder_on: bool,
}

impl ModelContext {
    /// A context over `model` sized by `options` (already validated) in the layout of
    /// `sizing` (`options.sizing()`); also returns the tokens per `llama_decode` it was made for.
    pub(crate) fn open(
        model: &Model,
        options: &ContextOptions,
        sizing: &Sizing,
    ) -> Result<(Self, u32), LoadError> {
        let backend = llama_backend()?;
        let n_batch = if options.n_batch == 0 {
            sizing.n_ctx.min(2048)
        } else {
            options.n_batch.min(sizing.n_ctx)
        };
        let threads = if options.n_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
        } else {
            options.n_threads as i32
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(sizing.n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch.min(512))
            .with_n_seq_max(sizing.n_seq_max)
            .with_kv_unified(sizing.layout == KvLayout::Unified)
            .with_flash_attention_policy(if options.flash_attention {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO
            } else {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
            })
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = Self::new(&model.inner, backend, params, sizing.layout).map_err(|_| {
            LoadError::Context {
                n_ctx: sizing.n_ctx,
                n_seq_max: sizing.n_seq_max,
            }
        })?;
        Ok((ctx, n_batch))
    }

    /// A new context over `model` (created under the process-wide creation lock).
    fn new(
        model: &Arc<LlamaModel>,
        backend: &LlamaBackend,
        params: LlamaContextParams,
        layout: KvLayout,
    ) -> Result<Self, LlamaContextLoadError> {
        let model = Arc::clone(model);
        let ctx = {
            let _guard = CONTEXT_CREATION.lock();
            model.new_context(backend, params)?
        };
        // SAFETY: the context borrows the `LlamaModel` inside `model`'s allocation, which an `Arc`
        // never moves and which lives while `self._model` holds its count. `ctx` is dropped before
        // `_model` (field order, see the type's invariant), and the `'static` context never leaves
        // this module: `get` shortens its lifetime to the caller's borrow, and the `&mut`
        // operations below only call methods on it, so no one can move it out, swap another
        // context in, or keep a reference derived from it past `self`.
        let ctx = unsafe { std::mem::transmute::<LlamaContext<'_>, LlamaContext<'static>>(ctx) };
        Ok(Self {
            ctx,
            _model: model,
            layout,
            decoder: None,
            decoder_on: false,
        })
    }

    /// The context, for its `&self` methods (logits, samplers), borrowed no longer than `self`.
    pub(crate) fn get(&self) -> &LlamaContext<'_> {
        &self.ctx
    }

    /// `llama_decode` of `batch`, on the decoding thread when it is in use.
    pub(crate) fn decode(
        &mut self,
        batch: &mut LlamaBatch<'_>,
    ) -> Result<(), llama_cpp_2::DecodeError> {
        match self.decoder.as_ref().filter(|_| self.decoder_on) {
            Some(thread) => thread.decode(&mut self.ctx, batch),
            None => self.ctx.decode(batch),
        }
    }

    /// Whether `llama_decode` runs on one thread of the context's own (see [`DecodeThread`]),
    /// started the first time `on` is true; otherwise on the caller's thread. On while many
    /// threads take turns at the context ([`super::SharedLlama`] with several solves); off for
    /// one caller, which saves the two thread wake-ups a call on the decoding thread costs.
    /// Should the thread not start (the system is out of threads), decoding stays on the
    /// callers' threads: slower, never wrong.
    pub(crate) fn decode_on_one_thread(&mut self, on: bool) {
        if on && self.decoder.is_none() {
            self.decoder = DecodeThread::start();
        }
        self.decoder_on = on;
    }

    /// Removes positions `p0..p1` (all when `None`) of sequence `seq` (every sequence when `None`).
    pub(crate) fn clear_seq(&mut self, seq: Option<u32>, p0: Option<u32>, p1: Option<u32>) {
        // Fails only for values above i32::MAX, which sequence ids and positions never reach.
        self.ctx.clear_kv_cache_seq(seq, p0, p1).ok();
    }

    /// Makes the empty sequence `dst` hold `src`'s positions `0..len`. Returns whether a stream
    /// was copied (`streams`), rather than cells shared (`unified`).
    ///
    /// This is the only place that copies a sequence. In `unified` the copy tags `src`'s cells
    /// with `dst` and moves no data. In `streams` llama.cpp can copy only a *whole* stream (a
    /// partial range aborts the process): the whole of `src` is copied (applied at the next
    /// `llama_decode`, in the order the copies were asked for), then the positions from `len` on
    /// are removed from `dst`. No range ever reaches llama.cpp's copy in `streams`.
    pub(crate) fn fork(&mut self, src: i32, dst: i32, len: u32) -> bool {
        // As in `clear_seq`: only out-of-range values fail.
        match self.layout {
            KvLayout::Streams => {
                self.ctx.copy_kv_cache_seq(src, dst, None, None).ok();
                self.ctx
                    .clear_kv_cache_seq(Some(dst as u32), Some(len), None)
                    .ok();
                true
            }
            _ => {
                self.ctx
                    .copy_kv_cache_seq(src, dst, Some(0), Some(len))
                    .ok();
                false
            }
        }
    }

    /// Empties the whole KV cache.
    pub(crate) fn clear(&mut self) {
        self.ctx.clear_kv_cache();
    }
}

/// The one thread that runs `llama_decode` for a context shared by many threads.
///
/// With OpenMP (how ponder builds llama.cpp for the CPU) each thread that starts a parallel region
/// gets a team of worker threads of its own, and a team keeps spinning for a while after its
/// region ends, so that the next one starts at once. When the solves' threads take turns at
/// decoding, the idle teams of the last few spin on the cores the current one needs: on 2 cores
/// `eval --workers 4` spent about 7 ms more per forward pass than the batch-size curve allows.
/// One decoding thread keeps one team, as `llama-server`'s one loop does. A call costs two thread
/// wake-ups (on 2 cores MCTS alone, about 11 ms a pass, ran up to 8% slower through it, hence
/// only while several solves share the context). No other work runs on the thread, and a caller
/// waiting for it runs nothing else either (unlike a work-stealing pool, whose waiting caller
/// could pick up another solve's call and try to lock the context it already holds).
struct DecodeThread {
    calls: Option<mpsc::Sender<DecodeCall>>,
    /// The answers, one per call, in order (calls come one at a time: `&mut` context).
    answers: mpsc::Receiver<Result<(), llama_cpp_2::DecodeError>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One `llama_decode` for the decoding thread: the context and batch of the caller, who blocks
/// until the answer comes back.
struct DecodeCall {
    ctx: *mut LlamaContext<'static>,
    batch: *mut LlamaBatch<'static>,
}

// SAFETY: the pointers come from `&mut` borrows held by the caller of `DecodeThread::decode`,
// which does not return (so the borrows do not end) until the decoding thread has answered or
// is gone; `LlamaContext` and `LlamaBatch` are themselves `Send`.
unsafe impl Send for DecodeCall {}

impl DecodeThread {
    /// Starts the thread; `None` when the system cannot start one.
    fn start() -> Option<Self> {
        let (calls, inbox) = mpsc::channel::<DecodeCall>();
        let (answer, answers) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ponder-decode".into())
            .spawn(move || {
                for call in inbox {
                    // SAFETY: see `DecodeCall`: the caller holds both borrows until it has the
                    // answer, and nothing else uses them meanwhile.
                    let result = unsafe { (*call.ctx).decode(&mut *call.batch) };
                    if answer.send(result).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Self {
            calls: Some(calls),
            answers,
            thread: Some(thread),
        })
    }

    /// `ctx.decode(batch)` on the decoding thread; returns when it is done.
    fn decode(
        &self,
        ctx: &mut LlamaContext<'static>,
        batch: &mut LlamaBatch<'_>,
    ) -> Result<(), llama_cpp_2::DecodeError> {
        let call = DecodeCall {
            ctx,
            batch: (batch as *mut LlamaBatch<'_>).cast(),
        };
        if self
            .calls
            .as_ref()
            .is_none_or(|calls| calls.send(call).is_err())
        {
            // The thread is gone (it only ends by panicking): nothing was decoded.
            panic!("ponder's decoding thread has stopped");
        }
        // `recv` fails only once the thread is gone, i.e. after it is done with the call.
        self.answers
            .recv()
            .unwrap_or_else(|_| panic!("ponder's decoding thread stopped in llama_decode"))
    }
}

impl Drop for DecodeThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.calls.take();
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}
