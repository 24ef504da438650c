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
            _ => Ok(()),
        }
    }

    /// The protection in force.
    pub fn tls_mode(&self) -> TlsMode {
        match self.tls {
            Some(t) => t,
            None if self
                .scheme()
                .is_some_and(|s| s.eq_ignore_ascii_case("ldaps")) =>
            {
                TlsMode::Ldaps
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
