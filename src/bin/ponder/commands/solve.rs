//! `ponder solve`: one question, one strategy, every candidate shown.

use std::path::{Path, PathBuf};

use ponder::strategy::{AnswerKind, Flow, Problem, SearchTree};
use ponder::ConfigError;

use crate::flags::{ModelArgs, StrategyArgs};
use crate::{progress, render};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    strategy: StrategyArgs,
    /// A reference answer: labels candidates as correct or not (it does not steer the search).
    #[arg(long)]
    answer: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Tree searches (mcts, beam): also write the search tree to FILE as JSON and, next to it
    /// with the extension .dot, as Graphviz (render: dot -Tsvg FILE.dot -o tree.svg).
    #[arg(long, value_name = "FILE")]
    tree: Option<PathBuf>,
    /// The question.
    question: String,
}

/// Solves the question and prints the outcome.
pub fn exec(args: &Args) -> ponder::Result<()> {
    let strategy = args.strategy.resolve()?;
    if args.strategy.printed(&strategy) {
        return Ok(());
    }
    let problem = Problem {
        id: None,
        question: args.question.clone(),
        answer: args.answer.clone(),
        oracle_guided: false,
        answer_kind: AnswerKind::Numeric,
    };
    problem.validate()?;
    if args.tree.is_some() && !matches!(strategy.name(), "mcts" | "beam") {
        return Err(ConfigError::new(
            "tree",
            "--tree applies to the tree searches (mcts, beam) only",
        )
        .into());
    }
    args.model.check()?;
    progress::opening("solve", &args.model, Some(&strategy));
    let engine = args.model.engine()?;
    let mut progress = progress::SolveProgress::new();
    let outcome = engine.solve_with(&problem, &strategy, &mut |event| {
        progress.event(event);
        Flow::Continue
    })?;
    drop(progress);
    if let (Some(path), Some(tree)) = (&args.tree, &outcome.tree) {
        write_tree(path, tree)?;
    }
    if args.json {
        render::json(&outcome);
    } else {
        render::outcome(&outcome);
    }
    Ok(())
}

/// Writes `tree` as JSON to `path` and as Graphviz next to it (extension `.dot`).
fn write_tree(path: &Path, tree: &SearchTree) -> ponder::Result<()> {
    let dot = path.with_extension("dot");
    let json = if path == dot {
        path.with_extension("json")
    } else {
        path.to_path_buf()
    };
    let write = |p: &Path, text: String| {
        std::fs::write(p, text).map_err(|e| {
            ponder::Error::from(ConfigError::new(
                "tree",
                format!("cannot write {}: {e}", p.display()),
            ))
        })
    };
    write(
        &json,
        serde_json::to_string_pretty(tree).expect("plain data serialises"),
    )?;
    write(&dot, tree.to_dot())?;
    eprintln!(
        "search tree: {} ({} nodes), {}",
        json.display(),
        tree.nodes.len(),
        dot.display()
    );
    Ok(())
}
