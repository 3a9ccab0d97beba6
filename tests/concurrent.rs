//! Many solves on one engine at once, on the real default model: the llama.cpp context's decode
//! loop serves all of them in shared forward passes. Each test checks what must hold whatever
//! the interleaving: every solve finishes and is valid, a solve's trouble (cancel, budget,
//! panic) stays its own, nothing leaks, and a solve alone gives what a deterministic engine gives.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Instant;

use ponder::lm::{ContextOptions, KvLayout};
use ponder::strategy::{Event, Flow, Limit, Outcome, Problem, StopReason, StrategyConfig};
use ponder::{CancelToken, Engine, Error};

use common::serial;

/// Both layouts: `unified` with `n_ctx` cells shared, `streams` with a stream of `per_seq`
/// cells for each of the `n_seq_max` sequences.
const LAYOUTS: [KvLayout; 2] = [KvLayout::Unified, KvLayout::Streams];

fn options(layout: KvLayout, n_ctx: u32, n_seq_max: u32, per_seq: u32) -> ContextOptions {
    ContextOptions {
        kv_layout: layout,
        n_ctx: match layout {
            KvLayout::Streams => per_seq * n_seq_max,
            _ => n_ctx,
        },
        n_seq_max,
        ..ContextOptions::default()
    }
}

fn engine_with(options: ContextOptions, deterministic: bool) -> Arc<Engine> {
    let lm = common::model()
        .session(&ContextOptions {
            deterministic,
            ..options
        })
        .expect("context");
    Arc::new(Engine::llama(lm))
}

fn strategy(json: serde_json::Value) -> StrategyConfig {
    serde_json::from_value(json).expect("a valid strategy")
}

fn best_of(n: u32, max_tokens: u32, seed: u64) -> StrategyConfig {
    strategy(serde_json::json!({
        "type": "best_of_n", "n": n, "max_tokens": max_tokens, "rerank": "vote",
        "sampling": {"seed": seed}
    }))
}

fn question(i: usize) -> Problem {
    Problem::new(format!(
        "Sam has {} marbles and buys {} more. How many marbles does he have?",
        i + 3,
        2 * i + 1
    ))
}

/// A finished best-of-N outcome that holds together.
fn check_best_of(o: &Outcome, n: usize) {
    assert_eq!(o.candidates.len(), n);
    for c in &o.candidates {
        assert!(c.tokens >= 1, "every candidate generated something");
    }
    assert_eq!(
        o.usage.generated_tokens,
        o.candidates
            .iter()
            .map(|c| u64::from(c.tokens))
            .sum::<u64>(),
        "a solve counts its own tokens, not its neighbours'"
    );
}

/// Nothing is left in the context once every solve has returned.
fn check_empty(e: &Engine) {
    let load = e.context_load().expect("a llama engine");
    assert_eq!(load.nodes, 0, "every solve released its nodes");
    assert_eq!(load.jobs, 0, "no call is left in the job table");
}

/// Runs `solve(t)` on `threads` threads that start together.
fn together<T: Send + 'static>(
    threads: usize,
    solve: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<std::thread::Result<T>> {
    let barrier = Arc::new(Barrier::new(threads));
    let solve = Arc::new(solve);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, solve) = (barrier.clone(), solve.clone());
            std::thread::spawn(move || {
                barrier.wait();
                solve(t)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join()).collect()
}

#[test]
fn concurrent_solves_share_forward_passes_and_each_counts_its_own_work() {
    let _serial = serial();
    for layout in LAYOUTS {
        share_forward_passes(layout);
    }
}

fn share_forward_passes(layout: KvLayout) {
    let e = engine_with(options(layout, 4096, 32, 256), false);
    let before = e.usage();
    let start = Instant::now();
    let outcomes: Vec<Outcome> = {
        let e = e.clone();
        together(8, move |t| e.solve(&question(t), &best_of(4, 24, t as u64)))
    }
    .into_iter()
    .map(|r| r.expect("no panic").expect("every solve finishes"))
    .collect();
    let total = e.usage().since(&before);
    for o in &outcomes {
        check_best_of(o, 4);
    }
    let generated: u64 = outcomes.iter().map(|o| o.usage.generated_tokens).sum();
    let passes: u64 = outcomes.iter().map(|o| o.usage.forward_passes).sum();
    eprintln!(
        "{layout:?}: 8 solves × best-of-4 in {} ms: {} tokens in {} shared forward passes ({} counted by the solves)",
        start.elapsed().as_millis(),
        total.generated_tokens,
        total.forward_passes,
        passes
    );
    assert_eq!(generated, total.generated_tokens);
    assert!(
        total.forward_passes < passes,
        "solves in flight together share forward passes ({} passes for the engine, {passes} summed over solves)",
        total.forward_passes
    );
    check_empty(&e);
}

#[test]
fn a_solve_alone_gives_what_the_deterministic_engine_gives_and_deterministic_solves_queue() {
    let _serial = serial();
    for layout in LAYOUTS {
        alone_is_exact(layout);
    }
}

fn alone_is_exact(layout: KvLayout) {
    let shared = engine_with(options(layout, 4096, 16, 256), false);
    let exact = engine_with(options(layout, 4096, 16, 256), true);
    let key = |o: &Outcome| {
        o.candidates
            .iter()
            .map(|c| c.text.clone())
            .collect::<Vec<_>>()
    };
    let alone: Vec<_> = (0..4)
        .map(|i| {
            key(&shared
                .solve(&question(i), &best_of(3, 16, i as u64))
                .unwrap())
        })
        .collect();
    for (i, a) in alone.iter().enumerate() {
        let o = exact
            .solve(&question(i), &best_of(3, 16, i as u64))
            .unwrap();
        assert_eq!(
            &key(&o),
            a,
            "{layout:?}: problem {i}: a lone solve is the exact one"
        );
    }
    // Submitted together, the deterministic engine still solves one at a time.
    let results = {
        let exact = exact.clone();
        together(4, move |t| {
            exact
                .solve(&question(t), &best_of(3, 16, t as u64))
                .map(|o| key(&o))
        })
    };
    for (t, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().unwrap(), alone[t], "{layout:?}: problem {t}");
    }
    check_empty(&shared);
    check_empty(&exact);
}

#[test]
fn more_solves_than_sequences_and_more_tokens_than_cells_wait_instead_of_failing() {
    let _serial = serial();
    for layout in LAYOUTS {
        more_than_fits(layout);
    }
}

fn more_than_fits(layout: KvLayout) {
    // 4 sequences for 6 solves of 3 branches; in `unified` 640 cells, while each solve alone
    // needs about 60 + 3 × 48 and all six together three times the cache; in `streams` one
    // stream of 256 cells per sequence.
    let e = engine_with(options(layout, 640, 4, 256), false);
    let outcomes = {
        let e = e.clone();
        together(6, move |t| e.solve(&question(t), &best_of(3, 48, t as u64)))
    };
    for (t, r) in outcomes.into_iter().enumerate() {
        let o = r
            .expect("no panic")
            .unwrap_or_else(|err| panic!("solve {t}: {err}"));
        check_best_of(&o, 3);
    }
    let usage = e.usage();
    eprintln!(
        "{layout:?}: 6 solves on 4 sequences: {} parked, {} reactivated, {} recomputed tokens, {} stream copies",
        usage.parked, usage.reactivated, usage.recomputed_tokens, usage.kv_copies
    );
    assert!(
        usage.parked > 0,
        "{layout:?}: the cache was under pressure (nothing was parked)"
    );
    check_empty(&e);
}

#[test]
fn a_cancel_a_panic_and_a_budget_stay_with_their_own_solve() {
    let _serial = serial();
    let e = engine_with(options(KvLayout::Streams, 4096, 32, 512), false);
    let mcts = |budget: serde_json::Value| {
        strategy(serde_json::json!({
            "type": "mcts", "k": 2, "step": {"max_tokens": 48}, "budget": budget
        }))
    };
    let token = CancelToken::new();
    let results = {
        let (e, token) = (e.clone(), token.clone());
        together(6, move |t| -> Result<String, Error> {
            match t {
                // Stops itself from its callback at its first judged step.
                0 => e
                    .solve_with(
                        &question(t),
                        &mcts(serde_json::json!({"tokens": 100000})),
                        &mut |ev| match ev {
                            Event::Scored { .. } => Flow::Stop,
                            _ => Flow::Continue,
                        },
                    )
                    .map(|o| format!("{:?}", o.tree.unwrap().stop)),
                // Cancelled through its token, which another solve's thread cancels.
                1 => e
                    .solve_with_token(
                        &question(t),
                        &best_of(4, 400, 1),
                        &mut |_| Flow::Continue,
                        &token,
                    )
                    .map(|_| "finished".into()),
                // Its callback panics.
                2 => e
                    .solve_with(
                        &question(t),
                        &mcts(serde_json::json!({"tokens": 100000})),
                        &mut |ev| {
                            if matches!(ev, Event::Step { .. }) {
                                panic!("a callback that panics");
                            }
                            Flow::Continue
                        },
                    )
                    .map(|_| "finished".into()),
                // A wall-time budget of its own.
                3 => e
                    .solve(
                        &question(t),
                        &mcts(serde_json::json!({"wall_ms": 1500, "tokens": 1000000})),
                    )
                    .map(|o| format!("{:?}", o.tree.unwrap().stop)),
                // Cancels solve 1 once it has run a while, then solves normally.
                4 => {
                    let o = e.solve(&question(t), &best_of(2, 24, 4))?;
                    token.cancel();
                    check_best_of(&o, 2);
                    Ok("finished".into())
                }
                _ => e.solve(&question(t), &best_of(4, 32, t as u64)).map(|o| {
                    check_best_of(&o, 4);
                    "finished".into()
                }),
            }
        })
    };
    let mut results = results.into_iter();
    assert_eq!(
        results.next().unwrap().unwrap().unwrap(),
        format!("{:?}", StopReason::Cancelled)
    );
    match results.next().unwrap().unwrap() {
        Err(Error::Cancelled) => {}
        other => panic!("solve 1 was cancelled by its token: {other:?}"),
    }
    assert!(
        results.next().unwrap().is_err(),
        "solve 2's thread panicked"
    );
    assert_eq!(
        results.next().unwrap().unwrap().unwrap(),
        format!(
            "{:?}",
            StopReason::Budget {
                limit: Limit::WallTime
            }
        )
    );
    for (t, r) in results.enumerate() {
        assert_eq!(r.unwrap().unwrap(), "finished", "solve {}", t + 4);
    }
    // The engine is whole: nothing leaked, and the next solve works.
    check_empty(&e);
    let o = e.solve(&question(9), &best_of(2, 8, 9)).unwrap();
    check_best_of(&o, 2);
    check_empty(&e);
}

#[test]
fn a_cap_per_solve_bounds_each_solves_branches_and_never_stalls_it() {
    let _serial = serial();
    let too_many = ContextOptions {
        n_seq_max: 8,
        max_seqs_per_solve: 9,
        ..ContextOptions::default()
    };
    let err = too_many.validate().unwrap_err();
    assert_eq!(err.field, "max_seqs_per_solve", "{err}");

    let run = |options: ContextOptions| -> Vec<Outcome> {
        let e = Arc::new(Engine::llama(
            common::model().session(&options).expect("context"),
        ));
        let outcomes = {
            let e = e.clone();
            together(3, move |t| e.solve(&question(t), &best_of(6, 12, t as u64)))
        }
        .into_iter()
        .map(|r| r.expect("no panic").expect("every solve finishes"))
        .collect::<Vec<_>>();
        check_empty(&e);
        outcomes
    };
    for layout in LAYOUTS {
        caps_hold(layout, &run);
    }
}

fn caps_hold(layout: KvLayout, run: &dyn Fn(ContextOptions) -> Vec<Outcome>) {
    // Sampled tokens per forward pass of one solve: at most its live branches.
    let per_pass = |o: &Outcome| o.usage.decoded_tokens as f64 / o.usage.forward_passes as f64;
    let base = options(layout, 2048, 16, 256);
    let free = run(base.clone());
    let capped = run(ContextOptions {
        max_seqs_per_solve: 2,
        ..base.clone()
    });
    let tight = run(ContextOptions {
        max_seqs_per_solve: 3,
        max_cells_per_solve: 8,
        ..base
    });
    for (free, (capped, tight)) in free.iter().zip(capped.iter().zip(&tight)) {
        check_best_of(free, 6);
        check_best_of(capped, 6);
        check_best_of(tight, 6);
        eprintln!(
            "{layout:?}: sampled tokens per pass: {:.2} free, {:.2} with 2 branches per solve, {:.2} with 3 and 8 cells",
            per_pass(free),
            per_pass(capped),
            per_pass(tight)
        );
        assert!(
            per_pass(capped) <= 2.0,
            "never more than 2 branches of one solve"
        );
        assert!(per_pass(tight) <= 3.0);
    }
    assert!(
        free.iter().any(|o| per_pass(o) > 2.0),
        "without a cap a solve's 6 branches run together"
    );
}
