//! What the commands print: text for a person, JSON for a program (`--json`). Progress and
//! warnings go to stderr from the commands themselves; everything here goes to stdout.

use serde::Serialize;

use ponder::lm::{FinishReason, Generation, Usage};
use ponder::strategy::{EntryKind, Outcome, SearchTree, StopReason};
use ponder::synth::SynthSummary;
use ponder::{bench, eval};

/// `value` as pretty JSON on one stdout write.
pub fn json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("plain data serialises")
    );
}

#[derive(Serialize)]
struct SampleOut<'a> {
    text: &'a str,
    tokens: u32,
    logprob: f64,
    finish: &'a FinishReason,
}

#[derive(Serialize)]
struct GenerateOut<'a> {
    samples: Vec<SampleOut<'a>>,
    usage: &'a Usage,
}

/// `generate`'s samples and usage.
pub fn generations(generations: &[Generation], usage: &Usage, as_json: bool) {
    if as_json {
        json(&GenerateOut {
            samples: generations
                .iter()
                .map(|g| SampleOut {
                    text: &g.text,
                    tokens: g.tokens,
                    logprob: g.logprob,
                    finish: &g.finish,
                })
                .collect(),
            usage,
        });
        return;
    }
    for (i, g) in generations.iter().enumerate() {
        println!(
            "--- sample {} · {} tokens · mean logprob {:.3} · {}",
            i + 1,
            g.tokens,
            g.mean_logprob(),
            g.finish
        );
        println!("{}", g.text.trim_end());
    }
    let secs = usage.wall_ms as f64 / 1000.0;
    println!(
        "--- prompt {} tokens (prefilled {}), {} tokens generated in {} forward passes, {:.2} s ({:.1} tokens/s)",
        usage.prompt_tokens,
        usage.prefill_tokens,
        usage.generated_tokens,
        usage.forward_passes,
        secs,
        usage.generated_tokens as f64 / secs.max(1e-9)
    );
}

/// A tree search's tree, depth-first, the chosen path marked.
fn tree(tree: &SearchTree) {
    println!(
        "search tree: {} steps · {} iterations · stopped: {} · {} steps rejected",
        tree.nodes.len() - 1,
        tree.iterations,
        match tree.stop {
            StopReason::EndGate { node } => format!("end gate passed by node {node}"),
            StopReason::Budget { limit } => format!("budget.{limit} used up"),
            StopReason::Cancelled => "cancelled".to_string(),
            StopReason::Exhausted => "nothing left to expand".into(),
            StopReason::Complete => "beams complete".into(),
        },
        tree.rejected_steps
    );
    // Depth-first, children in sampling order.
    let mut stack = vec![0usize];
    while let Some(id) = stack.pop() {
        let n = &tree.nodes[id];
        stack.extend(n.children.iter().rev());
        if id == 0 {
            continue;
        }
        let short = one_line(&n.text, 60);
        let end = match (&n.answer, n.terminal, n.dead_end) {
            (Some(a), _, _) => format!(" ⇒ {a}{}", mark(n.correct)),
            (None, true, _) => " ⇒ (no answer)".into(),
            (None, false, true) => " (dead end)".into(),
            _ => String::new(),
        };
        println!(
            "{} {}#{id:<3} V {:.2} · n {:<2} · judge {} · {short}{end}",
            if tree.chosen.contains(&id) {
                "→"
            } else {
                " "
            },
            "  ".repeat(n.depth as usize - 1),
            n.value,
            n.visits,
            n.judge.map_or("-".into(), |j| format!("{j:.2}")),
        );
    }
    println!();
}

/// ✓ or ✗ where a reference answer labelled the answer.
pub fn mark(correct: Option<bool>) -> &'static str {
    match correct {
        Some(true) => " ✓",
        Some(false) => " ✗",
        None => "",
    }
}

/// A solve's outcome: the tree (tree searches), the candidates, the timeline (self-correction,
/// deepening), the chosen text and answer, the usage.
pub fn outcome(o: &Outcome) {
    if let Some(t) = &o.tree {
        tree(t);
    }
    println!("candidates ({}):", o.candidates.len());
    for (i, c) in o.candidates.iter().enumerate() {
        let judge = c.judge.map_or(String::new(), |j| format!(" judge {j:.3}"));
        println!(
            "{} #{i:<2} score {:.3}{judge} · mean logprob {:.3} · {} tokens{} · answer {}{}",
            if i == o.chosen { "→" } else { " " },
            c.score,
            c.mean_logprob,
            c.tokens,
            if c.finish.is_cut_off() {
                " (cut off)"
            } else {
                ""
            },
            c.answer.as_deref().unwrap_or("(none)"),
            mark(c.correct),
        );
    }
    if !o.timeline.is_empty() {
        println!("\ntimeline:");
        for e in &o.timeline {
            let what = match e.kind {
                EntryKind::Generated => format!(
                    "generated {} tokens · answer so far {}{}",
                    e.tokens,
                    e.answer.as_deref().unwrap_or("(none)"),
                    mark(e.correct)
                ),
                EntryKind::Revision => format!("revision request ({} tokens)", e.tokens),
                EntryKind::Trigger => {
                    format!("trigger ({} tokens): {:?}", e.tokens, e.text.trim())
                }
            };
            println!("  branch {} @ token {:>4}: {what}", e.branch, e.offset);
        }
    }
    println!(
        "\n--- chosen #{} (score {:.3}):\n{}",
        o.chosen,
        o.score,
        o.text.trim()
    );
    println!(
        "\nanswer: {}{}",
        o.answer.as_deref().unwrap_or("(none)"),
        mark(o.correct)
    );
    let u = &o.usage;
    let copies = if u.kv_copies > 0 {
        format!(
            " · {} KV stream copies ({:.1} MB)",
            u.kv_copies,
            u.kv_copy_bytes as f64 / 1e6
        )
    } else {
        String::new()
    };
    let parked = if u.parked > 0 {
        format!(" · {} parked ({} brought back)", u.parked, u.reactivated)
    } else {
        String::new()
    };
    println!(
        "usage: prompt {} · prefill {} · generated {} · decoded {} · reused {} · recomputed {} · {} forward passes{copies}{parked} · {:.2} s",
        u.prompt_tokens,
        u.prefill_tokens,
        u.generated_tokens,
        u.decoded_tokens,
        u.reused_tokens,
        u.recomputed_tokens,
        u.forward_passes,
        u.wall_ms as f64 / 1000.0
    );
}

/// `n/a` or the figure with three decimals.
fn figure(x: Option<f64>) -> String {
    x.map_or("n/a".to_string(), |a| format!("{a:.3}"))
}

/// One finished problem of `eval` (a progress line, for stderr).
pub fn eval_line(i: usize, n: usize, r: &eval::ProblemResult) -> String {
    let status = match (&r.error, r.correct) {
        (Some(e), _) => format!("error: {e}"),
        (None, c) => format!(
            "answer {} expected {}{}",
            r.answer.as_deref().unwrap_or("(none)"),
            r.expected.as_deref().unwrap_or("?"),
            mark(c)
        ),
    };
    format!(
        "[{}/{n}] {} {status} · {} tokens · {:.1} s",
        i + 1,
        r.id,
        r.generated_tokens,
        r.wall_ms as f64 / 1000.0
    )
}

/// `eval`'s report.
pub fn eval_report(report: &eval::EvalReport, as_json: bool) {
    if as_json {
        json(report);
        return;
    }
    println!(
        "problems {} · accuracy {:.3} ({}/{}) · pass@N {:.3} · judge AUC {} over {} candidates",
        report.problems,
        report.accuracy,
        report.correct,
        report.problems,
        report.pass_at_n,
        figure(report.judge_auc),
        report.judged_candidates
    );
    if let Some(a) = &report.signal_auc {
        println!(
            "signal AUC over {} candidates: mean confidence {} · tail confidence {} · lowest group confidence {} · mean logprob {} · self-certainty {} · tail entropy {}",
            a.candidates,
            figure(a.mean_confidence),
            figure(a.tail_confidence),
            figure(a.lowest_group_confidence),
            figure(a.mean_logprob),
            figure(a.self_certainty),
            figure(a.tail_entropy)
        );
    }
    if !report.reranker_accuracy.is_empty() {
        let list: Vec<String> = report
            .reranker_accuracy
            .iter()
            .map(|r| format!("{} {:.3}", r.rerank, r.accuracy))
            .collect();
        println!("rerankers on the same samples: {}", list.join(" · "));
    }
    println!(
        "tokens: generated {} · prefill {} · decoded {} · {} forward passes · {:.1} s",
        report.usage.generated_tokens,
        report.usage.prefill_tokens,
        report.usage.decoded_tokens,
        report.usage.forward_passes,
        report.wall_ms as f64 / 1000.0
    );
    if let Some(m) = &report.self_correct {
        println!(
            "self-correct: Acc@t1 {:.3} · Acc@t2 {:.3} · Δ {:+.3} · Δ(i→c) {:.3} · Δ(c→i) {:.3}",
            m.acc_t1, m.acc_t2, m.delta, m.delta_i_to_c, m.delta_c_to_i
        );
    }
    if let Some(m) = &report.deepening {
        let accs: Vec<String> = m
            .accuracy_after_trigger
            .iter()
            .map(|a| format!("{a:.3}"))
            .collect();
        println!(
            "deepening: accuracy after 0, 1, 2, … triggers: {} · {:.0} tokens per problem",
            accs.join(" → "),
            m.mean_tokens
        );
    }
    if !report.line_errors.is_empty() {
        println!(
            "skipped {} dataset lines (see above)",
            report.line_errors.len()
        );
    }
}

/// `synth`'s summary of a run into `output`.
pub fn synth_summary(summary: &SynthSummary, output: &std::path::Path, as_json: bool) {
    if as_json {
        json(summary);
        return;
    }
    let records: Vec<String> = summary
        .records
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "problems {}/{} · accuracy {:.3} · pass@N {:.3} · distinct answers {:.2} · judge AUC {} · balance {}",
        summary.problems,
        summary.total,
        summary.accuracy,
        summary.pass_at_n,
        summary.distinct_answers,
        figure(summary.judge_auc),
        figure(summary.balance_score),
    );
    println!("records: {}", records.join(" · "));
    if let Some(f) = &summary.r3 {
        let dropped: Vec<String> = f.dropped.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!(
            "R3 filter (min spread {}): kept {} · dropped {} · mean spread {}",
            f.min_spread,
            f.kept,
            if dropped.is_empty() {
                "0".into()
            } else {
                dropped.join(", ")
            },
            figure(f.mean_spread),
        );
    }
    println!(
        "tokens: generated {} · processed {} · {:.1} s · written to {}",
        summary.generated_tokens,
        summary.processed_tokens,
        summary.wall_ms as f64 / 1000.0,
        output.display()
    );
    if !summary.failures.is_empty() {
        println!(
            "{} problems failed (see above); run again to retry them",
            summary.failures.len()
        );
    }
}

/// `bench`'s report of a run into `output`.
pub fn bench_report(report: &bench::BenchReport, output: &std::path::Path, as_json: bool) {
    if as_json {
        json(report);
    } else {
        print!("{}", bench::markdown(report));
        println!(
            "{} solves run now · written to {}",
            report.solved_now,
            output.display()
        );
    }
}

/// `devices`' list; `no_gpu` says why there is no GPU when none is listed.
pub fn devices(devices: &[ponder::lm::Device], no_gpu: &str, as_json: bool) {
    if as_json {
        json(&devices);
        return;
    }
    for d in devices {
        println!(
            "{:<8} {:<5} {:<8} {:>9} MiB free of {:>9} MiB  {}",
            d.name,
            d.kind,
            d.backend,
            d.memory_free >> 20,
            d.memory_total >> 20,
            d.description
        );
    }
    if !devices.iter().any(|d| d.is_gpu()) {
        println!("no GPU: {no_gpu}");
    }
}

/// `text` on one line, cut to `chars` characters (an ellipsis says where).
pub fn one_line(text: &str, chars: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > chars {
        format!("{}…", text.chars().take(chars).collect::<String>())
    } else {
        text
    }
}
