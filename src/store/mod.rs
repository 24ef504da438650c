//! The state store: everything idsync remembers between runs (connection
//! profiles and settings now; links, cursors, leases and run history as the
//! sync engine grows). Reached only through [`StateStore`], so the embedded
//! SQLite default ([`sqlite::SqliteStore`]) and a shared SQL Server store are
//! interchangeable and pass the same contract tests.

pub mod config_file;
pub mod migrate;
pub mod mssql;
pub mod postgres;
pub mod router;
pub mod select;
pub mod snapshot;
pub mod sqlite;

use std::path::PathBuf;

pub use mssql::MssqlStore;
pub use postgres::PostgresStore;
pub use snapshot::Snapshot;
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

/// A stored pair: a source object and the target object it is synchronised with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The source object's anchor (stable identifier, e.g. an objectGUID or a CSV key).
    pub source_anchor: String,
    /// The target object's anchor.
    pub target_anchor: String,
    /// The last known target DN.
    pub target_dn: String,
    /// Hash of the source object as last applied; `None` = recompute next run.
    pub source_hash: Option<String>,
    /// The DN the create rule produced when last applied (to detect
    /// source-driven renames and moves).
    pub desired_dn: Option<String>,
    /// When the link was last written, milliseconds since the Unix epoch (stored as given).
    pub updated_ms: i64,
}

/// One recorded run of a step or workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run id, increasing with each run.
    pub id: i64,
    /// The step or workflow name, e.g. `hr-to-ad/users`.
    pub name: String,
    /// `"step"` or `"workflow"` (see [`RUN_KINDS`]).
    pub kind: String,
    /// When the run started, milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// When the run finished; `None` while running.
    pub finished_ms: Option<i64>,
    /// `"running"`, `"ok"`, `"failed"`, `"refused"` or `"interrupted"` (see [`RUN_STATUSES`]).
    pub status: String,
    /// The counts as given to [`StateStore::finish_run`] (`{"created": n, ...}`); `{}` while running.
    /// The sync engine stores every count of a run here (its `Counts` in JSON form: created,
    /// updated, renamed, moved, joined, deprovisioned, unchanged, failed, containers), a
    /// workflow the sum over its steps; the store keeps the value as given.
    pub counts: serde_json::Value,
    /// A message for the administrator (why it failed, was refused, ...).
    pub message: Option<String>,
    /// The run's log file.
    pub log_path: Option<String>,
}

/// A run's hold on a step: while it exists, no other run (of this process,
/// another process, or another machine sharing the store) may run the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The step the lease is on.
    pub name: String,
    /// The run that holds it: the step's own name, or the workflow's.
    pub owner: String,
    /// The host name of the holder's machine.
    pub host: String,
    /// The holder's process id on that host.
    pub pid: u32,
    /// A random value only the holder knows (heartbeats and the release
    /// must present it).
    pub token: String,
    /// When the lease was taken, milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// The holder's last sign of life, milliseconds since the Unix epoch.
    pub heartbeat_ms: i64,
}

/// What [`StateStore::take_leases`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseTake {
    /// Every lease is now held; `taken_over` lists the leases of dead
    /// holders that were replaced, `interrupted` the ids of the runs that
    /// were still marked running and are now `"interrupted"`.
    Taken {
        /// The dead holders' leases that were replaced.
        taken_over: Vec<Lease>,
        /// Runs marked interrupted.
        interrupted: Vec<i64>,
    },
    /// A live holder has one of the steps: nothing was taken.
    Held(Lease),
}

/// The kinds of run [`StateStore::start_run`] accepts.
pub const RUN_KINDS: &[&str] = &["step", "workflow"];
/// Every run status; [`StateStore::finish_run`] accepts all but `"running"`.
pub const RUN_STATUSES: &[&str] = &["running", "ok", "failed", "refused", "interrupted"];
/// The message [`StateStore::take_leases`] gives to a run that was still
/// marked running when its step's lease was taken.
pub const INTERRUPTED_MESSAGE: &str = "interrupted: the process ended before the run finished";

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
    /// [`StateStore::finish_run`] was given an id that no run has.
    #[error("state store {}: there is no run with id {id}", path.display())]
    NoSuchRun {
        /// The database file.
        path: PathBuf,
        /// The id as given.
        id: i64,
    },
    /// A shared (database server) store failed: cannot connect, a statement
    /// failed, ... `url` never holds a password.
    #[error("state store {url}: {cause}")]
    Database {
        /// The store's URL as shown (no password).
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// A profile name, setting key, step or run name, run kind or status is not acceptable.
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

    /// Every live link of the step `step` (trimmed), in no particular order
    /// (not those of deprovisioned objects: [`StateStore::deprovisioned_links`]).
    fn links(&self, step: &str) -> Result<Vec<Link>, StoreError>;
    /// Create or replace the links of `step`, keyed by source anchor, all in
    /// one transaction (all or nothing). Fast enough for 100,000 links at once.
    fn put_links(&self, step: &str, links: &[Link]) -> Result<(), StoreError>;
    /// Forget the links of `step` with these source anchors, in one
    /// transaction; returns how many existed.
    fn remove_links(&self, step: &str, source_anchors: &[String]) -> Result<usize, StoreError>;
    /// How many links `step` has (not counting those of deprovisioned objects).
    fn link_count(&self, step: &str) -> Result<usize, StoreError>;
    /// The live links of `step` whose source anchors are among
    /// `source_anchors` (those that have one; an anchor given twice counts
    /// once; compared exactly, as the engine keys links by source anchor), in
    /// no particular order: what an incremental run needs for the objects
    /// that changed, without reading every link of a large step.
    /// The default reads [`StateStore::links`] and filters it; a store
    /// should look each anchor up instead.
    fn links_of(&self, step: &str, source_anchors: &[String]) -> Result<Vec<Link>, StoreError> {
        let wanted: std::collections::HashSet<&str> =
            source_anchors.iter().map(String::as_str).collect();
        let mut out = self.links(step)?;
        out.retain(|l| wanted.contains(l.source_anchor.as_str()));
        Ok(out)
    }
    /// The live links of `step` whose source anchors are not in `present`
    /// (compared exactly, like every source anchor: the engine keys links
    /// by source anchor as the source spells it), in no particular order:
    /// the leavers of a run that listed the anchors still in scope, found
    /// without holding every link in memory. The default reads
    /// [`StateStore::links`] and filters it; a store should do the
    /// difference itself.
    fn links_not_in(&self, step: &str, present: &[String]) -> Result<Vec<Link>, StoreError> {
        let here: std::collections::HashSet<&str> = present.iter().map(String::as_str).collect();
        let mut out = self.links(step)?;
        out.retain(|l| !here.contains(l.source_anchor.as_str()));
        Ok(out)
    }
    /// A live link of `step` to the target object `target_anchor`, compared
    /// without regard to ASCII case (as the engine compares target anchors:
    /// GUIDs are written in either case), or `None`. When several links
    /// share a target, the one with the smallest source anchor. What a run
    /// asks when a join finds a target, instead of holding a map of every
    /// link. The default reads [`StateStore::links`]; a store should look it
    /// up by index.
    fn link_to_target(&self, step: &str, target_anchor: &str) -> Result<Option<Link>, StoreError> {
        Ok(self
            .links(step)?
            .into_iter()
            .filter(|l| l.target_anchor.eq_ignore_ascii_case(target_anchor))
            .min_by(|a, b| a.source_anchor.cmp(&b.source_anchor)))
    }
    /// The kept links of `step`'s deprovisioned objects (see
    /// [`StateStore::keep_deprovisioned`]), in no particular order.
    fn deprovisioned_links(&self, step: &str) -> Result<Vec<Link>, StoreError>;
    /// Marks these links of `step` as those of deprovisioned objects
    /// (create or replace, keyed by source anchor, in one transaction;
    /// `updated_ms` is when). They are kept so that a source object that
    /// comes back is restored through its link instead of duplicated, but
    /// they are no longer linked objects: [`StateStore::links`] and
    /// [`StateStore::link_count`] leave them out (so the deletion threshold
    /// counts only live links). [`StateStore::put_links`] of the same source
    /// anchor makes a link live again; [`StateStore::remove_links`] forgets
    /// it either way.
    fn keep_deprovisioned(&self, step: &str, links: &[Link]) -> Result<(), StoreError>;
    /// The distinct names of the steps that have links, sorted.
    fn step_names(&self) -> Result<Vec<String>, StoreError>;

    /// Take the leases on the steps `names` (trimmed) for `holder` (its
    /// `name` is ignored; `since_ms` and `heartbeat_ms` become now), all or
    /// none, in one transaction. A lease held by another token counts as free
    /// only when `dead(lease)` says its holder is gone; otherwise nothing is
    /// taken and the live holder is returned. When the leases are taken,
    /// every run of these steps (and of the taken-over holders' owners, and of
    /// `holder.owner`) still marked `"running"` has no live process behind it
    /// and becomes `"interrupted"` with [`INTERRUPTED_MESSAGE`], in the same
    /// transaction. Taking a lease the same token already holds renews it.
    fn take_leases(
        &self,
        names: &[String],
        holder: &Lease,
        dead: &dyn Fn(&Lease) -> bool,
    ) -> Result<LeaseTake, StoreError>;
    /// Record a sign of life for the leases on `names` held by `token`;
    /// returns how many it still holds (fewer than `names` when one was
    /// taken over meanwhile).
    fn heartbeat_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError>;
    /// Give up the leases on `names` held by `token`; returns how many it held.
    fn release_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError>;
    /// Every lease held, ordered by step name.
    fn leases(&self) -> Result<Vec<Lease>, StoreError>;

    /// Record the start of a run of `name` (trimmed; `kind` is `"step"` or
    /// `"workflow"`) with status `"running"`, and return its id. Other runs
    /// are left alone: a run of the same name still marked `"running"` may
    /// be alive on another machine; [`StateStore::take_leases`] is what
    /// decides that a run is gone.
    fn start_run(&self, name: &str, kind: &str, log_path: Option<&str>) -> Result<i64, StoreError>;
    /// Record the end of run `id`: its final `status` (`"ok"`, `"failed"`,
    /// `"refused"` or `"interrupted"`), counts and message; finished now.
    fn finish_run(
        &self,
        id: i64,
        status: &str,
        counts: &serde_json::Value,
        message: Option<&str>,
    ) -> Result<(), StoreError>;
    /// At most `limit` runs, newest first; only those of `name` (trimmed) if given.
    fn runs(&self, name: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    /// Writes `runs` as recorded elsewhere — ids, times, statuses, counts
    /// kept; create or replace by id — for `idsync store migrate`. Later
    /// [`StateStore::start_run`] ids are above them. The default refuses.
    fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let _ = runs;
        Err(StoreError::InvalidName {
            what: "operation",
            name: "import_runs".into(),
            reason: "this store cannot import run history".into(),
        })
    }
    /// Writes `profiles` with their `updated_ms` kept (create or replace by
    /// name), for `idsync store migrate`. The default uses
    /// [`StateStore::put_profile`] (the time becomes now).
    fn import_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        for p in profiles {
            self.put_profile(&p.name, &p.kind, &p.data)?;
        }
        Ok(())
    }
    /// Writes `snapshot` (profiles with their times, settings, links, runs;
    /// create or replace) for `import_config` and `idsync store migrate`. A
    /// store should do it in one transaction, so that a refusal part-way
    /// leaves it exactly as it was; the default writes item by item.
    fn import_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        snapshot::item_by_item(self, snapshot)
    }
}

/// Check a run kind against [`RUN_KINDS`].
pub(crate) fn validate_run_kind(kind: &str) -> Result<&str, StoreError> {
    if RUN_KINDS.contains(&kind) {
        Ok(kind)
    } else {
        Err(StoreError::InvalidName {
            what: "run kind",
            name: kind.to_string(),
            reason: format!("must be one of {}", RUN_KINDS.join(", ")),
        })
    }
}

/// Check a final run status: one of [`RUN_STATUSES`] other than `"running"`.
pub(crate) fn validate_final_status(status: &str) -> Result<&str, StoreError> {
    if status != "running" && RUN_STATUSES.contains(&status) {
        Ok(status)
    } else {
        Err(StoreError::InvalidName {
            what: "run status",
            name: status.to_string(),
            reason: format!("must be one of {}", RUN_STATUSES[1..].join(", ")),
        })
    }
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
/// Public (not for users) so that the integration tests of shared stores
/// (tests/store_postgres.rs) run the same contract as the unit tests.
#[doc(hidden)]
pub fn contract(store: &dyn StateStore) {
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

    contract_links(store);
    contract_deprovisioned(store);
    contract_runs(store);
    contract_leases(store);
}

fn link(n: usize, step_tag: &str) -> Link {
    Link {
        source_anchor: format!("src-{n}"),
        target_anchor: format!("tgt-{step_tag}-{n}"),
        target_dn: format!("CN=User {n},OU=Staff,DC=corp,DC=example"),
        source_hash: (!n.is_multiple_of(3)).then(|| format!("h{n}")),
        desired_dn: n
            .is_multiple_of(2)
            .then(|| format!("CN=User {n},OU=Staff,DC=corp,DC=example")),
        updated_ms: 1_700_000_000_000 + n as i64,
    }
}

/// Links of deprovisioned objects: kept apart from the live ones, made live
/// again by `put_links`, forgotten by `remove_links`.
fn contract_deprovisioned(store: &dyn StateStore) {
    let step = "kept/users";
    let other = "kept/other";
    let live: Vec<Link> = (0..4).map(|n| link(n, "k")).collect();
    store.put_links(step, &live).unwrap();
    assert!(store.deprovisioned_links(step).unwrap().is_empty());
    store.keep_deprovisioned(step, &[]).unwrap();

    // Two leavers: no longer linked, but kept with their new DN.
    let mut gone = vec![live[1].clone(), live[2].clone()];
    gone[0].target_dn = "CN=User 1,OU=Leavers,DC=corp,DC=example".into();
    gone[0].source_hash = None;
    store.keep_deprovisioned(step, &gone).unwrap();
    let mut kept = store.deprovisioned_links(step).unwrap();
    kept.sort_by(|a, b| a.source_anchor.cmp(&b.source_anchor));
    assert_eq!(kept, gone);
    assert_eq!(store.link_count(step).unwrap(), 2);
    let mut names: Vec<String> = store
        .links(step)
        .unwrap()
        .into_iter()
        .map(|l| l.source_anchor)
        .collect();
    names.sort();
    assert_eq!(names, ["src-0", "src-3"]);
    // Another step sees none of it; a never-linked leaver can be kept too.
    assert!(store.deprovisioned_links(other).unwrap().is_empty());
    store.keep_deprovisioned(other, &[link(9, "o")]).unwrap();
    assert_eq!(store.link_count(other).unwrap(), 0);
    assert!(store.links(other).unwrap().is_empty());
    assert_eq!(store.deprovisioned_links(other).unwrap(), [link(9, "o")]);

    // A returning source: put_links makes its link live again.
    let mut back = live[1].clone();
    back.target_dn = "CN=User 1,OU=Staff,DC=corp,DC=example".into();
    store.put_links(step, std::slice::from_ref(&back)).unwrap();
    assert_eq!(store.deprovisioned_links(step).unwrap(), [gone[1].clone()]);
    assert_eq!(store.link_count(step).unwrap(), 3);
    assert!(store.links(step).unwrap().contains(&back));

    // remove_links forgets a kept link too.
    assert_eq!(
        store
            .remove_links(step, &["src-2".into(), "src-0".into()])
            .unwrap(),
        2
    );
    assert!(store.deprovisioned_links(step).unwrap().is_empty());
    assert_eq!(store.link_count(step).unwrap(), 2);
    assert!(store.keep_deprovisioned(" ", &gone).is_err());
    assert!(store.deprovisioned_links("").is_err());
    let all: Vec<String> = ["src-1", "src-3"].map(String::from).to_vec();
    assert_eq!(store.remove_links(step, &all).unwrap(), 2);
    assert_eq!(store.remove_links(other, &["src-9".into()]).unwrap(), 1);
}

/// Links: put, get, overwrite, remove, steps isolated, 100k at once.
fn contract_links(store: &dyn StateStore) {
    let sorted = |mut v: Vec<Link>| {
        v.sort_by(|a, b| a.source_anchor.cmp(&b.source_anchor));
        v
    };
    let users = "hr-to-ad/users";
    let groups = "hr-to-ad/groups";
    assert!(store.links(users).unwrap().is_empty());
    assert_eq!(store.link_count(users).unwrap(), 0);
    assert!(store.step_names().unwrap().is_empty());
    assert_eq!(store.remove_links(users, &["src-1".into()]).unwrap(), 0);
    store.put_links(users, &[]).unwrap();
    assert!(store.step_names().unwrap().is_empty());

    // Put and read back, with and without the optional fields, Unicode included.
    let mut first: Vec<Link> = (0..5).map(|n| link(n, "u")).collect();
    first[4].target_dn = "CN=Zoë Ångström,OU=東京,DC=corp,DC=example".into();
    store.put_links(users, &first).unwrap();
    assert_eq!(sorted(store.links(users).unwrap()), first);
    assert_eq!(store.link_count(users).unwrap(), 5);
    // Step names are trimmed like profile names.
    assert_eq!(store.link_count(" hr-to-ad/users ").unwrap(), 5);

    // Overwrite by source anchor: replaced, not duplicated; others untouched.
    let mut changed = first[1].clone();
    changed.target_anchor = "tgt-new".into();
    changed.target_dn = "CN=Renamed,OU=Moved,DC=corp,DC=example".into();
    changed.source_hash = None;
    changed.desired_dn = Some("CN=Renamed,OU=Staff,DC=corp,DC=example".into());
    changed.updated_ms += 1000;
    let fresh = link(5, "u");
    store
        .put_links(users, &[changed.clone(), fresh.clone()])
        .unwrap();
    let mut expected = first.clone();
    expected[1] = changed.clone();
    expected.push(fresh);
    assert_eq!(sorted(store.links(users).unwrap()), expected);
    // The same anchor twice in one call: the last one wins.
    let mut twice = first[0].clone();
    twice.target_dn = "CN=Second".into();
    store
        .put_links(users, &[first[0].clone(), twice.clone()])
        .unwrap();
    expected[0] = twice;
    assert_eq!(sorted(store.links(users).unwrap()), expected);

    // Two steps are isolated, even with the same source anchors.
    let group_links: Vec<Link> = (0..3).map(|n| link(n, "g")).collect();
    store.put_links(groups, &group_links).unwrap();
    assert_eq!(sorted(store.links(groups).unwrap()), group_links);
    assert_eq!(sorted(store.links(users).unwrap()), expected);
    assert_eq!(store.step_names().unwrap(), [groups, users]);

    // Looked up by source anchor: only live links of this step that exist,
    // each once; the leavers of a listing. Source anchors compare exactly
    // (the links' key, as the engine's); target anchors without regard to
    // ASCII case (as the engine's target view and joins compare them).
    let by_anchor = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    store
        .keep_deprovisioned(
            users,
            &[Link {
                updated_ms: 7,
                ..link(9, "u")
            }],
        )
        .unwrap();
    let of = store
        .links_of(
            users,
            &by_anchor(&["src-3", "nope", "src-3", "src-2", "src-9", "SRC-4"]),
        )
        .unwrap();
    assert_eq!(sorted(of), [expected[2].clone(), expected[3].clone()]);
    assert!(store.links_of(users, &[]).unwrap().is_empty());
    assert_eq!(
        sorted(store.links_of(groups, &by_anchor(&["src-2"])).unwrap()),
        [group_links[2].clone()]
    );
    let leavers = store
        .links_not_in(
            users,
            &by_anchor(&["SRC-0", "src-1", "src-3", "src-5", "nope"]),
        )
        .unwrap();
    assert_eq!(
        sorted(leavers),
        [
            expected[0].clone(),
            expected[2].clone(),
            expected[4].clone()
        ]
    );
    assert_eq!(sorted(store.links_not_in(users, &[]).unwrap()), expected);
    // The listing of one call does not stay behind for the next.
    assert_eq!(
        sorted(store.links_not_in(groups, &by_anchor(&["src-0"])).unwrap()),
        group_links[1..]
    );
    // By target anchor: live links only, this step only, any ASCII case.
    assert_eq!(
        store.link_to_target(users, "TGT-U-3").unwrap(),
        Some(expected[3].clone())
    );
    assert_eq!(
        store.link_to_target(users, "tgt-new").unwrap(),
        Some(expected[1].clone())
    );
    assert_eq!(store.link_to_target(users, "tgt-u-9").unwrap(), None);
    assert_eq!(store.link_to_target(users, "tgt-g-2").unwrap(), None);
    assert_eq!(
        store.link_to_target(groups, "tgt-G-2").unwrap(),
        Some(group_links[2].clone())
    );
    // Two links to one target: the smaller source anchor.
    let shared = "shared/target";
    let two = [
        Link {
            target_anchor: "tgt-X".into(),
            ..link(2, "s")
        },
        Link {
            target_anchor: "TGT-x".into(),
            ..link(1, "s")
        },
    ];
    store.put_links(shared, &two).unwrap();
    assert_eq!(
        store.link_to_target(shared, "tgt-x").unwrap(),
        Some(two[1].clone())
    );
    assert_eq!(
        store
            .remove_links(shared, &by_anchor(&["src-1", "src-2"]))
            .unwrap(),
        2
    );
    assert_eq!(
        store.remove_links(users, &by_anchor(&["src-9"])).unwrap(),
        1
    );

    // Remove: counts only what existed, leaves the other step alone.
    let gone = store
        .remove_links(
            users,
            &[
                "src-0".into(),
                "src-1".into(),
                "src-1".into(),
                "nope".into(),
            ],
        )
        .unwrap();
    assert_eq!(gone, 2);
    assert_eq!(store.link_count(users).unwrap(), 4);
    assert_eq!(store.link_count(groups).unwrap(), 3);
    assert_eq!(store.remove_links(users, &[]).unwrap(), 0);
    let all: Vec<String> = (0..3).map(|n| format!("src-{n}")).collect();
    assert_eq!(store.remove_links(groups, &all).unwrap(), 3);
    assert_eq!(store.step_names().unwrap(), [users]);

    // Bad step names are refused.
    for bad in ["", "  ", "a\nb"] {
        let e = store.put_links(bad, &first).unwrap_err();
        assert!(e.to_string().starts_with("invalid step name"), "{e}");
        assert!(store.links(bad).is_err());
        assert!(store.link_count(bad).is_err());
        assert!(store.remove_links(bad, &[]).is_err());
        assert!(store.links_of(bad, &[]).is_err());
        assert!(store.links_not_in(bad, &[]).is_err());
        assert!(store.link_to_target(bad, "x").is_err());
    }

    // 100,000 links in one call, read back.
    let big_step = "bulk/users";
    let many: Vec<Link> = (0..100_000).map(|n| link(n, "b")).collect();
    store.put_links(big_step, &many).unwrap();
    assert_eq!(store.link_count(big_step).unwrap(), 100_000);
    let back = sorted(store.links(big_step).unwrap());
    assert_eq!(back.len(), 100_000);
    assert_eq!(back, sorted(many.clone()));
    // The leavers of a listing of all but three, and three looked up.
    let listed: Vec<String> = many[3..].iter().map(|l| l.source_anchor.clone()).collect();
    assert_eq!(
        sorted(store.links_not_in(big_step, &listed).unwrap()),
        many[..3]
    );
    assert_eq!(
        sorted(store.links_of(big_step, &listed[..3]).unwrap()),
        many[3..6]
    );
    // Re-putting them all (every one an update) does not duplicate. (How fast is the
    // benchmark's business, not a test's: a loaded CI machine made a 3 s bound flaky.)
    store.put_links(big_step, &many).unwrap();
    assert_eq!(store.link_count(big_step).unwrap(), 100_000);
    let anchors: Vec<String> = many.iter().map(|l| l.source_anchor.clone()).collect();
    assert_eq!(store.remove_links(big_step, &anchors).unwrap(), 100_000);
    assert_eq!(store.link_count(big_step).unwrap(), 0);
    assert_eq!(store.step_names().unwrap(), [users]);
}

/// Run history: start/finish, newest first, filter, limit, interrupted runs.
fn contract_runs(store: &dyn StateStore) {
    use serde_json::json;

    assert!(store.runs(None, 10).unwrap().is_empty());
    assert!(store.runs(Some("hr-to-ad"), 10).unwrap().is_empty());

    let before = now_ms();
    let a = store
        .start_run("hr-to-ad", "workflow", Some("/logs/hr-to-ad-1.log"))
        .unwrap();
    let running = &store.runs(Some("hr-to-ad"), 10).unwrap()[0];
    assert_eq!(running.id, a);
    assert_eq!(
        (
            running.name.as_str(),
            running.kind.as_str(),
            running.status.as_str()
        ),
        ("hr-to-ad", "workflow", "running")
    );
    assert!(running.started_ms >= before && running.started_ms <= now_ms() + 1);
    assert_eq!(running.finished_ms, None);
    assert_eq!(running.message, None);
    assert_eq!(running.log_path.as_deref(), Some("/logs/hr-to-ad-1.log"));

    let counts = json!({"created": 3, "updated": 1, "unchanged": 99_000, "failed": 0,
                        "duration_ms": 1234, "errors": ["CN=Ann Lee: no such parent", "Zoë"]});
    store.finish_run(a, "ok", &counts, None).unwrap();
    let done = &store.runs(None, 10).unwrap()[0];
    assert_eq!(done.status, "ok");
    assert_eq!(done.counts, counts);
    let finished = done.finished_ms.expect("finished");
    assert!(finished >= done.started_ms && finished <= now_ms() + 1);

    // Starting a run leaves every other run alone, even a running one of
    // the same name (it may be alive elsewhere: leases decide that).
    let b = store.start_run("hr-to-ad/users", "step", None).unwrap();
    let c = store.start_run("hr-to-ad/groups", "step", None).unwrap();
    let d = store.start_run("hr-to-ad/users", "step", None).unwrap();
    assert!(a < b && b < c && c < d);
    let all = store.runs(None, 100).unwrap();
    let ids: Vec<i64> = all.iter().map(|r| r.id).collect();
    assert_eq!(ids, [d, c, b, a]);
    let by_id = |id| all.iter().find(|r| r.id == id).unwrap().clone();
    let old = by_id(b);
    assert_eq!(old.status, "running");
    assert_eq!(old.message, None);
    assert_eq!(old.finished_ms, None);
    assert_eq!(by_id(c).status, "running");
    assert_eq!(by_id(d).status, "running");
    assert_eq!(by_id(a).status, "ok");
    // A finished run is not touched by a new start.
    store.start_run("hr-to-ad", "workflow", None).unwrap();
    assert_eq!(by_id(a), store.runs(Some("hr-to-ad"), 10).unwrap()[1]);

    store
        .finish_run(d, "failed", &json!({"failed": 2}), Some("2 objects failed"))
        .unwrap();
    store
        .finish_run(
            c,
            "refused",
            &json!({}),
            Some("would deprovision 600 objects"),
        )
        .unwrap();
    let users = store.runs(Some(" hr-to-ad/users "), 10).unwrap();
    assert_eq!(users.iter().map(|r| r.id).collect::<Vec<_>>(), [d, b]);
    assert_eq!(
        (users[0].status.as_str(), users[0].message.as_deref()),
        ("failed", Some("2 objects failed"))
    );
    assert_eq!(users[0].counts, json!({"failed": 2}));
    assert_eq!(
        store.runs(Some("hr-to-ad/groups"), 10).unwrap()[0].status,
        "refused"
    );

    // Limit.
    assert_eq!(store.runs(None, 2).unwrap().len(), 2);
    assert_eq!(store.runs(None, 2).unwrap()[1].id, d);
    assert_eq!(store.runs(Some("hr-to-ad/users"), 1).unwrap()[0].id, d);
    assert!(store.runs(None, 0).unwrap().is_empty());
    assert_eq!(store.runs(None, usize::MAX).unwrap().len(), 5);
    assert!(store.runs(Some("nothing"), 10).unwrap().is_empty());

    // Refusals.
    let e = store.start_run("", "step", None).unwrap_err();
    assert!(e.to_string().starts_with("invalid run name"), "{e}");
    let e = store.start_run("x", "job", None).unwrap_err();
    assert!(e.to_string().starts_with("invalid run kind"), "{e}");
    let e = store.finish_run(d, "done", &json!({}), None).unwrap_err();
    assert!(e.to_string().starts_with("invalid run status"), "{e}");
    assert!(store.finish_run(d, "running", &json!({}), None).is_err());
    let e = store
        .finish_run(999_999, "ok", &json!({}), None)
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NoSuchRun { id: 999_999, .. }),
        "{e}"
    );
    assert!(store.runs(Some(""), 10).is_err());
    assert_eq!(store.runs(None, 100).unwrap().len(), 5);
    store
        .finish_run(b, "ok", &json!({}), None)
        .expect("finish the run left open above");
}

/// Leases: take, refuse while the holder lives, all or none, heartbeat,
/// release, take over a dead holder and only then mark its runs interrupted.
fn contract_leases(store: &dyn StateStore) {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let holder = |owner: &str, host: &str, pid: u32, token: &str| Lease {
        name: String::new(),
        owner: owner.into(),
        host: host.into(),
        pid,
        token: token.into(),
        since_ms: 0,
        heartbeat_ms: 0,
    };
    let alive = |_: &Lease| false;
    let gone = |_: &Lease| true;
    assert!(store.leases().unwrap().is_empty());

    // A step run takes its lease; since and heartbeat are now.
    let before = now_ms();
    let a = holder("hr/users", "host-a", 41, "tok-a");
    let got = store
        .take_leases(&names(&["hr/users"]), &a, &alive)
        .unwrap();
    assert_eq!(
        got,
        LeaseTake::Taken {
            taken_over: vec![],
            interrupted: vec![]
        }
    );
    let held = store.leases().unwrap();
    assert_eq!(held.len(), 1);
    let l = &held[0];
    assert_eq!(
        (
            l.name.as_str(),
            l.owner.as_str(),
            l.host.as_str(),
            l.pid,
            l.token.as_str()
        ),
        ("hr/users", "hr/users", "host-a", 41, "tok-a")
    );
    assert!(l.since_ms >= before && l.since_ms <= now_ms() + 1);
    assert_eq!(l.heartbeat_ms, l.since_ms);
    let run_a = store.start_run("hr/users", "step", None).unwrap();

    // A second holder is refused while the first lives, and learns who holds it.
    let b = holder("hr", "host-b", 42, "tok-b");
    let got = store
        .take_leases(&names(&["hr/groups", " hr/users "]), &b, &alive)
        .unwrap();
    assert_eq!(got, LeaseTake::Held(l.clone()));
    // All or none: the free step of the refused workflow was not taken either.
    assert_eq!(store.leases().unwrap().len(), 1);
    // The live run was not touched.
    assert_eq!(
        store.runs(Some("hr/users"), 1).unwrap()[0].status,
        "running"
    );

    // Heartbeats and releases need the token.
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(
        store
            .heartbeat_leases(&names(&["hr/users"]), "tok-b")
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .heartbeat_leases(&names(&["hr/users", "other"]), "tok-a")
            .unwrap(),
        1
    );
    let beat = store.leases().unwrap()[0].heartbeat_ms;
    assert!(beat > l.since_ms, "{beat} {}", l.since_ms);
    assert_eq!(store.leases().unwrap()[0].since_ms, l.since_ms);
    assert_eq!(
        store
            .release_leases(&names(&["hr/users"]), "tok-b")
            .unwrap(),
        0
    );
    assert_eq!(store.leases().unwrap().len(), 1);
    // Taking again with the same token renews rather than refuses.
    assert!(matches!(
        store
            .take_leases(&names(&["hr/users"]), &a, &alive)
            .unwrap(),
        LeaseTake::Taken { .. }
    ));

    // The holder dies: the next taker replaces its lease, and only now is
    // its run marked interrupted (the workflow's own stale run too).
    let stale_wf = store.start_run("hr", "workflow", None).unwrap();
    let other = store.start_run("elsewhere", "step", None).unwrap();
    let got = store
        .take_leases(&names(&["hr/users", "hr/groups"]), &b, &gone)
        .unwrap();
    let LeaseTake::Taken {
        taken_over,
        mut interrupted,
    } = got
    else {
        panic!("not taken: {got:?}")
    };
    assert_eq!(taken_over.len(), 1);
    assert_eq!(
        (taken_over[0].pid, taken_over[0].token.as_str()),
        (41, "tok-a")
    );
    interrupted.sort();
    assert_eq!(interrupted, [run_a, stale_wf]);
    let r = &store.runs(Some("hr/users"), 1).unwrap()[0];
    assert_eq!(
        (r.id, r.status.as_str(), r.message.as_deref()),
        (run_a, "interrupted", Some(INTERRUPTED_MESSAGE))
    );
    assert!(r.finished_ms.is_some());
    assert_eq!(
        store.runs(Some("elsewhere"), 1).unwrap()[0].status,
        "running"
    );
    let held: Vec<(String, String, String)> = store
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| (l.name, l.owner, l.token))
        .collect();
    assert_eq!(
        held,
        [
            (
                "hr/groups".to_string(),
                "hr".to_string(),
                "tok-b".to_string()
            ),
            ("hr/users".into(), "hr".into(), "tok-b".into()),
        ]
    );
    // The dead holder's late heartbeat or release changes nothing.
    assert_eq!(
        store
            .heartbeat_leases(&names(&["hr/users"]), "tok-a")
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .release_leases(&names(&["hr/users"]), "tok-a")
            .unwrap(),
        0
    );
    // Release frees both; then anyone may take them.
    assert_eq!(
        store
            .release_leases(&names(&["hr/users", "hr/groups"]), "tok-b")
            .unwrap(),
        2
    );
    assert!(store.leases().unwrap().is_empty());
    assert!(matches!(
        store
            .take_leases(&names(&["hr/users"]), &a, &alive)
            .unwrap(),
        LeaseTake::Taken { .. }
    ));
    assert_eq!(
        store
            .release_leases(&names(&["hr/users"]), "tok-a")
            .unwrap(),
        1
    );

    // Two threads racing for one lease: exactly one wins.
    let winners = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let winners = &winners;
            s.spawn(move || {
                let h = holder("race", "host", t, &format!("tok-race-{t}"));
                if let LeaseTake::Taken { .. } =
                    store.take_leases(&names(&["race"]), &h, &alive).unwrap()
                {
                    winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(winners.into_inner(), 1);
    let t = store.leases().unwrap()[0].token.clone();
    assert_eq!(store.release_leases(&names(&["race"]), &t).unwrap(), 1);

    // Bad names are refused; an empty list takes nothing and is no error.
    let e = store
        .take_leases(&names(&["a\nb"]), &a, &alive)
        .unwrap_err();
    assert!(e.to_string().starts_with("invalid step name"), "{e}");
    assert!(matches!(
        store.take_leases(&[], &a, &alive).unwrap(),
        LeaseTake::Taken { .. }
    ));
    assert!(store.leases().unwrap().is_empty());
    store
        .finish_run(other, "ok", &serde_json::json!({}), None)
        .unwrap();
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
