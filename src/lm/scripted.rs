//! A scripted [`Lm`] for testing search logic without a model.
//!
//! Its vocabulary is the 256 bytes plus three words: `Yes` (256), `No` (257) and an
//! end-of-generation token (258). What it "generates" comes from a closure that sees the parent's
//! whole text and how many times that parent has been sampled from; what the self-judge reads
//! comes from a closure that sees the whole text of the node being judged and returns P(yes).
//! That makes a search's decisions exactly predictable, so tests can assert visit counts.
//!
//! It is a test double for strategies, not a model: tests of the engine itself run the real
//! llama.cpp backend.

use std::collections::HashMap;

use super::nodes::NodeTable;
use super::{DecodeError, FinishReason, GenRequest, Generation, Lm, Message, Node, TokenId, Usage};

/// Token id of the word `Yes`.
pub const YES: TokenId = 256;
/// Token id of the word `No`.
pub const NO: TokenId = 257;
/// Token id of end of generation.
pub const EOS: TokenId = 258;

/// What the script is asked for one sample.
#[derive(Debug)]
pub struct StepQuery<'a> {
    /// The parent's whole text (prompt included).
    pub text: &'a str,
    /// How many samples were taken from this same prefix before this one.
    pub ordinal: usize,
    /// The request.
    pub request: &'a GenRequest,
}

/// What one sample produces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScriptedStep {
    /// The text (cut at the request's first stop string or `max_tokens` bytes).
    pub text: String,
    /// Whether the model ends its turn after the text.
    pub eos: bool,
    /// Log-probability of each generated token.
    pub logprob_per_token: f64,
    /// Token confidence of each generated token, in order; the last value repeats past its end,
    /// and an empty list means `-logprob_per_token` for every token.
    pub confidence: Vec<f32>,
    /// Self-certainty of each generated token ([`Generation::certainty`]), in order; the last
    /// value repeats past its end, and an empty list gives the generation none.
    pub certainty: Vec<f32>,
    /// Entropy of each generated token ([`Generation::entropy`]), as `certainty`.
    pub entropy: Vec<f32>,
}

type StepFn = dyn FnMut(&StepQuery<'_>) -> ScriptedStep + Send;
type JudgeFn = dyn FnMut(&str) -> f64 + Send;
type ForcedFn = dyn FnMut(&str, &str, &str) -> f32 + Send;

/// An [`Lm`] whose samples and verdicts come from closures.
pub struct ScriptedLm {
    nodes: NodeTable<Vec<TokenId>>,
    sampled: HashMap<Vec<TokenId>, usize>,
    step: Box<StepFn>,
    judge: Box<JudgeFn>,
    forced: Option<Box<ForcedFn>>,
    forced_contexts: Vec<String>,
    usage: Usage,
}

impl std::fmt::Debug for ScriptedLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedLm")
            .field("live_nodes", &self.live_nodes())
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

impl ScriptedLm {
    /// A model that samples with `step` and judges with `judge` (P(yes), clamped to [0, 1]).
    pub fn new(
        step: impl FnMut(&StepQuery<'_>) -> ScriptedStep + Send + 'static,
        judge: impl FnMut(&str) -> f64 + Send + 'static,
    ) -> Self {
        Self {
            nodes: NodeTable::new(),
            sampled: HashMap::new(),
            step: Box::new(step),
            judge: Box::new(judge),
            forced: None,
            forced_contexts: Vec::new(),
            usage: Usage::default(),
        }
    }

    /// This model with the log-probabilities of forced text ([`Lm::forced_logprobs`]) from
    /// `forced(context, text, token)`: the whole text of the node forced after, the forced text,
    /// and the text of the token scored (without it, every forced token scores -1).
    #[must_use]
    pub fn with_forced(
        mut self,
        forced: impl FnMut(&str, &str, &str) -> f32 + Send + 'static,
    ) -> Self {
        self.forced = Some(Box::new(forced));
        self
    }

    /// The whole text of every node that [`Lm::forced_logprobs`] scored after, in call order.
    pub fn forced_contexts(&self) -> &[String] {
        &self.forced_contexts
    }

    /// Nodes not yet released.
    pub fn live_nodes(&self) -> usize {
        self.nodes.count()
    }

    /// The text of `tokens`.
    pub fn detokenize(tokens: &[TokenId]) -> String {
        let mut bytes = Vec::new();
        for &t in tokens {
            match t {
                YES => bytes.extend_from_slice(b"Yes"),
                NO => bytes.extend_from_slice(b"No"),
                0..=255 => bytes.push(t as u8),
                _ => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn tokens(&self, node: Node) -> Result<&Vec<TokenId>, DecodeError> {
        self.nodes.get(node)
    }

    fn add(&mut self, tokens: Vec<TokenId>) -> Node {
        self.nodes.insert(tokens)
    }
}

impl Lm for ScriptedLm {
    fn chat_text(&self, messages: &[Message]) -> Result<String, DecodeError> {
        let mut s = String::new();
        for m in messages {
            s.push_str(&format!("<|{}|>\n{}\n", m.role, m.content));
        }
        s.push_str("<|assistant|>\n");
        Ok(s)
    }

    fn root_text(&mut self, text: &str) -> Result<Node, DecodeError> {
        let tokens = self.tokenize(text)?;
        self.root_tokens(&tokens)
    }

    fn root_tokens(&mut self, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.usage.prompt_tokens += tokens.len() as u64;
        self.usage.prefill_tokens += tokens.len() as u64;
        Ok(self.add(tokens.to_vec()))
    }

    fn extend_tokens(&mut self, node: Node, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        let mut all = self.tokens(node)?.clone();
        all.extend_from_slice(tokens);
        self.usage.prefill_tokens += tokens.len() as u64;
        Ok(self.add(all))
    }

    fn generate(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError> {
        for r in requests {
            r.validate()?;
            self.tokens(r.parent)?;
        }
        let mut out = Vec::with_capacity(requests.len());
        let mut longest = 0;
        for request in requests {
            let parent = self.tokens(request.parent)?.clone();
            let text = Self::detokenize(&parent);
            let ordinal = {
                let n = self.sampled.entry(parent.clone()).or_insert(0);
                *n += 1;
                *n - 1
            };
            let step = (self.step)(&StepQuery {
                text: &text,
                ordinal,
                request,
            });
            let mut body = step.text.clone();
            let mut finish = if step.eos {
                FinishReason::Eos
            } else {
                FinishReason::MaxTokens
            };
            let cut = request
                .stop
                .iter()
                .enumerate()
                .filter_map(|(i, s)| body.find(s.as_str()).map(|at| (at + s.len(), i)))
                .min();
            if let Some((end, i)) = cut {
                body.truncate(end);
                finish = FinishReason::Stop(i);
            }
            let mut tokens = self.tokenize(&body)?;
            if tokens.len() > request.max_tokens as usize {
                tokens.truncate(request.max_tokens as usize);
                finish = FinishReason::MaxTokens;
            } else if finish == FinishReason::Eos {
                tokens.push(EOS);
            }
            let conf_at = |i: usize| -> f32 {
                step.confidence
                    .get(i)
                    .or(step.confidence.last())
                    .copied()
                    .unwrap_or(-step.logprob_per_token as f32)
            };
            let mut confidence: Vec<f32> = (0..tokens.len()).map(conf_at).collect();
            let repeat = |xs: &[f32], n: usize| -> Vec<f32> {
                xs.last().map_or_else(Vec::new, |&last| {
                    (0..n).map(|i| xs.get(i).copied().unwrap_or(last)).collect()
                })
            };
            if let Some(stop) = request.confidence_stop {
                if let Some(i) = stop.first_trigger(&confidence) {
                    if i + 1 < tokens.len() || finish != FinishReason::Eos {
                        tokens.truncate(i + 1);
                        confidence.truncate(i + 1);
                        finish = FinishReason::LowConfidence;
                    }
                }
            }
            let n = tokens.len();
            longest = longest.max(n);
            let mut all = parent;
            all.extend_from_slice(&tokens);
            let node = self.add(all);
            self.usage.generated_tokens += n as u64;
            self.usage.decoded_tokens += n as u64;
            out.push(Generation {
                node,
                text: Self::detokenize(&tokens),
                tokens: n as u32,
                logprob: step.logprob_per_token * n as f64,
                finish,
                certainty: repeat(&step.certainty, confidence.len()),
                entropy: repeat(&step.entropy, confidence.len()),
                confidence,
                token_logprobs: Vec::new(),
            });
        }
        self.usage.forward_passes += longest as u64;
        Ok(out)
    }

    fn next_token_probs(
        &mut self,
        queries: &[(Node, &[TokenId])],
    ) -> Result<Vec<Vec<f32>>, DecodeError> {
        let mut out = Vec::with_capacity(queries.len());
        for (node, candidates) in queries {
            let text = Self::detokenize(self.tokens(*node)?);
            let yes = (self.judge)(&text).clamp(0.0, 1.0);
            out.push(
                candidates
                    .iter()
                    .map(|&t| match t {
                        YES => yes as f32,
                        NO => (1.0 - yes) as f32,
                        _ => 0.0,
                    })
                    .collect(),
            );
        }
        self.usage.forward_passes += 1;
        Ok(out)
    }

    fn forced_logprobs(&mut self, queries: &[(Node, &str)]) -> Result<Vec<Vec<f32>>, DecodeError> {
        let mut out = Vec::with_capacity(queries.len());
        for (node, text) in queries {
            let context = Self::detokenize(self.tokens(*node)?);
            let tokens = self.tokenize(text)?;
            // As the real backend counts it: the forced tokens are run through the model once.
            self.usage.prefill_tokens += tokens.len() as u64;
            let lps = match self.forced.as_mut() {
                Some(f) => tokens
                    .iter()
                    .map(|&t| f(&context, text, &Self::detokenize(&[t])))
                    .collect(),
                None => vec![-1.0; tokens.len()],
            };
            self.forced_contexts.push(context);
            out.push(lps);
        }
        self.usage.forward_passes += 1;
        Ok(out)
    }

    fn release(&mut self, node: Node) {
        self.nodes.release(node);
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, DecodeError> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"Yes") {
                out.push(YES);
                i += 3;
            } else if bytes[i..].starts_with(b"No") {
                out.push(NO);
                i += 2;
            } else {
                out.push(TokenId::from(bytes[i]));
                i += 1;
            }
        }
        Ok(out)
    }

    fn token_text(&self, token: TokenId) -> String {
        Self::detokenize(&[token])
    }

    fn vocab_size(&self) -> usize {
        259
    }

    fn node_len(&self, node: Node) -> Result<usize, DecodeError> {
        Ok(self.tokens(node)?.len())
    }

    fn node_tokens(&self, node: Node) -> Result<Vec<TokenId>, DecodeError> {
        Ok(self.tokens(node)?.clone())
    }
}
