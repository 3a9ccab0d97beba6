//! Tree search (MCTS, beam) on the real default model: the KV-tree invariant, parking under a
//! small sequence limit, the trace's invariants and the budget.

mod common;

use ponder::strategy::{
    AnswerBy, BeamConfig, Budget, MctsConfig, Outcome, Problem, RolloutConfig, SearchTree,
    StepConfig, StrategyConfig, ValueSignal,
};

const QUESTION: &str =
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?";

fn problem() -> Problem {
    Problem::new(QUESTION).with_answer("10")
}

fn mcts(tokens: u64) -> MctsConfig {
    MctsConfig {
        k: 3,
        step: StepConfig {
            max_tokens: 48,
            ..StepConfig::default()
        },
        budget: Budget {
            tokens: Some(tokens),
            ..Budget::default()
        },
        ..MctsConfig::default()
    }
}

/// Checks what every search tree must satisfy; returns it.
fn check_tree(outcome: &Outcome) -> &SearchTree {
    let tree = outcome
        .tree
        .as_deref()
        .expect("tree searches keep their tree");
    for n in &tree.nodes {
        assert!(
            (0.0..=1.0).contains(&n.value),
            "node {}: value {}",
            n.id,
            n.value
        );
        if let Some(j) = n.judge {
            assert!((0.0..=1.0).contains(&j));
        }
        if let Some(p) = n.parent {
            assert!(
                n.visits <= tree.nodes[p].visits,
                "node {} has {} visits, its parent {}",
                n.id,
                n.visits,
                tree.nodes[p].visits
            );
            assert!(tree.nodes[p].children.contains(&n.id));
            assert_eq!(n.depth, tree.nodes[p].depth + 1);
            // Valued: by the judge, or (the default) by the path's likelihood, never 0.
            assert!(
                n.id > 0 && (n.judge.is_some() || n.value > 0.0),
                "every step is valued"
            );
        }
    }
    let last = *tree.chosen.last().unwrap();
    assert_eq!(tree.chosen, tree.path(last));
    assert!(
        tree.nodes[last].terminal || tree.stop.is_budget(),
        "the chosen path ends in a finished solution, or the budget ran out: {:?}",
        tree.stop
    );
    assert_eq!(outcome.text, tree.path_text(last));
    tree
}

#[test]
fn mcts_decodes_every_token_of_its_tree_once() {
    let mut lm = common::session(4096, 64);
    let config = MctsConfig {
        rollout: Some(RolloutConfig {
            alpha: 0.5,
            max_tokens: 32,
        }),
        ..mcts(300)
    };
    let outcome = StrategyConfig::Mcts(config)
        .run(&mut lm, &problem())
        .unwrap();
    let tree = check_tree(&outcome);
    let u = outcome.usage;
    assert_eq!((u.parked, u.recomputed_tokens), (0, 0), "{u:?}");
    assert!(tree.nodes.len() > 3, "the search expanded beyond the root");
    assert!(tree.rollout_tokens > 0, "rollouts ran");
    // Prefill: the prompt once, then only the judge's inline questions — no step is prefilled
    // again, however deep.
    assert_eq!(u.prompt_tokens, tree.prompt_tokens);
    assert_eq!(u.prefill_tokens, tree.prompt_tokens + tree.judge_tokens);
    // Sampled: the kept steps, the rejected ones and the rollouts; each run through the model
    // once (identical tokens sampled by sibling branches are shared, so decoded can be less).
    assert_eq!(
        u.generated_tokens,
        tree.node_tokens() + tree.rejected_tokens + tree.rollout_tokens
    );
    assert!(u.decoded_tokens <= u.generated_tokens);
    assert!(u.prefill_tokens + u.decoded_tokens <= tree.total_tokens());
    assert_eq!(lm.live_sequences(), 0, "every node was released");
}

#[test]
fn mcts_parks_under_a_small_sequence_limit_and_reports_the_cost() {
    let mut lm = common::session(4096, 4);
    // The breadth-first, judge-valued search (the old defaults) comes back to parked nodes: its
    // judge questions and its siblings need more sequences than 4, and it expands them later.
    let config = MctsConfig {
        value: ValueSignal::Judge,
        dive: false,
        end_gate: Some(0.9),
        answer_by: AnswerBy::Value,
        ..mcts(240)
    };
    let outcome = StrategyConfig::Mcts(config)
        .run(&mut lm, &problem())
        .unwrap();
    let tree = check_tree(&outcome);
    let u = outcome.usage;
    assert!(u.parked > 0, "4 sequences cannot hold the tree: {u:?}");
    assert!(u.reactivated > 0);
    // Parked nodes come back by decoding only what is missing: the re-decoded tokens are
    // counted, and everything else is as without parking.
    assert_eq!(u.prefill_tokens, tree.prompt_tokens + tree.judge_tokens);
    assert!(u.recomputed_tokens > 0, "re-attaching decodes something");
    assert!(u.prefill_tokens + u.decoded_tokens <= tree.total_tokens());
    eprintln!(
        "n_seq_max 4: parked {} · reactivated {} · recomputed {} of {} tree tokens",
        u.parked,
        u.reactivated,
        u.recomputed_tokens,
        tree.total_tokens()
    );
}

#[test]
fn the_budget_is_exceeded_by_at_most_one_batch_step() {
    let mut lm = common::session(4096, 64);
    for budget in [60, 200] {
        let config = mcts(budget);
        let outcome = StrategyConfig::Mcts(config.clone())
            .run(&mut lm, &problem())
            .unwrap();
        let tree = check_tree(&outcome);
        let generated = outcome.usage.generated_tokens;
        let one_step = u64::from(config.k * config.step.max_tokens);
        assert!(
            generated <= budget + one_step,
            "{generated} tokens for a budget of {budget}"
        );
        if tree.stop.is_budget() {
            assert!(generated >= budget);
        }
    }
}

#[test]
fn beam_search_runs_and_keeps_a_consistent_tree() {
    let mut lm = common::session(4096, 64);
    let config = BeamConfig {
        width: 2,
        expansions: 2,
        step: StepConfig {
            max_tokens: 48,
            ..StepConfig::default()
        },
        budget: Budget {
            tokens: Some(300),
            ..Budget::default()
        },
        ..BeamConfig::default()
    };
    let outcome = StrategyConfig::Beam(config)
        .run(&mut lm, &problem())
        .unwrap();
    let tree = check_tree(&outcome);
    // Level 1 has width × expansions first steps, later levels at most that many.
    assert!(tree.nodes[0].children.len() <= 4);
    let u = outcome.usage;
    assert_eq!(u.prefill_tokens, tree.prompt_tokens + tree.judge_tokens);
    assert_eq!(
        u.generated_tokens,
        tree.node_tokens() + tree.rejected_tokens
    );
    assert_eq!(outcome.strategy, "beam");
}
