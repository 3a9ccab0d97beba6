//! The flag groups several commands share: the model and the backend it runs on
//! ([`ModelArgs`]), the strategy and the per-strategy override policy ([`StrategyArgs`]), and the
//! value enums of every choice ([`choice`]).

pub mod choice;
pub mod model;
mod strategy;

pub use model::{no_gpu_reason, ModelArgs};
pub use strategy::StrategyArgs;
