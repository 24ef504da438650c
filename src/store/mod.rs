//! The state store: everything idsync remembers between runs (connection
//! profiles and settings now; links, cursors, leases and run history as the
//! sync engine grows). Reached only through [`StateStore`], so the embedded
//! SQLite default ([`sqlite::SqliteStore`]) and a shared SQL Server store are
//! interchangeable and pass the same contract tests.

pub mod sqlite;

use std::path::PathBuf;

pub use sqlite::SqliteStore;

/// A named connection profile as stored: what `save_connection` wrote.
///
/// `data` holds the connection options; secrets appear in it only as
/// references (`env:AD_PW`), never in clear — the config layer sees to that.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The profile's name: trimmed, case-sensitive, unique.
    pub name: String,
    /// The connection kind (`ldap`, `csv`, `ldif`, `graph`, `sql`, ...).
    pub kind: String,
    /// The connection options as JSON.
    pub data: serde_json::Value,
    /// When the profile was last written, milliseconds since the Unix epoch.
    pub updated_ms: i64,
}

/// Why the state store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database engine failed (locked, corrupt, not a database, disk full, ...).
    #[error("state store {}: {}", path.display(), sqlite::describe(source))]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A file-system operation on the store's files failed.
    #[error("state store {}: {what}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What we were doing ("cannot create file", ...).
        what: &'static str,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The store was written by a newer idsync with a schema this one does not know.
    #[error(
        "state store {}: schema version {found} is newer than this idsync understands ({supported}); use a newer idsync",
        path.display()
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A stored value could not be read back (for example JSON that does not parse).
    #[error("state store {}: {what}: {cause}", path.display())]
    Data {
        /// The database file.
        path: PathBuf,
        /// Which value ("profile \"ad\"").
        what: String,
        /// What is wrong with it.
        cause: String,
    },
    /// A profile name or setting key is not acceptable.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// "profile name" or "setting key".
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },
}

/// What idsync keeps between runs. Implementations are synchronous and
/// thread-safe; callers on the async runtime use `spawn_blocking`.
pub trait StateStore: Send + Sync {
    /// Create or replace the profile `name` (trimmed) with `kind` and `data`.
    fn put_profile(
        &self,
        name: &str,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// The profile `name` (trimmed), or `None` if there is none.
    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError>;
    /// Every profile, ordered by name.
    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError>;
    /// Forget the profile `name`; `true` if it existed.
    fn remove_profile(&self, name: &str) -> Result<bool, StoreError>;
    /// The setting `key` (trimmed), or `None` if it was never set.
    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Create or replace the setting `key` (trimmed).
    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Every setting as `(key, value)`, ordered by key (for `export_config`).
    fn list_settings(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Forget the setting `key`; `true` if it existed.
    fn remove_setting(&self, key: &str) -> Result<bool, StoreError>;
}

/// Check a profile name or setting key and return it trimmed: it must not be
/// empty and must not contain control characters. Case is kept as given.
pub fn validate_name<'a>(what: &'static str, name: &'a str) -> Result<&'a str, StoreError> {
    let refuse = |reason: String| StoreError::InvalidName {
        what,
        name: name.to_string(),
        reason,
    };
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(refuse("must not be empty".into()));
    }
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(refuse(format!(
            "contains the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(trimmed)
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The contract every [`StateStore`] must keep. Run it on an empty store.
#[cfg(test)]
pub(crate) fn contract(store: &dyn StateStore) {
    use serde_json::json;

    // Empty to begin with.
    assert!(store.list_profiles().unwrap().is_empty());
    assert_eq!(store.get_profile("ad").unwrap(), None);
    assert!(!store.remove_profile("ad").unwrap());

    // Round trip, including nested JSON, Unicode and a long (> 8 KB) value.
    let before = now_ms();
    let long = "x".repeat(9000);
    let data = json!({"url": "ldaps://dc1.corp.example", "password": "env:AD_PW",
                      "page_size": 500, "verify": true, "note": "Zoë 東京", "long": long});
    store.put_profile("ad", "ldap", &data).unwrap();
    let p = store
        .get_profile("ad")
        .unwrap()
        .expect("profile just written");
    assert_eq!((p.name.as_str(), p.kind.as_str()), ("ad", "ldap"));
    assert_eq!(p.data, data);
    assert!(
        p.updated_ms >= before && p.updated_ms <= now_ms() + 1,
        "{}",
        p.updated_ms
    );

    // Names are case-sensitive.
    assert_eq!(store.get_profile("AD").unwrap(), None);
    store
        .put_profile("AD", "csv", &json!({"path": "hr.csv"}))
        .unwrap();
    assert_eq!(store.get_profile("AD").unwrap().unwrap().kind, "csv");
    assert_eq!(store.get_profile("ad").unwrap().unwrap().kind, "ldap");

    // Names are trimmed on the way in and on lookup.
    store.put_profile("  hr feed\t", "csv", &json!({})).unwrap();
    assert_eq!(
        store.get_profile("hr feed").unwrap().unwrap().name,
        "hr feed"
    );
    assert!(store.get_profile(" hr feed ").unwrap().is_some());

    // Unicode names.
    store.put_profile("Zoë's AD", "ldap", &json!(null)).unwrap();
    assert_eq!(
        store.get_profile("Zoë's AD").unwrap().unwrap().data,
        json!(null)
    );

    // Overwrite replaces, it does not duplicate.
    store
        .put_profile("ad", "graph", &json!({"tenant": "t"}))
        .unwrap();
    let p2 = store.get_profile("ad").unwrap().unwrap();
    assert_eq!(
        (p2.kind.as_str(), &p2.data),
        ("graph", &json!({"tenant": "t"}))
    );
    assert!(p2.updated_ms >= p.updated_ms);

    // Listing is ordered by name.
    let names: Vec<String> = store
        .list_profiles()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["AD", "Zoë's AD", "ad", "hr feed"]);

    // Bad names are refused with a clear reason, and nothing is written.
    for bad in ["", "   ", "a\nb", "tab\u{7}bell"] {
        let e = store.put_profile(bad, "ldap", &json!({})).unwrap_err();
        assert!(matches!(e, StoreError::InvalidName { .. }), "{bad:?}: {e}");
        assert!(e.to_string().starts_with("invalid profile name"), "{e}");
        assert!(store.get_profile(bad).is_err());
    }
    let e = store.put_profile("a\nb", "ldap", &json!({})).unwrap_err();
    assert!(e.to_string().contains("control character U+000A"), "{e}");
    assert_eq!(store.list_profiles().unwrap().len(), 4);

    // Remove.
    assert!(store.remove_profile(" AD ").unwrap());
    assert!(!store.remove_profile("AD").unwrap());
    assert_eq!(store.get_profile("AD").unwrap(), None);
    assert!(store.get_profile("ad").unwrap().is_some());

    // Settings.
    assert_eq!(store.get_setting("store").unwrap(), None);
    store.put_setting("store", "sqlite").unwrap();
    store.put_setting("store", "mssql://sql1/idsync").unwrap();
    store.put_setting("deletion.threshold", "500").unwrap();
    store.put_setting("empty", "").unwrap();
    assert_eq!(
        store.get_setting(" store").unwrap().as_deref(),
        Some("mssql://sql1/idsync")
    );
    assert_eq!(store.get_setting("empty").unwrap().as_deref(), Some(""));
    assert_eq!(store.get_setting("Store").unwrap(), None);
    assert_eq!(
        store.list_settings().unwrap(),
        [
            ("deletion.threshold".to_string(), "500".to_string()),
            ("empty".into(), "".into()),
            ("store".into(), "mssql://sql1/idsync".into()),
        ]
    );
    assert!(store.remove_setting("empty").unwrap());
    assert!(!store.remove_setting("empty").unwrap());
    let e = store.put_setting("", "x").unwrap_err();
    assert!(e.to_string().starts_with("invalid setting key"), "{e}");

    // Usable from several threads at once.
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..10 {
                    store
                        .put_profile(&format!("t{t}-{i}"), "csv", &json!({ "i": i }))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(store.list_profiles().unwrap().len(), 3 + 80);
    assert_eq!(
        store.get_profile("t7-9").unwrap().unwrap().data,
        json!({"i": 9})
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("profile name", "  ad ").unwrap(), "ad");
        assert_eq!(validate_name("profile name", "Zoë").unwrap(), "Zoë");
        let e = validate_name("profile name", " \t ").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid profile name \" \\t \": must not be empty"
        );
        let e = validate_name("setting key", "a\u{1b}[31m").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting key \"a\\u{1b}[31m\": contains the control character U+001B"
        );
    }
}
