//! `ponder synth` on the real default model: every format parses back into its documented
//! shape, provenance names the model file's sha256, and a run killed with SIGKILL and started
//! again ends with exactly the records of an uninterrupted run.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ponder::trace::export::correction::CorrectionRecord;
use ponder::trace::export::preference::PreferenceRecord;
use ponder::trace::export::prm::{Labels, PrmRecord};
use ponder::trace::export::sft::SftRecord;
use ponder::trace::Trace;

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("synth-{name}"))
}

/// Five problems of the project's dataset and one bad line (line 3).
fn input(dir: &Path) -> PathBuf {
    let mut lines = common::dataset_lines(5);
    lines.insert(2, "{not json".into());
    let path = dir.join("input.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn synth(input: &Path, output: &Path) -> Command {
    common::synth_command(
        input,
        output,
        &[
            "--strategy",
            "mcts",
            "--budget",
            "120",
            "--max-tokens",
            "40",
            "--oracle",
            "--json",
        ],
    )
}

#[test]
fn synth_writes_every_format_in_its_documented_shape() {
    let dir = scratch("formats");
    let input = input(&dir);
    let out = dir.join("out");
    let run = synth(&input, &out).output().unwrap();
    let summary = common::json_output(&run);
    assert_eq!(summary["problems"], 5);
    assert_eq!(summary["line_errors"][0]["line"], 3, "{summary}");

    let mut total = 0;
    for r in common::lines(&out.join("sft.jsonl")) {
        let rec: SftRecord = serde_json::from_str(&r).unwrap();
        assert!(rec.head.oracle && rec.head.source_strategy == "mcts");
        assert_eq!(rec.messages.last().unwrap().role, "assistant");
        total += 1;
    }
    for r in common::lines(&out.join("preference.jsonl")) {
        let rec: PreferenceRecord = serde_json::from_str(&r).unwrap();
        assert_eq!((rec.chosen.len(), rec.rejected.len()), (1, 1));
        assert_ne!(rec.chosen[0].content, rec.rejected[0].content);
        assert_eq!(rec.prompt[0].role, "user");
        total += 1;
    }
    for r in common::lines(&out.join("prm.jsonl")) {
        let rec: PrmRecord = serde_json::from_str(&r).unwrap();
        let Labels::Bool(labels) = &rec.labels else {
            panic!("boolean labels by default (TRL's type): {r}")
        };
        assert_eq!(labels.len(), rec.completions.len());
        assert_eq!(rec.values.len(), rec.completions.len());
        assert!(rec.values.iter().all(|v| (0.0..=1.0).contains(v)));
        for (&label, &value) in labels.iter().zip(&rec.values) {
            assert_eq!(label, value >= 0.5, "--threshold 0.5 by default: {r}");
        }
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        for key in [
            "id",
            "source_strategy",
            "oracle",
            "prompt",
            "completions",
            "labels",
            "values",
        ] {
            assert!(!v[key].is_null(), "{key} in {r}");
        }
        total += 1;
    }
    for r in common::lines(&out.join("correction.jsonl")) {
        let rec: CorrectionRecord = serde_json::from_str(&r).unwrap();
        assert!(rec.messages[1].content.contains(&rec.reflection));
        total += 1;
    }
    assert!(total > 0, "five tree searches give some records");
    let counted: u64 = summary["records"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        counted, total as u64,
        "summary.json counts the records on disk"
    );

    // Provenance: the model file's sha256, computed independently.
    let sha = Command::new("sha256sum")
        .arg(common::model_path())
        .output()
        .unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let traces = common::lines(&out.join("traces.jsonl"));
    assert_eq!(traces.len(), 5);
    for line in traces {
        let t = Trace::from_json(&line).unwrap();
        assert_eq!(t.provenance.model_sha256, sha);
        // A hand-edited trace whose structure the exports cannot walk is refused on import.
        let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let last = t.nodes.len() - 1;
        v["nodes"][last]["parent"] = serde_json::json!(last + 5);
        let err = Trace::from_json(&v.to_string()).unwrap_err();
        assert_eq!(err.field, "trace", "{err}");
        assert_eq!(t.provenance.ponder_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(t.strategy, "mcts");
    }

    // A second run skips everything and changes nothing.
    let before = std::fs::read_to_string(out.join("prm.jsonl")).unwrap();
    let again = synth(&input, &out).output().unwrap();
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("prm.jsonl")).unwrap(),
        before
    );
    // Other settings into the same directory are refused.
    let other = synth(&input, &out)
        .args(["--formats", "sft"])
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("other settings"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Traces without their wall times (the only field that differs between runs).
fn traces_without_time(path: &Path) -> Vec<serde_json::Value> {
    common::lines(path)
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["usage"]["wall_ms"] = serde_json::Value::Null;
            v
        })
        .collect()
}

#[test]
fn a_run_killed_mid_way_resumes_to_the_uninterrupted_records() {
    let dir = scratch("kill");
    let input = input(&dir);
    let whole = dir.join("whole");
    let run = synth(&input, &whole).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let killed = dir.join("killed");
    let mut child = synth(&input, &killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let done = std::fs::read_to_string(killed.join("done.jsonl")).unwrap_or_default();
        if done.lines().count() >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "synth made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let finished = common::lines(&killed.join("done.jsonl")).len();
    assert!(finished < 5, "killed before the end ({finished} finished)");

    let resumed = synth(&input, &killed).output().unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    for name in ["sft", "preference", "prm", "correction", "done"] {
        let file = format!("{name}.jsonl");
        assert_eq!(
            common::lines(&killed.join(&file)),
            common::lines(&whole.join(&file)),
            "{file}: the same records, none missing, none duplicated"
        );
    }
    assert_eq!(
        traces_without_time(&killed.join("traces.jsonl")),
        traces_without_time(&whole.join("traces.jsonl"))
    );
    std::fs::remove_dir_all(&dir).ok();
}
