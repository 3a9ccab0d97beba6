//! Self-correction records: `{"id", "source_strategy", "oracle", "messages", "prefix_steps",
//! "bad_step", "reflection", "continuation_steps"}`, after Agent-R and S³c-Math: a wrong path cut
//! right after its first bad step, a reflection sentence, then a right continuation from the last
//! good step, as one assistant message.
//!
//! The first bad step is, with `oracle`, the first step from which no right answer is reachable
//! (the continuation: the right finished path nearest below the last good step, the best-valued
//! among equals); without, the first step whose judge score is below `threshold` (the
//! continuation: the best-valued finished path below the last good step whose steps all pass).

use serde::{Deserialize, Serialize};

use super::{conversation, oracle_mode, ExportOptions, Reach, RecordHead};
use crate::lm::Message;
use crate::trace::{NodeKind, Trace};

/// One correction record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionRecord {
    /// Problem id, strategy, oracle.
    #[serde(flatten)]
    pub head: RecordHead,
    /// The prompt's messages and the spliced assistant message.
    pub messages: Vec<Message>,
    /// Good steps before the bad one.
    pub prefix_steps: usize,
    /// The bad step's text.
    pub bad_step: String,
    /// The reflection sentence.
    pub reflection: String,
    /// Steps of the right continuation.
    pub continuation_steps: usize,
}

/// The correction records of `trace`.
pub fn records(trace: &Trace, options: &ExportOptions) -> Vec<CorrectionRecord> {
    let oracle = oracle_mode(trace, options);
    let reach = Reach::of(trace);
    let children = trace.children();
    let good = |id: usize| -> bool {
        if oracle {
            reach.reachable[id]
        } else {
            trace.nodes[id]
                .judge
                .is_some_and(|j| j >= options.threshold)
        }
    };
    let wrong = |id: usize| -> bool {
        let n = &trace.nodes[id];
        n.terminal
            && if oracle {
                n.correct != Some(true)
            } else {
                n.judge.is_some_and(|j| j < options.threshold)
            }
    };
    let mut done_bad = Vec::new();
    let mut out = Vec::new();
    for &leaf in &trace.candidates {
        if !wrong(leaf) {
            continue;
        }
        // The wrong message, from the node it starts below.
        let path: Vec<usize> = trace.message_path(leaf);
        let Some(k) = path.iter().skip(1).position(|&id| !good(id)).map(|k| k + 1) else {
            continue;
        };
        let bad = path[k];
        if done_bad.contains(&bad) {
            continue;
        }
        let parent = path[k - 1];
        let Some(end) = continuation(trace, &children, parent, bad, oracle, &reach, &good) else {
            continue;
        };
        done_bad.push(bad);
        let prefix: String = path[1..k]
            .iter()
            .map(|&i| trace.nodes[i].text.as_str())
            .collect();
        let continuation_path: Vec<usize> = trace
            .path(end)
            .into_iter()
            .skip_while(|&i| i != parent)
            .skip(1)
            .collect();
        let rest: String = continuation_path
            .iter()
            .map(|&i| trace.nodes[i].text.as_str())
            .collect();
        let bad_text = trace.nodes[bad].text.clone();
        let mut spliced = prefix;
        spliced.push_str(bad_text.trim_end());
        spliced.push_str("\n\n");
        spliced.push_str(options.reflection.trim());
        spliced.push_str("\n\n");
        spliced.push_str(&rest);
        out.push(CorrectionRecord {
            head: RecordHead::of(trace, oracle),
            messages: conversation(trace, leaf, spliced.trim().to_string()),
            prefix_steps: k - 1,
            bad_step: bad_text,
            reflection: options.reflection.trim().to_string(),
            continuation_steps: continuation_path.len(),
        });
    }
    out
}

/// The end of the right continuation below `parent` that avoids `bad`.
fn continuation(
    trace: &Trace,
    children: &[Vec<usize>],
    parent: usize,
    bad: usize,
    oracle: bool,
    reach: &Reach,
    good: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    // Depth-first over the subtree of `parent` without `bad`; a candidate end must be a right
    // (oracle) or passing (judge) finished solution with every step below `parent` good.
    let mut best: Option<(usize, usize)> = None; // (end, steps)

    // A continuation stays in the message: it never crosses a user turn.
    let within = |c: usize| trace.nodes[c].kind != NodeKind::UserTurn && good(c);
    let mut stack: Vec<(usize, usize)> = children[parent]
        .iter()
        .filter(|&&c| c != bad && within(c))
        .map(|&c| (c, 1))
        .collect();
    while let Some((id, depth)) = stack.pop() {
        let n = &trace.nodes[id];
        let fits = n.terminal
            && if oracle {
                n.correct == Some(true)
            } else {
                true
            };
        if fits {
            let better = match best {
                None => true,
                Some((b, d)) => {
                    let nb = &trace.nodes[b];
                    if oracle {
                        depth < d || (depth == d && n.value > nb.value)
                    } else {
                        n.value > nb.value || (n.value == nb.value && depth < d)
                    }
                }
            };
            if better {
                best = Some((id, depth));
            }
        }
        for &c in &children[id] {
            if within(c) && (!oracle || reach.reachable[c]) {
                stack.push((c, depth + 1));
            }
        }
    }
    best.map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::export::tests::tree;

    #[test]
    fn wrong_paths_are_cut_at_the_first_bad_step_and_continued_rightly() {
        let t = tree();
        let oracle = records(&t, &ExportOptions::by_oracle());
        // a2's first bad step is a2 itself (after the good a): a, a2, reflection, a1.
        // b1's first bad step is b (nothing right below it): b, reflection, a, a1.
        assert_eq!(oracle.len(), 2);
        assert_eq!(
            oracle[0].messages[1].content,
            "a\n\na2 The answer is 5.\n\nWait, this step is wrong. Let me go back and correct it.\n\na1 The answer is 4."
        );
        assert_eq!(
            (oracle[0].prefix_steps, oracle[0].continuation_steps),
            (1, 1)
        );
        assert_eq!(
            oracle[1].messages[1].content,
            "b\n\nWait, this step is wrong. Let me go back and correct it.\n\na\n\na1 The answer is 4."
        );
        assert_eq!(
            (oracle[1].prefix_steps, oracle[1].continuation_steps),
            (0, 2)
        );
        // By the judge (threshold .5): a2 (.3) is bad and wrong; b (.4) is the first bad step of
        // b1's path, but b1 (.6) passes, so it is not a wrong path.
        let plain = records(&t, &ExportOptions::default());
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].bad_step, "a2 The answer is 5.");
        assert!(!plain[0].head.oracle);
    }
}
