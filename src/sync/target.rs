//! The planner's view of the target: linked objects found wherever they
//! are (one lookup each, or a bulk index when many objects changed), joins,
//! and the checks of a planned write against the target (parent containers,
//! the target's schema, each read once per plan).

use std::collections::HashMap;

use crate::connector::SearchQuery;
use crate::model::Entry;
use crate::model::dn::{Dn, dn_eq, ldap_escape};
use crate::store::Link;

use super::error::SyncError;
use super::item::{AttrChange, anchor_of};
use super::rules::StepDef;
use super::schema_check::{Checker, Problem};

/// Reads target objects, from a bulk index or one at a time.
pub(super) struct TargetView<'a> {
    step: &'a StepDef,
    pub(super) bulk: bool,
    loaded: bool,
    by_anchor: HashMap<String, Entry>,
    /// Bulk joins: per attribute (lower case), the anchors of the entries
    /// holding each value (lower case), built on the first join by it.
    join_index: HashMap<String, HashMap<String, Vec<String>>>,
    /// The checks against the target's schema, read on the first check
    /// (once per plan).
    schema: Option<Option<Checker>>,
    /// Parent containers looked up so far (lower-case DN: exists).
    parents: HashMap<String, bool>,
}

impl<'a> TargetView<'a> {
    /// A view that looks objects up one at a time until `bulk` is set.
    pub(super) fn new(step: &'a StepDef) -> Self {
        TargetView {
            step,
            bulk: false,
            loaded: false,
            by_anchor: HashMap::new(),
            join_index: HashMap::new(),
            schema: None,
            parents: HashMap::new(),
        }
    }

    /// The schema checks, the schema read once (a schema that cannot be
    /// read means no schema checks, not a failed plan).
    async fn checker(&mut self) -> Option<&mut Checker> {
        if self.schema.is_none() {
            let ad = self.step.target.flavor() == "ad";
            let schema = self.step.target.schema().await.ok().flatten();
            self.schema = Some(schema.map(|s| Checker::new(s, ad)));
        }
        self.schema.as_mut().and_then(Option::as_mut)
    }

    /// Why `parent` cannot take a new or moved object (one lookup per
    /// distinct parent per plan); `None` when it exists, will be made by the
    /// step's sync-tree, or the target is not a directory.
    pub(super) async fn parent_problem(&mut self, parent: &str, rule: &str) -> Option<Problem> {
        if !self.step.target.parents_must_exist() || parent.trim().is_empty() {
            return None;
        }
        if let Some(tree) = &self.step.tree
            && let (Ok(root), Ok(p)) = (Dn::parse(&tree.target), Dn::parse(parent))
            && p.is_under(&root)
        {
            return None;
        }
        let key = parent.to_ascii_lowercase();
        let exists = match self.parents.get(&key) {
            Some(&e) => e,
            None => {
                let e = match self.step.target.get(parent).await {
                    Ok(found) => found.is_some(),
                    // Unreadable is not proof of absence: let the write say.
                    Err(_) => true,
                };
                self.parents.insert(key, e);
                e
            }
        };
        (!exists).then(|| Problem {
            subject: format!("parent {parent}"),
            attr: None,
            rule: Some(rule.to_string()),
            reason: "no such object: the container does not exist in the target".into(),
        })
    }

    /// The problems of creating `dn` with `attrs`: its parent, and the
    /// target's schema. Empty when the write can go.
    pub(super) async fn vet_create(&mut self, dn: &str, attrs: &[AttrChange]) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Ok(d) = Dn::parse(dn) {
            let rule = if self.step.tree.is_some() {
                "tree"
            } else {
                "create 'parent'"
            };
            out.extend(self.parent_problem(&d.parent().to_string(), rule).await);
        }
        if let Some(c) = self.checker().await {
            out.extend(c.create(attrs));
        }
        out
    }

    /// The problems of updating `t` with `changes` and moving it to `new_dn`.
    pub(super) async fn vet_update(
        &mut self,
        t: &Entry,
        changes: &[AttrChange],
        new_dn: Option<&str>,
        rule: &str,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(d) = new_dn.and_then(|d| Dn::parse(d).ok()) {
            let old_parent = Dn::parse(&t.dn).map(|o| o.parent().to_string()).ok();
            let parent = d.parent().to_string();
            if old_parent.is_none_or(|o| !dn_eq(&o, &parent)) {
                out.extend(self.parent_problem(&parent, rule).await);
            }
        }
        if !changes.is_empty()
            && let Some(c) = self.checker().await
        {
            let classes: Vec<String> = t
                .values("objectClass")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            out.extend(c.update(&classes, changes));
        }
        out
    }

    async fn load(&mut self) -> Result<(), SyncError> {
        if self.loaded {
            return Ok(());
        }
        self.loaded = true;
        let q = SearchQuery {
            base: self.step.target_base.clone(),
            ..SearchQuery::default()
        };
        let map = &mut self.by_anchor;
        self.step
            .target
            .search(&q, &mut |e| {
                map.insert(anchor_of(&e).to_ascii_lowercase(), e);
                Ok(true)
            })
            .await
            .map_err(SyncError::target("reading the target"))
    }

    /// The linked object of `l`, wherever it is: in the bulk index, at the
    /// link's stored DN, or found by its anchor below the step's
    /// `target_base`, the deprovision parent and the connection's base (a
    /// target in another naming context than the connection's default,
    /// moved by hand, or moved away by deprovisioning).
    pub(super) async fn locate(&mut self, l: &Link) -> Result<Option<Entry>, SyncError> {
        let anchor = l.target_anchor.as_str();
        if self.bulk {
            self.load().await?;
            if let Some(e) = self.by_anchor.get(&anchor.to_ascii_lowercase()) {
                return Ok(Some(e.clone()));
            }
        }
        let target = &self.step.target;
        let failed = |e| SyncError::target(format!("looking up linked object {anchor}"))(e);
        if !target.locates_by_dn() {
            return target.get(anchor).await.map_err(failed);
        }
        if Dn::parse(&l.target_dn).is_ok()
            && let Some(e) = target.get(&l.target_dn).await.map_err(failed)?
            && anchor_of(&e).eq_ignore_ascii_case(anchor)
        {
            return Ok(Some(e));
        }
        let mut bases: Vec<&str> = Vec::new();
        for b in [
            self.step.target_base.as_deref(),
            self.step.deprovision.parent.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            if !bases.iter().any(|x| dn_eq(x, b)) {
                bases.push(b);
            }
        }
        for b in bases {
            if let Some(e) = target.get_under(anchor, b).await.map_err(failed)? {
                return Ok(Some(e));
            }
        }
        target.get(anchor).await.map_err(failed)
    }

    pub(super) async fn join(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<Vec<Entry>, SyncError> {
        if self.bulk {
            self.load().await?;
            let Some((first, value)) = pairs.first() else {
                return Ok(Vec::new());
            };
            let by_anchor = &self.by_anchor;
            let index = self
                .join_index
                .entry(first.to_ascii_lowercase())
                .or_insert_with(|| {
                    let mut index: HashMap<String, Vec<String>> = HashMap::new();
                    for (key, t) in by_anchor {
                        for x in t.values(first) {
                            if let Some(s) = x.display(first) {
                                let keys = index.entry(s.to_ascii_lowercase()).or_default();
                                // A value held twice (in other case) is one match.
                                if keys.last() != Some(key) {
                                    keys.push(key.clone());
                                }
                            }
                        }
                    }
                    index
                });
            let candidates = index
                .get(&value.to_ascii_lowercase())
                .map(Vec::as_slice)
                .unwrap_or_default();
            return Ok(candidates
                .iter()
                .filter_map(|key| self.by_anchor.get(key))
                .filter(|t| {
                    pairs.iter().all(|(attr, v)| {
                        t.values(attr)
                            .iter()
                            .any(|x| x.display(attr).is_some_and(|s| s.eq_ignore_ascii_case(v)))
                    })
                })
                .cloned()
                .collect());
        }
        let filter = format!(
            "(&{})",
            pairs
                .iter()
                .map(|(a, v)| format!("({a}={})", ldap_escape(v)))
                .collect::<String>()
        );
        let q = SearchQuery {
            base: self.step.target_base.clone(),
            filter,
            ..SearchQuery::default()
        };
        let mut out = Vec::new();
        self.step
            .target
            .search(&q, &mut |e| {
                out.push(e);
                Ok(out.len() < 5)
            })
            .await
            .map_err(SyncError::target("join search in the target"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory holding only `ou=here,dc=t`, counting lookups.
    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl crate::connector::Connector for Counting {
        fn kind(&self) -> &'static str {
            "ldap"
        }
        fn parents_must_exist(&self) -> bool {
            true
        }
        fn describe(&self) -> String {
            "counting".into()
        }
        fn profile(&self) -> crate::connector::Result<serde_json::Value> {
            Ok(serde_json::Value::Null)
        }
        async fn test(&self) -> crate::connector::Result<crate::connector::TestReport> {
            Ok(Default::default())
        }
        async fn search(
            &self,
            _: &SearchQuery,
            _: &mut crate::connector::Sink<'_>,
        ) -> crate::connector::Result<()> {
            Ok(())
        }
        async fn get(&self, id: &str) -> crate::connector::Result<Option<Entry>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(dn_eq(id, "ou=here,dc=t").then(|| Entry::new(id)))
        }
    }

    #[tokio::test]
    async fn parents_are_looked_up_once_each_per_plan() {
        let target = Arc::new(Counting(AtomicUsize::new(0)));
        let step = StepDef {
            name: "t".into(),
            source: target.clone(),
            target: target.clone(),
            scope: Default::default(),
            join: Vec::new(),
            create: None,
            flows: Vec::new(),
            deprovision: Default::default(),
            target_base: None,
            members: None,
            tree: None,
            fingerprint: String::new(),
        };
        let mut view = TargetView::new(&step);
        for i in 0..1000 {
            let here = if i % 2 == 0 {
                "ou=here,dc=t"
            } else {
                "OU=Here,DC=t"
            };
            assert_eq!(view.parent_problem(here, "r").await, None);
            let gone = view.parent_problem("ou=gone,dc=t", "create 'parent'").await;
            assert!(
                gone.as_ref().is_some_and(|g| g
                    .to_string()
                    .contains("parent ou=gone,dc=t (rule create 'parent'): no such object")),
                "{gone:?}"
            );
        }
        assert_eq!(target.0.load(Ordering::SeqCst), 2);
    }
}
