//! One database session, PostgreSQL (tokio-postgres) or SQL Server
//! (tiberius), behind the few calls the connector makes: rows of a query as
//! text, a statement's row count, a batch of plain SQL. Values travel as
//! text parameters (the SQL text casts them); errors are mapped with the
//! object they concern.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::types::ToSql;

use super::dialect::Dialect;
use super::mssql::{self, MsClient, MsTarget};
use super::{client, client::Target};
use crate::connector::{Error, Result};

/// Where a connection goes.
#[derive(Clone)]
pub enum Endpoint {
    /// PostgreSQL.
    Pg(Target),
    /// SQL Server.
    Ms(MsTarget),
}

impl Endpoint {
    /// The connection as shown (no password).
    pub fn shown(&self) -> &str {
        match self {
            Endpoint::Pg(t) => &t.shown,
            Endpoint::Ms(t) => &t.shown,
        }
    }

    /// The SQL dialect spoken there.
    pub fn dialect(&self) -> Dialect {
        match self {
            Endpoint::Pg(_) => Dialect::Postgres,
            Endpoint::Ms(_) => Dialect::TSql,
        }
    }
}

/// A parameter: text (NULL as `None`) or, for PostgreSQL's `= ANY($n)`, a
/// list of texts.
#[derive(Clone, Debug)]
pub enum Param {
    /// One value.
    Text(Option<String>),
    /// A text array.
    List(Vec<String>),
}

impl From<String> for Param {
    fn from(s: String) -> Param {
        Param::Text(Some(s))
    }
}

impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Param {
        Param::Text(s)
    }
}

/// Text parameters.
pub fn texts(v: &[String]) -> Vec<Param> {
    v.iter().cloned().map(Param::from).collect()
}

/// An open session.
pub enum Session {
    /// PostgreSQL (its driver task runs on the runtime).
    Pg(tokio_postgres::Client),
    /// SQL Server (one request at a time), and whether it was lost.
    Ms(Box<tokio::sync::Mutex<MsClient>>, AtomicBool),
}

/// Rows as text cells (NULL as `None`).
pub type Rows = Vec<Vec<Option<String>>>;

impl Session {
    /// Opens a session to `e`.
    pub async fn open(e: &Endpoint) -> Result<Session> {
        match e {
            Endpoint::Pg(t) => Ok(Session::Pg(client::open(t).await?)),
            Endpoint::Ms(t) => Ok(Session::Ms(
                Box::new(tokio::sync::Mutex::new(mssql::open(t).await?)),
                AtomicBool::new(false),
            )),
        }
    }

    /// True once the server side is gone.
    pub fn is_closed(&self) -> bool {
        match self {
            Session::Pg(c) => c.is_closed(),
            Session::Ms(_, lost) => lost.load(Ordering::SeqCst),
        }
    }

    fn ms_err(&self, object: &str, e: tiberius::error::Error) -> Error {
        let e = mssql::db_error(object, e);
        if let (Session::Ms(_, lost), Error::Connection(_)) = (self, &e) {
            lost.store(true, Ordering::SeqCst);
        }
        e
    }

    /// The rows of `sql` (errors name `object`).
    pub async fn rows(&self, object: &str, sql: &str, params: &[Param]) -> Result<Rows> {
        match self {
            Session::Pg(c) => {
                let refs = pg_refs(params);
                let rows = c
                    .query(sql, &refs)
                    .await
                    .map_err(|e| client::db_error(object, e))?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| pg_text(r, i))
                            .collect::<Vec<Option<String>>>()
                    })
                    .collect())
            }
            Session::Ms(c, _) => {
                let owned = ms_params(params)?;
                let refs: Vec<&dyn tiberius::ToSql> =
                    owned.iter().map(|p| p as &dyn tiberius::ToSql).collect();
                let mut c = c.lock().await;
                let r = async {
                    let stream = c.query(sql, &refs).await?;
                    stream.into_first_result().await
                }
                .await;
                let rows = r.map_err(|e| self.ms_err(object, e))?;
                Ok(rows
                    .iter()
                    .map(|r| r.cells().map(|(_, d)| ms_text(d)).collect())
                    .collect())
            }
        }
    }

    /// The number of rows `sql` changed.
    pub async fn exec(&self, object: &str, sql: &str, params: &[Param]) -> Result<u64> {
        match self {
            Session::Pg(c) => {
                let refs = pg_refs(params);
                c.execute(sql, &refs)
                    .await
                    .map_err(|e| client::db_error(object, e))
            }
            Session::Ms(c, _) => {
                let owned = ms_params(params)?;
                let refs: Vec<&dyn tiberius::ToSql> =
                    owned.iter().map(|p| p as &dyn tiberius::ToSql).collect();
                let mut c = c.lock().await;
                let r = c.execute(sql, &refs).await;
                r.map(|r| r.total()).map_err(|e| self.ms_err(object, e))
            }
        }
    }

    /// Runs plain SQL without parameters (transaction control).
    pub async fn batch(&self, object: &str, sql: &str) -> Result<()> {
        match self {
            Session::Pg(c) => c
                .batch_execute(sql)
                .await
                .map_err(|e| client::db_error(object, e)),
            Session::Ms(c, _) => {
                let mut c = c.lock().await;
                let r = async { c.simple_query(sql).await?.into_results().await }.await;
                r.map(|_| ()).map_err(|e| self.ms_err(object, e))
            }
        }
    }
}

fn pg_refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Text(t) => t as &(dyn ToSql + Sync),
            Param::List(l) => l as &(dyn ToSql + Sync),
        })
        .collect()
}

/// A PostgreSQL cell read as text (the connector's queries cast to text;
/// catalogue queries may give names and numbers).
fn pg_text(r: &tokio_postgres::Row, i: usize) -> Option<String> {
    if let Ok(v) = r.try_get::<_, Option<String>>(i) {
        return v;
    }
    if let Ok(v) = r.try_get::<_, Option<i64>>(i) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = r.try_get::<_, Option<i32>>(i) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = r.try_get::<_, Option<bool>>(i) {
        return v.map(|b| b.to_string());
    }
    None
}

fn ms_params(params: &[Param]) -> Result<Vec<Option<String>>> {
    params
        .iter()
        .map(|p| match p {
            Param::Text(t) => Ok(t.clone()),
            Param::List(_) => Err(Error::Other(
                "internal: a list parameter reached SQL Server".into(),
            )),
        })
        .collect()
}

/// A SQL Server cell as text: strings as they are, numbers and bits as
/// Rust prints them.
fn ms_text(d: &tiberius::ColumnData<'_>) -> Option<String> {
    use tiberius::ColumnData as D;
    match d {
        D::String(s) => s.as_ref().map(|s| s.to_string()),
        D::U8(v) => v.map(|n| n.to_string()),
        D::I16(v) => v.map(|n| n.to_string()),
        D::I32(v) => v.map(|n| n.to_string()),
        D::I64(v) => v.map(|n| n.to_string()),
        D::F32(v) => v.map(|n| n.to_string()),
        D::F64(v) => v.map(|n| n.to_string()),
        D::Bit(v) => v.map(|b| b.to_string()),
        D::Guid(v) => v.as_ref().map(|g| g.to_string()),
        D::Numeric(v) => v.as_ref().map(|n| n.to_string()),
        _ => None,
    }
}
