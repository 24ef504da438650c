//! Security descriptors over LDAP (Active Directory): reading
//! `nTSecurityDescriptor` with the LDAP_SERVER_SD_FLAGS control (DACL
//! only, so no SACL privilege is needed), writing a DACL back with the same
//! control, an account's token (its SID and tokenGroups), and on top of
//! them the password-rights check and grant (API §10).

use std::collections::HashSet;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Mod, Scope as LScope};

use super::options::Flavor;
use super::read::{self, construct, to_entry};
use super::{LdapConnector, result};
use crate::connector::{Error, Result};
use crate::model::Value;
use crate::model::dn::{Dn, dn_key};
use crate::model::password_rights::{
    self, AUTHENTICATED_USERS, EVERYONE, Holding, RIGHTS, grant_ace, has_explicit, insert_explicit,
};
use crate::model::security_descriptor::{SecurityDescriptor, Sid};

/// LDAP_SERVER_SD_FLAGS_OID.
const SD_FLAGS_OID: &str = "1.2.840.113556.1.4.801";
/// DACL_SECURITY_INFORMATION.
const DACL_SECURITY_INFORMATION: u8 = 4;
const ATTR: &str = "nTSecurityDescriptor";

/// The SD-flags control: `SEQUENCE { INTEGER flags }` (flags < 128).
fn sd_flags(flags: u8) -> RawControl {
    RawControl {
        ctype: SD_FLAGS_OID.into(),
        crit: true,
        val: Some(vec![0x30, 0x03, 0x02, 0x01, flags]),
    }
}

/// The rights of one account on the user objects of one container.
#[derive(Debug, Clone)]
pub struct OuRights {
    /// The container.
    pub dn: String,
    /// Reset Password.
    pub reset: Holding,
    /// Change Password.
    pub change: Holding,
    /// The DACL is protected (SE_DACL_PROTECTED): nothing from above reaches it.
    pub blocks_inheritance: bool,
}

/// What [`check_password_rights`] found.
#[derive(Debug, Clone)]
pub struct RightsReport {
    /// The account's DN.
    pub account_dn: String,
    /// The account's SID.
    pub account_sid: String,
    /// The base and every OU below it, the base first, then in tree order.
    pub ous: Vec<OuRights>,
}

/// One ACE [`grant_password_rights`] adds (or found present).
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// The container.
    pub dn: String,
    /// Which right.
    pub right: &'static str,
    /// The ACE in SDDL.
    pub ace: String,
    /// False when an explicit ACE doing the same was there already.
    pub needed: bool,
    /// Why this container is written to.
    pub why: String,
}

fn require_ad(c: &LdapConnector, op: &str) -> Result<()> {
    if c.ldap_flavor() != Flavor::Ad {
        return Err(Error::usage(format!(
            "{op} needs an Active Directory connection (this one is {}): it reads the \
             nTSecurityDescriptor and tokenGroups only AD has",
            c.ldap_flavor()
        )));
    }
    Ok(())
}

/// The DACLs of the entries `filter` finds below `base` (`scope`), read with
/// the SD-flags control, in the order the server sends them.
async fn read_dacls(
    c: &LdapConnector,
    base: &str,
    scope: LScope,
    filter: &str,
) -> Result<Vec<(String, SecurityDescriptor)>> {
    let what = format!("read nTSecurityDescriptor under '{base}'");
    let paged = scope != LScope::Base && c.options().page_size > 0;
    let mut ldap = if paged {
        c.paged_handle().await?
    } else {
        c.handle().await?
    };
    let mut adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(EntriesOnly::new())];
    if paged {
        adapters.push(Box::new(PagedResults::new(c.options().page_size as i32)));
    }
    let mut stream = ldap
        .with_controls(vec![sd_flags(DACL_SECURITY_INFORMATION)])
        .streaming_search_with(adapters, base, scope, filter, vec![ATTR])
        .await
        .map_err(|e| result::ldap_error(&what, e))?;
    let mut out = Vec::new();
    while let Some(raw) = stream
        .next()
        .await
        .map_err(|e| result::ldap_error(&what, e))?
    {
        let e = to_entry(construct(raw)?, "objectGUID", None);
        let bytes = match e.values(ATTR).first() {
            Some(Value::Binary(b)) => b.clone(),
            Some(Value::Text(t)) => t.clone().into_bytes(),
            None => {
                return Err(Error::object(
                    &e.dn,
                    "the server returned no nTSecurityDescriptor (the bound account needs \
                     read access to it: READ_CONTROL)",
                    None,
                ));
            }
        };
        let sd = SecurityDescriptor::parse(&bytes).map_err(|err| {
            Error::object(&e.dn, format!("nTSecurityDescriptor: {}", err.0), None)
        })?;
        out.push((e.dn, sd));
    }
    let res = stream.finish().await;
    match res.rc {
        0 => Ok(out),
        32 => Err(Error::NotFound(base.to_string())),
        _ => Err(result::op_error(&what, &res)),
    }
}

/// The base's descriptor, then every OU's below it, in tree order.
async fn base_and_ous(c: &LdapConnector, base: &str) -> Result<Vec<(String, SecurityDescriptor)>> {
    let mut all = read_dacls(c, base, LScope::Base, "(objectClass=*)").await?;
    let key = dn_key(base);
    let mut below: Vec<_> =
        read_dacls(c, base, LScope::Subtree, "(objectClass=organizationalUnit)")
            .await?
            .into_iter()
            .filter(|(dn, _)| dn_key(dn) != key)
            .collect();
    below.sort_by_cached_key(|(dn, _)| tree_key(dn));
    all.extend(below);
    Ok(all)
}

/// A sort key putting parents before children, siblings by name.
fn tree_key(dn: &str) -> Vec<String> {
    match Dn::parse(dn) {
        Ok(d) => d.rdns().iter().rev().map(|r| r.to_lowercase()).collect(),
        Err(_) => vec![dn.to_lowercase()],
    }
}

/// The account's DN, its SID and its token: the SID, its groups' SIDs
/// (tokenGroups: nested and primary groups), Everyone and Authenticated Users.
async fn token(c: &LdapConnector, account: &str) -> Result<(String, Sid, Vec<Sid>)> {
    let e = read::get(c, account, Some(vec!["objectSid".into()]))
        .await?
        .ok_or_else(|| Error::NotFound(account.to_string()))?;
    let sid_of = |v: &Value, what: &str| match v {
        Value::Binary(b) => Sid::from_bytes(b)
            .map_err(|err| Error::object(&e.dn, format!("{what}: {}", err.0), None)),
        Value::Text(t) => Sid::from_bytes(t.as_bytes())
            .map_err(|err| Error::object(&e.dn, format!("{what}: {}", err.0), None)),
    };
    let Some(v) = e.values("objectSid").first() else {
        return Err(Error::object(
            &e.dn,
            "has no objectSid (is it a user, computer or group?)",
            None,
        ));
    };
    let sid = sid_of(v, "objectSid")?;
    let groups = read::get(c, &e.dn, Some(vec!["tokenGroups".into()]))
        .await?
        .ok_or_else(|| Error::NotFound(e.dn.clone()))?;
    let mut tok = vec![sid.clone()];
    for v in groups.values("tokenGroups") {
        tok.push(sid_of(v, "tokenGroups")?);
    }
    for s in [EVERYONE, AUTHENTICATED_USERS] {
        if let Ok(s) = Sid::parse(s) {
            tok.push(s);
        }
    }
    Ok((e.dn, sid, tok))
}

fn rights_of(dn: String, sd: &SecurityDescriptor, tok: &[Sid]) -> OuRights {
    let dacl = sd.dacl.as_ref();
    OuRights {
        dn,
        reset: password_rights::holding(dacl, tok, RIGHTS[0].1),
        change: password_rights::holding(dacl, tok, RIGHTS[1].1),
        blocks_inheritance: sd.blocks_inheritance(),
    }
}

/// Whether `account` (sAMAccountName, UPN, DN, SID or GUID) holds Reset
/// Password and Change Password on the user objects of `base` and of every
/// OU below it.
pub async fn check_password_rights(
    c: &LdapConnector,
    account: &str,
    base: &str,
) -> Result<RightsReport> {
    require_ad(c, "check_password_rights")?;
    let (account_dn, sid, tok) = token(c, account).await?;
    let ous = base_and_ous(c, base)
        .await?
        .into_iter()
        .map(|(dn, sd)| rights_of(dn, &sd, &tok))
        .collect();
    Ok(RightsReport {
        account_dn,
        account_sid: sid.to_string(),
        ous,
    })
}

/// Adds the ACEs granting `account` both rights on user objects to `base`,
/// to each of `ous`, and to every OU below `base` that blocks inheritance
/// and lacks a right; skips an ACE an explicit one already does (so a
/// second grant adds nothing). Writes only when `commit`; returns every ACE
/// it added or would add, and those found present.
pub async fn grant_password_rights(
    c: &LdapConnector,
    account: &str,
    base: &str,
    ous: &[String],
    commit: bool,
) -> Result<Vec<GrantRow>> {
    require_ad(c, "grant_password_rights")?;
    let (_, sid, tok) = token(c, account).await?;
    let mut targets: Vec<(String, SecurityDescriptor, String)> = Vec::new();
    let mut seen = HashSet::new();
    let found = base_and_ous(c, base).await?;
    for (i, (dn, sd)) in found.into_iter().enumerate() {
        let why = if i == 0 {
            "the base"
        } else if ous.iter().any(|o| dn_key(o) == dn_key(&dn)) {
            "listed"
        } else if sd.blocks_inheritance() && {
            let r = rights_of(dn.clone(), &sd, &tok);
            !(r.reset.held() && r.change.held())
        } {
            "blocks inheritance"
        } else {
            continue;
        };
        seen.insert(dn_key(&dn));
        targets.push((dn, sd, why.to_string()));
    }
    for o in ous {
        if seen.insert(dn_key(o)) {
            let mut one = read_dacls(c, o, LScope::Base, "(objectClass=*)").await?;
            if let Some((dn, sd)) = one.pop() {
                targets.push((dn, sd, "listed".into()));
            }
        }
    }
    let mut rows = Vec::new();
    for (dn, mut sd, why) in targets {
        let Some(dacl) = sd.dacl.as_mut() else {
            // A NULL DACL grants everything already; nothing to add.
            continue;
        };
        let mut changed = false;
        for (right, guid) in RIGHTS {
            let ace = grant_ace(&sid, guid);
            let needed = !has_explicit(dacl, &ace);
            rows.push(GrantRow {
                dn: dn.clone(),
                right,
                ace: ace.to_sddl(),
                needed,
                why: why.clone(),
            });
            if needed {
                insert_explicit(dacl, ace);
                changed = true;
            }
        }
        if changed && commit {
            write_dacl(c, &dn, &sd).await?;
        }
    }
    Ok(rows)
}

/// Writes the DACL of `sd` to `dn` (SD-flags control: DACL only; owner,
/// group and SACL stay as they are).
async fn write_dacl(c: &LdapConnector, dn: &str, sd: &SecurityDescriptor) -> Result<()> {
    let bytes = sd
        .encode()
        .map_err(|e| Error::object(dn, format!("nTSecurityDescriptor: {}", e.0), None))?;
    let mut ldap = c.handle().await?;
    let res = ldap
        .with_controls(vec![sd_flags(DACL_SECURITY_INFORMATION)])
        .modify(
            dn,
            vec![Mod::Replace(
                ATTR.as_bytes().to_vec(),
                HashSet::from([bytes]),
            )],
        )
        .await
        .map_err(|e| result::ldap_error(dn, e))?;
    if res.rc != 0 {
        return Err(result::op_error(
            &format!("{dn}: write nTSecurityDescriptor"),
            &res,
        ));
    }
    Ok(())
}
