//! Configuration: where idsync keeps its files (`IDSYNC_HOME`), and in time
//! connection profiles, secrets references and encrypted export/import.

pub mod home;
