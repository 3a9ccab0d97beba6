//! `cargo fuzz run c_abi`: the C entry points that take strings, given any bytes (not UTF-8, not
//! JSON, unknown fields, wrong types), return a status and never crash (and the problem JSON of
//! `ponder_engine_solve_problem`, read without an engine). No model is loaded
//! unless the input names the default one.
#![no_main]

use libfuzzer_sys::fuzz_target;
// The C ABI crate has no rlib (it is named `ponder` too), so its source comes in as a module.
#[path = "../../crates/ponder-capi/src/lib.rs"]
#[allow(dead_code)]
mod capi;
use capi::*;

fuzz_target!(|data: &[u8]| {
    let mut engine: *mut ponder_engine = std::ptr::null_mut();
    let status = unsafe { ponder_engine_new(data.as_ptr().cast(), data.len(), &mut engine) };
    if status == ponder_status::Ok {
        unsafe { ponder_engine_free(engine) };
    } else {
        assert!(engine.is_null());
    }
    let code = data.first().copied().unwrap_or(0) as u32;
    assert!(!ponder_status_message(code).is_null());
    let mut n = 0usize;
    let mut buf = [0u8; 64];
    let s = unsafe { ponder_last_error(buf.as_mut_ptr().cast(), buf.len(), &mut n) };
    assert!(s == ponder_status::Ok || s == ponder_status::BufferTooSmall);
    // Solving on no engine with any question and strategy bytes: NULL_ARGUMENT, not a crash.
    let mut out: *mut ponder_outcome = std::ptr::null_mut();
    let half = data.len() / 2;
    let s = unsafe {
        ponder_engine_solve(
            std::ptr::null(),
            data.as_ptr().cast(),
            half,
            data[half..].as_ptr().cast(),
            data.len() - half,
            None,
            std::ptr::null_mut(),
            &mut out,
        )
    };
    assert_eq!(s, ponder_status::NullArgument);
    // A problem's JSON (`ponder_engine_solve_problem`): a problem or a typed status, never a crash.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(status) = problem_from_json(text) {
            assert!(matches!(
                status,
                ponder_status::InvalidJson | ponder_status::InvalidConfig
            ));
        }
    }
});
