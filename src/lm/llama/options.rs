//! The options of the llama.cpp backend: the model file ([`ModelOptions`]) and the context
//! ([`ContextOptions`]: KV layout, sizes, threads, caps per solve), resolved into a [`Sizing`] and
//! checked before anything is loaded.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

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

/// How to size the inference context of an [`LlamaLm`](super::LlamaLm).
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
