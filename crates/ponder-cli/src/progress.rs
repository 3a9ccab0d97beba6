//! What long commands say on stderr while they work: the opening line (as llama.cpp's tools
//! print one) and `solve`'s live progress from the library's event stream.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ponder::strategy::{Event, StrategyConfig};
use ponder::BackendConfig;

/// Prints the opening line of `command`: the model, the context size, the threads and the
/// strategy, with a hint when every core is asked for (a second job on the same CPU slows both
/// down many-fold).
pub fn opening(command: &str, model: &BackendConfig, strategy: Option<&StrategyConfig>) {
    eprintln!("{}", opening_line(command, model, strategy));
}

fn opening_line(command: &str, model: &BackendConfig, strategy: Option<&StrategyConfig>) -> String {
    let mut parts = Vec::new();
    match model {
        BackendConfig::Llama(c) => {
            parts.push(format!("model {}", c.model.display()));
            let s = c.options().1.sizing();
            parts.push(match s.layout {
                ponder::KvLayout::Streams => format!(
                    "kv streams: {} branches x {} tokens (ctx {})",
                    s.n_seq_max, s.cells_per_seq, s.n_ctx
                ),
                _ => format!("kv unified: ctx {} · {} sequences", s.n_ctx, s.n_seq_max),
            });
            parts.push(if c.n_threads == 0 {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                format!(
                    "threads all {cores} cores (--threads 0; if another job shares the CPU, --threads 1 can be several times faster)"
                )
            } else {
                format!("threads {}", c.n_threads)
            });
        }
        BackendConfig::Remote { remote } => {
            let served = remote.model.as_deref().unwrap_or("(the first listed)");
            parts.push(format!(
                "model {served} on {} server{} ({})",
                remote.urls.len(),
                if remote.urls.len() == 1 { "" } else { "s" },
                remote.urls.join(", ")
            ));
            parts.push(match remote.n_ctx {
                Some(n) => format!("ctx {n}"),
                None => "ctx the server's".into(),
            });
        }
    }
    if let Some(strategy) = strategy {
        parts.push(format!("strategy {}", strategy_brief(strategy)));
    }
    format!("ponder {command}: {}", parts.join(" · "))
}

/// The strategy's name and its main sizes ("mcts (k 3, step 64 tokens, budget 2048 tokens)"),
/// read from its JSON so that every strategy is covered; `--print-config` shows all of it.
fn strategy_brief(strategy: &StrategyConfig) -> String {
    let v = serde_json::to_value(strategy).expect("plain data serialises");
    let mut sizes = Vec::new();
    for key in ["n", "rerank", "rounds", "width", "k", "l0", "gamma"] {
        match &v[key] {
            serde_json::Value::String(s) => sizes.push(format!("{key} {s}")),
            serde_json::Value::Number(x) => sizes.push(format!("{key} {x}")),
            _ => {}
        }
    }
    for (value, what) in [
        (&v["max_tokens"], "tokens per sample"),
        (&v["total_budget"], "tokens per branch"),
        (&v["step"]["max_tokens"], "tokens per step"),
        (&v["budget"]["tokens"], "tokens in all"),
    ] {
        if let Some(x) = value.as_u64() {
            sizes.push(format!("{x} {what}"));
        }
    }
    if sizes.is_empty() {
        strategy.name().to_string()
    } else {
        format!("{} ({})", strategy.name(), sizes.join(", "))
    }
}

/// `solve`'s progress: on a terminal, a status line kept up to date; elsewhere (a log, a pipe),
/// one plain line per event.
pub struct SolveProgress {
    bar: Option<ProgressBar>,
    start: Instant,
    steps: usize,
    best_value: Option<f64>,
}

impl SolveProgress {
    /// Progress on stderr, in the form its destination suits (the status line is cut to the
    /// terminal's width).
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} · {wide_msg}")
                    .expect("a valid template"),
            );
            bar.set_message("solving");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            start: Instant::now(),
            steps: 0,
            best_value: None,
        }
    }

    /// Reports `event`.
    pub fn event(&mut self, event: &Event) {
        // The library's line for the event, the step's text cut to 60 characters, and the time
        // the solve took once it is done.
        let line = match event {
            Event::Step { .. } => {
                self.steps += 1;
                format!("{event:.60}")
            }
            Event::Scored { value, .. } => {
                self.best_value = Some(self.best_value.map_or(*value, |b| b.max(*value)));
                event.to_string()
            }
            Event::Done { .. } => {
                format!("{event} · {:.1} s", self.start.elapsed().as_secs_f64())
            }
            _ => event.to_string(),
        };
        match &self.bar {
            None => eprintln!("{line}"),
            Some(bar) => match event {
                Event::Step { .. } | Event::Scored { .. } => {
                    let best = self
                        .best_value
                        .map_or(String::new(), |b| format!(" · best value {b:.2}"));
                    bar.set_message(format!("{} steps{best} · {line}", self.steps));
                }
                _ => bar.println(line),
            },
        }
    }
}

impl Drop for SolveProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The progress of a command over a dataset (`synth`, `bench`) on stderr: a bar on a terminal,
/// one plain line per finished item elsewhere (a log, a pipe), nothing with `--json` (their
/// `--json` asks for no progress).
pub struct Batch {
    bar: Option<ProgressBar>,
    total: usize,
    quiet: bool,
}

impl Batch {
    /// Progress over `total` items; `template` is the bar's indicatif template.
    pub fn new(total: usize, template: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
            bar
        });
        Self { bar, total, quiet }
    }

    /// A line of its own ("resuming: …").
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }

    /// `done` items are finished, the last as `status` says.
    pub fn update(&self, done: usize, status: String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(status);
            }
            None if !self.quiet => eprintln!("[{done}/{}] {status}", self.total),
            None => {}
        }
    }

    /// `done` items are finished, the last failed as `line` says (kept above the bar).
    pub fn fail(&self, done: usize, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.println(line);
            }
            None if !self.quiet => eprintln!("[{done}/{}] {line}", self.total),
            None => {}
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
