//! The shell's current place in a directory, as shelldap and PowerShell's
//! AD drive have it: `cd(c, dn)` sets a current base on one connection,
//! which `c.ls()`, `c.search(...)` and `c.get(...)` of that connection use
//! and the prompt shows; `pwd()` tells it. Also how `ls` and `tree` read a
//! container's children.

use std::sync::{Arc, Mutex};

use crate::connector::{Connector, Scope, SearchQuery};
use crate::model::Entry;
use crate::model::dn::Dn;

use super::convert::{ScriptResult, rt_err};
use super::runtime::block_on;

/// The current base: which connection (by identity of its connector) and where.
struct Place {
    conn: usize,
    dn: String,
}

static CWD: Mutex<Option<Place>> = Mutex::new(None);

fn id(c: &Arc<dyn Connector>) -> usize {
    Arc::as_ptr(c) as *const () as usize
}

/// The current base's DN, if `cd` set one (for the prompt and `pwd()`).
pub fn current_dn() -> Option<String> {
    CWD.lock().ok()?.as_ref().map(|p| p.dn.clone())
}

/// The current base when it belongs to `c`.
pub fn base_for(c: &Arc<dyn Connector>) -> Option<String> {
    let g = CWD.lock().ok()?;
    g.as_ref().filter(|p| p.conn == id(c)).map(|p| p.dn.clone())
}

/// The connection's own base (LDAP), if it has one.
pub fn home(c: &Arc<dyn Connector>) -> Option<String> {
    crate::connector::downcast::<crate::connector::ldap::LdapConnector>(c.as_ref())
        .map(|l| l.base().to_string())
        .filter(|b| !b.is_empty())
}

/// Resolves `dn` against where `c` is: `""` is the current base (or the
/// connection's), `..` its parent, a DN ending in the connection's base
/// (or with no relative meaning) stands as it is, anything else is
/// relative to the current base (`ou=people` below `dc=example,dc=com`).
pub fn resolve(c: &Arc<dyn Connector>, dn: &str) -> ScriptResult<String> {
    let here = base_for(c).or_else(|| home(c)).unwrap_or_default();
    let dn = dn.trim();
    if dn.is_empty() || dn == "." {
        return Ok(here);
    }
    let mut cur = here.clone();
    let mut rest = dn;
    // `..`, `../..`, `../ou=x`
    while let Some(r) = rest.strip_prefix("..") {
        let parsed = Dn::parse(&cur).map_err(|e| rt_err(format!("cd: {cur}: {e}")))?;
        cur = parsed.parent().to_string();
        rest = r.trim_start_matches(['/', ',']);
    }
    if rest.is_empty() {
        return Ok(cur);
    }
    if cur.is_empty() || is_absolute(c, rest) {
        return Ok(rest.to_string());
    }
    Ok(format!("{rest},{cur}"))
}

/// True when `dn` is a full DN: it ends with the connection's base (or
/// the connection has none to tell, and it has several RDNs).
fn is_absolute(c: &Arc<dyn Connector>, dn: &str) -> bool {
    match home(c) {
        Some(b) => dn.to_ascii_lowercase().ends_with(&b.to_ascii_lowercase()),
        None => dn.contains(','),
    }
}

/// `op: dn: cause`, naming the DN once (connector errors often name it).
fn named(op: &str, dn: &str, e: crate::connector::Error) -> Box<rhai::EvalAltResult> {
    let text = e.to_string();
    if text.starts_with(dn) {
        rt_err(format!("{op}: {text}"))
    } else {
        rt_err(format!("{op}: {dn}: {text}"))
    }
}

/// `cd(c, dn)`: checks that `dn` exists on `c` and makes it the current base.
pub fn cd(c: &Arc<dyn Connector>, dn: &str) -> ScriptResult<String> {
    let target = resolve(c, dn)?;
    if target.is_empty() {
        return Err(rt_err("cd: give a DN; this connection has no base"));
    }
    let q = SearchQuery {
        base: Some(target.clone()),
        scope: Scope::Base,
        filter: "(objectClass=*)".into(),
        attrs: Some(vec!["objectClass".into()]),
        limit: Some(1),
    };
    let mut found: Option<String> = None;
    let conn = c.clone();
    block_on(conn.search(&q, &mut |e| {
        found = Some(e.dn.clone());
        Ok(false)
    }))
    .map_err(|e| named("cd", &target, e))?;
    let Some(dn) = found else {
        return Err(rt_err(format!("cd: {target}: no such entry")));
    };
    if let Ok(mut g) = CWD.lock() {
        *g = Some(Place {
            conn: id(c),
            dn: dn.clone(),
        });
    }
    Ok(dn)
}

/// One child of a container, as `ls` shows it.
pub struct Child {
    /// The child's RDN (`ou=people`).
    pub rdn: String,
    /// Its full DN.
    pub dn: String,
    /// Its structural object classes (the most specific last), as text.
    pub classes: String,
    /// Its children: a count where the server gives one cheaply
    /// (numSubordinates, AD's msDS-Approx-Immed-Subordinates), else
    /// whether it has any (hasSubordinates), else unknown.
    pub children: Option<Children>,
}

/// How many children an entry has, as far as the server tells cheaply.
pub enum Children {
    /// An exact or approximate count.
    Count(i64),
    /// Has children or not, without a count.
    Some(bool),
}

/// Operational attributes that tell about children without reading them.
const CHILD_ATTRS: [&str; 3] = [
    "numSubordinates",
    "msDS-Approx-Immed-Subordinates",
    "hasSubordinates",
];

fn child_of(e: &Entry) -> Child {
    let rdn = Dn::parse(&e.dn)
        .ok()
        .and_then(|d| d.rdn().map(|r| r.to_string()))
        .unwrap_or_else(|| e.dn.clone());
    let classes: Vec<String> = e
        .values("objectClass")
        .iter()
        .filter_map(|v| v.display("objectClass"))
        .filter(|c| !c.eq_ignore_ascii_case("top"))
        .collect();
    let count = CHILD_ATTRS[..2]
        .iter()
        .find_map(|a| e.first(a).and_then(|v| v.trim().parse::<i64>().ok()));
    let children = match count {
        Some(n) => Some(Children::Count(n)),
        None => e
            .first("hasSubordinates")
            .map(|v| Children::Some(v.eq_ignore_ascii_case("TRUE"))),
    };
    Child {
        rdn,
        dn: e.dn.clone(),
        classes: classes.join(", "),
        children,
    }
}

/// The direct children of `dn` on `c`, sorted by RDN.
pub fn children(c: &Arc<dyn Connector>, dn: &str) -> ScriptResult<Vec<Child>> {
    let mut attrs = vec!["objectClass".to_string()];
    attrs.extend(CHILD_ATTRS.iter().map(|s| s.to_string()));
    let q = SearchQuery {
        base: Some(dn.to_string()),
        scope: Scope::One,
        filter: "(objectClass=*)".into(),
        attrs: Some(attrs),
        limit: None,
    };
    let mut out = Vec::new();
    let conn = c.clone();
    block_on(conn.search(&q, &mut |e| {
        out.push(child_of(&e));
        Ok(true)
    }))
    .map_err(|e| named("ls", dn, e))?;
    out.sort_by_key(|a| a.rdn.to_ascii_lowercase());
    Ok(out)
}

/// Children shown at most per container in `tree` (the rest is counted).
const TREE_WIDTH: usize = 200;

/// An outline of `dn` and its descendants down to `depth` levels.
pub fn tree(c: &Arc<dyn Connector>, dn: &str, depth: i64) -> ScriptResult<String> {
    let mut out = format!("{dn}\n");
    walk(c, dn, depth.max(0) as usize, "", &mut out)?;
    Ok(out.trim_end().to_string())
}

fn walk(
    c: &Arc<dyn Connector>,
    dn: &str,
    depth: usize,
    indent: &str,
    out: &mut String,
) -> ScriptResult<()> {
    if depth == 0 {
        return Ok(());
    }
    let kids = children(c, dn)?;
    let n = kids.len();
    for (i, k) in kids.iter().take(TREE_WIDTH).enumerate() {
        let last = i + 1 == n.min(TREE_WIDTH) && n <= TREE_WIDTH;
        let count = match &k.children {
            Some(Children::Count(n)) if *n > 0 => format!(" ({n})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{indent}{}{}{count}\n",
            if last { "└── " } else { "├── " },
            k.rdn
        ));
        let has_kids = !matches!(
            k.children,
            Some(Children::Count(0)) | Some(Children::Some(false))
        );
        if has_kids {
            let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
            walk(c, &k.dn, depth - 1, &deeper, out)?;
        }
    }
    if n > TREE_WIDTH {
        out.push_str(&format!("{indent}└── … {} more\n", n - TREE_WIDTH));
    }
    Ok(())
}
