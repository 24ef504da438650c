//! What a person touches: the REPL, completion, output of results as
//! tables, JSON, CSV or LDIF, and errors.

pub mod cli_docs;
pub mod complete;
pub mod flags;
pub mod output;
pub mod render;
pub mod repl;
pub mod report;
