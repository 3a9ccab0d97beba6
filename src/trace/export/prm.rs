//! Process-reward records: `{"id", "source_strategy", "oracle", "prompt", "completions",
//! "labels"}`, TRL's stepwise-supervision format — one per finished path, a label per step.
//!
//! With `oracle` (and a reference), the labels are ReST-MCTS*'s inferred values
//! ([`super::step_values`]); without, the self-judge's score of each step (paths with an unjudged
//! step are left out). Labels are floats, or booleans `label >= threshold`.

use serde::{Deserialize, Serialize};

use super::{oracle_mode, step_values, ExportOptions, LabelKind, Reach, RecordHead};
use crate::trace::Trace;

/// Step labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Labels {
    /// Values in [0, 1].
    Float(Vec<f64>),
    /// Good (true) or bad (false).
    Bool(Vec<bool>),
}

/// One PRM record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrmRecord {
    /// Problem id, strategy, oracle.
    #[serde(flatten)]
    pub head: RecordHead,
    /// The user's message.
    pub prompt: String,
    /// The steps, in order.
    pub completions: Vec<String>,
    /// One label per step.
    pub labels: Labels,
}

/// The PRM records of `trace`.
pub fn records(trace: &Trace, options: &ExportOptions) -> Vec<PrmRecord> {
    let oracle = oracle_mode(trace, options);
    let reach = Reach::of(trace);
    let prompt = trace
        .prompt
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or_else(|| trace.question.clone(), |m| m.content.clone());
    let mut out = Vec::new();
    let mut seen: Vec<Vec<String>> = Vec::new();
    for &leaf in &trace.candidates {
        // A message after a user turn (a self-correction's later attempt) answers a conversation,
        // which this format's one prompt string cannot hold: its SFT and preference records do.
        if !trace.nodes[leaf].terminal || trace.message_start(leaf) != 0 {
            continue;
        }
        let completions: Vec<String> = trace.steps(leaf).into_iter().map(str::to_string).collect();
        if seen.contains(&completions) {
            continue;
        }
        let values: Vec<f64> = if oracle {
            step_values(trace, &reach, leaf)
        } else {
            let judged: Option<Vec<f64>> = trace
                .message_path(leaf)
                .into_iter()
                .skip(1)
                .map(|i| trace.nodes[i].judge)
                .collect();
            match judged {
                Some(v) => v,
                None => continue,
            }
        };
        seen.push(completions.clone());
        let labels = match options.labels {
            LabelKind::Float => Labels::Float(values),
            LabelKind::Bool => {
                Labels::Bool(values.iter().map(|&v| v >= options.threshold).collect())
            }
        };
        out.push(PrmRecord {
            head: RecordHead::of(trace, oracle),
            prompt: prompt.clone(),
            completions,
            labels,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::export::tests::tree;

    #[test]
    fn oracle_labels_are_rest_mcts_values_and_judge_labels_the_scores() {
        let t = tree();
        let oracle = records(
            &t,
            &ExportOptions {
                oracle: true,
                ..ExportOptions::default()
            },
        );
        let labels: Vec<Labels> = oracle.iter().map(|r| r.labels.clone()).collect();
        assert_eq!(
            labels,
            [
                Labels::Float(vec![0.5, 1.0]),
                Labels::Float(vec![0.5, 0.0]),
                Labels::Float(vec![0.0, 0.0]),
            ]
        );
        assert_eq!(oracle[0].completions, ["a\n\n", "a1 The answer is 4."]);
        let bools = records(
            &t,
            &ExportOptions {
                oracle: true,
                labels: LabelKind::Bool,
                ..ExportOptions::default()
            },
        );
        assert_eq!(bools[1].labels, Labels::Bool(vec![true, false]));
        let judged = records(&t, &ExportOptions::default());
        assert_eq!(judged[2].labels, Labels::Float(vec![0.4, 0.6]));
        assert!(!judged[2].head.oracle);
        let json = serde_json::to_value(&judged[0]).unwrap();
        assert_eq!(json["labels"], serde_json::json!([0.7, 0.9]));
        assert_eq!(json["id"], "p1");
        assert_eq!(json["source_strategy"], "mcts");
    }
}
