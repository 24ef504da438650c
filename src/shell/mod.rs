//! What a person touches: the REPL, completion, output of results as
//! tables, JSON, CSV or LDIF, and errors.

pub mod complete;
pub mod output;
pub mod render;
pub mod repl;
pub mod report;
