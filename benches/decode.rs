//! Aggregate decode throughput: N branches × 128 new tokens from one shared 64-token prompt.
//!
//! `engine` is ponder's `LlamaLm::generate`; `reference` is `ReferenceDecode`, a minimal llama-cpp-2
//! loop doing the same work (one prefill, `seq_cp` to N sequences, one `llama_decode` per step for
//! all of them, llama.cpp's own sampler chain with the same filters) on a context made with the
//! same options. Throughput is in new tokens.
//!
//! Run: `make bench` (or `cargo bench --bench decode`).

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ponder::lm::llama::ReferenceDecode;
use ponder::lm::{ContextOptions, GenRequest, Lm, SamplingParams};

const PROMPT_TOKENS: usize = 64;
const NEW_TOKENS: u32 = 128;
const N_CTX: u32 = 4096;
const WIDTHS: [usize; 3] = [1, 4, 16];

/// Engine and reference side by side for each width, so that both see the same machine state.
fn decode(c: &mut Criterion) {
    let model = common::model();
    for n in WIDTHS {
        let mut group = c.benchmark_group(format!("decode/n={n}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(1));
        group.throughput(Throughput::Elements(n as u64 * u64::from(NEW_TOKENS)));

        let options = ContextOptions {
            n_ctx: N_CTX,
            n_seq_max: n as u32,
            ..ContextOptions::default()
        };
        let mut lm = model.session(&options).expect("context");
        let prompt = common::prompt_tokens(&lm, PROMPT_TOKENS);
        group.bench_function("engine", |b| {
            b.iter(|| {
                let root = lm.root_tokens(&prompt).unwrap();
                let requests: Vec<GenRequest> = (0..n as u64)
                    .map(|seed| GenRequest {
                        parent: root,
                        sampling: SamplingParams::default().with_seed(seed),
                        stop: Vec::new(),
                        max_tokens: NEW_TOKENS,
                        ignore_eos: true,
                        confidence_stop: None,
                    })
                    .collect();
                let gens = lm.generate(&requests).unwrap();
                assert!(gens.iter().all(|g| g.tokens == NEW_TOKENS));
                for g in gens {
                    lm.release(g.node);
                }
                lm.release(root);
            })
        });
        drop(lm);

        let mut reference = ReferenceDecode::new(model, &options).expect("context");
        group.bench_function("reference", |b| {
            b.iter(|| {
                reference
                    .run(&prompt, n, NEW_TOKENS, &SamplingParams::default())
                    .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
