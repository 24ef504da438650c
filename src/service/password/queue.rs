//! The password-sync retry queue: pushes that failed because the target
//! could not be reached, kept until they are delivered or older than the
//! maximum age. The whole queue is one file, `IDSYNC_HOME/password-queue.sealed`,
//! encrypted at rest with the envelope of `crate::config::sealed`
//! (XChaCha20-Poly1305, key = Argon2id of the `queue_key` secret and a
//! fresh salt per write), rewritten through a temporary file and a rename
//! (mode 0600), and removed when the queue is empty. The passwords in it are
//! never logged; [`Item`] has no `Debug`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::sealed::{self, KdfParams};
use crate::model::Secret;

/// The queue file's name under `IDSYNC_HOME`.
pub const FILE: &str = "password-queue.sealed";
/// The first retry after this; doubled after every failed try...
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
/// ... up to this.
pub const MAX_RETRY: Duration = Duration::from_secs(600);

/// Argon2id cost for the queue's key. The queue key is a random key (not a
/// person's password), so a light cost suffices (OWASP's minimum:
/// 19 MiB, 2 passes) and keeps each rewrite quick.
const KDF: KdfParams = KdfParams {
    memory_kib: 19 * 1024,
    iterations: 2,
    lanes: 1,
};

/// One queued push.
#[derive(Clone, Serialize, Deserialize)]
pub struct Item {
    /// Unique within the queue.
    pub id: u64,
    /// The step whose link it follows.
    pub step: String,
    /// The target account's anchor (what `set_password` is given).
    pub target: String,
    /// The target account's DN, for logs.
    pub account: String,
    /// The AD identity the change came for, for logs.
    pub identity: String,
    /// The password to set (after the transform).
    pub password: String,
    /// When the change was received (ms).
    pub first_ms: i64,
    /// Failed tries so far.
    pub attempts: u32,
    /// The next try (ms).
    pub next_ms: i64,
    /// The last failure, in words (never the password).
    pub last_error: String,
}

/// The queue, in memory and on disk.
pub struct Queue {
    path: PathBuf,
    key: Secret,
    items: Mutex<Vec<Item>>,
}

/// The delay before try number `attempts + 1`.
pub fn backoff(attempts: u32) -> Duration {
    let f = 1u64 << attempts.min(16);
    (FIRST_RETRY * f as u32).min(MAX_RETRY)
}

impl Queue {
    /// Opens the queue at `path` (empty when the file does not exist); a
    /// wrong key or a damaged file is an error naming the file.
    pub fn open(path: &Path, key: Secret) -> Result<Queue, String> {
        let items = match std::fs::read(path) {
            Ok(bytes) => {
                let plain = sealed::open(&bytes, key.expose(), path).map_err(|e| {
                    format!("password queue: {e} (was queue_key changed? the file holds undelivered password changes)")
                })?;
                serde_json::from_slice(&plain)
                    .map_err(|e| format!("password queue {}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("password queue {}: {e}", path.display())),
        };
        Ok(Queue {
            path: path.to_path_buf(),
            key,
            items: Mutex::new(items),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many pushes wait.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a push (its `id` is assigned here) and saves.
    pub fn push(&self, mut item: Item) -> Result<(), String> {
        let mut items = self.lock();
        item.id = items.iter().map(|i| i.id).max().unwrap_or(0) + 1;
        // A newer change for the same account replaces an older one.
        items.retain(|i| !(i.step == item.step && i.target == item.target));
        items.push(item);
        self.save(&items)
    }

    /// The pushes due at `now_ms`.
    pub fn due(&self, now_ms: i64) -> Vec<Item> {
        self.lock()
            .iter()
            .filter(|i| i.next_ms <= now_ms)
            .cloned()
            .collect()
    }

    /// Removes and returns the pushes received more than `max_age` before `now_ms`.
    pub fn expire(&self, now_ms: i64, max_age: Duration) -> Result<Vec<Item>, String> {
        let mut items = self.lock();
        let limit = now_ms - max_age.as_millis() as i64;
        let (old, keep): (Vec<Item>, Vec<Item>) = items.drain(..).partition(|i| i.first_ms < limit);
        *items = keep;
        if !old.is_empty() {
            self.save(&items)?;
        }
        Ok(old)
    }

    /// Forgets a push (delivered, or failed for good).
    pub fn remove(&self, id: u64) -> Result<(), String> {
        let mut items = self.lock();
        items.retain(|i| i.id != id);
        self.save(&items)
    }

    /// Records a failed try and schedules the next.
    pub fn retry_later(&self, id: u64, now_ms: i64, error: &str) -> Result<(), String> {
        let mut items = self.lock();
        if let Some(i) = items.iter_mut().find(|i| i.id == id) {
            i.attempts += 1;
            i.next_ms = now_ms + backoff(i.attempts).as_millis() as i64;
            i.last_error = error.to_string();
        }
        self.save(&items)
    }

    fn save(&self, items: &[Item]) -> Result<(), String> {
        if items.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("password queue {}: {e}", self.path.display())),
            };
        }
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(items).map_err(|e| e.to_string())?);
        let bytes = sealed::seal(&plain, self.key.expose(), KDF)
            .map_err(|e| format!("password queue {}: {e}", self.path.display()))?;
        let tmp = self.path.with_extension("sealed.tmp");
        write_private(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("password queue {}: {e}", self.path.display()))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(target: &str, pw: &str, first_ms: i64) -> Item {
        Item {
            id: 0,
            step: "s".into(),
            target: target.into(),
            account: format!("uid={target}"),
            identity: target.into(),
            password: pw.into(),
            first_ms,
            attempts: 0,
            next_ms: first_ms,
            last_error: String::new(),
        }
    }

    #[test]
    fn sealed_on_disk_reopened_with_the_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let key = Secret::literal("k".repeat(32));
        let q = Queue::open(&path, key.clone()).unwrap();
        q.push(item("a", "Clear-Text-Pw-1", 1000)).unwrap();
        q.push(item("b", "Clear-Text-Pw-2", 9000)).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(15).any(|w| w == b"Clear-Text-Pw-1"));
        let again = Queue::open(&path, key).unwrap();
        assert_eq!(again.len(), 2);
        assert!(Queue::open(&path, Secret::literal("x".repeat(32))).is_err());
        // retry schedule and expiry
        let id = again.due(1000)[0].id;
        again.retry_later(id, 1000, "down").unwrap();
        assert!(again.due(1000).is_empty());
        assert_eq!(again.due(1000 + 4000).len(), 1);
        let old = again
            .expire(5000 + 10, Duration::from_millis(1000))
            .unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(again.len(), 1);
        let last = again.due(i64::MAX)[0].id;
        again.remove(last).unwrap();
        assert!(!path.exists(), "an empty queue leaves no file");
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(1), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_RETRY);
    }
}
