//! MCTS against best-of-N at the same generated-token budget: wall time per solve, and how many
//! tokens MCTS runs through the model compared with the tokens its tree holds (prompt, steps,
//! rejected steps, rollouts, judge questions) — and compared with what an implementation that
//! re-prefills the whole path for every expansion and every verdict would process on the same
//! tree.
//!
//! Run: `cargo bench --bench search`.

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ponder::lm::ContextOptions;
use ponder::strategy::{
    BestOfNConfig, Budget, MctsConfig, Problem, SearchTree, StepConfig, StrategyConfig,
};

const QUESTION: &str = "A baker makes 24 muffins. She sells 9 in the morning and 7 in the afternoon. How many muffins are left?";
const BUDGET: u64 = 512;

fn mcts() -> StrategyConfig {
    StrategyConfig::Mcts(MctsConfig {
        end_gate: None,
        step: StepConfig {
            max_tokens: 64,
            ..StepConfig::default()
        },
        budget: Budget {
            tokens: Some(BUDGET),
            ..Budget::default()
        },
        ..MctsConfig::default()
    })
}

fn best_of_n() -> StrategyConfig {
    StrategyConfig::BestOfN(BestOfNConfig {
        n: 4,
        max_tokens: (BUDGET / 4) as u32,
        ..BestOfNConfig::default()
    })
}

/// Tokens a re-prefilling implementation would run through the model for `tree`: every child
/// sampled after prefilling the prompt and its whole path, every verdict after prefilling the
/// prompt, the path and the question.
fn reprefill_tokens(tree: &SearchTree, judge_question: u64) -> u64 {
    let mut total = 0;
    for n in tree.nodes.iter().skip(1) {
        let path: u64 = tree
            .path(n.id)
            .iter()
            .map(|&i| u64::from(tree.nodes[i].tokens))
            .sum();
        // `path` includes the step. Sampling the step: prompt + steps above + the step;
        // judging it: prompt + path + question; a rollout: prompt + path + rollout, and its
        // verdict: that again + question.
        let head = tree.prompt_tokens + path;
        total += head + head + judge_question;
        if let Some(r) = &n.rollout {
            let r = u64::from(r.tokens);
            total += (head + r) + (head + r + judge_question);
        }
    }
    total + tree.rejected_tokens
}

fn search(c: &mut Criterion) {
    let mut lm = common::model()
        .session(&ContextOptions {
            n_ctx: 4096,
            n_seq_max: 64,
            ..ContextOptions::default()
        })
        .expect("context");
    let problem = Problem::new(QUESTION).with_answer("8");

    // One measured solve of each for the token accounting.
    for (name, strategy) in [("mcts", mcts()), ("best_of_n", best_of_n())] {
        let o = strategy.run(&mut lm, &problem).unwrap();
        let u = o.usage;
        let processed = u.prefill_tokens + u.decoded_tokens + u.recomputed_tokens;
        eprintln!(
            "{name}: generated {} · processed {processed} (prefill {} + decoded {} + recomputed {}) \
             · reused from cache {} ({:.1}% of processed + reused) · {} forward passes · {:.2} s",
            u.generated_tokens,
            u.prefill_tokens,
            u.decoded_tokens,
            u.recomputed_tokens,
            u.reused_tokens,
            100.0 * u.reused_tokens as f64 / (u.reused_tokens + processed) as f64,
            u.forward_passes,
            u.wall_ms as f64 / 1000.0,
        );
        if let Some(tree) = &o.tree {
            let nodes = (tree.nodes.len() - 1) as u64;
            let question = tree.judge_tokens / nodes.max(1);
            let naive = reprefill_tokens(tree, question);
            eprintln!(
                "{name}: tree {} steps · tree tokens {} (prompt {} + steps {} + rejected {} + \
                 rollouts {} + judge questions {}) · processed / tree = {:.3} · a re-prefilling \
                 implementation: {naive} tokens = {:.2}× the tree",
                nodes,
                tree.total_tokens(),
                tree.prompt_tokens,
                tree.node_tokens(),
                tree.rejected_tokens,
                tree.rollout_tokens,
                tree.judge_tokens,
                processed as f64 / tree.total_tokens() as f64,
                naive as f64 / tree.total_tokens() as f64,
            );
        }
    }

    let mut group = c.benchmark_group(format!("solve/{BUDGET}_tokens"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(60));
    for (name, strategy) in [("mcts", mcts()), ("best_of_n", best_of_n())] {
        group.bench_function(name, |b| {
            b.iter(|| strategy.run(&mut lm, &problem).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
