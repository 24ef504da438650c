//! Phase 1 of planning: streams the source objects in scope (only those
//! changed since the last run where the source can tell), hashes each one
//! against its link, and queues what changed for the planner; objects that
//! cannot be planned (a failing `where`, a repeated anchor) become error
//! items at once.

use std::collections::HashSet;

use crate::connector::{Error as CError, SearchQuery};
use crate::model::Entry;
use crate::store::Link;

use super::error::SyncError;
use super::hash::entry_hash;
use super::item::{Action, Item, ItemSender, anchor_of};
use super::linked::{Linked, Rest, Scope, Seen};
use super::rules::StepDef;

/// A changed object queued for the planner: compact, its hash, its link.
pub(super) type Changed = (Vec<u8>, String, Option<Link>);

/// How many objects the reader holds before it looks up their links in the
/// store at once (links in memory are looked up one by one).
const LOOKUP_BATCH: usize = 256;

/// Phase 1 of planning: streams the source.
pub(super) struct Reader<'a> {
    /// The step whose scope is read.
    pub step: &'a StepDef,
    /// The step's rules (and memberships), part of every object's hash.
    pub fingerprint: &'a str,
    /// The step's links.
    pub linked: &'a Linked<'a>,
    /// Ignore stored hashes.
    pub full: bool,
}

/// What the source read found, besides the objects it queued.
pub(super) struct ReadOutcome {
    /// Source anchors in scope this run.
    pub scope: Scope,
    /// Objects whose hash matches their link's (nothing to write). After an
    /// incremental read with links in the store, the linked objects not
    /// read are not counted yet (the planner counts them with the leavers).
    pub unchanged: usize,
    /// Objects read in scope.
    pub source_count: usize,
    /// Items sent (objects that could not be planned).
    pub sent: usize,
    /// The change round, when the source could tell what changed.
    pub round: Option<crate::connector::ChangeRound>,
    /// True when only the changes were read.
    pub incremental: bool,
    /// Named source attributes no object read has.
    pub warnings: Vec<String>,
}

/// The search that reads `step`'s scope in its source (its `where` is
/// tested on each entry read). Also what `map(step)` reads.
pub(super) fn scope_query(step: &StepDef) -> SearchQuery {
    SearchQuery {
        base: step.scope.base.clone(),
        scope: step.scope.scope,
        filter: step.scope.filter.clone(),
        attrs: step.scope.attrs.clone(),
        limit: None,
    }
}

impl Reader<'_> {
    /// Reads the source (its changes since `cursor` where it can tell);
    /// queues each object that changed since it was last applied, compact
    /// with its hash and link, on `changed`; sends an error item for each
    /// object that cannot be planned. Stops when nobody takes what it queues;
    /// asks the source for more only while `changed` has room.
    pub async fn read(
        &self,
        cursor: Option<&str>,
        changed: super::queue::Sender<Changed>,
        out: &ItemSender,
    ) -> Result<ReadOutcome, SyncError> {
        let step = self.step;
        let q = scope_query(step);
        let in_memory = self.linked.in_memory();
        // The anchors are kept only for the store's leaver query.
        let mut seen = Seen::new(!in_memory);
        // Objects a `where` closure turned away (leavers when read incrementally).
        let mut excluded: Vec<String> = Vec::new();
        let mut unchanged = 0usize;
        let mut source_count = 0usize;
        let mut sent = 0usize;
        let batch = if in_memory { 1 } else { LOOKUP_BATCH };
        let lookup_failed: std::sync::Mutex<Option<SyncError>> = Default::default();
        let mut unseen = super::unused_attrs::Unseen::new(step);
        let room = changed.room().clone();
        let round = {
            // Objects waiting for their links: (entry, anchor, hash).
            let mut pending: Vec<(Entry, String, String)> = Vec::with_capacity(batch);
            // Compares the pending objects' hashes with their links' and
            // queues what changed; false when nobody takes it any more.
            let flush = |pending: &mut Vec<(Entry, String, String)>,
                         unchanged: &mut usize,
                         failed: &std::sync::Mutex<Option<SyncError>>|
             -> bool {
                if pending.is_empty() {
                    return true;
                }
                let anchors: Vec<String> = pending.iter().map(|(_, a, _)| a.clone()).collect();
                let mut links = match self.linked.of(&anchors) {
                    Ok(l) => l,
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return false;
                    }
                };
                for (e, anchor, h) in pending.drain(..) {
                    let link = links.remove(&anchor);
                    if !self.full
                        && link.as_ref().and_then(|l| l.source_hash.as_deref()) == Some(h.as_str())
                    {
                        *unchanged += 1;
                    } else if changed.send((e.to_compact(), h, link)).is_err() {
                        return false;
                    }
                }
                true
            };
            let mut error = |e: &Entry, error: SyncError| {
                sent += 1;
                out.send(Item {
                    source_anchor: anchor_of(e),
                    source_dn: e.dn.clone(),
                    source_hash: String::new(),
                    desired_dn: None,
                    action: Action::Error {
                        message: error.to_string(),
                    },
                })
                .is_ok()
            };
            let mut sink = |e: Entry| -> Result<bool, CError> {
                if let Some(pred) = &step.scope.filter_where {
                    match pred(&e) {
                        Ok(true) => {}
                        Ok(false) => {
                            excluded.push(anchor_of(&e));
                            return Ok(true);
                        }
                        Err(m) => {
                            seen.insert(&anchor_of(&e));
                            return Ok(error(&e, SyncError::rule("scope 'where'", m)));
                        }
                    }
                }
                source_count += 1;
                unseen.note(&e);
                let anchor = anchor_of(&e);
                if !seen.insert(&anchor) {
                    let m = format!("two source objects have the anchor '{anchor}'");
                    return Ok(error(&e, SyncError::Object(m)));
                }
                let h = entry_hash(&e, self.fingerprint);
                pending.push((e, anchor, h));
                if pending.len() < batch {
                    return Ok(true);
                }
                Ok(flush(&mut pending, &mut unchanged, &lookup_failed))
            };
            let round = if step.members.is_none() {
                step.source
                    .changes_paced(&q, cursor, &mut sink, &room)
                    .await
                    .map_err(SyncError::source("reading the source's changes"))?
            } else {
                None
            };
            if round.is_none() && lookup_failed.lock().is_ok_and(|f| f.is_none()) {
                step.source
                    .search_paced(&q, &mut sink, &room)
                    .await
                    .map_err(SyncError::source("reading the source"))?;
            }
            if lookup_failed.lock().is_ok_and(|f| f.is_none()) {
                flush(&mut pending, &mut unchanged, &lookup_failed);
            }
            round
        };
        if let Some(e) = lookup_failed
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
        {
            return Err(e);
        }
        drop(changed);
        // After an incremental read, every linked object that was not
        // removed, turned away or changed is still there (unchanged).
        let incremental = round.as_ref().is_some_and(|r| !r.full);
        let mut scope = Scope::default();
        let mut round = round;
        if let Some(r) = round.as_mut().filter(|r| !r.full) {
            let gone: HashSet<String> = r.removed.iter().chain(excluded.iter()).cloned().collect();
            match self.linked.memory() {
                Some(by_source) => {
                    let present: Option<HashSet<&str>> = r
                        .present
                        .as_ref()
                        .map(|p| p.iter().map(String::as_str).collect());
                    for a in by_source.keys() {
                        let here = present.as_ref().is_none_or(|p| p.contains(a.as_str()));
                        if here && !gone.contains(a) && seen.insert(a) {
                            unchanged += 1;
                        }
                    }
                }
                None => {
                    // Taken out of the round (only its cursor is kept).
                    let present = r.present.take().map(|mut p| {
                        p.sort_unstable();
                        p
                    });
                    scope.rest = Some(Rest { present, gone });
                }
            }
        }
        scope.seen = seen;
        Ok(ReadOutcome {
            scope,
            unchanged,
            source_count,
            sent,
            round,
            incremental,
            warnings: unseen.warnings(incremental),
        })
    }
}
