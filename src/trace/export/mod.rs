//! Traces to training records, one JSONL line each, in the dataset formats trainers already read
//! (TRL's conversational SFT, preference and stepwise-supervision formats):
//!
//! - [`sft`]: `{"messages": [...]}` — the chosen path, or with `oracle` every distinct path whose
//!   answer is right;
//! - [`preference`]: `{"prompt", "chosen", "rejected"}` — pairs of finished paths, and of sibling
//!   steps, whose values differ by at least `margin` (with `oracle`: right against wrong, and
//!   steps from which a right answer is reachable against steps from which it is not);
//! - [`prm`]: `{"prompt", "completions", "labels", "values"}` — every finished path with a value
//!   per step: with `oracle`, inferred from the tree as ReST-MCTS* does ([`step_values`]); without,
//!   the self-judge's step scores; labels are the values thresholded to booleans;
//! - [`correction`]: `{"messages": [...]}` — a wrong path cut at its first bad step, a reflection
//!   sentence, then the right continuation from the last good step.
//!
//! Every record carries `id` (the problem's), `source_strategy` and `oracle` (whether the
//! reference answer made its labels).

pub mod correction;
pub mod preference;
pub mod prm;
pub mod sft;

use serde::{Deserialize, Serialize};

use super::{NodeKind, Trace};
use crate::error::ConfigError;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// See [`sft`].
    Sft,
    /// See [`preference`].
    Preference,
    /// See [`prm`].
    Prm,
    /// See [`correction`].
    Correction,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] = [Self::Sft, Self::Preference, Self::Prm, Self::Correction];

    /// The format's name (also its file's stem).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Preference => "preference",
            Self::Prm => "prm",
            Self::Correction => "correction",
        }
    }

    /// Parses a comma-separated list (`sft,preference,prm,correction`), without duplicates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the unknown format.
    pub fn parse_list(list: &str) -> Result<Vec<Format>, ConfigError> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let f = Self::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    ConfigError::new(
                        "formats",
                        format!("unknown format {name:?}; use sft, preference, prm, correction"),
                    )
                })?;
            if !out.contains(&f) {
                out.push(f);
            }
        }
        if out.is_empty() {
            return Err(ConfigError::new(
                "formats",
                "no format given; use e.g. --formats sft,preference,prm,correction",
            ));
        }
        Ok(out)
    }
}

/// PRM labels as booleans (TRL's type) or as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// Values in [0, 1].
    Float,
    /// `value >= threshold`: what TRL's `PRMTrainer` reads.
    #[default]
    Bool,
}

/// How records are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportOptions {
    /// Label with the reference answer (oracle mode); traces without one fall back to the judge.
    pub oracle: bool,
    /// Preference pairs need values at least this far apart.
    pub margin: f64,
    /// PRM labels as thresholded booleans (the default) or as the values.
    pub labels: LabelKind,
    /// A step is good when its value (oracle) or judge score is at least this.
    pub threshold: f64,
    /// The sentence spliced after a bad step in correction records.
    pub reflection: String,
    /// Preference pairs per problem, at most (largest gaps first).
    pub max_pairs: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            oracle: false,
            margin: 0.2,
            labels: LabelKind::Bool,
            threshold: 0.5,
            reflection: "Wait, this step is wrong. Let me go back and correct it.".into(),
            max_pairs: 8,
        }
    }
}

impl ExportOptions {
    /// The defaults, labelling with the reference answer ([`ExportOptions::oracle`]).
    pub fn by_oracle() -> Self {
        Self {
            oracle: true,
            ..Self::default()
        }
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.margin) {
            return Err(ConfigError::new(
                "margin",
                format!("{} is outside [0, 1]", self.margin),
            ));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(ConfigError::new(
                "threshold",
                format!("{} is outside [0, 1]", self.threshold),
            ));
        }
        if self.reflection.trim().is_empty() {
            return Err(ConfigError::new(
                "reflection",
                "is empty; correction records need a reflection sentence",
            ));
        }
        Ok(())
    }
}

/// The fields every record starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordHead {
    /// The problem's id.
    pub id: String,
    /// The strategy that made the trace.
    pub source_strategy: String,
    /// Whether the reference answer made the labels.
    pub oracle: bool,
}

impl RecordHead {
    fn of(trace: &Trace, oracle: bool) -> Self {
        Self {
            id: trace.id.clone(),
            source_strategy: trace.strategy.clone(),
            oracle,
        }
    }
}

/// The records of `trace` in `format`, as JSON values (one JSONL line each).
pub fn records(trace: &Trace, format: Format, options: &ExportOptions) -> Vec<serde_json::Value> {
    fn values<T: Serialize>(records: Vec<T>) -> Vec<serde_json::Value> {
        records
            .into_iter()
            .map(|r| serde_json::to_value(r).expect("records are plain data"))
            .collect()
    }
    match format {
        Format::Sft => values(sft::records(trace, options)),
        Format::Preference => values(preference::records(trace, options)),
        Format::Prm => values(prm::records(trace, options)),
        Format::Correction => values(correction::records(trace, options)),
    }
}

/// Whether oracle labels apply: asked for, and the trace has a reference.
fn oracle_mode(trace: &Trace, options: &ExportOptions) -> bool {
    options.oracle && trace.reference.is_some()
}

/// What the reference answer says about each node of a trace.
#[derive(Debug, Clone)]
pub struct Reach {
    /// A right finished solution is in the node's subtree (itself included), within the same
    /// assistant message (a user turn below the node starts another).
    pub reachable: Vec<bool>,
    /// Steps from the node down to the nearest right finished solution (when reachable).
    pub distance: Vec<Option<usize>>,
}

impl Reach {
    /// Computes reachability bottom-up (children have larger ids than their parents).
    pub fn of(trace: &Trace) -> Self {
        let n = trace.nodes.len();
        let mut distance: Vec<Option<usize>> = vec![None; n];
        for node in trace.nodes.iter().rev() {
            if node.terminal && node.correct == Some(true) {
                distance[node.id] = Some(0);
            }
            // A right answer after a user turn is the next message's: it does not make the
            // steps of the message above reach one.
            if node.kind == NodeKind::UserTurn {
                continue;
            }
            if let (Some(p), Some(d)) = (node.parent, distance[node.id]) {
                let via = d + 1;
                distance[p] = Some(distance[p].map_or(via, |e| e.min(via)));
            }
        }
        Self {
            reachable: distance.iter().map(Option::is_some).collect(),
            distance,
        }
    }
}

/// ReST-MCTS*'s inferred value of each step of the assistant message ending at `leaf`
/// ([`Trace::message_path`], its start excluded), from
/// the reference answer: with `v₀ = 0`, step k of K gets
/// `v_k = max(v_{k−1} + (1 − v_{k−1}) / (m_k + 1) · (1 − 2 r_k), 0)`, where `r_k = 0` and `m_k`
/// is the number of steps from step k to the nearest right answer in its subtree when one is
/// reachable, else `r_k = 1` and `m_k = K − k` (the steps left on this path). A step that is a
/// right answer gets 1; a step past which no right answer lies pulls the value towards 0.
pub fn step_values(trace: &Trace, reach: &Reach, leaf: usize) -> Vec<f64> {
    let path: Vec<usize> = trace.message_path(leaf).into_iter().skip(1).collect();
    let total = path.len();
    let mut v: f64 = 0.0;
    let mut out = Vec::with_capacity(total);
    for (i, &id) in path.iter().enumerate() {
        let k = i + 1;
        let (m, r) = match reach.distance[id] {
            Some(d) => (d as f64, 0.0),
            None => ((total - k) as f64, 1.0),
        };
        v = (v + (1.0 - v) / (m + 1.0) * (1.0 - 2.0 * r)).max(0.0);
        out.push(v);
    }
    out
}

/// The conversation before the assistant message ending at `leaf` ([`Trace::context`]) followed
/// by an assistant message with `answer`.
fn conversation(trace: &Trace, leaf: usize, answer: String) -> Vec<crate::lm::Message> {
    let mut messages = trace.context(leaf);
    messages.push(crate::lm::Message::new("assistant", answer));
    messages
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lm::{Message, Usage};
    use crate::strategy::StrategyConfig;
    use crate::trace::{Provenance, TraceNode};

    /// A hand-made tree:
    ///
    /// ```text
    /// root ─ 1 "a" ─┬─ 3 "a1" (answer 4, right)
    ///               └─ 4 "a2" (answer 5, wrong)
    ///      └ 2 "b" ─── 5 "b1" (answer 6, wrong)
    /// ```
    pub(crate) fn tree() -> Trace {
        let node = |id, parent, text: &str, judge, answer: Option<&str>, correct| TraceNode {
            id,
            parent,
            text: text.into(),
            kind: crate::trace::NodeKind::Generated,
            tokens: 3,
            logprob: -1.0,
            judge,
            visits: 1,
            value: judge.unwrap_or(0.0),
            terminal: answer.is_some(),
            answer: answer.map(str::to_string),
            correct,
        };
        Trace {
            format: crate::trace::TRACE_FORMAT,
            id: "p1".into(),
            question: "q".into(),
            reference: Some("4".into()),
            prompt: vec![Message::user("q?")],
            strategy: "mcts".into(),
            nodes: vec![
                node(0, None, "", None, None, None),
                node(1, Some(0), "a\n\n", Some(0.7), None, None),
                node(2, Some(0), "b\n\n", Some(0.4), None, None),
                node(
                    3,
                    Some(1),
                    "a1 The answer is 4.",
                    Some(0.9),
                    Some("4"),
                    Some(true),
                ),
                node(
                    4,
                    Some(1),
                    "a2 The answer is 5.",
                    Some(0.3),
                    Some("5"),
                    Some(false),
                ),
                node(
                    5,
                    Some(2),
                    "b1 The answer is 6.",
                    Some(0.6),
                    Some("6"),
                    Some(false),
                ),
            ],
            candidates: vec![3, 4, 5],
            chosen: vec![0, 1, 3],
            answer: Some("4".into()),
            correct: Some(true),
            stop: None,
            usage: Usage::default(),
            provenance: Provenance {
                model: "m.gguf".into(),
                model_sha256: "00".into(),
                ponder_version: "0".into(),
                strategy: StrategyConfig::default_for("mcts").unwrap(),
                seed: 0,
                oracle_guided: false,
            },
            r3: None,
        }
    }

    #[test]
    fn rest_mcts_values_by_hand() {
        let t = tree();
        let reach = Reach::of(&t);
        assert_eq!(reach.reachable, [true, true, false, true, false, false]);
        assert_eq!(reach.distance[0], Some(2));
        // a (1 step from the right answer): 0 + 1/2 = .5; a1 (right): .5 + .5/1 = 1.
        assert_eq!(step_values(&t, &reach, 3), [0.5, 1.0]);
        // a2 (wrong, last step, m = 0): max(.5 − .5, 0) = 0.
        assert_eq!(step_values(&t, &reach, 4), [0.5, 0.0]);
        // b (no right answer below, one step left): max(0 − 1/2, 0) = 0; b1: 0.
        assert_eq!(step_values(&t, &reach, 5), [0.0, 0.0]);
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            Format::parse_list("sft, prm,sft").unwrap(),
            [Format::Sft, Format::Prm]
        );
        assert_eq!(Format::parse_list("dpo").unwrap_err().field, "formats");
        assert!(Format::parse_list("").is_err());
    }
}
