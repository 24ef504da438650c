//! Where each source object of a step would join, without planning any
//! write: the step's scope read over the whole source and each unlinked
//! object joined in the target (the planner's own scope search and join,
//! [`super::source::scope_query`] and [`super::object::join_pairs`] with the
//! target view's join), each classified as matched, already linked,
//! ambiguous (with its candidates) or unmatched. `map(step)` links the
//! matched ones ([`super::mapping::map`]); `conflicts(step)` lists the
//! ambiguous ones ([`conflicts`]).

use std::collections::{HashMap, HashSet};

use crate::connector::Error as CError;
use crate::model::Entry;
use crate::store::StateStore;

use super::error::SyncError;
use super::item::anchor_of;
use super::object::join_pairs;
use super::rules::StepDef;
use super::source::scope_query;
use super::target::TargetView;

/// Above this many unlinked source objects the target is read once in bulk
/// instead of one join search per object (the planner's rule of thumb).
const BULK_ABOVE: usize = 200;

/// How one source object joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exactly one target object matches, linked to no other source.
    Matched,
    /// The source object is linked already (its join is not looked at).
    Linked,
    /// Several target objects match, or the one match is linked to another
    /// source or matched by another source object too.
    Ambiguous,
    /// No target object matches (or the object has no join value).
    Unmatched,
    /// The object cannot be joined (its scope `where` failed, a repeated
    /// anchor, a failed join search).
    Error,
}

impl Outcome {
    /// The word rows and counts use.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::Linked => "linked",
            Outcome::Ambiguous => "ambiguous",
            Outcome::Unmatched => "unmatched",
            Outcome::Error => "error",
        }
    }
}

/// One source object and where it joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The source object's anchor.
    pub source_anchor: String,
    /// The source object's DN (or name).
    pub source_dn: String,
    /// How it joins.
    pub outcome: Outcome,
    /// The target object: the match, or the linked object's stored DN.
    pub target_dn: Option<String>,
    /// The target object's anchor (matched or linked).
    pub target_anchor: Option<String>,
    /// The target objects the join found (DNs), for ambiguous rows.
    pub candidates: Vec<String>,
    /// Why the row is ambiguous, unmatched or an error.
    pub reason: Option<String>,
}

/// Every source object in scope and where it joins.
#[derive(Clone, Debug, Default)]
pub struct Survey {
    /// The step.
    pub step: String,
    /// One row per source object in scope, in the order read.
    pub rows: Vec<Row>,
}

impl Survey {
    /// How many rows have `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.rows.iter().filter(|r| r.outcome == outcome).count()
    }

    /// One line: the count of each outcome.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} matched, {} already linked, {} ambiguous, {} unmatched",
            self.step,
            self.count(Outcome::Matched),
            self.count(Outcome::Linked),
            self.count(Outcome::Ambiguous),
            self.count(Outcome::Unmatched)
        );
        let errors = self.count(Outcome::Error);
        if errors > 0 {
            s.push_str(&format!(", {errors} failed"));
        }
        s
    }
}

/// A source object read in scope: anchor, DN, join values (or why none).
struct Read {
    anchor: String,
    dn: String,
    pairs: Vec<(String, String)>,
    error: Option<String>,
}

/// Reads `step`'s scope in full and joins every source object not linked
/// yet against the target. Writes nothing anywhere.
pub async fn survey(store: &dyn StateStore, step: &StepDef) -> Result<Survey, SyncError> {
    let links = store.links(&step.name).map_err(SyncError::store(""))?;
    let by_source: HashMap<&str, &crate::store::Link> = links
        .iter()
        .map(|l| (l.source_anchor.as_str(), l))
        .collect();
    let by_target: HashMap<String, &str> = links
        .iter()
        .map(|l| {
            (
                l.target_anchor.to_ascii_lowercase(),
                l.source_anchor.as_str(),
            )
        })
        .collect();

    // The scope, read as a run reads it.
    let mut read: Vec<Read> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut sink = |e: Entry| -> Result<bool, CError> {
        let anchor = anchor_of(&e);
        let mut error = None;
        if let Some(pred) = &step.scope.filter_where {
            match pred(&e) {
                Ok(true) => {}
                Ok(false) => return Ok(true),
                Err(m) => error = Some(SyncError::rule("scope 'where'", m).to_string()),
            }
        }
        if error.is_none() && !seen.insert(anchor.clone()) {
            error = Some(format!("two source objects have the anchor '{anchor}'"));
        }
        read.push(Read {
            pairs: join_pairs(step, &e),
            anchor,
            dn: e.dn,
            error,
        });
        Ok(true)
    };
    step.source
        .search(&scope_query(step), &mut sink)
        .await
        .map_err(SyncError::source("reading the source"))?;

    let unlinked = read
        .iter()
        .filter(|r| !by_source.contains_key(r.anchor.as_str()))
        .count();
    let mut target = TargetView::new(step);
    target.bulk = unlinked > BULK_ABOVE;
    let mut rows = Vec::with_capacity(read.len());
    for r in read {
        let mut row = Row {
            source_anchor: r.anchor,
            source_dn: r.dn,
            outcome: Outcome::Unmatched,
            target_dn: None,
            target_anchor: None,
            candidates: Vec::new(),
            reason: None,
        };
        if let Some(m) = r.error {
            row.outcome = Outcome::Error;
            row.reason = Some(m);
        } else if let Some(l) = by_source.get(row.source_anchor.as_str()) {
            row.outcome = Outcome::Linked;
            row.target_dn = Some(l.target_dn.clone());
            row.target_anchor = Some(l.target_anchor.clone());
        } else if r.pairs.is_empty() {
            row.reason = Some(if step.join.is_empty() {
                "the step has no join rules".into()
            } else {
                let attrs: Vec<&str> = step.join.iter().map(|(_, s)| s.as_str()).collect();
                format!("no value to join by ({})", attrs.join(", "))
            });
        } else {
            match target.join(&r.pairs).await {
                Err(m) => {
                    row.outcome = Outcome::Error;
                    row.reason = Some(m.to_string());
                }
                Ok(hits) if hits.is_empty() => {
                    let said: Vec<String> =
                        r.pairs.iter().map(|(a, v)| format!("{a}={v}")).collect();
                    row.reason = Some(format!("no target object has {}", said.join(", ")));
                }
                Ok(hits) if hits.len() == 1 => {
                    let t = &hits[0];
                    row.outcome = Outcome::Matched;
                    row.target_dn = Some(t.dn.clone());
                    row.target_anchor = Some(anchor_of(t));
                    row.candidates = vec![t.dn.clone()];
                }
                Ok(hits) => {
                    row.outcome = Outcome::Ambiguous;
                    row.candidates = hits.iter().map(|h| h.dn.clone()).collect();
                    row.reason = Some(format!(
                        "{} target objects match; fix the data or link one by hand",
                        hits.len()
                    ));
                }
            }
        }
        rows.push(row);
    }

    // A match already linked to another source, or matched by several
    // source objects, is no match: nothing guesses which pair is right.
    let mut matched_by: HashMap<String, usize> = HashMap::new();
    for r in rows.iter().filter(|r| r.outcome == Outcome::Matched) {
        if let Some(t) = &r.target_anchor {
            *matched_by.entry(t.to_ascii_lowercase()).or_default() += 1;
        }
    }
    for r in rows.iter_mut().filter(|r| r.outcome == Outcome::Matched) {
        let key = r
            .target_anchor
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        let dn = r.target_dn.clone().unwrap_or_default();
        if let Some(other) = by_target.get(&key) {
            r.outcome = Outcome::Ambiguous;
            r.reason = Some(format!(
                "its match {dn} is linked to source '{other}'; link(step, source, target) with #{{ replace: true }} moves it"
            ));
        } else if let Some(&n) = matched_by.get(&key).filter(|&&n| n > 1) {
            r.outcome = Outcome::Ambiguous;
            r.reason = Some(format!(
                "{n} source objects match {dn}; link the right one by hand"
            ));
        }
        if r.outcome == Outcome::Ambiguous {
            r.target_dn = None;
            r.target_anchor = None;
        }
    }
    Ok(Survey {
        step: step.name.clone(),
        rows,
    })
}

/// The source objects of `step` whose join is ambiguous or whose match is
/// linked to another source (or matched by another source object), with
/// their candidates. `link(step, source, target)` resolves one.
pub async fn conflicts(store: &dyn StateStore, step: &StepDef) -> Result<Vec<Row>, SyncError> {
    let mut s = survey(store, step).await?;
    s.rows.retain(|r| r.outcome == Outcome::Ambiguous);
    Ok(s.rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::connector::Connector;
    use crate::connector::csv::{CsvConnector, CsvOptions};
    use crate::store::{Link, SqliteStore};

    fn csv(dir: &std::path::Path, name: &str, text: &str) -> Arc<dyn Connector> {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        Arc::new(CsvConnector::open(p, CsvOptions::new("id")).unwrap())
    }

    /// Two source objects matching one target are both ambiguous (neither is guessed); a
    /// source without a join value is unmatched; a linked source is not joined again.
    #[tokio::test]
    async fn two_sources_matching_one_target_are_both_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let step = StepDef {
            name: "c".into(),
            source: csv(
                dir.path(),
                "src.csv",
                "id,mail\nA1,ann@x\nA2,ann@x\nA3,\nA4,bob@x\nA5,cid@x\n",
            ),
            target: csv(
                dir.path(),
                "dst.csv",
                "id,mail\nT1,ann@x\nT2,bob@x\nT3,cid@x\n",
            ),
            scope: Default::default(),
            join: vec![("mail".into(), "mail".into())],
            create: None,
            flows: Vec::new(),
            deprovision: Default::default(),
            target_base: None,
            members: None,
            tree: None,
            fingerprint: String::new(),
        };
        store
            .put_links(
                "c",
                &[Link {
                    source_anchor: "A5".into(),
                    target_anchor: "T3".into(),
                    target_dn: "T3".into(),
                    source_hash: None,
                    desired_dn: None,
                    updated_ms: 1,
                }],
            )
            .unwrap();
        let s = survey(&store, &step).await.unwrap();
        let got: Vec<(&str, &str)> = s
            .rows
            .iter()
            .map(|r| (r.source_anchor.as_str(), r.outcome.name()))
            .collect();
        assert_eq!(
            got,
            [
                ("A1", "ambiguous"),
                ("A2", "ambiguous"),
                ("A3", "unmatched"),
                ("A4", "matched"),
                ("A5", "linked"),
            ]
        );
        assert!(
            s.rows[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("2 source objects match")),
            "{:?}",
            s.rows[0]
        );
        assert_eq!(s.rows[0].candidates, ["T1"]);
        assert_eq!(
            s.summary(),
            "c: 1 matched, 1 already linked, 2 ambiguous, 1 unmatched"
        );
        let c = conflicts(&store, &step).await.unwrap();
        assert_eq!(c.len(), 2);
    }
}
