//! The C ABI called from Rust where a C program would need more set-up: the remote backend
//! through a real llama.cpp `llama-server` (the C programs themselves are in `tests/c/`).

#[path = "../../../tests/common/mod.rs"]
mod common;

use super::*;
use common::server::Server;

const QUESTION: &str =
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?";

fn shared() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| Server::start(4))
}

#[test]
fn the_c_abi_takes_remote_settings_and_solves_through_them() {
    let config = format!(
        r#"{{"backend": "remote", "remote": {{"urls": ["{}"], "timeout_ms": 60000}}}}"#,
        shared().url()
    );
    let mut engine: *mut ponder_engine = std::ptr::null_mut();
    let status = unsafe { ponder_engine_new(config.as_ptr().cast(), config.len(), &mut engine) };
    assert_eq!(status, ponder_status::Ok);
    let strategy =
        r#"{"type": "mcts", "k": 2, "step": {"max_tokens": 32}, "budget": {"tokens": 96}}"#;
    let mut outcome: *mut ponder_outcome = std::ptr::null_mut();
    let status = unsafe {
        ponder_engine_solve(
            engine,
            QUESTION.as_ptr().cast(),
            QUESTION.len(),
            strategy.as_ptr().cast(),
            strategy.len(),
            None,
            std::ptr::null_mut(),
            &mut outcome,
        )
    };
    assert_eq!(status, ponder_status::Ok);
    let mut n = 0usize;
    let status = unsafe { ponder_outcome_trace_json(outcome, std::ptr::null_mut(), 0, &mut n) };
    assert_eq!(status, ponder_status::BufferTooSmall);
    let mut buf = vec![0u8; n + 1];
    let status =
        unsafe { ponder_outcome_trace_json(outcome, buf.as_mut_ptr().cast(), buf.len(), &mut n) };
    assert_eq!(status, ponder_status::Ok);
    let trace: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    // The served model's name, and (the file being on this machine) its sha256.
    let model = common::model_path();
    assert_eq!(
        trace["provenance"]["model"],
        format!("remote:{}", model.display())
    );
    assert_eq!(
        trace["provenance"]["model_sha256"],
        ponder::trace::sha256_file(&model).unwrap()
    );
    unsafe {
        ponder_outcome_free(outcome);
        ponder_engine_free(engine);
    }
}
