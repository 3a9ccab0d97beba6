//! `ponder synth` killed at random moments, with one worker and with four, then resumed: it ends
//! with exactly the records of an uninterrupted run, nothing lost or written twice.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serial;

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("rel-{name}"))
}

fn synth(input: &Path, output: &Path) -> Command {
    common::synth_command(
        input,
        output,
        &[
            "--strategy",
            "best-of-n",
            "--n",
            "2",
            "--max-tokens",
            "32",
            "--rerank",
            "vote",
            "--formats",
            "sft,preference,prm",
            "--oracle",
            "--json",
        ],
    )
}

#[test]
fn synth_killed_at_random_moments_ends_with_the_uninterrupted_records() {
    let _serial = serial();
    let dir = scratch("durability");
    let input = common::write_dataset(&dir, 16);
    let whole = dir.join("whole");
    let run = synth(&input, &whole).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Kill -9 after pseudo-random delays (fixed seed: the same moments every run) until at least
    // five kills have landed, then let the last run finish.
    let killed = dir.join("killed");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut kills = 0;
    let mut runs = 0;
    let summary = loop {
        runs += 1;
        assert!(runs < 40, "too many restarts");
        let mut child = synth(&input, &killed)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if kills < 5 {
            let delay = Duration::from_millis(300 + next() % 1500);
            let start = Instant::now();
            while start.elapsed() < delay && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        if kills >= 5 {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
    };
    eprintln!("{kills} kills over {runs} runs");
    for name in ["sft", "preference", "prm", "done"] {
        let file = format!("{name}.jsonl");
        assert_eq!(
            common::lines(&killed.join(&file)),
            common::lines(&whole.join(&file)),
            "{file}: the same records, none missing, none duplicated, no torn line"
        );
    }
    // summary.json agrees with the records on disk.
    assert_eq!(summary["problems"], 16);
    for name in ["sft", "preference", "prm"] {
        assert_eq!(
            summary["records"][name].as_u64().unwrap() as usize,
            common::lines(&killed.join(format!("{name}.jsonl"))).len(),
            "{name}"
        );
    }
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(killed.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["records"], summary["records"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn synth_with_four_workers_killed_and_resumed_loses_and_duplicates_nothing() {
    let _serial = serial();
    let dir = scratch("workers-kill");
    let input = common::write_dataset(&dir, 10);
    let out = dir.join("out");
    // Four problems in flight share one context, so the texts depend on the interleaving: what
    // must hold is that every problem ends up exactly once, with all its records, in input order.
    let mut kills = 0;
    let mut runs = 0;
    let summary = loop {
        runs += 1;
        assert!(runs < 30, "too many restarts");
        let mut child = synth(&input, &out)
            .args(["--workers", "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if kills < 2 {
            let delay = Duration::from_millis(1500 + 700 * kills);
            let start = Instant::now();
            while start.elapsed() < delay && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success());
        break serde_json::from_slice::<serde_json::Value>(&done.stdout).unwrap();
    };
    eprintln!("{kills} kills over {runs} runs");
    let ids_of = |name: &str| -> Vec<String> {
        common::lines(&out.join(format!("{name}.jsonl")))
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("every line is JSON");
                v["id"].as_str().expect("an id").to_string()
            })
            .collect()
    };
    let expected: Vec<String> = common::dataset_lines(10)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut journal = ids_of("done");
    journal.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(journal, want, "every problem finished exactly once");
    // Every record belongs to a finished problem, and no problem's records appear twice.
    for name in ["sft", "preference", "prm"] {
        let ids = ids_of(name);
        for id in &ids {
            assert!(
                expected.contains(id),
                "{name}: record of unknown problem {id}"
            );
        }
        // Records of one problem are contiguous (written together, once).
        let mut seen = Vec::<String>::new();
        for id in &ids {
            if seen.last() != Some(id) {
                assert!(!seen.contains(id), "{name}: {id}'s records written twice");
                seen.push(id.clone());
            }
        }
        assert_eq!(
            summary["records"][name].as_u64().unwrap() as usize,
            ids.len(),
            "{name}: the summary agrees with the file"
        );
    }
    assert_eq!(summary["problems"], 10);
    std::fs::remove_dir_all(&dir).ok();
}
