//! `cargo fuzz run trace_json`: any text imported as a trace (`traces.jsonl` lines) is refused or
//! exported to every training format without a panic, whatever its node ids and parents say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponder::trace::export::{self, ExportOptions, Format};
use ponder::trace::Trace;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(trace) = Trace::from_json(text) else {
        return;
    };
    for oracle in [false, true] {
        let options = ExportOptions {
            oracle,
            ..ExportOptions::default()
        };
        for format in [
            Format::Sft,
            Format::Preference,
            Format::Prm,
            Format::Correction,
        ] {
            let _ = export::records(&trace, format, &options);
        }
    }
});
