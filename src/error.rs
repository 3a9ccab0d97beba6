//! Errors: one enum per kind of operation, folded into [`Error`].
//!
//! Every message says what was wrong and what to do about it.

use std::path::PathBuf;

/// Loading a model or creating a context failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The model file does not exist.
    #[error("model file {} not found{} — give the path of a GGUF file (the model option, --model, or PONDER_MODEL); ponder's default model is fetched by `make model` in ponder's source tree", .path.display(), relative_note(.path))]
    ModelNotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file exists but does not start with the GGUF magic bytes.
    #[error("{path} is not a GGUF model file (it does not start with the bytes \"GGUF\") — pass a .gguf file produced by llama.cpp's converters")]
    NotGguf {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The path that was tried.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// llama.cpp refused the file (truncated, unsupported architecture or quantisation, …).
    #[error("llama.cpp could not load {path} (corrupt, truncated, or an unsupported architecture) — re-download it; for the default model run `make model`")]
    Model {
        /// The path that was tried.
        path: PathBuf,
    },
    /// A server of the remote backend could not be used at start.
    #[error("cannot use the server at {url}: {message} — start it (for example `llama-server -m MODEL --port PORT`) or fix the backend's `url`")]
    Remote {
        /// The server's base URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The `tokenizer.json` given for the remote backend does not exist.
    #[error("tokenizer file {} not found{} — give the tokenizer.json of the served model (`python3 scripts/export-tokenizer.py MODEL.gguf tokenizer.json` writes one from the GGUF file the server loaded), or leave out --tokenizer to tokenise on the server", .path.display(), relative_note(.path))]
    TokenizerNotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The `tokenizer.json` given for the remote backend cannot be read or parsed.
    #[error("cannot use the tokenizer file {}: {reason} — give the tokenizer.json of the served model (`python3 scripts/export-tokenizer.py MODEL.gguf tokenizer.json` writes one from the GGUF file the server loaded), or leave out --tokenizer to tokenise on the server", .path.display())]
    Tokenizer {
        /// The path that was tried.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `tokenizer.json` given for the remote backend tokenises a probe string differently
    /// from the server: it is not the served model's tokenizer, and using it would corrupt every
    /// search (nodes the model never saw, wrong budgets).
    #[error("the tokenizer {} does not tokenise as the server at {url} does: for {text:?} (add_special {add_special}) token {position} is {} here and {} on the server — it is not the served model's tokenizer; export the right one (`python3 scripts/export-tokenizer.py MODEL.gguf tokenizer.json` with the GGUF file the server loaded), or leave out --tokenizer to tokenise on the server", .path.display(), token_or_end(*.client), token_or_end(*.server))]
    TokenizerMismatch {
        /// The tokenizer file.
        path: PathBuf,
        /// The server it was checked against.
        url: String,
        /// The first probe string tokenised differently.
        text: String,
        /// Whether the probe asked for the model's added special tokens (BOS/EOS).
        add_special: bool,
        /// The first token position where the two differ.
        position: usize,
        /// The client's token there (`None`: its tokens ended before).
        client: Option<crate::lm::TokenId>,
        /// The server's token there (`None`: its tokens ended before).
        server: Option<crate::lm::TokenId>,
    },
    /// llama.cpp could not create an inference context.
    #[error("llama.cpp could not create a context with n_ctx={n_ctx}, n_seq_max={n_seq_max} — lower the context size or the number of parallel sequences")]
    Context {
        /// Requested context size in tokens.
        n_ctx: u32,
        /// Requested number of parallel sequences.
        n_seq_max: u32,
    },
    /// The llama.cpp backend could not be initialised.
    #[error("llama.cpp backend initialisation failed: {0}")]
    Backend(String),
    /// An option of [`crate::lm::ModelOptions`] is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A token id, or "the end" where one side's tokens ended first.
fn token_or_end(t: Option<crate::lm::TokenId>) -> String {
    t.map_or_else(|| "the end".into(), |t| format!("id {t}"))
}

/// " after N attempts" when a request was retried.
fn attempts_text(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

/// What to do about a failed remote request, by its status.
fn remote_hint(status: Option<u16>) -> &'static str {
    match status {
        None | Some(408 | 429 | 500..) => "check that the server is up and serves the model (requests are retried with backoff; raise the backend's `attempts` or `timeout_ms` for a slow server)",
        Some(200) => "the server answered, but not as a llama.cpp server does: point the backend's `url` at llama-server (or a server with the same /tokenize and /v1/completions)",
        Some(_) => "the server refused this request (its message says why); other requests may still succeed",
    }
}

/// For a relative path: where it was looked for (it is relative to the current directory).
fn relative_note(path: &std::path::Path) -> String {
    if path.is_absolute() {
        return String::new();
    }
    match std::env::current_dir() {
        Ok(dir) => format!(
            " (a relative path, looked for in the current directory {})",
            dir.display()
        ),
        Err(_) => " (a relative path, looked for in the current directory)".into(),
    }
}

/// A configuration value or request parameter is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// Which field (for example `temperature` or `n_seq_max`).
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl ConfigError {
    /// A new error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// Checks that `value` (counted in `unit`, e.g. "tokens") lies in `range`, the documented
    /// range of `field`.
    ///
    /// # Errors
    /// A [`ConfigError`] for `field` saying the value, the allowed range and `hint`.
    pub fn check_range<T>(
        field: &'static str,
        value: T,
        range: std::ops::RangeInclusive<T>,
        unit: &str,
    ) -> Result<(), ConfigError>
    where
        T: PartialOrd + std::fmt::Display,
    {
        if range.contains(&value) {
            return Ok(());
        }
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        Err(ConfigError::new(
            field,
            format!(
                "{value}{unit} is outside {}..={}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// Running the model (tokenising, decoding, sampling) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A node would not fit into the context window.
    #[error("{what} needs {tokens} tokens but the context holds {n_ctx} — shorten the input or raise the context size (--ctx / ModelOptions::n_ctx)")]
    ContextOverflow {
        /// What overflowed (for example "the prompt").
        what: &'static str,
        /// Tokens needed.
        tokens: usize,
        /// The context size.
        n_ctx: u32,
    },
    /// In the `streams` KV layout, a node would not fit into its sequence's stream.
    #[error("{what} needs {tokens} tokens but a branch's KV stream holds {cells_per_seq} (n_ctx {n_ctx} / n_seq_max {n_seq_max} in the streams layout) — raise --ctx, lower --n-seq-max, or use --kv-layout unified (one pool shared by all branches)")]
    StreamOverflow {
        /// What overflowed (for example "the prompt").
        what: &'static str,
        /// Tokens needed.
        tokens: usize,
        /// Cells of one stream.
        cells_per_seq: u32,
        /// The context size (all streams).
        n_ctx: u32,
        /// Streams (sequences).
        n_seq_max: u32,
    },
    /// Even after parking every node not in use, the KV cache has no room for the batch.
    #[error("the KV cache is full: {tokens} new tokens do not fit even after parking every idle branch — raise the context size or run fewer branches at once")]
    KvCacheFull {
        /// Tokens that did not fit.
        tokens: usize,
    },
    /// A node handle that this model never issued, or that was released.
    #[error("node {node} is unknown or was released — nodes are valid until `release` and only on the model that made them")]
    UnknownNode {
        /// The handle's id.
        node: u32,
    },
    /// The model has no chat template and the messages could not be rendered.
    #[error("could not apply the chat template: {0}")]
    ChatTemplate(String),
    /// Text contained an interior NUL byte, which llama.cpp cannot take.
    #[error("text for {what} contains a NUL byte — remove it")]
    NulByte {
        /// Which text.
        what: &'static str,
    },
    /// llama_decode returned an error code.
    #[error("llama_decode failed with code {code}")]
    Llama {
        /// The code llama.cpp returned.
        code: i32,
    },
    /// The caller cancelled the work ([`crate::Engine::cancel`], an event callback that asked
    /// to stop, or an [`crate::lm::Interrupt`]).
    #[error("cancelled by the caller")]
    Cancelled,
    /// A request to a server of the remote backend failed: after the last of `attempts` attempts
    /// for connection errors, timeouts, 5xx, 429 and bodies that are not JSON, or at once when
    /// the server refused the request (4xx) or answered with JSON of the wrong shape.
    /// [`DecodeError::is_unavailable`] tells a server that cannot be used from one bad request.
    #[error("request to {url} failed{}: {message} — {}", attempts_text(*.attempts), remote_hint(*.status))]
    Remote {
        /// The URL of the request.
        url: String,
        /// The HTTP status of the last failed attempt; `None` when no response came
        /// (connection refused, timeout). A reply of the wrong shape is `Some(200)`.
        status: Option<u16>,
        /// What went wrong, with the server's own message where it sent one.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The client-side tokenizer of the remote backend failed on a text.
    #[error("the tokenizer {} failed: {message} — leave out --tokenizer to tokenise on the server", .path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What it said.
        message: String,
    },
    /// The backend cannot do this operation.
    #[error("{what} is not supported by this backend: {hint}")]
    Unsupported {
        /// The operation.
        what: &'static str,
        /// What to use instead.
        hint: String,
    },
    /// A request parameter is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A settings file (`ponder serve --config FILE`) could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read the settings file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not one JSON object.
    #[error("settings file {} is not a JSON object: {reason} — write it as {{\"port\": 8080, \"max_n\": 8, …}}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said, with the line and column.
        reason: String,
    },
    /// A key is unknown, or its value has the wrong type or is out of range.
    #[error("settings file {}: invalid key {key:?}: {reason}", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// The key as written in the file.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// Any error of this crate. Its `Debug` is its message (see the impl), so a program whose `main`
/// returns [`Result`] prints something a person can act on.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`LoadError`].
    #[error(transparent)]
    Load(#[from] LoadError),
    /// See [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// See [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`ConfigFileError`].
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    /// An engine was asked to solve from inside an event callback of its own running solve,
    /// on the solving thread: the call would wait forever for the solve that is running it.
    #[error("the engine was called from inside an event callback of its own running solve — that call would wait forever for the solve running it; return from the callback first, then solve (or use a second engine)")]
    Reentrant,
    /// Reading or writing a file or directory failed (output folders of `synth` and `bench`,
    /// their journals and reports).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "create", …).
        action: String,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// The kind, then the message (`load error: model file … not found — give the path …`), not a
/// dump of the fields: `fn main() -> ponder::Result<()>` prints an error through `Debug`.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Load(_) => "load",
            Self::Decode(_) => "decode",
            Self::Config(_) => "config",
            Self::ConfigFile(_) => "config file",
            Self::Reentrant => "reentrant call",
            Self::Io { .. } => "I/O",
        };
        write!(f, "{kind} error: {self}")
    }
}

impl DecodeError {
    /// Whether the failure means the backend cannot be used for now — a remote server that did
    /// not answer, or kept failing (5xx, 429, 408), through all its attempts — rather than that
    /// this one request was bad (refused with a 4xx, a reply of the wrong shape). Batch jobs
    /// stop on the first kind and go on after the second.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Remote {
                status: None | Some(408 | 429 | 500..),
                ..
            }
        )
    }
}

impl Error {
    /// An [`Error::Io`]: `action` on `path` failed with `source`.
    pub fn io(action: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            action: action.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_relative_model_path_says_where_it_was_looked_for() {
        let relative = LoadError::ModelNotFound {
            path: "models/x.gguf".into(),
        }
        .to_string();
        let cwd = std::env::current_dir().unwrap();
        assert!(relative.contains("current directory"), "{relative}");
        assert!(relative.contains(&cwd.display().to_string()), "{relative}");
        let absolute = LoadError::ModelNotFound {
            path: "/m/x.gguf".into(),
        }
        .to_string();
        assert!(!absolute.contains("current directory"), "{absolute}");
    }

    #[test]
    fn debug_is_the_message_not_a_field_dump() {
        let e = Error::from(LoadError::ModelNotFound {
            path: "/m/x.gguf".into(),
        });
        let debug = format!("{e:?}");
        assert_eq!(debug, format!("load error: {e}"));
        assert!(!debug.contains("ModelNotFound"), "{debug}");
    }

    #[test]
    fn check_range_names_the_value_and_the_range() {
        let e = ConfigError::check_range("rounds", 20u32, 1..=16, "rounds").unwrap_err();
        assert_eq!(e.to_string(), "invalid rounds: 20 rounds is outside 1..=16");
        assert!(ConfigError::check_range("rounds", 16u32, 1..=16, "").is_ok());
    }
}
