//! What the file connectors (CSV, LDIF) share: an ordered in-memory table
//! of entries indexed by key, the lock around it, batch mode, the atomic
//! file write, and LDAP-like modify semantics.
//!
//! Outside a batch every write is persisted at once: the change is made on
//! a copy of the table, the copy is written with [`atomic_write`], and only
//! then does it replace the table, so a failed write changes nothing. In a
//! batch ([`FileStore::begin_batch`]) writes stay in memory until
//! [`FileStore::flush`]. Writers of one file in several processes exclude
//! each other with an advisory lock on `FILE.lock` and re-read the file
//! when another writer changed it. A file that does not exist is an error
//! for a reader, empty for a sync target, and created on the first write.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::connector::{Change, Error, Result, TestReport};
use crate::model::{Entry, Value};

/// Entries in file order, found by key without regard to case.
///
/// Slots are stable for the table's lifetime (a removed entry leaves an
/// empty slot), so callers may keep slot numbers in their own indexes.
#[derive(Clone, Debug, Default)]
pub struct Table {
    slots: Vec<Option<(String, Entry)>>,
    index: HashMap<String, Vec<usize>>,
    live: usize,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Appends `entry` under `key`; returns its slot.
    pub fn insert(&mut self, key: String, entry: Entry) -> usize {
        let slot = self.slots.len();
        self.index.entry(key.to_lowercase()).or_default().push(slot);
        self.slots.push(Some((key, entry)));
        self.live += 1;
        slot
    }

    /// The slot whose key is exactly `key`.
    pub fn find_exact(&self, key: &str) -> Option<usize> {
        self.find_ci(key)
            .iter()
            .copied()
            .find(|&s| self.key(s) == Some(key))
    }

    /// The slots whose key equals `key` ignoring case.
    pub fn find_ci(&self, key: &str) -> &[usize] {
        self.index
            .get(&key.to_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The key of a slot.
    pub fn key(&self, slot: usize) -> Option<&str> {
        self.slots.get(slot)?.as_ref().map(|(k, _)| k.as_str())
    }

    /// The entry in a slot.
    pub fn get(&self, slot: usize) -> Option<&Entry> {
        self.slots.get(slot)?.as_ref().map(|(_, e)| e)
    }

    /// The entry in a slot, to change in place (its key stays).
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Entry> {
        self.slots.get_mut(slot)?.as_mut().map(|(_, e)| e)
    }

    /// Gives a slot a new key, keeping its place in the order.
    pub fn rekey(&mut self, slot: usize, key: String) {
        let Some(Some((old, _))) = self.slots.get(slot) else {
            return;
        };
        let old = old.to_lowercase();
        self.unindex(&old, slot);
        self.index.entry(key.to_lowercase()).or_default().push(slot);
        if let Some(Some((k, _))) = self.slots.get_mut(slot) {
            *k = key;
        }
    }

    /// Removes the entry in a slot.
    pub fn remove(&mut self, slot: usize) -> Option<Entry> {
        let (key, entry) = self.slots.get_mut(slot)?.take()?;
        self.unindex(&key.to_lowercase(), slot);
        self.live -= 1;
        Some(entry)
    }

    fn unindex(&mut self, lower: &str, slot: usize) {
        if let Some(v) = self.index.get_mut(lower) {
            v.retain(|&s| s != slot);
            if v.is_empty() {
                self.index.remove(lower);
            }
        }
    }

    /// Slots and entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(_, e)| (i, e)))
    }

    /// Entries in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.iter().map(|(_, e)| e)
    }
}

/// The table plus format-specific data (the CSV header, the LDIF anchor
/// index) that a write may change too.
#[derive(Clone, Debug)]
pub struct Data<M> {
    /// The entries.
    pub table: Table,
    /// Format-specific state.
    pub meta: M,
}

/// Turns the data into the file's bytes.
pub type Render<M> = fn(&Data<M>, &str) -> Result<Vec<u8>>;

/// Turns the file's bytes as on disk (`None`: the file does not exist) into
/// data; `label` names the file in messages.
pub type Load<M> = Box<dyn Fn(Option<&[u8]>, &str) -> Result<Data<M>> + Send + Sync>;

/// How long a writer waits for another process's write before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// What identifies one version of the file: every write replaces it
/// (a new inode), and an edit in place changes its size or times.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(u64, u64, u64, i64, i64, i64, i64);

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stamp(
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        }
        #[cfg(not(unix))]
        {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            Stamp(
                0,
                0,
                m.len(),
                t.as_secs() as i64,
                t.subsec_nanos() as i64,
                0,
                0,
            )
        }
    }
}

struct State<M> {
    data: Data<M>,
    /// The version of the file `data` was read from or written as; `None`
    /// when the file did not exist.
    seen: Option<Stamp>,
    batch: bool,
    dirty: bool,
    /// The lock file, locked, while a batch holds changes not yet written.
    held: Option<std::fs::File>,
    /// A sync step writes here: a missing file reads as empty.
    target: bool,
}

/// A file held in memory behind a lock, written back atomically.
///
/// Every read-modify-write holds an advisory lock (`flock` on `FILE.lock`
/// beside the file) shared by every idsync process, and first re-reads the
/// file when it changed since this process read it (another writer), so no
/// write that reported success is lost. A batch holds the lock from its
/// first change until [`FileStore::flush`] has written it.
pub struct FileStore<M> {
    path: PathBuf,
    label: String,
    state: Mutex<State<M>>,
    render: Render<M>,
    load: Load<M>,
}

impl<M: Clone> FileStore<M> {
    /// Reads the file at `path` with `load`; `label` names it in messages.
    pub fn open(path: PathBuf, label: String, load: Load<M>, render: Render<M>) -> Result<Self> {
        let (data, seen) = read_version(&path, &label, &load)?;
        Ok(FileStore {
            path,
            label,
            state: Mutex::new(State {
                data,
                seen,
                batch: false,
                dirty: false,
                held: None,
                target: false,
            }),
            render,
            load,
        })
    }

    /// Wraps loaded data, as if read from a file that does not exist.
    #[cfg(test)]
    pub fn new(path: PathBuf, label: String, data: Data<M>, render: Render<M>) -> FileStore<M> {
        FileStore {
            path,
            label,
            state: Mutex::new(State {
                data,
                seen: None,
                batch: false,
                dirty: false,
                held: None,
                target: true,
            }),
            render,
            load: Box::new(|_, label| Err(Error::Other(format!("{label}: cannot be read again")))),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file as named in messages (the path as the user gave it).
    pub fn label(&self) -> &str {
        &self.label
    }

    fn lock(&self) -> Result<MutexGuard<'_, State<M>>> {
        self.state
            .lock()
            .map_err(|_| Error::Other(format!("{}: internal lock poisoned", self.label)))
    }

    /// Marks the file as a sync step's target: when it does not exist it
    /// reads as empty (the step's first write creates it) rather than
    /// being an error.
    pub fn set_target(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.target = true;
        }
    }

    /// Re-reads the file when another writer changed it since it was read
    /// (changes of this process not yet written are kept instead).
    fn refresh(&self, st: &mut State<M>) -> Result<()> {
        if st.dirty {
            return Ok(());
        }
        if self.current()? != st.seen {
            let (data, seen) = read_version(&self.path, &self.label, &self.load)?;
            st.data = data;
            st.seen = seen;
        }
        Ok(())
    }

    /// Runs `f` on the data as the file holds it now. A file that does not
    /// exist is an error naming it (a source must exist), unless the file
    /// is a sync step's target or this process has changes for it.
    pub fn read<R>(&self, f: impl FnOnce(&Data<M>) -> R) -> Result<R> {
        let mut st = self.lock()?;
        self.refresh(&mut st)?;
        if st.seen.is_none() && !st.target && !st.dirty {
            return Err(Error::Other(format!(
                "{}: no such file ({}); a file connection reads an existing file and creates one only when it is written to",
                self.label,
                shown_path(&self.path)
            )));
        }
        Ok(f(&st.data))
    }

    /// Like [`FileStore::read`], but a missing file reads as empty (for
    /// `test()` and completion).
    pub fn read_any<R>(&self, f: impl FnOnce(&Data<M>) -> R) -> Result<R> {
        let mut st = self.lock()?;
        self.refresh(&mut st)?;
        Ok(f(&st.data))
    }

    /// Runs a change under the file lock, on the file as it is now. In a
    /// batch it is applied in memory (so `f` must check everything before
    /// it changes anything) and the lock is kept until the flush; otherwise
    /// it is applied to a copy that is written to the file and kept only if
    /// the write works.
    pub fn write<R>(&self, f: impl FnOnce(&mut Data<M>) -> Result<R>) -> Result<R> {
        let mut st = self.lock()?;
        let lock = match st.held.take() {
            Some(l) => l,
            None => self.file_lock()?,
        };
        self.refresh(&mut st)?;
        if st.batch {
            let r = f(&mut st.data);
            if r.is_ok() {
                st.dirty = true;
            }
            if st.dirty {
                st.held = Some(lock);
            }
            return r;
        }
        let mut copy = st.data.clone();
        let r = f(&mut copy)?;
        let bytes = (self.render)(&copy, &self.label)?;
        let seen = self.write_file(&bytes)?;
        st.data = copy;
        st.seen = seen;
        st.dirty = false;
        drop(lock);
        Ok(r)
    }

    /// Starts a batch: writes stay in memory until [`FileStore::flush`].
    pub fn begin_batch(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.batch = true;
        }
    }

    #[cfg(test)]
    /// True inside a batch.
    pub fn in_batch(&self) -> bool {
        self.state.lock().map(|s| s.batch).unwrap_or(false)
    }

    /// Writes what a batch changed, ends the batch and lets other writers
    /// in. When the write fails the batch stays open with its changes (and
    /// the lock), so flushing again can retry.
    pub fn flush(&self) -> Result<()> {
        let mut st = self.lock()?;
        if st.dirty && self.current()? != st.seen {
            // A program that does not take the lock (an editor, a copy)
            // replaced the file meanwhile: drop the batch rather than
            // overwrite what it wrote; the next read sees the file as it is.
            st.dirty = false;
            st.batch = false;
            st.held = None;
            st.seen = None;
            return Err(Error::Other(format!(
                "{}: the file was changed by another program while this batch was prepared; the batch was not written",
                self.label
            )));
        }
        if st.dirty {
            let bytes = (self.render)(&st.data, &self.label)?;
            st.seen = self.write_file(&bytes)?;
            st.dirty = false;
        }
        st.held = None;
        st.batch = false;
        Ok(())
    }

    #[cfg(test)]
    /// Writes the file now, changed or not (under the file lock).
    pub fn save(&self) -> Result<()> {
        let mut st = self.lock()?;
        let lock = match st.held.take() {
            Some(l) => l,
            None => self.file_lock()?,
        };
        let bytes = (self.render)(&st.data, &self.label)?;
        st.seen = self.write_file(&bytes)?;
        st.dirty = false;
        drop(lock);
        Ok(())
    }

    /// The version of the file on disk now (`None`: there is none).
    fn current(&self) -> Result<Option<Stamp>> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(Some(Stamp::of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Other(format!("{}: cannot read: {e}", self.label))),
        }
    }

    /// Writes `bytes` atomically; the version written (the lock is held,
    /// so nobody replaced it since).
    fn write_file(&self, bytes: &[u8]) -> Result<Option<Stamp>> {
        atomic_write(&self.path, bytes)?;
        Ok(std::fs::metadata(&self.path).ok().map(|m| Stamp::of(&m)))
    }

    /// Locks `FILE.lock` (beside the file a symlink points to), waiting at
    /// most [`LOCK_WAIT`] for another writer.
    fn file_lock(&self) -> Result<std::fs::File> {
        let real = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut name = real.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        // flock needs no write access: a lock file another user created
        // is used read-only.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => std::fs::File::open(&lock_path),
                _ => Err(e),
            })
            .map_err(|e| {
                Error::Other(format!(
                    "{}: cannot open the lock file {}: {e}",
                    self.label,
                    lock_path.display()
                ))
            })?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Other(format!(
                        "{}: another process has been writing this file for more than {} s (it holds {}); nothing was written",
                        self.label,
                        LOCK_WAIT.as_secs(),
                        lock_path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::Other(format!(
                        "{}: cannot lock {}: {e}",
                        self.label,
                        lock_path.display()
                    )));
                }
            }
        }
    }

    /// A test report for the file: reachable when it exists and can be read.
    pub fn test_report(&self, kind: &str) -> Result<TestReport> {
        let count = self.read_any(|d| d.table.len())?;
        let mut r = TestReport {
            vendor: format!("{kind} file"),
            flavor: kind.to_string(),
            bind_identity: "n/a (file)".into(),
            ..TestReport::default()
        };
        r.details.push(("path".into(), shown_path(&self.path)));
        match std::fs::File::open(&self.path) {
            Ok(_) => {
                r.reachable = true;
                r.bound = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                r.details.push((
                    "status".into(),
                    "does not exist yet (it is created on the first write)".into(),
                ));
            }
            Err(e) => r
                .details
                .push(("error".into(), format!("{}: {e}", self.label))),
        }
        r.details.push(("entries".into(), count.to_string()));
        Ok(r)
    }
}

/// Reads one version of the file: the bytes and the stamp of the same
/// open file (a writer renaming a new version in meanwhile cannot mix them).
fn read_version<M>(path: &Path, label: &str, load: &Load<M>) -> Result<(Data<M>, Option<Stamp>)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((load(None, label)?, None));
        }
        Err(e) => return Err(Error::Other(format!("{label}: cannot read: {e}"))),
    };
    let cannot = |e: std::io::Error| Error::Other(format!("{label}: cannot read: {e}"));
    let stamp = Stamp::of(&file.metadata().map_err(cannot)?);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(cannot)?;
    Ok((load(Some(&bytes), label)?, Some(stamp)))
}

/// The absolute form of a path for profiles and reports (as given when it
/// cannot be made absolute).
pub fn shown_path(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either
/// the old file or the new one, never half a file: writes `path.tmp-<pid>`
/// in the same directory, syncs it, renames it over `path` and syncs the
/// directory. An existing file's permissions are kept; a symlink is
/// followed, so the file it points to is replaced.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        Error::Other(format!("{}: cannot {what}: {e}", path.display()))
    };
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|e| fail("resolve the symlink", e))?
        }
        _ => path.to_path_buf(),
    };
    let Some(name) = target.file_name() else {
        return Err(Error::usage(format!("{}: not a file name", path.display())));
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let perms = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let written = write_tmp(&tmp, bytes, perms)
        .and_then(|()| std::fs::rename(&tmp, &target).map_err(|e| ("replace the file", e)));
    if let Err((what, e)) = written {
        // remove_file never removes a directory that was in the way.
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&format!("{what} ({})", tmp.display()), e));
    }
    remove_stale_temps(&dir, name);
    sync_dir(&dir).map_err(|e| fail("sync the directory", e))
}

/// Removes `<name>.tmp-<pid>` files left by processes that no longer run
/// (a crash between writing the temp file and renaming it). Linux only:
/// elsewhere a leftover temp file stays, harmless.
fn remove_stale_temps(dir: &Path, name: &std::ffi::OsStr) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in list.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes, keeps permissions and syncs the temp file; the error says
/// which step failed.
fn write_tmp(
    tmp: &Path,
    bytes: &[u8],
    perms: Option<std::fs::Permissions>,
) -> std::result::Result<(), (&'static str, std::io::Error)> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| ("create the temp file", e))?;
    f.write_all(bytes).map_err(|e| ("write the temp file", e))?;
    if let Some(p) = perms {
        f.set_permissions(p)
            .map_err(|e| ("keep the file's permissions", e))?;
    }
    f.sync_all().map_err(|e| ("sync the temp file", e))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// True when two values are the same for a directory: text ignoring case,
/// binary byte for byte.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => x == y || x.to_lowercase() == y.to_lowercase(),
        _ => a.as_bytes() == b.as_bytes(),
    }
}

/// Applies one change with LDAP semantics: Replace sets the values (none
/// removes the attribute), Add adds those not yet present, Delete removes
/// the given values or, with none, the attribute. Adding a present value
/// or deleting an absent one is not an error (files have no schema to
/// enforce that). `name` is the attribute name to store under when the
/// attribute is new (lets CSV keep the header's spelling).
pub fn apply_change(entry: &mut Entry, change: &Change, name: &str) {
    match change {
        Change::Replace(_, values) => {
            let mut out: Vec<Value> = Vec::new();
            for v in values {
                if !out.iter().any(|o| same_value(o, v)) {
                    out.push(v.clone());
                }
            }
            let existing = entry.attr(name).map(|a| a.name.clone());
            set_keeping_place(entry, existing.as_deref().unwrap_or(name), out);
        }
        Change::Add(_, values) => {
            let mut add: Vec<Value> = Vec::new();
            for v in values {
                let present = entry.values(name).iter().any(|o| same_value(o, v))
                    || add.iter().any(|o| same_value(o, v));
                if !present {
                    add.push(v.clone());
                }
            }
            if !add.is_empty() {
                entry.push(name, add);
            }
        }
        Change::Delete(_, values) => {
            let Some(attr) = entry.attr(name) else { return };
            let attr_name = attr.name.clone();
            let kept: Vec<Value> = if values.is_empty() {
                Vec::new()
            } else {
                attr.values
                    .iter()
                    .filter(|v| !values.iter().any(|d| same_value(v, d)))
                    .cloned()
                    .collect()
            };
            set_keeping_place(entry, &attr_name, kept);
        }
    }
}

/// Like [`Entry::set`], but an attribute that stays keeps its position.
fn set_keeping_place(entry: &mut Entry, name: &str, values: Vec<Value>) {
    if values.is_empty() || !entry.has(name) {
        entry.set(name, values);
        return;
    }
    let mut rebuilt = Entry::new(entry.dn.clone());
    rebuilt.anchor = entry.anchor.clone();
    let mut values = Some(values);
    for a in entry.attributes() {
        if a.name.eq_ignore_ascii_case(name) {
            if let Some(v) = values.take() {
                rebuilt.push(&a.name, v);
            }
        } else {
            rebuilt.push(&a.name, a.values.iter().cloned());
        }
    }
    *entry = rebuilt;
}

/// The entry with only the requested attributes (`None` or `*` = all,
/// `1.1` = none), names matched without regard to case.
pub fn project(entry: &Entry, attrs: Option<&[String]>) -> Entry {
    let Some(want) = attrs else {
        return entry.clone();
    };
    if want.iter().any(|a| a == "*") {
        return entry.clone();
    }
    let mut out = Entry::new(entry.dn.clone());
    out.anchor = entry.anchor.clone();
    for a in entry.attributes() {
        if want.iter().any(|w| w.eq_ignore_ascii_case(&a.name)) {
            out.push(&a.name, a.values.iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn stale_temp_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.csv");
        let dead = dir.path().join("t.csv.tmp-999999999");
        std::fs::write(&dead, b"half").unwrap();
        let other = dir.path().join("u.csv.tmp-999999999");
        std::fs::write(&other, b"x").unwrap();
        super::atomic_write(&target, b"a,b\n").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"a,b\n");
        assert!(
            !dead.exists(),
            "stale temp file of a dead process left behind"
        );
        assert!(other.exists(), "another file's temp must be left alone");
    }

    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn table_keeps_order_and_finds_by_key() {
        let mut t = Table::new();
        t.insert("E1".into(), Entry::new("E1"));
        t.insert("e1".into(), Entry::new("e1"));
        t.insert("E2".into(), Entry::new("E2"));
        assert_eq!(t.find_exact("e1"), Some(1));
        assert_eq!(t.find_ci("E1").len(), 2);
        assert_eq!(t.remove(0).map(|e| e.dn), Some("E1".to_string()));
        assert_eq!(t.find_ci("E1"), &[1]);
        t.rekey(2, "E3".into());
        assert_eq!(t.find_exact("E3"), Some(2));
        assert!(t.find_ci("e2").is_empty());
        let order: Vec<&str> = t.entries().map(|e| e.dn.as_str()).collect();
        assert_eq!(order, ["e1", "E2"]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn modify_semantics() {
        let mut e = Entry::new("x");
        e.push("cn", [text("a")]);
        e.push("mail", [text("a@x"), text("b@x")]);
        e.push("sn", [text("s")]);
        apply_change(
            &mut e,
            &Change::Add("MAIL".into(), vec![text("A@X"), text("c@x")]),
            "MAIL",
        );
        assert_eq!(e.values("mail").len(), 3);
        apply_change(
            &mut e,
            &Change::Delete("mail".into(), vec![text("B@x")]),
            "mail",
        );
        assert_eq!(e.values("mail"), &[text("a@x"), text("c@x")]);
        apply_change(
            &mut e,
            &Change::Replace("mail".into(), vec![text("z@x")]),
            "mail",
        );
        assert_eq!(e.attributes()[1].name, "mail");
        assert_eq!(e.values("mail"), &[text("z@x")]);
        apply_change(&mut e, &Change::Delete("mail".into(), vec![]), "mail");
        assert!(!e.has("mail"));
        apply_change(
            &mut e,
            &Change::Delete("nothing".into(), vec![text("1")]),
            "nothing",
        );
        apply_change(&mut e, &Change::Replace("title".into(), vec![]), "title");
        assert!(!e.has("title"));
        apply_change(
            &mut e,
            &Change::Add("title".into(), vec![text("T")]),
            "Title",
        );
        assert_eq!(
            e.attributes().last().map(|a| a.name.as_str()),
            Some("Title")
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.txt");
        atomic_write(&path, b"one").expect("first write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        }
        atomic_write(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn failed_atomic_write_keeps_old_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keep.txt");
        std::fs::write(&path, b"old").expect("seed");
        // Something in the way of the temp file makes the write fail (a
        // read-only directory would not stop root).
        let blocker = dir
            .path()
            .join(format!("keep.txt.tmp-{}", std::process::id()));
        std::fs::create_dir(&blocker).expect("blocker");
        let err = atomic_write(&path, b"new").expect_err("must fail");
        assert!(err.to_string().contains("keep.txt"), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert!(blocker.is_dir());
        // A missing directory fails cleanly too.
        let missing = dir.path().join("no/such/dir/f.txt");
        assert!(atomic_write(&missing, b"x").is_err());
    }

    #[test]
    fn atomic_write_follows_symlinks() {
        #[cfg(unix)]
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let real = dir.path().join("real.txt");
            let link = dir.path().join("link.txt");
            std::fs::write(&real, b"old").expect("seed");
            std::os::unix::fs::symlink(&real, &link).expect("symlink");
            atomic_write(&link, b"new").expect("write");
            assert!(
                std::fs::symlink_metadata(&link)
                    .expect("meta")
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(std::fs::read(&real).expect("read"), b"new");
        }
    }

    fn render(d: &Data<()>, _: &str) -> Result<Vec<u8>> {
        Ok(d.table
            .entries()
            .map(|e| e.dn.clone())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes())
    }

    #[test]
    fn batch_writes_nothing_until_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.txt");
        let data = Data {
            table: Table::new(),
            meta: (),
        };
        let store = FileStore::new(path.clone(), "t.txt".into(), data, render);
        store
            .write(|d| {
                d.table.insert("a".into(), Entry::new("a"));
                Ok(())
            })
            .expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"a");
        store.begin_batch();
        assert!(store.in_batch());
        store
            .write(|d| {
                d.table.insert("b".into(), Entry::new("b"));
                Ok(())
            })
            .expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"a");
        store.flush().expect("flush");
        assert!(!store.in_batch());
        assert_eq!(std::fs::read(&path).expect("read"), b"a\nb");
        // A failing change outside a batch changes nothing.
        let r: Result<()> = store.write(|d| {
            d.table.insert("c".into(), Entry::new("c"));
            Err(Error::usage("no"))
        });
        assert!(r.is_err());
        assert_eq!(store.read(|d| d.table.len()).expect("read"), 2);
    }
}
