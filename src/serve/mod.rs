//! `ponder serve`: an OpenAI-compatible HTTP server (axum on tokio) whose model names pick search
//! strategies, optillm-style.
//!
//! - `POST /v1/chat/completions`: a model name with a strategy prefix ([`alias_of`]: `bon-…`,
//!   `mcts-…`, …) runs that search over the conversation's last user message; `"ponder": {…}` in
//!   the body (OpenAI clients send it through `extra_body`) configures it ([`plan()`]); without
//!   either, plain generation of `n` choices from one shared prefill. `stream: true` sends the
//!   search's progress as `reasoning_content` deltas, then the answer as `content`, then `[DONE]`.
//!   Plain generation gives `logprobs` / `top_logprobs` in OpenAI's shape.
//! - `POST /v1/completions`: OpenAI's text completions ([`completions`]): raw prompts (no chat
//!   template), `best_of`, legacy `logprobs` and `echo` (the prompt's tokens scored in one forced
//!   pass); strategy prefixes as in chat, with the prompt as the question.
//! - Every field of both bodies is supported, refused with a 400 that names it, or ignored, as
//!   [`request::FIELDS`] lists; types and ranges are OpenAI's.
//! - `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text, [`metrics`]).
//!
//! Limits ([`ServeOptions`]): loopback by default, a non-loopback bind needs an API key; bearer
//! auth; a body-size cap; caps on `n`, `max_tokens` and search budgets; a bounded queue (running
//! plus waiting solves) that answers 429 when full; a per-solve deadline; a client that goes away
//! cancels its solve; SIGTERM/SIGINT answer new requests 503, let running solves finish within
//! the grace period, then cancel them. Every error is OpenAI's error JSON.
//!
//! Every solve runs on a blocking thread with its own [`CancelToken`]; the server adds no lock
//! of its own around solves: on the llama.cpp backend they share one context and its forward
//! passes (continuous batching), and the queue bound is the admission control.

mod admission;
mod chat;
pub mod completions;
mod config;
mod handlers;
pub mod metrics;
pub mod openai;
pub mod plain;
pub mod plan;
pub mod request;

pub use admission::describe;
pub use config::ServeFile;
pub use openai::ChatResponse;
pub use plan::{plan, plan_completion, Plan};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::ConfigError;
use crate::strategy::Named;
use crate::{CancelToken, Engine};

use admission::{solve_collecting, sse, Shared, Solution, Ticket};
use handlers::{choices, now, read_body, router};
use metrics::Metrics;

/// The strategy or preset a model name picks, if it starts with one of the serve prefixes of
/// [`crate::strategy::NAMED`] (`bon-`, `mcts-`, …; case-insensitive).
pub fn alias_of(model: &str) -> Option<&'static Named> {
    Named::by_prefix(model)
}

/// Settings of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (`127.0.0.1` by default; a non-loopback one needs `api_key`).
    pub host: String,
    /// Port (0 picks a free one).
    pub port: u16,
    /// Bearer token every request but `/health` must carry.
    pub api_key: Option<String>,
    /// Requests admitted at once (running plus waiting for the engine); more get 429.
    pub max_queue: usize,
    /// Largest request body, in bytes; larger gets 413.
    pub max_body_bytes: usize,
    /// Cap on `n` and on every search width (`n`, `width`, `k`, `expansions`, `warmup`, `batch`).
    pub max_n: u32,
    /// Cap on `max_tokens` and on every per-generation token count of a search.
    pub max_tokens: u32,
    /// Cap on a search's token budgets (`budget.tokens`, `total_budget`).
    pub max_budget_tokens: u64,
    /// A solve still running after this long is cancelled (tree searches answer with the best
    /// they found; the others answer 504).
    pub max_solve_seconds: u64,
    /// After SIGTERM, how long running solves may go on before they are cancelled.
    pub grace_seconds: u64,
    /// The served model's name (in `/v1/models` and behind every alias there).
    pub model_name: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            max_queue: 16,
            max_body_bytes: 1 << 20,
            max_n: 16,
            max_tokens: 2048,
            max_budget_tokens: 32_768,
            max_solve_seconds: 600,
            grace_seconds: 30,
            model_name: "ponder".into(),
        }
    }
}

impl ServeOptions {
    /// Checks the settings and resolves the address to bind.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero limit, an address that does not resolve, or a non-loopback
    /// address without an API key.
    pub fn bind_address(&self) -> Result<SocketAddr, ConfigError> {
        for (field, v) in [
            ("max_queue", self.max_queue as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_n", u64::from(self.max_n)),
            ("max_tokens", u64::from(self.max_tokens)),
            ("max_budget_tokens", self.max_budget_tokens),
            ("max_solve_seconds", self.max_solve_seconds),
        ] {
            if v == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ConfigError::new(
                "api_key",
                "is empty; give a real secret or leave --api-key out",
            ));
        }
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| ConfigError::new("host", format!("cannot resolve {:?}: {e}", self.host)))?
            .next()
            .ok_or_else(|| ConfigError::new("host", format!("{:?} has no address", self.host)))?;
        if !is_loopback(addr.ip()) && self.api_key.is_none() {
            return Err(ConfigError::new(
                "host",
                format!(
                    "refusing to listen on {} (not loopback) without an API key: anyone who can reach it could run searches on this machine; pass --api-key KEY (or PONDER_API_KEY), or bind 127.0.0.1",
                    addr.ip()
                ),
            ));
        }
        Ok(addr)
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves; then answers new requests 503, lets
/// running solves finish for [`ServeOptions::grace_seconds`], cancels those still running, and
/// returns when every connection is closed.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(options.grace_seconds);
    let shared = Arc::new(Shared {
        engine,
        options,
        metrics: Metrics::default(),
        admitted: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        shutting_down: AtomicBool::new(false),
        tokens: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        left: tokio::sync::Notify::new(),
    });
    let app = router(shared.clone());
    let drained = {
        let shared = shared.clone();
        async move {
            shutdown.await;
            shared.shutting_down.store(true, Ordering::SeqCst);
            let pending = shared.admitted.load(Ordering::SeqCst);
            eprintln!(
                "ponder serve: shutting down; {pending} request(s) running or waiting, {} s to finish",
                grace.as_secs()
            );
            let idle = async {
                loop {
                    let left = shared.left.notified();
                    if shared.admitted.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    left.await;
                }
            };
            tokio::pin!(idle);
            if tokio::time::timeout(grace, &mut idle).await.is_err() {
                let tokens: Vec<CancelToken> = shared.tokens.lock().values().cloned().collect();
                eprintln!(
                    "ponder serve: grace period over; cancelling {} solve(s)",
                    tokens.len()
                );
                for t in tokens {
                    t.cancel();
                }
                idle.await;
            }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(drained)
        .await
}

/// Waits for SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Serves `engine` as set in `options` until SIGTERM or Ctrl-C (the `ponder serve` command).
/// Prints `listening on http://ADDR` to stderr once it accepts connections.
///
/// # Errors
/// A bad setting ([`ConfigError`]); the address cannot be bound.
pub fn serve(engine: Engine, options: ServeOptions) -> crate::Result<()> {
    let addr = options.bind_address()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ConfigError::new("runtime", format!("cannot start tokio: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            ConfigError::new(
                "port",
                format!("cannot listen on {addr}: {e}; pick another --port (0 picks a free one)"),
            )
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| ConfigError::new("port", format!("cannot read the bound address: {e}")))?;
        eprintln!(
            "ponder serve: listening on http://{local} (model {}, strategies by prefix: {})",
            options.model_name,
            Named::prefixes()
                .map(|p| format!("{p}…"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        serve_on(listener, Arc::new(engine), options, shutdown_signal())
            .await
            .map_err(|e| ConfigError::new("server", format!("the server failed: {e}")))?;
        eprintln!("ponder serve: stopped");
        Ok(())
    })
}

/// Whether `ip` is a loopback address (v4 127/8, v6 ::1, v4-mapped loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_bind_needs_a_key() {
        let o = ServeOptions {
            host: "0.0.0.0".into(),
            ..ServeOptions::default()
        };
        assert_eq!(o.bind_address().unwrap_err().field, "host");
        let o = ServeOptions {
            api_key: Some("k".into()),
            ..o
        };
        assert!(o.bind_address().is_ok());
        let o = ServeOptions {
            host: "localhost".into(),
            ..ServeOptions::default()
        };
        assert!(is_loopback(o.bind_address().unwrap().ip()));
    }
}
