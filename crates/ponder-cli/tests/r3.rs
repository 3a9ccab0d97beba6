//! DRO's R3 on real models: on the reasoner, a reasoning that leads to the reference ranks above
//! ones that do not, and scoring decodes only the reference's tokens; `ponder synth --reward r3`
//! on the default model writes R3 labels, R3 preference pairs and DRO's filter summary.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use ponder::lm::{Lm, Message};
use ponder::reward::r3;
use ponder::trace::export::preference::PreferenceRecord;
use ponder::trace::Trace;

const QUESTION: &str = "Rewrite the sentence in the passive voice: \"The cat chased the mouse.\"\n\nThink it through briefly, then finish with a line \"Answer:\" followed by your answer.";
const REFERENCE: &str = "The mouse was chased by the cat.";

#[test]
fn r3_ranks_the_reasoning_that_leads_to_the_reference_first_on_the_reasoner() {
    let mut lm = common::reasoner_session(2048, 16);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    // Hand-written reasonings, forced: deterministic. Only the first leads to the reference.
    let reasonings = [
        "In the passive voice the object, the mouse, becomes the subject, the verb becomes \"was chased\", and the cat follows \"by\".\n\nAnswer:",
        "The sentence is about a cat. To make it passive we keep the cat as the subject and use the verb \"ran away from\" with the dog.\n\nAnswer:",
        "Passive voice means the sentence should talk about something sleeping, so we describe the cat sleeping on a mat.\n\nAnswer:",
    ];
    let nodes: Vec<_> = reasonings
        .iter()
        .map(|r| lm.extend(root, r).unwrap())
        .collect();
    // Decode the reasonings as a sampled candidate would have been decoded.
    let probe = lm.tokenize(" The").unwrap();
    let queries: Vec<_> = nodes.iter().map(|&n| (n, probe.as_slice())).collect();
    lm.next_token_probs(&queries).unwrap();

    let before = lm.usage();
    let s = r3::score(&mut lm, &nodes, REFERENCE).unwrap();
    let used = lm.usage().since(&before);

    let reference_tokens = lm.tokenize(&format!(" {REFERENCE}")).unwrap().len();
    assert_eq!(s.tokens.len(), reference_tokens);
    assert_eq!(s.tokens.concat(), format!(" {REFERENCE}"));
    // Only the reference, once per reasoning, in one forward pass: nothing of the question or
    // the reasonings is decoded again.
    assert_eq!(
        used.prefill_tokens,
        (reasonings.len() * reference_tokens) as u64,
        "{used:?}"
    );
    assert_eq!(
        (
            used.recomputed_tokens,
            used.decoded_tokens,
            used.forward_passes
        ),
        (0, 0, 1),
        "{used:?}"
    );

    assert!((s.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(s
        .logprobs
        .iter()
        .flatten()
        .all(|&l| l.is_finite() && l <= 0.0));
    eprintln!("R3 {:?}", s.r3);
    let shown: Vec<String> = s
        .tokens
        .iter()
        .zip(&s.weights)
        .map(|(t, w)| format!("{t:?} {w:.3}"))
        .collect();
    eprintln!("weights {}", shown.join(", "));
    assert_eq!(s.best(), Some(0), "R3 {:?}", s.r3);
    assert!(s.r3[0] > s.r3[1] && s.r3[0] > s.r3[2], "R3 {:?}", s.r3);
    // The weighting moves R3 away from the plain mean log-likelihood: the tokens that do not
    // depend on the reasoning count less.
    let mean = |row: &Vec<f32>| row.iter().map(|&l| f64::from(l)).sum::<f64>() / row.len() as f64;
    assert!(s
        .r3
        .iter()
        .zip(&s.logprobs)
        .any(|(r, row)| (r - mean(row)).abs() > 1e-3));
    for n in nodes.into_iter().chain([root]) {
        lm.release(n);
    }
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("r3-{name}"))
}

/// The first `n` problems of the open-ended dev set.
fn open_dev(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(common::root().join("data/open-dev.jsonl")).unwrap();
    let path = dir.join("input.jsonl");
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn synth_r3(input: &Path, output: &Path, min_spread: &str) -> serde_json::Value {
    let out = common::synth_command(
        input,
        output,
        &[
            "--strategy",
            "best-of-n",
            "--n",
            "3",
            "--max-tokens",
            "24",
            "--rerank",
            "logprob",
            "--reward",
            "r3",
            "--r3-min-spread",
            min_spread,
            "--formats",
            "sft,preference",
            "--threads",
            "1",
            "--json",
        ],
    )
    .output()
    .unwrap();
    common::json_output(&out)
}

#[test]
fn synth_with_r3_labels_pairs_and_filters() {
    let dir = scratch("synth");
    let input = open_dev(&dir, 2);

    let kept = dir.join("kept");
    let summary = synth_r3(&input, &kept, "0");
    assert_eq!(summary["problems"], 2, "{summary}");
    assert_eq!(summary["r3"]["kept"], 2, "{summary}");
    assert_eq!(summary["r3"]["min_spread"], 0.0);
    let traces: Vec<Trace> = common::lines(&kept.join("traces.jsonl"))
        .iter()
        .map(|l| Trace::from_json(l).unwrap())
        .collect();
    assert_eq!(traces.len(), 2);
    for t in &traces {
        let s = t.r3.as_ref().expect("every trace carries R3");
        assert_eq!(s.r3.len(), t.candidates.len());
        assert_eq!(s.weights.len(), s.tokens.len());
        assert!(s.logprobs.iter().all(|row| row.len() == s.tokens.len()));
        // A trainer can recompute R3 from what the trace carries.
        for (k, row) in s.logprobs.iter().enumerate() {
            let again: f64 = row
                .iter()
                .zip(&s.weights)
                .map(|(&l, &w)| w * f64::from(l))
                .sum();
            assert!((again - s.r3[k]).abs() < 1e-9);
        }
        assert!(!t.provenance.oracle_guided);
        let ponder::StrategyConfig::BestOfN(c) = &t.provenance.strategy else {
            panic!("best-of-n")
        };
        assert!(c.r3.is_some(), "the R3 settings are in the provenance");
        assert!(c.prompt.template.contains("Answer:"));
    }
    let spreads: Vec<f64> = traces
        .iter()
        .map(|t| t.r3.as_ref().unwrap().spread)
        .collect();
    let pairs: Vec<PreferenceRecord> = common::lines(&kept.join("preference.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for p in &pairs {
        assert_eq!(p.reward.as_deref(), Some("r3"));
        assert!(p.head.oracle, "R3 labels come from the reference");
        assert!(p.gap >= 0.2);
    }
    if spreads.iter().any(|&s| s >= 0.2) {
        assert!(!pairs.is_empty(), "spreads {spreads:?}");
    }

    // DRO's filter: above every spread, every problem is dropped and writes no records.
    let dropped = dir.join("dropped");
    let above = spreads.iter().copied().fold(0.0, f64::max) + 1.0;
    let summary = synth_r3(&input, &dropped, &format!("{above}"));
    assert_eq!(summary["r3"]["kept"], 0, "{summary}");
    assert_eq!(summary["r3"]["dropped"]["spread_below_min"], 2, "{summary}");
    assert_eq!(summary["records"]["sft"], 0);
    assert!(common::lines(&dropped.join("sft.jsonl")).is_empty());
    assert_eq!(common::lines(&dropped.join("traces.jsonl")).len(), 2);
}

#[test]
fn r3_with_a_tree_search_and_votes_on_text_answers_are_clear_errors() {
    let dir = scratch("errors");
    let input = open_dev(&dir, 1);
    let run = |extra: &[&str]| {
        common::synth_command(&input, &dir.join("out"), extra)
            .args(["--threads", "1", "--json"])
            .output()
            .unwrap()
    };
    let out = run(&["--strategy", "mcts", "--reward", "r3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--strategy best-of-n"), "{err}");
    // Refused before any model is loaded, for the dataset's text lines and for --answer-kind.
    for extra in [
        &["--rerank", "vote"][..],
        &["--strategy", "deepening", "--answer-kind", "text"][..],
    ] {
        let out = run(extra);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("answer_kind") && err.contains("cannot be voted on"),
            "{err}"
        );
    }
}
