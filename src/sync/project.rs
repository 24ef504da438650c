//! The projection of a source object into target values: what each flow
//! gives, the DN the create rule gives, the attributes of a new object, the
//! naming attribute of a DN, and taking a deprovision date prefix off
//! again. The planner and the writer ([`super::apply`]) both use it.

use crate::model::dn::Dn;
use crate::model::{Entry, Value};

use super::error::SyncError;
use super::item::AttrChange;
use super::projected::Projected;
use super::rules::{FlowSource, StepDef};

/// The values a flow gives for `e`.
pub(super) fn flow_values(src: &FlowSource, e: &Entry) -> Result<Vec<Value>, String> {
    match src {
        FlowSource::Attr(a) => Ok(e
            .attr(a)
            .map(|at| {
                at.values
                    .iter()
                    .map(|v| {
                        v.display(&at.name)
                            .map(Value::Text)
                            .unwrap_or_else(|| v.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()),
        FlowSource::Compute(f) => f(e),
    }
}

/// Same values, ignoring order.
pub(super) fn same_values(a: &[Value], b: &[Value]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut x: Vec<&[u8]> = a.iter().map(|v| v.as_bytes()).collect();
    let mut y: Vec<&[u8]> = b.iter().map(|v| v.as_bytes()).collect();
    x.sort_unstable();
    y.sort_unstable();
    x == y
}

/// Target values as comparable text (GUID/SID attributes in canonical form).
pub(super) fn target_values(t: &Entry, attr: &str) -> Vec<Value> {
    match t.attr(attr) {
        Some(a) => a
            .values
            .iter()
            .map(|v| {
                v.display(&a.name)
                    .map(Value::Text)
                    .unwrap_or_else(|| v.clone())
            })
            .collect(),
        None => Vec::new(),
    }
}

/// The DN the create rule gives `e` (`None` without a create rule).
pub(super) fn desired_dn(step: &StepDef, e: &Entry) -> Result<Option<String>, SyncError> {
    let Some(c) = &step.create else {
        return Ok(None);
    };
    let rdn = c
        .rdn
        .eval(e)
        .map_err(|m| SyncError::rule("create 'rdn'", m))?;
    if let Some(tree) = &step.tree {
        // The place comes from the tree; the name from the rule or the source.
        let rdn = if rdn.trim().is_empty() {
            Dn::parse(&e.dn)
                .ok()
                .and_then(|d| d.rdn().map(str::to_string))
                .ok_or_else(|| SyncError::rule_text("tree", format!("tree: {} has no RDN", e.dn)))?
        } else {
            rdn
        };
        // The tree's own message names it ("tree: ...", "tree 'source': ...").
        return tree
            .map(&e.dn, &rdn)
            .map(Some)
            .map_err(|m| SyncError::rule_text("tree", m));
    }
    let parent = c
        .parent
        .eval(e)
        .map_err(|m| SyncError::rule("create 'parent'", m))?;
    let (rdn_t, parent_t) = (rdn.trim(), parent.trim());
    // A file target names a row by its key (`rdn: |e| e.uid`, no parent),
    // and an Entra target names only its collection (`parent: "users"`, no
    // rdn): neither is a DN, and a lone name without '=' is taken as it is.
    let plain_name = (parent_t.is_empty() && !rdn_t.is_empty() && !rdn_t.contains('='))
        || (rdn_t.is_empty() && !parent_t.is_empty() && !parent_t.contains(['=', ',']));
    let dn = match (rdn_t.is_empty(), parent_t.is_empty()) {
        (true, true) => {
            return Err(SyncError::rule_text(
                "create rule",
                "create rule gives an empty name",
            ));
        }
        (true, false) => parent,
        (false, true) => rdn,
        (false, false) => format!("{rdn},{parent}"),
    };
    if let Err(e) = Dn::parse(&dn)
        && !plain_name
    {
        return Err(SyncError::rule_text(
            "create rule",
            format!("create rule gives {e}"),
        ));
    }
    Ok(Some(dn))
}

/// The attributes of a new target object at `dn` from the `values` the
/// planner kept (no flow is evaluated again): the create rule's classes,
/// every flow with a value (`once` flows included), the resolved members
/// and the naming attribute. The planner's checks, preview and apply all
/// call this.
pub fn create_attrs(
    step: &StepDef,
    dn: &str,
    values: &Projected,
) -> Result<Vec<AttrChange>, SyncError> {
    let (mut flowed, members) = values
        .decode()
        .ok_or_else(|| SyncError::Object("internal: unreadable planned values".into()))?;
    let mut attrs: Vec<AttrChange> = Vec::new();
    if let Some(c) = &step.create
        && !c.classes.is_empty()
    {
        attrs.push(AttrChange {
            attr: "objectClass".into(),
            old: vec![],
            new: c.classes.iter().map(|s| Value::Text(s.clone())).collect(),
            rule: "create class".into(),
        });
    }
    // In the order of the step's flows (as they were encoded).
    flowed.sort_by_key(|(i, _)| *i);
    for (i, vals) in flowed {
        let f = step.flows.get(i).ok_or_else(|| {
            SyncError::Object("internal: planned values of an unknown flow".into())
        })?;
        attrs.push(AttrChange {
            attr: f.target.clone(),
            old: vec![],
            new: vals,
            rule: f.rule.clone(),
        });
    }
    if let Some(rule) = &step.members
        && !members.is_empty()
    {
        attrs.push(AttrChange {
            attr: rule.target_attr.clone(),
            old: vec![],
            new: members,
            rule: rule.describe().into(),
        });
    }
    // The naming attribute must be present in the new entry.
    // The planner parsed the DN already: only its first RDN is read here.
    if let Some((rattr, rval)) = crate::model::dn::first_rdn(dn).and_then(rdn_pair)
        && !attrs.iter().any(|a| a.attr.eq_ignore_ascii_case(&rattr))
    {
        attrs.push(AttrChange {
            attr: rattr.into(),
            old: vec![],
            new: vec![Value::Text(rval)],
            rule: "create rdn".into(),
        });
    }
    Ok(attrs)
}

/// The attribute and unescaped value of a single-valued RDN.
pub(crate) fn rdn_pair(rdn: &str) -> Option<(String, String)> {
    let (a, v) = rdn.split_once('=')?;
    if rdn.contains('+') && !rdn.contains("\\+") {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    let mut chars = v.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let Some(n) = chars.next() else { break };
            if n.is_ascii_hexdigit() {
                let m = chars.next().unwrap_or('0');
                if let Ok(b) = u8::from_str_radix(&format!("{n}{m}"), 16) {
                    out.push(b);
                }
            } else {
                let mut buf = [0u8; 4];
                out.extend_from_slice(n.encode_utf8(&mut buf).as_bytes());
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    Some((a.trim().to_string(), out))
}

/// True when `s` starts with a deprovision date prefix (`YYYYMMDD-`).
fn date_prefixed(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    (b.len() > 9 && b[..8].iter().all(u8::is_ascii_digit) && b[8] == b'-').then(|| &s[9..])
}

/// For a restored object: the deprovision prefix taken off the attributes
/// the step prefixes (those a flow does not write already in `flowed`).
pub(super) fn unprefix_changes(
    step: &StepDef,
    t: &Entry,
    flowed: &[AttrChange],
) -> Vec<AttrChange> {
    let mut out = Vec::new();
    for attr in &step.deprovision.prefix {
        if flowed.iter().any(|c| c.attr.eq_ignore_ascii_case(attr)) {
            continue;
        }
        let old = target_values(t, attr);
        let new: Vec<Value> = old
            .iter()
            .map(|v| {
                let s = String::from_utf8_lossy(v.as_bytes());
                match date_prefixed(&s) {
                    Some(rest) => Value::Text(rest.to_string()),
                    None => v.clone(),
                }
            })
            .collect();
        if !same_values(&old, &new) {
            out.push(AttrChange {
                attr: attr.as_str().into(),
                old,
                new,
                rule: "restore: deprovision date prefix removed".into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_values_are_unescaped() {
        assert_eq!(
            rdn_pair("CN=Lee\\, Ann"),
            Some(("CN".into(), "Lee, Ann".into()))
        );
        assert_eq!(rdn_pair("uid=a\\2cb"), Some(("uid".into(), "a,b".into())));
        assert_eq!(rdn_pair("cn=Zo\\c3\\ab"), Some(("cn".into(), "Zoë".into())));
        assert!(same_values(
            &[Value::Text("a".into()), Value::Text("b".into())],
            &[Value::Text("b".into()), Value::Text("a".into())]
        ));
    }
}
