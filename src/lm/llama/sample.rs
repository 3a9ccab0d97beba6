//! Sampling a generate call's branches: each branch's state, their admission into the steps of
//! the decode loop once their parents' logits are known, and the per-token advance (the sampler,
//! stop strings, end of generation, low confidence, the token budget).

use std::collections::VecDeque;
use std::sync::Arc;

use llama_cpp_2::token::LlamaToken;

use super::{Decoded, LlamaLm, Pending};
use crate::error::DecodeError;
use crate::lm::sampler::{self, Rng, Scratch};
use crate::lm::{FinishReason, GenRequest, TokenId, TokenLogprob, CONFIDENCE_TOP_K};

/// A branch being sampled by [`Lm::generate`].
pub(super) struct Branch {
    pub(super) node: u32,
    pub(super) rng: Rng,
    pub(super) bytes: Vec<u8>,
    pub(super) logprob: f64,
    pub(super) count: u32,
    pub(super) finish: Option<FinishReason>,
    pub(super) confidence: Vec<f32>,
    pub(super) certainty: Vec<f32>,
    pub(super) entropy: Vec<f32>,
    /// `Some(k)`: record each token's log-probability and the k most likely tokens.
    pub(super) top: Option<usize>,
    pub(super) token_logprobs: Vec<TokenLogprob>,
}

/// The branches of a generate call once their parents' logits are known.
pub(super) struct Sample {
    pub(super) parent_logits: Vec<Arc<[f32]>>,
    pub(super) branches: Vec<Branch>,
    /// Not yet admitted, or sent back to wait; `started` tells which.
    pub(super) queue: VecDeque<usize>,
    pub(super) active: Vec<usize>,
    pub(super) started: Vec<bool>,
}

impl Sample {
    pub(super) fn new(
        lm: &mut LlamaLm,
        requests: &[GenRequest],
        parents: &[u32],
        parent_logits: Vec<Arc<[f32]>>,
        top: Option<usize>,
    ) -> Self {
        let branches: Vec<Branch> = requests
            .iter()
            .zip(parents)
            .map(|(r, &p)| {
                let data = lm.child_of(p, &[], true);
                let node = lm.insert(data).index;
                Branch {
                    node,
                    rng: Rng::new(r.sampling.seed),
                    bytes: Vec::new(),
                    logprob: 0.0,
                    count: 0,
                    finish: None,
                    confidence: Vec::new(),
                    certainty: Vec::new(),
                    entropy: Vec::new(),
                    top,
                    token_logprobs: Vec::new(),
                }
            })
            .collect();
        Self {
            parent_logits,
            queue: (0..branches.len()).collect(),
            started: vec![false; branches.len()],
            branches,
            active: Vec::new(),
        }
    }

    pub(super) fn plan(
        &mut self,
        lm: &mut LlamaLm,
        requests: &[GenRequest],
        room: usize,
        out: &mut Vec<Pending>,
    ) -> Result<(), DecodeError> {
        let mut scratch = std::mem::take(&mut lm.scratch);
        let result: Result<(), DecodeError> = (|| {
            // Branches already decoding keep their sequences (after a failed step they may need
            // their last token again).
            for &b in &self.active {
                let node = self.branches[b].node;
                lm.pin(node);
                lm.attach(node)?;
                let len = lm.data(node).tokens.len();
                lm.truncate_kv(node, len - 1);
            }
            let mut admitted = 0;
            while admitted < room {
                let Some(b) = self.queue.pop_front() else {
                    break;
                };
                let node = self.branches[b].node;
                lm.pin(node);
                lm.attach(node)?;
                if self.started[b] {
                    let len = lm.data(node).tokens.len();
                    lm.truncate_kv(node, len - 1);
                } else {
                    self.started[b] = true;
                    lm.advance(
                        &mut self.branches[b],
                        &requests[b],
                        &self.parent_logits[b],
                        &mut scratch,
                    );
                }
                if lm.data(node).kv_len < lm.data(node).tokens.len() {
                    self.active.push(b);
                    admitted += 1;
                } else {
                    // Nothing to decode: the parent already fills the context.
                    lm.store_logits(node, self.parent_logits[b].clone());
                    lm.data_mut(node).pinned = false;
                }
            }
            Ok(())
        })();
        lm.scratch = scratch;
        result?;
        out.extend(self.active.iter().map(|&b| Pending {
            node: self.branches[b].node,
            logprobs_from: None,
            top: 0,
        }));
        Ok(())
    }

    pub(super) fn absorb(
        &mut self,
        lm: &mut LlamaLm,
        requests: &[GenRequest],
        decoded: Vec<Decoded>,
    ) {
        let mut scratch = std::mem::take(&mut lm.scratch);
        let mut still = Vec::with_capacity(self.active.len());
        for (&b, d) in self.active.iter().zip(decoded) {
            let node = self.branches[b].node;
            if self.branches[b].finish.is_none() {
                lm.advance(&mut self.branches[b], &requests[b], &d.last, &mut scratch);
            }
            if lm.data(node).kv_len < lm.data(node).tokens.len() {
                still.push(b);
            } else {
                lm.store_logits(node, d.last);
                lm.data_mut(node).pinned = false;
            }
        }
        self.active = still;
        lm.scratch = scratch;
    }
}

impl LlamaLm {
    /// Samples one token for `branch` from `logits` (unless the context is full), appends it, and
    /// decides whether the branch is finished.
    pub(super) fn advance(
        &mut self,
        branch: &mut Branch,
        request: &GenRequest,
        logits: &[f32],
        scratch: &mut Scratch,
    ) {
        if self.data(branch.node).tokens.len() >= self.sizing.cells_per_seq as usize {
            branch.finish = Some(FinishReason::ContextFull);
            return;
        }
        let (token, lp, summary) =
            sampler::sample_summarized(logits, &request.sampling, &mut branch.rng, scratch);
        let lse = summary.lse;
        branch.certainty.push(summary.certainty);
        branch.entropy.push(summary.entropy);
        if let Some(k) = branch.top {
            branch.token_logprobs.push(TokenLogprob {
                token: token as TokenId,
                logprob: lp as f32,
                top: sampler::top_logprobs(logits, lse, k, scratch),
            });
        }
        // The top-k of the same logits: one more pass over the vocabulary, no model call.
        branch.confidence.push(sampler::top_k_confidence(
            logits,
            lse,
            CONFIDENCE_TOP_K,
            scratch,
        ));
        let token = LlamaToken(token as i32);
        self.data_mut(branch.node).tokens.push(token);
        let owner = self.data(branch.node).owner;
        self.count(owner, |u| u.generated_tokens += 1);
        branch.count += 1;
        branch.logprob += lp;
        if self.model.inner.vocab().is_eog(token) && !request.ignore_eos {
            branch.finish = Some(FinishReason::Eos);
            return;
        }
        let piece = self.piece(token);
        branch.bytes.extend_from_slice(&piece);
        for (k, stop) in request.stop.iter().enumerate() {
            let from = branch
                .bytes
                .len()
                .saturating_sub(piece.len() + stop.len().saturating_sub(1));
            if contains(&branch.bytes[from..], stop.as_bytes()) {
                branch.finish = Some(FinishReason::Stop(k));
                return;
            }
        }
        if request
            .confidence_stop
            .is_some_and(|c| c.triggered(&branch.confidence))
        {
            branch.finish = Some(FinishReason::LowConfidence);
            return;
        }
        if branch.count >= request.max_tokens {
            branch.finish = Some(FinishReason::MaxTokens);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
