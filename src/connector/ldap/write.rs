//! Writing: add, modify, rename and move (moddn), delete, and group
//! membership (member / uniqueMember / memberUid, AD ranged `member`).

use std::collections::HashSet;

use ldap3::Mod;

use super::LdapConnector;
use super::read::{self, resolve_dn};
use super::result;
use crate::connector::{Change, Error, Result, Scope, SearchQuery};
use crate::model::dn::{Dn, dn_eq, dn_escape};
use crate::model::{Entry, Value};

/// RFC 4527 Post-Read control.
const POST_READ_OID: &str = "1.3.6.1.1.13.2";

fn set_of(values: &[Value]) -> HashSet<Vec<u8>> {
    values.iter().map(|v| v.as_bytes().to_vec()).collect()
}

fn check_dn(dn: &str) -> Result<Dn> {
    let parsed = Dn::parse(dn).map_err(|e| Error::usage(e.to_string()))?;
    if parsed.is_empty() {
        return Err(Error::usage("an empty DN names no entry"));
    }
    Ok(parsed)
}

/// Adds an entry and returns it as the server stored it.
pub async fn create(c: &LdapConnector, dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
    add(c, dn, attrs, false).await?;
    read::get(c, dn, None)
        .await?
        .ok_or_else(|| Error::object(dn, "created, but the server does not return it", None))
}

/// Adds an entry and returns its anchor: from the Post-Read control
/// (RFC 4527) in the add reply when the server offers it, else by reading
/// back just the anchor attribute.
pub async fn create_anchor(
    c: &LdapConnector,
    dn: &str,
    attrs: &[(String, Vec<Value>)],
) -> Result<Option<String>> {
    if let Some(anchor) = add(c, dn, attrs, true).await? {
        return Ok(Some(anchor));
    }
    let anchor = c.anchor_attr().to_string();
    Ok(read::get(c, dn, Some(vec![anchor]))
        .await?
        .and_then(|e| e.anchor))
}

/// Adds an entry and reads nothing back (a sync run reads the anchors of a
/// batch of creates back at once: [`super::changes::anchors_since`]).
pub async fn add_only(c: &LdapConnector, dn: &str, attrs: Vec<(String, Vec<Value>)>) -> Result<()> {
    // A sync run's DNs were parsed by its planner: not parsed a second time
    // here (a bad one is still refused, by the server, naming it).
    if dn.trim().is_empty() {
        return Err(Error::usage("an empty DN names no entry"));
    }
    if attrs.is_empty() {
        return Err(Error::usage(format!(
            "{dn}: create needs attributes (at least objectClass)"
        )));
    }
    // The values are moved into the request, not copied.
    let add: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attrs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| {
            (
                n.into_bytes(),
                v.into_iter().map(Value::into_bytes).collect(),
            )
        })
        .collect();
    send_add(c, dn, add, false).await.map(|_| ())
}

/// Refuses an add the server could only refuse.
fn check_add(dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<()> {
    check_dn(dn)?;
    if attrs.is_empty() {
        return Err(Error::usage(format!(
            "{dn}: create needs attributes (at least objectClass)"
        )));
    }
    Ok(())
}

/// Sends the add; with `post_read`, asks for the anchor in the reply.
async fn add(
    c: &LdapConnector,
    dn: &str,
    attrs: &[(String, Vec<Value>)],
    post_read: bool,
) -> Result<Option<String>> {
    check_add(dn, attrs)?;
    let add: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attrs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (n.as_bytes().to_vec(), set_of(v)))
        .collect();
    send_add(c, dn, add, post_read).await
}

/// Sends an add request; with `post_read`, asks for the anchor in the reply.
async fn send_add(
    c: &LdapConnector,
    dn: &str,
    add: Vec<(Vec<u8>, HashSet<Vec<u8>>)>,
    post_read: bool,
) -> Result<Option<String>> {
    let mut ldap = c.handle().await?;
    let post_read = post_read && c.root_dse().supports_control(POST_READ_OID);
    if post_read {
        ldap.with_controls(ldap3::controls::PostRead::new(vec![c.anchor_attr()]));
    }
    let res = ldap
        .add(dn, add)
        .await
        .map_err(|e| result::ldap_error(dn, e))?;
    if res.rc != 0 {
        return Err(result::op_error(dn, &res));
    }
    if !post_read {
        return Ok(None);
    }
    for ctrl in &res.ctrls {
        if matches!(ctrl.0, Some(ldap3::controls::ControlType::PostReadResp)) {
            let raw = &ctrl.1;
            // ldap3's control parser panics on malformed data: guard it.
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                raw.val
                    .as_ref()
                    .map(|_| raw.parse::<ldap3::controls::PostReadResp>())
            }));
            if let Ok(Some(resp)) = parsed {
                let se = ldap3::SearchEntry {
                    dn: dn.to_string(),
                    attrs: resp.attrs,
                    bin_attrs: resp.bin_attrs,
                };
                return Ok(read::to_entry(se, c.anchor_attr(), None).anchor);
            }
        }
    }
    Ok(None)
}

/// Applies replace / add / delete changes.
pub async fn modify(c: &LdapConnector, identity: &str, changes: &[Change]) -> Result<()> {
    let dn = resolve_dn(c, identity).await?;
    if changes.is_empty() {
        return Ok(());
    }
    let mods: Vec<Mod<Vec<u8>>> = changes
        .iter()
        .map(|ch| match ch {
            Change::Replace(a, v) => Mod::Replace(a.as_bytes().to_vec(), set_of(v)),
            Change::Add(a, v) => Mod::Add(a.as_bytes().to_vec(), set_of(v)),
            Change::Delete(a, v) => Mod::Delete(a.as_bytes().to_vec(), set_of(v)),
        })
        .collect();
    modify_dn(c, &dn, mods).await
}

/// Sends a modify for a known DN.
pub(crate) async fn modify_dn(c: &LdapConnector, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<()> {
    let mut ldap = c.handle().await?;
    let res = ldap
        .modify(dn, mods)
        .await
        .map_err(|e| result::ldap_error(dn, e))?;
    if res.rc != 0 {
        return Err(result::op_error(dn, &res));
    }
    Ok(())
}

/// Gives the entry a new RDN (`"CN=New Name"`, or just the value, which
/// keeps the current naming attribute); returns the new DN.
pub async fn rename(c: &LdapConnector, identity: &str, new_rdn: &str) -> Result<String> {
    let dn = resolve_dn(c, identity).await?;
    let parsed = check_dn(&dn)?;
    let new_rdn = if new_rdn.contains('=') {
        let p = Dn::parse(new_rdn).map_err(|e| Error::usage(e.to_string()))?;
        if p.rdns().len() != 1 {
            return Err(Error::usage(format!(
                "'{new_rdn}' is not a single RDN; use move() to change the parent"
            )));
        }
        new_rdn.to_string()
    } else {
        let attr = parsed
            .rdn()
            .and_then(|r| r.split_once('='))
            .map(|(a, _)| a)
            .unwrap_or("cn");
        format!("{attr}={}", dn_escape(new_rdn))
    };
    moddn(c, &dn, &new_rdn, None).await?;
    let parent = parsed.parent();
    Ok(if parent.is_empty() {
        new_rdn
    } else {
        format!("{new_rdn},{parent}")
    })
}

/// Moves the entry under `new_parent`, keeping its RDN; returns the new DN.
pub async fn move_to(c: &LdapConnector, identity: &str, new_parent: &str) -> Result<String> {
    let dn = resolve_dn(c, identity).await?;
    let parsed = check_dn(&dn)?;
    check_dn(new_parent)?;
    let rdn = parsed.rdn().unwrap_or_default().to_string();
    moddn(c, &dn, &rdn, Some(new_parent)).await?;
    Ok(format!("{rdn},{new_parent}"))
}

async fn moddn(c: &LdapConnector, dn: &str, rdn: &str, parent: Option<&str>) -> Result<()> {
    let mut ldap = c.handle().await?;
    let res = ldap
        .modifydn(dn, rdn, true, parent)
        .await
        .map_err(|e| result::ldap_error(dn, e))?;
    if res.rc != 0 {
        return Err(result::op_error(dn, &res));
    }
    Ok(())
}

/// Deletes the entry (leaf entries only).
pub async fn delete(c: &LdapConnector, identity: &str) -> Result<()> {
    let dn = resolve_dn(c, identity).await?;
    let mut ldap = c.handle().await?;
    let res = ldap
        .delete(&dn)
        .await
        .map_err(|e| result::ldap_error(&dn, e))?;
    if res.rc != 0 {
        return Err(result::op_error(&dn, &res));
    }
    Ok(())
}

/// Which attribute holds the group's members.
fn member_attr(group: &Entry) -> &'static str {
    let classes: Vec<String> = group
        .values("objectClass")
        .iter()
        .filter_map(|v| v.display("objectClass"))
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let has = |c: &str| classes.iter().any(|x| x == c);
    if has("groupofuniquenames") && !has("groupofnames") {
        "uniqueMember"
    } else if has("posixgroup") && !has("groupofnames") && !has("group") {
        "memberUid"
    } else {
        "member"
    }
}

/// The direct members of a group (DNs; for posixGroup the memberUid values),
/// following AD's ranged retrieval of large `member` attributes.
pub async fn members(c: &LdapConnector, group: &str) -> Result<Vec<String>> {
    let g = read::require(
        c,
        group,
        &["objectClass", "member", "uniqueMember", "memberUid"],
    )
    .await?;
    let attr = member_attr(&g);
    let mut out: Vec<String> = g
        .values(attr)
        .iter()
        .filter_map(|v| v.display(attr))
        .collect();
    // AD returns `member;range=0-1499` when the group is large.
    let mut ranged = g
        .attributes()
        .iter()
        .find(|a| a.name.to_ascii_lowercase().starts_with("member;range="));
    let mut holder;
    while let Some(a) = ranged {
        out.extend(a.values.iter().filter_map(|v| v.display("member")));
        let upper = a.name.rsplit('-').next().unwrap_or("*");
        if upper == "*" {
            break;
        }
        let next: usize = upper
            .parse()
            .map_err(|_| Error::object(&g.dn, format!("bad range '{}'", a.name), None))?;
        let q = SearchQuery {
            base: Some(g.dn.clone()),
            scope: Scope::Base,
            filter: "(objectClass=*)".into(),
            attrs: Some(vec![format!("member;range={}-*", next + 1)]),
            limit: None,
        };
        holder = read::search_all(c, &q).await?;
        ranged = holder.first().and_then(|e| {
            e.attributes()
                .iter()
                .find(|a| a.name.to_ascii_lowercase().starts_with("member;range="))
        });
    }
    Ok(out)
}

/// The value to store for `member` in `attr` (uid for memberUid).
async fn member_value(c: &LdapConnector, attr: &str, member: &str) -> Result<String> {
    if attr == "memberUid" {
        let m = read::require(c, member, &["uid"]).await?;
        return m.first("uid").ok_or_else(|| {
            Error::object(
                &m.dn,
                "has no uid, so it cannot be a posixGroup member",
                None,
            )
        });
    }
    resolve_dn(c, member).await
}

/// Adds `member` to `group`; already a member is success.
pub async fn add_member(c: &LdapConnector, group: &str, member: &str) -> Result<()> {
    let g = read::require(c, group, &["objectClass"]).await?;
    let attr = member_attr(&g);
    let value = member_value(c, attr, member).await?;
    let mods = vec![Mod::Add(
        attr.as_bytes().to_vec(),
        HashSet::from([value.clone().into_bytes()]),
    )];
    match modify_dn(c, &g.dn, mods).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.code(), Some(20) | Some(68)) => Ok(()),
        Err(e) => Err(add_context(e, &value)),
    }
}

/// Removes `member` from `group`; not a member is success.
pub async fn remove_member(c: &LdapConnector, group: &str, member: &str) -> Result<()> {
    let g = read::require(c, group, &["objectClass"]).await?;
    let attr = member_attr(&g);
    let value = member_value(c, attr, member).await?;
    let mods = vec![Mod::Delete(
        attr.as_bytes().to_vec(),
        HashSet::from([value.clone().into_bytes()]),
    )];
    match modify_dn(c, &g.dn, mods).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(16) => Ok(()),
        Err(e) if e.code() == Some(53) => {
            // AD answers "unwilling to perform" for a non-member.
            let current = members(c, &g.dn).await?;
            if current.iter().any(|m| dn_eq(m, &value)) {
                Err(e)
            } else {
                Ok(())
            }
        }
        Err(e) => Err(add_context(e, &value)),
    }
}

fn add_context(e: Error, member: &str) -> Error {
    match e {
        Error::Object {
            object,
            cause,
            code,
        } => Error::Object {
            object,
            cause: format!("member '{member}': {cause}"),
            code,
        },
        other => other,
    }
}
