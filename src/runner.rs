//! The dataset runner that `eval`, `synth` and `bench` share: an ordered worker pool, durable
//! file writes, the settings check a resumed run passes, and the id a problem is known by.
//!
//! - [`in_order`] runs one job per index on a few worker threads and hands the results to the
//!   caller in input order, as soon as each one and all before it are done, while the workers run
//!   ahead; a stop flag that any job or the caller sets ends the run after the jobs in flight.
//!   So a run with N workers writes the same files as a run with one (given the same results).
//! - [`write_atomic`] replaces a file so that a crash leaves the old one or the new one, never a
//!   torn one: a temporary file next to it, synced, renamed over it, and the directory synced.
//! - [`resume_settings`] and [`read_settings`]: an output directory records the settings it was
//!   written with, and a later run into it must match them.
//! - [`problem_id`]: a problem's own id, else its index in the input.
//!
//! Nothing here knows what a job does; the runners keep their own files and reports.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ConfigError, Error};
use crate::strategy::Problem;

/// The id the `index`-th problem of an input is known by in results, records and journals: its
/// own, else its index.
pub fn problem_id(problem: &Problem, index: usize) -> String {
    problem.id.clone().unwrap_or_else(|| index.to_string())
}

/// Runs `job(worker, index)` for every index in `0..count` on `workers` threads (at least one,
/// at most `count`) and calls `take(index, result)` on the calling thread in increasing index
/// order, each result as soon as it and all before it are done. Worker `w` (in `0..workers`)
/// runs one job at a time, so `w` can pick a resource of its own.
///
/// Once `stop` is set — by a job, by `take`, or by another thread — no job starts; the jobs
/// already running finish and their results are still taken, in order. Without a stop every
/// index is taken exactly once. With one worker the jobs run on the calling thread.
pub fn in_order<R: Send>(
    count: usize,
    workers: usize,
    stop: &AtomicBool,
    job: impl Fn(usize, usize) -> R + Sync,
    mut take: impl FnMut(usize, R),
) {
    let workers = workers.clamp(1, count.max(1));
    if workers == 1 {
        for index in 0..count {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            take(index, job(0, index));
        }
        return;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        for worker in 0..workers {
            let (tx, next, job) = (tx.clone(), &next, &job);
            scope.spawn(move || loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= count {
                    break;
                }
                if tx.send((index, job(worker, index))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Results arrive in any order; they are taken in input order.
        let mut pending = BTreeMap::new();
        let mut due = 0;
        for (index, result) in rx {
            pending.insert(index, result);
            while let Some(result) = pending.remove(&due) {
                take(due, result);
                due += 1;
            }
        }
        // Only a job that panicked leaves a gap; what finished beyond it is still taken, in
        // order (the panic then ends the scope).
        for (index, result) in pending {
            take(index, result);
        }
    });
}

/// Replaces `path` by `text` durably: writes a temporary file next to it (`path` with the
/// extension `tmp`), syncs it, renames it over `path`, and syncs the directory so that the
/// rename itself survives a crash (where the platform lets a directory be opened).
///
/// # Errors
/// Writing, syncing or renaming failed (the old file, if any, is then untouched).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The settings an output directory was written with, read from the JSON file `path`; `None`
/// when there is none yet.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; a [`ConfigError`] on `output` when it is not
/// valid.
pub fn read_settings<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        ConfigError::new("output", format!("{} is not valid: {e}", path.display())).into()
    })
}

/// Checks that a run may write where the settings file `path` lies: when it exists, it must
/// hold `settings` (else the error says `differs`); when it does not, `settings` are written to
/// it ([`write_atomic`]), so that the next run is checked against them.
///
/// # Errors
/// A [`ConfigError`] on `output` when the settings differ or the file is not valid; I/O errors.
pub fn resume_settings<T: Serialize + DeserializeOwned + PartialEq>(
    path: &Path,
    settings: &T,
    differs: impl FnOnce() -> String,
) -> Result<(), Error> {
    match read_settings::<T>(path)? {
        Some(earlier) if earlier == *settings => Ok(()),
        Some(_) => Err(ConfigError::new("output", differs()).into()),
        None => write_atomic(
            path,
            &serde_json::to_string_pretty(settings).expect("plain data"),
        )
        .map_err(|e| Error::io("write", path, e)),
    }
}

/// A fresh, empty directory for one unit test: `ponder-{name}-{pid}` in the temp dir.
#[cfg(test)]
pub(crate) fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ponder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn results_are_taken_in_input_order_while_workers_run_ahead() {
        // Job 0 cannot finish before jobs 1 to 3 have, so the pool runs 4 jobs at once and
        // still hands job 0's result over first.
        let barrier = Barrier::new(4);
        let mut taken = Vec::new();
        let never = AtomicBool::new(false);
        in_order(
            10,
            4,
            &never,
            |worker, i| {
                assert!(worker < 4);
                if i < 4 {
                    barrier.wait();
                    if i == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                }
                i * 10
            },
            |i, r| taken.push((i, r)),
        );
        assert_eq!(taken, (0..10).map(|i| (i, i * 10)).collect::<Vec<_>>());
    }

    #[test]
    fn one_worker_runs_on_the_calling_thread_and_no_work_is_no_call() {
        let caller = std::thread::current().id();
        let never = AtomicBool::new(false);
        let mut taken = Vec::new();
        in_order(
            3,
            1,
            &never,
            |_, i| {
                assert_eq!(std::thread::current().id(), caller);
                i
            },
            |i, r| taken.push((i, r)),
        );
        assert_eq!(taken, [(0, 0), (1, 1), (2, 2)]);
        in_order(0, 8, &never, |_, _| unreachable!(), |_, ()| unreachable!());
    }

    #[test]
    fn a_stop_set_by_a_job_starts_nothing_more() {
        for workers in [1, 3] {
            let stop = AtomicBool::new(false);
            let mut taken = Vec::new();
            in_order(
                100,
                workers,
                &stop,
                |_, i| {
                    if i == 5 {
                        stop.store(true, Ordering::SeqCst);
                    }
                    i
                },
                |i, _| taken.push(i),
            );
            // Jobs 0..=5 started before the stop and are all taken, in order; at most the
            // other workers' jobs in flight follow.
            assert_eq!(taken[..6], [0, 1, 2, 3, 4, 5], "{workers} workers");
            assert!(taken.windows(2).all(|w| w[1] == w[0] + 1), "{taken:?}");
            assert!(taken.len() < 6 + workers, "{workers} workers: {taken:?}");
        }
    }

    #[test]
    fn a_stop_set_by_the_caller_ends_the_run_too() {
        let stop = AtomicBool::new(false);
        let mut taken = Vec::new();
        in_order(
            100,
            2,
            &stop,
            |_, i| {
                // Jobs after the fourth wait for the caller's stop: at most one per worker is
                // in flight when it comes.
                while i > 3 && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                i
            },
            |i, _| {
                taken.push(i);
                if i == 3 {
                    stop.store(true, Ordering::SeqCst);
                }
            },
        );
        assert!(taken.len() <= 6 && taken[..4] == [0, 1, 2, 3], "{taken:?}");
        assert!(taken.windows(2).all(|w| w[1] == w[0] + 1), "{taken:?}");
    }

    #[test]
    fn the_pool_serves_a_scripted_model_in_order() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep, StepQuery};
        use crate::strategy::{BestOfNConfig, StrategyConfig};
        let engine = crate::Engine::from_lm(ScriptedLm::new(
            |q: &StepQuery<'_>| ScriptedStep {
                text: format!("The answer is {}.", q.text.len()),
                eos: true,
                ..Default::default()
            },
            |_| 0.5,
        ));
        let strategy = StrategyConfig::BestOfN(BestOfNConfig {
            n: 2,
            ..BestOfNConfig::default()
        });
        let problems: Vec<Problem> = (0..6)
            .map(|i| Problem::new("x".repeat(i + 1)).with_answer("1"))
            .collect();
        let alone: Vec<Option<String>> = problems
            .iter()
            .map(|p| engine.solve(p, &strategy).unwrap().answer)
            .collect();
        let never = AtomicBool::new(false);
        let mut together = Vec::new();
        in_order(
            problems.len(),
            3,
            &never,
            |_, i| engine.solve(&problems[i], &strategy).unwrap().answer,
            |i, answer| together.push((i, answer)),
        );
        let indices: Vec<usize> = together.iter().map(|t| t.0).collect();
        assert_eq!(indices, [0, 1, 2, 3, 4, 5]);
        let answers: Vec<Option<String>> = together.into_iter().map(|t| t.1).collect();
        assert_eq!(answers, alone);
    }

    #[test]
    fn settings_are_written_once_and_checked_after() {
        let dir = scratch_dir("runner-settings");
        let path = dir.join("run.json");
        assert_eq!(read_settings::<Vec<u32>>(&path).unwrap(), None);
        resume_settings(&path, &vec![1u32, 2], || unreachable!()).unwrap();
        assert_eq!(read_settings::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2]));
        resume_settings(&path, &vec![1u32, 2], || unreachable!()).unwrap();
        let e = resume_settings(&path, &vec![3u32], || "other settings".into()).unwrap_err();
        assert!(e.to_string().contains("other settings"), "{e}");
        std::fs::write(&path, "{").unwrap();
        let e = read_settings::<Vec<u32>>(&path).unwrap_err();
        assert!(e.to_string().contains("is not valid"), "{e}");
        assert!(!dir.join("run.tmp").exists(), "no temporary file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn problems_without_an_id_are_known_by_their_index() {
        let p = Problem::new("q");
        assert_eq!(problem_id(&p, 7), "7");
        let p = Problem {
            id: Some("a".into()),
            ..p
        };
        assert_eq!(problem_id(&p, 7), "a");
    }
}
