//! The choices taken on the command line, as value enums: clap lists them in `--help` and
//! refuses anything else before any work, with the message and exit status (1) of every other
//! bad setting rather than clap's usage status (2).

use std::ffi::OsStr;
use std::marker::PhantomData;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::ValueEnum;
use ponder::strategy::{
    AdaptiveConfig, AnswerKind, BeamConfig, BestOfNConfig, DeepConfConfig, DeepeningConfig,
    MctsConfig, Rerank, SelfCorrectConfig, StrategyConfig,
};
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

/// `--strategy`: the search strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyName {
    /// N samples decoded together, one picked by a reranker.
    #[value(name = "best-of-n", alias = "best_of_n")]
    BestOfN,
    /// An attempt, then rounds of self-check and revision in one conversation.
    #[value(name = "self-correct", alias = "self_correct")]
    SelfCorrect,
    /// Branches extended by reflection triggers with a growing budget, then a vote.
    Deepening,
    /// Monte Carlo tree search over reasoning steps.
    Mcts,
    /// Beam search over reasoning steps.
    Beam,
    /// Best-of-N that stops unsure traces early, then a confidence-weighted vote.
    #[value(aliases = ["deep-conf", "deep_conf"])]
    Deepconf,
    /// Majority voting that samples in batches and stops once the leading answer is settled.
    Adaptive,
}

impl StrategyName {
    /// The strategy as [`StrategyConfig::name`] spells it.
    pub fn config_name(self) -> &'static str {
        self.default_config().name()
    }

    /// The strategy with its defaults.
    pub fn default_config(self) -> StrategyConfig {
        match self {
            Self::BestOfN => StrategyConfig::BestOfN(BestOfNConfig::default()),
            Self::SelfCorrect => StrategyConfig::SelfCorrect(SelfCorrectConfig::default()),
            Self::Deepening => StrategyConfig::Deepening(DeepeningConfig::default()),
            Self::Mcts => StrategyConfig::Mcts(MctsConfig::default()),
            Self::Beam => StrategyConfig::Beam(BeamConfig::default()),
            Self::Deepconf => StrategyConfig::DeepConf(DeepConfConfig::default()),
            Self::Adaptive => StrategyConfig::Adaptive(AdaptiveConfig::default()),
        }
    }

    /// The strategy of `config`, where this CLI knows it.
    pub fn of(config: &StrategyConfig) -> Option<Self> {
        Self::value_variants()
            .iter()
            .copied()
            .find(|s| s.config_name() == config.name())
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
