//! Where the model runs, as one configuration: [`BackendConfig`] (`llama`: a GGUF file in this
//! process; `remote`: OpenAI-compatible servers), opened into a [`Backend`] that gives the
//! [`Engine`] (or the bare [`Lm`]) and where the model came from ([`ModelSource`]), whose
//! identity for provenance is a [`ModelId`].
//!
//! The CLI builds one from its flags, the C ABI reads one from its engine JSON and `ponder
//! serve` from its settings, so the three open a model the same way. The JSON shape is the C
//! ABI's: `{"backend": "llama", "model": "models/x.gguf", "n_ctx": 4096, …}` (`backend` may be
//! left out: `llama`) or `{"backend": "remote", "remote": {"urls": ["http://HOST:PORT"], …}}`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{ConfigError, Error};
use crate::lm::{ContextOptions, KvLayout, LlamaLm, Lm, Model, ModelOptions};
#[cfg(feature = "remote")]
use crate::lm::{RemoteLm, RemoteOptions};

pub use crate::lm::ModelId;

/// The in-process llama.cpp backend's settings: the model file and its context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlamaConfig {
    /// The GGUF file ([`ModelOptions::path`]).
    pub model: PathBuf,
    /// Layers offloaded to a GPU ([`ModelOptions::n_gpu_layers`]).
    pub n_gpu_layers: u32,
    /// `unified`, `streams` or `auto` ([`ContextOptions::kv_layout`]).
    pub kv_layout: KvLayout,
    /// KV cells in all, 0 for the layout's default ([`ContextOptions::n_ctx`]).
    pub n_ctx: u32,
    /// CPU threads, 0 for one per core ([`ContextOptions::n_threads`]).
    pub n_threads: u32,
    /// Most branches decoded at once, 0 for the layout's default ([`ContextOptions::n_seq_max`]).
    pub n_seq_max: u32,
    /// One solve at a time, each from a fresh cache ([`ContextOptions::deterministic`]).
    pub deterministic: bool,
    /// Cap on one solve's live branches ([`ContextOptions::max_seqs_per_solve`]).
    pub max_seqs_per_solve: u32,
    /// Cap on the KV cells one solve's branches hold ([`ContextOptions::max_cells_per_solve`]).
    pub max_cells_per_solve: u32,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        let (m, c) = (ModelOptions::default(), ContextOptions::default());
        Self {
            model: m.path,
            n_gpu_layers: m.n_gpu_layers,
            kv_layout: c.kv_layout,
            n_ctx: c.n_ctx,
            n_threads: c.n_threads,
            n_seq_max: c.n_seq_max,
            deterministic: c.deterministic,
            max_seqs_per_solve: c.max_seqs_per_solve,
            max_cells_per_solve: c.max_cells_per_solve,
        }
    }
}

impl LlamaConfig {
    /// The model file's options and the context's.
    pub fn options(&self) -> (ModelOptions, ContextOptions) {
        (
            ModelOptions {
                path: self.model.clone(),
                n_gpu_layers: self.n_gpu_layers,
            },
            ContextOptions {
                kv_layout: self.kv_layout,
                n_ctx: self.n_ctx,
                n_threads: self.n_threads,
                n_seq_max: self.n_seq_max,
                deterministic: self.deterministic,
                max_seqs_per_solve: self.max_seqs_per_solve,
                max_cells_per_solve: self.max_cells_per_solve,
                ..ContextOptions::default()
            },
        )
    }
}

/// Where the model runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum BackendConfig {
    /// A GGUF file run in this process by llama.cpp.
    Llama(LlamaConfig),
    /// A model served by llama-server or another OpenAI-compatible server (feature `remote`).
    #[cfg(feature = "remote")]
    Remote {
        /// How to reach the servers.
        remote: RemoteOptions,
    },
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::Llama(LlamaConfig::default())
    }
}

/// The fields of the llama backend, for the error that names them.
const LLAMA_FIELDS: &str = "model, n_gpu_layers, kv_layout, n_ctx, n_threads, n_seq_max, \
                            deterministic, max_seqs_per_solve and max_cells_per_solve";

impl BackendConfig {
    /// Reads a configuration from a JSON object (`backend` may be left out: `llama`), with
    /// errors that say which field belongs to which backend.
    ///
    /// # Errors
    /// A [`ConfigError`] on `backend`, `remote` or the field that is wrong.
    pub fn from_json(value: serde_json::Value) -> Result<Self, ConfigError> {
        let serde_json::Value::Object(mut map) = value else {
            return Err(ConfigError::new(
                "backend",
                "the backend configuration must be a JSON object such as {\"model\": \"models/x.gguf\"} ({} for every default)",
            ));
        };
        let backend = match map.get("backend") {
            None => "llama".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(ConfigError::new(
                    "backend",
                    format!("{other} is not a backend; use \"llama\" or \"remote\""),
                ))
            }
        };
        #[cfg(not(feature = "remote"))]
        if backend == "remote" {
            return Err(ConfigError::new(
                "backend",
                "this build of ponder has no remote backend; build the ponder crate with its \"remote\" feature (the ponder CLI and libponder have it), or use \"backend\": \"llama\"",
            ));
        }
        match backend.as_str() {
            "llama" if map.contains_key("remote") => {
                return Err(ConfigError::new(
                    "remote",
                    "it applies to \"backend\": \"remote\" only",
                ))
            }
            "remote" if map.keys().any(|k| k != "backend" && k != "remote") => {
                return Err(ConfigError::new(
                    "backend",
                    format!(
                        "{LLAMA_FIELDS} apply to \"backend\": \"llama\"; put the remote settings in \"remote\""
                    ),
                ))
            }
            "remote" if !map.contains_key("remote") => {
                return Err(ConfigError::new(
                    "remote",
                    "\"backend\": \"remote\" needs \"remote\": {\"urls\": [\"http://HOST:PORT\"]}",
                ))
            }
            "llama" | "remote" => {}
            other => {
                return Err(ConfigError::new(
                    "backend",
                    format!("unknown backend {other:?}; use \"llama\" or \"remote\""),
                ))
            }
        }
        map.insert("backend".into(), serde_json::Value::String(backend));
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| ConfigError::new("backend", e.to_string()))
    }

    /// Checks the settings without loading or connecting.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Llama(c) => c.options().1.validate(),
            #[cfg(feature = "remote")]
            Self::Remote { remote } => remote.validate(),
        }
    }

    /// Loads the model (llama) or connects to the servers (remote).
    ///
    /// # Errors
    /// Invalid settings, a model that cannot be loaded, servers that cannot be used.
    pub fn open(&self) -> Result<Backend, Error> {
        self.validate()?;
        match self {
            Self::Llama(c) => open_llama(c),
            #[cfg(feature = "remote")]
            Self::Remote { remote } => open_remote(remote),
        }
    }
}

/// The llama arm of [`BackendConfig::open`]: loads the model file and creates its context.
fn open_llama(c: &LlamaConfig) -> Result<Backend, Error> {
    let (model, context) = c.options();
    let loaded = Model::load(&model)?;
    Ok(Backend {
        lm: Opened::Llama(Box::new(loaded.session(&context)?)),
        model: ModelSource::File(c.model.clone()),
    })
}

/// The remote arm of [`BackendConfig::open`]: connects to the servers.
#[cfg(feature = "remote")]
fn open_remote(remote: &RemoteOptions) -> Result<Backend, Error> {
    let lm = RemoteLm::connect(remote)?;
    let id = lm.model_id();
    Ok(Backend {
        lm: Opened::Remote(lm),
        model: ModelSource::Served(id),
    })
}

/// An opened backend ([`BackendConfig::open`]): the language model and where it came from.
pub struct Backend {
    lm: Opened,
    model: ModelSource,
}

/// The model of an opened backend, by kind: each kind gets its own [`Engine`] constructor.
enum Opened {
    Llama(Box<LlamaLm>),
    #[cfg(feature = "remote")]
    Remote(RemoteLm),
}

impl Backend {
    /// Where the model comes from.
    pub fn model(&self) -> &ModelSource {
        &self.model
    }

    /// The engine over it (one context, or one connection, for every solve).
    pub fn into_engine(self) -> Engine {
        match self.lm {
            Opened::Llama(lm) => Engine::llama(*lm),
            #[cfg(feature = "remote")]
            Opened::Remote(lm) => Engine::remote(lm),
        }
    }

    /// The bare language model, for work below the strategies (`ponder generate`).
    pub fn into_lm(self) -> Box<dyn Lm> {
        match self.lm {
            Opened::Llama(lm) => lm,
            #[cfg(feature = "remote")]
            Opened::Remote(lm) => Box::new(lm),
        }
    }

    /// The engine and the model's identity, hashed on first use.
    pub fn into_parts(self) -> (Engine, LazyModelId) {
        let identity = LazyModelId::new(self.model.clone());
        (self.into_engine(), identity)
    }
}

/// Where a backend's model comes from: a file this process read, or a server. Its identity for
/// provenance is a [`ModelId`] ([`ModelSource::id`]; [`LazyModelId`] computes it when first
/// needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A GGUF file read by this process.
    File(PathBuf),
    /// A model a server runs, as the server names it (its identity was read at connect time).
    Served(ModelId),
}

impl ModelSource {
    /// The model's identity; a file is hashed (it takes a second or two for a large model).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn id(&self) -> std::io::Result<ModelId> {
        match self {
            Self::File(path) => ModelId::of_file(path),
            Self::Served(id) => Ok(id.clone()),
        }
    }
}

/// The [`ModelId`] of a [`ModelSource`], computed when first asked for (a file is hashed then),
/// for a caller that may never need it (the C ABI's engine: only a trace asks).
#[derive(Debug)]
pub struct LazyModelId {
    source: ModelSource,
    id: OnceLock<ModelId>,
}

impl LazyModelId {
    /// The identity of `source`, not yet computed.
    pub fn new(source: ModelSource) -> Self {
        Self {
            source,
            id: OnceLock::new(),
        }
    }

    /// The identity; a file that cannot be read (any more) is named by its path, without a
    /// hash.
    pub fn get(&self) -> ModelId {
        self.id
            .get_or_init(|| {
                self.source.id().unwrap_or_else(|_| match &self.source {
                    ModelSource::File(path) => ModelId {
                        name: path.display().to_string(),
                        sha256: String::new(),
                    },
                    ModelSource::Served(id) => id.clone(),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_configs_default_to_llama_and_name_the_wrong_field() {
        let c = BackendConfig::from_json(serde_json::json!({})).unwrap();
        assert_eq!(c, BackendConfig::default());
        let c =
            BackendConfig::from_json(serde_json::json!({"model": "m.gguf", "n_ctx": 512})).unwrap();
        let BackendConfig::Llama(l) = &c else {
            panic!("{c:?}")
        };
        assert_eq!((l.model.to_str(), l.n_ctx), (Some("m.gguf"), 512));
        // The JSON written is the JSON read.
        let again = BackendConfig::from_json(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        for (bad, field, says) in [
            (serde_json::json!([1]), "backend", "JSON object"),
            (
                serde_json::json!({"backend": "lama"}),
                "backend",
                "unknown backend",
            ),
            (
                serde_json::json!({"backend": 3}),
                "backend",
                "not a backend",
            ),
            (
                serde_json::json!({"remote": {}}),
                "remote",
                "\"remote\" only",
            ),
            (serde_json::json!({"n_ctxx": 5}), "backend", "n_ctxx"),
        ] {
            refused(bad, field, says);
        }
    }

    fn refused(bad: serde_json::Value, field: &str, says: &str) {
        let e = BackendConfig::from_json(bad.clone()).unwrap_err();
        assert_eq!(e.field, field, "{bad}: {e}");
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }

    #[cfg(feature = "remote")]
    #[test]
    fn remote_configs_round_trip_and_keep_their_fields_apart() {
        let c = BackendConfig::from_json(serde_json::json!({
            "backend": "remote", "remote": {"urls": ["http://127.0.0.1:1"]}
        }))
        .unwrap();
        assert!(matches!(c, BackendConfig::Remote { .. }));
        let again = BackendConfig::from_json(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        refused(
            serde_json::json!({"backend": "remote", "model": "x"}),
            "backend",
            "put the remote settings in",
        );
        refused(serde_json::json!({"backend": "remote"}), "remote", "needs");
    }

    #[cfg(not(feature = "remote"))]
    #[test]
    fn without_the_remote_feature_a_remote_config_says_which_feature() {
        for bad in [
            serde_json::json!({"backend": "remote", "remote": {"urls": ["http://a"]}}),
            serde_json::json!({"backend": "remote", "model": "x"}),
        ] {
            refused(bad, "backend", "\"remote\" feature");
        }
    }
}
