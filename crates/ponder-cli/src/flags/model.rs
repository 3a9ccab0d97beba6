//! The model and the backend it runs on: `--backend`, the llama.cpp flags and the remote ones.

use std::path::PathBuf;

use clap::Args;
use ponder::backend::{Backend, BackendConfig, LlamaConfig, ModelId};
use ponder::lm::{ContextOptions, KvLayout, ModelOptions, RemoteOptions, DEFAULT_MODEL_PATH};
use ponder::{ConfigError, Engine, StrategyConfig};

use super::choice::{choice, BackendKind};

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Where the model runs.
    #[arg(long, default_value = "llama", value_parser = choice::<BackendKind>("backend"))]
    pub backend: BackendKind,
    /// GGUF model file (backend llama).
    #[arg(long, env = "PONDER_MODEL", default_value = DEFAULT_MODEL_PATH)]
    pub model: PathBuf,
    /// Layers to offload to the GPU (backend llama; needs a build with --features cuda, vulkan
    /// or metal, and a GPU: see `ponder devices`). Default: all in a GPU build, 0 otherwise.
    #[arg(long, visible_alias = "gpu-layers", default_value_t = ModelOptions::default().n_gpu_layers)]
    pub n_gpu_layers: u32,
    #[arg(long = "ctx", help = ctx_help())]
    pub n_ctx: Option<u32>,
    /// CPU threads (backend llama; 0 = all cores: when another job shares the CPU, 1 is often
    /// several times faster).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// Most branches decoded at once; more are parked and re-attached (backend llama; 0 = the
    /// layout's default: 16 in streams, 64 in unified).
    #[arg(long, default_value_t = 0)]
    pub n_seq_max: u32,
    /// Where the KV cache keeps each branch (backend llama): streams (a stream of ctx /
    /// n-seq-max cells per branch, attention over its own cells only; forks copy a stream),
    /// unified (one pool shared by all branches; forks free, every branch attends over every
    /// live cell) or auto (unified for mcts and beam, one solve or many at once; otherwise
    /// streams, unless --ctx alone asks for a shared pool or leaves a stream under 512 cells).
    #[arg(long, default_value = "auto", value_parser = parse_kv_layout)]
    pub kv_layout: KvLayout,
    /// Run solves one at a time, each from a fresh cache, so that every result depends only on
    /// its problem, strategy and seeds (backend llama; without it, solves in flight together
    /// share forward passes and llama.cpp's numbers shift slightly with what shares a batch).
    #[arg(long)]
    pub deterministic: bool,
    /// Most live branches one solve may have at once when solves share the context (backend
    /// llama; 0 = up to --n-seq-max): leaves sequences for the other solves of a server or of
    /// --workers.
    #[arg(long, default_value_t = 0)]
    pub max_seqs_per_solve: u32,
    /// KV cells one solve's live branches may hold beyond their shared prompt; over it the solve
    /// adds no new branch while one runs (backend llama; 0 = no cap).
    #[arg(long, default_value_t = 0)]
    pub max_cells_per_solve: u32,
    /// Base URL of a server (backend remote), e.g. http://127.0.0.1:8080; give it more than once
    /// to spread requests over several servers.
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// The `model` field sent to the servers (backend remote; default the first they list).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Most requests in flight at once over all servers and all solves (backend remote).
    #[arg(long, default_value_t = RemoteOptions::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Time limit of one request in milliseconds (backend remote).
    #[arg(long, default_value_t = RemoteOptions::default().timeout_ms)]
    pub timeout_ms: u64,
    /// Attempts per request before giving up (backend remote).
    #[arg(long, default_value_t = RemoteOptions::default().attempts)]
    pub attempts: u32,
    /// The served model's tokenizer.json (backend remote): tokenise on the client instead of one
    /// /tokenize request per call; checked against the server at start
    /// (scripts/export-tokenizer.py writes one from a GGUF file).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    /// The backend the flags describe.
    pub fn config(&self) -> BackendConfig {
        match self.backend {
            BackendKind::Llama => BackendConfig::Llama(LlamaConfig {
                model: self.model.clone(),
                n_gpu_layers: self.n_gpu_layers,
                kv_layout: self.kv_layout,
                n_ctx: self.n_ctx.unwrap_or(0),
                n_threads: self.threads,
                n_seq_max: self.n_seq_max,
                deterministic: self.deterministic,
                max_seqs_per_solve: self.max_seqs_per_solve,
                max_cells_per_solve: self.max_cells_per_solve,
            }),
            BackendKind::Remote => BackendConfig::Remote {
                remote: RemoteOptions {
                    urls: self.urls.clone(),
                    model: self.served_model.clone(),
                    max_in_flight: self.max_in_flight,
                    timeout_ms: self.timeout_ms,
                    attempts: self.attempts,
                    n_ctx: self.n_ctx,
                    tokenizer: self.tokenizer.clone(),
                    ..RemoteOptions::default()
                },
            },
        }
    }

    /// `base` (a settings file's backend) with each backend flag that `given` says was given
    /// on the command line set over it, through [`BACKEND_FLAGS`]. `--backend`, when given,
    /// picks the backend; otherwise `base`'s kind stands and the flags of that kind apply.
    ///
    /// # Errors
    /// A [`ConfigError`] from reading the result back (a flag value the backend refuses).
    pub fn over(
        &self,
        base: &BackendConfig,
        given: impl Fn(&str) -> bool,
    ) -> Result<BackendConfig, ConfigError> {
        let mut flags = self.clone();
        if !given("backend") {
            flags.backend = kind_of(base);
        }
        if flags.backend != kind_of(base) {
            return Ok(flags.config());
        }
        let to_json = |c: &BackendConfig| serde_json::to_value(c).expect("plain data");
        let (mut out, from) = (to_json(base), to_json(&flags.config()));
        for (id, key) in BACKEND_FLAGS {
            let remote_key = key.strip_prefix("remote.");
            if !given(id) || remote_key.is_some() != (flags.backend == BackendKind::Remote) {
                continue;
            }
            let pointer = format!("/{}", key.replace('.', "/"));
            if let (Some(to), Some(v)) = (out.pointer_mut(&pointer), from.pointer(&pointer)) {
                *to = v.clone();
            }
        }
        BackendConfig::from_json(out)
    }

    /// These flags with `--kv-layout auto` resolved for the work at hand when no size was
    /// given: `unified` for a tree search (MCTS, beam), alone or several at once, the library's
    /// `auto` (`streams`) for everything else. Measured (`make bench-layouts`, and `eval
    /// --workers 4` over 16 problems): in `streams` a tree search forks by copying whole streams
    /// (5 GB over six MCTS solves of SmolLM2 one at a time, 30 GB over 16 with 4 workers) and
    /// parks more (16 sequences instead of 64): as fast as `unified` alone, 3–15% slower (MCTS)
    /// and 30% slower (beam) with 4 workers; sampling strategies, alone or many at once, are as
    /// fast or faster in `streams`.
    pub fn for_workload(&self, strategy: &StrategyConfig) -> ModelArgs {
        let mut a = self.clone();
        if a.backend == BackendKind::Llama
            && a.kv_layout == KvLayout::Auto
            && a.n_ctx.is_none()
            && a.n_seq_max == 0
            && matches!(strategy.name(), "mcts" | "beam")
        {
            a.kv_layout = KvLayout::Unified;
        }
        a
    }

    /// Checks, before anything slow, that the flags given belong to the backend chosen and that
    /// the context settings are valid.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self.backend {
            BackendKind::Llama => {
                if !self.urls.is_empty() || self.served_model.is_some() || self.tokenizer.is_some()
                {
                    return Err(ConfigError::new(
                        "url",
                        "--url, --served-model and --tokenizer apply to --backend remote only",
                    ));
                }
                self.config().validate()
            }
            BackendKind::Remote => {
                if self.n_gpu_layers != ModelOptions::default().n_gpu_layers
                    || self.threads != 0
                    || self.n_seq_max != 0
                    || self.kv_layout != KvLayout::Auto
                    || self.deterministic
                    || self.max_seqs_per_solve != 0
                    || self.max_cells_per_solve != 0
                {
                    return Err(ConfigError::new(
                        "backend",
                        "--n-gpu-layers, --threads, --n-seq-max, --kv-layout, --deterministic, --max-seqs-per-solve and --max-cells-per-solve apply to --backend llama only; set them on the servers",
                    ));
                }
                Ok(())
            }
        }
    }

    /// Checks the flags ([`Self::check`]), then opens the backend: loads the model or connects
    /// to the servers.
    pub fn open(&self) -> ponder::Result<Backend> {
        self.check()?;
        open(&self.config())
    }

    /// One engine on the opened backend.
    pub fn engine(&self) -> ponder::Result<Engine> {
        Ok(self.open()?.into_engine())
    }

    /// The engine for `synth`'s workers (one engine, shared by all of them: one llama.cpp
    /// context, whose decode loop serves every worker's solve in the same forward passes, or one
    /// connection with one cap on requests in flight), and the model's identity for provenance.
    pub fn engine_and_id(&self) -> ponder::Result<(Engine, ModelId)> {
        let backend = self.open()?;
        let id = backend
            .model()
            .id()
            .map_err(|e| ponder::Error::io("read", &self.model, e))?;
        Ok((backend.into_engine(), id))
    }
}

/// Each backend flag (clap's id) and the [`BackendConfig`] key it sets (the remote backend's
/// under `remote.`): how the flags map onto the one configuration the C ABI and serve's
/// settings file also read.
pub const BACKEND_FLAGS: &[(&str, &str)] = &[
    ("model", "model"),
    ("n_gpu_layers", "n_gpu_layers"),
    ("kv_layout", "kv_layout"),
    ("n_ctx", "n_ctx"),
    ("threads", "n_threads"),
    ("n_seq_max", "n_seq_max"),
    ("deterministic", "deterministic"),
    ("max_seqs_per_solve", "max_seqs_per_solve"),
    ("max_cells_per_solve", "max_cells_per_solve"),
    ("urls", "remote.urls"),
    ("served_model", "remote.model"),
    ("max_in_flight", "remote.max_in_flight"),
    ("timeout_ms", "remote.timeout_ms"),
    ("attempts", "remote.attempts"),
    ("n_ctx", "remote.n_ctx"),
    ("tokenizer", "remote.tokenizer"),
];

fn kind_of(config: &BackendConfig) -> BackendKind {
    match config {
        BackendConfig::Llama(_) => BackendKind::Llama,
        BackendConfig::Remote { .. } => BackendKind::Remote,
    }
}

/// Warns when GPU layers are asked of a build or machine without a GPU, then opens the
/// backend.
pub fn open(config: &BackendConfig) -> ponder::Result<Backend> {
    if let BackendConfig::Llama(c) = config {
        if c.n_gpu_layers > 0 && !ponder::devices()?.iter().any(|d| d.is_gpu()) {
            eprintln!(
                "warning: --n-gpu-layers {} has no effect: {}; the model runs on the CPU \
                 (`ponder devices` lists what llama.cpp found)",
                c.n_gpu_layers,
                no_gpu_reason()
            );
        }
    }
    config.open()
}

/// Why [`ponder::devices`] lists no GPU.
pub fn no_gpu_reason() -> &'static str {
    if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) {
        "this GPU build found no GPU (none on this machine, or no driver)"
    } else {
        "this build has no GPU backend (build with --features cuda, vulkan or metal)"
    }
}

/// `--kv-layout`'s parser.
fn parse_kv_layout(s: &str) -> Result<KvLayout, String> {
    s.parse().map_err(|e: ConfigError| e.reason)
}

/// `--ctx`'s help, with the defaults of backend llama (backend remote has none of its own).
fn ctx_help() -> String {
    format!(
        "Context size in tokens (backend llama: KV cells in all, in streams split evenly between \
         the --n-seq-max branches; backend remote: the server's context per request) [default on \
         backend llama: {} per branch in streams, {} in unified; on backend remote: what the \
         server reports]",
        ContextOptions::DEFAULT_STREAM_CELLS,
        ContextOptions::DEFAULT_UNIFIED_N_CTX
    )
}
