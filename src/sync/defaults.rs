//! The defaults a step definition gets from its other rules and from its
//! target, decided here so every caller (the Rhai `sync_step`, a Rust test,
//! the service) gets the same ones from the same plain [`StepDef`]:
//! - a sync-tree's roots are the default scope base and join base;
//! - an Entra ID (Graph) step works in the collection it creates in: with
//!   `create: #{ parent: "groups" }` and no `target_base`, joins and the
//!   bulk read look in "groups", not in "users";
//! - objects the target cannot disable (Entra groups): a groups step whose deprovisioning
//!   was not given leaves them (`"none"`).

use super::rules::{CreateRule, DeprovisionAction, StepDef, TextRule};

/// Fills in the defaults of `def` (see the module documentation). Only
/// what was not given changes: `deprovision_given` says whether the
/// definition's deprovisioning was chosen (otherwise it is the default,
/// which a Graph groups step replaces by "none").
pub fn apply_defaults(def: &mut StepDef, deprovision_given: bool) {
    if let Some(t) = &def.tree {
        if def.scope.base.is_none() {
            def.scope.base = Some(t.source.clone());
        }
        if def.target_base.is_none() {
            def.target_base = Some(t.target.clone());
        }
    }
    // An Entra step works in the collection it creates in (joins and the
    // bulk read look there, not in "users").
    if def.target.create_parent_is_collection()
        && def.target_base.is_none()
        && let Some(CreateRule {
            parent: TextRule::Fixed(p),
            ..
        }) = &def.create
        && !p.trim().is_empty()
    {
        def.target_base = Some(p.trim().to_string());
    }
    // Entra groups cannot be disabled: by default a groups step leaves them.
    if !deprovision_given && !def.target.can_disable_in(def.target_base.as_deref()) {
        def.deprovision.action = DeprovisionAction::None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sync::rules::{Deprovision, TreeRule};

    /// A connection that is only a kind: the defaults look at nothing else.
    struct Kind(&'static str);

    #[async_trait::async_trait]
    impl crate::connector::Connector for Kind {
        fn kind(&self) -> &'static str {
            self.0
        }
        // The two capabilities the defaults ask, as the Graph connector
        // answers them.
        fn create_parent_is_collection(&self) -> bool {
            self.0 == "graph"
        }
        fn can_disable_in(&self, base: Option<&str>) -> bool {
            !(self.0 == "graph" && base.is_some_and(|b| b.eq_ignore_ascii_case("groups")))
        }
        fn describe(&self) -> String {
            self.0.into()
        }
        fn profile(&self) -> crate::connector::Result<serde_json::Value> {
            Ok(serde_json::Value::Null)
        }
        async fn test(&self) -> crate::connector::Result<crate::connector::TestReport> {
            Ok(Default::default())
        }
        async fn search(
            &self,
            _: &crate::connector::SearchQuery,
            _: &mut crate::connector::Sink<'_>,
        ) -> crate::connector::Result<()> {
            Ok(())
        }
        async fn get(&self, _: &str) -> crate::connector::Result<Option<crate::model::Entry>> {
            Ok(None)
        }
    }

    /// A step into a `kind` target that creates in the fixed `parent`.
    fn def(kind: &'static str, parent: &str) -> StepDef {
        StepDef {
            name: "s".into(),
            source: Arc::new(Kind("csv")),
            target: Arc::new(Kind(kind)),
            scope: Default::default(),
            join: Vec::new(),
            create: Some(CreateRule {
                parent: TextRule::Fixed(parent.into()),
                rdn: TextRule::Fixed(String::new()),
                classes: Vec::new(),
            }),
            flows: Vec::new(),
            deprovision: Deprovision::default(),
            target_base: None,
            members: None,
            tree: None,
            fingerprint: String::new(),
        }
    }

    #[test]
    fn an_entra_groups_step_works_in_groups_and_leaves_leavers_by_default() {
        let mut d = def("graph", " groups ");
        apply_defaults(&mut d, false);
        assert_eq!(d.target_base.as_deref(), Some("groups"));
        assert_eq!(d.deprovision.action, DeprovisionAction::None);

        // A chosen deprovisioning stays.
        let mut d = def("graph", "groups");
        apply_defaults(&mut d, true);
        assert_eq!(d.target_base.as_deref(), Some("groups"));
        assert_eq!(d.deprovision.action, DeprovisionAction::Disable);

        // A users step: its collection, and accounts are disabled.
        let mut d = def("graph", "users");
        apply_defaults(&mut d, false);
        assert_eq!(d.target_base.as_deref(), Some("users"));
        assert_eq!(d.deprovision.action, DeprovisionAction::Disable);

        // A given target_base wins over the create parent.
        let mut d = def("graph", "users");
        d.target_base = Some("groups".into());
        apply_defaults(&mut d, false);
        assert_eq!(d.target_base.as_deref(), Some("groups"));
        assert_eq!(d.deprovision.action, DeprovisionAction::None);
    }

    #[test]
    fn other_targets_keep_their_base_and_deprovisioning() {
        for kind in ["ldap", "csv", "ldif"] {
            let mut d = def(kind, "groups");
            apply_defaults(&mut d, false);
            assert_eq!(d.target_base, None, "{kind}");
            assert_eq!(d.deprovision.action, DeprovisionAction::Disable, "{kind}");
        }
    }

    #[test]
    fn a_tree_gives_the_scope_base_and_the_join_base_unless_given() {
        let tree = TreeRule {
            source: "ou=staff,dc=src".into(),
            target: "ou=staff,dc=dst".into(),
        };
        let mut d = def("ldap", "");
        d.tree = Some(tree.clone());
        apply_defaults(&mut d, false);
        assert_eq!(d.scope.base.as_deref(), Some("ou=staff,dc=src"));
        assert_eq!(d.target_base.as_deref(), Some("ou=staff,dc=dst"));

        let mut d = def("ldap", "");
        d.tree = Some(tree);
        d.scope.base = Some("ou=sales,ou=staff,dc=src".into());
        d.target_base = Some("dc=dst".into());
        apply_defaults(&mut d, false);
        assert_eq!(d.scope.base.as_deref(), Some("ou=sales,ou=staff,dc=src"));
        assert_eq!(d.target_base.as_deref(), Some("dc=dst"));
    }
}
