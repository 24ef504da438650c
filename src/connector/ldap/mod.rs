//! The LDAP connector: Active Directory, OpenLDAP and generic LDAPv3
//! servers over ldap3, with the flavour detected from the rootDSE.
//!
//! Submodules: `options` (what a user can set), `tls`, `rootdse`
//! (flavour detection), `read` (paged streaming search and entry
//! decoding), `write` (add, modify, moddn, delete, membership),
//! `account` (enable/disable, passwords, authenticate), `pool` (the
//! connections operations share), `result` (errors in words), `changes`
//! (change tracking): private, with what others use re-exported here.
//! [`schema`] is public: [`crate::connector::Connector::schema`] returns it.
//! [`sd`] (security descriptors, the password-rights check and grant) is
//! public for the script layer.

mod account;
mod changes;
mod options;
mod pool;
mod read;
mod result;
mod rootdse;
pub mod schema;
pub mod sd;
use crate::connector::tls;
mod write;

use async_trait::async_trait;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};

pub use options::{Flavor, LdapOptions, TlsMode};
pub use pool::{CONNECTIONS, PER_CONNECTION};
pub use read::{Identity, check_filter, classify};
pub use rootdse::RootDse;

use crate::connector::{
    Change, ChangeRound, Connector, Error, Result, Room, SearchQuery, Sink, TestReport,
};
use crate::model::{Entry, Secret, Value};

/// An open, bound LDAP connection.
pub struct LdapConnector {
    opts: LdapOptions,
    pool: pool::Pool,
    root: RootDse,
    flavor: Flavor,
    base: String,
}

impl LdapConnector {
    /// Connects, binds and reads the rootDSE. Fails with a clear message when
    /// the server is unreachable, TLS fails, or the bind is refused.
    pub async fn connect(opts: LdapOptions) -> Result<LdapConnector> {
        opts.validate()?;
        let ldap = open(&opts, true).await?;
        let root = rootdse::read(&ldap, &opts).await?;
        let flavor = opts.flavor.unwrap_or_else(|| root.flavor());
        let base = match &opts.base {
            Some(b) => b.clone(),
            None => root.default_base().unwrap_or_default(),
        };
        Ok(LdapConnector {
            opts,
            pool: pool::Pool::new(ldap),
            root,
            flavor,
            base,
        })
    }

    /// The options this connection was opened with.
    pub fn options(&self) -> &LdapOptions {
        &self.opts
    }

    /// The detected (or forced) flavour.
    pub fn ldap_flavor(&self) -> Flavor {
        self.flavor
    }

    /// The default search base.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// What the rootDSE said.
    pub fn root_dse(&self) -> &RootDse {
        &self.root
    }

    /// The attribute holding each entry's immutable id.
    pub fn anchor_attr(&self) -> &'static str {
        match self.flavor {
            Flavor::Ad => "objectGUID",
            _ => "entryUUID",
        }
    }

    /// True when the transport is encrypted (LDAPS or StartTLS).
    pub fn is_encrypted(&self) -> bool {
        self.opts.tls_mode() != TlsMode::None
    }

    /// A connection for one operation (see [`pool`]), reopened first if it
    /// was closed (server restart, idle timeout).
    async fn handle(&self) -> Result<pool::Handle> {
        self.pool.handle(&self.opts).await
    }

    /// A connection for one paged search: one no other paged search uses.
    async fn paged_handle(&self) -> Result<pool::Handle> {
        self.pool.paged(&self.opts).await
    }

    /// How many connections this connector has open.
    pub fn connections(&self) -> usize {
        self.pool.connections()
    }
}

/// Opens a connection with `opts`; binds with the configured credentials
/// when `bind` is true.
pub(crate) async fn open(opts: &LdapOptions, bind: bool) -> Result<Ldap> {
    let url = opts.effective_url();
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(opts.timeout)
        .set_starttls(opts.tls_mode() == TlsMode::StartTls);
    if opts.tls_mode() != TlsMode::None {
        settings = settings.set_config(tls::client_config(opts.ca_file.as_deref(), opts.verify)?);
        if !opts.verify {
            settings = settings.set_no_tls_verify(true);
        }
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(|e| connect_error(opts, &url, e))?;
    ldap3::drive!(conn);
    if bind && let Some(dn) = &opts.bind_dn {
        let pw = opts.password.as_ref().map(Secret::expose).unwrap_or("");
        if pw.is_empty() {
            return Err(Error::Auth(format!(
                "bind as '{dn}' refused: no password given (an empty password would be an unauthenticated bind)"
            )));
        }
        ldap.with_timeout(opts.timeout);
        let res = ldap
            .simple_bind(dn, pw)
            .await
            .map_err(|e| result::ldap_error(&format!("bind to {url}"), e))?;
        if res.rc != 0 {
            return Err(result::bind_error(dn, &res));
        }
    }
    Ok(ldap)
}

/// A failed connect in words: TLS failures say what to do, a refused
/// StartTLS says the password is not sent in clear text.
fn connect_error(opts: &LdapOptions, url: &str, e: ldap3::LdapError) -> Error {
    let mode = opts.tls_mode();
    if mode == TlsMode::StartTls
        && let ldap3::LdapError::LdapResult { result: res } = &e
    {
        let why = if opts.tls.is_none() {
            "idsync uses StartTLS on its own for a password bind to a host that is not \
             loopback, so the password is not sent in clear text"
        } else {
            "tls: \"starttls\" was asked for"
        };
        return Error::Connection(format!(
            "cannot connect to {url}: the server offers no StartTLS ({}, LDAP {}{}); {why}. \
             Configure TLS on the server, use an ldaps:// URL, or give tls: \"none\" to send \
             the password unencrypted (only on a network you trust)",
            result::rc_words(res.rc),
            res.rc,
            if res.text.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", res.text.trim())
            }
        ));
    }
    if mode != TlsMode::None
        && let Some(words) = tls::explain(&e, opts.host(), opts.ca_file.as_deref(), true)
    {
        return Error::Connection(format!("cannot connect to {url}: {words}"));
    }
    result::ldap_error(&format!("cannot connect to {url}"), e)
}

#[async_trait]
impl Connector for LdapConnector {
    fn kind(&self) -> &'static str {
        "ldap"
    }

    /// An anchor (objectGUID, entryUUID) is looked for only below the
    /// connection's base; the DN reaches every naming context.
    fn locates_by_dn(&self) -> bool {
        true
    }

    /// A directory refuses an entry whose parent does not exist.
    fn parents_must_exist(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let who = self.opts.bind_dn.as_deref().unwrap_or("anonymous");
        format!(
            "{} as {} ({}, base {})",
            self.opts.effective_url(),
            who,
            self.flavor,
            self.base
        )
    }

    fn flavor(&self) -> String {
        self.flavor.to_string()
    }

    fn profile(&self) -> Result<serde_json::Value> {
        self.opts.profile()
    }

    async fn test(&self) -> Result<TestReport> {
        let mut report = TestReport {
            flavor: self.flavor.to_string(),
            bind_identity: self
                .opts
                .bind_dn
                .clone()
                .unwrap_or_else(|| "anonymous".into()),
            ..TestReport::default()
        };
        match open(&self.opts, false).await {
            Ok(mut l) => {
                report.reachable = true;
                let _ = l.unbind().await;
            }
            Err(e) => {
                report.details.push(("error".into(), e.to_string()));
                return Ok(report);
            }
        }
        match open(&self.opts, true).await {
            Ok(l) => {
                report.bound = true;
                let root = rootdse::read(&l, &self.opts).await?;
                report.vendor = root.vendor();
                report.naming_contexts = root.naming_contexts.clone();
                if let Some(v) = &root.vendor_version {
                    report.details.push(("version".into(), v.clone()));
                }
                if let Some(d) = &root.default_naming_context {
                    report
                        .details
                        .push(("default naming context".into(), d.clone()));
                }
                if let Some(h) = &root.dns_host_name {
                    report.details.push(("host".into(), h.clone()));
                }
                let mode = self.opts.tls_mode();
                report.details.push(("tls".into(), mode.to_string()));
                if mode == TlsMode::StartTls && self.opts.tls.is_none() {
                    report.details.push((
                        "tls_reason".into(),
                        "StartTLS on its own: a password bind to a host that is not loopback \
                         (tls: \"none\" turns it off)"
                            .into(),
                    ));
                }
                if mode != TlsMode::None {
                    report.details.push((
                        "verify".into(),
                        if self.opts.verify {
                            match &self.opts.ca_file {
                                Some(f) => format!("on (ca_file {f})"),
                                None => "on (the system's trusted CAs)".into(),
                            }
                        } else {
                            "OFF (verify: false): the server's identity is not checked, \
                             anyone in the path can read the password"
                                .into()
                        },
                    ));
                }
                let mut l = l;
                let _ = l.unbind().await;
            }
            Err(e) => report.details.push(("error".into(), e.to_string())),
        }
        Ok(report)
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
        changes::changes(self, q, cursor, sink, None).await
    }

    async fn search_paced(&self, q: &SearchQuery, sink: &mut Sink<'_>, room: &Room) -> Result<()> {
        read::search_paced(self, q, &[], sink, Some(room)).await
    }

    async fn changes_paced(
        &self,
        q: &SearchQuery,
        cursor: Option<&str>,
        sink: &mut Sink<'_>,
        room: &Room,
    ) -> Result<Option<ChangeRound>> {
        changes::changes(self, q, cursor, sink, Some(room)).await
    }

    async fn attribute_names(&self) -> Result<Vec<String>> {
        read::attribute_names(self).await
    }

    async fn get(&self, identity: &str) -> Result<Option<Entry>> {
        read::get(self, identity, None).await
    }

    async fn schema(&self) -> Result<Option<std::sync::Arc<schema::Schema>>> {
        Ok(schema::read(self).await?.map(std::sync::Arc::new))
    }

    async fn get_under(&self, identity: &str, base: &str) -> Result<Option<Entry>> {
        read::get_in(self, identity, Some(base), None).await
    }

    async fn create(&self, dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
        write::create(self, dn, attrs).await
    }

    async fn create_anchor(
        &self,
        dn: &str,
        attrs: &[(String, Vec<Value>)],
    ) -> Result<Option<String>> {
        write::create_anchor(self, dn, attrs).await
    }

    async fn write_mark(&self, dn: &str) -> Result<Option<String>> {
        changes::write_mark(self, dn).await
    }

    async fn add(&self, dn: &str, attrs: Vec<(String, Vec<Value>)>) -> Result<()> {
        write::add_only(self, dn, attrs).await
    }

    async fn anchors_since(
        &self,
        base: &str,
        mark: &str,
        found: &mut (dyn FnMut(String, String) + Send),
    ) -> Result<()> {
        changes::anchors_since(self, base, mark, found).await
    }

    fn writes_in_flight(&self) -> usize {
        pool::CONNECTIONS * pool::PER_CONNECTION
    }

    async fn modify(&self, identity: &str, changes: &[Change]) -> Result<()> {
        write::modify(self, identity, changes).await
    }

    async fn rename(&self, identity: &str, new_rdn: &str) -> Result<String> {
        write::rename(self, identity, new_rdn).await
    }

    async fn move_to(&self, identity: &str, new_parent: &str) -> Result<String> {
        write::move_to(self, identity, new_parent).await
    }

    async fn delete(&self, identity: &str) -> Result<()> {
        write::delete(self, identity).await
    }

    async fn members(&self, group: &str) -> Result<Vec<String>> {
        write::members(self, group).await
    }

    async fn add_member(&self, group: &str, member: &str) -> Result<()> {
        write::add_member(self, group, member).await
    }

    async fn remove_member(&self, group: &str, member: &str) -> Result<()> {
        write::remove_member(self, group, member).await
    }

    async fn enable(&self, identity: &str) -> Result<()> {
        account::set_enabled(self, identity, true).await
    }

    async fn disable(&self, identity: &str) -> Result<()> {
        account::set_enabled(self, identity, false).await
    }

    async fn set_password(&self, identity: &str, password: &Secret) -> Result<()> {
        account::set_password(self, identity, password).await
    }

    async fn authenticate(&self, identity: &str, password: &Secret) -> Result<bool> {
        account::authenticate(self, identity, password).await
    }
}
