//! The wire format: request bodies and what the servers answer (llama-server's and the OpenAI
//! legacy shapes of token ids, log-probabilities and completions), read into the tree's terms.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::RemoteLm;
use crate::error::DecodeError;
use crate::lm::{FinishReason, GenRequest, TokenId, Usage};

/// One sampled token as a server reports it.
pub(super) struct Sampled {
    pub(super) id: Option<TokenId>,
    pub(super) text: String,
    pub(super) logprob: f64,
    /// Minus the mean of the position's top log-probabilities, where the server gave them.
    pub(super) confidence: Option<f32>,
}

/// One completion as read: the new tokens, text, log-likelihood, finish reason and token
/// confidences.
pub(super) type ReadGeneration = (Vec<TokenId>, String, f64, FinishReason, Vec<f32>);

/// Minus the mean of a list of log-probabilities (`None` for an empty list).
pub(super) fn confidence_of(lps: impl Iterator<Item = f64>) -> Option<f32> {
    let (mut sum, mut n) = (0.0, 0usize);
    for l in lps.filter(|l| l.is_finite()) {
        sum += l;
        n += 1;
    }
    (n > 0).then(|| (-sum / n as f64) as f32)
}

/// Sets every field of `extra` in `body`.
pub(super) fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
}

/// `v[field]` as token ids (plain numbers, or llama-server's `{"id":…}` pieces).
pub(super) fn token_ids(v: &Value, field: &str) -> Option<Vec<TokenId>> {
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
pub(super) fn id_from_token_string(s: &str) -> Option<TokenId> {
    s.strip_prefix("token_id:")?.parse().ok()
}

/// The sampled tokens of a completion's `logprobs`: llama-server's `{"content":[{id, token,
/// logprob}]}` or the OpenAI legacy `{"tokens":[…], "token_logprobs":[…]}`.
pub(super) fn sampled_tokens(logprobs: Option<&Value>) -> Vec<Sampled> {
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
pub(super) fn top_logprobs(v: &Value) -> Option<HashMap<TokenId, f64>> {
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
    /// A `/tokenize` request: llama-server reads `content`/`add_special`, vLLM
    /// `prompt`/`add_special_tokens`.
    pub(super) fn tokenize_body(&self, text: &str, add_special: bool) -> Value {
        json!({
            "model": self.shared.model,
            "content": text,
            "prompt": text,
            "add_special": add_special,
            "add_special_tokens": add_special,
            "parse_special": true,
        })
    }

    /// The body of a completion request continuing `prompt`.
    pub(super) fn completion_body(
        &self,
        prompt: &[TokenId],
        max_tokens: u32,
        logprobs: u32,
    ) -> Value {
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
    pub(super) fn account(&mut self, responses: &[Value], sampled: bool) {
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

    /// The new tokens, text, log-likelihood and finish reason of one completion.
    pub(super) fn read_generation(
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

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

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
}
