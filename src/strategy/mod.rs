//! Search strategies: each one file, one config struct, one variant of [`StrategyConfig`].
//!
//! A strategy takes an [`Lm`] and a [`Problem`] and returns an [`Outcome`]: the chosen answer and
//! text, its score, every candidate it considered with their scores, and the work it took.

/// The parts of a [`Strategy`] impl that only name things: `name`, `prompt`, `seed` (the path of
/// the sampling seed's field) and `validate` (the config's own inherent `validate`).
macro_rules! strategy_fields {
    ($name:literal, seed: $($seed:ident).+) => {
        fn name(&self) -> &'static str {
            $name
        }

        fn prompt(&self) -> &$crate::strategy::PromptConfig {
            &self.prompt
        }

        fn seed(&self) -> u64 {
            self.$($seed).+
        }

        fn validate(&self) -> Result<(), $crate::error::ConfigError> {
            Self::validate(self)
        }
    };
}

/// [`Strategy::search`] for a sampling strategy: its `run(config, lm, problem, observer)`,
/// which reports each sample as it is drawn.
macro_rules! search_by {
    ($run:path) => {
        fn search(
            &self,
            lm: &mut dyn $crate::lm::Lm,
            problem: &$crate::strategy::Problem,
            observer: &mut $crate::strategy::Observer<'_>,
        ) -> Result<$crate::strategy::Outcome, $crate::error::Error> {
            $run(self, lm, problem, observer)
        }
    };
}

/// The whole [`Strategy`] impl of a sampling strategy that always votes (or never does):
/// [`strategy_fields!`] and [`search_by!`] with its `run`.
macro_rules! sampling_strategy {
    ($config:ty, $name:literal, seed: $($seed:ident).+, votes: $votes:literal) => {
        impl $crate::strategy::Strategy for $config {
            strategy_fields!($name, seed: $($seed).+);

            fn votes(&self) -> bool {
                $votes
            }

            search_by!(run);
        }
    };
}

/// The whole [`Strategy`] impl of a tree search over `$config` (its fields
/// `prompt`, `judge`, `step`, `budget` and `answer_by`, which votes when it matches `$votes`):
/// validates, opens the `Search` and hands it to the module's `run(config, search)`.
macro_rules! tree_strategy {
    ($config:ty, $name:literal, votes: $votes:pat) => {
        impl $crate::strategy::Strategy for $config {
            strategy_fields!($name, seed: step.sampling.seed);

            fn votes(&self) -> bool {
                matches!(self.answer_by, $votes)
            }

            /// Runs the search, reporting every step and verdict to `observer`.
            fn search(
                &self,
                lm: &mut dyn $crate::lm::Lm,
                problem: &$crate::strategy::Problem,
                observer: &mut $crate::strategy::Observer<'_>,
            ) -> Result<$crate::strategy::Outcome, $crate::error::Error> {
                self.validate()?;
                let search = $crate::strategy::tree::Search::new(
                    lm,
                    observer,
                    problem,
                    &self.prompt,
                    &self.judge,
                    &self.step,
                    &self.budget,
                )?;
                run(self, search)
            }
        }
    };
}

pub mod adaptive;
pub mod beam;
pub mod best_of_n;
pub mod deepconf;
pub mod deepening;
pub mod mcts;
mod observe;
mod outcome;
mod problem;
pub mod self_correct;
pub mod tree;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error};
use crate::lm::{Lm, Message, Node, Usage};

pub use observe::{Event, Flow, Observer};
pub use outcome::{Candidate, ConfidenceSignals, EntryKind, Outcome, TimelineEntry};
pub use problem::{limits, AnswerKind, Problem, PromptConfig};

pub use adaptive::AdaptiveConfig;
pub use beam::{BeamAnswer, BeamConfig};
pub use best_of_n::{BestOfNConfig, Rerank};
pub use deepconf::DeepConfConfig;
pub use deepening::DeepeningConfig;
pub use mcts::{AnswerBy, Backup, MctsConfig, RolloutConfig, Selection, Widen};
pub use self_correct::{Keep, SelfCorrectConfig};
pub use tree::{Budget, Limit, SearchTree, StepConfig, StopReason, TreeNode, ValueSignal};

/// Every strategy's configuration, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StrategyConfig {
    /// See [`best_of_n`].
    BestOfN(BestOfNConfig),
    /// See [`self_correct`].
    SelfCorrect(SelfCorrectConfig),
    /// See [`deepening`].
    Deepening(DeepeningConfig),
    /// See [`mcts`].
    Mcts(MctsConfig),
    /// See [`beam`].
    Beam(BeamConfig),
    /// See [`deepconf`].
    #[serde(rename = "deepconf")]
    DeepConf(DeepConfConfig),
    /// See [`adaptive`].
    Adaptive(AdaptiveConfig),
}

/// A name the strategies answer to: a strategy (its `"type"` tag) or a preset of one, with the
/// other spellings it is accepted under, the model-name prefixes that pick it in `ponder serve`
/// and the configuration it stands for. [`NAMED`] is the one list of them: [`StrategyConfig::NAMES`]
/// and [`StrategyConfig::default_for`], the CLI's `--strategy`, serve's model names and bench's
/// rungs all read it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Named {
    /// The name: a strategy's `"type"`, or a preset's own name.
    pub name: &'static str,
    /// The `"type"` of the strategy it configures (`name` itself, unless it is a preset).
    pub strategy: &'static str,
    /// Other spellings it is accepted under; in these and in `name`, `-` and `_` are the same.
    pub aliases: &'static [&'static str],
    /// The model-name prefixes that pick it in `ponder serve`, matched ignoring case.
    pub prefixes: &'static [&'static str],
    /// What it does, in one line.
    pub about: &'static str,
    config: fn() -> StrategyConfig,
}

impl Named {
    /// The configuration it stands for.
    pub fn config(&self) -> StrategyConfig {
        (self.config)()
    }

    /// Whether it is a preset (a configuration of another strategy) rather than a strategy.
    pub const fn is_preset(&self) -> bool {
        !same_str(self.name, self.strategy)
    }

    /// The entry of [`NAMED`] called `name` or one of its aliases (`-` and `_` alike).
    pub fn find(name: &str) -> Option<&'static Self> {
        let name = name.replace('-', "_");
        NAMED
            .iter()
            .find(|n| n.name == name || n.aliases.contains(&name.as_str()))
    }

    /// The entry of [`NAMED`] whose serve prefix `model` starts with, ignoring case.
    pub fn by_prefix(model: &str) -> Option<&'static Self> {
        let lower = model.to_ascii_lowercase();
        NAMED
            .iter()
            .find(|n| n.prefixes.iter().any(|p| lower.starts_with(p)))
    }

    /// Every serve prefix of [`NAMED`], in its order.
    pub fn prefixes() -> impl Iterator<Item = &'static str> {
        NAMED.iter().flat_map(|n| n.prefixes.iter().copied())
    }
}

/// Every strategy and preset, strategies in the order [`StrategyConfig::NAMES`] lists them. A new
/// strategy adds its row here beside its variant of [`StrategyConfig`].
pub const NAMED: &[Named] = &[
    Named {
        name: "bon",
        strategy: "best_of_n",
        aliases: &[],
        prefixes: &["best-of-n-", "bon-"],
        about: "Best-of-N reranked by the self-judge (optillm's bon).",
        config: || {
            StrategyConfig::BestOfN(BestOfNConfig {
                rerank: Rerank::Judge,
                ..BestOfNConfig::default()
            })
        },
    },
    Named {
        name: "majority",
        strategy: "best_of_n",
        aliases: &["self_consistency"],
        prefixes: &["majority-", "self-consistency-"],
        about: "Best-of-N by majority vote (self-consistency).",
        config: || {
            StrategyConfig::BestOfN(BestOfNConfig {
                rerank: Rerank::Vote,
                ..BestOfNConfig::default()
            })
        },
    },
    Named {
        name: "best_of_n",
        strategy: "best_of_n",
        aliases: &[],
        prefixes: &[],
        about: "N samples decoded together, one picked by a reranker.",
        config: || StrategyConfig::BestOfN(BestOfNConfig::default()),
    },
    Named {
        name: "self_correct",
        strategy: "self_correct",
        aliases: &[],
        prefixes: &["self-correct-"],
        about: "An attempt, then rounds of self-check and revision in one conversation.",
        config: || StrategyConfig::SelfCorrect(SelfCorrectConfig::default()),
    },
    Named {
        name: "deepening",
        strategy: "deepening",
        aliases: &[],
        prefixes: &["deepening-"],
        about: "Branches extended by reflection triggers with a growing budget, then a vote.",
        config: || StrategyConfig::Deepening(DeepeningConfig::default()),
    },
    Named {
        name: "mcts",
        strategy: "mcts",
        aliases: &[],
        prefixes: &["mcts-"],
        about: "Monte Carlo tree search over reasoning steps.",
        config: || StrategyConfig::Mcts(MctsConfig::default()),
    },
    Named {
        name: "beam",
        strategy: "beam",
        aliases: &[],
        prefixes: &["beam-"],
        about: "Beam search over reasoning steps.",
        config: || StrategyConfig::Beam(BeamConfig::default()),
    },
    Named {
        name: "deepconf",
        strategy: "deepconf",
        aliases: &["deep_conf"],
        prefixes: &["deepconf-"],
        about: "Best-of-N that stops unsure traces early, then a confidence-weighted vote.",
        config: || StrategyConfig::DeepConf(DeepConfConfig::default()),
    },
    Named {
        name: "adaptive",
        strategy: "adaptive",
        aliases: &[],
        prefixes: &["adaptive-"],
        about:
            "Majority voting that samples in batches and stops once the leading answer is settled.",
        config: || StrategyConfig::Adaptive(AdaptiveConfig::default()),
    },
];

/// Whether `a` and `b` are the same string (`==` in a `const`).
const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// How many entries of [`NAMED`] are strategies.
const STRATEGY_COUNT: usize = {
    let mut count = 0;
    let mut i = 0;
    while i < NAMED.len() {
        if !NAMED[i].is_preset() {
            count += 1;
        }
        i += 1;
    }
    count
};

/// The names of the strategies of [`NAMED`], in its order.
const STRATEGY_NAMES: [&str; STRATEGY_COUNT] = {
    let mut names = [""; STRATEGY_COUNT];
    let (mut i, mut j) = (0, 0);
    while i < NAMED.len() {
        if !NAMED[i].is_preset() {
            names[j] = NAMED[i].name;
            j += 1;
        }
        i += 1;
    }
    names
};

/// A search strategy, implemented by each strategy's configuration. [`StrategyConfig`] holds one
/// of them and delegates to it through [`StrategyConfig::strategy`], so a new strategy is its
/// own file (its config implementing this trait) plus one variant and its arm there.
pub trait Strategy {
    /// The strategy's name, as `"type"` spells it.
    fn name(&self) -> &'static str;

    /// How the strategy asks the model.
    fn prompt(&self) -> &PromptConfig;

    /// The base seed of the strategy's sampling.
    fn seed(&self) -> u64;

    /// Whether the strategy picks its answer by a vote over extracted answers (see
    /// [`StrategyConfig::votes`]).
    fn votes(&self) -> bool;

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Searches for the answer to `problem` (already validated, as is `self`), reporting to
    /// `observer`. [`StrategyConfig::run_observed`] wraps it: validation before, the candidate
    /// and done events after.
    ///
    /// # Errors
    /// Model errors; cancellation.
    fn search(
        &self,
        lm: &mut dyn Lm,
        problem: &Problem,
        observer: &mut Observer<'_>,
    ) -> Result<Outcome, Error>;
}

/// `strategy`'s search without an observer (the strategies' unit tests).
#[cfg(test)]
pub(crate) fn search_alone(
    strategy: &dyn Strategy,
    lm: &mut dyn Lm,
    problem: &Problem,
) -> Result<Outcome, Error> {
    strategy.search(lm, problem, &mut Observer::default())
}

/// The frame that every strategy sampling from one prompt shares (best-of-N, self-correction,
/// deepening, DeepConf): the prompt's root, `search` from it (each node it makes pushed onto
/// its list), every node released afterwards, on error too, and the usage of the whole solve.
/// The tree searches get the same from [`tree::Search`].
pub(crate) fn from_root<T>(
    lm: &mut dyn Lm,
    prompt: &PromptConfig,
    problem: &Problem,
    search: impl FnOnce(&mut dyn Lm, Node, &mut Vec<Node>) -> Result<T, Error>,
) -> Result<(T, Frame), Error> {
    let before = lm.usage();
    let messages = prompt.messages(&problem.question);
    let root = lm.root(&messages)?;
    let mut made = vec![root];
    let result = search(lm, root, &mut made);
    for n in made {
        lm.release(n);
    }
    let frame = Frame {
        usage: lm.usage().since(&before),
        prompt: messages,
    };
    Ok((result?, frame))
}

/// What every search records about itself besides its candidates: the work it took and the
/// conversation it was rooted on, as sent to the model.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frame {
    pub usage: Usage,
    pub prompt: Vec<Message>,
}

impl StrategyConfig {
    /// The strategy this configuration is: every method below delegates to it.
    pub fn strategy(&self) -> &dyn Strategy {
        match self {
            Self::BestOfN(c) => c,
            Self::SelfCorrect(c) => c,
            Self::Deepening(c) => c,
            Self::Mcts(c) => c,
            Self::Beam(c) => c,
            Self::DeepConf(c) => c,
            Self::Adaptive(c) => c,
        }
    }

    /// The strategy's name, as in `"type"`.
    pub fn name(&self) -> &'static str {
        self.strategy().name()
    }

    /// How the strategy asks the model.
    pub fn prompt(&self) -> &PromptConfig {
        self.strategy().prompt()
    }

    /// The base seed of the strategy's sampling.
    pub fn seed(&self) -> u64 {
        self.strategy().seed()
    }

    /// Every strategy's name, as `"type"` spells it: the strategies of [`NAMED`], in its order.
    pub const NAMES: &'static [&'static str] = &STRATEGY_NAMES;

    /// The default configuration of the strategy called `name` (`best_of_n` or `best-of-n`: a
    /// name or alias of a strategy in [`NAMED`]; presets are [`StrategyConfig::named`]'s).
    ///
    /// # Errors
    /// [`ConfigError`] naming the known strategies.
    pub fn default_for(name: &str) -> Result<Self, ConfigError> {
        match Named::find(name).filter(|n| !n.is_preset()) {
            Some(named) => Ok(named.config()),
            None => Err(ConfigError::new(
                "strategy",
                format!(
                    "unknown strategy {:?}; known: {}",
                    name.replace('-', "_"),
                    Self::NAMES.join(", ")
                ),
            )),
        }
    }

    /// The configuration `name` stands for: a strategy's defaults, as [`StrategyConfig::default_for`],
    /// or a preset of [`NAMED`] (`bon`, `majority`, `self-consistency`).
    ///
    /// # Errors
    /// [`ConfigError`] naming every name [`NAMED`] knows.
    pub fn named(name: &str) -> Result<Self, ConfigError> {
        match Named::find(name) {
            Some(named) => Ok(named.config()),
            None => Err(ConfigError::new(
                "strategy",
                format!(
                    "unknown strategy {:?}; known: {}",
                    name.replace('-', "_"),
                    NAMED.iter().map(|n| n.name).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// Whether the strategy picks its answer by a vote over extracted answers (best-of-N's
    /// `vote`, `weighted_vote`, `confidence_vote` and `filtered_vote`, deepening, DeepConf, MCTS
    /// and beam answering by vote). Votes need answers that can be compared, so they are not
    /// available for text answers.
    pub fn votes(&self) -> bool {
        self.strategy().votes()
    }

    /// Checks that the strategy can answer problems of `kind`: no vote over text answers.
    ///
    /// # Errors
    /// [`ConfigError`] (field `answer_kind`) saying what to use instead.
    pub fn check_answer_kind(&self, kind: AnswerKind) -> Result<(), ConfigError> {
        if kind == AnswerKind::Text && self.votes() {
            return Err(ConfigError::new(
                "answer_kind",
                format!(
                    "{} picks its answer by a vote, and free-text answers cannot be voted on; for text answers use best-of-n with --rerank judge or logprob, self-correct, or mcts/beam answering by value",
                    self.name()
                ),
            ));
        }
        Ok(())
    }

    /// Parses a configuration from JSON: either a whole `{"type": …, …}` object, or the fields of
    /// the strategy called `name` alone.
    ///
    /// # Errors
    /// [`ConfigError`] with serde's message (unknown field, wrong type, unknown variant, …).
    pub fn from_json(name: &str, json: &str) -> Result<Self, ConfigError> {
        let mut value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new("config", format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| ConfigError::new("config", "must be a JSON object"))?;
        if !obj.contains_key("type") {
            if name.is_empty() {
                return Err(ConfigError::new(
                    "strategy",
                    format!(
                        "\"type\" is missing; say which strategy, one of {} (e.g. {{\"type\": \"best_of_n\", \"n\": 8}})",
                        Self::NAMES.join(", ")
                    ),
                ));
            }
            let ty = Self::default_for(name)?.name();
            obj.insert("type".into(), serde_json::Value::String(ty.into()));
        }
        let config: Self =
            serde_json::from_value(value).map_err(|e| ConfigError::new("config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.strategy().validate()
    }

    /// Runs the strategy.
    ///
    /// # Errors
    /// Invalid problem or configuration; model errors.
    pub fn run(&self, lm: &mut dyn Lm, problem: &Problem) -> Result<Outcome, Error> {
        self.run_observed(lm, problem, &mut Observer::default())
    }

    /// Runs the strategy, reporting [`Event`]s to `observer`; the search stops as soon as the
    /// observer asks: a tree search (MCTS, beam) returns the best of what it found until then,
    /// with [`StopReason::Cancelled`]; the other strategies fail with [`Error::Cancelled`].
    ///
    /// # Errors
    /// Invalid problem or configuration; model errors; cancellation.
    pub fn run_observed(
        &self,
        lm: &mut dyn Lm,
        problem: &Problem,
        observer: &mut Observer<'_>,
    ) -> Result<Outcome, Error> {
        problem.validate()?;
        self.validate()?;
        self.check_answer_kind(problem.answer_kind)?;
        let outcome = self.strategy().search(lm, problem, observer)?;
        // A cancelled tree search returns what it found; the caller asked for no more events.
        if outcome
            .tree
            .as_ref()
            .is_some_and(|t| t.stop == StopReason::Cancelled)
        {
            return Ok(outcome);
        }
        // The search has finished: a stop asked for now ends the events, never the outcome.
        for (index, c) in outcome.candidates.iter().enumerate() {
            observer.notify(Event::Candidate {
                index,
                answer: c.answer.clone(),
                score: c.score,
            });
        }
        observer.notify(Event::Done {
            answer: outcome.answer.clone(),
            score: outcome.score,
        });
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};

    fn field_of(json: &str) -> &'static str {
        StrategyConfig::from_json("", json).expect_err(json).field
    }

    #[test]
    fn every_count_and_budget_has_an_upper_bound() {
        for (json, field) in [
            (r#"{"type":"best_of_n","n":257}"#, "n"),
            (r#"{"type":"best_of_n","max_tokens":131073}"#, "max_tokens"),
            (r#"{"type":"self_correct","rounds":1000000}"#, "rounds"),
            (
                r#"{"type":"self_correct","max_tokens":4000000000}"#,
                "max_tokens",
            ),
            (r#"{"type":"deepening","width":257}"#, "width"),
            (
                r#"{"type":"deepening","l0":200000,"total_budget":300000}"#,
                "l0",
            ),
            (r#"{"type":"deepening","gamma":100.0}"#, "gamma"),
            (
                r#"{"type":"deepening","total_budget":4000000000}"#,
                "total_budget",
            ),
            (r#"{"type":"mcts","k":65}"#, "k"),
            (
                r#"{"type":"mcts","budget":{"tokens":10000001}}"#,
                "budget.tokens",
            ),
            (
                r#"{"type":"mcts","budget":{"forward_passes":100000001}}"#,
                "budget.forward_passes",
            ),
            (
                r#"{"type":"mcts","budget":{"wall_ms":86400001}}"#,
                "budget.wall_ms",
            ),
            (
                r#"{"type":"mcts","budget":{"iterations":100001}}"#,
                "budget.iterations",
            ),
            (
                r#"{"type":"mcts","rollout":{"alpha":0.5,"max_tokens":200000}}"#,
                "rollout.max_tokens",
            ),
            (
                r#"{"type":"mcts","step":{"max_tokens":200000}}"#,
                "step.max_tokens",
            ),
            (
                r#"{"type":"beam","step":{"max_depth":1025}}"#,
                "step.max_depth",
            ),
            (r#"{"type":"beam","step":{"retries":17}}"#, "step.retries"),
            (
                r#"{"type":"beam","step":{"min_chars":100001}}"#,
                "step.min_chars",
            ),
            (r#"{"type":"beam","width":65}"#, "width"),
            (r#"{"type":"beam","expansions":65}"#, "expansions"),
        ] {
            assert_eq!(field_of(json), field, "{json}");
        }
        // The bounds themselves are accepted.
        for json in [
            r#"{"type":"self_correct","rounds":16}"#,
            r#"{"type":"mcts","budget":{"tokens":10000000,"iterations":100000}}"#,
            r#"{"type":"best_of_n","max_tokens":131072}"#,
        ] {
            StrategyConfig::from_json("", json).expect(json);
        }
    }

    #[test]
    fn a_missing_type_is_named_with_the_spellings_type_takes() {
        let e = StrategyConfig::from_json("", "{}").unwrap_err();
        assert!(e.reason.contains("\"type\" is missing"), "{e}");
        for name in StrategyConfig::NAMES {
            assert!(e.reason.contains(name), "{e}");
            let json = format!(r#"{{"type":"{name}"}}"#);
            assert_eq!(StrategyConfig::from_json("", &json).unwrap().name(), *name);
        }
        let e = StrategyConfig::default_for("magic").unwrap_err();
        assert!(e.reason.contains("best_of_n, self_correct"), "{e}");
    }

    #[test]
    fn the_table_names_every_strategy_as_its_type_tag() {
        assert_eq!(
            StrategyConfig::NAMES,
            [
                "best_of_n",
                "self_correct",
                "deepening",
                "mcts",
                "beam",
                "deepconf",
                "adaptive"
            ]
        );
        for named in NAMED {
            let config = named.config();
            // The strategy's own name and its serde tag are the table's.
            assert_eq!(config.name(), named.strategy, "{}", named.name);
            let value = serde_json::to_value(&config).unwrap();
            assert_eq!(value["type"], named.strategy, "{}", named.name);
            assert!(StrategyConfig::NAMES.contains(&named.strategy));
            for spelling in std::iter::once(&named.name).chain(named.aliases) {
                assert!(
                    !spelling.contains('-'),
                    "{spelling}: aliases are in snake case"
                );
                let kebab = spelling.replace('_', "-");
                assert_eq!(Named::find(&kebab).unwrap().name, named.name);
                assert_eq!(StrategyConfig::named(&kebab).unwrap(), config);
            }
            for prefix in named.prefixes {
                assert!(prefix.ends_with('-') && *prefix == prefix.to_ascii_lowercase());
                let model = format!("{}SmolLM", prefix.to_ascii_uppercase());
                assert_eq!(Named::by_prefix(&model).unwrap().name, named.name);
            }
        }
        // No prefix hides another.
        let prefixes: Vec<_> = Named::prefixes().collect();
        for a in &prefixes {
            for b in &prefixes {
                assert!(a == b || !b.starts_with(a), "{a} hides {b}");
            }
        }
        // Presets are names of their own, not strategies.
        assert!(StrategyConfig::default_for("majority").is_err());
        let bon = StrategyConfig::named("bon").unwrap();
        assert!(matches!(bon, StrategyConfig::BestOfN(c) if c.rerank == Rerank::Judge));
        let vote = StrategyConfig::named("self-consistency").unwrap();
        assert!(matches!(vote, StrategyConfig::BestOfN(c) if c.rerank == Rerank::Vote));
        assert!(Named::by_prefix("smol").is_none());
        assert_eq!(Named::by_prefix("Bon-smol").unwrap().name, "bon");
    }

    fn lm() -> ScriptedLm {
        ScriptedLm::new(
            |q| ScriptedStep {
                text: format!("Swap them. Answer: The mouse was chased {}.", q.ordinal),
                eos: true,
                logprob_per_token: -0.5,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        )
    }

    #[test]
    fn text_answers_are_extracted_as_text_and_votes_on_them_are_refused() {
        let problem = Problem {
            answer_kind: AnswerKind::Text,
            ..Problem::new("Rewrite in the passive voice.").with_answer("the mouse was chased 0")
        };
        let logprob = StrategyConfig::BestOfN(BestOfNConfig {
            n: 2,
            rerank: Rerank::Logprob,
            ..BestOfNConfig::default()
        });
        let out = logprob.run(&mut lm(), &problem).unwrap();
        assert_eq!(
            out.candidates[0].answer.as_deref(),
            Some("The mouse was chased 0.")
        );
        assert_eq!(out.candidates[0].correct, Some(true));
        assert_eq!(out.candidates[1].correct, Some(false));

        let vote = StrategyConfig::BestOfN(BestOfNConfig {
            rerank: Rerank::Vote,
            ..BestOfNConfig::default()
        });
        assert!(vote.votes());
        let Err(Error::Config(e)) = vote.run(&mut lm(), &problem) else {
            panic!("a vote on text answers must be refused")
        };
        assert_eq!(e.field, "answer_kind");
        assert!(e.reason.contains("logprob"), "{}", e.reason);
        assert!(StrategyConfig::default_for("deepening").unwrap().votes());
        assert!(!StrategyConfig::default_for("self-correct").unwrap().votes());
        assert_eq!(AnswerKind::parse("text").unwrap(), AnswerKind::Text);
        assert_eq!(AnswerKind::parse("words").unwrap_err().field, "answer_kind");
    }

    #[test]
    fn best_of_n_with_r3_labels_and_steers_only_when_oracle_guided() {
        // The first candidate is the one the forced reference likes; logprob ranks them equal,
        // so without guidance the pick is the first by index either way: use a judge that
        // prefers the second.
        let scripted = || {
            ScriptedLm::new(
                |q| ScriptedStep {
                    text: if q.ordinal == 0 {
                        "The mouse is the object. Answer: x".into()
                    } else {
                        "Cats sleep. Answer: y".into()
                    },
                    eos: true,
                    logprob_per_token: -0.5,
                    confidence: Vec::new(),
                    ..Default::default()
                },
                |text| if text.contains("Cats") { 0.9 } else { 0.1 },
            )
            .with_forced(|context, _, _| {
                if context.contains("mouse is") {
                    -0.1
                } else {
                    -2.0
                }
            })
        };
        let config = StrategyConfig::BestOfN(BestOfNConfig {
            n: 2,
            rerank: Rerank::Judge,
            r3: Some(crate::reward::r3::R3Config::default()),
            ..BestOfNConfig::default()
        });
        let problem = Problem {
            answer_kind: AnswerKind::Text,
            ..Problem::new("Rewrite.").with_answer("The mouse was chased by the cat.")
        };
        let out = config.run(&mut scripted(), &problem).unwrap();
        let r3 = out.r3.as_ref().expect("R3 labels");
        assert_eq!(r3.best(), Some(0));
        assert_eq!(out.chosen, 1, "the judge picks; R3 only labels");
        let guided = Problem {
            oracle_guided: true,
            ..problem.clone()
        };
        let out = config.run(&mut scripted(), &guided).unwrap();
        assert_eq!(out.chosen, 0, "oracle-guided: the highest R3");
        // Without a reference there is nothing to compute R3 against.
        let out = config
            .run(&mut scripted(), &Problem::new("Rewrite."))
            .unwrap();
        assert!(out.r3.is_none());
    }
}
