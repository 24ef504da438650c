//! What `connect_graph` is told: tenant, app credentials, endpoints (for
//! national clouds and tests), TLS, timeouts and paging.

use std::time::Duration;

use crate::connector::{Error, Result};
use crate::model::Secret;

/// Options of a Graph connection.
#[derive(Clone, Debug)]
pub struct GraphOptions {
    /// Tenant id (GUID) or a verified domain name.
    pub tenant: String,
    /// The app registration's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// Sign-in authority, default `https://login.microsoftonline.com`.
    pub authority_url: String,
    /// Graph endpoint, default `https://graph.microsoft.com`.
    pub graph_url: String,
    /// API version, default `v1.0`.
    pub version: String,
    /// Token scope, default `{graph_url}/.default`.
    pub scope: String,
    /// PEM file of the CA to trust instead of the system roots.
    pub ca_file: Option<String>,
    /// Verify TLS certificates (default true).
    pub verify: bool,
    /// Per-request timeout (default 60 s).
    pub timeout: Duration,
    /// Longest single wait a throttled request may be asked for (default 300 s).
    pub max_wait: Duration,
    /// `$top` for list requests (1..999, default 999).
    pub page_size: u32,
}

/// Microsoft's public-cloud sign-in authority.
pub const AUTHORITY: &str = "https://login.microsoftonline.com";
/// Microsoft Graph in the public cloud.
pub const GRAPH: &str = "https://graph.microsoft.com";
/// Graph hosts of Microsoft's national clouds (their own token scopes).
const NATIONAL_CLOUDS: &[&str] = &[
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
    "graph.microsoft.de",
];

impl GraphOptions {
    /// Public-cloud defaults for this tenant and app.
    pub fn new(tenant: &str, client_id: &str, client_secret: Secret) -> Self {
        GraphOptions {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            authority_url: AUTHORITY.to_string(),
            graph_url: GRAPH.to_string(),
            version: "v1.0".to_string(),
            scope: format!("{GRAPH}/.default"),
            ca_file: None,
            verify: true,
            timeout: Duration::from_secs(60),
            max_wait: Duration::from_secs(300),
            page_size: 999,
        }
    }

    /// Points at another Graph endpoint. The token scope follows it for
    /// Microsoft's national clouds; any other endpoint (a proxy, a test
    /// stand-in) still asks for the public Graph resource, as Entra names
    /// the resource, not the address (the `scope` option overrides).
    pub fn with_graph_url(mut self, url: &str) -> Self {
        self.graph_url = url.trim_end_matches('/').to_string();
        let host = url::Url::parse(&self.graph_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if NATIONAL_CLOUDS.contains(&host.as_str()) {
            self.scope = format!("https://{host}/.default");
        }
        self
    }
}

impl GraphOptions {
    /// Checks the endpoints: https, or plain http to a loopback address
    /// only (a local stand-in or proxy), since the client secret and the
    /// tokens would otherwise cross the network in clear.
    pub fn check(&self) -> Result<()> {
        for (k, u) in [
            ("graph_url", &self.graph_url),
            ("authority_url", &self.authority_url),
        ] {
            let p = url::Url::parse(u)
                .map_err(|e| Error::usage(format!("{k} is not a URL ({e}): '{u}'")))?;
            let loopback = match p.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            match p.scheme() {
                "https" => {}
                "http" if loopback => {}
                s => {
                    return Err(Error::usage(format!(
                        "{k} must be an https URL (plain http only to a loopback address), not {s}: '{u}'"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_except_on_loopback() {
        let o =
            |g: &str| GraphOptions::new("t", "c", Secret::literal("s".into())).with_graph_url(g);
        assert!(o("https://graph.microsoft.us").check().is_ok());
        assert!(o("http://127.0.0.1:8080").check().is_ok());
        assert!(o("http://[::1]:8080").check().is_ok());
        let e = o("http://graph.example.com")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be an https URL"), "{e}");
        assert!(o("ftp://127.0.0.1").check().is_err());
        assert!(o("not a url").check().is_err());
        assert_eq!(
            o("https://graph.microsoft.us/").scope,
            "https://graph.microsoft.us/.default"
        );
        assert_eq!(
            o("http://127.0.0.1:9").scope,
            "https://graph.microsoft.com/.default"
        );
    }
}
