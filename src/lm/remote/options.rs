//! [`RemoteOptions`]: how to reach the served model (its servers, retries, the cap on requests in
//! flight, the client-side tokenizer), checked before anything is sent.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

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
    /// How many most-likely next tokens [`Lm::next_token_probs`](crate::lm::Lm::next_token_probs) asks for; a candidate outside
    /// them gets probability 0.
    pub top_logprobs: u32,
    /// The context size per request; default: what the server reports (`/props`, vLLM's
    /// `max_model_len`).
    pub n_ctx: Option<u32>,
    /// A Hugging Face `tokenizer.json` of the served model: text is then tokenised on the client
    /// instead of by one `POST /tokenize` per call (`scripts/export-tokenizer.py` writes one from
    /// the model's GGUF file). At connect time it must tokenise a set of probe strings exactly as
    /// the server does, or the connection is refused ([`TokenizerError::Mismatch`](crate::TokenizerError::Mismatch)).
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
}
