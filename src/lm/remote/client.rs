//! The HTTP client: the servers and their outstanding requests, the gate that caps requests in
//! flight (first come, first served), and one request with its retries and backoff on another
//! server. Shared by every solve of a connection ([`super::SharedRemote`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use super::RemoteOptions;
use crate::error::{DecodeError, RemoteError};
use crate::lm::Interrupt;

/// One server and its outstanding requests.
#[derive(Debug)]
pub(super) struct Server {
    pub(super) url: String,
    pub(super) outstanding: AtomicUsize,
    pub(super) peak_outstanding: AtomicUsize,
    pub(super) sent: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) last_failure: Mutex<Option<String>>,
}

impl Server {
    pub(super) fn new(url: &str) -> Self {
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

/// What one server has been sent so far: see [`RemoteLm::server_stats`](super::RemoteLm::server_stats).
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
pub(super) enum Failure {
    /// Worth another attempt: connection error or timeout (no status), 5xx, 429, 408, or a
    /// body that is not JSON (with its status).
    Transient(Option<u16>, String),
    /// The server refused the request (4xx): retrying would not help.
    Refused(u16, String),
}

/// At most `cap` requests in flight; the others wait in order of arrival.
#[derive(Debug)]
pub(super) struct Gate {
    pub(super) cap: usize,
    pub(super) state: Mutex<GateState>,
    pub(super) turn: Condvar,
}

#[derive(Debug, Default)]
pub(super) struct GateState {
    pub(super) in_flight: usize,
    pub(super) peak: usize,
    pub(super) next_ticket: u64,
    pub(super) waiting: VecDeque<u64>,
}

/// A request's place in flight; given back on drop.
pub(super) struct Permit<'a>(&'a Gate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.state.lock().in_flight -= 1;
        self.0.turn.notify_all();
    }
}

impl Gate {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            state: Mutex::new(GateState::default()),
            turn: Condvar::new(),
        }
    }

    /// Waits for a place in flight (first come, first served); a waiting caller whose
    /// `interrupt` fires leaves the line with [`DecodeError::Cancelled`].
    pub(super) fn enter(&self, interrupt: Option<&Interrupt>) -> Result<Permit<'_>, DecodeError> {
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
pub(super) struct Client {
    pub(super) servers: Vec<Server>,
    pub(super) agent: ureq::Agent,
    pub(super) opts: RemoteOptions,
    pub(super) gate: Gate,
    /// HTTP requests sent per endpoint path, retries included.
    pub(super) requests: Mutex<BTreeMap<String, usize>>,
}

impl Client {
    pub(super) fn new(opts: &RemoteOptions) -> Self {
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
    pub(super) fn pick(&self, avoid: Option<usize>) -> usize {
        (0..self.servers.len())
            .filter(|&i| Some(i) != avoid || self.servers.len() == 1)
            .min_by_key(|&i| (self.servers[i].outstanding.load(Ordering::SeqCst), i))
            .unwrap_or(0)
    }

    pub(super) fn once(
        &self,
        server: usize,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
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
    pub(super) fn read(result: Result<ureq::Response, ureq::Error>) -> Result<Value, Failure> {
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
    pub(super) fn call(
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
                    return Err(DecodeError::Remote(RemoteError::new(
                        format!("{}{path}", self.servers[server].url),
                        Some(code),
                        attempt + 1,
                        format!("refused with HTTP {code}: {message}"),
                    )))
                }
            }
        }
        let (server, status, message) = last.expect("at least one attempt");
        Err(DecodeError::Remote(RemoteError::new(
            format!("{}{path}", self.servers[server].url),
            status,
            self.opts.attempts,
            message,
        )))
    }

    /// Every body to `path`, at most `max_in_flight` at once; results in order. The first
    /// failure stops the requests not yet sent.
    pub(super) fn call_many(
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

pub(super) fn sleep_unless(
    wait: Duration,
    interrupt: Option<&Interrupt>,
) -> Result<(), DecodeError> {
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
pub(super) fn server_message(text: &str) -> String {
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
    pub(super) fn bad_response(&self, path: &str, v: &Value) -> DecodeError {
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
        DecodeError::Remote(RemoteError::new(
            url,
            Some(200),
            1,
            format!("unexpected response: {head}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
