//! `ponder bench` on the real default model over three problems of the development set: the
//! report files exist and agree with each other and with results.jsonl, the plots are real SVG
//! and PNG, a second run resumes without solving anything, `--report-only` rewrites the report
//! without the model, a rung added later is the only one
//! solved, and bad ladders fail with a message that says what to do.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn dev_set(dir: &Path, n: usize) -> PathBuf {
    let lines: Vec<String> =
        std::fs::read_to_string(common::root().join("data/dev-wordproblems.jsonl"))
            .expect("data/dev-wordproblems.jsonl")
            .lines()
            .take(n)
            .map(str::to_string)
            .collect();
    let path = dir.join("dev.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

const BEAM: &str =
    r#"beam={"type": "beam", "width": 2, "budget": {"tokens": 96}, "step": {"max_tokens": 32}}"#;

fn bench(dataset: &Path, output: &Path, rungs: &[&str]) -> Command {
    let mut cmd = common::ponder_command();
    cmd.args(["bench", "--dataset"])
        .arg(dataset)
        .arg("--output")
        .arg(output)
        .args(["--max-tokens", "48", "--threads", "1", "--json"])
        .env("PONDER_MODEL", common::model_path());
    for r in rungs {
        cmd.args(["--rung", r]);
    }
    cmd
}

fn results(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bench_writes_a_consistent_report_and_resumes() {
    let dir = common::scratch("bench-report");
    let dataset = dev_set(&dir, 3);
    let out = dir.join("out");
    let rungs = ["greedy", "vote@2", "judge@2", BEAM];
    let names = ["greedy", "vote@2", "judge@2", "beam"];

    let first = common::json_output(&bench(&dataset, &out, &rungs).output().unwrap());
    assert_eq!(first["problems"], 3);
    assert_eq!(first["solved_now"], 12);
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk, first, "report.json is what --json printed");
    let rows = results(&out);
    assert_eq!(rows.len(), 12, "one results line per rung and problem");
    let report_rungs = first["rungs"].as_array().unwrap();
    let got: Vec<&str> = report_rungs
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, names, "rungs in the order given");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for r in report_rungs {
        let name = r["name"].as_str().unwrap();
        assert_eq!(r["problems"], 3, "{name}");
        assert_eq!(r["complete"], true, "{name}");
        assert_eq!(r["errors"], 0, "{name}");
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|row| row["rung"] == name).collect();
        assert_eq!(mine.len(), 3, "{name}");
        let correct = mine
            .iter()
            .filter(|row| row["result"]["correct"] == true)
            .count();
        assert_eq!(r["correct"], correct, "{name}");
        assert!((r["accuracy"].as_f64().unwrap() - correct as f64 / 3.0).abs() < 1e-9);
        let tokens: u64 = mine
            .iter()
            .map(|row| row["result"]["generated_tokens"].as_u64().unwrap())
            .sum();
        assert!(tokens > 0, "{name} generated nothing");
        assert_eq!(r["generated_tokens"], tokens, "{name}");
        assert!((r["tokens_per_problem"].as_f64().unwrap() - tokens as f64 / 3.0).abs() < 1e-9);
        assert!(r["seconds_per_problem"].as_f64().unwrap() > 0.0);
        assert!(
            md.contains(&format!("| {name} | ")),
            "report.md lacks {name}:\n{md}"
        );
    }
    // Candidate counts: greedy 1, best-of-2 2 per problem; the judge rung has judge scores.
    assert_eq!(report_rungs[0]["candidates_per_problem"], 1.0);
    assert_eq!(report_rungs[1]["candidates_per_problem"], 2.0);
    assert_eq!(report_rungs[2]["auc"]["judged_candidates"], 6);
    assert_eq!(report_rungs[1]["auc"]["judged_candidates"], 0);
    assert_eq!(report_rungs[1]["strategy"]["rerank"], "vote");
    assert_eq!(report_rungs[3]["strategy"]["type"], "beam");
    // Every reranker scored on a best-of-N rung's own samples: the rung's own reranker picks
    // what the rung picked; the judge rerankers only where candidates were judged; none for
    // beam. Sampled candidates keep their token confidences.
    let rerank = |rung: usize, name: &str| {
        report_rungs[rung]["reranker_accuracy"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["rerank"] == name).cloned())
    };
    for (rung, own) in [(1, "vote"), (2, "judge")] {
        let r = rerank(rung, own).unwrap_or_else(|| panic!("{}", report_rungs[rung]));
        assert_eq!(r["problems"], 3, "{r}");
        assert_eq!(r["correct"], report_rungs[rung]["correct"], "{r}");
        assert!(rerank(rung, "confidence_vote:lowest_group").is_some());
    }
    assert!(rerank(1, "judge").is_none(), "vote@2 was not judged");
    assert!(report_rungs[3].get("reranker_accuracy").is_none());
    assert!(rows
        .iter()
        .filter(|row| row["rung"] == "vote@2")
        .flat_map(|row| row["candidates"].as_array().unwrap())
        .all(|c| c["confidence"]["lowest_group"].is_number()));

    let svg = std::fs::read_to_string(out.join("accuracy-vs-tokens.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for name in names {
        assert!(svg.contains(name), "the SVG labels {name}");
    }
    let png = std::fs::read(out.join("accuracy-vs-tokens.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (960, 600));
    assert!(png.len() > 10_000, "a drawn plot, not an empty image");

    // The same command again: everything is resumed, the report is the same.
    let second = common::json_output(&bench(&dataset, &out, &rungs).output().unwrap());
    assert_eq!(second["solved_now"], 0, "a second run solves nothing");
    assert_eq!(second["rungs"], first["rungs"]);
    assert_eq!(results(&out).len(), 12);

    // --report-only rewrites the same report from results.jsonl without the model.
    let mut again = bench(&dataset, &out, &rungs);
    // A path with the model's file name where no file is: nothing is loaded.
    let absent = dir
        .join("absent")
        .join(common::model_path().file_name().unwrap());
    again.arg("--report-only").env("PONDER_MODEL", absent);
    let redone = common::json_output(&again.output().unwrap());
    assert_eq!(redone["rungs"], first["rungs"]);
    assert_eq!(
        redone["command"], first["command"],
        "the solving run's command"
    );

    // A rung added to the ladder: only its problems are solved.
    let mut more = rungs.to_vec();
    more.push("vote@3");
    let third = common::json_output(&bench(&dataset, &out, &more).output().unwrap());
    assert_eq!(third["solved_now"], 3);
    assert_eq!(third["rungs"].as_array().unwrap().len(), 5);
    assert_eq!(third["rungs"][4]["candidates_per_problem"], 3.0);
    assert_eq!(results(&out).len(), 15);

    // A rung of the same name with another configuration is refused, not mixed in.
    let clash = bench(&dataset, &out, &[r#"greedy={"type": "best_of_n", "n": 2}"#])
        .output()
        .unwrap();
    assert!(!clash.status.success());
    let err = String::from_utf8_lossy(&clash.stderr);
    assert!(err.contains("another configuration"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_ladders_fail_with_a_fix() {
    let dir = common::scratch("bench-bad");
    let dataset = dev_set(&dir, 1);
    let out = dir.join("out");
    for (rungs, expect) in [
        (vec!["vote"], "vote@8"),
        (vec!["bogus@3"], "unknown strategy"),
        (vec![r#"x={"n": 2}"#], "\"type\""),
        (
            vec![r#"x={"type": "best_of_n", "n": 0}"#],
            "outside 1..=256",
        ),
        (vec!["greedy", "greedy"], "given twice"),
    ] {
        let o = bench(&dataset, &out, &rungs).output().unwrap();
        assert!(!o.status.success(), "{rungs:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{rungs:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = bench(&dir.join("missing.jsonl"), &out, &["greedy"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
    std::fs::remove_dir_all(&dir).ok();
}
