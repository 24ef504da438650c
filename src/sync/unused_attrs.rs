//! The rule that a flow, join or scope naming a source attribute that no
//! source object read has (`mail: "emial"`) is a warning in the preview and
//! the run report, naming the rule, instead of silently writing nothing.
//! The reader notes, per object, which of the named attributes it has; only
//! a full read (not "changes since the last run") can say "none has it".

use crate::model::Entry;

use super::rules::{FlowSource, StepDef};

/// The source attributes a step names, and which of them no object read
/// so far has.
pub struct Unseen {
    /// (attribute, the rule that names it) not yet seen on any object.
    missing: Vec<(String, String)>,
    /// Objects read.
    read: usize,
}

impl Unseen {
    /// Every source attribute `step` names by name: flows of a source
    /// attribute, the source side of joins, the scope's `attrs`.
    pub fn new(step: &StepDef) -> Unseen {
        let mut missing: Vec<(String, String)> = Vec::new();
        let mut add = |attr: &str, rule: String| {
            if !missing.iter().any(|(a, _)| a.eq_ignore_ascii_case(attr)) {
                missing.push((attr.to_string(), rule));
            }
        };
        for f in &step.flows {
            if let FlowSource::Attr(a) = &f.source {
                add(a, format!("flow {}", f.rule));
            }
        }
        for (t, s) in &step.join {
            add(s, format!("join {t} <- {s}"));
        }
        for a in step.scope.attrs.iter().flatten() {
            add(a, format!("scope attrs [{a}]"));
        }
        Unseen { missing, read: 0 }
    }

    /// Notes one object read (cheap once every name has been seen).
    pub fn note(&mut self, e: &Entry) {
        self.read += 1;
        if !self.missing.is_empty() {
            self.missing.retain(|(a, _)| !e.has(a));
        }
    }

    /// The warnings after a read: one per attribute no object had. None
    /// when no object was read or only the changes were (`incremental`).
    pub fn warnings(&self, incremental: bool) -> Vec<String> {
        if incremental || self.read == 0 {
            return Vec::new();
        }
        self.missing
            .iter()
            .map(|(a, rule)| {
                format!(
                    "{rule}: none of the {} source objects read has the attribute '{a}' (misspelt, or not in the scope's attrs?)",
                    self.read
                )
            })
            .collect()
    }
}
