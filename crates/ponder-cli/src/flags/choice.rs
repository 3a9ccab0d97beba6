//! The choices taken on the command line, as value enums: clap lists them in `--help` and
//! refuses anything else before any work, with the message and exit status (1) of every other
//! bad setting rather than clap's usage status (2).

use std::ffi::OsStr;
use std::marker::PhantomData;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::ValueEnum;
use ponder::strategy::{AnswerKind, Named, Rerank, StrategyConfig};
use ponder::trace::export::{Format, LabelKind};

/// A value that is none of a choice's names: "unknown reranker "oracle"; use judge, … or …".
#[derive(Debug)]
pub struct UnknownChoice {
    what: &'static str,
    value: String,
    names: Vec<String>,
}

impl std::fmt::Display for UnknownChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (last, rest) = self.names.split_last().expect("a choice has names");
        write!(
            f,
            "unknown {} {:?}; use {}",
            self.what,
            self.value,
            if rest.is_empty() {
                last.clone()
            } else {
                format!("{} or {last}", rest.join(", "))
            }
        )
    }
}

impl std::error::Error for UnknownChoice {}

/// The value parser of a choice `E`, `what` naming it in the refusal ("reranker").
pub fn choice<E: ValueEnum + Clone + Send + Sync + 'static>(what: &'static str) -> Choice<E> {
    Choice {
        what,
        choice: PhantomData,
    }
}

/// See [`choice`].
#[derive(Clone)]
pub struct Choice<E> {
    what: &'static str,
    choice: PhantomData<E>,
}

impl<E: ValueEnum + Clone + Send + Sync + 'static> TypedValueParser for Choice<E> {
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<E, clap::Error> {
        let what = self.what;
        // A plain function parser, so that clap keeps `UnknownChoice` as the error's source
        // (main reads it to pick the exit status).
        let parse = move |text: &str| {
            E::from_str(text, false).map_err(|_| UnknownChoice {
                what,
                value: text.to_string(),
                names: E::value_variants()
                    .iter()
                    .filter_map(ValueEnum::to_possible_value)
                    .filter(|p| !p.is_hide_set())
                    .map(|p| p.get_name().to_string())
                    .collect(),
            })
        };
        parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            E::value_variants()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

/// `--backend`: where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// In-process llama.cpp.
    Llama,
    /// OpenAI-compatible servers given with --url.
    Remote,
}

/// `--strategy`: the search strategy. Its spellings and help come from the library's table
/// ([`ponder::strategy::NAMED`]): the name in kebab case, the `"type"` in snake case and every
/// alias in both; a variant here names which flags apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyName {
    BestOfN,
    SelfCorrect,
    Deepening,
    Mcts,
    Beam,
    Deepconf,
    Adaptive,
}

impl StrategyName {
    /// The strategy as [`StrategyConfig::name`] spells it.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::BestOfN => "best_of_n",
            Self::SelfCorrect => "self_correct",
            Self::Deepening => "deepening",
            Self::Mcts => "mcts",
            Self::Beam => "beam",
            Self::Deepconf => "deepconf",
            Self::Adaptive => "adaptive",
        }
    }

    /// The library's entry for the strategy.
    fn named(self) -> &'static Named {
        Named::find(self.config_name()).expect("a strategy of the library's table")
    }

    /// The strategy with its defaults.
    pub fn default_config(self) -> StrategyConfig {
        self.named().config()
    }

    /// The strategy of `config`, where this CLI knows it.
    pub fn of(config: &StrategyConfig) -> Option<Self> {
        Self::value_variants()
            .iter()
            .copied()
            .find(|s| s.config_name() == config.name())
    }
}

impl ValueEnum for StrategyName {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Self::BestOfN,
            Self::SelfCorrect,
            Self::Deepening,
            Self::Mcts,
            Self::Beam,
            Self::Deepconf,
            Self::Adaptive,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        // Built once from the table: the kebab-case spellings are made here, and clap keeps
        // its names as `&'static str`.
        static VALUES: std::sync::OnceLock<Vec<PossibleValue>> = std::sync::OnceLock::new();
        let values = VALUES.get_or_init(|| {
            let kebab =
                |s: &str| -> &'static str { Box::leak(s.replace('_', "-").into_boxed_str()) };
            StrategyName::value_variants()
                .iter()
                .map(|s| {
                    let named = s.named();
                    let name = kebab(named.name);
                    let mut aliases: Vec<&'static str> = Vec::new();
                    for spelling in std::iter::once(named.name).chain(named.aliases.iter().copied())
                    {
                        for form in [kebab(spelling), spelling] {
                            if form != name && !aliases.contains(&form) {
                                aliases.push(form);
                            }
                        }
                    }
                    PossibleValue::new(name)
                        .aliases(aliases)
                        .help(named.about.trim_end_matches('.'))
                })
                .collect()
        });
        let index = Self::value_variants().iter().position(|s| s == self)?;
        values.get(index).cloned()
    }
}

/// `--rerank`: how best-of-n picks its candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RerankName {
    /// The self-judge's score.
    Judge,
    /// The token confidence signal (DeepConf).
    Confidence,
    /// The sequence log-probability.
    Logprob,
    /// A majority vote over the extracted answers.
    Vote,
    /// A vote weighted by the self-judge's scores.
    #[value(name = "weighted_vote", alias = "weighted-vote")]
    WeightedVote,
    /// A vote weighted by each candidate's confidence.
    #[value(name = "confidence_vote", alias = "confidence-vote")]
    ConfidenceVote,
    /// A confidence-weighted vote over the most confident candidates only.
    #[value(name = "filtered_vote", alias = "filtered-vote")]
    FilteredVote,
    /// Self-certainty: the trace whose token distributions are furthest from uniform.
    #[value(name = "self_certainty", alias = "self-certainty")]
    SelfCertainty,
    /// A vote weighted by each candidate's Borda rank in self-certainty.
    #[value(name = "borda_vote", alias = "borda-vote")]
    BordaVote,
    /// The trace with the lowest entropy over its last tokens.
    #[value(name = "tail_entropy", alias = "tail-entropy")]
    TailEntropy,
    /// A vote weighted by the softmax of each candidate's log-probability (CISC).
    Cisc,
    /// A vote weighted by the softmax of the self-judge's P(yes) (CISC).
    #[value(name = "cisc_judge", alias = "cisc-judge")]
    CiscJudge,
}

impl From<RerankName> for Rerank {
    fn from(r: RerankName) -> Self {
        match r {
            RerankName::Judge => Rerank::Judge,
            RerankName::Confidence => Rerank::Confidence,
            RerankName::Logprob => Rerank::Logprob,
            RerankName::Vote => Rerank::Vote,
            RerankName::WeightedVote => Rerank::WeightedVote,
            RerankName::ConfidenceVote => Rerank::ConfidenceVote,
            RerankName::FilteredVote => Rerank::FilteredVote,
            RerankName::SelfCertainty => Rerank::SelfCertainty,
            RerankName::BordaVote => Rerank::BordaVote,
            RerankName::TailEntropy => Rerank::TailEntropy,
            RerankName::Cisc => Rerank::Cisc,
            RerankName::CiscJudge => Rerank::CiscJudge,
        }
    }
}

/// `--formats`: the training records `synth` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatName {
    /// Supervised fine-tuning: the chosen solution.
    Sft,
    /// Preference pairs: a better and a worse candidate.
    Preference,
    /// Process reward: a label per step.
    Prm,
    /// Self-correction: a wrong attempt and its revision.
    Correction,
}

impl From<FormatName> for Format {
    fn from(f: FormatName) -> Self {
        match f {
            FormatName::Sft => Format::Sft,
            FormatName::Preference => Format::Preference,
            FormatName::Prm => Format::Prm,
            FormatName::Correction => Format::Correction,
        }
    }
}

/// `--labels`: how PRM records label steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LabelName {
    /// Values in [0, 1].
    Float,
    /// Good or not, by --threshold.
    Bool,
}

impl From<LabelName> for LabelKind {
    fn from(l: LabelName) -> Self {
        match l {
            LabelName::Float => LabelKind::Float,
            LabelName::Bool => LabelKind::Bool,
        }
    }
}

/// `--answer-kind`: what the reference answers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnswerKindName {
    /// Numbers, compared as numbers.
    Numeric,
    /// Free text (a rewritten sentence, a phrase).
    Text,
}

impl From<AnswerKindName> for AnswerKind {
    fn from(k: AnswerKindName) -> Self {
        match k {
            AnswerKindName::Numeric => AnswerKind::Numeric,
            AnswerKindName::Text => AnswerKind::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--strategy` takes exactly the library's strategies, under every spelling the table
    /// gives them (and the ones it took before the table).
    #[test]
    fn strategy_choices_are_the_librarys_table() {
        let names: Vec<&str> = StrategyName::value_variants()
            .iter()
            .map(|s| s.config_name())
            .collect();
        assert_eq!(names, StrategyConfig::NAMES);
        for s in StrategyName::value_variants() {
            let named = Named::find(s.config_name()).unwrap();
            assert!(!named.is_preset());
            assert_eq!(s.default_config().name(), named.name);
            let value = s.to_possible_value().unwrap();
            for spelling in std::iter::once(named.name).chain(named.aliases.iter().copied()) {
                for form in [spelling.to_string(), spelling.replace('_', "-")] {
                    assert!(value.matches(&form, false), "{form}");
                    assert_eq!(StrategyName::from_str(&form, false).unwrap(), *s);
                }
            }
        }
        let shown: Vec<String> = StrategyName::value_variants()
            .iter()
            .map(|s| s.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "best-of-n",
                "self-correct",
                "deepening",
                "mcts",
                "beam",
                "deepconf",
                "adaptive"
            ]
        );
        for old in ["best_of_n", "self_correct", "deep-conf", "deep_conf"] {
            assert!(StrategyName::from_str(old, false).is_ok(), "{old}");
        }
        assert!(StrategyName::from_str("majority", false).is_err());
    }
}
