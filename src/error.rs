//! Errors: one enum per kind of operation ([`LoadError`], [`DecodeError`], [`ConfigFileError`]),
//! folded into the crate's [`Error`]. Every message says what was wrong and what to do about it;
//! the advice repeated between messages is written once, in the `hint` constants below.
//!
//! A failure that can happen in more than one operation has one type, whichever operation it
//! happens in:
//! - [`ConfigError`], an invalid setting or request parameter. Functions that only check settings
//!   return it bare (`validate`); functions that check and then load or run return [`Error`],
//!   whose [`Error::Config`] is the one place it is found. A model call ([`crate::lm::Lm`]
//!   returns [`DecodeError`]) reports an invalid request as [`DecodeError::InvalidRequest`], and
//!   folding that into [`Error`] makes it an [`Error::Config`].
//! - [`RemoteError`], a server of the remote backend that failed (URL, HTTP status, attempts,
//!   message), whether at connect time ([`LoadError::Remote`]) or in a request
//!   ([`DecodeError::Remote`]).
//! - [`TokenizerError`], the client-side tokenizer of the remote backend, at load time or on a
//!   text.
//! - [`IoError`], a file that could not be read or written, always with its path.
//!
//! [`Error::Cancelled`] and [`Error::Reentrant`] sit at the top, side by side: neither is a
//! failure of the model or of a setting, both say how the caller's own call ended (it asked to
//! stop; it called into a solve from that solve's callback), and a caller of
//! [`crate::Engine::solve`] looks for them there. The model layer notices a cancellation inside a
//! model call, which can only return a [`DecodeError`], so it says [`DecodeError::Cancelled`];
//! folding that into [`Error`] makes it [`Error::Cancelled`].
//!
//! This module uses nothing else of the crate (a token id is a plain `i32` here), so that every
//! module may use it.

use std::path::{Path, PathBuf};

/// Advice shared by several messages.
mod hint {
    /// Where the default model comes from.
    pub const MAKE_MODEL: &str = "for the default model run `make model`";
    /// A model file that is missing.
    pub const GIVE_MODEL: &str = "give the path of a GGUF file (the model option, --model, or PONDER_MODEL); ponder's default model is fetched by `make model` in ponder's source tree";
    /// How to write a tokenizer file that matches a served model.
    pub const EXPORT_TOKENIZER: &str =
        "`python3 scripts/export-tokenizer.py MODEL.gguf tokenizer.json`";
    /// The way out of every tokenizer problem.
    pub const NO_TOKENIZER: &str = "leave out --tokenizer to tokenise on the server";
    /// A server that did not answer, or kept failing.
    pub const SERVER_DOWN: &str = "check that the server is up and serves the model (requests are retried with backoff; raise the backend's `attempts` or `timeout_ms` for a slow server)";
    /// A server that answered in the wrong shape.
    pub const NOT_LLAMA_SERVER: &str = "the server answered, but not as a llama.cpp server does: point the backend's `url` at llama-server (or a server with the same /tokenize and /v1/completions)";
    /// A server that refused one request.
    pub const REFUSED: &str =
        "the server refused this request (its message says why); other requests may still succeed";
    /// A server that could not be used at connect time.
    pub const START_SERVER: &str =
        "start it (for example `llama-server -m MODEL --port PORT`) or fix the backend's `url`";
    /// A node or prompt larger than the context.
    pub const RAISE_CTX: &str =
        "shorten the input or raise the context size (--ctx / ModelOptions::n_ctx)";
}

/// Loading a model or creating a context failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The model file does not exist.
    #[error("model file {} not found{} — {}", .path.display(), relative_note(.path), hint::GIVE_MODEL)]
    ModelNotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file exists but does not start with the GGUF magic bytes.
    #[error("{} is not a GGUF model file (it does not start with the bytes \"GGUF\") — pass a .gguf file produced by llama.cpp's converters", .path.display())]
    NotGguf {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error(transparent)]
    Io(IoError),
    /// llama.cpp refused the file (truncated, unsupported architecture or quantisation, …).
    #[error("llama.cpp could not load {} (corrupt, truncated, or an unsupported architecture) — re-download it; {}", .path.display(), hint::MAKE_MODEL)]
    Model {
        /// The path that was tried.
        path: PathBuf,
    },
    /// A server of the remote backend could not be used at start.
    #[error(transparent)]
    Remote(RemoteError),
    /// The `tokenizer.json` given for the remote backend is missing, unreadable, or not the
    /// served model's.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
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
}

/// A server of the remote backend failed: after the last of `attempts` attempts for connection
/// errors, timeouts, 5xx, 429 and bodies that are not JSON, or at once when the server refused
/// the request (4xx) or answered with JSON of the wrong shape. The same type at connect time
/// ([`LoadError::Remote`]) and in a request ([`DecodeError::Remote`]);
/// [`RemoteError::is_unavailable`] tells a server that cannot be used from one bad request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{}request to {url} failed{}: {message} — {}{}", if *.connecting { "cannot use the server: " } else { "" }, attempts_text(*.attempts), remote_hint(*.status), if *.connecting { format!("; {}", hint::START_SERVER) } else { String::new() })]
pub struct RemoteError {
    /// The URL of the request.
    pub url: String,
    /// The HTTP status of the last failed attempt; `None` when no response came (connection
    /// refused, timeout). A reply of the wrong shape is `Some(200)`.
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// What went wrong, with the server's own message where it sent one.
    pub message: String,
    /// Whether it happened while connecting (checking the servers before any solve).
    pub connecting: bool,
}

impl RemoteError {
    /// A failed request to `url`.
    pub fn new(
        url: impl Into<String>,
        status: Option<u16>,
        attempts: u32,
        message: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            status,
            attempts,
            message: message.into(),
            connecting: false,
        }
    }

    /// The same failure, as it happened while connecting.
    pub fn at_connect(self) -> Self {
        Self {
            connecting: true,
            ..self
        }
    }

    /// Whether the failure means the server cannot be used for now — it did not answer, or
    /// kept failing (5xx, 429, 408), through all its attempts — rather than that this one
    /// request was bad (refused with a 4xx, a reply of the wrong shape).
    pub fn is_unavailable(&self) -> bool {
        matches!(self.status, None | Some(408 | 429 | 500..))
    }
}

/// The client-side tokenizer of the remote backend (`tokenizer.json`, given with `--tokenizer`)
/// cannot be used: at load time (missing, unreadable, not the served model's) or on a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The file does not exist.
    #[error("tokenizer file {} not found{} — give the tokenizer.json of the served model ({} writes one from the GGUF file the server loaded), or {}", .path.display(), relative_note(.path), hint::EXPORT_TOKENIZER, hint::NO_TOKENIZER)]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file cannot be read or parsed.
    #[error("cannot use the tokenizer file {}: {reason} — give the tokenizer.json of the served model ({} writes one from the GGUF file the server loaded), or {}", .path.display(), hint::EXPORT_TOKENIZER, hint::NO_TOKENIZER)]
    Unreadable {
        /// The path that was tried.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// It tokenises a probe string differently from the server: it is not the served model's
    /// tokenizer, and using it would corrupt every search (nodes the model never saw, wrong
    /// budgets).
    #[error("the tokenizer {} does not tokenise as the server at {url} does: for {text:?} (add_special {add_special}) token {position} is {} here and {} on the server — it is not the served model's tokenizer; export the right one ({} with the GGUF file the server loaded), or {}", .path.display(), token_or_end(*.client), token_or_end(*.server), hint::EXPORT_TOKENIZER, hint::NO_TOKENIZER)]
    Mismatch {
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
        /// The client's token id there (`None`: its tokens ended before).
        client: Option<i32>,
        /// The server's token id there (`None`: its tokens ended before).
        server: Option<i32>,
    },
    /// It failed on a text.
    #[error("the tokenizer {} failed: {message} — {}", .path.display(), hint::NO_TOKENIZER)]
    Failed {
        /// The tokenizer file.
        path: PathBuf,
        /// What it said.
        message: String,
    },
}

/// Reading or writing a file or directory failed: the model file, a settings file, the output
/// folders of `synth` and `bench`, their journals and reports.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", .path.display())]
pub struct IoError {
    /// What was being done ("read model file", "write", "create", …).
    pub action: String,
    /// The file or directory.
    pub path: PathBuf,
    /// The underlying I/O error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// `action` on `path` failed with `source`.
    pub fn new(action: &str, path: &Path, source: std::io::Error) -> Self {
        Self {
            action: action.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A token id, or "the end" where one side's tokens ended first.
fn token_or_end(t: Option<i32>) -> String {
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
        None | Some(408 | 429 | 500..) => hint::SERVER_DOWN,
        Some(200) => hint::NOT_LLAMA_SERVER,
        Some(_) => hint::REFUSED,
    }
}

/// For a relative path: where it was looked for (it is relative to the current directory).
fn relative_note(path: &Path) -> String {
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
    #[error(
        "{what} needs {tokens} tokens but the context holds {n_ctx} — {}",
        hint::RAISE_CTX
    )]
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
    /// The caller cancelled the work (an [`crate::lm::Interrupt`] said stop); folded into
    /// [`Error`] it is [`Error::Cancelled`].
    #[error("cancelled by the caller")]
    Cancelled,
    /// A request to a server of the remote backend failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The client-side tokenizer of the remote backend failed on a text.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The backend cannot do this operation.
    #[error("{what} is not supported by this backend: {hint}")]
    Unsupported {
        /// The operation.
        what: &'static str,
        /// What to use instead.
        hint: String,
    },
    /// A parameter of the call is invalid (a sampling setting out of range, a token id outside
    /// the vocabulary); folded into [`Error`] it is an [`Error::Config`].
    #[error("invalid {field}: {reason}")]
    InvalidRequest {
        /// Which parameter.
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

impl From<ConfigError> for DecodeError {
    fn from(e: ConfigError) -> Self {
        Self::InvalidRequest {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// A settings file (`ponder serve --config FILE`) could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error(transparent)]
    Read(IoError),
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
    /// See [`DecodeError`]; never [`DecodeError::Cancelled`] or [`DecodeError::InvalidRequest`]
    /// when made with `From` (they become [`Error::Cancelled`] and [`Error::Config`]).
    #[error(transparent)]
    Decode(DecodeError),
    /// An invalid setting or request parameter: see [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`ConfigFileError`].
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    /// Reading or writing a file or directory failed: see [`IoError`].
    #[error(transparent)]
    Io(#[from] IoError),
    /// The caller cancelled the solve ([`crate::Engine::cancel`], a [`crate::CancelToken`], an
    /// event callback that asked to stop) before it had anything to return.
    #[error("cancelled by the caller")]
    Cancelled,
    /// An engine was asked to solve from inside an event callback of its own running solve,
    /// on the solving thread: the call would wait forever for the solve that is running it.
    #[error("the engine was called from inside an event callback of its own running solve — that call would wait forever for the solve running it; return from the callback first, then solve (or use a second engine)")]
    Reentrant,
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Cancelled => Self::Cancelled,
            DecodeError::InvalidRequest { field, reason } => {
                Self::Config(ConfigError { field, reason })
            }
            e => Self::Decode(e),
        }
    }
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
            Self::Io(_) => "I/O",
            Self::Cancelled => "cancellation",
            Self::Reentrant => "reentrant call",
        };
        write!(f, "{kind} error: {self}")
    }
}

impl DecodeError {
    /// Whether the failure means the backend cannot be used for now (see
    /// [`RemoteError::is_unavailable`]) rather than that this one request was bad. Batch jobs
    /// stop on the first kind and go on after the second.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Remote(r) if r.is_unavailable())
    }
}

impl Error {
    /// An [`Error::Io`]: `action` on `path` failed with `source`.
    pub fn io(action: &str, path: &Path, source: std::io::Error) -> Self {
        Self::Io(IoError::new(action, path, source))
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
