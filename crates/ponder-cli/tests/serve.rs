//! `ponder serve` end to end: the real binary on a free loopback port with the default model,
//! driven by curl and by the `openai` Python package (scripts/setup-openai.sh installs it into
//! target/pyenv; `make test` runs that first, and these tests run it too, idempotently).

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::free_port;
use serde_json::Value;

const KEY: &str = "test-key";

/// A running `ponder serve`, killed on drop.
struct Serve {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Serve {
    /// Starts the server with `extra` flags (one thread, the default model, the name `smol`) and
    /// waits until /health answers.
    fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "ponder-serve-test-{}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = common::ponder_command();
        cmd.arg("serve")
            .arg("--model")
            .arg(common::model_path())
            .args(["--threads", "1", "--ctx", "4096", "--model-name", "smol"])
            .args(["--port", &port.to_string()])
            .args(extra)
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .env_remove("PONDER_API_KEY")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        let child = cmd.spawn().expect("ponder serve starts");
        let mut s = Self { child, port, log };
        let start = Instant::now();
        loop {
            if s.curl(&["/health"]).0 == 200 {
                return s;
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("ponder serve exited with {status}:\n{}", s.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "ponder serve was not ready within 120 s:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `curl` of `args` (the first is the path); the status and the body.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--max-time", "300"])
            .arg(self.url(args[0]))
            .args(&args[1..])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// POSTs `body` to /v1/chat/completions with the key.
    fn chat(&self, body: &str) -> (u16, String) {
        self.curl(&[
            "/v1/chat/completions",
            "-H",
            "content-type: application/json",
            "-H",
            &format!("authorization: Bearer {KEY}"),
            "--data-binary",
            body,
        ])
    }

    /// Starts the same POST in a background curl (that gives up after `max_time` seconds).
    fn chat_in_background(&self, body: &str, max_time: u32) -> Child {
        Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                "--max-time",
                &max_time.to_string(),
            ])
            .arg(self.url("/v1/chat/completions"))
            .args(["-H", "content-type: application/json"])
            .args(["-H", &format!("authorization: Bearer {KEY}")])
            .args(["--data-binary", body])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl runs")
    }

    /// The value of the sample `line` (name with labels) of /metrics, 0 when absent.
    fn metric(&self, line: &str) -> f64 {
        let (status, text) =
            self.curl(&["/metrics", "-H", &format!("authorization: Bearer {KEY}")]);
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (up to three minutes) until the metric `line` satisfies `ok`.
    fn wait_metric(&self, line: &str, ok: impl Fn(f64) -> bool) {
        let start = Instant::now();
        loop {
            let v = self.metric(line);
            if ok(v) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "{line} stayed at {v}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sigterm(&self) {
        // SAFETY: a plain kill(2) on our own child.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
    }

    /// Waits (up to three minutes) for the server to exit; its exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "the server did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Checks an OpenAI error body: its type and code.
fn assert_error(status: u16, body: &str, want: u16, code: Option<&str>) {
    assert_eq!(status, want, "{body}");
    let v = json(body);
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    if let Some(code) = code {
        assert_eq!(e["code"], code, "{body}");
    }
}

fn chat_body(model: &str, extra: &str) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"What is 2+3?"}}]{extra}}}"#
    )
}

/// A request that runs for many seconds on SmolLM2 (16 long stories).
const LONG: &str = r#"{"model":"smol","messages":[{"role":"user","content":"Write a very long story about a dragon who learns to count."}],"n":16,"max_tokens":1500,"temperature":1.0}"#;

#[test]
fn a_public_bind_without_a_key_is_refused_before_loading_the_model() {
    let out = common::ponder_command()
        .args(["serve", "--host", "0.0.0.0", "--model", "/nonexistent.gguf"])
        .env_remove("PONDER_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--api-key") && err.contains("not loopback"),
        "{err}"
    );
}

#[test]
fn a_config_file_sets_what_no_flag_gives_and_its_errors_name_file_and_key() {
    let dir = common::scratch("serve-config");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    // Refused before the model loads: unknown key, wrong type, out of range, no file.
    for (name, text, key) in [
        ("unknown.json", r#"{"max_qeue": 3}"#, "max_qeue"),
        ("type.json", r#"{"max_n": "two"}"#, "max_n"),
        ("range.json", r#"{"max_queue": 0}"#, "max_queue"),
        (
            "range-ctx.json",
            r#"{"backend": {"n_seq_max": 999}}"#,
            "backend.n_seq_max",
        ),
        (
            "layout.json",
            r#"{"backend": {"kv_layout": 1}}"#,
            "backend.kv_layout",
        ),
        ("moved.json", r#"{"ctx": 2048}"#, "ctx"),
    ] {
        let path = write(name, text);
        let out = common::ponder_command()
            .args(["serve", "--model", "/nonexistent.gguf", "--config", &path])
            .env_remove("PONDER_API_KEY")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&path) && err.contains(&format!("invalid key \"{key}\"")),
            "{name}: {err}"
        );
    }
    let out = common::ponder_command()
        .args(["serve", "--config", "/nonexistent/serve.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/serve.json"),
        "{err}"
    );

    // The file gives the key, the queue, the caps and (under `backend`) the sequences; the
    // flags Serve::start passes (--ctx 4096, --model-name smol) win over the file's.
    let path = write(
        "serve.json",
        &format!(
            r#"{{"api_key": "{KEY}", "max_queue": 3, "max_n": 2, "backend": {{"n_seq_max": 8, "n_ctx": 2048}}, "model_name": "from-file"}}"#
        ),
    );
    let s = Serve::start(&["--config", &path]);
    let (status, body) = s.curl(&["/v1/models"]);
    assert_error(status, &body, 401, Some("invalid_api_key"));
    let (status, body) = s.curl(&["/v1/models", "-H", &format!("authorization: Bearer {KEY}")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["data"][0]["id"], "smol", "{body}");
    assert_eq!(s.metric("ponder_queue_capacity"), 3.0);
    assert_eq!(s.metric("ponder_sequences_max"), 8.0);
    assert_eq!(s.metric("ponder_kv_cells_capacity"), 4096.0);
    let (status, body) = s.chat(&chat_body("smol", r#","n":3,"max_tokens":2"#));
    assert_error(status, &body, 400, None);
    let (status, body) = s.chat(&chat_body("smol", r#","n":2,"max_tokens":2"#));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn openai_and_curl_clients_get_answers_and_every_error_its_status() {
    let s = Serve::start(&["--api-key", KEY, "--max-body-bytes", "65536"]);

    // The openai Python package: plain chat, n = 4 from one prefill, every alias, extra_body,
    // streaming, 8 concurrent clients, typed errors (tests/serve_client.py says what it checks).
    let setup = Command::new("bash")
        .arg(common::root().join("scripts/setup-openai.sh"))
        .output()
        .expect("bash runs");
    assert!(
        setup.status.success(),
        "scripts/setup-openai.sh failed (it installs the openai package into target/pyenv):\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8_lossy(&setup.stdout).trim().to_string();
    let python = common::root().join(python);
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/serve_client.py"
        ))
        .args([&s.url(""), KEY, "smol"])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the openai client's checks failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
    let report = json(stdout.lines().last().unwrap_or(""));
    assert_eq!(report["ok"], true);
    assert_eq!(report["concurrent"], 8);
    eprintln!("openai client: {report}");

    // curl: a plain answer in OpenAI's shape.
    let (status, body) = s.chat(&chat_body("smol", r#","max_tokens":12,"stop":["\n\n"]"#));
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["choices"][0]["message"]["content"].is_string());
    assert!(!v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("\n\n"));
    assert!(v["usage"]["ponder"]["forward_passes"].as_u64().unwrap() > 0);

    // curl: a stream ends with [DONE], after the reasoning and the content.
    let (status, body) = s.chat(&chat_body(
        "majority-smol",
        r#","stream":true,"ponder":{"n":2,"max_tokens":10}"#,
    ));
    assert_eq!(status, 200, "{body}");
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let reasoning = data.iter().position(|d| d.contains("reasoning_content"));
    let content = data.iter().position(|d| d.contains("\"content\""));
    assert!(reasoning.unwrap() < content.unwrap(), "{body}");

    // curl: a text completion in OpenAI's shape, prompts as token ids, and its errors naming
    // the prompt.
    let complete = |body: &str| {
        s.curl(&[
            "/v1/completions",
            "-H",
            "content-type: application/json",
            "-H",
            &format!("authorization: Bearer {KEY}"),
            "--data-binary",
            body,
        ])
    };
    let (status, body) = complete(
        r#"{"model":"smol","prompt":[[504, 3458], [504]],"max_tokens":3,"logprobs":0,"temperature":0}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"].as_array().unwrap().len(), 2, "{body}");
    let lp = &v["choices"][1]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(lp["top_logprobs"][0], serde_json::json!({}), "{body}");
    for (request, param, code) in [
        (r#"{"model":"smol","prompt":[999999999]}"#, "prompt", None),
        (
            r#"{"model":"smol"}"#,
            "prompt",
            Some("missing_required_parameter"),
        ),
        (
            r#"{"model":"smol","prompt":"hi","temperature":50}"#,
            "temperature",
            Some("invalid_value"),
        ),
        (
            r#"{"model":"smol","prompt":"hi","suffix":"!"}"#,
            "suffix",
            Some("unsupported_parameter"),
        ),
        (
            r#"{"model":"smol","prompt":"hi","echo":"yes"}"#,
            "echo",
            Some("invalid_type"),
        ),
    ] {
        let (status, body) = complete(request);
        assert_error(status, &body, 400, code);
        assert_eq!(json(&body)["error"]["param"], param, "{request}: {body}");
    }
    let long = format!(r#"{{"model":"smol","prompt":"{}"}}"#, "word ".repeat(5000));
    let (status, body) = complete(&long);
    assert_error(status, &body, 400, Some("context_length_exceeded"));
    assert_eq!(json(&body)["error"]["param"], "prompt", "{body}");

    // Every error status, as OpenAI's error JSON.
    let (status, body) = s.chat("{not json");
    assert_error(status, &body, 400, None);
    let (status, body) = s.chat(&chat_body("smol", r#","ponder":{"type":"magic"}"#));
    assert_error(status, &body, 400, None);
    assert_eq!(json(&body)["error"]["param"], "ponder.type");
    let (status, body) = s.chat(&chat_body("smol", r#","n":1000"#));
    assert_error(status, &body, 400, None);
    assert_eq!(json(&body)["error"]["param"], "n");
    let (status, body) = s.curl(&[
        "/v1/chat/completions",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &chat_body("smol", ""),
    ]);
    assert_error(status, &body, 401, Some("invalid_api_key"));
    let (status, body) = s.curl(&["/v1/models", "-H", "authorization: Bearer wrong"]);
    assert_error(status, &body, 401, Some("invalid_api_key"));
    let (status, body) = s.curl(&["/v1/nothing", "-H", &format!("authorization: Bearer {KEY}")]);
    assert_error(status, &body, 404, Some("not_found"));
    let (status, body) = s.curl(&[
        "/v1/chat/completions",
        "-H",
        &format!("authorization: Bearer {KEY}"),
    ]);
    assert_error(status, &body, 405, Some("method_not_allowed"));
    let big = chat_body("smol", &format!(r#","user":"{}""#, "x".repeat(70_000)));
    let big_file = common::scratch("serve-big-body").join("body.json");
    std::fs::write(&big_file, big).unwrap();
    let (status, body) = s.chat(&format!("@{}", big_file.display()));
    assert_error(status, &body, 413, Some("request_too_large"));

    // /metrics counts them by strategy and status.
    assert!(s.metric(r#"ponder_requests_total{strategy="plain",status="200"}"#) >= 12.0);
    assert!(s.metric(r#"ponder_requests_total{strategy="mcts",status="200"}"#) >= 1.0);
    assert!(s.metric(r#"ponder_requests_total{strategy="-",status="401"}"#) >= 3.0);
    assert!(s.metric(r#"ponder_requests_total{strategy="-",status="413"}"#) >= 1.0);
    assert!(s.metric("ponder_generated_tokens_total") > 0.0);
    assert!(s.metric("ponder_solve_seconds_count") >= 20.0);
    assert_eq!(s.metric("ponder_queue_depth"), 0.0);
    // The shared llama.cpp context's load.
    assert!(s.metric("ponder_sequences_max") >= 1.0);
    assert_eq!(s.metric("ponder_decode_jobs"), 0.0);
}

#[test]
fn a_full_queue_answers_429_and_a_client_that_goes_away_cancels_its_solve() {
    let s = Serve::start(&["--api-key", KEY, "--max-queue", "1"]);
    let mut long = s.chat_in_background(LONG, 8);
    s.wait_metric("ponder_queue_depth", |v| v == 1.0);
    // Its 16 branches hold sequences and KV cells of the shared context.
    s.wait_metric("ponder_sequences_live", |v| v >= 16.0);
    let cells = s.metric("ponder_kv_cells_used");
    assert!(cells > 0.0 && cells <= 4096.0, "{cells}");
    assert_eq!(s.metric("ponder_kv_cells_capacity"), 4096.0);
    let (status, body) = s.chat(&chat_body("smol", r#","max_tokens":4"#));
    assert_error(status, &body, 429, Some("queue_full"));
    // curl gives up (its --max-time): the server sees the connection close and cancels.
    let out = long.wait().unwrap();
    assert_eq!(out.code(), Some(28), "curl should have timed out");
    s.wait_metric("ponder_requests_cancelled_total", |v| v == 1.0);
    s.wait_metric("ponder_queue_depth", |v| v == 0.0);
    // The cancelled solve gave its sequences and cells back.
    s.wait_metric("ponder_sequences_live", |v| v == 0.0);
    assert_eq!(s.metric("ponder_kv_cells_used"), 0.0);
    assert_eq!(
        s.metric(r#"ponder_requests_total{strategy="plain",status="499"}"#),
        1.0
    );
    // The slot is free again.
    let (status, body) = s.chat(&chat_body("smol", r#","max_tokens":4"#));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn sigterm_lets_a_running_solve_finish_then_cancels_what_outlives_the_grace_period() {
    // A long grace period: the running solve finishes and is answered; new requests get 503.
    let mut s = Serve::start(&["--api-key", KEY, "--grace-seconds", "300"]);
    let story = LONG.replace(r#""n":16"#, r#""n":4"#).replace("1500", "200");
    let running = s.chat_in_background(&story, 300);
    s.wait_metric("ponder_solves_running", |v| v == 1.0);
    s.sigterm();
    s.wait_metric("ponder_shutting_down", |v| v == 1.0);
    let (status, body) = s.chat(&chat_body("smol", r#","max_tokens":4"#));
    assert_error(status, &body, 503, Some("shutting_down"));
    let (status, body) = s.curl(&["/health"]);
    assert_error(status, &body, 503, Some("shutting_down"));
    let out = running.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "{text}");
    assert!(s.wait_exit().success(), "{}", s.log_text());

    // A short grace period: the solve still running is cancelled and answered 503.
    let mut s = Serve::start(&["--api-key", KEY, "--grace-seconds", "1"]);
    let running = s.chat_in_background(LONG, 300);
    s.wait_metric("ponder_solves_running", |v| v == 1.0);
    s.sigterm();
    let out = running.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_error(code.parse().unwrap(), body, 503, Some("shutting_down"));
    assert!(s.wait_exit().success(), "{}", s.log_text());
    assert!(
        s.log_text().contains("cancelling 1 solve"),
        "{}",
        s.log_text()
    );
}
