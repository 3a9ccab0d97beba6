//! What the step-level tree searches ([`mcts`](super::mcts), [`beam`](super::beam)) share: the
//! search tree they record, their budget, how a step is sampled and checked, and how nodes are
//! judged in place.
//!
//! A tree node is one reasoning step. Its tokens live in the [`Lm`]'s prefix tree as a child of
//! its parent step's node, so the question and the steps above it are never decoded again: a
//! child costs its own tokens, and the self-judge's verdict on it costs the few tokens of the
//! inline question ([`Judge::score_inline`]) appended to it and released after.

mod config;
mod record;
mod search;

pub use config::{Budget, Limit, StepConfig, StopReason, ValueSignal};
pub(crate) use record::root_path;
pub use record::{RolloutRecord, SearchTree, TreeNode};
pub(crate) use search::Search;

#[cfg(doc)]
use crate::{lm::Lm, reward::judge::Judge};
