//! The remote backend against real llama.cpp `llama-server`s on 127.0.0.1 serving the default
//! model: the node-tree contract over HTTP, agreement with the in-process model, every strategy
//! end to end, requests spread over two servers, typed errors after bounded retries, one
//! connection shared by concurrent solves, and the client-side tokenizer. (The CLI and synth over
//! the remote backend: `crates/ponder-cli/tests/remote.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::server::Server;
use ponder::lm::{FinishReason, GenRequest, Lm, Message, RemoteLm, RemoteOptions, SamplingParams};
use ponder::strategy::{Problem, StrategyConfig};
use ponder::{DecodeError, Engine, Error, LoadError, RemoteError, TokenizerError};

const QUESTION: &str =
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?";

/// One server shared by the tests of this binary (4 slots).
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(4))
}

fn connect(urls: &[String]) -> RemoteLm {
    RemoteLm::connect(&RemoteOptions::new(urls.iter().cloned()))
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn strategy(json: serde_json::Value) -> StrategyConfig {
    serde_json::from_value(json).expect("a valid strategy")
}

#[test]
fn generations_follow_the_node_tree_contract() {
    let mut lm = connect(&[shared().url()]);
    assert!(lm.n_ctx() >= 4096, "n_ctx {}", lm.n_ctx());
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let root_tokens = lm.node_tokens(root).unwrap();
    assert_eq!(lm.usage().prompt_tokens, root_tokens.len() as u64);
    let requests: Vec<GenRequest> = (0..4)
        .map(|i| GenRequest {
            stop: vec!["\n\n".into()],
            sampling: SamplingParams::default().with_seed(i),
            ..GenRequest::new(root, 48)
        })
        .collect();
    let gens = lm.generate(&requests).unwrap();
    assert_eq!(gens.len(), 4);
    let mut generated = 0;
    for g in &gens {
        let tokens = lm.node_tokens(g.node).unwrap();
        assert_eq!(
            &tokens[..root_tokens.len()],
            &root_tokens[..],
            "a child extends its parent"
        );
        assert_eq!(tokens.len(), root_tokens.len() + g.tokens as usize);
        assert!(g.tokens >= 1 && g.tokens <= 48 + 2, "{} tokens", g.tokens);
        assert!(g.logprob <= 0.0 && g.logprob.is_finite());
        match g.finish {
            FinishReason::Stop(0) => assert!(g.text.ends_with("\n\n"), "{:?}", g.text),
            FinishReason::Eos | FinishReason::MaxTokens => {
                assert!(!g.text.contains("\n\n"), "{:?}", g.text)
            }
            ref other => panic!("unexpected finish {other:?}"),
        }
        generated += g.tokens;
    }
    let usage = lm.usage();
    assert_eq!(usage.forward_passes, 4, "one completion request per branch");
    assert!(usage.generated_tokens > 0 && usage.generated_tokens >= u64::from(generated) / 2);
    // A continuation of a child: its prefix is the child's tokens.
    let child = gens[0].node;
    let ext = lm.extend(child, "So the answer is").unwrap();
    let g = lm
        .generate(&[GenRequest {
            sampling: SamplingParams::greedy(),
            ..GenRequest::new(ext, 8)
        }])
        .unwrap();
    assert_eq!(
        lm.node_len(g[0].node).unwrap(),
        lm.node_len(ext).unwrap() + g[0].tokens as usize
    );
    // Released nodes are gone; everything else stays.
    lm.release(child);
    assert!(matches!(
        lm.node_len(child),
        Err(DecodeError::UnknownNode { .. })
    ));
    assert!(lm.node_len(ext).is_ok());
    // The server's prefix cache: later requests on the same prefix report cached tokens.
    assert!(
        lm.usage().reused_tokens > 0,
        "the server reports no cached prompt tokens: {:?}",
        lm.usage()
    );
}

#[test]
fn tokens_and_next_token_probabilities_agree_with_the_in_process_model() {
    let mut remote = connect(&[shared().url()]);
    let mut local = common::session(2048, 4);
    let text = "The capital of France is";
    assert_eq!(
        remote.tokenize(text).unwrap(),
        local.tokenize(text).unwrap()
    );
    // The server renders chats with the model's own Jinja template (SmolLM2's adds a default
    // system turn); the in-process backend with llama.cpp's built-in ChatML. Both end with the
    // same user turn and open assistant turn.
    let chat = [Message::user(QUESTION)];
    let (rc, lc) = (
        remote.chat_text(&chat).unwrap(),
        local.chat_text(&chat).unwrap(),
    );
    assert!(rc.ends_with(&lc), "remote {rc:?} vs in-process {lc:?}");
    assert_eq!(remote.vocab_size(), local.vocab_size());

    let r = remote.root_text(&lc).unwrap();
    let l = local.root_text(&lc).unwrap();
    assert_eq!(
        remote.node_tokens(r).unwrap(),
        local.node_tokens(l).unwrap()
    );
    // The in-process model's five most likely next tokens, then both models' probabilities.
    let all: Vec<i32> = (0..local.vocab_size() as i32).collect();
    let p = local.next_token_probs(&[(l, &all)]).unwrap().remove(0);
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let top: Vec<i32> = order[..5].iter().map(|&i| i as i32).collect();
    let rare = *order.last().unwrap() as i32;
    let mut cands = top.clone();
    cands.push(rare);
    let remote_p = remote.next_token_probs(&[(r, &cands)]).unwrap().remove(0);
    for (k, &t) in top.iter().enumerate() {
        let lp = p[t as usize];
        assert!(
            (remote_p[k] - lp).abs() < 0.03,
            "token {t} ({:?}): remote {} vs in-process {lp}",
            local.token_text(t),
            remote_p[k]
        );
    }
    assert_eq!(
        remote_p[5], 0.0,
        "a token outside the top logprobs gets probability 0"
    );
    assert!(matches!(
        remote.forced_logprobs(&[(r, "Paris")]),
        Err(DecodeError::Unsupported { .. })
    ));
}

#[test]
fn every_strategy_runs_through_the_remote_backend() {
    let engine = Engine::connect(&RemoteOptions::new([shared().url()])).unwrap();
    let problem = Problem::new(QUESTION).with_answer("10");
    let strategies = [
        serde_json::json!({"type": "best_of_n", "n": 4, "max_tokens": 96, "rerank": "judge"}),
        serde_json::json!({"type": "self_correct", "rounds": 2, "max_tokens": 96}),
        serde_json::json!({"type": "deepening", "width": 2, "l0": 32, "gamma": 1.5, "total_budget": 128}),
        serde_json::json!({"type": "mcts", "k": 3, "step": {"max_tokens": 48},
                           "budget": {"tokens": 240}}),
        serde_json::json!({"type": "beam", "width": 2, "expansions": 2, "value": "judge",
                           "step": {"max_tokens": 48}, "budget": {"tokens": 240}}),
    ];
    for json in strategies {
        let s = strategy(json);
        let before = engine.usage();
        let o = engine
            .solve(&problem, &s)
            .unwrap_or_else(|e| panic!("{}: {e}", s.name()));
        let used = engine.usage().since(&before);
        assert!(!o.candidates.is_empty(), "{}: no candidates", s.name());
        assert!(used.generated_tokens > 0, "{}: {used:?}", s.name());
        assert!(o.usage.generated_tokens > 0, "{}", s.name());
        if let Some(tree) = &o.tree {
            for n in &tree.nodes {
                assert!(
                    (0.0..=1.0).contains(&n.value),
                    "{}: value {}",
                    s.name(),
                    n.value
                );
                if let Some(p) = n.parent {
                    assert!(n.visits <= tree.nodes[p].visits, "{}", s.name());
                    // Beam asks the judge; MCTS values by likelihood (its default).
                    if s.name() == "beam" {
                        assert!(n.judge.is_some(), "{}: every step is judged", s.name());
                    } else {
                        assert!(n.value > 0.0, "{}: every step is valued", s.name());
                    }
                }
            }
            assert!(tree.nodes.len() > 1, "{}: the tree grew", s.name());
            // Tree search re-sends shared prefixes; the server's cache must take most of them.
            assert!(
                used.reused_tokens > used.prefill_tokens,
                "{}: cached {} vs processed {} prompt tokens",
                s.name(),
                used.reused_tokens,
                used.prefill_tokens
            );
        }
        eprintln!(
            "{}: answer {:?} · {} generated · {} prompt tokens processed · {} cached · {} requests",
            s.name(),
            o.answer,
            used.generated_tokens,
            used.prefill_tokens,
            used.reused_tokens,
            used.forward_passes
        );
    }
}

#[test]
fn requests_spread_over_two_servers() {
    let a = Server::start(2);
    let b = Server::start(2);
    let mut lm = connect(&[a.url(), b.url()]);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let requests: Vec<GenRequest> = (0..8)
        .map(|i| GenRequest {
            sampling: SamplingParams::default().with_seed(i),
            ..GenRequest::new(root, 16)
        })
        .collect();
    let before = lm.server_stats();
    let gens = lm.generate(&requests).unwrap();
    assert_eq!(gens.len(), 8);
    let after = lm.server_stats();
    eprintln!("before {before:?}\nafter {after:?}");
    // Requests that each server answered during the call. A slow machine may make a request
    // time out and be retried, and a generation may need a /tokenize: at least 8 in all.
    let answered: Vec<usize> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a.sent - a.failed) - (b.sent - b.failed))
        .collect();
    let total: usize = answered.iter().sum();
    assert!((8..=16).contains(&total), "{answered:?}");
    assert!(
        answered.iter().all(|&n| n >= 2),
        "both servers answered requests: {answered:?}"
    );
}

#[test]
fn unreachable_servers_and_bad_options_are_typed_errors() {
    let port = common::server::free_port();
    let err = RemoteLm::connect(&RemoteOptions {
        attempts: 2,
        backoff_ms: 10,
        ..RemoteOptions::new([format!("http://127.0.0.1:{port}")])
    })
    .unwrap_err();
    assert!(matches!(err, Error::Load(LoadError::Remote(_))), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    let err = RemoteLm::connect(&RemoteOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Config(ref c) if c.field == "url"),
        "{err}"
    );

    // A server that goes away between requests: the call fails after its attempts, typed.
    let mut server = Server::start(1);
    let mut lm = RemoteLm::connect(&RemoteOptions {
        attempts: 3,
        backoff_ms: 10,
        ..RemoteOptions::new([server.url()])
    })
    .unwrap();
    let root = lm.root_text("Once upon a time").unwrap();
    // A prompt longer than the server's context is refused before any completion request.
    let long = "word ".repeat(5000);
    assert!(matches!(
        lm.root_text(&long),
        Err(DecodeError::ContextOverflow { .. })
    ));
    server.kill();
    let err = lm.generate(&[GenRequest::new(root, 4)]).unwrap_err();
    match &err {
        DecodeError::Remote(RemoteError {
            attempts, status, ..
        }) => {
            // No response at all: a transport failure, the kind that stops a synth run.
            assert_eq!((*attempts, *status), (3, None), "{err}");
            assert!(err.is_unavailable());
        }
        other => panic!("expected a Remote error, got {other}"),
    }
}

#[test]
fn a_stalled_server_times_out_into_a_typed_error() {
    // A listener that accepts connections and never answers: the request times out, is retried,
    // and the call fails with the attempts it made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let err = RemoteLm::connect(&RemoteOptions {
        attempts: 2,
        backoff_ms: 10,
        timeout_ms: 300,
        ..RemoteOptions::new([format!("http://127.0.0.1:{port}")])
    })
    .unwrap_err();
    assert!(matches!(err, Error::Load(LoadError::Remote(_))), "{err}");
    assert!(err.to_string().contains("2 attempts"), "{err}");
}

/// A fake server on 127.0.0.1 answering every request with `respond(n)`, the raw bytes of an
/// HTTP response (`n` counts the requests so far); returns its URL and the request counter.
fn fake_server(
    respond: impl Fn(usize) -> Vec<u8> + Send + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            // Read the request head and body (Content-Length), then answer.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(&respond(n));
            let _ = s.flush();
        }
    });
    (url, count)
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn garbage_truncated_and_failing_responses_are_typed_errors_after_bounded_retries() {
    let opts = |url: &str| RemoteOptions {
        attempts: 3,
        backoff_ms: 5,
        timeout_ms: 2000,
        ..RemoteOptions::new([url.to_string()])
    };
    // Garbage instead of JSON.
    let (url, count) = fake_server(|_| http("200 OK", "<html>surprise</html>"));
    let err = RemoteLm::connect(&opts(&url)).unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three attempts"
    );

    // A body cut off before its Content-Length.
    let (url, count) = fake_server(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"data\": [".to_vec()
    });
    let err = RemoteLm::connect(&opts(&url)).unwrap_err();
    assert!(matches!(err, Error::Load(LoadError::Remote(_))), "{err}");
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three attempts"
    );

    // 503 twice, then a real answer: the retries hide the outage.
    let models = r#"{"data": [{"id": "m", "meta": {"n_vocab": 100, "n_ctx": 512}}]}"#;
    let (url, _) = fake_server(move |n| {
        if n < 2 {
            http(
                "503 Service Unavailable",
                r#"{"error": {"message": "loading model"}}"#,
            )
        } else {
            http("200 OK", models)
        }
    });
    let lm = RemoteLm::connect(&RemoteOptions {
        n_ctx: Some(512),
        ..opts(&url)
    })
    .unwrap();
    assert_eq!(lm.vocab_size(), 100);

    // A 4xx is the server refusing the request: not retried, its message passed on.
    let (url, count) = fake_server(|_| {
        http(
            "400 Bad Request",
            r#"{"error": {"message": "the request exceeds the available context size"}}"#,
        )
    });
    let err = RemoteLm::connect(&opts(&url)).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the available context"),
        "{err}"
    );
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no retry"
    );
}

#[test]
fn remote_errors_carry_url_status_and_attempts_and_say_whether_the_server_is_unusable() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let models = r#"{"data": [{"id": "m", "meta": {"n_vocab": 100, "n_ctx": 512}}]}"#;
    let (url, count) = fake_server(move |n| match (n, m.load(SeqCst)) {
        (0, _) => http("200 OK", models),
        (_, 1) => http(
            "400 Bad Request",
            r#"{"error": {"message": "tokens out of range"}}"#,
        ),
        (_, 2) => http("200 OK", r#"{"unexpected": true}"#),
        (_, 3) => http(
            "503 Service Unavailable",
            r#"{"error": {"message": "busy"}}"#,
        ),
        _ => http(
            "404 Not Found",
            r#"{"error": {"message": "no such endpoint"}}"#,
        ),
    });
    let lm = RemoteLm::connect(&RemoteOptions {
        attempts: 3,
        backoff_ms: 5,
        n_ctx: Some(512),
        ..RemoteOptions::new([url.clone()])
    })
    .unwrap();
    let tokenize = |want: usize| {
        mode.store(want, SeqCst);
        let before = count.load(SeqCst);
        let err = lm.tokenize("two words").unwrap_err();
        (err, count.load(SeqCst) - before)
    };
    // Refused (4xx): one attempt, this request is bad, the server is fine.
    let (err, sent) = tokenize(1);
    match &err {
        DecodeError::Remote(RemoteError {
            url: u,
            status,
            attempts,
            message,
            ..
        }) => {
            assert_eq!(u, &format!("{url}/tokenize"));
            assert_eq!((*status, *attempts, sent), (Some(400), 1, 1));
            assert!(message.contains("tokens out of range"), "{message}");
        }
        other => panic!("expected a Remote error, got {other}"),
    }
    assert!(!err.is_unavailable(), "{err}");
    assert!(!err.to_string().contains("attempts"), "{err}");
    // JSON of the wrong shape: the URL of the server that sent it, not retried.
    let (err, sent) = tokenize(2);
    assert!(
        matches!(&err, DecodeError::Remote(RemoteError { url: u, status: Some(200), attempts: 1, .. }) if *u == format!("{url}/tokenize")),
        "{err:?}"
    );
    assert_eq!(sent, 1);
    assert!(!err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("llama-server"), "{err}");
    // 503 on every attempt: the server cannot be used now.
    let (err, sent) = tokenize(3);
    assert!(
        matches!(
            &err,
            DecodeError::Remote(RemoteError {
                status: Some(503),
                attempts: 3,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(sent, 3);
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}

/// The slots a llama-server is processing now, from its `/slots` endpoint.
fn busy_slots(agent: &ureq::Agent, url: &str) -> usize {
    let text = agent
        .get(&format!("{url}/slots"))
        .call()
        .expect("/slots")
        .into_string()
        .expect("/slots body");
    let v: serde_json::Value = serde_json::from_str(&text).expect("/slots JSON");
    v.as_array()
        .expect("/slots is a list")
        .iter()
        .filter(|s| {
            s.get("is_processing")
                .and_then(serde_json::Value::as_bool)
                .expect("each slot says is_processing")
        })
        .count()
}

#[test]
fn concurrent_solves_share_one_connection_and_its_cap_on_requests_in_flight() {
    // Four solves of best-of-2 at once: each would put 2 requests in flight by itself, 8 in all
    // on a server with 4 slots; the one shared connection lets 2 through at a time. A server of
    // its own, so that the busy slots it reports are this test's.
    const CAP: usize = 2;
    let server = &Server::start(4);
    let lm = RemoteLm::connect(&RemoteOptions {
        max_in_flight: CAP,
        ..RemoteOptions::new([server.url()])
    })
    .unwrap();
    let connection = lm.shared();
    let engine = Engine::remote(lm);
    let s = strategy(
        serde_json::json!({"type": "best_of_n", "n": 2, "max_tokens": 32,
                                        "rerank": "vote"}),
    );
    let questions = [
        "What is 3 + 4?",
        "What is 5 times 6?",
        "What is 12 minus 7?",
        QUESTION,
    ];
    let done = std::sync::atomic::AtomicBool::new(false);
    let (outcomes, server_peak) = std::thread::scope(|scope| {
        // The server's own view: how many of its slots are busy, sampled while the solves run.
        let watcher = scope.spawn(|| {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build();
            let mut peak = 0;
            let mut samples = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(busy_slots(&agent, &server.url()));
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (peak, samples)
        });
        let solves: Vec<_> = questions
            .iter()
            .map(|q| {
                let (engine, s) = (&engine, &s);
                scope.spawn(move || engine.solve(&Problem::new(*q), s))
            })
            .collect();
        let outcomes: Vec<_> = solves.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (outcomes, watcher.join().unwrap())
    });
    let mut generated = 0;
    for (q, o) in questions.iter().zip(&outcomes) {
        let o = o.as_ref().unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(o.candidates.len(), 2, "{q}");
        assert!(o.usage.generated_tokens > 0, "{q}: {:?}", o.usage);
        generated += o.usage.generated_tokens;
    }
    // Usage is per solve, and the engine's is their sum.
    assert_eq!(engine.usage().generated_tokens, generated);
    let stats = connection.server_stats();
    eprintln!(
        "peak in flight {} (cap {CAP}); server stats {stats:?}; busy slots seen {server_peak:?}",
        connection.peak_in_flight()
    );
    assert_eq!(
        connection.peak_in_flight(),
        CAP,
        "the solves together reach the cap and never pass it"
    );
    assert!(stats[0].peak_outstanding <= CAP, "{stats:?}");
    let (busy, samples) = server_peak;
    assert!(samples > 0);
    assert!(busy <= CAP, "the server saw {busy} slots busy at once");
    assert_eq!(connection.in_flight(), (0, 0), "nothing left in flight");
}

/// `scripts/export-tokenizer.py MODEL OUT`: the tokenizer.json of a GGUF model, written once per
/// model and test process.
fn exported_tokenizer(model: &Path) -> PathBuf {
    static DONE: OnceLock<std::sync::Mutex<Vec<(PathBuf, PathBuf)>>> = OnceLock::new();
    let done = DONE.get_or_init(Default::default);
    let mut done = done.lock().unwrap();
    if let Some((_, out)) = done.iter().find(|(m, _)| m == model) {
        return out.clone();
    }
    let dir = std::env::temp_dir().join(format!("ponder-tokenizers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!(
        "{}.tokenizer.json",
        model.file_stem().unwrap().to_string_lossy()
    ));
    let run = Command::new("python3")
        .arg(common::root().join("scripts/export-tokenizer.py"))
        .arg(model)
        .arg(&out)
        .output()
        .expect("python3 runs");
    assert!(
        run.status.success(),
        "scripts/export-tokenizer.py {} failed:\n{}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    done.push((model.to_path_buf(), out.clone()));
    out
}

fn with_tokenizer(url: String, tokenizer: &Path) -> RemoteOptions {
    RemoteOptions {
        tokenizer: Some(tokenizer.to_path_buf()),
        ..RemoteOptions::new([url])
    }
}

/// Texts for the client/server comparison: the connect-time probes cover each rule once; these
/// are more of every kind, and 120 pseudo-random strings over characters that sit on the rules'
/// edges (spaces, digits, apostrophes, line breaks, accents, CJK, emoji, special-token pieces).
fn varied_texts(chat: &str) -> Vec<String> {
    let mut texts: Vec<String> = [
        "plain ASCII words",
        "Hello, World! How's it going? I'd say we'll see.",
        "1234567890 00 007 3.5 -12 +7 1e10 2^10 10% $5.99",
        "x     y",
        "  \t \n \n\n\n  \r\n\r\n   end",
        "\n",
        " ",
        "trailing newline\n",
        "ünïcödé ßtraße Ελληνικά עברית ไทย 한국어 中文字符",
        "😀😃😄 🧑🏿‍🚀 ❤️‍🔥 1️⃣ #️⃣",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|><|endoftext|>",
        "a<|im_end|>b <|im_start|> c",
        "<|im_start",
        "Step 1: 15 + 8 = 23.\n\nStep 2: 23 - 6 = 17.\n\nThe answer is \\boxed{17}.",
        "```python\ndef add(a, b):\n    return a + b\n```",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push(chat.to_string());
    let pieces = [
        "a",
        "Z",
        " ",
        "  ",
        "\n",
        "\t",
        "1",
        "23",
        "'s",
        "'",
        ".",
        ",",
        "é",
        "日",
        "😀",
        "\u{a0}",
        "<|",
        "|>",
        "<|im_end|>",
        "the",
        " and",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..120 {
        let mut s = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        for k in 0..(1 + seed % 12) {
            s.push_str(pieces[((seed >> (k * 5)) % pieces.len() as u64) as usize]);
        }
        texts.push(s);
    }
    texts
}

#[test]
fn a_client_tokenizer_tokenises_token_for_token_as_the_server_does() {
    let url = shared().url();
    let server = connect(std::slice::from_ref(&url));
    let tokenizer = exported_tokenizer(&common::model_path());
    let mut client = RemoteLm::connect(&with_tokenizer(url, &tokenizer))
        .unwrap_or_else(|e| panic!("connect with {}: {e}", tokenizer.display()));
    assert_eq!(client.shared().tokenizer_path(), Some(tokenizer.as_path()));
    // Connecting probed the server's /tokenize; nothing is tokenised there after that.
    let probed = client.requests()["/tokenize"];
    assert!(probed >= 10, "{:?}", client.requests());

    let chat = server
        .chat_text(&[Message::system("Be brief."), Message::user(QUESTION)])
        .unwrap();
    let texts = varied_texts(&chat);
    for text in &texts {
        assert_eq!(
            client.tokenize(text).unwrap(),
            server.tokenize(text).unwrap(),
            "{text:?}"
        );
    }
    // A root adds the model's special tokens as the server's /tokenize with add_special does.
    let mut server = server;
    let (a, b) = (
        client.root_text(&chat).unwrap(),
        server.root_text(&chat).unwrap(),
    );
    assert_eq!(
        client.node_tokens(a).unwrap(),
        server.node_tokens(b).unwrap()
    );
    assert_eq!(client.requests()["/tokenize"], probed);
    assert!(server.requests()["/tokenize"] > texts.len());
}

/// One MCTS solve on a fresh one-slot server, requests one at a time (so that the server's
/// batches and cache are the same in every run): the outcome and the requests by endpoint
/// during the solve.
fn solve_alone(
    tokenizer: Option<&Path>,
) -> (
    ponder::strategy::Outcome,
    std::collections::BTreeMap<String, usize>,
) {
    let server = Server::start(1);
    let lm = RemoteLm::connect(&RemoteOptions {
        max_in_flight: 1,
        tokenizer: tokenizer.map(Path::to_path_buf),
        ..RemoteOptions::new([server.url()])
    })
    .unwrap();
    let connection = lm.shared();
    let before = connection.requests();
    let engine = Engine::remote(lm);
    let s = strategy(serde_json::json!({
        "type": "mcts", "k": 2, "step": {"max_tokens": 24, "sampling": {"temperature": 0.0}},
        "budget": {"tokens": 72}
    }));
    let outcome = engine
        .solve(&Problem::new(QUESTION).with_answer("10"), &s)
        .unwrap();
    let mut during = connection.requests();
    for (path, n) in before {
        *during.get_mut(&path).unwrap() -= n;
    }
    during.retain(|_, n| *n > 0);
    (outcome, during)
}

#[test]
fn a_solve_with_the_client_tokenizer_matches_one_without_and_sends_no_tokenize_requests() {
    let tokenizer = exported_tokenizer(&common::model_path());
    let (plain, plain_requests) = solve_alone(None);
    let (client, client_requests) = solve_alone(Some(&tokenizer));
    eprintln!("requests without --tokenizer {plain_requests:?}, with {client_requests:?}");
    let texts = |o: &ponder::strategy::Outcome| -> Vec<String> {
        o.tree
            .as_ref()
            .expect("MCTS has a tree")
            .nodes
            .iter()
            .map(|n| n.text.clone())
            .collect()
    };
    assert_eq!(client.answer, plain.answer);
    assert_eq!(texts(&client), texts(&plain));
    assert_eq!(client.usage.generated_tokens, plain.usage.generated_tokens);
    assert_eq!(
        client_requests.get("/v1/completions"),
        plain_requests.get("/v1/completions")
    );
    // One /tokenize per prompt and per step cut at its delimiter without the tokenizer; none with.
    let tokenized = plain_requests.get("/tokenize").copied().unwrap_or(0);
    assert!(tokenized > 2, "{plain_requests:?}");
    assert_eq!(
        client_requests.get("/tokenize"),
        None,
        "{client_requests:?}"
    );
}

#[test]
fn a_wrong_broken_or_missing_tokenizer_file_is_refused_with_a_typed_error() {
    let url = shared().url();
    // The served model's tokenizer with the ids of two tokens swapped: the first probe's first
    // token is where it shows.
    let served = common::model_path();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exported_tokenizer(&served)).unwrap())
            .unwrap();
    let vocab = json["model"]["vocab"].as_object_mut().unwrap();
    let (a, b) = (vocab["The"].clone(), vocab["Ġanswer"].clone());
    vocab.insert("The".into(), b.clone());
    vocab.insert("Ġanswer".into(), a.clone());
    let wrong = std::env::temp_dir().join(format!(
        "ponder-swapped-tokenizer-{}.json",
        std::process::id()
    ));
    std::fs::write(&wrong, json.to_string()).unwrap();
    let err = RemoteLm::connect(&with_tokenizer(url.clone(), &wrong)).unwrap_err();
    match &err {
        Error::Load(LoadError::Tokenizer(TokenizerError::Mismatch {
            path,
            text,
            add_special,
            position,
            client,
            server,
            ..
        })) => {
            assert_eq!(path, &wrong);
            assert_eq!(text, "The answer is 42.");
            assert!(!add_special);
            assert_eq!(*position, 0);
            assert_eq!(client.map(i64::from), b.as_i64());
            assert_eq!(server.map(i64::from), a.as_i64());
        }
        other => panic!("expected TokenizerMismatch, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("export-tokenizer.py") && message.contains("--tokenizer"),
        "{message}"
    );

    // A file that is not there, or not a tokenizer.json: refused before any request (through
    // the CLI too: crates/ponder-cli/tests/remote.rs).
    let missing = std::env::temp_dir().join("ponder-no-such-tokenizer.json");
    let err = RemoteLm::connect(&with_tokenizer(url.clone(), &missing)).unwrap_err();
    assert!(
        matches!(&err, Error::Load(LoadError::Tokenizer(TokenizerError::NotFound { path })) if path == &missing),
        "{err}"
    );
    // Cut short: not JSON any more.
    let text = json.to_string();
    std::fs::write(&wrong, &text[..text.len() / 2]).unwrap();
    let err = RemoteLm::connect(&with_tokenizer(url, &wrong)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Load(LoadError::Tokenizer(TokenizerError::Unreadable { .. }))
        ),
        "{err}"
    );
    let _ = std::fs::remove_file(&wrong);
}
