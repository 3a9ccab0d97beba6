//! [`RemoteLm`]: the [`Lm`] tree over models served by engines that speak the OpenAI-compatible
//! HTTP API (llama.cpp's `llama-server`, vLLM, SGLang).
//!
//! A node is a token prefix kept on the client. Every request sends the whole prefix as token ids
//! (`"prompt": [ids…]`), so what the server sees is exactly the node, and the server's own prefix
//! cache (llama-server's `cache_prompt`, vLLM's `--enable-prefix-caching`, SGLang's radix cache)
//! is what keeps a tree search from paying for its shared prefixes again: [`Usage::reused_tokens`]
//! counts the prompt tokens the servers report as cached, [`Usage::prefill_tokens`] the ones they
//! processed.
//!
//! Endpoints used: `POST /v1/completions` (sampling, and one-token completions with top
//! logprobs for [`Lm::next_token_probs`]); `POST /tokenize` and `POST /detokenize` (llama-server
//! and vLLM shapes); `POST /apply-template` (llama-server) or `/tokenize` with `messages` (vLLM)
//! for the chat template; `GET /v1/models` and `GET /props` at start for the model's name,
//! vocabulary and context size. With [`RemoteOptions::tokenizer`] text is tokenised on the
//! client instead (a `tokenizer.json` checked against the first server's `/tokenize` at connect
//! time), which saves one round trip per prompt, forced text and step cut at a stop string.
//! [`Lm::forced_logprobs`] needs prompt log-probabilities, which llama-server does not return:
//! it is [`DecodeError::Unsupported`] there.
//!
//! One connection ([`SharedRemote`]) serves every solve of an [`crate::Engine`]: each solve gets
//! its own [`RemoteLm`] handle (its own nodes, interrupt and usage) over the one HTTP client, so
//! that [`RemoteOptions::max_in_flight`] caps the requests of all solves together and the choice
//! of server sees every request in flight. Requests of one call run concurrently, each (once the
//! cap lets it go, in order of arrival) to the server with the fewest outstanding requests; a connection error, a 5xx/429 status or an
//! unreadable body is retried with exponential backoff on another server where there is one, and
//! after the last attempt the call fails with [`DecodeError::Remote`]. Nothing is half-applied: a
//! failed call creates no node.
//!
//! Token confidence ([`Generation::confidence`]): every completion asks for the top
//! [`super::CONFIDENCE_TOP_K`] log-probabilities of each sampled position, and a token's
//! confidence is minus their mean, as in the llama.cpp backend. A server that returns fewer
//! candidates gives the mean of those it returned; one that returns no top list gives minus the
//! sampled token's own log-probability (a cruder, k = 1 confidence), and one that returns no
//! log-probabilities at all an empty list. A request's [`super::ConfidenceStop`] cannot stop a
//! server mid-completion: the whole completion is read and its finish is
//! [`FinishReason::LowConfidence`] when the condition held at some token (no tokens are saved).

mod client;
mod options;
mod wire;

pub use client::ServerStats;
pub use options::RemoteOptions;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::nodes::NodeTable;
use super::tokenizer::{self, ClientTokenizer};
use super::{
    FinishReason, GenRequest, Generation, Interrupt, Lm, Message, ModelId, Node, TokenId, Usage,
};
use crate::error::{ConfigError, DecodeError, Error, LoadError, RemoteError, TokenizerError};
use client::Client;
use wire::{merge, token_ids, top_logprobs};

/// One connection to the servers, shared by the solves of an [`crate::Engine`]: the HTTP
/// client with its cap on requests in flight, what the servers said about the model, and the
/// usage of all solves together. Hand each solve a [`SharedRemote::solve_lm`].
///
/// Thread rules: `Send + Sync`; handles may live on any threads, each used by one at a time.
pub struct SharedRemote {
    client: Client,
    model: String,
    model_path: Option<String>,
    n_ctx: u32,
    vocab: usize,
    token_texts: Mutex<HashMap<TokenId, String>>,
    stop_tokens: Mutex<HashMap<String, Vec<TokenId>>>,
    totals: Mutex<Totals>,
    /// Tokenises on the client instead of the servers' `/tokenize` ([`RemoteOptions::tokenizer`]).
    tokenizer: Option<ClientTokenizer>,
}

/// The usage of all handles, and how long at least one of them was inside a call.
#[derive(Default)]
struct Totals {
    usage: Usage,
    busy: usize,
    busy_since: Option<Instant>,
}

impl std::fmt::Debug for SharedRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRemote")
            .field("urls", &self.client.opts.urls)
            .field("model", &self.model)
            .field("n_ctx", &self.n_ctx)
            .finish_non_exhaustive()
    }
}

impl SharedRemote {
    /// The connection behind `lm`, to share with other solves (`lm`'s own nodes stay with it).
    pub fn new(lm: RemoteLm) -> Arc<Self> {
        lm.shared
    }

    /// A new handle: an [`Lm`] for one solve, with no nodes, no interrupt and zero usage.
    pub fn solve_lm(self: &Arc<Self>) -> RemoteLm {
        RemoteLm {
            shared: self.clone(),
            nodes: NodeTable::new(),
            usage: Usage::default(),
            interrupt: None,
        }
    }

    /// The work done for all solves so far; `wall_ms` is the time during which at least one
    /// solve was inside a call.
    pub fn usage(&self) -> Usage {
        let t = self.totals.lock();
        let mut u = t.usage;
        if let Some(since) = t.busy_since {
            u.wall_ms += since.elapsed().as_millis() as u64;
        }
        u
    }

    /// The most HTTP requests that were in flight at once, over all servers and solves (never
    /// above [`RemoteOptions::max_in_flight`]).
    pub fn peak_in_flight(&self) -> usize {
        self.client.gate.state.lock().peak
    }

    /// HTTP requests in flight now, and waiting for their turn now.
    pub fn in_flight(&self) -> (usize, usize) {
        let s = self.client.gate.state.lock();
        (s.in_flight, s.waiting.len())
    }

    /// Each server's URL, the HTTP requests sent to it so far (retries included), how many of
    /// them failed, and the most it had outstanding at once.
    pub fn server_stats(&self) -> Vec<ServerStats> {
        self.client
            .servers
            .iter()
            .map(|s| ServerStats {
                url: s.url.clone(),
                sent: s.sent.load(Ordering::SeqCst),
                failed: s.failed.load(Ordering::SeqCst),
                last_failure: s.last_failure.lock().clone(),
                peak_outstanding: s.peak_outstanding.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// HTTP requests sent so far by every handle of this connection, per endpoint path (such
    /// as `/v1/completions`, `/tokenize`), retries and the requests made at connect time
    /// included.
    pub fn requests(&self) -> BTreeMap<String, usize> {
        self.client.requests.lock().clone()
    }

    /// The tokenizer file text is tokenised with on the client, when one was given.
    pub fn tokenizer_path(&self) -> Option<&Path> {
        self.tokenizer.as_ref().map(ClientTokenizer::path)
    }

    fn enter(&self) {
        let mut t = self.totals.lock();
        if t.busy == 0 {
            t.busy_since = Some(Instant::now());
        }
        t.busy += 1;
    }

    fn leave(&self) {
        let mut t = self.totals.lock();
        t.busy -= 1;
        if t.busy == 0 {
            if let Some(since) = t.busy_since.take() {
                t.usage.wall_ms += since.elapsed().as_millis() as u64;
            }
        }
    }
}

/// An [`Lm`] whose model runs behind one or more OpenAI-compatible servers: one solve's handle
/// on a [`SharedRemote`] connection (a connected `RemoteLm` is the first handle).
///
/// Thread rules: as every [`Lm`], used from one thread at a time; each call fans its requests
/// out over worker threads itself. For concurrent solves, give each its own handle
/// ([`RemoteLm::shared`], [`SharedRemote::solve_lm`]; an [`crate::Engine`] does that).
pub struct RemoteLm {
    shared: Arc<SharedRemote>,
    nodes: NodeTable<Vec<TokenId>>,
    usage: Usage,
    interrupt: Option<Interrupt>,
}

impl std::fmt::Debug for RemoteLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLm")
            .field("urls", &self.shared.client.opts.urls)
            .field("model", &self.shared.model)
            .field("n_ctx", &self.shared.n_ctx)
            .field("nodes", &self.nodes.count())
            .finish_non_exhaustive()
    }
}

/// A failure while connecting: a request's own [`RemoteError`], else one for `url`.
fn at_connect(url: &str, e: DecodeError) -> LoadError {
    let e = match e {
        DecodeError::Remote(r) => r,
        e => RemoteError::new(url, None, 1, e.to_string()),
    };
    LoadError::Remote(e.at_connect())
}

impl RemoteLm {
    /// Connects to the servers: asks the first for its model, vocabulary and context size, and
    /// checks that every other one answers.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid options; [`LoadError::Tokenizer`] for a tokenizer file
    /// that cannot be used; [`LoadError::Remote`] when a server cannot be reached (after the
    /// configured attempts) or does not say what its context size is.
    pub fn connect(opts: &RemoteOptions) -> Result<Self, Error> {
        opts.validate()?;
        // The file first: a wrong path needs no server to be reported.
        let tokenizer = opts
            .tokenizer
            .as_deref()
            .map(ClientTokenizer::load)
            .transpose()
            .map_err(LoadError::Tokenizer)?;
        let client = Client::new(opts);
        let unreachable = |i: usize, e: DecodeError| at_connect(&client.servers[i].url, e);
        let mut model = opts.model.clone();
        let mut n_ctx = opts.n_ctx;
        let mut vocab = None;
        let mut model_path = None;
        for i in 0..client.servers.len() {
            let one = Client::new(&RemoteOptions {
                urls: vec![client.servers[i].url.clone()],
                ..opts.clone()
            });
            let models = one
                .call("/v1/models", None, None)
                .map_err(|e| unreachable(i, e))?;
            if i > 0 {
                continue;
            }
            let first = models.pointer("/data/0");
            if model.is_none() {
                model = first
                    .and_then(|m| m.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            vocab = first
                .and_then(|m| m.pointer("/meta/n_vocab"))
                .and_then(Value::as_u64)
                .map(|v| v as usize);
            if n_ctx.is_none() {
                n_ctx = first
                    .and_then(|m| m.get("max_model_len"))
                    .and_then(Value::as_u64)
                    .map(|v| v as u32);
            }
            // llama-server: the context per slot and the model file.
            if let Ok(props) = one.call("/props", None, None) {
                if n_ctx.is_none() {
                    n_ctx = props
                        .pointer("/default_generation_settings/n_ctx")
                        .and_then(Value::as_u64)
                        .map(|v| v as u32);
                }
                model_path = props
                    .get("model_path")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
        let n_ctx = n_ctx.ok_or_else(|| {
            LoadError::Remote(
                RemoteError::new(
                    &client.servers[0].url,
                    Some(200),
                    1,
                    "the server does not report its context size; set n_ctx (--ctx) to it",
                )
                .at_connect(),
            )
        })?;
        let shared = Arc::new(SharedRemote {
            client,
            model: model.unwrap_or_else(|| "default".into()),
            model_path,
            n_ctx,
            vocab: vocab.unwrap_or(usize::MAX),
            token_texts: Mutex::new(HashMap::new()),
            stop_tokens: Mutex::new(HashMap::new()),
            totals: Mutex::new(Totals::default()),
            tokenizer,
        });
        let lm = shared.solve_lm();
        lm.check_tokenizer()?;
        Ok(lm)
    }

    /// With a client tokenizer: tokenises every probe string (and the server's rendering of a
    /// chat, for the template's special tokens) both on the client and with the (first)
    /// server's `/tokenize`, with and without `add_special`, and refuses the first difference.
    fn check_tokenizer(&self) -> Result<(), LoadError> {
        let Some(tok) = &self.shared.tokenizer else {
            return Ok(());
        };
        let url = self.shared.client.servers[0].url.clone();
        let remote = |e: DecodeError| at_connect(&url, e);
        let mut probes: Vec<String> = tokenizer::PROBES.iter().map(|p| p.to_string()).collect();
        let chat = [
            Message::system("You are a careful assistant."),
            Message::user("What is 12 * 7? Think step by step."),
            Message::new("assistant", "12 * 7 = 84. The answer is 84."),
            Message::user("And 84 / 4?"),
        ];
        // vLLM has no /apply-template; its chats are still covered by the probes above.
        if let Ok(text) = self.server_chat_text(&chat) {
            probes.push(text);
        }
        let mut asked: Vec<(String, bool)> = probes.iter().map(|p| (p.clone(), false)).collect();
        // A root's prompt (the rendered chat last) is tokenised with add_special.
        asked.extend(
            probes
                .iter()
                .take(2)
                .chain(probes.last())
                .map(|p| (p.clone(), true)),
        );
        // One after the other on one kept-alive connection: a burst of parallel connections can
        // wait out llama-server's keep-alive timeout (5 s) for a free HTTP thread.
        for (text, add_special) in asked {
            let v = self
                .shared
                .client
                .call(
                    "/tokenize",
                    Some(&self.tokenize_body(&text, add_special)),
                    None,
                )
                .map_err(remote)?;
            let server = token_ids(&v, "tokens")
                .ok_or_else(|| self.shared.client.bad_response("/tokenize", &v))
                .map_err(remote)?;
            let client = tok
                .encode(&text, add_special)
                .map_err(LoadError::Tokenizer)?;
            if let Some(position) = tokenizer::first_difference(&client, &server) {
                return Err(LoadError::Tokenizer(TokenizerError::Mismatch {
                    path: tok.path().to_path_buf(),
                    url,
                    text,
                    add_special,
                    position,
                    client: client.get(position).copied(),
                    server: server.get(position).copied(),
                }));
            }
        }
        Ok(())
    }

    /// The connection this handle uses, to hand other solves handles of their own.
    pub fn shared(&self) -> Arc<SharedRemote> {
        self.shared.clone()
    }

    /// The served model's name (the `model` field of each request).
    pub fn model_name(&self) -> &str {
        &self.shared.model
    }

    /// The served model's identity for provenance: `remote:` and the name the server gives it,
    /// with the sha256 of the file the server says it loaded when that file is readable here.
    pub fn model_id(&self) -> ModelId {
        ModelId {
            name: format!("remote:{}", self.model_name()),
            sha256: self
                .model_path()
                .and_then(|p| super::sha256_file(Path::new(p)).ok())
                .unwrap_or_default(),
        }
    }

    /// The model file the (first) server says it loaded, where it says so (llama-server).
    pub fn model_path(&self) -> Option<&str> {
        self.shared.model_path.as_deref()
    }

    /// The context size each request may fill.
    pub fn n_ctx(&self) -> u32 {
        self.shared.n_ctx
    }

    /// Each server's URL, the HTTP requests sent to it so far (retries included) by every
    /// handle of this connection, and how many of them failed.
    pub fn server_stats(&self) -> Vec<ServerStats> {
        self.shared.server_stats()
    }

    /// The options this model was connected with.
    pub fn options(&self) -> &RemoteOptions {
        &self.shared.client.opts
    }

    fn tokens_of(&self, node: Node) -> Result<&Vec<TokenId>, DecodeError> {
        self.nodes.get(node)
    }

    /// Counts `d` for this handle and for the connection.
    fn count(&mut self, d: &Usage) {
        self.usage.add(d);
        self.shared.totals.lock().usage.add(d);
    }

    fn check_fits(&self, what: &'static str, tokens: usize) -> Result<(), DecodeError> {
        if tokens + 1 > self.shared.n_ctx as usize {
            return Err(DecodeError::ContextOverflow {
                what,
                tokens: tokens + 1,
                n_ctx: self.shared.n_ctx,
            });
        }
        Ok(())
    }

    fn check_vocab(&self, field: &'static str, tokens: &[TokenId]) -> Result<(), DecodeError> {
        if let Some(&t) = tokens
            .iter()
            .find(|&&t| t < 0 || t as usize >= self.shared.vocab)
        {
            return Err(ConfigError::new(
                field,
                format!(
                    "token id {t} is outside the vocabulary (0..{})",
                    self.shared.vocab
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The tokens of `text`, special tokens in it parsed; `add_special` adds the model's BOS/EOS
    /// where it has them. On the client when a tokenizer was given, else by the server.
    fn tokenize_with(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, DecodeError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(tok) = &self.shared.tokenizer {
            return Ok(tok.encode(text, add_special)?);
        }
        let body = self.tokenize_body(text, add_special);
        let v = self
            .shared
            .client
            .call("/tokenize", Some(&body), self.interrupt.as_ref())?;
        token_ids(&v, "tokens").ok_or_else(|| self.shared.client.bad_response("/tokenize", &v))
    }

    /// HTTP requests sent so far by every handle of this connection, per endpoint path: see
    /// [`SharedRemote::requests`].
    pub fn requests(&self) -> BTreeMap<String, usize> {
        self.shared.requests()
    }

    fn detokenize(&self, tokens: &[TokenId]) -> Result<String, DecodeError> {
        let body = json!({ "model": self.shared.model, "tokens": tokens });
        let v = self.shared.client.call("/detokenize", Some(&body), None)?;
        v.get("content")
            .or_else(|| v.get("prompt"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.shared.client.bad_response("/detokenize", &v))
    }

    fn stop_tokens(&self, stop: &str) -> Result<Vec<TokenId>, DecodeError> {
        if let Some(t) = self.shared.stop_tokens.lock().get(stop) {
            return Ok(t.clone());
        }
        let t = self.tokenize_with(stop, false)?;
        self.shared
            .stop_tokens
            .lock()
            .insert(stop.to_string(), t.clone());
        Ok(t)
    }

    fn timed<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let start = Instant::now();
        self.shared.enter();
        let out = f(self);
        self.shared.leave();
        self.usage.wall_ms += start.elapsed().as_millis() as u64;
        out
    }

    fn generate_inner(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError> {
        for r in requests {
            r.validate()?;
        }
        let mut bodies = Vec::with_capacity(requests.len());
        let mut room = Vec::with_capacity(requests.len());
        for r in requests {
            let prompt = self.tokens_of(r.parent)?;
            self.check_fits("the branch", prompt.len())?;
            let left = (self.shared.n_ctx as usize - prompt.len() - 1) as u32;
            let max_tokens = r.max_tokens.min(left);
            room.push(max_tokens < r.max_tokens);
            let mut body = self.completion_body(prompt, max_tokens, super::CONFIDENCE_TOP_K as u32);
            let s = &r.sampling;
            let extra = json!({
                "temperature": s.temperature,
                "top_p": s.top_p,
                "top_k": s.top_k,
                "min_p": s.min_p,
                // llama-server takes a 32-bit seed (-1 = random): fold the 64 bits into 31.
                "seed": ((s.seed ^ (s.seed >> 32)) & 0x7fff_ffff),
                "stop": r.stop,
                "ignore_eos": r.ignore_eos,
            });
            merge(&mut body, extra);
            bodies.push(body);
        }
        let responses =
            self.shared
                .client
                .call_many("/v1/completions", &bodies, self.interrupt.as_ref())?;
        // Read everything before creating any node, so that a bad response leaves no trace.
        let mut read = Vec::with_capacity(requests.len());
        for ((r, v), clipped) in requests.iter().zip(&responses).zip(&room) {
            read.push(self.read_generation(r, v, *clipped)?);
        }
        self.account(&responses, true);
        let mut out = Vec::with_capacity(read.len());
        for (r, (own, text, logprob, mut finish, confidence)) in requests.iter().zip(read) {
            let mut tokens = self.tokens_of(r.parent)?.clone();
            let n = own.len() as u32;
            tokens.extend(own);
            let node = self.nodes.insert(tokens);
            if r.confidence_stop
                .is_some_and(|c| c.first_trigger(&confidence).is_some())
            {
                finish = FinishReason::LowConfidence;
            }
            out.push(Generation {
                node,
                text,
                tokens: n,
                logprob,
                finish,
                confidence,
                // A server's top log-probabilities do not give the whole distribution.
                certainty: Vec::new(),
                entropy: Vec::new(),
                token_logprobs: Vec::new(),
            });
        }
        Ok(out)
    }
}

impl RemoteLm {
    /// The chat as the server's template renders it (llama-server's `/apply-template`; vLLM's
    /// `/tokenize` with `messages`, detokenised).
    fn server_chat_text(&self, messages: &[Message]) -> Result<String, DecodeError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "role": m.role, "content": m.content }))
            .collect();
        let body = json!({ "model": self.shared.model, "messages": msgs });
        match self
            .shared
            .client
            .call("/apply-template", Some(&body), self.interrupt.as_ref())
        {
            Ok(v) => v
                .get("prompt")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| self.shared.client.bad_response("/apply-template", &v)),
            // vLLM has no /apply-template; its /tokenize renders messages.
            Err(DecodeError::Remote(RemoteError {
                status: Some(404), ..
            })) => {
                let body = json!({
                    "model": self.shared.model,
                    "messages": msgs,
                    "add_generation_prompt": true,
                });
                let v =
                    self.shared
                        .client
                        .call("/tokenize", Some(&body), self.interrupt.as_ref())?;
                let ids = token_ids(&v, "tokens")
                    .ok_or_else(|| self.shared.client.bad_response("/tokenize", &v))?;
                self.detokenize(&ids)
            }
            Err(e) => Err(e),
        }
    }
}

impl Lm for RemoteLm {
    fn chat_text(&self, messages: &[Message]) -> Result<String, DecodeError> {
        self.server_chat_text(messages)
    }

    fn root_text(&mut self, text: &str) -> Result<Node, DecodeError> {
        self.timed(|lm| {
            let tokens = lm.tokenize_with(text, true)?;
            lm.check_fits("the prompt", tokens.len())?;
            lm.count(&Usage {
                prompt_tokens: tokens.len() as u64,
                ..Usage::default()
            });
            Ok(lm.nodes.insert(tokens))
        })
    }

    fn root_tokens(&mut self, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.check_vocab("tokens", tokens)?;
        self.check_fits("the prompt", tokens.len())?;
        self.count(&Usage {
            prompt_tokens: tokens.len() as u64,
            ..Usage::default()
        });
        Ok(self.nodes.insert(tokens.to_vec()))
    }

    fn extend_tokens(&mut self, node: Node, tokens: &[TokenId]) -> Result<Node, DecodeError> {
        self.check_vocab("tokens", tokens)?;
        let mut all = self.tokens_of(node)?.clone();
        all.extend_from_slice(tokens);
        self.check_fits("the extended node", all.len())?;
        Ok(self.nodes.insert(all))
    }

    fn generate(&mut self, requests: &[GenRequest]) -> Result<Vec<Generation>, DecodeError> {
        self.timed(|lm| lm.generate_inner(requests))
    }

    fn next_token_probs(
        &mut self,
        queries: &[(Node, &[TokenId])],
    ) -> Result<Vec<Vec<f32>>, DecodeError> {
        self.timed(|lm| {
            let mut bodies = Vec::new();
            let mut asked = Vec::new();
            for (i, (node, cands)) in queries.iter().enumerate() {
                lm.check_vocab("candidates", cands)?;
                let prompt = lm.tokens_of(*node)?;
                // A query with no candidates only asks to keep the node warm: the server's
                // prefix cache does that by itself.
                if cands.is_empty() {
                    continue;
                }
                lm.check_fits("the scored node", prompt.len())?;
                let mut body = lm.completion_body(prompt, 1, lm.shared.client.opts.top_logprobs);
                merge(
                    &mut body,
                    json!({ "temperature": 0.0, "top_k": 1, "seed": 0, "ignore_eos": true }),
                );
                bodies.push(body);
                asked.push(i);
            }
            let responses =
                lm.shared
                    .client
                    .call_many("/v1/completions", &bodies, lm.interrupt.as_ref())?;
            let mut out: Vec<Vec<f32>> = queries.iter().map(|_| Vec::new()).collect();
            for (&i, v) in asked.iter().zip(&responses) {
                let top = top_logprobs(v)
                    .ok_or_else(|| lm.shared.client.bad_response("/v1/completions", v))?;
                out[i] = queries[i]
                    .1
                    .iter()
                    .map(|t| top.get(t).map_or(0.0, |l| l.exp() as f32))
                    .collect();
            }
            lm.account(&responses, false);
            Ok(out)
        })
    }

    fn forced_logprobs(&mut self, queries: &[(Node, &str)]) -> Result<Vec<Vec<f32>>, DecodeError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        Err(DecodeError::Unsupported {
            what: "forced_logprobs (prompt log-probabilities)",
            hint: "OpenAI-compatible servers such as llama-server do not return the log-probabilities of given text; use the self-judge (--rerank judge) or the in-process backend".into(),
        })
    }

    fn release(&mut self, node: Node) {
        self.nodes.release(node);
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn set_interrupt(&mut self, interrupt: Option<Interrupt>) {
        self.interrupt = interrupt;
    }

    fn interrupt(&self) -> Option<super::Interrupt> {
        self.interrupt.clone()
    }

    fn reset(&mut self) -> bool {
        self.nodes.is_empty()
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, DecodeError> {
        self.tokenize_with(text, false)
    }

    fn token_text(&self, token: TokenId) -> String {
        if let Some(t) = self.shared.token_texts.lock().get(&token) {
            return t.clone();
        }
        let text = self.detokenize(&[token]).unwrap_or_default();
        self.shared.token_texts.lock().insert(token, text.clone());
        text
    }

    fn vocab_size(&self) -> usize {
        self.shared.vocab
    }

    fn node_len(&self, node: Node) -> Result<usize, DecodeError> {
        Ok(self.tokens_of(node)?.len())
    }

    fn node_tokens(&self, node: Node) -> Result<Vec<TokenId>, DecodeError> {
        Ok(self.tokens_of(node)?.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_a_clear_error_after_the_attempts() {
        // Port 1 on localhost refuses connections at once.
        let opts = RemoteOptions {
            attempts: 2,
            backoff_ms: 1,
            ..RemoteOptions::new(["http://127.0.0.1:1"])
        };
        let err = RemoteLm::connect(&opts).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Load(LoadError::Remote(_))), "{text}");
        assert!(
            text.contains("127.0.0.1:1") && text.contains("2 attempts"),
            "{text}"
        );
    }
}
