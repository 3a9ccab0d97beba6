//! The strategy ladder behind `ponder bench`: several strategies ("rungs"), each at its own
//! size or budget, over one JSONL dataset; a report of accuracy, pass@N, self-reward AUCs,
//! tokens and seconds per problem, and the test-time-scaling plot (accuracy against generated
//! tokens per problem).
//!
//! A rung is any [`StrategyConfig`]: `NAME=JSON` with a whole `{"type": …}` object (so a
//! strategy or reranker added to the library is a rung with no change here), or a shorthand
//! ([`Rung::parse`]): `greedy`, `RERANK@N` (best-of-N with that reranker, e.g. `vote@8`,
//! `judge@8`), `beam@TOKENS`, `mcts@TOKENS`, `self_correct@ROUNDS`, `deepening@WIDTH`, or a
//! strategy's name alone for its defaults.
//!
//! Resumable like `synth`: every solved (rung, problem) is appended to `results.jsonl` in the
//! output directory as soon as it is done; a run into that directory skips what is there and
//! retries what failed. Problems are solved one at a time through [`eval::solve_one`], the same
//! code as `ponder eval`, and AUCs are [`metrics::auc`].

mod plot;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{ConfigError, Error};
use crate::eval::{self, ProblemResult};
use crate::lm::SamplingParams;
pub use crate::metrics::CandidateSignals;
use crate::metrics::{self, RerankerAccuracy, RerankerTally, SignalAuc};
use crate::strategy::{BestOfNConfig, Outcome, Problem, Rerank, StrategyConfig};

pub use plot::{draw_png, draw_svg, PlotPoint};

/// Files a bench writes into its output directory.
pub const RESULTS_FILE: &str = "results.jsonl";
/// The settings of the run (model and rungs), checked when resuming.
pub const RUN_FILE: &str = "run.json";
/// The report as JSON ([`BenchReport`]).
pub const REPORT_JSON: &str = "report.json";
/// The report as a Markdown table.
pub const REPORT_MD: &str = "report.md";
/// The test-time-scaling plot, SVG.
pub const PLOT_SVG: &str = "accuracy-vs-tokens.svg";
/// The test-time-scaling plot, PNG.
pub const PLOT_PNG: &str = "accuracy-vs-tokens.png";

/// One strategy of the ladder, under the name the report and plot show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rung {
    /// The rung's name (unique in a ladder). The part before `@` names its curve in the plot.
    pub name: String,
    /// The strategy.
    pub strategy: StrategyConfig,
}

impl Rung {
    /// Parses `NAME=JSON` (a whole `{"type": …}` strategy object) or a shorthand:
    ///
    /// - `greedy`: one greedy sample (best-of-N with `n` 1 at temperature 0);
    /// - `RERANK@N`: best-of-N with `N` samples ranked by `RERANK` (any name
    ///   [`Rerank::parse`] knows: `vote@8`, `judge@8`, `logprob@8`, `weighted_vote@8`, …);
    /// - `beam@TOKENS`, `mcts@TOKENS`: the tree search with that token budget;
    /// - `self_correct@ROUNDS`, `deepening@WIDTH`;
    /// - `STRATEGY@N` for another strategy whose configuration has a field `n`;
    /// - a strategy's name alone (`beam`, `mcts`, …): its default configuration.
    ///
    /// `max_tokens` (when given) replaces a shorthand's top-level `max_tokens` (new tokens per
    /// sample or attempt: best-of-N, self-correct); JSON rungs are taken as written.
    ///
    /// # Errors
    /// [`ConfigError`] saying which form was expected.
    pub fn parse(spec: &str, max_tokens: Option<u32>) -> Result<Self, ConfigError> {
        let spec = spec.trim();
        if let Some((name, json)) = spec.split_once('=') {
            let name = name.trim();
            check_name(name)?;
            let json = json.trim();
            let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                ConfigError::new(
                    "rung",
                    format!("rung {name:?}: the strategy is not valid JSON: {e}"),
                )
            })?;
            return Self::from_value(name, value);
        }
        check_name(spec)?;
        let mut value = shorthand(spec)?;
        if let (Some(m), Some(obj)) = (max_tokens, value.as_object_mut()) {
            if obj.contains_key("max_tokens") {
                obj.insert("max_tokens".into(), m.into());
            }
        }
        Self::from_value(spec, value)
    }

    /// A rung from a strategy given as JSON (a whole `{"type": …}` object).
    ///
    /// # Errors
    /// [`ConfigError`] when the object has no `"type"` or is not a valid strategy.
    pub fn from_value(name: &str, value: serde_json::Value) -> Result<Self, ConfigError> {
        check_name(name)?;
        if value.get("type").is_none() {
            return Err(ConfigError::new(
                "rung",
                format!(
                    "rung {name:?}: the strategy needs a \"type\" (best_of_n, beam, mcts, …), e.g. {name}={{\"type\": \"best_of_n\", \"n\": 4}}"
                ),
            ));
        }
        let strategy = StrategyConfig::from_json("", &value.to_string())
            .map_err(|e| ConfigError::new("rung", format!("rung {name:?}: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            strategy,
        })
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
        return Err(ConfigError::new(
            "rung",
            format!(
                "{name:?} is not a usable rung name; give NAME=JSON or a shorthand such as vote@8"
            ),
        ));
    }
    Ok(())
}

/// The configuration a shorthand stands for, as JSON.
fn shorthand(spec: &str) -> Result<serde_json::Value, ConfigError> {
    let bad = |why: String| {
        ConfigError::new(
            "rung",
            format!("{spec:?}: {why}; a rung is NAME=JSON, or greedy, RERANK@N (vote@8, judge@8, …), beam@TOKENS, mcts@TOKENS, self_correct@ROUNDS, deepening@WIDTH, or a strategy's name"),
        )
    };
    let to_value = |c: &StrategyConfig| serde_json::to_value(c).expect("configs serialise");
    let (head, size) = match spec.split_once('@') {
        None => (spec, None),
        Some((h, s)) => {
            let n: u64 = s
                .trim()
                .parse()
                .map_err(|_| bad(format!("{s:?} after @ is not a whole number")))?;
            (h.trim(), Some(n))
        }
    };
    if head.eq_ignore_ascii_case("greedy") {
        if size.is_some() {
            return Err(bad("greedy takes no @".into()));
        }
        return Ok(to_value(&StrategyConfig::BestOfN(BestOfNConfig {
            n: 1,
            sampling: SamplingParams::greedy(),
            rerank: Rerank::Vote,
            ..BestOfNConfig::default()
        })));
    }
    if let Ok(rerank) = Rerank::parse(head) {
        let n = size.ok_or_else(|| bad(format!("say how many samples: {head}@8")))?;
        let n = u32::try_from(n).map_err(|_| bad("too many samples".into()))?;
        return Ok(to_value(&StrategyConfig::BestOfN(BestOfNConfig {
            n,
            rerank,
            ..BestOfNConfig::default()
        })));
    }
    let config = StrategyConfig::default_for(head).map_err(|e| bad(e.to_string()))?;
    let mut value = to_value(&config);
    let Some(size) = size else {
        return Ok(value);
    };
    let obj = value.as_object_mut().expect("a strategy is an object");
    match config.name() {
        "mcts" | "beam" => {
            obj.insert("budget".into(), serde_json::json!({ "tokens": size }));
        }
        "deepening" => {
            obj.insert("width".into(), size.into());
        }
        "self_correct" => {
            obj.insert("rounds".into(), size.into());
        }
        other if obj.contains_key("n") => {
            let _ = other;
            obj.insert("n".into(), size.into());
        }
        other => {
            return Err(bad(format!(
                "{other} has no size that @ could set; give it as NAME=JSON"
            )))
        }
    }
    Ok(value)
}

/// Reads a ladder file: a JSON array whose elements are rung strings (as [`Rung::parse`]
/// takes) or objects `{"name": …, "strategy": {"type": …}}`.
///
/// # Errors
/// [`ConfigError`] naming the element that is wrong.
pub fn parse_ladder(text: &str, max_tokens: Option<u32>) -> Result<Vec<Rung>, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("ladder", format!("not valid JSON: {e}")))?;
    let items = value.as_array().ok_or_else(|| {
        ConfigError::new(
            "ladder",
            "must be a JSON array of rungs: \"vote@8\" or {\"name\": …, \"strategy\": {\"type\": …}}",
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            serde_json::Value::String(s) => Rung::parse(s, max_tokens),
            serde_json::Value::Object(o) => {
                let name = o.get("name").and_then(|n| n.as_str()).ok_or_else(|| {
                    ConfigError::new("ladder", format!("rung {i}: missing \"name\""))
                })?;
                let strategy = o.get("strategy").cloned().ok_or_else(|| {
                    ConfigError::new("ladder", format!("rung {i}: missing \"strategy\""))
                })?;
                Rung::from_value(name, strategy)
            }
            _ => Err(ConfigError::new(
                "ladder",
                format!("rung {i}: expected a string or an object"),
            )),
        })
        .collect()
}

/// Checks a ladder: at least one rung, and unique names.
///
/// # Errors
/// [`ConfigError`] naming the repeated rung.
pub fn check_ladder(rungs: &[Rung]) -> Result<(), ConfigError> {
    if rungs.is_empty() {
        return Err(ConfigError::new(
            "rung",
            "no rung given; add --rung greedy --rung vote@8 or --ladder FILE",
        ));
    }
    let mut seen = HashSet::new();
    for r in rungs {
        if !seen.insert(r.name.as_str()) {
            return Err(ConfigError::new(
                "rung",
                format!("rung {:?} is given twice; names must be unique", r.name),
            ));
        }
        r.strategy.validate()?;
    }
    Ok(())
}

/// A bench run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// The ladder.
    pub rungs: Vec<Rung>,
    /// The model's name as the report shows it (its file name); a resumed run must match it.
    pub model: String,
    /// The dataset's name as the report shows it.
    pub dataset: String,
    /// The command that produced the report, shown in it (optional).
    pub command: Option<String>,
}

/// One line of `results.jsonl`: a rung's result on one problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The rung's name.
    pub rung: String,
    /// The problem's index in the dataset (after `--limit`).
    pub index: usize,
    /// The result, as `ponder eval` reports it.
    pub result: ProblemResult,
    /// Every candidate's signals.
    pub candidates: Vec<CandidateSignals>,
}

impl Record {
    fn new(rung: &str, index: usize, result: ProblemResult, outcome: Option<&Outcome>) -> Self {
        let candidates = outcome.map(CandidateSignals::of).unwrap_or_default();
        Self {
            rung: rung.to_string(),
            index,
            result,
            candidates,
        }
    }
}

/// Where a run stands, after each solve.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// (rung, problem) pairs done, resumed ones included.
    pub done: usize,
    /// Pairs in the whole ladder.
    pub total: usize,
    /// Pairs found done in the output directory at the start.
    pub resumed: usize,
    /// The rung just run.
    pub rung: &'a str,
    /// Its result on the problem just solved.
    pub result: &'a ProblemResult,
}

/// The AUCs of a rung's candidate signals against correctness (see [`metrics::auc`]): the
/// chance that a right candidate scores above a wrong one. `None` without both kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aucs {
    /// The strategy's own ranking score (the reranker's signal).
    pub score: Option<f64>,
    /// The self-judge's score (only candidates that were judged).
    pub judge: Option<f64>,
    /// Mean token log-probability.
    pub mean_logprob: Option<f64>,
    /// Mean token confidence (sampled candidates).
    #[serde(default)]
    pub mean_confidence: Option<f64>,
    /// Tail confidence.
    #[serde(default)]
    pub tail_confidence: Option<f64>,
    /// Lowest group confidence (DeepConf's signal).
    #[serde(default)]
    pub lowest_group_confidence: Option<f64>,
    /// Self-certainty (mean KL divergence of each token's distribution from uniform).
    #[serde(default)]
    pub self_certainty: Option<f64>,
    /// Minus the tail entropy (lower entropy = surer, so higher is surer as for the others).
    #[serde(default)]
    pub tail_entropy: Option<f64>,
    /// Candidates with a label.
    pub labelled_candidates: usize,
    /// Of those, the judged ones.
    pub judged_candidates: usize,
}

/// A rung's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungReport {
    /// The rung's name.
    pub name: String,
    /// Its strategy.
    pub strategy: StrategyConfig,
    /// Problems it has results for.
    pub problems: usize,
    /// Whether every problem of the dataset has a result.
    pub complete: bool,
    /// Problems whose chosen answer is right.
    pub correct: usize,
    /// `correct` over the problems with a reference answer.
    pub accuracy: f64,
    /// Share of problems where any candidate is right.
    pub pass_at_n: f64,
    /// Problems whose solve failed (run again to retry them).
    pub errors: usize,
    /// Mean generated tokens per problem.
    pub tokens_per_problem: f64,
    /// Mean wall seconds per problem.
    pub seconds_per_problem: f64,
    /// Mean candidates per problem.
    pub candidates_per_problem: f64,
    /// Tokens generated over all its problems.
    pub generated_tokens: u64,
    /// The signals' AUCs.
    pub auc: Aucs,
    /// For best-of-N rungs: the accuracy every reranker would have had on the rung's samples
    /// (see [`metrics::RerankerTally`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reranker_accuracy: Vec<RerankerAccuracy>,
}

/// The report: one row per rung, in ladder order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The model's name.
    pub model: String,
    /// The dataset's name.
    pub dataset: String,
    /// Problems in the dataset (after `--limit`).
    pub problems: usize,
    /// The command that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Solves run by this invocation (0 when everything was resumed).
    pub solved_now: usize,
    /// The rungs.
    pub rungs: Vec<RungReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunSettings {
    model: String,
    rungs: Vec<Rung>,
    /// The command of the last run that solved (what `--report-only` shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(what, path, std::io::Error::other(e.to_string()))
}

/// Runs every rung over `problems` on `engine`, writing into `dir` (created when missing):
/// `results.jsonl` as it goes, then [`REPORT_JSON`], [`REPORT_MD`], [`PLOT_SVG`] and
/// [`PLOT_PNG`]. Rungs run one after the other, each over every problem.
///
/// # Errors
/// An invalid ladder; a directory holding a run of another model, or a rung of the same name
/// with another configuration; I/O errors. A problem the model fails on is recorded with its
/// error and retried by the next run.
pub fn run(
    engine: &Engine,
    problems: &[Problem],
    dir: &Path,
    config: &BenchConfig,
    mut progress: impl FnMut(&Progress),
) -> Result<BenchReport, Error> {
    check_ladder(&config.rungs)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    let mut settings = merge_settings(dir, config)?;
    if config.command.is_some() {
        settings.command = config.command.clone();
    }
    let results_path = dir.join(RESULTS_FILE);
    let mut records = read_records(&results_path)?;
    // Rewrite without torn or failed lines so that the file holds what the report counts.
    write_records(&results_path, &records)?;
    write_json(&dir.join(RUN_FILE), &settings)?;

    let ids: Vec<String> = problems
        .iter()
        .enumerate()
        .map(|(i, p)| p.id.clone().unwrap_or_else(|| i.to_string()))
        .collect();
    let total = config.rungs.len() * problems.len();
    let mut resumed = 0;
    for rung in &config.rungs {
        resumed += ids
            .iter()
            .filter(|id| records.contains_key(&(rung.name.clone(), (*id).clone())))
            .count();
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results_path)
        .map_err(|e| io_error("open", &results_path, e))?;
    let mut done = resumed;
    let mut solved_now = 0;
    for rung in &config.rungs {
        for (i, problem) in problems.iter().enumerate() {
            let key = (rung.name.clone(), ids[i].clone());
            if records.contains_key(&key) {
                continue;
            }
            let solved = eval::solve_one(engine, i, problem, &rung.strategy);
            let record = Record::new(&rung.name, i, solved.result, solved.outcome.as_ref());
            if record.result.error.is_none() {
                let mut line = serde_json::to_string(&record).expect("plain data");
                line.push('\n');
                file.write_all(line.as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_error("write", &results_path, e))?;
            }
            done += 1;
            solved_now += 1;
            progress(&Progress {
                done,
                total,
                resumed,
                rung: &rung.name,
                result: &record.result,
            });
            records.insert(key, record);
        }
    }
    let report = summarise(config, &ids, &records, solved_now);
    write_report(dir, &report)?;
    Ok(report)
}

/// Writes the report of what `dir` already holds for this ladder, solving nothing (after an
/// interrupted run; rungs without every problem are marked incomplete).
///
/// # Errors
/// As [`run`], without the model.
pub fn report_only(
    problems: &[Problem],
    dir: &Path,
    config: &BenchConfig,
) -> Result<BenchReport, Error> {
    check_ladder(&config.rungs)?;
    if !dir.join(RESULTS_FILE).exists() {
        return Err(ConfigError::new(
            "output",
            format!(
                "{} holds no {RESULTS_FILE}; run the bench without --report-only first",
                dir.display()
            ),
        )
        .into());
    }
    let settings = merge_settings(dir, config)?;
    let records = read_records(&dir.join(RESULTS_FILE))?;
    let ids: Vec<String> = problems
        .iter()
        .enumerate()
        .map(|(i, p)| p.id.clone().unwrap_or_else(|| i.to_string()))
        .collect();
    let mut report = summarise(config, &ids, &records, 0);
    report.command = settings.command.or_else(|| config.command.clone());
    write_report(dir, &report)?;
    Ok(report)
}

/// The settings to record: the earlier run's rungs plus this one's, after checking that the
/// model and every rung of the same name match.
fn merge_settings(dir: &Path, config: &BenchConfig) -> Result<RunSettings, Error> {
    let path = dir.join(RUN_FILE);
    let mut settings = RunSettings {
        model: config.model.clone(),
        rungs: Vec::new(),
        command: None,
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
        let earlier: RunSettings = serde_json::from_str(&text).map_err(|e| {
            ConfigError::new("output", format!("{} is not valid: {e}", path.display()))
        })?;
        if earlier.model != config.model {
            return Err(ConfigError::new(
                "output",
                format!(
                    "{} holds a bench of model {:?}, not {:?}; use another --output",
                    dir.display(),
                    earlier.model,
                    config.model
                ),
            )
            .into());
        }
        settings.rungs = earlier.rungs;
        settings.command = earlier.command;
    }
    for rung in &config.rungs {
        match settings.rungs.iter().find(|r| r.name == rung.name) {
            Some(r) if r.strategy != rung.strategy => {
                return Err(ConfigError::new(
                    "output",
                    format!(
                        "{} holds results of a rung {:?} with another configuration; give this one another name or use another --output",
                        dir.display(),
                        rung.name
                    ),
                )
                .into())
            }
            Some(_) => {}
            None => settings.rungs.push(rung.clone()),
        }
    }
    Ok(settings)
}

type Records = HashMap<(String, String), Record>;

/// The successful records of `results.jsonl` by (rung, problem id); torn and unreadable lines
/// are dropped.
fn read_records(path: &Path) -> Result<Records, Error> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io_error("read", path, e)),
    };
    let mut records = HashMap::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        if let Ok(r) = serde_json::from_str::<Record>(line) {
            if r.result.error.is_none() {
                records.insert((r.rung.clone(), r.result.id.clone()), r);
            }
        }
    }
    Ok(records)
}

fn write_records(path: &Path, records: &Records) -> Result<(), Error> {
    let mut sorted: Vec<&Record> = records.values().collect();
    sorted.sort_by(|a, b| (&a.rung, a.index).cmp(&(&b.rung, b.index)));
    let text: String = sorted
        .iter()
        .map(|r| serde_json::to_string(r).expect("plain data") + "\n")
        .collect();
    write_atomic(path, &text)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("plain data") + "\n";
    write_atomic(path, &text)
}

fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| io_error("write", path, e))
}

fn summarise(
    config: &BenchConfig,
    ids: &[String],
    records: &Records,
    solved_now: usize,
) -> BenchReport {
    let rungs = config
        .rungs
        .iter()
        .map(|rung| {
            let rows: Vec<&Record> = ids
                .iter()
                .filter_map(|id| records.get(&(rung.name.clone(), id.clone())))
                .collect();
            summarise_rung(rung, &rows, ids.len())
        })
        .collect();
    BenchReport {
        model: config.model.clone(),
        dataset: config.dataset.clone(),
        problems: ids.len(),
        command: config.command.clone(),
        solved_now,
        rungs,
    }
}

fn summarise_rung(rung: &Rung, rows: &[&Record], total: usize) -> RungReport {
    let n = rows.len();
    let labelled = rows.iter().filter(|r| r.result.correct.is_some()).count();
    let correct = rows
        .iter()
        .filter(|r| r.result.correct == Some(true))
        .count();
    let passed = rows.iter().filter(|r| r.result.pass == Some(true)).count();
    let ratio = |k: usize, of: usize| if of == 0 { 0.0 } else { k as f64 / of as f64 };
    let tokens: u64 = rows.iter().map(|r| r.result.generated_tokens).sum();
    let ms: u64 = rows.iter().map(|r| r.result.wall_ms).sum();
    let candidates: Vec<&CandidateSignals> =
        rows.iter().flat_map(|r| r.candidates.iter()).collect();
    let signals = SignalAuc::of(candidates.iter().copied());
    let mut rerankers = RerankerTally::new(&rung.strategy);
    for r in rows {
        rerankers.add(&r.candidates);
    }
    RungReport {
        name: rung.name.clone(),
        strategy: rung.strategy.clone(),
        problems: n,
        complete: n == total,
        correct,
        accuracy: ratio(correct, labelled),
        pass_at_n: ratio(passed, labelled),
        errors: rows.iter().filter(|r| r.result.error.is_some()).count(),
        tokens_per_problem: ratio(tokens as usize, n),
        seconds_per_problem: ratio(ms as usize, n) / 1000.0,
        candidates_per_problem: ratio(candidates.len(), n),
        generated_tokens: tokens,
        auc: Aucs {
            score: metrics::signal_auc(candidates.iter().copied(), |c| Some(c.score)).0,
            judge: signals.judge,
            mean_logprob: signals.mean_logprob,
            mean_confidence: signals.mean_confidence,
            tail_confidence: signals.tail_confidence,
            lowest_group_confidence: signals.lowest_group_confidence,
            self_certainty: signals.self_certainty,
            tail_entropy: signals.tail_entropy,
            labelled_candidates: signals.candidates,
            judged_candidates: signals.judged_candidates,
        },
        reranker_accuracy: rerankers.report(),
    }
}

/// Writes [`REPORT_JSON`], [`REPORT_MD`], [`PLOT_SVG`] and [`PLOT_PNG`] into `dir`.
///
/// # Errors
/// I/O errors, and plotting errors (as [`ConfigError`]s on `output`).
pub fn write_report(dir: &Path, report: &BenchReport) -> Result<(), Error> {
    write_json(&dir.join(REPORT_JSON), report)?;
    write_atomic(&dir.join(REPORT_MD), &markdown(report))?;
    let rungs = report.rungs.iter().filter(|r| r.problems > 0);
    let points: Vec<PlotPoint> = rungs
        .clone()
        .map(|r| PlotPoint {
            name: r.name.clone(),
            curve: curve_of(&r.name).to_string(),
            tokens: r.tokens_per_problem,
            accuracy: r.accuracy,
            hollow: false,
        })
        .chain(rungs.flat_map(|r| {
            // Every reranker on the same samples, at the rung's tokens (or a stopping rule's
            // own); one counted on fewer problems (a signal some records lack) is left out.
            r.reranker_accuracy
                .iter()
                .filter(|a| a.problems == r.problems)
                .map(|a| PlotPoint {
                    name: a.rerank.clone(),
                    curve: curve_of(&r.name).to_string(),
                    tokens: a.tokens_per_problem.unwrap_or(r.tokens_per_problem),
                    accuracy: a.accuracy,
                    hollow: true,
                })
        }))
        .collect();
    let title = format!(
        "{} on {} ({} problems)",
        report.model, report.dataset, report.problems
    );
    for (file, draw) in [
        (
            PLOT_SVG,
            draw_svg as fn(&Path, &str, &[PlotPoint]) -> Result<(), String>,
        ),
        (PLOT_PNG, draw_png),
    ] {
        let path = dir.join(file);
        draw(&path, &title, &points).map_err(|e| io_error("draw", &path, e))?;
    }
    Ok(())
}

/// The curve a rung belongs to in the plot: its name before `@`.
pub fn curve_of(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn fmt_auc(a: Option<f64>) -> String {
    a.map_or("–".into(), |a| format!("{a:.2}"))
}

/// The report as a Markdown table (what `report.md` holds).
pub fn markdown(report: &BenchReport) -> String {
    let mut s = format!(
        "# ponder bench: {} on {} ({} problems)\n\n",
        report.model, report.dataset, report.problems
    );
    if let Some(c) = &report.command {
        s += &format!("```\n{c}\n```\n\n");
    }
    s += "| rung | strategy | problems | accuracy | pass@N | tokens/problem | s/problem | AUC score | AUC judge | AUC mean logprob | AUC lowest group conf. | AUC self-certainty | AUC tail entropy |\n";
    s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &report.rungs {
        s += &format!(
            "| {} | {} | {}{} | {:.3} ({}/{}) | {:.3} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.strategy.name(),
            r.problems,
            if r.complete { "" } else { " (incomplete)" },
            r.accuracy,
            r.correct,
            r.problems,
            r.pass_at_n,
            r.tokens_per_problem,
            r.seconds_per_problem,
            fmt_auc(r.auc.score),
            fmt_auc(r.auc.judge),
            fmt_auc(r.auc.mean_logprob),
            fmt_auc(r.auc.lowest_group_confidence),
            fmt_auc(r.auc.self_certainty),
            fmt_auc(r.auc.tail_entropy),
        );
    }
    let reranked: Vec<&RungReport> = report
        .rungs
        .iter()
        .filter(|r| !r.reranker_accuracy.is_empty())
        .collect();
    if !reranked.is_empty() {
        s += "\nEvery reranker on each best-of-N rung's own samples (right answers chosen), and \
              adaptive consistency replayed on them (the majority of the samples it would have \
              drawn, and their tokens):\n\n";
        s += "| rung | reranker | right | accuracy | tokens/problem |\n|---|---|---:|---:|---:|\n";
        for r in reranked {
            for a in &r.reranker_accuracy {
                s += &format!(
                    "| {} | {} | {}/{} | {:.3} | {:.0} |\n",
                    r.name,
                    a.rerank,
                    a.correct,
                    a.problems,
                    a.accuracy,
                    a.tokens_per_problem.unwrap_or(r.tokens_per_problem)
                );
            }
        }
    }
    s += "\nAUC: the chance that a right candidate scores above a wrong one, over the rung's \
          candidates (– without both kinds). `score` is what the strategy ranked by; tail entropy \
          is counted as minus the entropy, so above 0.5 means the surer trace is right more \
          often for every column.\n\n";
    s += &format!("![accuracy against generated tokens per problem]({PLOT_SVG})\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_expand_to_strategies() {
        let g = Rung::parse("greedy", Some(64)).unwrap();
        let StrategyConfig::BestOfN(c) = &g.strategy else {
            panic!("greedy is best-of-n")
        };
        assert_eq!((c.n, c.max_tokens, c.sampling.temperature), (1, 64, 0.0));
        let v = Rung::parse("vote@8", None).unwrap();
        let StrategyConfig::BestOfN(c) = &v.strategy else {
            panic!("vote@8 is best-of-n")
        };
        assert_eq!((c.n, c.rerank), (8, Rerank::Vote));
        let b = Rung::parse("beam@2048", Some(64)).unwrap();
        let StrategyConfig::Beam(c) = &b.strategy else {
            panic!("beam@2048 is beam")
        };
        assert_eq!(c.budget.tokens, Some(2048));
        let m = Rung::parse("mcts", None).unwrap();
        assert_eq!(m.strategy.name(), "mcts");
        let d = Rung::parse("deepening@4", None).unwrap();
        let StrategyConfig::Deepening(c) = &d.strategy else {
            panic!("deepening")
        };
        assert_eq!(c.width, 4);
    }

    #[test]
    fn json_rungs_take_any_strategy_and_bad_ones_say_why() {
        let r = Rung::parse(r#"wide={"type": "beam", "width": 5}"#, Some(7)).unwrap();
        assert_eq!(r.name, "wide");
        let StrategyConfig::Beam(c) = &r.strategy else {
            panic!("beam")
        };
        assert_eq!(c.width, 5);
        let e = Rung::parse(r#"x={"n": 4}"#, None).unwrap_err();
        assert!(e.to_string().contains("\"type\""), "{e}");
        let e = Rung::parse(r#"x={"type": "best_of_n", "bogus": 1}"#, None).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Rung::parse("vote", None).unwrap_err();
        assert!(e.to_string().contains("vote@8"), "{e}");
        let e = Rung::parse("nonsense@3", None).unwrap_err();
        assert!(e.to_string().contains("unknown strategy"), "{e}");
        let e = Rung::parse("vote@many", None).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        let ladder = parse_ladder(
            r#"["greedy", {"name": "v2", "strategy": {"type": "best_of_n", "n": 2}}]"#,
            None,
        )
        .unwrap();
        assert_eq!(ladder.len(), 2);
        assert!(check_ladder(&[ladder[0].clone(), ladder[0].clone()]).is_err());
        assert!(check_ladder(&[]).is_err());
    }

    #[test]
    fn rung_summary_counts_and_aucs() {
        let rung = Rung::parse("vote@2", None).unwrap();
        let row = |id: &str, correct: bool, scores: [(f64, bool); 2]| Record {
            rung: "vote@2".into(),
            index: 0,
            result: ProblemResult {
                id: id.into(),
                answer: None,
                expected: Some("1".into()),
                correct: Some(correct),
                pass: Some(scores.iter().any(|s| s.1)),
                generated_tokens: 100,
                wall_ms: 2000,
                error: None,
            },
            candidates: scores
                .iter()
                .map(|&(score, ok)| CandidateSignals {
                    answer: None,
                    correct: Some(ok),
                    tokens: 50,
                    score,
                    judge: None,
                    mean_logprob: -score,
                    confidence: None,
                })
                .collect(),
        };
        let a = row("a", true, [(0.9, true), (0.1, false)]);
        let b = row("b", false, [(0.7, false), (0.2, false)]);
        let r = summarise_rung(&rung, &[&a, &b], 3);
        assert_eq!((r.problems, r.correct, r.complete), (2, 1, false));
        assert_eq!(r.accuracy, 0.5);
        assert_eq!(r.pass_at_n, 0.5);
        assert_eq!(r.tokens_per_problem, 100.0);
        assert_eq!(r.seconds_per_problem, 2.0);
        assert_eq!(r.auc.score, Some(1.0));
        assert_eq!(r.auc.mean_logprob, Some(0.0));
        assert_eq!(r.auc.judge, None);
        assert_eq!(r.auc.labelled_candidates, 4);
    }

    #[test]
    fn plots_are_drawn_without_system_fonts() {
        let dir = std::env::temp_dir().join(format!("ponder-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let points = vec![
            PlotPoint {
                name: "greedy".into(),
                curve: "greedy".into(),
                tokens: 150.0,
                accuracy: 0.5,
                hollow: false,
            },
            PlotPoint {
                name: "vote@4".into(),
                curve: "vote".into(),
                tokens: 600.0,
                accuracy: 0.6,
                hollow: false,
            },
            PlotPoint {
                name: "vote@8".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.7,
                hollow: false,
            },
            // Two rerankers on vote@8's samples land on one point, a third elsewhere.
            PlotPoint {
                name: "cisc".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.75,
                hollow: true,
            },
            PlotPoint {
                name: "borda_vote".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.75,
                hollow: true,
            },
            PlotPoint {
                name: "self_certainty".into(),
                curve: "vote".into(),
                tokens: 1200.0,
                accuracy: 0.4,
                hollow: true,
            },
        ];
        draw_svg(&dir.join("p.svg"), "test", &points).unwrap();
        draw_png(&dir.join("p.png"), "test", &points).unwrap();
        let svg = std::fs::read_to_string(dir.join("p.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("vote@8"), "{svg}");
        assert!(svg.contains("cisc, borda_vote 0.75"), "{svg}");
        assert!(svg.contains("self_certainty 0.40"), "{svg}");
        let png = std::fs::read(dir.join("p.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // One point alone, and none, still draw.
        draw_png(&dir.join("one.png"), "one", &points[..1]).unwrap();
        draw_svg(&dir.join("none.svg"), "none", &[]).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
