//! Planning one changed source object: follow its link (or the kept link
//! of a deprovisioned object whose source is back), or join it, then
//! decide the update, the create or why it cannot be written.

use std::collections::{HashMap, HashSet};

use crate::model::dn::{Dn, dn_eq};
use crate::model::{Entry, Value};
use crate::store::Link;

use super::error::SyncError;
use super::item::{Action, AttrChange, Item, anchor_of};
use super::linked::{Linked, Scope};
use super::members::{self, MemberIndex};
use super::project::{
    create_attrs, desired_dn, flow_values, same_values, target_values, unprefix_changes,
};
use super::projected::Projected;
use super::rules::StepDef;
use super::target::TargetView;

/// What the planner knows about links when it plans one object.
pub(super) struct Known<'a> {
    /// Kept links of deprovisioned objects, by source anchor.
    pub kept: &'a HashMap<String, Link>,
    /// The step's live links.
    pub linked: &'a Linked<'a>,
    /// Source anchors in scope this run.
    pub scope: &'a Scope,
}

/// The join of `e`: (target attribute, source value) per join rule; empty
/// when the step has no join or `e` lacks a value one of the rules needs.
/// (Also what `map(step)` joins by, in [`super::mapping`].)
pub(super) fn join_pairs(step: &StepDef, e: &Entry) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (tattr, sattr) in &step.join {
        match e.first(sattr) {
            Some(v) if !v.is_empty() => pairs.push((tattr.clone(), v)),
            _ => return Vec::new(),
        }
    }
    pairs
}

/// The item for one changed source object `e` (its `anchor`, `hash` and
/// `link`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn plan_one(
    step: &StepDef,
    target: &mut TargetView<'_>,
    known: &Known<'_>,
    claimed: &mut HashSet<String>,
    taken: &mut HashSet<String>,
    member_index: Option<&mut MemberIndex>,
    e: &Entry,
    anchor: &str,
    hash: String,
    link: Option<&Link>,
) -> Item {
    let mk = |action: Action, desired: Option<String>| Item {
        source_anchor: anchor.to_string(),
        source_dn: e.dn.clone(),
        source_hash: hash.clone(),
        desired_dn: desired,
        action,
    };
    let err = |e: SyncError| {
        mk(
            Action::Error {
                message: e.to_string(),
            },
            None,
        )
    };
    let desired = match desired_dn(step, e) {
        Ok(d) => d,
        Err(m) => return err(m),
    };
    // Projection of every flow.
    let mut projected: Vec<(usize, Vec<Value>)> = Vec::with_capacity(step.flows.len());
    for (i, f) in step.flows.iter().enumerate() {
        match flow_values(&f.source, e) {
            Ok(v) => projected.push((i, v)),
            Err(m) => return err(SyncError::rule(format!("flow {}", f.rule), m)),
        }
    }
    // Members through the links of other steps.
    let mut member_index = member_index;
    let resolved = match (&step.members, member_index.as_deref_mut()) {
        (Some(rule), Some(ix)) => match ix.resolve(step, rule, e).await {
            Ok(r) => Some(r),
            Err(m) => return err(m),
        },
        _ => None,
    };
    // Follow the link (or the kept link of a deprovisioned object whose
    // source is back, unless another source has its target now), or join.
    let kept = match (link, known.kept.get(anchor)) {
        (None, Some(k)) => match known.linked.source_of_target(&k.target_anchor) {
            Ok(None) => Some(k),
            Ok(Some(_)) => None,
            Err(m) => return err(m),
        },
        _ => None,
    };
    let mut joined = false;
    let mut takes_over: Option<String> = None;
    let found = match link.or(kept) {
        Some(l) => match target.locate(l).await {
            Ok(t) => t,
            Err(m) => return err(m),
        },
        None => None,
    };
    let restore = kept.is_some() && found.is_some();
    if restore
        && let Some(t) = &found
        && !claimed.insert(anchor_of(t).to_ascii_lowercase())
    {
        return err(SyncError::Object(format!(
            "{} is deprovisioned and linked to this source, but another source object of this run claims it",
            t.dn
        )));
    }
    let found = match found {
        Some(t) => Some(t),
        None if step.join.is_empty() => None,
        None => {
            let pairs = join_pairs(step, e);
            if pairs.is_empty() {
                None
            } else {
                match target.join(&pairs).await {
                    Err(m) => return err(m),
                    Ok(mut hits) => match hits.len() {
                        0 => None,
                        1 => {
                            let t = hits.pop().unwrap_or_default();
                            let ta = anchor_of(&t).to_ascii_lowercase();
                            let other = match known.linked.source_of_target(&ta) {
                                Ok(o) => o.filter(|s| s.as_str() != anchor),
                                Err(m) => return err(m),
                            };
                            if let Some(other) = other {
                                if known.scope.contains(&other) {
                                    return err(SyncError::Object(format!(
                                        "join matches {}, which is already linked to source '{other}'",
                                        t.dn
                                    )));
                                }
                                // Its source has left: this object takes the target over.
                                taken.insert(other.clone());
                                takes_over = Some(other);
                            }
                            if !claimed.insert(ta) {
                                return err(SyncError::Object(format!(
                                    "join matches {}, which another source object of this run also matches",
                                    t.dn
                                )));
                            }
                            joined = true;
                            Some(t)
                        }
                        n => {
                            let dns: Vec<&str> =
                                hits.iter().take(3).map(|h| h.dn.as_str()).collect();
                            return err(SyncError::Object(format!(
                                "ambiguous join: {n} target objects match ({}); fix the data or the join rules",
                                dns.join("; ")
                            )));
                        }
                    },
                }
            }
        }
    };
    match found {
        Some(t) => {
            let mut changes = Vec::new();
            for (i, vals) in projected {
                let f = &step.flows[i];
                if f.once {
                    continue;
                }
                let old = target_values(&t, &f.target);
                if !same_values(&old, &vals) {
                    changes.push(AttrChange {
                        attr: f.target.clone(),
                        old,
                        new: vals,
                        rule: f.rule.clone(),
                    });
                }
            }
            if let (Some(rule), Some((vals, missing))) = (&step.members, &resolved) {
                let old = if rule.by_anchor {
                    match step.target.members(&anchor_of(&t)).await {
                        Ok(ids) => ids.into_iter().map(Value::Text).collect(),
                        Err(e) => {
                            return err(SyncError::target(format!(
                                "reading the members of {}",
                                t.dn
                            ))(e));
                        }
                    }
                } else {
                    target_values(&t, &rule.target_attr)
                };
                // Members no step manages stay (added by hand), unless they are
                // gone from the target (a deleted user's dangling DN).
                let mut new = vals.clone();
                if let Some(ix) = member_index.as_deref() {
                    // Members to add are checked against the target as it is now.
                    let old_keys: HashSet<String> =
                        old.iter().map(|o| members::value_key(rule, o)).collect();
                    let (kept, added): (Vec<Value>, Vec<Value>) = vals
                        .iter()
                        .cloned()
                        .partition(|v| old_keys.contains(&members::value_key(rule, v)));
                    new = kept;
                    match ix.current(step, rule, added).await {
                        Ok(cur) => new.extend(cur),
                        Err(m) => return err(m),
                    }
                    for v in ix.unmanaged(rule, &new, &old) {
                        let keep = rule.by_anchor
                            || match step
                                .target
                                .get(&String::from_utf8_lossy(v.as_bytes()))
                                .await
                            {
                                Ok(found) => found.is_some(),
                                Err(e) => {
                                    return err(SyncError::target(format!(
                                        "checking member {} of {}",
                                        String::from_utf8_lossy(v.as_bytes()),
                                        t.dn
                                    ))(e));
                                }
                            };
                        if keep {
                            new.push(v);
                        }
                    }
                }
                if !members::same_members(rule, &old, &new) {
                    changes.push(AttrChange {
                        attr: rule.target_attr.clone(),
                        old,
                        new,
                        rule: members::rule_text(rule, missing).into(),
                    });
                }
            }
            if restore {
                changes.extend(unprefix_changes(step, &t, &changes));
            }
            // Follow source-driven renames and moves, not hand moves in the
            // target; a restored object goes back where the create rule says.
            // A source whose values and rules are as they were cannot ask for a
            // new DN: a different answer comes from a lookup in a closure (a free
            // uid, which the object itself now holds) and is not followed.
            let source_changed = link.and_then(|l| l.source_hash.as_deref()) != Some(&hash);
            let new_dn = match (&desired, link.and_then(|l| l.desired_dn.as_ref())) {
                // (Only between DNs: Entra's and files' names are no places.)
                (Some(want), _)
                    if restore
                        && !dn_eq(want, &t.dn)
                        && Dn::parse(want).is_ok()
                        && Dn::parse(&t.dn).is_ok() =>
                {
                    Some(want.clone())
                }
                (Some(want), Some(before))
                    if source_changed && !dn_eq(want, before) && !dn_eq(want, &t.dn) =>
                {
                    Some(want.clone())
                }
                _ => None,
            };
            let problems = target
                .vet_update(&t, &changes, new_dn.as_deref(), "create rule")
                .await;
            if !problems.is_empty() {
                return mk(
                    Action::Rejected {
                        object: t.dn.clone(),
                        problems,
                    },
                    None,
                );
            }
            mk(
                Action::Update {
                    target_anchor: anchor_of(&t),
                    target_dn: t.dn.clone(),
                    changes,
                    new_dn,
                    joined,
                    takes_over,
                    restore,
                },
                desired,
            )
        }
        None => {
            let (Some(dn), Some(_)) = (desired.clone(), &step.create) else {
                return err(SyncError::Object(
                    "no target object matches and the step has no create rule".into(),
                ));
            };
            // The flows were evaluated above, once: their values are kept in
            // the item, compact, for the preview rows and the write.
            let resolved = match (resolved, &step.members, member_index.as_deref()) {
                (Some((vals, missing)), Some(rule), Some(ix)) => {
                    match ix.current(step, rule, vals).await {
                        Ok(cur) => Some((cur, missing)),
                        Err(m) => return err(m),
                    }
                }
                (r, _, _) => r,
            };
            // The same checks as the run's: the parent and the target's schema.
            let members: &[Value] = match &resolved {
                Some((vals, _)) => vals,
                None => &[],
            };
            let values = Projected::new(projected.iter().map(|(i, v)| (*i, v.as_slice())), members);
            drop(projected);
            let problems = match create_attrs(step, &dn, &values) {
                Ok(attrs) => target.vet_create(&dn, &attrs).await,
                Err(m) => return err(m),
            };
            if !problems.is_empty() {
                return mk(
                    Action::Rejected {
                        object: dn.clone(),
                        problems,
                    },
                    None,
                );
            }
            mk(Action::Create { dn, values }, desired)
        }
    }
}
