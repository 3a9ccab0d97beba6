//! [`ReferenceDecode`]: llama.cpp driven directly, the baseline ponder's decoding is measured
//! against.

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::context::ModelContext;
use super::{ContextOptions, Model};
use crate::error::{DecodeError, Error};
use crate::lm::{SamplingParams, TokenId};

/// The plainest llama-cpp-2 loop for "N branches from one prompt", without ponder's node tree,
/// scheduler or sampler: one prefill, `llama_memory_seq_cp` to N sequences, one `llama_decode`
/// per step for all of them, llama.cpp's own sampler chain. `benches/decode.rs` runs it next to
/// [`crate::Lm::generate`] on the same model and context settings, so that what ponder's engine
/// adds over llama.cpp is measured rather than guessed.
pub struct ReferenceDecode {
    ctx: ModelContext,
    batch: LlamaBatch<'static>,
    n_seq_max: usize,
}

impl std::fmt::Debug for ReferenceDecode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceDecode")
            .field("n_seq_max", &self.n_seq_max)
            .finish()
    }
}

impl ReferenceDecode {
    /// A context over `model` made exactly as [`Model::session`] makes one.
    ///
    /// # Errors
    /// As [`Model::session`].
    pub fn new(model: &Model, options: &ContextOptions) -> Result<Self, Error> {
        options.validate()?;
        let sizing = options.sizing();
        let (ctx, n_batch) = ModelContext::open(model, options, &sizing)?;
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(n_batch as usize, sizing.n_seq_max as i32),
            n_seq_max: sizing.n_seq_max as usize,
        })
    }

    /// From an empty cache: prefills `prompt` once, copies it to `n` sequences and samples
    /// `new_tokens` tokens on each (end-of-sequence ignored), sequence `s` with `sampling`'s
    /// top-k, top-p, min-p and temperature and seed `s`.
    ///
    /// # Errors
    /// [`DecodeError::Llama`] when a `llama_decode` fails (an empty prompt, a prompt longer than
    /// the batch, `n` above the context's `n_seq_max`, or too little KV cache).
    pub fn run(
        &mut self,
        prompt: &[TokenId],
        n: usize,
        new_tokens: u32,
        sampling: &SamplingParams,
    ) -> Result<(), DecodeError> {
        if prompt.is_empty() || n == 0 || n > self.n_seq_max {
            return Err(DecodeError::Llama { code: -1 });
        }
        self.ctx.clear();
        self.batch.clear();
        for (i, &t) in prompt.iter().enumerate() {
            self.batch
                .add(LlamaToken(t), i as i32, &[0], i + 1 == prompt.len())
                .map_err(|_| DecodeError::Llama { code: -1 })?;
        }
        self.decode()?;
        for s in 1..n {
            self.ctx.fork(0, s as i32, prompt.len() as u32);
        }
        let mut samplers: Vec<LlamaSampler> = (0..n)
            .map(|s| {
                LlamaSampler::chain_simple([
                    LlamaSampler::top_k(sampling.top_k as i32),
                    LlamaSampler::top_p(sampling.top_p, 1),
                    LlamaSampler::min_p(sampling.min_p, 1),
                    LlamaSampler::temp(sampling.temperature),
                    LlamaSampler::dist(s as u32),
                ])
            })
            .collect();
        let mut logits_at = vec![prompt.len() as i32 - 1; n];
        for step in 0..new_tokens as usize {
            let ctx = self.ctx.get();
            let tokens: Vec<LlamaToken> = samplers
                .iter_mut()
                .zip(&logits_at)
                .map(|(sampler, &i)| sampler.sample(ctx, i))
                .collect();
            self.batch.clear();
            for (s, &t) in tokens.iter().enumerate() {
                self.batch
                    .add(t, (prompt.len() + step) as i32, &[s as i32], true)
                    .map_err(|_| DecodeError::Llama { code: -1 })?;
                logits_at[s] = s as i32;
            }
            self.decode()?;
        }
        Ok(())
    }

    fn decode(&mut self) -> Result<(), DecodeError> {
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| DecodeError::Llama {
                code: match e {
                    llama_cpp_2::DecodeError::Unknown(code) => code,
                    llama_cpp_2::DecodeError::NoKvCacheSlot => 1,
                    llama_cpp_2::DecodeError::NTokensZero => -1,
                },
            })
    }
}
