//! Process-reward records: `{"id", "source_strategy", "oracle", "prompt", "completions",
//! "labels", "values"}`, TRL's stepwise-supervision format — one per finished path, a label per
//! step.
//!
//! `values` are the steps' values: with `oracle` (and a reference), ReST-MCTS*'s inferred values
//! ([`super::step_values`]); without, the self-judge's score of each step (paths with an unjudged
//! step are left out). `labels` are booleans `value >= threshold` by default, the type TRL's
//! `PRMTrainer` reads (it casts each label with `int()`, so a float label 0.9 would train as a bad
//! step); [`LabelKind::Float`] makes them the values instead, for a trainer that regresses on them.
//!
//! A completion is a step without the blank line that ends it: TRL puts its `step_separator`
//! after every step and labels the separator's last token, so with `step_separator="\n\n"` the
//! trainer reads the text the model wrote.

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
    /// The steps, in order, each without its trailing whitespace.
    pub completions: Vec<String>,
    /// One label per step.
    pub labels: Labels,
    /// One value in [0, 1] per step (what `labels` are thresholded from).
    pub values: Vec<f64>,
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
        let completions: Vec<String> = trace
            .steps(leaf)
            .into_iter()
            .map(|s| s.trim_end().to_string())
            .collect();
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
            LabelKind::Float => Labels::Float(values.clone()),
            LabelKind::Bool => {
                Labels::Bool(values.iter().map(|&v| v >= options.threshold).collect())
            }
        };
        out.push(PrmRecord {
            head: RecordHead::of(trace, oracle),
            prompt: prompt.clone(),
            completions,
            labels,
            values,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::export::tests::tree;

    #[test]
    fn oracle_values_are_rest_mcts_values_and_judge_values_the_scores() {
        let t = tree();
        let float = |options: ExportOptions| {
            records(
                &t,
                &ExportOptions {
                    labels: LabelKind::Float,
                    ..options
                },
            )
        };
        let oracle = float(ExportOptions::by_oracle());
        let labels: Vec<Labels> = oracle.iter().map(|r| r.labels.clone()).collect();
        assert_eq!(
            labels,
            [
                Labels::Float(vec![0.5, 1.0]),
                Labels::Float(vec![0.5, 0.0]),
                Labels::Float(vec![0.0, 0.0]),
            ]
        );
        let judged = float(ExportOptions::default());
        assert_eq!(judged[2].labels, Labels::Float(vec![0.4, 0.6]));
        assert!(!judged[2].head.oracle);
        let json = serde_json::to_value(&judged[0]).unwrap();
        assert_eq!(json["labels"], serde_json::json!([0.7, 0.9]));
        assert_eq!(json["id"], "p1");
        assert_eq!(json["source_strategy"], "mcts");
    }

    /// What TRL's `PRMTrainer` reads: booleans (it casts each label with `int()`, so 0.5 would be a
    /// bad step), one per step, and steps without the separator it puts after each.
    #[test]
    fn by_default_labels_are_booleans_beside_the_values_and_steps_lose_their_blank_line() {
        let t = tree();
        let oracle = records(&t, &ExportOptions::by_oracle());
        assert_eq!(oracle[0].completions, ["a", "a1 The answer is 4."]);
        assert_eq!(oracle[1].labels, Labels::Bool(vec![true, false]));
        assert_eq!(oracle[1].values, [0.5, 0.0]);
        let json = serde_json::to_value(&oracle[0]).unwrap();
        assert_eq!(json["labels"], serde_json::json!([true, true]));
        assert_eq!(json["values"], serde_json::json!([0.5, 1.0]));
        // The threshold decides: at .6 the first step (.5) is bad.
        let strict = records(
            &t,
            &ExportOptions {
                oracle: true,
                threshold: 0.6,
                ..ExportOptions::default()
            },
        );
        assert_eq!(strict[0].labels, Labels::Bool(vec![false, true]));
        // Judge labels: a .7, a1 .9 (both good); b .4 (bad), b1 .6.
        let judged = records(&t, &ExportOptions::default());
        assert_eq!(judged[2].labels, Labels::Bool(vec![false, true]));
        assert_eq!(judged[2].values, [0.4, 0.6]);
        for r in oracle.iter().chain(&judged) {
            let Labels::Bool(labels) = &r.labels else {
                panic!("{:?}", r.labels)
            };
            assert_eq!(labels.len(), r.completions.len());
            assert_eq!(r.values.len(), r.completions.len());
            assert!(r.completions.iter().all(|c| c.trim_end() == c));
        }
    }
}
