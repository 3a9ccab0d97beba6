//! Sequence and cache bookkeeping: the node table, sequence ids and parking (least recently used
//! first), forks across the two KV layouts, the kept logits, and the batch that decodes the pending
//! tokens of many nodes in as few `llama_decode` calls as it can.

use std::collections::HashMap;
use std::sync::Arc;

use llama_cpp_2::token::LlamaToken;

use super::sched::Owner;
use super::LlamaLm;
use crate::error::DecodeError;
use crate::lm::{Node, TokenId};

pub(super) struct NodeData {
    /// The whole prefix. Stored whole so that finding the live sequence sharing the longest prefix
    /// is a plain comparison, whatever the tree's shape.
    pub(super) tokens: Vec<LlamaToken>,
    /// `tokens[own_start..]` are this node's own tokens.
    pub(super) own_start: usize,
    /// Whether the own tokens were sampled (else forced).
    pub(super) sampled: bool,
    /// Leading tokens that have been run through the model for this prefix at some point; decoding
    /// below this mark again is a recomputation.
    pub(super) computed: usize,
    /// The sequence holding this node's cache, if attached.
    pub(super) seq: Option<i32>,
    /// `tokens[..kv_len]` are in `seq`'s cache.
    pub(super) kv_len: usize,
    /// Logits for the token after the whole prefix.
    pub(super) logits: Option<Arc<[f32]>>,
    pub(super) last_used: u64,
    /// In use by the current operation: never parked.
    pub(super) pinned: bool,
    pub(super) parked: bool,
    /// The solve that made it (see [`SharedLlama`]); other solves cannot see it.
    pub(super) owner: Owner,
}

impl NodeData {
    /// A node in no sequence yet, last used at `clock`: `tokens[own_start..]` are its own, the
    /// first `computed` of `tokens` were run through the model before.
    pub(super) fn detached(
        tokens: Vec<LlamaToken>,
        own_start: usize,
        sampled: bool,
        computed: usize,
        owner: Owner,
        clock: u64,
    ) -> Self {
        Self {
            tokens,
            own_start,
            sampled,
            computed,
            seq: None,
            kv_len: 0,
            logits: None,
            last_used: clock,
            pinned: false,
            parked: false,
            owner,
        }
    }
}

/// Decode `tokens[kv_len..]` of `node` (already attached), returning its last logits and, with
/// `logprobs_from = Some(p)`, the log-probability of each token after position `p - 1` (and
/// the `top` most likely tokens there).
pub(super) struct Pending {
    pub(super) node: u32,
    pub(super) logprobs_from: Option<usize>,
    pub(super) top: usize,
}

/// One token of a batch, shared by every entry that has it pending after the same prefix.
pub(super) struct BatchItem {
    pub(super) pos: usize,
    pub(super) token: LlamaToken,
    pub(super) seqs: Vec<i32>,
    pub(super) members: Vec<usize>,
    pub(super) logits: bool,
}

/// A 128-bit hash of a token prefix (two independent 64-bit rolling hashes), so that equal
/// pending tokens of different entries can be found without comparing whole prefixes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PrefixHash(u64, u64);

impl PrefixHash {
    pub(super) fn of(tokens: &[LlamaToken]) -> Self {
        tokens
            .iter()
            .fold(Self(0xcbf2_9ce4_8422_2325, 0), |h, &t| h.push(t))
    }

    pub(super) fn push(self, token: LlamaToken) -> Self {
        let t = u64::from(token.0 as u32);
        Self(
            (self.0 ^ t).wrapping_mul(0x0000_0100_0000_01b3),
            self.1
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(t + 1)
                .rotate_left(17),
        )
    }
}

pub(super) struct Decoded {
    pub(super) last: Arc<[f32]>,
    pub(super) logprobs: Vec<f32>,
    /// Per position of `logprobs`, the most likely tokens (when [`Pending::top`] asked).
    pub(super) top: Vec<Vec<(TokenId, f32)>>,
}

impl LlamaLm {
    // ----- node table -------------------------------------------------------------------------

    pub(super) fn index(&self, node: Node) -> Result<u32, DecodeError> {
        match self.nodes.get(node) {
            Ok(data) if data.owner == self.caller => Ok(node.index),
            _ => Err(DecodeError::UnknownNode { node: node.index }),
        }
    }

    pub(super) fn data(&self, i: u32) -> &NodeData {
        self.nodes.at(i).expect("index checked by `index`")
    }

    pub(super) fn data_mut(&mut self, i: u32) -> &mut NodeData {
        self.nodes.at_mut(i).expect("index checked by `index`")
    }

    pub(super) fn insert(&mut self, data: NodeData) -> Node {
        self.nodes.insert(data)
    }

    pub(super) fn handle(&self, i: u32) -> Node {
        self.nodes.handle(i)
    }

    pub(super) fn child_of(&self, parent: u32, own: &[LlamaToken], sampled: bool) -> NodeData {
        let p = self.data(parent);
        let mut tokens = Vec::with_capacity(p.tokens.len() + own.len().max(16));
        tokens.extend_from_slice(&p.tokens);
        tokens.extend_from_slice(own);
        NodeData::detached(
            tokens,
            p.tokens.len(),
            sampled,
            p.computed,
            p.owner,
            self.clock,
        )
    }

    pub(super) fn touch(&mut self, i: u32) {
        self.clock += 1;
        let clock = self.clock;
        self.data_mut(i).last_used = clock;
    }

    pub(super) fn pin(&mut self, i: u32) {
        self.touch(i);
        self.data_mut(i).pinned = true;
    }

    // ----- sequences and parking -------------------------------------------------------------

    pub(super) fn free_seq(&mut self, seq: i32) {
        self.ctx.clear_seq(Some(seq as u32), None, None);
        self.free_seqs.push(seq);
    }

    /// Parks the least recently used idle node holding a sequence. Returns false if none.
    pub(super) fn park_lru(&mut self) -> bool {
        let victim = self
            .nodes
            .iter()
            .filter(|(_, n)| n.seq.is_some() && !n.pinned)
            .min_by_key(|(_, n)| n.last_used)
            .map(|(i, _)| i);
        let Some(i) = victim else { return false };
        self.park(i);
        true
    }

    /// Frees node `i`'s sequence and keeps its tokens.
    pub(super) fn park(&mut self, i: u32) {
        let n = self.data_mut(i);
        let seq = n.seq.take().expect("attached");
        n.kv_len = 0;
        n.logits = None;
        n.parked = true;
        let owner = n.owner;
        self.count(owner, |u| u.parked += 1);
        self.free_seq(seq);
    }

    /// The lowest free sequence id, parking a node when none is free. Lowest first keeps the
    /// sequences decoded together next to each other, which `streams` needs to decode them in
    /// one pass (see [`LlamaLm::compact_streams`]).
    pub(super) fn alloc_seq(&mut self) -> Result<i32, DecodeError> {
        loop {
            if let Some(at) = (0..self.free_seqs.len()).min_by_key(|&k| self.free_seqs[k]) {
                return Ok(self.free_seqs.swap_remove(at));
            }
            if !self.park_lru() {
                // Unreachable while operations pin at most n_seq_max nodes; kept as an error
                // rather than a panic.
                return Err(DecodeError::KvCacheFull { tokens: 0 });
            }
        }
    }

    /// Gives node `i` a sequence, sharing the longest prefix any live sequence has with it.
    pub(super) fn attach(&mut self, i: u32) -> Result<(), DecodeError> {
        if self.data(i).seq.is_some() {
            return Ok(());
        }
        let tokens = &self.data(i).tokens;
        // (owner, its sequence, shared length)
        let mut best: Option<(u32, i32, usize)> = None;
        for (j, other) in self.nodes.iter() {
            let (Some(other_seq), true) = (other.seq, j != i) else {
                continue;
            };
            let shared = tokens
                .iter()
                .zip(&other.tokens[..other.kv_len])
                .take_while(|(a, b)| a == b)
                .count();
            if shared > best.map_or(0, |b| b.2) {
                best = Some((j, other_seq, shared));
            }
        }
        let (seq, shared) = match best {
            // No sequence free and the best source is idle: the new node takes over the
            // source's sequence (cut back to the shared prefix) instead of parking some node and
            // copying. Forking the only child of an idle parent under pressure costs nothing.
            // (Not when a sequence is free, in `streams` either, although a fork copies a whole
            // stream there: the source's cache would be lost, and decoding it again when the
            // search comes back to it costs far more than the copy.)
            Some((owner, src, shared)) if self.free_seqs.is_empty() && !self.data(owner).pinned => {
                self.truncate_kv(owner, shared);
                let o = self.data_mut(owner);
                o.seq = None;
                o.kv_len = 0;
                o.logits = None;
                o.parked = true;
                let owner = o.owner;
                self.count(owner, |u| u.parked += 1);
                (src, shared)
            }
            _ => {
                let seq = self.alloc_seq()?;
                if let Some((_, src, shared)) = best {
                    // `alloc_seq` may have parked the source; share only if it is still live.
                    if self
                        .nodes
                        .iter()
                        .any(|(_, n)| n.seq == Some(src) && n.kv_len >= shared)
                    {
                        let owner = self.data(i).owner;
                        self.fork_seq(owner, src, seq, shared);
                        (seq, shared)
                    } else {
                        (seq, 0)
                    }
                } else {
                    (seq, 0)
                }
            }
        };
        let n = self.data_mut(i);
        n.seq = Some(seq);
        n.kv_len = shared;
        n.computed = n.computed.max(shared);
        let reactivated = std::mem::take(&mut n.parked);
        let owner = n.owner;
        self.count(owner, |u| {
            u.reused_tokens += shared as u64;
            u.reactivated += u64::from(reactivated);
        });
        Ok(())
    }

    /// Makes the free sequence `dst` hold `src`'s first `len` positions, counting a stream copy
    /// against `owner`.
    pub(super) fn fork_seq(&mut self, owner: Owner, src: i32, dst: i32, len: usize) {
        if self.ctx.fork(src, dst, len as u32) {
            let bytes = self.stream_bytes;
            self.count(owner, |u| {
                u.kv_copies += 1;
                u.kv_copy_bytes += bytes;
            });
        }
    }

    /// In `streams`, llama.cpp decodes in one pass only sequences with consecutive ids (it
    /// splits a batch at every gap, and each part is a forward pass of its own). Before a batch,
    /// this moves the entries' sequences into one run of consecutive ids: it picks the run that
    /// already holds most of them, moves whatever idle node holds an id inside it to a free id
    /// outside (or parks it when none is free), and moves the entries outside the run into the
    /// gaps. Each move is one stream copy. Lowest-first allocation makes this rare; a branch that
    /// finishes before its siblings costs two copies (it moves out, the last sibling moves in).
    pub(super) fn compact_streams(&mut self, entries: &[Pending]) {
        let mut seqs: Vec<i32> = entries
            .iter()
            .map(|p| self.data(p.node).seq.expect("attached"))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let k = seqs.len() as i32;
        if k < 2 || seqs[seqs.len() - 1] - seqs[0] + 1 == k {
            return;
        }
        let n = self.sizing.n_seq_max as i32;
        let start = seqs
            .iter()
            .map(|&s| s.min(n - k))
            .max_by_key(|&a| {
                let covered = seqs.iter().filter(|&&s| s >= a && s < a + k).count();
                // Most covered; among equals the lowest run.
                (covered, -a)
            })
            .expect("k >= 2");
        let window = start..start + k;
        let mut movers: Vec<u32> = entries
            .iter()
            .map(|p| p.node)
            .filter(|&i| !window.contains(&self.data(i).seq.expect("attached")))
            .collect();
        for gap in window.clone() {
            if seqs.contains(&gap) {
                continue;
            }
            let Some(&mover) = movers.last() else { return };
            let holder = self
                .nodes
                .iter()
                .find(|(_, n)| n.seq == Some(gap))
                .map(|(j, _)| j);
            // Vacate the gap: its idle holder moves to a free id outside the run, or is parked.
            if let Some(h) = holder {
                let spare = self
                    .free_seqs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !window.contains(s))
                    .min_by_key(|(_, &s)| s)
                    .map(|(at, _)| at);
                if let Some(at) = spare {
                    let to = self.free_seqs.swap_remove(at);
                    let len = self.data(h).kv_len;
                    let owner = self.data(h).owner;
                    self.fork_seq(owner, gap, to, len);
                    self.data_mut(h).seq = Some(to);
                    self.free_seq(gap);
                } else if !self.data(h).pinned {
                    self.park(h);
                } else {
                    return;
                }
            }
            let at = self
                .free_seqs
                .iter()
                .position(|&s| s == gap)
                .expect("an id no node holds is free");
            self.free_seqs.swap_remove(at);
            movers.pop();
            let from = self.data(mover).seq.expect("attached");
            let len = self.data(mover).kv_len;
            let owner = self.data(mover).owner;
            self.fork_seq(owner, from, gap, len);
            self.data_mut(mover).seq = Some(gap);
            self.free_seq(from);
        }
    }

    /// Drops node `i`'s cached tokens from position `len` on (if it has more), so that decoding
    /// them again yields their logits.
    pub(super) fn truncate_kv(&mut self, i: u32, len: usize) {
        let n = self.data(i);
        if n.kv_len > len {
            let seq = n.seq.expect("attached") as u32;
            self.ctx.clear_seq(Some(seq), Some(len as u32), None);
            self.data_mut(i).kv_len = len;
        }
    }

    pub(super) fn store_logits(&mut self, i: u32, logits: Arc<[f32]>) {
        self.data_mut(i).logits = Some(logits);
        let holders = self
            .nodes
            .iter()
            .filter(|(_, n)| n.logits.is_some())
            .count();
        if holders > self.logits_cache {
            let victim = self
                .nodes
                .iter()
                .filter(|(j, n)| n.logits.is_some() && !n.pinned && *j != i)
                .min_by_key(|(_, n)| n.last_used)
                .map(|(j, _)| j);
            if let Some(j) = victim {
                self.data_mut(j).logits = None;
            }
        }
    }

    // ----- decoding ----------------------------------------------------------------------------

    /// Decodes the pending tokens of every entry in as few `llama_decode` calls as `n_batch`
    /// allows (one, usually). Entries must be attached, pinned and have at least one pending token.
    ///
    /// Pending tokens that several entries have at the same position after the same prefix go
    /// into the batch once, tagged with all their sequences, so a prefix shared by many new nodes
    /// is decoded once even when none of them was decoded before.
    ///
    /// Before every forward pass, also between the chunks of one long prefill, `checks` are
    /// asked: when one says stop, the batch stops with [`DecodeError::Cancelled`] (the tokens
    /// decoded so far stay in the cache).
    pub(super) fn run_batch(
        &mut self,
        entries: &[Pending],
        checks: &[crate::lm::Interrupt],
    ) -> Result<Vec<Decoded>, DecodeError> {
        let streams = self.streams();
        if streams {
            self.compact_streams(entries);
        }
        let mut items: Vec<BatchItem> = Vec::new();
        let mut by_prefix: HashMap<(usize, usize, PrefixHash), usize> = HashMap::new();
        for (e, p) in entries.iter().enumerate() {
            let n = self.data(p.node);
            debug_assert!(n.pinned && n.seq.is_some() && n.kv_len < n.tokens.len());
            let seq = n.seq.expect("attached");
            let mut hash = PrefixHash::of(&n.tokens[..n.kv_len]);
            // In `streams` a token belongs to one sequence's stream: no sharing between entries
            // (llama.cpp refuses a token tagged with sequences of two streams).
            let salt = if streams { e + 1 } else { 0 };
            for pos in n.kv_len..n.tokens.len() {
                hash = hash.push(n.tokens[pos]);
                let wants = pos + 1 == n.tokens.len() || p.logprobs_from.is_some_and(|f| pos >= f);
                match by_prefix.entry((pos, salt, hash)) {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        let item = &mut items[*o.get()];
                        item.seqs.push(seq);
                        item.members.push(e);
                        item.logits |= wants;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(items.len());
                        items.push(BatchItem {
                            pos,
                            token: n.tokens[pos],
                            seqs: vec![seq],
                            members: vec![e],
                            logits: wants,
                        });
                    }
                }
            }
        }
        // Each sequence must see its positions in increasing order. In `streams`, also sequence
        // by sequence: llama.cpp puts a sequence into a pass only after the one whose id is one
        // lower, in batch order, so items sorted by position alone (branches of different
        // lengths) would split one step into many passes.
        if streams {
            items.sort_by_key(|item| (item.seqs[0], item.pos));
        } else {
            items.sort_by_key(|item| item.pos);
        }

        let mut last: Vec<Option<Arc<[f32]>>> = vec![None; entries.len()];
        let mut logprobs: Vec<Vec<f32>> = vec![Vec::new(); entries.len()];
        let mut tops: Vec<Vec<Vec<(TokenId, f32)>>> = vec![Vec::new(); entries.len()];
        for chunk in items.chunks(self.n_batch) {
            // Before every forward pass, also between the chunks of one long prefill and between
            // the waves of a wide call: a cancelled solve stops within one `llama_decode`.
            if checks.iter().any(|f| f()) {
                return Err(DecodeError::Cancelled);
            }
            loop {
                self.batch.clear();
                for item in chunk {
                    self.batch
                        .add(item.token, item.pos as i32, &item.seqs, item.logits)
                        .expect("chunks are no larger than the batch");
                }
                match self.ctx.decode(&mut self.batch) {
                    Ok(()) => break,
                    Err(llama_cpp_2::DecodeError::NoKvCacheSlot) => {
                        // In `streams` parking frees no cell of another stream.
                        if streams || !self.park_lru() {
                            return Err(DecodeError::KvCacheFull {
                                tokens: chunk.len(),
                            });
                        }
                    }
                    Err(llama_cpp_2::DecodeError::NTokensZero) => {
                        return Err(DecodeError::Llama { code: -1 })
                    }
                    Err(llama_cpp_2::DecodeError::Unknown(code)) => {
                        return Err(DecodeError::Llama { code })
                    }
                }
            }
            self.usage.forward_passes += 1;
            // Every solve with a token in the pass counts the pass once.
            let mut owners: Vec<Owner> = chunk
                .iter()
                .flat_map(|item| item.members.iter())
                .map(|&e| self.data(entries[e].node).owner)
                .filter(|&o| o != 0)
                .collect();
            owners.sort_unstable();
            owners.dedup();
            for o in owners {
                self.by_owner.entry(o).or_default().forward_passes += 1;
            }
            for (b, item) in chunk.iter().enumerate() {
                let pos = item.pos;
                // Count the token once, as its first entry sees it.
                let first = self.data(entries[item.members[0]].node);
                let owner = first.owner;
                if pos < first.computed {
                    self.count(owner, |u| u.recomputed_tokens += 1);
                } else if first.sampled && pos >= first.own_start {
                    self.count(owner, |u| u.decoded_tokens += 1);
                } else {
                    self.count(owner, |u| u.prefill_tokens += 1);
                }
                let logits: Option<Arc<[f32]>> = item
                    .logits
                    .then(|| Arc::from(self.ctx.get().get_logits_ith(b as i32)));
                for &e in &item.members {
                    let p = &entries[e];
                    let n = self.nodes.at_mut(p.node).expect("entry nodes are live");
                    n.kv_len = pos + 1;
                    n.computed = n.computed.max(pos + 1);
                    let Some(logits) = &logits else { continue };
                    if pos + 1 == n.tokens.len() {
                        last[e] = Some(logits.clone());
                    } else if p.logprobs_from.is_some_and(|f| pos >= f) {
                        let lse = crate::lm::sampler::log_sum_exp(logits);
                        let next = n.tokens[pos + 1].0 as usize;
                        logprobs[e].push(crate::lm::sampler::logprob(logits, lse, next) as f32);
                        if p.top > 0 {
                            tops[e].push(crate::lm::sampler::top_logprobs(
                                logits,
                                lse,
                                p.top,
                                &mut self.scratch,
                            ));
                        }
                    }
                }
            }
        }
        Ok(last
            .into_iter()
            .zip(logprobs)
            .zip(tops)
            .map(|((last, logprobs), top)| Decoded {
                last: last.expect("every entry's last token is decoded"),
                logprobs,
                top,
            })
            .collect())
    }
}
