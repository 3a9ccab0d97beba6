//! `ponder serve`: the OpenAI-compatible server, its settings from flags and a --config file.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::ArgMatches;
use ponder::backend::BackendConfig;
use ponder::serve::ServeFile;
use ponder::{ConfigError, ConfigFileError};

use crate::flags::choice::BackendKind;
use crate::flags::model::BACKEND_FLAGS;
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
    /// for `-` (host, port, api_key, max_queue, max_n, …, model_name) and `backend`, the model's
    /// settings as the C ABI's engine JSON ({"model": "x.gguf", "n_ctx": 8192, …}). A flag or
    /// environment variable given wins over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `args` with the server settings of its `--config` file under them (each key applies where
/// its flag or environment variable was not given), the backend (the file's `backend` with the
/// backend flags given set over it, or the flags' own), and the file.
fn with_config_file(
    args: &Args,
    matches: &ArgMatches,
) -> ponder::Result<(Args, BackendConfig, Option<ServeFile>)> {
    let Some(path) = &args.config else {
        return Ok((args.clone(), args.model.config(), None));
    };
    let file = ServeFile::load(path)?;
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut a = args.clone();
    macro_rules! take {
        ($key:ident, $field:expr, $wrap:expr) => {
            if let Some(v) = file.$key.clone() {
                if !given(stringify!($key)) {
                    $field = $wrap(v);
                }
            }
        };
        ($key:ident, $field:expr) => {
            take!($key, $field, std::convert::identity)
        };
    }
    take!(host, a.host);
    take!(port, a.port);
    take!(api_key, a.api_key, Some);
    take!(max_queue, a.max_queue);
    take!(max_body_bytes, a.max_body_bytes);
    take!(max_n, a.max_n);
    take!(max_tokens, a.max_tokens);
    take!(max_budget_tokens, a.max_budget_tokens);
    take!(max_solve_seconds, a.max_solve_seconds);
    take!(grace_seconds, a.grace_seconds);
    take!(model_name, a.model_name, Some);
    let backend = match &file.backend {
        Some(base) => {
            if !given("backend") {
                a.model.backend = match base {
                    BackendConfig::Llama(_) => BackendKind::Llama,
                    BackendConfig::Remote { .. } => BackendKind::Remote,
                };
            }
            a.model.over(base, given)?
        }
        None => a.model.config(),
    };
    Ok((a, backend, Some(file)))
}

/// Serves the API until SIGINT or SIGTERM; `matches` says which flags were given, for --config.
pub fn exec(args: &Args, matches: &ArgMatches) -> ponder::Result<()> {
    let (args, backend, file) = with_config_file(args, matches)?;
    // An invalid setting the file made (and no flag overrode) is the file's error.
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let blame = |e: ConfigError| -> ponder::Error {
        let flag_given = given(e.field)
            || BACKEND_FLAGS
                .iter()
                .any(|(id, key)| key.trim_start_matches("remote.") == e.field && given(id));
        let key = file
            .as_ref()
            .filter(|_| !flag_given)
            .and_then(|f| f.key_of(e.field));
        match key {
            Some(key) => ConfigFileError::Key {
                path: args.config.clone().unwrap_or_default(),
                key: key.to_string(),
                reason: e.reason,
            }
            .into(),
            None => e.into(),
        }
    };
    let model_name = args.model_name.clone().unwrap_or_else(|| {
        match &backend {
            BackendConfig::Llama(c) => c
                .model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned()),
            BackendConfig::Remote { remote } => remote.model.clone(),
        }
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
    backend.validate().map_err(blame)?;
    progress::opening("serve", &backend, None);
    let engine = crate::flags::model::open(&backend)?.into_engine();
    ponder::serve::serve(engine, options)
}
