//! The consumer decides whether an export format is right: TRL's own trainers (SFTTrainer on
//! sft.jsonl and correction.jsonl, DPOTrainer on preference.jsonl, PRMTrainer on prm.jsonl) read
//! what `ponder synth` wrote on the real default model and take one optimizer step each, with every
//! record kept and a finite loss (tests/trl_check.py says what else it checks).
//!
//! scripts/setup-trl.sh installs TRL into target/trlenv; `make test` runs it first, and this test
//! runs it too, idempotently. A missing environment fails the test with the fix.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

/// The records in a JSONL file.
fn count(path: &Path) -> usize {
    common::lines(path).len()
}

#[test]
fn trl_trains_one_step_on_every_export_format() {
    let dir = common::scratch("trl");
    // Four problems, six samples each, labelled by the reference: some right and some wrong
    // answers, so that every format has records.
    let input = dir.join("input.jsonl");
    std::fs::write(&input, common::dataset_lines(4).join("\n") + "\n").unwrap();
    let out = dir.join("out");
    let run = common::synth_command(
        &input,
        &out,
        &[
            "--strategy",
            "best-of-n",
            "--n",
            "6",
            "--max-tokens",
            "48",
            "--oracle",
            "--json",
        ],
    )
    .output()
    .unwrap();
    let summary = common::json_output(&run);
    let formats = ["sft", "correction", "preference", "prm"];
    for name in formats {
        let n = count(&out.join(format!("{name}.jsonl")));
        assert!(n > 0, "{name}.jsonl is empty: {summary}");
        assert_eq!(summary["records"][name], n, "{summary}");
    }

    let setup = Command::new("bash")
        .arg(common::root().join("scripts/setup-trl.sh"))
        .output()
        .expect("bash runs");
    assert!(
        setup.status.success(),
        "scripts/setup-trl.sh failed (it installs TRL into target/trlenv; `make trlenv`):\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = common::root().join(String::from_utf8_lossy(&setup.stdout).trim());
    let check = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/trl_check.py"))
        .arg(&out)
        .arg(common::model_path())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "TRL refused an export:\n{stdout}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON report");
    for name in formats {
        let r = &report[name];
        assert_eq!(
            r["records"],
            count(&out.join(format!("{name}.jsonl"))),
            "{name}: every record reached the trainer: {report}"
        );
        assert!(r["steps"].as_u64().unwrap() >= 1, "{report}");
        assert!(r["loss"].as_f64().unwrap().is_finite(), "{report}");
    }
    eprintln!("TRL: {report}");
    std::fs::remove_dir_all(&dir).ok();
}
