//! Mapping bindings: `link(step, source, target)` maps a pair by hand,
//! `links(step, #{ source: ... })` / `links(step, #{ target: ... })` find
//! one pair, `map(step)` links every unambiguous join ("map now") and
//! `conflicts(step)` lists the joins nothing can decide (API §11). The rules
//! are the engine's, in [`crate::sync::mapping`] and
//! [`crate::sync::conflicts`]; `links(step)` and `unlink` are in `sync_api`.

use rhai::plugin::*;

use super::context;
use super::convert::rt_err;
use crate::store::Link;
use crate::sync::SyncError;
use crate::sync::conflicts::{self, Outcome, Row, Survey};
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

/// One row of `map` / `conflicts` as scripts see it.
fn row_map(r: &Row) -> Dynamic {
    let text = |v: &Option<String>| v.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let mut m = rhai::Map::new();
    m.insert("source".into(), r.source_anchor.clone().into());
    m.insert("source_dn".into(), r.source_dn.clone().into());
    m.insert("result".into(), r.outcome.name().into());
    m.insert("target".into(), text(&r.target_dn));
    m.insert(
        "candidates".into(),
        r.candidates
            .iter()
            .cloned()
            .map(Dynamic::from)
            .collect::<rhai::Array>()
            .into(),
    );
    m.insert("reason".into(), text(&r.reason));
    Dynamic::from_map(m)
}

/// What `map` returns: the counts, `stored`, the rows and a summary line
/// (the shell prints the rows as a table and the summary under it).
fn survey_map(s: &Survey, stored: bool) -> rhai::Map {
    let mut m = rhai::Map::new();
    m.insert("step".into(), s.step.clone().into());
    for o in [
        Outcome::Matched,
        Outcome::Linked,
        Outcome::Ambiguous,
        Outcome::Unmatched,
        Outcome::Error,
    ] {
        m.insert(o.name().into(), Dynamic::from(s.count(o) as i64));
    }
    m.insert("stored".into(), stored.into());
    m.insert(
        "rows".into(),
        s.rows.iter().map(row_map).collect::<rhai::Array>().into(),
    );
    let summary = if stored {
        format!(
            "{}; {} link(s) stored",
            s.summary(),
            s.count(Outcome::Matched)
        )
    } else {
        format!("{}; preview: no link stored", s.summary())
    };
    m.insert("summary".into(), summary.into());
    m
}

/// Runs `f` to its end unless Ctrl-C (or SIGTERM) comes first: then `None`
/// (`map` and `conflicts` only store anything after their last read).
fn unless_interrupted<F: std::future::Future>(f: F) -> Option<F::Output> {
    let token = super::interrupt::token();
    crate::script::runtime::block_on_to_end(async move {
        tokio::select! {
            out = f => Some(out),
            _ = token.cancelled() => None,
        }
    })
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

    /// "Map now": runs only the step's scope and join over the whole source
    /// and links every source object whose join matches exactly one target
    /// object that no other source is linked to or matches. Writes nothing
    /// to the target; holds the step's run lease while it stores links (a
    /// run of the step at the same time is refused). Returns the counts
    /// (`matched`, `linked` = already linked, `ambiguous`, `unmatched`,
    /// `error`), `stored`, a `summary` line and the `rows` (source,
    /// result, target, candidates, reason), printed as a table. Under
    /// `--dry-run` it stores nothing, as `map(step, #{ preview: true })`.
    ///
    /// Example:
    /// ```rhai
    /// map(users)
    /// ```
    #[rhai_fn(name = "map", return_raw)]
    pub fn map(step: Step) -> ScriptResult<Map> {
        map_with(step, Map::new())
    }

    /// `map` with options: `preview: true` shows the same rows and counts
    /// without storing any link.
    ///
    /// Example:
    /// ```rhai
    /// map(users, #{ preview: true }).summary
    /// ```
    #[rhai_fn(name = "map", return_raw)]
    pub fn map_with(step: Step, opts: Map) -> ScriptResult<Map> {
        let mut preview = false;
        for (k, v) in &opts {
            match k.as_str() {
                "preview" => {
                    preview = v
                        .as_bool()
                        .map_err(|_| rt_err("map: option 'preview' is true or false"))?
                }
                other => return Err(rt_err(format!("map: unknown option '{other}' (preview)"))),
            }
        }
        let store_links = !preview && !crate::script::run_mode::dry_run();
        let store = context::store()?;
        let def = step.0.clone();
        let found = unless_interrupted(mapping::map(&store, &def, store_links))
            .ok_or_else(|| rt_err(format!("map({}): interrupted; no link stored", def.name)))?
            .map_err(|e| {
                if matches!(e, SyncError::Refused(_)) {
                    context::note_run_busy();
                }
                rt_err(format!("map({}): {e}", def.name))
            })?;
        Ok(survey_map(&found, store_links))
    }

    /// The source objects of a step whose join is ambiguous (several target
    /// objects match, or several source objects match one target) or whose
    /// match is linked to another source, with the `candidates` and the
    /// `reason`. `link(step, source, target)` resolves one. Reads both
    /// sides, writes nothing.
    ///
    /// Example:
    /// ```rhai
    /// conflicts(users)
    /// ```
    #[rhai_fn(name = "conflicts", return_raw)]
    pub fn conflicts(step: Step) -> ScriptResult<rhai::Array> {
        let store = context::store()?;
        let def = step.0.clone();
        let rows = unless_interrupted(conflicts::conflicts(store.as_ref(), &def))
            .ok_or_else(|| rt_err(format!("conflicts({}): interrupted", def.name)))?
            .map_err(|e| rt_err(format!("conflicts({}): {e}", def.name)))?;
        Ok(rows.iter().map(row_map).collect())
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
