//! Evaluation over a JSONL dataset: accuracy, pass@N, judge discrimination, tokens and time.
//!
//! Each line is `{"id": …, "question": "…", "answer": …}` (`id` optional; `answer` a string or a
//! number). A line that is not JSON, or lacks `question`, is reported with its line number and
//! skipped; the rest of the dataset still runs.
//!
//! What the reports count (AUCs, every reranker's accuracy on the same samples, …) is in
//! [`stats`], shared with `synth` and `bench`; the worker pool is the [`runner`]'s.

pub mod stats;

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::lm::Usage;
use crate::reward::{answer, vote};
use crate::runner;
use crate::strategy::{AnswerKind, Outcome, Problem, StrategyConfig};

use stats::RerankerTally;
pub use stats::{auc, CandidateSignals, RerankerAccuracy, SignalAuc};

/// A dataset line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Reads a JSONL dataset: the problems, and an error for each unusable line. Blank lines are
/// skipped silently.
///
/// # Errors
/// Only when the file cannot be read at all.
pub fn read_dataset(path: &Path) -> std::io::Result<(Vec<Problem>, Vec<LineError>)> {
    let file = std::fs::File::open(path)?;
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                errors.push(LineError {
                    line: line_no,
                    message: format!("unreadable: {e}"),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_problem(&line) {
            Ok(p) => problems.push(p),
            Err(message) => errors.push(LineError {
                line: line_no,
                message,
            }),
        }
    }
    Ok((problems, errors))
}

/// One dataset line, `{"id", "question", "answer"}` (`id` and `answer` optional, strings or
/// numbers), as [`read_dataset`] reads it.
///
/// # Errors
/// What is wrong with the line, in words.
pub fn parse_problem(line: &str) -> Result<Problem, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("not a JSON object; expected {\"id\", \"question\", \"answer\"}")?;
    let question = match obj.get("question") {
        Some(serde_json::Value::String(q)) if !q.trim().is_empty() => q.clone(),
        Some(serde_json::Value::String(_)) => return Err("\"question\" is empty".into()),
        Some(_) => return Err("\"question\" is not a string".into()),
        None => return Err("missing \"question\"".into()),
    };
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Ok(Problem {
        id: obj.get("id").and_then(scalar),
        question,
        answer: obj.get("answer").and_then(scalar),
        oracle_guided: false,
        answer_kind: match obj.get("answer_kind") {
            None => AnswerKind::Numeric,
            Some(serde_json::Value::String(k)) => {
                AnswerKind::parse(k).map_err(|e| format!("\"answer_kind\": {}", e.reason))?
            }
            Some(_) => {
                return Err("\"answer_kind\" is not a string; use \"numeric\" or \"text\"".into())
            }
        },
    })
}

/// One problem's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemResult {
    /// The problem's id (or its index).
    pub id: String,
    /// The chosen answer.
    pub answer: Option<String>,
    /// The reference answer.
    pub expected: Option<String>,
    /// Whether the chosen answer is right.
    pub correct: Option<bool>,
    /// Whether any candidate is right.
    pub pass: Option<bool>,
    /// Tokens generated for this problem.
    pub generated_tokens: u64,
    /// Wall time for this problem, in milliseconds.
    pub wall_ms: u64,
    /// The error, if solving failed.
    pub error: Option<String>,
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The strategy's configuration.
    pub strategy: StrategyConfig,
    /// Problems attempted.
    pub problems: usize,
    /// Problems whose chosen answer is right.
    pub correct: usize,
    /// `correct / problems with a reference`.
    pub accuracy: f64,
    /// Share of problems where any candidate is right (pass@N).
    pub pass_at_n: f64,
    /// AUC of the judge's score against correctness over all judged candidates: the chance that
    /// a right candidate outscores a wrong one. `None` without judge scores or without both kinds.
    pub judge_auc: Option<f64>,
    /// Candidates judged for the AUC.
    pub judged_candidates: usize,
    /// AUCs of the other self-reward signals over the candidates that carry them (best-of-N,
    /// DeepConf); `None` when no candidate does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_auc: Option<SignalAuc>,
    /// For best-of-N: the accuracy every reranker would have had on the same samples (judge
    /// rerankers only when the run judged its candidates; confidence rerankers with each signal,
    /// as `confidence_vote:tail`), over the problems with a reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reranker_accuracy: Vec<RerankerAccuracy>,
    /// Work over the whole run.
    pub usage: Usage,
    /// Wall time of the whole run, in milliseconds.
    pub wall_ms: u64,
    /// Dataset lines that could not be used.
    pub line_errors: Vec<LineError>,
    /// For `self_correct`: accuracy of the first and the final attempt and how it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_correct: Option<SelfCorrectMetrics>,
    /// For `deepening`: accuracy after each trigger and tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deepening: Option<DeepeningMetrics>,
    /// Per-problem results.
    pub results: Vec<ProblemResult>,
}

/// SCoRe's self-correction metrics over the problems with a reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCorrectMetrics {
    /// Problems counted.
    pub problems: usize,
    /// Accuracy of the first attempt.
    pub acc_t1: f64,
    /// Accuracy of the final answer.
    pub acc_t2: f64,
    /// `acc_t2 - acc_t1`, which equals `delta_i_to_c - delta_c_to_i`.
    pub delta: f64,
    /// Share of problems wrong at the first attempt and right at the end.
    pub delta_i_to_c: f64,
    /// Share of problems right at the first attempt and wrong at the end.
    pub delta_c_to_i: f64,
}

/// Iterative-deepening metrics over the problems with a reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepeningMetrics {
    /// Problems counted.
    pub problems: usize,
    /// Element i: accuracy of the branches' majority answer had they stopped after i triggers
    /// (element 0: before any trigger). A branch that stopped earlier keeps its last answer.
    pub accuracy_after_trigger: Vec<f64>,
    /// Mean tokens generated per problem (all branches).
    pub mean_tokens: f64,
}

#[derive(Default)]
struct Tally {
    /// (first attempt right, final right) per self-correct problem.
    attempts: Vec<(bool, bool)>,
    /// Per deepening problem: per branch, the answer after each segment; and the reference.
    segments: Vec<(Vec<Vec<Option<String>>>, String)>,
    /// Tokens per deepening problem.
    deepening_tokens: Vec<u64>,
}

impl Tally {
    fn add(&mut self, problem: &Problem, outcome: &Outcome) {
        let Some(reference) = &problem.answer else {
            return;
        };
        match outcome.strategy.as_str() {
            "self_correct" => {
                if let (Some(first), Some(last)) = (
                    outcome.candidates.first().and_then(|c| c.correct),
                    outcome.correct,
                ) {
                    self.attempts.push((first, last));
                }
            }
            "deepening" => {
                let mut per_branch: Vec<Vec<Option<String>>> =
                    vec![Vec::new(); outcome.candidates.len()];
                for e in &outcome.timeline {
                    if e.kind == crate::strategy::EntryKind::Generated {
                        if let Some(b) = per_branch.get_mut(e.branch) {
                            b.push(e.answer.clone());
                        }
                    }
                }
                self.segments.push((per_branch, reference.clone()));
                self.deepening_tokens.push(outcome.usage.generated_tokens);
            }
            _ => {}
        }
    }

    fn self_correct(&self) -> Option<SelfCorrectMetrics> {
        let n = self.attempts.len();
        if n == 0 {
            return None;
        }
        let count =
            |f: &dyn Fn(&(bool, bool)) -> bool| self.attempts.iter().filter(|a| f(a)).count();
        let t1 = count(&|a| a.0);
        let t2 = count(&|a| a.1);
        let i_to_c = count(&|a| !a.0 && a.1);
        let c_to_i = count(&|a| a.0 && !a.1);
        let share = |k: usize| k as f64 / n as f64;
        Some(SelfCorrectMetrics {
            problems: n,
            acc_t1: share(t1),
            acc_t2: share(t2),
            delta: (t2 as f64 - t1 as f64) / n as f64,
            delta_i_to_c: share(i_to_c),
            delta_c_to_i: share(c_to_i),
        })
    }

    fn deepening(&self) -> Option<DeepeningMetrics> {
        let n = self.segments.len();
        if n == 0 {
            return None;
        }
        let depth = self
            .segments
            .iter()
            .flat_map(|(branches, _)| branches.iter().map(Vec::len))
            .max()
            .unwrap_or(0);
        let accuracy_after_trigger = (0..depth)
            .map(|i| {
                let right = self
                    .segments
                    .iter()
                    .filter(|(branches, reference)| {
                        let answers: Vec<Option<String>> = branches
                            .iter()
                            .map(|b| b.get(i.min(b.len().saturating_sub(1))).cloned().flatten())
                            .collect();
                        vote::majority(&answers)
                            .is_some_and(|w| answer::equivalent(&w.answer, reference))
                    })
                    .count();
                right as f64 / n as f64
            })
            .collect();
        Some(DeepeningMetrics {
            problems: n,
            accuracy_after_trigger,
            mean_tokens: self.deepening_tokens.iter().sum::<u64>() as f64 / n as f64,
        })
    }
}

/// Solves every problem with `workers` problems in flight at once on `engine` (its decode loop
/// shares forward passes between them) and calls `each` with every problem's index and result
/// in input order, as soon as it and all before it are done.
pub fn solve_all(
    engine: &Engine,
    problems: &[Problem],
    strategy: &StrategyConfig,
    workers: usize,
    mut each: impl FnMut(usize, Solved),
) {
    let never = std::sync::atomic::AtomicBool::new(false);
    runner::in_order(
        problems.len(),
        workers,
        &never,
        |_, i| solve_one(engine, i, &problems[i], strategy),
        &mut each,
    );
}

/// Solves every problem and summarises, `workers` problems in flight at once. `progress` is
/// called after each problem, in input order, with its index, the total, and its result.
pub fn run(
    engine: &Engine,
    problems: &[Problem],
    line_errors: Vec<LineError>,
    strategy: &StrategyConfig,
    workers: usize,
    mut progress: impl FnMut(usize, usize, &ProblemResult),
) -> EvalReport {
    let start = Instant::now();
    let before = engine.usage();
    let mut results = Vec::with_capacity(problems.len());
    let mut signals: Vec<CandidateSignals> = Vec::new();
    let mut rerankers = RerankerTally::new(strategy);
    let mut tally = Tally::default();
    solve_all(engine, problems, strategy, workers, |i, solved| {
        let problem = &problems[i];
        if let Some(outcome) = &solved.outcome {
            let candidates = CandidateSignals::of(outcome);
            rerankers.add(&candidates);
            signals.extend(candidates);
            tally.add(problem, outcome);
        }
        let result = solved.result;
        progress(i, problems.len(), &result);
        results.push(result);
    });
    let labelled = results.iter().filter(|r| r.correct.is_some()).count();
    let correct = results.iter().filter(|r| r.correct == Some(true)).count();
    let passed = results.iter().filter(|r| r.pass == Some(true)).count();
    let ratio = |k: usize| {
        if labelled == 0 {
            0.0
        } else {
            k as f64 / labelled as f64
        }
    };
    let aucs = SignalAuc::of(&signals);
    EvalReport {
        strategy: strategy.clone(),
        problems: problems.len(),
        correct,
        accuracy: ratio(correct),
        pass_at_n: ratio(passed),
        judge_auc: aucs.judge,
        judged_candidates: aucs.judged_candidates,
        signal_auc: signals
            .iter()
            .any(|c| c.confidence.is_some())
            .then_some(aucs),
        reranker_accuracy: rerankers.report(),
        usage: engine.usage().since(&before),
        wall_ms: start.elapsed().as_millis() as u64,
        line_errors,
        self_correct: tally.self_correct(),
        deepening: tally.deepening(),
        results,
    }
}

/// One problem solved by [`solve_one`]: its result row, and the outcome unless solving failed.
#[derive(Debug, Clone)]
pub struct Solved {
    /// The result row, as in [`EvalReport::results`].
    pub result: ProblemResult,
    /// The strategy's outcome (`None` when solving failed; the error is in `result`).
    pub outcome: Option<Outcome>,
}

/// Solves the `index`-th problem with `strategy` and labels the result (its id is the
/// problem's, else `index`). A failed solve is a result with its error, not an `Err`.
pub fn solve_one(
    engine: &Engine,
    index: usize,
    problem: &Problem,
    strategy: &StrategyConfig,
) -> Solved {
    let t = Instant::now();
    let id = runner::problem_id(problem, index);
    match engine.solve(problem, strategy) {
        Ok(outcome) => Solved {
            result: ProblemResult {
                id,
                answer: outcome.answer.clone(),
                expected: problem.answer.clone(),
                correct: outcome.correct,
                pass: pass(&outcome),
                generated_tokens: outcome.usage.generated_tokens,
                wall_ms: t.elapsed().as_millis() as u64,
                error: None,
            },
            outcome: Some(outcome),
        },
        Err(e) => Solved {
            result: ProblemResult {
                id,
                answer: None,
                expected: problem.answer.clone(),
                correct: problem.answer.as_ref().map(|_| false),
                pass: problem.answer.as_ref().map(|_| false),
                generated_tokens: 0,
                wall_ms: t.elapsed().as_millis() as u64,
                error: Some(e.to_string()),
            },
            outcome: None,
        },
    }
}

fn pass(outcome: &Outcome) -> Option<bool> {
    let labels: Vec<bool> = outcome
        .candidates
        .iter()
        .filter_map(|c| c.correct)
        .collect();
    if labels.is_empty() {
        outcome.correct
    } else {
        Some(labels.into_iter().any(|c| c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_lines_are_checked_one_by_one() {
        let dir = runner::scratch_dir("eval");
        let path = dir.join("d.jsonl");
        std::fs::write(
            &path,
            [
                r#"{"id": "a", "question": "1+1?", "answer": 2}"#,
                "not json",
                r#"{"id": "b", "answer": "3"}"#,
                "",
                r#"{"question": "2+2?", "answer": "4"}"#,
                r#"{"question": ""}"#,
                r#"[1, 2]"#,
                r#"{"question": 5}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let (problems, errors) = read_dataset(&path).unwrap();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].id.as_deref(), Some("a"));
        assert_eq!(problems[0].answer.as_deref(), Some("2"));
        assert_eq!(problems[1].id, None);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 6, 7, 8]);
        assert!(errors[0].message.contains("not valid JSON"));
        assert!(errors[1].message.contains("missing \"question\""));
        std::fs::remove_dir_all(&dir).ok();
    }
}
