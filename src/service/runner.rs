//! One scheduled run: a step's or workflow's `run` (the same engine calls a
//! script's `run()` makes), or in staging its preview, recorded in history
//! with the plan's counts and a run log. Returns what the scheduler needs
//! to decide on notifications and quarantine.

use std::sync::Arc;

use serde_json::json;

use crate::script::service::Target;
use crate::store::StateStore;
use crate::sync::apply::Progress;
use crate::sync::cancel::Cancel;
use crate::sync::clock;
use crate::sync::log::RunLog;
use crate::sync::plan::Action;
use crate::sync::rules::StepDef;
use crate::sync::run::{self, RunError, RunOptions};
use crate::sync::workflow;

/// How a scheduled run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Result {
    /// Finished; nothing failed.
    Ok,
    /// Finished, but some objects failed (not a failure of the whole run).
    Partial,
    /// The deletion threshold refused it; nothing was written.
    Refused,
    /// It could not run (source unreadable, connection lost, ...).
    Failed,
    /// Stopped by its timeout or SIGTERM; what was written is recorded.
    Interrupted,
    /// Another run held the step's lease; nothing was done.
    Busy,
}

impl Result {
    /// The word shown in status, metrics and alerts.
    pub fn word(&self) -> &'static str {
        match self {
            Result::Ok => "ok",
            Result::Partial => "partial",
            Result::Refused => "refused",
            Result::Failed => "failed",
            Result::Interrupted => "interrupted",
            Result::Busy => "busy",
        }
    }
}

/// What one scheduled run did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How it ended.
    pub result: Result,
    /// Its counts as history holds them.
    pub counts: serde_json::Value,
    /// Objects written (created, updated, renamed, moved, deprovisioned).
    pub written: u64,
    /// Why it failed or was refused, or a summary.
    pub message: String,
    /// The run log, when there is one.
    pub log: Option<String>,
    /// Wall time, seconds.
    pub seconds: f64,
}

struct NoProgress;
impl Progress for NoProgress {
    fn tick(&self, _: usize, _: usize) {}
}

fn written(c: &crate::sync::counts::Counts) -> u64 {
    (c.created + c.updated + c.renamed + c.moved + c.deprovisioned + c.containers) as u64
}

/// Runs `target` (a `full` run when asked); `cancel` interrupts it.
pub fn execute(
    target: &Target,
    store: &Arc<dyn StateStore>,
    full: bool,
    staging: bool,
    cancel: Cancel,
) -> Outcome {
    let started = std::time::Instant::now();
    // The step's Rhai closures on this thread stop when the run is cut
    // (timeout), as under Ctrl-C.
    crate::script::interrupt::set_thread_token(Some(cancel.clone()));
    let opts = RunOptions {
        full,
        allow_deletes: None,
        cancel,
    };
    let logs = crate::config::home::logs_dir().ok();
    let mut out = if staging {
        let steps: Vec<Arc<StepDef>> = match target {
            Target::Step(s) => vec![s.0.clone()],
            Target::Workflow(w) => w.steps.iter().map(|s| s.0.clone()).collect(),
        };
        let mut last = None;
        for s in &steps {
            let o = stage(s, store, logs.as_deref(), opts.clone());
            let stop = o.result != Result::Ok;
            last = Some(o);
            if stop {
                break;
            }
        }
        last.unwrap_or(Outcome {
            result: Result::Ok,
            counts: json!({}),
            written: 0,
            message: "no steps".into(),
            log: None,
            seconds: 0.0,
        })
    } else {
        match target {
            Target::Step(s) => step_run(&s.0, store, logs.as_deref(), opts),
            Target::Workflow(w) => workflow_run(w, store, logs.as_deref(), opts),
        }
    };
    out.seconds = started.elapsed().as_secs_f64();
    out
}

fn from_error(e: RunError) -> Outcome {
    let (result, message) = match e {
        RunError::Refused(m) => (Result::Refused, m),
        RunError::Failed(m) => (Result::Failed, m),
        RunError::Busy(m) => (Result::Busy, m),
    };
    Outcome {
        result,
        counts: json!({}),
        written: 0,
        message,
        log: None,
        seconds: 0.0,
    }
}

fn report_outcome(r: &run::Report) -> Outcome {
    let result = match r.status.as_str() {
        "interrupted" => Result::Interrupted,
        _ if r.counts.failed > 0 => Result::Partial,
        _ => Result::Ok,
    };
    Outcome {
        result,
        counts: r.counts.to_json(),
        written: written(&r.counts),
        message: format!("run {}: {}", r.run_id, r.counts),
        log: r.log_path.clone(),
        seconds: 0.0,
    }
}

fn step_run(
    step: &StepDef,
    store: &Arc<dyn StateStore>,
    logs: Option<&std::path::Path>,
    opts: RunOptions,
) -> Outcome {
    let r = crate::script::runtime::block_on_to_end(run::run(
        step,
        store,
        None,
        logs,
        opts,
        &NoProgress,
    ));
    match r {
        Ok(report) => report_outcome(&report),
        Err(e) => {
            let mut o = from_error(e);
            // The refused or failed run's log and counts (a refused run's
            // record holds its plan's under "planned"): the step's newest.
            if let Ok(runs) = store.runs(Some(&step.name), 1)
                && let Some(r) = runs.first()
            {
                o.log = r.log_path.clone();
                if o.result != Result::Busy {
                    o.counts = r.counts.clone();
                }
            }
            o
        }
    }
}

fn workflow_run(
    w: &crate::script::sync_api::Workflow,
    store: &Arc<dyn StateStore>,
    logs: Option<&std::path::Path>,
    opts: RunOptions,
) -> Outcome {
    let wf = workflow::Workflow {
        name: w.name.clone(),
        steps: w.steps.iter().map(|s| s.0.clone()).collect(),
    };
    let started_ms = clock::now_ms();
    let bar = |_: &StepDef| -> Box<dyn Progress> { Box::new(NoProgress) };
    let r = crate::script::runtime::block_on_to_end(workflow::run(&wf, store, logs, opts, &bar));
    let r = match r {
        Ok(r) => r,
        Err(e) => return from_error(e),
    };
    let log = r.steps.last().and_then(|s| s.log_path.clone());
    let refused = matches!(r.stopped, Some(RunError::Refused(_)));
    let mut o = match r.stopped {
        Some(e) => from_error(e),
        None => Outcome {
            result: match r.status.as_str() {
                "interrupted" => Result::Interrupted,
                "failed" => Result::Partial,
                _ => Result::Ok,
            },
            counts: json!({}),
            written: 0,
            message: format!("run {}: {}", r.run_id, r.totals),
            log: None,
            seconds: 0.0,
        },
    };
    o.counts = r.totals.to_json();
    o.written = written(&r.totals);
    o.log = o.log.or(log);
    if refused {
        // The refused step's record: its plan's counts and its log.
        let rec = w.steps.iter().find_map(|s| {
            store
                .runs(Some(&s.0.name), 1)
                .ok()?
                .into_iter()
                .find(|rec| rec.status == "refused" && rec.started_ms >= started_ms)
        });
        if let Some(rec) = rec {
            o.counts["planned"] = rec.counts["planned"].clone();
            o.log = rec.log_path.or(o.log);
        }
    }
    o
}

/// A staging run of one step: its preview, recorded in history (status
/// `ok`, or `refused` when the threshold would refuse it) with the plan's
/// counts and `"preview": true`, and in a run log. Writes nothing to the
/// target and takes no lease.
fn stage(
    step: &StepDef,
    store: &Arc<dyn StateStore>,
    logs: Option<&std::path::Path>,
    opts: RunOptions,
) -> Outcome {
    let started_ms = clock::now_ms();
    let log = logs
        .and_then(|d| RunLog::create(d, &step.name, started_ms).ok())
        .unwrap_or_else(RunLog::none);
    let log_path = log.path().map(|p| p.display().to_string());
    let run_id = match store.start_run(&step.name, "step", log_path.as_deref()) {
        Ok(id) => id,
        Err(e) => return from_error(RunError::Failed(format!("{}: {e}", step.name))),
    };
    log.line(&format!(
        "start staging preview of step {} (run {run_id}): {} -> {}; nothing is written",
        step.name,
        step.source.describe(),
        step.target.describe()
    ));
    let allow = opts.allow_deletes;
    let cancel = opts.cancel.clone();
    let plan = crate::script::runtime::block_on_to_end(run::preview(step, store.as_ref(), opts));
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            let status = if cancel.is_cancelled() {
                "interrupted"
            } else {
                "failed"
            };
            let m = e.to_string();
            log.line(&format!("{} {m}", status.to_uppercase()));
            let _ = store.finish_run(run_id, status, &json!({"preview": true}), Some(&m));
            let mut o = from_error(RunError::Failed(m));
            if status == "interrupted" {
                o.result = Result::Interrupted;
            }
            o.log = log_path;
            return o;
        }
    };
    let (mut create, mut update, mut deprovision) = (0usize, 0usize, 0usize);
    for i in &plan.items {
        match i.action {
            Action::Create { .. } => create += 1,
            Action::Update { .. } => update += 1,
            Action::Deprovision { .. } => deprovision += 1,
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    let counts = json!({
        "preview": true,
        "created": create,
        "updated": update,
        "deprovisioned": deprovision,
        "unchanged": plan.unchanged,
        "containers": plan.containers.len(),
    });
    let refused = run::threshold(&plan, allow);
    let summary = format!(
        "staging preview: would create {create}, update {update}, deprovision {deprovision}; {} unchanged; nothing was written",
        plan.unchanged
    );
    log.line(&format!("planned: {summary}"));
    for row in crate::sync::preview::rows(step, &plan, refused.as_deref()) {
        log.line(&format!(
            "would {} {}{}",
            row.op,
            row.object,
            row.attribute
                .map(|a| format!(
                    " {a}: {} -> {}",
                    row.old.unwrap_or_default(),
                    row.new.unwrap_or_default()
                ))
                .unwrap_or_default()
        ));
    }
    let (status, message, result) = match &refused {
        Some(why) => ("refused", format!("{summary}; {why}"), Result::Refused),
        None => ("ok", summary, Result::Ok),
    };
    log.line(&format!("end: {message}"));
    log.flush();
    let _ = store.finish_run(run_id, status, &counts, Some(&message));
    Outcome {
        result,
        counts,
        written: 0,
        message,
        log: log_path,
        seconds: 0.0,
    }
}
