//! Executing a plan: the writes, several in flight, with links stored in
//! batches after the target has the data (so a crash never leaves a link
//! to a write that did not happen). One object's failure is logged and the
//! run goes on; it is retried next run because its link or hash is not
//! updated. A lost connection ends the run. A cancelled run (see
//! [`super::cancel`]) takes no new object, lets the writes in flight finish
//! and stores their links.

use crate::connector::{Change, Error as CError};
use crate::model::dn::{Dn, dn_eq};
use crate::store::{Link, StateStore};

use super::cancel::Cancel;
use super::clock;
use super::error::SyncError;
use super::item::{Action, AttrChange, Container, Item, ItemReceiver};
use super::log::RunLog;
use super::readback::{self, Marks, Pending, Tag};
use super::rules::{DeprovisionAction, StepDef};

/// How many objects are written between two link commits.
const COMMIT_EVERY: usize = 500;

/// What a run did (defined in [`super::counts`]; re-exported here so the
/// old path `sync::apply::Counts` keeps working).
pub use super::counts::Counts;

/// One failed object.
#[derive(Clone, Debug)]
pub struct Failure {
    /// DN or anchor.
    pub object: String,
    /// What was being done: "create", "update", "join", "rename/move",
    /// "deprovision (disable_move)", "plan" (the object could not be
    /// planned), "check (not sent)" (the target's schema or tree would refuse
    /// it), "create container".
    pub operation: String,
    /// Why.
    pub cause: String,
}

/// The operation named in a failure of `item`.
fn operation(item: &Item) -> String {
    match &item.action {
        Action::Create { .. } => "create".into(),
        Action::Update { joined: true, .. } => "join".into(),
        Action::Update {
            changes, new_dn, ..
        } if changes.is_empty() && new_dn.is_some() => "rename/move".into(),
        Action::Update { .. } => "update".into(),
        Action::Deprovision { how, .. } => format!("deprovision ({how})"),
        Action::Error { .. } => "plan".into(),
        Action::Rejected { .. } => "check (not sent)".into(),
    }
}

/// Reports progress (a bar on a terminal, nothing otherwise).
pub trait Progress {
    /// `done` of `total` objects handled.
    fn tick(&self, done: usize, total: usize);

    /// The run's total is known: `total` objects (see [`super::total`]).
    fn total(&self, _total: usize) {}
}

/// No progress display.
pub struct NoProgress;

impl Progress for NoProgress {
    fn tick(&self, _: usize, _: usize) {}
}

fn changes_of(list: &[AttrChange]) -> Vec<Change> {
    list.iter()
        .map(|c| Change::Replace(c.attr.to_string(), c.new.clone()))
        .collect()
}

fn is_connection_lost(e: &CError) -> bool {
    matches!(e, CError::Connection(_))
}

pub(super) fn already_exists(e: &CError) -> bool {
    e.code() == Some(68) || e.to_string().contains("already exists")
}

/// What writing one object did.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) created: bool,
    pub(super) updated: bool,
    pub(super) renamed: bool,
    pub(super) moved: bool,
    pub(super) joined: bool,
    pub(super) deprovisioned: bool,
    pub(super) unchanged: bool,
    pub(super) put: Option<Link>,
    /// A create whose anchor is read back with its batch.
    pub(super) pending: Option<Pending>,
    remove: Option<String>,
    /// The link of a deprovisioned object, kept for a returning source.
    keep: Option<Link>,
    pub(super) lines: Vec<String>,
    /// A write that failed after the object was created (counted as failed too).
    pub(super) failure: Option<Failure>,
}

/// What a commit stores: the links of a batch of writes.
#[derive(Default)]
struct Batch {
    put: Vec<Link>,
    /// Creates whose anchors are read back before their links are stored.
    pending: Vec<Pending>,
    remove: Vec<String>,
    keep: Vec<Link>,
}

impl Batch {
    fn len(&self) -> usize {
        self.put.len() + self.pending.len() + self.remove.len() + self.keep.len()
    }
}

/// Applies a plan: its `containers` first, then the `items` as they come
/// (the planner may still be sending them); returns counts and failures. A
/// lost connection or a store failure ends the run with an error (after
/// committing what was done). When `cancel` is set, no further object is
/// started; what was started finishes and is committed.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    step: &StepDef,
    containers: &[Container],
    mut items: ItemReceiver,
    store: &dyn StateStore,
    log: &RunLog,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<(Counts, Vec<Failure>), (Counts, Vec<Failure>, SyncError)> {
    use futures::stream::{self, StreamExt};

    let mut counts = Counts::default();
    let mut failures = Vec::new();
    let mut batch = Batch::default();
    let marks = Marks::default();
    let mut last_created = String::new();
    step.target.begin_batch();
    // Sync-tree containers first, one at a time, parents before children.
    for c in containers {
        if cancel.is_cancelled() {
            break;
        }
        match step.target.create_anchor(&c.dn, &c.attrs).await {
            Ok(_) => {
                counts.containers += 1;
                log.line(&format!("create container {}", c.dn));
            }
            Err(e) if already_exists(&e) => {}
            Err(e) => {
                log.line(&format!("FAILED container {}: {e}", c.dn));
                if is_connection_lost(&e) {
                    let m = SyncError::target("stopped creating containers")(e);
                    log.line(&format!("ABORTED {m}"));
                    return Err((counts, failures, m));
                }
                counts.failed += 1;
                failures.push(Failure {
                    object: c.dn.clone(),
                    operation: "create container".into(),
                    cause: e.to_string(),
                });
            }
        }
    }
    // The total grows while the planner sends: taken so far + waiting.
    let taken = std::cell::Cell::new(0usize);
    let waiting = std::cell::Cell::new(0usize);
    let incoming = stream::poll_fn(|cx| {
        if cancel.is_cancelled() {
            return std::task::Poll::Ready(None);
        }
        let next = items.poll_recv(cx);
        if let std::task::Poll::Ready(Some(_)) = &next {
            taken.set(taken.get() + 1);
        }
        waiting.set(items.len());
        next
    });
    let mut fatal: Option<SyncError> = None;
    let mut done = 0usize;
    let mut results = incoming
        .map(|item| {
            // The target's mark when this object is sent (see `readback`).
            let tag = marks.current();
            async move {
                apply_one(step, &item, tag)
                    .await
                    .map_err(|(object, e)| (object, operation(&item), e))
            }
        })
        .buffer_unordered(step.target.writes_in_flight().max(1));
    while let Some(result) = results.next().await {
        done += 1;
        match result {
            Ok(o) => {
                for l in &o.lines {
                    log.line(l);
                }
                counts.created += o.created as usize;
                counts.updated += o.updated as usize;
                counts.renamed += o.renamed as usize;
                counts.moved += o.moved as usize;
                counts.joined += o.joined as usize;
                counts.deprovisioned += o.deprovisioned as usize;
                counts.unchanged += o.unchanged as usize;
                if o.created {
                    marks.want();
                    if let Some(l) = o.put.as_ref().or(o.pending.as_ref().map(|p| &p.link)) {
                        last_created.clone_from(&l.target_dn);
                    }
                }
                batch.put.extend(o.put);
                batch.pending.extend(o.pending);
                batch.remove.extend(o.remove);
                batch.keep.extend(o.keep);
                if let Some(f) = o.failure {
                    counts.failed += 1;
                    log.line(&format!(
                        "FAILED {}: {}: {}",
                        f.object, f.operation, f.cause
                    ));
                    failures.push(f);
                }
            }
            // Stopped from outside: an object whose closure was cut short
            // (or called exit) is not a failure; the next run plans it again.
            Err((object, _, e)) if cancel.is_cancelled() => {
                log.line(&format!("SKIPPED {object} (interrupted): {e}"));
            }
            Err((object, operation, e)) => {
                counts.failed += 1;
                // Connector errors often name the object already: say it once.
                let text = e.to_string();
                let cause = text
                    .strip_prefix(&format!("{object}: "))
                    .unwrap_or(&text)
                    .to_string();
                log.line(&format!("FAILED {object}: {operation}: {cause}"));
                failures.push(Failure {
                    object: object.clone(),
                    operation,
                    cause,
                });
                if is_connection_lost(&e) {
                    let total = taken.get() + waiting.get();
                    fatal = Some(SyncError::target(format!(
                        "stopped after {done} of {total} objects"
                    ))(e));
                    break;
                }
            }
        }
        if batch.len() >= COMMIT_EVERY {
            let committed = commit(step, store, &mut batch, log, &mut counts, &mut failures).await;
            if let Err(m) = committed {
                fatal = Some(m);
                break;
            }
            // The next batch; after the last commit none is left open (a SQL
            // target would otherwise hold an open transaction after the run).
            step.target.begin_batch();
            marks.refresh(&*step.target, &last_created).await;
        }
        progress.tick(done, taken.get() + waiting.get());
    }
    // Writes still in flight when the run stopped are abandoned: their
    // objects are planned again next run (and adopted if they landed).
    drop(results);
    if let Err(m) = commit(step, store, &mut batch, log, &mut counts, &mut failures).await {
        fatal.get_or_insert(m);
    }
    match fatal {
        Some(m) => {
            log.line(&format!("ABORTED {m}"));
            Err((counts, failures, m))
        }
        None => Ok((counts, failures)),
    }
}

/// The new RDN when `changes` replace the naming attribute of `dn` with
/// values that no longer hold the current RDN value (a modify alone would
/// be refused with a naming violation).
fn naming_rename(dn: &str, changes: &[AttrChange]) -> Option<String> {
    let parsed = Dn::parse(dn).ok()?;
    let (attr, value) = super::project::rdn_pair(parsed.rdn()?)?;
    let c = changes
        .iter()
        .find(|c| c.attr.eq_ignore_ascii_case(&attr))?;
    let first = c.new.first()?;
    let keeps = c
        .new
        .iter()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).eq_ignore_ascii_case(&value));
    if keeps {
        return None;
    }
    let text = String::from_utf8_lossy(first.as_bytes()).into_owned();
    Some(format!("{attr}={}", crate::model::dn::dn_escape(&text)))
}

/// Makes the target durable, reads back the anchors of the batch's new
/// objects, then records the links of what the target holds.
async fn commit(
    step: &StepDef,
    store: &dyn StateStore,
    batch: &mut Batch,
    log: &RunLog,
    counts: &mut Counts,
    failures: &mut Vec<Failure>,
) -> Result<(), SyncError> {
    step.target
        .flush()
        .await
        .map_err(SyncError::target("writing the target"))?;
    let (links, lost) = readback::resolve(&*step.target, &mut batch.pending, log)
        .await
        .map_err(SyncError::target("reading back the anchors of new objects"))?;
    batch.put.extend(links);
    for f in lost {
        counts.failed += 1;
        log.line(&format!(
            "FAILED {}: {}: {}",
            f.object, f.operation, f.cause
        ));
        failures.push(f);
    }
    let Batch {
        put, remove, keep, ..
    } = batch;
    if !put.is_empty() {
        store
            .put_links(&step.name, put)
            .map_err(SyncError::store(""))?;
        put.clear();
    }
    if !remove.is_empty() {
        store
            .remove_links(&step.name, remove)
            .map_err(SyncError::store(""))?;
        remove.clear();
    }
    if !keep.is_empty() {
        store
            .keep_deprovisioned(&step.name, keep)
            .map_err(SyncError::store(""))?;
        keep.clear();
    }
    Ok(())
}

/// The link of `item` to the target object `target_anchor` at `target_dn`.
pub(super) fn link(item: &Item, target_anchor: &str, target_dn: &str) -> Link {
    Link {
        source_anchor: item.source_anchor.clone(),
        target_anchor: target_anchor.to_string(),
        target_dn: target_dn.to_string(),
        source_hash: Some(item.source_hash.clone()),
        desired_dn: item.desired_dn.clone(),
        updated_ms: clock::now_ms(),
    }
}

async fn apply_one(
    step: &StepDef,
    item: &Item,
    tag: Option<Tag>,
) -> Result<Outcome, (String, CError)> {
    let mut o = Outcome::default();
    let target = &step.target;
    match &item.action {
        Action::Error { message } => {
            let object = if item.source_dn.is_empty() {
                item.source_anchor.clone()
            } else {
                item.source_dn.clone()
            };
            Err((object, CError::Other(message.clone())))
        }
        // Refused by the checks before the write: nothing is sent.
        Action::Rejected { object, problems } => {
            let why: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            Err((object.clone(), CError::Other(why.join("; "))))
        }
        Action::Create { dn, values } => {
            super::create::create(step, item, dn, values, tag, o).await
        }
        Action::Update {
            target_anchor,
            target_dn,
            changes,
            new_dn,
            joined,
            takes_over,
            restore,
        } => {
            if let Some(old) = takes_over {
                o.lines
                    .push(format!("take over {target_dn} from departed source {old}"));
                o.remove = Some(old.clone());
            }
            let mut dn = target_dn.clone();
            // Rename and move first: a flow of the naming attribute (cn) can only be
            // written once the RDN carries the new value.
            if let Some(want) = new_dn {
                let (cur, new) = (Dn::parse(&dn).ok(), Dn::parse(want).ok());
                if let (Some(cur), Some(new)) = (cur, new) {
                    let (cr, nr) = (
                        cur.rdn().unwrap_or_default().to_string(),
                        new.rdn().unwrap_or_default().to_string(),
                    );
                    if !dn_eq(&cr, &nr) {
                        dn = target.rename(&dn, &nr).await.map_err(|e| (dn.clone(), e))?;
                        o.lines.push(format!("rename {} -> {dn}", cur));
                        o.renamed = true;
                    }
                    let (cp, np) = (cur.parent().to_string(), new.parent().to_string());
                    if !dn_eq(&cp, &np) {
                        let before = dn.clone();
                        dn = target
                            .move_to(&dn, &np)
                            .await
                            .map_err(|e| (before.clone(), e))?;
                        o.lines.push(format!("move {before} -> {dn}"));
                        o.moved = true;
                    }
                }
            }
            // A flow of the naming attribute that drops the current RDN value
            // (the target was renamed by hand, say) is written as a rename.
            if let Some(rdn) = naming_rename(&dn, changes) {
                let before = dn.clone();
                dn = target
                    .rename(&dn, &rdn)
                    .await
                    .map_err(|e| (before.clone(), e))?;
                o.lines
                    .push(format!("rename {before} -> {dn} (naming attribute flow)"));
                o.renamed = true;
            }
            if !changes.is_empty() {
                target
                    .modify(&dn, &changes_of(changes))
                    .await
                    .map_err(|e| (dn.clone(), e))?;
                o.lines.push(format!(
                    "update {dn}: {}",
                    super::write_log::changes(changes)
                ));
                o.updated = true;
            }
            if *restore {
                target.enable(&dn).await.map_err(|e| (dn.clone(), e))?;
                o.lines.push(format!(
                    "restore {dn}: enabled again, its source {} is back",
                    item.source_dn
                ));
                o.updated = true;
            }
            if *joined {
                o.lines
                    .push(format!("join {dn} (source {})", item.source_dn));
                o.joined = true;
            }
            if changes.is_empty() && new_dn.is_none() && !*joined && !*restore {
                o.unchanged = true;
            }
            o.put = Some(link(item, target_anchor, &dn));
            Ok(o)
        }
        Action::Deprovision {
            target_anchor,
            target_dn,
            how,
            changes,
            move_to,
        } => {
            // A directory object is written where the plan found it (its
            // anchor alone is looked for only below the connection's base).
            let id = if target.locates_by_dn() {
                target_dn.as_str()
            } else {
                target_anchor.as_str()
            };
            let fail = |e: CError| (target_dn.clone(), e);
            let mut now_at = target_dn.clone();
            match how {
                DeprovisionAction::None => {}
                DeprovisionAction::Delete => match target.delete(id).await {
                    Ok(()) | Err(CError::NotFound(_)) => {}
                    Err(e) => return Err(fail(e)),
                },
                DeprovisionAction::Disable => target.disable(id).await.map_err(fail)?,
                DeprovisionAction::DisableMove => {
                    if !changes.is_empty() {
                        target
                            .modify(id, &changes_of(changes))
                            .await
                            .map_err(fail)?;
                    }
                    target.disable(id).await.map_err(fail)?;
                    if let Some(p) = move_to {
                        let here = target
                            .get(id)
                            .await
                            .map_err(fail)?
                            .map(|e| e.dn)
                            .unwrap_or_else(|| target_dn.clone());
                        let parent = Dn::parse(&here)
                            .map(|d| d.parent().to_string())
                            .unwrap_or_default();
                        if !dn_eq(&parent, p) {
                            now_at = target.move_to(id, p).await.map_err(fail)?;
                        }
                    }
                }
            }
            o.lines.push(format!("deprovision {target_dn} ({how})"));
            o.deprovisioned = true;
            match how {
                // Disabled objects stay, and so does their link (marked), so a
                // source that comes back restores its object.
                DeprovisionAction::Disable | DeprovisionAction::DisableMove => {
                    o.keep = Some(Link {
                        source_anchor: item.source_anchor.clone(),
                        target_anchor: target_anchor.clone(),
                        target_dn: now_at,
                        source_hash: None,
                        desired_dn: None,
                        updated_ms: clock::now_ms(),
                    });
                }
                DeprovisionAction::None | DeprovisionAction::Delete => {
                    o.remove = Some(item.source_anchor.clone());
                }
            }
            Ok(o)
        }
    }
}
