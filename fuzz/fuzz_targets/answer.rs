//! `cargo fuzz run answer`: answer extraction and comparison never panic, and an extracted
//! answer is always equivalent to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponder::reward::answer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(a) = answer::extract(text) {
        let _ = answer::normalize(&a);
        assert!(answer::equivalent(&a, &a), "{a:?}");
    }
    let mid = text
        .char_indices()
        .map(|(i, _)| i)
        .nth(text.chars().count() / 2)
        .unwrap_or(0);
    let (x, y) = text.split_at(mid);
    assert_eq!(answer::equivalent(x, y), answer::equivalent(y, x));
});
