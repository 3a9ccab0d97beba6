//! `/metrics`: the server's counters in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

use crate::lm::Usage;

/// Upper bounds (seconds) of the solve latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Counters of a running server. The engine's work is summed from every finished solve's own
/// [`Usage`], so it reads the same on every backend (on a serialised engine, `Engine::usage`
/// would wait for the running solve).
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (strategy, status) → requests answered.
    requests: BTreeMap<(String, u16), u64>,
    /// Solves cancelled (client gone, shutdown, deadline).
    cancelled: u64,
    usage: Usage,
    latency_counts: [u64; LATENCY_BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
}

/// Gauges read when rendering.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Requests admitted and not yet answered (running or waiting for the engine).
    pub queue_depth: usize,
    /// The most that may be admitted.
    pub queue_capacity: usize,
    /// Solves running on blocking threads.
    pub solves_running: usize,
    /// Whether the server is shutting down.
    pub shutting_down: bool,
    /// What the shared llama.cpp context holds (`None` on other backends).
    pub context: Option<crate::lm::ContextLoad>,
}

impl Metrics {
    /// Counts a request answered with `status` (strategy `plain` for plain generation, `-` when
    /// the request was refused before one was chosen).
    pub fn request(&self, strategy: &str, status: u16) {
        *self
            .inner
            .lock()
            .requests
            .entry((strategy.to_string(), status))
            .or_default() += 1;
    }

    /// Counts a cancelled solve.
    pub fn cancelled(&self) {
        self.inner.lock().cancelled += 1;
    }

    /// Adds a finished solve's work and wall time.
    pub fn solved(&self, usage: &Usage, seconds: f64) {
        let mut m = self.inner.lock();
        m.usage.add(usage);
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                m.latency_counts[i] += 1;
            }
        }
        m.latency_count += 1;
        m.latency_sum += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: Gauges) -> String {
        let m = self.inner.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ponder_requests_total Chat-completion requests answered, by strategy and HTTP status (499: the client went away).\n# TYPE ponder_requests_total counter"
        );
        for ((strategy, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "ponder_requests_total{{strategy=\"{strategy}\",status=\"{status}\"}} {n}"
            );
        }
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "ponder_requests_cancelled_total",
            "counter",
            "Solves cancelled because the client disconnected, the server shut down or the deadline passed.",
            m.cancelled.to_string(),
        );
        line(
            "ponder_queue_depth",
            "gauge",
            "Requests admitted and not yet answered (running or waiting for the engine).",
            g.queue_depth.to_string(),
        );
        line(
            "ponder_queue_capacity",
            "gauge",
            "Most requests admitted at once (--max-queue); more are answered 429.",
            g.queue_capacity.to_string(),
        );
        line(
            "ponder_solves_running",
            "gauge",
            "Solves on blocking threads (running, or waiting for the engine).",
            g.solves_running.to_string(),
        );
        line(
            "ponder_shutting_down",
            "gauge",
            "1 after SIGTERM/SIGINT: new requests are answered 503.",
            u8::from(g.shutting_down).to_string(),
        );
        if let Some(c) = g.context {
            for (name, help, v) in [
                (
                    "ponder_sequences_live",
                    "Sequences of the shared llama.cpp context holding cache.",
                    c.live_sequences,
                ),
                (
                    "ponder_sequences_max",
                    "The most sequences at once (--n-seq-max).",
                    c.n_seq_max as usize,
                ),
                (
                    "ponder_kv_cells_used",
                    "KV cells the live sequences hold, a prefix shared by many counted once (counted by ponder: llama.cpp has no call for it).",
                    c.kv_cells_used,
                ),
                (
                    "ponder_kv_cells_capacity",
                    "KV cells of the shared context (--ctx).",
                    c.kv_cells_capacity as usize,
                ),
                (
                    "ponder_nodes_live",
                    "Prefix-tree nodes of all running solves not yet released.",
                    c.nodes,
                ),
                (
                    "ponder_decode_jobs",
                    "Decoding calls in progress in the shared context.",
                    c.jobs,
                ),
            ] {
                line(name, "gauge", help, v.to_string());
            }
        }
        let u = &m.usage;
        for (name, help, v) in [
            (
                "ponder_prompt_tokens_total",
                "Tokens of the root prompts of finished solves.",
                u.prompt_tokens,
            ),
            (
                "ponder_prefill_tokens_total",
                "Forced tokens run through the model for the first time.",
                u.prefill_tokens,
            ),
            (
                "ponder_generated_tokens_total",
                "Tokens sampled.",
                u.generated_tokens,
            ),
            (
                "ponder_decoded_tokens_total",
                "Sampled tokens run through the model.",
                u.decoded_tokens,
            ),
            (
                "ponder_reused_tokens_total",
                "Tokens a sequence got from another's KV cache instead of decoding them.",
                u.reused_tokens,
            ),
            (
                "ponder_recomputed_tokens_total",
                "Tokens decoded again after parking.",
                u.recomputed_tokens,
            ),
            (
                "ponder_forward_passes_total",
                "Forward passes (llama_decode calls).",
                u.forward_passes,
            ),
            (
                "ponder_kv_copies_total",
                "Whole KV streams copied (layout streams).",
                u.kv_copies,
            ),
            (
                "ponder_kv_copy_bytes_total",
                "Bytes moved by KV stream copies (estimated from the model's shape).",
                u.kv_copy_bytes,
            ),
        ] {
            line(name, "counter", help, v.to_string());
        }
        let name = "ponder_solve_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Wall time of finished solves.\n# TYPE {name} histogram"
        );
        for (bound, count) in LATENCY_BUCKETS.iter().zip(m.latency_counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", m.latency_count);
        let _ = writeln!(out, "{name}_sum {}", m.latency_sum);
        let _ = writeln!(out, "{name}_count {}", m.latency_count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_family_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("best_of_n", 200);
        m.request("best_of_n", 200);
        m.request("-", 401);
        m.cancelled();
        let usage = Usage {
            generated_tokens: 10,
            ..Usage::default()
        };
        m.solved(&usage, 0.3);
        m.solved(&usage, 3.0);
        let text = m.render(Gauges {
            queue_depth: 2,
            queue_capacity: 8,
            solves_running: 1,
            shutting_down: false,
            context: Some(crate::lm::ContextLoad {
                live_sequences: 3,
                n_seq_max: 64,
                nodes: 5,
                jobs: 1,
                kv_cells_used: 120,
                kv_cells_capacity: 4096,
            }),
        });
        assert!(text.contains("ponder_requests_total{strategy=\"best_of_n\",status=\"200\"} 2"));
        assert!(text.contains("ponder_requests_total{strategy=\"-\",status=\"401\"} 1"));
        assert!(text.contains("ponder_requests_cancelled_total 1"));
        assert!(text.contains("ponder_queue_depth 2"));
        assert!(text.contains("ponder_sequences_live 3"));
        assert!(text.contains("ponder_sequences_max 64"));
        assert!(text.contains("ponder_kv_cells_used 120"));
        assert!(text.contains("ponder_kv_cells_capacity 4096"));
        assert!(text.contains("ponder_generated_tokens_total 20"));
        assert!(text.contains("ponder_solve_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("ponder_solve_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("ponder_solve_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("ponder_solve_seconds_count 2"));
        // Every sample line belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{name} has no TYPE line"
            );
        }
    }
}
