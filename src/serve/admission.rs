//! A request's way through the server once its plan is made: admission to the bounded queue
//! ([`Shared::admit`], a [`Ticket`] held until the solve returns), the solve on a blocking thread
//! with its deadline and cancel-on-drop guard ([`start_solve`]), why a cancelled solve was
//! cancelled, and the two ways of waiting for it: collected for `reasoning_content`, or streamed
//! as server-sent events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;

use super::metrics::{Gauges, Metrics};
use super::openai::{ApiError, ApiUsage};
use super::{plain, Plan, ServeOptions};
use crate::lm::Usage;
use crate::strategy::{Event, Flow, StopReason};
use crate::{CancelToken, Engine, Outcome};

/// The server's shared state.
pub(super) struct Shared {
    pub(super) engine: Arc<Engine>,
    pub(super) options: ServeOptions,
    pub(super) metrics: Metrics,
    /// Requests admitted and not yet finished solving.
    pub(super) admitted: AtomicUsize,
    /// Solves on blocking threads.
    pub(super) running: AtomicUsize,
    pub(super) shutting_down: AtomicBool,
    /// The token of every admitted request, to cancel them all when the grace period ends.
    pub(super) tokens: Mutex<HashMap<u64, CancelToken>>,
    pub(super) next_id: AtomicU64,
    /// Signalled whenever a request leaves the queue.
    pub(super) left: tokio::sync::Notify,
}

impl Shared {
    pub(super) fn gauges(&self, context: Option<crate::lm::ContextLoad>) -> Gauges {
        Gauges {
            queue_depth: self.admitted.load(Ordering::SeqCst),
            queue_capacity: self.options.max_queue,
            solves_running: self.running.load(Ordering::SeqCst),
            shutting_down: self.shutting_down.load(Ordering::SeqCst),
            context,
        }
    }

    pub(super) fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down and takes no new requests; retry against another instance",
        )
    }

    /// Admits a request, or says why not (503 shutting down, 429 queue full).
    pub(super) fn admit(self: &Arc<Self>) -> Result<Ticket, ApiError> {
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
pub(super) struct Ticket {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    pub(super) token: CancelToken,
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
pub(super) struct CancelOnDrop {
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
pub(super) enum Solution {
    /// A search's outcome.
    Search(Box<Outcome>),
    /// Plain generation's completions.
    Plain(plain::Generated),
}

impl Solution {
    /// The response's `usage`.
    pub(super) fn api_usage(&self) -> ApiUsage {
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
pub(super) type SolveResult = Result<Solution, ApiError>;

/// Why a cancelled solve was cancelled, for its status.
pub(super) fn cancelled_error(shared: &Shared, deadline_hit: bool) -> ApiError {
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
pub(super) fn plain_error(e: crate::Error) -> ApiError {
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
pub(super) fn start_solve(
    shared: &Arc<Shared>,
    ticket: Ticket,
    plan: Plan,
    mut events: impl FnMut(&Event) -> Flow + Send + 'static,
) -> (CancelOnDrop, tokio::sync::oneshot::Receiver<SolveResult>) {
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
        let solved: SolveResult = match result {
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
pub(super) async fn solve_collecting(
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

pub(super) fn panicked() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "solve_panicked",
        "the solve stopped unexpectedly (a bug: please report it with the request)",
    )
}

/// One line of the search's progress, for `reasoning_content`: the event as it
/// [displays](Event#impl-Display-for-Event), with its newline.
pub fn describe(event: &Event) -> String {
    format!("{event}\n")
}

/// Streams `plan`'s solve as server-sent events: `first` (if any), `progress(line)` for each
/// event of a search, the chunks `last` makes of the result (or the error body), then `[DONE]`.
pub(super) fn sse(
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
