//! Delta queries (`/users/delta`, `/groups/delta`): one round follows the
//! nextLinks to the page that carries the deltaLink, merging what it saw per
//! object id (Graph repeats objects, splits a big group's `members@delta`
//! across pages and replays items), so the caller gets each object once.
//! An expired or reset state (`syncStateNotFound`, `resyncRequired`, 410
//! Gone) starts a full round again.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use super::error::error_code;
use super::http::{Call, GraphHttp, path_of};
use super::page::enc;
use crate::connector::{Error, Result};

/// One object as a delta round reports it.
#[derive(Clone, Debug, Default)]
pub struct DeltaObject {
    /// Its properties (all selected ones, or only the changed ones).
    pub object: Map<String, Json>,
    /// Members added (the whole member list in a full round).
    pub members_added: Vec<String>,
    /// Members removed.
    pub members_removed: Vec<String>,
}

/// The outcome of a delta round.
#[derive(Clone, Debug, Default)]
pub struct DeltaRound {
    /// Objects created or changed (each once, in first-seen order).
    pub changed: Vec<DeltaObject>,
    /// Objects removed: (id, reason) where reason is "changed" (soft
    /// deleted, restorable for 30 days) or "deleted" (gone for good).
    pub removed: Vec<(String, String)>,
    /// Where the next round starts.
    pub delta_link: String,
    /// True for a full round (no stored link, or it had to be abandoned):
    /// `changed` is then the whole current set.
    pub full: bool,
    /// Why a stored link was abandoned, when it was.
    pub restarted: Option<String>,
    /// Pages read.
    pub pages: usize,
}

/// Runs one delta round on `collection` ("users" or "groups"): from `link`
/// when given, else a full round with `select` (or, with `latest`, no data
/// and a link that starts from now).
pub async fn round(
    http: &GraphHttp,
    collection: &str,
    select: &[String],
    link: Option<&str>,
    latest: bool,
) -> Result<DeltaRound> {
    let what = format!("{collection} delta");
    let mut initial = http.url(&format!("{collection}/delta"));
    let mut params = Vec::new();
    if !select.is_empty() {
        params.push(format!("$select={}", enc(&select.join(","))));
    }
    if latest {
        params.push("$deltatoken=latest".to_string());
    }
    if !params.is_empty() {
        initial = format!("{initial}?{}", params.join("&"));
    }
    // From the stored link, or a full round; when Graph says the state is
    // gone (also on a later page of a round), start over once, in full.
    let start = link.map(str::to_string).unwrap_or_else(|| initial.clone());
    match follow(http, start, &what).await {
        Ok(mut r) => {
            r.full = link.is_none() && !latest;
            Ok(r)
        }
        Err(Restart(why)) => {
            let mut r = follow(http, initial, &what)
                .await
                .map_err(|again| match again {
                    Restart(second) => Error::Other(format!(
                        "{what}: {second} (again, after starting over because {why})"
                    )),
                    Failed(e) => e,
                })?;
            r.full = !latest;
            r.restarted = Some(format!("{why}; a full read was done"));
            Ok(r)
        }
        Err(Failed(e)) => Err(e),
    }
}

/// Why a round stopped early.
enum Stop {
    /// The stored state is gone: start over with a full round.
    Restart(String),
    /// Any other failure.
    Failed(Error),
}
use Stop::{Failed, Restart};

async fn follow(
    http: &GraphHttp,
    start: String,
    what: &str,
) -> std::result::Result<DeltaRound, Stop> {
    let mut merge = Merge::default();
    let mut pages = 0;
    let mut next = start;
    let mut visited: HashSet<String> = HashSet::new();
    loop {
        if !visited.insert(next.clone()) {
            return Err(Failed(Error::Other(format!(
                "{what}: Graph sent the same nextLink twice ({}); stopped instead of looping",
                path_of(&next)
            ))));
        }
        let call = Call::get(next.clone(), what);
        let reply = http.exchange(&call).await.map_err(Failed)?;
        if !reply.status.is_success() {
            let status = reply.status.as_u16();
            let code = error_code(&reply.body).unwrap_or_default();
            if status == 410 {
                return Err(Restart(format!(
                    "Graph answered 410 Gone to {}: the change-tracking state was reset",
                    path_of(&next)
                )));
            }
            if (400..500).contains(&status)
                && matches!(code.as_str(), "syncStateNotFound" | "resyncRequired")
            {
                return Err(Restart(format!(
                    "the delta link is no longer valid ({code})"
                )));
            }
            return Err(Failed(http.refusal(&call, &reply)));
        }
        pages += 1;
        let page = reply.json(what).map_err(Failed)?;
        let Json::Object(mut page) = page else {
            return Err(Failed(Error::Other(format!(
                "{what}: the answer to {} is not a collection",
                path_of(&next)
            ))));
        };
        match page.remove("value") {
            Some(Json::Array(items)) => {
                for item in items {
                    merge
                        .add(item)
                        .map_err(|m| Failed(Error::Other(format!("{what}: {m}"))))?;
                }
            }
            _ => {
                return Err(Failed(Error::Other(format!(
                    "{what}: the answer to {} has no 'value' list",
                    path_of(&next)
                ))));
            }
        }
        if let Some(Json::String(d)) = page.remove("@odata.deltaLink") {
            let (changed, removed) = merge.finish();
            return Ok(DeltaRound {
                changed,
                removed,
                delta_link: d,
                full: false,
                restarted: None,
                pages,
            });
        }
        match page.remove("@odata.nextLink") {
            Some(Json::String(n)) => next = n,
            _ => {
                return Err(Failed(Error::Other(format!(
                    "{what}: a page of {} carries neither a nextLink nor a deltaLink",
                    path_of(&next)
                ))));
            }
        }
    }
}

/// Per-id merge of the items of one round.
#[derive(Default)]
struct Merge {
    order: Vec<String>,
    seen: HashSet<String>,
    present: HashMap<String, Pending>,
    removed: HashMap<String, String>,
}

/// An object being merged: its properties, and each member's last word
/// (true = added, false = removed) in first-seen order.
#[derive(Default)]
struct Pending {
    object: Map<String, Json>,
    member_order: Vec<String>,
    members: HashMap<String, bool>,
}

impl Merge {
    fn add(&mut self, item: Json) -> std::result::Result<(), String> {
        let Json::Object(mut obj) = item else {
            return Err("an item of the change list is not an object".into());
        };
        let id = match obj.get("id").and_then(Json::as_str) {
            Some(id) => id.to_string(),
            None => return Err("an item of the change list has no id".into()),
        };
        if self.seen.insert(id.clone()) {
            self.order.push(id.clone());
        }
        if let Some(r) = obj.get("@removed") {
            let reason = r
                .get("reason")
                .and_then(Json::as_str)
                .unwrap_or("deleted")
                .to_string();
            self.present.remove(&id);
            self.removed.insert(id, reason);
            return Ok(());
        }
        self.removed.remove(&id);
        let members = obj.remove("members@delta");
        let slot = self.present.entry(id).or_default();
        for (k, v) in obj {
            slot.object.insert(k, v);
        }
        if let Some(Json::Array(ms)) = members {
            for m in ms {
                let Some(mid) = m.get("id").and_then(Json::as_str) else {
                    continue;
                };
                let added = m.get("@removed").is_none();
                if slot.members.insert(mid.to_string(), added).is_none() {
                    slot.member_order.push(mid.to_string());
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> (Vec<DeltaObject>, Vec<(String, String)>) {
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for id in self.order {
            if let Some(p) = self.present.remove(&id) {
                let mut o = DeltaObject {
                    object: p.object,
                    ..DeltaObject::default()
                };
                for m in p.member_order {
                    match p.members.get(&m) {
                        Some(true) => o.members_added.push(m),
                        Some(false) => o.members_removed.push(m),
                        None => {}
                    }
                }
                changed.push(o);
            } else if let Some(r) = self.removed.remove(&id) {
                removed.push((id, r));
            }
        }
        (changed, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_objects_merge_and_members_accumulate() {
        let mut m = Merge::default();
        m.add(json!({"id":"g","displayName":"G","members@delta":[{"id":"a"},{"id":"b"}]}))
            .unwrap();
        m.add(json!({"id":"u","displayName":"U"})).unwrap();
        m.add(json!({"id":"g","members@delta":[{"id":"c"},{"id":"a","@removed":{"reason":"deleted"}}]})).unwrap();
        m.add(json!({"id":"g","members@delta":[{"id":"b"}]}))
            .unwrap(); // replay
        m.add(json!({"id":"x","@removed":{"reason":"changed"}}))
            .unwrap();
        let (changed, removed) = m.finish();
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0].object["displayName"], "G");
        assert_eq!(changed[0].members_added, vec!["b", "c"]);
        assert_eq!(changed[0].members_removed, vec!["a"]);
        assert_eq!(removed, vec![("x".to_string(), "changed".to_string())]);
    }

    #[test]
    fn a_removal_then_a_restore_in_one_round_is_present() {
        let mut m = Merge::default();
        m.add(json!({"id":"u","@removed":{"reason":"changed"}}))
            .unwrap();
        m.add(json!({"id":"u","displayName":"back"})).unwrap();
        let (changed, removed) = m.finish();
        assert_eq!(changed.len(), 1);
        assert!(removed.is_empty());
        assert!(m_err(json!({"displayName":"no id"})).contains("no id"));
    }

    fn m_err(j: Json) -> String {
        Merge::default().add(j).unwrap_err()
    }
}
