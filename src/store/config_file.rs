//! What the password-protected configuration file carries, and how it is
//! written from one state store and applied to another (`export_config` /
//! `import_config`, API §7). The bytes on disk are
//! [`crate::config::sealed`]'s; this module is in the store layer because it
//! reads and writes a [`StateStore`].
//!
//! # What travels
//!
//! The document (JSON, inside the encrypted envelope) holds:
//!
//! - `profiles`: every saved connection profile (name, kind, options).
//!   Secrets are there only as references (`env:NAME`, `prompt:label`).
//!   Export checks this rather than trusting it (see [`check_no_secrets`]):
//!   an option whose name looks like a secret must be a reference, no URL or
//!   connection string may hold a password, and no value of an environment
//!   variable the document refers to may appear anywhere in it.
//! - `settings`: the store's settings, except per-machine state. Today the
//!   only per-machine settings are the sync steps' change cursors
//!   (`sync-cursor/<step>`): a cursor says what *this* store has read, and
//!   on another machine it would make a step skip objects it never saw.
//!   Keys under [`MACHINE_STATE_PREFIXES`] stay home; a new kind of
//!   per-machine setting must be added there. Leases, links and run history
//!   are not settings and never travel.
//! - `store` / `sync_store`: the state store's location — the settings
//!   [`STORE_SETTING`] (written by `use_store(url)`) and
//!   [`SYNC_STORE_SETTING`], or else the `IDSYNC_STORE` / `IDSYNC_SYNC_STORE`
//!   environment variables of the exporting process. The shared store is
//!   not built yet; these are the keys it is to read. Import writes them as
//!   those settings.
//! - `scripts`: the schedules' and steps' script paths. Nothing records
//!   them yet (steps live in scripts; there is no service), so the list is
//!   always empty in version 1 files; an importer ignores it.
//!
//! # Import is all or nothing
//!
//! The file is decrypted and the whole document checked (format, names,
//! kinds, the same secret checks as export) before anything is written;
//! then the store is compared with it and only the differences are
//! written, all in one transaction of the store
//! ([`StateStore::import_snapshot`]): a write the store refuses, or a
//! process killed in the middle, leaves it exactly as it was (with two
//! stores, the configuration store's part is one transaction). A store
//! reached only through the narrower internal interface (tests) writes
//! item by item and undoes the earlier writes when one fails, in reverse
//! order (a restored profile's `updated_ms` is the time of the undo).
//! Profiles and settings that the file does not hold are left
//! alone: import adds and changes, it never removes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Profile, Snapshot, StateStore, StoreError, now_ms, validate_name};
use crate::config::sealed::{self, KdfParams, SealError};

/// The setting that names the state store (`use_store(url)`, `IDSYNC_STORE`).
pub const STORE_SETTING: &str = "store";
/// The setting that names a separate store for sync data (`IDSYNC_SYNC_STORE`).
pub const SYNC_STORE_SETTING: &str = "sync-store";
/// Settings whose keys start with one of these are per-machine state and
/// never travel (the change cursors of sync steps).
pub const MACHINE_STATE_PREFIXES: &[&str] = &["sync-cursor/"];
/// The connection kinds `connection(name)` can open; a profile of another
/// kind is refused on import (a newer idsync wrote it).
pub const KNOWN_KINDS: &[&str] = &["ldap", "csv", "ldif", "graph"];
/// The `format` field of the document.
const FORMAT: &str = "idsync-config";
/// The document's version.
const DOC_VERSION: u32 = 1;

/// The document inside the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigDoc {
    /// Always `"idsync-config"`.
    pub format: String,
    /// The document's version (1).
    pub version: u32,
    /// When it was exported, milliseconds since the Unix epoch.
    pub exported_ms: i64,
    /// The saved connection profiles, ordered by name.
    pub profiles: Vec<ProfileDoc>,
    /// The settings that travel, by key.
    pub settings: BTreeMap<String, String>,
    /// The state store's location, when one is set.
    pub store: Option<String>,
    /// The sync-data store's location, when one is set.
    pub sync_store: Option<String>,
    /// The schedules' and steps' script paths (none recorded yet).
    pub scripts: Vec<String>,
}

/// One connection profile in the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileDoc {
    /// The profile's name.
    pub name: String,
    /// Its connection kind.
    pub kind: String,
    /// Its options, secrets as references.
    pub data: Json,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The file written.
    pub path: PathBuf,
    /// How many profiles it holds.
    pub profiles: usize,
    /// How many settings it holds (the store location not counted).
    pub settings: usize,
    /// The store location it carries.
    pub store: Option<String>,
    /// The sync-data store location it carries.
    pub sync_store: Option<String>,
}

/// One thing an import added or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `"profile"` or `"setting"`.
    pub item: &'static str,
    /// The profile's name or the setting's key.
    pub name: String,
    /// `"added"` or `"changed"`.
    pub action: &'static str,
}

/// Why an export or import did nothing (or, for import, undid what it did).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The envelope: wrong password, damaged file, not a configuration file.
    #[error(transparent)]
    Sealed(#[from] SealError),
    /// Reading or writing the file failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The document would carry (or carries) a secret's value.
    #[error("{0}")]
    Secret(String),
    /// The decrypted document is not one this build can apply.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A write failed during import; `undone` says whether the earlier
    /// writes were restored.
    #[error("{}: applying {what} failed: {source}; {undone}", path.display())]
    Apply {
        /// The file.
        path: PathBuf,
        /// The item being written ("profile \"corp-ad\"").
        what: String,
        /// Why it failed.
        source: Box<StoreError>,
        /// What became of the earlier writes.
        undone: String,
    },
}

/// Builds the document from `store` (and the `IDSYNC_STORE` /
/// `IDSYNC_SYNC_STORE` environment), checked for secrets.
pub fn collect(store: &dyn StateStore) -> Result<ConfigDoc, TransferError> {
    let profiles = store
        .list_profiles()?
        .into_iter()
        .map(|p| ProfileDoc {
            name: p.name,
            kind: p.kind,
            data: p.data,
        })
        .collect();
    let mut settings = BTreeMap::new();
    let (mut store_url, mut sync_store_url) = (None, None);
    for (k, v) in store.list_settings()? {
        if k == STORE_SETTING {
            store_url = Some(v);
        } else if k == SYNC_STORE_SETTING {
            sync_store_url = Some(v);
        } else if travels(&k) {
            settings.insert(k, v);
        }
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let doc = ConfigDoc {
        format: FORMAT.into(),
        version: DOC_VERSION,
        exported_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        profiles,
        settings,
        store: store_url.or_else(|| env("IDSYNC_STORE")),
        sync_store: sync_store_url.or_else(|| env("IDSYNC_SYNC_STORE")),
        scripts: Vec::new(),
    };
    check_no_secrets(&doc)?;
    Ok(doc)
}

/// True when the setting `key` is configuration rather than per-machine state.
pub fn travels(key: &str) -> bool {
    !MACHINE_STATE_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Writes `store`'s configuration to `path`, encrypted under `password`
/// (Argon2id with `kdf`'s cost). The file is written whole or not at all
/// (a temporary file beside it, mode 0600, synced, then renamed).
pub fn export(
    store: &dyn StateStore,
    path: &Path,
    password: &str,
    kdf: KdfParams,
) -> Result<ExportSummary, TransferError> {
    let doc = collect(store)?;
    let plain = serde_json::to_vec(&doc).map_err(|e| TransferError::Invalid {
        path: path.to_path_buf(),
        reason: format!("cannot encode the configuration: {e}"),
    })?;
    let bytes = sealed::seal(&plain, password, kdf)?;
    write_atomically(path, &bytes)?;
    Ok(ExportSummary {
        path: path.to_path_buf(),
        profiles: doc.profiles.len(),
        settings: doc.settings.len(),
        store: doc.store,
        sync_store: doc.sync_store,
    })
}

/// Reads, decrypts and checks the file at `path`; writes nothing.
pub fn read(path: &Path, password: &str) -> Result<ConfigDoc, TransferError> {
    let bytes = std::fs::read(path).map_err(|source| TransferError::Io {
        path: path.to_path_buf(),
        what: "cannot read the configuration file",
        source,
    })?;
    let plain = sealed::open(&bytes, password, path)?;
    let invalid = |reason: String| TransferError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let doc: ConfigDoc = serde_json::from_slice(&plain)
        .map_err(|e| invalid(format!("the decrypted configuration does not parse: {e}")))?;
    if doc.format != FORMAT {
        return Err(invalid(format!("unknown document format {:?}", doc.format)));
    }
    if doc.version == 0 || doc.version > DOC_VERSION {
        return Err(invalid(format!(
            "configuration version {} is not one this idsync understands ({DOC_VERSION}); use a newer idsync",
            doc.version
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &doc.profiles {
        let name = validate_name("profile name", &p.name)?;
        if !seen.insert(name.to_string()) {
            return Err(invalid(format!("the profile {name:?} appears twice")));
        }
        if !KNOWN_KINDS.contains(&p.kind.as_str()) {
            return Err(invalid(format!(
                "profile {name:?} has the connection kind {:?}, which this idsync cannot open (known: {}); use a newer idsync",
                p.kind,
                KNOWN_KINDS.join(", ")
            )));
        }
        if !p.data.is_object() {
            return Err(invalid(format!(
                "profile {name:?}: its options are not a map"
            )));
        }
    }
    for k in doc.settings.keys() {
        validate_name("setting key", k)?;
        if !travels(k) || k == STORE_SETTING || k == SYNC_STORE_SETTING {
            return Err(invalid(format!(
                "the setting {k:?} is per-machine state or the store location and cannot be imported as a setting"
            )));
        }
    }
    check_no_secrets(&doc).map_err(|e| invalid(e.to_string()))?;
    Ok(doc)
}

/// Applies the file at `path` to `store`: adds and changes profiles and
/// settings (the store location included) so that they match the file.
/// Returns what was added or changed, in the order written; nothing when
/// the store already matched. On any error nothing stays changed (see the
/// module documentation).
pub fn import(
    store: &dyn StateStore,
    path: &Path,
    password: &str,
) -> Result<Vec<Applied>, TransferError> {
    let doc = read(path, password)?;
    apply(&store, doc, path)
}

/// The part of a store an import reads and writes.
trait ConfigStore {
    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError>;
    fn put_profile(&self, name: &str, kind: &str, data: &Json) -> Result<(), StoreError>;
    fn remove_profile(&self, name: &str) -> Result<bool, StoreError>;
    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
    fn remove_setting(&self, key: &str) -> Result<bool, StoreError>;
    /// Writes `s` all or nothing, if the store can ([`StateStore::import_snapshot`]);
    /// `None`: write item by item and undo on a failure.
    fn import_all(&self, s: &Snapshot) -> Option<Result<(), StoreError>> {
        let _ = s;
        None
    }
}

impl ConfigStore for &dyn StateStore {
    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError> {
        (**self).get_profile(name)
    }
    fn put_profile(&self, name: &str, kind: &str, data: &Json) -> Result<(), StoreError> {
        (**self).put_profile(name, kind, data)
    }
    fn remove_profile(&self, name: &str) -> Result<bool, StoreError> {
        (**self).remove_profile(name)
    }
    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        (**self).get_setting(key)
    }
    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        (**self).put_setting(key, value)
    }
    fn remove_setting(&self, key: &str) -> Result<bool, StoreError> {
        (**self).remove_setting(key)
    }
    fn import_all(&self, s: &Snapshot) -> Option<Result<(), StoreError>> {
        Some((**self).import_snapshot(s))
    }
}

/// One planned write, with the value it replaces (`None`: there was none).
enum Write {
    Profile(ProfileDoc, Option<Profile>),
    Setting(String, String, Option<String>),
}

/// Writes what differs between `doc` and `store`; undoes it all when a
/// write fails.
fn apply(
    store: &dyn ConfigStore,
    doc: ConfigDoc,
    path: &Path,
) -> Result<Vec<Applied>, TransferError> {
    let mut plan = Vec::new();
    for p in doc.profiles {
        let old = store.get_profile(&p.name)?;
        let same = old
            .as_ref()
            .is_some_and(|o| o.kind == p.kind && o.data == p.data);
        if !same {
            plan.push(Write::Profile(p, old));
        }
    }
    let mut settings: Vec<(String, String)> = doc.settings.into_iter().collect();
    if let Some(s) = doc.store {
        settings.push((STORE_SETTING.into(), s));
    }
    if let Some(s) = doc.sync_store {
        settings.push((SYNC_STORE_SETTING.into(), s));
    }
    for (k, v) in settings {
        let old = store.get_setting(&k)?;
        if old.as_deref() != Some(v.as_str()) {
            plan.push(Write::Setting(k, v, old));
        }
    }

    if plan.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(result) = store.import_all(&snapshot_of(&plan)) {
        if let Err(source) = result {
            return Err(TransferError::Apply {
                path: path.to_path_buf(),
                what: format!("the {} change(s)", plan.len()),
                source: Box::new(source),
                undone: "they were one transaction: nothing was changed".into(),
            });
        }
        return Ok(plan.iter().map(applied_of).collect());
    }
    let mut applied = Vec::new();
    for (i, w) in plan.iter().enumerate() {
        let (result, item, name, added) = match w {
            Write::Profile(p, old) => (
                store.put_profile(&p.name, &p.kind, &p.data),
                "profile",
                p.name.trim().to_string(),
                old.is_none(),
            ),
            Write::Setting(k, v, old) => (
                store.put_setting(k, v),
                "setting",
                k.trim().to_string(),
                old.is_none(),
            ),
        };
        if let Err(source) = result {
            return Err(TransferError::Apply {
                path: path.to_path_buf(),
                what: format!("{item} {name:?}"),
                source: Box::new(source),
                undone: undo(store, &plan[..i]),
            });
        }
        applied.push(Applied {
            item,
            name,
            action: if added { "added" } else { "changed" },
        });
    }
    Ok(applied)
}

/// The writes of `plan` as one [`Snapshot`] (profiles stamped now).
fn snapshot_of(plan: &[Write]) -> Snapshot {
    let mut s = Snapshot::default();
    for w in plan {
        match w {
            Write::Profile(p, _) => s.profiles.push(Profile {
                name: p.name.clone(),
                kind: p.kind.clone(),
                data: p.data.clone(),
                updated_ms: now_ms(),
            }),
            Write::Setting(k, v, _) => s.settings.push((k.clone(), v.clone())),
        }
    }
    s
}

/// What the planned write `w` did, once written.
fn applied_of(w: &Write) -> Applied {
    let (item, name, added) = match w {
        Write::Profile(p, old) => ("profile", p.name.trim().to_string(), old.is_none()),
        Write::Setting(k, _, old) => ("setting", k.trim().to_string(), old.is_none()),
    };
    Applied {
        item,
        name,
        action: if added { "added" } else { "changed" },
    }
}

/// Restores what `done` replaced, newest first; says how that went.
fn undo(store: &dyn ConfigStore, done: &[Write]) -> String {
    let mut not_undone = Vec::new();
    for w in done.iter().rev() {
        let (r, what) = match w {
            Write::Profile(p, None) => (
                store.remove_profile(&p.name).map(|_| ()),
                format!("profile {:?}", p.name),
            ),
            Write::Profile(p, Some(o)) => (
                store.put_profile(&o.name, &o.kind, &o.data),
                format!("profile {:?}", p.name),
            ),
            Write::Setting(k, _, None) => (
                store.remove_setting(k).map(|_| ()),
                format!("setting {k:?}"),
            ),
            Write::Setting(k, _, Some(o)) => (store.put_setting(k, o), format!("setting {k:?}")),
        };
        if let Err(e) = r {
            not_undone.push(format!("{what} ({e})"));
        }
    }
    if done.is_empty() {
        "nothing was changed".to_string()
    } else if not_undone.is_empty() {
        format!("the {} earlier change(s) were undone", done.len())
    } else {
        format!("could not undo: {}", not_undone.join(", "))
    }
}

/// Refuses a document that holds, or may hold, a secret's value: an
/// option named like a secret (`password`, `client_secret`, anything with
/// `pass`, `pw`, `secret`, `token` or `credential` in its name) that is not
/// a reference (`env:NAME`, `prompt:label`) or empty; a URL with a password
/// in it; a connection string with `Password=` or `Pwd=`; or the value of an
/// environment variable one of its references names, anywhere. The error
/// names the place, never the value.
pub fn check_no_secrets(doc: &ConfigDoc) -> Result<(), TransferError> {
    let mut strings: Vec<(String, &str)> = Vec::new();
    let mut refs = Vec::new();
    for p in &doc.profiles {
        walk(
            &p.data,
            &format!("profile {:?}", p.name),
            None,
            &mut strings,
            &mut refs,
        )?;
        strings.push((format!("profile {:?}", p.name), p.name.as_str()));
    }
    for (k, v) in &doc.settings {
        strings.push((format!("setting {k:?}"), k.as_str()));
        strings.push((format!("setting {k:?}"), v.as_str()));
    }
    for (what, v) in [("store", &doc.store), ("sync_store", &doc.sync_store)] {
        if let Some(v) = v {
            strings.push((format!("the {what} location"), v.as_str()));
        }
    }
    for s in &doc.scripts {
        strings.push(("a script path".into(), s.as_str()));
    }
    for (place, s) in &strings {
        if holds_password(s) {
            return Err(TransferError::Secret(format!(
                "{place}: holds a password in a URL or connection string, which is never written to a configuration file; give it by reference"
            )));
        }
    }
    for name in refs {
        let Ok(value) = std::env::var(&name) else {
            continue;
        };
        // Very short values would match by chance; the name rule above
        // already keeps every secret option a reference.
        if value.chars().count() < 4 {
            continue;
        }
        if let Some((place, _)) = strings.iter().find(|(_, s)| s.contains(value.as_str())) {
            return Err(TransferError::Secret(format!(
                "{place}: holds the value of the environment variable {name}, a secret; only references such as env:{name} are written to a configuration file"
            )));
        }
    }
    Ok(())
}

/// True when an option's name marks its value as a secret.
fn secret_name(key: &str) -> bool {
    let k = key.to_lowercase();
    ["pass", "pw", "secret", "token", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

/// A secret reference: `env:NAME` or `prompt:label`; returns the env name.
fn reference(s: &str) -> Option<Option<&str>> {
    match s.split_once(':') {
        Some(("env", n)) if !n.is_empty() => Some(Some(n)),
        Some(("prompt", _)) => Some(None),
        _ => None,
    }
}

/// Collects every string of `v` (keys too) with its place, and the env
/// names of its references; refuses a secret-named option that is not a
/// reference.
fn walk<'a>(
    v: &'a Json,
    place: &str,
    key: Option<&str>,
    strings: &mut Vec<(String, &'a str)>,
    refs: &mut Vec<String>,
) -> Result<(), TransferError> {
    let here = || match key {
        Some(k) => format!("{place}, option {k:?}"),
        None => place.to_string(),
    };
    match v {
        Json::String(s) => {
            if let Some(Some(n)) = reference(s) {
                refs.push(n.to_string());
            }
            if key.is_some_and(secret_name) && !s.is_empty() && reference(s).is_none() {
                return Err(TransferError::Secret(format!(
                    "{}: is not a secret reference (env:NAME or prompt:label); a secret's value is never written to a configuration file",
                    here()
                )));
            }
            strings.push((here(), s));
        }
        Json::Null | Json::Bool(_) => {}
        Json::Number(_) => {
            if key.is_some_and(secret_name) {
                return Err(TransferError::Secret(format!(
                    "{}: is not a secret reference (env:NAME or prompt:label)",
                    here()
                )));
            }
        }
        Json::Array(a) => {
            for x in a {
                walk(x, place, key, strings, refs)?;
            }
        }
        Json::Object(o) => {
            for (k, x) in o {
                strings.push((here(), k.as_str()));
                let sub = match key {
                    Some(parent) => format!("{parent}.{k}"),
                    None => k.clone(),
                };
                // A nested option's path holds its parents' names too, so
                // everything below a secret-named option counts as secret.
                walk(x, place, Some(&sub), strings, refs)?;
            }
        }
    }
    Ok(())
}

/// True when `s` is a URL with a password (`scheme://user:pw@host`, or a
/// `password` / `passfile` / `pwd` query parameter as libpq reads it) or a
/// connection string with `Password=` / `Pwd=`.
fn holds_password(s: &str) -> bool {
    if let Ok(u) = url::Url::parse(s) {
        if u.password().is_some_and(|p| !p.is_empty()) {
            return true;
        }
        if u.query_pairs().any(|(k, v)| {
            let k = k.trim().to_lowercase();
            (k == "password" || k == "passfile" || k == "pwd") && !v.trim().is_empty()
        }) {
            return true;
        }
    }
    s.split(';').any(|part| {
        part.split_once('=').is_some_and(|(k, v)| {
            let k = k.trim().to_lowercase();
            (k == "password" || k == "pwd") && !v.trim().is_empty()
        })
    })
}

/// Writes `bytes` to `path` whole or not at all, owner-only (0600): a
/// new file beside it, synced, then renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TransferError> {
    use std::io::Write as _;
    let io = |what: &'static str| {
        move |source| TransferError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let name = path
        .file_name()
        .ok_or_else(|| {
            io("not a file name")(std::io::Error::from(std::io::ErrorKind::InvalidInput))
        })?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io("cannot write the configuration file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use serde_json::json;

    #[test]
    fn holds_password_sees_url_userinfo_query_pairs_and_connection_strings() {
        for yes in [
            "postgres://u:pw@h/db",
            "postgres://u@h/db?password=pw",
            "postgres://u@h/db?sslmode=disable&PassWord=pw",
            "postgres://u@h/db?passfile=/home/u/.pgpass",
            "Server=h;Database=d;Pwd=pw",
        ] {
            assert!(holds_password(yes), "{yes}");
        }
        for no in [
            "postgres://u@h/db",
            "postgres://u@h/db?sslmode=require&options=-c%20x%3Dy",
            "postgres://u@h/db?password=",
            "Server=h;Database=d",
        ] {
            assert!(!holds_password(no), "{no}");
        }
    }

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    };

    fn doc(data: Json) -> ConfigDoc {
        ConfigDoc {
            format: FORMAT.into(),
            version: 1,
            exported_ms: 0,
            profiles: vec![ProfileDoc {
                name: "p".into(),
                kind: "ldap".into(),
                data,
            }],
            settings: BTreeMap::new(),
            store: None,
            sync_store: None,
            scripts: vec![],
        }
    }

    #[test]
    fn secret_values_cannot_get_in() {
        let ok = doc(json!({"url": "ldap://h", "password": "env:PW", "key": "employee_id"}));
        check_no_secrets(&ok).unwrap();
        for (data, place) in [
            (json!({"password": "hunter22"}), "option \"password\""),
            (json!({"client_secret": "abc"}), "option \"client_secret\""),
            (json!({"nested": {"api_token": "abc"}}), "api_token"),
            (json!({"bind_pw": 1234}), "bind_pw"),
            (json!({"url": "ldap://u:hunter22@h"}), "URL"),
            (
                json!({"conn": "Server=h;Pwd=hunter22"}),
                "connection string",
            ),
        ] {
            let e = check_no_secrets(&doc(data.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(place), "{data}: {e}");
            assert!(!e.contains("hunter22") && !e.contains("abc\""), "{e}");
        }
        // The value of a referenced variable, anywhere, is refused.
        let var = "IDSYNC_TRANSFER_TEST_PW";
        // SAFETY: a name no other test reads.
        unsafe { std::env::set_var(var, "s3cr3t-value") };
        let d = doc(json!({"password": format!("env:{var}"), "base": "ou=s3cr3t-value"}));
        let e = check_no_secrets(&d).unwrap_err().to_string();
        assert!(e.contains(var) && !e.contains("s3cr3t-value"), "{e}");
        let mut d = doc(json!({"password": format!("env:{var}")}));
        d.store = Some("postgres://h/db?x=s3cr3t-value".into());
        assert!(check_no_secrets(&d).is_err());
    }

    #[test]
    fn import_undoes_earlier_writes_when_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let src = SqliteStore::open(dir.path().join("a.db")).unwrap();
        src.put_profile("a", "csv", &json!({"path": "a.csv", "key": "id"}))
            .unwrap();
        src.put_profile("b", "csv", &json!({"path": "b.csv", "key": "id"}))
            .unwrap();
        src.put_setting("sync-cursor/x", "1").unwrap();
        src.put_setting("colour", "blue").unwrap();
        let file = dir.path().join("cfg");
        let s = export(&src, &file, "pw", CHEAP).unwrap();
        assert_eq!((s.profiles, s.settings), (2, 1));

        // A store that fails its third write.
        struct Failing {
            inner: SqliteStore,
            writes: std::cell::Cell<usize>,
        }
        impl Failing {
            fn count(&self) -> Result<(), StoreError> {
                self.writes.set(self.writes.get() + 1);
                if self.writes.get() == 3 {
                    return Err(StoreError::InvalidName {
                        what: "setting key",
                        name: "x".into(),
                        reason: "injected failure".into(),
                    });
                }
                Ok(())
            }
        }
        impl ConfigStore for Failing {
            fn get_profile(&self, n: &str) -> Result<Option<Profile>, StoreError> {
                self.inner.get_profile(n)
            }
            fn put_profile(&self, n: &str, k: &str, d: &Json) -> Result<(), StoreError> {
                self.count()?;
                self.inner.put_profile(n, k, d)
            }
            fn remove_profile(&self, n: &str) -> Result<bool, StoreError> {
                self.inner.remove_profile(n)
            }
            fn get_setting(&self, k: &str) -> Result<Option<String>, StoreError> {
                self.inner.get_setting(k)
            }
            fn put_setting(&self, k: &str, v: &str) -> Result<(), StoreError> {
                self.count()?;
                self.inner.put_setting(k, v)
            }
            fn remove_setting(&self, k: &str) -> Result<bool, StoreError> {
                self.inner.remove_setting(k)
            }
        }
        let dst = Failing {
            inner: SqliteStore::open(dir.path().join("b.db")).unwrap(),
            writes: 0.into(),
        };
        dst.inner
            .put_profile("a", "csv", &json!({"path": "old.csv", "key": "id"}))
            .unwrap();
        let profiles = |st: &SqliteStore| -> Vec<(String, String, Json)> {
            st.list_profiles()
                .unwrap()
                .into_iter()
                .map(|p| (p.name, p.kind, p.data))
                .collect()
        };
        let before = profiles(&dst.inner);
        let e = apply(&dst, read(&file, "pw").unwrap(), &file).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("applying setting \"colour\" failed")
                && msg.contains("the 2 earlier change(s) were undone"),
            "{msg}"
        );
        assert_eq!(profiles(&dst.inner), before);
        assert_eq!(dst.inner.list_settings().unwrap(), vec![]);

        // Without the failure everything lands; the cursor stayed home.
        let got = import(&dst.inner, &file, "pw").unwrap();
        let rows: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|a| (a.item, a.name.as_str(), a.action))
            .collect();
        assert_eq!(
            rows,
            [
                ("profile", "a", "changed"),
                ("profile", "b", "added"),
                ("setting", "colour", "added")
            ]
        );
        assert!(import(&dst.inner, &file, "pw").unwrap().is_empty());
        assert_eq!(dst.inner.get_setting("sync-cursor/x").unwrap(), None);
    }
}
