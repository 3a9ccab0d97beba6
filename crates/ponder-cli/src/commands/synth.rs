//! `ponder synth`: a strategy over a dataset, its traces written as training records.

use std::path::PathBuf;

use ponder::strategy::{PromptConfig, Rerank, StrategyConfig};
use ponder::synth::{self, SynthConfig};
use ponder::trace::export::{ExportOptions, Format};
use ponder::ConfigError;

use crate::flags::choice::{choice, AnswerKindName, FormatName, LabelName};
use crate::flags::{ModelArgs, StrategyArgs};
use crate::{dataset, progress, render, Failure};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    strategy: StrategyArgs,
    /// JSONL file of {"id", "question", "answer"} lines.
    #[arg(long)]
    input: PathBuf,
    /// Output directory; a run into a directory that holds finished problems resumes it.
    #[arg(long)]
    output: PathBuf,
    /// Record formats, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sft,preference,prm,correction",
        value_parser = choice::<FormatName>("format")
    )]
    formats: Vec<FormatName>,
    /// Label records with the reference answers (oracle mode).
    #[arg(long)]
    oracle: bool,
    /// Let the reference answers steer the search too (implies nothing about labels).
    #[arg(long)]
    oracle_guided: bool,
    /// Only the first K problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Problems in flight at once on one engine (backend llama: one context, their branches
    /// share forward passes; backend remote: one connection, --max-in-flight caps the requests of
    /// all of them). Records are written in input order.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Preference pairs need values at least this far apart.
    #[arg(long, default_value_t = ExportOptions::default().margin)]
    margin: f64,
    /// PRM labels: booleans by --threshold (what TRL's PRMTrainer reads), or the values.
    #[arg(long, default_value = "bool", value_parser = choice::<LabelName>("label kind"))]
    labels: LabelName,
    /// A step is good when its value or judge score reaches this.
    #[arg(long, default_value_t = ExportOptions::default().threshold)]
    threshold: f64,
    /// No progress bar; print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Kind of the reference answers: numeric or text (free text: a rewritten sentence, a
    /// phrase). Overrides the dataset lines' own "answer_kind".
    #[arg(long, value_parser = choice::<AnswerKindName>("answer kind"))]
    answer_kind: Option<AnswerKindName>,
    /// A reference-based reward computed on every candidate: `r3` (DRO's Reasoning Reflection
    /// Reward; best-of-n only). It labels candidates and ranks preference pairs; it steers the
    /// pick only with --oracle-guided. Without --config, best-of-n is asked to end with a line
    /// "Answer: …".
    #[arg(long, value_enum)]
    reward: Option<RewardArg>,
    /// With --reward r3: DRO's filter; problems whose R3 spread across candidates is below this
    /// get no training records (the summary says how many and why).
    #[arg(long, default_value_t = 0.0)]
    r3_min_spread: f64,
    /// With --reward r3: the text that introduces the answer; the reference is scored after it.
    #[arg(long, default_value = ponder::reward::r3::DEFAULT_MARKER)]
    r3_marker: String,
}

/// A reference-based reward for `synth --reward`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RewardArg {
    /// DRO's Reasoning Reflection Reward.
    R3,
}

/// The best-of-n prompt `--reward r3` uses when no --config is given: R3 scores the reference
/// after the line "Answer:".
const R3_TEMPLATE: &str = "{question}\n\nThink it through briefly, then finish with a line \"Answer:\" followed by your answer.";

/// Runs the strategy over the input, a progress bar on a terminal, writes the records and
/// prints the summary; a run that stopped early (a remote server gone) is a failure once the
/// summary is printed, every finished record being kept.
pub fn exec(args: &Args) -> Result<(), Failure> {
    match run(args)? {
        Some(why) => Err(Failure::SynthStopped {
            why,
            output: args.output.clone(),
        }),
        None => Ok(()),
    }
}

/// The run; why it stopped early, if it did.
fn run(args: &Args) -> ponder::Result<Option<String>> {
    let mut strategy = args.strategy.resolve()?;
    if args.reward == Some(RewardArg::R3) {
        let StrategyConfig::BestOfN(c) = &mut strategy else {
            return Err(ConfigError::new(
                "reward",
                format!(
                    "--reward r3 scores sampled candidates while they are in the cache, which best-of-n does; {} does not support it (use --strategy best-of-n)",
                    strategy.name()
                ),
            )
            .into());
        };
        if args.strategy.config.is_none() && c.prompt == PromptConfig::default() {
            c.prompt.template = R3_TEMPLATE.into();
        }
        // R3's tasks are open-ended: the default vote cannot compare their answers.
        if args.strategy.config.is_none() && args.strategy.rerank.is_none() {
            c.rerank = Rerank::Logprob;
        }
        c.r3 = Some(ponder::reward::r3::R3Config {
            marker: args.r3_marker.clone(),
            min_spread: args.r3_min_spread,
        });
        strategy.validate()?;
    } else if args.r3_min_spread != 0.0 {
        return Err(ConfigError::new("r3_min_spread", "applies with --reward r3 only").into());
    }
    if args.strategy.printed(&strategy) {
        return Ok(None);
    }
    let mut formats: Vec<Format> = Vec::new();
    for f in args.formats.iter().map(|&f| Format::from(f)) {
        if !formats.contains(&f) {
            formats.push(f);
        }
    }
    let config = SynthConfig {
        strategy,
        formats,
        export: ExportOptions {
            oracle: args.oracle,
            margin: args.margin,
            labels: args.labels.into(),
            threshold: args.threshold,
            ..ExportOptions::default()
        },
        oracle_guided: args.oracle_guided,
    };
    config.export.validate()?;
    let (mut problems, line_errors) = dataset::read_problems(&args.input, "input", args.limit)?;
    dataset::apply_answer_kind(&mut problems, args.answer_kind, &config.strategy)?;
    if args.workers == 0 {
        return Err(ConfigError::new("workers", "--workers must be at least 1").into());
    }
    let model_args = args.model.for_workload(&config.strategy);
    model_args.check()?;
    progress::opening("synth", &model_args.config(), Some(&config.strategy));
    let (engine, model) = model_args.engine_and_id()?;
    let progress = progress::Batch::new(
        problems.len(),
        "{bar:30} {pos}/{len} · ETA {eta} · {msg}",
        args.json,
    );
    let summary = synth::run(
        std::slice::from_ref(&engine),
        args.workers,
        &model,
        &problems,
        line_errors,
        &args.output,
        &config,
        |p| {
            if p.done == p.resumed + 1 && p.resumed > 0 {
                progress.note(&format!(
                    "resuming: {} problems already finished",
                    p.resumed
                ));
            }
            if let Some(e) = &p.last.1 {
                progress.fail(p.done, &format!("{}: failed: {e}", p.last.0));
                return;
            }
            let acc = if p.labelled == 0 {
                "n/a".to_string()
            } else {
                format!("{:.3}", p.correct as f64 / p.labelled as f64)
            };
            progress.update(
                p.done,
                format!(
                    "{} · {:.1} tokens/s · accuracy {acc} ({}/{})",
                    p.last.0,
                    p.tokens as f64 / p.elapsed.max(1e-9),
                    p.correct,
                    p.labelled
                ),
            );
        },
    )?;
    drop(progress);
    render::synth_summary(&summary, &args.output, args.json);
    Ok(summary.stopped)
}
