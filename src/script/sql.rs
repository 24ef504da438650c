//! `connect_sql(url, opts)` (API §3): a SQL table or query as a connection.

use std::sync::Arc;

use rhai::Map;

use super::convert::*;
use super::objects::Connection;
use super::runtime::block_on;
use crate::connector::sql::table::Multi;
use crate::connector::sql::{SqlConnector, SqlOptions};

/// The options `connect_sql` understands.
pub const SQL_OPTIONS: &[&str] = &[
    "table",
    "query",
    "key",
    "changed",
    "multi",
    "password",
    "ca_file",
    "verify",
    "page_size",
];

/// Builds SQL options from a script map, rejecting unknown keys.
pub fn sql_options(url: &str, opts: &Map) -> ScriptResult<SqlOptions> {
    check_keys("connect_sql", opts, SQL_OPTIONS)?;
    let key = opt_str(opts, "key")?.ok_or_else(|| {
        rt_err("connect_sql: option 'key' (the column that identifies a row) is required")
    })?;
    let mut o = SqlOptions::new(url, key);
    o.table = opt_str(opts, "table")?;
    o.query = opt_str(opts, "query")?;
    o.changed = opt_str(opts, "changed")?;
    if let Some(pw) = opts.get("password").filter(|p| !p.is_unit()) {
        o.password = Some(to_secret("connect_sql", pw)?);
    }
    o.ca_file = opt_str(opts, "ca_file")?;
    if let Some(v) = opt_bool(opts, "verify")? {
        o.verify = v;
    }
    if let Some(n) = opt_num(opts, "page_size")? {
        if n < 1.0 {
            return Err(rt_err("connect_sql: option 'page_size' must be at least 1"));
        }
        o.page_size = n as usize;
    }
    if let Some(m) = opts.get("multi").filter(|m| !m.is_unit()) {
        let Some(m) = m.clone().try_cast::<Map>() else {
            return Err(rt_err(
                "connect_sql: option 'multi' must be a map: #{ attr: \";\" } or #{ attr: #{ table, key, column } }",
            ));
        };
        for (attr, how) in m {
            let multi = if how.is_string() {
                Multi::Separator(how.to_string())
            } else if let Some(child) = how.clone().try_cast::<Map>() {
                check_keys(
                    &format!("connect_sql: multi '{attr}'"),
                    &child,
                    &["table", "key", "column"],
                )?;
                let need = |k: &str| {
                    opt_str(&child, k)?
                        .ok_or_else(|| rt_err(format!("connect_sql: multi '{attr}' needs '{k}'")))
                };
                Multi::Child {
                    table: need("table")?,
                    key: need("key")?,
                    column: need("column")?,
                }
            } else {
                return Err(rt_err(format!(
                    "connect_sql: multi '{attr}' must be a separator string or #{{ table, key, column }}"
                )));
            };
            o.multi.push((attr.to_string(), multi));
        }
    }
    Ok(o)
}

/// Connects with `opts` and wraps the connection for scripts.
pub fn open_sql(opts: SqlOptions) -> ScriptResult<Connection> {
    let c = block_on(SqlConnector::connect(opts)).map_err(|e| conn_err("connect_sql", e))?;
    Ok(Connection::new(Arc::new(c)))
}

/// SQL bindings.
#[rhai::export_module]
pub mod sql_api {
    use super::*;

    /// Connects to a SQL table and reads it as entries: the `key` column is
    /// each row's DN and anchor, columns are attributes, NULL is absent.
    /// PostgreSQL: `postgres://user@host:port/db` (`?sslmode=disable|prefer|require`).
    /// SQL Server: `mssql://user@host:port/db` (`?encrypt=true|strict|false`)
    /// or an ADO.NET string (`Server=tcp:host,1433;Database=hr;User Id=sync;
    /// Encrypt=true`); SQL Server logins only. A password is never part of
    /// the URL: give `password: secret("ENV")`. Options: `table` (or `query`:
    /// a SELECT, read-only), `key` (required), `changed` (a column that grows
    /// on every change, e.g. `updated_at` or a SQL Server `rowversion`, for
    /// incremental runs), `multi` (`#{ mail: ";" }` or
    /// `#{ phone: #{ table, key, column } }`), `password`, `ca_file`,
    /// `verify` (default true), `page_size` (default 500).
    ///
    /// Example:
    /// ```rhai
    /// let db = connect_sql("postgres://idsync@127.0.0.1:5433/idsync", #{ table: "employees", key: "employee_id", password: secret("PG_PW"), ca_file: env("PG_CA") });
    /// print(db.get("1001").first);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect_sql(url: &str, opts: Map) -> ScriptResult<Connection> {
        open_sql(sql_options(url, &opts)?)
    }
}
