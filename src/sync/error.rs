//! The engine's error type: what stopped a plan or a run, or why one object
//! cannot be planned, in variants a caller can tell apart without parsing
//! text (an unreachable source, a target that failed, the state store, a
//! step's rule, a refused run, one object). The connector's or the store's
//! own error is kept as the source; the text is the one users have always
//! seen ("reading the source: ...", "flow displayName <- |e| ...: ...").

use std::fmt::Display;

use crate::connector::Error as CError;
use crate::store::StoreError;

/// Why the engine could not plan or run (or plan one object).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The source could not be read: unreachable, the connection lost, a
    /// search refused.
    #[error("{what}: {source}")]
    Source {
        /// What was being read ("reading the source's changes").
        what: String,
        /// The connector's error.
        source: CError,
    },
    /// The target could not be read or written (a lookup, a join search,
    /// the final flush, a connection lost during the writes).
    #[error("{what}: {source}")]
    Target {
        /// What was being done.
        what: String,
        /// The connector's error.
        source: CError,
    },
    /// The state store failed (links, cursors).
    #[error("{}", with_what(what, source))]
    Store {
        /// What was being done ("" when the store's message says it all).
        what: String,
        /// The store's error.
        source: StoreError,
    },
    /// A rule of the step failed for an object: a flow, the scope's
    /// `where`, the create rule's `rdn` or `parent`, the sync-tree.
    #[error("{text}")]
    Rule {
        /// The rule, as the plan names it ("flow displayName <- |e| ...",
        /// "scope 'where'", "create 'rdn'", "tree").
        rule: String,
        /// The whole message, naming the rule.
        text: String,
    },
    /// The run was refused before it wrote anything (the deletion threshold).
    #[error("{0}")]
    Refused(String),
    /// One object cannot be planned (an ambiguous join, a target another
    /// object claims, no create rule); the run goes on without it.
    #[error("{0}")]
    Object(String),
}

fn with_what(what: &str, e: &dyn Display) -> String {
    if what.is_empty() {
        e.to_string()
    } else {
        format!("{what}: {e}")
    }
}

impl SyncError {
    /// A failing `rule` (a closure's error `cause`, from Rhai).
    pub fn rule(rule: impl Into<String>, cause: impl Display) -> SyncError {
        let rule = rule.into();
        SyncError::Rule {
            text: format!("{rule}: {cause}"),
            rule,
        }
    }

    /// A failing `rule` whose message `text` names it already.
    pub fn rule_text(rule: impl Into<String>, text: impl Into<String>) -> SyncError {
        SyncError::Rule {
            rule: rule.into(),
            text: text.into(),
        }
    }

    /// A store failure while doing `what` ("" when the store's message
    /// says it all).
    pub fn store(what: impl Into<String>) -> impl FnOnce(StoreError) -> SyncError {
        let what = what.into();
        move |source| SyncError::Store { what, source }
    }

    /// A source failure while doing `what`.
    pub fn source(what: impl Into<String>) -> impl FnOnce(CError) -> SyncError {
        let what = what.into();
        move |source| SyncError::Source { what, source }
    }

    /// A target failure while doing `what`.
    pub fn target(what: impl Into<String>) -> impl FnOnce(CError) -> SyncError {
        let what = what.into();
        move |source| SyncError::Target { what, source }
    }

    /// True when a connection was lost or could not be made (source or
    /// target): the run cannot go on, a later one may.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            SyncError::Source {
                source: CError::Connection(_),
                ..
            } | SyncError::Target {
                source: CError::Connection(_),
                ..
            }
        )
    }
}

impl From<SyncError> for super::run::RunError {
    /// A refusal stays a refusal; anything else failed the run.
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Refused(m) => super::run::RunError::Refused(m),
            e => super::run::RunError::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_tell_the_kinds_apart_and_read_the_same_words() {
        let lost = SyncError::source("reading the source")(CError::Connection("gone".into()));
        assert!(lost.is_connection_lost());
        assert_eq!(lost.to_string(), "reading the source: gone");
        assert!(std::error::Error::source(&lost).is_some());
        let rule = SyncError::rule("flow cn <- |e| ...", "boom");
        assert!(!rule.is_connection_lost());
        assert!(matches!(&rule, SyncError::Rule { rule, .. } if rule == "flow cn <- |e| ..."));
        assert_eq!(rule.to_string(), "flow cn <- |e| ...: boom");
        let denied = SyncError::target("join search in the target")(CError::Auth("no".into()));
        assert!(!denied.is_connection_lost());
    }
}
