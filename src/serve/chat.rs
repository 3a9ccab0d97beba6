//! `POST /v1/chat/completions`: the conversation through the model's chat template; plain
//! generation of `n` choices (with `logprobs` in OpenAI's shape when asked for), or the search
//! the model name picks, streamed as `reasoning_content` deltas when `stream` is set.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::openai::{self, ApiError, ChatRequest, ChatResponse};
use super::{
    choices, now, plain, plan, read_body, request, solve_collecting, sse, Plan, Shared, Solution,
    Ticket,
};

/// A chat choice's `logprobs`.
fn chat_logprobs(tokens: Option<&[plain::TokenInfo]>) -> Option<openai::ChatLogprobs> {
    let bytes = |s: &str| s.as_bytes().to_vec();
    tokens.map(|tokens| openai::ChatLogprobs {
        content: tokens
            .iter()
            .map(|t| openai::ChatTokenLogprob {
                token: t.text.clone(),
                logprob: t.logprob.unwrap_or(0.0),
                bytes: bytes(&t.text),
                top_logprobs: t
                    .top
                    .iter()
                    .map(|(text, logprob)| openai::ChatTopLogprob {
                        token: text.clone(),
                        logprob: *logprob,
                        bytes: bytes(text),
                    })
                    .collect(),
            })
            .collect(),
    })
}

pub(super) async fn handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match chat_inner(&shared, &headers, body).await {
        Ok(r) => r,
        Err((label, e)) => {
            shared.metrics.request(label, e.status.as_u16());
            e.into_response()
        }
    }
}

async fn chat_inner(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, (&'static str, ApiError)> {
    let bytes = read_body(shared, headers, body)
        .await
        .map_err(|e| ("-", e))?;
    let req: ChatRequest = request::parse(&bytes, request::Endpoint::Chat).map_err(|e| ("-", e))?;
    let plan = plan(&req, &shared.options).map_err(|e| ("-", e))?;
    let label = plan.label();
    let ticket = shared.admit().map_err(|e| (label, e))?;
    let id = format!("chatcmpl-{:x}-{}", now(), ticket.id);
    if req.stream {
        return Ok(stream(shared, ticket, plan, req.model, id));
    }
    let (solution, reasoning) = match solve_collecting(shared, ticket, plan).await {
        Ok(s) => s,
        Err(e) => return Ok(e.into_response()),
    };
    let response = ChatResponse {
        id,
        object: "chat.completion",
        created: now(),
        model: req.model,
        choices: choices(&solution)
            .into_iter()
            .enumerate()
            .map(|(index, c)| openai::Choice {
                index,
                logprobs: chat_logprobs(c.tokens.as_deref()),
                message: openai::AssistantMessage {
                    role: "assistant",
                    content: c.text,
                    reasoning_content: reasoning.clone(),
                },
                finish_reason: c.finish,
            })
            .collect(),
        usage: solution.api_usage(),
    };
    Ok(Json(response).into_response())
}

/// `stream: true`: the search's progress as `reasoning_content` deltas, then the answer as
/// `content` (with its `logprobs`), a last chunk with the finish reason and usage, then `[DONE]`.
fn stream(shared: &Arc<Shared>, ticket: Ticket, plan: Plan, model: String, id: String) -> Response {
    let created = now();
    let chunk = move |choices: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": choices,
        })
    };
    let first = chunk(json!([{
        "index": 0,
        "delta": {"role": "assistant", "reasoning_content": match &plan {
            Plan::Plain(_) => String::new(),
            Plan::Search { strategy, .. } => format!("searching with {}\n", strategy.name()),
        }},
        "logprobs": null,
        "finish_reason": null,
    }]));
    let progress = {
        let chunk = chunk.clone();
        move |line: String| {
            chunk(json!([{
                "index": 0, "delta": {"reasoning_content": line}, "logprobs": null,
                "finish_reason": null,
            }]))
        }
    };
    let last = move |solution: Solution| {
        let choices = choices(&solution);
        let mut out: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                chunk(json!([{
                    "index": index, "delta": {"content": c.text},
                    "logprobs": chat_logprobs(c.tokens.as_deref()), "finish_reason": null,
                }]))
            })
            .collect();
        let finish: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(index, c)| json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": c.finish}))
            .collect();
        let mut end = chunk(Value::Array(finish));
        end["usage"] = serde_json::to_value(solution.api_usage()).unwrap_or_default();
        out.push(end);
        out
    };
    sse(shared, ticket, plan, Some(first), progress, last)
}
