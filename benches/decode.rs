//! Aggregate decode throughput: N branches × 128 new tokens from one shared 64-token prompt.
//!
//! `engine` is ponder's `LlamaLm::generate`; `reference` is a minimal hand-written llama-cpp-2 loop
//! doing the same work (one prefill, `seq_cp` to N sequences, one `llama_decode` per step for all
//! of them, llama.cpp's own sampler chain with the same filters). Throughput is in new tokens.
//!
//! Run: `make bench` (or `cargo bench --bench decode`).

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use ponder::lm::{ContextOptions, GenRequest, Lm, SamplingParams};

const PROMPT_TOKENS: usize = 64;
const NEW_TOKENS: u32 = 128;
const N_CTX: u32 = 4096;
const WIDTHS: [usize; 3] = [1, 4, 16];

fn threads() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
}

/// The same work written directly against llama-cpp-2.
fn reference_run(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    prompt: &[LlamaToken],
    n: usize,
) {
    ctx.clear_kv_cache();
    batch.clear();
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(t, i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    ctx.decode(batch).unwrap();
    for s in 1..n {
        ctx.copy_kv_cache_seq(0, s as i32, None, None).unwrap();
    }
    let defaults = SamplingParams::default();
    let mut samplers: Vec<LlamaSampler> = (0..n)
        .map(|s| {
            LlamaSampler::chain_simple([
                LlamaSampler::top_k(defaults.top_k as i32),
                LlamaSampler::top_p(defaults.top_p, 1),
                LlamaSampler::min_p(defaults.min_p, 1),
                LlamaSampler::temp(defaults.temperature),
                LlamaSampler::dist(s as u32),
            ])
        })
        .collect();
    let mut logits_at = vec![prompt.len() as i32 - 1; n];
    for step in 0..NEW_TOKENS as usize {
        let tokens: Vec<LlamaToken> = samplers
            .iter_mut()
            .zip(&logits_at)
            .map(|(s, &i)| s.sample(ctx, i))
            .collect();
        batch.clear();
        for (s, &t) in tokens.iter().enumerate() {
            batch
                .add(t, (prompt.len() + step) as i32, &[s as i32], true)
                .unwrap();
            logits_at[s] = s as i32;
        }
        ctx.decode(batch).unwrap();
    }
}

/// Engine and reference side by side for each width, so that both see the same machine state.
fn decode(c: &mut Criterion) {
    let model = common::model();
    let backend = ponder::lm::llama::llama_backend().expect("backend");
    for n in WIDTHS {
        let mut group = c.benchmark_group(format!("decode/n={n}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(1));
        group.throughput(Throughput::Elements(n as u64 * u64::from(NEW_TOKENS)));

        let mut lm = model
            .session(&ContextOptions {
                n_ctx: N_CTX,
                n_seq_max: n as u32,
                ..ContextOptions::default()
            })
            .expect("context");
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

        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(N_CTX))
            .with_n_batch(2048)
            .with_n_ubatch(512)
            .with_n_seq_max(n as u32)
            .with_kv_unified(true)
            .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO)
            .with_n_threads(threads())
            .with_n_threads_batch(threads());
        let mut ctx = model
            .llama_model()
            .new_context(backend, params)
            .expect("context");
        let prompt: Vec<LlamaToken> = prompt.into_iter().map(LlamaToken).collect();
        let mut batch = LlamaBatch::new(2048, 1);
        group.bench_function("reference", |b| {
            b.iter(|| reference_run(&mut ctx, &mut batch, &prompt, n))
        });
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
