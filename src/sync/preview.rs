//! The preview rows of a plan: one per attribute change, rename, move,
//! deprovision or error, then the unchanged count, as plain Rust values.
//! The script layer turns each [`Row`] into a Rhai map; a Rust caller gets
//! the same rows without Rhai.

use crate::model::Value;

use super::item::{Action, AttrChange, Plan};
use super::project::create_attrs;
use super::rules::StepDef;

/// One row of a preview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// The step's name.
    pub step: String,
    /// What is done ("create", "update", "join", "rename/move", "error", ...).
    pub op: String,
    /// The object (target DN, or the source's DN or anchor for an error).
    pub object: String,
    /// The attribute changed, if any.
    pub attribute: Option<String>,
    /// Its values now in the target, as text (`; ` between several).
    pub old: Option<String>,
    /// Its values after the run, or the row's note (new DN, reason, ...).
    pub new: Option<String>,
    /// The rule behind the change.
    pub rule: Option<String>,
}

/// Values as one text: binary ones by their size, several joined by `; `;
/// `None` when there is none.
fn show(vals: &[Value], attr: &str) -> Option<String> {
    let texts: Vec<String> = vals
        .iter()
        .map(|v| {
            v.display(attr)
                .unwrap_or_else(|| format!("<binary {} bytes>", v.as_bytes().len()))
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

fn row(step: &str, op: &str, object: &str, c: Option<&AttrChange>, note: &str) -> Row {
    Row {
        step: step.into(),
        op: op.into(),
        object: object.into(),
        attribute: c.map(|c| c.attr.to_string()),
        old: c.and_then(|c| show(&c.old, &c.attr)),
        new: match c {
            Some(c) => show(&c.new, &c.attr),
            None if !note.is_empty() => Some(note.into()),
            None => None,
        },
        rule: c.map(|c| c.rule.to_string()),
    }
}

/// The rows of `plan` (of `step`); `refused` is the deletion threshold's
/// verdict, shown first.
pub fn rows(step: &StepDef, plan: &Plan, refused: Option<&str>) -> Vec<Row> {
    let s = plan.step.as_str();
    let mut rows = Vec::new();
    if let Some(why) = refused {
        rows.push(row(s, "REFUSED", "(run would be refused)", None, why));
    }
    for w in &plan.warnings {
        rows.push(row(s, "warning", "(rules)", None, w));
    }
    for c in &plan.containers {
        let classes = AttrChange {
            attr: "objectClass".into(),
            old: vec![],
            new: c
                .attrs
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case("objectClass"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            rule: "tree: container mirrored from the source".into(),
        };
        rows.push(row(s, "create container", &c.dn, Some(&classes), ""));
    }
    for item in &plan.items {
        match &item.action {
            Action::Create { dn, values } => match create_attrs(step, dn, values) {
                Ok(attrs) => {
                    for a in &attrs {
                        rows.push(row(s, "create", dn, Some(a), ""));
                    }
                }
                Err(m) => rows.push(row(s, "error", dn, None, &m.to_string())),
            },
            Action::Update {
                target_dn,
                changes,
                new_dn,
                joined,
                takes_over,
                restore,
                ..
            } => {
                if *restore {
                    let note = format!("enable: source {} is back", item.source_dn);
                    rows.push(row(s, "restore", target_dn, None, &note));
                }
                if *joined {
                    let note = match takes_over {
                        Some(old) => format!(
                            "linked to source {} (takes over from departed source {old})",
                            item.source_dn
                        ),
                        None => format!("linked to source {}", item.source_dn),
                    };
                    rows.push(row(s, "join", target_dn, None, &note));
                }
                for c in changes {
                    rows.push(row(s, "update", target_dn, Some(c), ""));
                }
                if let Some(n) = new_dn {
                    rows.push(row(s, "rename/move", target_dn, None, n));
                }
            }
            Action::Deprovision {
                target_dn,
                how,
                changes,
                move_to,
                ..
            } => {
                rows.push(row(s, &format!("deprovision ({how})"), target_dn, None, ""));
                for c in changes {
                    rows.push(row(s, "deprovision", target_dn, Some(c), ""));
                }
                if let Some(p) = move_to {
                    rows.push(row(s, "move", target_dn, None, p));
                }
            }
            Action::Rejected { object, problems } => {
                for p in problems {
                    let mut r = row(s, "error", object, None, &p.to_string());
                    r.attribute = p.attr.clone();
                    r.rule = p.rule.clone();
                    rows.push(r);
                }
            }
            Action::Error { message } => {
                let obj = if item.source_dn.is_empty() {
                    &item.source_anchor
                } else {
                    &item.source_dn
                };
                rows.push(row(s, "error", obj, None, message));
            }
        }
    }
    let writes = plan
        .items
        .iter()
        .filter(|i| {
            !matches!(&i.action, Action::Update { changes, new_dn, joined, .. }
                if changes.is_empty() && new_dn.is_none() && !joined)
        })
        .count();
    let quiet = plan.unchanged + plan.items.len() - writes;
    rows.push(row(s, "unchanged", &format!("({quiet} objects)"), None, ""));
    rows
}
