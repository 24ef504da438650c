//! Opening a PostgreSQL session: the URL (`postgres://user@host:port/db`,
//! no password in it: the password comes from the `password` option, a
//! secret reference), TLS and its verification, and database errors in
//! words that name the row.
//!
//! TLS follows the URL's `sslmode`: `disable` (never), `prefer` (TLS when
//! the server offers it), `require`, `verify-ca`, `verify-full` (TLS or
//! no connection). Whenever TLS is used the certificate is verified (chain
//! and host name, against `ca_file` or the system roots) unless
//! `verify: false` is given, so `require` is as strict as `verify-full`.
//! Without `sslmode`: `prefer` for a loopback host (`localhost`,
//! `127.x.x.x`, `::1` as written), `require` for every other host.
//!
//! Besides `sslmode` the URL's query may carry only `connect_timeout` and
//! `options`; anything else (notably `password`, `passfile`, `host`,
//! `hostaddr`) is refused, naming the key but never its value.

use std::str::FromStr;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

use crate::connector::{Error, Result, tls};
use crate::model::Secret;

/// Where to connect and how.
#[derive(Clone)]
pub struct Target {
    /// The driver's configuration (with the password set).
    pub config: Config,
    /// The TLS rule.
    pub ssl: SslMode,
    /// The host as written, for messages.
    pub host: String,
    /// The URL without a password, for `describe` and profiles.
    pub shown: String,
    /// `ca_file` option.
    pub ca_file: Option<String>,
    /// `verify` option.
    pub verify: bool,
}

/// Reads a `postgres://` URL and the options into a [`Target`].
pub fn target(
    url: &str,
    password: Option<&Secret>,
    ca_file: Option<String>,
    verify: bool,
) -> Result<Target> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("mssql://") || lower.contains("server=") {
        return Err(Error::usage(
            "a SQL Server connection, not a postgres:// URL (SQL Server is read by \
             connector::sql::mssql)",
        ));
    }
    if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
        return Err(Error::usage(format!(
            "'{}' is not a postgres://user@host:port/db URL",
            redact(url)
        )));
    }
    let mut u = url::Url::parse(url)
        .map_err(|e| Error::usage(format!("bad URL '{}': {e}", redact(url))))?;
    if u.password().is_some() {
        return Err(Error::usage(
            "the URL holds a password; give it as the `password` option \
             (secret(\"ENV\") or prompt_secret(...)) so it is never stored or shown",
        ));
    }
    let host = u.host_str().unwrap_or("").to_string();
    let mut sslmode: Option<String> = None;
    let mut rest: Vec<(String, String)> = Vec::new();
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "sslmode" => sslmode = Some(v.into_owned()),
            k if QUERY_KEYS.contains(&k) => rest.push((k.to_string(), v.into_owned())),
            // Only the key is named: the value may be a secret.
            k => return Err(Error::usage(refused_key(k))),
        }
    }
    if rest.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(rest);
    }
    let ssl = match sslmode.as_deref() {
        Some("disable") => SslMode::Disable,
        Some("allow") | Some("prefer") => SslMode::Prefer,
        Some("require") | Some("verify-ca") | Some("verify-full") => SslMode::Require,
        Some(other) => {
            return Err(Error::usage(format!(
                "unknown sslmode '{other}' (disable, prefer, require, verify-ca, verify-full)"
            )));
        }
        None if is_loopback(&host) => SslMode::Prefer,
        None => SslMode::Require,
    };
    if ssl == SslMode::Disable && (ca_file.is_some()) {
        return Err(Error::usage(
            "ca_file is given but sslmode=disable turns TLS off",
        ));
    }
    let mut config = Config::from_str(u.as_str())
        .map_err(|e| Error::usage(format!("bad URL '{}': {e}", u.as_str())))?;
    if let Some(pw) = password {
        config.password(pw.expose());
    }
    config.ssl_mode(ssl);
    config.application_name("idsync");
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(30));
    }
    let shown = match &sslmode {
        Some(m) => format!("{}?sslmode={m}", u.as_str().trim_end_matches('?')),
        None => u.to_string(),
    };
    Ok(Target {
        config,
        ssl,
        host,
        shown,
        ca_file,
        verify,
    })
}

/// The query parameters a URL may carry besides `sslmode`; the driver
/// reads more (`password`, `passfile`, `host`, `hostaddr`, ...), which would
/// leak a secret into `describe`, messages and profiles, or connect to
/// another host than the one the TLS default was chosen for.
const QUERY_KEYS: &[&str] = &["connect_timeout", "options"];

/// Why the query parameter `key` is refused (never its value).
fn refused_key(key: &str) -> String {
    match key.to_ascii_lowercase().as_str() {
        "password" | "passfile" => format!(
            "the URL holds '{key}'; give the password as the `password` option \
             (secret(\"ENV\") or prompt_secret(...)) so it is never stored or shown"
        ),
        "host" | "hostaddr" => format!(
            "the URL's query holds '{key}'; write the host in the URL itself \
             (postgres://user@host:port/db)"
        ),
        _ => format!(
            "the URL's query parameter '{key}' is not supported \
             (only sslmode, connect_timeout, options)"
        ),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.starts_with("127.") || h == "::1" || h.starts_with('/')
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Opens one session (its driver task runs on the current runtime) and
/// sets the session so values print the same everywhere (UTC, ISO dates).
pub async fn open(t: &Target) -> Result<Client> {
    let client = if t.ssl == SslMode::Disable {
        let (client, conn) = t
            .config
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(t, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    } else {
        let cfg = tls::client_config(t.ca_file.as_deref(), t.verify)?;
        let make = tokio_postgres_rustls::MakeRustlsConnect::new((*cfg).clone());
        let (client, conn) = t
            .config
            .connect(make)
            .await
            .map_err(|e| connect_error(t, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    };
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'")
        .await
        .map_err(|e| db_error(&t.shown, e))?;
    Ok(client)
}

fn connect_error(t: &Target, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code.starts_with("28") {
            return Error::Auth(format!("{}: {}", t.shown, db.message()));
        }
        return Error::Connection(format!("{}: {}", t.shown, db.message()));
    }
    if let Some(text) = tls::explain(&e, &t.host, t.ca_file.as_deref(), false) {
        return Error::Connection(format!("{}: {text}", t.shown));
    }
    let mut text = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        text.push_str(&format!(": {s}"));
        src = s.source();
    }
    if t.ssl == SslMode::Require && text.contains("server does not support TLS") {
        text.push_str(
            " (the server has TLS off: add ?sslmode=disable to the URL on a trusted network)",
        );
    }
    Error::Connection(format!("{}: {text}", t.shown))
}

/// A database error on `object` in an administrator's words: the server's
/// message and detail, the SQLSTATE; a duplicate key reads "already
/// exists" (code 68, as LDAP's entryAlreadyExists), a lost session is a
/// connection error.
pub fn db_error(object: &str, e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => {
            let mut cause = db.message().to_string();
            match db.detail() {
                // "Failing row contains (...)" lists every value of the
                // row (secrets among them, maybe): named, never shown.
                Some(d) if d.starts_with("Failing row contains") => {
                    cause.push_str(" (the row's values are not shown)");
                }
                Some(d) => cause.push_str(&format!(" ({d})")),
                None => {}
            }
            let state = db.code().code();
            cause.push_str(&format!(" [SQLSTATE {state}]"));
            if state == "23505" {
                return Error::object(object, format!("already exists: {cause}"), Some(68));
            }
            if state.starts_with("08") || state.starts_with("57P") {
                return Error::Connection(format!("{object}: {cause}"));
            }
            Error::object(object, cause, None)
        }
        None if e.is_closed() => {
            Error::Connection(format!("{object}: the database connection was lost: {e}"))
        }
        None => {
            let text = e.to_string();
            if text.contains("connection closed") || text.contains("error communicating") {
                Error::Connection(format!(
                    "{object}: the database connection was lost: {text}"
                ))
            } else {
                Error::object(object, text, None)
            }
        }
    }
}
