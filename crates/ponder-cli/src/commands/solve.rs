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
    if let Some(path) = &args.tree {
        // Minutes of search must not end in an unwritable file: try both files first.
        let (json, dot) = tree_files(path);
        probe_writable(&json)?;
        probe_writable(&dot)?;
    }
    let model = args.model.for_workload(&strategy);
    model.check()?;
    progress::opening("solve", &model.config(), Some(&strategy));
    let engine = model.engine()?;
    let mut progress = progress::SolveProgress::new();
    let outcome = engine.solve_with(&problem, &strategy, &mut |event| {
        progress.event(event);
        Flow::Continue
    })?;
    drop(progress);
    // The result first: a tree file that fails after all is reported, the outcome is not lost.
    if args.json {
        render::json(&outcome);
    } else {
        render::outcome(&outcome);
    }
    if let (Some(path), Some(tree)) = (&args.tree, &outcome.tree) {
        write_tree(path, tree)?;
    }
    Ok(())
}

/// The JSON and Graphviz files of `--tree FILE`: FILE, and FILE with the extension `.dot`.
fn tree_files(path: &Path) -> (PathBuf, PathBuf) {
    let dot = path.with_extension("dot");
    let json = if path == dot {
        path.with_extension("json")
    } else {
        path.to_path_buf()
    };
    (json, dot)
}

fn cannot_write(p: &Path, e: &std::io::Error) -> ponder::Error {
    ConfigError::new("tree", format!("cannot write {}: {e}", p.display())).into()
}

/// Whether `p` can be written, leaving it as it was: an existing file is opened for writing
/// (not truncated), a new one created and removed again.
fn probe_writable(p: &Path) -> ponder::Result<()> {
    let existed = p.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .map_err(|e| cannot_write(p, &e))?;
    if !existed {
        std::fs::remove_file(p).ok();
    }
    Ok(())
}

/// Writes `tree` as JSON to `path` and as Graphviz next to it (extension `.dot`).
fn write_tree(path: &Path, tree: &SearchTree) -> ponder::Result<()> {
    let (json, dot) = tree_files(path);
    let write = |p: &Path, text: String| std::fs::write(p, text).map_err(|e| cannot_write(p, &e));
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
