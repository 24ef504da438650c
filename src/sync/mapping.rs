//! A step's links edited by hand (the mappings between two systems, as
//! Active Roles' Management Shell maps and unmaps object pairs): [`link`]
//! maps a source object to a target object, refusing when either is
//! already linked elsewhere unless told to replace; [`find`] looks up the
//! one pair of a source or target object without listing every link;
//! [`map`] links every unambiguous join of a step's scope at once ("map
//! now"), writing nothing to the target. Forgetting a link is
//! [`super::links::unlink`].

use std::sync::Arc;

use crate::model::Entry;
use crate::store::{Link, StateStore};

use super::conflicts::{Outcome, Survey, survey};
use super::lease::{LeaseError, LeaseGuard};

use super::error::SyncError;
use super::item::anchor_of;
use super::plan::cursor_key;
use super::rules::StepDef;

/// Which side of a link a lookup names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The source object: its anchor.
    Source,
    /// The target object: its anchor or its DN (any case).
    Target,
}

/// The link of `step` whose `side` is `identity`: for the source its
/// anchor (exact), for the target its anchor or DN (ignoring case).
pub fn find(
    store: &dyn StateStore,
    step: &str,
    side: Side,
    identity: &str,
) -> Result<Option<Link>, SyncError> {
    let links = store.links(step).map_err(SyncError::store(""))?;
    let id = identity.trim();
    Ok(links.into_iter().find(|l| match side {
        Side::Source => l.source_anchor == id,
        Side::Target => {
            l.target_anchor.eq_ignore_ascii_case(id) || l.target_dn.eq_ignore_ascii_case(id)
        }
    }))
}

/// What [`link`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    /// The stored pair.
    pub link: Link,
    /// Links removed to make room (with `replace`).
    pub replaced: Vec<Link>,
    /// The pair was stored already: nothing changed.
    pub unchanged: bool,
}

/// Reads one object of a side; an error names it when it is missing.
async fn object(step: &StepDef, side: Side, identity: &str) -> Result<Entry, SyncError> {
    let (conn, what) = match side {
        Side::Source => (&step.source, "source"),
        Side::Target => (&step.target, "target"),
    };
    let what_obj = format!("reading the {what} object '{identity}'");
    let found = match side {
        Side::Source => conn
            .get(identity)
            .await
            .map_err(SyncError::source(what_obj))?,
        Side::Target => conn
            .get(identity)
            .await
            .map_err(SyncError::target(what_obj))?,
    };
    found.ok_or_else(|| {
        SyncError::Object(format!(
            "{identity}: no such {what} object in {}",
            conn.describe()
        ))
    })
}

/// Maps `source_identity` (anything the source's `get` takes) to
/// `target_identity` (anything the target's `get` takes) in `step`'s links.
/// Refused when the source object is linked to another target or the
/// target object to another source, unless `replace` (then those links are
/// removed). The stored pair has no source hash, and the step's change
/// cursor is reset, so the next run compares the pair and updates the
/// target object.
pub async fn link(
    store: &dyn StateStore,
    step: &StepDef,
    source_identity: &str,
    target_identity: &str,
    replace: bool,
) -> Result<Linked, SyncError> {
    let source = object(step, Side::Source, source_identity).await?;
    let target = object(step, Side::Target, target_identity).await?;
    let source_anchor = anchor_of(&source);
    let Some(target_anchor) = target.anchor.clone() else {
        return Err(SyncError::Object(format!(
            "{}: the target object has no anchor (objectGUID, entryUUID, ...) to link to",
            target.dn
        )));
    };
    let links = store.links(&step.name).map_err(SyncError::store(""))?;
    let same_target = |l: &Link| l.target_anchor.eq_ignore_ascii_case(&target_anchor);
    if links
        .iter()
        .any(|l| l.source_anchor == source_anchor && same_target(l))
    {
        let link = links
            .into_iter()
            .find(|l| l.source_anchor == source_anchor)
            .expect("found above");
        return Ok(Linked {
            link,
            replaced: Vec::new(),
            unchanged: true,
        });
    }
    let clashes: Vec<Link> = links
        .into_iter()
        .filter(|l| l.source_anchor == source_anchor || same_target(l))
        .collect();
    if !clashes.is_empty() && !replace {
        let said: Vec<String> = clashes
            .iter()
            .map(|l| {
                if l.source_anchor == source_anchor {
                    format!(
                        "the source object {source_anchor} is linked to {}",
                        l.target_dn
                    )
                } else {
                    format!(
                        "the target object {} is linked to source {}",
                        l.target_dn, l.source_anchor
                    )
                }
            })
            .collect();
        return Err(SyncError::Object(format!(
            "{source_identity} -> {}: not linked: {} (unlink first, or link with #{{ replace: true }})",
            target.dn,
            said.join("; ")
        )));
    }
    let removed: Vec<String> = clashes.iter().map(|l| l.source_anchor.clone()).collect();
    if !removed.is_empty() {
        store
            .remove_links(&step.name, &removed)
            .map_err(SyncError::store(""))?;
    }
    let link = Link {
        source_anchor,
        target_anchor,
        target_dn: target.dn.clone(),
        source_hash: None,
        desired_dn: None,
        updated_ms: super::clock::now_ms(),
    };
    store
        .put_links(&step.name, std::slice::from_ref(&link))
        .map_err(SyncError::store(""))?;
    store
        .put_setting(&cursor_key(&step.name), "")
        .map_err(SyncError::store(""))?;
    Ok(Linked {
        link,
        replaced: clashes,
        unchanged: false,
    })
}

/// Joins every source object in `step`'s scope that has no link yet (the
/// run's own scope search and join, see [`super::conflicts`]) and, when
/// `store_links`, links each one that matched exactly one target object
/// linked to no other source. Writes nothing to the target. Storing holds
/// the step's run lease (a run of the step at the same time is refused, and
/// this is refused while a run holds it); the step's change cursor is
/// reset so the next run compares the new pairs. Returns every row with its
/// outcome (the matched rows are the links stored).
pub async fn map(
    store: &Arc<dyn StateStore>,
    step: &StepDef,
    store_links: bool,
) -> Result<Survey, SyncError> {
    let _lease = if store_links {
        let owner = format!("map({})", step.name);
        Some(
            LeaseGuard::take(store.clone(), &owner, std::slice::from_ref(&step.name)).map_err(
                |e| match e {
                    LeaseError::Busy(m) => SyncError::Refused(m),
                    LeaseError::Store(m) => SyncError::Object(m),
                },
            )?,
        )
    } else {
        None
    };
    let found = survey(store.as_ref(), step).await?;
    if !store_links {
        return Ok(found);
    }
    let now = super::clock::now_ms();
    let links: Vec<Link> = found
        .rows
        .iter()
        .filter(|r| r.outcome == Outcome::Matched)
        .filter_map(|r| {
            Some(Link {
                source_anchor: r.source_anchor.clone(),
                target_anchor: r.target_anchor.clone()?,
                target_dn: r.target_dn.clone()?,
                source_hash: None,
                desired_dn: None,
                updated_ms: now,
            })
        })
        .collect();
    if !links.is_empty() {
        store
            .put_links(&step.name, &links)
            .map_err(SyncError::store("storing the matched pairs"))?;
        store
            .put_setting(&cursor_key(&step.name), "")
            .map_err(SyncError::store(""))?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::connector::Connector;
    use crate::connector::csv::{CsvConnector, CsvOptions};
    use crate::store::SqliteStore;

    fn csv(dir: &std::path::Path, name: &str, text: &str) -> Arc<dyn Connector> {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        Arc::new(CsvConnector::open(p, CsvOptions::new("id")).unwrap())
    }

    #[tokio::test]
    async fn link_refuses_pairs_linked_elsewhere_unless_replace_and_find_looks_up_one_side() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let step = StepDef {
            name: "m".into(),
            source: csv(dir.path(), "src.csv", "id,name\nA1,Ann\nA2,Bob\n"),
            target: csv(dir.path(), "dst.csv", "id,name\nT1,Ann\nT2,Bob\n"),
            scope: Default::default(),
            join: Vec::new(),
            create: None,
            flows: Vec::new(),
            deprovision: Default::default(),
            target_base: None,
            members: None,
            tree: None,
            fingerprint: String::new(),
        };
        store.put_setting(&cursor_key("m"), "tag|c1").unwrap();
        let done = link(&store, &step, "A1", "T1", false).await.unwrap();
        assert_eq!(
            (
                done.link.source_anchor.as_str(),
                done.link.target_anchor.as_str()
            ),
            ("A1", "T1")
        );
        assert!(!done.unchanged && done.replaced.is_empty());
        assert_eq!(done.link.source_hash, None);
        // the cursor is reset: the next run compares the pair
        assert_eq!(
            store.get_setting(&cursor_key("m")).unwrap().as_deref(),
            Some("")
        );
        // the same pair again changes nothing
        assert!(
            link(&store, &step, "A1", "T1", false)
                .await
                .unwrap()
                .unchanged
        );
        // T1 is linked to A1: refused, naming the other link
        let e = link(&store, &step, "A2", "T1", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("T1 is linked to source A1") && e.contains("replace: true"),
            "{e}"
        );
        // A1 is linked to T1: refused
        let e = link(&store, &step, "A1", "T2", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("source object A1 is linked to T1"), "{e}");
        // missing objects are named
        let e = link(&store, &step, "A9", "T2", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("A9: no such source object"), "{e}");
        // replace moves T1 to A2
        let done = link(&store, &step, "A2", "T1", true).await.unwrap();
        assert_eq!(done.replaced.len(), 1);
        assert_eq!(store.links("m").unwrap().len(), 1);
        let by_target = find(&store, "m", Side::Target, "t1").unwrap().unwrap();
        assert_eq!(by_target.source_anchor, "A2");
        assert!(find(&store, "m", Side::Source, "A1").unwrap().is_none());
        assert_eq!(
            find(&store, "m", Side::Source, "A2")
                .unwrap()
                .unwrap()
                .target_anchor,
            "T1"
        );
    }
}
