//! The shared state store on SQL Server ([`MssqlStore`]): the same
//! [`StateStore`] semantics as the SQLite file and the PostgreSQL store, in
//! a SQL Server (2016 or later) database that several idsync processes on
//! several machines use at once.
//!
//! - **Connection**: the SQL connector's tiberius code
//!   ([`crate::connector::sql::mssql`]): `mssql://user@host:port/db` or an
//!   ADO.NET string, SQL Server logins, the password never in the location
//!   (it comes from `IDSYNC_STORE_PASSWORD`, see [`super::select`]), TLS
//!   required and verified by default (`IDSYNC_STORE_CA_FILE` adds a CA;
//!   `TrustServerCertificate=true` accepts any certificate, with a warning).
//! - **Sync over async**: like the PostgreSQL store, a small current-thread
//!   runtime and one session behind a mutex; a call made from inside
//!   another runtime runs on a scoped thread. A lost session is reopened on
//!   the next call.
//! - **Statements**: all of them are in [`tsql`] (consts, or built from
//!   flags and counts), values always parameters; lists are one JSON
//!   parameter read with `OPENJSON`.
//! - **Schema**: tables prefixed `idsync_`, versioned in `idsync_schema`,
//!   created on first use and migrated forward in one transaction under
//!   `sp_getapplock`; a newer version than this build knows is refused.
//! - **One clock and leases**: every time the store sets is the server's
//!   (`SYSUTCDATETIME()`); [`StateStore::take_leases`] runs in one
//!   transaction under an application lock, and shows the caller's check
//!   each lease in the caller's clock, as the PostgreSQL store does.

pub mod tsql;

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard};

use tiberius::ToSql;

use super::{
    INTERRUPTED_MESSAGE, Lease, LeaseTake, Link, Profile, RunRecord, Snapshot, StateStore,
    StoreError,
    snapshot::{self, Item},
    validate_final_status, validate_name, validate_run_kind,
};
use crate::connector::sql::mssql::{self, MsClient, MsTarget};
use crate::model::Secret;

pub use tsql::MIGRATIONS;

/// Items per statement for lists (links written, anchors looked up or removed).
const CHUNK: usize = 10_000;
/// Rows per keyset page when reading every link of a step.
const PAGE: i64 = 10_000;

/// A [`StateStore`] in a SQL Server database. Thread-safe (one session
/// behind a mutex); any number of processes may share the database.
pub struct MssqlStore {
    shown: String,
    target: MsTarget,
    inner: Mutex<Inner>,
}

struct Inner {
    rt: tokio::runtime::Runtime,
    client: Option<MsClient>,
}

impl std::fmt::Debug for MssqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MssqlStore")
            .field("url", &self.shown)
            .finish()
    }
}

/// A cell as read back: the store's columns are texts and integers.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Other(&'static str),
}

type Row = Vec<Cell>;

fn cell(d: &tiberius::ColumnData<'_>) -> Cell {
    use tiberius::ColumnData as D;
    let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
    match d {
        D::String(s) => s.as_ref().map_or(Cell::Null, |s| Cell::Text(s.to_string())),
        D::I64(v) => int(*v),
        D::I32(v) => int(v.map(i64::from)),
        D::I16(v) => int(v.map(i64::from)),
        D::U8(v) => int(v.map(i64::from)),
        _ => Cell::Other("a value of another type"),
    }
}

/// One session, for the statements of one call.
struct Db<'a> {
    rt: &'a tokio::runtime::Runtime,
    c: RefCell<&'a mut MsClient>,
    shown: &'a str,
    lost: &'a std::cell::Cell<bool>,
}

impl Db<'_> {
    /// A tiberius error in an administrator's words; a lost session is noted
    /// so that the next call opens a new one.
    fn err(&self, e: tiberius::error::Error) -> StoreError {
        use tiberius::error::Error as E;
        let cause = match &e {
            E::Server(te) => {
                if matches!(te.code(), 233 | 10053 | 10054) {
                    self.lost.set(true);
                }
                format!("{} [SQL Server error {}]", te.message(), te.code())
            }
            E::Io { message, .. } => {
                self.lost.set(true);
                format!("the database connection was lost: {message}")
            }
            E::Protocol(m) => {
                self.lost.set(true);
                format!("the database connection failed: {m}")
            }
            other => other.to_string(),
        };
        StoreError::Database {
            url: self.shown.to_string(),
            cause,
        }
    }

    fn data(&self, what: &str, cause: impl Into<String>) -> StoreError {
        StoreError::Data {
            path: self.shown.into(),
            what: what.to_string(),
            cause: cause.into(),
        }
    }

    /// The rows of every result set of `sql`.
    fn query(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<Row>, StoreError> {
        let mut c = self.c.borrow_mut();
        let r = self.rt.block_on(async {
            let stream = c.query(sql, params).await?;
            stream.into_results().await
        });
        let sets = r.map_err(|e| self.err(e))?;
        Ok(sets
            .iter()
            .flatten()
            .map(|r| r.cells().map(|(_, d)| cell(d)).collect())
            .collect())
    }

    /// The number of rows `sql` changed.
    fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> Result<u64, StoreError> {
        let mut c = self.c.borrow_mut();
        let r = self.rt.block_on(c.execute(sql, params));
        r.map(|r| r.total()).map_err(|e| self.err(e))
    }

    /// A batch without parameters (schema, locks), and its rows.
    fn batch(&self, sql: &str) -> Result<Vec<Row>, StoreError> {
        let mut c = self.c.borrow_mut();
        let r = self
            .rt
            .block_on(async { c.simple_query(sql).await?.into_results().await });
        let sets = r.map_err(|e| self.err(e))?;
        Ok(sets
            .iter()
            .flatten()
            .map(|r| r.cells().map(|(_, d)| cell(d)).collect())
            .collect())
    }

    /// Runs `f` in a transaction: committed when it returns Ok, rolled back otherwise.
    fn tx<T>(&self, f: impl FnOnce(&Self) -> Result<T, StoreError>) -> Result<T, StoreError> {
        {
            let mut c = self.c.borrow_mut();
            let r = self.rt.block_on(c.begin_transaction());
            r.map_err(|e| self.err(e))?;
        }
        match f(self) {
            Ok(v) => {
                let mut c = self.c.borrow_mut();
                let r = self.rt.block_on(c.commit_transaction());
                r.map_err(|e| self.err(e))?;
                Ok(v)
            }
            Err(e) => {
                if !self.lost.get() {
                    let mut c = self.c.borrow_mut();
                    // XACT_ABORT may have ended it already; nothing to report then.
                    let _ = self.rt.block_on(c.rollback_transaction());
                }
                Err(e)
            }
        }
    }

    fn now(&self) -> Result<i64, StoreError> {
        let rows = self.query(&tsql::now(), &[])?;
        int(self, rows.first(), 0, "the server clock")
    }
}

fn int(db: &Db, row: Option<&Row>, i: usize, what: &str) -> Result<i64, StoreError> {
    match row.and_then(|r| r.get(i)) {
        Some(Cell::Int(n)) => Ok(*n),
        Some(c) => Err(db.data(what, format!("expected a number, got {c:?}"))),
        None => Err(db.data(what, "the server returned no row")),
    }
}

fn opt_int(db: &Db, r: &Row, i: usize, what: &str) -> Result<Option<i64>, StoreError> {
    match r.get(i) {
        Some(Cell::Null) => Ok(None),
        _ => int(db, Some(r), i, what).map(Some),
    }
}

fn opt_text(db: &Db, r: &Row, i: usize, what: &str) -> Result<Option<String>, StoreError> {
    match r.get(i) {
        Some(Cell::Null) => Ok(None),
        Some(Cell::Text(s)) => Ok(Some(s.clone())),
        Some(c) => Err(db.data(what, format!("expected text, got {c:?}"))),
        None => Err(db.data(what, format!("the row has no column {i}"))),
    }
}

fn text(db: &Db, r: &Row, i: usize, what: &str) -> Result<String, StoreError> {
    opt_text(db, r, i, what)?.ok_or_else(|| db.data(what, format!("column {i} is NULL")))
}

fn row_to_link(db: &Db, r: &Row) -> Result<Link, StoreError> {
    let w = "a link";
    Ok(Link {
        source_anchor: text(db, r, 0, w)?,
        target_anchor: text(db, r, 1, w)?,
        target_dn: text(db, r, 2, w)?,
        source_hash: opt_text(db, r, 3, w)?,
        desired_dn: opt_text(db, r, 4, w)?,
        updated_ms: int(db, Some(r), 5, w)?,
    })
}

fn row_to_lease(db: &Db, r: &Row) -> Result<Lease, StoreError> {
    let w = "a lease";
    Ok(Lease {
        name: text(db, r, 0, w)?,
        owner: text(db, r, 1, w)?,
        host: text(db, r, 2, w)?,
        pid: u32::try_from(int(db, Some(r), 3, w)?).unwrap_or(0),
        token: text(db, r, 4, w)?,
        since_ms: int(db, Some(r), 5, w)?,
        heartbeat_ms: int(db, Some(r), 6, w)?,
    })
}

fn row_to_profile(db: &Db, r: &Row) -> Result<Profile, StoreError> {
    let name = text(db, r, 0, "a profile")?;
    let what = format!("profile {name:?}");
    let data = text(db, r, 2, &what)?;
    let data = serde_json::from_str(&data)
        .map_err(|e| db.data(&what, format!("stored data is not valid JSON ({e})")))?;
    Ok(Profile {
        kind: text(db, r, 1, &what)?,
        data,
        updated_ms: int(db, Some(r), 3, &what)?,
        name,
    })
}

fn row_to_run(db: &Db, r: &Row) -> Result<RunRecord, StoreError> {
    let id = int(db, Some(r), 0, "a run")?;
    let what = format!("run {id}");
    let counts = text(db, r, 6, &what)?;
    let counts = serde_json::from_str(&counts).map_err(|e| {
        db.data(
            &format!("counts of {what}"),
            format!("not valid JSON ({e})"),
        )
    })?;
    Ok(RunRecord {
        id,
        name: text(db, r, 1, &what)?,
        kind: text(db, r, 2, &what)?,
        started_ms: int(db, Some(r), 3, &what)?,
        finished_ms: opt_int(db, r, 4, &what)?,
        status: text(db, r, 5, &what)?,
        counts,
        message: opt_text(db, r, 7, &what)?,
        log_path: opt_text(db, r, 8, &what)?,
    })
}

/// A list as the JSON array parameter the statements read with `OPENJSON`.
fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    serde_json::Value::from(items.iter().map(|s| s.as_ref()).collect::<Vec<_>>()).to_string()
}

/// A target anchor as the store compares it: ASCII letters lowered, nothing else changed.
pub fn fold_target(anchor: &str) -> String {
    anchor.to_ascii_lowercase()
}

/// Links as the JSON array [`tsql::upsert_links`] reads.
fn links_json(links: &[Link]) -> String {
    let v: Vec<serde_json::Value> = links
        .iter()
        .map(|l| {
            serde_json::json!({
                "sa": l.source_anchor, "ta": l.target_anchor,
                "tf": fold_target(&l.target_anchor), "dn": l.target_dn,
                "sh": l.source_hash, "dd": l.desired_dn, "up": l.updated_ms,
            })
        })
        .collect();
    serde_json::Value::from(v).to_string()
}

/// Runs as the JSON array [`tsql::IMPORT_RUNS`] reads (`counts` as text).
fn runs_json(runs: &[RunRecord]) -> String {
    let v: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "name": r.name, "kind": r.kind, "started_ms": r.started_ms,
                "finished_ms": r.finished_ms, "status": r.status,
                "counts": r.counts.to_string(), "message": r.message, "log_path": r.log_path,
            })
        })
        .collect();
    serde_json::Value::from(v).to_string()
}

impl MssqlStore {
    /// Connects to the store at `url` (`mssql://user@host:port/db` or an
    /// ADO.NET string; the password from `password`; TLS verified against
    /// `ca_file` or the system roots unless the location says
    /// `TrustServerCertificate=true`), creates or migrates the schema, and
    /// refuses a schema newer than this build's.
    pub fn open(
        url: &str,
        password: Option<&Secret>,
        ca_file: Option<String>,
    ) -> Result<Self, StoreError> {
        let target =
            mssql::target(url, password, ca_file, true).map_err(|e| StoreError::Database {
                url: super::select::shown(url),
                cause: e.to_string(),
            })?;
        if let Some(w) = &target.warning {
            eprintln!("warning: state store {w}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database {
                url: target.shown.clone(),
                cause: format!("cannot start the I/O runtime: {e}"),
            })?;
        let store = MssqlStore {
            shown: target.shown.clone(),
            target,
            inner: Mutex::new(Inner { rt, client: None }),
        };
        store.with(migrate)?;
        Ok(store)
    }

    /// The store's location as shown in messages (never with a password).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with the session (opened, or reopened when lost, first). From
    /// inside a tokio runtime the work runs on a scoped thread of its own.
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let work = move || -> Result<T, StoreError> {
            if inner.client.is_none() {
                let c = inner.rt.block_on(open_session(&self.target))?;
                inner.client = Some(c);
            }
            let Some(c) = inner.client.as_mut() else {
                return Err(StoreError::Database {
                    url: self.shown.clone(),
                    cause: "no session".into(),
                });
            };
            let lost = std::cell::Cell::new(false);
            let r = f(&Db {
                rt: &inner.rt,
                c: RefCell::new(c),
                shown: &self.shown,
                lost: &lost,
            });
            if lost.get() {
                inner.client = None;
            }
            r
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| match s.spawn(work).join() {
                Ok(r) => r,
                Err(_) => Err(StoreError::Database {
                    url: self.shown.clone(),
                    cause: "the store's worker thread failed".into(),
                }),
            })
        } else {
            work()
        }
    }

    fn upsert_links(
        &self,
        step: &str,
        links: &[Link],
        deprovisioned: bool,
    ) -> Result<(), StoreError> {
        let step = validate_name("step name", step)?;
        if links.is_empty() {
            return Ok(());
        }
        // MERGE cannot write a row twice: an anchor given twice keeps its last link.
        let links = snapshot::last_per_anchor(links);
        let sql = tsql::upsert_links(deprovisioned);
        self.with(|db| {
            db.tx(|db| {
                for chunk in links.chunks(CHUNK) {
                    let json = links_json(chunk);
                    db.execute(&sql, &[&step, &json])?;
                }
                Ok(())
            })
        })
    }

    /// Every link of `step`, live or deprovisioned, read in keyset pages.
    fn select_links(&self, step: &str, deprovisioned: bool) -> Result<Vec<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        let first = tsql::links_page(deprovisioned, false);
        let next = tsql::links_page(deprovisioned, true);
        self.with(|db| {
            let mut out: Vec<Link> = Vec::new();
            loop {
                let rows = match out.last() {
                    None => db.query(&first, &[&step, &PAGE])?,
                    Some(l) => {
                        let after = l.source_anchor.clone();
                        db.query(&next, &[&step, &PAGE, &after])?
                    }
                };
                let n = rows.len();
                for r in &rows {
                    out.push(row_to_link(db, r)?);
                }
                if (n as i64) < PAGE {
                    return Ok(out);
                }
            }
        })
    }

    /// Runs `sql` (parameters: the names as JSON, the token) after checking the names.
    fn each_lease(&self, names: &[String], sql: &str, token: &str) -> Result<usize, StoreError> {
        let names = names
            .iter()
            .map(|n| validate_name("step name", n).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        let json = json_list(&names);
        let n = self.with(|db| db.execute(sql, &[&json, &token]))?;
        Ok(n as usize)
    }
}

/// Opens a session and sets it up ([`tsql::SESSION_SETUP`]).
async fn open_session(t: &MsTarget) -> Result<MsClient, StoreError> {
    let err = |cause: String| StoreError::Database {
        url: t.shown.clone(),
        cause,
    };
    let mut c = mssql::open(t).await.map_err(|e| {
        // The connector's messages begin with the location: said once is enough.
        let m = e.to_string();
        err(m
            .strip_prefix(&format!("{}: ", t.shown))
            .map(str::to_string)
            .unwrap_or(m))
    })?;
    let setup = async {
        c.simple_query(tsql::SESSION_SETUP)
            .await?
            .into_results()
            .await
    };
    setup
        .await
        .map_err(|e| err(format!("cannot set up the session: {e}")))?;
    Ok(c)
}

/// Creates the schema or brings it up to [`MIGRATIONS`]`.len()`, in one
/// transaction under an application lock; refuses a newer schema.
fn migrate(db: &Db) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    let too_new = |found| StoreError::TooNew {
        path: db.shown.into(),
        found,
        supported,
    };
    let version = |db: &Db| -> Result<Option<i64>, StoreError> {
        let rows = db.batch(tsql::SCHEMA_VERSION)?;
        match rows.first() {
            None => Ok(None),
            Some(r) => opt_int(db, r, 0, "the schema version"),
        }
    };
    // Fast path: an up-to-date store needs no lock.
    match version(db)? {
        Some(v) if v > supported => return Err(too_new(v)),
        Some(v) if v == supported => return Ok(()),
        _ => {}
    }
    db.tx(|db| {
        db.batch(&tsql::applock(tsql::MIGRATE_LOCK))?;
        db.batch(tsql::CREATE_SCHEMA_TABLE)?;
        let found = version(db)?.unwrap_or(0);
        if found > supported {
            return Err(too_new(found));
        }
        for step in MIGRATIONS.iter().skip(found.max(0) as usize) {
            for statement in step.iter() {
                db.batch(statement)?;
            }
        }
        if found < supported {
            db.execute(tsql::SET_VERSION, &[&supported])?;
        }
        Ok(())
    })
}

impl StateStore for MssqlStore {
    fn put_profile(
        &self,
        name: &str,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let name = validate_name("profile name", name)?;
        let kind = validate_name("connection kind", kind)?;
        let json = data.to_string();
        let sql = tsql::put_profile();
        self.with(|db| db.execute(&sql, &[&name, &kind, &json]))?;
        Ok(())
    }

    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError> {
        let name = validate_name("profile name", name)?;
        self.with(|db| {
            let rows = db.query(tsql::GET_PROFILE, &[&name])?;
            rows.first().map(|r| row_to_profile(db, r)).transpose()
        })
    }

    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.with(|db| {
            let rows = db.query(tsql::LIST_PROFILES, &[])?;
            rows.iter().map(|r| row_to_profile(db, r)).collect()
        })
    }

    fn remove_profile(&self, name: &str) -> Result<bool, StoreError> {
        let name = validate_name("profile name", name)?;
        Ok(self.with(|db| db.execute(tsql::REMOVE_PROFILE, &[&name]))? > 0)
    }

    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = validate_name("setting key", key)?;
        self.with(|db| {
            let rows = db.query(tsql::GET_SETTING, &[&key])?;
            rows.first()
                .map(|r| text(db, r, 0, &format!("setting {key:?}")))
                .transpose()
        })
    }

    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let key = validate_name("setting key", key)?;
        let sql = tsql::put_setting();
        self.with(|db| db.execute(&sql, &[&key, &value]))?;
        Ok(())
    }

    fn list_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|db| {
            let rows = db.query(tsql::LIST_SETTINGS, &[])?;
            rows.iter()
                .map(|r| Ok((text(db, r, 0, "a setting")?, text(db, r, 1, "a setting")?)))
                .collect()
        })
    }

    fn remove_setting(&self, key: &str) -> Result<bool, StoreError> {
        let key = validate_name("setting key", key)?;
        Ok(self.with(|db| db.execute(tsql::REMOVE_SETTING, &[&key]))? > 0)
    }

    fn links(&self, step: &str) -> Result<Vec<Link>, StoreError> {
        self.select_links(step, false)
    }

    fn put_links(&self, step: &str, links: &[Link]) -> Result<(), StoreError> {
        self.upsert_links(step, links, false)
    }

    fn remove_links(&self, step: &str, source_anchors: &[String]) -> Result<usize, StoreError> {
        let step = validate_name("step name", step)?;
        if source_anchors.is_empty() {
            return Ok(0);
        }
        let sql = tsql::remove_links();
        let n = self.with(|db| {
            db.tx(|db| {
                let mut n = 0;
                for chunk in source_anchors.chunks(CHUNK) {
                    let json = json_list(chunk);
                    n += db.execute(&sql, &[&step, &json])?;
                }
                Ok(n)
            })
        })?;
        Ok(n as usize)
    }

    fn link_count(&self, step: &str) -> Result<usize, StoreError> {
        let step = validate_name("step name", step)?;
        let n = self.with(|db| {
            let rows = db.query(tsql::LINK_COUNT, &[&step])?;
            int(db, rows.first(), 0, "the link count")
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn links_of(&self, step: &str, source_anchors: &[String]) -> Result<Vec<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        if source_anchors.is_empty() {
            return Ok(Vec::new());
        }
        let sql = tsql::links_of();
        self.with(|db| {
            let mut out = Vec::new();
            for chunk in source_anchors.chunks(CHUNK) {
                let json = json_list(chunk);
                for r in db.query(&sql, &[&step, &json])? {
                    out.push(row_to_link(db, &r)?);
                }
            }
            // An anchor in two chunks was found twice.
            let mut seen = std::collections::HashSet::new();
            out.retain(|l: &Link| seen.insert(l.source_anchor.clone()));
            Ok(out)
        })
    }

    fn links_not_in(&self, step: &str, present: &[String]) -> Result<Vec<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        let sql = tsql::links_not_in();
        let json = json_list(present);
        self.with(|db| {
            db.query(&sql, &[&step, &json])?
                .iter()
                .map(|r| row_to_link(db, r))
                .collect()
        })
    }

    fn link_to_target(&self, step: &str, target_anchor: &str) -> Result<Option<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        let fold = fold_target(target_anchor);
        let sql = tsql::link_to_target();
        self.with(|db| {
            db.query(&sql, &[&step, &fold])?
                .first()
                .map(|r| row_to_link(db, r))
                .transpose()
        })
    }

    fn deprovisioned_links(&self, step: &str) -> Result<Vec<Link>, StoreError> {
        self.select_links(step, true)
    }

    fn keep_deprovisioned(&self, step: &str, links: &[Link]) -> Result<(), StoreError> {
        self.upsert_links(step, links, true)
    }

    fn step_names(&self) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            db.query(tsql::STEP_NAMES, &[])?
                .iter()
                .map(|r| text(db, r, 0, "a step name"))
                .collect()
        })
    }

    fn take_leases(
        &self,
        names: &[String],
        holder: &Lease,
        dead: &dyn Fn(&Lease) -> bool,
    ) -> Result<LeaseTake, StoreError> {
        let mut wanted: Vec<String> = Vec::new();
        for n in names {
            let n = validate_name("step name", n)?.to_string();
            if !wanted.contains(&n) {
                wanted.push(n);
            }
        }
        let owner = validate_name("run name", &holder.owner)?.to_string();
        // The transaction runs in one call of `with`, possibly on a thread of
        // its own; `dead` (the caller's, not Send) is asked back on this thread.
        let (ask_tx, ask_rx) = std::sync::mpsc::channel::<(Lease, std::sync::mpsc::Sender<bool>)>();
        let pid = i64::from(holder.pid);
        let host = holder.host.clone();
        let token = holder.token.clone();
        std::thread::scope(|s| {
            let work = s.spawn(move || {
                self.with(move |db| {
                    db.tx(|db| {
                        db.batch(&tsql::applock(tsql::LEASE_LOCK))?;
                        let db_now = db.now()?;
                        let offset = super::now_ms() - db_now;
                        let listed = json_list(&wanted);
                        let current = db
                            .query(&tsql::leases_for_update(), &[&listed])?
                            .iter()
                            .map(|r| row_to_lease(db, r))
                            .collect::<Result<Vec<Lease>, _>>()?;
                        let mut taken_over = Vec::new();
                        let mut renewed: Vec<String> = Vec::new();
                        for n in &wanted {
                            let Some(l) = current.iter().find(|l| &l.name == n) else {
                                continue;
                            };
                            if l.token == token {
                                renewed.push(n.clone());
                                continue;
                            }
                            let seen = Lease {
                                since_ms: l.since_ms + offset,
                                heartbeat_ms: l.heartbeat_ms + offset,
                                ..l.clone()
                            };
                            let (reply_tx, reply_rx) = std::sync::mpsc::channel();
                            let is_dead = ask_tx.send((seen, reply_tx)).is_ok()
                                && reply_rx.recv().unwrap_or(false);
                            if is_dead {
                                taken_over.push(l.clone());
                            } else {
                                // Nothing was written: the commit only ends the locks.
                                return Ok(LeaseTake::Held(l.clone()));
                            }
                        }
                        if wanted.is_empty() {
                            return Ok(LeaseTake::Taken {
                                taken_over,
                                interrupted: Vec::new(),
                            });
                        }
                        db.execute(
                            &tsql::upsert_leases(),
                            &[&listed, &owner, &host, &pid, &token, &db_now],
                        )?;
                        let mut gone: Vec<String> = wanted
                            .iter()
                            .filter(|n| !renewed.contains(n))
                            .cloned()
                            .chain(taken_over.iter().map(|l: &Lease| l.owner.clone()))
                            .collect();
                        if renewed.is_empty() {
                            gone.push(owner.clone());
                        }
                        gone.sort_unstable();
                        gone.dedup();
                        let gone = json_list(&gone);
                        let message = INTERRUPTED_MESSAGE;
                        let rows =
                            db.query(&tsql::interrupt_runs(), &[&gone, &db_now, &message])?;
                        let mut interrupted = rows
                            .iter()
                            .map(|r| int(db, Some(r), 0, "an interrupted run"))
                            .collect::<Result<Vec<i64>, _>>()?;
                        interrupted.sort_unstable();
                        Ok(LeaseTake::Taken {
                            taken_over,
                            interrupted,
                        })
                    })
                })
            });
            for (lease, reply) in ask_rx {
                let _ = reply.send(dead(&lease));
            }
            work.join().unwrap_or_else(|_| {
                Err(StoreError::Database {
                    url: self.shown.clone(),
                    cause: "the store's worker thread failed".into(),
                })
            })
        })
    }

    fn heartbeat_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError> {
        self.each_lease(names, &tsql::heartbeat_leases(), token)
    }

    fn release_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError> {
        self.each_lease(names, &tsql::release_leases(), token)
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.with(|db| {
            db.query(tsql::LEASES, &[])?
                .iter()
                .map(|r| row_to_lease(db, r))
                .collect()
        })
    }

    fn start_run(&self, name: &str, kind: &str, log_path: Option<&str>) -> Result<i64, StoreError> {
        let name = validate_name("run name", name)?;
        let kind = validate_run_kind(kind)?;
        let log_path = log_path.map(str::to_string);
        let sql = tsql::start_run();
        self.with(|db| {
            let rows = db.query(&sql, &[&name, &kind, &log_path])?;
            int(db, rows.first(), 0, "the new run's id")
        })
    }

    fn finish_run(
        &self,
        id: i64,
        status: &str,
        counts: &serde_json::Value,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let status = validate_final_status(status)?;
        let counts = counts.to_string();
        let message = message.map(str::to_string);
        let sql = tsql::finish_run();
        let n = self.with(|db| db.execute(&sql, &[&id, &status, &counts, &message]))?;
        if n == 0 {
            return Err(StoreError::NoSuchRun {
                path: self.shown.clone().into(),
                id,
            });
        }
        Ok(())
    }

    fn runs(&self, name: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let name = name.map(|n| validate_name("run name", n)).transpose()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|db| {
            let rows = match name {
                Some(name) => db.query(&tsql::runs(true), &[&limit, &name])?,
                None => db.query(&tsql::runs(false), &[&limit])?,
            };
            rows.iter().map(|r| row_to_run(db, r)).collect()
        })
    }

    fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        self.with(|db| {
            db.tx(|db| {
                for chunk in runs.chunks(CHUNK) {
                    let json = runs_json(chunk);
                    db.execute(tsql::IMPORT_RUNS, &[&json])?;
                }
                Ok(())
            })
        })
    }

    fn import_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        for p in profiles {
            validate_name("profile name", &p.name)?;
        }
        self.with(|db| {
            db.tx(|db| {
                for p in profiles {
                    let name = p.name.trim();
                    let data = p.data.to_string();
                    db.execute(
                        tsql::IMPORT_PROFILE,
                        &[&name, &p.kind, &data, &p.updated_ms],
                    )?;
                }
                Ok(())
            })
        })
    }

    fn import_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let setting = tsql::put_setting();
        let links_sql = [tsql::upsert_links(false), tsql::upsert_links(true)];
        self.with(|db| {
            db.tx(|db| {
                snapshot::each_item(snapshot, |item| match item {
                    Item::Profile(p) => {
                        let name = validate_name("profile name", &p.name)?;
                        let data = p.data.to_string();
                        db.execute(
                            tsql::IMPORT_PROFILE,
                            &[&name, &p.kind, &data, &p.updated_ms],
                        )
                        .map(|_| ())
                    }
                    Item::Setting(k, v) => {
                        let k = validate_name("setting key", k)?;
                        db.execute(&setting, &[&k, &v]).map(|_| ())
                    }
                    Item::Links(step, links, deprovisioned) => {
                        let step = validate_name("step name", step)?;
                        let links = snapshot::last_per_anchor(links);
                        for chunk in links.chunks(CHUNK) {
                            let json = links_json(chunk);
                            db.execute(&links_sql[usize::from(deprovisioned)], &[&step, &json])?;
                        }
                        Ok(())
                    }
                    Item::Runs(runs) => {
                        for chunk in runs.chunks(CHUNK) {
                            let json = runs_json(chunk);
                            db.execute(tsql::IMPORT_RUNS, &[&json])?;
                        }
                        Ok(())
                    }
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_links_travel_as_json_the_statements_read() {
        assert_eq!(
            json_list(&["a\"b", "Zoë", "x'; DROP TABLE t --"]),
            r#"["a\"b","Zoë","x'; DROP TABLE t --"]"#
        );
        let l = Link {
            source_anchor: "S-1".into(),
            target_anchor: "AbC-É".into(),
            target_dn: "CN=x".into(),
            source_hash: None,
            desired_dn: Some("CN=y".into()),
            updated_ms: 7,
        };
        let v: serde_json::Value = serde_json::from_str(&links_json(&[l])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"sa": "S-1", "ta": "AbC-É", "tf": "abc-É", "dn": "CN=x",
                                "sh": null, "dd": "CN=y", "up": 7}])
        );
        // The JSON keys are those the statements' OPENJSON paths name.
        for k in ["sa", "ta", "tf", "dn", "sh", "dd", "up"] {
            assert!(
                tsql::upsert_links(false).contains(&format!("'$.{k}'")),
                "{k}"
            );
        }
        let r = RunRecord {
            id: 3,
            name: "n".into(),
            kind: "step".into(),
            started_ms: 1,
            finished_ms: None,
            status: "ok".into(),
            counts: serde_json::json!({"created": 1}),
            message: None,
            log_path: None,
        };
        let v: serde_json::Value = serde_json::from_str(&runs_json(&[r])).unwrap();
        for (k, _) in v[0].as_object().unwrap() {
            assert!(tsql::IMPORT_RUNS.contains(&format!("'$.{k}'")), "{k}");
        }
        assert_eq!(v[0]["counts"], r#"{"created":1}"#);
    }
}
