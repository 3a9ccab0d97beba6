//! `ponder bench`: a ladder of strategies over a dataset, reported and plotted.

use std::path::{Path, PathBuf};

use ponder::{bench, eval, ConfigError};

use crate::flags::choice::BackendKind;
use crate::flags::ModelArgs;
use crate::{progress, render};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// JSONL file of {"id", "question", "answer"} lines.
    #[arg(long)]
    dataset: PathBuf,
    /// Output directory (report.json, report.md, accuracy-vs-tokens.svg/.png, results.jsonl);
    /// a run into a directory that holds results resumes it.
    #[arg(long)]
    output: PathBuf,
    /// A rung of the ladder, repeatable, run in the order given: NAME=JSON (a whole
    /// {"type": …} strategy object), or a shorthand: greedy, RERANK@N (vote@8, judge@8,
    /// logprob@8, weighted_vote@8), beam@TOKENS, mcts@TOKENS, self_correct@ROUNDS,
    /// deepening@WIDTH, or a strategy's name. Default: greedy, vote@4, vote@8.
    #[arg(long = "rung", value_name = "RUNG")]
    rungs: Vec<String>,
    /// A JSON file holding an array of rungs ("vote@8" or {"name", "strategy"}), run before
    /// the --rung ones.
    #[arg(long)]
    ladder: Option<PathBuf>,
    /// New tokens per sample or attempt for the shorthand rungs that have one (best-of-N,
    /// greedy, self-correct); JSON rungs are taken as written.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Only the first K problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Solve nothing: write the report and plots from what --output already holds (after an
    /// interrupted run; unfinished rungs are marked incomplete).
    #[arg(long)]
    report_only: bool,
    /// No progress bar; print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the ladder over the dataset (or, with --report-only, reports what --output holds) and
/// prints the report.
pub fn exec(args: &Args) -> ponder::Result<()> {
    let mut rungs = Vec::new();
    if let Some(path) = &args.ladder {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("ladder", format!("cannot read {}: {e}", path.display()))
        })?;
        rungs = bench::parse_ladder(&text, args.max_tokens)?;
    }
    for spec in &args.rungs {
        rungs.push(bench::Rung::parse(spec, args.max_tokens)?);
    }
    if rungs.is_empty() {
        for spec in ["greedy", "vote@4", "vote@8"] {
            rungs.push(bench::Rung::parse(spec, args.max_tokens)?);
        }
    }
    bench::check_ladder(&rungs)?;
    let (mut problems, line_errors) = eval::read_dataset(&args.dataset).map_err(|e| {
        ConfigError::new(
            "dataset",
            format!("cannot read {}: {e}", args.dataset.display()),
        )
    })?;
    for e in &line_errors {
        eprintln!(
            "{}:{}: skipped: {}",
            args.dataset.display(),
            e.line,
            e.message
        );
    }
    if let Some(k) = args.limit {
        problems.truncate(k);
    }
    if problems.is_empty() {
        return Err(ConfigError::new(
            "dataset",
            format!("{} holds no usable problem", args.dataset.display()),
        )
        .into());
    }
    let file_name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        )
    };
    let model = if args.model.backend == BackendKind::Remote {
        format!(
            "remote {}",
            args.model
                .served_model
                .clone()
                .or_else(|| args.model.urls.first().cloned())
                .unwrap_or_default()
        )
    } else {
        file_name(&args.model.model)
    };
    let config = bench::BenchConfig {
        rungs,
        model,
        dataset: file_name(&args.dataset),
        command: Some(command_line()),
    };
    if args.report_only {
        let report = bench::report_only(&problems, &args.output, &config)?;
        return finish(args, &report);
    }
    let engine = args.model.engine()?;
    let total = config.rungs.len() * problems.len();
    let progress = progress::Batch::new(
        total,
        "{bar:30} {pos}/{len} · {elapsed} · ETA {eta} · {msg}",
        args.json,
    );
    let report = bench::run(&engine, &problems, &args.output, &config, |p| {
        if p.done == p.resumed + 1 && p.resumed > 0 {
            progress.note(&format!("resuming: {} solves already done", p.resumed));
        }
        let r = p.result;
        match &r.error {
            Some(e) => progress.fail(p.done, &format!("{} {}: failed: {e}", p.rung, r.id)),
            None => progress.update(
                p.done,
                format!(
                    "{} · {} → {}{} · {} tokens",
                    p.rung,
                    r.id,
                    r.answer.as_deref().unwrap_or("(none)"),
                    render::mark(r.correct),
                    r.generated_tokens
                ),
            ),
        }
    })?;
    drop(progress);
    finish(args, &report)
}

/// Prints the report and says on stderr how many solves failed.
fn finish(args: &Args, report: &bench::BenchReport) -> ponder::Result<()> {
    render::bench_report(report, &args.output, args.json);
    let failed: usize = report.rungs.iter().map(|r| r.errors).sum();
    if failed > 0 {
        eprintln!("{failed} solves failed (see above); run the same command again to retry them");
    }
    Ok(())
}

/// This process's command line, quoted for a POSIX shell where needed.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "ponder".to_string() } else { a };
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=@,:+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
