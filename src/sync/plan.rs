//! The planner: reads the source (streaming), follows stored links (and the
//! kept links of deprovisioned objects, to restore a returning source),
//! joins unlinked objects, decides per object what a run would write, and
//! checks each write against the target (parents, schema). Preview prints
//! this plan; run executes exactly this plan.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::connector::SearchQuery;
use crate::model::dn::{Dn, dn_eq, ldap_escape};
use crate::model::{Entry, Value};
use crate::store::{Link, StateStore};

use super::hash::entry_hash;
use super::members::{self, MemberIndex};
use super::rules::{DeprovisionAction, FlowSource, StepDef};
use super::schema_check::{Checker, Problem};
use super::source::Reader;

/// Where a planned create keeps its resolved members (see [`create_attrs`]).
const RESOLVED_MEMBERS: &str = "idsync-resolved-members";

/// One attribute change and the rule that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrChange {
    /// Target attribute.
    pub attr: Arc<str>,
    /// Values now in the target.
    pub old: Vec<Value>,
    /// Values the run writes (empty = clear).
    pub new: Vec<Value>,
    /// The flow, in words.
    pub rule: Arc<str>,
}

/// What a run does to one object.
#[derive(Clone, Debug)]
pub enum Action {
    /// Create a target object.
    Create {
        /// The new DN.
        dn: String,
        /// The source entry in compact form ([`Entry::to_compact`]): the
        /// attributes are built by [`create_attrs`] when the plan is shown or
        /// applied, so a plan of many creates stays small in memory.
        source: Vec<u8>,
    },
    /// Update a linked (or newly joined) target object.
    Update {
        /// The target's anchor.
        target_anchor: String,
        /// The target's current DN.
        target_dn: String,
        /// Attribute changes (may be empty when only the link or hash is new).
        changes: Vec<AttrChange>,
        /// New DN when the create rule now gives another place or name.
        new_dn: Option<String>,
        /// True when this run makes the link (join).
        joined: bool,
        /// The departed source whose target this object takes over (a
        /// rehire, or a re-import under a new key): its link is dropped and
        /// it is not deprovisioned.
        takes_over: Option<String>,
        /// True when the object was deprovisioned and its source is back
        /// (a rehire): the run enables it again; `new_dn` moves it back to
        /// where the create rule puts it and `changes` drop the date prefix.
        restore: bool,
    },
    /// Deprovision a target object whose source left the scope.
    Deprovision {
        /// The target's anchor.
        target_anchor: String,
        /// The target's DN.
        target_dn: String,
        /// The policy applied.
        how: DeprovisionAction,
        /// Prefix changes (disable_move).
        changes: Vec<AttrChange>,
        /// Where it moves (disable_move).
        move_to: Option<String>,
    },
    /// The target would refuse the write (a missing parent, its schema):
    /// nothing is sent, and the object fails.
    Rejected {
        /// The target object (the DN it would have).
        object: String,
        /// Each reason, naming the attribute and the rule.
        problems: Vec<Problem>,
    },
    /// The object cannot be planned (ambiguous join, failing flow, ...).
    Error {
        /// Why, in words.
        message: String,
    },
}

/// One object's entry in the plan.
#[derive(Clone, Debug)]
pub struct Item {
    /// Source anchor (for deprovisions: of the departed source object).
    pub source_anchor: String,
    /// Source DN or key ("" for deprovisions).
    pub source_dn: String,
    /// Hash to store when applied.
    pub source_hash: String,
    /// The DN the create rule gives now (stored to notice later renames).
    pub desired_dn: Option<String>,
    /// What to do.
    pub action: Action,
}

/// A container a sync-tree needs in the target before its objects.
#[derive(Clone, Debug, Default)]
pub struct Container {
    /// Its DN in the target.
    pub dn: String,
    /// Its attributes (object classes, naming attribute).
    pub attrs: Vec<(String, Vec<Value>)>,
}

/// Where the change cursor of a step is kept in the store's settings (as
/// `<rules tag>|<cursor>`, so a change of the rules reads in full again).
pub fn cursor_key(step: &str) -> String {
    format!("sync-cursor/{step}")
}

/// A short tag of the step's rules.
fn rules_tag(fingerprint: &str) -> String {
    entry_hash(&Entry::new(""), fingerprint)
}

/// A whole plan for one step.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Step name.
    pub step: String,
    /// The source's change cursor after this read (saved by a successful run).
    pub cursor: Option<String>,
    /// True when only the source's changes were read.
    pub incremental: bool,
    /// Containers to create first, parents before children (sync-trees).
    pub containers: Vec<Container>,
    /// Objects that need a write (or failed to plan).
    pub items: Vec<Item>,
    /// How many items were planned (`items.len()` once they are collected).
    pub planned: usize,
    /// Objects skipped because nothing changed.
    pub unchanged: usize,
    /// Links the step had before this run.
    pub links_before: usize,
    /// Source objects read (in scope).
    pub source_count: usize,
}

impl Plan {
    /// How many objects the plan deprovisions (what the deletion threshold
    /// counts). Leavers under "none" count too: their links are dropped, and
    /// an empty source would otherwise unlink everything silently.
    pub fn deprovision_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(&i.action, Action::Deprovision { .. }))
            .count()
    }
}

/// Options of a planning pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Ignore stored hashes and compare every object.
    pub full: bool,
    /// Date prefix for disable_move (`YYYYMMDD`).
    pub today_ms: i64,
}

/// Above this many changed objects the target is read once in bulk instead
/// of one lookup per object.
const BULK_READ_ABOVE: usize = 200;

/// Where a planning pass sends its items, in the order it decides them.
pub type ItemSender = tokio::sync::mpsc::UnboundedSender<Item>;

/// True when a run of `step` may write while the source is still being read
/// and planned ([`plan_into`] then reads and plans at the same time). Only a
/// step without links (a first run): it cannot deprovision anything, so the
/// deletion threshold has nothing to refuse, and no object in scope can be
/// linked to a target another one joins. Not for memberships (they wait for
/// other steps' links) nor sync-trees (their containers come first).
pub fn streams(step: &StepDef, links: &[Link]) -> bool {
    links.is_empty() && step.members.is_none() && step.tree.is_none()
}

/// Builds the whole plan for `step`: what preview shows, and what a run
/// applies after the deletion threshold has seen it.
pub async fn plan(
    step: &StepDef,
    store: &dyn StateStore,
    opts: PlanOptions,
) -> Result<Plan, String> {
    let links = store.links(&step.name).map_err(|e| e.to_string())?;
    plan_with(step, store, links, opts).await
}

/// [`plan`] with the step's links already read.
pub async fn plan_with(
    step: &StepDef,
    store: &dyn StateStore,
    links: Vec<Link>,
    opts: PlanOptions,
) -> Result<Plan, String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut plan = plan_into(step, store, links, opts, &tx).await?;
    drop(tx);
    while let Ok(item) = rx.try_recv() {
        plan.items.push(item);
    }
    plan.containers = match &step.tree {
        Some(tree) => containers_for(step, tree, &plan.items).await?,
        None => Vec::new(),
    };
    Ok(plan)
}

/// Plans `step` against its `links`, sending each item to `out` once
/// nothing read later can change it; returns the rest of the plan (no items,
/// no containers; `planned` counts what was sent). When [`streams`] holds,
/// the source is read and planned at the same time, so that a run can write
/// the first objects while the rest are still read; otherwise the whole
/// source is read first (following links needs every object in scope).
/// Stops early, without error, when `out` is closed.
pub async fn plan_into(
    step: &StepDef,
    store: &dyn StateStore,
    links: Vec<Link>,
    opts: PlanOptions,
    out: &ItemSender,
) -> Result<Plan, String> {
    let stream = streams(step, &links);
    let links_before = links.len();
    let by_source: HashMap<String, Link> = links
        .into_iter()
        .map(|l| (l.source_anchor.clone(), l))
        .collect();
    let linked_targets: HashMap<String, String> = by_source
        .values()
        .map(|l| {
            (
                l.target_anchor.to_ascii_lowercase(),
                l.source_anchor.clone(),
            )
        })
        .collect();
    // Deprovisioned objects whose source may come back (a rehire).
    let kept: HashMap<String, Link> = store
        .deprovisioned_links(&step.name)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| (l.source_anchor.clone(), l))
        .collect();

    // Membership through other steps' links: their signature joins the hash.
    let mut member_index = match &step.members {
        Some(rule) => Some(MemberIndex::load(rule, store)?),
        None => None,
    };
    let fingerprint = match &member_index {
        Some(ix) => format!("{}|members:{}", step.fingerprint, ix.signature),
        None => step.fingerprint.clone(),
    };
    // Incremental where the source can tell what changed (LDAP, Graph
    // delta), except for membership steps, whose groups are re-planned when
    // other steps' links change. A cursor read under other rules (or none)
    // means a full round.
    let cursor = if opts.full || step.members.is_some() {
        None
    } else {
        store
            .get_setting(&cursor_key(&step.name))
            .map_err(|e| e.to_string())?
            .and_then(|v| {
                let (rules, c) = v.split_once('|')?;
                (rules == rules_tag(&fingerprint)).then(|| c.to_string())
            })
            .filter(|c| !c.is_empty())
    };
    let reader = Reader {
        step,
        fingerprint: &fingerprint,
        by_source: &by_source,
        full: opts.full,
    };

    // 1. and 2.: read the source, plan what changed against the target.
    let (changed_tx, changed_rx) = tokio::sync::mpsc::unbounded_channel();
    let read = reader.read(cursor.as_deref(), changed_tx, out);
    let mut target = TargetView::new(step);
    let mut claimed: HashSet<String> = HashSet::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut planner = Phase2 {
        step,
        target: &mut target,
        claimed: &mut claimed,
        taken: &mut taken,
        member_index: member_index.as_mut(),
        out,
        planned: 0,
    };
    let read = if stream {
        // No links: no object's plan depends on which others are in scope.
        let seen = HashSet::new();
        let known = Known {
            by_source: &by_source,
            kept: &kept,
            linked_targets: &linked_targets,
            seen: &seen,
        };
        let (read, ()) = tokio::join!(read, planner.run(&known, changed_rx));
        read?
    } else {
        let read = read.await?;
        let known = Known {
            by_source: &by_source,
            kept: &kept,
            linked_targets: &linked_targets,
            seen: &read.seen,
        };
        planner.run(&known, changed_rx).await;
        read
    };
    let mut planned = planner.planned + read.sent;

    // 3. Leavers: linked sources not seen in scope.
    let today = super::clock::yyyymmdd(opts.today_ms);
    let mut leavers: Vec<&Link> = by_source
        .values()
        .filter(|l| !read.seen.contains(&l.source_anchor) && !taken.contains(&l.source_anchor))
        .collect();
    leavers.sort_by(|a, b| a.target_dn.cmp(&b.target_dn));
    for l in leavers {
        if out
            .send(deprovision_item(step, &mut target, l, &today).await)
            .is_err()
        {
            break;
        }
        planned += 1;
    }
    Ok(Plan {
        step: step.name.clone(),
        cursor: read
            .round
            .map(|r| format!("{}|{}", rules_tag(&fingerprint), r.cursor)),
        incremental: read.incremental,
        containers: Vec::new(),
        items: Vec::new(),
        planned,
        unchanged: read.unchanged,
        links_before,
        source_count: read.source_count,
    })
}

/// Phase 2 of planning: each changed object against the target.
struct Phase2<'p, 'a> {
    step: &'a StepDef,
    target: &'p mut TargetView<'a>,
    claimed: &'p mut HashSet<String>,
    taken: &'p mut HashSet<String>,
    member_index: Option<&'p mut MemberIndex>,
    out: &'p ItemSender,
    /// Items sent.
    planned: usize,
}

impl Phase2<'_, '_> {
    /// Plans the objects queued on `changed` as they come. Above
    /// [`BULK_READ_ABOVE`] of them the target is read once (before any item
    /// is sent, so before a run writes) and each item is sent as soon as it
    /// is planned; below, each object is looked up, and the items are sent
    /// when all are planned (a lookup must not see this run's own writes).
    async fn run(
        &mut self,
        known: &Known<'_>,
        mut changed: tokio::sync::mpsc::UnboundedReceiver<(Vec<u8>, String)>,
    ) {
        let mut first = Vec::new();
        while first.len() <= BULK_READ_ABOVE {
            match changed.recv().await {
                Some(c) => first.push(c),
                None => break,
            }
        }
        let bulk = first.len() > BULK_READ_ABOVE;
        self.target.bulk = bulk;
        let mut held = Vec::new();
        let mut first = first.into_iter();
        loop {
            let next = match first.next() {
                Some(c) => Some(c),
                None => changed.recv().await,
            };
            let Some((compact, h)) = next else { break };
            let Some(e) = Entry::from_compact(&compact) else {
                continue;
            };
            drop(compact);
            let anchor = anchor_of(&e);
            let item = plan_one(
                self.step,
                self.target,
                known,
                self.claimed,
                self.taken,
                self.member_index.as_deref_mut(),
                &e,
                &anchor,
                h,
            )
            .await;
            if !bulk {
                held.push(item);
                continue;
            }
            if self.out.send(item).is_err() {
                return;
            }
            self.planned += 1;
            // Let a run's writes in between (planning rarely waits).
            if self.planned.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
        for item in held {
            if self.out.send(item).is_err() {
                return;
            }
            self.planned += 1;
        }
    }
}

pub(super) fn anchor_of(e: &Entry) -> String {
    e.anchor.clone().unwrap_or_else(|| e.dn.clone())
}

/// Reads target objects, from a bulk index or one at a time.
struct TargetView<'a> {
    step: &'a StepDef,
    bulk: bool,
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
    fn new(step: &'a StepDef) -> Self {
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
    async fn parent_problem(&mut self, parent: &str, rule: &str) -> Option<Problem> {
        if self.step.target.kind() != "ldap" || parent.trim().is_empty() {
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
    async fn vet_create(&mut self, dn: &str, attrs: &[AttrChange]) -> Vec<Problem> {
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
    async fn vet_update(
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

    async fn load(&mut self) -> Result<(), String> {
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
            .map_err(|e| format!("reading the target: {e}"))
    }

    /// The linked object of `l`, wherever it is: in the bulk index, at the
    /// link's stored DN, or found by its anchor below the step's
    /// `target_base`, the deprovision parent and the connection's base (a
    /// target in another naming context than the connection's default,
    /// moved by hand, or moved away by deprovisioning).
    async fn locate(&mut self, l: &Link) -> Result<Option<Entry>, String> {
        let anchor = l.target_anchor.as_str();
        if self.bulk {
            self.load().await?;
            if let Some(e) = self.by_anchor.get(&anchor.to_ascii_lowercase()) {
                return Ok(Some(e.clone()));
            }
        }
        let target = &self.step.target;
        let failed = |e: crate::connector::Error| format!("looking up linked object {anchor}: {e}");
        if target.kind() != "ldap" {
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

    async fn join(&mut self, pairs: &[(String, String)]) -> Result<Vec<Entry>, String> {
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
            .map_err(|e| format!("join search in the target: {e}"))?;
        Ok(out)
    }
}

/// The values a flow gives for `e`.
fn flow_values(src: &FlowSource, e: &Entry) -> Result<Vec<Value>, String> {
    match src {
        FlowSource::Attr(a) => Ok(e
            .attr(a)
            .map(|at| {
                at.values
                    .iter()
                    .map(|v| {
                        v.display(&at.name)
                            .map(Value::Text)
                            .unwrap_or_else(|| v.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()),
        FlowSource::Compute(f) => f(e),
    }
}

/// Same values, ignoring order.
fn same_values(a: &[Value], b: &[Value]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut x: Vec<&[u8]> = a.iter().map(|v| v.as_bytes()).collect();
    let mut y: Vec<&[u8]> = b.iter().map(|v| v.as_bytes()).collect();
    x.sort_unstable();
    y.sort_unstable();
    x == y
}

/// Target values as comparable text (GUID/SID attributes in canonical form).
fn target_values(t: &Entry, attr: &str) -> Vec<Value> {
    match t.attr(attr) {
        Some(a) => a
            .values
            .iter()
            .map(|v| {
                v.display(&a.name)
                    .map(Value::Text)
                    .unwrap_or_else(|| v.clone())
            })
            .collect(),
        None => Vec::new(),
    }
}

fn desired_dn(step: &StepDef, e: &Entry) -> Result<Option<String>, String> {
    let Some(c) = &step.create else {
        return Ok(None);
    };
    let rdn = c.rdn.eval(e).map_err(|m| format!("create 'rdn': {m}"))?;
    if let Some(tree) = &step.tree {
        // The place comes from the tree; the name from the rule or the source.
        let rdn = if rdn.trim().is_empty() {
            Dn::parse(&e.dn)
                .ok()
                .and_then(|d| d.rdn().map(str::to_string))
                .ok_or_else(|| format!("tree: {} has no RDN", e.dn))?
        } else {
            rdn
        };
        return tree.map(&e.dn, &rdn).map(Some);
    }
    let parent = c
        .parent
        .eval(e)
        .map_err(|m| format!("create 'parent': {m}"))?;
    let (rdn_t, parent_t) = (rdn.trim(), parent.trim());
    // A file target names a row by its key (`rdn: |e| e.uid`, no parent),
    // and an Entra target names only its collection (`parent: "users"`, no
    // rdn): neither is a DN, and a lone name without '=' is taken as it is.
    let plain_name = (parent_t.is_empty() && !rdn_t.is_empty() && !rdn_t.contains('='))
        || (rdn_t.is_empty() && !parent_t.is_empty() && !parent_t.contains(['=', ',']));
    let dn = match (rdn_t.is_empty(), parent_t.is_empty()) {
        (true, true) => return Err("create rule gives an empty name".into()),
        (true, false) => parent,
        (false, true) => rdn,
        (false, false) => format!("{rdn},{parent}"),
    };
    if let Err(e) = Dn::parse(&dn)
        && !plain_name
    {
        return Err(format!("create rule gives {e}"));
    }
    Ok(Some(dn))
}

/// What the planner knows about links when it plans one object.
struct Known<'a> {
    /// Links by source anchor.
    by_source: &'a HashMap<String, Link>,
    /// Kept links of deprovisioned objects, by source anchor.
    kept: &'a HashMap<String, Link>,
    /// Source anchor by lowercased target anchor.
    linked_targets: &'a HashMap<String, String>,
    /// Source anchors in scope this run.
    seen: &'a HashSet<String>,
}

#[allow(clippy::too_many_arguments)]
async fn plan_one(
    step: &StepDef,
    target: &mut TargetView<'_>,
    known: &Known<'_>,
    claimed: &mut HashSet<String>,
    taken: &mut HashSet<String>,
    member_index: Option<&mut MemberIndex>,
    e: &Entry,
    anchor: &str,
    hash: String,
) -> Item {
    let mk = |action: Action, desired: Option<String>| Item {
        source_anchor: anchor.to_string(),
        source_dn: e.dn.clone(),
        source_hash: hash.clone(),
        desired_dn: desired,
        action,
    };
    let err = |message: String| mk(Action::Error { message }, None);
    let desired = match desired_dn(step, e) {
        Ok(d) => d,
        Err(m) => return err(m),
    };
    // Projection of every flow.
    let mut projected: Vec<(usize, Vec<Value>)> = Vec::with_capacity(step.flows.len());
    for (i, f) in step.flows.iter().enumerate() {
        match flow_values(&f.source, e) {
            Ok(v) => projected.push((i, v)),
            Err(m) => return err(format!("flow {}: {m}", f.rule)),
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
    let link = known.by_source.get(anchor);
    let kept = match link {
        Some(_) => None,
        None => known.kept.get(anchor).filter(|k| {
            !known
                .linked_targets
                .contains_key(&k.target_anchor.to_ascii_lowercase())
        }),
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
        return err(format!(
            "{} is deprovisioned and linked to this source, but another source object of this run claims it",
            t.dn
        ));
    }
    let found = match found {
        Some(t) => Some(t),
        None if step.join.is_empty() => None,
        None => {
            let mut pairs = Vec::new();
            for (tattr, sattr) in &step.join {
                match e.first(sattr) {
                    Some(v) if !v.is_empty() => pairs.push((tattr.clone(), v)),
                    _ => {
                        pairs.clear();
                        break;
                    }
                }
            }
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
                            if let Some(other) = known
                                .linked_targets
                                .get(&ta)
                                .filter(|s| s.as_str() != anchor)
                            {
                                if known.seen.contains(other) {
                                    return err(format!(
                                        "join matches {}, which is already linked to source '{other}'",
                                        t.dn
                                    ));
                                }
                                // Its source has left: this object takes the target over.
                                taken.insert(other.clone());
                                takes_over = Some(other.clone());
                            }
                            if !claimed.insert(ta) {
                                return err(format!(
                                    "join matches {}, which another source object of this run also matches",
                                    t.dn
                                ));
                            }
                            joined = true;
                            Some(t)
                        }
                        n => {
                            let dns: Vec<&str> =
                                hits.iter().take(3).map(|h| h.dn.as_str()).collect();
                            return err(format!(
                                "ambiguous join: {n} target objects match ({}); fix the data or the join rules",
                                dns.join("; ")
                            ));
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
                        Err(e) => return err(format!("reading the members of {}: {e}", t.dn)),
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
                                    return err(format!(
                                        "checking member {} of {}: {e}",
                                        String::from_utf8_lossy(v.as_bytes()),
                                        t.dn
                                    ));
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
                return err("no target object matches and the step has no create rule".into());
            };
            // The flows were evaluated above (so a failing flow is an error now);
            // the attributes themselves are rebuilt by `create_attrs` when the
            // plan is printed or applied, from this compact copy of the source.
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
            let attrs = attrs_from(
                step,
                &dn,
                |i, _| {
                    Ok(projected
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default())
                },
                members,
            );
            let problems = match attrs {
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
            let source = match resolved {
                Some((vals, _)) if !vals.is_empty() => {
                    let mut with = e.clone();
                    with.set(RESOLVED_MEMBERS, vals);
                    with.to_compact()
                }
                _ => e.to_compact(),
            };
            mk(Action::Create { dn, source }, desired)
        }
    }
}

/// The containers missing in the target for the creates and moves of
/// `items`, parents first, each shaped like its source counterpart (its
/// object classes; `organizationalUnit` when the source has none to give).
async fn containers_for(
    step: &StepDef,
    tree: &super::rules::TreeRule,
    items: &[Item],
) -> Result<Vec<Container>, String> {
    let root = Dn::parse(&tree.target).map_err(|e| format!("tree 'target': {e}"))?;
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
                .map_err(|e| format!("tree: looking for container {dn} in the target: {e}"))?
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
            .map_err(|e| format!("tree: reading container {src_dn} in the source: {e}"))?;
        let rdn = d.rdn().unwrap_or_default();
        let (rattr, rval) = rdn_pair(rdn).ok_or_else(|| format!("tree: {dn}: unusable RDN"))?;
        let classes: Vec<Value> = match &src {
            Some(s) if !s.values("objectClass").is_empty() => s.values("objectClass").to_vec(),
            _ if rattr.eq_ignore_ascii_case("ou") => vec![Value::Text("organizationalUnit".into())],
            _ => {
                return Err(format!(
                    "tree: container {dn} is missing in the target and {src_dn} cannot be read in the source to copy its classes"
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

/// The attributes of a new target object for `source` (compact) at `dn`:
/// the create rule's classes, every flow with a value (`once` flows
/// included), and the naming attribute. Preview and apply both call this.
pub fn create_attrs(step: &StepDef, dn: &str, source: &[u8]) -> Result<Vec<AttrChange>, String> {
    let e = Entry::from_compact(source).ok_or("internal: unreadable planned entry")?;
    attrs_from(
        step,
        dn,
        |_, f| flow_values(&f.source, &e),
        e.values(RESOLVED_MEMBERS),
    )
}

/// [`create_attrs`] from each flow's values (`values(index, flow)`) and the
/// resolved members.
fn attrs_from(
    step: &StepDef,
    dn: &str,
    values: impl Fn(usize, &super::rules::Flow) -> Result<Vec<Value>, String>,
    members: &[Value],
) -> Result<Vec<AttrChange>, String> {
    let mut attrs: Vec<AttrChange> = Vec::new();
    if let Some(c) = &step.create
        && !c.classes.is_empty()
    {
        attrs.push(AttrChange {
            attr: "objectClass".into(),
            old: vec![],
            new: c.classes.iter().map(|s| Value::Text(s.clone())).collect(),
            rule: "create class".into(),
        });
    }
    for (i, f) in step.flows.iter().enumerate() {
        let vals = values(i, f).map_err(|m| format!("flow {}: {m}", f.rule))?;
        if vals.is_empty() {
            continue;
        }
        attrs.push(AttrChange {
            attr: f.target.clone(),
            old: vec![],
            new: vals,
            rule: f.rule.clone(),
        });
    }
    if let Some(rule) = &step.members {
        let vals = members;
        if !vals.is_empty() {
            attrs.push(AttrChange {
                attr: rule.target_attr.clone(),
                old: vec![],
                new: vals.to_vec(),
                rule: rule.describe().into(),
            });
        }
    }
    // The naming attribute must be present in the new entry.
    if let Some((rattr, rval)) = Dn::parse(dn)
        .ok()
        .and_then(|d| d.rdn().map(rdn_pair))
        .flatten()
        && !attrs.iter().any(|a| a.attr.eq_ignore_ascii_case(&rattr))
    {
        attrs.push(AttrChange {
            attr: rattr.into(),
            old: vec![],
            new: vec![Value::Text(rval)],
            rule: "create rdn".into(),
        });
    }
    Ok(attrs)
}

/// The attribute and unescaped value of a single-valued RDN.
pub(crate) fn rdn_pair(rdn: &str) -> Option<(String, String)> {
    let (a, v) = rdn.split_once('=')?;
    if rdn.contains('+') && !rdn.contains("\\+") {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    let mut chars = v.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let Some(n) = chars.next() else { break };
            if n.is_ascii_hexdigit() {
                let m = chars.next().unwrap_or('0');
                if let Ok(b) = u8::from_str_radix(&format!("{n}{m}"), 16) {
                    out.push(b);
                }
            } else {
                let mut buf = [0u8; 4];
                out.extend_from_slice(n.encode_utf8(&mut buf).as_bytes());
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    Some((a.trim().to_string(), out))
}

/// True when `s` starts with a deprovision date prefix (`YYYYMMDD-`).
fn date_prefixed(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    (b.len() > 9 && b[..8].iter().all(u8::is_ascii_digit) && b[8] == b'-').then(|| &s[9..])
}

/// For a restored object: the deprovision prefix taken off the attributes
/// the step prefixes (those a flow does not write already in `flowed`).
fn unprefix_changes(step: &StepDef, t: &Entry, flowed: &[AttrChange]) -> Vec<AttrChange> {
    let mut out = Vec::new();
    for attr in &step.deprovision.prefix {
        if flowed.iter().any(|c| c.attr.eq_ignore_ascii_case(attr)) {
            continue;
        }
        let old = target_values(t, attr);
        let new: Vec<Value> = old
            .iter()
            .map(|v| {
                let s = String::from_utf8_lossy(v.as_bytes());
                match date_prefixed(&s) {
                    Some(rest) => Value::Text(rest.to_string()),
                    None => v.clone(),
                }
            })
            .collect();
        if !same_values(&old, &new) {
            out.push(AttrChange {
                attr: attr.as_str().into(),
                old,
                new,
                rule: "restore: deprovision date prefix removed".into(),
            });
        }
    }
    out
}

async fn deprovision_item(
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
            Err(m) => {
                return Item {
                    source_anchor: l.source_anchor.clone(),
                    source_dn: String::new(),
                    source_hash: String::new(),
                    desired_dn: None,
                    action: Action::Error { message: m },
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory holding only `ou=here,dc=t`, counting lookups.
    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl crate::connector::Connector for Counting {
        fn kind(&self) -> &'static str {
            "ldap"
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

    #[test]
    fn rdn_values_are_unescaped() {
        assert_eq!(
            rdn_pair("CN=Lee\\, Ann"),
            Some(("CN".into(), "Lee, Ann".into()))
        );
        assert_eq!(rdn_pair("uid=a\\2cb"), Some(("uid".into(), "a,b".into())));
        assert_eq!(rdn_pair("cn=Zo\\c3\\ab"), Some(("cn".into(), "Zoë".into())));
        assert!(same_values(
            &[Value::Text("a".into()), Value::Text("b".into())],
            &[Value::Text("b".into()), Value::Text("a".into())]
        ));
    }
}
