//! The `ponder` binary on the real default model.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Output;

fn ponder(args: &[&str]) -> Output {
    common::ponder_command()
        .args(args)
        .env("PONDER_MODEL", common::model_path())
        .output()
        .expect("run ponder")
}

#[test]
fn generate_json_shows_the_prompt_prefilled_once() {
    let out = ponder(&[
        "generate",
        "--prompt",
        "Name three colours.",
        "-n",
        "8",
        "--max-tokens",
        "24",
        "--json",
    ]);
    let v = common::json_output(&out);
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 8);
    let mut longest = 0;
    for s in samples {
        assert!(s["text"].is_string());
        let tokens = s["tokens"].as_u64().unwrap();
        assert!((1..=24).contains(&tokens));
        longest = longest.max(tokens);
    }
    let usage = &v["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);
    assert_eq!(usage["prefill_tokens"].as_u64().unwrap(), prompt);
    assert_eq!(usage["forward_passes"].as_u64().unwrap(), 1 + longest);
    let decoded: u64 = samples.iter().map(|s| s["tokens"].as_u64().unwrap()).sum();
    assert_eq!(usage["generated_tokens"].as_u64().unwrap(), decoded);
    assert!(usage["decoded_tokens"].as_u64().unwrap() <= decoded);
    assert!(usage["wall_ms"].is_u64());
}

#[test]
fn generate_text_output_is_readable() {
    let out = ponder(&[
        "generate",
        "--prompt",
        "Say hello.",
        "-n",
        "2",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--- sample 1"), "{text}");
    assert!(text.contains("--- sample 2"), "{text}");
    assert!(text.contains("tokens/s"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error_not_a_crash() {
    let out = common::ponder_command()
        .args([
            "generate",
            "--prompt",
            "hi",
            "--model",
            "/nonexistent/m.gguf",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not found") && err.contains("make model"),
        "{err}"
    );

    for (flag, value, field) in [
        ("--temperature", "-1", "temperature"),
        ("--top-p", "1.5", "top_p"),
        ("--max-tokens", "0", "max_tokens"),
        ("-n", "0", "n"),
    ] {
        let out = ponder(&["generate", "--prompt", "hi", &format!("{flag}={value}")]);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        // The last line is the error (a GPU build on a machine without a GPU warns first).
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: invalid ") && last.contains(field),
            "{flag}: {err}"
        );
    }

    // A relative model path: the message says where it was looked for.
    let out = common::ponder_command()
        .args(["generate", "--prompt", "hi", "--model", "models/nope.gguf"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("models/nope.gguf") && err.contains("current directory"),
        "{err}"
    );

    let out = ponder(&["generate", "--prompt", &"word ".repeat(500), "--ctx", "64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("context holds 64"), "{err}");
}

#[test]
fn solve_best_of_n_prints_candidates_with_judge_scores() {
    let out = ponder(&[
        "solve",
        "--strategy",
        "best-of-n",
        "--n",
        "3",
        "--rerank",
        "judge",
        "--max-tokens",
        "48",
        "--answer",
        "8",
        "--json",
        "Tom has 3 apples and buys 5 more. How many apples does he have now?",
    ]);
    let v = common::json_output(&out);
    let cands = v["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 3);
    for c in cands {
        let j = c["judge"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&j));
        assert!(c["correct"].is_boolean());
    }
    let chosen = v["chosen"].as_u64().unwrap() as usize;
    assert_eq!(v["score"], cands[chosen]["judge"]);
    assert!(v["usage"]["generated_tokens"].as_u64().unwrap() > 0);
    // The prompt as the search sent it: the default template around the question, last as the
    // user's turn.
    let prompt = v["prompt"]
        .as_array()
        .expect("the outcome records its prompt");
    let turn = prompt.last().unwrap();
    assert_eq!(turn["role"], "user", "{prompt:?}");
    assert!(
        turn["content"]
            .as_str()
            .unwrap()
            .contains("Tom has 3 apples and buys 5 more."),
        "{prompt:?}"
    );
    // Live progress: each sample as soon as the batch is decoded, before the judge runs and
    // the candidates are listed.
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
    for (i, c) in cands.iter().enumerate() {
        let sample = at(&format!("sample {i} · ")).unwrap_or_else(|| panic!("sample {i}: {err}"));
        assert!(sample < at("candidate #0").expect("candidates"), "{err}");
        let tokens = c["tokens"].as_u64().unwrap();
        assert!(
            lines[sample].contains(&format!(" · {tokens} tokens · ")),
            "{err}"
        );
    }
}

#[test]
fn solve_rejects_bad_strategy_input_clearly() {
    for (args, needle) in [
        (vec!["solve", "--rerank", "oracle", "q"], "unknown reranker"),
        (vec!["solve", "--n", "0", "q"], "invalid n"),
        (
            vec!["solve", "--strategy", "magic", "q"],
            "unknown strategy",
        ),
        (
            vec!["solve", "--config", "{\"nn\": 1}", "q"],
            "unknown field",
        ),
        (vec!["solve", "   "], "invalid question"),
        (
            vec!["solve", "--config", "no/such/config.json", "q"],
            "file not found",
        ),
        (
            vec![
                "solve",
                "--config",
                r#"{"type": "mcts"}"#,
                "--strategy",
                "best-of-n",
                "q",
            ],
            "contradicts",
        ),
    ] {
        let out = ponder(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn print_config_shows_the_resolved_strategy_without_loading_a_model() {
    let out = ponder(&[
        "solve",
        "--model",
        "/nonexistent/model.gguf",
        "--strategy",
        "mcts",
        "--config",
        r#"{"c": 2.0}"#,
        "--k",
        "5",
        "--print-config",
        "q",
    ]);
    let v = common::json_output(&out);
    assert_eq!(v["type"], "mcts");
    assert_eq!(v["k"], 5);
    assert_eq!(v["c"], 2.0);
    assert!(
        v["budget"]["tokens"].is_u64(),
        "defaults are filled in: {v}"
    );
}

/// One spelling everywhere: `-n` and `--n` on `generate` and on every strategy command.
#[test]
fn the_sample_count_is_spelled_n_and_dash_dash_n_everywhere() {
    for flag in ["-n", "--n"] {
        let out = ponder(&[
            "solve",
            "--strategy",
            "best-of-n",
            flag,
            "3",
            "--print-config",
            "q",
        ]);
        assert_eq!(common::json_output(&out)["n"], 3, "solve {flag}");
    }
    let out = ponder(&["generate", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("-n, --n <N>"), "{help}");
}

#[test]
fn a_dataset_without_one_valid_line_is_an_error_before_any_work() {
    let dir = common::scratch("cli-no-valid-lines");
    let csv = dir.join("data.csv");
    std::fs::write(&csv, "question,answer\nWhat is 2 + 3?,5\n").unwrap();
    let array = dir.join("data.json");
    std::fs::write(&array, r#"[{"question": "What is 2 + 3?", "answer": "5"}]"#).unwrap();
    for input in [&csv, &array] {
        let out = ponder(&["eval", "--dataset", input.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no valid lines") && err.contains("JSONL"),
            "{err}"
        );
        let output = dir.join("out");
        let out = ponder(&[
            "synth",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no valid lines"),
            "{out:?}"
        );
        assert!(!output.exists(), "no output is written");
    }
}

#[test]
fn eval_reports_accuracy_pass_at_n_and_auc_and_skips_bad_lines() {
    let dir = std::env::temp_dir().join(format!("ponder-cli-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("mixed.jsonl");
    std::fs::write(
        &data,
        [
            r#"{"id": "a", "question": "What is 2 + 2?", "answer": "4"}"#,
            "this line is not json",
            r#"{"id": "b", "answer": "5"}"#,
            r#"{"id": "c", "question": "What is 3 + 4?", "answer": 7}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = ponder(&[
        "eval",
        "--dataset",
        data.to_str().unwrap(),
        "--n",
        "2",
        "--rerank",
        "judge",
        "--max-tokens",
        "32",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2: skipped: not valid JSON"), "{err}");
    assert!(err.contains(":3: skipped: missing \"question\""), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"], 2, "the good lines still ran");
    let acc = v["accuracy"].as_f64().unwrap();
    let pass = v["pass_at_n"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && pass >= acc);
    assert!(v["judge_auc"].is_null() || v["judge_auc"].as_f64().is_some());
    assert_eq!(v["judged_candidates"], 4);
    assert_eq!(v["line_errors"].as_array().unwrap().len(), 2);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn solve_self_correct_and_deepening_show_their_timelines() {
    let q =
        "A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?";
    let out = ponder(&[
        "solve",
        "--strategy",
        "self-correct",
        "--rounds",
        "1",
        "--max-tokens",
        "40",
        "--config",
        r#"{"accept_threshold": null}"#,
        q,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("timeline:"), "{text}");
    assert!(text.contains("revision request"), "{text}");

    let out = ponder(&[
        "solve",
        "--strategy",
        "deepening",
        "--n",
        "2",
        "--l0",
        "16",
        "--gamma",
        "2",
        "--max-tokens",
        "64",
        "--json",
        q,
    ]);
    let v = common::json_output(&out);
    assert_eq!(v["strategy"], "deepening");
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
    let timeline = v["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().any(|e| e["kind"] == "trigger"),
        "{timeline:?}"
    );
    for e in timeline {
        assert!(e["offset"].as_u64().unwrap() + e["tokens"].as_u64().unwrap() <= 64);
    }

    // Flags that do not fit the strategy are refused, not ignored.
    let out = ponder(&["solve", "--strategy", "deepening", "--rounds", "2", q]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rounds applies to self-correct"));
    let out = ponder(&[
        "solve",
        "--strategy",
        "deepening",
        "--config",
        r#"{"gamma": 0.5}"#,
        q,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid gamma"));
}

#[test]
fn solve_mcts_and_beam_write_their_trees() {
    let dir = std::env::temp_dir().join(format!("ponder-cli-tree-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tree_json = dir.join("tree.json");
    let out = ponder(&[
        "solve",
        "--strategy",
        "mcts",
        "--budget",
        "150",
        "--max-tokens",
        "40",
        "--json",
        "--answer",
        "10",
        "--tree",
        tree_json.to_str().unwrap(),
        "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?",
    ]);
    let v = common::json_output(&out);
    assert_eq!(v["strategy"], "mcts");
    // Progress on stderr (plain lines: stderr is not a terminal here), stdout stays one JSON.
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("ponder solve: model ") && first.contains("strategy mcts ("),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("step #1 after #0")),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("done · answer ")),
        "{err}"
    );
    let nodes = v["tree"]["nodes"]
        .as_array()
        .expect("the tree is in the JSON");
    assert!(nodes.len() > 1);
    for n in nodes {
        for field in [
            "id", "text", "tokens", "logprob", "visits", "value", "children",
        ] {
            assert!(!n[field].is_null(), "node field {field}: {n}");
        }
    }
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tree_json).unwrap()).unwrap();
    assert_eq!(file, v["tree"], "--tree writes the same tree");
    let dot = std::fs::read_to_string(dir.join("tree.dot")).unwrap();
    assert!(dot.starts_with("digraph search {"), "{dot}");
    assert_eq!(
        dot.matches(" -> ").count(),
        nodes.len() - 1,
        "one edge per step"
    );

    let out = ponder(&[
        "solve",
        "--strategy",
        "beam",
        "--width",
        "2",
        "--budget",
        "120",
        "--max-tokens",
        "40",
        "What is 6 times 7?",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("search tree:"), "{text}");
    assert!(text.contains("answer:"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tree_search_bad_config_is_named_before_loading_anything() {
    for (args, field) in [
        (&["--strategy", "mcts", "--k", "0"][..], "k"),
        (&["--strategy", "mcts", "--config", r#"{"c": -1}"#][..], "c"),
        (
            &["--strategy", "mcts", "--config", r#"{"end_gate": 1.5}"#][..],
            "end_gate",
        ),
        (
            &["--strategy", "mcts", "--budget", "0"][..],
            "budget.tokens",
        ),
        (&["--strategy", "beam", "--k", "3"][..], "--k"),
        (&["--strategy", "best-of-n", "--tree", "x.json"][..], "tree"),
        // An output that cannot be written is found before minutes of search, not after.
        (
            &["--strategy", "beam", "--tree", "/nonexistent/dir/t.json"][..],
            "cannot write /nonexistent/dir/t.json",
        ),
        (&["--threads", "100000"][..], "n_threads"),
        (&["--n-seq-max", "1000"][..], "n_seq_max"),
        (
            &["--kv-layout", "paged"][..],
            "\"unified\", \"streams\" or \"auto\"",
        ),
        // Streams too small for their sequences are refused before the model loads.
        (
            &["--kv-layout", "streams", "--ctx", "8", "--n-seq-max", "16"][..],
            "n_ctx",
        ),
        (
            &[
                "--strategy",
                "self-correct",
                "--config",
                r#"{"rounds": 1000000}"#,
            ][..],
            "rounds",
        ),
    ] {
        let mut all = vec!["solve", "--model", "/nonexistent/model.gguf"];
        all.extend_from_slice(args);
        all.push("What is 1 + 1?");
        let out = ponder(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(field), "{args:?}: {err}");
        assert!(
            !err.contains("model"),
            "config errors come before the model: {err}"
        );
    }
}

#[test]
fn devices_are_listed_and_gpu_layers_without_a_gpu_are_a_warning_not_an_error() {
    let out = ponder(&["devices", "--json"]);
    let devices = common::json_output(&out);
    let devices = devices.as_array().expect("JSON list");
    assert!(
        devices.iter().any(|d| d["kind"] == "cpu"),
        "the CPU is always a device: {devices:?}"
    );
    let gpu = devices
        .iter()
        .any(|d| d["kind"] == "gpu" || d["kind"] == "igpu");
    let out = ponder(&[
        "generate",
        "--prompt",
        "Name a colour.",
        "--max-tokens",
        "4",
        "--gpu-layers",
        "99",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!out.stdout.is_empty());
    // Where there is no GPU the user is told that the layers stay on the CPU; where there is
    // one, nothing is said.
    assert_eq!(stderr.contains("has no effect"), !gpu, "{stderr}");
    if !gpu {
        assert!(stderr.contains("runs on the CPU"), "{stderr}");
    }
}

#[test]
fn long_commands_open_with_model_context_threads_and_strategy() {
    // The line comes once the flags are checked, before the model loads (here: fails to).
    for (threads, hint) in [("0", true), ("1", false)] {
        let out = ponder(&[
            "solve",
            "--model",
            "/nonexistent/model.gguf",
            "--threads",
            threads,
            "--strategy",
            "beam",
            "q",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(
                "ponder solve: model /nonexistent/model.gguf · kv unified: ctx 4096 · 64 sequences · "
            ),
            "{err}"
        );
        assert!(first.contains(" · strategy beam (width "), "{err}");
        assert_eq!(first.contains("--threads 1 can be"), hint, "{err}");
        assert!(err.lines().last().unwrap().starts_with("error: "), "{err}");
    }
    // The other layout, and an explicit context that asks for a shared pool.
    for (args, says) in [
        (
            &["--kv-layout", "unified"][..],
            "kv unified: ctx 4096 · 64 sequences",
        ),
        (
            &["--ctx", "8192"][..],
            "kv unified: ctx 8192 · 64 sequences",
        ),
        (
            &["--ctx", "8192", "--n-seq-max", "8"][..],
            "kv streams: 8 branches x 1024 tokens (ctx 8192)",
        ),
    ] {
        let mut all = vec!["solve", "--model", "/nonexistent/model.gguf"];
        all.extend_from_slice(args);
        all.push("q");
        let err = String::from_utf8_lossy(&ponder(&all).stderr).into_owned();
        assert!(
            err.lines().next().unwrap_or_default().contains(says),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn auto_layout_is_unified_for_tree_searches_and_streams_for_sampling_with_any_workers() {
    // `eval --workers 4` keeps 4 solves in flight: tree searches still get the shared pool
    // (forks without stream copies), sampling strategies a stream per branch.
    for (strategy, workers, says) in [
        ("mcts", "1", "kv unified: ctx 4096 · 64 sequences"),
        ("mcts", "4", "kv unified: ctx 4096 · 64 sequences"),
        ("beam", "4", "kv unified: ctx 4096 · 64 sequences"),
        ("best-of-n", "1", "kv streams: 16 branches x 2048 tokens"),
        ("best-of-n", "4", "kv streams: 16 branches x 2048 tokens"),
    ] {
        let out = ponder(&[
            "eval",
            "--model",
            "/nonexistent/model.gguf",
            "--dataset",
            "data/arith40.jsonl",
            "--strategy",
            strategy,
            "--workers",
            workers,
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().next().unwrap_or_default().contains(says),
            "{strategy} --workers {workers}: {err}"
        );
    }
}

#[test]
fn every_choice_is_listed_and_an_unknown_one_is_a_clear_error() {
    for (args, needle) in [
        (
            &["solve", "--backend", "lama", "q"][..],
            "unknown backend \"lama\"; use llama or remote",
        ),
        (
            &["synth", "--input", "x", "--output", "y", "--labels", "int"][..],
            "unknown label kind \"int\"; use float or bool",
        ),
        (
            &[
                "synth",
                "--input",
                "x",
                "--output",
                "y",
                "--formats",
                "sft,dpo",
            ][..],
            "unknown format \"dpo\"; use sft, preference, prm or correction",
        ),
        (
            &["eval", "--dataset", "x", "--answer-kind", "date"][..],
            "unknown answer kind \"date\"; use numeric or text",
        ),
    ] {
        let out = ponder(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Both spellings of a strategy and a reranker are taken.
    let out = ponder(&[
        "solve",
        "--strategy",
        "best_of_n",
        "--rerank",
        "weighted-vote",
        "--print-config",
        "q",
    ]);
    assert_eq!(common::json_output(&out)["rerank"], "weighted_vote");
    let out = ponder(&["solve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for listed in [
        "best-of-n:",
        "deepconf:",
        "filtered_vote:",
        "remote:",
        "2048 per branch in streams, 4096 in unified",
        "[default: auto]",
    ] {
        assert!(help.contains(listed), "{listed}: {help}");
    }
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_command_without_a_panic() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::ExitStatusExt;
    // A pipe whose reading end is closed before the command starts: its first write fails.
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let out = common::ponder_command()
        .args(["solve", "--print-config", "What is 1 + 1?"])
        .stdout(std::process::Stdio::from(write))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "ended by SIGPIPE, as other tools are: {:?} {err}",
        out.status
    );
}
