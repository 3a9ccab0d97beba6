//! The model file and the devices: llama.cpp's process-wide backend, the devices it can run
//! layers on, and a loaded GGUF [`Model`] (its file checked first, so that a wrong path says so).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use serde::Serialize;

use super::{ContextOptions, LlamaLm, ModelOptions};
use crate::error::{Error, IoError, LoadError};

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
    pub(super) inner: Arc<LlamaModel>,
    pub(super) path: PathBuf,
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
    /// [`Error::Config`] for invalid options, [`LoadError::Context`] if llama.cpp cannot
    /// allocate the context.
    pub fn session(&self, options: &ContextOptions) -> Result<LlamaLm, Error> {
        LlamaLm::new(self.clone(), options)
    }
}

pub(super) fn check_gguf(path: &Path) -> Result<(), LoadError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::ModelNotFound {
                path: path.to_path_buf(),
            })
        }
        Err(source) => return Err(LoadError::Io(IoError::new("read model file", path, source))),
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
        Err(source) => Err(LoadError::Io(IoError::new("read model file", path, source))),
    }
}
