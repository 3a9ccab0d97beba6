//! `ponder serve`: the OpenAI-compatible server, its settings from flags and a --config file.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, ValueEnum};
use ponder::serve::ServeFile;
use ponder::{ConfigError, ConfigFileError};

use crate::flags::choice::BackendKind;
use crate::flags::ModelArgs;
use crate::progress;

#[derive(clap::Args, Clone)]
pub struct Args {
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
    /// for `-` (host, port, api_key, max_queue, max_n, …, model, ctx, threads, n_seq_max, kv_layout,
    /// url as a list, …). A flag or environment variable given wins over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
fn with_config_file(args: &Args, matches: &ArgMatches) -> ponder::Result<(Args, Option<FileKeys>)> {
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
    if let Some(name) = &file.backend {
        if !given("backend") {
            a.model.backend =
                BackendKind::from_str(name, false).map_err(|_| ConfigFileError::Key {
                    path: path.clone(),
                    key: "backend".into(),
                    reason: format!("unknown backend {name:?}; use llama or remote"),
                })?;
            keys.push("backend");
        }
    }
    take!(model, "model", a.model.model);
    take!(n_gpu_layers, "n_gpu_layers", a.model.n_gpu_layers);
    take!(ctx, "n_ctx", a.model.n_ctx, Some);
    take!(threads, "threads", a.model.threads);
    take!(n_seq_max, "n_seq_max", a.model.n_seq_max);
    take!(kv_layout, "kv_layout", a.model.kv_layout);
    take!(deterministic, "deterministic", a.model.deterministic);
    take!(url, "urls", a.model.urls);
    take!(served_model, "served_model", a.model.served_model, Some);
    take!(max_in_flight, "max_in_flight", a.model.max_in_flight);
    take!(timeout_ms, "timeout_ms", a.model.timeout_ms);
    take!(attempts, "attempts", a.model.attempts);
    take!(tokenizer, "tokenizer", a.model.tokenizer, Some);
    Ok((
        a,
        Some(FileKeys {
            path: path.clone(),
            keys,
        }),
    ))
}

/// Serves the API until SIGINT or SIGTERM; `matches` says which flags were given, for --config.
pub fn exec(args: &Args, matches: &ArgMatches) -> ponder::Result<()> {
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
                (args.model.backend == BackendKind::Llama)
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
    args.model.check().map_err(blame)?;
    progress::opening("serve", &args.model, None);
    let engine = args.model.engine().map_err(|e| match e {
        ponder::Error::Config(e) => blame(e),
        ponder::Error::Load(ponder::LoadError::Config(e)) => blame(e),
        e => e,
    })?;
    ponder::serve::serve(engine, options)
}
