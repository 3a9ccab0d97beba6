//! The self-judge (self-PRM): the same model, prompted as a verifier, scores whole solutions and
//! single steps.
//!
//! A score is P(yes) / (P(yes) + P(no)), read from the model's next-token probabilities right
//! after the verifier prompt: one forward pass, no sampling. The yes/no token ids are found in the
//! vocabulary from the configured words, in their plain, leading-space, lower-case and capitalised
//! forms (each form that is a single token counts).
//!
//! The verifier conversation is rendered through the model's chat template with a marker where
//! the solution goes, and split there: the part before (instructions and question) becomes one
//! node shared by every candidate, decoded once; each candidate adds its own text and the part
//! after the marker. Scoring N candidates is one [`Lm::next_token_probs`] call.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, DecodeError};
use crate::lm::{user_turn_tokens, GenRequest, Lm, Message, Node, TokenId};

/// Where the solution goes in the verifier prompts.
pub const SOLUTION: &str = "{solution}";
/// Where the question goes in the verifier prompts.
pub const QUESTION: &str = "{question}";

/// How the step scores of one solution combine into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAggregate {
    /// The weakest step (a chain is as good as its worst link).
    #[default]
    Min,
    /// The average step.
    Mean,
    /// The last step only.
    Last,
    /// The product: the probability that every step is right, if independent.
    Product,
}

impl StepAggregate {
    /// Combines step scores; an empty list gives 0.5 (no evidence either way).
    pub fn apply(self, scores: &[f64]) -> f64 {
        if scores.is_empty() {
            return 0.5;
        }
        match self {
            Self::Min => scores.iter().copied().fold(f64::INFINITY, f64::min),
            Self::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
            Self::Last => scores[scores.len() - 1],
            Self::Product => scores.iter().product(),
        }
    }
}

/// The verifier's prompts and words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// An optional system message for the verifier conversation.
    pub system: Option<String>,
    /// The user message asking whether a whole solution is correct; must contain `{solution}`,
    /// may contain `{question}`.
    pub outcome_prompt: String,
    /// The user message asking whether the last step of a partial solution is correct; must
    /// contain `{solution}` (the steps so far), may contain `{question}`.
    pub step_prompt: String,
    /// Inline form (tree search): a user turn appended to the solver's own conversation right after
    /// a partial solution, asking whether its last step is correct. Only these few tokens are
    /// decoded per verdict; the question and the steps are already in the solver's cache.
    pub inline_step_prompt: String,
    /// Inline form of the outcome question, appended after a finished solution.
    pub inline_outcome_prompt: String,
    /// Words that mean "correct".
    pub yes: Vec<String>,
    /// Words that mean "incorrect".
    pub no: Vec<String>,
    /// How step scores combine into a solution score.
    pub aggregate: StepAggregate,
    /// Most candidate tokens decoded per forward pass when scoring (0 = all in one pass).
    ///
    /// In llama.cpp's unified cache every token attends over every live cell, so decoding many
    /// long candidates together costs attention quadratic in their total length. On the
    /// project's 2-core CPU, judging 16 candidates of ~160 tokens took 15.0 s in one pass,
    /// 9.8 s four at a time and 8.2 s one at a time (`cargo bench --bench judge`; README).
    /// The shared prefix is decoded once either way. Raise this on a GPU.
    pub batch_tokens: u32,
    /// Generative self-verification: when above 0, an in-place outcome verdict first asks
    /// [`JudgeConfig::check_prompt`] after the candidate and lets the model write a check of up
    /// to this many tokens (greedy), then asks [`JudgeConfig::inline_outcome_prompt`] after the
    /// check and reads P(yes) there. 0 (the default): the single-token verdict right after the
    /// candidate. At most 4096.
    pub check_tokens: u32,
    /// The user turn that asks for the check (generative verification only).
    pub check_prompt: String,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            system: None,
            outcome_prompt: "Check the following solution to a math problem.\n\nProblem: {question}\n\nSolution:\n{solution}\n\nIs this solution correct? Answer Yes or No.".into(),
            step_prompt: "Check the latest step of the following partial solution to a math problem.\n\nProblem: {question}\n\nSolution so far:\n{solution}\n\nIs the last step correct? Answer Yes or No.".into(),
            inline_step_prompt: "Is the last step of the solution above correct? Answer Yes or No.".into(),
            inline_outcome_prompt: "Is the solution above correct? Answer Yes or No.".into(),
            yes: vec!["Yes".into()],
            no: vec!["No".into()],
            aggregate: StepAggregate::Min,
            batch_tokens: 256,
            check_tokens: 0,
            check_prompt: "Check the solution above step by step: redo each calculation briefly and say whether it is right.".into(),
        }
    }
}

/// One verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JudgeScore {
    /// P(yes) / (P(yes) + P(no)), in [0, 1]; 0.5 when the model puts no mass on either.
    pub score: f64,
    /// Probability mass on the "yes" tokens.
    pub p_yes: f64,
    /// Probability mass on the "no" tokens.
    pub p_no: f64,
}

impl JudgeScore {
    fn from_mass(p_yes: f64, p_no: f64) -> Self {
        let total = p_yes + p_no;
        let score = if total > 1e-12 { p_yes / total } else { 0.5 };
        Self {
            score: score.clamp(0.0, 1.0),
            p_yes,
            p_no,
        }
    }
}

/// Which of the two verifier prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Is the whole solution correct?
    Outcome,
    /// Is the last step correct?
    Step,
}

/// A verifier prompt prepared for one question: the shared node and the text that follows each
/// solution. Release it with [`Verifier::release`] when done.
#[derive(Debug, Clone)]
pub struct Verifier {
    node: Node,
    suffix: String,
}

impl Verifier {
    /// The node holding the instructions and the question.
    pub fn node(&self) -> Node {
        self.node
    }

    /// The text appended after each solution (the rest of the verifier prompt).
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// Frees the shared node.
    pub fn release(self, lm: &mut dyn Lm) {
        lm.release(self.node);
    }
}

/// The self-judge over one model.
#[derive(Debug, Clone)]
pub struct Judge {
    config: JudgeConfig,
    yes: Vec<TokenId>,
    no: Vec<TokenId>,
}

impl Judge {
    /// Checks the prompts and finds the yes/no token ids in `lm`'s vocabulary.
    ///
    /// # Errors
    /// [`DecodeError::InvalidRequest`] when a prompt lacks `{solution}` or a word list has no
    /// single-token form in this vocabulary.
    pub fn new(lm: &dyn Lm, config: JudgeConfig) -> Result<Self, DecodeError> {
        for (field, prompt) in [
            ("judge.outcome_prompt", &config.outcome_prompt),
            ("judge.step_prompt", &config.step_prompt),
        ] {
            if prompt.matches(SOLUTION).count() != 1 {
                return Err(ConfigError::new(
                    field,
                    format!("must contain {SOLUTION} exactly once (where the solution goes)"),
                )
                .into());
            }
        }
        ConfigError::check_range(
            "judge.check_tokens",
            config.check_tokens,
            0..=4096,
            "tokens",
        )?;
        let yes = word_tokens(lm, &config.yes, "judge.yes")?;
        let no = word_tokens(lm, &config.no, "judge.no")?;
        if yes.iter().any(|t| no.contains(t)) {
            return Err(ConfigError::new(
                "judge.no",
                "shares a token with judge.yes; the words must differ",
            )
            .into());
        }
        Ok(Self { config, yes, no })
    }

    /// The configuration.
    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// The token ids read as "yes" and as "no".
    pub fn tokens(&self) -> (&[TokenId], &[TokenId]) {
        (&self.yes, &self.no)
    }

    /// Renders the verifier prompt for `question` and creates its shared node (decoded lazily,
    /// once, by the first scoring call).
    ///
    /// # Errors
    /// Chat-template and context errors from the model.
    pub fn prepare(
        &self,
        lm: &mut dyn Lm,
        question: &str,
        kind: Verdict,
    ) -> Result<Verifier, DecodeError> {
        let template = match kind {
            Verdict::Outcome => &self.config.outcome_prompt,
            Verdict::Step => &self.config.step_prompt,
        };
        let (before, after) = template
            .split_once(SOLUTION)
            .expect("checked by Judge::new");
        const MARKER: &str = "\u{1}PONDER-SOLUTION\u{1}";
        let user = format!(
            "{}{MARKER}{}",
            before.replace(QUESTION, question),
            after.replace(QUESTION, question)
        );
        let mut messages = Vec::new();
        if let Some(system) = &self.config.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(user));
        let rendered = lm.chat_text(&messages)?;
        let (prefix, suffix) = rendered.split_once(MARKER).ok_or_else(|| {
            DecodeError::ChatTemplate("the chat template dropped the solution marker".into())
        })?;
        let node = lm.root_text(prefix)?;
        Ok(Verifier {
            node,
            suffix: suffix.to_string(),
        })
    }

    /// Scores each solution: batched, at most [`JudgeConfig::batch_tokens`] candidate tokens per
    /// forward pass. The verifier's shared node is decoded with the first batch (once) and stays
    /// decoded for later calls until the verifier is released.
    ///
    /// # Errors
    /// Model errors; [`DecodeError::ContextOverflow`] for a solution too long for the context.
    pub fn score(
        &self,
        lm: &mut dyn Lm,
        verifier: &Verifier,
        solutions: &[&str],
    ) -> Result<Vec<JudgeScore>, DecodeError> {
        let texts: Vec<String> = solutions
            .iter()
            .map(|s| format!("{}{}", s.trim_end(), verifier.suffix))
            .collect();
        // Chunks of at most `batch_tokens` candidate tokens (at least one candidate each).
        let budget = match self.config.batch_tokens {
            0 => usize::MAX,
            b => b as usize,
        };
        let mut scores = Vec::with_capacity(texts.len());
        let mut start = 0;
        while start < texts.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < texts.len() {
                let n = lm.tokenize(&texts[end])?.len();
                if end > start && tokens + n > budget {
                    break;
                }
                tokens += n;
                end += 1;
            }
            let mut nodes = Vec::with_capacity(end - start);
            let result = (|| {
                for text in &texts[start..end] {
                    nodes.push(lm.extend(verifier.node, text)?);
                }
                self.read_keeping(lm, Some(verifier.node), &nodes)
            })();
            for n in nodes {
                lm.release(n);
            }
            scores.extend(result?);
            start = end;
        }
        Ok(scores)
    }

    /// Scores every step of every solution (each a list of steps) with one batched call: the
    /// score of step k judges the solution cut after step k. Steps are joined as given (include
    /// their delimiters). Solutions share their common steps' tokens.
    ///
    /// # Errors
    /// As [`Judge::score`].
    pub fn score_steps(
        &self,
        lm: &mut dyn Lm,
        verifier: &Verifier,
        solutions: &[Vec<&str>],
    ) -> Result<Vec<Vec<JudgeScore>>, DecodeError> {
        let mut texts = Vec::new();
        for steps in solutions {
            let mut so_far = String::new();
            for step in steps {
                so_far.push_str(step);
                texts.push(so_far.clone());
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let flat = self.score(lm, verifier, &refs)?;
        let mut out = Vec::with_capacity(solutions.len());
        let mut it = flat.into_iter();
        for steps in solutions {
            out.push(it.by_ref().take(steps.len()).collect());
        }
        Ok(out)
    }

    /// The tokens appended to `node` to ask the inline question of `kind` (see
    /// [`JudgeConfig::inline_step_prompt`]): the solver's turn is closed and the question opens a
    /// new user turn, followed by the assistant's turn where the verdict word would come.
    ///
    /// # Errors
    /// Chat-template, tokenizer and unknown-node errors.
    pub fn inline_suffix(
        &self,
        lm: &dyn Lm,
        node: Node,
        kind: Verdict,
    ) -> Result<Vec<TokenId>, DecodeError> {
        let text = match kind {
            Verdict::Outcome => &self.config.inline_outcome_prompt,
            Verdict::Step => &self.config.inline_step_prompt,
        };
        user_turn_tokens(lm, node, text)
    }

    /// Scores nodes of the solver's own tree in place: each gets its inline question appended
    /// ([`Judge::inline_suffix`]) and the verdict is read after it. Batched like [`Judge::score`],
    /// at most [`JudgeConfig::batch_tokens`] question tokens per forward pass; the question nodes
    /// are released before returning. Returns the scores and the number of question tokens
    /// appended in all.
    ///
    /// # Errors
    /// Model errors; [`DecodeError::ContextOverflow`] when a node has no room left for the
    /// question.
    pub fn score_inline(
        &self,
        lm: &mut dyn Lm,
        queries: &[(Node, Verdict)],
    ) -> Result<(Vec<JudgeScore>, usize), DecodeError> {
        let suffixes = queries
            .iter()
            .map(|&(node, kind)| self.inline_suffix(lm, node, kind))
            .collect::<Result<Vec<_>, _>>()?;
        let total = suffixes.iter().map(Vec::len).sum();
        let budget = match self.config.batch_tokens {
            0 => usize::MAX,
            b => b as usize,
        };
        let mut scores = Vec::with_capacity(queries.len());
        let mut start = 0;
        while start < queries.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < queries.len() && (end == start || tokens + suffixes[end].len() <= budget) {
                tokens += suffixes[end].len();
                end += 1;
            }
            let mut nodes = Vec::with_capacity(end - start);
            let result = (|| {
                for i in start..end {
                    nodes.push(lm.extend_tokens(queries[i].0, &suffixes[i])?);
                }
                self.read(lm, &nodes)
            })();
            for n in nodes {
                lm.release(n);
            }
            scores.extend(result?);
            start = end;
        }
        Ok((scores, total))
    }

    /// Generative self-verification of finished solutions, in place: after each node the model
    /// is asked [`JudgeConfig::check_prompt`] and writes a check of at most
    /// [`JudgeConfig::check_tokens`] tokens (greedy, all checks decoded together); then
    /// [`JudgeConfig::inline_outcome_prompt`] follows the check and the verdict is read there.
    /// Every node it adds is released before returning. Returns the scores, the checks' texts
    /// and the tokens it decoded (questions and checks).
    ///
    /// # Errors
    /// Model errors; [`DecodeError::ContextOverflow`] when a node has no room left.
    pub fn score_generative(
        &self,
        lm: &mut dyn Lm,
        nodes: &[Node],
    ) -> Result<(Vec<JudgeScore>, Vec<String>, usize), DecodeError> {
        let mut made = Vec::new();
        let result = self.generative_inner(lm, nodes, &mut made);
        for n in made.into_iter().rev() {
            lm.release(n);
        }
        result
    }

    fn generative_inner(
        &self,
        lm: &mut dyn Lm,
        nodes: &[Node],
        made: &mut Vec<Node>,
    ) -> Result<(Vec<JudgeScore>, Vec<String>, usize), DecodeError> {
        let mut decoded = 0;
        let mut asked = Vec::with_capacity(nodes.len());
        for &node in nodes {
            let question = user_turn_tokens(lm, node, &self.config.check_prompt)?;
            decoded += question.len();
            let q = lm.extend_tokens(node, &question)?;
            made.push(q);
            asked.push(q);
        }
        let requests: Vec<GenRequest> = asked
            .iter()
            .map(|&q| GenRequest {
                sampling: crate::lm::SamplingParams::greedy(),
                ..GenRequest::new(q, self.config.check_tokens.max(1))
            })
            .collect();
        let checks = lm.generate(&requests)?;
        made.extend(checks.iter().map(|g| g.node));
        let mut verdicts = Vec::with_capacity(checks.len());
        for g in &checks {
            decoded += g.tokens as usize;
            let question = user_turn_tokens(lm, g.node, &self.config.inline_outcome_prompt)?;
            decoded += question.len();
            let v = lm.extend_tokens(g.node, &question)?;
            made.push(v);
            verdicts.push(v);
        }
        let scores = self.read(lm, &verdicts)?;
        Ok((
            scores,
            checks.into_iter().map(|g| g.text).collect(),
            decoded,
        ))
    }

    /// The verdict after each node (nodes must end where the answer word would come).
    ///
    /// # Errors
    /// As [`Lm::next_token_probs`].
    pub fn read(&self, lm: &mut dyn Lm, nodes: &[Node]) -> Result<Vec<JudgeScore>, DecodeError> {
        self.read_keeping(lm, None, nodes)
    }

    /// As [`Judge::read`]; `keep` (a shared ancestor) is decoded in the same call so that it holds
    /// its cache for the next one.
    fn read_keeping(
        &self,
        lm: &mut dyn Lm,
        keep: Option<Node>,
        nodes: &[Node],
    ) -> Result<Vec<JudgeScore>, DecodeError> {
        let cands: Vec<TokenId> = self.yes.iter().chain(&self.no).copied().collect();
        let queries: Vec<(Node, &[TokenId])> = keep
            .map(|k| (k, &[][..]))
            .into_iter()
            .chain(nodes.iter().map(|&n| (n, &cands[..])))
            .collect();
        let probs = lm.next_token_probs(&queries)?;
        Ok(probs
            .into_iter()
            .skip(usize::from(keep.is_some()))
            .map(|p| {
                let (y, n) = p.split_at(self.yes.len());
                JudgeScore::from_mass(
                    y.iter().map(|&x| f64::from(x)).sum(),
                    n.iter().map(|&x| f64::from(x)).sum(),
                )
            })
            .collect())
    }
}

/// Every single-token form of the words: as given, with a leading space, lower-case and
/// capitalised.
fn word_tokens(
    lm: &dyn Lm,
    words: &[String],
    field: &'static str,
) -> Result<Vec<TokenId>, DecodeError> {
    let mut ids = Vec::new();
    for w in words {
        let w = w.trim();
        if w.is_empty() {
            continue;
        }
        let lower = w.to_lowercase();
        let capital: String = lower
            .chars()
            .take(1)
            .flat_map(char::to_uppercase)
            .chain(lower.chars().skip(1))
            .collect();
        for form in [w.to_string(), lower, capital] {
            for variant in [form.clone(), format!(" {form}")] {
                if let [t] = lm.tokenize(&variant)?[..] {
                    if !ids.contains(&t) {
                        ids.push(t);
                    }
                }
            }
        }
    }
    if ids.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("none of {words:?} is a single token of this model's vocabulary; use common short words"),
        )
        .into());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates() {
        let s = [0.9, 0.5, 0.8];
        assert_eq!(StepAggregate::Min.apply(&s), 0.5);
        assert!((StepAggregate::Mean.apply(&s) - 2.2 / 3.0).abs() < 1e-12);
        assert_eq!(StepAggregate::Last.apply(&s), 0.8);
        assert!((StepAggregate::Product.apply(&s) - 0.36).abs() < 1e-12);
        assert_eq!(StepAggregate::Min.apply(&[]), 0.5);
    }

    #[test]
    fn score_from_mass() {
        assert!((JudgeScore::from_mass(0.3, 0.1).score - 0.75).abs() < 1e-12);
        assert_eq!(JudgeScore::from_mass(0.0, 0.0).score, 0.5);
    }
}
