//! The T-SQL the SQL Server state store runs: every statement is a `const`
//! here or built by one function from counts and flags only, never from a
//! value. Values travel as parameters `@P1`, `@P2`, ... (tiberius sends them
//! through `sp_executesql`); lists travel as one JSON parameter read with
//! `OPENJSON` (SQL Server 2016 or later), so no statement grows with its data.
//!
//! Dialect choices: `NVARCHAR` for every text (Unicode); names, source
//! anchors and tokens compare exactly (`COLLATE Latin1_General_100_BIN2`);
//! target anchors are looked up through `target_fold`, the anchor with ASCII
//! letters lowered (by idsync, not the server: exactly "ASCII case
//! insensitive", as the store contract says); upserts are `MERGE ... WITH
//! (HOLDLOCK)`; schema changes and lease taking run under `sp_getapplock`
//! in a transaction; every time the store sets is the server's clock
//! (`SYSUTCDATETIME()`); long reads are keyset-paged (`TOP (@Pn) ... WHERE
//! key > @Pm ORDER BY key`).

/// The exact (binary, code-point) collation of names, source anchors and tokens.
pub const BIN2: &str = "Latin1_General_100_BIN2";

/// The server's clock in milliseconds since the Unix epoch.
pub const NOW: &str =
    "DATEDIFF_BIG(millisecond, CAST('1970-01-01T00:00:00' AS DATETIME2), SYSUTCDATETIME())";

/// Schema migrations, applied in order: entry `i` (its statements, each sent
/// as a batch of its own in the migration's transaction) takes the schema
/// from version `i` to `i + 1`. Append new entries; never edit a released
/// one. Keys are `NONCLUSTERED` so that they may be 1,700 bytes long.
pub const MIGRATIONS: &[&[&str]] = &[
    // 1: what the PostgreSQL store has at its version 1 (the SQLite store's 4),
    //    plus target_fold for the ASCII-case-insensitive target lookup.
    &[
        "CREATE TABLE idsync_profile (
            name       NVARCHAR(800) COLLATE Latin1_General_100_BIN2 NOT NULL,
            kind       NVARCHAR(200) NOT NULL,
            data       NVARCHAR(MAX) NOT NULL,
            updated_ms BIGINT NOT NULL,
            CONSTRAINT idsync_profile_pk PRIMARY KEY NONCLUSTERED (name)
        )",
        "CREATE TABLE idsync_setting (
            [key]      NVARCHAR(800) COLLATE Latin1_General_100_BIN2 NOT NULL,
            value      NVARCHAR(MAX) NOT NULL,
            updated_ms BIGINT NOT NULL,
            CONSTRAINT idsync_setting_pk PRIMARY KEY NONCLUSTERED ([key])
        )",
        "CREATE TABLE idsync_link (
            step             NVARCHAR(300) COLLATE Latin1_General_100_BIN2 NOT NULL,
            source_anchor    NVARCHAR(550) COLLATE Latin1_General_100_BIN2 NOT NULL,
            target_anchor    NVARCHAR(550) NOT NULL,
            target_fold      NVARCHAR(550) COLLATE Latin1_General_100_BIN2 NOT NULL,
            target_dn        NVARCHAR(MAX) NOT NULL,
            source_hash      NVARCHAR(400) NULL,
            desired_dn       NVARCHAR(MAX) NULL,
            updated_ms       BIGINT NOT NULL,
            deprovisioned_ms BIGINT NULL,
            CONSTRAINT idsync_link_pk PRIMARY KEY NONCLUSTERED (step, source_anchor)
        )",
        "CREATE INDEX idsync_link_by_target ON idsync_link (step, target_fold)",
        "CREATE TABLE idsync_run (
            id          BIGINT IDENTITY(1,1) NOT NULL,
            name        NVARCHAR(800) COLLATE Latin1_General_100_BIN2 NOT NULL,
            kind        NVARCHAR(20) NOT NULL,
            started_ms  BIGINT NOT NULL,
            finished_ms BIGINT NULL,
            status      NVARCHAR(20) NOT NULL,
            counts      NVARCHAR(MAX) NOT NULL,
            message     NVARCHAR(MAX) NULL,
            log_path    NVARCHAR(MAX) NULL,
            CONSTRAINT idsync_run_pk PRIMARY KEY CLUSTERED (id)
        )",
        "CREATE INDEX idsync_run_by_name ON idsync_run (name, id)",
        "CREATE TABLE idsync_lease (
            name         NVARCHAR(800) COLLATE Latin1_General_100_BIN2 NOT NULL,
            owner        NVARCHAR(800) NOT NULL,
            host         NVARCHAR(400) NOT NULL,
            pid          BIGINT NOT NULL,
            token        NVARCHAR(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
            since_ms     BIGINT NOT NULL,
            heartbeat_ms BIGINT NOT NULL,
            CONSTRAINT idsync_lease_pk PRIMARY KEY NONCLUSTERED (name)
        )",
    ],
];

// ----------------------------------------------------------------- session and schema

/// Run once per session: an error inside a transaction rolls all of it back.
pub const SESSION_SETUP: &str = "SET XACT_ABORT ON";

/// The schema version, or no row / NULL when there is no schema (a batch
/// without parameters).
pub const SCHEMA_VERSION: &str = "IF OBJECT_ID(N'idsync_schema', N'U') IS NULL \
     SELECT CAST(NULL AS BIGINT) AS version \
     ELSE SELECT MAX(version) AS version FROM idsync_schema";

/// Takes the transaction-owned application lock `resource` (one of the
/// consts below), waiting at most a minute; fails the statement when not granted.
pub fn applock(resource: &str) -> String {
    debug_assert!(resource == MIGRATE_LOCK || resource == LEASE_LOCK);
    format!(
        "DECLARE @r INT; \
         EXEC @r = sp_getapplock @Resource = N'{resource}', @LockMode = N'Exclusive', \
         @LockOwner = N'Transaction', @LockTimeout = 60000; \
         IF @r < 0 THROW 51000, N'idsync: the application lock {resource} was not granted', 1;"
    )
}

/// The application lock under which the schema is created or migrated.
pub const MIGRATE_LOCK: &str = "idsync-schema";
/// The application lock under which leases are taken.
pub const LEASE_LOCK: &str = "idsync-lease";

/// Creates the version table when missing.
pub const CREATE_SCHEMA_TABLE: &str = "IF OBJECT_ID(N'idsync_schema', N'U') IS NULL \
     CREATE TABLE idsync_schema (version BIGINT NOT NULL)";

/// Sets the schema version to @P1.
pub const SET_VERSION: &str =
    "DELETE FROM idsync_schema; INSERT INTO idsync_schema (version) VALUES (@P1)";

/// The server clock (see [`NOW`]).
pub fn now() -> String {
    format!("SELECT {NOW} AS now_ms")
}

// ----------------------------------------------------------------- profiles and settings

/// Create or replace profile @P1 with kind @P2 and data @P3; updated now.
pub fn put_profile() -> String {
    format!(
        "MERGE idsync_profile WITH (HOLDLOCK) AS t \
         USING (SELECT @P1 AS name, @P2 AS kind, @P3 AS data) AS s ON t.name = s.name \
         WHEN MATCHED THEN UPDATE SET kind = s.kind, data = s.data, updated_ms = {NOW} \
         WHEN NOT MATCHED THEN INSERT (name, kind, data, updated_ms) \
         VALUES (s.name, s.kind, s.data, {NOW});"
    )
}

/// Create or replace profile @P1 with kind @P2, data @P3 and updated_ms @P4 (migrate).
pub const IMPORT_PROFILE: &str = "MERGE idsync_profile WITH (HOLDLOCK) AS t \
     USING (SELECT @P1 AS name, @P2 AS kind, @P3 AS data, @P4 AS updated_ms) AS s \
     ON t.name = s.name \
     WHEN MATCHED THEN UPDATE SET kind = s.kind, data = s.data, updated_ms = s.updated_ms \
     WHEN NOT MATCHED THEN INSERT (name, kind, data, updated_ms) \
     VALUES (s.name, s.kind, s.data, s.updated_ms);";

/// Profile @P1.
pub const GET_PROFILE: &str =
    "SELECT name, kind, data, updated_ms FROM idsync_profile WHERE name = @P1";
/// Every profile by name.
pub const LIST_PROFILES: &str =
    "SELECT name, kind, data, updated_ms FROM idsync_profile ORDER BY name";
/// Forget profile @P1.
pub const REMOVE_PROFILE: &str = "DELETE FROM idsync_profile WHERE name = @P1";

/// Setting @P1.
pub const GET_SETTING: &str = "SELECT value FROM idsync_setting WHERE [key] = @P1";
/// Create or replace setting @P1 with value @P2; updated now.
pub fn put_setting() -> String {
    format!(
        "MERGE idsync_setting WITH (HOLDLOCK) AS t \
         USING (SELECT @P1 AS [key], @P2 AS value) AS s ON t.[key] = s.[key] \
         WHEN MATCHED THEN UPDATE SET value = s.value, updated_ms = {NOW} \
         WHEN NOT MATCHED THEN INSERT ([key], value, updated_ms) VALUES (s.[key], s.value, {NOW});"
    )
}
/// Every setting by key.
pub const LIST_SETTINGS: &str = "SELECT [key], value FROM idsync_setting ORDER BY [key]";
/// Forget setting @P1.
pub const REMOVE_SETTING: &str = "DELETE FROM idsync_setting WHERE [key] = @P1";

// ----------------------------------------------------------------- links

/// Link columns, in the order rows are read.
pub const LINK_COLUMNS: &str =
    "source_anchor, target_anchor, target_dn, source_hash, desired_dn, updated_ms";

/// The listed texts of the JSON array parameter `@P{n}`, in the exact collation.
fn listed(n: usize) -> String {
    format!("SELECT j.[value] COLLATE {BIN2} FROM OPENJSON(@P{n}) AS j")
}

/// Create or replace the links of step @P1 from the JSON array @P2 (objects
/// `sa, ta, tf, dn, sh, dd, up`); with `deprovisioned`, marked as the links of
/// deprovisioned objects (`deprovisioned_ms` = their `up`), else live.
pub fn upsert_links(deprovisioned: bool) -> String {
    let dep = if deprovisioned { "s.up" } else { "NULL" };
    format!(
        "MERGE idsync_link WITH (HOLDLOCK) AS t \
         USING (SELECT @P1 AS step, j.sa, j.ta, j.tf, j.dn, j.sh, j.dd, j.up \
                FROM OPENJSON(@P2) WITH (sa NVARCHAR(MAX) '$.sa', ta NVARCHAR(MAX) '$.ta', \
                     tf NVARCHAR(MAX) '$.tf', dn NVARCHAR(MAX) '$.dn', sh NVARCHAR(MAX) '$.sh', \
                     dd NVARCHAR(MAX) '$.dd', up BIGINT '$.up') AS j) AS s \
         ON t.step = s.step AND t.source_anchor = s.sa COLLATE {BIN2} \
         WHEN MATCHED THEN UPDATE SET target_anchor = s.ta, target_fold = s.tf, \
              target_dn = s.dn, source_hash = s.sh, desired_dn = s.dd, updated_ms = s.up, \
              deprovisioned_ms = {dep} \
         WHEN NOT MATCHED THEN INSERT (step, source_anchor, target_anchor, target_fold, \
              target_dn, source_hash, desired_dn, updated_ms, deprovisioned_ms) \
              VALUES (s.step, s.sa, s.ta, s.tf, s.dn, s.sh, s.dd, s.up, {dep});"
    )
}

/// One keyset page of the links of step @P1, live or `deprovisioned`, at most
/// @P2 rows, ordered by source anchor; with `after`, only those after @P3.
pub fn links_page(deprovisioned: bool, after: bool) -> String {
    format!(
        "SELECT TOP (@P2) {LINK_COLUMNS} FROM idsync_link \
         WHERE step = @P1 AND deprovisioned_ms IS {}NULL{} ORDER BY source_anchor",
        if deprovisioned { "NOT " } else { "" },
        if after {
            " AND source_anchor > @P3"
        } else {
            ""
        }
    )
}

/// Forget the links of step @P1 whose source anchors are in the JSON array @P2.
pub fn remove_links() -> String {
    format!(
        "DELETE FROM idsync_link WHERE step = @P1 AND source_anchor IN ({})",
        listed(2)
    )
}

/// How many live links step @P1 has.
pub const LINK_COUNT: &str =
    "SELECT COUNT_BIG(*) FROM idsync_link WHERE step = @P1 AND deprovisioned_ms IS NULL";

/// The live links of step @P1 whose source anchors are in the JSON array @P2.
pub fn links_of() -> String {
    format!(
        "SELECT {LINK_COLUMNS} FROM idsync_link \
         WHERE step = @P1 AND deprovisioned_ms IS NULL AND source_anchor IN ({})",
        listed(2)
    )
}

/// The live links of step @P1 whose source anchors are not in the JSON array
/// @P2. Hash joins only: the listing is parsed once however long it is.
pub fn links_not_in() -> String {
    format!(
        "SELECT {LINK_COLUMNS} FROM idsync_link AS l \
         WHERE l.step = @P1 AND l.deprovisioned_ms IS NULL \
           AND NOT EXISTS (SELECT 1 FROM OPENJSON(@P2) AS j \
                           WHERE j.[value] COLLATE {BIN2} = l.source_anchor) \
         ORDER BY l.source_anchor OPTION (HASH JOIN)"
    )
}

/// The live link of step @P1 to the target whose folded anchor is @P2, the
/// smallest source anchor first.
pub fn link_to_target() -> String {
    format!(
        "SELECT TOP (1) {LINK_COLUMNS} FROM idsync_link \
         WHERE step = @P1 AND target_fold = @P2 AND deprovisioned_ms IS NULL \
         ORDER BY source_anchor"
    )
}

/// The steps that have links.
pub const STEP_NAMES: &str = "SELECT DISTINCT step FROM idsync_link ORDER BY step";

// ----------------------------------------------------------------- leases

/// Lease columns, in the order rows are read.
pub const LEASE_COLUMNS: &str = "name, owner, host, pid, token, since_ms, heartbeat_ms";

/// The leases on the steps in the JSON array @P1, locked for this transaction.
pub fn leases_for_update() -> String {
    format!(
        "SELECT {LEASE_COLUMNS} FROM idsync_lease WITH (UPDLOCK, HOLDLOCK) \
         WHERE name IN ({}) ORDER BY name",
        listed(1)
    )
}

/// Takes the leases on the steps in the JSON array @P1 for owner @P2, host
/// @P3, pid @P4, token @P5 at server time @P6 (`since_ms` kept when the same
/// token renews).
pub fn upsert_leases() -> String {
    format!(
        "MERGE idsync_lease WITH (HOLDLOCK) AS t \
         USING (SELECT DISTINCT j.[value] COLLATE {BIN2} AS name FROM OPENJSON(@P1) AS j) AS s \
         ON t.name = s.name \
         WHEN MATCHED THEN UPDATE SET owner = @P2, host = @P3, pid = @P4, \
              since_ms = CASE WHEN t.token = @P5 THEN t.since_ms ELSE @P6 END, \
              token = @P5, heartbeat_ms = @P6 \
         WHEN NOT MATCHED THEN INSERT ({LEASE_COLUMNS}) \
              VALUES (s.name, @P2, @P3, @P4, @P5, @P6, @P6);"
    )
}

/// Marks the running runs named in the JSON array @P1 interrupted at @P2
/// with message @P3; returns their ids.
pub fn interrupt_runs() -> String {
    format!(
        "UPDATE idsync_run SET status = N'interrupted', finished_ms = @P2, message = @P3 \
         OUTPUT INSERTED.id WHERE name IN ({}) AND status = N'running'",
        listed(1)
    )
}

/// A sign of life for the leases on the steps in the JSON array @P1 held by token @P2.
pub fn heartbeat_leases() -> String {
    format!(
        "UPDATE idsync_lease SET heartbeat_ms = {NOW} WHERE name IN ({}) AND token = @P2",
        listed(1)
    )
}

/// Gives up the leases on the steps in the JSON array @P1 held by token @P2.
pub fn release_leases() -> String {
    format!(
        "DELETE FROM idsync_lease WHERE name IN ({}) AND token = @P2",
        listed(1)
    )
}

/// Every lease by step name.
pub const LEASES: &str =
    "SELECT name, owner, host, pid, token, since_ms, heartbeat_ms FROM idsync_lease ORDER BY name";

// ----------------------------------------------------------------- runs

/// Run columns, in the order rows are read.
pub const RUN_COLUMNS: &str =
    "id, name, kind, started_ms, finished_ms, status, counts, message, log_path";

/// Records the start of run @P1 of kind @P2 with log @P3; returns its id.
pub fn start_run() -> String {
    format!(
        "INSERT INTO idsync_run (name, kind, started_ms, status, counts, log_path) \
         OUTPUT INSERTED.id VALUES (@P1, @P2, {NOW}, N'running', N'{{}}', @P3)"
    )
}

/// Records the end of run @P1: status @P2, counts @P3, message @P4; finished now.
pub fn finish_run() -> String {
    format!(
        "UPDATE idsync_run SET status = @P2, finished_ms = {NOW}, counts = @P3, message = @P4 \
         WHERE id = @P1"
    )
}

/// At most @P1 runs, newest first; with `named`, only those of name @P2.
pub fn runs(named: bool) -> String {
    format!(
        "SELECT TOP (@P1) {RUN_COLUMNS} FROM idsync_run {}ORDER BY id DESC",
        if named { "WHERE name = @P2 " } else { "" }
    )
}

/// Writes the runs of the JSON array @P1 (objects with every run column;
/// `counts` as text) with their ids (create or replace by id). Later
/// identities continue above the largest id written.
pub const IMPORT_RUNS: &str = "SET IDENTITY_INSERT idsync_run ON; \
     MERGE idsync_run WITH (HOLDLOCK) AS t \
     USING (SELECT * FROM OPENJSON(@P1) WITH (id BIGINT '$.id', name NVARCHAR(MAX) '$.name', \
            kind NVARCHAR(MAX) '$.kind', started_ms BIGINT '$.started_ms', \
            finished_ms BIGINT '$.finished_ms', status NVARCHAR(MAX) '$.status', \
            counts NVARCHAR(MAX) '$.counts', message NVARCHAR(MAX) '$.message', \
            log_path NVARCHAR(MAX) '$.log_path')) AS s ON t.id = s.id \
     WHEN MATCHED THEN UPDATE SET name = s.name, kind = s.kind, started_ms = s.started_ms, \
          finished_ms = s.finished_ms, status = s.status, counts = s.counts, \
          message = s.message, log_path = s.log_path \
     WHEN NOT MATCHED THEN INSERT (id, name, kind, started_ms, finished_ms, status, counts, \
          message, log_path) VALUES (s.id, s.name, s.kind, s.started_ms, s.finished_ms, \
          s.status, s.counts, s.message, s.log_path); \
     SET IDENTITY_INSERT idsync_run OFF;";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement the store can run, by name.
    fn all() -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("SESSION_SETUP".into(), SESSION_SETUP.into()),
            ("SCHEMA_VERSION".into(), SCHEMA_VERSION.into()),
            ("applock(migrate)".into(), applock(MIGRATE_LOCK)),
            ("applock(lease)".into(), applock(LEASE_LOCK)),
            ("CREATE_SCHEMA_TABLE".into(), CREATE_SCHEMA_TABLE.into()),
            ("SET_VERSION".into(), SET_VERSION.into()),
            ("now".into(), now()),
            ("put_profile".into(), put_profile()),
            ("IMPORT_PROFILE".into(), IMPORT_PROFILE.into()),
            ("GET_PROFILE".into(), GET_PROFILE.into()),
            ("LIST_PROFILES".into(), LIST_PROFILES.into()),
            ("REMOVE_PROFILE".into(), REMOVE_PROFILE.into()),
            ("GET_SETTING".into(), GET_SETTING.into()),
            ("put_setting".into(), put_setting()),
            ("LIST_SETTINGS".into(), LIST_SETTINGS.into()),
            ("REMOVE_SETTING".into(), REMOVE_SETTING.into()),
            ("upsert_links(live)".into(), upsert_links(false)),
            ("upsert_links(dep)".into(), upsert_links(true)),
            ("remove_links".into(), remove_links()),
            ("LINK_COUNT".into(), LINK_COUNT.into()),
            ("links_of".into(), links_of()),
            ("links_not_in".into(), links_not_in()),
            ("link_to_target".into(), link_to_target()),
            ("STEP_NAMES".into(), STEP_NAMES.into()),
            ("leases_for_update".into(), leases_for_update()),
            ("upsert_leases".into(), upsert_leases()),
            ("interrupt_runs".into(), interrupt_runs()),
            ("heartbeat_leases".into(), heartbeat_leases()),
            ("release_leases".into(), release_leases()),
            ("LEASES".into(), LEASES.into()),
            ("start_run".into(), start_run()),
            ("finish_run".into(), finish_run()),
            ("runs(all)".into(), runs(false)),
            ("runs(named)".into(), runs(true)),
            ("IMPORT_RUNS".into(), IMPORT_RUNS.into()),
        ];
        for d in [false, true] {
            for a in [false, true] {
                v.push((format!("links_page({d},{a})"), links_page(d, a)));
            }
        }
        for (i, m) in MIGRATIONS.iter().enumerate() {
            for (j, st) in m.iter().enumerate() {
                v.push((format!("MIGRATIONS[{i}][{j}]"), st.to_string()));
            }
        }
        v
    }

    /// The `@Pn` numbers a statement uses.
    fn params(sql: &str) -> std::collections::BTreeSet<usize> {
        let mut out = std::collections::BTreeSet::new();
        let b = sql.as_bytes();
        for (i, _) in sql.match_indices("@P") {
            let digits: String = b[i + 2..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .map(|&c| c as char)
                .collect();
            if let Ok(n) = digits.parse() {
                out.insert(n);
            }
        }
        out
    }

    /// The quoted literals of a statement (`'...'`, with `N'...'`).
    fn literals(sql: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = sql;
        while let Some(start) = rest.find('\'') {
            let after = &rest[start + 1..];
            let end = after.find('\'').expect("a closed literal");
            out.push(after[..end].to_string());
            rest = &after[end + 1..];
        }
        out
    }

    #[test]
    fn parameters_are_numbered_from_1_without_gaps_and_literals_are_fixed_text_only() {
        // The only literals: JSON paths, the epoch, the lock names and messages, the
        // fixed statuses and the empty counts. A value concatenated into a statement
        // would show up here as another literal.
        let fixed = |l: &str| {
            l.starts_with("$")
                || l == "1970-01-01T00:00:00"
                || l == "idsync_schema"
                || l == "U"
                || [MIGRATE_LOCK, LEASE_LOCK, "Exclusive", "Transaction"].contains(&l)
                || l.starts_with("idsync: the application lock ")
                || ["running", "interrupted", "{}"].contains(&l)
        };
        for (name, sql) in all() {
            let p = params(&sql);
            let want: std::collections::BTreeSet<usize> = (1..=p.len()).collect();
            assert_eq!(p, want, "{name}: parameters {p:?} in {sql}");
            for l in literals(&sql) {
                assert!(fixed(&l), "{name}: literal '{l}' in {sql}");
            }
            assert!(!sql.contains('$') || sql.contains("OPENJSON"), "{name}");
            // Unicode everywhere: no VARCHAR/CHAR/TEXT column or cast.
            let upper = sql.to_ascii_uppercase();
            for narrow in [" VARCHAR", "(VARCHAR", " CHAR(", " TEXT", "NTEXT"] {
                assert!(!upper.contains(narrow), "{name}: {narrow} in {sql}");
            }
        }
        assert_eq!(params(&links_page(false, false)), [1, 2].into());
        assert_eq!(params(&links_page(true, true)), [1, 2, 3].into());
        assert_eq!(params(&upsert_leases()), (1..=6).collect());
    }

    #[test]
    fn upserts_merge_under_holdlock_and_end_with_a_semicolon() {
        for (name, sql) in all() {
            if sql.contains("MERGE ") {
                assert!(sql.contains("WITH (HOLDLOCK)"), "{name}: {sql}");
                let merge = &sql[sql.find("MERGE ").unwrap()..];
                let end = merge.find("SET IDENTITY_INSERT").unwrap_or(merge.len());
                assert!(merge[..end].trim_end().ends_with(';'), "{name}: {sql}");
            }
        }
        assert!(put_profile().contains("WHEN MATCHED THEN UPDATE SET kind = s.kind"));
        assert!(put_setting().contains("WHEN NOT MATCHED THEN INSERT ([key], value, updated_ms)"));
        let dep = upsert_links(true);
        assert!(dep.contains("deprovisioned_ms = s.up") && dep.contains("s.up, s.up);"));
        let live = upsert_links(false);
        assert!(live.contains("deprovisioned_ms = NULL") && live.contains("s.up, NULL);"));
        assert!(IMPORT_RUNS.starts_with("SET IDENTITY_INSERT idsync_run ON;"));
        assert!(
            IMPORT_RUNS
                .trim_end()
                .ends_with("SET IDENTITY_INSERT idsync_run OFF;")
        );
    }

    #[test]
    fn case_rules_exact_names_and_source_anchors_ascii_folded_targets() {
        let schema = MIGRATIONS[0].join(";\n");
        let col = |c: &str| {
            schema
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&format!("{c} ")))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no column {c}"))
        };
        for c in [
            "name",
            "[key]",
            "step",
            "source_anchor",
            "target_fold",
            "token",
        ] {
            assert!(
                col(c).contains("COLLATE Latin1_General_100_BIN2"),
                "{}",
                col(c)
            );
        }
        for c in ["kind", "target_anchor", "target_dn", "data", "value"] {
            assert!(
                col(c).starts_with(c) && col(c).contains("NVARCHAR"),
                "{}",
                col(c)
            );
        }
        // Lists compare in the exact collation; the target lookup is by the folded column.
        for sql in [
            remove_links(),
            links_of(),
            links_not_in(),
            leases_for_update(),
        ] {
            assert!(sql.contains("COLLATE Latin1_General_100_BIN2"), "{sql}");
        }
        assert!(link_to_target().contains("target_fold = @P2"));
        assert!(link_to_target().contains("ORDER BY source_anchor"));
        assert!(
            schema
                .contains("CREATE INDEX idsync_link_by_target ON idsync_link (step, target_fold)")
        );
    }

    #[test]
    fn clock_locks_and_paging_are_sql_server_s_own() {
        assert!(NOW.contains("SYSUTCDATETIME()") && NOW.starts_with("DATEDIFF_BIG(millisecond"));
        for sql in [
            put_profile(),
            put_setting(),
            heartbeat_leases(),
            start_run(),
            finish_run(),
            now(),
        ] {
            assert!(sql.contains("SYSUTCDATETIME()"), "{sql}");
        }
        let lock = applock(LEASE_LOCK);
        assert!(
            lock.contains("sp_getapplock @Resource = N'idsync-lease'"),
            "{lock}"
        );
        assert!(
            lock.contains("@LockOwner = N'Transaction'") && lock.contains("THROW"),
            "{lock}"
        );
        assert!(leases_for_update().contains("WITH (UPDLOCK, HOLDLOCK)"));
        assert_eq!(
            links_page(false, true),
            "SELECT TOP (@P2) source_anchor, target_anchor, target_dn, source_hash, desired_dn, \
             updated_ms FROM idsync_link WHERE step = @P1 AND deprovisioned_ms IS NULL \
             AND source_anchor > @P3 ORDER BY source_anchor"
        );
        assert!(links_page(true, false).contains("deprovisioned_ms IS NOT NULL ORDER BY"));
        assert_eq!(
            runs(true),
            "SELECT TOP (@P1) id, name, kind, started_ms, finished_ms, status, counts, message, \
             log_path FROM idsync_run WHERE name = @P2 ORDER BY id DESC"
        );
        assert!(links_not_in().ends_with("OPTION (HASH JOIN)"));
        assert!(start_run().contains("OUTPUT INSERTED.id"));
        assert!(interrupt_runs().contains("OUTPUT INSERTED.id WHERE"));
        assert!(CREATE_SCHEMA_TABLE.starts_with("IF OBJECT_ID(N'idsync_schema', N'U') IS NULL"));
    }
}
