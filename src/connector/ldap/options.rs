//! What a user can set on an LDAP connection, checked before any packet is
//! sent, and its profile form (secrets as references only).

use std::fmt;
use std::time::Duration;

use serde_json::json;

use crate::connector::{Error, Result};
use crate::model::Secret;

/// The kind of directory server, which decides conventions (anchor
/// attribute, account disable, password writes, identity lookups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Microsoft Active Directory (and Samba AD).
    Ad,
    /// OpenLDAP slapd.
    OpenLdap,
    /// Any other LDAPv3 server.
    Generic,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Ad => "ad",
            Flavor::OpenLdap => "openldap",
            Flavor::Generic => "generic",
        })
    }
}

impl std::str::FromStr for Flavor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Flavor> {
        match s.to_ascii_lowercase().as_str() {
            "ad" | "activedirectory" | "active directory" | "samba" => Ok(Flavor::Ad),
            "openldap" => Ok(Flavor::OpenLdap),
            "generic" | "ldap" => Ok(Flavor::Generic),
            _ => Err(Error::usage(format!(
                "unknown flavor '{s}' (expected \"ad\", \"openldap\" or \"generic\")"
            ))),
        }
    }
}

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (ldaps://, port 636).
    Ldaps,
    /// Plain connect, then the StartTLS extended operation.
    StartTls,
    /// No encryption.
    None,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Ldaps => "ldaps",
            TlsMode::StartTls => "starttls",
            TlsMode::None => "none",
        })
    }
}

impl std::str::FromStr for TlsMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<TlsMode> {
        match s.to_ascii_lowercase().as_str() {
            "ldaps" | "ssl" => Ok(TlsMode::Ldaps),
            "starttls" | "start_tls" => Ok(TlsMode::StartTls),
            "none" | "plain" | "off" => Ok(TlsMode::None),
            _ => Err(Error::usage(format!(
                "unknown tls mode '{s}' (expected \"ldaps\", \"starttls\" or \"none\")"
            ))),
        }
    }
}

/// Everything needed to open (and re-open) an LDAP connection.
#[derive(Clone, Debug)]
pub struct LdapOptions {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// DN (or AD UPN / DOMAIN\user) to bind as; `None` = anonymous.
    pub bind_dn: Option<String>,
    /// The bind password.
    pub password: Option<Secret>,
    /// Default search base; `None` = the server's default naming context.
    pub base: Option<String>,
    /// Requested protection; `None` = as the URL scheme says.
    pub tls: Option<TlsMode>,
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<String>,
    /// Verify the server certificate (default true).
    pub verify: bool,
    /// Paged-results page size; 0 disables paging.
    pub page_size: u32,
    /// Connect and per-operation timeout.
    pub timeout: Duration,
    /// Forced flavour; `None` = detect from the rootDSE.
    pub flavor: Option<Flavor>,
}

impl LdapOptions {
    /// Options with defaults for `url`.
    pub fn new(url: impl Into<String>) -> LdapOptions {
        LdapOptions {
            url: url.into(),
            bind_dn: None,
            password: None,
            base: None,
            tls: None,
            ca_file: None,
            verify: true,
            page_size: 500,
            timeout: Duration::from_secs(30),
            flavor: None,
        }
    }

    fn scheme(&self) -> Option<&str> {
        self.url.split_once("://").map(|(s, _)| s)
    }

    /// The host named in the URL (without port or brackets).
    pub fn host(&self) -> &str {
        let rest = self.url.split_once("://").map(|(_, r)| r).unwrap_or("");
        let hostport = rest.split('/').next().unwrap_or("");
        let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
        if let Some(v6) = hostport.strip_prefix('[') {
            return v6.split(']').next().unwrap_or("");
        }
        match hostport.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => hostport,
        }
    }

    /// True when a password bind over this plain `ldap://` URL is upgraded
    /// with StartTLS on its own: the host is not loopback (see
    /// `is_loopback_host`) and no `tls` was given — `tls: "none"` is
    /// how a user says "send it in clear text anyway".
    pub fn starttls_for_password(&self) -> bool {
        self.tls.is_none()
            && self
                .scheme()
                .is_some_and(|s| s.eq_ignore_ascii_case("ldap"))
            && !is_loopback_host(self.host())
    }

    /// True when this connection binds with a password.
    fn binds_with_password(&self) -> bool {
        self.bind_dn.is_some() && self.password.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// These options for a bind as another user with a password
    /// (`authenticate`): StartTLS when [`Self::starttls_for_password`].
    pub fn for_password_bind(&self) -> LdapOptions {
        let mut o = self.clone();
        if o.starttls_for_password() {
            o.tls = Some(TlsMode::StartTls);
        }
        o
    }

    /// Checks the URL and option combinations.
    pub fn validate(&self) -> Result<()> {
        match self.scheme().map(str::to_ascii_lowercase).as_deref() {
            Some("ldap") | Some("ldaps") => {}
            _ => {
                return Err(Error::usage(format!(
                    "'{}' is not an LDAP URL (expected ldap://host[:port] or ldaps://host[:port])",
                    self.url
                )));
            }
        }
        let host = self.url.split_once("://").map(|(_, h)| h).unwrap_or("");
        if host.trim_end_matches('/').is_empty() {
            return Err(Error::usage(format!("'{}' names no host", self.url)));
        }
        let ldaps_url = self
            .scheme()
            .is_some_and(|s| s.eq_ignore_ascii_case("ldaps"));
        match (self.tls, ldaps_url) {
            (Some(TlsMode::StartTls), true) => Err(Error::usage(format!(
                "tls: \"starttls\" does not go with the ldaps URL '{}' (use an ldap:// URL)",
                self.url
            ))),
            (Some(TlsMode::None), true) => Err(Error::usage(format!(
                "tls: \"none\" does not go with the ldaps URL '{}'",
                self.url
            ))),
            (Some(TlsMode::None), false) if self.ca_file.is_some() => Err(Error::usage(format!(
                "ca_file is given but tls: \"none\" turns encryption off, so it would never be \
                 used ({}); remove one of them (tls: \"starttls\" or an ldaps:// URL uses ca_file)",
                self.url
            ))),
            _ => Ok(()),
        }
    }

    /// The protection in force: `tls` when given, else as the URL scheme
    /// says — except that a bind with a password over `ldap://` to a host
    /// that is not loopback uses StartTLS (a password never crosses the
    /// network in clear text unless `tls: "none"` says so).
    pub fn tls_mode(&self) -> TlsMode {
        match self.tls {
            Some(t) => t,
            None if self
                .scheme()
                .is_some_and(|s| s.eq_ignore_ascii_case("ldaps")) =>
            {
                TlsMode::Ldaps
            }
            None if self.binds_with_password() && self.starttls_for_password() => TlsMode::StartTls,
            None => TlsMode::None,
        }
    }

    /// The URL to dial: `tls: "ldaps"` on an ldap:// URL switches the scheme
    /// (and the default port to 636).
    pub fn effective_url(&self) -> String {
        if self.tls == Some(TlsMode::Ldaps)
            && self
                .scheme()
                .is_some_and(|s| s.eq_ignore_ascii_case("ldap"))
        {
            let rest = &self.url[7..];
            let host = rest.trim_end_matches('/');
            let has_port = host
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                && !host.ends_with(']');
            return if has_port {
                format!("ldaps://{host}")
            } else {
                format!("ldaps://{host}:636")
            };
        }
        self.url.clone()
    }

    /// The profile form: every option, the password as its reference.
    /// A password typed as plain text cannot be stored.
    pub fn profile(&self) -> Result<serde_json::Value> {
        let password = match &self.password {
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
            "url": self.url,
            "bind_dn": self.bind_dn,
            "password": password,
            "base": self.base,
            "tls": self.tls.map(|t| t.to_string()),
            "ca_file": self.ca_file,
            "verify": self.verify,
            "page_size": self.page_size,
            "timeout": self.timeout.as_secs_f64(),
            "flavor": self.flavor.map(|f| f.to_string()),
        }))
    }
}

/// True when `host`, as written in a URL, is this machine's loopback:
/// `localhost` (or a name under `.localhost`), an address in 127.0.0.0/8, or
/// `::1`. Other names count as remote even when they resolve to a loopback
/// address today: the rule does not depend on DNS, which can change.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rule_is_literal_loopback_or_localhost() {
        for h in [
            "localhost",
            "LOCALHOST",
            "db.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost.",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "vm",
            "dc1.corp.example",
            "10.0.0.5",
            "192.0.2.2",
            "::",
            "0.0.0.0",
            "localhost.evil.example",
            "",
            "127.0.0.1.nip.io",
            "ü",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn a_password_bind_to_a_remote_host_uses_starttls_unless_tls_none() {
        let pw = |url: &str| {
            let mut o = LdapOptions::new(url);
            o.bind_dn = Some("cn=admin".into());
            o.password = Some(Secret::literal("pw".into()));
            o
        };
        assert_eq!(pw("ldap://dc1.corp.example").tls_mode(), TlsMode::StartTls);
        assert_eq!(pw("ldap://10.0.0.5:389/").tls_mode(), TlsMode::StartTls);
        assert_eq!(pw("ldap://127.0.0.1:3389").tls_mode(), TlsMode::None);
        assert_eq!(pw("ldap://[::1]:3389").tls_mode(), TlsMode::None);
        assert_eq!(pw("ldap://localhost").tls_mode(), TlsMode::None);
        assert_eq!(pw("ldaps://dc1").tls_mode(), TlsMode::Ldaps);
        let mut o = pw("ldap://dc1");
        o.tls = Some(TlsMode::None);
        assert_eq!(o.tls_mode(), TlsMode::None);
        // anonymous: nothing to protect; authenticate() upgrades its own bind
        let anon = LdapOptions::new("ldap://dc1");
        assert_eq!(anon.tls_mode(), TlsMode::None);
        assert_eq!(anon.for_password_bind().tls_mode(), TlsMode::StartTls);
        assert_eq!(o.for_password_bind().tls_mode(), TlsMode::None);
        assert_eq!(pw("ldap://user@[2001:db8::1]:389").host(), "2001:db8::1");
    }

    #[test]
    fn ca_file_with_tls_none_is_an_error() {
        let mut o = LdapOptions::new("ldap://dc1");
        o.tls = Some(TlsMode::None);
        o.ca_file = Some("/etc/ca.pem".into());
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("ca_file") && e.contains("tls: \"none\""), "{e}");
        o.tls = Some(TlsMode::StartTls);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn url_and_tls_rules() {
        let mut o = LdapOptions::new("ldap://dc1");
        assert_eq!(o.tls_mode(), TlsMode::None);
        o.tls = Some(TlsMode::Ldaps);
        assert_eq!(o.effective_url(), "ldaps://dc1:636");
        o.url = "ldap://dc1:1636".into();
        assert_eq!(o.effective_url(), "ldaps://dc1:1636");
        let mut p = LdapOptions::new("ldaps://dc1");
        p.tls = Some(TlsMode::StartTls);
        assert!(p.validate().unwrap_err().to_string().contains("starttls"));
        assert!(LdapOptions::new("http://x").validate().is_err());
        assert!(LdapOptions::new("ldap://").validate().is_err());
    }

    #[test]
    fn profile_keeps_references_only() {
        let mut o = LdapOptions::new("ldap://x");
        o.password = Some(Secret::with_reference("pw".into(), "env:PW"));
        let p = o.profile().unwrap();
        assert_eq!(p["password"], "env:PW");
        assert!(!p.to_string().contains("\"pw\""));
        o.password = Some(Secret::literal("pw".into()));
        assert!(o.profile().is_err());
    }
}
