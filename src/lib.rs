//! idsync: a directory-synchronization engine with a Rhai scripting shell.
//!
//! Layers depend one way: [`model`] ← [`connector`] ← (sync) ← [`script`] ← [`shell`].
//! The state store ([`store`]) is reached only through its trait; [`config`]
//! holds `IDSYNC_HOME`, connection profiles and secrets.

pub mod model;
pub mod store;
pub mod config;
