//! Judging 16 candidates of about 150 tokens with the self-judge: time per batch, and tokens
//! decoded per candidate (which must be the candidate's own tokens plus the verifier suffix: the
//! shared instructions and question are decoded once per batch, nothing is re-prefilled).
//!
//! Run: `cargo bench --bench judge`.

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ponder::lm::{ContextOptions, GenRequest, Lm, Message, SamplingParams};
use ponder::reward::judge::{Judge, JudgeConfig, Verdict};

const QUESTION: &str =
    "A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?";
const CANDIDATES: usize = 16;
const CANDIDATE_TOKENS: u32 = 150;

fn judge(c: &mut Criterion) {
    let mut lm = common::model()
        .session(&ContextOptions {
            n_ctx: 8192,
            n_seq_max: 32,
            ..ContextOptions::default()
        })
        .expect("context");
    // 16 real candidates of 150 tokens from the model itself.
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let requests: Vec<GenRequest> = (0..CANDIDATES as u64)
        .map(|seed| GenRequest {
            parent: root,
            sampling: SamplingParams::default().with_seed(seed),
            stop: Vec::new(),
            max_tokens: CANDIDATE_TOKENS,
            ignore_eos: true,
            confidence_stop: None,
        })
        .collect();
    let gens = lm.generate(&requests).unwrap();
    let texts: Vec<String> = gens.iter().map(|g| g.text.clone()).collect();
    for g in gens {
        lm.release(g.node);
    }
    lm.release(root);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let judge = Judge::new(&lm, JudgeConfig::default()).unwrap();

    // One measured batch for the token accounting.
    let before = lm.usage();
    let v = judge.prepare(&mut lm, QUESTION, Verdict::Outcome).unwrap();
    let prefix = lm.node_len(v.node()).unwrap() as u64;
    let suffix = lm.tokenize(v.suffix()).unwrap().len() as u64;
    let own: u64 = refs
        .iter()
        .map(|t| {
            lm.tokenize(&format!("{}{}", t.trim_end(), v.suffix()))
                .unwrap()
                .len() as u64
        })
        .sum();
    judge.score(&mut lm, &v, &refs).unwrap();
    v.release(&mut lm);
    let u = lm.usage().since(&before);
    eprintln!(
        "judge: {CANDIDATES} candidates · shared prefix {prefix} tokens (decoded once) · \
         suffix {suffix} tokens · decoded {} tokens = prefix + {:.1} per candidate \
         (own text + suffix: {:.1}) · {} forward passes · recomputed {}",
        u.prefill_tokens,
        (u.prefill_tokens - prefix) as f64 / CANDIDATES as f64,
        own as f64 / CANDIDATES as f64,
        u.forward_passes,
        u.recomputed_tokens,
    );

    let mut group = c.benchmark_group("judge");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(CANDIDATES as u64));
    for (name, batch_tokens) in [("16x150/batch_tokens=256", 256), ("16x150/one_pass", 0)] {
        let judge = Judge::new(
            &lm,
            JudgeConfig {
                batch_tokens,
                ..JudgeConfig::default()
            },
        )
        .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let v = judge.prepare(&mut lm, QUESTION, Verdict::Outcome).unwrap();
                let scores = judge.score(&mut lm, &v, &refs).unwrap();
                v.release(&mut lm);
                scores
            })
        });
    }
    group.finish();
}

criterion_group!(benches, judge);
criterion_main!(benches);
