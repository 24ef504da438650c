//! The planner's orchestration: reads the source (streaming, in
//! `source`), plans each changed object against the target
//! (`object`), then the leavers (`deprovision`) and a
//! sync-tree's containers (`tree`). Preview prints this plan; run
//! executes exactly this plan. The item types live in [`super::item`] and
//! are re-exported here.

use std::collections::{HashMap, HashSet};

use crate::model::Entry;
use crate::store::{Link, StateStore};

use super::deprovision::deprovision_item;
use super::error::SyncError;
use super::hash::entry_hash;
use super::item::anchor_of;
use super::linked::Linked;
use super::members::MemberIndex;
use super::object::{Known, plan_one};
use super::rules::StepDef;
use super::source::{Changed, ReadOutcome, Reader};
use super::target::TargetView;
use super::tree::containers_for;

pub use super::item::{Action, AttrChange, Container, Item, ItemSender, Plan};
pub use super::project::create_attrs;

/// Where the change cursor of a step is kept in the store's settings (as
/// `<rules tag>|<cursor>`, so a change of the rules reads in full again).
pub fn cursor_key(step: &str) -> String {
    format!("sync-cursor/{step}")
}

/// A short tag of the step's rules.
fn rules_tag(fingerprint: &str) -> String {
    entry_hash(&Entry::new(""), fingerprint)
}

/// Options of a planning pass.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Ignore stored hashes and compare every object.
    pub full: bool,
    /// Date prefix for disable_move (`YYYYMMDD`).
    pub today_ms: i64,
    /// Set to the number of source objects in scope once the source is
    /// read (a streaming run's progress total, [`super::total`]).
    pub source_total: Option<super::total::SourceTotal>,
}

/// Above this many changed objects (and above a tenth of the step's links,
/// see [`bulk_limit`]) the target is read once in bulk instead of one
/// lookup per object.
const BULK_READ_ABOVE: usize = 200;

/// How many changed objects a run looks up one by one before it reads the
/// whole target instead: [`BULK_READ_ABOVE`], or a tenth of the links when
/// that is more. A delta of 1 % of a large directory costs its lookups, not
/// a read of every target object (measured at 100k: 1.7 s of idsync CPU and
/// 115 MB against 4.1 s and 265 MB with the bulk read; BENCHMARKS.md).
fn bulk_limit(links: usize) -> usize {
    BULK_READ_ABOVE.max(links / 10)
}

/// True when a run of `step` may write while the source is still being read
/// and planned ([`plan_into`] then reads and plans at the same time). Only a
/// step without links (a first run; `links` is its link count): it cannot
/// deprovision anything, so the deletion threshold has nothing to refuse,
/// and no object in scope can be linked to a target another one joins. Not
/// for memberships (they wait for other steps' links) nor sync-trees (their
/// containers come first).
pub fn streams(step: &StepDef, links: usize) -> bool {
    links == 0 && step.members.is_none() && step.tree.is_none()
}

/// Builds the whole plan for `step`: what preview shows, and what a run
/// applies after the deletion threshold has seen it.
pub async fn plan(
    step: &StepDef,
    store: &dyn StateStore,
    opts: PlanOptions,
) -> Result<Plan, SyncError> {
    // Collected whole: a queue that never waits.
    let (tx, mut rx) = super::queue::queue(usize::MAX);
    let mut plan = plan_into(step, store, opts, &tx).await?;
    drop(tx);
    while let Some(item) = rx.try_recv() {
        plan.items.push(item);
    }
    plan.containers = match &step.tree {
        Some(tree) => containers_for(step, tree, &plan.items).await?,
        None => Vec::new(),
    };
    Ok(plan)
}

/// Plans `step` against its links, sending each item to `out` once
/// nothing read later can change it; returns the rest of the plan (no items,
/// no containers; `planned` counts what was sent). When [`streams`] holds,
/// the source is read and planned at the same time, so that a run can write
/// the first objects while the rest are still read; otherwise the whole
/// source is read first (following links needs every object in scope).
/// A run of a step with links looks them up in the store as it needs them
/// instead of reading them all ([`Linked`]), with or without a change
/// cursor (a membership step, whose groups are few, reads them all). Stops early, without error, when `out` is
/// closed.
pub async fn plan_into(
    step: &StepDef,
    store: &dyn StateStore,
    opts: PlanOptions,
    out: &ItemSender,
) -> Result<Plan, SyncError> {
    // Deprovisioned objects whose source may come back (a rehire).
    let kept: HashMap<String, Link> = store
        .deprovisioned_links(&step.name)
        .map_err(SyncError::store(""))?
        .into_iter()
        .map(|l| (l.source_anchor.clone(), l))
        .collect();

    // Membership through other steps' links: their signature joins the hash.
    let mut member_index = match &step.members {
        Some(rule) => Some(MemberIndex::load(rule, store)?),
        None => None,
    };
    let fingerprint = match &member_index {
        Some(ix) => format!("{}|members:{}", step.fingerprint, ix.signature),
        None => step.fingerprint.clone(),
    };
    // Incremental where the source can tell what changed (LDAP, Graph
    // delta), except for membership steps, whose groups are re-planned when
    // other steps' links change. A cursor read under other rules (or none)
    // means a full round.
    let cursor = if opts.full || step.members.is_some() {
        None
    } else {
        store
            .get_setting(&cursor_key(&step.name))
            .map_err(SyncError::store(""))?
            .and_then(|v| {
                let (rules, c) = v.split_once('|')?;
                (rules == rules_tag(&fingerprint)).then(|| c.to_string())
            })
            .filter(|c| !c.is_empty())
    };
    let count = store.link_count(&step.name).map_err(SyncError::store(""))?;
    // Not only incremental runs: a full run (`full: true`, new rules, a
    // source without change tracking) of a million linked objects would
    // otherwise hold every link, three copies of each anchor.
    let linked = if count > 0 && step.members.is_none() {
        Linked::in_store(store, &step.name, count)
    } else {
        Linked::all(store.links(&step.name).map_err(SyncError::store(""))?)
    };
    let stream = streams(step, linked.count());
    let links_before = linked.count();
    let reader = Reader {
        step,
        fingerprint: &fingerprint,
        linked: &linked,
        full: opts.full,
    };

    // 1. and 2.: read the source, plan what changed against the target.
    // Streaming, the reader waits while the planner has enough queued (and
    // the planner while the writer has, see `Phase2::run`); otherwise the
    // whole source is read before the planner starts: nothing to wait for.
    let (changed_tx, changed_rx) = super::queue::queue(if stream {
        super::queue::ROOM
    } else {
        usize::MAX
    });
    let source_total = opts.source_total.clone();
    let read = async move {
        let r = reader.read(cursor.as_deref(), changed_tx, out).await;
        if let (Ok(r), Some(t)) = (&r, &source_total) {
            let _ = t.set(r.source_count);
        }
        r
    };
    let mut target = TargetView::new(step);
    let mut claimed: HashSet<String> = HashSet::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut planner = Phase2 {
        step,
        target: &mut target,
        claimed: &mut claimed,
        taken: &mut taken,
        member_index: member_index.as_mut(),
        out,
        planned: 0,
    };
    let mut read = if stream {
        // No links: no object's plan depends on which others are in scope.
        let scope = Default::default();
        let known = Known {
            kept: &kept,
            linked: &linked,
            scope: &scope,
        };
        let (read, ()) = tokio::join!(read, planner.run(&known, changed_rx));
        read?
    } else {
        let read = read.await?;
        let known = Known {
            kept: &kept,
            linked: &linked,
            scope: &read.scope,
        };
        planner.run(&known, changed_rx).await;
        read
    };
    let mut planned = planner.planned + read.sent;

    // 3. Leavers: linked sources not seen in scope.
    let today = super::clock::yyyymmdd(opts.today_ms);
    let mut leavers = leavers(store, &step.name, &linked, &mut read)?;
    leavers.retain(|l| !taken.contains(&l.source_anchor));
    leavers.sort_by(|a, b| a.target_dn.cmp(&b.target_dn));
    for l in &leavers {
        if out
            .send(deprovision_item(step, &mut target, l, &today).await)
            .is_err()
        {
            break;
        }
        planned += 1;
    }
    Ok(Plan {
        step: step.name.clone(),
        cursor: read
            .round
            .map(|r| format!("{}|{}", rules_tag(&fingerprint), r.cursor)),
        incremental: read.incremental,
        containers: Vec::new(),
        items: Vec::new(),
        planned,
        unchanged: read.unchanged,
        links_before,
        source_count: read.source_count,
        warnings: read.warnings,
    })
}

/// The linked source objects not in scope this run (before those whose
/// target a join took over are left out). With the links in the store, the
/// store does the difference against the listing of anchors in scope, and
/// the linked objects still there and not read are counted unchanged.
fn leavers(
    store: &dyn StateStore,
    step: &str,
    linked: &Linked<'_>,
    read: &mut ReadOutcome,
) -> Result<Vec<Link>, SyncError> {
    let scope = &read.scope;
    if let Some(by_source) = linked.memory() {
        return Ok(by_source
            .values()
            .filter(|l| !scope.seen.contains(&l.source_anchor))
            .cloned()
            .collect());
    }
    let err = SyncError::store("finding the linked objects that left the scope");
    let Some(rest) = &scope.rest else {
        // Everything in scope was read.
        return store.links_not_in(step, scope.seen.anchors()).map_err(err);
    };
    let mut out: HashMap<String, Link> = match &rest.present {
        Some(p) => store.links_not_in(step, p).map_err(err)?,
        None => Vec::new(),
    }
    .into_iter()
    .map(|l| (l.source_anchor.clone(), l))
    .collect();
    let gone: Vec<String> = rest.gone.iter().cloned().collect();
    let gone = linked.of(&gone)?;
    out.extend(gone);
    // Linked objects neither read nor leaving are there, unchanged (the
    // objects read are few after an incremental read: looked up again).
    let missing_or_read = out.len()
        + linked
            .of(scope.seen.anchors())?
            .keys()
            .filter(|a| !out.contains_key(*a))
            .count();
    read.unchanged += linked.count().saturating_sub(missing_or_read);
    Ok(out
        .into_values()
        .filter(|l| !scope.seen.contains(&l.source_anchor))
        .collect())
}

/// Phase 2 of planning: each changed object against the target.
struct Phase2<'p, 'a> {
    step: &'a StepDef,
    target: &'p mut TargetView<'a>,
    claimed: &'p mut HashSet<String>,
    taken: &'p mut HashSet<String>,
    member_index: Option<&'p mut MemberIndex>,
    out: &'p ItemSender,
    /// Items sent.
    planned: usize,
}

impl Phase2<'_, '_> {
    /// Plans the objects queued on `changed` as they come. Above
    /// [`bulk_limit`] of them the target is read once (before any item
    /// is sent, so before a run writes) and each item is sent as soon as it
    /// is planned; below, each object is looked up, and the items are sent
    /// when all are planned (a lookup must not see this run's own writes).
    async fn run(&mut self, known: &Known<'_>, mut changed: super::queue::Receiver<Changed>) {
        let limit = bulk_limit(known.linked.count());
        let mut first = Vec::new();
        while first.len() <= limit {
            match changed.recv().await {
                Some(c) => first.push(c),
                None => break,
            }
        }
        let bulk = first.len() > limit;
        self.target.bulk = bulk;
        let mut held = Vec::new();
        let mut first = first.into_iter();
        loop {
            let next = match first.next() {
                Some(c) => Some(c),
                None => changed.recv().await,
            };
            let Some((compact, h, link)) = next else {
                break;
            };
            let Some(e) = Entry::from_compact(&compact) else {
                continue;
            };
            drop(compact);
            let anchor = anchor_of(&e);
            let item = plan_one(
                self.step,
                self.target,
                known,
                self.claimed,
                self.taken,
                self.member_index.as_deref_mut(),
                &e,
                &anchor,
                h,
                link.as_ref(),
            )
            .await;
            if !bulk {
                held.push(item);
                continue;
            }
            // Waits while the writer has enough queued (a bounded `out`).
            if self.out.send_when_room(item).await.is_err() {
                return;
            }
            self.planned += 1;
            // Let a run's writes in between (planning rarely waits).
            if self.planned.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
        for item in held {
            if self.out.send_when_room(item).await.is_err() {
                return;
            }
            self.planned += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::connector::{Error as CError, SearchQuery, Sink};
    use crate::store::SqliteStore;
    use crate::sync::rules::{Flow, FlowSource};

    /// A small delta of a large step is looked up object by object; only
    /// a change of more than a tenth of the links (and of more than 200
    /// objects) reads the whole target.
    #[test]
    fn a_small_delta_of_many_links_is_looked_up_not_read_in_bulk() {
        assert_eq!(bulk_limit(0), BULK_READ_ABOVE);
        assert_eq!(bulk_limit(1_000), BULK_READ_ABOVE);
        assert_eq!(bulk_limit(100_000), 10_000);
        assert!(
            1_000 <= bulk_limit(100_000),
            "1 % of 100k must not read in bulk"
        );
    }

    /// A source that cannot be reached, or (`reachable`) one holding a
    /// single entry.
    struct Source {
        reachable: bool,
    }

    #[async_trait::async_trait]
    impl crate::connector::Connector for Source {
        fn kind(&self) -> &'static str {
            "ldap"
        }
        fn describe(&self) -> String {
            "test source".into()
        }
        fn profile(&self) -> crate::connector::Result<serde_json::Value> {
            Ok(serde_json::Value::Null)
        }
        async fn test(&self) -> crate::connector::Result<crate::connector::TestReport> {
            Ok(Default::default())
        }
        async fn search(
            &self,
            _: &SearchQuery,
            sink: &mut Sink<'_>,
        ) -> crate::connector::Result<()> {
            if !self.reachable {
                return Err(CError::Connection("connection refused".into()));
            }
            let mut e = Entry::new("uid=ann,dc=t");
            e.anchor = Some("ann".into());
            sink(e)?;
            Ok(())
        }
        async fn get(&self, _: &str) -> crate::connector::Result<Option<Entry>> {
            Ok(None)
        }
    }

    fn step(reachable: bool) -> StepDef {
        let c = Arc::new(Source { reachable });
        StepDef {
            name: "t".into(),
            source: c.clone(),
            target: c,
            scope: Default::default(),
            join: Vec::new(),
            create: None,
            flows: vec![Flow {
                target: "cn".into(),
                source: FlowSource::Compute(Arc::new(|_| Err("boom".into()))),
                once: false,
                rule: "cn <- |e| ...".into(),
            }],
            deprovision: Default::default(),
            target_base: None,
            members: None,
            tree: None,
            fingerprint: String::new(),
        }
    }

    /// A source that reads incrementally: no object changed, `present`
    /// listed as still in scope, `removed` gone.
    struct Listing {
        present: Vec<String>,
        removed: Vec<String>,
    }

    #[async_trait::async_trait]
    impl crate::connector::Connector for Listing {
        fn kind(&self) -> &'static str {
            "ldap"
        }
        fn describe(&self) -> String {
            "listing source".into()
        }
        fn profile(&self) -> crate::connector::Result<serde_json::Value> {
            Ok(serde_json::Value::Null)
        }
        async fn test(&self) -> crate::connector::Result<crate::connector::TestReport> {
            Ok(Default::default())
        }
        async fn changes(
            &self,
            _: &SearchQuery,
            cursor: Option<&str>,
            _: &mut Sink<'_>,
        ) -> crate::connector::Result<Option<crate::connector::ChangeRound>> {
            assert_eq!(cursor, Some("c-1"), "the stored cursor is used");
            Ok(Some(crate::connector::ChangeRound {
                full: false,
                removed: self.removed.clone(),
                present: Some(self.present.clone()),
                cursor: "c-2".into(),
                note: None,
            }))
        }
        async fn search(&self, _: &SearchQuery, _: &mut Sink<'_>) -> crate::connector::Result<()> {
            panic!("an incremental round reads no full listing");
        }
        async fn get(&self, _: &str) -> crate::connector::Result<Option<Entry>> {
            Ok(None)
        }
    }

    /// An incremental run with links looks them up in the store: the
    /// leavers are the links missing from the listing (source anchors
    /// compared exactly: "C" is not "c") and the removed ones; the others
    /// count unchanged; the threshold sees every link.
    #[tokio::test]
    async fn an_incremental_run_finds_leavers_and_unchanged_objects_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let link = |a: &str| Link {
            source_anchor: a.into(),
            target_anchor: format!("t-{a}"),
            target_dn: format!("uid={a},dc=t"),
            source_hash: Some("h".into()),
            desired_dn: None,
            updated_ms: 1,
        };
        store
            .put_links("t", &[link("a"), link("b"), link("c"), link("d")])
            .unwrap();
        store
            .put_setting(&cursor_key("t"), &format!("{}|c-1", rules_tag("")))
            .unwrap();
        let mut step = step(true);
        let c = Arc::new(Listing {
            present: vec!["a".into(), "b".into(), "C".into()],
            removed: vec!["b".into()],
        });
        step.source = c.clone();
        step.target = c;
        step.deprovision.action = crate::sync::rules::DeprovisionAction::None;
        let p = plan(&step, &store, PlanOptions::default()).await.unwrap();
        let mut gone: Vec<&str> = p
            .items
            .iter()
            .map(|i| match &i.action {
                Action::Deprovision { .. } => i.source_anchor.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        gone.sort();
        assert_eq!(gone, ["b", "c", "d"]);
        assert_eq!((p.unchanged, p.links_before), (1, 4));
        assert!(p.incremental);
        assert_eq!(p.cursor, Some(format!("{}|c-2", rules_tag(""))));
    }

    #[tokio::test]
    async fn an_unreachable_source_and_a_failing_rule_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let err = plan(&step(false), &store, PlanOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SyncError::Source { .. }) && err.is_connection_lost(),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "reading the source: connection refused");
        // A failing flow fails its object, named by its rule; the plan goes on.
        let p = plan(&step(true), &store, PlanOptions::default())
            .await
            .unwrap();
        let messages: Vec<String> = p
            .items
            .iter()
            .map(|i| match &i.action {
                Action::Error { message } => message.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(messages, ["flow cn <- |e| ...: boom"]);
    }
}
