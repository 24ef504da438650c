//! Opening connections from scripts: `connect_ldap(url, opts)` (API §3),
//! and rebuilding one from a stored profile.

use std::sync::Arc;
use std::time::Duration;

use rhai::Map;

use super::convert::*;
use super::objects::Connection;
use super::runtime::block_on;
use crate::connector::csv::{CsvConnector, CsvOptions};
use crate::connector::ldap::{Flavor, LdapConnector, LdapOptions, TlsMode};
use crate::connector::ldif::LdifConnector;

/// The options `connect_ldap` understands.
pub const LDAP_OPTIONS: &[&str] = &[
    "bind_dn",
    "user",
    "password",
    "base",
    "tls",
    "ca_file",
    "verify",
    "page_size",
    "timeout",
    "flavor",
    "flavour",
];

/// Builds LDAP options from a script map, rejecting unknown keys.
pub fn ldap_options(url: &str, opts: &Map) -> ScriptResult<LdapOptions> {
    check_keys("connect_ldap", opts, LDAP_OPTIONS)?;
    let mut o = LdapOptions::new(url);
    o.bind_dn = match opt_str(opts, "bind_dn")? {
        Some(s) => Some(s),
        None => opt_str(opts, "user")?,
    };
    if let Some(pw) = opts.get("password").filter(|p| !p.is_unit()) {
        o.password = Some(to_secret("connect_ldap", pw)?);
    }
    o.base = opt_str(opts, "base")?;
    if let Some(t) = opt_str(opts, "tls")? {
        o.tls = Some(
            t.parse::<TlsMode>()
                .map_err(|e| conn_err("connect_ldap", e))?,
        );
    }
    o.ca_file = opt_str(opts, "ca_file")?;
    if let Some(v) = opt_bool(opts, "verify")? {
        o.verify = v;
    }
    if let Some(n) = opt_num(opts, "page_size")? {
        o.page_size = n as u32;
    }
    if let Some(n) = opt_num(opts, "timeout")? {
        if n == 0.0 {
            return Err(rt_err(
                "connect_ldap: option 'timeout' must be more than 0 seconds",
            ));
        }
        o.timeout = Duration::from_secs_f64(n);
    }
    let flavor = match opt_str(opts, "flavor")? {
        Some(f) => Some(f),
        None => opt_str(opts, "flavour")?,
    };
    if let Some(f) = flavor {
        o.flavor = Some(
            f.parse::<Flavor>()
                .map_err(|e| conn_err("connect_ldap", e))?,
        );
    }
    Ok(o)
}

/// Opens a CSV file as a connection; options `key` (required),
/// `delimiter` (one character, default ","), `multi_value_separator`,
/// `encoding` ("utf-8" default, "windows-1252", "latin1", "utf-16").
pub fn open_csv(path: &str, opts: &Map) -> ScriptResult<Connection> {
    check_keys(
        "connect_csv",
        opts,
        &["key", "delimiter", "multi_value_separator", "encoding"],
    )?;
    let key = opt_str(opts, "key")?.ok_or_else(|| {
        rt_err("connect_csv: option 'key' (the column that identifies a row) is required")
    })?;
    let mut o = CsvOptions::new(key);
    if let Some(d) = opt_str(opts, "delimiter")? {
        let b = d.as_bytes();
        if b.len() != 1 {
            return Err(rt_err(format!(
                "connect_csv: delimiter must be one ASCII character, got '{d}'"
            )));
        }
        o.delimiter = b[0];
    }
    o.multi_value_separator = opt_str(opts, "multi_value_separator")?.filter(|s| !s.is_empty());
    if let Some(e) = opt_str(opts, "encoding")? {
        o.encoding = Some(e.parse().map_err(|e| rt_err(format!("connect_csv: {e}")))?);
    }
    let c = CsvConnector::open(path, o).map_err(|e| conn_err("connect_csv", e))?;
    Ok(Connection::new(Arc::new(c)))
}

/// Opens an LDIF file as a directory-like connection.
pub fn open_ldif(path: &str) -> ScriptResult<Connection> {
    let c = LdifConnector::open(path).map_err(|e| conn_err("connect_ldif", e))?;
    Ok(Connection::new(Arc::new(c)))
}

/// Connects with `opts` and wraps the connection for scripts.
pub fn open_ldap(opts: LdapOptions) -> ScriptResult<Connection> {
    let c = block_on(LdapConnector::connect(opts)).map_err(|e| conn_err("connect_ldap", e))?;
    Ok(Connection::new(Arc::new(c)))
}

/// Connect bindings.
#[rhai::export_module]
pub mod connect_api {
    use super::*;

    /// Connects and binds to an LDAP server (AD, OpenLDAP, others); the
    /// flavour is detected from the rootDSE. Options: `bind_dn`, `password`
    /// (a string or `secret("ENV")`), `base`, `tls` ("ldaps", "starttls",
    /// "none"), `ca_file`, `verify` (default true), `page_size` (default 500),
    /// `timeout` (seconds, default 30), `flavor` ("ad", "openldap", "generic").
    ///
    /// Example:
    /// ```rhai
    /// let ol = connect_ldap("ldap://127.0.0.1:3389", #{ bind_dn: "cn=admin,dc=example,dc=com", password: secret("OL_PW") });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect_ldap(url: &str, opts: Map) -> ScriptResult<Connection> {
        open_ldap(ldap_options(url, &opts)?)
    }

    /// Connects anonymously to an LDAP server.
    ///
    /// Example:
    /// ```rhai
    /// connect_ldap("ldap://127.0.0.1:3389").test()
    /// ```
    #[rhai_fn(name = "connect_ldap", return_raw)]
    pub fn connect_ldap_anon(url: &str) -> ScriptResult<Connection> {
        open_ldap(ldap_options(url, &Map::new())?)
    }

    /// Opens a CSV file (an HR export, say) as a connection: each row is an
    /// entry whose DN and anchor are its `key` column. Options: `key`
    /// (required), `delimiter` (default ","), `multi_value_separator` (splits
    /// a cell into several values), `encoding` ("utf-8" default,
    /// "windows-1252", "latin1", "utf-16"; a byte-order mark is honoured
    /// without it). Usable as a sync source and target; writes replace the
    /// file atomically, in the encoding it was read in.
    ///
    /// Example:
    /// ```rhai
    /// let hr = connect_csv("hr.csv", #{ key: "employee_id" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect_csv(path: &str, opts: Map) -> ScriptResult<Connection> {
        open_csv(path, &opts)
    }

    /// Opens an LDIF file as a small directory: search with filters and
    /// scopes, create, modify, rename, move, delete. Entries get an
    /// `entryUUID` as their anchor. A missing file starts empty and is
    /// created on the first write (atomically replaced afterwards).
    ///
    /// Example:
    /// ```rhai
    /// let dir = connect_ldif("directory.ldif");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect_ldif(path: &str) -> ScriptResult<Connection> {
        open_ldif(path)
    }
}
