//! The rootDSE: naming contexts, vendor, capabilities, and the flavour
//! detection built on them.

use ldap3::{Ldap, Scope};

use super::options::{Flavor, LdapOptions};
use super::result;
use crate::connector::Result;

/// AD's LDAP_CAP_ACTIVE_DIRECTORY_OID and the AD LDS / partial-secrets OIDs.
const AD_CAPABILITIES: &[&str] = &[
    "1.2.840.113556.1.4.800",
    "1.2.840.113556.1.4.1670",
    "1.2.840.113556.1.4.1851",
];

/// What the rootDSE announced.
#[derive(Clone, Debug, Default)]
pub struct RootDse {
    /// namingContexts.
    pub naming_contexts: Vec<String>,
    /// defaultNamingContext (AD).
    pub default_naming_context: Option<String>,
    /// vendorName.
    pub vendor_name: Option<String>,
    /// vendorVersion.
    pub vendor_version: Option<String>,
    /// supportedCapabilities (AD).
    pub capabilities: Vec<String>,
    /// supportedControl.
    pub controls: Vec<String>,
    /// supportedExtension.
    pub extensions: Vec<String>,
    /// objectClass of the rootDSE (OpenLDAP: OpenLDAProotDSE).
    pub object_classes: Vec<String>,
    /// dnsHostName (AD).
    pub dns_host_name: Option<String>,
    /// subschemaSubentry.
    pub subschema: Option<String>,
    /// schemaNamingContext (AD).
    pub schema_nc: Option<String>,
    /// configContext (OpenLDAP: cn=config).
    pub config_context: Option<String>,
}

impl RootDse {
    /// The flavour these attributes point to.
    pub fn flavor(&self) -> Flavor {
        if self
            .capabilities
            .iter()
            .any(|c| AD_CAPABILITIES.contains(&c.as_str()))
        {
            Flavor::Ad
        } else if self
            .object_classes
            .iter()
            .any(|c| c.eq_ignore_ascii_case("OpenLDAProotDSE"))
            || self
                .vendor_name
                .as_deref()
                .is_some_and(|v| v.contains("OpenLDAP"))
        {
            Flavor::OpenLdap
        } else {
            Flavor::Generic
        }
    }

    /// The vendor in words.
    pub fn vendor(&self) -> String {
        match (&self.vendor_name, self.flavor()) {
            (Some(v), _) => v.clone(),
            (None, Flavor::Ad) => "Microsoft Active Directory (or compatible, e.g. Samba)".into(),
            (None, Flavor::OpenLdap) => "OpenLDAP".into(),
            (None, Flavor::Generic) => "unknown".into(),
        }
    }

    /// The base to use when the user gives none.
    pub fn default_base(&self) -> Option<String> {
        self.default_naming_context.clone().or_else(|| {
            self.naming_contexts
                .iter()
                .find(|c| {
                    !c.eq_ignore_ascii_case("cn=accesslog")
                        && !c.to_ascii_lowercase().starts_with("cn=config")
                })
                .cloned()
        })
    }

    /// True when the server advertises the control OID.
    pub fn supports_control(&self, oid: &str) -> bool {
        self.controls.iter().any(|c| c == oid)
    }
}

/// Reads the rootDSE over `ldap`.
pub async fn read(ldap: &Ldap, opts: &LdapOptions) -> Result<RootDse> {
    let mut ldap = ldap.clone();
    ldap.with_timeout(opts.timeout);
    let attrs = [
        "namingContexts",
        "defaultNamingContext",
        "vendorName",
        "vendorVersion",
        "supportedCapabilities",
        "supportedControl",
        "supportedExtension",
        "objectClass",
        "dnsHostName",
        "subschemaSubentry",
        "schemaNamingContext",
        "configContext",
    ];
    let res = ldap
        .search("", Scope::Base, "(objectClass=*)", attrs.to_vec())
        .await
        .map_err(|e| result::ldap_error("reading the rootDSE", e))?;
    let (entries, ldap_res) = (res.0, res.1);
    if ldap_res.rc != 0 {
        return Err(result::op_error("rootDSE", &ldap_res));
    }
    let Some(raw) = entries.into_iter().next() else {
        return Ok(RootDse::default());
    };
    let se = super::read::construct(raw)?;
    let many = |n: &str| -> Vec<String> {
        se.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let one = |n: &str| many(n).into_iter().next();
    Ok(RootDse {
        naming_contexts: many("namingContexts"),
        default_naming_context: one("defaultNamingContext"),
        vendor_name: one("vendorName"),
        vendor_version: one("vendorVersion"),
        capabilities: many("supportedCapabilities"),
        controls: many("supportedControl"),
        extensions: many("supportedExtension"),
        object_classes: many("objectClass"),
        dns_host_name: one("dnsHostName"),
        subschema: one("subschemaSubentry"),
        schema_nc: one("schemaNamingContext"),
        config_context: one("configContext"),
    })
}
