//! The OpenAI wire types `ponder serve` reads and writes: chat-completion requests, responses,
//! stream chunks and error bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::lm::Usage;

/// A chat-completion request: the fields ponder reads ([`super::request`] checks their types
/// and ranges and refuses the fields ponder cannot honour; others are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatRequest {
    /// The model name: a strategy prefix (`bon-`, `mcts-`, …) picks a search; the rest, and any
    /// plain name, addresses the served model.
    #[serde(default)]
    pub model: String,
    /// The conversation.
    #[serde(default)]
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
    /// Base seed (OpenAI's is a signed 64-bit integer; its bits seed the sampler).
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop strings (one or a list).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Server-sent events.
    #[serde(default, deserialize_with = "null_is_false")]
    pub stream: bool,
    /// Return each chosen token's log-probability.
    #[serde(default, deserialize_with = "null_is_false")]
    pub logprobs: bool,
    /// With `logprobs`, also this many of the most likely tokens at each position (0 to 20).
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    /// Accepted in −2..=2; anything but 0 is refused (ponder's sampler has no penalties).
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// As `presence_penalty`.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// ponder's strategy configuration (`extra_body={"ponder": {...}}`): a whole
    /// `{"type": …}` config, or fields merged over the strategy the model name picks.
    #[serde(default)]
    pub ponder: Option<serde_json::Value>,
}

/// A text-completion request (`POST /v1/completions`, OpenAI's legacy endpoint): the fields
/// ponder reads, checked as [`ChatRequest`]'s are.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompletionRequest {
    /// The model name, as in [`ChatRequest::model`].
    #[serde(default)]
    pub model: String,
    /// The text to continue (raw, no chat template), a list of them, or token ids.
    #[serde(default)]
    pub prompt: Option<Prompt>,
    /// Completions per prompt.
    #[serde(default)]
    pub n: Option<u32>,
    /// Completions sampled per prompt, of which the `n` with the highest log-probability per
    /// token are returned.
    #[serde(default)]
    pub best_of: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// New tokens per completion (OpenAI's default: 16; 0 with `echo` scores the prompt only).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Base seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop strings (one or a list).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Server-sent events.
    #[serde(default, deserialize_with = "null_is_false")]
    pub stream: bool,
    /// Each token's log-probability and this many of the most likely tokens at its position.
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Put the prompt before the completion (with its tokens' log-probabilities when
    /// `logprobs` is given).
    #[serde(default, deserialize_with = "null_is_false")]
    pub echo: bool,
    /// As [`ChatRequest::presence_penalty`].
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// As [`ChatRequest::frequency_penalty`].
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// As [`ChatRequest::ponder`].
    #[serde(default)]
    pub ponder: Option<serde_json::Value>,
}

/// OpenAI's `prompt`: a string, a list of strings, token ids, or a list of token-id lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text.
    Text(String),
    /// Several texts: `n` completions each.
    Texts(Vec<String>),
    /// One prompt as token ids (used as given: no BOS is added).
    Tokens(Vec<crate::lm::TokenId>),
    /// Several prompts as token ids.
    TokenLists(Vec<Vec<crate::lm::TokenId>>),
}

/// A boolean field that clients may send as `null` (unset): false.
fn null_is_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
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

/// A response of either endpoint, whose choices `C` are the endpoint's own.
#[derive(Debug, Clone, Serialize)]
pub struct Reply<C> {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// `chat.completion` or `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as the client sent it.
    pub model: String,
    /// The choices: `n` per prompt, prompt by prompt.
    pub choices: Vec<C>,
    /// Work done.
    pub usage: ApiUsage,
}

/// A chat-completion response.
pub type ChatResponse = Reply<Choice>;

/// One choice.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// Its index.
    pub index: usize,
    /// The assistant message.
    pub message: AssistantMessage,
    /// The tokens' log-probabilities, when asked for (`null` otherwise).
    pub logprobs: Option<ChatLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// A chat choice's `logprobs`: `{"content": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatLogprobs {
    /// One entry per token of the content.
    pub content: Vec<ChatTokenLogprob>,
}

/// One token of a chat choice's content with its log-probability.
#[derive(Debug, Clone, Serialize)]
pub struct ChatTokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// The UTF-8 bytes of its text.
    pub bytes: Vec<u8>,
    /// The most likely tokens at its position (as many as `top_logprobs` asked for).
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// One alternative of [`ChatTokenLogprob::top_logprobs`].
#[derive(Debug, Clone, Serialize)]
pub struct ChatTopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// The UTF-8 bytes of its text.
    pub bytes: Vec<u8>,
}

/// A text-completion response.
pub type CompletionResponse = Reply<CompletionChoice>;

/// One text completion.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice {
    /// The text (after the prompt with `echo`).
    pub text: String,
    /// Its index.
    pub index: usize,
    /// OpenAI's legacy log-probabilities, when asked for (`null` otherwise).
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
    /// What the search did, in words (searches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// OpenAI's legacy `logprobs` of a text completion: parallel lists, one entry per token.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompletionLogprobs {
    /// Each token's text.
    pub tokens: Vec<String>,
    /// Each token's log-probability (`null` for a first prompt token, which has no context).
    pub token_logprobs: Vec<Option<f32>>,
    /// The most likely tokens at each position, text to log-probability (`null` where
    /// `token_logprobs` is).
    pub top_logprobs: Vec<Option<serde_json::Map<String, serde_json::Value>>>,
    /// Where each token starts in `text`, in bytes.
    pub text_offset: Vec<usize>,
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
    /// The strategy that ran (`plain` for plain generation).
    pub strategy: String,
    /// Candidates the search considered (completions sampled, for plain generation).
    pub candidates: usize,
    /// The chosen candidate's extracted answer (searches only).
    pub answer: Option<String>,
    /// Its score (searches only).
    pub score: Option<f64>,
    /// The engine's counters for this solve.
    #[serde(flatten)]
    pub usage: Usage,
}

impl ApiUsage {
    /// Usage of a solve.
    pub fn of(outcome: &crate::Outcome) -> Self {
        let mut usage = Self::plain(&outcome.usage, outcome.candidates.len());
        usage.ponder.strategy = outcome.strategy.clone();
        usage.ponder.answer = outcome.answer.clone();
        usage.ponder.score = Some(outcome.score);
        usage
    }

    /// Usage of plain generation that sampled `candidates` completions.
    pub fn plain(u: &Usage, candidates: usize) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.generated_tokens,
            total_tokens: u.prompt_tokens + u.generated_tokens,
            ponder: PonderUsage {
                strategy: "plain".into(),
                candidates,
                answer: None,
                score: None,
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

    /// 400 `invalid_request_error` about `param`, with OpenAI's `code` (`invalid_value`,
    /// `invalid_type`, `unsupported_parameter`, …).
    pub fn invalid(param: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            ..Self::bad_request(message, Some(param))
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
            crate::Error::Config(c) => {
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
    /// Its tokens with their log-probabilities, when asked for.
    pub tokens: Option<Vec<super::plain::TokenInfo>>,
}
