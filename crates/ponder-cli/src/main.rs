//! The `ponder` command-line tool: a thin shell over the library.
//!
//! `main` parses the command line, hands the command to its module under [`commands`] and is the
//! one place the process ends. The flag groups several commands share (the model and its
//! backend, the strategy and its overrides) live in [`flags`]; what is printed for a person (text)
//! or a program (JSON) lives in [`render`].

mod commands;
mod dataset;
mod flags;
mod progress;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ponder",
    version,
    about = "Inference-time self-refinement over GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample N continuations of one prompt, all decoded together from one prefill.
    Generate(commands::generate::Args),
    /// Solve one question with a search strategy and show every candidate with its scores.
    Solve(commands::solve::Args),
    /// Run a strategy over a JSONL dataset and report accuracy, pass@N and judge AUC.
    Eval(commands::eval::Args),
    /// Run a strategy over a JSONL dataset and write training records (resumable).
    Synth(commands::synth::Args),
    /// Run a ladder of strategies over a JSONL dataset: report (JSON, Markdown) and the plot of
    /// accuracy against generated tokens per problem (SVG, PNG); resumable.
    Bench(commands::bench::Args),
    /// List the devices llama.cpp can run layers on (the CPU, and GPUs in a GPU build).
    Devices(commands::devices::Args),
    /// Serve an OpenAI-compatible API whose model names pick search strategies (bon-…, mcts-…).
    Serve(commands::serve::Args),
}

/// Why a command did not succeed; `main` prints it after `error: ` and ends with status 1.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// What the library refused or failed at.
    #[error(transparent)]
    Ponder(#[from] ponder::Error),
    /// `synth` stopped before the end (its summary is printed; every record is already synced),
    /// so that scripts notice.
    #[error("synth stopped early: {why}\nthe finished problems are kept in {}; run the same command again once the server is back to resume", output.display())]
    SynthStopped { why: String, output: PathBuf },
}

/// The one way out: every command's result, and clap's, becomes the process's status here.
/// A reader that closes stdout early (`ponder solve --print-config | head -1`) ends the process
/// quietly, as it does any other command-line tool, instead of a panic in `println!`: SIGPIPE
/// back to its default action (Rust starts programs with it ignored). Not for `serve`, which
/// writes to sockets and must outlive a client that hangs up.
fn quiet_on_closed_stdout() {
    // SAFETY: signal(2) with a valid signal number and SIG_DFL, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    // The matches too: `serve --config` needs to know which flags were given.
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return command_line_error(&e),
    };
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_on_closed_stdout();
    }
    let result = match &cli.command {
        Command::Generate(args) => commands::generate::exec(args).map_err(Failure::from),
        Command::Solve(args) => commands::solve::exec(args).map_err(Failure::from),
        Command::Eval(args) => commands::eval::exec(args).map_err(Failure::from),
        Command::Synth(args) => commands::synth::exec(args),
        Command::Bench(args) => commands::bench::exec(args).map_err(Failure::from),
        Command::Devices(args) => commands::devices::exec(args).map_err(Failure::from),
        Command::Serve(args) => commands::serve::exec(
            args,
            matches
                .subcommand_matches("serve")
                .expect("the serve command was parsed"),
        )
        .map_err(Failure::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints what clap says (help and version on stdout, errors on stderr) and the status to end
/// with: 0 for help and version, 1 for a value that is none of a choice's names (a bad setting,
/// as every other), clap's usage status (2) for the rest.
fn command_line_error(e: &clap::Error) -> ExitCode {
    // Nothing more can be said when stdout or stderr is gone.
    let _ = e.print();
    let unknown_choice = std::error::Error::source(e)
        .is_some_and(|s| s.downcast_ref::<flags::choice::UnknownChoice>().is_some());
    if unknown_choice {
        ExitCode::FAILURE
    } else {
        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
    }
}
