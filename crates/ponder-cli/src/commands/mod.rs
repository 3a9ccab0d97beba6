//! One module per command, each with its flags (`Args`) and what it does (`exec`), in the manner
//! of cargo's `src/bin/cargo/commands/`.

pub mod bench;
pub mod devices;
pub mod eval;
pub mod generate;
pub mod serve;
pub mod solve;
pub mod synth;
