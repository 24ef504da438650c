//! idsync: a directory-synchronization engine with a Rhai scripting shell.
//!
//! Layers depend one way: [`model`] ← [`connector`] ← (sync) ← [`script`] ← [`shell`].
//! The state store ([`store`]) is reached only through its trait; [`config`]
//! holds `IDSYNC_HOME`, connection profiles and secrets.

pub mod azure;
pub mod config;
pub mod connector;
pub mod model;
pub mod script;
pub mod service;
pub mod shell;
pub mod store;
pub mod sync;
