//! The bench's report: each rung summarised from its records (accuracy, pass@N, tokens and
//! seconds per problem, the AUC of every candidate signal, every reranker's accuracy on the
//! rung's samples), written as JSON, as a Markdown table and as the test-time-scaling plot.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    draw_png, draw_svg, write_atomic, write_json, BenchConfig, PlotPoint, Record, Records, Rung,
    PLOT_PNG, PLOT_SVG, REPORT_JSON, REPORT_MD,
};
use crate::error::Error;
use crate::eval::stats::{self, CandidateSignals, RerankerAccuracy, RerankerTally, SignalAuc};
use crate::strategy::StrategyConfig;

/// The AUCs of a rung's candidate signals against correctness (see [`stats::auc`]): the
/// chance that a right candidate scores above a wrong one. `None` without both kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aucs {
    /// The strategy's own ranking score (the reranker's signal).
    pub score: Option<f64>,
    /// The self-judge's score (only candidates that were judged).
    pub judge: Option<f64>,
    /// Mean token log-probability.
    pub mean_logprob: Option<f64>,
    /// Mean token confidence (sampled candidates).
    #[serde(default)]
    pub mean_confidence: Option<f64>,
    /// Tail confidence.
    #[serde(default)]
    pub tail_confidence: Option<f64>,
    /// Lowest group confidence (DeepConf's signal).
    #[serde(default)]
    pub lowest_group_confidence: Option<f64>,
    /// Self-certainty (mean KL divergence of each token's distribution from uniform).
    #[serde(default)]
    pub self_certainty: Option<f64>,
    /// Minus the tail entropy (lower entropy = surer, so higher is surer as for the others).
    #[serde(default)]
    pub tail_entropy: Option<f64>,
    /// Candidates with a label.
    pub labelled_candidates: usize,
    /// Of those, the judged ones.
    pub judged_candidates: usize,
}

/// A rung's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungReport {
    /// The rung's name.
    pub name: String,
    /// Its strategy.
    pub strategy: StrategyConfig,
    /// Problems it has results for.
    pub problems: usize,
    /// Whether every problem of the dataset has a result.
    pub complete: bool,
    /// Problems whose chosen answer is right.
    pub correct: usize,
    /// `correct` over the problems with a reference answer.
    pub accuracy: f64,
    /// Share of problems where any candidate is right.
    pub pass_at_n: f64,
    /// Problems whose solve failed (run again to retry them).
    pub errors: usize,
    /// Mean generated tokens per problem.
    pub tokens_per_problem: f64,
    /// Mean wall seconds per problem.
    pub seconds_per_problem: f64,
    /// Mean candidates per problem.
    pub candidates_per_problem: f64,
    /// Tokens generated over all its problems.
    pub generated_tokens: u64,
    /// The signals' AUCs.
    pub auc: Aucs,
    /// For best-of-N rungs: the accuracy every reranker would have had on the rung's samples
    /// (see [`stats::RerankerTally`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reranker_accuracy: Vec<RerankerAccuracy>,
}

/// The report: one row per rung, in ladder order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The model's name.
    pub model: String,
    /// The dataset's name.
    pub dataset: String,
    /// Problems in the dataset (after `--limit`).
    pub problems: usize,
    /// The command that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Solves run by this invocation (0 when everything was resumed).
    pub solved_now: usize,
    /// The rungs.
    pub rungs: Vec<RungReport>,
}

pub(super) fn summarise(
    config: &BenchConfig,
    ids: &[String],
    records: &Records,
    solved_now: usize,
) -> BenchReport {
    let rungs = config
        .rungs
        .iter()
        .map(|rung| {
            let rows: Vec<&Record> = ids
                .iter()
                .filter_map(|id| records.get(&(rung.name.clone(), id.clone())))
                .collect();
            summarise_rung(rung, &rows, ids.len())
        })
        .collect();
    BenchReport {
        model: config.model.clone(),
        dataset: config.dataset.clone(),
        problems: ids.len(),
        command: config.command.clone(),
        solved_now,
        rungs,
    }
}

fn summarise_rung(rung: &Rung, rows: &[&Record], total: usize) -> RungReport {
    let n = rows.len();
    let labelled = rows.iter().filter(|r| r.result.correct.is_some()).count();
    let correct = rows
        .iter()
        .filter(|r| r.result.correct == Some(true))
        .count();
    let passed = rows.iter().filter(|r| r.result.pass == Some(true)).count();
    let ratio = |k: usize, of: usize| if of == 0 { 0.0 } else { k as f64 / of as f64 };
    let tokens: u64 = rows.iter().map(|r| r.result.generated_tokens).sum();
    let ms: u64 = rows.iter().map(|r| r.result.wall_ms).sum();
    let candidates: Vec<&CandidateSignals> =
        rows.iter().flat_map(|r| r.candidates.iter()).collect();
    let signals = SignalAuc::of(candidates.iter().copied());
    let mut rerankers = RerankerTally::new(&rung.strategy);
    for r in rows {
        rerankers.add(&r.candidates);
    }
    RungReport {
        name: rung.name.clone(),
        strategy: rung.strategy.clone(),
        problems: n,
        complete: n == total,
        correct,
        accuracy: ratio(correct, labelled),
        pass_at_n: ratio(passed, labelled),
        errors: rows.iter().filter(|r| r.result.error.is_some()).count(),
        tokens_per_problem: ratio(tokens as usize, n),
        seconds_per_problem: ratio(ms as usize, n) / 1000.0,
        candidates_per_problem: ratio(candidates.len(), n),
        generated_tokens: tokens,
        auc: Aucs {
            score: stats::signal_auc(candidates.iter().copied(), |c| Some(c.score)).0,
            judge: signals.judge,
            mean_logprob: signals.mean_logprob,
            mean_confidence: signals.mean_confidence,
            tail_confidence: signals.tail_confidence,
            lowest_group_confidence: signals.lowest_group_confidence,
            self_certainty: signals.self_certainty,
            tail_entropy: signals.tail_entropy,
            labelled_candidates: signals.candidates,
            judged_candidates: signals.judged_candidates,
        },
        reranker_accuracy: rerankers.report(),
    }
}

/// Writes [`REPORT_JSON`], [`REPORT_MD`], [`PLOT_SVG`] and [`PLOT_PNG`] into `dir`.
///
/// # Errors
/// I/O errors, and plotting errors (as I/O errors on the image's path).
pub fn write_report(dir: &Path, report: &BenchReport) -> Result<(), Error> {
    write_json(&dir.join(REPORT_JSON), report)?;
    write_atomic(&dir.join(REPORT_MD), &markdown(report))?;
    let rungs = report.rungs.iter().filter(|r| r.problems > 0);
    let points: Vec<PlotPoint> = rungs
        .clone()
        .map(|r| PlotPoint {
            name: r.name.clone(),
            curve: curve_of(&r.name).to_string(),
            tokens: r.tokens_per_problem,
            accuracy: r.accuracy,
            hollow: false,
        })
        .chain(rungs.flat_map(|r| {
            // Every reranker on the same samples, at the rung's tokens (or a stopping rule's
            // own); one counted on fewer problems (a signal some records lack) is left out.
            r.reranker_accuracy
                .iter()
                .filter(|a| a.problems == r.problems)
                .map(|a| PlotPoint {
                    name: a.rerank.clone(),
                    curve: curve_of(&r.name).to_string(),
                    tokens: a.tokens_per_problem.unwrap_or(r.tokens_per_problem),
                    accuracy: a.accuracy,
                    hollow: true,
                })
        }))
        .collect();
    let title = format!(
        "{} on {} ({} problems)",
        report.model, report.dataset, report.problems
    );
    for (file, draw) in [
        (
            PLOT_SVG,
            draw_svg as fn(&Path, &str, &[PlotPoint]) -> Result<(), String>,
        ),
        (PLOT_PNG, draw_png),
    ] {
        let path = dir.join(file);
        draw(&path, &title, &points)
            .map_err(|e| Error::io("draw", &path, std::io::Error::other(e)))?;
    }
    Ok(())
}

/// The curve a rung belongs to in the plot: its name before `@`.
pub fn curve_of(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn fmt_auc(a: Option<f64>) -> String {
    a.map_or("–".into(), |a| format!("{a:.2}"))
}

/// The report as a Markdown table (what `report.md` holds).
pub fn markdown(report: &BenchReport) -> String {
    let mut s = format!(
        "# ponder bench: {} on {} ({} problems)\n\n",
        report.model, report.dataset, report.problems
    );
    if let Some(c) = &report.command {
        s += &format!("```\n{c}\n```\n\n");
    }
    s += "| rung | strategy | problems | accuracy | pass@N | tokens/problem | s/problem | AUC score | AUC judge | AUC mean logprob | AUC lowest group conf. | AUC self-certainty | AUC tail entropy |\n";
    s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &report.rungs {
        s += &format!(
            "| {} | {} | {}{} | {:.3} ({}/{}) | {:.3} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.strategy.name(),
            r.problems,
            if r.complete { "" } else { " (incomplete)" },
            r.accuracy,
            r.correct,
            r.problems,
            r.pass_at_n,
            r.tokens_per_problem,
            r.seconds_per_problem,
            fmt_auc(r.auc.score),
            fmt_auc(r.auc.judge),
            fmt_auc(r.auc.mean_logprob),
            fmt_auc(r.auc.lowest_group_confidence),
            fmt_auc(r.auc.self_certainty),
            fmt_auc(r.auc.tail_entropy),
        );
    }
    let reranked: Vec<&RungReport> = report
        .rungs
        .iter()
        .filter(|r| !r.reranker_accuracy.is_empty())
        .collect();
    if !reranked.is_empty() {
        s += "\nEvery reranker on each best-of-N rung's own samples (right answers chosen), and \
              adaptive consistency replayed on them (the majority of the samples it would have \
              drawn, and their tokens):\n\n";
        s += "| rung | reranker | right | accuracy | tokens/problem |\n|---|---|---:|---:|---:|\n";
        for r in reranked {
            for a in &r.reranker_accuracy {
                s += &format!(
                    "| {} | {} | {}/{} | {:.3} | {:.0} |\n",
                    r.name,
                    a.rerank,
                    a.correct,
                    a.problems,
                    a.accuracy,
                    a.tokens_per_problem.unwrap_or(r.tokens_per_problem)
                );
            }
        }
    }
    s += "\nAUC: the chance that a right candidate scores above a wrong one, over the rung's \
          candidates (– without both kinds). `score` is what the strategy ranked by; tail entropy \
          is counted as minus the entropy, so above 0.5 means the surer trace is right more \
          often for every column.\n\n";
    s += &format!("![accuracy against generated tokens per problem]({PLOT_SVG})\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::ProblemResult;

    #[test]
    fn rung_summary_counts_and_aucs() {
        let rung = Rung::parse("vote@2", None).unwrap();
        let row = |id: &str, correct: bool, scores: [(f64, bool); 2]| Record {
            rung: "vote@2".into(),
            index: 0,
            result: ProblemResult {
                id: id.into(),
                answer: None,
                expected: Some("1".into()),
                correct: Some(correct),
                pass: Some(scores.iter().any(|s| s.1)),
                generated_tokens: 100,
                wall_ms: 2000,
                error: None,
            },
            candidates: scores
                .iter()
                .map(|&(score, ok)| CandidateSignals {
                    answer: None,
                    correct: Some(ok),
                    tokens: 50,
                    score,
                    judge: None,
                    mean_logprob: -score,
                    confidence: None,
                })
                .collect(),
        };
        let a = row("a", true, [(0.9, true), (0.1, false)]);
        let b = row("b", false, [(0.7, false), (0.2, false)]);
        let r = summarise_rung(&rung, &[&a, &b], 3);
        assert_eq!((r.problems, r.correct, r.complete), (2, 1, false));
        assert_eq!(r.accuracy, 0.5);
        assert_eq!(r.pass_at_n, 0.5);
        assert_eq!(r.tokens_per_problem, 100.0);
        assert_eq!(r.seconds_per_problem, 2.0);
        assert_eq!(r.auc.score, Some(1.0));
        assert_eq!(r.auc.mean_logprob, Some(0.0));
        assert_eq!(r.auc.judge, None);
        assert_eq!(r.auc.labelled_candidates, 4);
    }
}
