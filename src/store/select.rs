//! Which state store a process uses, and opening a store from its location.
//!
//! - `IDSYNC_STORE` (environment) or else the setting `store` in the local
//!   SQLite store (written by `use_store(url)`) names the store for
//!   everything; `IDSYNC_SYNC_STORE` or else the setting `sync-store`
//!   names a second one for the sync data (links, change cursors, leases,
//!   run history; see [`super::router`]). The environment wins over the
//!   setting. Neither given: the local `IDSYNC_HOME/state.db`.
//! - A location is `postgres://user@host:port/db[?sslmode=...]`,
//!   `mssql://user@host:port/db[?encrypt=strict]` or an ADO.NET string
//!   (`Server=tcp:host,1433;Database=idsync;User Id=sync;Encrypt=true`) for
//!   SQL Server, or `sqlite:PATH` / a plain path for an SQLite file.
//! - Secrets by reference only: a URL holding a password (or `password=` /
//!   `passfile=` in its query) is refused without showing it. The password
//!   comes from `IDSYNC_STORE_PASSWORD` (for `IDSYNC_SYNC_STORE`:
//!   `IDSYNC_SYNC_STORE_PASSWORD`, else `IDSYNC_STORE_PASSWORD`); TLS is
//!   verified against `IDSYNC_STORE_CA_FILE` or the system roots (SQL
//!   Server: `TrustServerCertificate=true` in the location accepts any
//!   certificate, with a warning).

use std::path::PathBuf;
use std::sync::Arc;

use super::config_file::{STORE_SETTING, SYNC_STORE_SETTING};
use super::router::RouterStore;
use super::{MssqlStore, PostgresStore, SqliteStore, StateStore, StoreError};
use crate::connector::sql::mssql;
use crate::model::Secret;

/// Environment variable naming the store.
pub const STORE_ENV: &str = "IDSYNC_STORE";
/// Environment variable naming the store for sync data.
pub const SYNC_STORE_ENV: &str = "IDSYNC_SYNC_STORE";
/// The shared store's password.
pub const PASSWORD_ENV: &str = "IDSYNC_STORE_PASSWORD";
/// The sync store's password (falls back to [`PASSWORD_ENV`]).
pub const SYNC_PASSWORD_ENV: &str = "IDSYNC_SYNC_STORE_PASSWORD";
/// CA certificates (PEM) for the stores' TLS.
pub const CA_FILE_ENV: &str = "IDSYNC_STORE_CA_FILE";

/// A store location, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (the URL as given; it holds no password).
    Postgres(String),
    /// A SQL Server database (the URL or ADO.NET string as given; no password in it).
    Mssql(String),
}

/// `location` fit to print: a password in a URL is masked.
pub fn shown(location: &str) -> String {
    let loc = location.trim();
    if looks_ado(loc) {
        return mssql::masked_ado(loc);
    }
    match url::Url::parse(location.trim()) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u)
            if u.query_pairs().any(|(k, _)| {
                k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("passfile")
            }) =>
        {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.path()
            )
        }
        _ => location.trim().to_string(),
    }
}

/// True when `loc` reads as an ADO.NET connection string (`key=value;...`),
/// not a file path (a path may hold `=` but hardly `=` and `;` both).
fn looks_ado(loc: &str) -> bool {
    !loc.contains("://") && loc.contains('=') && (loc.contains(';') || mssql::is_mssql(loc))
}

/// Reads a store location. Never echoes a URL that holds a password.
pub fn parse(location: &str) -> Result<Location, StoreError> {
    let loc = location.trim();
    let refused = |cause: String| StoreError::InvalidName {
        what: "store location",
        name: shown(loc),
        reason: cause,
    };
    let lower = loc.to_ascii_lowercase();
    if loc.is_empty() {
        return Err(refused("the store location is empty".into()));
    }
    if mssql::is_mssql(loc) || looks_ado(loc) {
        if let Some(key) = mssql::password_key(loc) {
            return Err(refused(format!(
                "the store location holds a password ('{key}'); remove it and give it in \
                 {PASSWORD_ENV} (it is never stored or shown)"
            )));
        }
        // Everything else the connector's reading refuses (a missing server or
        // login, unknown keys, integrated authentication), said its way.
        mssql::target(loc, None, None, true).map_err(|e| refused(e.to_string()))?;
        return Ok(Location::Mssql(loc.to_string()));
    }
    if let Some(path) = loc.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(refused(
                "sqlite: needs a file path (sqlite:/path/state.db)".into(),
            ));
        }
        return Ok(Location::Sqlite(PathBuf::from(path)));
    }
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let u = url::Url::parse(loc)
            .map_err(|e| refused(format!("the postgres:// URL does not parse ({e})")))?;
        if u.password().is_some() {
            return Err(refused(format!(
                "the store URL holds a password; remove it from the URL and give it in {PASSWORD_ENV} \
                 (it is never stored or shown)"
            )));
        }
        for (k, _) in u.query_pairs() {
            if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("passfile") {
                return Err(refused(format!(
                    "the store URL holds '{k}'; give the password in {PASSWORD_ENV} instead"
                )));
            }
        }
        return Ok(Location::Postgres(loc.to_string()));
    }
    if let Some((scheme, _)) = loc.split_once("://") {
        return Err(refused(format!(
            "unknown store kind '{scheme}://' (postgres://user@host:port/db, \
             mssql://user@host:port/db, sqlite:PATH or a path)"
        )));
    }
    Ok(Location::Sqlite(PathBuf::from(loc)))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Opens the store at `location`; `sync` picks the password variable.
pub fn open_location(location: &str, sync: bool) -> Result<Arc<dyn StateStore>, StoreError> {
    match parse(location)? {
        Location::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
        Location::Postgres(url) => Ok(Arc::new(PostgresStore::open(
            &url,
            password(sync).as_ref(),
            env(CA_FILE_ENV),
        )?)),
        Location::Mssql(url) => Ok(Arc::new(MssqlStore::open(
            &url,
            password(sync).as_ref(),
            env(CA_FILE_ENV),
        )?)),
    }
}

/// The shared store's password from the environment (see the module doc).
fn password(sync: bool) -> Option<Secret> {
    let var = if sync && env(SYNC_PASSWORD_ENV).is_some() {
        SYNC_PASSWORD_ENV
    } else {
        PASSWORD_ENV
    };
    env(var).map(|v| Secret::with_reference(v, format!("env:{var}")))
}

/// Where this process's stores are: (store, sync store), each `None` for
/// the local default, and for each whether it came from the environment.
pub fn chosen(local: &dyn StateStore) -> Result<(Option<String>, Option<String>), StoreError> {
    let store = match env(STORE_ENV) {
        Some(v) => Some(v),
        None => local.get_setting(STORE_SETTING)?,
    };
    let sync = match env(SYNC_STORE_ENV) {
        Some(v) => Some(v),
        None => local.get_setting(SYNC_STORE_SETTING)?,
    };
    Ok((store, sync))
}

/// The store this process uses, given the local SQLite store (see the
/// module doc for the rules).
pub fn open_selected(local: Arc<SqliteStore>) -> Result<Arc<dyn StateStore>, StoreError> {
    let (store, sync) = chosen(local.as_ref())?;
    let config: Arc<dyn StateStore> = match &store {
        Some(loc) => open_location(loc, false)?,
        None => local,
    };
    Ok(match &sync {
        Some(loc) => Arc::new(RouterStore::new(config, open_location(loc, true)?)),
        None => config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_read_and_refused_clearly() {
        assert_eq!(
            parse("sqlite:/x/state.db").unwrap(),
            Location::Sqlite("/x/state.db".into())
        );
        assert_eq!(
            parse("/x/s.db").unwrap(),
            Location::Sqlite("/x/s.db".into())
        );
        assert_eq!(
            parse("postgres://u@h:5/db?sslmode=disable").unwrap(),
            Location::Postgres("postgres://u@h:5/db?sslmode=disable".into())
        );
        assert_eq!(
            parse("mssql://sync@sql1:1433/idsync").unwrap(),
            Location::Mssql("mssql://sync@sql1:1433/idsync".into())
        );
        let ado = "Server=tcp:sql1,1433;Database=idsync;User Id=sync;Encrypt=true";
        assert_eq!(parse(ado).unwrap(), Location::Mssql(ado.into()));
        assert_eq!(
            parse("/srv/a=b/state.db").unwrap(),
            Location::Sqlite("/srv/a=b/state.db".into())
        );
        let e = parse("Database=x;User Id=u").unwrap_err().to_string();
        assert!(e.contains("no server"), "{e}");
        let e = parse("mssql://sql1/idsync").unwrap_err().to_string();
        assert!(e.contains("no login"), "{e}");
        let e = parse("Server=sql1;Integrated Security=true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("integrated"), "{e}");
        for leaky in [
            "postgres://u:Hunter2pw@h/db",
            "postgres://u@h/db?password=Hunter2pw",
            "mssql://u:Hunter2pw@h/db",
            "Server=h;User Id=u;Password=Hunter2pw",
            "Server=h;User Id=u;PWD={Hunter2pw;x}",
        ] {
            let e = parse(leaky).unwrap_err().to_string();
            assert!(
                e.to_lowercase().contains("password") && !e.contains("Hunter2pw"),
                "{e}"
            );
            assert!(!shown(leaky).contains("Hunter2pw"), "{}", shown(leaky));
        }
        assert!(
            parse("ftp://x")
                .unwrap_err()
                .to_string()
                .contains("unknown store kind")
        );
    }
}
