//! The per-run log file: `IDSYNC_HOME/logs/<name>-<timestamp>.log`, one
//! timestamped line per event, readable without idsync; with
//! `IDSYNC_LOG=json` one JSON object per line (`time`, `step`, `message`).
//! Logs older than `log_keep_days` (default 30; `IDSYNC_LOG_KEEP_DAYS`)
//! are removed when the next run's log is created. Under `-v` each line is
//! also written to stderr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::clock;

/// Days a run log is kept when nothing else is set.
pub const DEFAULT_KEEP_DAYS: i64 = 30;

static ECHO: AtomicBool = AtomicBool::new(false);
/// Days set by `log_keep_days(n)`; negative = not set.
static KEEP_DAYS: AtomicI64 = AtomicI64::new(-1);

/// Also write every log line to stderr (`-v`).
pub fn set_echo(on: bool) {
    ECHO.store(on, Ordering::SeqCst);
}

/// Sets how many days run logs are kept (0 = keep only the newest run's).
pub fn set_keep_days(days: i64) {
    KEEP_DAYS.store(days.max(0), Ordering::SeqCst);
}

/// How many days run logs are kept: `log_keep_days(n)`, else
/// `IDSYNC_LOG_KEEP_DAYS`, else [`DEFAULT_KEEP_DAYS`].
pub fn keep_days() -> i64 {
    let set = KEEP_DAYS.load(Ordering::SeqCst);
    if set >= 0 {
        return set;
    }
    std::env::var("IDSYNC_LOG_KEEP_DAYS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|d| *d >= 0)
        .unwrap_or(DEFAULT_KEEP_DAYS)
}

/// True when `IDSYNC_LOG=json` asks for JSON lines.
fn json_lines() -> bool {
    std::env::var("IDSYNC_LOG").is_ok_and(|v| v.trim().eq_ignore_ascii_case("json"))
}

/// Removes the run logs (`*.log`) in `dir` last written more than `days`
/// days ago; returns how many were removed.
pub fn prune(dir: &Path, days: i64) -> usize {
    let Ok(list) = std::fs::read_dir(dir) else {
        return 0;
    };
    let limit = std::time::Duration::from_secs(days.max(0) as u64 * 86_400);
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for f in list.flatten() {
        let path = f.path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let old = f
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > limit);
        if old && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// An open run log (or a sink when there is none, as in preview). Lines
/// may come from the planner and the writer of one run at the same time.
pub struct RunLog {
    file: Option<Mutex<BufWriter<File>>>,
    path: Option<PathBuf>,
    /// The step, for JSON lines.
    name: String,
    json: bool,
}

impl RunLog {
    /// A log that writes nowhere.
    pub fn none() -> RunLog {
        RunLog {
            file: None,
            path: None,
            name: String::new(),
            json: false,
        }
    }

    /// Creates `<dir>/<name>-<stamp>.log` (`/` in names becomes `_`).
    pub fn create(dir: &Path, name: &str, started_ms: i64) -> std::io::Result<RunLog> {
        std::fs::create_dir_all(dir)?;
        prune(dir, keep_days());
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut path = dir.join(format!("{safe}-{}.log", clock::stamp(started_ms)));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = dir.join(format!("{safe}-{}-{n}.log", clock::stamp(started_ms)));
        }
        let file = File::create(&path)?;
        Ok(RunLog {
            file: Some(Mutex::new(BufWriter::new(file))),
            path: Some(path),
            name: name.to_string(),
            json: json_lines(),
        })
    }

    /// Where the log is, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes one timestamped line (and, under `-v`, the same to stderr).
    pub fn line(&self, text: &str) {
        let text = text.replace('\n', " ");
        if ECHO.load(Ordering::Relaxed) && self.file.is_some() {
            eprintln!("{}: {text}", self.name);
        }
        if let Some(f) = &self.file {
            let time = clock::iso(clock::now_ms());
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = if self.json {
                let v = serde_json::json!({ "time": time, "step": self.name, "message": text });
                writeln!(f, "{v}")
            } else {
                writeln!(f, "{time} {text}")
            };
        }
    }

    /// Pushes what was written to disk.
    pub fn flush(&self) {
        if let Some(f) = &self.file {
            let _ = f.lock().unwrap_or_else(|p| p.into_inner()).flush();
        }
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_logs_are_removed_and_recent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("step-old.log");
        let recent = dir.path().join("step-recent.log");
        let other = dir.path().join("notes.txt");
        for p in [&old, &recent, &other] {
            std::fs::write(p, "x").unwrap();
        }
        let f = File::options().write(true).open(&old).unwrap();
        let forty_days = std::time::Duration::from_secs(40 * 86_400);
        f.set_modified(std::time::SystemTime::now() - forty_days)
            .unwrap();
        let f = File::options().write(true).open(&other).unwrap();
        f.set_modified(std::time::SystemTime::now() - forty_days)
            .unwrap();
        assert_eq!(prune(dir.path(), DEFAULT_KEEP_DAYS), 1);
        assert!(!old.exists() && recent.exists() && other.exists());
        assert_eq!(prune(dir.path(), 30), 0);
    }
}
