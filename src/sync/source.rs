//! Phase 1 of planning: streams the source objects in scope (only those
//! changed since the last run where the source can tell), hashes each one
//! against its link, and queues what changed for the planner; objects that
//! cannot be planned (a failing `where`, a repeated anchor) become error
//! items at once.

use std::collections::{HashMap, HashSet};

use crate::connector::{Error as CError, SearchQuery};
use crate::model::Entry;
use crate::store::Link;

use super::error::SyncError;
use super::hash::entry_hash;
use super::item::{Action, Item, ItemSender, anchor_of};
use super::rules::StepDef;

/// Phase 1 of planning: streams the source.
pub(super) struct Reader<'a> {
    /// The step whose scope is read.
    pub step: &'a StepDef,
    /// The step's rules (and memberships), part of every object's hash.
    pub fingerprint: &'a str,
    /// Links by source anchor.
    pub by_source: &'a HashMap<String, Link>,
    /// Ignore stored hashes.
    pub full: bool,
}

/// What the source read found, besides the objects it queued.
pub(super) struct ReadOutcome {
    /// Source anchors in scope this run (after an incremental read: every
    /// linked object still there, too).
    pub seen: HashSet<String>,
    /// Objects whose hash matches their link's (nothing to write).
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

impl Reader<'_> {
    /// Reads the source (its changes since `cursor` where it can tell);
    /// queues each object that changed since it was last applied, compact
    /// with its hash, on `changed`; sends an error item for each object that
    /// cannot be planned. Stops when nobody takes what it queues.
    pub async fn read(
        &self,
        cursor: Option<&str>,
        changed: tokio::sync::mpsc::UnboundedSender<(Vec<u8>, String)>,
        out: &ItemSender,
    ) -> Result<ReadOutcome, SyncError> {
        let step = self.step;
        let q = SearchQuery {
            base: step.scope.base.clone(),
            scope: step.scope.scope,
            filter: step.scope.filter.clone(),
            attrs: step.scope.attrs.clone(),
            limit: None,
        };
        let mut seen: HashSet<String> = HashSet::new();
        // Objects a `where` closure turned away (leavers when read incrementally).
        let mut excluded: Vec<String> = Vec::new();
        let mut unchanged = 0usize;
        let mut source_count = 0usize;
        let mut sent = 0usize;
        let mut unseen = super::unused_attrs::Unseen::new(step);
        let round = {
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
                            seen.insert(anchor_of(&e));
                            return Ok(error(&e, SyncError::rule("scope 'where'", m)));
                        }
                    }
                }
                source_count += 1;
                unseen.note(&e);
                let anchor = anchor_of(&e);
                if !seen.insert(anchor.clone()) {
                    let m = format!("two source objects have the anchor '{anchor}'");
                    return Ok(error(&e, SyncError::Object(m)));
                }
                let h = entry_hash(&e, self.fingerprint);
                if !self.full
                    && self
                        .by_source
                        .get(&anchor)
                        .and_then(|l| l.source_hash.as_deref())
                        == Some(h.as_str())
                {
                    unchanged += 1;
                    Ok(true)
                } else {
                    Ok(changed.send((e.to_compact(), h)).is_ok())
                }
            };
            let round = if step.members.is_none() {
                step.source
                    .changes(&q, cursor, &mut sink)
                    .await
                    .map_err(SyncError::source("reading the source's changes"))?
            } else {
                None
            };
            if round.is_none() {
                step.source
                    .search(&q, &mut sink)
                    .await
                    .map_err(SyncError::source("reading the source"))?;
            }
            round
        };
        drop(changed);
        // After an incremental read, every linked object that was not
        // removed, turned away or changed is still there (unchanged).
        let incremental = round.as_ref().is_some_and(|r| !r.full);
        if let Some(r) = round.as_ref().filter(|r| !r.full) {
            let gone: HashSet<&String> = r.removed.iter().chain(excluded.iter()).collect();
            let present: Option<HashSet<String>> = r
                .present
                .as_ref()
                .map(|p| p.iter().map(|a| a.to_ascii_lowercase()).collect());
            for a in self.by_source.keys() {
                let here = present
                    .as_ref()
                    .is_none_or(|p| p.contains(&a.to_ascii_lowercase()));
                if here && !gone.contains(a) && seen.insert(a.clone()) {
                    unchanged += 1;
                }
            }
        }
        Ok(ReadOutcome {
            seen,
            unchanged,
            source_count,
            sent,
            round,
            incremental,
            warnings: unseen.warnings(incremental),
        })
    }
}
