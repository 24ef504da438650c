//! The per-run log file: `IDSYNC_HOME/logs/<name>-<timestamp>.log`, one
//! timestamped line per event, readable without idsync.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::clock;

/// An open run log (or a sink when there is none, as in preview). Lines
/// may come from the planner and the writer of one run at the same time.
pub struct RunLog {
    file: Option<Mutex<BufWriter<File>>>,
    path: Option<PathBuf>,
}

impl RunLog {
    /// A log that writes nowhere.
    pub fn none() -> RunLog {
        RunLog {
            file: None,
            path: None,
        }
    }

    /// Creates `<dir>/<name>-<stamp>.log` (`/` in names becomes `_`).
    pub fn create(dir: &Path, name: &str, started_ms: i64) -> std::io::Result<RunLog> {
        std::fs::create_dir_all(dir)?;
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
        })
    }

    /// Where the log is, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes one timestamped line.
    pub fn line(&self, text: &str) {
        if let Some(f) = &self.file {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(
                f,
                "{} {}",
                clock::iso(clock::now_ms()),
                text.replace('\n', " ")
            );
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
