//! Change tracking for LDAP sources: OpenLDAP by `entryCSN` (microsecond
//! change sequence numbers), Active Directory by `uSNChanged` (the DC's
//! update sequence number). The first read is a full one that notes the
//! newest value; later reads ask only for entries changed after it, plus a
//! light listing of the anchors still in scope (so that deleted entries and
//! entries that left the scope are known). An entry read twice is harmless:
//! the engine skips it by hash. Other servers are read in full.
//!
//! uSNChanged is per domain controller: a job should keep talking to the
//! same DC (a cursor from another DC gives a full re-read only if the
//! numbers happen to be lower, so use `full: true` after switching DCs).

use super::{Flavor, LdapConnector, read};
use crate::connector::{ChangeRound, Error, Result, Room, Scope, SearchQuery, Sink};
use crate::model::Entry;
use crate::model::dn::Dn;

/// The attribute that orders changes on this server, if any.
fn tracker(c: &LdapConnector) -> Option<&'static str> {
    match c.ldap_flavor() {
        Flavor::OpenLdap => Some("entryCSN"),
        Flavor::Ad => Some("uSNChanged"),
        Flavor::Generic => None,
    }
}

/// True when `v` is a well-formed value of `attr` (safe in a filter).
fn valid(attr: &str, v: &str) -> bool {
    match attr {
        "uSNChanged" => !v.is_empty() && v.len() < 20 && v.bytes().all(|b| b.is_ascii_digit()),
        _ => {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'#'))
        }
    }
}

/// True when `a` is later than `b`.
fn later(attr: &str, a: &str, b: &str) -> bool {
    match attr {
        "uSNChanged" => a.parse::<u64>().unwrap_or(0) > b.parse::<u64>().unwrap_or(0),
        _ => a > b,
    }
}

/// The filter part selecting entries changed after `v`.
fn after(attr: &str, v: &str) -> String {
    match attr {
        "uSNChanged" => format!("({attr}>={})", v.parse::<u64>().unwrap_or(0) + 1),
        // CSNs are unique per change: strictly after the newest one seen.
        _ => format!("(&({attr}>={v})(!({attr}={v})))"),
    }
}

/// One change round for `q` since `cursor` (`<attribute>:<value>`); the
/// changed entries are read while `room` has room.
pub async fn changes(
    c: &LdapConnector,
    q: &SearchQuery,
    cursor: Option<&str>,
    sink: &mut Sink<'_>,
    room: Option<&Room>,
) -> Result<Option<ChangeRound>> {
    let Some(attr) = tracker(c) else {
        return Ok(None);
    };
    if q.limit.is_some() {
        return Ok(None);
    }
    let since = cursor
        .and_then(|c| c.strip_prefix(attr)?.strip_prefix(':'))
        .filter(|v| valid(attr, v))
        .map(str::to_string);
    let keep = q
        .attrs
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| x.eq_ignore_ascii_case(attr)));
    let base_filter = if q.filter.trim().is_empty() {
        "(objectClass=*)".to_string()
    } else {
        q.filter.trim().to_string()
    };
    let mut changed_q = q.clone();
    if let Some(v) = &since {
        changed_q.filter = format!("(&{base_filter}{})", after(attr, v));
    }
    let mut newest = since.clone();
    {
        let mut inner = |mut e: Entry| {
            if let Some(v) = e.first(attr)
                && valid(attr, &v)
                && newest.as_deref().is_none_or(|n| later(attr, &v, n))
            {
                newest = Some(v);
            }
            if !keep {
                e.set(attr, Vec::new());
            }
            sink(e)
        };
        read::search_paced(c, &changed_q, &[attr], &mut inner, room).await?;
    }
    // Which entries are still in scope: anchors only.
    let present = match &since {
        None => None,
        Some(_) => {
            let list_q = SearchQuery {
                attrs: Some(vec![c.anchor_attr().to_string()]),
                ..q.clone()
            };
            // Straight into the list (an anchor is unique in a directory;
            // the engine indexes the list itself): no set of its own beside
            // it, which at 1,000,000 entries is tens of MB at the peak.
            let mut anchors: Vec<String> = Vec::new();
            read::search(c, &list_q, &mut |e| {
                anchors.extend(e.anchor);
                Ok(true)
            })
            .await?;
            Some(anchors)
        }
    };
    Ok(Some(ChangeRound {
        full: since.is_none(),
        removed: Vec::new(),
        present,
        cursor: match newest {
            Some(v) => format!("{attr}:{v}"),
            None => String::new(),
        },
        note: None,
    }))
}

/// The change mark now for the part of the directory holding `dn`: the
/// newest `contextCSN` of its naming context (OpenLDAP; kept by the syncprov
/// overlay, so `None` without it), or the rootDSE's `highestCommittedUSN`
/// (AD). Every entry written after this call has a later `entryCSN` /
/// `uSNChanged`, so [`anchors_since`] finds it.
pub async fn write_mark(c: &LdapConnector, dn: &str) -> Result<Option<String>> {
    let Some(attr) = tracker(c) else {
        return Ok(None);
    };
    let (base, mark_attr) = match attr {
        "uSNChanged" => (String::new(), "highestCommittedUSN"),
        _ => {
            let Ok(target) = Dn::parse(dn) else {
                return Ok(None);
            };
            let context = c
                .root_dse()
                .naming_contexts
                .iter()
                .filter_map(|nc| Dn::parse(nc).ok().map(|d| (nc, d)))
                .filter(|(_, d)| !d.is_empty() && target.is_under(d))
                .max_by_key(|(_, d)| d.rdns().len());
            let Some((context, _)) = context else {
                return Ok(None);
            };
            (context.clone(), "contextCSN")
        }
    };
    let q = SearchQuery {
        base: Some(base),
        scope: Scope::Base,
        filter: "(objectClass=*)".into(),
        attrs: Some(vec![mark_attr.to_string()]),
        limit: None,
    };
    let mut newest: Option<String> = None;
    read::search(c, &q, &mut |e| {
        for v in e.values(mark_attr) {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            if valid(attr, &v) && newest.as_deref().is_none_or(|n| later(attr, &v, n)) {
                newest = Some(v);
            }
        }
        Ok(true)
    })
    .await?;
    Ok(newest)
}

/// Calls `found(dn, anchor)` for each entry below `base` written after
/// `mark` (a value of [`write_mark`]): the read-back of a batch of
/// creates, one indexed search instead of one read per create.
pub async fn anchors_since(
    c: &LdapConnector,
    base: &str,
    mark: &str,
    found: &mut (dyn FnMut(String, String) + Send),
) -> Result<()> {
    let Some(attr) = tracker(c) else {
        return Err(Error::usage(
            "this directory has no change mark to read anchors back by",
        ));
    };
    if !valid(attr, mark) {
        return Err(Error::usage(format!("'{mark}' is not a {attr} value")));
    }
    let q = SearchQuery {
        base: Some(base.to_string()),
        scope: Scope::Sub,
        filter: after(attr, mark),
        attrs: Some(vec![c.anchor_attr().to_string()]),
        limit: None,
    };
    read::search(c, &q, &mut |e| {
        if let Some(anchor) = e.anchor {
            found(e.dn, anchor);
        }
        Ok(true)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_values_are_checked_and_ordered() {
        assert!(valid("uSNChanged", "12345"));
        assert!(!valid("uSNChanged", "12a"));
        assert!(valid(
            "entryCSN",
            "20261122074839.492345Z#000000#000#000000"
        ));
        assert!(!valid("entryCSN", "x)(objectClass=*"));
        assert!(later("uSNChanged", "100", "99"));
        assert!(!later("uSNChanged", "99", "100"));
        assert!(later(
            "entryCSN",
            "20261122074839.492346Z#000000#000#000000",
            "20261122074839.492345Z#000000#000#000000"
        ));
        assert_eq!(after("uSNChanged", "41"), "(uSNChanged>=42)");
        assert_eq!(
            after("entryCSN", "1Z#0"),
            "(&(entryCSN>=1Z#0)(!(entryCSN=1Z#0)))"
        );
    }
}
