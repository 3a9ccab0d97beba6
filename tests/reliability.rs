//! Hardening on the real default model: wall-time budgets and cancellation that stop a search
//! inside a model call and still return the best found so far, memory flat over 200 solves, 8
//! threads sharing one deterministic engine with the results of solving one by one, prompts
//! longer than the context, a solve from its own callback, and thread counts the machine cannot
//! run. (A synth run killed at random moments: `crates/ponder-cli/tests/synth_kill.rs`.)

mod common;

use std::sync::Arc;
use std::time::Instant;

use ponder::strategy::{Limit, Outcome, Problem, StopReason, StrategyConfig};
use ponder::Engine;

use common::serial;

const QUESTION: &str =
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?";

fn engine(n_ctx: u32, n_seq_max: u32) -> Engine {
    Engine::llama(common::session(n_ctx, n_seq_max))
}

fn strategy(json: serde_json::Value) -> StrategyConfig {
    serde_json::from_value(json).expect("a valid strategy")
}

/// Every tree invariant that must hold whatever stopped the search.
fn check_tree(o: &Outcome) {
    let tree = o.tree.as_deref().expect("tree searches keep their tree");
    for n in &tree.nodes {
        assert!((0.0..=1.0).contains(&n.value), "value {}", n.value);
        if let Some(p) = n.parent {
            assert!(n.visits <= tree.nodes[p].visits);
            assert!(tree.nodes[p].children.contains(&n.id));
        }
    }
    assert_eq!(
        tree.chosen.first(),
        Some(&0),
        "the chosen path starts at the root"
    );
}

#[test]
fn a_wall_time_budget_stops_the_search_inside_a_model_call() {
    let _serial = serial();
    let e = engine(4096, 16);
    // Long steps, so that the deadline falls inside a generate call rather than between them.
    let s = strategy(serde_json::json!({
        "type": "mcts", "k": 3, "step": {"max_tokens": 256, "delimiters": ["\n\n\n"]},
        "budget": {"wall_ms": 2000, "tokens": 1000000}
    }));
    let start = Instant::now();
    let o = e.solve(&Problem::new(QUESTION), &s).unwrap();
    let elapsed = start.elapsed();
    let tree = o.tree.as_deref().unwrap();
    assert_eq!(
        tree.stop,
        StopReason::Budget {
            limit: Limit::WallTime
        }
    );
    check_tree(&o);
    eprintln!(
        "wall budget 2000 ms: returned after {} ms, {} forward passes, {} steps, answer {:?}",
        elapsed.as_millis(),
        o.usage.forward_passes,
        tree.nodes.len() - 1,
        o.answer
    );
    // The engine's own interrupt check is back in place: a later solve is unaffected.
    let later = strategy(
        serde_json::json!({"type": "best_of_n", "n": 1, "max_tokens": 4, "rerank": "vote"}),
    );
    assert!(e.solve(&Problem::new(QUESTION), &later).is_ok());
}

#[test]
fn cancel_from_another_thread_returns_the_best_so_far() {
    let _serial = serial();
    let e = Arc::new(engine(4096, 16));
    let s = strategy(serde_json::json!({
        "type": "mcts", "k": 3, "step": {"max_tokens": 64},
        "budget": {"tokens": 1000000, "iterations": 1000}
    }));
    // Another thread cancels once the search has judged a few steps.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let canceller = {
        let e = e.clone();
        std::thread::spawn(move || {
            rx.recv().unwrap();
            e.cancel();
            Instant::now()
        })
    };
    let mut scored = 0;
    let mut tx = Some(tx);
    let o = e
        .solve_with(&Problem::new(QUESTION), &s, &mut |ev| {
            if matches!(ev, ponder::strategy::Event::Scored { .. }) {
                scored += 1;
                if scored == 3 {
                    tx.take().unwrap().send(()).unwrap();
                }
            }
            ponder::strategy::Flow::Continue
        })
        .unwrap();
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    let tree = o.tree.as_deref().unwrap();
    assert_eq!(tree.stop, StopReason::Cancelled);
    assert!(
        tree.nodes.len() > 1,
        "three seconds of search found some steps"
    );
    check_tree(&o);
    eprintln!(
        "cancel: returned {} ms after the cancel, with {} steps and answer {:?}",
        returned.saturating_duration_since(cancelled_at).as_millis(),
        tree.nodes.len() - 1,
        o.answer
    );
    // A strategy with nothing to show yet is cancelled with an error; later solves go on.
    let later = strategy(
        serde_json::json!({"type": "best_of_n", "n": 1, "max_tokens": 4, "rerank": "vote"}),
    );
    assert!(e.solve(&Problem::new(QUESTION), &later).is_ok());
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn memory_stays_flat_over_200_solves_on_one_engine() {
    let _serial = serial();
    let e = engine(512, 4);
    let s = strategy(
        serde_json::json!({"type": "best_of_n", "n": 2, "max_tokens": 2, "rerank": "vote"}),
    );
    let problem = |i: usize| Problem::new(format!("What is {i} + {}?", i % 7));
    for i in 0..10 {
        e.solve(&problem(i), &s).unwrap();
    }
    let start = rss_kib();
    for i in 0..200 {
        let o = e.solve(&problem(i), &s).unwrap();
        assert_eq!(o.candidates.len(), 2);
    }
    let end = rss_kib();
    eprintln!("RSS after 10 warm-up solves: {start} KiB; after 200 more: {end} KiB");
    assert!(
        end <= start + 8 * 1024,
        "memory grew by {} KiB over 200 solves",
        end.saturating_sub(start)
    );
}

#[test]
fn eight_threads_on_a_deterministic_engine_give_the_results_of_one_by_one() {
    let _serial = serial();
    let lm = common::model()
        .session(&ponder::lm::ContextOptions {
            n_ctx: 2048,
            n_seq_max: 8,
            deterministic: true,
            ..Default::default()
        })
        .expect("context");
    let e = Arc::new(Engine::llama(lm));
    const PROBLEMS: usize = 12;
    let problems: Vec<(Problem, StrategyConfig)> = (0..PROBLEMS)
        .map(|i| {
            (
                Problem::new(format!("What is {} times {}?", i + 2, i % 5 + 3)),
                strategy(serde_json::json!({
                    "type": "best_of_n", "n": 2, "max_tokens": 12, "rerank": "vote",
                    "sampling": {"seed": i}
                })),
            )
        })
        .collect();
    let key = |o: &Outcome| {
        (
            o.answer.clone(),
            o.text.clone(),
            o.candidates
                .iter()
                .map(|c| c.text.clone())
                .collect::<Vec<_>>(),
        )
    };
    let reference: Vec<_> = problems
        .iter()
        .map(|(p, s)| key(&e.solve(p, s).unwrap()))
        .collect();
    let problems = Arc::new(problems);
    let reference = Arc::new(reference);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (e, problems, reference) = (e.clone(), problems.clone(), reference.clone());
            std::thread::spawn(move || {
                // Each thread walks half the problems from its own starting point: every problem
                // is solved by four threads, each time beside different neighbours.
                for j in 0..PROBLEMS / 2 {
                    let i = (j + 3 * t) % PROBLEMS;
                    let (p, s) = &problems[i];
                    let o = e
                        .solve(p, s)
                        .unwrap_or_else(|err| panic!("thread {t}, problem {i}: {err}"));
                    assert_eq!(key(&o), reference[i], "thread {t}, problem {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread panicked");
    }
}

#[test]
fn a_question_longer_than_the_context_is_refused_before_any_work() {
    let _serial = serial();
    let e = engine(512, 4);
    let s = strategy(serde_json::json!({"type": "mcts", "budget": {"tokens": 64}}));
    let before = e.usage();
    let err = e
        .solve(&Problem::new("apple ".repeat(2000)), &s)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ponder::Error::Decode(ponder::DecodeError::ContextOverflow { .. })
        ),
        "{err}"
    );
    let used = e.usage().since(&before);
    assert_eq!(used.forward_passes, 0, "nothing was decoded");
}

#[test]
fn a_solve_from_its_own_callback_is_refused_and_a_late_stop_keeps_the_outcome() {
    let _serial = serial();
    let e = engine(1024, 4);
    let s = strategy(serde_json::json!({
        "type": "best_of_n", "n": 2, "max_tokens": 8, "rerank": "logprob"
    }));
    let problem = Problem::new(QUESTION);
    // Re-entry from the callback: refused at once (it would wait forever for its own solve).
    let mut inner = None;
    let outer = e
        .solve_with(&problem, &s, &mut |event| {
            if matches!(event, ponder::strategy::Event::Done { .. }) {
                inner = Some(e.solve(&problem, &s));
            }
            ponder::strategy::Flow::Continue
        })
        .expect("the outer solve finishes");
    assert!(!outer.text.is_empty());
    let inner = inner.expect("the callback ran");
    assert!(matches!(inner, Err(ponder::Error::Reentrant)), "{inner:?}");
    // Stopping on the events of a finished search ends the events, not the solve.
    for stop_on_done in [false, true] {
        let mut after_stop = 0;
        let mut stopped = false;
        let o = e.solve_with(&problem, &s, &mut |event| {
            if stopped {
                after_stop += 1;
                return ponder::strategy::Flow::Continue;
            }
            let hit = match event {
                ponder::strategy::Event::Candidate { .. } => !stop_on_done,
                ponder::strategy::Event::Done { .. } => stop_on_done,
                _ => false,
            };
            if hit {
                stopped = true;
                ponder::strategy::Flow::Stop
            } else {
                ponder::strategy::Flow::Continue
            }
        });
        let o = o.expect("a finished search is never reported cancelled");
        assert_eq!(o.candidates.len(), 2);
        assert!(stopped);
        assert_eq!(after_stop, 0, "no events after the stop");
    }
    // The engine is usable afterwards.
    assert!(e.solve(&problem, &s).is_ok());
}

#[test]
fn thread_counts_beyond_the_machine_are_refused_before_the_model_loads() {
    let context = ponder::lm::ContextOptions {
        n_threads: 100_000,
        ..Default::default()
    };
    // The path does not exist: a check after loading would report that instead.
    let model = ponder::lm::ModelOptions {
        path: "/nonexistent/model.gguf".into(),
        ..Default::default()
    };
    let err = Engine::load(&model, &context).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("n_threads") && text.contains("100000"),
        "{text}"
    );
    for n_seq_max in [257, 1000] {
        let context = ponder::lm::ContextOptions {
            n_seq_max,
            ..Default::default()
        };
        let err = Engine::load(&model, &context).expect_err("refused");
        assert!(err.to_string().contains("n_seq_max"), "{err}");
    }
}
