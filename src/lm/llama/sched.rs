//! The decoding calls of [`Lm`](super::super::Lm) as resumable *jobs*, and the step that serves
//! the jobs of every solve with one `llama_decode`.
//!
//! A call such as [`Lm::generate`](super::super::Lm::generate) becomes a [`Work`] in the context's
//! job table. [`LlamaLm::step`] asks every job, oldest first, for the tokens it wants decoded now
//! (each job may add sequences while the context has room: continuous batching), puts all of them
//! into one batch, and hands each job its share of the results. A call returns when its own job is
//! done. A single caller (a plain [`LlamaLm`]) runs its one job step by step and gets exactly the
//! batches it always got; [`super::SharedLlama`] lets the calls of many solves, on many threads,
//! share the steps.
//!
//! Per solve: a job takes no more live branches than `max_seqs_per_solve`, and adds none while its
//! solve's branches hold more than `max_cells_per_solve` cells of their own (it goes on with the
//! ones it has; a job with none running may always add one, so a cap never stalls a solve).
//!
//! Room: the live branches of all jobs together never exceed `n_seq_max` (so attaching one always
//! finds a sequence to reuse or an idle node to park). When the KV cells run out with several jobs
//! in a step, the youngest job *waits*: its branches are unpinned (so they may be parked) and it
//! takes no part until another job finishes. Only a job alone in a step that cannot fit gets
//! [`DecodeError::KvCacheFull`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use llama_cpp_2::token::LlamaToken;

use super::sample::Sample;
use super::{Decoded, LlamaLm, Pending};
use crate::error::DecodeError;
use crate::lm::sampler;
use crate::lm::{FinishReason, GenRequest, Generation, Interrupt, TokenId, TokenLogprob};

/// Who made a node or a job: 0 for a plain [`LlamaLm`]'s caller, one number per solve handle of a
/// [`super::SharedLlama`].
pub(crate) type Owner = u32;

/// One decoding call in the job table.
pub(super) struct Job {
    pub(super) id: u64,
    /// The solve that submitted it (its caps apply).
    pub(super) owner: Owner,
    pub(super) interrupt: Option<Interrupt>,
    pub(super) work: Work,
    /// Set when the job has finished (its result waits for its caller).
    pub(super) done: Option<Result<Output, DecodeError>>,
    /// Waiting for KV cells until another job finishes.
    pub(super) waiting: bool,
}

/// What a finished job returns.
pub(super) enum Output {
    Generations(Vec<Generation>),
    Logits(Vec<Arc<[f32]>>),
    Logprobs(Vec<Vec<f32>>),
    TokenLogprobs(Vec<Vec<TokenLogprob>>),
}

impl Output {
    pub(super) fn generations(self) -> Vec<Generation> {
        match self {
            Output::Generations(g) => g,
            _ => unreachable!("a generate job gives generations"),
        }
    }

    pub(super) fn logits(self) -> Vec<Arc<[f32]>> {
        match self {
            Output::Logits(l) => l,
            _ => unreachable!("a logits job gives logits"),
        }
    }

    pub(super) fn logprobs(self) -> Vec<Vec<f32>> {
        match self {
            Output::Logprobs(l) => l,
            _ => unreachable!("a forced job gives log-probabilities"),
        }
    }

    pub(super) fn token_logprobs(self) -> Vec<Vec<TokenLogprob>> {
        match self {
            Output::TokenLogprobs(l) => l,
            _ => unreachable!("a forced job with alternatives gives token log-probabilities"),
        }
    }
}

/// Nodes whose next-token logits are wanted: decoded in waves of as many as there is room for.
pub(super) struct Need {
    ids: Vec<u32>,
    missing: VecDeque<u32>,
    active: Vec<u32>,
    found: HashMap<u32, Arc<[f32]>>,
}

impl Need {
    pub(super) fn new(lm: &mut LlamaLm, ids: Vec<u32>) -> Self {
        let mut found = HashMap::new();
        let mut missing = VecDeque::new();
        for &i in &ids {
            lm.touch(i);
            if found.contains_key(&i) || missing.contains(&i) {
                continue;
            }
            match &lm.data(i).logits {
                Some(l) => {
                    found.insert(i, l.clone());
                }
                None => missing.push_back(i),
            }
        }
        Self {
            ids,
            missing,
            active: Vec::new(),
            found,
        }
    }

    fn done(&self) -> bool {
        self.missing.is_empty() && self.active.is_empty()
    }

    fn plan(
        &mut self,
        lm: &mut LlamaLm,
        room: usize,
        out: &mut Vec<Pending>,
    ) -> Result<(), DecodeError> {
        if self.active.is_empty() {
            let take = room.min(self.missing.len());
            self.active.extend(self.missing.drain(..take));
        }
        for &i in &self.active {
            lm.pin(i);
        }
        for &i in &self.active {
            lm.attach(i)?;
            let len = lm.data(i).tokens.len();
            lm.truncate_kv(i, len - 1);
            out.push(Pending {
                node: i,
                logprobs_from: None,
                top: 0,
            });
        }
        Ok(())
    }

    fn absorb(&mut self, lm: &mut LlamaLm, decoded: Vec<Decoded>) {
        for (&i, d) in self.active.iter().zip(decoded) {
            lm.store_logits(i, d.last.clone());
            self.found.insert(i, d.last);
        }
        for i in self.active.drain(..) {
            lm.data_mut(i).pinned = false;
        }
    }

    /// Gives the room back: the wave waits for its turn again.
    fn wait(&mut self, lm: &mut LlamaLm) {
        for i in self.active.drain(..).rev() {
            lm.data_mut(i).pinned = false;
            self.missing.push_front(i);
        }
    }

    fn result(&self) -> Vec<Arc<[f32]>> {
        self.ids.iter().map(|i| self.found[i].clone()).collect()
    }
}

pub(super) enum Work {
    Generate {
        requests: Vec<GenRequest>,
        parents: Vec<u32>,
        need: Need,
        sample: Option<Sample>,
        /// Record each token's log-probability and this many alternatives.
        top: Option<usize>,
    },
    Logits {
        need: Need,
    },
    Forced {
        need: Need,
        parents: Vec<u32>,
        children: Vec<Vec<LlamaToken>>,
        /// After the parents' logits: per query, the log-probabilities so far.
        out: Vec<Vec<f32>>,
        /// With `top`: per query and token, the most likely tokens.
        out_top: Vec<Vec<Vec<(TokenId, f32)>>>,
        top: Option<usize>,
        /// (query, temporary node) for queries of two tokens or more.
        temp: Vec<(usize, u32)>,
        queue: VecDeque<usize>,
        active: Vec<usize>,
        started: bool,
    },
}

impl Work {
    /// Adds the entries this job wants decoded now, taking at most `room` new sequences; may
    /// finish the job without decoding anything.
    fn plan(
        &mut self,
        lm: &mut LlamaLm,
        room: usize,
        out: &mut Vec<Pending>,
    ) -> Result<(), DecodeError> {
        match self {
            Work::Generate {
                requests,
                parents,
                need,
                sample,
                top,
            } => {
                if sample.is_none() {
                    if !need.done() {
                        return need.plan(lm, room, out);
                    }
                    *sample = Some(Sample::new(lm, requests, parents, need.result(), *top));
                }
                sample
                    .as_mut()
                    .expect("set above")
                    .plan(lm, requests, room, out)
            }
            Work::Logits { need } => need.plan(lm, room, out),
            Work::Forced {
                need,
                parents,
                children,
                out: lps,
                out_top,
                top,
                temp,
                queue,
                active,
                started,
            } => {
                if !*started {
                    if !need.done() {
                        return need.plan(lm, room, out);
                    }
                    *started = true;
                    let parent_logits = need.result();
                    for ((&p, own), logits) in
                        parents.iter().zip(children.iter()).zip(&parent_logits)
                    {
                        let mut first = Vec::with_capacity(own.len());
                        let mut first_top = Vec::new();
                        if let Some(t) = own.first() {
                            let lse = sampler::log_sum_exp(logits);
                            first.push(sampler::logprob(logits, lse, t.0 as usize) as f32);
                            if let Some(k) = *top {
                                first_top.push(sampler::top_logprobs(
                                    logits,
                                    lse,
                                    k,
                                    &mut lm.scratch,
                                ));
                            }
                        }
                        lps.push(first);
                        out_top.push(first_top);
                        if own.len() > 1 {
                            let data = lm.child_of(p, own, false);
                            temp.push((lps.len() - 1, lm.insert(data).index));
                        }
                    }
                    queue.extend(0..temp.len());
                }
                if active.is_empty() {
                    let take = room.min(queue.len());
                    active.extend(queue.drain(..take));
                }
                for &t in active.iter() {
                    lm.pin(temp[t].1);
                }
                for &t in active.iter() {
                    let i = temp[t].1;
                    lm.attach(i)?;
                    // Another node may hold these very tokens; their logits were not kept, so
                    // they are decoded again.
                    let own_start = lm.data(i).own_start;
                    lm.truncate_kv(i, own_start);
                    out.push(Pending {
                        node: i,
                        logprobs_from: Some(own_start),
                        top: top.unwrap_or(0),
                    });
                }
                Ok(())
            }
        }
    }

    /// Takes this job's share of a step's results.
    fn absorb(&mut self, lm: &mut LlamaLm, decoded: Vec<Decoded>) {
        match self {
            Work::Generate {
                requests,
                need,
                sample,
                ..
            } => match sample {
                Some(s) => s.absorb(lm, requests, decoded),
                None => need.absorb(lm, decoded),
            },
            Work::Logits { need } => need.absorb(lm, decoded),
            Work::Forced {
                need,
                out,
                out_top,
                temp,
                active,
                started,
                ..
            } => {
                if !*started {
                    return need.absorb(lm, decoded);
                }
                for (&t, d) in active.iter().zip(decoded) {
                    out[temp[t].0].extend(d.logprobs);
                    out_top[temp[t].0].extend(d.top);
                }
                for t in active.drain(..) {
                    lm.data_mut(temp[t].1).pinned = false;
                }
            }
        }
    }

    /// Live sequences this job holds now.
    fn active(&self) -> usize {
        match self {
            Work::Generate { need, sample, .. } => sample
                .as_ref()
                .map_or(need.active.len(), |s| s.active.len()),
            Work::Logits { need } => need.active.len(),
            Work::Forced {
                need,
                active,
                started,
                ..
            } => {
                if *started {
                    active.len()
                } else {
                    need.active.len()
                }
            }
        }
    }

    /// Gives back every sequence the job holds; it resumes where it was when planned again.
    fn wait(&mut self, lm: &mut LlamaLm) {
        match self {
            Work::Generate { need, sample, .. } => match sample {
                Some(s) => {
                    for b in s.active.drain(..).rev() {
                        lm.data_mut(s.branches[b].node).pinned = false;
                        s.queue.push_front(b);
                    }
                }
                None => need.wait(lm),
            },
            Work::Logits { need } => need.wait(lm),
            Work::Forced {
                need,
                temp,
                queue,
                active,
                started,
                ..
            } => {
                if !*started {
                    return need.wait(lm);
                }
                for t in active.drain(..).rev() {
                    lm.data_mut(temp[t].1).pinned = false;
                    queue.push_front(t);
                }
            }
        }
    }

    /// The result, once nothing is left to decode.
    fn finish(&mut self, lm: &mut LlamaLm) -> Option<Output> {
        match self {
            Work::Generate { sample, .. } => {
                let s = sample.as_mut()?;
                if !(s.queue.is_empty() && s.active.is_empty()) {
                    return None;
                }
                Some(Output::Generations(
                    std::mem::take(&mut s.branches)
                        .into_iter()
                        .map(|b| Generation {
                            node: lm.handle(b.node),
                            text: String::from_utf8_lossy(&b.bytes).into_owned(),
                            tokens: b.count,
                            logprob: b.logprob,
                            finish: b.finish.unwrap_or(FinishReason::MaxTokens),
                            confidence: b.confidence,
                            certainty: b.certainty,
                            entropy: b.entropy,
                            token_logprobs: b.token_logprobs,
                        })
                        .collect(),
                ))
            }
            Work::Logits { need } => need.done().then(|| Output::Logits(need.result())),
            Work::Forced {
                started,
                queue,
                active,
                out,
                out_top,
                top,
                children,
                temp,
                ..
            } => {
                if !(*started && queue.is_empty() && active.is_empty()) {
                    return None;
                }
                for &(_, i) in temp.iter() {
                    lm.release_index(i);
                }
                temp.clear();
                let out = std::mem::take(out);
                if top.is_none() {
                    return Some(Output::Logprobs(out));
                }
                Some(Output::TokenLogprobs(
                    out.into_iter()
                        .zip(std::mem::take(out_top))
                        .zip(children.iter())
                        .map(|((lps, tops), own)| {
                            own.iter()
                                .zip(lps)
                                .zip(tops)
                                .map(|((t, logprob), top)| TokenLogprob {
                                    token: t.0,
                                    logprob,
                                    top,
                                })
                                .collect()
                        })
                        .collect(),
                ))
            }
        }
    }

    /// Ends the job without a result: unpins what it holds and frees the nodes it made.
    fn abandon(&mut self, lm: &mut LlamaLm) {
        self.wait(lm);
        match self {
            Work::Generate { sample, .. } => {
                if let Some(s) = sample {
                    for b in std::mem::take(&mut s.branches) {
                        lm.release_index(b.node);
                    }
                    s.queue.clear();
                }
            }
            Work::Logits { .. } => {}
            Work::Forced { temp, queue, .. } => {
                for (_, i) in temp.drain(..) {
                    lm.release_index(i);
                }
                queue.clear();
            }
        }
    }
}

impl LlamaLm {
    /// Puts `work` in the job table; [`LlamaLm::step`] runs it, [`LlamaLm::take_done`] returns
    /// its result.
    pub(super) fn submit(&mut self, owner: Owner, interrupt: Option<Interrupt>, work: Work) -> u64 {
        self.next_job += 1;
        self.jobs.push(Job {
            id: self.next_job,
            owner,
            interrupt,
            work,
            done: None,
            waiting: false,
        });
        self.next_job
    }

    /// The result of job `id` if it has finished (removing it from the table).
    pub(super) fn take_done(&mut self, id: u64) -> Option<Result<Output, DecodeError>> {
        let at = self
            .jobs
            .iter()
            .position(|j| j.id == id && j.done.is_some())?;
        self.jobs.remove(at).done
    }

    /// Runs job `id` to its end, stepping every other job in the table with it.
    pub(super) fn run_to_end(&mut self, id: u64) -> Result<Output, DecodeError> {
        loop {
            if let Some(result) = self.take_done(id) {
                return result;
            }
            self.step();
        }
    }

    fn end_job(&mut self, j: usize, result: Result<Output, DecodeError>) {
        if result.is_err() {
            let mut work = self.take_work(j);
            work.abandon(self);
            self.jobs[j].work = work;
        }
        self.jobs[j].done = Some(result);
        // Room was freed: every waiting job may try again.
        for job in &mut self.jobs {
            job.waiting = false;
        }
    }

    /// One round of the decode loop: ends cancelled jobs, lets every pending job (oldest first)
    /// add what it wants decoded within the room left, decodes it all together, and hands each job
    /// its results. Does nothing when no job is pending.
    pub(super) fn step(&mut self) {
        let start = std::time::Instant::now();
        self.step_inner();
        self.wall_us += start.elapsed().as_micros() as u64;
        self.usage.wall_ms = self.wall_us / 1000;
    }

    fn step_inner(&mut self) {
        loop {
            for j in 0..self.jobs.len() {
                let job = &self.jobs[j];
                if job.done.is_none() && job.interrupt.as_ref().is_some_and(|f| f()) {
                    self.end_job(j, Err(DecodeError::Cancelled));
                }
            }
            let pending = |job: &Job| job.done.is_none() && !job.waiting;
            if !self.jobs.iter().any(pending) {
                if !self.jobs.iter().any(|j| j.done.is_none()) {
                    return;
                }
                for job in &mut self.jobs {
                    job.waiting = false;
                }
            }
            let mut entries: Vec<Pending> = Vec::new();
            // (job index, its entries)
            let mut spans: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
            let mut held: usize = self
                .jobs
                .iter()
                .filter(|j| j.done.is_none() && !j.waiting)
                .map(|j| j.work.active())
                .sum();
            for j in 0..self.jobs.len() {
                if !pending(&self.jobs[j]) {
                    continue;
                }
                let mine = self.jobs[j].work.active();
                let mut room = (self.sizing.n_seq_max as usize)
                    .saturating_sub(held)
                    .min(self.seqs_per_owner.saturating_sub(mine));
                // Over its cells, a solve goes on with the branches it has but adds none (with
                // none running it may add one, so it never stalls).
                // (The cells are counted only when there is a cap: it walks every node.)
                if mine > 0
                    && self
                        .cells_per_owner
                        .is_some_and(|cap| self.owner_cells(self.jobs[j].owner) >= cap)
                {
                    room = 0;
                }
                let start = entries.len();
                let mut work = self.take_work(j);
                let planned = work.plan(self, room, &mut entries);
                let finished = match &planned {
                    Ok(()) if entries.len() == start => work.finish(self),
                    _ => None,
                };
                self.jobs[j].work = work;
                match planned {
                    Err(e) => {
                        entries.truncate(start);
                        self.end_job(j, Err(e));
                    }
                    Ok(()) => {
                        if let Some(output) = finished {
                            self.end_job(j, Ok(output));
                        } else if entries.len() > start {
                            held += (entries.len() - start).saturating_sub(mine);
                            spans.push((j, start..entries.len()));
                        }
                    }
                }
            }
            if entries.is_empty() {
                continue;
            }
            let checks: Vec<Interrupt> = spans
                .iter()
                .filter_map(|(j, _)| self.jobs[*j].interrupt.clone())
                .collect();
            match self.run_batch(&entries, &checks) {
                Ok(decoded) => {
                    let mut decoded = decoded.into_iter();
                    for (j, range) in spans {
                        let share: Vec<Decoded> = decoded.by_ref().take(range.len()).collect();
                        let mut work = self.take_work(j);
                        work.absorb(self, share);
                        let finished = work.finish(self);
                        self.jobs[j].work = work;
                        if let Some(output) = finished {
                            self.end_job(j, Ok(output));
                        }
                    }
                    return;
                }
                // A cancelled job is ended at the top of the loop; the others go on.
                Err(DecodeError::Cancelled) => continue,
                Err(DecodeError::KvCacheFull { .. }) if spans.len() > 1 => {
                    // The youngest job in the step waits for room; the others try again.
                    let (j, _) = *spans.last().expect("more than one");
                    let mut work = self.take_work(j);
                    work.wait(self);
                    self.jobs[j].work = work;
                    self.jobs[j].waiting = true;
                }
                Err(e) => {
                    for (j, _) in spans {
                        self.end_job(j, Err(e.clone()));
                    }
                    return;
                }
            }
        }
    }

    fn take_work(&mut self, j: usize) -> Work {
        std::mem::replace(
            &mut self.jobs[j].work,
            Work::Logits {
                need: Need {
                    ids: Vec::new(),
                    missing: VecDeque::new(),
                    active: Vec::new(),
                    found: HashMap::new(),
                },
            },
        )
    }
}
