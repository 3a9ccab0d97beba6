//! `ponder serve`: an OpenAI-compatible HTTP server (axum on tokio) whose model names pick search
//! strategies, optillm-style.
//!
//! - `POST /v1/chat/completions`: a model name with a strategy prefix ([`ALIASES`]: `bon-…`,
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

mod chat;
pub mod completions;
mod config;
pub mod metrics;
pub mod openai;
pub mod plain;
pub mod plan;
pub mod request;

pub use config::ServeFile;
pub use plan::{plan, plan_completion, Plan};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::error::ConfigError;
use crate::lm::{FinishReason, Usage};
use crate::strategy::{BestOfNConfig, Event, Flow, Rerank, StopReason};
use crate::{CancelToken, Engine, Outcome, StrategyConfig};

use metrics::{Gauges, Metrics};
use openai::{ApiError, ApiUsage, ChoiceText};

pub use openai::ChatResponse;

/// The model-name prefixes that pick a search, and what they pick.
pub const ALIASES: &[(&str, Alias)] = &[
    ("best-of-n-", Alias::BestOfN),
    ("bon-", Alias::BestOfN),
    ("mcts-", Alias::Mcts),
    ("beam-", Alias::Beam),
    ("self-correct-", Alias::SelfCorrect),
    ("deepening-", Alias::Deepening),
    ("majority-", Alias::Majority),
    ("self-consistency-", Alias::Majority),
    ("deepconf-", Alias::DeepConf),
    ("adaptive-", Alias::Adaptive),
];

/// A search a model-name prefix picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alias {
    /// Best-of-N reranked by the self-judge (optillm's `bon`).
    BestOfN,
    /// Step-level MCTS.
    Mcts,
    /// Step-level beam search.
    Beam,
    /// Self-correction.
    SelfCorrect,
    /// Iterative deepening.
    Deepening,
    /// Best-of-N by majority vote (self-consistency).
    Majority,
    /// DeepConf.
    DeepConf,
    /// Adaptive consistency: majority voting that stops once the answer is settled.
    Adaptive,
}

impl Alias {
    /// The alias's default configuration.
    pub fn config(self) -> StrategyConfig {
        let named = |name: &str| StrategyConfig::default_for(name).expect("a known strategy");
        match self {
            Self::BestOfN => StrategyConfig::BestOfN(BestOfNConfig {
                rerank: Rerank::Judge,
                ..BestOfNConfig::default()
            }),
            Self::Majority => StrategyConfig::BestOfN(BestOfNConfig {
                rerank: Rerank::Vote,
                ..BestOfNConfig::default()
            }),
            Self::Mcts => named("mcts"),
            Self::Beam => named("beam"),
            Self::SelfCorrect => named("self_correct"),
            Self::Deepening => named("deepening"),
            Self::DeepConf => named("deepconf"),
            Self::Adaptive => named("adaptive"),
        }
    }
}

/// The search a model name picks, if it starts with a strategy prefix (case-insensitive).
pub fn alias_of(model: &str) -> Option<Alias> {
    let lower = model.to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(_, a)| *a)
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

/// The server's shared state.
struct Shared {
    engine: Arc<Engine>,
    options: ServeOptions,
    metrics: Metrics,
    /// Requests admitted and not yet finished solving.
    admitted: AtomicUsize,
    /// Solves on blocking threads.
    running: AtomicUsize,
    shutting_down: AtomicBool,
    /// The token of every admitted request, to cancel them all when the grace period ends.
    tokens: Mutex<HashMap<u64, CancelToken>>,
    next_id: AtomicU64,
    /// Signalled whenever a request leaves the queue.
    left: tokio::sync::Notify,
}

impl Shared {
    fn gauges(&self, context: Option<crate::lm::ContextLoad>) -> Gauges {
        Gauges {
            queue_depth: self.admitted.load(Ordering::SeqCst),
            queue_capacity: self.options.max_queue,
            solves_running: self.running.load(Ordering::SeqCst),
            shutting_down: self.shutting_down.load(Ordering::SeqCst),
            context,
        }
    }

    fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down and takes no new requests; retry against another instance",
        )
    }

    /// Admits a request, or says why not (503 shutting down, 429 queue full).
    fn admit(self: &Arc<Self>) -> Result<Ticket, ApiError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(Self::unavailable());
        }
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        if before >= self.options.max_queue {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
                format!(
                    "the server is busy: {} requests are running or waiting (--max-queue {}); retry later",
                    before, self.options.max_queue
                ),
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let token = CancelToken::new();
        self.tokens.lock().insert(id, token.clone());
        Ok(Ticket {
            shared: self.clone(),
            id,
            token,
        })
    }
}

/// An admitted request's place in the queue, held by its solve until it returns.
struct Ticket {
    shared: Arc<Shared>,
    id: u64,
    token: CancelToken,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.tokens.lock().remove(&self.id);
        self.shared.admitted.fetch_sub(1, Ordering::SeqCst);
        self.shared.left.notify_waiters();
    }
}

/// Cancels a solve when dropped: held by the handler (or the event stream) that waits for it,
/// so a client that goes away cancels its solve.
struct CancelOnDrop {
    token: CancelToken,
    deadline: tokio::task::AbortHandle,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.token.cancel();
        self.deadline.abort();
    }
}

/// What a solve gave.
#[derive(Debug)]
enum Solution {
    /// A search's outcome.
    Search(Box<Outcome>),
    /// Plain generation's completions.
    Plain(plain::Generated),
}

impl Solution {
    /// The response's `usage`.
    fn api_usage(&self) -> ApiUsage {
        match self {
            Self::Search(o) => ApiUsage::of(o),
            Self::Plain(g) => ApiUsage::plain(&g.usage, g.sampled),
        }
    }

    /// The engine's counters of the solve.
    fn usage(&self) -> &Usage {
        match self {
            Self::Search(o) => &o.usage,
            Self::Plain(g) => &g.usage,
        }
    }
}

/// A solve's result as the handler needs it.
type Solved = Result<Solution, ApiError>;

/// Why a cancelled solve was cancelled, for its status.
fn cancelled_error(shared: &Shared, deadline_hit: bool) -> ApiError {
    if shared.shutting_down.load(Ordering::SeqCst) {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server shut down before the search finished; retry against another instance",
        )
    } else if deadline_hit {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "solve_timeout",
            format!(
                "the search ran past this server's limit of {} s (--max-solve-seconds) and was cancelled; ask for a smaller budget",
                shared.options.max_solve_seconds
            ),
        )
    } else {
        ApiError::new(
            StatusCode::from_u16(499).expect("499 is a valid code"),
            "server_error",
            "client_closed_request",
            "the client went away; the search was cancelled",
        )
    }
}

/// Plain generation's errors: a bad token id names `prompt`, logprobs the backend cannot give
/// name `logprobs`.
fn plain_error(e: crate::Error) -> ApiError {
    match &e {
        crate::Error::Config(c) => ApiError::invalid("prompt", "invalid_value", c.to_string()),
        crate::Error::Decode(crate::DecodeError::Unsupported { .. }) => {
            ApiError::invalid("logprobs", "unsupported_parameter", e.to_string())
        }
        _ => ApiError::from(e),
    }
}

/// Starts `plan`'s solve on a blocking thread; `events` sees a search's progress. The returned
/// guard cancels the solve when dropped; the receiver gets the result.
fn start_solve(
    shared: &Arc<Shared>,
    ticket: Ticket,
    plan: Plan,
    mut events: impl FnMut(&Event) -> Flow + Send + 'static,
) -> (CancelOnDrop, tokio::sync::oneshot::Receiver<Solved>) {
    let token = ticket.token.clone();
    let deadline_hit = Arc::new(AtomicBool::new(false));
    let deadline = {
        let token = token.clone();
        let hit = deadline_hit.clone();
        let after = Duration::from_secs(shared.options.max_solve_seconds);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            hit.store(true, Ordering::SeqCst);
            token.cancel();
        })
        .abort_handle()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let shared = shared.clone();
    let label = plan.label();
    tokio::task::spawn_blocking(move || {
        let ticket = ticket;
        shared.running.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let result = match &plan {
            Plan::Search { strategy, problem } => shared
                .engine
                .solve_with_token(problem, strategy, &mut events, &ticket.token)
                .map(|o| Solution::Search(Box::new(o))),
            Plan::Plain(job) => plain::run(&shared.engine, job, &ticket.token)
                .map(Solution::Plain)
                .map_err(crate::Error::from),
        };
        shared.running.fetch_sub(1, Ordering::SeqCst);
        let cancelled = ticket.token.is_cancelled();
        let hit = deadline_hit.load(Ordering::SeqCst);
        if cancelled {
            shared.metrics.cancelled();
        }
        let solved: Solved = match result {
            Ok(solution) => {
                let partial = matches!(&solution, Solution::Search(o)
                    if o.tree.as_ref().is_some_and(|t| t.stop == StopReason::Cancelled));
                shared
                    .metrics
                    .solved(solution.usage(), started.elapsed().as_secs_f64());
                if partial && cancelled && !hit && !shared.shutting_down.load(Ordering::SeqCst) {
                    Err(cancelled_error(&shared, false))
                } else {
                    Ok(solution)
                }
            }
            Err(_) if cancelled => Err(cancelled_error(&shared, hit)),
            Err(e) if plan.is_plain() => Err(plain_error(e)),
            Err(e) => Err(ApiError::from(e)),
        };
        let status = solved.as_ref().map_or_else(|e| e.status.as_u16(), |_| 200);
        shared.metrics.request(label, status);
        let _ = tx.send(solved);
    });
    (CancelOnDrop { token, deadline }, rx)
}

/// Runs `plan` and waits for it, collecting a search's progress for `reasoning_content`.
async fn solve_collecting(
    shared: &Arc<Shared>,
    ticket: Ticket,
    plan: Plan,
) -> Result<(Solution, Option<String>), ApiError> {
    let plain = plan.is_plain();
    let reasoning = Arc::new(Mutex::new(String::new()));
    let log = reasoning.clone();
    let events = move |e: &Event| {
        let mut log = log.lock();
        if log.len() < 64 * 1024 {
            log.push_str(&describe(e));
        }
        Flow::Continue
    };
    let (_guard, rx) = start_solve(shared, ticket, plan, events);
    // The status is counted where the solve ends (also when this future is dropped because the
    // client went away).
    let solution = rx.await.unwrap_or_else(|_| Err(panicked()))?;
    let reasoning = std::mem::take(&mut *reasoning.lock());
    Ok((
        solution,
        (!plain && !reasoning.is_empty()).then_some(reasoning),
    ))
}

fn panicked() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "solve_panicked",
        "the solve stopped unexpectedly (a bug: please report it with the request)",
    )
}

/// One line of the search's progress, for `reasoning_content`.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Step {
            node,
            parent,
            depth,
            text,
            ..
        } => format!("[step {node} <- {parent}, depth {depth}] {}\n", text.trim()),
        Event::Scored { node, judge, value } => {
            format!("[judged {node}] judge {judge:.2}, value {value:.2}\n")
        }
        Event::Sample {
            index,
            tokens,
            answer,
            finish,
        } => format!(
            "[sample {index}] {tokens} tokens, {finish}, answer {}\n",
            answer.as_deref().unwrap_or("none")
        ),
        Event::Candidate {
            index,
            answer,
            score,
        } => format!(
            "[candidate {index}] answer {}, score {score:.3}\n",
            answer.as_deref().unwrap_or("none")
        ),
        Event::Done { answer, score } => format!(
            "[chosen] answer {}, score {score:.3}\n",
            answer.as_deref().unwrap_or("none")
        ),
    }
}

/// The choices of a solution: every returned completion of plain generation, the chosen
/// candidate of a search.
fn choices(solution: &Solution) -> Vec<ChoiceText> {
    match solution {
        Solution::Plain(g) => g
            .choices
            .iter()
            .map(|c| ChoiceText {
                text: c.text.clone(),
                finish: c.finish,
                tokens: c.tokens.clone(),
            })
            .collect(),
        Solution::Search(outcome) => {
            let finish =
                outcome
                    .candidates
                    .get(outcome.chosen)
                    .map_or("stop", |c| match c.finish {
                        FinishReason::MaxTokens | FinishReason::ContextFull => "length",
                        _ => "stop",
                    });
            vec![ChoiceText {
                text: outcome.text.clone(),
                finish,
                tokens: None,
            }]
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "request_too_large",
        format!("the request body is larger than this server's limit of {limit} bytes (--max-body-bytes); send less"),
    )
}

/// The request body, within `--max-body-bytes`.
async fn read_body(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = shared.options.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    // A declared length within the limit that cannot be read is a broken body, not a big one.
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if declared.is_some() {
            ApiError::bad_request(format!("could not read the request body: {e}"), None)
        } else {
            too_large(limit)
        }
    })
}

/// Streams `plan`'s solve as server-sent events: `first` (if any), `progress(line)` for each
/// event of a search, the chunks `last` makes of the result (or the error body), then `[DONE]`.
fn sse(
    shared: &Arc<Shared>,
    ticket: Ticket,
    plan: Plan,
    first: Option<Value>,
    progress: impl Fn(String) -> Value + Send + 'static,
    last: impl FnOnce(Solution) -> Vec<Value> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    if let Some(first) = first {
        let _ = tx.send(first);
    }
    let events = {
        let tx = tx.clone();
        let plain = plan.is_plain();
        move |e: &Event| {
            if plain {
                return Flow::Continue;
            }
            if tx.send(progress(describe(e))).is_err() {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
    };
    let (guard, rx_solved) = start_solve(shared, ticket, plan, events);
    tokio::spawn(async move {
        let Ok(solved) = rx_solved.await else { return };
        match solved {
            Ok(solution) => {
                for chunk in last(solution) {
                    let _ = tx.send(chunk);
                }
            }
            Err(e) => {
                let _ = tx.send(e.body());
            }
        }
        let _ = tx.send(Value::Null);
    });
    let events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(move |v| {
        // The guard lives as long as the stream: a client that goes away drops the stream and
        // so cancels the solve.
        let _ = &guard;
        Ok::<_, std::convert::Infallible>(if v.is_null() {
            SseEvent::default().data("[DONE]")
        } else {
            SseEvent::default().data(v.to_string())
        })
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(1)))
        .into_response()
}

async fn models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let name = &shared.options.model_name;
    let created = now();
    let mut data =
        vec![json!({"id": name, "object": "model", "created": created, "owned_by": "ponder"})];
    for (prefix, _) in ALIASES {
        data.push(json!({
            "id": format!("{prefix}{name}"), "object": "model", "created": created, "owned_by": "ponder",
        }));
    }
    Json(json!({"object": "list", "data": data}))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutting_down.load(Ordering::SeqCst) {
        return Shared::unavailable().into_response();
    }
    Json(json!({"status": "ok", "model": shared.options.model_name})).into_response()
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    // The context's load takes its lock for a moment (between two forward passes): off the
    // async threads.
    let engine = shared.engine.clone();
    let context = tokio::task::spawn_blocking(move || engine.context_load())
        .await
        .ok()
        .flatten();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(shared.gauges(context)),
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        format!(
            "no route {} {}; ponder serves POST /v1/chat/completions, POST /v1/completions, GET /v1/models, /health and /metrics",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Compares without an early exit, so that timing does not tell how much of a key was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(key) = &shared.options.api_key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same_secret(g.trim().as_bytes(), key.as_bytes()) => next.run(request).await,
        _ => {
            let label = "-";
            shared.metrics.request(label, 401);
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                "missing or wrong API key: send the header Authorization: Bearer <key> with the key the server was started with (--api-key)",
            )
            .into_response()
        }
    }
}

/// The router over `engine`.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handler))
        .route("/v1/completions", post(completions::handler))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
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
            ALIASES
                .iter()
                .map(|(p, _)| format!("{p}…"))
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
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
