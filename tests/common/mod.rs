//! Shared set-up for the real-model tests: one loaded default model per test binary, since
//! llama.cpp's backend initialises once per process and loading twice wastes time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use ponder::lm::{ContextOptions, LlamaLm, Model, ModelOptions};

/// The workspace root (where `models/`, `data/` and `target/` are), from whichever of its crates
/// the test belongs to.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .expect("the workspace root holds Cargo.lock")
        .to_path_buf()
}

/// The `ponder` binary, run from the workspace root as the README's commands are (only the CLI
/// crate's tests have it).
pub fn ponder_command() -> std::process::Command {
    let Some(exe) = option_env!("CARGO_BIN_EXE_ponder") else {
        panic!("only the tests of crates/ponder-cli run the ponder binary");
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.current_dir(root());
    cmd
}

/// `ponder synth --input INPUT --output OUTPUT ARGS…` on the default model (`PONDER_MODEL`
/// points at it, so a run needs no `--model`).
pub fn synth_command(input: &Path, output: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = ponder_command();
    cmd.args(["synth", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(args)
        .env("PONDER_MODEL", model_path());
    cmd
}

/// The default model, as `make model` fetches it. A missing file fails the test with the fix.
pub fn model_path() -> PathBuf {
    std::env::var_os("PONDER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(ponder::lm::DEFAULT_MODEL_PATH))
}

pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load(&ModelOptions {
            path: model_path(),
            n_gpu_layers: ModelOptions::default().n_gpu_layers,
        })
        .unwrap_or_else(|e| panic!("the real-model tests need the default model: {e}"))
    })
}

/// The reasoner (Qwen2.5-Coder-0.5B-Instruct Q4_K_M), as `bash scripts/setup.sh --reasoner` (or
/// `--test-models`) fetches it; `PONDER_REASONER` overrides. A missing file fails the test with
/// the fix.
pub fn reasoner_path() -> PathBuf {
    std::env::var_os("PONDER_REASONER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
}

/// The reasoner, loaded once per test binary.
pub fn reasoner() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load(&ModelOptions {
            path: reasoner_path(),
            n_gpu_layers: ModelOptions::default().n_gpu_layers,
        })
        .unwrap_or_else(|e| {
            panic!(
                "this test needs the reasoner model — run `bash scripts/setup.sh --reasoner`: {e}"
            )
        })
    })
}

/// A context on the reasoner (one thread: the tests share two cores with other work).
pub fn reasoner_session(n_ctx: u32, n_seq_max: u32) -> LlamaLm {
    reasoner()
        .session(&ContextOptions {
            n_ctx,
            n_seq_max,
            n_threads: 1,
            ..ContextOptions::default()
        })
        .expect("context")
}

pub fn session(n_ctx: u32, n_seq_max: u32) -> LlamaLm {
    session_with(n_ctx, n_seq_max, ContextOptions::default().flash_attention)
}

pub fn session_with(n_ctx: u32, n_seq_max: u32, flash_attention: bool) -> LlamaLm {
    model()
        .session(&ContextOptions {
            n_ctx,
            n_seq_max,
            flash_attention,
            ..ContextOptions::default()
        })
        .expect("context")
}

pub mod server;

/// One real-model test at a time within a test binary: each keeps both cores busy, and
/// llama.cpp's worker threads slow down many-fold when several contexts compete for them. A test
/// that panicked while holding it does not poison the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh, empty directory for one test: `ponder-{name}-{pid}` in the temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ponder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first `n` lines of the project's dataset, data/arith40.jsonl.
pub fn dataset_lines(n: usize) -> Vec<String> {
    std::fs::read_to_string(root().join("data/arith40.jsonl"))
        .expect("data/arith40.jsonl")
        .lines()
        .take(n)
        .map(str::to_string)
        .collect()
}

/// `dir/input.jsonl` holding the first `n` problems of the project's dataset.
pub fn write_dataset(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("input.jsonl");
    std::fs::write(&path, dataset_lines(n).join("\n") + "\n").unwrap();
    path
}

/// The lines of a JSONL file a run wrote (none when it does not exist); fails the test on a torn
/// last line (one without its newline).
pub fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: torn last line",
        path.display()
    );
    text.lines().map(str::to_string).collect()
}

/// The JSON a command printed on stdout; fails the test, showing stderr, if the command failed.
pub fn json_output(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
