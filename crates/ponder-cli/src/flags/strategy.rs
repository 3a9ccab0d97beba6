//! The strategy flags: `--strategy`, `--config` and the per-strategy overrides, and the policy
//! that combines them ([`StrategyArgs::resolve`]).

use clap::{Args, ValueEnum};
use ponder::strategy::StrategyConfig;
use ponder::ConfigError;

use super::choice::{choice, RerankName, StrategyName};

#[derive(Args)]
pub struct StrategyArgs {
    /// The strategy [default: best-of-n, or the "type" of --config].
    #[arg(long, value_parser = choice::<StrategyName>("strategy"))]
    pub strategy: Option<StrategyName>,
    /// The strategy's configuration: a JSON object or a file holding one (fields of the
    /// strategy, or a whole {"type": …} object). The flags below override it.
    #[arg(long)]
    pub config: Option<String>,
    /// Samples (best-of-n), most traces (deepconf, adaptive) or branches (deepening).
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
    /// Reranker (best-of-n).
    #[arg(long, value_parser = choice::<RerankName>("reranker"))]
    pub rerank: Option<RerankName>,
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
    /// exit without loading a model: the way to see the defaults of the flags above, which
    /// depend on the strategy.
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

    /// The strategy to run: the defaults of --strategy or the --config object (which must agree
    /// when both are given), then the override flags, each refused where it does not apply.
    ///
    /// # Errors
    /// A [`ConfigError`] for an unreadable or invalid --config, a --strategy that contradicts
    /// it, a flag given for a strategy it does not apply to, or a value out of range.
    pub fn resolve(&self) -> Result<StrategyConfig, ConfigError> {
        let mut config = self.base()?;
        self.check_flags_apply(&config)?;
        self.apply_flags(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// The defaults of --strategy, or the --config object (JSON, or a file holding it).
    fn base(&self) -> Result<StrategyConfig, ConfigError> {
        let Some(text) = &self.config else {
            return Ok(self
                .strategy
                .unwrap_or(StrategyName::BestOfN)
                .default_config());
        };
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
        let named = self.strategy.unwrap_or(StrategyName::BestOfN);
        let config = StrategyConfig::from_json(named.config_name(), &json)?;
        if let Some(flag) = self.strategy {
            if flag.config_name() != config.name() {
                return Err(ConfigError::new(
                    "strategy",
                    format!(
                        "--strategy {} contradicts the config's \"type\": \"{}\"; give one of them",
                        flag.to_possible_value()
                            .expect("no hidden strategy")
                            .get_name(),
                        config.name()
                    ),
                ));
            }
        }
        Ok(config)
    }

    /// The override flags given, each with the strategies it applies to and how the refusal
    /// names them; --max-tokens and --seed apply to every strategy this CLI knows.
    fn flags_given(&self) -> Vec<(&'static str, &'static [StrategyName], &'static str)> {
        use StrategyName::*;
        let every = StrategyName::value_variants();
        [
            (
                self.rerank.is_some(),
                "--rerank",
                &[BestOfN][..],
                "best-of-n",
            ),
            (
                self.rounds.is_some(),
                "--rounds",
                &[SelfCorrect],
                "self-correct",
            ),
            (
                self.l0.is_some() || self.gamma.is_some(),
                "--l0/--gamma",
                &[Deepening],
                "deepening",
            ),
            (
                self.n.is_some(),
                "--n",
                &[BestOfN, Deepconf, Adaptive, Deepening],
                "best-of-n, deepconf, adaptive and deepening (width)",
            ),
            (self.k.is_some(), "--k", &[Mcts], "mcts"),
            (self.width.is_some(), "--width", &[Beam], "beam"),
            (
                self.budget.is_some(),
                "--budget",
                &[Mcts, Beam],
                "mcts and beam",
            ),
            (
                self.max_tokens.is_some() || self.seed.is_some(),
                "--max-tokens/--seed",
                every,
                "the strategies of --strategy",
            ),
        ]
        .into_iter()
        .filter(|(given, ..)| *given)
        .map(|(_, flag, applies, strategies)| (flag, applies, strategies))
        .collect()
    }

    /// Refuses a flag given for a strategy it does not apply to (rather than ignoring it).
    fn check_flags_apply(&self, config: &StrategyConfig) -> Result<(), ConfigError> {
        let strategy = StrategyName::of(config);
        for (flag, applies, strategies) in self.flags_given() {
            if !strategy.is_some_and(|s| applies.contains(&s)) {
                return Err(ConfigError::new(
                    "flags",
                    format!("{flag} applies to {strategies} only; use --config for other fields"),
                ));
            }
        }
        Ok(())
    }

    /// Sets the fields the override flags give ([`Self::check_flags_apply`] has refused those
    /// that do not apply).
    fn apply_flags(&self, config: &mut StrategyConfig) {
        match config {
            StrategyConfig::BestOfN(c) => {
                set(&mut c.n, self.n);
                set(&mut c.rerank, self.rerank.map(Into::into));
                set(&mut c.max_tokens, self.max_tokens);
                set(&mut c.sampling.seed, self.seed);
            }
            StrategyConfig::SelfCorrect(c) => {
                set(&mut c.rounds, self.rounds);
                set(&mut c.max_tokens, self.max_tokens);
                set(&mut c.sampling.seed, self.seed);
            }
            StrategyConfig::Deepening(c) => {
                set(&mut c.width, self.n);
                set(&mut c.total_budget, self.max_tokens);
                set(&mut c.l0, self.l0);
                set(&mut c.gamma, self.gamma);
                set(&mut c.sampling.seed, self.seed);
            }
            StrategyConfig::Mcts(c) => {
                set(&mut c.k, self.k);
                set(&mut c.step.max_tokens, self.max_tokens);
                set(&mut c.budget.tokens, self.budget.map(Some));
                set(&mut c.step.sampling.seed, self.seed);
            }
            StrategyConfig::Beam(c) => {
                set(&mut c.width, self.width);
                set(&mut c.step.max_tokens, self.max_tokens);
                set(&mut c.budget.tokens, self.budget.map(Some));
                set(&mut c.step.sampling.seed, self.seed);
            }
            StrategyConfig::DeepConf(c) => {
                if let Some(n) = self.n {
                    c.n = n;
                    c.warmup = c.warmup.min(n);
                    c.batch = c.batch.min(n);
                }
                set(&mut c.max_tokens, self.max_tokens);
                set(&mut c.sampling.seed, self.seed);
            }
            StrategyConfig::Adaptive(c) => {
                if let Some(n) = self.n {
                    c.n = n;
                    c.first = c.first.min(n);
                    c.batch = c.batch.min(n);
                }
                set(&mut c.max_tokens, self.max_tokens);
                set(&mut c.sampling.seed, self.seed);
            }
            // A strategy the library has and this CLI does not know yet takes its settings from
            // --config alone: `check_flags_apply` refused every flag for it.
            _ => {}
        }
    }
}

/// `field` set to `value` where a flag gave one.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}
