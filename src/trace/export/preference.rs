//! Preference records: `{"id", "source_strategy", "oracle", "kind", "gap", "prompt", "chosen",
//! "rejected"}`, TRL's conversational preference format (`prompt` is the conversation before the
//! two answers: the prompt's messages, and for a self-correction's later attempt the turns before
//! it; `chosen` and `rejected` one assistant message each).
//!
//! A trace with R3 scores ([`Trace::r3`], `ponder synth --reward r3`) gives `path` pairs only,
//! two candidates whose R3 differ by at least `margin` (nats per reference token), with
//! `"reward": "r3"` and `oracle: true` (R3 is computed from the reference).
//!
//! Otherwise two kinds of pair, largest gaps first, at most `max_pairs`:
//! - `path`: two finished paths — with `oracle`, a right answer against a wrong one; else two
//!   whose values differ by at least `margin`;
//! - `step`: two sibling steps after the same partial solution (both messages hold the partial
//!   solution and the step) — with `oracle`, a step from which a right answer is reachable against
//!   one from which none is; else two whose judge scores differ by at least `margin`.

use serde::{Deserialize, Serialize};

use super::{oracle_mode, ExportOptions, Reach, RecordHead};
use crate::lm::Message;
use crate::reward::r3::R3Scores;
use crate::trace::Trace;

/// What a pair compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairKind {
    /// Two finished solutions.
    Path,
    /// Two sibling steps.
    Step,
}

/// One preference record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferenceRecord {
    /// Problem id, strategy, oracle.
    #[serde(flatten)]
    pub head: RecordHead,
    /// What the pair compares.
    pub kind: PairKind,
    /// The difference of the two values.
    pub gap: f64,
    /// The conversation before the two answers ([`Trace::context`]).
    pub prompt: Vec<Message>,
    /// The preferred assistant message.
    pub chosen: Vec<Message>,
    /// The other one.
    pub rejected: Vec<Message>,
    /// The reward that ranked the pair, when not the default one (`"r3"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<String>,
}

/// The preference records of `trace`.
pub fn records(trace: &Trace, options: &ExportOptions) -> Vec<PreferenceRecord> {
    if let Some(r3) = &trace.r3 {
        return by_r3(trace, r3, options);
    }
    let oracle = oracle_mode(trace, options);
    let reach = Reach::of(trace);
    // (gap, kind, better node, worse node), in discovery order.
    let mut pairs: Vec<(f64, PairKind, usize, usize)> = Vec::new();
    let enough = |gap: f64| {
        if oracle {
            gap > 0.5
        } else {
            gap >= options.margin && gap > 0.0
        }
    };

    let finished: Vec<usize> = trace
        .candidates
        .iter()
        .copied()
        .filter(|&c| trace.nodes[c].terminal)
        .collect();
    let path_value = |id: usize| {
        if oracle {
            f64::from(u8::from(trace.nodes[id].correct == Some(true)))
        } else {
            trace.nodes[id].value
        }
    };
    for (i, &a) in finished.iter().enumerate() {
        for &b in &finished[i + 1..] {
            // A pair answers one conversation: a self-correction's attempts after different
            // turns are not compared.
            if trace.message_start(a) != trace.message_start(b) {
                continue;
            }
            let (va, vb) = (path_value(a), path_value(b));
            let (hi, lo) = if va >= vb { (a, b) } else { (b, a) };
            if enough((va - vb).abs()) {
                pairs.push(((va - vb).abs(), PairKind::Path, hi, lo));
            }
        }
    }

    let step_value = |id: usize| {
        if oracle {
            Some(f64::from(u8::from(reach.reachable[id])))
        } else {
            trace.nodes[id].judge
        }
    };
    for siblings in trace.children() {
        for (i, &a) in siblings.iter().enumerate() {
            for &b in &siblings[i + 1..] {
                // Only steps the model chose between: not inserted text or user turns.
                if !trace.nodes[a].kind.is_generated() || !trace.nodes[b].kind.is_generated() {
                    continue;
                }
                let (Some(va), Some(vb)) = (step_value(a), step_value(b)) else {
                    continue;
                };
                let (hi, lo) = if va >= vb { (a, b) } else { (b, a) };
                if enough((va - vb).abs()) {
                    pairs.push(((va - vb).abs(), PairKind::Step, hi, lo));
                }
            }
        }
    }

    // Largest gaps first; equal gaps keep discovery order (paths before steps).
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut out = Vec::new();
    for (gap, kind, hi, lo) in pairs {
        if out.len() >= options.max_pairs {
            break;
        }
        let (chosen, rejected) = (trace.text(hi), trace.text(lo));
        if chosen.trim() == rejected.trim() {
            continue;
        }
        let assistant = |text: String| vec![Message::new("assistant", text.trim().to_string())];
        out.push(PreferenceRecord {
            head: RecordHead::of(trace, oracle),
            kind,
            gap,
            prompt: trace.context(hi),
            chosen: assistant(chosen),
            rejected: assistant(rejected),
            reward: None,
        });
    }
    out
}

/// Path pairs ranked by R3, largest gaps first.
fn by_r3(trace: &Trace, r3: &R3Scores, options: &ExportOptions) -> Vec<PreferenceRecord> {
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, (&a, &ra)) in trace.candidates.iter().zip(&r3.r3).enumerate() {
        for (&b, &rb) in trace.candidates[i + 1..].iter().zip(&r3.r3[i + 1..]) {
            let gap = (ra - rb).abs();
            if gap >= options.margin && gap > 0.0 {
                let (hi, lo) = if ra >= rb { (a, b) } else { (b, a) };
                pairs.push((gap, hi, lo));
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
    let assistant = |text: String| vec![Message::new("assistant", text.trim().to_string())];
    pairs
        .into_iter()
        .map(|(gap, hi, lo)| (gap, hi, trace.text(hi), trace.text(lo)))
        .filter(|(_, _, c, r)| c.trim() != r.trim())
        .take(options.max_pairs)
        .map(|(gap, hi, chosen, rejected)| PreferenceRecord {
            head: RecordHead::of(trace, true),
            kind: PairKind::Path,
            gap,
            prompt: trace.context(hi),
            chosen: assistant(chosen),
            rejected: assistant(rejected),
            reward: Some("r3".into()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::export::tests::tree;

    #[test]
    fn pairs_by_oracle_and_by_value() {
        let t = tree();
        let oracle = records(&t, &ExportOptions::by_oracle());
        // Paths: a1 (right) over a2 and over b1; steps: a (reaches 4) over b, a1 over a2.
        let kinds: Vec<(PairKind, &str, &str)> = oracle
            .iter()
            .map(|r| {
                (
                    r.kind,
                    r.chosen[0].content.as_str(),
                    r.rejected[0].content.as_str(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    PairKind::Path,
                    "a\n\na1 The answer is 4.",
                    "a\n\na2 The answer is 5."
                ),
                (
                    PairKind::Path,
                    "a\n\na1 The answer is 4.",
                    "b\n\nb1 The answer is 6."
                ),
                (PairKind::Step, "a", "b"),
                (
                    PairKind::Step,
                    "a\n\na1 The answer is 4.",
                    "a\n\na2 The answer is 5."
                ),
            ]
        );
        // By value with margin .2: paths a1 .9 > a2 .3 (.6), a1 > b1 .6 (.3), b1 > a2 (.3);
        // steps a .7 > b .4 (.3), a1 > a2 (.6).
        let plain = records(&t, &ExportOptions::default());
        let gaps: Vec<f64> = plain
            .iter()
            .map(|r| (r.gap * 100.0).round() / 100.0)
            .collect();
        assert_eq!(gaps, [0.6, 0.6, 0.3, 0.3, 0.3]);
        assert!(plain.iter().all(|r| !r.head.oracle));
        let few = records(
            &t,
            &ExportOptions {
                max_pairs: 2,
                margin: 0.5,
                ..ExportOptions::default()
            },
        );
        assert_eq!(few.len(), 2);
    }

    #[test]
    fn r3_pairs_rank_candidates_by_r3_gap() {
        let mut t = tree();
        // Candidates 3, 4, 5 with R3 -0.5, -2.0, -0.6: pairs (3 > 4, 1.5) and (5 > 4, 1.4);
        // 3 vs 5 (0.1) is under the margin.
        t.r3 = Some(R3Scores::from_logprobs(
            vec!["x".into()],
            vec![vec![-0.5], vec![-2.0], vec![-0.6]],
        ));
        let r = records(&t, &ExportOptions::default());
        let got: Vec<(String, String, f64)> = r
            .iter()
            .map(|p| {
                (
                    p.chosen[0].content.clone(),
                    p.rejected[0].content.clone(),
                    (p.gap * 10.0).round() / 10.0,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "a\n\na1 The answer is 4.".to_string(),
                    "a\n\na2 The answer is 5.".to_string(),
                    1.5
                ),
                (
                    "b\n\nb1 The answer is 6.".to_string(),
                    "a\n\na2 The answer is 5.".to_string(),
                    1.4
                ),
            ]
        );
        assert!(r
            .iter()
            .all(|p| p.head.oracle && p.reward.as_deref() == Some("r3")));
    }
}
