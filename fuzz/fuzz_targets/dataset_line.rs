//! `cargo fuzz run dataset_line`: any line of a dataset file becomes a problem or a message,
//! never a panic; an accepted problem has a non-empty question.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponder::eval::parse_problem;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        match parse_problem(line) {
            Ok(p) => {
                assert!(!p.question.trim().is_empty());
                let _ = p.validate();
            }
            Err(message) => assert!(!message.is_empty()),
        }
    }
});
