//! The `ponder` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use ponder::lm::{
    ContextOptions, FinishReason, GenRequest, Lm, Message, Model, ModelOptions, SamplingParams,
    Usage, DEFAULT_MODEL_PATH,
};

#[derive(Parser)]
#[command(
    name = "ponder",
    version,
    about = "Inference-time self-refinement over GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample N continuations of one prompt, all decoded together from one prefill.
    Generate(GenerateArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// GGUF model file.
    #[arg(long, env = "PONDER_MODEL", default_value = DEFAULT_MODEL_PATH)]
    model: PathBuf,
    /// Layers to offload to the GPU (needs a build with --features cuda, vulkan or metal).
    #[arg(long, default_value_t = ModelOptions::default().n_gpu_layers)]
    n_gpu_layers: u32,
    /// Context size in tokens (KV cells shared by all branches).
    #[arg(long = "ctx", default_value_t = ContextOptions::default().n_ctx)]
    n_ctx: u32,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Most branches decoded at once; more are parked and re-attached.
    #[arg(long, default_value_t = ContextOptions::default().n_seq_max)]
    n_seq_max: u32,
}

impl ModelArgs {
    fn open(&self) -> ponder::Result<ponder::LlamaLm> {
        let model = Model::load(&ModelOptions {
            path: self.model.clone(),
            n_gpu_layers: self.n_gpu_layers,
        })?;
        Ok(model.session(&ContextOptions {
            n_ctx: self.n_ctx,
            n_threads: self.threads,
            n_seq_max: self.n_seq_max,
            ..ContextOptions::default()
        })?)
    }
}

#[derive(Args)]
struct GenerateArgs {
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
    #[arg(short = 'n', default_value_t = 1)]
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
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SampleOut {
    text: String,
    tokens: u32,
    logprob: f64,
    finish: FinishReason,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    prefill_tokens: u64,
    generated_tokens: u64,
    decoded_tokens: u64,
    reused_tokens: u64,
    recomputed_tokens: u64,
    forward_passes: u64,
    parked: u64,
    wall_ms: u64,
}

impl From<Usage> for UsageOut {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            prefill_tokens: u.prefill_tokens,
            generated_tokens: u.generated_tokens,
            decoded_tokens: u.decoded_tokens,
            reused_tokens: u.reused_tokens,
            recomputed_tokens: u.recomputed_tokens,
            forward_passes: u.forward_passes,
            parked: u.parked,
            wall_ms: u.wall_ms,
        }
    }
}

#[derive(Serialize)]
struct GenerateOut {
    samples: Vec<SampleOut>,
    usage: UsageOut,
}

fn generate(args: &GenerateArgs) -> ponder::Result<()> {
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
        return Err(ponder::ConfigError::new("n", "0 samples asked for; use -n 1 or more").into());
    }

    let mut lm = args.model.open()?;
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
            parent: root,
            sampling: sampling.with_seed(args.seed.wrapping_add(u64::from(i))),
            stop: args.stop.clone(),
            max_tokens: args.max_tokens,
            ignore_eos: false,
        })
        .collect();
    let generations = lm.generate(&requests)?;
    let usage = lm.usage();

    if args.json {
        let out = GenerateOut {
            samples: generations
                .into_iter()
                .map(|g| SampleOut {
                    text: g.text,
                    tokens: g.tokens,
                    logprob: g.logprob,
                    finish: g.finish,
                })
                .collect(),
            usage: usage.into(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("plain data serialises")
        );
    } else {
        for (i, g) in generations.iter().enumerate() {
            println!(
                "--- sample {} · {} tokens · mean logprob {:.3} · {:?}",
                i + 1,
                g.tokens,
                g.mean_logprob(),
                g.finish
            );
            println!("{}", g.text.trim_end());
        }
        let secs = usage.wall_ms as f64 / 1000.0;
        println!(
            "--- prompt {} tokens (prefilled {}), {} tokens generated in {} forward passes, {:.2} s ({:.1} tokens/s)",
            usage.prompt_tokens,
            usage.prefill_tokens,
            usage.generated_tokens,
            usage.forward_passes,
            secs,
            usage.generated_tokens as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Generate(args) => generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
