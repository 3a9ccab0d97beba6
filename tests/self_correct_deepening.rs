//! Self-correction and iterative deepening on the real default model.

mod common;

use common::session;
use ponder::eval;
use ponder::strategy::{
    DeepeningConfig, EntryKind, Outcome, Problem, SelfCorrectConfig, StrategyConfig,
};
use ponder::trace::{ModelId, NodeKind, Provenance, Trace};
use ponder::{ConfigError, Engine, Error, SamplingParams};

const QUESTION: &str =
    "A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?";

fn engine() -> Engine {
    Engine::llama(session(4096, 16))
}

/// The trace of `out`, checked against it: each candidate's message is its text, and its
/// nodes' tokens and log-probabilities add up to the candidate's (inserted text and user turns
/// generate none).
fn trace_of(problem: &Problem, out: &Outcome, strategy: &StrategyConfig) -> Trace {
    let model = ModelId {
        name: "SmolLM2".into(),
        sha256: String::new(),
    };
    let trace = Trace::from_outcome("q", problem, out, Provenance::new(&model, strategy, false));
    trace.validate().unwrap();
    assert_eq!(trace.candidates.len(), out.candidates.len());
    for (&end, c) in trace.candidates.iter().zip(&out.candidates) {
        assert_eq!(trace.text(end), c.text);
        let message = &trace.message_path(end)[1..];
        let tokens: u32 = message.iter().map(|&i| trace.nodes[i].tokens).sum();
        assert_eq!(tokens, c.tokens);
        let logprob: f64 = message.iter().map(|&i| trace.nodes[i].logprob).sum();
        assert!(
            (logprob - c.logprob).abs() < 1e-6,
            "{logprob} vs {}",
            c.logprob
        );
        for &i in message {
            if !trace.nodes[i].kind.is_generated() {
                assert_eq!(trace.nodes[i].tokens, 0);
            }
        }
    }
    // Read back (floats may differ in their last digit through JSON): the same shape.
    let read = Trace::from_json(&serde_json::to_string(&trace).unwrap()).unwrap();
    let shape = |t: &Trace| -> Vec<(Option<usize>, NodeKind, String)> {
        t.nodes
            .iter()
            .map(|n| (n.parent, n.kind, n.text.clone()))
            .collect()
    };
    assert_eq!(shape(&read), shape(&trace));
    trace
}

#[test]
fn deepening_triggers_sit_where_the_budgets_say_and_the_total_holds() {
    let engine = engine();
    let config = DeepeningConfig {
        width: 2,
        l0: 16,
        gamma: 1.5,
        total_budget: 100,
        stop_on_confirm: false,
        ignore_eos: true,
        ..DeepeningConfig::default()
    };
    let trigger = engine
        .with_lm(|lm| lm.tokenize(&config.trigger))
        .unwrap()
        .len();
    let strategy = StrategyConfig::Deepening(config.clone());
    let problem = Problem::new(QUESTION);
    let out = engine.solve(&problem, &strategy).unwrap();
    assert_eq!(out.candidates.len(), 2);
    // The trace: each branch one message from the root, a trigger node between its segments.
    let trace = trace_of(&problem, &out, &strategy);
    for &end in &trace.candidates {
        let message = trace.message_path(end);
        assert_eq!(message[0], 0);
        let triggers = message
            .iter()
            .filter(|&&i| trace.nodes[i].kind == NodeKind::Inserted)
            .count();
        let spans = out.timeline.iter().filter(|e| e.kind == EntryKind::Trigger);
        assert_eq!(triggers * 2, spans.count(), "each branch's triggers");
    }

    // What the budgets predict: segment i gets min(floor(16·1.5^i), what is left); a trigger
    // follows while more than its own length is left.
    let mut expected = Vec::new();
    let (mut spent, mut i) = (0usize, 0u32);
    loop {
        let n = (config.segment_budget(i) as usize).min(100 - spent);
        expected.push((EntryKind::Generated, spent, n));
        spent += n;
        if 100 - spent <= trigger {
            break;
        }
        expected.push((EntryKind::Trigger, spent, trigger));
        spent += trigger;
        i += 1;
    }
    assert!(expected.len() >= 5, "several triggers: {expected:?}");
    for b in 0..2 {
        let got: Vec<(EntryKind, usize, usize)> = out
            .timeline
            .iter()
            .filter(|e| e.branch == b)
            .map(|e| (e.kind, e.offset, e.tokens))
            .collect();
        assert_eq!(got, expected, "branch {b}");
        let last = out.timeline.iter().rfind(|e| e.branch == b).unwrap();
        assert!(last.offset + last.tokens <= 100, "the total budget holds");
        assert!(out.candidates[b].text.contains(config.trigger.trim()));
    }
    // Nothing re-prefilled: the prompt once and each trigger's own tokens.
    let triggers = out
        .timeline
        .iter()
        .filter(|e| e.kind == EntryKind::Trigger)
        .count();
    assert_eq!(
        out.usage.prefill_tokens,
        out.usage.prompt_tokens + (triggers * trigger) as u64,
        "{:?}",
        out.usage
    );
    assert_eq!(out.usage.recomputed_tokens, 0);
}

#[test]
fn deepening_with_early_answers_stays_within_budget_and_votes() {
    let engine = engine();
    let config = DeepeningConfig {
        width: 3,
        l0: 24,
        total_budget: 120,
        ..DeepeningConfig::default()
    };
    let problem = Problem::new(QUESTION).with_answer("17");
    let out = engine
        .solve(&problem, &StrategyConfig::Deepening(config.clone()))
        .unwrap();
    for b in 0..3 {
        let entries: Vec<_> = out.timeline.iter().filter(|e| e.branch == b).collect();
        let mut segment = 0;
        for e in &entries {
            if e.kind == EntryKind::Generated {
                assert!(e.tokens as u32 <= config.segment_budget(segment));
                segment += 1;
            }
        }
        let last = entries.last().unwrap();
        assert!(last.offset + last.tokens <= 120);
    }
    // The chosen answer is the branches' majority.
    if let Some(a) = &out.answer {
        let key = ponder::reward::answer::normalize(a);
        let votes = |k: &str| {
            out.candidates
                .iter()
                .filter(|c| {
                    c.answer
                        .as_deref()
                        .map(ponder::reward::answer::normalize)
                        .as_deref()
                        == Some(k)
                })
                .count()
        };
        let top = out
            .candidates
            .iter()
            .filter_map(|c| c.answer.as_deref().map(ponder::reward::answer::normalize))
            .map(|k| votes(&k))
            .max()
            .unwrap();
        assert_eq!(votes(&key), top);
    }
}

#[test]
fn a_revision_round_decodes_only_the_new_tokens() {
    let engine = engine();
    let config = SelfCorrectConfig {
        rounds: 2,
        max_tokens: 48,
        accept_threshold: None,
        ..SelfCorrectConfig::default()
    };
    let strategy = StrategyConfig::SelfCorrect(config);
    let problem = Problem::new(QUESTION).with_answer("17");
    let out = engine.solve(&problem, &strategy).unwrap();
    assert_eq!(out.candidates.len(), 3, "first attempt and two revisions");
    // The trace is the one conversation: attempt, request, attempt, request, attempt.
    let trace = trace_of(&problem, &out, &strategy);
    let last = trace.candidates[2];
    let path = trace.path(last);
    assert!(path.contains(&trace.candidates[0]) && path.contains(&trace.candidates[1]));
    let context = trace.context(last);
    assert_eq!(context.len(), out.prompt.len() + 4);
    assert_eq!(context[..out.prompt.len()], out.prompt[..]);
    assert_eq!(
        context[out.prompt.len()].content,
        out.candidates[0].text.trim()
    );
    assert_eq!(context.last().unwrap().role, "user");
    assert_eq!(out.chosen, 2, "keeps the last attempt");
    let revisions: Vec<_> = out
        .timeline
        .iter()
        .filter(|e| e.kind == EntryKind::Revision)
        .collect();
    assert_eq!(revisions.len(), 2);
    // The conversation so far is never prefilled again: only the prompt and the revision turns.
    let turns: u64 = revisions.iter().map(|e| e.tokens as u64).sum();
    assert_eq!(
        out.usage.prefill_tokens,
        out.usage.prompt_tokens + turns,
        "{:?}",
        out.usage
    );
    assert_eq!(out.usage.recomputed_tokens, 0);
    // Spans follow each other without gaps.
    for w in out.timeline.windows(2) {
        assert_eq!(w[1].offset, w[0].offset + w[0].tokens, "{:?}", out.timeline);
    }
    for c in &out.candidates {
        assert!(c.correct.is_some());
    }
}

#[test]
fn an_accepting_judge_stops_self_correction_early() {
    let engine = engine();
    // Threshold 0: the first attempt is always accepted.
    let config = SelfCorrectConfig {
        rounds: 3,
        max_tokens: 32,
        accept_threshold: Some(0.0),
        ..SelfCorrectConfig::default()
    };
    let out = engine
        .solve(
            &Problem::new(QUESTION),
            &StrategyConfig::SelfCorrect(config),
        )
        .unwrap();
    assert_eq!(out.candidates.len(), 1);
    assert!(out.candidates[0].judge.is_some());
}

#[test]
fn bad_configs_are_clear_errors() {
    let engine = engine();
    let field = |c: StrategyConfig| match engine.solve(&Problem::new(QUESTION), &c) {
        Err(Error::Config(ConfigError { field, reason, .. })) => {
            assert!(!reason.is_empty());
            field
        }
        other => panic!("expected a config error, got {other:?}"),
    };
    let d = DeepeningConfig::default;
    assert_eq!(
        field(StrategyConfig::Deepening(DeepeningConfig { l0: 0, ..d() })),
        "l0"
    );
    assert_eq!(
        field(StrategyConfig::Deepening(DeepeningConfig {
            gamma: 0.9,
            ..d()
        })),
        "gamma"
    );
    assert_eq!(
        field(StrategyConfig::Deepening(DeepeningConfig {
            trigger: "  ".into(),
            ..d()
        })),
        "trigger"
    );
    assert_eq!(
        field(StrategyConfig::Deepening(DeepeningConfig {
            width: 0,
            ..d()
        })),
        "width"
    );
    assert_eq!(
        field(StrategyConfig::SelfCorrect(SelfCorrectConfig {
            rounds: 0,
            ..SelfCorrectConfig::default()
        })),
        "rounds"
    );
    assert_eq!(
        field(StrategyConfig::SelfCorrect(SelfCorrectConfig {
            sampling: SamplingParams {
                temperature: -1.0,
                ..SamplingParams::default()
            },
            ..SelfCorrectConfig::default()
        })),
        "temperature"
    );
    assert_eq!(engine.usage().forward_passes, 0);
}

#[test]
fn eval_reports_self_correction_deltas_that_add_up_and_deepening_accuracy() {
    let engine = engine();
    let (problems, errors) = eval::read_dataset(&std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/arith40.jsonl"
    )))
    .unwrap();
    assert!(errors.is_empty());
    let problems = &problems[..4];
    let sc = StrategyConfig::SelfCorrect(SelfCorrectConfig {
        max_tokens: 48,
        accept_threshold: None,
        ..SelfCorrectConfig::default()
    });
    let report = eval::run(&engine, problems, Vec::new(), &sc, 1, |_, _, _| {});
    let m = report.self_correct.expect("self-correct metrics");
    assert_eq!(m.problems, 4);
    assert!(
        (m.delta - (m.delta_i_to_c - m.delta_c_to_i)).abs() < 1e-12,
        "{m:?}"
    );
    assert!((m.delta - (m.acc_t2 - m.acc_t1)).abs() < 1e-12, "{m:?}");
    assert!((m.acc_t2 - report.accuracy).abs() < 1e-12);

    let deep = StrategyConfig::Deepening(DeepeningConfig {
        width: 2,
        l0: 24,
        total_budget: 96,
        ..DeepeningConfig::default()
    });
    let report = eval::run(&engine, &problems[..2], Vec::new(), &deep, 1, |_, _, _| {});
    let m = report.deepening.expect("deepening metrics");
    assert_eq!(m.problems, 2);
    assert!(!m.accuracy_after_trigger.is_empty());
    assert!(m
        .accuracy_after_trigger
        .iter()
        .all(|a| (0.0..=1.0).contains(a)));
    assert!(m.mean_tokens > 0.0 && m.mean_tokens <= 2.0 * 96.0);
}
