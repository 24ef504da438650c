//! Group membership through links: a source group's members (keys, anchors
//! or DNs of source objects) are looked up in the links of the member steps
//! and become the DNs (or, for Graph, the ids) of the target objects those
//! steps made. Members no step has synchronised are left out and named in
//! the plan. Only managed members are ever removed from a target group:
//! a member added by hand in the target (one no member step links) stays.
//! The signature of the member steps' links goes into each group's hash,
//! so a group is planned again whenever a member's link changes, even if
//! the source group itself did not.

use std::collections::{HashMap, HashSet};

use crate::model::dn::dn_key;
use crate::model::{Entry, Value};
use crate::store::StateStore;

use super::error::SyncError;
use super::rules::{MemberRule, StepDef};

/// The member steps' links, indexed for resolution.
pub struct MemberIndex {
    /// Lowercased source anchor -> target DN (or anchor).
    by_anchor: HashMap<String, String>,
    /// Source DN key -> resolved target value (None = not synchronised).
    by_dn: HashMap<String, Option<String>>,
    /// Keys of every target object the member steps link (managed members).
    managed: HashSet<String>,
    /// Target DN key -> target anchor (to find an object renamed since).
    anchor_of: HashMap<String, String>,
    /// Changes whenever a member step's links change.
    pub signature: String,
}

impl MemberIndex {
    /// Loads the links of `rule.steps` from the store.
    pub fn load(rule: &MemberRule, store: &dyn StateStore) -> Result<MemberIndex, SyncError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut targets: Vec<(String, String)> = Vec::new();
        for s in &rule.steps {
            let links = store.links(s).map_err(SyncError::store(format!(
                "members: reading the links of step '{s}'"
            )))?;
            for l in links {
                if !rule.by_anchor {
                    targets.push((l.target_dn.clone(), l.target_anchor.clone()));
                }
                let v = if rule.by_anchor {
                    l.target_anchor
                } else {
                    l.target_dn
                };
                pairs.push((l.source_anchor.to_ascii_lowercase(), v));
            }
        }
        pairs.sort();
        // FNV-1a over the sorted pairs: stable across builds.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (a, v) in &pairs {
            for b in a.bytes().chain([0]).chain(v.bytes()).chain([1]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let signature = format!("{h:016x}/{}", pairs.len());
        let mut by_anchor = HashMap::with_capacity(pairs.len());
        let mut managed = HashSet::with_capacity(pairs.len());
        for (a, v) in pairs {
            managed.insert(member_key(rule, &v));
            by_anchor.entry(a).or_insert(v);
        }
        let anchor_of = targets
            .into_iter()
            .map(|(dn, anchor)| (member_key(rule, &dn), anchor))
            .collect();
        Ok(MemberIndex {
            by_anchor,
            by_dn: HashMap::new(),
            managed,
            anchor_of,
            signature,
        })
    }

    /// The target values for the members of `e`, and the members that
    /// resolve to nothing. A DN member is read from the source once per run
    /// to learn its anchor.
    pub async fn resolve(
        &mut self,
        step: &StepDef,
        rule: &MemberRule,
        e: &Entry,
    ) -> Result<(Vec<Value>, Vec<String>), SyncError> {
        let mut out: Vec<Value> = Vec::new();
        let mut keys: HashSet<String> = HashSet::new();
        let mut missing = Vec::new();
        let ranged = format!("{};range=", rule.source_attr).to_ascii_lowercase();
        let members: Vec<String> = if e
            .attributes()
            .iter()
            .any(|a| a.name.to_ascii_lowercase().starts_with(&ranged))
        {
            // AD hands big groups out in ranges: read the whole list.
            step.source
                .members(&e.dn)
                .await
                .map_err(SyncError::source(format!(
                    "members: reading the members of {}",
                    e.dn
                )))?
        } else {
            match e.attr(&rule.source_attr) {
                Some(a) => a
                    .values
                    .iter()
                    .filter_map(|v| v.display(&a.name))
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                None => Vec::new(),
            }
        };
        for m in members {
            let found = match self.by_anchor.get(&m.to_ascii_lowercase()) {
                Some(v) => Some(v.clone()),
                None if m.contains('=') => self.by_source_dn(step, &m).await?,
                None => None,
            };
            match found {
                Some(v) => {
                    if keys.insert(member_key(rule, &v)) {
                        out.push(Value::Text(v));
                    }
                }
                None => missing.push(m),
            }
        }
        Ok((out, missing))
    }

    /// The target's current members that no member step manages (added
    /// by hand, or whose link is gone), leaving out the resolved ones.
    pub fn unmanaged(&self, rule: &MemberRule, resolved: &[Value], old: &[Value]) -> Vec<Value> {
        let mut keys: HashSet<String> = resolved.iter().map(|v| value_key(rule, v)).collect();
        old.iter()
            .filter(|v| {
                let k = value_key(rule, v);
                !self.managed.contains(&k) && keys.insert(k)
            })
            .cloned()
            .collect()
    }

    /// The DNs to add as they are in the target now: a link's DN is the
    /// last one known, so a member renamed or moved by hand since is found
    /// again by its anchor; one that is gone is left out.
    pub async fn current(
        &self,
        step: &StepDef,
        rule: &MemberRule,
        added: Vec<Value>,
    ) -> Result<Vec<Value>, SyncError> {
        if rule.by_anchor {
            return Ok(added);
        }
        let mut out = Vec::with_capacity(added.len());
        for v in added {
            let dn = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let err = |e| SyncError::target(format!("members: looking for {dn} in the target"))(e);
            if step.target.get(&dn).await.map_err(err)?.is_some() {
                out.push(v);
                continue;
            }
            if let Some(a) = self.anchor_of.get(&member_key(rule, &dn))
                && let Some(t) = step.target.get(a).await.map_err(err)?
            {
                out.push(Value::Text(t.dn));
            }
        }
        Ok(out)
    }

    async fn by_source_dn(
        &mut self,
        step: &StepDef,
        dn: &str,
    ) -> Result<Option<String>, SyncError> {
        let key = dn_key(dn);
        if let Some(v) = self.by_dn.get(&key) {
            return Ok(v.clone());
        }
        let anchor = step
            .source
            .get(dn)
            .await
            .map_err(SyncError::source(format!(
                "members: reading member {dn} in the source"
            )))?
            .and_then(|m| m.anchor);
        let v = anchor.and_then(|a| self.by_anchor.get(&a.to_ascii_lowercase()).cloned());
        self.by_dn.insert(key, v.clone());
        Ok(v)
    }
}

/// The comparison key of a member: a DN as a DN, an id without case.
fn member_key(rule: &MemberRule, v: &str) -> String {
    if rule.by_anchor {
        v.to_ascii_lowercase()
    } else {
        dn_key(v)
    }
}

/// The comparison key of a member value.
pub fn value_key(rule: &MemberRule, v: &Value) -> String {
    member_key(rule, &String::from_utf8_lossy(v.as_bytes()))
}

/// Same member sets: DNs compared as DNs, ids without case.
pub fn same_members(rule: &MemberRule, a: &[Value], b: &[Value]) -> bool {
    let key = |v: &Value| value_key(rule, v);
    let mut x: Vec<String> = a.iter().map(key).collect();
    let mut y: Vec<String> = b.iter().map(key).collect();
    x.sort();
    x.dedup();
    y.sort();
    y.dedup();
    x == y
}

/// The rule text of a member change, naming unresolved members.
pub fn rule_text(rule: &MemberRule, missing: &[String]) -> String {
    let mut s = rule.describe();
    if !missing.is_empty() {
        let sample: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        s.push_str(&format!(
            "; {} not synchronised by those steps, left out: {}{}",
            missing.len(),
            sample.join(", "),
            if missing.len() > 5 { ", …" } else { "" }
        ));
    }
    s
}
