//! The sync engine: step definitions ([`rules`]) and their defaults
//! ([`defaults`]), the planner shared by preview and run ([`plan`], which
//! orchestrates: the source read in `source`, the links as it sees them in
//! `linked`, one object's plan in `object`,
//! the target view in `target`, flows projected in [`project`] and kept
//! compact in [`projected`], leavers in `deprovision`, sync-tree containers
//! in `tree`; the item types in [`item`]), the preview rows ([`preview`]),
//! execution ([`apply`]), the bounded queues between the stages ([`queue`]), what a run did ([`counts`]), stopping a run from
//! outside ([`cancel`]), runs with the deletion threshold, history and log
//! files ([`run`]), workflows of several steps ([`workflow`]), run leases
//! ([`lease`]), links changed by hand ([`links`], [`mapping`]) and where
//! joins land or conflict ([`conflicts`]), unique values planned in a run
//! ([`unique`]), the progress total ([`total`]); planned writes are checked
//! against the target's schema ([`schema_check`]); what fails is a
//! [`SyncError`]. It knows nothing of Rhai:
//! flows and scopes arrive as Rust callables.

pub mod apply;
pub mod cancel;
pub mod clock;
pub mod conflicts;
pub mod counts;
mod create;
pub mod defaults;
mod deprovision;
pub mod error;
pub mod hash;
pub mod item;
pub mod lease;
mod linked;
pub mod links;
pub mod log;
pub mod mapping;
pub mod members;
mod object;
pub mod plan;
pub mod preview;
pub mod project;
pub mod projected;
pub mod queue;
mod readback;
pub mod rules;
pub mod run;
pub mod schema_check;
mod source;
mod target;
pub mod total;
mod tree;
pub mod unique;
pub mod unused_attrs;
pub mod workflow;
pub mod write_log;

pub use counts::Counts;
pub use error::SyncError;
pub use plan::{Action, AttrChange, Plan};
pub use rules::StepDef;
pub use run::{Report, RunError, RunOptions};
pub use workflow::{Workflow, WorkflowReport};
