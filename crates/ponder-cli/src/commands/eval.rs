//! `ponder eval`: a strategy over a dataset, with accuracy, pass@N and judge AUC.

use std::path::PathBuf;

use ponder::eval;
use ponder::ConfigError;

use crate::flags::choice::{choice, AnswerKindName};
use crate::flags::{ModelArgs, StrategyArgs};
use crate::{dataset, progress, render};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    strategy: StrategyArgs,
    /// JSONL file of {"id", "question", "answer"} lines.
    #[arg(long)]
    dataset: PathBuf,
    /// Only the first K problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Print the report as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Kind of the reference answers: numeric or text. Overrides the dataset lines' own
    /// "answer_kind".
    #[arg(long, value_parser = choice::<AnswerKindName>("answer kind"))]
    answer_kind: Option<AnswerKindName>,
    /// Problems in flight at once (backend llama: one context, their branches share forward
    /// passes; backend remote: requests in flight from all of them).
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

/// Runs the strategy over the dataset, a progress line per problem on stderr, and prints the
/// report.
pub fn exec(args: &Args) -> ponder::Result<()> {
    let strategy = args.strategy.resolve()?;
    if args.strategy.printed(&strategy) {
        return Ok(());
    }
    let (mut problems, line_errors) = dataset::read_problems(&args.dataset, "dataset", args.limit)?;
    dataset::apply_answer_kind(&mut problems, args.answer_kind, &strategy)?;
    if args.workers == 0 {
        return Err(ConfigError::new("workers", "--workers must be at least 1").into());
    }
    let model = args.model.for_workload(&strategy);
    model.check()?;
    progress::opening("eval", &model.config(), Some(&strategy));
    let engine = model.engine()?;
    let report = eval::run(
        &engine,
        &problems,
        line_errors,
        &strategy,
        args.workers,
        |i, n, r| eprintln!("{}", render::eval_line(i, n, r)),
    );
    render::eval_report(&report, args.json);
    Ok(())
}
