//! The `ponder` binary on the real default model.

mod common;

use std::process::{Command, Output};

fn ponder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ponder"))
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
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
    let out = Command::new(env!("CARGO_BIN_EXE_ponder"))
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
        assert!(
            err.starts_with("error: invalid ") && err.contains(field),
            "{flag}: {err}"
        );
    }

    let out = ponder(&["generate", "--prompt", &"word ".repeat(500), "--ctx", "64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("context holds 64"), "{err}");
}
