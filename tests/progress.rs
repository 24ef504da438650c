//! The progress total of a sync run (issue 15, item 9), seen by the run's progress reporter
//! (what drives the shell's bar): a first run, which writes while it still reads, reports the
//! number of source objects in scope once the source is read, and never a smaller total
//! after; a later run, planned in full first, reports the number of changes before the first
//! write. CSV files on both sides (no server: the total does not depend on the target).

use std::sync::{Arc, Mutex};

use idsync::connector::Connector;
use idsync::connector::csv::{CsvConnector, CsvOptions};
use idsync::store::{SqliteStore, StateStore};
use idsync::sync::apply::Progress;
use idsync::sync::rules::{CreateRule, DeprovisionAction, Flow, FlowSource, StepDef, TextRule};
use idsync::sync::run::{self, RunOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Total(usize),
    Tick(usize, usize),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn tick(&self, done: usize, total: usize) {
        self.0.lock().unwrap().push(Event::Tick(done, total));
    }
    fn total(&self, total: usize) {
        self.0.lock().unwrap().push(Event::Total(total));
    }
}

fn rows(n: usize, renamed: usize) -> String {
    let mut s = String::from("id,name\n");
    for i in 0..n {
        let name = if i < renamed { "Renamed" } else { "Person" };
        s.push_str(&format!("p{i:04},{name} {i}\n"));
    }
    s
}

fn step(dir: &std::path::Path) -> StepDef {
    let source: Arc<dyn Connector> =
        Arc::new(CsvConnector::open(dir.join("src.csv"), CsvOptions::new("id")).unwrap());
    let target: Arc<dyn Connector> =
        Arc::new(CsvConnector::open(dir.join("out.csv"), CsvOptions::new("id")).unwrap());
    let flow = |attr: &str| Flow {
        target: attr.into(),
        source: FlowSource::Attr(attr.into()),
        once: false,
        rule: format!("{attr} <- {attr}").into(),
    };
    let mut s = StepDef {
        name: "progress/users".into(),
        source,
        target,
        scope: Default::default(),
        join: Vec::new(),
        create: Some(CreateRule {
            parent: TextRule::Fixed(String::new()),
            rdn: TextRule::Compute(Arc::new(|e| Ok(e.first("id").unwrap_or_default()))),
            classes: Vec::new(),
        }),
        flows: vec![flow("id"), flow("name")],
        deprovision: Default::default(),
        target_base: None,
        members: None,
        tree: None,
        fingerprint: "id,name".into(),
    };
    s.deprovision.action = DeprovisionAction::None;
    s
}

fn run_once(dir: &std::path::Path, store: &Arc<dyn StateStore>) -> Vec<Event> {
    let rec = Recorder::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(run::run(
            &step(dir),
            store,
            None,
            None,
            RunOptions::default(),
            &rec,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, "ok", "{r:?}");
    rec.0.into_inner().unwrap()
}

#[test]
fn the_total_is_the_source_count_once_read_and_the_change_count_before_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.csv"), rows(150, 0)).unwrap();
    std::fs::write(dir.path().join("out.csv"), "id,name\n").unwrap();
    let store: Arc<dyn StateStore> =
        Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());

    // first run (streaming): the total is the 150 objects in scope once read
    let events = run_once(dir.path(), &store);
    let at = events
        .iter()
        .position(|e| *e == Event::Total(150))
        .unwrap_or_else(|| panic!("no total of 150 reported: {events:?}"));
    assert!(
        events[at + 1..]
            .iter()
            .all(|e| matches!(e, Event::Tick(_, 150))),
        "a total other than 150 after the source was read: {events:?}"
    );
    assert_eq!(events.last(), Some(&Event::Tick(150, 150)), "{events:?}");

    // a later run: 3 changed rows; the total (3) comes before any write
    std::fs::write(dir.path().join("src.csv"), rows(150, 3)).unwrap();
    let events = run_once(dir.path(), &store);
    assert_eq!(
        events,
        [
            Event::Total(3),
            Event::Tick(1, 3),
            Event::Tick(2, 3),
            Event::Tick(3, 3)
        ]
    );
}
