//! Reading: paged streaming search, entry decoding (binary attributes by the
//! known list, never by UTF-8 luck), identity lookup, schema attribute names.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{ResultEntry, Scope as LScope, SearchEntry};

use super::LdapConnector;
use super::options::Flavor;
use super::result;
use crate::connector::{Error, Result, Room, Scope, SearchQuery, Sink};
use crate::model::codec;
use crate::model::dn::{Dn, ldap_escape, ldap_escape_bytes};
use crate::model::filter::{Filter, quote_window};
use crate::model::value::is_binary;
use crate::model::{Entry, Value};

/// Decodes a raw search result, turning ldap3's panic on malformed BER into
/// an error.
pub fn construct(raw: ResultEntry) -> Result<SearchEntry> {
    catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(raw)))
        .map_err(|_| Error::Connection("the server sent a malformed search result entry".into()))
}

/// Converts an ldap3 entry into ours: attributes on the binary list keep their
/// bytes wherever ldap3 put them; requested order first, then alphabetical.
pub fn to_entry(se: SearchEntry, anchor_attr: &str, order: Option<&[String]>) -> Entry {
    let mut named: Vec<(String, Vec<Value>)> =
        Vec::with_capacity(se.attrs.len() + se.bin_attrs.len());
    for (name, vals) in se.attrs {
        let values = if is_binary(&name) {
            vals.into_iter()
                .map(|v| Value::Binary(v.into_bytes()))
                .collect()
        } else {
            vals.into_iter().map(Value::Text).collect()
        };
        named.push((name, values));
    }
    for (name, vals) in se.bin_attrs {
        let values: Vec<Value> = vals.into_iter().map(Value::Binary).collect();
        match named
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some((_, existing)) => existing.extend(values),
            None => named.push((name, values)),
        }
    }
    // Each name's place computed once (not per comparison): the requested
    // position, then the name in any case (compared without a lower-case copy).
    let mut ranked: Vec<(usize, String, Vec<Value>)> = named
        .into_iter()
        .map(|(n, v)| {
            let rank = order
                .and_then(|o| o.iter().position(|a| a.eq_ignore_ascii_case(&n)))
                .unwrap_or(usize::MAX);
            (rank, n, v)
        })
        .collect();
    ranked.sort_by(|(ra, a, _), (rb, b, _)| {
        ra.cmp(rb).then_with(|| {
            a.bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
        })
    });
    let mut e = Entry::new(se.dn);
    for (_, name, values) in ranked {
        e.push_owned(name, values);
    }
    e.anchor = e.first(anchor_attr);
    e
}

/// True when the anchor attribute was fetched only for `e.anchor` and should
/// not show as an attribute (asked-for lists without it; OpenLDAP's
/// operational entryUUID under "*", which an LDIF import would reject).
fn hide_anchor(attrs: Option<&[String]>, anchor_attr: &str, flavor: Flavor) -> bool {
    match attrs {
        Some(list) => !list
            .iter()
            .any(|a| a.eq_ignore_ascii_case(anchor_attr) || a == "+"),
        None => flavor != Flavor::Ad,
    }
}

fn lscope(s: Scope) -> LScope {
    match s {
        Scope::Base => LScope::Base,
        Scope::One => LScope::OneLevel,
        Scope::Sub => LScope::Subtree,
    }
}

/// Deepest parenthesis nesting sent to ldap3's parser, which recurses once
/// per level and would exhaust the stack on a hostile filter.
const MAX_FILTER_DEPTH: usize = 100;

/// Checks a filter before it is sent, so a typo gets a clear message: the
/// position and a short window of the filter (never the whole of a long
/// one), from idsync's own parser where it can say more than ldap3.
pub fn check_filter(filter: &str) -> Result<()> {
    let hint = "escape * ( ) \\ in values with ldap_escape()";
    if paren_depth(filter) > MAX_FILTER_DEPTH || ldap3::parse_filter(filter).is_err() {
        return Err(Error::usage(match Filter::parse(filter) {
            Err(e) => format!("{e} ({hint})"),
            // Valid for idsync's parser but not for ldap3's.
            Ok(_) => format!(
                "bad filter '{}': not a valid LDAP filter (RFC 4515); check the parentheses, \
                 and {hint}",
                quote_window(filter, 1, 60)
            ),
        }));
    }
    Ok(())
}

/// The deepest nesting of unescaped parentheses (values escape theirs as
/// `\28` / `\29`).
fn paren_depth(filter: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in filter.bytes() {
        match b {
            b'(' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Streams the entries matching `q` into `sink`, paging under the hood.
pub async fn search(c: &LdapConnector, q: &SearchQuery, sink: &mut Sink<'_>) -> Result<()> {
    search_with(c, q, &[], sink).await
}

/// [`search`], also asking for the `extra` attributes (entries otherwise as
/// `search` gives them; the caller removes the extras it does not pass on).
pub async fn search_with(
    c: &LdapConnector,
    q: &SearchQuery,
    extra: &[&str],
    sink: &mut Sink<'_>,
) -> Result<()> {
    search_paced(c, q, extra, sink, None).await
}

/// [`search_with`], asking for the next entry (so, at a page's end, for the
/// next page) only while `room` has room.
pub async fn search_paced(
    c: &LdapConnector,
    q: &SearchQuery,
    extra: &[&str],
    sink: &mut Sink<'_>,
    room: Option<&Room>,
) -> Result<()> {
    let filter = if q.filter.trim().is_empty() {
        "(objectClass=*)".to_string()
    } else {
        q.filter.clone()
    };
    check_filter(&filter)?;
    let base = q.base.clone().unwrap_or_else(|| c.base().to_string());
    if let Err(e) = Dn::parse(&base) {
        return Err(Error::usage(e.to_string()));
    }
    let anchor = c.anchor_attr();
    let mut attrs: Vec<String> = match &q.attrs {
        None => vec!["*".into(), anchor.into()],
        Some(list) => {
            let mut a = list.clone();
            if !a.iter().any(|x| x.eq_ignore_ascii_case(anchor)) {
                a.push(anchor.into());
            }
            a
        }
    };
    for x in extra {
        if !attrs.iter().any(|a| a.eq_ignore_ascii_case(x)) {
            attrs.push(x.to_string());
        }
    }
    let page = c.options().page_size;
    let paged = page > 0 && q.scope != Scope::Base;
    let mut ldap = if paged {
        c.paged_handle().await?
    } else {
        c.handle().await?
    };
    if let Some(limit) = q.limit {
        ldap.with_search_options(
            ldap3::SearchOptions::new().sizelimit(limit.min(i32::MAX as usize) as i32),
        );
    }
    let what = format!("search under '{base}'");
    let mut adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(EntriesOnly::new())];
    if paged {
        adapters.push(Box::new(PagedResults::new(page as i32)));
    }
    let mut stream = ldap
        .streaming_search_with(adapters, &base, lscope(q.scope), &filter, attrs)
        .await
        .map_err(|e| result::ldap_error(&what, e))?;
    let hide = hide_anchor(q.attrs.as_deref(), anchor, c.ldap_flavor());
    let mut count = 0usize;
    let mut stopped = false;
    loop {
        if let Some(room) = room {
            room.wait().await;
        }
        let next = stream
            .next()
            .await
            .map_err(|e| result::ldap_error(&what, e))?;
        let Some(raw) = next else { break };
        let mut e = to_entry(construct(raw)?, anchor, q.attrs.as_deref());
        if hide {
            e.set(anchor, Vec::new());
        }
        count += 1;
        if !sink(e)? || q.limit.is_some_and(|l| count >= l) {
            stopped = true;
            break;
        }
    }
    if stopped {
        let id = stream.ldap_handle().last_id();
        let _ = stream.ldap_handle().abandon(id).await;
        return Ok(());
    }
    let res = stream.finish().await;
    match res.rc {
        0 => Ok(()),
        4 if q.limit.is_some() => Ok(()),
        32 => Err(Error::NotFound(base)),
        _ => Err(result::op_error(&what, &res)),
    }
}

/// Collects a whole search into a vector.
pub async fn search_all(c: &LdapConnector, q: &SearchQuery) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    search(c, q, &mut |e| {
        out.push(e);
        Ok(true)
    })
    .await?;
    Ok(out)
}

/// How an identity string is to be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A distinguished name.
    Dn(String),
    /// A GUID / UUID.
    Guid(String),
    /// A SID string.
    Sid(Vec<u8>),
    /// An account or object name.
    Name(String),
}

/// Classifies an identity: GUID, SID, DN, or a name.
pub fn classify(identity: &str) -> Result<Identity> {
    let s = identity.trim();
    if s.is_empty() {
        return Err(Error::usage(
            "empty identity (give a DN, GUID, SID or account name)",
        ));
    }
    if codec::looks_like_guid(s) {
        return Ok(Identity::Guid(
            s.trim_matches(|c| c == '{' || c == '}')
                .to_ascii_lowercase(),
        ));
    }
    if codec::looks_like_sid(s) {
        return Ok(Identity::Sid(codec::sid_from_string(s).unwrap_or_default()));
    }
    if s.contains('=') {
        Dn::parse(s).map_err(|e| Error::usage(e.to_string()))?;
        return Ok(Identity::Dn(s.to_string()));
    }
    Ok(Identity::Name(s.to_string()))
}

/// The filter that finds an identity on this flavour.
fn identity_filter(flavor: Flavor, id: &Identity) -> String {
    match (id, flavor) {
        (Identity::Guid(g), Flavor::Ad) => {
            format!(
                "(objectGUID={})",
                ldap_escape_bytes(&codec::guid_from_string(g).unwrap_or_default())
            )
        }
        (Identity::Guid(g), _) => format!("(entryUUID={})", ldap_escape(g)),
        (Identity::Sid(b), _) => format!("(objectSid={})", ldap_escape_bytes(b)),
        (Identity::Name(n), Flavor::Ad) => {
            let n = ldap_escape(n);
            format!("(|(sAMAccountName={n})(userPrincipalName={n}))")
        }
        (Identity::Name(n), _) => {
            let n = ldap_escape(n);
            if n.contains('@') {
                format!("(|(uid={n})(mail={n}))")
            } else {
                format!("(|(uid={n})(cn={n}))")
            }
        }
        (Identity::Dn(_), _) => "(objectClass=*)".into(),
    }
}

/// One entry by identity (DN, GUID, SID, sAMAccountName, userPrincipalName,
/// uid, cn) with the given attributes; `None` when nothing matches, an
/// ambiguity error when several do.
pub async fn get(
    c: &LdapConnector,
    identity: &str,
    attrs: Option<Vec<String>>,
) -> Result<Option<Entry>> {
    get_in(c, identity, None, attrs).await
}

/// [`get`] below `base` instead of the connection's base (`None`); a DN
/// identity is read where it says.
pub async fn get_in(
    c: &LdapConnector,
    identity: &str,
    base: Option<&str>,
    attrs: Option<Vec<String>>,
) -> Result<Option<Entry>> {
    let id = classify(identity)?;
    let (base, scope) = match &id {
        Identity::Dn(dn) => (dn.clone(), Scope::Base),
        _ => (base.unwrap_or(c.base()).to_string(), Scope::Sub),
    };
    let q = SearchQuery {
        base: Some(base),
        scope,
        filter: identity_filter(c.ldap_flavor(), &id),
        attrs,
        limit: None,
    };
    let mut found = Vec::new();
    let r = search(c, &q, &mut |e| {
        found.push(e);
        Ok(found.len() < 6)
    })
    .await;
    match r {
        Ok(()) => {}
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(Error::Ambiguous {
            identity: identity.to_string(),
            count: n,
            sample: found
                .iter()
                .take(3)
                .map(|e| e.dn.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// The DN of an identity; a DN is taken as given without a round trip.
pub async fn resolve_dn(c: &LdapConnector, identity: &str) -> Result<String> {
    match classify(identity)? {
        Identity::Dn(dn) => Ok(dn),
        _ => match get(c, identity, Some(vec!["1.1".into()])).await? {
            Some(e) => Ok(e.dn),
            None => Err(Error::NotFound(identity.to_string())),
        },
    }
}

/// The entry of an identity (with `attrs`), or a not-found error.
pub async fn require(c: &LdapConnector, identity: &str, attrs: &[&str]) -> Result<Entry> {
    let attrs = attrs.iter().map(|s| s.to_string()).collect();
    get(c, identity, Some(attrs))
        .await?
        .ok_or_else(|| Error::NotFound(identity.to_string()))
}

/// Attribute names from the server's schema, for completion.
pub async fn attribute_names(c: &LdapConnector) -> Result<Vec<String>> {
    let root = c.root_dse();
    let mut names = Vec::new();
    if c.ldap_flavor() == Flavor::Ad {
        if let Some(schema) = &root.schema_nc {
            let q = SearchQuery {
                base: Some(schema.clone()),
                scope: Scope::One,
                filter: "(objectClass=attributeSchema)".into(),
                attrs: Some(vec!["lDAPDisplayName".into()]),
                limit: None,
            };
            search(c, &q, &mut |e| {
                if let Some(n) = e.first("lDAPDisplayName") {
                    names.push(n);
                }
                Ok(true)
            })
            .await?;
        }
    } else if let Some(sub) = &root.subschema {
        let q = SearchQuery {
            base: Some(sub.clone()),
            scope: Scope::Base,
            filter: "(objectClass=subschema)".into(),
            attrs: Some(vec!["attributeTypes".into()]),
            limit: None,
        };
        for e in search_all(c, &q).await? {
            for v in e.values("attributeTypes") {
                if let Value::Text(def) = v {
                    names.extend(schema_names(def));
                }
            }
        }
    }
    names.sort_by_key(|n| n.to_ascii_lowercase());
    names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    Ok(names)
}

/// The NAME(s) of one RFC 4512 attribute type definition.
fn schema_names(def: &str) -> Vec<String> {
    let Some(pos) = def.find("NAME ") else {
        return Vec::new();
    };
    let rest = def[pos + 5..].trim_start();
    let part = if rest.starts_with('(') {
        rest.strip_prefix('(')
            .unwrap_or(rest)
            .split(')')
            .next()
            .unwrap_or("")
    } else {
        rest.split_whitespace().next().unwrap_or("")
    };
    part.split_whitespace()
        .map(|n| n.trim_matches('\'').to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn binary_attrs_decoded_by_list_not_utf8_luck() {
        let guid_bytes: Vec<u8> = b"ABCDEFGHIJKLMNOP".to_vec();
        let mut attrs = HashMap::new();
        attrs.insert(
            "objectGUID".to_string(),
            vec![String::from_utf8(guid_bytes.clone()).unwrap()],
        );
        attrs.insert("cn".to_string(), vec!["x".to_string()]);
        let mut bin = HashMap::new();
        bin.insert(
            "objectSid".to_string(),
            vec![codec::sid_from_string("S-1-5-21-1-2-3-500").unwrap()],
        );
        let se = SearchEntry {
            dn: "cn=x".into(),
            attrs,
            bin_attrs: bin,
        };
        let e = to_entry(se, "objectGUID", None);
        assert_eq!(e.values("objectguid")[0], Value::Binary(guid_bytes.clone()));
        assert_eq!(
            e.anchor.as_deref(),
            codec::guid_to_string(&guid_bytes).as_deref()
        );
        assert_eq!(e.first("objectSid").as_deref(), Some("S-1-5-21-1-2-3-500"));
    }

    #[test]
    fn attributes_in_requested_order_then_by_name_in_any_case() {
        let text = |v: &str| vec![v.to_string()];
        let attrs: HashMap<String, Vec<String>> = [
            ("sn", text("Lee")),
            ("Mail", text("a@x")),
            ("cn", text("Ann Lee")),
            ("uid", text("ann")),
            ("businessCategory", text("b")),
            ("entryUUID", text("0f1e2d3c-0000-4000-8000-000000000001")),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
        // objectSid arrives in the binary map but also under its text name
        // in other case: one attribute, the values of both.
        let mut attrs = attrs;
        attrs.insert("OBJECTSID".into(), vec!["\u{1}".into()]);
        let bin: HashMap<String, Vec<Vec<u8>>> = [("objectSid".to_string(), vec![vec![2u8]])]
            .into_iter()
            .collect();
        let se = SearchEntry {
            dn: "uid=ann,dc=x".into(),
            attrs,
            bin_attrs: bin,
        };
        let order = ["uid".to_string(), "CN".to_string()];
        let e = to_entry(se, "entryUUID", Some(&order));
        let names: Vec<&str> = e.attributes().iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "uid",
                "cn",
                "businessCategory",
                "entryUUID",
                "Mail",
                "OBJECTSID",
                "sn"
            ]
        );
        assert_eq!(e.values("objectsid").len(), 2);
        assert_eq!(
            e.anchor.as_deref(),
            Some("0f1e2d3c-0000-4000-8000-000000000001")
        );
    }

    #[test]
    fn classify_identities() {
        assert!(matches!(classify("cn=a,dc=x").unwrap(), Identity::Dn(_)));
        assert!(matches!(
            classify("{0a0b0c0d-0000-1111-2222-333344445555}").unwrap(),
            Identity::Guid(_)
        ));
        assert!(matches!(
            classify("S-1-5-21-1-2-3").unwrap(),
            Identity::Sid(_)
        ));
        assert!(matches!(classify("ann").unwrap(), Identity::Name(_)));
        assert!(classify("cn=a,,dc=x").is_err());
        assert!(classify("  ").is_err());
        assert_eq!(
            identity_filter(Flavor::Generic, &Identity::Name("a*".into())),
            "(|(uid=a\\2a)(cn=a\\2a))"
        );
    }

    #[test]
    fn bad_filters_quote_a_window_and_deep_ones_never_reach_ldap3() {
        assert!(check_filter("(&(cn=a)(sn=b))").is_ok());
        assert!(
            check_filter("(cn:dn:=a)").is_ok(),
            "extensible matches are LDAP's"
        );
        let long = format!("(|{}(cn=a", "(cn=x)".repeat(50_000));
        let msg = check_filter(&long).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.contains("position 300008"), "{msg}");
        assert!(msg.contains("ldap_escape()"), "{msg}");
        // ldap3's parser would overflow the stack on this.
        let deep = format!("{}(a=b){}", "(!".repeat(100_000), ")".repeat(100_000));
        let msg = check_filter(&deep).unwrap_err().to_string();
        assert!(msg.contains("nested more than") && msg.len() < 300, "{msg}");
    }

    #[test]
    fn schema_name_parsing() {
        assert_eq!(
            schema_names("( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )"),
            vec!["cn", "commonName"]
        );
        assert_eq!(schema_names("( 0.9 NAME 'mail' EQUALITY x )"), vec!["mail"]);
    }
}
