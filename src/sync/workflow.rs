//! Running a workflow: named steps run in order under one lease, with one
//! history record of their summed counts. The rules, the same for every
//! caller (the Rhai `wf.run()`, a Rust test, the service):
//! - the workflow takes the lease of every step before any starts; when
//!   another run holds one, it is refused ([`RunError::Busy`]) before it
//!   records or writes anything;
//! - the steps run in order, each inside the workflow's lease; a step whose
//!   objects partly failed does not stop the workflow, a step that is
//!   refused (the deletion threshold), cannot run, or is interrupted stops
//!   it, and the later steps do not run;
//! - the workflow's history record (kind `"workflow"`) holds the sum of the
//!   counts of the steps that ran (every count, see [`Counts`]) and ends
//!   `"ok"`, `"failed"` (a step stopped it, or objects failed) or
//!   `"interrupted"`.

use std::path::Path;
use std::sync::Arc;

use crate::store::StateStore;

use super::apply::Progress;
use super::counts::Counts;
use super::rules::StepDef;
use super::run::{self, Report, RunError, RunOptions};

/// A named list of steps run in order.
#[derive(Clone)]
pub struct Workflow {
    /// Workflow name (its history records and lease owner carry it).
    pub name: String,
    /// Its steps, in the order they run.
    pub steps: Vec<Arc<StepDef>>,
}

/// How a workflow run went.
#[derive(Clone, Debug, Default)]
pub struct WorkflowReport {
    /// Workflow name.
    pub name: String,
    /// The workflow's history id.
    pub run_id: i64,
    /// One report per step that ran, in order. The last one is
    /// `"interrupted"` when an interrupt stopped the workflow in that step.
    pub steps: Vec<Report>,
    /// The sum of the steps' counts, as the history record stores them.
    pub totals: Counts,
    /// `"ok"`, `"failed"` or `"interrupted"`, as recorded.
    pub status: String,
    /// Why the workflow stopped at a step (refused, could not run); the
    /// steps after it did not run.
    pub stopped: Option<RunError>,
}

/// Runs `wf` by the rules in the module documentation. `progress` gives
/// each step its progress display (dropped when the step ends). `Err` only
/// when the workflow could not start (its lease is held elsewhere, the
/// store refused the history record); a step that stops it is
/// [`WorkflowReport::stopped`].
pub async fn run(
    wf: &Workflow,
    store: &Arc<dyn StateStore>,
    logs_dir: Option<&Path>,
    opts: RunOptions,
    progress: &dyn Fn(&StepDef) -> Box<dyn Progress>,
) -> Result<WorkflowReport, RunError> {
    let names: Vec<String> = wf.steps.iter().map(|s| s.name.clone()).collect();
    let lease = run::take_lease(store, &wf.name, &names)?;
    let run_id = store
        .start_run(&wf.name, "workflow", None)
        .map_err(|e| RunError::Failed(e.to_string()))?;
    let mut steps = Vec::new();
    let mut stopped = None;
    let mut message = None;
    for step in &wf.steps {
        let bar = progress(step);
        let r = run::run(
            step,
            store,
            Some(&lease),
            logs_dir,
            opts.clone(),
            bar.as_ref(),
        )
        .await;
        drop(bar);
        match r {
            Ok(report) => {
                let interrupted = report.status == "interrupted";
                if interrupted {
                    message = Some(format!("{}: interrupted", report.step));
                }
                steps.push(report);
                if interrupted {
                    break;
                }
            }
            Err(e) => {
                message = Some(e.to_string());
                stopped = Some(e);
                break;
            }
        }
    }
    let totals = Counts::sum(steps.iter().map(|r| &r.counts));
    let interrupted = steps.last().is_some_and(|r| r.status == "interrupted")
        || (stopped.is_some() && opts.cancel.is_cancelled());
    let status = if interrupted {
        "interrupted"
    } else if stopped.is_some() || totals.failed > 0 {
        "failed"
    } else {
        "ok"
    };
    let _ = store.finish_run(run_id, status, &totals.to_json(), message.as_deref());
    drop(lease);
    Ok(WorkflowReport {
        name: wf.name.clone(),
        run_id,
        steps,
        totals,
        status: status.into(),
        stopped,
    })
}

#[cfg(test)]
mod tests {
    //! A workflow run through the Rust API alone (no Rhai): CSV files as
    //! source and targets, the SQLite store.

    use super::*;
    use crate::connector::Connector;
    use crate::connector::csv::{CsvConnector, CsvOptions};
    use crate::model::Value;
    use crate::store::sqlite::SqliteStore;
    use crate::sync::rules::{
        CreateRule, Deprovision, DeprovisionAction, Flow, FlowSource, TextRule,
    };

    struct Quiet;
    impl Progress for Quiet {
        fn tick(&self, _: usize, _: usize) {}
    }

    fn quiet(_: &StepDef) -> Box<dyn Progress> {
        Box::new(Quiet)
    }

    fn csv(path: &Path) -> Arc<dyn Connector> {
        Arc::new(CsvConnector::open(path, CsvOptions::new("id")).unwrap())
    }

    /// A step copying `id` and a name to the CSV file `out`; the flow of
    /// `name` fails for the ids in `bad`.
    fn step(name: &str, src: &Path, out: &Path, bad: &'static [&'static str]) -> Arc<StepDef> {
        let target = csv(out);
        target.mark_as_target();
        Arc::new(StepDef {
            name: name.into(),
            source: csv(src),
            target,
            scope: Default::default(),
            join: Vec::new(),
            create: Some(CreateRule {
                parent: TextRule::Fixed(String::new()),
                rdn: TextRule::Compute(Arc::new(|e| Ok(e.first("id").unwrap_or_default()))),
                classes: Vec::new(),
            }),
            flows: vec![
                Flow {
                    target: "id".into(),
                    source: FlowSource::Attr("id".into()),
                    once: false,
                    rule: "id <- id".into(),
                },
                Flow {
                    target: "name".into(),
                    source: FlowSource::Compute(Arc::new(move |e| {
                        let id = e.first("id").unwrap_or_default();
                        if bad.contains(&id.as_str()) {
                            return Err(format!("no name for {id}"));
                        }
                        Ok(vec![Value::Text(e.first("name").unwrap_or_default())])
                    })),
                    once: false,
                    rule: "name <- |e| ...".into(),
                },
            ],
            deprovision: Deprovision {
                action: DeprovisionAction::Delete,
                ..Deprovision::default()
            },
            target_base: None,
            members: None,
            tree: None,
            fingerprint: format!("test {name}"),
        })
    }

    struct Fixture {
        dir: tempfile::TempDir,
        store: Arc<dyn StateStore>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("hr.csv"), "id,name\n1,Ann\n2,Bob\n3,Cid\n").unwrap();
            let store: Arc<dyn StateStore> =
                Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
            Fixture { dir, store }
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }

        fn run(&self, wf: &Workflow) -> Result<WorkflowReport, RunError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(wf, &self.store, None, RunOptions::default(), &quiet))
        }

        fn last(&self, name: &str) -> Option<crate::store::RunRecord> {
            self.store.runs(Some(name), 1).unwrap().into_iter().next()
        }

        fn rows(&self, file: &str) -> usize {
            std::fs::read_to_string(self.path(file))
                .map(|t| t.lines().count().saturating_sub(1))
                .unwrap_or(0)
        }
    }

    #[test]
    fn steps_run_in_order_and_the_record_holds_every_summed_count() {
        let f = Fixture::new();
        let wf = Workflow {
            name: "wf".into(),
            steps: vec![
                step("wf/a", &f.path("hr.csv"), &f.path("a.csv"), &["2"]),
                step("wf/b", &f.path("hr.csv"), &f.path("b.csv"), &[]),
            ],
        };
        let r = f.run(&wf).unwrap();
        assert!(r.stopped.is_none(), "{:?}", r.stopped);
        // A step whose objects partly failed does not stop the workflow.
        let names: Vec<&str> = r.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(names, ["wf/a", "wf/b"]);
        assert!(r.steps[0].run_id < r.steps[1].run_id);
        assert_eq!(
            (r.steps[0].counts.created, r.steps[0].counts.failed),
            (2, 1)
        );
        assert_eq!(
            (r.steps[1].counts.created, r.steps[1].counts.failed),
            (3, 0)
        );
        assert_eq!((f.rows("a.csv"), f.rows("b.csv")), (2, 3));
        let expect = Counts {
            created: 5,
            failed: 1,
            ..Counts::default()
        };
        assert_eq!(r.totals, expect);
        assert_eq!(r.status, "failed");
        let rec = f.last("wf").unwrap();
        assert_eq!((rec.id, rec.kind.as_str()), (r.run_id, "workflow"));
        assert_eq!(rec.status, "failed");
        assert_eq!(Counts::from_json(&rec.counts), Some(expect));
        // The step records are there too, each with its own counts.
        for s in &r.steps {
            let rec = f.last(&s.step).unwrap();
            assert_eq!(Counts::from_json(&rec.counts).as_ref(), Some(&s.counts));
        }

        // Again: nothing to write but the failed object, which is retried.
        let r = f.run(&wf).unwrap();
        assert_eq!(r.totals.unchanged, 5, "{:?}", r.totals);
        assert_eq!(r.totals.failed, 1, "{:?}", r.totals);
        assert_eq!(r.totals.created, 0, "{:?}", r.totals);
    }

    #[test]
    fn a_step_that_cannot_run_stops_the_workflow_and_is_recorded() {
        let f = Fixture::new();
        let wf = Workflow {
            name: "stops".into(),
            steps: vec![
                step("stops/a", &f.path("hr.csv"), &f.path("a.csv"), &[]),
                step("stops/missing", &f.path("nope.csv"), &f.path("m.csv"), &[]),
                step("stops/c", &f.path("hr.csv"), &f.path("c.csv"), &[]),
            ],
        };
        let r = f.run(&wf).unwrap();
        let Some(RunError::Failed(m)) = &r.stopped else {
            panic!("not stopped by a failure: {:?}", r.stopped);
        };
        assert!(m.contains("stops/missing") && m.contains("nope.csv"), "{m}");
        assert_eq!(r.steps.len(), 1, "the steps after the stop ran");
        assert!(f.last("stops/c").is_none(), "the step after the stop ran");
        assert_eq!(f.rows("c.csv"), 0);
        let rec = f.last("stops").unwrap();
        assert_eq!(rec.status, "failed");
        assert_eq!(rec.message.as_deref(), Some(m.as_str()));
        // What ran before the stop is counted.
        assert_eq!(
            Counts::from_json(&rec.counts),
            Some(Counts {
                created: 3,
                ..Counts::default()
            })
        );
    }

    #[test]
    fn a_held_lease_refuses_the_workflow_before_any_step() {
        let f = Fixture::new();
        let wf = Workflow {
            name: "leased".into(),
            steps: vec![
                step("leased/a", &f.path("hr.csv"), &f.path("a.csv"), &[]),
                step("leased/b", &f.path("hr.csv"), &f.path("b.csv"), &[]),
            ],
        };
        let held = run::take_lease(&f.store, "someone-else", &["leased/b".to_string()]).unwrap();
        match f.run(&wf) {
            Err(RunError::Busy(m)) => assert!(m.contains("someone-else"), "{m}"),
            other => panic!("not refused as busy: {:?}", other.map(|r| r.status)),
        }
        assert!(
            f.last("leased").is_none(),
            "the refused workflow was recorded"
        );
        assert!(f.last("leased/a").is_none(), "a step ran");
        assert_eq!(f.rows("a.csv"), 0);
        drop(held);
        assert_eq!(f.run(&wf).unwrap().status, "ok");
    }
}
