//! Self-reward signals and DeepConf on the reasoner (Qwen2.5-Coder-0.5B-Instruct), where they
//! have something to discriminate: the in-place judge, token confidence and its early stop.

mod common;

use common::{reasoner, serial};

use ponder::lm::{ContextOptions, LlamaLm, Lm};
use ponder::reward::judge::{Judge, JudgeConfig, Verdict};
use ponder::strategy::best_of_n::{choose, Ballots};
use ponder::strategy::{BestOfNConfig, DeepConfConfig, Problem, PromptConfig, Rerank};
use ponder::{ConfidenceStop, FinishReason, GenRequest, SamplingParams, StrategyConfig};

fn session(n_seq_max: u32) -> LlamaLm {
    reasoner()
        .session(&ContextOptions {
            n_ctx: 4096,
            n_seq_max,
            ..ContextOptions::default()
        })
        .expect("context")
}

const QUESTION: &str =
    "A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?";

/// The same derivation, right and with one slip, in the reasoner's own style.
const RIGHT: &str = "1. **Buy**: \\[ 15 + 8 = 23 \\]\n\n2. **Sell**: \\[ 23 - 6 = 17 \\]\n\nThe answer is \\(\\boxed{17}\\).";
const WRONG: &str = "1. **Buy**: \\[ 15 + 8 = 24 \\]\n\n2. **Sell**: \\[ 24 - 6 = 18 \\]\n\nThe answer is \\(\\boxed{18}\\).";

/// The in-place verdict is read on the candidate's own node, and the reasoner puts most of its
/// mass on the verdict words there. It does *not* reliably prefer the right solution (README:
/// judge AUC 0.46 on the reasoner; on these two texts it scores the wrong one 0.47, the right one
/// 0.45), so this test asserts what holds, not a separation the judge does not make.
#[test]
fn the_in_place_judge_reads_a_verdict_on_the_candidates_own_node() {
    let _serial = serial();
    let mut lm = session(4);
    let root = lm
        .root(&PromptConfig::default().messages(QUESTION))
        .unwrap();
    let right = lm.extend(root, RIGHT).unwrap();
    let wrong = lm.extend(root, WRONG).unwrap();
    let judge = Judge::new(&lm, JudgeConfig::default()).unwrap();
    let question = judge.inline_suffix(&lm, right, Verdict::Outcome).unwrap();
    let (scores, asked) = judge
        .score_inline(
            &mut lm,
            &[(right, Verdict::Outcome), (wrong, Verdict::Outcome)],
        )
        .unwrap();
    // Only the question's tokens are added, once per candidate.
    assert_eq!(asked, 2 * question.len());
    for s in &scores {
        assert!((0.0..=1.0).contains(&s.score));
        assert!(s.p_yes + s.p_no > 0.5, "{s:?}");
    }
    assert!(
        (scores[0].score - scores[1].score).abs() > 1e-4,
        "the verdict reads the candidate"
    );
}

/// Generative verification on the reasoner: a check is written after each candidate, in place,
/// and the verdict is read after the check; every node it made is gone afterwards.
#[test]
fn the_generative_judge_writes_a_check_then_reads_its_verdict() {
    let _serial = serial();
    let mut lm = session(4);
    let root = lm
        .root(&PromptConfig::default().messages(QUESTION))
        .unwrap();
    let right = lm.extend(root, RIGHT).unwrap();
    let wrong = lm.extend(root, WRONG).unwrap();
    let judge = Judge::new(
        &lm,
        JudgeConfig {
            check_tokens: 48,
            ..JudgeConfig::default()
        },
    )
    .unwrap();
    let live = lm.live_sequences();
    let (scores, checks, decoded) = judge.score_generative(&mut lm, &[right, wrong]).unwrap();
    assert_eq!(scores.len(), 2);
    for (s, check) in scores.iter().zip(&checks) {
        assert!((0.0..=1.0).contains(&s.score), "{s:?}");
        assert!(s.p_yes + s.p_no > 0.1, "{s:?} after {check:?}");
        assert!(!check.trim().is_empty());
    }
    // The checks differ (they read different candidates), and at most 48 tokens each.
    assert_ne!(checks[0], checks[1]);
    assert!(decoded > 0);
    assert_eq!(lm.live_sequences(), live, "the checks' nodes are released");
    eprintln!(
        "generative verdicts: right {:.3}, wrong {:.3}",
        scores[0].score, scores[1].score
    );
    eprintln!("checks: {checks:?}");
}

#[test]
fn every_sampled_token_has_a_confidence_and_a_confidence_stop_ends_decoding() {
    let _serial = serial();
    let mut lm = session(2);
    let root = lm
        .root(&PromptConfig::default().messages(QUESTION))
        .unwrap();
    let plain = GenRequest {
        sampling: SamplingParams::greedy(),
        ..GenRequest::new(root, 24)
    };
    // A threshold no group can reach: the branch stops as soon as it has one group.
    let stopped = GenRequest {
        confidence_stop: Some(ConfidenceStop {
            window: 6,
            threshold: 1e9,
        }),
        ..plain.clone()
    };
    let before = lm.usage();
    let g = lm.generate(&[plain, stopped]).unwrap();
    assert_eq!(g[0].confidence.len(), g[0].tokens as usize);
    assert!(g[0].confidence.iter().all(|c| c.is_finite() && *c > 0.0));
    assert_eq!(g[1].finish, FinishReason::LowConfidence);
    assert_eq!(g[1].tokens, 6);
    // Greedy, same prefix: the stopped branch's tokens are the first six of the other's.
    assert!(
        g[0].text.starts_with(&g[1].text),
        "{:?} / {:?}",
        g[0].text,
        g[1].text
    );
    for (a, b) in g[1].confidence.iter().zip(&g[0].confidence) {
        assert!((a - b).abs() < 0.1, "{a} vs {b}");
    }
    assert_eq!(
        lm.usage().since(&before).generated_tokens,
        u64::from(g[0].tokens + 6)
    );
}

/// Self-certainty and entropy are computed from the same logits the sampler reads: the first
/// token's values equal those of the whole next-token distribution at the root, read back
/// through `next_token_probs` over every token of the vocabulary.
#[test]
fn every_sampled_token_has_a_certainty_and_an_entropy_of_its_distribution() {
    let _serial = serial();
    let mut lm = session(2);
    let root = lm
        .root(&PromptConfig::default().messages(QUESTION))
        .unwrap();
    let g = lm
        .generate(&[GenRequest {
            sampling: SamplingParams::greedy(),
            ..GenRequest::new(root, 16)
        }])
        .unwrap();
    let g = &g[0];
    assert_eq!(g.certainty.len(), g.tokens as usize);
    assert_eq!(g.entropy.len(), g.tokens as usize);
    let v = lm.vocab_size();
    let ln_v = (v as f64).ln();
    for (&c, &h) in g.certainty.iter().zip(&g.entropy) {
        assert!(c.is_finite() && c >= 0.0, "certainty {c}");
        assert!(
            h.is_finite() && (0.0..=ln_v as f32 + 1e-3).contains(&h),
            "entropy {h}"
        );
    }
    let every: Vec<i32> = (0..v as i32).collect();
    let p = lm.next_token_probs(&[(root, every.as_slice())]).unwrap();
    let p: Vec<f64> = p[0].iter().map(|&x| f64::from(x)).collect();
    let entropy: f64 = -p
        .iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| q * q.ln())
        .sum::<f64>();
    assert!(
        (f64::from(g.entropy[0]) - entropy).abs() < 1e-3 * entropy.max(1.0),
        "entropy {} vs {entropy}",
        g.entropy[0]
    );
    // KL(U || p) needs every probability: none underflows f32 at this position.
    assert!(p.iter().all(|&q| q > 0.0), "a probability underflowed");
    let certainty = -ln_v - p.iter().map(|q| q.ln()).sum::<f64>() / v as f64;
    assert!(
        (f64::from(g.certainty[0]) - certainty).abs() < 1e-2 * certainty.max(1.0),
        "certainty {} vs {certainty}",
        g.certainty[0]
    );
    lm.release(g.node);
    lm.release(root);
}

/// Every new reranker runs on the reasoner's own samples, every candidate carries the signals
/// it reads, and the pick is the candidate the signal ranks first.
#[test]
fn the_certainty_rerankers_rank_the_reasoners_own_samples() {
    let _serial = serial();
    let mut lm = session(4);
    let problem = Problem::new(QUESTION).with_answer("17");
    for rerank in [
        Rerank::SelfCertainty,
        Rerank::BordaVote,
        Rerank::TailEntropy,
        Rerank::Cisc,
    ] {
        let strategy = StrategyConfig::BestOfN(BestOfNConfig {
            n: 4,
            max_tokens: 96,
            rerank,
            ..BestOfNConfig::default()
        });
        let out = strategy.run(&mut lm, &problem).unwrap();
        assert_eq!(out.candidates.len(), 4);
        let signals: Vec<_> = out
            .candidates
            .iter()
            .map(|c| c.confidence.expect("sampled candidates carry signals"))
            .collect();
        let certainty: Vec<f64> = signals.iter().map(|s| s.self_certainty.unwrap()).collect();
        let entropy: Vec<f64> = signals.iter().map(|s| s.tail_entropy.unwrap()).collect();
        assert!(certainty.iter().chain(&entropy).all(|x| x.is_finite()));
        // The first by the signal among the candidates that reached an answer (all, when none
        // did): a trace cut off before its answer is not picked while another has one.
        let answered = out.candidates.iter().any(|c| c.answer.is_some());
        let eligible: Vec<usize> = (0..out.candidates.len())
            .filter(|&i| !answered || out.candidates[i].answer.is_some())
            .collect();
        let first = |xs: &[f64]| {
            eligible
                .iter()
                .copied()
                .max_by(|&a, &b| xs[a].total_cmp(&xs[b]).then(b.cmp(&a)))
                .unwrap()
        };
        match rerank {
            Rerank::SelfCertainty => assert_eq!(out.chosen, first(&certainty)),
            Rerank::TailEntropy => {
                let sure: Vec<f64> = entropy.iter().map(|h| -h).collect();
                assert_eq!(out.chosen, first(&sure));
            }
            _ => {
                // The votes recomputed from what the candidates carry pick the same one.
                let answers: Vec<Option<String>> =
                    out.candidates.iter().map(|c| c.answer.clone()).collect();
                let logprobs: Vec<f64> = out.candidates.iter().map(|c| c.mean_logprob).collect();
                let lowest: Vec<f64> = signals.iter().map(|s| s.lowest_group).collect();
                let ballots = Ballots {
                    answers: &answers,
                    judged: None,
                    confidence: &lowest,
                    logprobs: &logprobs,
                    certainty: Some(&certainty),
                    tail_entropy: Some(&entropy),
                };
                let config = BestOfNConfig {
                    rerank,
                    ..BestOfNConfig::default()
                };
                assert_eq!(
                    out.chosen,
                    choose(rerank, &config, &ballots).1,
                    "{rerank:?}"
                );
            }
        }
        assert_eq!(lm.live_sequences(), 0, "{rerank:?}");
    }
}

#[test]
fn deepconf_online_spends_fewer_tokens_than_the_same_plain_samples() {
    let _serial = serial();
    let engine = ponder::Engine::llama(session(8));
    let problem = Problem::new(QUESTION).with_answer("17");
    let (n, max_tokens) = (6, 200);
    let plain = engine
        .solve(
            &problem,
            &StrategyConfig::BestOfN(BestOfNConfig {
                n,
                max_tokens,
                rerank: Rerank::Vote,
                ..BestOfNConfig::default()
            }),
        )
        .unwrap();
    let online = engine
        .solve(
            &problem,
            &StrategyConfig::DeepConf(DeepConfConfig {
                n,
                warmup: 2,
                batch: 2,
                max_tokens,
                ..DeepConfConfig::default()
            }),
        )
        .unwrap();
    assert_eq!(plain.candidates.len(), n as usize);
    assert!(online.candidates.len() <= n as usize);
    assert!(
        online.usage.generated_tokens < plain.usage.generated_tokens,
        "deepconf {} vs plain {} tokens",
        online.usage.generated_tokens,
        plain.usage.generated_tokens
    );
}

/// A DeepConf trace cut off at `max_tokens` votes only an answer it stated, never a number of its
/// unfinished working, and the live `Sample` event says the same answer as its candidate.
#[test]
fn deepconf_gives_a_cut_off_trace_only_the_answer_it_stated() {
    use ponder::strategy::{Event, Flow};
    let _serial = serial();
    let engine = ponder::Engine::llama(session(8));
    let problem = Problem::new(QUESTION).with_answer("17");
    let mut sampled = Vec::new();
    let mut record = |e: &Event| {
        if let Event::Sample { answer, .. } = e {
            sampled.push(answer.clone());
        }
        Flow::Continue
    };
    let out = engine
        .solve_with(
            &problem,
            &StrategyConfig::DeepConf(DeepConfConfig {
                n: 4,
                warmup: 2,
                batch: 2,
                max_tokens: 24,
                ..DeepConfConfig::default()
            }),
            &mut record,
        )
        .unwrap();
    let cut: Vec<_> = out
        .candidates
        .iter()
        .filter(|c| c.finish == FinishReason::MaxTokens)
        .collect();
    assert!(
        cut.iter()
            .any(|c| c.text.chars().any(|ch| ch.is_ascii_digit())),
        "24 tokens of working hold a number: {:?}",
        out.candidates.iter().map(|c| &c.text).collect::<Vec<_>>()
    );
    for c in &cut {
        assert_eq!(c.answer, problem.explicit(&c.text), "{:?}", c.text);
    }
    let answers: Vec<_> = out.candidates.iter().map(|c| c.answer.clone()).collect();
    assert_eq!(sampled, answers);
}

/// The signal that does separate the two derivations on the reasoner: the model's own likelihood
/// of each, read in place after the question (the `logprob` reranker's signal). The slip
/// (15 + 8 = 24) costs the wrong derivation likelihood at the slip and at every step built on it.
#[test]
fn the_reasoners_own_likelihood_prefers_the_right_derivation() {
    let _serial = serial();
    let mut lm = session(4);
    let root = lm
        .root(&PromptConfig::default().messages(QUESTION))
        .unwrap();
    let lps = lm.forced_logprobs(&[(root, RIGHT), (root, WRONG)]).unwrap();
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let (right, wrong) = (mean(&lps[0]), mean(&lps[1]));
    assert!(
        right > wrong,
        "mean logprob of the right derivation {right:.3} vs the wrong one {wrong:.3}"
    );
}
