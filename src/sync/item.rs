//! What a plan is made of: the items (one object's action and the
//! attribute changes behind it), the sync-tree containers and the plan of a
//! step as a whole. Shared by the planner, the writer ([`super::apply`]) and
//! the preview rows ([`super::preview`]).

use std::sync::Arc;

use crate::model::{Entry, Value};

use super::projected::Projected;
use super::rules::DeprovisionAction;
use super::schema_check::Problem;

/// One attribute change and the rule that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrChange {
    /// Target attribute.
    pub attr: Arc<str>,
    /// Values now in the target.
    pub old: Vec<Value>,
    /// Values the run writes (empty = clear).
    pub new: Vec<Value>,
    /// The flow, in words.
    pub rule: Arc<str>,
}

/// What a run does to one object.
#[derive(Clone, Debug)]
pub enum Action {
    /// Create a target object.
    Create {
        /// The new DN.
        dn: String,
        /// The flows' values (and resolved members), evaluated once when
        /// the object was planned and kept compact, so a plan of many
        /// creates stays small in memory; the attributes are built from
        /// them by [`super::project::create_attrs`] when the plan is shown
        /// or applied.
        values: Projected,
    },
    /// Update a linked (or newly joined) target object.
    Update {
        /// The target's anchor.
        target_anchor: String,
        /// The target's current DN.
        target_dn: String,
        /// Attribute changes (may be empty when only the link or hash is new).
        changes: Vec<AttrChange>,
        /// New DN when the create rule now gives another place or name.
        new_dn: Option<String>,
        /// True when this run makes the link (join).
        joined: bool,
        /// The departed source whose target this object takes over (a
        /// rehire, or a re-import under a new key): its link is dropped and
        /// it is not deprovisioned.
        takes_over: Option<String>,
        /// True when the object was deprovisioned and its source is back
        /// (a rehire): the run enables it again; `new_dn` moves it back to
        /// where the create rule puts it and `changes` drop the date prefix.
        restore: bool,
    },
    /// Deprovision a target object whose source left the scope.
    Deprovision {
        /// The target's anchor.
        target_anchor: String,
        /// The target's DN.
        target_dn: String,
        /// The policy applied.
        how: DeprovisionAction,
        /// Prefix changes (disable_move).
        changes: Vec<AttrChange>,
        /// Where it moves (disable_move).
        move_to: Option<String>,
    },
    /// The target would refuse the write (a missing parent, its schema):
    /// nothing is sent, and the object fails.
    Rejected {
        /// The target object (the DN it would have).
        object: String,
        /// Each reason, naming the attribute and the rule.
        problems: Vec<Problem>,
    },
    /// The object cannot be planned (ambiguous join, failing flow, ...).
    Error {
        /// Why, in words.
        message: String,
    },
}

/// One object's entry in the plan.
#[derive(Clone, Debug)]
pub struct Item {
    /// Source anchor (for deprovisions: of the departed source object).
    pub source_anchor: String,
    /// Source DN or key ("" for deprovisions).
    pub source_dn: String,
    /// Hash to store when applied.
    pub source_hash: String,
    /// The DN the create rule gives now (stored to notice later renames).
    pub desired_dn: Option<String>,
    /// What to do.
    pub action: Action,
}

/// A container a sync-tree needs in the target before its objects.
#[derive(Clone, Debug, Default)]
pub struct Container {
    /// Its DN in the target.
    pub dn: String,
    /// Its attributes (object classes, naming attribute).
    pub attrs: Vec<(String, Vec<Value>)>,
}

/// A whole plan for one step.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Step name.
    pub step: String,
    /// The source's change cursor after this read (saved by a successful run).
    pub cursor: Option<String>,
    /// True when only the source's changes were read.
    pub incremental: bool,
    /// Containers to create first, parents before children (sync-trees).
    pub containers: Vec<Container>,
    /// Objects that need a write (or failed to plan).
    pub items: Vec<Item>,
    /// How many items were planned (`items.len()` once they are collected).
    pub planned: usize,
    /// Objects skipped because nothing changed.
    pub unchanged: usize,
    /// Links the step had before this run.
    pub links_before: usize,
    /// Source objects read (in scope).
    pub source_count: usize,
    /// Rules that name a source attribute no object read has
    /// ([`super::unused_attrs`]).
    pub warnings: Vec<String>,
}

impl Plan {
    /// How many objects the plan deprovisions (what the deletion threshold
    /// counts). Leavers under "none" count too: their links are dropped, and
    /// an empty source would otherwise unlink everything silently.
    pub fn deprovision_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(&i.action, Action::Deprovision { .. }))
            .count()
    }
}

/// Where a planning pass sends its items, in the order it decides them.
pub type ItemSender = super::queue::Sender<Item>;

/// Where a run's writer takes the planned items from.
pub type ItemReceiver = super::queue::Receiver<Item>;

/// The anchor of a source or target entry (its DN when it has none).
pub(super) fn anchor_of(e: &Entry) -> String {
    e.anchor.clone().unwrap_or_else(|| e.dn.clone())
}
