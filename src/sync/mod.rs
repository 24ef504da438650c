//! The sync engine: step definitions ([`rules`]) and their defaults
//! ([`defaults`]), the planner shared by preview and run ([`plan`], reading the
//! source in `source`), execution ([`apply`]), what a run did ([`counts`]),
//! stopping a run from outside ([`cancel`]), runs with the deletion threshold, history
//! and log files ([`run`]), workflows of several steps ([`workflow`]), run leases
//! ([`lease`]), links changed by hand ([`links`]); planned writes are checked against
//! the target's schema ([`schema_check`]). It knows nothing of Rhai:
//! flows and scopes arrive as Rust callables.

pub mod apply;
pub mod cancel;
pub mod clock;
pub mod counts;
pub mod defaults;
pub mod hash;
pub mod lease;
pub mod links;
pub mod log;
pub mod members;
pub mod plan;
pub mod rules;
pub mod run;
pub mod schema_check;
mod source;
pub mod workflow;

pub use counts::Counts;
pub use plan::{Action, AttrChange, Plan};
pub use rules::StepDef;
pub use run::{Report, RunError, RunOptions};
pub use workflow::{Workflow, WorkflowReport};
