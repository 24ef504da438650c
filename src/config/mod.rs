//! Configuration: where idsync keeps its files (`IDSYNC_HOME`), and the
//! password-protected configuration file that carries profiles and settings
//! from one machine to another (`sealed`: the encrypted envelope;
//! `transfer`: what travels and how it is applied).

pub mod home;
pub mod sealed;
pub mod transfer;
