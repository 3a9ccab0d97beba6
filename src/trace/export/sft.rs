//! Supervised fine-tuning records: `{"id", "source_strategy", "oracle", "messages": [...]}`, TRL's
//! conversational format.
//!
//! With `oracle` (and a reference), every distinct finished path whose answer is right; else the
//! chosen path, when it ends with an answer.

use serde::{Deserialize, Serialize};

use super::{conversation, oracle_mode, ExportOptions, RecordHead};
use crate::lm::Message;
use crate::trace::Trace;

/// One SFT record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftRecord {
    /// Problem id, strategy, oracle.
    #[serde(flatten)]
    pub head: RecordHead,
    /// The prompt's messages and the assistant's solution.
    pub messages: Vec<Message>,
}

/// The SFT records of `trace`.
pub fn records(trace: &Trace, options: &ExportOptions) -> Vec<SftRecord> {
    let oracle = oracle_mode(trace, options);
    let leaves: Vec<usize> = if oracle {
        trace
            .candidates
            .iter()
            .copied()
            .filter(|&c| trace.nodes[c].terminal && trace.nodes[c].correct == Some(true))
            .collect()
    } else {
        trace
            .chosen
            .last()
            .copied()
            .filter(|&c| trace.nodes[c].terminal && trace.nodes[c].answer.is_some())
            .into_iter()
            .collect()
    };
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for leaf in leaves {
        let text = trace.text(leaf).trim().to_string();
        if text.is_empty() || seen.contains(&text) {
            continue;
        }
        seen.push(text.clone());
        out.push(SftRecord {
            head: RecordHead::of(trace, oracle),
            messages: conversation(trace, leaf, text),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::export::tests::tree;

    #[test]
    fn chosen_path_or_every_right_path() {
        let t = tree();
        let plain = records(&t, &ExportOptions::default());
        assert_eq!(plain.len(), 1);
        assert!(!plain[0].head.oracle);
        assert_eq!(plain[0].messages[1].content, "a\n\na1 The answer is 4.");
        let oracle = records(&t, &ExportOptions::by_oracle());
        assert_eq!(oracle.len(), 1);
        assert!(oracle[0].head.oracle);
        assert_eq!(oracle[0].messages[0].role, "user");
    }
}
