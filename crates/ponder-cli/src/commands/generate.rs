//! `ponder generate`: sample continuations of one prompt.

use ponder::lm::{GenRequest, Lm, Message, SamplingParams};
use ponder::ConfigError;

use crate::flags::ModelArgs;
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The user message (rendered with the model's chat template unless --raw).
    #[arg(long)]
    prompt: String,
    /// An optional system message.
    #[arg(long)]
    system: Option<String>,
    /// Use the prompt as raw text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Number of samples.
    #[arg(short = 'n', long, default_value_t = 1)]
    n: u32,
    /// New tokens per sample, at most.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = SamplingParams::default().temperature)]
    temperature: f32,
    /// Top-k filter (0 = off).
    #[arg(long, default_value_t = SamplingParams::default().top_k)]
    top_k: u32,
    /// Top-p (nucleus) filter, in (0, 1].
    #[arg(long, default_value_t = SamplingParams::default().top_p)]
    top_p: f32,
    /// Min-p filter, in [0, 1).
    #[arg(long, default_value_t = SamplingParams::default().min_p)]
    min_p: f32,
    /// Seed of the first sample; sample i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop a sample when its text contains this (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep sampling past the end-of-sequence token, to --max-tokens (decode-rate measurements,
    /// as llama-batched-bench does).
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Samples `-n` continuations of the prompt from one prefill and prints them.
pub fn exec(args: &Args) -> ponder::Result<()> {
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        seed: args.seed,
    };
    // Fail on bad sampling flags before spending time on loading the model; the rest of each
    // request is checked by `generate` before any work.
    sampling.validate()?;
    if args.n == 0 {
        return Err(ConfigError::new("n", "0 samples asked for; use -n 1 or more").into());
    }

    let mut lm: Box<dyn Lm> = args.model.open()?.into_lm();
    let root = if args.raw {
        lm.root_text(&args.prompt)?
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(args.prompt.clone()));
        lm.root(&messages)?
    };
    let requests: Vec<GenRequest> = (0..args.n)
        .map(|i| GenRequest {
            stop: args.stop.clone(),
            ignore_eos: args.ignore_eos,
            ..GenRequest::sample(root, &sampling, i, args.max_tokens)
        })
        .collect();
    let generations = lm.generate(&requests)?;
    let usage = lm.usage();
    render::generations(&generations, &usage, args.json);
    Ok(())
}
