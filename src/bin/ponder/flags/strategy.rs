//! The strategy flags: `--strategy`, `--config` and the per-strategy overrides, and the policy
//! that combines them ([`StrategyArgs::resolve`]).

use clap::Args;
use ponder::strategy::{Rerank, StrategyConfig};
use ponder::ConfigError;

#[derive(Args)]
pub struct StrategyArgs {
    /// The strategy: best-of-n, self-correct, deepening, mcts, beam, deepconf [default:
    /// best-of-n, or the "type" of --config].
    #[arg(long)]
    pub strategy: Option<String>,
    /// The strategy's configuration: a JSON object or a file holding one (fields of the
    /// strategy, or a whole {"type": …} object). The flags below override it.
    #[arg(long)]
    pub config: Option<String>,
    /// Samples (best-of-n), most traces (deepconf) or branches (deepening).
    #[arg(short = 'n', long)]
    pub n: Option<u32>,
    /// Revision rounds (self-correct).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// First segment's token budget (deepening).
    #[arg(long)]
    pub l0: Option<u32>,
    /// Budget growth per trigger (deepening).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Reranker (best-of-n): judge, confidence, logprob, vote, weighted_vote, confidence_vote,
    /// filtered_vote.
    #[arg(long)]
    pub rerank: Option<String>,
    /// New tokens per sample or attempt, at most (deepening: the total budget per branch;
    /// mcts, beam: per step).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Children per expansion (mcts).
    #[arg(long)]
    pub k: Option<u32>,
    /// Beams kept per level (beam).
    #[arg(long)]
    pub width: Option<u32>,
    /// Generated tokens for the whole search (mcts, beam): a limit checked before each batch
    /// step, so the search may end up to one batch of steps past it.
    #[arg(long)]
    pub budget: Option<u64>,
    /// Base seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the resolved strategy configuration (defaults, --config and the flags) as JSON and
    /// exit without loading a model.
    #[arg(long)]
    pub print_config: bool,
}

impl StrategyArgs {
    /// With --print-config, prints `strategy` as JSON and says so (the command then stops).
    pub fn printed(&self, strategy: &StrategyConfig) -> bool {
        if self.print_config {
            println!(
                "{}",
                serde_json::to_string_pretty(strategy).expect("plain data serialises")
            );
        }
        self.print_config
    }

    pub fn resolve(&self) -> Result<StrategyConfig, ConfigError> {
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
