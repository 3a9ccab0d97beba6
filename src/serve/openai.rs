//! The OpenAI wire types `ponder serve` reads and writes: chat-completion requests, responses,
//! stream chunks and error bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::lm::Usage;

/// A chat-completion request (the fields ponder reads; others are accepted and ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatRequest {
    /// The model name: a strategy prefix (`bon-`, `mcts-`, …) picks a search; the rest, and any
    /// plain name, addresses the served model.
    #[serde(default)]
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Choices to return (plain generation only).
    #[serde(default)]
    pub n: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// New tokens per choice.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Newer spelling of `max_tokens` (wins when both are given).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Base seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop strings (one or a list).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// ponder's strategy configuration (`extra_body={"ponder": {...}}`): a whole
    /// `{"type": …}` config, or fields merged over the strategy the model name picks.
    #[serde(default)]
    pub ponder: Option<serde_json::Value>,
}

/// OpenAI's `stop`: a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or a list of content parts (only `text` parts are read).
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// The part's type (`text`, `image_url`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

impl ChatMessage {
    /// The message's text.
    ///
    /// # Errors
    /// An [`ApiError`] for a content part that is not text.
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(t)) => Ok(t.clone()),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::bad_request(
                                format!("content part of type {kind:?} is not supported; ponder serves text models, send text parts only"),
                                Some("messages"),
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// A chat-completion response.
#[derive(Debug, Clone, Serialize)]
pub struct ChatResponse {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as the client sent it.
    pub model: String,
    /// The choices.
    pub choices: Vec<Choice>,
    /// Work done.
    pub usage: ApiUsage,
}

/// One choice.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// Its index.
    pub index: usize,
    /// The assistant message.
    pub message: AssistantMessage,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// The assistant's message.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: &'static str,
    /// The chosen text.
    pub content: String,
    /// What the search did, in words (searches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// OpenAI's usage, with ponder's own counters and the search's summary under `ponder`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiUsage {
    /// Tokens of the prompts the search started from.
    pub prompt_tokens: u64,
    /// Every token the search sampled (all candidates, steps, verdicts).
    pub completion_tokens: u64,
    /// The sum.
    pub total_tokens: u64,
    /// ponder's counters.
    pub ponder: PonderUsage,
}

/// ponder's counters of one request.
#[derive(Debug, Clone, Serialize)]
pub struct PonderUsage {
    /// The strategy that ran.
    pub strategy: String,
    /// Candidates the search considered.
    pub candidates: usize,
    /// The chosen candidate's extracted answer.
    pub answer: Option<String>,
    /// Its score.
    pub score: f64,
    /// The engine's counters for this solve.
    #[serde(flatten)]
    pub usage: Usage,
}

impl ApiUsage {
    /// Usage of a solve.
    pub fn of(outcome: &crate::Outcome) -> Self {
        let u = &outcome.usage;
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.generated_tokens,
            total_tokens: u.prompt_tokens + u.generated_tokens,
            ponder: PonderUsage {
                strategy: outcome.strategy.clone(),
                candidates: outcome.candidates.len(),
                answer: outcome.answer.clone(),
                score: outcome.score,
                usage: *u,
            },
        }
    }
}

/// An OpenAI error: the status and `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, …).
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A short code (`invalid_api_key`, `queue_full`, …).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// Any status with a type and code.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: Some(code),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match &e {
            crate::Error::Config(c) | crate::Error::Decode(crate::DecodeError::Config(c)) => {
                let mut err = Self::bad_request(e.to_string(), None);
                err.param = Some(format!("ponder.{}", c.field));
                err
            }
            crate::Error::Decode(
                crate::DecodeError::ContextOverflow { .. }
                | crate::DecodeError::StreamOverflow { .. },
            ) => {
                let mut err = Self::bad_request(e.to_string(), Some("messages"));
                err.code = Some("context_length_exceeded");
                err
            }
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "solve_failed",
                e.to_string(),
            ),
        }
    }
}

/// One choice's text and finish reason, before it is put in a response or a stream.
#[derive(Debug, Clone)]
pub struct ChoiceText {
    /// The text.
    pub text: String,
    /// `stop` or `length`.
    pub finish: &'static str,
}
