//! Plain generation (no search): `n` completions of each prompt sampled in one batch from one
//! shared prefill, with per-token log-probabilities when asked for and the prompt's own
//! (`echo`) from one forced pass.

use std::sync::Arc;

use crate::lm::{GenRequest, Generation, Lm, Message, Node, SamplingParams, TokenId, TokenLogprob};
use crate::{CancelToken, DecodeError, Engine, FinishReason, Usage};

/// One prompt of plain generation.
#[derive(Debug, Clone, PartialEq)]
pub enum PlainPrompt {
    /// A conversation, rendered through the model's chat template (chat completions).
    Chat(Vec<Message>),
    /// Raw text, tokenised as it is (text completions).
    Text(String),
    /// Token ids, used as given.
    Tokens(Vec<TokenId>),
}

/// What plain generation is asked for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainJob {
    /// The prompts; every one gets `n` completions.
    pub prompts: Vec<PlainPrompt>,
    /// Completions returned per prompt.
    pub n: u32,
    /// Completions sampled per prompt (`>= n`); the `n` with the highest mean log-probability
    /// are returned.
    pub best_of: u32,
    /// New tokens per completion; 0 samples nothing (with `echo`: score the prompt only).
    pub max_tokens: u32,
    /// Sampling; completion `i` of a prompt uses the seed plus `i`.
    pub sampling: SamplingParams,
    /// Generation stops at the first of these; the text is cut before it.
    pub stop: Vec<String>,
    /// `Some(k)`: every token's log-probability and the `k` most likely tokens at its position.
    pub logprobs: Option<u32>,
    /// Also return each prompt's tokens (with log-probabilities when `logprobs` is set).
    pub echo: bool,
}

/// One token with its text and log-probabilities, ready for a response.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    /// The token's text.
    pub text: String,
    /// Its log-probability; `None` for a first prompt token, which has no context.
    pub logprob: Option<f32>,
    /// The most likely tokens at its position, with their log-probabilities.
    pub top: Vec<(String, f32)>,
}

/// One returned completion.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainChoice {
    /// Which prompt it continues.
    pub prompt: usize,
    /// The text, cut before the first stop string.
    pub text: String,
    /// `stop` or `length`.
    pub finish: &'static str,
    /// Its tokens, when log-probabilities were asked for.
    pub tokens: Option<Vec<TokenInfo>>,
}

/// A prompt as the response shows it with `echo`.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoedPrompt {
    /// The prompt's text (without the special tokens the tokenizer adds).
    pub text: String,
    /// Its tokens, when log-probabilities were asked for.
    pub tokens: Option<Vec<TokenInfo>>,
}

/// The result of a [`PlainJob`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// `n` per prompt, prompt by prompt.
    pub choices: Vec<PlainChoice>,
    /// With `echo`, one per prompt.
    pub echoed: Vec<EchoedPrompt>,
    /// Completions sampled.
    pub sampled: usize,
    /// The work it took.
    pub usage: Usage,
}

/// Runs `job` on a model handle of its own; `cancel` stops it within one forward pass.
///
/// # Errors
/// Model errors; [`DecodeError::Cancelled`] when cancelled; [`DecodeError::Unsupported`] for
/// log-probabilities on a backend that cannot give them.
pub fn run(
    engine: &Engine,
    job: &PlainJob,
    cancel: &CancelToken,
) -> Result<Generated, DecodeError> {
    engine.with_lm(|lm| {
        if cancel.is_cancelled() {
            return Err(DecodeError::Cancelled);
        }
        // As a solve: alone, it starts from a fresh cache, so a seed gives the same text.
        lm.reset();
        let token = cancel.clone();
        let previous = lm.interrupt();
        lm.set_interrupt(Some(Arc::new(move || {
            token.is_cancelled() || previous.as_ref().is_some_and(|p| p())
        })));
        let before = lm.usage();
        let mut made = Vec::new();
        let result = generate(lm, job, &mut made);
        for node in made {
            lm.release(node);
        }
        lm.set_interrupt(None);
        let usage = lm.usage().since(&before);
        result.map(|mut g| {
            g.usage = usage;
            g
        })
    })
}

fn generate(
    lm: &mut dyn Lm,
    job: &PlainJob,
    made: &mut Vec<Node>,
) -> Result<Generated, DecodeError> {
    let mut roots = Vec::with_capacity(job.prompts.len());
    for p in &job.prompts {
        let root = match p {
            PlainPrompt::Chat(messages) => lm.root(messages)?,
            PlainPrompt::Text(text) => lm.root_text(text)?,
            PlainPrompt::Tokens(ids) => lm.root_tokens(ids)?,
        };
        made.push(root);
        roots.push(root);
    }
    let echoed = if job.echo {
        echo(lm, job, &roots, made)?
    } else {
        Vec::new()
    };
    let mut choices = Vec::new();
    let mut sampled = 0;
    if job.max_tokens == 0 {
        // Nothing to sample: the prompt alone (echo), n times as OpenAI answers.
        for prompt in 0..job.prompts.len() {
            for _ in 0..job.n {
                choices.push(PlainChoice {
                    prompt,
                    text: String::new(),
                    finish: "length",
                    tokens: job.logprobs.map(|_| Vec::new()),
                });
            }
        }
    } else {
        let requests: Vec<GenRequest> = roots
            .iter()
            .flat_map(|&root| {
                (0..job.best_of).map(move |i| GenRequest {
                    stop: job.stop.clone(),
                    ..GenRequest::sample(root, &job.sampling, i, job.max_tokens)
                })
            })
            .collect();
        let generations = match job.logprobs {
            Some(top) => lm.generate_logprobs(&requests, top)?,
            None => lm.generate(&requests)?,
        };
        made.extend(generations.iter().map(|g| g.node));
        sampled = generations.len();
        for (prompt, group) in generations.chunks(job.best_of as usize).enumerate() {
            let mut order: Vec<usize> = (0..group.len()).collect();
            if job.best_of > job.n {
                // OpenAI's best_of: the highest log-probability per token first.
                order.sort_by(|&a, &b| group[b].mean_logprob().total_cmp(&group[a].mean_logprob()));
            }
            for &i in order.iter().take(job.n as usize) {
                choices.push(choice(lm, job, prompt, &group[i]));
            }
        }
    }
    Ok(Generated {
        choices,
        echoed,
        sampled,
        usage: Usage::default(),
    })
}

/// Each prompt's tokens, and with `logprobs` their log-probabilities: one forced pass over
/// every prompt from its first token (which has no context of its own and so no logprob).
fn echo(
    lm: &mut dyn Lm,
    job: &PlainJob,
    roots: &[Node],
    made: &mut Vec<Node>,
) -> Result<Vec<EchoedPrompt>, DecodeError> {
    let mut all = Vec::with_capacity(roots.len());
    for (p, &root) in job.prompts.iter().zip(roots) {
        let tokens = lm.node_tokens(root)?;
        // The special tokens the tokenizer puts before a text (BOS) are not part of it.
        let specials = match p {
            PlainPrompt::Text(text) => tokens.len().saturating_sub(lm.tokenize(text)?.len()),
            PlainPrompt::Chat(_) | PlainPrompt::Tokens(_) => 0,
        };
        all.push((tokens, specials));
    }
    let Some(top) = job.logprobs else {
        return Ok(all
            .iter()
            .zip(&job.prompts)
            .map(|((tokens, specials), p)| EchoedPrompt {
                text: prompt_text(lm, p, &tokens[*specials..]),
                tokens: None,
            })
            .collect());
    };
    // Scored from the first token on: the context is the specials, or the first token itself.
    let mut contexts = Vec::with_capacity(all.len());
    for (tokens, specials) in &all {
        let ctx = (*specials).max(1).min(tokens.len());
        let node = lm.root_tokens(&tokens[..ctx])?;
        made.push(node);
        contexts.push((node, ctx));
    }
    let queries: Vec<(Node, &[TokenId])> = contexts
        .iter()
        .zip(&all)
        .map(|(&(node, ctx), (tokens, _))| (node, &tokens[ctx..]))
        .collect();
    let scored = lm.forced_top_logprobs(&queries, top)?;
    Ok(all
        .iter()
        .zip(&job.prompts)
        .zip(scored)
        .map(|(((tokens, specials), p), scored)| {
            let mut infos: Vec<TokenInfo> = tokens[*specials..]
                .iter()
                .take(usize::from(*specials == 0))
                .map(|&t| TokenInfo {
                    text: lm.token_text(t),
                    logprob: None,
                    top: Vec::new(),
                })
                .collect();
            infos.extend(scored.iter().map(|t| info(lm, t)));
            EchoedPrompt {
                text: prompt_text(lm, p, &tokens[*specials..]),
                tokens: Some(infos),
            }
        })
        .collect())
}

fn prompt_text(lm: &dyn Lm, prompt: &PlainPrompt, tokens: &[TokenId]) -> String {
    match prompt {
        PlainPrompt::Text(text) => text.clone(),
        PlainPrompt::Chat(_) | PlainPrompt::Tokens(_) => {
            tokens.iter().map(|&t| lm.token_text(t)).collect()
        }
    }
}

fn info(lm: &dyn Lm, t: &TokenLogprob) -> TokenInfo {
    TokenInfo {
        text: lm.token_text(t.token),
        logprob: Some(t.logprob),
        top: t
            .top
            .iter()
            .map(|&(id, lp)| (lm.token_text(id), lp))
            .collect(),
    }
}

/// A generation as a returned completion, the end-of-generation token left out of its tokens.
fn choice(lm: &dyn Lm, job: &PlainJob, prompt: usize, g: &Generation) -> PlainChoice {
    let tokens = job.logprobs.map(|_| {
        let mut sampled = g.token_logprobs.as_slice();
        if g.finish == FinishReason::Eos {
            sampled = &sampled[..sampled.len().saturating_sub(1)];
        }
        sampled.iter().map(|t| info(lm, t)).collect()
    });
    cut(&job.stop, prompt, &g.text, &g.finish, tokens)
}

/// A completion cut before the first stop string, its tokens with it (those that start before
/// the cut).
fn cut(
    stop: &[String],
    prompt: usize,
    text: &str,
    finish: &FinishReason,
    tokens: Option<Vec<TokenInfo>>,
) -> PlainChoice {
    let at = stop.iter().filter_map(|s| text.find(s.as_str())).min();
    let finish = match (finish, at) {
        (_, Some(_)) => "stop",
        (FinishReason::MaxTokens | FinishReason::ContextFull, None) => "length",
        _ => "stop",
    };
    let text = at.map_or(text, |at| &text[..at]).to_string();
    let tokens = tokens.map(|tokens| {
        let mut offset = 0;
        tokens
            .into_iter()
            .take_while(|t| {
                let start = offset;
                offset += t.text.len();
                at.is_none() || start < text.len()
            })
            .collect()
    });
    PlainChoice {
        prompt,
        text,
        finish,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> TokenInfo {
        TokenInfo {
            text: text.into(),
            logprob: Some(-0.5),
            top: vec![(text.into(), -0.5)],
        }
    }

    #[test]
    fn a_choice_is_cut_before_the_stop_string_with_its_tokens() {
        let tokens = || Some(["a", "b", "\n", "c", "d"].map(token).to_vec());
        let stop = ["\n".to_string()];
        let c = cut(&stop, 1, "ab\ncd", &FinishReason::Stop(0), tokens());
        assert_eq!((c.prompt, c.text.as_str(), c.finish), (1, "ab", "stop"));
        assert_eq!(c.tokens.unwrap().len(), 2);
        // No stop string in the text: all of it, and the reason the generation ended.
        let c = cut(&stop, 0, "abcd", &FinishReason::MaxTokens, tokens());
        assert_eq!((c.text.as_str(), c.finish), ("abcd", "length"));
        assert_eq!(c.tokens.unwrap().len(), 5);
        let c = cut(&[], 0, "ab", &FinishReason::Eos, None);
        assert_eq!((c.text.as_str(), c.finish, c.tokens), ("ab", "stop", None));
    }
}
