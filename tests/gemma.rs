//! A second architecture: Gemma-3-270M (base, Q4_K_M, 262k-token vocabulary, no chat template,
//! a tokenizer that adds BOS). `make test` fetches it (`scripts/setup.sh --test-models`).

use std::path::PathBuf;
use std::sync::OnceLock;

use ponder::lm::{ContextOptions, GenRequest, LlamaLm, Lm, Message, Model, ModelOptions};
use ponder::reward::judge::{Judge, JudgeConfig, Verdict};
use ponder::strategy::{BestOfNConfig, Problem, Rerank, StrategyConfig};
use ponder::{Engine, SamplingParams};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
        Model::load(&ModelOptions {
            path,
            ..ModelOptions::default()
        })
        .unwrap_or_else(|e| panic!("run `bash scripts/setup.sh --test-models`: {e}"))
    })
}

fn session(n_seq_max: u32) -> LlamaLm {
    model()
        .session(&ContextOptions {
            n_ctx: 2048,
            n_seq_max,
            ..ContextOptions::default()
        })
        .unwrap()
}

#[test]
fn gemma_samples_in_lockstep_from_one_prefill() {
    assert!(model().vocab_size() > 200_000, "a large vocabulary");
    let mut lm = session(8);
    let root = lm.root(&[Message::user("Name a colour.")]).unwrap();
    // Without a chat template the conversation is plain text; the tokenizer adds BOS once.
    let tokens = lm.node_tokens(root).unwrap();
    assert_ne!(tokens[0], tokens[1]);
    let prompt = tokens.len() as u64;
    let gens = lm
        .generate(
            &(0..4)
                .map(|s| GenRequest {
                    parent: root,
                    sampling: SamplingParams::default().with_seed(s),
                    stop: Vec::new(),
                    max_tokens: 12,
                    ignore_eos: false,
                    confidence_stop: None,
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let u = lm.usage();
    assert_eq!(u.prefill_tokens, prompt);
    let longest = gens.iter().map(|g| u64::from(g.tokens)).max().unwrap();
    assert_eq!(u.forward_passes, 1 + longest);
    assert!(gens.iter().all(|g| g.logprob < 0.0 && g.tokens >= 1));
}

#[test]
fn gemma_parks_and_reactivates_exactly() {
    let mut lm = session(2);
    let root = lm.root_text("The three primary colours are").unwrap();
    let gens = lm
        .generate(
            &(0..5)
                .map(|s| GenRequest {
                    parent: root,
                    sampling: SamplingParams::default().with_seed(s),
                    stop: Vec::new(),
                    max_tokens: 6,
                    ignore_eos: true,
                    confidence_stop: None,
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert!(lm.usage().parked > 0);
    let cands: Vec<i32> = (0..2000).collect();
    let before = lm.next_token_probs(&[(gens[0].node, &cands)]).unwrap();
    let others: Vec<(ponder::Node, &[i32])> =
        gens[1..].iter().map(|g| (g.node, &cands[..1])).collect();
    lm.next_token_probs(&others).unwrap();
    assert!(!lm.is_attached(gens[0].node).unwrap());
    let after = lm.next_token_probs(&[(gens[0].node, &cands)]).unwrap();
    let diff = before[0]
        .iter()
        .zip(&after[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "{diff}");
}

#[test]
fn gemma_judges_and_runs_best_of_n() {
    let mut lm = session(8);
    let judge = Judge::new(&lm, JudgeConfig::default()).unwrap();
    let v = judge
        .prepare(&mut lm, "What is 2 + 2?", Verdict::Outcome)
        .unwrap();
    let scores = judge
        .score(
            &mut lm,
            &v,
            &["2 + 2 = 4. The answer is 4.", "2 + 2 = 5. The answer is 5."],
        )
        .unwrap();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(&s.score)));
    v.release(&mut lm);

    let engine = Engine::llama(lm);
    let out = engine
        .solve(
            &Problem::new("What is 2 + 2?").with_answer("4"),
            &StrategyConfig::BestOfN(BestOfNConfig {
                n: 2,
                max_tokens: 24,
                rerank: Rerank::Judge,
                ..BestOfNConfig::default()
            }),
        )
        .unwrap();
    assert_eq!(out.candidates.len(), 2);
    assert!(out
        .candidates
        .iter()
        .all(|c| c.judge.is_some() && c.correct.is_some()));
}
