//! SQL tables as connected systems: PostgreSQL through tokio-postgres, SQL
//! Server through tiberius ([`mssql`]); the SQL text that differs per
//! database lives in [`dialect`], the session calls in [`session`]. A row
//! is an entry: its key column is both the anchor and the DN; columns are
//! attributes (NULL is absent); values read as natural text (numbers as
//! the database prints them, `true`/`false`, ISO dates, UTC timestamps). A
//! `query` option reads a view or a SELECT instead of a table (read-only).
//!
//! Compared with LDAP: no tree (the search base is ignored, scope `base`
//! with a base reads the row whose key it is), no rename or move (the DN is
//! the key), no enable/disable, passwords or membership. Writes made during
//! a sync run are one transaction per batch (each row under a savepoint,
//! so a failing row is reported on its own and the others commit); a write
//! outside a batch is its own transaction.

pub mod changes;
pub mod client;
pub mod dialect;
pub mod filter;
pub mod mssql;
pub mod read;
pub mod session;
pub mod table;
pub mod write;

use std::sync::atomic::{AtomicBool, Ordering};

use self::dialect::Dialect;
use self::session::{Endpoint, Param, Session};
use self::table::{Column, Multi, Table};
use crate::connector::{
    Change, ChangeRound, Connector, Error, Result, SearchQuery, Sink, TestReport,
};
use crate::model::{Entry, Secret, Value};
use async_trait::async_trait;
use serde_json::json;

/// What `connect_sql` was given.
#[derive(Clone, Debug)]
pub struct SqlOptions {
    /// `postgres://user@host:port/db[?sslmode=...]`, `mssql://user@host:port/db`
    /// or an ADO.NET connection string.
    pub url: String,
    /// The table (`name` or `schema.name`).
    pub table: Option<String>,
    /// A SELECT (or a view's name as `SELECT * FROM v`) instead of a table.
    pub query: Option<String>,
    /// The key column: anchor and DN.
    pub key: String,
    /// A column that grows on every change (incremental reads).
    pub changed: Option<String>,
    /// Multi-valued attributes.
    pub multi: Vec<(String, Multi)>,
    /// The password (a secret reference to be storable).
    pub password: Option<Secret>,
    /// CA certificates (PEM) for TLS.
    pub ca_file: Option<String>,
    /// Verify the server certificate (default true).
    pub verify: bool,
    /// Rows per page.
    pub page_size: usize,
}

impl SqlOptions {
    /// Options with the defaults: verification on, 500 rows a page.
    pub fn new(url: impl Into<String>, key: impl Into<String>) -> SqlOptions {
        SqlOptions {
            url: url.into(),
            table: None,
            query: None,
            key: key.into(),
            changed: None,
            multi: Vec::new(),
            password: None,
            ca_file: None,
            verify: true,
            page_size: 500,
        }
    }
}

/// The session that writes, and whether a batch transaction is open on it.
pub(crate) struct Writer {
    pub(crate) client: Session,
    pub(crate) in_tx: bool,
    /// A statement of the open batch outside a row's savepoint failed: the
    /// server has put the whole transaction in the failed state, so nothing
    /// of the batch can commit.
    pub(crate) poisoned: bool,
}

/// A table (or query) in a PostgreSQL or SQL Server database as a connection.
pub struct SqlConnector {
    opts: SqlOptions,
    target: Endpoint,
    pub(crate) table: Table,
    /// Types of the child tables' value columns, by attribute (lower case).
    pub(crate) child_types: Vec<(String, String)>,
    /// Types of the child tables' key columns, by attribute (lower case).
    pub(crate) child_key_types: Vec<(String, String)>,
    /// Set by `begin_batch`: the next writer() starts the batch afresh.
    pub(crate) new_batch: AtomicBool,
    pub(crate) reader: Session,
    pub(crate) writer: tokio::sync::Mutex<Option<Writer>>,
    pub(crate) batching: AtomicBool,
}

impl SqlConnector {
    /// Connects, reads the table's columns and checks the options against them.
    pub async fn connect(opts: SqlOptions) -> Result<SqlConnector> {
        let target = if mssql::is_mssql(&opts.url) {
            let t = mssql::target(
                &opts.url,
                opts.password.as_ref(),
                opts.ca_file.clone(),
                opts.verify,
            )?;
            if let Some(w) = &t.warning {
                eprintln!("warning: {w}");
            }
            Endpoint::Ms(t)
        } else {
            Endpoint::Pg(client::target(
                &opts.url,
                opts.password.as_ref(),
                opts.ca_file.clone(),
                opts.verify,
            )?)
        };
        let reader = Session::open(&target).await?;
        let d = target.dialect();
        let (from, alias, label, writable, columns) = match (&opts.table, &opts.query) {
            (Some(_), Some(_)) => {
                return Err(Error::usage("give `table` or `query`, not both"));
            }
            (None, None) => {
                return Err(Error::usage("option `table` (or `query`) is required"));
            }
            (Some(t), None) => {
                let columns = table_columns(&reader, d, t).await?;
                (d.quote(t), d.quote(t), t.clone(), true, columns)
            }
            (None, Some(q)) => {
                let from = format!("({q}) AS q");
                let columns = query_columns(&reader, d, &from).await?;
                (from, "q".to_string(), "query".to_string(), false, columns)
            }
        };
        let mut t = Table {
            dialect: d,
            from,
            alias,
            label,
            writable,
            columns,
            key: 0,
            changed: None,
            multi: opts.multi.clone(),
        };
        let names = || {
            t.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find = |name: &str, what: &str| -> Result<usize> {
            t.columns
                .iter()
                .position(|c| c.name == name)
                .or_else(|| {
                    t.columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(name))
                })
                .ok_or_else(|| {
                    Error::usage(format!(
                        "{what} column '{name}' is not in {} (columns: {})",
                        t.label,
                        names()
                    ))
                })
        };
        let key = find(&opts.key, "key")?;
        let changed = match &opts.changed {
            Some(c) => Some(find(c, "changed")?),
            None => None,
        };
        let mut child_types = Vec::new();
        let mut child_key_types = Vec::new();
        for (attr, m) in &opts.multi {
            match m {
                Multi::Separator(s) => {
                    find(attr, "multi")?;
                    if s.is_empty() {
                        return Err(Error::usage(format!(
                            "multi '{attr}': the separator is empty"
                        )));
                    }
                }
                Multi::Child { table, key, column } => {
                    let cols = table_columns(&reader, d, table).await?;
                    let get = |n: &str| {
                        cols.iter().find(|c| c.name == n).ok_or_else(|| {
                            Error::usage(format!(
                                "multi '{attr}': no column '{n}' in table {table}"
                            ))
                        })
                    };
                    child_key_types.push((attr.to_ascii_lowercase(), get(key)?.ty.clone()));
                    child_types.push((attr.to_ascii_lowercase(), get(column)?.ty.clone()));
                }
            }
        }
        t.key = key;
        t.changed = changed;
        Ok(SqlConnector {
            opts,
            target,
            table: t,
            child_types,
            child_key_types,
            new_batch: AtomicBool::new(false),
            reader,
            writer: tokio::sync::Mutex::new(None),
            batching: AtomicBool::new(false),
        })
    }

    /// `postgres` or `mssql`.
    fn flavor_name(&self) -> &'static str {
        match self.table.dialect {
            Dialect::Postgres => "postgres",
            Dialect::TSql => "mssql",
        }
    }

    /// The table or query shape.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The type of the key column of the child table of `attr`.
    pub(crate) fn child_key_type(&self, attr: &str) -> String {
        self.child_key_types
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(attr))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| "text".into())
    }

    /// The type of the value column of the child table of `attr`.
    pub(crate) fn child_type(&self, attr: &str) -> String {
        self.child_types
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(attr))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| "text".into())
    }

    /// How a row is named in messages: `table: row 'key'`.
    pub(crate) fn row_label(&self, key: &str) -> String {
        format!("{}: row '{key}'", self.table.label)
    }

    /// The writing session (opened on first use, again after it was lost
    /// outside a batch). A session lost (or a transaction failed) while a
    /// batch transaction was open is a connection error, here and at the
    /// batch's commit: the server rolled the batch's rows back, so a new
    /// session must not carry on as if they were written.
    pub(crate) async fn writer(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Writer>>> {
        let mut w = self.writer.lock().await;
        if self.new_batch.swap(false, Ordering::SeqCst)
            && let Some(old) = w.as_ref()
            && old.in_tx
        {
            // Left over from a batch that never reached its flush (lost,
            // poisoned or abandoned): its rows were never reported written,
            // so they must not commit with this batch. Dropping the session
            // makes the server roll that transaction back.
            *w = None;
        }
        if let Some(old) = w.as_ref()
            && old.in_tx
            && (old.poisoned || old.client.is_closed())
        {
            return Err(batch_lost(
                &self.table.label,
                old.poisoned && !old.client.is_closed(),
            ));
        }
        if w.as_ref().is_none_or(|w| w.client.is_closed()) {
            *w = Some(Writer {
                client: Session::open(&self.target).await?,
                in_tx: false,
                poisoned: false,
            });
        }
        Ok(w)
    }
}

/// The error for a batch whose transaction the server has rolled back.
pub(crate) fn batch_lost(label: &str, poisoned: bool) -> Error {
    let why = if poisoned {
        "a statement of the batch transaction failed, so the server rolls the whole batch back"
    } else {
        "the database session was lost with the batch transaction open; the server rolled it back"
    };
    Error::Connection(format!(
        "{label}: {why}; none of the batch's rows is written (the next run writes them again)"
    ))
}

/// The columns of `table` from the catalogue, in table order, with their
/// types as SQL text.
async fn table_columns(c: &Session, d: Dialect, table: &str) -> Result<Vec<Column>> {
    let sql = match d {
        Dialect::Postgres => {
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        }
        // The declared type as T-SQL writes it: varchar(20), decimal(10,2),
        // nvarchar(max), datetime2(7); user types by their base type.
        Dialect::TSql => {
            "SELECT c.name, CASE \
               WHEN t.name IN ('varchar', 'char', 'varbinary', 'binary') THEN t.name + '(' + \
                 CASE WHEN c.max_length = -1 THEN 'max' ELSE CAST(c.max_length AS varchar(10)) END + ')' \
               WHEN t.name IN ('nvarchar', 'nchar') THEN t.name + '(' + \
                 CASE WHEN c.max_length = -1 THEN 'max' ELSE CAST(c.max_length / 2 AS varchar(10)) END + ')' \
               WHEN t.name IN ('decimal', 'numeric') THEN t.name + '(' + \
                 CAST(c.precision AS varchar(10)) + ',' + CAST(c.scale AS varchar(10)) + ')' \
               WHEN t.name IN ('datetime2', 'datetimeoffset', 'time') THEN t.name + '(' + \
                 CAST(c.scale AS varchar(10)) + ')' \
               ELSE t.name END \
             FROM sys.columns c JOIN sys.types t ON t.user_type_id = \
               CASE WHEN c.user_type_id >= 256 THEN c.system_type_id ELSE c.user_type_id END \
             WHERE c.object_id = OBJECT_ID(@P1) ORDER BY c.column_id"
        }
    };
    let rows = c
        .rows(
            &format!("table {table}"),
            sql,
            &[Param::from(d.quote(table))],
        )
        .await?;
    if rows.is_empty() {
        return Err(Error::usage(format!(
            "no table '{table}' in the database (names are case-sensitive; \
             write `schema.table` for a schema not on the search path)"
        )));
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            Column {
                name: r.next().flatten().unwrap_or_default(),
                ty: r.next().flatten().unwrap_or_else(|| "text".into()),
            }
        })
        .collect())
}

/// The columns a `query` gives, with their types as SQL text (PostgreSQL:
/// format_type, quoted and schema-qualified where needed, as it is written
/// into casts; SQL Server: sp_describe_first_result_set).
async fn query_columns(c: &Session, d: Dialect, from: &str) -> Result<Vec<Column>> {
    match (d, c) {
        (Dialect::Postgres, Session::Pg(pg)) => {
            let st = pg
                .prepare(&format!("SELECT * FROM {from}"))
                .await
                .map_err(|e| client::db_error("query", e))?;
            let mut columns = Vec::new();
            for col in st.columns() {
                let ty: String = pg
                    .query_one("SELECT format_type($1, NULL)", &[&col.type_().oid()])
                    .await
                    .map_err(|e| client::db_error("query", e))?
                    .get(0);
                columns.push(Column {
                    name: col.name().to_string(),
                    ty,
                });
            }
            Ok(columns)
        }
        _ => {
            let rows = c
                .rows(
                    "query",
                    "SELECT name, system_type_name FROM sys.dm_exec_describe_first_result_set(@P1, NULL, 0) \
                     ORDER BY column_ordinal",
                    &[Param::from(format!("SELECT * FROM {from}"))],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let mut r = r.into_iter();
                    Column {
                        name: r.next().flatten().unwrap_or_default(),
                        ty: r.next().flatten().unwrap_or_else(|| "nvarchar(max)".into()),
                    }
                })
                .collect())
        }
    }
}

fn multi_json(m: &[(String, Multi)]) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    for (n, m) in m {
        let v = match m {
            Multi::Separator(s) => json!(s),
            Multi::Child { table, key, column } => {
                json!({ "table": table, "key": key, "column": column })
            }
        };
        o.insert(n.clone(), v);
    }
    serde_json::Value::Object(o)
}

#[async_trait]
impl Connector for SqlConnector {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.target.shown(), self.table.label)
    }

    fn flavor(&self) -> String {
        self.flavor_name().into()
    }

    /// A row has no enabled state: a step that gives no `deprovision`
    /// leaves the rows of its leavers (delete them with
    /// `deprovision: #{ action: "delete" }`).
    fn can_disable_in(&self, _base: Option<&str>) -> bool {
        false
    }

    fn profile(&self) -> Result<serde_json::Value> {
        let password = match &self.opts.password {
            None => serde_json::Value::Null,
            Some(s) => match s.reference() {
                Some(r) => json!(r),
                None => {
                    return Err(Error::usage(
                        "the password was given as plain text, which is never stored; \
                         use secret(\"ENV_NAME\") or prompt_secret(\"label\") so a reference can be saved",
                    ));
                }
            },
        };
        Ok(json!({
            "url": self.target.shown(),
            "table": self.opts.table,
            "query": self.opts.query,
            "key": self.opts.key,
            "changed": self.opts.changed,
            "multi": multi_json(&self.opts.multi),
            "password": password,
            "ca_file": self.opts.ca_file,
            "verify": self.opts.verify,
        }))
    }

    async fn test(&self) -> Result<TestReport> {
        let mut r = TestReport {
            flavor: self.flavor_name().into(),
            ..TestReport::default()
        };
        let sql = match self.table.dialect {
            Dialect::Postgres => {
                "SELECT version(), current_user::text, \
                 CAST(COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS text)"
            }
            Dialect::TSql => {
                "SELECT CAST(@@VERSION AS nvarchar(max)), CAST(SUSER_SNAME() AS nvarchar(max)), \
                 CASE (SELECT encrypt_option FROM sys.dm_exec_connections WHERE session_id = @@SPID) \
                 WHEN 'TRUE' THEN N'true' ELSE N'false' END"
            }
        };
        let row = self
            .reader
            .rows(self.target.shown(), sql, &[])
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        r.reachable = true;
        r.bound = true;
        r.vendor = cell(0);
        r.bind_identity = cell(1);
        let tls = cell(2) == "true";
        r.details.push(("table".into(), self.table.label.clone()));
        r.details
            .push(("key".into(), self.table.key_column().name.clone()));
        r.details.push((
            "columns".into(),
            self.table
                .columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.ty))
                .collect::<Vec<_>>()
                .join(", "),
        ));
        r.details
            .push(("tls".into(), if tls { "on" } else { "off" }.into()));
        r.details.push((
            "verify".into(),
            if !tls {
                "-".into()
            } else if self.opts.verify {
                "on".into()
            } else {
                "OFF".into()
            },
        ));
        Ok(r)
    }

    async fn search(&self, q: &SearchQuery, sink: &mut Sink<'_>) -> Result<()> {
        read::search(self, q, sink).await
    }

    async fn changes(
        &self,
        q: &SearchQuery,
        cursor: Option<&str>,
        sink: &mut Sink<'_>,
    ) -> Result<Option<ChangeRound>> {
        changes::changes(self, q, cursor, sink).await
    }

    async fn attribute_names(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = self.table.columns.iter().map(|c| c.name.clone()).collect();
        v.extend(self.table.children().map(|(n, ..)| n.clone()));
        Ok(v)
    }

    async fn get(&self, identity: &str) -> Result<Option<Entry>> {
        read::get(self, identity).await
    }

    async fn create(&self, dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
        write::create(self, dn, attrs).await
    }

    fn writes_in_flight(&self) -> usize {
        // One session writes a batch's transaction, row after row.
        1
    }

    async fn modify(&self, identity: &str, changes: &[Change]) -> Result<()> {
        write::modify(self, identity, changes).await
    }

    async fn delete(&self, identity: &str) -> Result<()> {
        write::delete(self, identity).await
    }

    fn begin_batch(&self) {
        self.new_batch.store(true, Ordering::SeqCst);
        self.batching.store(true, Ordering::SeqCst);
    }

    async fn flush(&self) -> Result<()> {
        write::commit(self).await
    }
}
