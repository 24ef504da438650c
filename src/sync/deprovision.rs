//! Deprovisioning: the item for a linked source object that left the
//! scope, by the step's policy (the date prefix and the leavers' container
//! of `disable_move`), checked against the target like any other write.

use crate::model::{Entry, Value};
use crate::store::Link;

use super::item::{Action, AttrChange, Item};
use super::project::{same_values, target_values};
use super::rules::{DeprovisionAction, StepDef};
use super::target::TargetView;

/// The item for the leaver `l` (its link), with `today` as the date prefix.
pub(super) async fn deprovision_item(
    step: &StepDef,
    target: &mut TargetView<'_>,
    l: &Link,
    today: &str,
) -> Item {
    let d = &step.deprovision;
    let mut changes = Vec::new();
    let mut dn = l.target_dn.clone();
    let mut classes: Vec<Value> = Vec::new();
    if d.action != DeprovisionAction::None {
        match target.locate(l).await {
            Ok(Some(t)) => {
                dn = t.dn.clone();
                classes = t.values("objectClass").to_vec();
                let prefix: &[String] = match d.action {
                    DeprovisionAction::DisableMove => &d.prefix,
                    _ => &[],
                };
                for attr in prefix {
                    let old = target_values(&t, attr);
                    let new: Vec<Value> = old
                        .iter()
                        .map(|v| {
                            let s = String::from_utf8_lossy(v.as_bytes()).into_owned();
                            if s.starts_with(&format!("{today}-")) {
                                Value::Text(s)
                            } else {
                                Value::Text(format!("{today}-{s}"))
                            }
                        })
                        .collect();
                    if !same_values(&old, &new) {
                        changes.push(AttrChange {
                            attr: attr.as_str().into(),
                            old,
                            new,
                            rule: format!("deprovision prefix {today}-").into(),
                        });
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                return Item {
                    source_anchor: l.source_anchor.clone(),
                    source_dn: String::new(),
                    source_hash: String::new(),
                    desired_dn: None,
                    action: Action::Error {
                        message: e.to_string(),
                    },
                };
            }
        }
    }
    let move_to = match d.action {
        DeprovisionAction::DisableMove => d.parent.clone(),
        _ => None,
    };
    // The same checks as for other writes: the leavers' container, and the
    // prefixed values against the schema.
    let mut problems = Vec::new();
    if let Some(p) = &move_to {
        problems.extend(target.parent_problem(p, "deprovision 'parent'").await);
    }
    if !changes.is_empty() {
        let mut t = Entry::new(dn.clone());
        t.set("objectClass", classes);
        problems.extend(target.vet_update(&t, &changes, None, "").await);
    }
    if !problems.is_empty() {
        return Item {
            source_anchor: l.source_anchor.clone(),
            source_dn: String::new(),
            source_hash: String::new(),
            desired_dn: None,
            action: Action::Rejected {
                object: dn.clone(),
                problems,
            },
        };
    }
    Item {
        source_anchor: l.source_anchor.clone(),
        source_dn: String::new(),
        source_hash: String::new(),
        desired_dn: None,
        action: Action::Deprovision {
            target_anchor: l.target_anchor.clone(),
            target_dn: dn,
            how: d.action,
            changes,
            move_to,
        },
    }
}
