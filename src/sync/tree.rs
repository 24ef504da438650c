//! Sync-trees: the containers a step's creates and moves need in the
//! target, mirrored from the source, parents first.

use crate::model::Value;
use crate::model::dn::{Dn, dn_eq};

use super::error::SyncError;
use super::item::{Action, Container, Item};
use super::project::rdn_pair;
use super::rules::{StepDef, TreeRule};

/// The containers missing in the target for the creates and moves of
/// `items`, parents first, each shaped like its source counterpart (its
/// object classes; `organizationalUnit` when the source has none to give).
pub(super) async fn containers_for(
    step: &StepDef,
    tree: &TreeRule,
    items: &[Item],
) -> Result<Vec<Container>, SyncError> {
    let root = Dn::parse(&tree.target).map_err(|e| SyncError::rule("tree 'target'", e))?;
    let mut wanted: Vec<Dn> = Vec::new();
    for i in items {
        let dn = match &i.action {
            Action::Create { dn, .. } => dn,
            Action::Update {
                new_dn: Some(dn), ..
            } => dn,
            _ => continue,
        };
        let Ok(d) = Dn::parse(dn) else { continue };
        let mut p = d.parent();
        while p.is_under(&root) && p.rdns().len() > root.rdns().len() {
            if !wanted.iter().any(|w| dn_eq(&w.to_string(), &p.to_string())) {
                wanted.push(p.clone());
            }
            p = p.parent();
        }
    }
    wanted.sort_by_key(|d| d.rdns().len());
    let mut out = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for d in wanted {
        let dn = d.to_string();
        // Below a container that is missing, everything is missing.
        let parent_missing = missing.iter().any(|m| dn_eq(m, &d.parent().to_string()));
        if !parent_missing
            && step
                .target
                .get(&dn)
                .await
                .map_err(SyncError::target(format!(
                    "tree: looking for container {dn} in the target"
                )))?
                .is_some()
        {
            continue;
        }
        missing.push(dn.clone());
        let between = &d.rdns()[..d.rdns().len() - root.rdns().len()];
        let src_dn = format!("{},{}", between.join(","), tree.source);
        let src = step
            .source
            .get(&src_dn)
            .await
            .map_err(SyncError::source(format!(
                "tree: reading container {src_dn} in the source"
            )))?;
        let rdn = d.rdn().unwrap_or_default();
        let (rattr, rval) = rdn_pair(rdn)
            .ok_or_else(|| SyncError::rule_text("tree", format!("tree: {dn}: unusable RDN")))?;
        let classes: Vec<Value> = match &src {
            Some(s) if !s.values("objectClass").is_empty() => s.values("objectClass").to_vec(),
            _ if rattr.eq_ignore_ascii_case("ou") => vec![Value::Text("organizationalUnit".into())],
            _ => {
                return Err(SyncError::rule_text(
                    "tree",
                    format!(
                        "tree: container {dn} is missing in the target and {src_dn} cannot be read in the source to copy its classes"
                    ),
                ));
            }
        };
        out.push(Container {
            dn,
            attrs: vec![
                ("objectClass".to_string(), classes),
                (rattr, vec![Value::Text(rval)]),
            ],
        });
    }
    Ok(out)
}
