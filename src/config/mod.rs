//! Configuration: where idsync keeps its files (`IDSYNC_HOME`), and the
//! encrypted envelope of the password-protected configuration file
//! (`sealed`; what the file carries and how it is applied to a state store
//! is `crate::store::config_file`).

pub mod home;
pub mod sealed;
