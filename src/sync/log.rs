//! The per-run log file: `IDSYNC_HOME/logs/<name>-<timestamp>.log`, one
//! timestamped line per event, readable without idsync.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::clock;

/// An open run log (or a sink when there is none, as in preview).
pub struct RunLog {
    file: Option<BufWriter<File>>,
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
            file: Some(BufWriter::new(file)),
            path: Some(path),
        })
    }

    /// Where the log is, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes one timestamped line.
    pub fn line(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(
                f,
                "{} {}",
                clock::iso(clock::now_ms()),
                text.replace('\n', " ")
            );
        }
    }

    /// Pushes what was written to disk.
    pub fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        self.flush();
    }
}
