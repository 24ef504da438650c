//! The embedded state store: one SQLite file (`IDSYNC_HOME/state.db` by
//! default), owner-only (0600), WAL journal, 30 s busy timeout, schema
//! versioned by `PRAGMA user_version` and migrated on open.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::{
    INTERRUPTED_MESSAGE, Lease, LeaseTake, Link, Profile, RunRecord, Snapshot, StateStore,
    StoreError, now_ms,
    snapshot::{self, Item},
    validate_final_status, validate_name, validate_run_kind,
};

/// Schema migrations, applied in order: entry `i` takes the schema from
/// version `i` to `i + 1`. Append new entries; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: connection profiles and settings.
    "CREATE TABLE profile (
        name       TEXT PRIMARY KEY NOT NULL,
        kind       TEXT NOT NULL,
        data       TEXT NOT NULL,          -- JSON
        updated_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE setting (
        key        TEXT PRIMARY KEY NOT NULL,
        value      TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    ) STRICT;",
    // 2: links between source and target objects, and run history.
    "CREATE TABLE link (
        step          TEXT NOT NULL,
        source_anchor TEXT NOT NULL,
        target_anchor TEXT NOT NULL,
        target_dn     TEXT NOT NULL,
        source_hash   TEXT NULL,
        desired_dn    TEXT NULL,
        updated_ms    INTEGER NOT NULL,
        PRIMARY KEY (step, source_anchor)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX link_by_target ON link (step, target_anchor);
    CREATE TABLE run (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL,
        kind        TEXT NOT NULL,
        started_ms  INTEGER NOT NULL,
        finished_ms INTEGER NULL,
        status      TEXT NOT NULL,
        counts      TEXT NOT NULL,         -- JSON
        message     TEXT NULL,
        log_path    TEXT NULL
    ) STRICT;
    CREATE INDEX run_by_name ON run (name, id);",
    // 3: links of deprovisioned objects are kept (marked) for a returning source.
    "ALTER TABLE link ADD COLUMN deprovisioned_ms INTEGER NULL;",
    // 4: run leases, one row per step held by a running step or workflow.
    "CREATE TABLE lease (
        name         TEXT PRIMARY KEY NOT NULL,
        owner        TEXT NOT NULL,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        token        TEXT NOT NULL,
        since_ms     INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL
    ) STRICT;",
    // 5: links looked up by target anchor without regard to ASCII case (as
    // the engine compares target anchors), by index.
    "CREATE INDEX link_by_target_nocase ON link (step, target_anchor COLLATE NOCASE);",
];

/// How long a statement waits for another writer before reporting "database is locked".
/// Generous: a loaded machine (a CI runner with many tests) can take seconds to fsync a
/// commit, and a refused lease must come back as a refusal, not as a lock error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`StateStore`] in one SQLite file. Safe to share between threads; the
/// connection is behind a mutex. Several processes may open the same file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating if missing) the store at `path` and bring its schema up
    /// to date. The parent directory must exist. The file is created 0600
    /// before SQLite writes to it; an existing file and its `-wal`/`-shm`
    /// companions are tightened to 0600.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // Opening a file that another process is creating or switching to WAL
        // can report "busy" without SQLite's busy handler being consulted;
        // retry those for as long as a statement would wait.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match Self::open_once(path) {
                Err(StoreError::Sqlite { source, .. })
                    if is_busy(&source) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        create_private_file(&path)?;
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // The first statement that reads the file: a damaged file fails here.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Data {
                path,
                what: "journal mode".into(),
                cause: format!("SQLite refused WAL mode (got {mode:?})"),
            });
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        // The temporary table of a run's listing (`links_not_in`) stays in
        // memory instead of a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(sql)?;
        tighten_companions(&path)?;
        migrate(&mut conn, &path)?;
        Ok(SqliteStore {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Open the default store, `idsync_home()/state.db`.
    pub fn open_default() -> anyhow::Result<Self> {
        let home = crate::config::home::idsync_home()?;
        Ok(Self::open(home.join("state.db"))?)
    }

    /// The database file this store uses.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or updates `links` of `step` in one transaction: live ones, or
    /// (`deprovisioned`) kept for deprovisioned objects, marked at their `updated_ms`.
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
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        write_links(&tx, step, links, deprovisioned).map_err(sql)?;
        // Dropping `tx` on an error above rolls everything back.
        tx.commit().map_err(sql)
    }

    /// The links of `step`: the live ones, or those kept for deprovisioned objects.
    fn select_links(&self, step: &str, deprovisioned: bool) -> Result<Vec<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare(if deprovisioned {
                "SELECT source_anchor, target_anchor, target_dn, source_hash, desired_dn, updated_ms
                 FROM link WHERE step = ?1 AND deprovisioned_ms IS NOT NULL"
            } else {
                "SELECT source_anchor, target_anchor, target_dn, source_hash, desired_dn, updated_ms
                 FROM link WHERE step = ?1 AND deprovisioned_ms IS NULL"
            })
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map([step], row_to_link)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql_err(e))
    }

    /// The schema version this build writes (the number of migrations).
    pub fn schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic in another thread cannot leave SQLite half-written (each
        // call is one statement or one transaction), so keep going.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sql_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn row_to_profile(
        &self,
        name: String,
        kind: String,
        data: String,
        updated_ms: i64,
    ) -> Result<Profile, StoreError> {
        let data = serde_json::from_str(&data).map_err(|e| StoreError::Data {
            path: self.path.clone(),
            what: format!("profile {name:?}"),
            cause: format!("stored data is not valid JSON ({e})"),
        })?;
        Ok(Profile {
            name,
            kind,
            data,
            updated_ms,
        })
    }
}

/// The columns of `run` in [`RunRow`] order.
const RUN_COLUMNS: &str =
    "id, name, kind, started_ms, finished_ms, status, counts, message, log_path";

/// A `run` row as read, before its counts JSON is parsed.
type RunRow = (
    i64,
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn read_run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

impl SqliteStore {
    fn row_to_run(&self, row: RunRow) -> Result<RunRecord, StoreError> {
        let (id, name, kind, started_ms, finished_ms, status, counts, message, log_path) = row;
        let counts = serde_json::from_str(&counts).map_err(|e| StoreError::Data {
            path: self.path.clone(),
            what: format!("counts of run {id} ({name:?})"),
            cause: format!("not valid JSON ({e})"),
        })?;
        Ok(RunRecord {
            id,
            name,
            kind,
            started_ms,
            finished_ms,
            status,
            counts,
            message,
            log_path,
        })
    }
}

/// The columns of `lease` in [`read_lease`] order.
const LEASE_COLUMNS: &str = "name, owner, host, pid, token, since_ms, heartbeat_ms";

fn read_lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        name: r.get(0)?,
        owner: r.get(1)?,
        host: r.get(2)?,
        pid: r.get(3)?,
        token: r.get(4)?,
        since_ms: r.get(5)?,
        heartbeat_ms: r.get(6)?,
    })
}

impl SqliteStore {
    /// Runs `statement` (parameters: name, token, now) for each of `names`
    /// in one transaction; returns how many rows it changed.
    fn each_lease(
        &self,
        names: &[String],
        statement: &str,
        token: &str,
    ) -> Result<usize, StoreError> {
        let names = names
            .iter()
            .map(|n| validate_name("step name", n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare(statement).map_err(sql)?;
            let now = now_ms();
            for name in names {
                n += stmt.execute(params![name, token, now]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(n)
    }
}

/// A count from SQLite (never negative) as `usize`.
/// Inserts or updates `links` of `step` (already checked) on `conn`: live
/// ones, or (`deprovisioned`) kept for deprovisioned objects.
fn write_links(
    conn: &Connection,
    step: &str,
    links: &[Link],
    deprovisioned: bool,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO link (step, source_anchor, target_anchor, target_dn,
                               source_hash, desired_dn, updated_ms, deprovisioned_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (step, source_anchor) DO UPDATE SET
                 target_anchor = excluded.target_anchor,
                 target_dn = excluded.target_dn,
                 source_hash = excluded.source_hash,
                 desired_dn = excluded.desired_dn,
                 updated_ms = excluded.updated_ms,
                 deprovisioned_ms = excluded.deprovisioned_ms",
    )?;
    for l in links {
        stmt.execute(params![
            step,
            l.source_anchor,
            l.target_anchor,
            l.target_dn,
            l.source_hash,
            l.desired_dn,
            l.updated_ms,
            deprovisioned.then_some(l.updated_ms)
        ])?;
    }
    Ok(())
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// The columns of a [`Link`], in the order [`row_to_link`] reads them.
const LINK_COLUMNS: &str =
    "source_anchor, target_anchor, target_dn, source_hash, desired_dn, updated_ms";

/// A row of [`LINK_COLUMNS`] as a link.
fn row_to_link(r: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        source_anchor: r.get(0)?,
        target_anchor: r.get(1)?,
        target_dn: r.get(2)?,
        source_hash: r.get(3)?,
        desired_dn: r.get(4)?,
        updated_ms: r.get(5)?,
    })
}

impl StateStore for SqliteStore {
    fn put_profile(
        &self,
        name: &str,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let name = validate_name("profile name", name)?;
        let kind = validate_name("connection kind", kind)?;
        let json = data.to_string();
        self.conn()
            .execute(
                "INSERT INTO profile (name, kind, data, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET
                     kind = excluded.kind, data = excluded.data, updated_ms = excluded.updated_ms",
                params![name, kind, json, now_ms()],
            )
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError> {
        let name = validate_name("profile name", name)?;
        let row = self
            .conn()
            .query_row(
                "SELECT name, kind, data, updated_ms FROM profile WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.sql_err(e))?;
        row.map(|(n, k, d, u)| self.row_to_profile(n, k, d, u))
            .transpose()
    }

    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT name, kind, data, updated_ms FROM profile ORDER BY name")
                .map_err(|e| self.sql_err(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.sql_err(e))?
        };
        rows.into_iter()
            .map(|(n, k, d, u)| self.row_to_profile(n, k, d, u))
            .collect()
    }

    fn remove_profile(&self, name: &str) -> Result<bool, StoreError> {
        let name = validate_name("profile name", name)?;
        let n = self
            .conn()
            .execute("DELETE FROM profile WHERE name = ?1", [name])
            .map_err(|e| self.sql_err(e))?;
        Ok(n > 0)
    }

    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = validate_name("setting key", key)?;
        self.conn()
            .query_row("SELECT value FROM setting WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql_err(e))
    }

    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let key = validate_name("setting key", key)?;
        self.conn()
            .execute(PUT_SETTING, params![key, value, now_ms()])
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    fn list_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT key, value FROM setting ORDER BY key")
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql_err(e))
    }

    fn remove_setting(&self, key: &str) -> Result<bool, StoreError> {
        let key = validate_name("setting key", key)?;
        let n = self
            .conn()
            .execute("DELETE FROM setting WHERE key = ?1", [key])
            .map_err(|e| self.sql_err(e))?;
        Ok(n > 0)
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
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let mut removed = 0;
        {
            let mut stmt = tx
                .prepare("DELETE FROM link WHERE step = ?1 AND source_anchor = ?2")
                .map_err(sql)?;
            for anchor in source_anchors {
                removed += stmt.execute(params![step, anchor]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(removed)
    }

    fn link_count(&self, step: &str) -> Result<usize, StoreError> {
        let step = validate_name("step name", step)?;
        self.conn()
            .query_row(
                "SELECT count(*) FROM link WHERE step = ?1 AND deprovisioned_ms IS NULL",
                [step],
                |r| r.get::<_, i64>(0),
            )
            .map(to_usize)
            .map_err(|e| self.sql_err(e))
    }

    fn links_of(&self, step: &str, source_anchors: &[String]) -> Result<Vec<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM link
                 WHERE step = ?1 AND source_anchor = ?2 AND deprovisioned_ms IS NULL"
            ))
            .map_err(|e| self.sql_err(e))?;
        let mut asked = std::collections::HashSet::new();
        let mut out = Vec::new();
        for a in source_anchors {
            if !asked.insert(a.as_str()) {
                continue;
            }
            let found = stmt
                .query_row(params![step, a], row_to_link)
                .optional()
                .map_err(|e| self.sql_err(e))?;
            out.extend(found);
        }
        Ok(out)
    }

    fn links_not_in(&self, step: &str, present: &[String]) -> Result<Vec<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        // The listing goes into a temporary table of this connection (in
        // the transaction, emptied again before it ends), and SQLite does
        // the difference by index: no set of the listing or of the links in
        // memory. Compared exactly, like the primary key.
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS present_source (a TEXT PRIMARY KEY) WITHOUT ROWID;
             DELETE FROM temp.present_source;",
        )
        .map_err(sql)?;
        {
            let mut ins = tx
                .prepare("INSERT OR IGNORE INTO temp.present_source (a) VALUES (?1)")
                .map_err(sql)?;
            for a in present {
                ins.execute([a]).map_err(sql)?;
            }
        }
        let out = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {LINK_COLUMNS} FROM link
                     WHERE step = ?1 AND deprovisioned_ms IS NULL
                       AND NOT EXISTS (SELECT 1 FROM temp.present_source p
                                       WHERE p.a = link.source_anchor)"
                ))
                .map_err(sql)?;
            stmt.query_map([step], row_to_link)
                .and_then(|rows| rows.collect::<Result<Vec<Link>, _>>())
                .map_err(sql)?
        };
        tx.execute_batch("DELETE FROM temp.present_source;")
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(out)
    }

    fn link_to_target(&self, step: &str, target_anchor: &str) -> Result<Option<Link>, StoreError> {
        let step = validate_name("step name", step)?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM link
                 WHERE step = ?1 AND target_anchor = ?2 COLLATE NOCASE
                   AND deprovisioned_ms IS NULL
                 ORDER BY source_anchor LIMIT 1"
            ))
            .map_err(|e| self.sql_err(e))?;
        stmt.query_row(params![step, target_anchor], row_to_link)
            .optional()
            .map_err(|e| self.sql_err(e))
    }

    fn deprovisioned_links(&self, step: &str) -> Result<Vec<Link>, StoreError> {
        self.select_links(step, true)
    }

    fn keep_deprovisioned(&self, step: &str, links: &[Link]) -> Result<(), StoreError> {
        self.upsert_links(step, links, true)
    }

    fn step_names(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        // DISTINCT over the primary key's first column: an index scan, sorted.
        let mut stmt = conn
            .prepare("SELECT DISTINCT step FROM link ORDER BY step")
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql_err(e))
    }

    fn take_leases(
        &self,
        names: &[String],
        holder: &Lease,
        dead: &dyn Fn(&Lease) -> bool,
    ) -> Result<LeaseTake, StoreError> {
        let mut wanted: Vec<&str> = Vec::new();
        for n in names {
            let n = validate_name("step name", n)?;
            if !wanted.contains(&n) {
                wanted.push(n);
            }
        }
        let owner = validate_name("run name", &holder.owner)?;
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        // Immediate: the check and the take happen under SQLite's write
        // lock, so two processes can never both see the step free.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let mut taken_over = Vec::new();
        let mut renewed = Vec::new();
        for &n in &wanted {
            let current = tx
                .query_row(
                    &format!("SELECT {LEASE_COLUMNS} FROM lease WHERE name = ?1"),
                    [n],
                    read_lease,
                )
                .optional()
                .map_err(sql)?;
            match current {
                Some(l) if l.token == holder.token => renewed.push(n),
                Some(l) if dead(&l) => taken_over.push(l),
                // Dropping `tx` rolls back: nothing was taken.
                Some(l) => return Ok(LeaseTake::Held(l)),
                None => {}
            }
        }
        let now = now_ms();
        for &n in &wanted {
            tx.execute(
                "INSERT INTO lease (name, owner, host, pid, token, since_ms, heartbeat_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (name) DO UPDATE SET
                     owner = excluded.owner, host = excluded.host, pid = excluded.pid,
                     since_ms = CASE WHEN lease.token = excluded.token
                                     THEN lease.since_ms ELSE excluded.since_ms END,
                     token = excluded.token, heartbeat_ms = excluded.heartbeat_ms",
                params![n, owner, holder.host, holder.pid, holder.token, now],
            )
            .map_err(sql)?;
        }
        // Runs still marked running under a lease that was free or whose
        // holder is dead have no process behind them any more. The holder's
        // own runs (a renewal) are alive.
        let mut gone: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|n| !renewed.contains(n))
            .chain(taken_over.iter().map(|l| l.owner.as_str()))
            .collect();
        if renewed.is_empty() {
            gone.push(owner);
        }
        gone.sort_unstable();
        gone.dedup();
        let mut interrupted = Vec::new();
        {
            let mut find = tx
                .prepare("SELECT id FROM run WHERE name = ?1 AND status = 'running'")
                .map_err(sql)?;
            for n in &gone {
                let ids: Vec<i64> = find
                    .query_map([n], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(sql)?;
                interrupted.extend(ids);
            }
            let mut mark = tx
                .prepare(
                    "UPDATE run SET status = 'interrupted', finished_ms = ?2, message = ?3
                     WHERE id = ?1",
                )
                .map_err(sql)?;
            for id in &interrupted {
                mark.execute(params![id, now, INTERRUPTED_MESSAGE])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(LeaseTake::Taken {
            taken_over,
            interrupted,
        })
    }

    fn heartbeat_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError> {
        self.each_lease(
            names,
            "UPDATE lease SET heartbeat_ms = ?3 WHERE name = ?1 AND token = ?2",
            token,
        )
    }

    fn release_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError> {
        self.each_lease(
            names,
            "DELETE FROM lease WHERE name = ?1 AND token = ?2 AND ?3 IS NOT NULL",
            token,
        )
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {LEASE_COLUMNS} FROM lease ORDER BY name"))
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map([], read_lease)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql_err(e))
    }

    fn start_run(&self, name: &str, kind: &str, log_path: Option<&str>) -> Result<i64, StoreError> {
        let name = validate_name("run name", name)?;
        let kind = validate_run_kind(kind)?;
        let now = now_ms();
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO run (name, kind, started_ms, status, counts, log_path)
             VALUES (?1, ?2, ?3, 'running', '{}', ?4)",
            params![name, kind, now, log_path],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql)?;
        Ok(id)
    }

    fn finish_run(
        &self,
        id: i64,
        status: &str,
        counts: &serde_json::Value,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let status = validate_final_status(status)?;
        let n = self
            .conn()
            .execute(
                "UPDATE run SET status = ?2, finished_ms = ?3, counts = ?4, message = ?5
                 WHERE id = ?1",
                params![id, status, now_ms(), counts.to_string(), message],
            )
            .map_err(|e| self.sql_err(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchRun {
                path: self.path.clone(),
                id,
            });
        }
        Ok(())
    }

    fn runs(&self, name: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let name = name.map(|n| validate_name("run name", n)).transpose()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<RunRow> = {
            let conn = self.conn();
            let sql = |e| self.sql_err(e);
            match name {
                Some(name) => conn
                    .prepare(&format!(
                        "SELECT {RUN_COLUMNS} FROM run WHERE name = ?1 ORDER BY id DESC LIMIT ?2"
                    ))
                    .and_then(|mut stmt| {
                        stmt.query_map(params![name, limit], read_run_row)?
                            .collect()
                    })
                    .map_err(sql)?,
                None => conn
                    .prepare(&format!(
                        "SELECT {RUN_COLUMNS} FROM run ORDER BY id DESC LIMIT ?1"
                    ))
                    .and_then(|mut stmt| stmt.query_map([limit], read_run_row)?.collect())
                    .map_err(sql)?,
            }
        };
        rows.into_iter().map(|r| self.row_to_run(r)).collect()
    }

    fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        write_runs(&tx, runs).map_err(sql)?;
        tx.commit().map_err(sql)
    }

    fn import_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        for p in profiles {
            let name = validate_name("profile name", &p.name)?;
            write_profile(&tx, name, p).map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    fn import_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let sql = |e| self.sql_err(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        snapshot::each_item(snapshot, |item| match item {
            Item::Profile(p) => {
                let name = validate_name("profile name", &p.name)?;
                write_profile(&tx, name, p).map_err(sql)
            }
            Item::Setting(k, v) => {
                let k = validate_name("setting key", k)?;
                tx.execute(PUT_SETTING, params![k, v, now_ms()])
                    .map(|_| ())
                    .map_err(sql)
            }
            Item::Links(step, links, deprovisioned) => {
                let step = validate_name("step name", step)?;
                write_links(&tx, step, links, deprovisioned).map_err(sql)
            }
            Item::Runs(runs) => write_runs(&tx, runs).map_err(sql),
        })?;
        // Dropping `tx` on an error above rolls everything back.
        tx.commit().map_err(sql)
    }
}

/// Creates or replaces a setting: key, value, time.
const PUT_SETTING: &str = "INSERT INTO setting (key, value, updated_ms) VALUES (?1, ?2, ?3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms";

/// Writes `p` as `name` (checked) with its time (create or replace by name) on `conn`.
fn write_profile(conn: &Connection, name: &str, p: &Profile) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO profile (name, kind, data, updated_ms) VALUES (?1, ?2, ?3, ?4)",
        params![name, p.kind, p.data.to_string(), p.updated_ms],
    )?;
    Ok(())
}

/// Writes `runs` with their ids (create or replace by id) on `conn`.
fn write_runs(conn: &Connection, runs: &[RunRecord]) -> rusqlite::Result<()> {
    // AUTOINCREMENT keeps later ids above the largest inserted one.
    let mut stmt = conn.prepare(&format!(
        "INSERT OR REPLACE INTO run ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?;
    for r in runs {
        stmt.execute(params![
            r.id,
            r.name,
            r.kind,
            r.started_ms,
            r.finished_ms,
            r.status,
            r.counts.to_string(),
            r.message,
            r.log_path
        ])?;
    }
    Ok(())
}

/// Bring the schema to [`MIGRATIONS`]`.len()`, all pending steps in one
/// immediate transaction (so two processes opening at once cannot both migrate).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let supported = MIGRATIONS.len() as i64;
    let version =
        |c: &Connection| c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
    let too_new = |found| StoreError::TooNew {
        path: path.to_path_buf(),
        found,
        supported,
    };
    let found = version(conn).map_err(sql)?;
    if found > supported {
        return Err(too_new(found));
    }
    if found == supported {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let found = version(&tx).map_err(sql)?;
    if found > supported {
        return Err(too_new(found));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(step).map_err(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

/// Create `path` owner-only if missing, or tighten it to 0600 if it exists.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let io = |what, source| StoreError::Io {
        path: path.to_path_buf(),
        what,
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(path).map_err(|e| io("cannot create file", e))?;
    drop(file);
    set_private(path).map_err(|e| io("cannot restrict permissions to 0600", e))
}

/// Tighten the `-wal` and `-shm` files SQLite keeps next to the database.
fn tighten_companions(path: &Path) -> Result<(), StoreError> {
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let companion = PathBuf::from(name);
        if companion.exists() {
            set_private(&companion).map_err(|source| StoreError::Io {
                path: companion.clone(),
                what: "cannot restrict permissions to 0600",
                source,
            })?;
        }
    }
    Ok(())
}

/// chmod 0600, unless already so (no-op off Unix).
fn set_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether `e` is SQLite's "database is busy / locked".
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// SQLite's message, with a hint for the failures an administrator can act on.
pub(crate) fn describe(e: &rusqlite::Error) -> String {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            " (the file is damaged or is not an idsync state store; move it aside to start a new one)"
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another idsync process held it for more than 30 s)"
        }
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            " (check that the file and its directory are writable by this user)"
        }
        Some(ErrorCode::DiskFull) => " (free some disk space)",
        _ => "",
    };
    format!("{e}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fresh() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        (dir, path)
    }

    #[test]
    fn sqlite_store_keeps_the_contract() {
        let (_dir, path) = fresh();
        let store = SqliteStore::open(&path).unwrap();
        crate::store::contract(&store);
    }

    /// A store that implements only the trait's required methods (by
    /// SQLite's), so that the defaults of the others (`links_of`,
    /// `links_not_in`, `link_to_target`: what a new store starts with) keep
    /// the same contract.
    struct RequiredOnly(SqliteStore);

    impl StateStore for RequiredOnly {
        fn put_profile(&self, n: &str, k: &str, d: &serde_json::Value) -> Result<(), StoreError> {
            self.0.put_profile(n, k, d)
        }
        fn get_profile(&self, n: &str) -> Result<Option<Profile>, StoreError> {
            self.0.get_profile(n)
        }
        fn list_profiles(&self) -> Result<Vec<Profile>, StoreError> {
            self.0.list_profiles()
        }
        fn remove_profile(&self, n: &str) -> Result<bool, StoreError> {
            self.0.remove_profile(n)
        }
        fn get_setting(&self, k: &str) -> Result<Option<String>, StoreError> {
            self.0.get_setting(k)
        }
        fn put_setting(&self, k: &str, v: &str) -> Result<(), StoreError> {
            self.0.put_setting(k, v)
        }
        fn list_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
            self.0.list_settings()
        }
        fn remove_setting(&self, k: &str) -> Result<bool, StoreError> {
            self.0.remove_setting(k)
        }
        fn links(&self, s: &str) -> Result<Vec<Link>, StoreError> {
            self.0.links(s)
        }
        fn put_links(&self, s: &str, l: &[Link]) -> Result<(), StoreError> {
            self.0.put_links(s, l)
        }
        fn remove_links(&self, s: &str, a: &[String]) -> Result<usize, StoreError> {
            self.0.remove_links(s, a)
        }
        fn link_count(&self, s: &str) -> Result<usize, StoreError> {
            self.0.link_count(s)
        }
        fn deprovisioned_links(&self, s: &str) -> Result<Vec<Link>, StoreError> {
            self.0.deprovisioned_links(s)
        }
        fn keep_deprovisioned(&self, s: &str, l: &[Link]) -> Result<(), StoreError> {
            self.0.keep_deprovisioned(s, l)
        }
        fn step_names(&self) -> Result<Vec<String>, StoreError> {
            self.0.step_names()
        }
        fn take_leases(
            &self,
            n: &[String],
            h: &Lease,
            d: &dyn Fn(&Lease) -> bool,
        ) -> Result<LeaseTake, StoreError> {
            self.0.take_leases(n, h, d)
        }
        fn heartbeat_leases(&self, n: &[String], t: &str) -> Result<usize, StoreError> {
            self.0.heartbeat_leases(n, t)
        }
        fn release_leases(&self, n: &[String], t: &str) -> Result<usize, StoreError> {
            self.0.release_leases(n, t)
        }
        fn leases(&self) -> Result<Vec<Lease>, StoreError> {
            self.0.leases()
        }
        fn start_run(&self, n: &str, k: &str, l: Option<&str>) -> Result<i64, StoreError> {
            self.0.start_run(n, k, l)
        }
        fn finish_run(
            &self,
            id: i64,
            s: &str,
            c: &serde_json::Value,
            m: Option<&str>,
        ) -> Result<(), StoreError> {
            self.0.finish_run(id, s, c, m)
        }
        fn runs(&self, n: Option<&str>, l: usize) -> Result<Vec<RunRecord>, StoreError> {
            self.0.runs(n, l)
        }
    }

    #[test]
    fn the_default_link_lookups_keep_the_contract() {
        let (_dir, path) = fresh();
        let store = RequiredOnly(SqliteStore::open(&path).unwrap());
        crate::store::contract(&store);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = fresh();
        let store = SqliteStore::open(&path).unwrap();
        store.put_profile("ad", "ldap", &json!({})).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "state.db mode {:o}", mode(&path));
        for suffix in ["-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            // Both exist while a WAL-mode connection is open and has written.
            assert_eq!(mode(&p), 0o600, "{suffix} mode {:o}", mode(&p));
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_loose_file_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = fresh();
        drop(SqliteStore::open(&path).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(SqliteStore::open(&path).unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn reopen_persists_and_migration_is_idempotent() {
        let (_dir, path) = fresh();
        {
            let s = SqliteStore::open(&path).unwrap();
            s.put_profile("ad", "ldap", &json!({"url": "ldap://x"}))
                .unwrap();
            s.put_setting("store", "sqlite").unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let s2 = SqliteStore::open(&path).unwrap(); // a second opener at the same time
        assert_eq!(
            s.get_profile("ad").unwrap().unwrap().data,
            json!({"url": "ldap://x"})
        );
        assert_eq!(s2.get_setting("store").unwrap().as_deref(), Some("sqlite"));
        let v: i64 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SqliteStore::schema_version());
        let mode: String = s
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // Writes through one handle are seen through the other.
        s2.put_profile("hr", "csv", &json!({})).unwrap();
        assert!(s.get_profile("hr").unwrap().is_some());
    }

    #[test]
    fn a_version_2_store_keeps_its_links_live() {
        let (_dir, path) = fresh();
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch(MIGRATIONS[1]).unwrap();
            c.pragma_update(None, "user_version", 2).unwrap();
            c.execute(
                "INSERT INTO link VALUES ('s', 'a', 't', 'cn=a', 'h', NULL, 42)",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.link_count("s").unwrap(), 1);
        assert_eq!(s.links("s").unwrap()[0].target_dn, "cn=a");
        assert!(s.deprovisioned_links("s").unwrap().is_empty());
    }

    #[test]
    fn a_version_1_store_is_upgraded_and_keeps_its_profiles() {
        let (_dir, path) = fresh();
        {
            // A store as the first release left it: migration 1 only.
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO profile VALUES ('ad', 'ldap', '{\"url\":\"ldaps://dc1\"}', 42)",
                [],
            )
            .unwrap();
            c.execute("INSERT INTO setting VALUES ('store', 'sqlite', 42)", [])
                .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let v: i64 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SqliteStore::schema_version());
        assert_eq!(v, 5); // 5: link_by_target_nocase
        let p = s.get_profile("ad").unwrap().unwrap();
        assert_eq!(
            (p.kind.as_str(), &p.data, p.updated_ms),
            ("ldap", &json!({"url": "ldaps://dc1"}), 42)
        );
        assert_eq!(s.get_setting("store").unwrap().as_deref(), Some("sqlite"));
        // The new tables work.
        assert_eq!(s.link_count("a/b").unwrap(), 0);
        let id = s.start_run("a/b", "step", None).unwrap();
        s.finish_run(id, "ok", &json!({"created": 1}), None)
            .unwrap();
        assert_eq!(s.runs(None, 10).unwrap()[0].counts, json!({"created": 1}));
        drop(s);
        // And reopening does not migrate again.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.runs(None, 10).unwrap().len(), 1);
    }

    #[test]
    fn the_schema_is_as_specified() {
        let (_dir, path) = fresh();
        let s = SqliteStore::open(&path).unwrap();
        let conn = s.conn();
        let sql_of = |name: &str| -> String {
            conn.query_row(
                "SELECT sql FROM sqlite_schema WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert!(sql_of("link").contains("STRICT, WITHOUT ROWID"));
        assert!(sql_of("link_by_target").contains("(step, target_anchor)"));
        assert!(sql_of("run").contains("AUTOINCREMENT"));
        assert!(sql_of("run_by_name").contains("(name, id)"));
        // Lookups by name use the index rather than scanning the table.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM run WHERE name = 'x' ORDER BY id DESC LIMIT 5",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("run_by_name"), "{plan}");
    }

    #[test]
    fn a_failed_put_links_writes_nothing() {
        let (_dir, path) = fresh();
        let s = SqliteStore::open(&path).unwrap();
        // Make the 3rd insert fail inside the transaction.
        s.conn()
            .execute_batch(
                "CREATE TRIGGER no_bad BEFORE INSERT ON link WHEN NEW.source_anchor = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let l = |a: &str| Link {
            source_anchor: a.into(),
            target_anchor: format!("t-{a}"),
            target_dn: format!("CN={a}"),
            source_hash: None,
            desired_dn: None,
            updated_ms: 1,
        };
        let e = s
            .put_links("s", &[l("a"), l("b"), l("bad"), l("c")])
            .unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(s.link_count("s").unwrap(), 0);
        // The store is usable afterwards (no transaction left open).
        s.put_links("s", &[l("a")]).unwrap();
        assert_eq!(s.link_count("s").unwrap(), 1);
    }

    #[test]
    fn damaged_run_counts_are_an_error_not_a_panic() {
        let (_dir, path) = fresh();
        let s = SqliteStore::open(&path).unwrap();
        let id = s.start_run("w", "workflow", None).unwrap();
        s.conn()
            .execute("UPDATE run SET counts = '{oops' WHERE id = ?1", [id])
            .unwrap();
        let msg = s.runs(None, 10).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("counts of run {id}")) && msg.contains("not valid JSON"),
            "{msg}"
        );
    }

    #[test]
    fn garbage_file_is_a_clear_error_naming_the_file() {
        for garbage in [&b"this is not a database"[..], &[0xA5u8; 8192][..]] {
            let (_dir, path) = fresh();
            std::fs::write(&path, garbage).unwrap();
            let e = SqliteStore::open(&path).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("not a database"), "{msg}");
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let (_dir, path) = fresh();
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn damaged_profile_json_is_an_error_not_a_panic() {
        let (_dir, path) = fresh();
        let s = SqliteStore::open(&path).unwrap();
        s.conn()
            .execute(
                "INSERT INTO profile VALUES ('bad', 'ldap', '{not json', 0)",
                [],
            )
            .unwrap();
        let e = s.get_profile("bad").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("profile \"bad\"") && msg.contains("not valid JSON"),
            "{msg}"
        );
        assert!(s.list_profiles().is_err());
    }

    #[test]
    fn missing_parent_directory_names_the_file() {
        let (dir, _) = fresh();
        let path = dir.path().join("no/such/dir/state.db");
        let e = SqliteStore::open(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("cannot create file"),
            "{msg}"
        );
    }

    #[test]
    fn eight_connections_opening_a_new_store_at_once_all_succeed() {
        for _ in 0..30 {
            let (_dir, path) = fresh();
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn a_held_write_lock_reports_database_is_locked() {
        let (_dir, path) = fresh();
        let s = SqliteStore::open(&path).unwrap();
        s.conn().busy_timeout(Duration::from_millis(50)).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let e = s.put_profile("ad", "ldap", &json!({})).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "state store {}: database is locked",
                path.display()
            )),
            "{msg}"
        );
    }
}
