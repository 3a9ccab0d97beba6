//! The `ponder` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;

use indicatif::{ProgressBar, ProgressStyle};
use ponder::lm::{
    ContextOptions, FinishReason, GenRequest, Lm, Message, Model, ModelOptions, RemoteLm,
    RemoteOptions, SamplingParams, Usage, DEFAULT_MODEL_PATH,
};
use ponder::serve::ServeFile;
use ponder::strategy::{
    AnswerKind, EntryKind, Outcome, Problem, PromptConfig, Rerank, SearchTree, StopReason,
    StrategyConfig,
};
use ponder::synth::{self, SynthConfig};
use ponder::trace::export::{ExportOptions, Format, LabelKind};
use ponder::trace::ModelId;
use ponder::{bench, eval};
use ponder::{ConfigError, ConfigFileError, Engine};

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
    /// Solve one question with a search strategy and show every candidate with its scores.
    Solve(SolveArgs),
    /// Run a strategy over a JSONL dataset and report accuracy, pass@N and judge AUC.
    Eval(EvalArgs),
    /// Run a strategy over a JSONL dataset and write training records (resumable).
    Synth(SynthArgs),
    /// Run a ladder of strategies over a JSONL dataset: report (JSON, Markdown) and the plot of
    /// accuracy against generated tokens per problem (SVG, PNG); resumable.
    Bench(BenchArgs),
    /// List the devices llama.cpp can run layers on (the CPU, and GPUs in a GPU build).
    Devices(DevicesArgs),
    /// Serve an OpenAI-compatible API whose model names pick search strategies (bon-…, mcts-…).
    Serve(ServeArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on; one that is not loopback needs --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Bearer token every request but /health must carry.
    #[arg(long, env = "PONDER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Requests admitted at once (running plus waiting); more are answered 429.
    #[arg(long, default_value_t = ponder::serve::ServeOptions::default().max_queue)]
    max_queue: usize,
    /// Largest request body in bytes; larger is answered 413.
    #[arg(long, default_value_t = ponder::serve::ServeOptions::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Cap on `n` and on every search width (n, width, k, expansions, warmup, batch).
    #[arg(long, default_value_t = ponder::serve::ServeOptions::default().max_n)]
    max_n: u32,
    /// Cap on max_tokens and on every per-generation token count of a search.
    #[arg(long, default_value_t = ponder::serve::ServeOptions::default().max_tokens)]
    max_tokens: u32,
    /// Cap on a search's token budgets (budget.tokens, total_budget).
    #[arg(long, default_value_t = ponder::serve::ServeOptions::default().max_budget_tokens)]
    max_budget_tokens: u64,
    /// A solve running longer is cancelled (tree searches answer with what they found, others 504).
    #[arg(long, default_value_t = ponder::serve::ServeOptions::default().max_solve_seconds)]
    max_solve_seconds: u64,
    /// After SIGTERM, how long running solves may finish before they are cancelled.
    #[arg(long, default_value_t = ponder::serve::ServeOptions::default().grace_seconds)]
    grace_seconds: u64,
    /// The model's name in /v1/models (default: the model file's stem, or --served-model).
    #[arg(long)]
    model_name: Option<String>,
    /// A JSON file of settings: an object whose keys are this command's long flags with `_`
    /// for `-` (host, port, api_key, max_queue, max_n, …, model, ctx, threads, n_seq_max,
    /// url as a list, …). A flag or environment variable given wins over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct DevicesArgs {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SynthArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    strategy: StrategyArgs,
    /// JSONL file of {"id", "question", "answer"} lines.
    #[arg(long)]
    input: PathBuf,
    /// Output directory; a run into a directory that holds finished problems resumes it.
    #[arg(long)]
    output: PathBuf,
    /// Record formats, comma-separated: sft, preference, prm, correction.
    #[arg(long, default_value = "sft,preference,prm,correction")]
    formats: String,
    /// Label records with the reference answers (oracle mode).
    #[arg(long)]
    oracle: bool,
    /// Let the reference answers steer the search too (implies nothing about labels).
    #[arg(long)]
    oracle_guided: bool,
    /// Only the first K problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Problems in flight at once on one engine (backend llama: one context, their branches
    /// share forward passes; backend remote: one connection, --max-in-flight caps the requests of
    /// all of them). Records are written in input order.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Preference pairs need values at least this far apart.
    #[arg(long, default_value_t = ExportOptions::default().margin)]
    margin: f64,
    /// PRM labels: float or bool.
    #[arg(long, default_value = "float")]
    labels: String,
    /// A step is good when its value or judge score reaches this.
    #[arg(long, default_value_t = ExportOptions::default().threshold)]
    threshold: f64,
    /// No progress bar; print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Kind of the reference answers: numeric or text (free text: a rewritten sentence, a
    /// phrase). Overrides the dataset lines' own "answer_kind".
    #[arg(long)]
    answer_kind: Option<String>,
    /// A reference-based reward computed on every candidate: `r3` (DRO's Reasoning Reflection
    /// Reward; best-of-n only). It labels candidates and ranks preference pairs; it steers the
    /// pick only with --oracle-guided. Without --config, best-of-n is asked to end with a line
    /// "Answer: …".
    #[arg(long, value_enum)]
    reward: Option<RewardArg>,
    /// With --reward r3: DRO's filter; problems whose R3 spread across candidates is below this
    /// get no training records (the summary says how many and why).
    #[arg(long, default_value_t = 0.0)]
    r3_min_spread: f64,
    /// With --reward r3: the text that introduces the answer; the reference is scored after it.
    #[arg(long, default_value = ponder::reward::r3::DEFAULT_MARKER)]
    r3_marker: String,
}

/// A reference-based reward for `synth --reward`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RewardArg {
    /// DRO's Reasoning Reflection Reward.
    R3,
}

/// The best-of-n prompt `--reward r3` uses when no --config is given: R3 scores the reference
/// after the line "Answer:".
const R3_TEMPLATE: &str = "{question}\n\nThink it through briefly, then finish with a line \"Answer:\" followed by your answer.";

/// Sets every problem's answer kind from `--answer-kind` (which overrides the dataset's lines).
/// Refuses, before any model is loaded, a strategy that cannot answer some problem's kind.
fn apply_answer_kind(
    problems: &mut [Problem],
    kind: Option<&str>,
    strategy: &StrategyConfig,
) -> ponder::Result<()> {
    if let Some(kind) = kind {
        let kind = AnswerKind::parse(kind)?;
        for p in problems.iter_mut() {
            p.answer_kind = kind;
        }
    }
    for p in problems.iter() {
        strategy.check_answer_kind(p.answer_kind)?;
    }
    Ok(())
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// JSONL file of {"id", "question", "answer"} lines.
    #[arg(long)]
    dataset: PathBuf,
    /// Output directory (report.json, report.md, accuracy-vs-tokens.svg/.png, results.jsonl);
    /// a run into a directory that holds results resumes it.
    #[arg(long)]
    output: PathBuf,
    /// A rung of the ladder, repeatable, run in the order given: NAME=JSON (a whole
    /// {"type": …} strategy object), or a shorthand: greedy, RERANK@N (vote@8, judge@8,
    /// logprob@8, weighted_vote@8), beam@TOKENS, mcts@TOKENS, self_correct@ROUNDS,
    /// deepening@WIDTH, or a strategy's name. Default: greedy, vote@4, vote@8.
    #[arg(long = "rung", value_name = "RUNG")]
    rungs: Vec<String>,
    /// A JSON file holding an array of rungs ("vote@8" or {"name", "strategy"}), run before
    /// the --rung ones.
    #[arg(long)]
    ladder: Option<PathBuf>,
    /// New tokens per sample or attempt for the shorthand rungs that have one (best-of-N,
    /// greedy, self-correct); JSON rungs are taken as written.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Only the first K problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Solve nothing: write the report and plots from what --output already holds (after an
    /// interrupted run; unfinished rungs are marked incomplete).
    #[arg(long)]
    report_only: bool,
    /// No progress bar; print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StrategyArgs {
    /// The strategy: best-of-n, self-correct, deepening, mcts, beam, deepconf [default:
    /// best-of-n, or the "type" of --config].
    #[arg(long)]
    strategy: Option<String>,
    /// The strategy's configuration: a JSON object or a file holding one (fields of the
    /// strategy, or a whole {"type": …} object). The flags below override it.
    #[arg(long)]
    config: Option<String>,
    /// Samples (best-of-n), most traces (deepconf) or branches (deepening).
    #[arg(short = 'n', long)]
    n: Option<u32>,
    /// Revision rounds (self-correct).
    #[arg(long)]
    rounds: Option<u32>,
    /// First segment's token budget (deepening).
    #[arg(long)]
    l0: Option<u32>,
    /// Budget growth per trigger (deepening).
    #[arg(long)]
    gamma: Option<f64>,
    /// Reranker (best-of-n): judge, confidence, logprob, vote, weighted_vote, confidence_vote,
    /// filtered_vote.
    #[arg(long)]
    rerank: Option<String>,
    /// New tokens per sample or attempt, at most (deepening: the total budget per branch;
    /// mcts, beam: per step).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Children per expansion (mcts).
    #[arg(long)]
    k: Option<u32>,
    /// Beams kept per level (beam).
    #[arg(long)]
    width: Option<u32>,
    /// Generated tokens for the whole search (mcts, beam): a limit checked before each batch
    /// step, so the search may end up to one batch of steps past it.
    #[arg(long)]
    budget: Option<u64>,
    /// Base seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the resolved strategy configuration (defaults, --config and the flags) as JSON and
    /// exit without loading a model.
    #[arg(long)]
    print_config: bool,
}

impl StrategyArgs {
    /// With --print-config, prints `strategy` as JSON and says so (the command then stops).
    fn printed(&self, strategy: &StrategyConfig) -> bool {
        if self.print_config {
            println!(
                "{}",
                serde_json::to_string_pretty(strategy).expect("plain data serialises")
            );
        }
        self.print_config
    }

    fn resolve(&self) -> Result<StrategyConfig, ConfigError> {
        let strategy = self.strategy.as_deref().unwrap_or("best-of-n");
        let mut config = match &self.config {
            None => StrategyConfig::default_for(strategy)?,
            Some(text) => {
                // JSON starts with `{`; anything else names a file.
                let json = if text.trim_start().starts_with('{') {
                    text.clone()
                } else {
                    std::fs::read_to_string(text).map_err(|e| {
                        let why = match e.kind() {
                            std::io::ErrorKind::NotFound => "file not found".to_string(),
                            _ => e.to_string(),
                        };
                        ConfigError::new(
                            "config",
                            format!(
                                "cannot read {text}: {why} (give a JSON object, or the path of a file holding one)"
                            ),
                        )
                    })?
                };
                let config = StrategyConfig::from_json(strategy, &json)?;
                if let Some(flag) = &self.strategy {
                    let named = StrategyConfig::default_for(flag)?.name();
                    if named != config.name() {
                        return Err(ConfigError::new(
                            "strategy",
                            format!(
                                "--strategy {flag} contradicts the config's \"type\": \"{}\"; give one of them",
                                config.name()
                            ),
                        ));
                    }
                }
                config
            }
        };
        let only = |flag: &str, strategy: &str| {
            ConfigError::new(
                "flags",
                format!("{flag} applies to {strategy} only; use --config for other fields"),
            )
        };
        match &mut config {
            StrategyConfig::BestOfN(c) => {
                if let Some(n) = self.n {
                    c.n = n;
                }
                if let Some(r) = &self.rerank {
                    c.rerank = Rerank::parse(r)?;
                }
                if let Some(m) = self.max_tokens {
                    c.max_tokens = m;
                }
                if let Some(s) = self.seed {
                    c.sampling.seed = s;
                }
            }
            StrategyConfig::SelfCorrect(c) => {
                if let Some(r) = self.rounds {
                    c.rounds = r;
                }
                if let Some(m) = self.max_tokens {
                    c.max_tokens = m;
                }
                if let Some(s) = self.seed {
                    c.sampling.seed = s;
                }
            }
            StrategyConfig::Deepening(c) => {
                if let Some(n) = self.n {
                    c.width = n;
                }
                if let Some(m) = self.max_tokens {
                    c.total_budget = m;
                }
                if let Some(l0) = self.l0 {
                    c.l0 = l0;
                }
                if let Some(g) = self.gamma {
                    c.gamma = g;
                }
                if let Some(s) = self.seed {
                    c.sampling.seed = s;
                }
            }
            StrategyConfig::Mcts(c) => {
                if let Some(k) = self.k {
                    c.k = k;
                }
                if let Some(m) = self.max_tokens {
                    c.step.max_tokens = m;
                }
                if let Some(b) = self.budget {
                    c.budget.tokens = Some(b);
                }
                if let Some(s) = self.seed {
                    c.step.sampling.seed = s;
                }
            }
            StrategyConfig::Beam(c) => {
                if let Some(w) = self.width {
                    c.width = w;
                }
                if let Some(m) = self.max_tokens {
                    c.step.max_tokens = m;
                }
                if let Some(b) = self.budget {
                    c.budget.tokens = Some(b);
                }
                if let Some(s) = self.seed {
                    c.step.sampling.seed = s;
                }
            }
            StrategyConfig::DeepConf(c) => {
                if let Some(n) = self.n {
                    c.n = n;
                    c.warmup = c.warmup.min(n);
                    c.batch = c.batch.min(n);
                }
                if let Some(m) = self.max_tokens {
                    c.max_tokens = m;
                }
                if let Some(s) = self.seed {
                    c.sampling.seed = s;
                }
            }
            _ => unreachable!("every strategy is handled"),
        }
        let name = config.name();
        if self.rerank.is_some() && name != "best_of_n" {
            return Err(only("--rerank", "best-of-n"));
        }
        if self.rounds.is_some() && name != "self_correct" {
            return Err(only("--rounds", "self-correct"));
        }
        if (self.l0.is_some() || self.gamma.is_some()) && name != "deepening" {
            return Err(only("--l0/--gamma", "deepening"));
        }
        if self.n.is_some() && !matches!(name, "best_of_n" | "deepening" | "deepconf") {
            return Err(only("--n", "best-of-n, deepconf and deepening (width)"));
        }
        if self.k.is_some() && name != "mcts" {
            return Err(only("--k", "mcts"));
        }
        if self.width.is_some() && name != "beam" {
            return Err(only("--width", "beam"));
        }
        if self.budget.is_some() && !matches!(name, "mcts" | "beam") {
            return Err(only("--budget", "mcts and beam"));
        }
        config.validate()?;
        Ok(config)
    }
}

#[derive(Args)]
struct SolveArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    strategy: StrategyArgs,
    /// A reference answer: labels candidates as correct or not (it does not steer the search).
    #[arg(long)]
    answer: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Tree searches (mcts, beam): also write the search tree to FILE as JSON and, next to it
    /// with the extension .dot, as Graphviz (render: dot -Tsvg FILE.dot -o tree.svg).
    #[arg(long, value_name = "FILE")]
    tree: Option<PathBuf>,
    /// The question.
    question: String,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    strategy: StrategyArgs,
    /// JSONL file of {"id", "question", "answer"} lines.
    #[arg(long)]
    dataset: PathBuf,
    /// Only the first K problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Print the report as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Kind of the reference answers: numeric or text. Overrides the dataset lines' own
    /// "answer_kind".
    #[arg(long)]
    answer_kind: Option<String>,
    /// Problems in flight at once (backend llama: one context, their branches share forward
    /// passes; backend remote: requests in flight from all of them).
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Where the model runs: `llama` (in-process llama.cpp) or `remote` (OpenAI-compatible
    /// servers given with --url).
    #[arg(long, default_value = "llama")]
    backend: String,
    /// GGUF model file (backend llama).
    #[arg(long, env = "PONDER_MODEL", default_value = DEFAULT_MODEL_PATH)]
    model: PathBuf,
    /// Layers to offload to the GPU (backend llama; needs a build with --features cuda, vulkan
    /// or metal, and a GPU: see `ponder devices`). Default: all in a GPU build, 0 otherwise.
    #[arg(long, visible_alias = "gpu-layers", default_value_t = ModelOptions::default().n_gpu_layers)]
    n_gpu_layers: u32,
    /// Context size in tokens (backend llama: KV cells shared by all branches; backend remote:
    /// the server's context per request, default what the server reports).
    #[arg(long = "ctx")]
    n_ctx: Option<u32>,
    /// CPU threads (backend llama; 0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Most branches decoded at once; more are parked and re-attached (backend llama).
    #[arg(long, default_value_t = ContextOptions::default().n_seq_max)]
    n_seq_max: u32,
    /// Run solves one at a time, each from a fresh cache, so that every result depends only on
    /// its problem, strategy and seeds (backend llama; without it, solves in flight together
    /// share forward passes and llama.cpp's numbers shift slightly with what shares a batch).
    #[arg(long)]
    deterministic: bool,
    /// Most live branches one solve may have at once when solves share the context (backend
    /// llama; 0 = up to --n-seq-max): leaves sequences for the other solves of a server or of
    /// --workers.
    #[arg(long, default_value_t = 0)]
    max_seqs_per_solve: u32,
    /// KV cells one solve's live branches may hold beyond their shared prompt; over it the solve
    /// adds no new branch while one runs (backend llama; 0 = no cap).
    #[arg(long, default_value_t = 0)]
    max_cells_per_solve: u32,
    /// Base URL of a server (backend remote), e.g. http://127.0.0.1:8080; give it more than once
    /// to spread requests over several servers.
    #[arg(long = "url")]
    urls: Vec<String>,
    /// The `model` field sent to the servers (backend remote; default the first they list).
    #[arg(long)]
    served_model: Option<String>,
    /// Most requests in flight at once over all servers and all solves (backend remote).
    #[arg(long, default_value_t = RemoteOptions::default().max_in_flight)]
    max_in_flight: usize,
    /// Time limit of one request in milliseconds (backend remote).
    #[arg(long, default_value_t = RemoteOptions::default().timeout_ms)]
    timeout_ms: u64,
    /// Attempts per request before giving up (backend remote).
    #[arg(long, default_value_t = RemoteOptions::default().attempts)]
    attempts: u32,
}

/// A model behind either backend (llama: a session and the loaded model it runs on; boxed, a
/// `RemoteLm` handle being small).
enum Backend {
    Llama(Box<ponder::LlamaLm>, Model),
    Remote(RemoteLm),
}

impl ModelArgs {
    fn options(&self) -> (ModelOptions, ContextOptions) {
        (
            ModelOptions {
                path: self.model.clone(),
                n_gpu_layers: self.n_gpu_layers,
            },
            ContextOptions {
                n_ctx: self.n_ctx.unwrap_or(ContextOptions::default().n_ctx),
                n_threads: self.threads,
                n_seq_max: self.n_seq_max,
                deterministic: self.deterministic,
                max_seqs_per_solve: self.max_seqs_per_solve,
                max_cells_per_solve: self.max_cells_per_solve,
                ..ContextOptions::default()
            },
        )
    }

    fn remote_options(&self) -> RemoteOptions {
        RemoteOptions {
            urls: self.urls.clone(),
            model: self.served_model.clone(),
            max_in_flight: self.max_in_flight,
            timeout_ms: self.timeout_ms,
            attempts: self.attempts,
            n_ctx: self.n_ctx,
            ..RemoteOptions::default()
        }
    }

    /// Checks that the flags given belong to the backend chosen, then opens it.
    fn open(&self) -> ponder::Result<Backend> {
        match self.backend.as_str() {
            "llama" => {
                if !self.urls.is_empty() || self.served_model.is_some() {
                    return Err(ConfigError::new(
                        "url",
                        "--url and --served-model apply to --backend remote only",
                    )
                    .into());
                }
                let (model, context) = self.options();
                // Before the (slow) load, so that a bad setting fails at once.
                context.validate()?;
                if model.n_gpu_layers > 0 && !ponder::devices()?.iter().any(|d| d.is_gpu()) {
                    eprintln!(
                        "warning: --n-gpu-layers {} has no effect: {}; the model runs on the CPU \
                         (`ponder devices` lists what llama.cpp found)",
                        model.n_gpu_layers,
                        no_gpu_reason()
                    );
                }
                let model = Model::load(&model)?;
                let lm = model.session(&context)?;
                Ok(Backend::Llama(Box::new(lm), model))
            }
            "remote" => {
                if self.n_gpu_layers != ModelOptions::default().n_gpu_layers
                    || self.threads != 0
                    || self.n_seq_max != ContextOptions::default().n_seq_max
                    || self.deterministic
                    || self.max_seqs_per_solve != 0
                    || self.max_cells_per_solve != 0
                {
                    return Err(ConfigError::new(
                        "backend",
                        "--n-gpu-layers, --threads, --n-seq-max, --deterministic, --max-seqs-per-solve and --max-cells-per-solve apply to --backend llama only; set them on the servers",
                    )
                    .into());
                }
                Ok(Backend::Remote(RemoteLm::connect(&self.remote_options())?))
            }
            other => Err(ConfigError::new(
                "backend",
                format!("unknown backend {other:?}; use llama or remote"),
            )
            .into()),
        }
    }

    fn engine(&self) -> ponder::Result<Engine> {
        Ok(match self.open()? {
            Backend::Llama(lm, _) => Engine::from_lm(*lm),
            Backend::Remote(lm) => Engine::from_lm(lm),
        })
    }

    /// The engines for `n` workers (one engine, shared by all of them: one llama.cpp context or
    /// one connection to the servers), and the model's identity for provenance.
    fn engines_and_id(&self, n: usize) -> ponder::Result<(Vec<Engine>, ModelId)> {
        if n == 0 {
            return Err(ConfigError::new("workers", "--workers must be at least 1").into());
        }
        Ok(match self.open()? {
            Backend::Llama(lm, model) => {
                let id = ModelId::of_file(&self.model).map_err(|e| {
                    ConfigError::new(
                        "model",
                        format!("cannot read {}: {e}", self.model.display()),
                    )
                })?;
                // One engine: its decode loop serves every worker's solve in the same forward
                // passes (separate contexts would fight over the cores).
                let _ = model;
                (vec![Engine::from_lm(*lm)], id)
            }
            Backend::Remote(lm) => {
                // One engine: one cap on requests in flight and one view of each server's load
                // for the solves of all workers.
                let id = ModelId::of_remote(&lm);
                (vec![Engine::from_lm(lm)], id)
            }
        })
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
        return Err(ConfigError::new("n", "0 samples asked for; use -n 1 or more").into());
    }

    let mut lm: Box<dyn Lm> = match args.model.open()? {
        Backend::Llama(lm, _) => lm,
        Backend::Remote(lm) => Box::new(lm),
    };
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
            confidence_stop: None,
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
                "--- sample {} · {} tokens · mean logprob {:.3} · {}",
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

fn solve(args: &SolveArgs) -> ponder::Result<()> {
    let strategy = args.strategy.resolve()?;
    if args.strategy.printed(&strategy) {
        return Ok(());
    }
    let problem = Problem {
        id: None,
        question: args.question.clone(),
        answer: args.answer.clone(),
        oracle_guided: false,
        answer_kind: ponder::strategy::AnswerKind::Numeric,
    };
    problem.validate()?;
    if args.tree.is_some() && !matches!(strategy.name(), "mcts" | "beam") {
        return Err(ConfigError::new(
            "tree",
            "--tree applies to the tree searches (mcts, beam) only",
        )
        .into());
    }
    let engine = args.model.engine()?;
    let outcome = engine.solve(&problem, &strategy)?;
    if let (Some(path), Some(tree)) = (&args.tree, &outcome.tree) {
        write_tree(path, tree)?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).expect("plain data serialises")
        );
    } else {
        print_outcome(&outcome);
    }
    Ok(())
}

/// Writes `tree` as JSON to `path` and as Graphviz next to it (extension `.dot`).
fn write_tree(path: &std::path::Path, tree: &SearchTree) -> ponder::Result<()> {
    let dot = path.with_extension("dot");
    let json = if path == dot {
        path.with_extension("json")
    } else {
        path.to_path_buf()
    };
    let write = |p: &std::path::Path, text: String| {
        std::fs::write(p, text).map_err(|e| {
            ponder::Error::from(ConfigError::new(
                "tree",
                format!("cannot write {}: {e}", p.display()),
            ))
        })
    };
    write(
        &json,
        serde_json::to_string_pretty(tree).expect("plain data serialises"),
    )?;
    write(&dot, tree.to_dot())?;
    eprintln!(
        "search tree: {} ({} nodes), {}",
        json.display(),
        tree.nodes.len(),
        dot.display()
    );
    Ok(())
}

fn print_tree(tree: &SearchTree) {
    println!(
        "search tree: {} steps · {} iterations · stopped: {} · {} steps rejected",
        tree.nodes.len() - 1,
        tree.iterations,
        match tree.stop {
            StopReason::EndGate { node } => format!("end gate passed by node {node}"),
            StopReason::Budget { limit } => format!("budget.{limit} used up"),
            StopReason::Cancelled => "cancelled".to_string(),
            StopReason::Exhausted => "nothing left to expand".into(),
            StopReason::Complete => "beams complete".into(),
        },
        tree.rejected_steps
    );
    // Depth-first, children in sampling order.
    let mut stack = vec![0usize];
    while let Some(id) = stack.pop() {
        let n = &tree.nodes[id];
        stack.extend(n.children.iter().rev());
        if id == 0 {
            continue;
        }
        let text: String = n.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = text.chars().take(60).collect();
        let more = if text.chars().count() > 60 { "…" } else { "" };
        let end = match (&n.answer, n.terminal, n.dead_end) {
            (Some(a), _, _) => format!(" ⇒ {a}{}", mark(n.correct)),
            (None, true, _) => " ⇒ (no answer)".into(),
            (None, false, true) => " (dead end)".into(),
            _ => String::new(),
        };
        println!(
            "{} {}#{id:<3} V {:.2} · n {:<2} · judge {} · {short}{more}{end}",
            if tree.chosen.contains(&id) {
                "→"
            } else {
                " "
            },
            "  ".repeat(n.depth as usize - 1),
            n.value,
            n.visits,
            n.judge.map_or("-".into(), |j| format!("{j:.2}")),
        );
    }
    println!();
}

fn mark(correct: Option<bool>) -> &'static str {
    match correct {
        Some(true) => " ✓",
        Some(false) => " ✗",
        None => "",
    }
}

fn print_outcome(o: &Outcome) {
    if let Some(tree) = &o.tree {
        print_tree(tree);
    }
    println!("candidates ({}):", o.candidates.len());
    for (i, c) in o.candidates.iter().enumerate() {
        let judge = c.judge.map_or(String::new(), |j| format!(" judge {j:.3}"));
        println!(
            "{} #{i:<2} score {:.3}{judge} · mean logprob {:.3} · {} tokens{} · answer {}{}",
            if i == o.chosen { "→" } else { " " },
            c.score,
            c.mean_logprob,
            c.tokens,
            if c.finish.is_cut_off() {
                " (cut off)"
            } else {
                ""
            },
            c.answer.as_deref().unwrap_or("(none)"),
            mark(c.correct),
        );
    }
    if !o.timeline.is_empty() {
        println!("\ntimeline:");
        for e in &o.timeline {
            let what = match e.kind {
                EntryKind::Generated => format!(
                    "generated {} tokens · answer so far {}{}",
                    e.tokens,
                    e.answer.as_deref().unwrap_or("(none)"),
                    mark(e.correct)
                ),
                EntryKind::Revision => format!("revision request ({} tokens)", e.tokens),
                EntryKind::Trigger => {
                    format!("trigger ({} tokens): {:?}", e.tokens, e.text.trim())
                }
            };
            println!("  branch {} @ token {:>4}: {what}", e.branch, e.offset);
        }
    }
    println!(
        "\n--- chosen #{} (score {:.3}):\n{}",
        o.chosen,
        o.score,
        o.text.trim()
    );
    println!(
        "\nanswer: {}{}",
        o.answer.as_deref().unwrap_or("(none)"),
        mark(o.correct)
    );
    let u = &o.usage;
    println!(
        "usage: prompt {} · prefill {} · generated {} · decoded {} · reused {} · recomputed {} · {} forward passes · {:.2} s",
        u.prompt_tokens,
        u.prefill_tokens,
        u.generated_tokens,
        u.decoded_tokens,
        u.reused_tokens,
        u.recomputed_tokens,
        u.forward_passes,
        u.wall_ms as f64 / 1000.0
    );
}

/// The problems of a JSONL dataset (the first `limit`), each bad line reported on stderr; a file
/// with no valid line at all is an error, before any model is loaded or output written.
fn read_problems(
    path: &std::path::Path,
    field: &'static str,
    limit: Option<usize>,
) -> ponder::Result<(Vec<Problem>, Vec<eval::LineError>)> {
    let (mut problems, line_errors) = eval::read_dataset(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    for e in &line_errors {
        eprintln!("{}:{}: skipped: {}", path.display(), e.line, e.message);
    }
    if problems.is_empty() {
        return Err(ConfigError::new(
            field,
            format!(
                "{} has no valid lines ({} skipped): it must be JSONL, one object per line with \"question\" (and \"answer\", \"id\"), e.g. {{\"id\": \"1\", \"question\": \"What is 2 + 3?\", \"answer\": \"5\"}}",
                path.display(),
                line_errors.len()
            ),
        )
        .into());
    }
    if let Some(k) = limit {
        problems.truncate(k);
    }
    Ok((problems, line_errors))
}

fn run_eval(args: &EvalArgs) -> ponder::Result<()> {
    let strategy = args.strategy.resolve()?;
    if args.strategy.printed(&strategy) {
        return Ok(());
    }
    let (mut problems, line_errors) = read_problems(&args.dataset, "dataset", args.limit)?;
    apply_answer_kind(&mut problems, args.answer_kind.as_deref(), &strategy)?;
    if args.workers == 0 {
        return Err(ConfigError::new("workers", "--workers must be at least 1").into());
    }
    let engine = args.model.engine()?;
    let report = eval::run(
        &engine,
        &problems,
        line_errors,
        &strategy,
        args.workers,
        |i, n, r| {
            let status = match (&r.error, r.correct) {
                (Some(e), _) => format!("error: {e}"),
                (None, c) => format!(
                    "answer {} expected {}{}",
                    r.answer.as_deref().unwrap_or("(none)"),
                    r.expected.as_deref().unwrap_or("?"),
                    mark(c)
                ),
            };
            eprintln!(
                "[{}/{n}] {} {status} · {} tokens · {:.1} s",
                i + 1,
                r.id,
                r.generated_tokens,
                r.wall_ms as f64 / 1000.0
            );
        },
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain data serialises")
        );
    } else {
        println!(
            "problems {} · accuracy {:.3} ({}/{}) · pass@N {:.3} · judge AUC {} over {} candidates",
            report.problems,
            report.accuracy,
            report.correct,
            report.problems,
            report.pass_at_n,
            report
                .judge_auc
                .map_or("n/a".to_string(), |a| format!("{a:.3}")),
            report.judged_candidates
        );
        if let Some(a) = &report.signal_auc {
            let f = |x: Option<f64>| x.map_or("n/a".to_string(), |a| format!("{a:.3}"));
            println!(
                "signal AUC over {} candidates: mean confidence {} · tail confidence {} · lowest group confidence {} · mean logprob {}",
                a.candidates,
                f(a.mean_confidence),
                f(a.tail_confidence),
                f(a.lowest_group_confidence),
                f(a.mean_logprob)
            );
        }
        if !report.reranker_accuracy.is_empty() {
            let list: Vec<String> = report
                .reranker_accuracy
                .iter()
                .map(|r| format!("{} {:.3}", r.rerank, r.accuracy))
                .collect();
            println!("rerankers on the same samples: {}", list.join(" · "));
        }
        println!(
            "tokens: generated {} · prefill {} · decoded {} · {} forward passes · {:.1} s",
            report.usage.generated_tokens,
            report.usage.prefill_tokens,
            report.usage.decoded_tokens,
            report.usage.forward_passes,
            report.wall_ms as f64 / 1000.0
        );
        if let Some(m) = &report.self_correct {
            println!(
                "self-correct: Acc@t1 {:.3} · Acc@t2 {:.3} · Δ {:+.3} · Δ(i→c) {:.3} · Δ(c→i) {:.3}",
                m.acc_t1, m.acc_t2, m.delta, m.delta_i_to_c, m.delta_c_to_i
            );
        }
        if let Some(m) = &report.deepening {
            let accs: Vec<String> = m
                .accuracy_after_trigger
                .iter()
                .map(|a| format!("{a:.3}"))
                .collect();
            println!(
                "deepening: accuracy after 0, 1, 2, … triggers: {} · {:.0} tokens per problem",
                accs.join(" → "),
                m.mean_tokens
            );
        }
        if !report.line_errors.is_empty() {
            println!(
                "skipped {} dataset lines (see above)",
                report.line_errors.len()
            );
        }
    }
    Ok(())
}

fn run_synth(args: &SynthArgs) -> ponder::Result<()> {
    let mut strategy = args.strategy.resolve()?;
    if args.reward == Some(RewardArg::R3) {
        let StrategyConfig::BestOfN(c) = &mut strategy else {
            return Err(ConfigError::new(
                "reward",
                format!(
                    "--reward r3 scores sampled candidates while they are in the cache, which best-of-n does; {} does not support it (use --strategy best-of-n)",
                    strategy.name()
                ),
            )
            .into());
        };
        if args.strategy.config.is_none() && c.prompt == PromptConfig::default() {
            c.prompt.template = R3_TEMPLATE.into();
        }
        // R3's tasks are open-ended: the default vote cannot compare their answers.
        if args.strategy.config.is_none() && args.strategy.rerank.is_none() {
            c.rerank = Rerank::Logprob;
        }
        c.r3 = Some(ponder::reward::r3::R3Config {
            marker: args.r3_marker.clone(),
            min_spread: args.r3_min_spread,
        });
        strategy.validate()?;
    } else if args.r3_min_spread != 0.0 {
        return Err(ConfigError::new("r3_min_spread", "applies with --reward r3 only").into());
    }
    if args.strategy.printed(&strategy) {
        return Ok(());
    }
    let formats = Format::parse_list(&args.formats)?;
    let labels = match args.labels.as_str() {
        "float" => LabelKind::Float,
        "bool" => LabelKind::Bool,
        other => {
            return Err(ConfigError::new(
                "labels",
                format!("unknown label kind {other:?}; use float or bool"),
            )
            .into())
        }
    };
    let config = SynthConfig {
        strategy,
        formats,
        export: ExportOptions {
            oracle: args.oracle,
            margin: args.margin,
            labels,
            threshold: args.threshold,
            ..ExportOptions::default()
        },
        oracle_guided: args.oracle_guided,
    };
    config.export.validate()?;
    let (mut problems, line_errors) = read_problems(&args.input, "input", args.limit)?;
    apply_answer_kind(&mut problems, args.answer_kind.as_deref(), &config.strategy)?;
    let (engines, model) = args.model.engines_and_id(args.workers)?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(problems.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} · ETA {eta} · {msg}")
                .expect("a valid template"),
        );
        bar
    };
    let summary = synth::run(
        &engines,
        args.workers,
        &model,
        &problems,
        line_errors,
        &args.output,
        &config,
        |p| {
            if p.done == p.resumed + 1 && p.resumed > 0 {
                bar.println(format!("resuming: {} problems already finished", p.resumed));
            }
            bar.set_position(p.done as u64);
            let acc = if p.labelled == 0 {
                "n/a".to_string()
            } else {
                format!("{:.3}", p.correct as f64 / p.labelled as f64)
            };
            bar.set_message(format!(
                "{:.1} tokens/s · accuracy {acc} ({}/{})",
                p.tokens as f64 / p.elapsed.max(1e-9),
                p.correct,
                p.labelled
            ));
            if let Some(e) = &p.last.1 {
                bar.println(format!("{}: failed: {e}", p.last.0));
            }
        },
    )?;
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("plain data serialises")
        );
    } else {
        let records: Vec<String> = summary
            .records
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "problems {}/{} · accuracy {:.3} · pass@k {:.3} · distinct answers {:.2} · judge AUC {} · balance {}",
            summary.problems,
            summary.total,
            summary.accuracy,
            summary.pass_at_k,
            summary.distinct_answers,
            summary.judge_auc.map_or("n/a".into(), |a| format!("{a:.3}")),
            summary.balance_score.map_or("n/a".into(), |a| format!("{a:.3}")),
        );
        println!("records: {}", records.join(" · "));
        if let Some(f) = &summary.r3 {
            let dropped: Vec<String> = f.dropped.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!(
                "R3 filter (min spread {}): kept {} · dropped {} · mean spread {}",
                f.min_spread,
                f.kept,
                if dropped.is_empty() {
                    "0".into()
                } else {
                    dropped.join(", ")
                },
                f.mean_spread.map_or("n/a".into(), |m| format!("{m:.3}")),
            );
        }
        println!(
            "tokens: generated {} · processed {} · {:.1} s · written to {}",
            summary.generated_tokens,
            summary.processed_tokens,
            summary.wall_ms as f64 / 1000.0,
            args.output.display()
        );
        if !summary.failures.is_empty() {
            println!(
                "{} problems failed (see above); run again to retry them",
                summary.failures.len()
            );
        }
    }
    if let Some(why) = summary.stopped {
        // Every record is already synced; exit non-zero so that scripts notice.
        eprintln!(
            "error: synth stopped early: {why}\nthe finished problems are kept in {}; run the same command again once the server is back to resume",
            args.output.display()
        );
        std::process::exit(1);
    }
    Ok(())
}

fn run_bench(args: &BenchArgs) -> ponder::Result<()> {
    let mut rungs = Vec::new();
    if let Some(path) = &args.ladder {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("ladder", format!("cannot read {}: {e}", path.display()))
        })?;
        rungs = bench::parse_ladder(&text, args.max_tokens)?;
    }
    for spec in &args.rungs {
        rungs.push(bench::Rung::parse(spec, args.max_tokens)?);
    }
    if rungs.is_empty() {
        for spec in ["greedy", "vote@4", "vote@8"] {
            rungs.push(bench::Rung::parse(spec, args.max_tokens)?);
        }
    }
    bench::check_ladder(&rungs)?;
    let (mut problems, line_errors) = eval::read_dataset(&args.dataset).map_err(|e| {
        ConfigError::new(
            "dataset",
            format!("cannot read {}: {e}", args.dataset.display()),
        )
    })?;
    for e in &line_errors {
        eprintln!(
            "{}:{}: skipped: {}",
            args.dataset.display(),
            e.line,
            e.message
        );
    }
    if let Some(k) = args.limit {
        problems.truncate(k);
    }
    if problems.is_empty() {
        return Err(ConfigError::new(
            "dataset",
            format!("{} holds no usable problem", args.dataset.display()),
        )
        .into());
    }
    let file_name = |p: &std::path::Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        )
    };
    let model = if args.model.backend == "remote" {
        format!(
            "remote {}",
            args.model
                .served_model
                .clone()
                .or_else(|| args.model.urls.first().cloned())
                .unwrap_or_default()
        )
    } else {
        file_name(&args.model.model)
    };
    let config = bench::BenchConfig {
        rungs,
        model,
        dataset: file_name(&args.dataset),
        command: Some(command_line()),
    };
    if args.report_only {
        let report = bench::report_only(&problems, &args.output, &config)?;
        return print_bench_report(args, &report);
    }
    let engine = args.model.engine()?;
    let total = config.rungs.len() * problems.len();
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} · {elapsed} · ETA {eta} · {msg}")
                .expect("a valid template"),
        );
        bar
    };
    let report = bench::run(&engine, &problems, &args.output, &config, |p| {
        if p.done == p.resumed + 1 && p.resumed > 0 {
            bar.println(format!("resuming: {} solves already done", p.resumed));
        }
        bar.set_position(p.done as u64);
        let r = p.result;
        let status = match &r.error {
            Some(e) => format!("failed: {e}"),
            None => format!(
                "{} → {}{} · {} tokens",
                r.id,
                r.answer.as_deref().unwrap_or("(none)"),
                mark(r.correct),
                r.generated_tokens
            ),
        };
        bar.set_message(format!("{} · {status}", p.rung));
        if r.error.is_some() {
            bar.println(format!("{} {}: {status}", p.rung, r.id));
        }
    })?;
    bar.finish_and_clear();
    print_bench_report(args, &report)
}

fn print_bench_report(args: &BenchArgs, report: &bench::BenchReport) -> ponder::Result<()> {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("plain data serialises")
        );
    } else {
        print!("{}", bench::markdown(report));
        println!(
            "{} solves run now · written to {}",
            report.solved_now,
            args.output.display()
        );
    }
    let failed: usize = report.rungs.iter().map(|r| r.errors).sum();
    if failed > 0 {
        eprintln!("{failed} solves failed (see above); run the same command again to retry them");
    }
    Ok(())
}

/// This process's command line, quoted for a POSIX shell where needed.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "ponder".to_string() } else { a };
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=@,:+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn list_devices(args: &DevicesArgs) -> ponder::Result<()> {
    let devices = ponder::devices()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&devices).expect("devices serialise")
        );
        return Ok(());
    }
    for d in &devices {
        println!(
            "{:<8} {:<5} {:<8} {:>9} MiB free of {:>9} MiB  {}",
            d.name,
            d.kind,
            d.backend,
            d.memory_free >> 20,
            d.memory_total >> 20,
            d.description
        );
    }
    if !devices.iter().any(|d| d.is_gpu()) {
        println!("no GPU: {}", no_gpu_reason());
    }
    Ok(())
}

/// The keys of a `--config` file in effect: those its file sets and no flag overrides.
struct FileKeys {
    path: PathBuf,
    keys: Vec<&'static str>,
}

impl FileKeys {
    /// `e` as an error of the file when the setting it names came from the file.
    fn blame(&self, e: ConfigError) -> ponder::Error {
        let key = match e.field {
            "n_ctx" => "ctx",
            "n_threads" => "threads",
            "urls" => "url",
            other => other,
        };
        if self.keys.contains(&key) {
            ConfigFileError::Key {
                path: self.path.clone(),
                key: key.to_string(),
                reason: e.reason,
            }
            .into()
        } else {
            e.into()
        }
    }
}

/// `args` with the settings of its `--config` file under them: each key of the file applies
/// where its flag (or environment variable) was not given.
fn with_config_file(
    args: &ServeArgs,
    matches: &ArgMatches,
) -> ponder::Result<(ServeArgs, Option<FileKeys>)> {
    let Some(path) = &args.config else {
        return Ok((args.clone(), None));
    };
    let file = ServeFile::load(path)?;
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut a = args.clone();
    let mut keys = Vec::new();
    // (file key, clap argument id, field to set)
    macro_rules! take {
        ($key:ident, $id:literal, $field:expr, $wrap:expr) => {
            if let Some(v) = file.$key.clone() {
                if !given($id) {
                    $field = $wrap(v);
                    keys.push(stringify!($key));
                }
            }
        };
        ($key:ident, $id:literal, $field:expr) => {
            take!($key, $id, $field, std::convert::identity)
        };
    }
    take!(host, "host", a.host);
    take!(port, "port", a.port);
    take!(api_key, "api_key", a.api_key, Some);
    take!(max_queue, "max_queue", a.max_queue);
    take!(max_body_bytes, "max_body_bytes", a.max_body_bytes);
    take!(max_n, "max_n", a.max_n);
    take!(max_tokens, "max_tokens", a.max_tokens);
    take!(max_budget_tokens, "max_budget_tokens", a.max_budget_tokens);
    take!(max_solve_seconds, "max_solve_seconds", a.max_solve_seconds);
    take!(grace_seconds, "grace_seconds", a.grace_seconds);
    take!(model_name, "model_name", a.model_name, Some);
    take!(backend, "backend", a.model.backend);
    take!(model, "model", a.model.model);
    take!(n_gpu_layers, "n_gpu_layers", a.model.n_gpu_layers);
    take!(ctx, "n_ctx", a.model.n_ctx, Some);
    take!(threads, "threads", a.model.threads);
    take!(n_seq_max, "n_seq_max", a.model.n_seq_max);
    take!(deterministic, "deterministic", a.model.deterministic);
    take!(url, "urls", a.model.urls);
    take!(served_model, "served_model", a.model.served_model, Some);
    take!(max_in_flight, "max_in_flight", a.model.max_in_flight);
    take!(timeout_ms, "timeout_ms", a.model.timeout_ms);
    take!(attempts, "attempts", a.model.attempts);
    Ok((
        a,
        Some(FileKeys {
            path: path.clone(),
            keys,
        }),
    ))
}

fn run_serve(args: &ServeArgs, matches: &ArgMatches) -> ponder::Result<()> {
    let (args, file) = with_config_file(args, matches)?;
    let blame = |e: ConfigError| match &file {
        Some(f) => f.blame(e),
        None => e.into(),
    };
    let model_name = args.model_name.clone().unwrap_or_else(|| {
        args.model
            .served_model
            .clone()
            .or_else(|| {
                (args.model.backend == "llama")
                    .then(|| args.model.model.file_stem())
                    .flatten()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "ponder".into())
    });
    let options = ponder::serve::ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key: args.api_key.clone(),
        max_queue: args.max_queue,
        max_body_bytes: args.max_body_bytes,
        max_n: args.max_n,
        max_tokens: args.max_tokens,
        max_budget_tokens: args.max_budget_tokens,
        max_solve_seconds: args.max_solve_seconds,
        grace_seconds: args.grace_seconds,
        model_name,
    };
    // Refuse a bad bind or context setting before the (slow) model load.
    options.bind_address().map_err(blame)?;
    if args.model.backend == "llama" {
        args.model.options().1.validate().map_err(blame)?;
    }
    let engine = args.model.engine().map_err(|e| match e {
        ponder::Error::Config(e) => blame(e),
        ponder::Error::Load(ponder::LoadError::Config(e)) => blame(e),
        e => e,
    })?;
    ponder::serve::serve(engine, options)
}

/// Why [`ponder::devices`] lists no GPU.
fn no_gpu_reason() -> &'static str {
    if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) {
        "this GPU build found no GPU (none on this machine, or no driver)"
    } else {
        "this build has no GPU backend (build with --features cuda, vulkan or metal)"
    }
}

fn main() -> ExitCode {
    // The matches too: `serve --config` needs to know which flags were given.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match &cli.command {
        Command::Generate(args) => generate(args),
        Command::Solve(args) => solve(args),
        Command::Eval(args) => run_eval(args),
        Command::Synth(args) => run_synth(args),
        Command::Bench(args) => run_bench(args),
        Command::Devices(args) => list_devices(args),
        Command::Serve(args) => run_serve(
            args,
            matches
                .subcommand_matches("serve")
                .expect("the serve command was parsed"),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
