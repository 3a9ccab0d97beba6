//! The strategy ladder behind `ponder bench`: several strategies ("rungs"), each at its own
//! size or budget, over one JSONL dataset; a report of accuracy, pass@N, self-reward AUCs,
//! tokens and seconds per problem, and the test-time-scaling plot (accuracy against generated
//! tokens per problem).
//!
//! A rung is any [`StrategyConfig`](crate::strategy::StrategyConfig): `NAME=JSON` with a whole `{"type": …}` object (so a
//! strategy or reranker added to the library is a rung with no change here), or a shorthand
//! ([`Rung::parse`]): `greedy`, `RERANK@N` (best-of-N with that reranker, e.g. `vote@8`,
//! `judge@8`), `beam@TOKENS`, `mcts@TOKENS`, `self_correct@ROUNDS`, `deepening@WIDTH`, or a
//! strategy's name alone for its defaults.
//!
//! Resumable like `synth`: every solved (rung, problem) is appended to `results.jsonl` in the
//! output directory as soon as it is done; a run into that directory skips what is there and
//! retries what failed. Problems are solved one at a time through [`eval::solve_one`], the same
//! code as `ponder eval`, and AUCs are [`eval::stats::auc`].
//!
//! The rungs and their shorthands are in `rung.rs`, the report in `report.rs`, the plot in
//! `plot.rs` (the only file that draws).

mod plot;
mod report;
mod rung;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{ConfigError, Error};
pub use crate::eval::stats::CandidateSignals;
use crate::eval::{self, ProblemResult};
use crate::runner;
use crate::strategy::{Outcome, Problem};

pub use plot::{draw_png, draw_svg, PlotPoint};
pub use report::{curve_of, markdown, write_report, Aucs, BenchReport, RungReport};
pub use rung::{check_ladder, parse_ladder, Rung};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunSettings {
    model: String,
    rungs: Vec<Rung>,
    /// The command of the last run that solved (what `--report-only` shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
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
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
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
        .map(|(i, p)| runner::problem_id(p, i))
        .collect();
    let total = config.rungs.len() * problems.len();
    let mut resumed = 0;
    for rung in &config.rungs {
        resumed += ids
            .iter()
            .filter(|id| records.contains_key(&(rung.name.clone(), (*id).clone())))
            .count();
    }
    // The (rung, problem) pairs to solve, rung by rung: not resumed, and a repeated id once.
    let mut queued = HashSet::new();
    let work: Vec<(&Rung, usize)> = config
        .rungs
        .iter()
        .flat_map(|rung| (0..problems.len()).map(move |i| (rung, i)))
        .filter(|(rung, i)| {
            let key = (rung.name.clone(), ids[*i].clone());
            !records.contains_key(&key) && queued.insert(key)
        })
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results_path)
        .map_err(|e| Error::io("open", &results_path, e))?;
    let mut done = resumed;
    let mut written: Result<(), Error> = Ok(());
    let stop = AtomicBool::new(false);
    // One solve at a time, as `eval` with one worker.
    runner::in_order(
        work.len(),
        1,
        &stop,
        |_, k| {
            let (rung, i) = work[k];
            eval::solve_one(engine, i, &problems[i], &rung.strategy)
        },
        |k, solved| {
            let (rung, i) = work[k];
            let record = Record::new(&rung.name, i, solved.result, solved.outcome.as_ref());
            if record.result.error.is_none() {
                let mut line = serde_json::to_string(&record).expect("plain data");
                line.push('\n');
                if let Err(e) = file
                    .write_all(line.as_bytes())
                    .and_then(|()| file.sync_data())
                {
                    written = Err(Error::io("write", &results_path, e));
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
            }
            done += 1;
            progress(&Progress {
                done,
                total,
                resumed,
                rung: &rung.name,
                result: &record.result,
            });
            records.insert((rung.name.clone(), ids[i].clone()), record);
        },
    );
    written?;
    let solved_now = done - resumed;
    let report = report::summarise(config, &ids, &records, solved_now);
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
        .map(|(i, p)| runner::problem_id(p, i))
        .collect();
    let mut report = report::summarise(config, &ids, &records, 0);
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
    if let Some(earlier) = runner::read_settings::<RunSettings>(&path)? {
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

pub(super) type Records = HashMap<(String, String), Record>;

/// The successful records of `results.jsonl` by (rung, problem id); torn and unreadable lines
/// are dropped.
fn read_records(path: &Path) -> Result<Records, Error> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(Error::io("read", path, e)),
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

pub(super) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("plain data") + "\n";
    write_atomic(path, &text)
}

pub(super) fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    runner::write_atomic(path, text).map_err(|e| Error::io("write", path, e))
}
