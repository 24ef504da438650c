//! SQL Server sessions through tiberius: a `mssql://user@host:port/db` URL
//! or an ADO.NET connection string (`Server=tcp:host,1433;Database=...;
//! User Id=...;Encrypt=true`) read into a tiberius configuration, sessions
//! opened over tokio, and SQL Server's errors in an administrator's words.
//!
//! Rules: SQL Server logins, the password only as the `password` option (a
//! secret reference); a password inside the URL or string is refused naming
//! the key, never the value. Integrated (Windows/Kerberos) authentication is
//! refused: this build has no GSSAPI support on Linux. TLS is required and
//! the certificate verified by default (`ca_file` adds a CA, `verify: false`
//! or `TrustServerCertificate=true` accepts any certificate); `Encrypt=strict`
//! is TDS 8.0; `Encrypt=false` is honoured only when written, and then with a
//! warning (SQL Server still encrypts the login, not the rows).

use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::connector::{Error, Result};
use crate::model::Secret;

/// A session with SQL Server.
pub type MsClient = Client<Compat<TcpStream>>;

/// Where to connect and how.
#[derive(Clone)]
pub struct MsTarget {
    host: String,
    port: u16,
    database: Option<String>,
    user: String,
    app: String,
    password: Option<Secret>,
    ca_file: Option<String>,
    /// `host:port`.
    pub addr: String,
    /// The connection without a password, for `describe`, messages and profiles.
    pub shown: String,
    /// The encryption asked for.
    pub encrypt: EncryptionLevel,
    /// Whether the certificate is verified.
    pub verify: bool,
    /// The warning to print when connecting (TLS off or unverified), if any.
    pub warning: Option<String>,
    /// Seconds to wait for the connection and login.
    pub timeout: Duration,
}

/// True when `url` names SQL Server (`mssql://`, `sqlserver://` or an
/// ADO.NET string with `Server=` / `Data Source=`).
pub fn is_mssql(url: &str) -> bool {
    let l = url.trim_start().to_ascii_lowercase();
    l.starts_with("mssql://")
        || l.starts_with("sqlserver://")
        || (!l.contains("://")
            && ado_pairs(url)
                .map(|p| {
                    p.iter()
                        .any(|(k, _)| SERVER_KEYS.contains(&norm(k).as_str()))
                })
                .unwrap_or(false))
}

const SERVER_KEYS: &[&str] = &["server", "datasource", "address", "addr", "networkaddress"];

/// The keys an ADO.NET string may carry (lower case, spaces removed).
const ADO_KEYS: &[&str] = &[
    "server",
    "datasource",
    "address",
    "addr",
    "networkaddress",
    "database",
    "initialcatalog",
    "userid",
    "uid",
    "user",
    "username",
    "encrypt",
    "trustservercertificate",
    "integratedsecurity",
    "trustedconnection",
    "authentication",
    "applicationname",
    "app",
    "connecttimeout",
    "connectiontimeout",
    "timeout",
];

fn norm(k: &str) -> String {
    k.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Splits an ADO.NET string into `(key, value)` pairs; values may be quoted
/// with `'...'`, `"..."` or `{...}` (which may hold `;`).
fn ado_pairs(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == '=' {
                break;
            }
            if c == ';' {
                if !key.trim().is_empty() {
                    // Only the key: the text may be a secret.
                    return Err(Error::usage(format!(
                        "connection string: '{}' has no value (write key=value;...)",
                        key.trim()
                    )));
                }
                key.clear();
                continue;
            }
            key.push(c);
        }
        let key = key.trim().to_string();
        if key.is_empty() {
            if chars.peek().is_none() {
                return Ok(out);
            }
            return Err(Error::usage("connection string: a value without a key"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        match chars.peek().copied() {
            Some(q @ ('\'' | '"' | '{')) => {
                let close = if q == '{' { '}' } else { q };
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err(Error::usage(format!(
                                "connection string: the value of '{key}' is not closed"
                            )));
                        }
                        Some(c) if c == close => {
                            if chars.peek() == Some(&close) {
                                chars.next();
                                val.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(c) => val.push(c),
                    }
                }
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                }
            }
            _ => {
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                    val.push(c);
                }
                val = val.trim().to_string();
            }
        }
        out.push((key, val));
    }
}

/// The key under which `conn` (an `mssql://` URL or an ADO.NET string)
/// holds a password, if it does: `Password`, `PWD` or a URL's `user:pass@`.
/// For callers with their own wording (the state store), never the value.
pub fn password_key(conn: &str) -> Option<String> {
    let lower = conn.trim_start().to_ascii_lowercase();
    if lower.starts_with("mssql://") || lower.starts_with("sqlserver://") {
        let u = url::Url::parse(conn.trim()).ok()?;
        if u.password().is_some() {
            return Some("user:password@".into());
        }
        return u
            .query_pairs()
            .find(|(k, _)| matches!(norm(k).as_str(), "password" | "pwd"))
            .map(|(k, _)| k.into_owned());
    }
    ado_pairs(conn)
        .ok()?
        .into_iter()
        .find(|(k, _)| matches!(norm(k).as_str(), "password" | "pwd"))
        .map(|(k, _)| k)
}

/// An ADO.NET string fit to print: the value of `Password` / `PWD` replaced
/// by `***`; a string that does not parse is not shown at all.
pub fn masked_ado(conn: &str) -> String {
    match ado_pairs(conn) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(k, v)| {
                if matches!(norm(&k).as_str(), "password" | "pwd") {
                    format!("{k}=***")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(";"),
        Err(_) => "(a connection string that does not parse)".into(),
    }
}

/// Why the key `key` of a URL or connection string is refused (never its value).
fn refused_key(key: &str) -> Error {
    match norm(key).as_str() {
        "password" | "pwd" => Error::usage(format!(
            "the connection string holds '{key}'; give the password as the `password` option \
             (secret(\"ENV\") or prompt_secret(...)) so it is never stored or shown"
        )),
        _ => Error::usage(format!(
            "the connection string's key '{key}' is not supported (Server, Database, User Id, \
             Encrypt, TrustServerCertificate, Application Name, Connect Timeout)"
        )),
    }
}

fn yes_no(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "sspi" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(Error::usage(format!(
            "connection string: '{key}' must be true or false, not '{other}'"
        ))),
    }
}

/// What a URL or string asked for, before the tiberius configuration.
#[derive(Default)]
struct Asked {
    host: String,
    port: Option<u16>,
    database: Option<String>,
    user: Option<String>,
    encrypt: Option<String>,
    trust_server_cert: bool,
    app: Option<String>,
    timeout: Option<u64>,
}

fn integrated_refused() -> Error {
    Error::usage(
        "integrated (Windows/Kerberos) authentication is not available: idsync's SQL Server \
         driver (tiberius) has no GSSAPI support in this build on Linux; use a SQL Server login \
         (User Id=... and the `password` option)",
    )
}

fn from_ado(s: &str) -> Result<Asked> {
    let mut a = Asked::default();
    for (k, v) in ado_pairs(s)? {
        let n = norm(&k);
        if !ADO_KEYS.contains(&n.as_str()) {
            return Err(refused_key(&k));
        }
        match n.as_str() {
            "server" | "datasource" | "address" | "addr" | "networkaddress" => {
                let v = v.strip_prefix("tcp:").unwrap_or(&v);
                if v.contains('\\') {
                    return Err(Error::usage(format!(
                        "connection string: named instances ('{v}') need the SQL Browser, which \
                         idsync does not ask; give the instance's port: Server=tcp:host,port"
                    )));
                }
                let (h, p) = match v.rsplit_once(',') {
                    Some((h, p)) => (h, Some(p)),
                    None => (v, None),
                };
                a.host = h.trim().to_string();
                if let Some(p) = p {
                    a.port = Some(p.trim().parse().map_err(|_| {
                        Error::usage(format!("connection string: bad port '{}'", p.trim()))
                    })?);
                }
            }
            "database" | "initialcatalog" => a.database = Some(v),
            "userid" | "uid" | "user" | "username" => a.user = Some(v),
            "encrypt" => a.encrypt = Some(v),
            "trustservercertificate" => a.trust_server_cert = yes_no(&k, &v)?,
            "integratedsecurity" | "trustedconnection" => {
                if yes_no(&k, &v)? {
                    return Err(integrated_refused());
                }
            }
            "authentication" => {
                if !v.eq_ignore_ascii_case("SqlPassword") {
                    return Err(Error::usage(format!(
                        "connection string: Authentication={v} is not supported \
                         (SQL Server logins only)"
                    )));
                }
            }
            "applicationname" | "app" => a.app = Some(v),
            _ => {
                a.timeout = Some(v.parse().map_err(|_| {
                    Error::usage(format!("connection string: '{k}' must be seconds"))
                })?)
            }
        }
    }
    Ok(a)
}

fn from_url(url: &str) -> Result<Asked> {
    let u = url::Url::parse(url).map_err(|e| Error::usage(format!("bad URL: {e}")))?;
    if u.password().is_some() {
        return Err(Error::usage(
            "the URL holds a password; give it as the `password` option \
             (secret(\"ENV\") or prompt_secret(...)) so it is never stored or shown",
        ));
    }
    let dec = |s: &str| {
        percent_decode(s).map_err(|_| Error::usage("bad URL: undecodable percent escape"))
    };
    let mut a = Asked {
        host: u.host_str().unwrap_or("").to_string(),
        port: u.port(),
        ..Asked::default()
    };
    if !u.username().is_empty() {
        a.user = Some(dec(u.username())?);
    }
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        a.database = Some(dec(db)?);
    }
    for (k, v) in u.query_pairs() {
        match norm(&k).as_str() {
            "encrypt" => a.encrypt = Some(v.into_owned()),
            "trustservercertificate" => a.trust_server_cert = yes_no(&k, &v)?,
            "integratedsecurity" | "trustedconnection" if yes_no(&k, &v)? => {
                return Err(integrated_refused());
            }
            "integratedsecurity" | "trustedconnection" => {}
            "applicationname" => a.app = Some(v.into_owned()),
            "connecttimeout" => {
                a.timeout = Some(
                    v.parse()
                        .map_err(|_| Error::usage(format!("the URL's '{k}' must be seconds")))?,
                )
            }
            _ => return Err(refused_key(&k)),
        }
    }
    Ok(a)
}

fn percent_decode(s: &str) -> std::result::Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// Reads a SQL Server URL or ADO.NET string and the options into a [`MsTarget`].
pub fn target(
    url: &str,
    password: Option<&Secret>,
    ca_file: Option<String>,
    verify: bool,
) -> Result<MsTarget> {
    let lower = url.trim_start().to_ascii_lowercase();
    let a = if lower.starts_with("mssql://") || lower.starts_with("sqlserver://") {
        from_url(url.trim())?
    } else {
        from_ado(url)?
    };
    if a.host.is_empty() {
        return Err(Error::usage(
            "no server in the SQL Server connection (mssql://user@host:port/db or Server=tcp:host,port)",
        ));
    }
    let user = a.user.clone().ok_or_else(|| {
        Error::usage("no login in the SQL Server connection (mssql://user@host/db or User Id=...)")
    })?;
    let encrypt = match a.encrypt.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "yes" | "mandatory" | "required") => EncryptionLevel::Required,
        Some("strict") => EncryptionLevel::Strict,
        Some("false" | "no" | "optional") => EncryptionLevel::Off,
        Some(other) => {
            return Err(Error::usage(format!(
                "Encrypt={other} is not known (true, strict, false)"
            )));
        }
    };
    let verify = verify && !a.trust_server_cert;
    let port = a.port.unwrap_or(1433);
    if verify
        && let Some(ca) = &ca_file
        && std::fs::metadata(ca).is_err()
    {
        return Err(Error::usage(format!("ca_file '{ca}': cannot read it")));
    }
    let timeout = Duration::from_secs(a.timeout.unwrap_or(30).max(1));
    let shown = format!(
        "mssql://{user}@{}:{port}/{}{}",
        a.host,
        a.database.as_deref().unwrap_or(""),
        match encrypt {
            EncryptionLevel::Off => "?encrypt=false",
            EncryptionLevel::Strict => "?encrypt=strict",
            _ => "",
        }
    );
    let warning = match (encrypt, verify) {
        (EncryptionLevel::Off, _) => Some(format!(
            "{shown}: Encrypt=false: only the login is encrypted; queries and rows cross the \
             network in clear text (use it on a trusted network only)"
        )),
        (_, false) => Some(format!(
            "{shown}: the server certificate is not verified (verify: false or \
             TrustServerCertificate=true): anyone in the path can pose as the server"
        )),
        _ => None,
    };
    Ok(MsTarget {
        host: a.host.clone(),
        port,
        database: a.database.clone(),
        user,
        app: a.app.unwrap_or_else(|| "idsync".into()),
        password: password.cloned(),
        ca_file,
        addr: format!("{}:{port}", a.host),
        shown,
        encrypt,
        verify,
        warning,
        timeout,
    })
}

impl MsTarget {
    /// tiberius's configuration (with the password set).
    fn config(&self) -> Config {
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.port);
        if let Some(db) = &self.database {
            config.database(db);
        }
        config.application_name(&self.app);
        config.authentication(AuthMethod::sql_server(
            &self.user,
            self.password.as_ref().map(|p| p.expose()).unwrap_or(""),
        ));
        config.encryption(self.encrypt);
        if !self.verify {
            config.trust_cert();
        } else if let Some(ca) = &self.ca_file {
            config.trust_cert_ca(ca);
        }
        config.handshake_timeout(Some(self.timeout));
        config
    }
}

/// Opens one session: TCP, prelogin, TLS as asked, login.
pub async fn open(t: &MsTarget) -> Result<MsClient> {
    let tcp = tokio::time::timeout(t.timeout, TcpStream::connect(&t.addr))
        .await
        .map_err(|_| {
            Error::Connection(format!(
                "{}: no answer from {} within {:?}",
                t.shown, t.addr, t.timeout
            ))
        })?
        .map_err(|e| {
            Error::Connection(format!("{}: cannot connect to {}: {e}", t.shown, t.addr))
        })?;
    let _ = tcp.set_nodelay(true);
    Client::connect(t.config(), tcp.compat_write())
        .await
        .map_err(|e| connect_error(t, e))
}

fn connect_error(t: &MsTarget, e: tiberius::error::Error) -> Error {
    use tiberius::error::Error as E;
    match &e {
        // 18456: login failed; 18452/18470/18486/18487/18488: login refused
        E::Server(te) if matches!(te.code(), 18456 | 18452 | 18470 | 18486 | 18487 | 18488) => {
            Error::Auth(format!(
                "{}: {} [SQL Server error {}]",
                t.shown,
                te.message(),
                te.code()
            ))
        }
        E::Server(te) => Error::Connection(format!(
            "{}: {} [SQL Server error {}]",
            t.shown,
            te.message(),
            te.code()
        )),
        E::Tls(m) => Error::Connection(format!(
            "{}: TLS failed: {m}{}",
            t.shown,
            if t.verify {
                " (give the server's CA as `ca_file`, or verify: false on a trusted network)"
            } else {
                ""
            }
        )),
        E::Protocol(m) if m.contains("ncrypt") || m.contains("TLS") => Error::Connection(format!(
            "{}: {m} (the server does not offer the encryption asked for; Encrypt=false \
             turns it off on a trusted network)",
            t.shown
        )),
        E::Routing { host, port } => Error::Connection(format!(
            "{}: the server redirects to {host}:{port}; connect there",
            t.shown
        )),
        _ => Error::Connection(format!("{}: {e}", t.shown)),
    }
}

/// A SQL Server error on `object` in an administrator's words: the server's
/// message and error number; a duplicate key (2627, 2601) reads "already
/// exists" (code 68, as LDAP's entryAlreadyExists); a lost session is a
/// connection error.
pub fn db_error(object: &str, e: tiberius::error::Error) -> Error {
    use tiberius::error::Error as E;
    match e {
        E::Server(te) => {
            let cause = format!("{} [SQL Server error {}]", te.message(), te.code());
            match te.code() {
                2627 | 2601 => Error::object(object, format!("already exists: {cause}"), Some(68)),
                // 233, 10054, 10053: the session was ended
                233 | 10053 | 10054 => Error::Connection(format!("{object}: {cause}")),
                _ => Error::object(object, cause, None),
            }
        }
        E::Io { message, .. } => Error::Connection(format!(
            "{object}: the database connection was lost: {message}"
        )),
        other => Error::object(object, other.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw() -> Secret {
        Secret::with_reference("pa55-w0rd-value".into(), "PW")
    }

    #[test]
    fn urls_and_connection_strings_read_the_same() {
        let u = target(
            "mssql://sa@db1.example.com:1444/hr",
            Some(&pw()),
            None,
            true,
        )
        .unwrap();
        assert_eq!(u.addr, "db1.example.com:1444");
        assert_eq!(u.shown, "mssql://sa@db1.example.com:1444/hr");
        assert_eq!(u.encrypt, EncryptionLevel::Required);
        assert!(u.verify && u.warning.is_none());
        let a = target(
            "Server=tcp:db1.example.com,1444;Database=hr;User Id=sa;Encrypt=true;\
             TrustServerCertificate=false",
            Some(&pw()),
            None,
            true,
        )
        .unwrap();
        assert_eq!(a.addr, u.addr);
        assert_eq!(a.shown, u.shown);
        assert_eq!(a.encrypt, EncryptionLevel::Required);
        assert!(is_mssql("Data Source=db1;User Id=sa") && is_mssql("mssql://sa@h/db"));
        assert!(!is_mssql("postgres://u@h/db"));
        let s = target("Server=h;User Id={a;b};Encrypt=strict", None, None, true).unwrap();
        assert_eq!(s.encrypt, EncryptionLevel::Strict);
        assert!(s.shown.starts_with("mssql://a;b@h:1433/"), "{}", s.shown);
    }

    #[test]
    fn a_password_in_the_connection_is_refused_naming_the_key_only() {
        for url in [
            "mssql://sa:Sup3rS3cret@h/db",
            "Server=h;User Id=sa;Password=Sup3rS3cret",
            "Server=h;User Id=sa;PWD='Sup3rS3cret;x'",
            "mssql://sa@h/db?password=Sup3rS3cret",
        ] {
            let e = target(url, None, None, true).err().expect(url).to_string();
            assert!(
                e.contains("password") || e.contains("Password") || e.contains("PWD"),
                "{e}"
            );
            assert!(!e.contains("Sup3rS3cret"), "{e}");
            assert!(password_key(url).is_some(), "{url}");
        }
        assert_eq!(password_key("Server=h;User Id=sa"), None);
        assert_eq!(password_key("mssql://sa@h/db"), None);
        assert_eq!(
            masked_ado("Server=h;User Id=sa;PWD='Sup3rS3cret;x'"),
            "Server=h;User Id=sa;PWD=***"
        );
        assert!(!masked_ado("Server=h;Password='Sup3r").contains("Sup3r"));
    }

    #[test]
    fn integrated_auth_is_refused_with_the_reason_and_tls_off_warns() {
        let e = target("Server=h;Integrated Security=SSPI", None, None, true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("integrated") && e.contains("GSSAPI"), "{e}");
        let off = target("Server=h;User Id=sa;Encrypt=false", Some(&pw()), None, true).unwrap();
        assert_eq!(off.encrypt, EncryptionLevel::Off);
        assert!(off.warning.unwrap().contains("clear text"));
        let nv = target("mssql://sa@h/db", Some(&pw()), None, false).unwrap();
        assert!(!nv.verify && nv.warning.unwrap().contains("not verified"));
        let tsc = target(
            "Server=h;User Id=sa;TrustServerCertificate=true",
            None,
            None,
            true,
        );
        assert!(!tsc.unwrap().verify);
        let e = target("Server=h\\SQLEXPRESS;User Id=sa", None, None, true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("port"), "{e}");
    }
}
