//! The CLI over the remote backend, against real llama.cpp `llama-server`s on 127.0.0.1 serving
//! the default model: `ponder solve --backend remote` and its flag checks, a synth run whose
//! server dies mid-run resuming without loss once it is back, synth workers spread over two
//! servers. (The backend itself: `tests/remote.rs`.)

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::server::Server;

const QUESTION: &str =
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?";

/// One server shared by the tests of this binary (4 slots).
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(4))
}

#[test]
fn the_cli_solves_with_the_remote_backend_and_rejects_mixed_flags() {
    let out = common::ponder_command()
        .args(["solve", "--backend", "remote", "--url"])
        .arg(shared().url())
        .args([
            "--strategy",
            "mcts",
            "--budget",
            "160",
            "--max-tokens",
            "40",
            "--json",
        ])
        .arg(QUESTION)
        .output()
        .unwrap();
    let v = common::json_output(&out);
    assert_eq!(v["strategy"], "mcts");
    assert!(v["tree"]["nodes"].as_array().unwrap().len() > 1);

    let out = common::ponder_command()
        .args(["solve", "--backend", "remote", "What is 2 + 2?"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--url"), "{err}");

    let out = common::ponder_command()
        .args(["solve", "--url", "http://127.0.0.1:1", "What is 2 + 2?"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--backend remote"), "{err}");
}

fn ids(path: &Path) -> Vec<String> {
    common::lines(path)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn synth(input: &Path, output: &Path, url: &str) -> Command {
    synth_over(input, output, &[url])
}

fn synth_over(input: &Path, output: &Path, urls: &[&str]) -> Command {
    let mut cmd = common::synth_command(input, output, &["--backend", "remote"]);
    for url in urls {
        cmd.args(["--url", url]);
    }
    cmd.args([
        "--strategy",
        "best-of-n",
        "--n",
        "2",
        "--max-tokens",
        "48",
        "--attempts",
        "2",
        "--formats",
        "sft,preference,prm",
        "--oracle",
        "--json",
    ]);
    cmd
}

#[test]
fn synth_stops_when_its_server_dies_and_resumes_without_loss() {
    let (dir, input) = dataset_dir("synth", 8);
    let out = dir.join("out");

    let mut server = Server::start(2);
    let port = server.port;
    let url = server.url();
    let mut child = synth(&input, &out, &url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once two problems are finished.
    let start = Instant::now();
    while common::lines(&out.join("done.jsonl")).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "synth made no progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "synth ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "synth must fail: {stderr}");
    assert!(
        stderr.contains("stopped early") && stderr.contains("run the same command again"),
        "{stderr}"
    );
    let finished = ids(&out.join("done.jsonl"));
    assert!(finished.len() >= 2 && finished.len() < 8, "{finished:?}");
    let kept: Vec<String> = ["traces", "sft", "preference", "prm"]
        .iter()
        .map(|f| std::fs::read_to_string(out.join(format!("{f}.jsonl"))).unwrap_or_default())
        .collect();

    // The server comes back on the same port; the same command finishes the rest.
    let _server = Server::start_on(port, 2);
    let result = synth(&input, &out, &url).output().unwrap();
    let summary = common::json_output(&result);
    assert_eq!(summary["problems"], 8, "{summary}");
    let done = ids(&out.join("done.jsonl"));
    assert_eq!(done.len(), 8, "{done:?}");
    assert_eq!(
        done.iter().collect::<HashSet<_>>().len(),
        8,
        "no duplicates"
    );
    assert_eq!(&done[..finished.len()], &finished[..]);
    let traces = ids(&out.join("traces.jsonl"));
    assert_eq!(traces, done);
    for (f, before) in ["traces", "sft", "preference", "prm"].iter().zip(kept) {
        let now = std::fs::read_to_string(out.join(format!("{f}.jsonl"))).unwrap();
        assert!(
            now.starts_with(&before),
            "{f}: records written before the failure changed"
        );
        for l in common::lines(&out.join(format!("{f}.jsonl"))) {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            assert!(v["id"].is_string(), "{f}: {l}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory holding the first `n` problems of data/arith40.jsonl.
fn dataset_dir(name: &str, n: usize) -> (PathBuf, PathBuf) {
    let dir = common::scratch(&format!("remote-{name}"));
    let input = common::write_dataset(&dir, n);
    (dir, input)
}

/// Completions a llama-server has answered, from its log.
fn completions_served(server: &Server) -> usize {
    std::fs::read_to_string(&server.log)
        .unwrap_or_default()
        .matches("prompt eval time")
        .count()
}

#[test]
fn synth_workers_keep_two_servers_busy_and_write_in_input_order() {
    let (dir, input) = dataset_dir("workers", 6);
    let out = dir.join("out");
    let a = Server::start(2);
    let b = Server::start(2);
    let before = (completions_served(&a), completions_served(&b));
    let (url_a, url_b) = (a.url(), b.url());
    let result = synth_over(&input, &out, &[&url_a, &url_b])
        .args(["--workers", "3"])
        .output()
        .unwrap();
    let summary = common::json_output(&result);
    assert_eq!(summary["problems"], 6, "{summary}");
    let expected: Vec<String> = common::lines(&input)
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().map_or(i.to_string(), str::to_string)
        })
        .collect();
    assert_eq!(ids(&out.join("done.jsonl")), expected, "input order");
    assert_eq!(ids(&out.join("traces.jsonl")), expected, "input order");
    let served = (
        completions_served(&a) - before.0,
        completions_served(&b) - before.1,
    );
    eprintln!("completions served: {served:?}");
    assert!(
        served.0 > 0 && served.1 > 0,
        "both servers worked: {served:?}"
    );
    let err = synth_over(&input, &dir.join("zero"), &[&url_a])
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("--workers must be at least 1"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cli_refuses_a_missing_tokenizer_file_before_any_work() {
    let url = shared().url();
    let missing = std::env::temp_dir().join("ponder-no-such-tokenizer.json");
    let out = common::ponder_command()
        .args(["solve", "--backend", "remote", "--url", &url, "--tokenizer"])
        .arg(&missing)
        .arg("What is 2 + 2?")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not found") && stderr.contains("export-tokenizer.py"),
        "{stderr}"
    );
}
