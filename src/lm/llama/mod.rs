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
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

mod context;
mod reference;
mod sched;
mod shared;
pub use reference::ReferenceDecode;
pub(crate) use sched::Owner;
pub use shared::{ContextLoad, SharedLlama, SolveLm};

use super::nodes::NodeTable;
use super::sampler::{self, Rng, Scratch};
use super::{
    FinishReason, GenRequest, Generation, Lm, Message, Node, TokenId, TokenLogprob, Usage,
    MAX_TOP_LOGPROBS,
};
use crate::error::{ConfigError, DecodeError, LoadError};
use context::ModelContext;
use sched::{Need, Output, Work};

/// Where the default model lives, relative to the working directory (`make model` puts it there).
pub const DEFAULT_MODEL_PATH: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$PONDER_MODEL` if set, else [`DEFAULT_MODEL_PATH`].
pub fn default_model_path() -> PathBuf {
    std::env::var_os("PONDER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_PATH))
}

/// How to load a model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOptions {
    /// The GGUF file.
    pub path: PathBuf,
    /// Layers to offload to the GPU (0 = CPU only). Defaults to all layers when the crate is
    /// built with a GPU feature (`cuda`, `vulkan`, `metal`), else 0.
    pub n_gpu_layers: u32,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            path: default_model_path(),
            n_gpu_layers: if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) {
                999
            } else {
                0
            },
        }
    }
}

/// Where the KV cache keeps each branch's cells: see [`ContextOptions::kv_layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvLayout {
    /// One pool of `n_ctx` cells shared by every sequence: a fork shares its parent's cells and
    /// copies nothing, but each branch's attention visits every cell in use by every branch
    /// (masked, still read), so a step costs more the more branches are live.
    Unified,
    /// One stream of `n_ctx / n_seq_max` cells per sequence (llama.cpp's `kv_unified = false`,
    /// as `llama-server` runs): each branch attends only to its own cells; a fork copies the
    /// parent's whole stream and then removes the positions past the fork point.
    Streams,
    /// `streams`, unless the sizes given leave a stream fewer than
    /// [`ContextOptions::MIN_AUTO_STREAM_CELLS`] cells (an explicit `n_ctx` with the default
    /// `n_seq_max` counts as asking for a shared pool): then `unified`.
    #[default]
    Auto,
}

impl std::str::FromStr for KvLayout {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "unified" => Ok(Self::Unified),
            "streams" => Ok(Self::Streams),
            "auto" => Ok(Self::Auto),
            other => Err(ConfigError::new(
                "kv_layout",
                format!("{other:?} is not a KV layout; use \"unified\", \"streams\" or \"auto\""),
            )),
        }
    }
}

/// The sizes a context is created with once [`ContextOptions`]'s defaults and `auto` are
/// resolved: see [`ContextOptions::sizing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sizing {
    /// `unified` or `streams` (never `auto`).
    pub layout: KvLayout,
    /// KV cells in all (in `streams`, `cells_per_seq * n_seq_max`).
    pub n_ctx: u32,
    /// Sequences (live branches) at once.
    pub n_seq_max: u32,
    /// The most tokens one branch can hold: `n_ctx` in `unified`, its stream's cells in
    /// `streams`.
    pub cells_per_seq: u32,
}

/// How to size the inference context of an [`LlamaLm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextOptions {
    /// Where the KV cache keeps each branch's cells (default `auto`): `unified` (one shared
    /// pool; forks free, every branch attends over every live cell) or `streams` (a stream of
    /// `n_ctx / n_seq_max` cells per sequence; forks copy a stream). See the README's
    /// measurements for which wins where.
    pub kv_layout: KvLayout,
    /// KV cells in all; 0 = the layout's default: 4096 in `unified` (shared by all branches: a
    /// token of a prefix shared by many branches takes one cell), `n_seq_max` ×
    /// [`ContextOptions::DEFAULT_STREAM_CELLS`] in `streams`. In `streams` each sequence gets
    /// `n_ctx / n_seq_max` of them (llama.cpp rounds that up to a multiple of 256).
    pub n_ctx: u32,
    /// CPU threads; 0 = all available cores. At most [`ContextOptions::max_threads`] (four per
    /// core): more only makes llama.cpp's worker threads wait on each other (and at a few
    /// thousand, crash OpenMP). When another job shares the CPU, fewer threads than cores is
    /// often faster: llama.cpp's workers spin while they wait.
    pub n_threads: u32,
    /// Sequences (live branches) at once, 1..=256; 0 = the layout's default: 64 in `unified`,
    /// 16 in `streams`. More nodes than this are parked and re-attached.
    pub n_seq_max: u32,
    /// Tokens per `llama_decode` call; 0 = `min(n_ctx, 2048)`.
    pub n_batch: u32,
    /// How many nodes keep their next-token logits (each costs 4 bytes per vocabulary entry).
    pub logits_cache: u32,
    /// Let llama.cpp use flash attention where the backend supports it (its "auto"); false turns
    /// it off. On by default: on this project's 2-core CPU it is what keeps wide batches fast
    /// (16 branches: 178 vs 139 tokens/s in the reference loop). Either way llama.cpp's CPU
    /// results depend slightly on how work is batched; see the README on determinism.
    pub flash_attention: bool,
    /// Solves on an [`crate::Engine`] run one at a time, each from a fresh cache, so that a
    /// solve's result depends only on its problem, strategy and seeds (byte-for-byte resumes).
    /// Off by default: concurrent solves share forward passes, and llama.cpp's results depend
    /// slightly on what shares a batch (see the README on determinism).
    pub deterministic: bool,
    /// Most live branches one solve may have at once when solves share the context (0 = up to
    /// `n_seq_max`): a wide search of one solve then leaves sequences for the others.
    pub max_seqs_per_solve: u32,
    /// KV cells one solve's live branches may hold beyond the prompt they share (0 = no cap): a
    /// solve over it adds no new branch while one of its branches is running (it is never
    /// stopped: a solve alone still gets the whole context).
    pub max_cells_per_solve: u32,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            kv_layout: KvLayout::Auto,
            n_ctx: 0,
            n_threads: 0,
            n_seq_max: 0,
            n_batch: 0,
            logits_cache: 64,
            flash_attention: true,
            deterministic: false,
            max_seqs_per_solve: 0,
            max_cells_per_solve: 0,
        }
    }
}

impl ContextOptions {
    /// `n_ctx` when left at 0 in `unified`.
    pub const DEFAULT_UNIFIED_N_CTX: u32 = 4096;
    /// `n_seq_max` when left at 0 in `unified`.
    pub const DEFAULT_UNIFIED_N_SEQ_MAX: u32 = 64;
    /// `n_seq_max` when left at 0 in `streams`.
    pub const DEFAULT_STREAM_N_SEQ_MAX: u32 = 16;
    /// Cells per stream when `n_ctx` is left at 0 in `streams`: room for a long prompt and a
    /// long answer.
    pub const DEFAULT_STREAM_CELLS: u32 = 2048;
    /// The fewest cells per stream `auto` picks `streams` for.
    pub const MIN_AUTO_STREAM_CELLS: u32 = 512;
    /// llama.cpp gives every stream a multiple of this many cells.
    pub const STREAM_CELL_ALIGN: u32 = 256;

    /// The layout and sizes this context is made with: `auto` resolved, zeros replaced by the
    /// layout's defaults, and in `streams` the cells per stream rounded up as llama.cpp does.
    /// Meaningful once [`ContextOptions::validate`] passed.
    pub fn sizing(&self) -> Sizing {
        let layout = match self.kv_layout {
            KvLayout::Auto => match (self.n_ctx, self.n_seq_max) {
                (0, _) => KvLayout::Streams,
                (_, 0) => KvLayout::Unified,
                (n_ctx, n_seq) if n_ctx / n_seq < Self::MIN_AUTO_STREAM_CELLS => KvLayout::Unified,
                _ => KvLayout::Streams,
            },
            layout => layout,
        };
        match layout {
            KvLayout::Streams => {
                let n_seq_max = match self.n_seq_max {
                    0 => Self::DEFAULT_STREAM_N_SEQ_MAX,
                    n => n,
                };
                let asked = match self.n_ctx {
                    0 => Self::DEFAULT_STREAM_CELLS,
                    n => n / n_seq_max,
                };
                let align = Self::STREAM_CELL_ALIGN;
                let cells_per_seq = asked.div_ceil(align).max(1) * align;
                Sizing {
                    layout,
                    n_ctx: cells_per_seq.saturating_mul(n_seq_max),
                    n_seq_max,
                    cells_per_seq,
                }
            }
            _ => {
                let n_ctx = match self.n_ctx {
                    0 => Self::DEFAULT_UNIFIED_N_CTX,
                    n => n,
                };
                Sizing {
                    layout: KvLayout::Unified,
                    n_ctx,
                    n_seq_max: match self.n_seq_max {
                        0 => Self::DEFAULT_UNIFIED_N_SEQ_MAX,
                        n => n,
                    },
                    cells_per_seq: n_ctx,
                }
            }
        }
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.n_ctx != 0 && self.n_ctx < 8 {
            return Err(ConfigError::new(
                "n_ctx",
                format!(
                    "{} is too small; use at least 8 tokens (0 for the layout's default)",
                    self.n_ctx
                ),
            ));
        }
        ConfigError::check_range("n_ctx", self.n_ctx, 0..=Self::MAX_N_CTX, "tokens")?;
        let max_threads = Self::max_threads();
        if self.n_threads > max_threads {
            return Err(ConfigError::new(
                "n_threads",
                format!(
                    "{} threads is more than {max_threads} (4 per core of this machine's {} cores); use 0 for one per core, or fewer",
                    self.n_threads,
                    max_threads / 4
                ),
            ));
        }
        if self.n_seq_max > 256 {
            return Err(ConfigError::new(
                "n_seq_max",
                format!(
                    "{} is outside 1..=256 (llama.cpp's sequence limit; 0 for the layout's default)",
                    self.n_seq_max
                ),
            ));
        }
        let sizing = self.sizing();
        if sizing.layout == KvLayout::Streams {
            if self.n_ctx != 0 && self.n_ctx / sizing.n_seq_max == 0 {
                return Err(ConfigError::new(
                    "n_ctx",
                    format!(
                        "{} cells cannot give each of {} sequences a stream of its own; use at least {} (n_seq_max x {}), fewer sequences, or the unified layout",
                        self.n_ctx,
                        sizing.n_seq_max,
                        sizing.n_seq_max * Self::STREAM_CELL_ALIGN,
                        Self::STREAM_CELL_ALIGN
                    ),
                ));
            }
            if sizing.n_ctx > Self::MAX_N_CTX {
                return Err(ConfigError::new(
                    "n_ctx",
                    format!(
                        "{} sequences of {} cells each make {} cells, more than {}; use fewer sequences or a smaller n_ctx",
                        sizing.n_seq_max,
                        sizing.cells_per_seq,
                        sizing.n_ctx,
                        Self::MAX_N_CTX
                    ),
                ));
            }
        }
        // 0 = no cap.
        ConfigError::check_range(
            "max_seqs_per_solve",
            self.max_seqs_per_solve,
            0..=sizing.n_seq_max,
            "sequences",
        )?;
        ConfigError::check_range(
            "max_cells_per_solve",
            self.max_cells_per_solve,
            0..=sizing.n_ctx,
            "cells",
        )?;
        if self.logits_cache == 0 {
            return Err(ConfigError::new(
                "logits_cache",
                "0 would recompute every node's last token; use at least 1",
            ));
        }
        ConfigError::check_range("logits_cache", self.logits_cache, 1..=4096, "nodes")
    }

    /// The largest `n_ctx` accepted: 2^20 tokens (the model's own limit may be lower).
    pub const MAX_N_CTX: u32 = 1 << 20;

    /// The most threads accepted in `n_threads`: four per core of this machine.
    pub fn max_threads() -> u32 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        u32::try_from(cores.saturating_mul(4)).unwrap_or(u32::MAX)
    }
}

/// The process-wide llama.cpp backend, initialised on first use (llama.cpp allows one per
/// process).
///
/// # Errors
/// [`LoadError::Backend`] if llama.cpp's initialisation failed.
pub(crate) fn llama_backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("PONDER_LLAMA_LOG").is_none() {
                backend.void_logs();
            }
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| LoadError::Backend(e.clone()))
}

/// A device llama.cpp can run a model's layers on: see [`devices`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// llama.cpp's name for it, e.g. `CPU` or `CUDA0`.
    pub name: String,
    /// What it is, e.g. `NVIDIA H100 80GB HBM3`.
    pub description: String,
    /// The ggml backend that drives it, e.g. `CPU`, `CUDA`, `Vulkan`, `Metal`.
    pub backend: String,
    /// `cpu`, `gpu`, `igpu`, `accel` or `unknown`.
    pub kind: String,
    /// Memory in bytes, total and free now (as the backend reports it).
    pub memory_total: usize,
    /// Free memory in bytes.
    pub memory_free: usize,
}

impl Device {
    /// A device layers can be offloaded to: a GPU or integrated GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind.as_str(), "gpu" | "igpu")
    }
}

/// The devices this build of llama.cpp found on this machine. A build without a GPU feature
/// (`cuda`, `vulkan`, `metal`), or one whose GPU backend finds no device (no GPU, no driver),
/// lists only the CPU, and `n_gpu_layers` then has no effect: the model runs on the CPU.
///
/// # Errors
/// [`LoadError::Backend`] if llama.cpp's initialisation failed.
pub fn devices() -> Result<Vec<Device>, LoadError> {
    use llama_cpp_2::LlamaBackendDeviceType as T;
    llama_backend()?;
    Ok(llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| Device {
            name: d.name,
            description: d.description,
            backend: d.backend,
            kind: match d.device_type {
                T::Cpu => "cpu",
                T::Gpu => "gpu",
                T::IntegratedGpu => "igpu",
                T::Accelerator => "accel",
                T::Unknown => "unknown",
            }
            .to_string(),
            memory_total: d.memory_total,
            memory_free: d.memory_free,
        })
        .collect())
}

/// A loaded GGUF model. Cheap to clone; clones share the weights. Safe to share between threads.
#[derive(Clone)]
pub struct Model {
    inner: Arc<LlamaModel>,
    path: PathBuf,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model").field("path", &self.path).finish()
    }
}

impl Model {
    /// Loads a GGUF file.
    ///
    /// # Errors
    /// [`LoadError::ModelNotFound`], [`LoadError::NotGguf`], [`LoadError::Io`] when the file is
    /// missing, not GGUF, or unreadable; [`LoadError::Model`] when llama.cpp rejects it.
    pub fn load(options: &ModelOptions) -> Result<Self, LoadError> {
        let path = &options.path;
        check_gguf(path)?;
        let backend = llama_backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(options.n_gpu_layers);
        let inner = LlamaModel::load_from_file(backend, path, &params)
            .map_err(|_| LoadError::Model { path: path.clone() })?;
        Ok(Self {
            inner: Arc::new(inner),
            path: path.clone(),
        })
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.inner.n_vocab().max(0) as usize
    }

    /// The context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        self.inner.n_ctx_train()
    }

    /// Bytes one KV cell takes over all layers with llama.cpp's default f16 cache: the
    /// attention's key and value widths from the GGUF metadata (`n_embd / n_head` where absent).
    /// An estimate for models that keep some layers' cache elsewhere (sliding-window layers).
    pub fn kv_bytes_per_cell(&self) -> u64 {
        let m = &self.inner;
        let arch = m.meta_val_str("general.architecture").unwrap_or_default();
        let width = |key: &str| {
            m.meta_val_str(&format!("{arch}.attention.{key}"))
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| (m.n_embd().max(0) as u64) / u64::from(m.n_head().max(1)))
        };
        u64::from(m.n_layer())
            * u64::from(m.n_head_kv())
            * (width("key_length") + width("value_length"))
            * 2
    }

    /// A new inference context over this model, with an empty tree.
    ///
    /// # Errors
    /// [`LoadError::Config`] for invalid options, [`LoadError::Context`] if llama.cpp cannot
    /// allocate the context.
    pub fn session(&self, options: &ContextOptions) -> Result<LlamaLm, LoadError> {
        LlamaLm::new(self.clone(), options)
    }
}

fn check_gguf(path: &Path) -> Result<(), LoadError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::ModelNotFound {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(LoadError::NotGguf {
            path: path.to_path_buf(),
        });
    }
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if &magic == b"GGUF" => Ok(()),
        Ok(()) => Err(LoadError::NotGguf {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(LoadError::NotGguf {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(LoadError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// One node of the tree.
struct NodeData {
    /// The whole prefix. Stored whole so that finding the live sequence sharing the longest prefix
    /// is a plain comparison, whatever the tree's shape.
    tokens: Vec<LlamaToken>,
    /// `tokens[own_start..]` are this node's own tokens.
    own_start: usize,
    /// Whether the own tokens were sampled (else forced).
    sampled: bool,
    /// Leading tokens that have been run through the model for this prefix at some point; decoding
    /// below this mark again is a recomputation.
    computed: usize,
    /// The sequence holding this node's cache, if attached.
    seq: Option<i32>,
    /// `tokens[..kv_len]` are in `seq`'s cache.
    kv_len: usize,
    /// Logits for the token after the whole prefix.
    logits: Option<Arc<[f32]>>,
    last_used: u64,
    /// In use by the current operation: never parked.
    pinned: bool,
    parked: bool,
    /// The solve that made it (see [`SharedLlama`]); other solves cannot see it.
    owner: Owner,
}

/// Decode `tokens[kv_len..]` of `node` (already attached), returning its last logits and, with
/// `logprobs_from = Some(p)`, the log-probability of each token after position `p - 1` (and
/// the `top` most likely tokens there).
struct Pending {
    node: u32,
    logprobs_from: Option<usize>,
    top: usize,
}

/// One token of a batch, shared by every entry that has it pending after the same prefix.
struct BatchItem {
    pos: usize,
    token: LlamaToken,
    seqs: Vec<i32>,
    members: Vec<usize>,
    logits: bool,
}

/// A 128-bit hash of a token prefix (two independent 64-bit rolling hashes), so that equal
/// pending tokens of different entries can be found without comparing whole prefixes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PrefixHash(u64, u64);

impl PrefixHash {
    fn of(tokens: &[LlamaToken]) -> Self {
        tokens
            .iter()
            .fold(Self(0xcbf2_9ce4_8422_2325, 0), |h, &t| h.push(t))
    }

    fn push(self, token: LlamaToken) -> Self {
        let t = u64::from(token.0 as u32);
        Self(
            (self.0 ^ t).wrapping_mul(0x0000_0100_0000_01b3),
            self.1
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(t + 1)
                .rotate_left(17),
        )
    }
}

struct Decoded {
    last: Arc<[f32]>,
    logprobs: Vec<f32>,
    /// Per position of `logprobs`, the most likely tokens (when [`Pending::top`] asked).
    top: Vec<Vec<(TokenId, f32)>>,
}

/// A branch being sampled by [`Lm::generate`].
struct Branch {
    node: u32,
    rng: Rng,
    bytes: Vec<u8>,
    logprob: f64,
    count: u32,
    finish: Option<FinishReason>,
    confidence: Vec<f32>,
    certainty: Vec<f32>,
    entropy: Vec<f32>,
    /// `Some(k)`: record each token's log-probability and the k most likely tokens.
    top: Option<usize>,
    token_logprobs: Vec<TokenLogprob>,
}

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
    pub fn open(model: &ModelOptions, context: &ContextOptions) -> Result<Self, LoadError> {
        // Checked before the (slow) load, so that a bad setting fails at once.
        context.validate()?;
        Model::load(model)?.session(context)
    }

    fn new(model: Model, options: &ContextOptions) -> Result<Self, LoadError> {
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

    // ----- node table -------------------------------------------------------------------------

    fn index(&self, node: Node) -> Result<u32, DecodeError> {
        match self.nodes.get(node) {
            Ok(data) if data.owner == self.caller => Ok(node.index),
            _ => Err(DecodeError::UnknownNode { node: node.index }),
        }
    }

    fn data(&self, i: u32) -> &NodeData {
        self.nodes.at(i).expect("index checked by `index`")
    }

    fn data_mut(&mut self, i: u32) -> &mut NodeData {
        self.nodes.at_mut(i).expect("index checked by `index`")
    }

    fn insert(&mut self, data: NodeData) -> Node {
        self.nodes.insert(data)
    }

    fn handle(&self, i: u32) -> Node {
        self.nodes.handle(i)
    }

    fn child_of(&self, parent: u32, own: &[LlamaToken], sampled: bool) -> NodeData {
        let p = self.data(parent);
        let mut tokens = Vec::with_capacity(p.tokens.len() + own.len().max(16));
        tokens.extend_from_slice(&p.tokens);
        tokens.extend_from_slice(own);
        NodeData {
            own_start: p.tokens.len(),
            sampled,
            computed: p.computed,
            tokens,
            seq: None,
            kv_len: 0,
            logits: None,
            last_used: self.clock,
            pinned: false,
            parked: false,
            owner: p.owner,
        }
    }

    fn touch(&mut self, i: u32) {
        self.clock += 1;
        let clock = self.clock;
        self.data_mut(i).last_used = clock;
    }

    fn pin(&mut self, i: u32) {
        self.touch(i);
        self.data_mut(i).pinned = true;
    }

    // ----- sequences and parking -------------------------------------------------------------

    fn free_seq(&mut self, seq: i32) {
        self.ctx.clear_seq(Some(seq as u32), None, None);
        self.free_seqs.push(seq);
    }

    /// Parks the least recently used idle node holding a sequence. Returns false if none.
    fn park_lru(&mut self) -> bool {
        let victim = self
            .nodes
            .iter()
            .filter(|(_, n)| n.seq.is_some() && !n.pinned)
            .min_by_key(|(_, n)| n.last_used)
            .map(|(i, _)| i);
        let Some(i) = victim else { return false };
        self.park(i);
        true
    }

    /// Frees node `i`'s sequence and keeps its tokens.
    fn park(&mut self, i: u32) {
        let n = self.data_mut(i);
        let seq = n.seq.take().expect("attached");
        n.kv_len = 0;
        n.logits = None;
        n.parked = true;
        let owner = n.owner;
        self.count(owner, |u| u.parked += 1);
        self.free_seq(seq);
    }

    /// The lowest free sequence id, parking a node when none is free. Lowest first keeps the
    /// sequences decoded together next to each other, which `streams` needs to decode them in
    /// one pass (see [`LlamaLm::compact_streams`]).
    fn alloc_seq(&mut self) -> Result<i32, DecodeError> {
        loop {
            if let Some(at) = (0..self.free_seqs.len()).min_by_key(|&k| self.free_seqs[k]) {
                return Ok(self.free_seqs.swap_remove(at));
            }
            if !self.park_lru() {
                // Unreachable while operations pin at most n_seq_max nodes; kept as an error
                // rather than a panic.
                return Err(DecodeError::KvCacheFull { tokens: 0 });
            }
        }
    }

    /// Gives node `i` a sequence, sharing the longest prefix any live sequence has with it.
    fn attach(&mut self, i: u32) -> Result<(), DecodeError> {
        if self.data(i).seq.is_some() {
            return Ok(());
        }
        let tokens = &self.data(i).tokens;
        // (owner, its sequence, shared length)
        let mut best: Option<(u32, i32, usize)> = None;
        for (j, other) in self.nodes.iter() {
            let (Some(other_seq), true) = (other.seq, j != i) else {
                continue;
            };
            let shared = tokens
                .iter()
                .zip(&other.tokens[..other.kv_len])
                .take_while(|(a, b)| a == b)
                .count();
            if shared > best.map_or(0, |b| b.2) {
                best = Some((j, other_seq, shared));
            }
        }
        let (seq, shared) = match best {
            // No sequence free and the best source is idle: the new node takes over the
            // source's sequence (cut back to the shared prefix) instead of parking some node and
            // copying. Forking the only child of an idle parent under pressure costs nothing.
            // (Not when a sequence is free, in `streams` either, although a fork copies a whole
            // stream there: the source's cache would be lost, and decoding it again when the
            // search comes back to it costs far more than the copy.)
            Some((owner, src, shared)) if self.free_seqs.is_empty() && !self.data(owner).pinned => {
                self.truncate_kv(owner, shared);
                let o = self.data_mut(owner);
                o.seq = None;
                o.kv_len = 0;
                o.logits = None;
                o.parked = true;
                let owner = o.owner;
                self.count(owner, |u| u.parked += 1);
                (src, shared)
            }
            _ => {
                let seq = self.alloc_seq()?;
                if let Some((_, src, shared)) = best {
                    // `alloc_seq` may have parked the source; share only if it is still live.
                    if self
                        .nodes
                        .iter()
                        .any(|(_, n)| n.seq == Some(src) && n.kv_len >= shared)
                    {
                        let owner = self.data(i).owner;
                        self.fork_seq(owner, src, seq, shared);
                        (seq, shared)
                    } else {
                        (seq, 0)
                    }
                } else {
                    (seq, 0)
                }
            }
        };
        let n = self.data_mut(i);
        n.seq = Some(seq);
        n.kv_len = shared;
        n.computed = n.computed.max(shared);
        let reactivated = std::mem::take(&mut n.parked);
        let owner = n.owner;
        self.count(owner, |u| {
            u.reused_tokens += shared as u64;
            u.reactivated += u64::from(reactivated);
        });
        Ok(())
    }

    /// Makes the free sequence `dst` hold `src`'s first `len` positions, counting a stream copy
    /// against `owner`.
    fn fork_seq(&mut self, owner: Owner, src: i32, dst: i32, len: usize) {
        if self.ctx.fork(src, dst, len as u32) {
            let bytes = self.stream_bytes;
            self.count(owner, |u| {
                u.kv_copies += 1;
                u.kv_copy_bytes += bytes;
            });
        }
    }

    /// In `streams`, llama.cpp decodes in one pass only sequences with consecutive ids (it
    /// splits a batch at every gap, and each part is a forward pass of its own). Before a batch,
    /// this moves the entries' sequences into one run of consecutive ids: it picks the run that
    /// already holds most of them, moves whatever idle node holds an id inside it to a free id
    /// outside (or parks it when none is free), and moves the entries outside the run into the
    /// gaps. Each move is one stream copy. Lowest-first allocation makes this rare; a branch that
    /// finishes before its siblings costs two copies (it moves out, the last sibling moves in).
    fn compact_streams(&mut self, entries: &[Pending]) {
        let mut seqs: Vec<i32> = entries
            .iter()
            .map(|p| self.data(p.node).seq.expect("attached"))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let k = seqs.len() as i32;
        if k < 2 || seqs[seqs.len() - 1] - seqs[0] + 1 == k {
            return;
        }
        let n = self.sizing.n_seq_max as i32;
        let start = seqs
            .iter()
            .map(|&s| s.min(n - k))
            .max_by_key(|&a| {
                let covered = seqs.iter().filter(|&&s| s >= a && s < a + k).count();
                // Most covered; among equals the lowest run.
                (covered, -a)
            })
            .expect("k >= 2");
        let window = start..start + k;
        let mut movers: Vec<u32> = entries
            .iter()
            .map(|p| p.node)
            .filter(|&i| !window.contains(&self.data(i).seq.expect("attached")))
            .collect();
        for gap in window.clone() {
            if seqs.contains(&gap) {
                continue;
            }
            let Some(&mover) = movers.last() else { return };
            let holder = self
                .nodes
                .iter()
                .find(|(_, n)| n.seq == Some(gap))
                .map(|(j, _)| j);
            // Vacate the gap: its idle holder moves to a free id outside the run, or is parked.
            if let Some(h) = holder {
                let spare = self
                    .free_seqs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !window.contains(s))
                    .min_by_key(|(_, &s)| s)
                    .map(|(at, _)| at);
                if let Some(at) = spare {
                    let to = self.free_seqs.swap_remove(at);
                    let len = self.data(h).kv_len;
                    let owner = self.data(h).owner;
                    self.fork_seq(owner, gap, to, len);
                    self.data_mut(h).seq = Some(to);
                    self.free_seq(gap);
                } else if !self.data(h).pinned {
                    self.park(h);
                } else {
                    return;
                }
            }
            let at = self
                .free_seqs
                .iter()
                .position(|&s| s == gap)
                .expect("an id no node holds is free");
            self.free_seqs.swap_remove(at);
            movers.pop();
            let from = self.data(mover).seq.expect("attached");
            let len = self.data(mover).kv_len;
            let owner = self.data(mover).owner;
            self.fork_seq(owner, from, gap, len);
            self.data_mut(mover).seq = Some(gap);
            self.free_seq(from);
        }
    }

    /// Drops node `i`'s cached tokens from position `len` on (if it has more), so that decoding
    /// them again yields their logits.
    fn truncate_kv(&mut self, i: u32, len: usize) {
        let n = self.data(i);
        if n.kv_len > len {
            let seq = n.seq.expect("attached") as u32;
            self.ctx.clear_seq(Some(seq), Some(len as u32), None);
            self.data_mut(i).kv_len = len;
        }
    }

    fn store_logits(&mut self, i: u32, logits: Arc<[f32]>) {
        self.data_mut(i).logits = Some(logits);
        let holders = self
            .nodes
            .iter()
            .filter(|(_, n)| n.logits.is_some())
            .count();
        if holders > self.logits_cache {
            let victim = self
                .nodes
                .iter()
                .filter(|(j, n)| n.logits.is_some() && !n.pinned && *j != i)
                .min_by_key(|(_, n)| n.last_used)
                .map(|(j, _)| j);
            if let Some(j) = victim {
                self.data_mut(j).logits = None;
            }
        }
    }

    // ----- decoding ----------------------------------------------------------------------------

    /// Decodes the pending tokens of every entry in as few `llama_decode` calls as `n_batch`
    /// allows (one, usually). Entries must be attached, pinned and have at least one pending token.
    ///
    /// Pending tokens that several entries have at the same position after the same prefix go
    /// into the batch once, tagged with all their sequences, so a prefix shared by many new nodes
    /// is decoded once even when none of them was decoded before.
    ///
    /// Before every forward pass, also between the chunks of one long prefill, `checks` are
    /// asked: when one says stop, the batch stops with [`DecodeError::Cancelled`] (the tokens
    /// decoded so far stay in the cache).
    fn run_batch(
        &mut self,
        entries: &[Pending],
        checks: &[super::Interrupt],
    ) -> Result<Vec<Decoded>, DecodeError> {
        let streams = self.streams();
        if streams {
            self.compact_streams(entries);
        }
        let mut items: Vec<BatchItem> = Vec::new();
        let mut by_prefix: HashMap<(usize, usize, PrefixHash), usize> = HashMap::new();
        for (e, p) in entries.iter().enumerate() {
            let n = self.data(p.node);
            debug_assert!(n.pinned && n.seq.is_some() && n.kv_len < n.tokens.len());
            let seq = n.seq.expect("attached");
            let mut hash = PrefixHash::of(&n.tokens[..n.kv_len]);
            // In `streams` a token belongs to one sequence's stream: no sharing between entries
            // (llama.cpp refuses a token tagged with sequences of two streams).
            let salt = if streams { e + 1 } else { 0 };
            for pos in n.kv_len..n.tokens.len() {
                hash = hash.push(n.tokens[pos]);
                let wants = pos + 1 == n.tokens.len() || p.logprobs_from.is_some_and(|f| pos >= f);
                match by_prefix.entry((pos, salt, hash)) {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        let item = &mut items[*o.get()];
                        item.seqs.push(seq);
                        item.members.push(e);
                        item.logits |= wants;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(items.len());
                        items.push(BatchItem {
                            pos,
                            token: n.tokens[pos],
                            seqs: vec![seq],
                            members: vec![e],
                            logits: wants,
                        });
                    }
                }
            }
        }
        // Each sequence must see its positions in increasing order. In `streams`, also sequence
        // by sequence: llama.cpp puts a sequence into a pass only after the one whose id is one
        // lower, in batch order, so items sorted by position alone (branches of different
        // lengths) would split one step into many passes.
        if streams {
            items.sort_by_key(|item| (item.seqs[0], item.pos));
        } else {
            items.sort_by_key(|item| item.pos);
        }

        let mut last: Vec<Option<Arc<[f32]>>> = vec![None; entries.len()];
        let mut logprobs: Vec<Vec<f32>> = vec![Vec::new(); entries.len()];
        let mut tops: Vec<Vec<Vec<(TokenId, f32)>>> = vec![Vec::new(); entries.len()];
        for chunk in items.chunks(self.n_batch) {
            // Before every forward pass, also between the chunks of one long prefill and between
            // the waves of a wide call: a cancelled solve stops within one `llama_decode`.
            if checks.iter().any(|f| f()) {
                return Err(DecodeError::Cancelled);
            }
            loop {
                self.batch.clear();
                for item in chunk {
                    self.batch
                        .add(item.token, item.pos as i32, &item.seqs, item.logits)
                        .expect("chunks are no larger than the batch");
                }
                match self.ctx.decode(&mut self.batch) {
                    Ok(()) => break,
                    Err(llama_cpp_2::DecodeError::NoKvCacheSlot) => {
                        // In `streams` parking frees no cell of another stream.
                        if streams || !self.park_lru() {
                            return Err(DecodeError::KvCacheFull {
                                tokens: chunk.len(),
                            });
                        }
                    }
                    Err(llama_cpp_2::DecodeError::NTokensZero) => {
                        return Err(DecodeError::Llama { code: -1 })
                    }
                    Err(llama_cpp_2::DecodeError::Unknown(code)) => {
                        return Err(DecodeError::Llama { code })
                    }
                }
            }
            self.usage.forward_passes += 1;
            // Every solve with a token in the pass counts the pass once.
            let mut owners: Vec<Owner> = chunk
                .iter()
                .flat_map(|item| item.members.iter())
                .map(|&e| self.data(entries[e].node).owner)
                .filter(|&o| o != 0)
                .collect();
            owners.sort_unstable();
            owners.dedup();
            for o in owners {
                self.by_owner.entry(o).or_default().forward_passes += 1;
            }
            for (b, item) in chunk.iter().enumerate() {
                let pos = item.pos;
                // Count the token once, as its first entry sees it.
                let first = self.data(entries[item.members[0]].node);
                let owner = first.owner;
                if pos < first.computed {
                    self.count(owner, |u| u.recomputed_tokens += 1);
                } else if first.sampled && pos >= first.own_start {
                    self.count(owner, |u| u.decoded_tokens += 1);
                } else {
                    self.count(owner, |u| u.prefill_tokens += 1);
                }
                let logits: Option<Arc<[f32]>> = item
                    .logits
                    .then(|| Arc::from(self.ctx.get().get_logits_ith(b as i32)));
                for &e in &item.members {
                    let p = &entries[e];
                    let n = self.nodes.at_mut(p.node).expect("entry nodes are live");
                    n.kv_len = pos + 1;
                    n.computed = n.computed.max(pos + 1);
                    let Some(logits) = &logits else { continue };
                    if pos + 1 == n.tokens.len() {
                        last[e] = Some(logits.clone());
                    } else if p.logprobs_from.is_some_and(|f| pos >= f) {
                        let lse = sampler::log_sum_exp(logits);
                        let next = n.tokens[pos + 1].0 as usize;
                        logprobs[e].push(sampler::logprob(logits, lse, next) as f32);
                        if p.top > 0 {
                            tops[e].push(sampler::top_logprobs(
                                logits,
                                lse,
                                p.top,
                                &mut self.scratch,
                            ));
                        }
                    }
                }
            }
        }
        Ok(last
            .into_iter()
            .zip(logprobs)
            .zip(tops)
            .map(|((last, logprobs), top)| Decoded {
                last: last.expect("every entry's last token is decoded"),
                logprobs,
                top,
            })
            .collect())
    }

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
        Ok(self.insert(NodeData {
            own_start: 0,
            sampled: false,
            computed: 0,
            tokens,
            seq: None,
            kv_len: 0,
            logits: None,
            last_used: self.clock,
            pinned: false,
            parked: false,
            owner: self.caller,
        }))
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

    /// Samples one token for `branch` from `logits` (unless the context is full), appends it, and
    /// decides whether the branch is finished.
    fn advance(
        &mut self,
        branch: &mut Branch,
        request: &GenRequest,
        logits: &[f32],
        scratch: &mut Scratch,
    ) {
        if self.data(branch.node).tokens.len() >= self.sizing.cells_per_seq as usize {
            branch.finish = Some(FinishReason::ContextFull);
            return;
        }
        let (token, lp, lse, max) =
            sampler::sample_with_lse(logits, &request.sampling, &mut branch.rng, scratch);
        let (certainty, entropy) = sampler::certainty_and_entropy(logits, max, lse);
        branch.certainty.push(certainty);
        branch.entropy.push(entropy);
        if let Some(k) = branch.top {
            branch.token_logprobs.push(TokenLogprob {
                token: token as TokenId,
                logprob: lp as f32,
                top: sampler::top_logprobs(logits, lse, k, scratch),
            });
        }
        // The top-k of the same logits: one more pass over the vocabulary, no model call.
        branch.confidence.push(sampler::top_k_confidence(
            logits,
            lse,
            super::CONFIDENCE_TOP_K,
            scratch,
        ));
        let token = LlamaToken(token as i32);
        self.data_mut(branch.node).tokens.push(token);
        let owner = self.data(branch.node).owner;
        self.count(owner, |u| u.generated_tokens += 1);
        branch.count += 1;
        branch.logprob += lp;
        if self.model.inner.vocab().is_eog(token) && !request.ignore_eos {
            branch.finish = Some(FinishReason::Eos);
            return;
        }
        let piece = self.piece(token);
        branch.bytes.extend_from_slice(&piece);
        for (k, stop) in request.stop.iter().enumerate() {
            let from = branch
                .bytes
                .len()
                .saturating_sub(piece.len() + stop.len().saturating_sub(1));
            if contains(&branch.bytes[from..], stop.as_bytes()) {
                branch.finish = Some(FinishReason::Stop(k));
                return;
            }
        }
        if request
            .confidence_stop
            .is_some_and(|c| c.triggered(&branch.confidence))
        {
            branch.finish = Some(FinishReason::LowConfidence);
            return;
        }
        if branch.count >= request.max_tokens {
            branch.finish = Some(FinishReason::MaxTokens);
        }
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
