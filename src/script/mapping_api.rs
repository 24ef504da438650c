//! Mapping bindings: `link(step, source, target)` maps a pair by hand and
//! `links(step, #{ source: ... })` / `links(step, #{ target: ... })` find
//! one pair (API §11). The rules are the engine's, in
//! [`crate::sync::mapping`]; `links(step)` and `unlink` are in `sync_api`.

use rhai::plugin::*;

use super::context;
use super::convert::rt_err;
use crate::store::Link;
use crate::sync::mapping::{self, Side};

type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// A link as scripts see it (the fields of `links(step)`).
fn link_map(l: &Link) -> rhai::Map {
    let mut m = rhai::Map::new();
    m.insert("source_anchor".into(), l.source_anchor.clone().into());
    m.insert("target_anchor".into(), l.target_anchor.clone().into());
    m.insert("target_dn".into(), l.target_dn.clone().into());
    m.insert(
        "updated".into(),
        crate::sync::clock::iso(l.updated_ms).into(),
    );
    m
}

/// Mapping bindings.
#[export_module]
pub mod mapping_api {
    use super::*;
    use crate::script::sync_api::Step;
    use rhai::Map;

    /// Maps a source object to a target object by hand (anything each
    /// side's `get` takes: a key, DN, GUID, uid...). Refused, naming the
    /// other link, when either is already linked elsewhere; the next run
    /// compares the pair and updates the target object. Returns the link.
    ///
    /// Example:
    /// ```rhai
    /// link(users, "E1001", "uid=ann,ou=people,dc=example,dc=com")
    /// ```
    #[rhai_fn(name = "link", return_raw)]
    pub fn link(step: Step, source: &str, target: &str) -> ScriptResult<Map> {
        link_with(step, source, target, Map::new())
    }

    /// `link` with options: `replace: true` removes the links that stand in
    /// the way (the source's old target, the target's old source) first.
    ///
    /// Example:
    /// ```rhai
    /// link(users, "E1002", "uid=ann,ou=people,dc=example,dc=com", #{ replace: true })
    /// ```
    #[rhai_fn(name = "link", return_raw)]
    pub fn link_with(step: Step, source: &str, target: &str, opts: Map) -> ScriptResult<Map> {
        let mut replace = false;
        for (k, v) in &opts {
            match k.as_str() {
                "replace" => {
                    replace = v
                        .as_bool()
                        .map_err(|_| rt_err("link: option 'replace' is true or false"))?
                }
                other => return Err(rt_err(format!("link: unknown option '{other}' (replace)"))),
            }
        }
        let store = context::store()?;
        let def = step.0.clone();
        let done = crate::script::runtime::block_on_to_end(mapping::link(
            store.as_ref(),
            &def,
            source,
            target,
            replace,
        ))
        .map_err(|e| rt_err(format!("link({}): {e}", def.name)))?;
        let mut m = link_map(&done.link);
        m.insert("unchanged".into(), done.unchanged.into());
        m.insert(
            "replaced".into(),
            done.replaced
                .iter()
                .map(|l| Dynamic::from_map(link_map(l)))
                .collect::<rhai::Array>()
                .into(),
        );
        Ok(m)
    }

    /// The one link of a step whose source anchor (`#{ source: ... }`) or
    /// target anchor or DN (`#{ target: ... }`) is given; `()` when there
    /// is none. Finds a pair without listing them all.
    ///
    /// Example:
    /// ```rhai
    /// links("hr-to-ldap/users", #{ target: "uid=ann,ou=people,dc=example,dc=com" })
    /// ```
    #[rhai_fn(name = "links", return_raw)]
    pub fn links_find(step: &str, opts: Map) -> ScriptResult<Dynamic> {
        let mut query = None;
        for (k, v) in &opts {
            let side = match k.as_str() {
                "source" => Side::Source,
                "target" => Side::Target,
                other => {
                    return Err(rt_err(format!(
                        "links: unknown option '{other}' (source or target)"
                    )));
                }
            };
            if query.is_some() {
                return Err(rt_err("links: give either source or target, not both"));
            }
            query = Some((side, v.to_string()));
        }
        let Some((side, id)) = query else {
            return Err(rt_err("links: give #{ source: ... } or #{ target: ... }"));
        };
        let store = context::store()?;
        let found = mapping::find(store.as_ref(), step, side, &id)
            .map_err(|e| rt_err(format!("links({step}): {e}")))?;
        Ok(found
            .map(|l| Dynamic::from_map(link_map(&l)))
            .unwrap_or(Dynamic::UNIT))
    }
}
