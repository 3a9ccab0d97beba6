//! Every field of OpenAI's chat- and text-completion requests and what `ponder serve` does with
//! it ([`FIELDS`], the one table the guide's page reproduces), and the reading of a body with
//! OpenAI's types and ranges: a wrong type or a value out of range is a 400 naming the field, a
//! field ponder cannot honour is refused with a 400 naming it, any other field is ignored.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::openai::{ApiError, Stop};

/// What ponder does with a request field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Read and honoured.
    Supported,
    /// Refused with a 400 naming it, unless absent, `null` or its neutral value.
    Refused,
    /// Accepted and ignored.
    Ignored,
}

/// The endpoints that read request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
}

/// One request field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its name in the body.
    pub name: &'static str,
    /// Read by `/v1/chat/completions`.
    pub chat: bool,
    /// Read by `/v1/completions`.
    pub completions: bool,
    /// What ponder does with it.
    pub support: Support,
    /// Why it is refused, or what it means here.
    pub note: &'static str,
}

const fn field(
    name: &'static str,
    chat: bool,
    completions: bool,
    support: Support,
    note: &'static str,
) -> Field {
    Field {
        name,
        chat,
        completions,
        support,
        note,
    }
}

use Support::{Ignored, Refused, Supported};

/// Every field of OpenAI's two request bodies. A field of neither list is ignored.
pub const FIELDS: &[Field] = &[
    field(
        "model",
        true,
        true,
        Supported,
        "the served name, or a strategy prefix and any name",
    ),
    field("messages", true, false, Supported, "text content only"),
    field(
        "prompt",
        false,
        true,
        Supported,
        "a string, a list of strings, token ids, or lists of token ids",
    ),
    field(
        "n",
        true,
        true,
        Supported,
        "at least 1; plain generation only",
    ),
    field(
        "best_of",
        false,
        true,
        Supported,
        "at least n; plain generation only",
    ),
    field(
        "max_tokens",
        true,
        true,
        Supported,
        "at least 1 (0 with echo on /v1/completions)",
    ),
    field(
        "max_completion_tokens",
        true,
        false,
        Supported,
        "wins over max_tokens",
    ),
    field("temperature", true, true, Supported, "0 to 2"),
    field("top_p", true, true, Supported, "0 to 1"),
    field("stop", true, true, Supported, "up to 4 non-empty strings"),
    field("seed", true, true, Supported, "any 64-bit integer"),
    field("stream", true, true, Supported, "server-sent events"),
    field(
        "logprobs",
        true,
        true,
        Supported,
        "chat: a boolean; completions: 0 to 20 alternatives",
    ),
    field(
        "top_logprobs",
        true,
        false,
        Supported,
        "0 to 20, with logprobs",
    ),
    field("echo", false, true, Supported, "plain generation only"),
    field(
        "presence_penalty",
        true,
        true,
        Supported,
        "-2 to 2; only 0 is accepted",
    ),
    field(
        "frequency_penalty",
        true,
        true,
        Supported,
        "-2 to 2; only 0 is accepted",
    ),
    field(
        "ponder",
        true,
        true,
        Supported,
        "ponder's strategy configuration",
    ),
    field("tools", true, false, Refused, "ponder does not call tools"),
    field(
        "tool_choice",
        true,
        false,
        Refused,
        "ponder does not call tools",
    ),
    field(
        "functions",
        true,
        false,
        Refused,
        "ponder does not call functions",
    ),
    field(
        "function_call",
        true,
        false,
        Refused,
        "ponder does not call functions",
    ),
    field(
        "response_format",
        true,
        false,
        Refused,
        "no constrained decoding (JSON mode, schemas)",
    ),
    field(
        "logit_bias",
        true,
        true,
        Refused,
        "the sampler takes no per-token bias",
    ),
    field("audio", true, false, Refused, "ponder serves text models"),
    field(
        "modalities",
        true,
        false,
        Refused,
        "ponder serves text models",
    ),
    field("prediction", true, false, Refused, "no predicted outputs"),
    field(
        "web_search_options",
        true,
        false,
        Refused,
        "ponder does not search the web",
    ),
    field("suffix", false, true, Refused, "no fill-in-the-middle"),
    field("user", true, true, Ignored, "an end-user id"),
    field("metadata", true, false, Ignored, "stored completions only"),
    field("store", true, false, Ignored, "nothing is stored"),
    field("service_tier", true, false, Ignored, "one tier"),
    field(
        "stream_options",
        true,
        true,
        Ignored,
        "usage always comes with the last chunk",
    ),
    field(
        "parallel_tool_calls",
        true,
        false,
        Ignored,
        "meaningless without tools",
    ),
    field(
        "reasoning_effort",
        true,
        false,
        Ignored,
        "the strategy sets the effort",
    ),
    field(
        "prompt_cache_key",
        true,
        false,
        Ignored,
        "prefix reuse is automatic",
    ),
    field("safety_identifier", true, false, Ignored, "an end-user id"),
];

impl Field {
    /// Whether `endpoint` reads this field.
    pub fn on(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Chat => self.chat,
            Endpoint::Completions => self.completions,
        }
    }
}

/// Whether `value` of the refused field `name` asks for nothing ponder would have to do.
fn neutral(name: &str, value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) if a.is_empty() => true,
        Value::Object(o) if o.is_empty() => true,
        Value::String(s) if s.is_empty() => name == "suffix",
        Value::String(s) => matches!(name, "tool_choice" | "function_call") && s == "none",
        Value::Array(a) => name == "modalities" && a.iter().all(|m| m == "text"),
        Value::Object(o) => name == "response_format" && o.get("type") == Some(&"text".into()),
        _ => false,
    }
}

/// Reads a request body for `endpoint`: refused fields first, then each supported field's
/// type, so that an error names its field.
///
/// # Errors
/// [`ApiError`] 400: not a JSON object, a refused field, a field of the wrong type.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], endpoint: Endpoint) -> Result<T, ApiError> {
    let what = match endpoint {
        Endpoint::Chat => "chat-completion",
        Endpoint::Completions => "completion",
    };
    let map: Map<String, Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(ApiError::bad_request(
                format!("the body must be a JSON object, a {what} request"),
                None,
            ))
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                format!("the body is not valid JSON: {e}"),
                None,
            ))
        }
    };
    for f in FIELDS.iter().filter(|f| f.on(endpoint)) {
        let Some(value) = map.get(f.name) else {
            continue;
        };
        if f.support == Refused && !neutral(f.name, value) {
            return Err(ApiError::invalid(
                f.name,
                "unsupported_parameter",
                format!(
                    "{} is not supported by ponder serve ({}); leave it out",
                    f.name, f.note
                ),
            ));
        }
        if f.support == Supported {
            let one = Map::from_iter([(f.name.to_string(), value.clone())]);
            if let Err(e) = serde_json::from_value::<T>(Value::Object(one)) {
                return Err(ApiError::invalid(
                    f.name,
                    "invalid_type",
                    format!("{} has the wrong type: {e}", f.name),
                ));
            }
        }
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        ApiError::bad_request(format!("the body is not a valid {what} request: {e}"), None)
    })
}

/// Refuses `value` of `param` outside `lo..=hi`.
///
/// # Errors
/// [`ApiError`] 400 `invalid_value` naming `param`.
pub fn check_range(param: &str, value: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(ApiError::invalid(
            param,
            "invalid_value",
            format!("{param} = {v} is outside the range {lo} to {hi}"),
        )),
        _ => Ok(()),
    }
}

/// OpenAI's penalties: in −2..=2, and (ponder's sampler has none) only 0.
///
/// # Errors
/// [`ApiError`] 400 naming the penalty.
pub fn check_penalties(presence: Option<f32>, frequency: Option<f32>) -> Result<(), ApiError> {
    for (param, value) in [
        ("presence_penalty", presence),
        ("frequency_penalty", frequency),
    ] {
        check_range(param, value, -2.0, 2.0)?;
        if value.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid(
                param,
                "unsupported_parameter",
                format!("{param} is not supported by ponder serve (the sampler has no penalties); leave it out or send 0"),
            ));
        }
    }
    Ok(())
}

/// `temperature` (0..=2) and `top_p` (0..=1), checked; `top_p` 0 keeps only the most likely
/// token, which is greedy decoding: it comes back as temperature 0.
///
/// # Errors
/// [`ApiError`] 400 naming the field.
pub fn sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
) -> Result<(Option<f32>, Option<f32>), ApiError> {
    check_range("temperature", temperature, 0.0, 2.0)?;
    check_range("top_p", top_p, 0.0, 1.0)?;
    if top_p == Some(0.0) {
        return Ok((Some(0.0), None));
    }
    Ok((temperature, top_p))
}

/// The stop strings: at most 4, none empty.
///
/// # Errors
/// [`ApiError`] 400 `stop`.
pub fn stop_list(stop: Option<&Stop>) -> Result<Vec<String>, ApiError> {
    let stop = stop.cloned().map(Stop::into_vec).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "invalid_value",
            format!(
                "stop takes up to 4 non-empty strings; got {} ({} empty)",
                stop.len(),
                stop.iter().filter(|s| s.is_empty()).count()
            ),
        ));
    }
    Ok(stop)
}

/// Refuses a count below `min`.
///
/// # Errors
/// [`ApiError`] 400 `invalid_value` naming `param`.
pub fn at_least(param: &str, value: Option<u32>, min: u32) -> Result<(), ApiError> {
    match value {
        Some(v) if v < min => Err(ApiError::invalid(
            param,
            "invalid_value",
            format!("{param} = {v} is below the minimum of {min}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::openai::{ChatRequest, CompletionRequest};

    fn chat(body: &str) -> Result<ChatRequest, ApiError> {
        parse(body.as_bytes(), Endpoint::Chat)
    }

    #[test]
    fn refused_fields_are_named_and_neutral_values_pass() {
        let base = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
        for (extra, param) in [
            (
                r#""tools":[{"type":"function","function":{"name":"f"}}]"#,
                "tools",
            ),
            (r#""tool_choice":"auto""#, "tool_choice"),
            (
                r#""response_format":{"type":"json_object"}"#,
                "response_format",
            ),
            (r#""logit_bias":{"50256":-100}"#, "logit_bias"),
            (r#""functions":[{"name":"f"}]"#, "functions"),
            (r#""modalities":["text","audio"]"#, "modalities"),
        ] {
            let e = chat(&format!("{{{base},{extra}}}")).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
            assert_eq!(e.code, Some("unsupported_parameter"));
            assert!(e.message.contains(param), "{}", e.message);
        }
        for extra in [
            r#""tools":[]"#,
            r#""tools":null"#,
            r#""tool_choice":"none""#,
            r#""response_format":{"type":"text"}"#,
            r#""logit_bias":{}"#,
            r#""modalities":["text"]"#,
            r#""user":"u1","store":true,"metadata":{"a":"b"},"some_future_field":1"#,
        ] {
            assert!(chat(&format!("{{{base},{extra}}}")).is_ok(), "{extra}");
        }
        let e =
            parse::<CompletionRequest>(br#"{"prompt":"a","suffix":"b"}"#, Endpoint::Completions)
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("suffix"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (body, param) in [
            (r#"{"messages":[],"temperature":"hot"}"#, "temperature"),
            (r#"{"messages":[],"n":-1}"#, "n"),
            (r#"{"messages":[],"stream":"yes"}"#, "stream"),
            (r#"{"messages":"hi"}"#, "messages"),
            (r#"{"messages":[],"stop":[1]}"#, "stop"),
            (r#"{"messages":[],"logprobs":3}"#, "logprobs"),
        ] {
            let e = chat(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert_eq!(e.code, Some("invalid_type"));
        }
        assert!(chat("[1]").unwrap_err().param.is_none());
        assert!(chat("{").unwrap_err().param.is_none());
        let r = chat(r#"{"messages":[],"seed":-5}"#).unwrap();
        assert_eq!(r.seed, Some(-5));
        // Clients that send every field send unset ones as null.
        let r =
            chat(r#"{"messages":[],"stream":null,"logprobs":null,"n":null,"stop":null}"#).unwrap();
        assert!(!r.stream && !r.logprobs && r.n.is_none());
    }

    #[test]
    fn ranges_are_openais() {
        assert!(sampling(Some(2.0), Some(1.0)).is_ok());
        assert_eq!(
            sampling(Some(2.01), None).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert_eq!(
            sampling(Some(-0.1), None).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert_eq!(
            sampling(None, Some(1.5)).unwrap_err().param.as_deref(),
            Some("top_p")
        );
        assert_eq!(sampling(Some(1.0), Some(0.0)).unwrap(), (Some(0.0), None));
        assert!(check_penalties(Some(0.0), Some(0.0)).is_ok());
        let e = check_penalties(Some(2.5), None).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.code),
            (Some("presence_penalty"), Some("invalid_value"))
        );
        let e = check_penalties(None, Some(0.5)).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.code),
            (Some("frequency_penalty"), Some("unsupported_parameter"))
        );
        let five = Stop::Many(vec!["a".into(); 5]);
        assert_eq!(
            stop_list(Some(&five)).unwrap_err().param.as_deref(),
            Some("stop")
        );
        assert_eq!(stop_list(Some(&Stop::One("\n".into()))).unwrap(), ["\n"]);
    }

    #[test]
    fn every_field_is_in_the_guide_table_once() {
        let page =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/openai.md"))
                .expect("docs/src/openai.md");
        for f in FIELDS {
            let row = format!("| `{}` |", f.name);
            assert_eq!(
                page.matches(&row).count(),
                1,
                "docs/src/openai.md: one row {row}"
            );
            let line = page.lines().find(|l| l.starts_with(&row)).unwrap();
            let word = match f.support {
                Supported => "supported",
                Refused => "refused",
                Ignored => "ignored",
            };
            assert!(line.contains(word), "{line} should say {word}");
        }
    }
}
