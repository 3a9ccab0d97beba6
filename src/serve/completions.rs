//! `POST /v1/completions`: OpenAI's text completions. A plain model name continues each prompt
//! as raw text (no chat template), `n` (or `best_of`) per prompt from one shared prefill, with
//! OpenAI's legacy `logprobs` (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) and
//! `echo` (the prompt first, its tokens scored in one forced pass). A strategy prefix or a
//! `ponder` field runs that search with the one prompt as the question, as chat does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::openai::{
    ApiError, CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse,
};
use super::plain::TokenInfo;
use super::{
    choices, now, plan_completion, read_body, request, solve_collecting, sse, Plan, Shared,
    Solution, Ticket,
};

/// The handler of `POST /v1/completions`.
pub(super) async fn handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match inner(&shared, &headers, body).await {
        Ok(r) => r,
        Err((label, e)) => {
            shared.metrics.request(label, e.status.as_u16());
            prompt_param(e).into_response()
        }
    }
}

/// An error about the conversation is about the prompt here.
fn prompt_param(mut e: ApiError) -> ApiError {
    if e.param.as_deref() == Some("messages") {
        e.param = Some("prompt".into());
    }
    e
}

async fn inner(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, (&'static str, ApiError)> {
    let bytes = read_body(shared, headers, body)
        .await
        .map_err(|e| ("-", e))?;
    let req: CompletionRequest =
        request::parse(&bytes, request::Endpoint::Completions).map_err(|e| ("-", e))?;
    let plan = plan_completion(&req, &shared.options).map_err(|e| ("-", e))?;
    let label = plan.label();
    let ticket = shared.admit().map_err(|e| (label, e))?;
    let id = format!("cmpl-{:x}-{}", now(), ticket.id);
    if req.stream {
        return Ok(stream(shared, ticket, plan, req.model, id));
    }
    let (solution, reasoning) = match solve_collecting(shared, ticket, plan).await {
        Ok(s) => s,
        Err(e) => return Ok(prompt_param(e).into_response()),
    };
    let response = CompletionResponse {
        id,
        object: "text_completion",
        created: now(),
        model: req.model,
        choices: completion_choices(&solution, reasoning),
        usage: solution.api_usage(),
    };
    Ok(Json(response).into_response())
}

/// The choices of a solution: with `echo`, each after its prompt (and its prompt's tokens
/// before its own in `logprobs`).
fn completion_choices(solution: &Solution, reasoning: Option<String>) -> Vec<CompletionChoice> {
    let Solution::Plain(g) = solution else {
        return choices(solution)
            .into_iter()
            .enumerate()
            .map(|(index, c)| CompletionChoice {
                text: c.text,
                index,
                logprobs: None,
                finish_reason: c.finish,
                reasoning_content: reasoning.clone(),
            })
            .collect();
    };
    g.choices
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let echoed = g.echoed.get(c.prompt);
            let text = match echoed {
                Some(e) => format!("{}{}", e.text, c.text),
                None => c.text.clone(),
            };
            let logprobs = c.tokens.as_ref().map(|own| {
                let prompt = echoed.and_then(|e| e.tokens.as_deref()).unwrap_or(&[]);
                legacy(prompt.iter().chain(own))
            });
            CompletionChoice {
                text,
                index,
                logprobs,
                finish_reason: c.finish,
                reasoning_content: None,
            }
        })
        .collect()
}

/// OpenAI's legacy log-probabilities of `tokens`; offsets count characters, as clients index
/// the text.
fn legacy<'a>(tokens: impl Iterator<Item = &'a TokenInfo>) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    let mut offset = 0;
    for t in tokens {
        out.tokens.push(t.text.clone());
        out.token_logprobs.push(t.logprob);
        out.top_logprobs.push(t.logprob.map(|_| {
            let mut top = Map::new();
            for (text, lp) in &t.top {
                top.entry(text.clone()).or_insert_with(|| json!(lp));
            }
            top
        }));
        out.text_offset.push(offset);
        offset += t.text.chars().count();
    }
    out
}

/// `stream: true`: a search's progress as `reasoning_content` in the choice, then each
/// completion's text (with its `logprobs`), a last chunk with the finish reasons and usage,
/// then `[DONE]`.
fn stream(shared: &Arc<Shared>, ticket: Ticket, plan: Plan, model: String, id: String) -> Response {
    let created = now();
    let chunk = move |choices: Value| {
        json!({
            "id": id, "object": "text_completion", "created": created,
            "model": model, "choices": choices,
        })
    };
    let first = match &plan {
        Plan::Plain(_) => None,
        Plan::Search { strategy, .. } => Some(chunk(json!([{
            "text": "", "index": 0, "logprobs": null, "finish_reason": null,
            "reasoning_content": format!("searching with {}\n", strategy.name()),
        }]))),
    };
    let progress = {
        let chunk = chunk.clone();
        move |line: String| {
            chunk(json!([{
                "text": "", "index": 0, "logprobs": null, "finish_reason": null,
                "reasoning_content": line,
            }]))
        }
    };
    let last = move |solution: Solution| {
        let choices = completion_choices(&solution, None);
        let mut out: Vec<Value> = choices
            .iter()
            .map(|c| {
                chunk(json!([{
                    "text": c.text, "index": c.index, "logprobs": c.logprobs,
                    "finish_reason": null,
                }]))
            })
            .collect();
        let finish: Vec<Value> = choices
            .iter()
            .map(|c| {
                json!({"text": "", "index": c.index, "logprobs": null, "finish_reason": c.finish_reason})
            })
            .collect();
        let mut end = chunk(Value::Array(finish));
        end["usage"] = serde_json::to_value(solution.api_usage()).unwrap_or_default();
        out.push(end);
        out
    };
    sse(shared, ticket, plan, first, progress, last)
}
