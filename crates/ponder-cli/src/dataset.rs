//! The datasets of `eval` and `synth`: JSONL problems, read before any model is loaded.

use ponder::eval;
use ponder::strategy::{AnswerKind, Problem, StrategyConfig};
use ponder::ConfigError;

use crate::flags::choice::AnswerKindName;

/// Sets every problem's answer kind from `--answer-kind` (which overrides the dataset's lines).
/// Refuses, before any model is loaded, a strategy that cannot answer some problem's kind.
pub fn apply_answer_kind(
    problems: &mut [Problem],
    kind: Option<AnswerKindName>,
    strategy: &StrategyConfig,
) -> ponder::Result<()> {
    if let Some(kind) = kind {
        let kind = AnswerKind::from(kind);
        for p in problems.iter_mut() {
            p.answer_kind = kind;
        }
    }
    for p in problems.iter() {
        strategy.check_answer_kind(p.answer_kind)?;
    }
    Ok(())
}

/// The problems of a JSONL dataset (the first `limit`), each bad line reported on stderr; a file
/// with no valid line at all is an error, before any model is loaded or output written.
pub fn read_problems(
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
