//! What a person touches: the REPL, completion, help, and rendering of
//! results as tables, JSON, CSV or LDIF.

pub mod render;
