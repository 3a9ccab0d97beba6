//! The journal of a synth run: the append-only files, written so that a problem is finished
//! exactly when its line in `done.jsonl` is complete, and the recovery that brings a directory
//! back to its finished problems after a run was killed at any moment.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::runner;
use crate::trace::export::{self, ExportOptions, Format};
use crate::trace::Trace;

/// One line of `done.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Done {
    pub(super) id: String,
    pub(super) records: BTreeMap<String, usize>,
}

/// The append-only output files of a run.
pub(super) struct Files {
    traces: File,
    formats: Vec<(Format, File)>,
    done: File,
}

impl Files {
    pub(super) fn open(dir: &Path, formats: &[Format]) -> std::io::Result<Self> {
        let append = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
        };
        Ok(Self {
            traces: append("traces.jsonl")?,
            formats: formats
                .iter()
                .map(|&f| Ok((f, append(&format!("{}.jsonl", f.name()))?)))
                .collect::<std::io::Result<_>>()?,
            done: append("done.jsonl")?,
        })
    }

    /// Writes one problem's records, its trace, then (once those are synced) its journal line.
    pub(super) fn write_problem(
        &mut self,
        trace: &Trace,
        formats: &[Format],
        options: &ExportOptions,
    ) -> std::io::Result<()> {
        let mut counts = BTreeMap::new();
        for (format, file) in &mut self.formats {
            let records = if formats.contains(format) {
                export::records(trace, *format, options)
            } else {
                Vec::new()
            };
            counts.insert(format.name().to_string(), records.len());
            let mut text = String::new();
            for r in records {
                text.push_str(&serde_json::to_string(&r).expect("plain data"));
                text.push('\n');
            }
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
        }
        let mut line = serde_json::to_string(trace).expect("plain data");
        line.push('\n');
        self.traces.write_all(line.as_bytes())?;
        self.traces.sync_data()?;
        let mut line = serde_json::to_string(&Done {
            id: trace.id.clone(),
            records: counts,
        })
        .expect("plain data");
        line.push('\n');
        self.done.write_all(line.as_bytes())?;
        self.done.sync_data()
    }
}

/// The complete JSON lines of a file (a last line without its newline is torn and left out).
pub(super) fn complete_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.pop();
    }
    Ok(lines)
}

/// Brings `dir` back to its finished problems: the journal's complete lines name them; every
/// other record, trace and torn line is removed. Returns the journal.
pub(super) fn recover(dir: &Path, formats: &[Format]) -> std::io::Result<Vec<Done>> {
    let journal_path = dir.join("done.jsonl");
    let mut done = Vec::new();
    let mut keep = Vec::new();
    for line in complete_lines(&journal_path)? {
        if let Ok(d) = serde_json::from_str::<Done>(&line) {
            done.push(d);
            keep.push(line);
        }
    }
    rewrite_if_changed(&journal_path, &keep)?;
    let ids: HashSet<&str> = done.iter().map(|d| d.id.as_str()).collect();
    let names = formats
        .iter()
        .map(|f| format!("{}.jsonl", f.name()))
        .chain(["traces.jsonl".to_string()]);
    for name in names {
        let path = dir.join(name);
        let lines: Vec<String> = complete_lines(&path)?
            .into_iter()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(|id| ids.contains(id)))
                    .unwrap_or(false)
            })
            .collect();
        rewrite_if_changed(&path, &lines)?;
    }
    Ok(done)
}

/// Replaces `path` by `lines` (atomically) unless it already holds exactly them.
fn rewrite_if_changed(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let wanted: String = lines.concat();
    let current = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if current == wanted.as_bytes() {
        return Ok(());
    }
    runner::write_atomic(path, &wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_lines_and_unfinished_problems_are_removed_on_recovery() {
        let dir = runner::scratch_dir("synth-recover");
        std::fs::write(
            dir.join("done.jsonl"),
            "{\"id\":\"a\",\"records\":{\"sft\":1}}\n{\"id\":\"b\",\"rec",
        )
        .unwrap();
        std::fs::write(
            dir.join("sft.jsonl"),
            "{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"c\",\"x\"",
        )
        .unwrap();
        std::fs::write(dir.join("traces.jsonl"), "{\"id\":\"a\"}\n").unwrap();
        let done = recover(&dir, &[Format::Sft]).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.join("done.jsonl")).unwrap(),
            "{\"id\":\"a\",\"records\":{\"sft\":1}}\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("sft.jsonl")).unwrap(),
            "{\"id\":\"a\",\"x\":1}\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("traces.jsonl")).unwrap(),
            "{\"id\":\"a\"}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
