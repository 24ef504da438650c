//! The step's links as the planner sees them: every link read into memory
//! (a membership step), or looked up in the state store as the objects
//! come (any other run of a step with links, which then never holds all
//! of them). Source anchors
//! compare exactly (they key the links); target anchors without regard to
//! ASCII case, as the target view and the joins compare them.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use crate::store::{Link, StateStore};

use super::error::SyncError;

/// The links of one step during one planning pass.
pub(super) enum Linked<'a> {
    /// Every live link, by source anchor, and the source anchor of each
    /// lower-cased target anchor.
    Memory {
        /// Links by source anchor.
        by_source: HashMap<String, Link>,
        /// Source anchor by lower-cased target anchor.
        by_target: HashMap<String, String>,
    },
    /// Looked up in the store (nothing writes the step's links while it
    /// plans: a run with links plans in full before it writes).
    Store {
        /// The store.
        store: &'a dyn StateStore,
        /// The step.
        step: &'a str,
        /// How many live links the step had when planning began.
        count: usize,
    },
}

impl<'a> Linked<'a> {
    /// Every link, in memory.
    pub fn all(links: Vec<Link>) -> Self {
        let by_target = links
            .iter()
            .map(|l| {
                (
                    l.target_anchor.to_ascii_lowercase(),
                    l.source_anchor.clone(),
                )
            })
            .collect();
        let by_source = links
            .into_iter()
            .map(|l| (l.source_anchor.clone(), l))
            .collect();
        Linked::Memory {
            by_source,
            by_target,
        }
    }

    /// Links looked up in `store` as needed; `count` of them live.
    pub fn in_store(store: &'a dyn StateStore, step: &'a str, count: usize) -> Self {
        Linked::Store { store, step, count }
    }

    /// True for links held in memory.
    pub fn in_memory(&self) -> bool {
        matches!(self, Linked::Memory { .. })
    }

    /// How many live links the step has.
    pub fn count(&self) -> usize {
        match self {
            Linked::Memory { by_source, .. } => by_source.len(),
            Linked::Store { count, .. } => *count,
        }
    }

    /// The links of these source anchors, by source anchor.
    pub fn of(&self, anchors: &[String]) -> Result<HashMap<String, Link>, SyncError> {
        match self {
            Linked::Memory { by_source, .. } => Ok(anchors
                .iter()
                .filter_map(|a| by_source.get(a).map(|l| (a.clone(), l.clone())))
                .collect()),
            Linked::Store { count: 0, .. } => Ok(HashMap::new()),
            Linked::Store { store, step, .. } => Ok(store
                .links_of(step, anchors)
                .map_err(SyncError::store("reading the links of changed objects"))?
                .into_iter()
                .map(|l| (l.source_anchor.clone(), l))
                .collect()),
        }
    }

    /// The source anchor linked to the target object `target_anchor`.
    pub fn source_of_target(&self, target_anchor: &str) -> Result<Option<String>, SyncError> {
        match self {
            Linked::Memory { by_target, .. } => {
                Ok(by_target.get(&target_anchor.to_ascii_lowercase()).cloned())
            }
            Linked::Store { count: 0, .. } => Ok(None),
            Linked::Store { store, step, .. } => Ok(store
                .link_to_target(step, target_anchor)
                .map_err(SyncError::store(format!(
                    "looking up the link to target {target_anchor}"
                )))?
                .map(|l| l.source_anchor)),
        }
    }

    /// Every link held in memory (none when they stay in the store).
    pub fn memory(&self) -> Option<&HashMap<String, Link>> {
        match self {
            Linked::Memory { by_source, .. } => Some(by_source),
            Linked::Store { .. } => None,
        }
    }
}

/// The source anchors read this run, as 128-bit keys (16 bytes each
/// instead of a copy of every anchor: a first run of a million objects
/// holds 16 MB here, not a hundred), hashed with two keys random per run
/// (so no source can choose anchors that collide); the anchors themselves
/// are kept only when the links stay in the store, which needs them.
#[derive(Default)]
pub(super) struct Seen {
    keys: HashSet<u128>,
    hashers: (RandomState, RandomState),
    /// The anchors, when kept.
    anchors: Option<Vec<String>>,
}

impl Seen {
    /// An empty set; `keep_anchors` keeps each new anchor too.
    pub fn new(keep_anchors: bool) -> Seen {
        Seen {
            anchors: keep_anchors.then(Vec::new),
            ..Seen::default()
        }
    }

    fn key(&self, anchor: &str) -> u128 {
        let (a, b) = &self.hashers;
        (u128::from(a.hash_one(anchor)) << 64) | u128::from(b.hash_one(anchor))
    }

    /// Adds `anchor`; false when it was there already.
    pub fn insert(&mut self, anchor: &str) -> bool {
        let new = self.keys.insert(self.key(anchor));
        if new && let Some(kept) = &mut self.anchors {
            kept.push(anchor.to_string());
        }
        new
    }

    /// True when `anchor` was added.
    pub fn contains(&self, anchor: &str) -> bool {
        self.keys.contains(&self.key(anchor))
    }

    /// The anchors added (empty when they were not kept).
    pub fn anchors(&self) -> &[String] {
        self.anchors.as_deref().unwrap_or_default()
    }
}

/// Which source anchors are in scope this run.
#[derive(Default)]
pub(super) struct Scope {
    /// Anchors read this run (after an incremental read with links in
    /// memory: every linked object still there, too).
    pub seen: Seen,
    /// After an incremental read with links in the store: what else is
    /// known to be in scope.
    pub rest: Option<Rest>,
}

/// What an incremental read tells about objects it did not read.
#[derive(Default)]
pub(super) struct Rest {
    /// The anchors still in scope, sorted (`None`: the source cannot list
    /// them, so every object not removed is still there).
    pub present: Option<Vec<String>>,
    /// Removed or turned away by a `where`.
    pub gone: HashSet<String>,
}

impl Scope {
    /// True when the linked source object `anchor` is in scope this run.
    pub fn contains(&self, anchor: &str) -> bool {
        if self.seen.contains(anchor) {
            return true;
        }
        match &self.rest {
            None => false,
            Some(r) => {
                !r.gone.contains(anchor)
                    && r.present
                        .as_ref()
                        .is_none_or(|p| p.binary_search_by(|x| x.as_str().cmp(anchor)).is_ok())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_anchors_compare_exactly_and_are_kept_only_when_asked() {
        let mut s = Seen::new(false);
        assert!(s.insert("a") && !s.insert("a"));
        assert!(s.contains("a") && !s.contains("A") && !s.contains("b"));
        assert!(s.insert("A") && s.contains("A"));
        assert!(s.anchors().is_empty());
        let mut s = Seen::new(true);
        assert!(s.insert("x") && !s.insert("x") && s.insert("y"));
        assert_eq!(s.anchors(), ["x", "y"]);
    }

    #[test]
    fn scope_after_an_incremental_read_counts_the_listing_minus_what_is_gone() {
        let mut s = Scope::default();
        s.seen.insert("read");
        assert!(s.contains("read") && !s.contains("listed"));
        s.rest = Some(Rest {
            present: Some(vec!["gone".into(), "listed".into()]),
            gone: ["gone".to_string()].into(),
        });
        assert!(s.contains("read") && s.contains("listed"));
        assert!(!s.contains("gone") && !s.contains("LISTED") && !s.contains("other"));
        s.rest = Some(Rest {
            present: None,
            gone: ["gone".to_string()].into(),
        });
        assert!(s.contains("other") && !s.contains("gone"));
    }
}
