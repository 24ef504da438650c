//! What a sync step is, as plain Rust: scope, join, create, flows and
//! deprovisioning. The script layer builds these from Rhai values; the
//! engine never sees Rhai.

use std::sync::Arc;

use crate::connector::{Connector, Scope};
use crate::model::dn::Dn;
use crate::model::{Entry, Value};

/// A computed value list (`()` = no value = clear the target attribute).
pub type EntryFn = Arc<dyn Fn(&Entry) -> Result<Vec<Value>, String> + Send + Sync>;
/// A yes/no question about a source entry.
pub type Predicate = Arc<dyn Fn(&Entry) -> Result<bool, String> + Send + Sync>;
/// A computed text (a parent DN, an RDN).
pub type TextFn = Arc<dyn Fn(&Entry) -> Result<String, String> + Send + Sync>;

/// Where a flow's value comes from.
#[derive(Clone)]
pub enum FlowSource {
    /// The values of a source attribute, as they are.
    Attr(String),
    /// A computed value.
    Compute(EntryFn),
}

/// One attribute flow: target attribute <- source.
#[derive(Clone)]
pub struct Flow {
    /// Target attribute name.
    pub target: Arc<str>,
    /// Where the value comes from.
    pub source: FlowSource,
    /// Set on create only, never updated.
    pub once: bool,
    /// How the plan names this rule ("givenName <- first", "displayName <- closure").
    pub rule: Arc<str>,
}

/// A fixed or computed text.
#[derive(Clone)]
pub enum TextRule {
    /// The same for every object.
    Fixed(String),
    /// Computed from the source entry.
    Compute(TextFn),
}

impl TextRule {
    /// The text for `e`.
    pub fn eval(&self, e: &Entry) -> Result<String, String> {
        match self {
            TextRule::Fixed(s) => Ok(s.clone()),
            TextRule::Compute(f) => f(e),
        }
    }
}

/// Where and how new target objects are made.
#[derive(Clone)]
pub struct CreateRule {
    /// Parent DN of a new object.
    pub parent: TextRule,
    /// RDN of a new object (`CN=Ann Lee`).
    pub rdn: TextRule,
    /// objectClass values of a new object.
    pub classes: Vec<String>,
}

/// What happens to a target object whose source left the scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeprovisionAction {
    /// Forget the link; leave the target object alone.
    None,
    /// Delete the target object.
    Delete,
    /// Disable the account.
    Disable,
    /// Disable, prefix the listed attributes with the date, move to `parent`.
    DisableMove,
}

impl std::str::FromStr for DeprovisionAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(DeprovisionAction::None),
            "delete" => Ok(DeprovisionAction::Delete),
            "disable" => Ok(DeprovisionAction::Disable),
            "disable_move" => Ok(DeprovisionAction::DisableMove),
            _ => Err(format!(
                "unknown deprovision action '{s}' (expected \"disable_move\", \"disable\", \"delete\" or \"none\")"
            )),
        }
    }
}

impl std::fmt::Display for DeprovisionAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeprovisionAction::None => "none",
            DeprovisionAction::Delete => "delete",
            DeprovisionAction::Disable => "disable",
            DeprovisionAction::DisableMove => "disable_move",
        })
    }
}

/// The deprovisioning policy of a step.
#[derive(Clone, Debug)]
pub struct Deprovision {
    /// What to do.
    pub action: DeprovisionAction,
    /// Where `disable_move` puts the object.
    pub parent: Option<String>,
    /// Attributes whose values get a `YYYYMMDD-` prefix (frees unique values).
    pub prefix: Vec<String>,
}

impl Default for Deprovision {
    /// Directories are never deleted from by default: disable.
    fn default() -> Self {
        Deprovision {
            action: DeprovisionAction::Disable,
            parent: None,
            prefix: Vec::new(),
        }
    }
}

/// Which source objects the step looks after.
#[derive(Clone, Default)]
pub struct ScopeRule {
    /// Search base in the source (None = the connection's base).
    pub base: Option<String>,
    /// Search depth.
    pub scope: Scope,
    /// Source filter (empty = everything).
    pub filter: String,
    /// A further test on each entry.
    pub filter_where: Option<Predicate>,
    /// Source attributes to read (None = all). Fewer attributes, less
    /// memory and time on large directories; closures see only these.
    pub attrs: Option<Vec<String>>,
}

/// Group membership carried through the links of other steps: a source
/// group's members (keys, anchors or DNs of source objects) become the
/// target objects those steps linked them to.
#[derive(Clone, Debug)]
pub struct MemberRule {
    /// Source attribute holding the members.
    pub source_attr: String,
    /// Target attribute receiving them (`member`; Graph: `members`).
    pub target_attr: Arc<str>,
    /// Steps whose links map a source member to its target object.
    pub steps: Vec<String>,
    /// True when the target names members by anchor (Graph ids), not DN.
    pub by_anchor: bool,
}

impl MemberRule {
    /// How the plan names this rule.
    pub fn describe(&self) -> String {
        format!(
            "{} <- {} through the links of {}",
            self.target_attr,
            self.source_attr,
            if self.steps.is_empty() {
                "(no step)".to_string()
            } else {
                self.steps.join(", ")
            }
        )
    }
}

/// A sync-tree: the source sub-tree below `source` is mirrored below
/// `target`; containers are created as needed and moves between them are
/// followed.
#[derive(Clone, Debug)]
pub struct TreeRule {
    /// Root of the mirrored source sub-tree.
    pub source: String,
    /// Where it is mirrored in the target.
    pub target: String,
}

impl TreeRule {
    /// The target DN for source object `dn` named `rdn` in the target:
    /// its source path below the tree root, mapped below the target root.
    pub fn map(&self, dn: &str, rdn: &str) -> Result<String, String> {
        let d = Dn::parse(dn).map_err(|e| format!("tree: {e}"))?;
        let root = Dn::parse(&self.source).map_err(|e| format!("tree 'source': {e}"))?;
        if !d.is_under(&root) || d.rdns().len() == root.rdns().len() {
            return Err(format!(
                "tree: {dn} is not below the tree's source {}",
                self.source
            ));
        }
        let between = &d.rdns()[1..d.rdns().len() - root.rdns().len()];
        let mut parts: Vec<&str> = vec![rdn];
        parts.extend(between.iter().map(String::as_str));
        parts.push(self.target.as_str());
        Ok(parts.join(","))
    }
}

/// A complete step definition.
#[derive(Clone)]
pub struct StepDef {
    /// Unique name, e.g. `hr-to-ad/users`.
    pub name: String,
    /// Where objects come from.
    pub source: Arc<dyn Connector>,
    /// Where they go.
    pub target: Arc<dyn Connector>,
    /// Which source objects.
    pub scope: ScopeRule,
    /// Join rules: (target attribute, source attribute); all must agree.
    pub join: Vec<(String, String)>,
    /// How to create unmatched objects (None = never create).
    pub create: Option<CreateRule>,
    /// Attribute flows.
    pub flows: Vec<Flow>,
    /// What happens to leavers.
    pub deprovision: Deprovision,
    /// Where target objects are looked for when joining (None = the target
    /// connection's base).
    pub target_base: Option<String>,
    /// Group membership through the links of other steps.
    pub members: Option<MemberRule>,
    /// Sync-tree: source containers mirrored in the target.
    pub tree: Option<TreeRule>,
    /// Text that changes when the rules change (so hashes are recomputed).
    pub fingerprint: String,
}

#[cfg(test)]
mod tree_tests {
    use super::TreeRule;

    #[test]
    fn tree_paths_map_below_the_target_root() {
        let t = TreeRule {
            source: "OU=Staff,DC=src,DC=example".into(),
            target: "ou=staff,dc=example,dc=com".into(),
        };
        assert_eq!(
            t.map(
                "CN=Ann,OU=Sales,OU=EMEA,OU=Staff,DC=src,DC=example",
                "cn=Ann"
            )
            .unwrap(),
            "cn=Ann,OU=Sales,OU=EMEA,ou=staff,dc=example,dc=com"
        );
        assert_eq!(
            t.map("CN=Bob,ou=staff,DC=SRC,DC=example", "uid=bob")
                .unwrap(),
            "uid=bob,ou=staff,dc=example,dc=com"
        );
        assert!(
            t.map("CN=Eve,OU=Other,DC=src,DC=example", "cn=Eve")
                .is_err()
        );
        assert!(t.map("OU=Staff,DC=src,DC=example", "ou=Staff").is_err());
    }
}
