//! A run of one step: plan, the deletion threshold, apply, the history
//! record and the log file. Preview is the same pass without the writes.
//! A step's first run (no links yet, so nothing to deprovision and nothing
//! for the threshold to refuse) writes while the planner still reads the
//! source; every other run plans in full before the threshold and the writes.
//! Before anything else a run takes its step's lease ([`super::lease`]), so
//! a second run of the step at the same time is refused before it writes.
//! A run whose [`Cancel`] token is set stops taking objects, finishes the
//! writes in flight, stores their links and is recorded `interrupted` at once.

use std::sync::Arc;
use std::time::Instant;

use crate::store::StateStore;

use super::apply::{self, Counts, Failure, Progress};
use super::cancel::Cancel;
use super::clock;
use super::lease::{LeaseError, LeaseGuard};
use super::log::RunLog;
use super::plan::{self, Plan, PlanOptions};
use super::queue;
use super::rules::StepDef;

/// Absolute deletion threshold: more deprovisions than this are refused.
pub const MAX_DEPROVISIONS: usize = 500;
/// Relative threshold: more than this percentage of the links is refused.
pub const MAX_DEPROVISION_PERCENT: usize = 10;

/// Options of a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Compare every object, ignoring stored hashes.
    pub full: bool,
    /// Allow up to this many deprovisions for this run.
    pub allow_deletes: Option<usize>,
    /// Set from outside to stop the run (Ctrl-C, SIGTERM, `exit(n)`).
    pub cancel: Cancel,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Step name.
    pub step: String,
    /// History id.
    pub run_id: i64,
    /// Counts.
    pub counts: Counts,
    /// Failed objects.
    pub failures: Vec<Failure>,
    /// Wall time.
    pub duration_ms: u128,
    /// The log file.
    pub log_path: Option<String>,
    /// "ok", "failed" or "interrupted".
    pub status: String,
    /// Rules naming a source attribute no object read has.
    pub warnings: Vec<String>,
}

/// Why a run did not finish normally.
#[derive(Clone, Debug)]
pub enum RunError {
    /// The deletion threshold refused the run; nothing was written.
    Refused(String),
    /// The run could not go on (source unreadable, connection lost, store).
    Failed(String),
    /// Another run holds the step's lease; nothing was done. The message
    /// names the holder (host, process, since when).
    Busy(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Refused(m) | RunError::Failed(m) | RunError::Busy(m) => f.write_str(m),
        }
    }
}

/// The threshold verdict for a plan: `Some(reason)` when refused.
pub fn threshold(plan: &Plan, allow_deletes: Option<usize>) -> Option<String> {
    let n = plan.deprovision_count();
    let over_abs = n > MAX_DEPROVISIONS;
    let over_pct = n * 100 > plan.links_before * MAX_DEPROVISION_PERCENT;
    if n == 0 || !(over_abs || over_pct) || allow_deletes.is_some_and(|a| a >= n) {
        return None;
    }
    let why = if over_abs {
        format!("more than {MAX_DEPROVISIONS}")
    } else {
        format!(
            "more than {MAX_DEPROVISION_PERCENT} % of the {} linked objects",
            plan.links_before
        )
    };
    Some(format!(
        "{}: refused: this run would deprovision {n} objects ({why}); nothing was written. \
         An empty or truncated source is the usual cause; check it, then allow it with run(#{{ allow_deletes: {n} }})",
        plan.step
    ))
}

/// Plans the step without writing anything anywhere.
pub async fn preview(
    step: &StepDef,
    store: &dyn StateStore,
    opts: RunOptions,
) -> Result<Plan, RunError> {
    let _unique = super::unique::enter(step);
    let planning = plan::plan(
        step,
        store,
        PlanOptions {
            full: opts.full,
            today_ms: clock::now_ms(),
            source_total: None,
        },
    );
    tokio::select! {
        p = planning => p.map_err(|m| RunError::Failed(format!("{}: {m}", step.name))),
        _ = opts.cancel.cancelled() => {
            Err(RunError::Failed(format!("{}: preview interrupted", step.name)))
        }
    }
}

/// Takes the leases on `names` for the run `owner` (see [`super::lease`]).
pub fn take_lease(
    store: &Arc<dyn StateStore>,
    owner: &str,
    names: &[String],
) -> Result<LeaseGuard, RunError> {
    LeaseGuard::take(store.clone(), owner, names).map_err(|e| match e {
        LeaseError::Busy(m) => RunError::Busy(m),
        LeaseError::Store(m) => RunError::Failed(m),
    })
}

/// Runs the step: lease, plan, threshold, apply; records history and a
/// log file. `held` is the lease of an enclosing workflow run; without it
/// (or when it does not cover this step) the run takes the step's lease
/// itself and releases it when it ends.
pub async fn run(
    step: &StepDef,
    store: &Arc<dyn StateStore>,
    held: Option<&LeaseGuard>,
    logs_dir: Option<&std::path::Path>,
    opts: RunOptions,
    progress: &dyn Progress,
) -> Result<Report, RunError> {
    let own_lease = match held {
        Some(l) if l.covers(&step.name) => None,
        _ => Some(take_lease(
            store,
            &step.name,
            std::slice::from_ref(&step.name),
        )?),
    };
    let store: &dyn StateStore = store.as_ref();
    let _unique = super::unique::enter(step);
    let started = Instant::now();
    let started_ms = clock::now_ms();
    let log = match logs_dir {
        Some(d) => RunLog::create(d, &step.name, started_ms).map_err(|e| {
            RunError::Failed(format!(
                "{}: cannot create the run log in {}: {e}",
                step.name,
                d.display()
            ))
        })?,
        None => RunLog::none(),
    };
    let log_path = log.path().map(|p| p.display().to_string());
    let run_id = store
        .start_run(&step.name, "step", log_path.as_deref())
        .map_err(|e| RunError::Failed(e.to_string()))?;
    log.line(&format!(
        "start step {} (run {run_id}): {} -> {}{}",
        step.name,
        step.source.describe(),
        step.target.describe(),
        if opts.full { ", full" } else { "" }
    ));
    for note in own_lease.iter().flat_map(|l| l.notes()) {
        log.line(note);
    }
    let finish = |status: &str, counts: &Counts, msg: Option<&str>| {
        let _ = store.finish_run(run_id, status, &counts.to_json(), msg);
    };
    let failed = |m: String| {
        let m = format!("{}: {m}", step.name);
        log.line(&format!("FAILED {m}"));
        finish("failed", &Counts::default(), Some(&m));
        RunError::Failed(m)
    };
    let link_count = store
        .link_count(&step.name)
        .map_err(|e| failed(e.to_string()))?;
    let source_total = super::total::SourceTotal::default();
    let popts = PlanOptions {
        full: opts.full,
        today_ms: started_ms,
        source_total: Some(source_total.clone()),
    };
    let cancel = &opts.cancel;
    let interrupted = |counts: Counts, failures: Vec<Failure>| {
        log.line(&format!(
            "INTERRUPTED: {counts}; the links of what was written are stored"
        ));
        finish("interrupted", &counts, Some("interrupted"));
        Report {
            step: step.name.clone(),
            run_id,
            counts,
            failures,
            duration_ms: started.elapsed().as_millis(),
            log_path: log_path.clone(),
            status: "interrupted".into(),
            warnings: Vec::new(),
        }
    };
    let streams = plan::streams(step, link_count);
    // Streaming, the planner waits while the writer has enough queued, so
    // the plan never waits whole in memory; a plan made in full before its
    // writes is already whole.
    let (tx, rx) = queue::queue(if streams { queue::ROOM } else { usize::MAX });
    let (plan, result) = if streams {
        // A first run: the writes start while the source is still read.
        log.line("streaming: no links yet, so the writes start while the source is still read");
        let planning = async {
            let tx = tx;
            // Interrupted: the sender drops, so the writes end with what
            // was sent so far.
            let p = tokio::select! {
                p = plan::plan_into(step, store, popts, &tx) => p,
                _ = cancel.cancelled() => return None,
            };
            if let Ok(p) = &p {
                log.line(&planned_line(p));
            }
            Some(p)
        };
        let progress = super::total::WithTotal::new(progress, source_total, &log);
        let applying = apply::apply(step, &[], rx, store, &log, &progress, cancel);
        let (plan, result) = tokio::join!(planning, applying);
        match plan {
            Some(Ok(p)) => (p, result),
            None => {
                let (c, f) = match result {
                    Ok((c, f)) | Err((c, f, _)) => (c, f),
                };
                return Ok(interrupted(c, f));
            }
            Some(Err(m)) => {
                // What was planned before the source failed was written (and
                // linked); the run stops there.
                let counts = match result {
                    Ok((c, _)) | Err((c, _, _)) => c,
                };
                let m = format!("{}: {m}", step.name);
                log.line(&format!("FAILED {m}"));
                finish("failed", &counts, Some(&m));
                return Err(RunError::Failed(m));
            }
        }
    } else {
        let planning = plan::plan(step, store, popts);
        let mut plan = tokio::select! {
            p = planning => p.map_err(|e| failed(e.to_string()))?,
            _ = cancel.cancelled() => return Ok(interrupted(Counts::default(), Vec::new())),
        };
        log.line(&planned_line(&plan));
        if let Some(why) = threshold(&plan, opts.allow_deletes) {
            log.line(&format!("REFUSED {why}"));
            // Nothing was written (every count 0); what the refused plan
            // would have done goes along under "planned" (alerts show it).
            let mut counts = Counts::default().to_json();
            counts["planned"] = serde_json::json!({
                "source_objects": plan.source_count,
                "to_write": plan.planned.saturating_sub(plan.deprovision_count()),
                "unchanged": plan.unchanged, "to_deprovision": plan.deprovision_count(),
            });
            let _ = store.finish_run(run_id, "refused", &counts, Some(&why));
            return Err(RunError::Refused(why));
        }
        // The total is known before the first write.
        log.line(&format!("total: {} objects to write", plan.items.len()));
        progress.total(plan.items.len());
        for item in std::mem::take(&mut plan.items) {
            let _ = tx.send(item);
        }
        drop(tx);
        let result = apply::apply(step, &plan.containers, rx, store, &log, progress, cancel).await;
        (plan, result)
    };
    let (mut counts, failures, fatal) = match result {
        Ok((c, f)) => (c, f, None),
        Err((c, f, m)) => (c, f, Some(m.to_string())),
    };
    counts.unchanged += plan.unchanged;
    if fatal.is_none() && cancel.is_cancelled() {
        return Ok(interrupted(counts, failures));
    }
    let status = if fatal.is_some() || counts.failed > 0 {
        "failed"
    } else {
        "ok"
    };
    log.line(&format!("end: {counts} ({status})"));
    // The source's change cursor moves only after a clean run: failed
    // objects must come back with the next read.
    if status == "ok"
        && let Some(c) = &plan.cursor
        && let Err(e) = store.put_setting(&plan::cursor_key(&step.name), c)
    {
        log.line(&format!("FAILED saving the change cursor: {e}"));
    }
    finish(status, &counts, fatal.as_deref());
    if let Some(m) = fatal {
        return Err(RunError::Failed(format!("{}: {m}", step.name)));
    }
    Ok(Report {
        step: step.name.clone(),
        run_id,
        counts,
        failures,
        duration_ms: started.elapsed().as_millis(),
        log_path,
        status: status.into(),
        warnings: plan.warnings,
    })
}

/// The log line that says what the plan holds.
fn planned_line(plan: &Plan) -> String {
    let warnings: String = plan
        .warnings
        .iter()
        .map(|w| format!("; WARNING {w}"))
        .collect();
    format!(
        "planned: {} source objects{}, {} to write, {} unchanged, {} to deprovision",
        plan.source_count,
        if plan.incremental {
            " (changes since the last run only)"
        } else {
            ""
        },
        plan.planned,
        plan.unchanged,
        plan.deprovision_count()
    ) + warnings.as_str()
}

/// Counts as stored in the history (the same as [`Counts::to_json`]).
pub fn counts_json(c: &Counts) -> serde_json::Value {
    c.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::{Action, Item};
    use crate::sync::rules::DeprovisionAction;

    fn plan_with(links: usize, leavers: usize, how: DeprovisionAction) -> Plan {
        let items = (0..leavers)
            .map(|i| Item {
                source_anchor: format!("s{i}"),
                source_dn: String::new(),
                source_hash: String::new(),
                desired_dn: None,
                action: Action::Deprovision {
                    target_anchor: format!("t{i}"),
                    target_dn: format!("cn=t{i}"),
                    how,
                    changes: vec![],
                    move_to: None,
                },
            })
            .collect();
        Plan {
            step: "s".into(),
            items,
            links_before: links,
            ..Plan::default()
        }
    }

    #[test]
    fn threshold_counts_every_leaver_and_allows_what_is_covered() {
        // 10 % of 20 links is allowed, more is refused.
        assert!(threshold(&plan_with(20, 2, DeprovisionAction::Delete), None).is_none());
        let why = threshold(&plan_with(20, 3, DeprovisionAction::Delete), None).unwrap();
        assert!(
            why.contains("3 objects") && why.contains("allow_deletes: 3"),
            "{why}"
        );
        assert!(threshold(&plan_with(20, 3, DeprovisionAction::Delete), Some(3)).is_none());
        assert!(threshold(&plan_with(20, 3, DeprovisionAction::Delete), Some(2)).is_some());
        // "none" only drops links, but an empty source would drop them all: it counts.
        assert!(threshold(&plan_with(20, 20, DeprovisionAction::None), None).is_some());
        // The absolute limit applies even when the percentage would allow it.
        assert!(threshold(&plan_with(100_000, 501, DeprovisionAction::Disable), None).is_some());
        assert!(threshold(&plan_with(100_000, 500, DeprovisionAction::Disable), None).is_none());
    }
}
