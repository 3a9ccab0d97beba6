//! Status codes, their messages, the per-thread detail of the last failure, and the panic
//! boundary every exported function runs inside.

use std::cell::RefCell;
use std::ffi::c_char;

use ponder::error::{DecodeError, Error, LoadError};

/// What a call did. The numbers are part of the ABI: never reused, never renumbered.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ponder_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// A JSON argument could not be parsed.
    InvalidJson = 3,
    /// A configuration was parsed but is invalid (unknown field or strategy, value out of range).
    InvalidConfig = 4,
    /// The model file does not exist.
    ModelNotFound = 5,
    /// The model file could not be loaded, or no context could be created for it.
    ModelLoadFailed = 6,
    /// The question (or a node) does not fit into the context window.
    ContextOverflow = 7,
    /// The search ran out of budget before reaching an answer (from `ponder_outcome_answer`).
    BudgetExhausted = 8,
    /// The solve was cancelled (by the callback or `ponder_engine_cancel`).
    Cancelled = 9,
    /// The caller's buffer is too small; `*out_n` holds the length needed (without the NUL).
    BufferTooSmall = 10,
    /// The outcome has no answer.
    NoAnswer = 11,
    /// The KV cache is full even after parking every idle branch.
    KvCacheFull = 12,
    /// llama.cpp failed while decoding.
    DecodeFailed = 13,
    /// A Rust panic was caught at the boundary (a bug: please report it).
    Panic = 14,
    /// A server of the remote backend could not be reached or failed after the retries.
    RemoteFailed = 15,
    /// The backend cannot do what the strategy asked (for example prompt log-probabilities
    /// through a server that does not return them).
    Unsupported = 16,
    /// `ponder_engine_solve` was called from inside an event callback of a solve running on
    /// the same engine; refused at once, since it would wait forever for that solve.
    Reentrant = 17,
    /// Reading or writing a file failed.
    Io = 18,
}

impl ponder_status {
    /// The fixed message of this status, NUL-terminated.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Ok => "ok\0",
            Self::NullArgument => "a required pointer argument was NULL\0",
            Self::InvalidUtf8 => "a string argument is not valid UTF-8\0",
            Self::InvalidJson => "a JSON argument could not be parsed\0",
            Self::InvalidConfig => "invalid configuration\0",
            Self::ModelNotFound => "model file not found\0",
            Self::ModelLoadFailed => "the model could not be loaded\0",
            Self::ContextOverflow => "the input does not fit into the context window\0",
            Self::BudgetExhausted => "the search ran out of budget before reaching an answer\0",
            Self::Cancelled => "cancelled\0",
            Self::BufferTooSmall => "the buffer is too small; *out_n holds the length needed\0",
            Self::NoAnswer => "the outcome has no answer\0",
            Self::KvCacheFull => "the KV cache is full\0",
            Self::DecodeFailed => "llama.cpp failed while decoding\0",
            Self::Panic => "internal error (a panic was caught); please report it\0",
            Self::RemoteFailed => "a server of the remote backend failed\0",
            Self::Unsupported => "the backend does not support this operation\0",
            Self::Reentrant => "the engine was called from inside its own solve's event callback\0",
            Self::Io => "reading or writing a file failed\0",
        }
    }

    pub(crate) fn from_u32(n: u32) -> Option<Self> {
        Some(match n {
            0 => Self::Ok,
            1 => Self::NullArgument,
            2 => Self::InvalidUtf8,
            3 => Self::InvalidJson,
            4 => Self::InvalidConfig,
            5 => Self::ModelNotFound,
            6 => Self::ModelLoadFailed,
            7 => Self::ContextOverflow,
            8 => Self::BudgetExhausted,
            9 => Self::Cancelled,
            10 => Self::BufferTooSmall,
            11 => Self::NoAnswer,
            12 => Self::KvCacheFull,
            13 => Self::DecodeFailed,
            14 => Self::Panic,
            15 => Self::RemoteFailed,
            16 => Self::Unsupported,
            17 => Self::Reentrant,
            18 => Self::Io,
            _ => return None,
        })
    }
}

impl From<&Error> for ponder_status {
    fn from(e: &Error) -> Self {
        match e {
            Error::Config(_) | Error::ConfigFile(_) => Self::InvalidConfig,
            Error::Cancelled => Self::Cancelled,
            Error::Reentrant => Self::Reentrant,
            Error::Io(_) => Self::Io,
            Error::Load(LoadError::ModelNotFound { .. }) => Self::ModelNotFound,
            Error::Load(LoadError::Remote(_)) => Self::RemoteFailed,
            Error::Decode(DecodeError::Remote(_)) => Self::RemoteFailed,
            Error::Decode(DecodeError::Unsupported { .. }) => Self::Unsupported,
            Error::Load(_) => Self::ModelLoadFailed,
            Error::Decode(
                DecodeError::ContextOverflow { .. } | DecodeError::StreamOverflow { .. },
            ) => Self::ContextOverflow,
            Error::Decode(DecodeError::Cancelled) => Self::Cancelled,
            Error::Decode(DecodeError::KvCacheFull { .. }) => Self::KvCacheFull,
            Error::Decode(DecodeError::InvalidRequest { .. } | DecodeError::NulByte { .. }) => {
                Self::InvalidConfig
            }
            Error::Decode(_) => Self::DecodeFailed,
            // `Error` is non-exhaustive (this crate is not the library): a kind added later fails
            // as the general decode failure until it gets a status of its own.
            _ => Self::DecodeFailed,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's last error and returns `status`. A NUL inside the message
/// (from a path or text the caller gave) is written `\0`, so that C sees the whole message.
pub(crate) fn fail(status: ponder_status, message: impl Into<String>) -> ponder_status {
    let mut message = message.into();
    if message.contains('\0') {
        message = message.replace('\0', "\\0");
    }
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
    status
}

/// This thread's last error message.
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// Records `e` and returns its status.
pub(crate) fn fail_with(e: &Error) -> ponder_status {
    fail(e.into(), e.to_string())
}

/// Runs `body`, turning a panic into [`ponder_status::Panic`].
pub(crate) fn boundary(body: impl FnOnce() -> ponder_status) -> ponder_status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(status) => status,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail(ponder_status::Panic, format!("panic: {what}"))
        }
    }
}

/// A static NUL-terminated string as a C pointer.
pub(crate) fn static_cstr(s: &'static str) -> *const c_char {
    debug_assert!(s.ends_with('\0'));
    s.as_ptr().cast()
}
