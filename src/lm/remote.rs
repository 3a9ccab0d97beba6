//! [`RemoteLm`]: the [`Lm`] tree over models served by engines that speak the OpenAI-compatible
//! HTTP API (llama.cpp's `llama-server`, vLLM, SGLang).
//!
//! A node is a token prefix kept on the client. Every request sends the whole prefix as token ids
//! (`"prompt": [ids…]`), so what the server sees is exactly the node, and the server's own prefix
//! cache (llama-server's `cache_prompt`, vLLM's `--enable-prefix-caching`, SGLang's radix cache)
//! is what keeps a tree search from paying for its shared prefixes again: [`Usage::reused_tokens`]
//! counts the prompt tokens the servers report as cached, [`Usage::prefill_tokens`] the ones they
//! processed.
//!
//! Endpoints used: `POST /v1/completions` (sampling, and one-token completions with top
//! logprobs for [`Lm::next_token_probs`]); `POST /tokenize` and `POST /detokenize` (llama-server
//! and vLLM shapes); `POST /apply-template` (llama-server) or `/tokenize` with `messages` (vLLM)
//! for the chat template; `GET /v1/models` and `GET /props` at start for the model's name,
//! vocabulary and context size. With [`RemoteOptions::tokenizer`] text is tokenised on the
//! client instead (a `tokenizer.json` checked against the first server's `/tokenize` at connect
//! time), which saves one round trip per prompt, forced text and step cut at a stop string.
//! [`Lm::forced_logprobs`] needs prompt log-probabilities, which llama-server does not return:
//! it is [`DecodeError::Unsupported`] there.
//!
//! One connection ([`SharedRemote`]) serves every solve of an [`crate::Engine`]: each solve gets
//! its own [`RemoteLm`] handle (its own nodes, interrupt and usage) over the one HTTP client, so
//! that [`RemoteOptions::max_in_flight`] caps the requests of all solves together and the choice
//! of server sees every request in flight. Requests of one call run concurrently, each (once the
//! cap lets it go, in order of arrival) to the server with the fewest outstanding requests; a connection error, a 5xx/429 status or an
//! unreadable body is retried with exponential backoff on another server where there is one, and
//! after the last attempt the call fails with [`DecodeError::Remote`]. Nothing is half-applied: a
//! failed call creates no node.
//!
//! Token confidence ([`Generation::confidence`]): every completion asks for the top
//! [`super::CONFIDENCE_TOP_K`] log-probabilities of each sampled position, and a token's
//! confidence is minus their mean, as in the llama.cpp backend. A server that returns fewer
//! candidates gives the mean of those it returned; one that returns no top list gives minus the
//! sampled token's own log-probability (a cruder, k = 1 confidence), and one that returns no
//! log-probabilities at all an empty list. A request's [`super::ConfidenceStop`] cannot stop a
//! server mid-completion: the whole completion is read and its finish is
//! [`FinishReason::LowConfidence`] when the condition held at some token (no tokens are saved).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::nodes::NodeTable;
use super::tokenizer::{self, ClientTokenizer};
use super::{FinishReason, GenRequest, Generation, Interrupt, Lm, Message, Node, TokenId, Usage};
use crate::error::{ConfigError, DecodeError, LoadError};

/// How to reach the served model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteOptions {
    /// Base URLs of the servers (`http://host:port`, without `/v1`); requests are spread over all.
    pub urls: Vec<String>,
    /// The `model` field of each request; default: the first model the first server lists.
    pub model: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Most HTTP requests in flight at once, over all servers and all solves sharing the
    /// connection; more wait their turn in order of arrival.
    pub max_in_flight: usize,
    /// Time limit of one HTTP request, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts per request (the first included) before the call fails.
    pub attempts: u32,
    /// Wait before the second attempt, in milliseconds; doubled before each further one.
    pub backoff_ms: u64,
    /// How many most-likely next tokens [`Lm::next_token_probs`] asks for; a candidate outside
    /// them gets probability 0.
    pub top_logprobs: u32,
    /// The context size per request; default: what the server reports (`/props`, vLLM's
    /// `max_model_len`).
    pub n_ctx: Option<u32>,
    /// A Hugging Face `tokenizer.json` of the served model: text is then tokenised on the client
    /// instead of by one `POST /tokenize` per call (`scripts/export-tokenizer.py` writes one from
    /// the model's GGUF file). At connect time it must tokenise a set of probe strings exactly as
    /// the server does, or the connection is refused ([`LoadError::TokenizerMismatch`]).
    pub tokenizer: Option<PathBuf>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            model: None,
            api_key: None,
            max_in_flight: 16,
            timeout_ms: 120_000,
            attempts: 4,
            backoff_ms: 250,
            top_logprobs: 20,
            n_ctx: None,
            tokenizer: None,
        }
    }
}

impl RemoteOptions {
    /// Options for the servers at `urls`, other fields default.
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.urls.is_empty() {
            return Err(ConfigError::new(
                "url",
                "no server given; pass --url http://HOST:PORT (more than once for several servers)",
            ));
        }
        for u in &self.urls {
            check_url(u)?;
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::new(
                "max_in_flight",
                "0 would send nothing; allow at least 1 request in flight",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new(
                "timeout_ms",
                "0 would fail every request; give a time limit in milliseconds",
            ));
        }
        if self.attempts == 0 {
            return Err(ConfigError::new(
                "attempts",
                "0 would send nothing; use at least 1",
            ));
        }
        if self.top_logprobs == 0 {
            return Err(ConfigError::new(
                "top_logprobs",
                "0 would give every candidate probability 0; use at least 1 (20 is typical)",
            ));
        }
        Ok(())
    }
}

/// A server's base URL: `http://` or `https://`, a host, an optional port.
fn check_url(u: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        ConfigError::new(
            "url",
            format!("{u:?} {why}; give a base URL such as http://127.0.0.1:8080"),
        )
    };
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(bad("is not an http:// or https:// URL"));
    }
    let parsed = url::Url::parse(u).map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("has a query or fragment, which a base URL cannot have"));
    }
    Ok(())
}

/// One server and its outstanding requests.
#[derive(Debug)]
struct Server {
    url: String,
    outstanding: AtomicUsize,
    peak_outstanding: AtomicUsize,
    sent: AtomicUsize,
    failed: AtomicUsize,
    last_failure: Mutex<Option<String>>,
}

impl Server {
    fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            outstanding: AtomicUsize::new(0),
            peak_outstanding: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            last_failure: Mutex::new(None),
        }
    }
}

/// What one server has been sent so far: see [`RemoteLm::server_stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStats {
    /// The server's base URL.
    pub url: String,
    /// HTTP requests sent to it, retries included.
    pub sent: usize,
    /// Of those, the ones that failed (timeout, connection error, an error status, a body that
    /// is not JSON); each transient failure was retried, on another server where there is one.
    pub failed: usize,
    /// Why the latest failed request failed.
    pub last_failure: Option<String>,
    /// The most requests it had outstanding at once.
    pub peak_outstanding: usize,
}

/// Why one HTTP exchange failed.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt: connection error or timeout (no status), 5xx, 429, 408, or a
    /// body that is not JSON (with its status).
    Transient(Option<u16>, String),
    /// The server refused the request (4xx): retrying would not help.
    Refused(u16, String),
}

/// At most `cap` requests in flight; the others wait in order of arrival.
#[derive(Debug)]
struct Gate {
    cap: usize,
    state: Mutex<GateState>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    in_flight: usize,
    peak: usize,
    next_ticket: u64,
    waiting: VecDeque<u64>,
}

/// A request's place in flight; given back on drop.
struct Permit<'a>(&'a Gate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.state.lock().in_flight -= 1;
        self.0.turn.notify_all();
    }
}

impl Gate {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            state: Mutex::new(GateState::default()),
            turn: Condvar::new(),
        }
    }

    /// Waits for a place in flight (first come, first served); a waiting caller whose
    /// `interrupt` fires leaves the line with [`DecodeError::Cancelled`].
    fn enter(&self, interrupt: Option<&Interrupt>) -> Result<Permit<'_>, DecodeError> {
        let mut state = self.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(ticket);
        loop {
            if state.in_flight < self.cap && state.waiting.front() == Some(&ticket) {
                state.waiting.pop_front();
                state.in_flight += 1;
                state.peak = state.peak.max(state.in_flight);
                drop(state);
                // The next in line may fit too.
                self.turn.notify_all();
                return Ok(Permit(self));
            }
            if interrupt.is_some_and(|i| i()) {
                state.waiting.retain(|&t| t != ticket);
                drop(state);
                self.turn.notify_all();
                return Err(DecodeError::Cancelled);
            }
            // Interrupts are plain closures: look at them now and then.
            self.turn.wait_for(
                &mut state,
                Duration::from_millis(if interrupt.is_some() { 20 } else { 200 }),
            );
        }
    }
}

/// The servers, the HTTP agent, the retry policy and the cap on requests in flight; shared by
/// every solve of a connection and the worker threads of their calls.
struct Client {
    servers: Vec<Server>,
    agent: ureq::Agent,
    opts: RemoteOptions,
    gate: Gate,
    /// HTTP requests sent per endpoint path, retries included.
    requests: Mutex<BTreeMap<String, usize>>,
}

impl Client {
    fn new(opts: &RemoteOptions) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_millis(opts.timeout_ms))
            .max_idle_connections_per_host(opts.max_in_flight.max(1))
            .build();
        Self {
            servers: opts.urls.iter().map(|u| Server::new(u)).collect(),
            agent,
            opts: opts.clone(),
            gate: Gate::new(opts.max_in_flight),
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    /// The server with the fewest outstanding requests, avoiding `avoid` when there is another.
    fn pick(&self, avoid: Option<usize>) -> usize {
        (0..self.servers.len())
            .filter(|&i| Some(i) != avoid || self.servers.len() == 1)
            .min_by_key(|&i| (self.servers[i].outstanding.load(Ordering::SeqCst), i))
            .unwrap_or(0)
    }

    fn once(&self, server: usize, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let s = &self.servers[server];
        let url = format!("{}{path}", s.url);
        let mut req = match body {
            Some(_) => self.agent.post(&url),
            None => self.agent.get(&url),
        };
        if let Some(key) = &self.opts.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let now = s.outstanding.fetch_add(1, Ordering::SeqCst) + 1;
        s.peak_outstanding.fetch_max(now, Ordering::SeqCst);
        s.sent.fetch_add(1, Ordering::SeqCst);
        *self.requests.lock().entry(path.to_string()).or_default() += 1;
        let result = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        s.outstanding.fetch_sub(1, Ordering::SeqCst);
        let outcome = Self::read(result);
        if let Err(Failure::Transient(_, m) | Failure::Refused(_, m)) = &outcome {
            s.failed.fetch_add(1, Ordering::SeqCst);
            *s.last_failure.lock() = Some(m.clone());
        }
        outcome
    }

    /// The JSON body of a response, or why there is none.
    fn read(result: Result<ureq::Response, ureq::Error>) -> Result<Value, Failure> {
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let message = server_message(&text);
                return Err(if code >= 500 || code == 429 || code == 408 {
                    Failure::Transient(Some(code), format!("HTTP {code}: {message}"))
                } else {
                    Failure::Refused(code, message)
                });
            }
            Err(e) => return Err(Failure::Transient(None, e.to_string())),
        };
        let status = Some(response.status());
        let text = response
            .into_string()
            .map_err(|e| Failure::Transient(None, format!("reading the response: {e}")))?;
        serde_json::from_str(&text).map_err(|e| {
            let head: String = text.chars().take(80).collect();
            Failure::Transient(status, format!("the response is not JSON ({e}): {head:?}"))
        })
    }

    /// `body` to `path` with retries; `None` is a GET.
    fn call(
        &self,
        path: &str,
        body: Option<&Value>,
        interrupt: Option<&Interrupt>,
    ) -> Result<Value, DecodeError> {
        let mut last: Option<(usize, Option<u16>, String)> = None;
        let mut wait = Duration::from_millis(self.opts.backoff_ms);
        for attempt in 0..self.opts.attempts {
            if interrupt.is_some_and(|i| i()) {
                return Err(DecodeError::Cancelled);
            }
            if attempt > 0 {
                sleep_unless(wait, interrupt)?;
                wait = wait.saturating_mul(2);
            }
            let permit = self.gate.enter(interrupt)?;
            let server = self.pick(last.as_ref().map(|l| l.0));
            let outcome = self.once(server, path, body);
            drop(permit);
            match outcome {
                Ok(v) => return Ok(v),
                Err(Failure::Transient(status, m)) => last = Some((server, status, m)),
                Err(Failure::Refused(code, message)) => {
                    return Err(DecodeError::Remote {
                        url: format!("{}{path}", self.servers[server].url),
                        status: Some(code),
                        message: format!("refused with HTTP {code}: {message}"),
                        attempts: attempt + 1,
                    })
                }
            }
        }
        let (server, status, message) = last.expect("at least one attempt");
        Err(DecodeError::Remote {
            url: format!("{}{path}", self.servers[server].url),
            status,
            message,
            attempts: self.opts.attempts,
        })
    }

    /// Every body to `path`, at most `max_in_flight` at once; results in order. The first
    /// failure stops the requests not yet sent.
    fn call_many(
        &self,
        path: &str,
        bodies: &[Value],
        interrupt: Option<&Interrupt>,
    ) -> Result<Vec<Value>, DecodeError> {
        if bodies.len() == 1 {
            return Ok(vec![self.call(path, Some(&bodies[0]), interrupt)?]);
        }
        let next = AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let results: Mutex<Vec<Option<Result<Value, DecodeError>>>> =
            Mutex::new((0..bodies.len()).map(|_| None).collect());
        let workers = self.opts.max_in_flight.min(bodies.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= bodies.len() || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let r = self.call(path, Some(&bodies[i]), interrupt);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    results.lock()[i] = Some(r);
                });
            }
        });
        let mut out = Vec::with_capacity(bodies.len());
        let mut first_error = None;
        for r in results.into_inner() {
            match r {
                Some(Ok(v)) => out.push(v),
                // A cancellation is only reported when nothing else went wrong.
                Some(Err(e))
                    if first_error.is_none()
                        || matches!(first_error, Some(DecodeError::Cancelled)) =>
                {
                    first_error = Some(e);
                }
                Some(Err(_)) | None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

fn sleep_unless(wait: Duration, interrupt: Option<&Interrupt>) -> Result<(), DecodeError> {
    let end = Instant::now() + wait;
    while Instant::now() < end {
        if interrupt.is_some_and(|i| i()) {
            return Err(DecodeError::Cancelled);
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
    Ok(())
}

/// The error message inside a server's error body (OpenAI shape `{"error":{"message":…}}`), else
/// the start of the body.
fn server_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.chars().take(200).collect())
}

impl Client {
    /// A reply to `path` that parsed as JSON but is not the shape a llama.cpp server sends. Its
    /// URL is the server's (or the list, when several could have answered); the exchange
    /// succeeded at HTTP level (200) and is not retried.
    fn bad_response(&self, path: &str, v: &Value) -> DecodeError {
        let head: String = v.to_string().chars().take(160).collect();
        let url = match self.servers.as_slice() {
            [one] => format!("{}{path}", one.url),
            many => format!(
                "{path} of one of {}",
                many.iter()
                    .map(|s| s.url.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        DecodeError::Remote {
            url,
            status: Some(200),
            message: format!("unexpected response: {head}"),
            attempts: 1,
        }
    }
}

/// One sampled token as a server reports it.
struct Sampled {
    id: Option<TokenId>,
    text: String,
    logprob: f64,
    /// Minus the mean of the position's top log-probabilities, where the server gave them.
    confidence: Option<f32>,
}

/// One completion as read: the new tokens, text, log-likelihood, finish reason and token
/// confidences.
type ReadGeneration = (Vec<TokenId>, String, f64, FinishReason, Vec<f32>);

/// Minus the mean of a list of log-probabilities (`None` for an empty list).
fn confidence_of(lps: impl Iterator<Item = f64>) -> Option<f32> {
    let (mut sum, mut n) = (0.0, 0usize);
    for l in lps.filter(|l| l.is_finite()) {
        sum += l;
        n += 1;
    }
    (n > 0).then(|| (-sum / n as f64) as f32)
}

/// One connection to the servers, shared by the solves of an [`crate::Engine`]: the HTTP
/// client with its cap on requests in flight, what the servers said about the model, and the
/// usage of all solves together. Hand each solve a [`SharedRemote::solve_lm`].
///
/// Thread rules: `Send + Sync`; handles may live on any threads, each used by one at a time.
pub struct SharedRemote {
    client: Client,
    model: String,
    model_path: Option<String>,
    n_ctx: u32,
    vocab: usize,
    token_texts: Mutex<HashMap<TokenId, String>>,
    stop_tokens: Mutex<HashMap<String, Vec<TokenId>>>,
    totals: Mutex<Totals>,
    /// Tokenises on the client instead of the servers' `/tokenize` ([`RemoteOptions::tokenizer`]).
    tokenizer: Option<ClientTokenizer>,
}

/// The usage of all handles, and how long at least one of them was inside a call.
#[derive(Default)]
struct Totals {
    usage: Usage,
    busy: usize,
    busy_since: Option<Instant>,
}

impl std::fmt::Debug for SharedRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRemote")
            .field("urls", &self.client.opts.urls)
            .field("model", &self.model)
            .field("n_ctx", &self.n_ctx)
            .finish_non_exhaustive()
    }
}

impl SharedRemote {
    /// The connection behind `lm`, to share with other solves (`lm`'s own nodes stay with it).
    pub fn new(lm: RemoteLm) -> Arc<Self> {
        lm.shared
    }

    /// A new handle: an [`Lm`] for one solve, with no nodes, no interrupt and zero usage.
    pub fn solve_lm(self: &Arc<Self>) -> RemoteLm {
        RemoteLm {
            shared: self.clone(),
            nodes: NodeTable::new(),
            usage: Usage::default(),
            interrupt: None,
        }
    }

    /// The work done for all solves so far; `wall_ms` is the time during which at least one
    /// solve was inside a call.
    pub fn usage(&self) -> Usage {
        let t = self.totals.lock();
        let mut u = t.usage;
        if let Some(since) = t.busy_since {
            u.wall_ms += since.elapsed().as_millis() as u64;
        }
        u
    }

    /// The most HTTP requests that were in flight at once, over all servers and solves (never
    /// above [`RemoteOptions::max_in_flight`]).
    pub fn peak_in_flight(&self) -> usize {
        self.client.gate.state.lock().peak
    }

    /// HTTP requests in flight now, and waiting for their turn now.
    pub fn in_flight(&self) -> (usize, usize) {
        let s = self.client.gate.state.lock();
        (s.in_flight, s.waiting.len())
    }

    /// Each server's URL, the HTTP requests sent to it so far (retries included), how many of
    /// them failed, and the most it had outstanding at once.
    pub fn server_stats(&self) -> Vec<ServerStats> {
        self.client
            .servers
            .iter()
            .map(|s| ServerStats {
                url: s.url.clone(),
                sent: s.sent.load(Ordering::SeqCst),
                failed: s.failed.load(Ordering::SeqCst),
                last_failure: s.last_failure.lock().clone(),
                peak_outstanding: s.peak_outstanding.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// HTTP requests sent so far by every handle of this connection, per endpoint path (such
    /// as `/v1/completions`, `/tokenize`), retries and the requests made at connect time
    /// included.
    pub fn requests(&self) -> BTreeMap<String, usize> {
        self.client.requests.lock().clone()
    }

    /// The tokenizer file text is tokenised with on the client, when one was given.
    pub fn tokenizer_path(&self) -> Option<&Path> {
        self.tokenizer.as_ref().map(ClientTokenizer::path)
    }

    fn enter(&self) {
        let mut t = self.totals.lock();
        if t.busy == 0 {
            t.busy_since = Some(Instant::now());
        }
        t.busy += 1;
    }

    fn leave(&self) {
        let mut t = self.totals.lock();
        t.busy -= 1;
        if t.busy == 0 {
            if let Some(since) = t.busy_since.take() {
                t.usage.wall_ms += since.elapsed().as_millis() as u64;
            }
        }
    }
}

/// An [`Lm`] whose model runs behind one or more OpenAI-compatible servers: one solve's handle
/// on a [`SharedRemote`] connection (a connected `RemoteLm` is the first handle).
///
/// Thread rules: as every [`Lm`], used from one thread at a time; each call fans its requests
/// out over worker threads itself. For concurrent solves, give each its own handle
/// ([`RemoteLm::shared`], [`SharedRemote::solve_lm`]; an [`crate::Engine`] does that).
pub struct RemoteLm {
    shared: Arc<SharedRemote>,
    nodes: NodeTable<Vec<TokenId>>,
    usage: Usage,
    interrupt: Option<Interrupt>,
}

impl std::fmt::Debug for RemoteLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLm")
            .field("urls", &self.shared.client.opts.urls)
            .field("model", &self.shared.model)
            .field("n_ctx", &self.shared.n_ctx)
            .field("nodes", &self.nodes.count())
            .finish_non_exhaustive()
    }
}

impl RemoteLm {
    /// Connects to the servers: asks the first for its model, vocabulary and context size, and
    /// checks that every other one answers.
    ///
    /// # Errors
    /// [`LoadError::Config`] for invalid options; [`LoadError::Remote`] when a server cannot be
    /// reached (after the configured attempts) or does not say what its context size is.
    pub fn connect(opts: &RemoteOptions) -> Result<Self, LoadError> {
        opts.validate()?;
        // The file first: a wrong path needs no server to be reported.
        let tokenizer = opts
            .tokenizer
            .as_deref()
            .map(ClientTokenizer::load)
            .transpose()?;
        let client = Client::new(opts);
        let unreachable = |i: usize, e: DecodeError| LoadError::Remote {
            url: client.servers[i].url.clone(),
            message: e.to_string(),
        };
        let mut model = opts.model.clone();
        let mut n_ctx = opts.n_ctx;
        let mut vocab = None;
        let mut model_path = None;
        for i in 0..client.servers.len() {
            let one = Client::new(&RemoteOptions {
                urls: vec![client.servers[i].url.clone()],
                ..opts.clone()
            });
            let models = one
                .call("/v1/models", None, None)
                .map_err(|e| unreachable(i, e))?;
            if i > 0 {
                continue;
            }
            let first = models.pointer("/data/0");
            if model.is_none() {
                model = first
                    .and_then(|m| m.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            vocab = first
                .and_then(|m| m.pointer("/meta/n_vocab"))
                .and_then(Value::as_u64)
                .map(|v| v as usize);
            if n_ctx.is_none() {
                n_ctx = first
                    .and_then(|m| m.get("max_model_len"))
                    .and_then(Value::as_u64)
                    .map(|v| v as u32);
            }
            // llama-server: the context per slot and the model file.
            if let Ok(props) = one.call("/props", None, None) {
                if n_ctx.is_none() {
                    n_ctx = props
                        .pointer("/default_generation_settings/n_ctx")
                        .and_then(Value::as_u64)
                        .map(|v| v as u32);
                }
                model_path = props
                    .get("model_path")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
        let n_ctx = n_ctx.ok_or_else(|| LoadError::Remote {
            url: client.servers[0].url.clone(),
            message: "the server does not report its context size; set n_ctx (--ctx) to it".into(),
        })?;
        let shared = Arc::new(SharedRemote {
            client,
            model: model.unwrap_or_else(|| "default".into()),
            model_path,
            n_ctx,
            vocab: vocab.unwrap_or(usize::MAX),
            token_texts: Mutex::new(HashMap::new()),
            stop_tokens: Mutex::new(HashMap::new()),
            totals: Mutex::new(Totals::default()),
            tokenizer,
        });
        let lm = shared.solve_lm();
        lm.check_tokenizer()?;
        Ok(lm)
    }

    /// With a client tokenizer: tokenises every probe string (and the server's rendering of a
    /// chat, for the template's special tokens) both on the client and with the (first)
    /// server's `/tokenize`, with and without `add_special`, and refuses the first difference.
    fn check_tokenizer(&self) -> Result<(), LoadError> {
        let Some(tok) = &self.shared.tokenizer else {
            return Ok(());
        };
        let url = self.shared.client.servers[0].url.clone();
        let remote = |e: DecodeError| LoadError::Remote {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut probes: Vec<String> = tokenizer::PROBES.iter().map(|p| p.to_string()).collect();
        let chat = [
            Message::system("You are a careful assistant."),
            Message::user("What is 12 * 7? Think step by step."),
            Message::new("assistant", "12 * 7 = 84. The answer is 84."),
            Message::user("And 84 / 4?"),
        ];
        // vLLM has no /apply-template; its chats are still covered by the probes above.
        if let Ok(text) = self.server_chat_text(&chat) {
            probes.push(text);
        }
        let mut asked: Vec<(String, bool)> = probes.iter().map(|p| (p.clone(), false)).collect();
        // A root's prompt (the rendered chat last) is tokenised with add_special.
        asked.extend(
            probes
                .iter()
                .take(2)
                .chain(probes.last())
                .map(|p| (p.clone(), true)),
        );
        // One after the other on one kept-alive connection: a burst of parallel connections can
        // wait out llama-server's keep-alive timeout (5 s) for a free HTTP thread.
        for (text, add_special) in asked {
            let v = self
                .shared
                .client
                .call(
                    "/tokenize",
                    Some(&self.tokenize_body(&text, add_special)),
                    None,
                )
                .map_err(remote)?;
            let server = token_ids(&v, "tokens")
                .ok_or_else(|| self.shared.client.bad_response("/tokenize", &v))
                .map_err(remote)?;
            let client = tok
                .encode(&text, add_special)
                .map_err(|e| LoadError::Tokenizer {
                    path: tok.path().to_path_buf(),
                    reason: e.to_string(),
                })?;
            if let Some(position) = tokenizer::first_difference(&client, &server) {
                return Err(LoadError::TokenizerMismatch {
                    path: tok.path().to_path_buf(),
                    url,
                    text,
                    add_special,
                    position,
                    client: client.get(position).copied(),
                    server: server.get(position).copied(),
                });
            }
        }
        Ok(())
    }

    /// The connection this handle uses, to hand other solves handles of their own.
    pub fn shared(&self) -> Arc<SharedRemote> {
        self.shared.clone()
    }

    /// The served model's name (the `model` field of each request).
    pub fn model_name(&self) -> &str {
        &self.shared.model
    }

    /// The model file the (first) server says it loaded, where it says so (llama-server).
    pub fn model_path(&self) -> Option<&str> {
        self.shared.model_path.as_deref()
    }

    /// The context size each request may fill.
    pub fn n_ctx(&self) -> u32 {
        self.shared.n_ctx
    }

    /// Each server's URL, the HTTP requests sent to it so far (retries included) by every
    /// handle of this connection, and how many of them failed.
    pub fn server_stats(&self) -> Vec<ServerStats> {
        self.shared.server_stats()
    }

    /// The options this model was connected with.
    pub fn options(&self) -> &RemoteOptions {
        &self.shared.client.opts
    }

    fn tokens_of(&self, node: Node) -> Result<&Vec<TokenId>, DecodeError> {
        self.nodes.get(node)
    }

    /// Counts `d` for this handle and for the connection.
    fn count(&mut self, d: &Usage) {
        self.usage.add(d);
        self.shared.totals.lock().usage.add(d);
    }

    fn check_fits(&self, what: &'static str, tokens: usize) -> Result<(), DecodeError> {
        if tokens + 1 > self.shared.n_ctx as usize {
            return Err(DecodeError::ContextOverflow {
                what,
                tokens: tokens + 1,
                n_ctx: self.shared.n_ctx,
            });
        }
        Ok(())
    }

    fn check_vocab(&self, field: &'static str, tokens: &[TokenId]) -> Result<(), DecodeError> {
        if let Some(&t) = tokens
            .iter()
            .find(|&&t| t < 0 || t as usize >= self.shared.vocab)
        {
            return Err(ConfigError::new(
                field,
                format!(
                    "token id {t} is outside the vocabulary (0..{})",
                    self.shared.vocab
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The tokens of `text`, special tokens in it parsed; `add_special` adds the model's BOS/EOS
    /// where it has them. On the client when a tokenizer was given, else by the server.
    fn tokenize_with(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, DecodeError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(tok) = &self.shared.tokenizer {
            return tok.encode(text, add_special);
        }
        let body = self.tokenize_body(text, add_special);
        let v = self
            .shared
            .client
            .call("/tokenize", Some(&body), self.interrupt.as_ref())?;
        token_ids(&v, "tokens").ok_or_else(|| self.shared.client.bad_response("/tokenize", &v))
    }

    /// A `/tokenize` request: llama-server reads `content`/`add_special`, vLLM
    /// `prompt`/`add_special_tokens`.
    fn tokenize_body(&self, text: &str, add_special: bool) -> Value {
        json!({
            "model": self.shared.model,
            "content": text,
            "prompt": text,
            "add_special": add_special,
            "add_special_tokens": add_special,
            "parse_special": true,
        })
    }

    /// HTTP requests sent so far by every handle of this connection, per endpoint path: see
    /// [`SharedRemote::requests`].
    pub fn requests(&self) -> BTreeMap<String, usize> {
        self.shared.requests()
    }

    fn detokenize(&self, tokens: &[TokenId]) -> Result<String, DecodeError> {
        let body = json!({ "model": self.shared.model, "tokens": tokens });
        let v = self.shared.client.call("/detokenize", Some(&body), None)?;
        v.get("content")
            .or_else(|| v.get("prompt"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.shared.client.bad_response("/detokenize", &v))
    }

    fn stop_tokens(&self, stop: &str) -> Result<Vec<TokenId>, DecodeError> {
        if let Some(t) = self.shared.stop_tokens.lock().get(stop) {
            return Ok(t.clone());
        }
        let t = self.tokenize_with(stop, false)?;
        self.shared
            .stop_tokens
            .lock()
            .insert(stop.to_string(), t.clone());
        Ok(t)
    }

    /// The body of a completion request continuing `prompt`.
    fn completion_body(&self, prompt: &[TokenId], max_tokens: u32, logprobs: u32) -> Value {
        json!({
            "model": self.shared.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "logprobs": logprobs,
            "stream": false,
            // llama-server: reuse the longest cached prefix of a slot.
            "cache_prompt": true,
            // vLLM: ids instead of strings in the logprobs, and the stop text left in.
            "return_tokens_as_token_ids": true,
            "include_stop_str_in_output": true,
        })
    }

    /// Adds the servers' counts of `responses` to the usage; `sampled` when their completion
    /// tokens are generated text (not the one-token probes of [`Lm::next_token_probs`], which
    /// must not use up a search's token budget).
    fn account(&mut self, responses: &[Value], sampled: bool) {
        let mut d = Usage::default();
        for v in responses {
            let prompt = v
                .pointer("/usage/prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let cached = v
                .pointer("/usage/prompt_tokens_details/cached_tokens")
                .or_else(|| v.pointer("/timings/cache_n"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(prompt);
            let generated = v
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            d.prefill_tokens += prompt - cached;
            d.reused_tokens += cached;
            if sampled {
                d.generated_tokens += generated;
                d.decoded_tokens += generated;
            }
            d.forward_passes += 1;
        }
        self.count(&d);
    }

    fn timed<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let start = Instant::now();
        self.shared.enter();
        let out = f(self);
        self.shared.leave();
        self.usage.wall_ms += start.elapsed().as_millis() as u64;
        out
    }

    fn generate_inner(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError> {
        for r in requests {
            r.validate()?;
        }
        let mut bodies = Vec::with_capacity(requests.len());
        let mut room = Vec::with_capacity(requests.len());
        for r in requests {
            let prompt = self.tokens_of(r.parent)?;
            self.check_fits("the branch", prompt.len())?;
            let left = (self.shared.n_ctx as usize - prompt.len() - 1) as u32;
            let max_tokens = r.max_tokens.min(left);
            room.push(max_tokens < r.max_tokens);
            let mut body = self.completion_body(prompt, max_tokens, super::CONFIDENCE_TOP_K as u32);
            let s = &r.sampling;
            let extra = json!({
                "temperature": s.temperature,
                "top_p": s.top_p,
                "top_k": s.top_k,
                "min_p": s.min_p,
                // llama-server takes a 32-bit seed (-1 = random): fold the 64 bits into 31.
                "seed": ((s.seed ^ (s.seed >> 32)) & 0x7fff_ffff),
                "stop": r.stop,
                "ignore_eos": r.ignore_eos,
            });
            merge(&mut body, extra);
            bodies.push(body);
        }
        let responses =
            self.shared
                .client
                .call_many("/v1/completions", &bodies, self.interrupt.as_ref())?;
        // Read everything before creating any node, so that a bad response leaves no trace.
        let mut read = Vec::with_capacity(requests.len());
        for ((r, v), clipped) in requests.iter().zip(&responses).zip(&room) {
            read.push(self.read_generation(r, v, *clipped)?);
        }
        self.account(&responses, true);
        let mut out = Vec::with_capacity(read.len());
        for (r, (own, text, logprob, mut finish, confidence)) in requests.iter().zip(read) {
            let mut tokens = self.tokens_of(r.parent)?.clone();
            let n = own.len() as u32;
            tokens.extend(own);
            let node = self.nodes.insert(tokens);
            if r.confidence_stop
                .is_some_and(|c| c.first_trigger(&confidence).is_some())
            {
                finish = FinishReason::LowConfidence;
            }
            out.push(Generation {
                node,
                text,
                tokens: n,
                logprob,
                finish,
                confidence,
                // A server's top log-probabilities do not give the whole distribution.
                certainty: Vec::new(),
                entropy: Vec::new(),
                token_logprobs: Vec::new(),
            });
        }
        Ok(out)
    }

    /// The new tokens, text, log-likelihood and finish reason of one completion.
    fn read_generation(
        &self,
        r: &GenRequest,
        v: &Value,
        clipped: bool,
    ) -> Result<ReadGeneration, DecodeError> {
        let choice = v
            .pointer("/choices/0")
            .ok_or_else(|| self.shared.client.bad_response("/v1/completions", v))?;
        let mut text = choice
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| self.shared.client.bad_response("/v1/completions", v))?
            .to_string();
        let finish = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or("length");
        let sampled = sampled_tokens(choice.get("logprobs"));
        let logprob: f64 = sampled.iter().map(|s| s.logprob).sum();
        let confidence: Vec<f32> = sampled
            .iter()
            .map(|s| s.confidence.unwrap_or(-s.logprob as f32))
            .collect();
        let ids: Option<Vec<TokenId>> = sampled.iter().map(|s| s.id).collect();
        let reason = if finish == "length" {
            if clipped {
                FinishReason::ContextFull
            } else {
                FinishReason::MaxTokens
            }
        } else if let Some(i) = r.stop.iter().position(|s| text.ends_with(s.as_str())) {
            // The server left the stop text in (vLLM's include_stop_str_in_output).
            FinishReason::Stop(i)
        } else if sampled.last().is_some_and(|s| s.text.is_empty()) || r.stop.is_empty() {
            // llama-server reports the end-of-generation token itself, with empty text.
            FinishReason::Eos
        } else {
            // The server cut the stop text off (llama-server): it dropped as many trailing
            // tokens from the logprobs as the stop text has.
            let completion = v
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
            let dropped = completion.saturating_sub(sampled.len());
            let mut which = 0;
            if r.stop.len() > 1 {
                for (i, s) in r.stop.iter().enumerate() {
                    if self.stop_tokens(s)?.len() == dropped {
                        which = i;
                        break;
                    }
                }
            }
            text.push_str(&r.stop[which]);
            FinishReason::Stop(which)
        };
        // The child's tokens: the sampled ids where the server gave every one of them and cut
        // nothing; otherwise the text tokenised (a stop cut can split a token).
        let own = match (&reason, ids) {
            (FinishReason::Stop(_), _) | (_, None) => self.tokenize_with(&text, false)?,
            (_, Some(ids)) if !ids.is_empty() || text.is_empty() => ids,
            _ => self.tokenize_with(&text, false)?,
        };
        Ok((own, text, logprob, reason, confidence))
    }
}

/// Sets every field of `extra` in `body`.
fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
}

/// `v[field]` as token ids (plain numbers, or llama-server's `{"id":…}` pieces).
fn token_ids(v: &Value, field: &str) -> Option<Vec<TokenId>> {
    v.get(field)?
        .as_array()?
        .iter()
        .map(|t| {
            t.as_i64()
                .or_else(|| t.get("id").and_then(Value::as_i64))
                .map(|x| x as TokenId)
        })
        .collect()
}

/// A token id from vLLM's `"token_id:123"` strings.
fn id_from_token_string(s: &str) -> Option<TokenId> {
    s.strip_prefix("token_id:")?.parse().ok()
}

/// The sampled tokens of a completion's `logprobs`: llama-server's `{"content":[{id, token,
/// logprob}]}` or the OpenAI legacy `{"tokens":[…], "token_logprobs":[…]}`.
fn sampled_tokens(logprobs: Option<&Value>) -> Vec<Sampled> {
    let Some(lp) = logprobs else {
        return Vec::new();
    };
    if let Some(content) = lp.get("content").and_then(Value::as_array) {
        return content
            .iter()
            .map(|t| {
                let text = t
                    .get("token")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Sampled {
                    id: t
                        .get("id")
                        .and_then(Value::as_i64)
                        .map(|x| x as TokenId)
                        .or_else(|| id_from_token_string(&text)),
                    text,
                    logprob: t.get("logprob").and_then(Value::as_f64).unwrap_or(0.0),
                    confidence: t
                        .get("top_logprobs")
                        .and_then(Value::as_array)
                        .and_then(|top| {
                            confidence_of(
                                top.iter()
                                    .filter_map(|c| c.get("logprob").and_then(Value::as_f64)),
                            )
                        }),
                }
            })
            .collect();
    }
    let tops = lp.get("top_logprobs").and_then(Value::as_array);
    let tokens = lp.get("tokens").and_then(Value::as_array);
    let lps = lp.get("token_logprobs").and_then(Value::as_array);
    match (tokens, lps) {
        (Some(t), Some(l)) => t
            .iter()
            .zip(l)
            .enumerate()
            .map(|(i, (t, l))| {
                let text = t.as_str().unwrap_or_default().to_string();
                Sampled {
                    id: id_from_token_string(&text),
                    text,
                    logprob: l.as_f64().unwrap_or(0.0),
                    confidence: tops
                        .and_then(|v| v.get(i))
                        .and_then(Value::as_object)
                        .and_then(|m| confidence_of(m.values().filter_map(Value::as_f64))),
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The top next-token log-probabilities of a one-token completion, by token id.
fn top_logprobs(v: &Value) -> Option<HashMap<TokenId, f64>> {
    let lp = v.pointer("/choices/0/logprobs")?;
    let mut out = HashMap::new();
    if let Some(first) = lp.pointer("/content/0") {
        for t in first.get("top_logprobs")?.as_array()? {
            let id = t
                .get("id")
                .and_then(Value::as_i64)
                .map(|x| x as TokenId)
                .or_else(|| {
                    t.get("token")
                        .and_then(Value::as_str)
                        .and_then(id_from_token_string)
                })?;
            out.insert(id, t.get("logprob")?.as_f64()?);
        }
        return Some(out);
    }
    // OpenAI legacy: [{ "token_id:123": logprob, … }]
    for (k, l) in lp.pointer("/top_logprobs/0")?.as_object()? {
        out.insert(id_from_token_string(k)?, l.as_f64()?);
    }
    Some(out)
}

impl RemoteLm {
    /// The chat as the server's template renders it (llama-server's `/apply-template`; vLLM's
    /// `/tokenize` with `messages`, detokenised).
    fn server_chat_text(&self, messages: &[Message]) -> Result<String, DecodeError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "role": m.role, "content": m.content }))
            .collect();
        let body = json!({ "model": self.shared.model, "messages": msgs });
        match self
            .shared
            .client
            .call("/apply-template", Some(&body), self.interrupt.as_ref())
        {
            Ok(v) => v
                .get("prompt")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| self.shared.client.bad_response("/apply-template", &v)),
            // vLLM has no /apply-template; its /tokenize renders messages.
            Err(DecodeError::Remote {
                status: Some(404), ..
            }) => {
                let body = json!({
                    "model": self.shared.model,
                    "messages": msgs,
                    "add_generation_prompt": true,
                });
                let v =
                    self.shared
                        .client
                        .call("/tokenize", Some(&body), self.interrupt.as_ref())?;
                let ids = token_ids(&v, "tokens")
                    .ok_or_else(|| self.shared.client.bad_response("/tokenize", &v))?;
                self.detokenize(&ids)
            }
            Err(e) => Err(e),
        }
    }
}

impl Lm for RemoteLm {
    fn chat_text(&self, messages: &[Message]) -> Result<String, DecodeError> {
        self.server_chat_text(messages)
    }

    fn root_text(&mut self, text: &str) -> Result<Node, DecodeError> {
        self.timed(|lm| {
            let tokens = lm.tokenize_with(text, true)?;
            lm.check_fits("the prompt", tokens.len())?;
            lm.count(&Usage {
                prompt_tokens: tokens.len() as u64,
                ..Usage::default()
            });
            Ok(lm.nodes.insert(tokens))
        })
    }

    fn root_tokens(&mut self, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.check_vocab("tokens", tokens)?;
        self.check_fits("the prompt", tokens.len())?;
        self.count(&Usage {
            prompt_tokens: tokens.len() as u64,
            ..Usage::default()
        });
        Ok(self.nodes.insert(tokens.to_vec()))
    }

    fn extend_tokens(&mut self, node: Node, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.check_vocab("tokens", tokens)?;
        let mut all = self.tokens_of(node)?.clone();
        all.extend_from_slice(tokens);
        self.check_fits("the extended node", all.len())?;
        Ok(self.nodes.insert(all))
    }

    fn generate(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError> {
        self.timed(|lm| lm.generate_inner(requests))
    }

    fn next_token_probs(
        &mut self,
        queries: &[(Node, &[TokenId])],
    ) -> Result<Vec<Vec<f32>>, DecodeError> {
        self.timed(|lm| {
            let mut bodies = Vec::new();
            let mut asked = Vec::new();
            for (i, (node, cands)) in queries.iter().enumerate() {
                lm.check_vocab("candidates", cands)?;
                let prompt = lm.tokens_of(*node)?;
                // A query with no candidates only asks to keep the node warm: the server's
                // prefix cache does that by itself.
                if cands.is_empty() {
                    continue;
                }
                lm.check_fits("the scored node", prompt.len())?;
                let mut body = lm.completion_body(prompt, 1, lm.shared.client.opts.top_logprobs);
                merge(
                    &mut body,
                    json!({ "temperature": 0.0, "top_k": 1, "seed": 0, "ignore_eos": true }),
                );
                bodies.push(body);
                asked.push(i);
            }
            let responses =
                lm.shared
                    .client
                    .call_many("/v1/completions", &bodies, lm.interrupt.as_ref())?;
            let mut out: Vec<Vec<f32>> = queries.iter().map(|_| Vec::new()).collect();
            for (&i, v) in asked.iter().zip(&responses) {
                let top = top_logprobs(v)
                    .ok_or_else(|| lm.shared.client.bad_response("/v1/completions", v))?;
                out[i] = queries[i]
                    .1
                    .iter()
                    .map(|t| top.get(t).map_or(0.0, |l| l.exp() as f32))
                    .collect();
            }
            lm.account(&responses, false);
            Ok(out)
        })
    }

    fn forced_logprobs(&mut self, queries: &[(Node, &str)]) -> Result<Vec<Vec<f32>>, DecodeError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        Err(DecodeError::Unsupported {
            what: "forced_logprobs (prompt log-probabilities)",
            hint: "OpenAI-compatible servers such as llama-server do not return the log-probabilities of given text; use the self-judge (--rerank judge) or the in-process backend".into(),
        })
    }

    fn release(&mut self, node: Node) {
        self.nodes.release(node);
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn set_interrupt(&mut self, interrupt: Option<Interrupt>) {
        self.interrupt = interrupt;
    }

    fn interrupt(&self) -> Option<super::Interrupt> {
        self.interrupt.clone()
    }

    fn reset(&mut self) -> bool {
        self.nodes.is_empty()
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, DecodeError> {
        self.tokenize_with(text, false)
    }

    fn token_text(&self, token: TokenId) -> String {
        if let Some(t) = self.shared.token_texts.lock().get(&token) {
            return t.clone();
        }
        let text = self.detokenize(&[token]).unwrap_or_default();
        self.shared.token_texts.lock().insert(token, text.clone());
        text
    }

    fn vocab_size(&self) -> usize {
        self.shared.vocab
    }

    fn node_len(&self, node: Node) -> Result<usize, DecodeError> {
        Ok(self.tokens_of(node)?.len())
    }

    fn node_tokens(&self, node: Node) -> Result<Vec<TokenId>, DecodeError> {
        Ok(self.tokens_of(node)?.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert_eq!(
            RemoteOptions::default().validate().unwrap_err().field,
            "url"
        );
        let mut o = RemoteOptions::new(["localhost:8080"]);
        assert_eq!(o.validate().unwrap_err().field, "url");
        for bad in [
            "http://",
            "https://",
            "http://:8080",
            "http://h:99999",
            "http://h/?q=1",
        ] {
            o.urls = vec![bad.into()];
            let e = o.validate().unwrap_err();
            assert_eq!(e.field, "url", "{bad}");
            assert!(e.reason.contains(bad), "{e}");
        }
        for good in [
            "http://127.0.0.1:1",
            "https://example.com",
            "http://h:8080/base/",
        ] {
            o.urls = vec![good.into()];
            assert!(o.validate().is_ok(), "{good}");
        }
        o.urls = vec!["http://127.0.0.1:1".into()];
        o.attempts = 0;
        assert_eq!(o.validate().unwrap_err().field, "attempts");
    }

    #[test]
    fn reads_both_logprob_shapes() {
        let llama = json!({"content": [
            {"id": 5, "token": "a", "logprob": -0.5, "top_logprobs": [{"id": 5, "token": "a", "logprob": -0.5}]},
            {"id": 2, "token": "", "logprob": -0.25, "top_logprobs": []}
        ]});
        let s = sampled_tokens(Some(&llama));
        assert_eq!(
            s.iter().map(|t| t.id).collect::<Vec<_>>(),
            [Some(5), Some(2)]
        );
        assert!((s.iter().map(|t| t.logprob).sum::<f64>() + 0.75).abs() < 1e-12);
        let legacy = json!({"tokens": ["token_id:7", "token_id:9"], "token_logprobs": [-1.0, -2.0],
                            "top_logprobs": [{"token_id:7": -1.0, "token_id:3": -1.5}]});
        let s = sampled_tokens(Some(&legacy));
        assert_eq!(
            s.iter().map(|t| t.id).collect::<Vec<_>>(),
            [Some(7), Some(9)]
        );
        // Confidence: minus the mean of the top list; none where the list is empty or missing.
        assert_eq!(s[0].confidence, Some(1.25));
        assert_eq!(s[1].confidence, None);
        let s = sampled_tokens(Some(&llama));
        assert_eq!(s[0].confidence, Some(0.5));
        assert_eq!(s[1].confidence, None);
        let top = top_logprobs(&json!({"choices": [{"logprobs": legacy}]})).unwrap();
        assert_eq!(top.get(&3), Some(&-1.5));
        let top = top_logprobs(&json!({"choices": [{"logprobs": llama}]})).unwrap();
        assert_eq!(top.get(&5), Some(&-0.5));
    }

    #[test]
    fn the_gate_caps_requests_in_flight_in_order_of_arrival_and_lets_the_cancelled_leave() {
        let gate = Gate::new(2);
        let a = gate.enter(None).unwrap();
        let b = gate.enter(None).unwrap();
        assert_eq!(gate.state.lock().in_flight, 2);
        let order = Mutex::new(Vec::new());
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::thread::scope(|scope| {
            // Three waiters arrive in turn: the second is cancelled while it waits, the others
            // get in, in order of arrival, each when a place frees.
            let mut waiters = Vec::new();
            for k in 0..3 {
                let (gate, order, cancel) = (&gate, &order, cancel.clone());
                waiters.push(scope.spawn(move || {
                    let interrupt: Interrupt =
                        std::sync::Arc::new(move || k == 1 && cancel.load(Ordering::SeqCst));
                    let permit = gate.enter(Some(&interrupt));
                    if permit.is_ok() {
                        order.lock().push(k);
                    }
                    permit.map(|p| {
                        std::thread::sleep(Duration::from_millis(20));
                        drop(p);
                    })
                }));
                while gate.state.lock().waiting.len() < k + 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            cancel.store(true, Ordering::SeqCst);
            while gate.state.lock().waiting.len() > 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(order.lock().is_empty(), "nobody passes a full gate");
            // One place frees: the first in line takes it (and records it before the next place
            // frees, so that the recorded order is the order of entry).
            drop(a);
            while order.lock().is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(b);
            let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
            assert!(results[0].is_ok() && results[2].is_ok());
            assert!(matches!(results[1], Err(DecodeError::Cancelled)));
        });
        assert_eq!(*order.lock(), [0, 2]);
        let state = gate.state.lock();
        assert_eq!(
            (state.in_flight, state.peak, state.waiting.len()),
            (0, 2, 0)
        );
    }

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            server_message(r#"{"error":{"code":400,"message":"too long","type":"x"}}"#),
            "too long"
        );
        assert_eq!(server_message("<html>bad gateway"), "<html>bad gateway");
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error_after_the_attempts() {
        // Port 1 on localhost refuses connections at once.
        let opts = RemoteOptions {
            attempts: 2,
            backoff_ms: 1,
            ..RemoteOptions::new(["http://127.0.0.1:1"])
        };
        let err = RemoteLm::connect(&opts).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LoadError::Remote { .. }), "{text}");
        assert!(
            text.contains("127.0.0.1:1") && text.contains("2 attempts"),
            "{text}"
        );
    }
}
