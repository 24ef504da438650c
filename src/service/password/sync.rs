//! `POST /v1/password/changed`: a password change captured on the AD side
//! pushed to every account linked to that AD user by the declared steps,
//! through each target's `set_password` (OpenLDAP: Password Modify; AD:
//! unicodePwd; Entra: passwordProfile), after the optional transform. A push
//! that fails because the target cannot be reached goes to the encrypted
//! queue ([`super::queue`]); [`retry`] delivers what is due.

use serde_json::json;

use super::queue::Item;
use super::{Outcome, State, policy_rejection};
use crate::connector::Error as ConnError;
use crate::model::Secret;
use crate::script::password::SyncDef;
use crate::service::daemon::log;
use crate::sync::clock;

/// True when the failure may pass by itself: the target down or slow, or
/// (Entra) still throttled or unavailable (429/503/504) after the
/// connector's own retries.
fn transient(e: &ConnError) -> bool {
    match e {
        ConnError::Connection(_) => true,
        ConnError::Other(t) => t.contains(crate::connector::graph::STILL_REFUSED),
        _ => false,
    }
}

/// Answers one authenticated, rate-checked change.
pub async fn changed(state: &State, def: &SyncDef, identity: &str, pw: &Secret) -> Outcome {
    let entry = match def.source.get(identity).await {
        Ok(Some(e)) => e,
        Ok(None) | Err(ConnError::NotFound(_)) => {
            return Outcome::new(
                404,
                json!({ "error": format!("{identity}: no such user in {}", def.source.describe()) }),
                "not found: no such AD user",
            );
        }
        Err(e) => return Outcome::error(503, format!("{identity}: {e}")),
    };
    let anchor = entry.anchor.clone().unwrap_or_else(|| entry.dn.clone());
    let (mut delivered, mut queued) = (Vec::new(), Vec::new());
    let mut failed = Vec::new();
    let mut linked = 0;
    for step in &def.steps {
        let links = match state
            .store
            .links_of(&step.name, std::slice::from_ref(&anchor))
        {
            Ok(l) => l,
            Err(e) => return Outcome::error(500, format!("the state store: {e}")),
        };
        for link in links {
            linked += 1;
            let target = if link.target_anchor.is_empty() {
                link.target_dn.clone()
            } else {
                link.target_anchor.clone()
            };
            let new_pw = match &def.transform {
                None => pw.clone(),
                Some(t) => match t(pw.expose(), &entry) {
                    Ok(p) if !p.is_empty() => Secret::literal(p),
                    Ok(_) => {
                        failed.push(json!({ "step": step.name, "account": link.target_dn, "error": "transform gave an empty password" }));
                        continue;
                    }
                    Err(e) => {
                        let e = super::audit::redact(&e, pw.expose());
                        failed.push(
                            json!({ "step": step.name, "account": link.target_dn, "error": e }),
                        );
                        continue;
                    }
                },
            };
            match step.target.set_password(&target, &new_pw).await {
                Ok(()) => delivered.push(json!({ "step": step.name, "account": link.target_dn })),
                Err(e) if transient(&e) => {
                    let Some(q) = &state.queue else {
                        failed.push(json!({ "step": step.name, "account": link.target_dn, "error": e.to_string() }));
                        continue;
                    };
                    let now = clock::now_ms();
                    let item = Item {
                        id: 0,
                        step: step.name.clone(),
                        target: target.clone(),
                        account: link.target_dn.clone(),
                        identity: entry.dn.clone(),
                        password: new_pw.expose().to_string(),
                        first_ms: now,
                        attempts: 0,
                        next_ms: now + super::queue::backoff(0).as_millis() as i64,
                        last_error: e.to_string(),
                    };
                    match q.push(item) {
                        Ok(()) => {
                            log(&format!(
                                "password sync: {} unreachable for {} ({}); queued for retry",
                                step.name, link.target_dn, e
                            ));
                            queued.push(json!({ "step": step.name, "account": link.target_dn, "reason": e.to_string() }));
                        }
                        Err(qe) => failed.push(json!({ "step": step.name, "account": link.target_dn, "error": format!("{e}; and it could not be queued: {qe}") })),
                    }
                }
                Err(e) => {
                    let text = super::audit::redact(&e.to_string(), new_pw.expose());
                    failed.push(json!({ "step": step.name, "account": link.target_dn, "error": text, "policy": policy_rejection(&text) }));
                }
            }
        }
    }
    if linked == 0 {
        let names: Vec<&str> = def.steps.iter().map(|s| s.name.as_str()).collect();
        return Outcome::new(
            404,
            json!({ "error": format!("{identity}: no account is linked to it by {}", names.join(", ")) }),
            "not found: no linked account",
        );
    }
    let summary = format!(
        "delivered {}, queued {}, failed {}",
        delivered.len(),
        queued.len(),
        failed.len()
    );
    let status = if !failed.is_empty() {
        if failed.iter().all(|f| f["policy"] == true) {
            422
        } else {
            502
        }
    } else if !queued.is_empty() {
        202
    } else {
        200
    };
    let detail = failed
        .iter()
        .filter_map(|f| f["error"].as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Outcome::new(
        status,
        json!({ "delivered": delivered, "queued": queued, "failed": failed }),
        &if detail.is_empty() {
            summary
        } else {
            format!("{summary}: {detail}")
        },
    )
}

/// `max_age` in force: the script's, or `IDSYNC_PASSWORD_MAX_AGE_MS` when
/// set (a test knob: lets a test see a queued change dropped in seconds).
fn max_age(def: &SyncDef) -> std::time::Duration {
    std::env::var("IDSYNC_PASSWORD_MAX_AGE_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(std::time::Duration::from_millis)
        .unwrap_or(def.max_age)
}

/// One pass over the queue: drops what is older than `max_age`, tries
/// what is due. Logs names and DNs, never a password.
pub async fn retry(state: &State) {
    let Some(q) = &state.queue else { return };
    let Some(def) = state.sync_def() else { return };
    let now = clock::now_ms();
    match q.expire(now, max_age(&def)) {
        Ok(old) => {
            for i in old {
                log(&format!(
                    "password sync: dropped the queued change for {} on {} ({}): older than max_age; last error: {}",
                    i.identity, i.account, i.step, i.last_error
                ));
            }
        }
        Err(e) => log(&e),
    }
    for item in q.due(now) {
        let Some(step) = def.steps.iter().find(|s| s.name == item.step) else {
            log(&format!(
                "password sync: dropped the queued change for {} on {}: step {} is no longer declared",
                item.identity, item.account, item.step
            ));
            let _ = q.remove(item.id);
            continue;
        };
        let pw = Secret::literal(item.password.clone());
        let res = step.target.set_password(&item.target, &pw).await;
        let saved = match res {
            Ok(()) => {
                log(&format!(
                    "password sync: delivered the queued change for {} to {} ({}) after {} retries",
                    item.identity,
                    item.account,
                    item.step,
                    item.attempts + 1
                ));
                q.remove(item.id)
            }
            Err(e) if transient(&e) => q.retry_later(item.id, clock::now_ms(), &e.to_string()),
            Err(e) => {
                log(&format!(
                    "password sync: dropped the queued change for {} on {} ({}): {}",
                    item.identity,
                    item.account,
                    item.step,
                    super::audit::redact(&e.to_string(), &item.password)
                ));
                q.remove(item.id)
            }
        };
        if let Err(e) = saved {
            log(&e);
        }
    }
}
