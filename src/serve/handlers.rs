//! The small endpoints (`/v1/models`, `/health`, `/metrics`, the fallbacks), bearer auth, reading
//! a body within its limit, the choices of a solution, and the router that puts them together
//! with the chat and completion handlers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::admission::{Shared, Solution};
use super::openai::{ApiError, ChoiceText};
use super::{chat, completions};
use crate::lm::FinishReason;
use crate::strategy::Named;

/// The choices of a solution: every returned completion of plain generation, the chosen
/// candidate of a search.
pub(super) fn choices(solution: &Solution) -> Vec<ChoiceText> {
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

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "request_too_large",
        format!("the request body is larger than this server's limit of {limit} bytes (--max-body-bytes); send less"),
    )
}

/// The request body, within `--max-body-bytes`.
pub(super) async fn read_body(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
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

pub(super) async fn models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let name = &shared.options.model_name;
    let created = now();
    let mut data =
        vec![json!({"id": name, "object": "model", "created": created, "owned_by": "ponder"})];
    for prefix in Named::prefixes() {
        data.push(json!({
            "id": format!("{prefix}{name}"), "object": "model", "created": created, "owned_by": "ponder",
        }));
    }
    Json(json!({"object": "list", "data": data}))
}

pub(super) async fn health(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutting_down.load(Ordering::SeqCst) {
        return Shared::unavailable().into_response();
    }
    Json(json!({"status": "ok", "model": shared.options.model_name})).into_response()
}

pub(super) async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
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

pub(super) async fn not_found(request: Request) -> ApiError {
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

pub(super) async fn method_not_allowed(request: Request) -> ApiError {
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
pub(super) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) async fn auth(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
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
pub(super) fn router(shared: Arc<Shared>) -> Router {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
