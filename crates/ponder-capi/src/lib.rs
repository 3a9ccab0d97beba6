//! The C ABI (`include/ponder.h`, generated from this module by cbindgen).
//!
//! Conventions, after rustls-ffi: opaque handles (`ponder_engine`, `ponder_outcome`); functions
//! `ponder_<type>_<verb>`; fallible functions return a [`ponder_status`] with fixed numbers and
//! write their out-parameters only on success; strings in are pointer + length and must be UTF-8;
//! strings out go into a caller buffer with its length, NUL-terminated, the length without the NUL
//! in `*out_n` (also on `PONDER_STATUS_BUFFER_TOO_SMALL`, so the caller can retry);
//! `ponder_*_free(NULL)` does nothing; every body runs inside a panic boundary; the detail of the
//! last failure on the calling thread is in `ponder_last_error`.

#![allow(non_camel_case_types)]
// Every exported function checks its pointers itself; the safety contract is the header's.
#![allow(clippy::missing_safety_doc)]

#[path = "status.rs"] // explicit, so that fuzz/ can include this file as a module
mod status;

use std::ffi::{c_char, c_int, c_void};

pub use status::ponder_status;
use status::{boundary, fail, fail_with, static_cstr};

use ponder::backend::{BackendConfig, LazyModelId};
use ponder::engine::Engine;
use ponder::strategy::{Event, Flow, Outcome, Problem, StrategyConfig};
use ponder::trace::{ModelId, Provenance, Trace};

/// Major version of this library (the header's value must equal `ponder_version()`'s).
pub const PONDER_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const PONDER_VERSION_MINOR: u32 = 1;
/// Patch version of this library.
pub const PONDER_VERSION_PATCH: u32 = 0;

/// A loaded model and its inference context.
///
/// Thread rules: an engine may be used from several threads at once. Solves from several threads
/// run concurrently in the engine's one context, their branches decoded in shared forward passes
/// (with `"deterministic": true` in the engine config: one at a time, in the order they take the
/// engine's lock); `ponder_engine_cancel` may be called from any
/// thread at any time, also from an event callback. An event callback must not solve on its own
/// engine (`PONDER_STATUS_REENTRANT`). Free it only when no call on it is running.
pub struct ponder_engine {
    engine: Engine,
    /// The model's identity for the provenance of traces, the file hashed on first use.
    model: LazyModelId,
}

/// What one solve found: the answer, the chosen text, its score, the work it took, and the whole
/// trace.
///
/// Thread rules: an outcome is immutable; it may be read from several threads at once and freed
/// from any thread once no call on it is running.
pub struct ponder_outcome {
    outcome: Outcome,
    problem: Problem,
    strategy: StrategyConfig,
    model: ModelId,
}

/// What an event reports.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ponder_event_kind {
    /// A tree search added a step: `node`, `parent`, `depth`, `tokens`, `text`.
    Step = 1,
    /// A tree search judged a step: `node`, `judge`, `value`.
    Scored = 2,
    /// A candidate of the finished search: `node` (its index), `value` (its score), `text` (its
    /// answer, empty when none).
    Candidate = 3,
    /// The solve is complete: `value` (the score), `text` (the answer, empty when none).
    Done = 4,
    /// A sampling strategy (best-of-N, self-correction, deepening, DeepConf) drew a sample,
    /// before scoring it: `node` (its number in drawing order), `tokens`, `text` (its answer,
    /// empty when none). A non-zero return cancels the solve, as for a step.
    Sample = 5,
}

/// One event of a running solve. Pointers are valid only during the callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ponder_event {
    /// What happened.
    pub kind: ponder_event_kind,
    /// A node id (or a candidate index).
    pub node: u64,
    /// The parent node's id (`Step`).
    pub parent: u64,
    /// Steps from the root (`Step`).
    pub depth: u32,
    /// Tokens of the step (`Step`).
    pub tokens: u32,
    /// The self-judge's score (`Scored`, NaN where the search values steps without the judge;
    /// NaN otherwise).
    pub judge: f64,
    /// A value or score (`Scored`, `Candidate`, `Done`; NaN otherwise).
    pub value: f64,
    /// UTF-8 text, NUL-terminated (a step, or an answer).
    pub text: *const c_char,
    /// Its length in bytes, without the NUL.
    pub text_len: usize,
    /// The event in one line of UTF-8, NUL-terminated, as the CLI prints it and `ponder serve`
    /// streams it ("sample 0 · 96 tokens · eos · answer 42").
    pub line: *const c_char,
    /// Its length in bytes, without the NUL.
    pub line_len: usize,
}

impl ponder_event {
    /// An event of `kind` with nothing else set: zero counts, NaN scores, no text.
    fn of(kind: ponder_event_kind) -> Self {
        Self {
            kind,
            node: 0,
            parent: 0,
            depth: 0,
            tokens: 0,
            judge: f64::NAN,
            value: f64::NAN,
            text: std::ptr::null(),
            text_len: 0,
            line: std::ptr::null(),
            line_len: 0,
        }
    }

    /// `event` as this ABI passes it (the pointers not yet set), with the text `text` is to hold;
    /// `None` for a kind this ABI has no number for (`Event` is non-exhaustive).
    fn fields(event: &Event) -> Option<(Self, &str)> {
        use ponder_event_kind as Kind;
        fn answer(a: &Option<String>) -> &str {
            a.as_deref().unwrap_or("")
        }
        Some(match event {
            Event::Step {
                node,
                parent,
                depth,
                tokens,
                text,
            } => (
                Self {
                    node: *node as u64,
                    parent: *parent as u64,
                    depth: *depth,
                    tokens: *tokens,
                    ..Self::of(Kind::Step)
                },
                text.as_str(),
            ),
            Event::Scored { node, judge, value } => (
                Self {
                    node: *node as u64,
                    judge: *judge,
                    value: *value,
                    ..Self::of(Kind::Scored)
                },
                "",
            ),
            Event::Candidate {
                index,
                answer: a,
                score,
            } => (
                Self {
                    node: *index as u64,
                    value: *score,
                    ..Self::of(Kind::Candidate)
                },
                answer(a),
            ),
            Event::Done { answer: a, score } => (
                Self {
                    value: *score,
                    ..Self::of(Kind::Done)
                },
                answer(a),
            ),
            Event::Sample {
                index,
                tokens,
                answer: a,
                ..
            } => (
                Self {
                    node: *index as u64,
                    tokens: *tokens,
                    ..Self::of(Kind::Sample)
                },
                answer(a),
            ),
            _ => return None,
        })
    }
}

/// Called on the solving thread for every event, with the `userdata` given to
/// `ponder_engine_solve`. Return 0 to go on, anything else to cancel the solve.
pub type ponder_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const ponder_event) -> c_int>;

/// Work counters of a solve.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ponder_usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Forced tokens decoded for the first time.
    pub prefill_tokens: u64,
    /// Tokens sampled.
    pub generated_tokens: u64,
    /// Sampled tokens run through the model.
    pub decoded_tokens: u64,
    /// Tokens shared from the cache instead of decoded.
    pub reused_tokens: u64,
    /// Tokens decoded again after parking.
    pub recomputed_tokens: u64,
    /// `llama_decode` calls.
    pub forward_passes: u64,
    /// Time in the model, milliseconds.
    pub wall_ms: u64,
    /// Nodes whose cache was freed under pressure (their tokens kept).
    pub parked: u64,
    /// Parked nodes brought back.
    pub reactivated: u64,
    /// Whole KV streams copied (layout `streams`; 0 in `unified`).
    pub kv_copies: u64,
    /// Bytes those copies moved (an estimate from the model's shape).
    pub kv_copy_bytes: u64,
}

impl From<&ponder::Usage> for ponder_usage {
    fn from(u: &ponder::Usage) -> Self {
        // Every counter of `Usage`, by name: a field added there fails to compile here until it
        // is appended to this struct (and so to the header) too.
        let ponder::Usage {
            prompt_tokens,
            prefill_tokens,
            generated_tokens,
            decoded_tokens,
            reused_tokens,
            recomputed_tokens,
            forward_passes,
            parked,
            reactivated,
            kv_copies,
            kv_copy_bytes,
            wall_ms,
        } = *u;
        Self {
            prompt_tokens,
            prefill_tokens,
            generated_tokens,
            decoded_tokens,
            reused_tokens,
            recomputed_tokens,
            forward_passes,
            wall_ms,
            parked,
            reactivated,
            kv_copies,
            kv_copy_bytes,
        }
    }
}

/// The library's version, e.g. `"0.1.0"` (static, NUL-terminated).
#[no_mangle]
pub extern "C" fn ponder_version() -> *const c_char {
    static_cstr(concat!(env!("CARGO_PKG_VERSION"), "\0"))
}

/// The fixed message of a status (static, NUL-terminated); an unknown number gives
/// `"unknown status"`.
#[no_mangle]
pub extern "C" fn ponder_status_message(status: u32) -> *const c_char {
    match ponder_status::from_u32(status) {
        Some(s) => static_cstr(s.message()),
        None => static_cstr("unknown status\0"),
    }
}

/// Copies the detail of the last failure on the calling thread (what was wrong and what to do)
/// into `buf`, as `ponder_outcome_text` does. Empty when nothing failed yet.
#[no_mangle]
pub unsafe extern "C" fn ponder_last_error(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ponder_status {
    // Not through `boundary`/`fail`: reading the last error must not replace it.
    let message = status::last_error();
    match std::panic::catch_unwind(|| unsafe { copy_raw(&message, buf, len, out_n) }) {
        Ok(s) => s,
        Err(_) => ponder_status::Panic,
    }
}

/// Loads a model and creates its context. `config_json` (`len` bytes of UTF-8) is a JSON object
/// (anything else is `PONDER_STATUS_INVALID_CONFIG`; text that is not JSON,
/// `PONDER_STATUS_INVALID_JSON`) with optional fields `backend` (`"llama"`, the default, or
/// `"remote"`), for `llama`: `model` (a GGUF path; default `$PONDER_MODEL`, else
/// `models/SmolLM2-135M-Instruct.Q4_1.gguf`, relative to the process's current directory),
/// `n_gpu_layers`, `n_ctx` (8..=1048576, default 4096), `n_threads` (0: one per core, the default;
/// at most four per core), `n_seq_max` (1..=256, default 64), all checked before the model is
/// loaded, and `deterministic` (default false: solves from several threads run concurrently and
/// share forward passes; true: one at a time, each from a fresh cache, so that a solve's result
/// depends only on its problem, strategy and seeds), `max_seqs_per_solve` and
/// `max_cells_per_solve` (default 0: no cap; caps on one solve's live branches and on the KV
/// cells they hold, so that one wide solve leaves room for the others); for `remote`: `remote`, an object with `urls` (required: base URLs of
/// OpenAI-compatible servers, `http://HOST[:PORT]` or `https://…`), `model`, `api_key`,
/// `max_in_flight`, `timeout_ms`, `attempts`, `backoff_ms`, `top_logprobs`, `n_ctx` and
/// `tokenizer` (a tokenizer.json path: tokenise on the client, checked against the server). On
/// success `*out` holds the engine, to be freed with `ponder_engine_free`.
#[no_mangle]
pub unsafe extern "C" fn ponder_engine_new(
    config_json: *const c_char,
    len: usize,
    out: *mut *mut ponder_engine,
) -> ponder_status {
    boundary(|| {
        if out.is_null() {
            return fail(ponder_status::NullArgument, "out is NULL");
        }
        let text = match unsafe { str_arg(config_json, len, "config_json") } {
            Ok(t) => t,
            Err(s) => return s,
        };
        // Parsed as JSON first, so that broken JSON (however deep) is INVALID_JSON, and a
        // well-formed value of the wrong shape (an array: serde would read it as positional
        // fields) is INVALID_CONFIG.
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return fail(
                    ponder_status::InvalidJson,
                    format!("engine config is not valid JSON: {e}"),
                )
            }
        };
        let config = match BackendConfig::from_json(value) {
            Ok(c) => c,
            Err(e) => return fail(ponder_status::InvalidConfig, e.to_string()),
        };
        match config.open() {
            Ok(backend) => {
                let (engine, model) = backend.into_parts();
                let handle = Box::new(ponder_engine { engine, model });
                unsafe { *out = Box::into_raw(handle) };
                ponder_status::Ok
            }
            Err(e) => fail_with(&e),
        }
    })
}

/// Frees an engine. NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn ponder_engine_free(engine: *mut ponder_engine) {
    let _ = boundary(|| {
        if !engine.is_null() {
            drop(unsafe { Box::from_raw(engine) });
        }
        ponder_status::Ok
    });
}

/// Solves `question` (`question_len` bytes of UTF-8) with the strategy described by
/// `strategy_json` (`strategy_len` bytes: a JSON object with `"type"` one of `best_of_n`,
/// `self_correct`, `deepening`, `mcts`, `beam`, `deepconf`, and any of that strategy's fields).
/// Every count and budget has a fixed range, and a value outside it is
/// `PONDER_STATUS_INVALID_CONFIG`:
/// `n` and deepening's `width` 1..=256; `k`, beam's `width` and `expansions` 1..=64; `rounds`
/// 1..=16; every `max_tokens` and `l0` 1..=131072; `total_budget` l0..=10^7; `gamma` 1..=16;
/// `budget.tokens` 1..=10^7, `budget.forward_passes` 1..=10^8, `budget.wall_ms` 1..=86400000,
/// `budget.iterations` 1..=100000 (each may be null, not all); `step.max_depth` 1..=1024,
/// `step.retries` 0..=16, `step.min_chars` 0..=100000. On success `*out` holds the outcome, to
/// be freed with `ponder_outcome_free`.
///
/// `callback` (may be NULL) is called on this thread with `userdata` for every event. A non-zero
/// return for a `STEP`, `SCORED` or `SAMPLE` event cancels the solve, as `ponder_engine_cancel`
/// does; a non-zero return for a `CANDIDATE` or `DONE` event (they come after the search has
/// finished) only ends the events: the solve still returns `PONDER_STATUS_OK` and its outcome. A solve
/// that had finished is never reported cancelled.
///
/// A cancelled solve returns `PONDER_STATUS_CANCELLED` and always sets `*out`: to the best
/// outcome found until then when it was a tree search (`mcts`, `beam`) that had begun (free it
/// too), else to NULL (other strategies, and any solve cancelled while it waited for the engine).
///
/// The callback must not call `ponder_engine_solve` on the same engine (it would wait forever
/// for the solve that is calling it): such a call returns `PONDER_STATUS_REENTRANT` at once.
/// `ponder_engine_cancel` may be called from the callback.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ponder_engine_solve(
    engine: *const ponder_engine,
    question: *const c_char,
    question_len: usize,
    strategy_json: *const c_char,
    strategy_len: usize,
    callback: ponder_event_callback,
    userdata: *mut c_void,
    out: *mut *mut ponder_outcome,
) -> ponder_status {
    boundary(|| unsafe {
        solve(
            engine,
            || str_arg(question, question_len, "question").map(Problem::new),
            (strategy_json, strategy_len),
            (callback, userdata),
            out,
        )
    })
}

/// Solves the problem described by `problem_json` (`problem_len` bytes of UTF-8: a JSON object
/// `{"question", "id", "answer", "answer_kind", "oracle_guided"}`, only `question` required) with
/// `strategy_json`, as `ponder_engine_solve` does, with the same callback, cancellation and
/// outcome rules. `id` (a string or number) names the problem in the outcome's trace;
/// `answer` (a string or number) is the reference: it labels the candidates and the trace (right
/// or not) and never steers the search unless `oracle_guided` is true (tree searches value a
/// finished solution by it, best-of-N picks a right candidate), which the trace's provenance
/// records; `answer_kind` is `"numeric"` (the default) or `"text"`. Another field, or a field of
/// the wrong type, is `PONDER_STATUS_INVALID_CONFIG` naming it.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ponder_engine_solve_problem(
    engine: *const ponder_engine,
    problem_json: *const c_char,
    problem_len: usize,
    strategy_json: *const c_char,
    strategy_len: usize,
    callback: ponder_event_callback,
    userdata: *mut c_void,
    out: *mut *mut ponder_outcome,
) -> ponder_status {
    boundary(|| unsafe {
        solve(
            engine,
            || problem_from_json(str_arg(problem_json, problem_len, "problem_json")?),
            (strategy_json, strategy_len),
            (callback, userdata),
            out,
        )
    })
}

/// The problem of `ponder_engine_solve_problem`'s JSON (a dataset line's rules, plus
/// `oracle_guided`, and no other field).
pub(crate) fn problem_from_json(text: &str) -> Result<Problem, ponder_status> {
    const FIELDS: [&str; 5] = ["question", "id", "answer", "answer_kind", "oracle_guided"];
    let value = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(fail(
                ponder_status::InvalidJson,
                format!("problem_json is not valid JSON: {e}"),
            ))
        }
    };
    let invalid = |reason: String| fail(ponder_status::InvalidConfig, reason);
    let Some(object) = value.as_object() else {
        return Err(invalid(
            "problem_json is not a JSON object; expected {\"question\": \"…\"} with optional \"id\", \"answer\", \"answer_kind\", \"oracle_guided\"".into(),
        ));
    };
    if let Some(field) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "problem_json: unknown field {field:?}; the fields are {}",
            FIELDS.join(", ")
        )));
    }
    // A dataset line may carry an id or answer of another type (it is dropped there); a caller
    // of this function meant it, so it is refused.
    for field in ["id", "answer"] {
        if object
            .get(field)
            .is_some_and(|v| !(v.is_string() || v.is_number() || v.is_null()))
        {
            return Err(invalid(format!(
                "problem_json: \"{field}\" is not a string or a number"
            )));
        }
    }
    let mut problem = ponder::eval::parse_problem(text)
        .map_err(|reason| invalid(format!("problem_json: {reason}")))?;
    match object.get("oracle_guided") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Bool(b)) => problem.oracle_guided = *b,
        Some(_) => {
            return Err(invalid(
                "problem_json: \"oracle_guided\" is not true or false".into(),
            ))
        }
    }
    Ok(problem)
}

/// The body of both solve functions: checks `engine` and `out`, reads the problem (`problem`:
/// from the question or the problem JSON) and the strategy, and solves.
unsafe fn solve(
    engine: *const ponder_engine,
    problem: impl FnOnce() -> Result<Problem, ponder_status>,
    (strategy_json, strategy_len): (*const c_char, usize),
    (callback, userdata): (ponder_event_callback, *mut c_void),
    out: *mut *mut ponder_outcome,
) -> ponder_status {
    let Some(engine) = (unsafe { engine.as_ref() }) else {
        return fail(ponder_status::NullArgument, "engine is NULL");
    };
    if out.is_null() {
        return fail(ponder_status::NullArgument, "out is NULL");
    }
    let problem = match problem() {
        Ok(p) => p,
        Err(s) => return s,
    };
    let strategy_text = match unsafe { str_arg(strategy_json, strategy_len, "strategy_json") } {
        Ok(t) => t,
        Err(s) => return s,
    };
    if let Err(e) = serde_json::from_str::<serde_json::Value>(strategy_text) {
        return fail(
            ponder_status::InvalidJson,
            format!("strategy_json is not valid JSON: {e}"),
        );
    }
    let strategy = match StrategyConfig::from_json("", strategy_text) {
        Ok(s) => s,
        Err(e) => return fail(ponder_status::InvalidConfig, e.to_string()),
    };
    // From here on a cancellation writes `*out`: the best outcome so far, or NULL.
    let cancelled_without_outcome = || {
        unsafe { *out = std::ptr::null_mut() };
        fail(
            ponder_status::Cancelled,
            "cancelled by the caller before the search had an outcome to hand back; *out is NULL",
        )
    };
    let mut texts = Vec::<u8>::new();
    let mut on_event = |event: &Event| -> Flow {
        let Some(cb) = callback else {
            return Flow::Continue;
        };
        let Some((mut ev, text)) = ponder_event::fields(event) else {
            return Flow::Continue;
        };
        // Both strings in one buffer, each NUL-terminated: the text, then the line.
        let line = event.to_string();
        texts.clear();
        texts.extend_from_slice(text.as_bytes());
        texts.push(0);
        texts.extend_from_slice(line.as_bytes());
        texts.push(0);
        ev.text = texts.as_ptr().cast();
        ev.text_len = text.len();
        ev.line = texts[text.len() + 1..].as_ptr().cast();
        ev.line_len = line.len();
        if unsafe { cb(userdata, &ev) } == 0 {
            Flow::Continue
        } else {
            Flow::Stop
        }
    };
    match engine.engine.solve_with(&problem, &strategy, &mut on_event) {
        Ok(outcome) => {
            let cancelled = outcome
                .tree
                .as_ref()
                .is_some_and(|t| t.stop == ponder::strategy::StopReason::Cancelled);
            let handle = Box::new(ponder_outcome {
                outcome,
                problem,
                strategy,
                model: engine.model.get(),
            });
            unsafe { *out = Box::into_raw(handle) };
            if cancelled {
                fail(
                    ponder_status::Cancelled,
                    "cancelled by the caller; *out holds the best outcome found until then",
                )
            } else {
                ponder_status::Ok
            }
        }
        Err(ponder::Error::Cancelled) => cancelled_without_outcome(),
        Err(e) => fail_with(&e),
    }
}

/// Cancels every solve running or waiting on `engine` now (from any thread); they return
/// `PONDER_STATUS_CANCELLED` within one forward pass. Later solves are not affected.
#[no_mangle]
pub unsafe extern "C" fn ponder_engine_cancel(engine: *const ponder_engine) -> ponder_status {
    boundary(|| match unsafe { engine.as_ref() } {
        Some(e) => {
            e.engine.cancel();
            ponder_status::Ok
        }
        None => fail(ponder_status::NullArgument, "engine is NULL"),
    })
}

/// Frees an outcome. NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn ponder_outcome_free(outcome: *mut ponder_outcome) {
    let _ = boundary(|| {
        if !outcome.is_null() {
            drop(unsafe { Box::from_raw(outcome) });
        }
        ponder_status::Ok
    });
}

/// Copies the chosen answer into `buf` (`len` bytes, NUL-terminated; `*out_n` = its length).
/// `PONDER_STATUS_NO_ANSWER` when there is none, or `PONDER_STATUS_BUDGET_EXHAUSTED` when a tree
/// search ran out of budget before any answer.
#[no_mangle]
pub unsafe extern "C" fn ponder_outcome_answer(
    outcome: *const ponder_outcome,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ponder_status {
    boundary(|| {
        let Some(o) = (unsafe { outcome.as_ref() }) else {
            return fail(ponder_status::NullArgument, "outcome is NULL");
        };
        match &o.outcome.answer {
            Some(a) => unsafe { copy_out(a, buf, len, out_n) },
            None if o.outcome.tree.as_ref().is_some_and(|t| t.stop.is_budget()) => fail(
                ponder_status::BudgetExhausted,
                "the search ran out of budget before any answer; raise budget.tokens",
            ),
            None => fail(
                ponder_status::NoAnswer,
                "the chosen solution states no answer",
            ),
        }
    })
}

/// Copies the chosen solution's text into `buf`, as `ponder_outcome_answer` does.
#[no_mangle]
pub unsafe extern "C" fn ponder_outcome_text(
    outcome: *const ponder_outcome,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ponder_status {
    boundary(|| match unsafe { outcome.as_ref() } {
        Some(o) => unsafe { copy_out(&o.outcome.text, buf, len, out_n) },
        None => fail(ponder_status::NullArgument, "outcome is NULL"),
    })
}

/// The chosen solution's score.
#[no_mangle]
pub unsafe extern "C" fn ponder_outcome_score(
    outcome: *const ponder_outcome,
    out: *mut f64,
) -> ponder_status {
    boundary(|| match (unsafe { outcome.as_ref() }, out.is_null()) {
        (Some(o), false) => {
            unsafe { *out = o.outcome.score };
            ponder_status::Ok
        }
        _ => fail(ponder_status::NullArgument, "outcome or out is NULL"),
    })
}

/// The work the solve took.
#[no_mangle]
pub unsafe extern "C" fn ponder_outcome_usage(
    outcome: *const ponder_outcome,
    out: *mut ponder_usage,
) -> ponder_status {
    boundary(|| match (unsafe { outcome.as_ref() }, out.is_null()) {
        (Some(o), false) => {
            unsafe { *out = ponder_usage::from(&o.outcome.usage) };
            ponder_status::Ok
        }
        _ => fail(ponder_status::NullArgument, "outcome or out is NULL"),
    })
}

/// Copies the solve's whole trace as JSON (ponder's `Trace` format: every step with its text,
/// tokens, logprob, judge score, visits and value; the chosen path; usage; provenance) into
/// `buf`, as `ponder_outcome_answer` does. Its `id` is the problem's (`"0"` for
/// `ponder_engine_solve`, which takes none), its `reference` the problem's answer and its
/// `provenance.oracle_guided` the problem's `oracle_guided`.
#[no_mangle]
pub unsafe extern "C" fn ponder_outcome_trace_json(
    outcome: *const ponder_outcome,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ponder_status {
    boundary(|| {
        let Some(o) = (unsafe { outcome.as_ref() }) else {
            return fail(ponder_status::NullArgument, "outcome is NULL");
        };
        let provenance = Provenance::new(&o.model, &o.strategy, o.problem.oracle_guided);
        let id = o.problem.id.as_deref().unwrap_or("0");
        let trace = Trace::from_outcome(id, &o.problem, &o.outcome, provenance);
        let json = serde_json::to_string(&trace).expect("plain data");
        unsafe { copy_out(&json, buf, len, out_n) }
    })
}

/// A string argument: non-NULL and UTF-8.
unsafe fn str_arg<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, ponder_status> {
    if ptr.is_null() {
        return Err(fail(ponder_status::NullArgument, format!("{what} is NULL")));
    }
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|e| {
        fail(
            ponder_status::InvalidUtf8,
            format!("{what} is not valid UTF-8: {e}"),
        )
    })
}

/// Copies `s` and a NUL into `buf` when it fits; `*out_n` = `s.len()` either way. Failures are
/// recorded as the thread's last error.
unsafe fn copy_out(s: &str, buf: *mut c_char, len: usize, out_n: *mut usize) -> ponder_status {
    match unsafe { copy_raw(s, buf, len, out_n) } {
        ponder_status::NullArgument => fail(ponder_status::NullArgument, "out_n is NULL"),
        ponder_status::BufferTooSmall => fail(
            ponder_status::BufferTooSmall,
            format!(
                "{} bytes are needed (with the NUL); the buffer has {len}",
                s.len() + 1
            ),
        ),
        other => other,
    }
}

/// [`copy_out`] without recording anything.
unsafe fn copy_raw(s: &str, buf: *mut c_char, len: usize, out_n: *mut usize) -> ponder_status {
    if out_n.is_null() {
        return ponder_status::NullArgument;
    }
    unsafe { *out_n = s.len() };
    if buf.is_null() || len < s.len() + 1 {
        return ponder_status::BufferTooSmall;
    }
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    ponder_status::Ok
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
