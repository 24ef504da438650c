//! `POST /v1/password/reset`: a password set from elsewhere (a portal, a
//! cloud bridge) written back into Active Directory. The identity is found
//! through the step's links (never by guessing from names): as a source
//! anchor, or — when the step was given as a value — as the step's source
//! knows it (its `get`: a CSV key, a UPN, a DN, ...), whose anchor then
//! leads to the link. A source object outside the step's scope is refused
//! (403). The linked account's password is set with the AD connection's
//! `set_password` (unicodePwd over LDAPS/StartTLS).

use serde_json::json;

use super::{Outcome, State, policy_rejection};
use crate::connector::Error as ConnError;
use crate::model::Entry;
use crate::model::filter::Filter;
use crate::script::password::WritebackDef;
use crate::sync::rules::StepDef;

/// True when `e` is inside the step's scope (base, filter, `where`).
pub fn in_scope(step: &StepDef, e: &Entry) -> Result<bool, String> {
    let s = &step.scope;
    if let Some(base) = &s.base {
        let (dn, base) = (e.dn.to_lowercase(), base.to_lowercase());
        if dn != base && !dn.ends_with(&format!(",{base}")) {
            return Ok(false);
        }
    }
    if !s.filter.trim().is_empty() {
        let f = Filter::parse(&s.filter).map_err(|e| format!("the step's filter: {e}"))?;
        if !f.matches(e) {
            return Ok(false);
        }
    }
    match &s.filter_where {
        Some(p) => p(e).map_err(|e| format!("the step's where: {e}")),
        None => Ok(true),
    }
}

/// Answers one authenticated, rate-checked reset.
pub async fn reset(
    state: &State,
    def: &WritebackDef,
    identity: &str,
    pw: &crate::model::Secret,
) -> Outcome {
    if !def.enabled {
        return Outcome::new(
            403,
            json!({ "error": "password write-back is disabled (password_writeback(#{ enabled: false }))" }),
            "refused: write-back disabled",
        );
    }
    let store = &state.store;
    let links_for = |anchor: &str| store.links_of(&def.step_name, &[anchor.to_string()]);
    let mut link = match links_for(identity) {
        Ok(l) => l.into_iter().next(),
        Err(e) => return Outcome::error(500, format!("the state store: {e}")),
    };
    if let Some(step) = &def.step {
        let source = match &link {
            Some(l) => step.source.get(&l.source_anchor).await,
            None => step.source.get(identity).await,
        };
        match source {
            Ok(Some(e)) => {
                match in_scope(step, &e) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Outcome::new(
                            403,
                            json!({ "error": format!("{identity}: outside the scope of step {}", def.step_name) }),
                            "refused: out of the step's scope",
                        );
                    }
                    Err(why) => return Outcome::error(500, format!("{identity}: {why}")),
                }
                if link.is_none() {
                    let anchor = e.anchor.clone().unwrap_or_else(|| e.dn.clone());
                    link = match links_for(&anchor) {
                        Ok(l) => l.into_iter().next(),
                        Err(e) => return Outcome::error(500, format!("the state store: {e}")),
                    };
                }
            }
            Ok(None) | Err(ConnError::NotFound(_)) => {
                if link.is_some() {
                    return Outcome::new(
                        403,
                        json!({ "error": format!("{identity}: no longer in the source of step {} (out of its scope)", def.step_name) }),
                        "refused: gone from the step's source",
                    );
                }
            }
            Err(ConnError::Ambiguous { .. }) => {
                return Outcome::new(
                    404,
                    json!({ "error": format!("{identity}: matches several objects in the step's source; give its anchor") }),
                    "not found: ambiguous identity",
                );
            }
            Err(e) => {
                return Outcome::error(503, format!("{identity}: the step's source: {e}"));
            }
        }
    }
    let Some(link) = link else {
        return Outcome::new(
            404,
            json!({ "error": format!("{identity}: no AD account is linked to it by step {}", def.step_name) }),
            "not found: no linked account",
        );
    };
    let target = if link.target_anchor.is_empty() {
        link.target_dn.clone()
    } else {
        link.target_anchor.clone()
    };
    match def.ad.set_password(&target, pw).await {
        Ok(()) => Outcome::new(
            200,
            json!({ "result": "done", "account": link.target_dn }),
            &format!("done: {}", link.target_dn),
        ),
        Err(e) => {
            let text = e.to_string();
            if policy_rejection(&text) {
                Outcome::new(
                    422,
                    json!({ "error": text }),
                    &format!("rejected by policy: {text}"),
                )
            } else {
                match e {
                    ConnError::NotFound(_) => Outcome::new(
                        404,
                        json!({ "error": format!("the linked account {} no longer exists: {text}", link.target_dn) }),
                        "not found: linked account gone",
                    ),
                    ConnError::Connection(_) => Outcome::error(503, text),
                    _ => Outcome::error(502, text),
                }
            }
        }
    }
}
