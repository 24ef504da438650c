//! A flow is evaluated once per object per run (issue 11 item 4): the planner keeps the
//! values it computed, and the preview rows and the writes use them instead of calling the
//! flow's closure again. The closure here has a side effect (it records each object it is
//! called for in a Rhai array the script prints), so a second evaluation shows.
//!
//! Runs the real `idsync` binary on CSV files (source and target), through `preview()` and
//! `run()`, on a step's first run (no links: written while the source is read) and on a later
//! run (an update and a create); the target file is read here with the `csv` crate.

mod support;

use std::path::Path;

/// The step: `name` is computed by a closure that records the source's `id`.
const SCRIPT: &str = r#"
let calls = [];
let hr = connect_csv("hr.csv", #{ key: "id" });
let out = connect_csv("out.csv", #{ key: "login" });
let s = sync_step("flow-once", hr, out, #{
    create: #{ parent: "", rdn: |e| e.id },
    flows: #{ login: "id", name: |e| { calls.push(e.id); `${e.first} ${e.last}` } },
    deprovision: #{ action: "delete" },
});
let rows = s.preview();
for r in rows { if r.op != "unchanged" { print(`ROW ${r.op} ${r.object} ${r.attribute}=${r["new"]}`); } }
calls.sort();
print(`PREVIEW ${calls}`);
calls.clear();
let r = s.run();
calls.sort();
print(`RUN ${calls} created=${r.created} updated=${r.updated} failed=${r.failed}`);
"#;

/// Runs the script in `dir` (IDSYNC_HOME `home`); returns its stdout lines.
fn run(home: &Path, dir: &Path) -> Vec<String> {
    let file = dir.join("once.rhai");
    std::fs::write(&file, SCRIPT).unwrap();
    let out = support::idsync_command(home)
        .current_dir(dir)
        .arg(&file)
        .output()
        .expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "idsync failed ({:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    stdout.lines().map(str::to_string).collect()
}

/// The line starting with `prefix`.
fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line '{prefix}…' in:\n{}", lines.join("\n")))
}

/// The target file as (login, name) rows, read independently of idsync.
fn target_rows(dir: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(dir.join("out.csv")).unwrap();
    let mut rows: Vec<(String, String)> = r
        .deserialize::<std::collections::HashMap<String, String>>()
        .map(|row| {
            let row = row.unwrap();
            (row["login"].clone(), row["name"].clone())
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_flow_closure_runs_once_per_object_per_preview_and_per_run() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("hr.csv"),
        "id,first,last\n1,Ann,Lee\n2,Bob,Ray\n3,Cy,Oh\n",
    )
    .unwrap();
    std::fs::write(d.join("out.csv"), "login,name\n").unwrap();

    // First run (no links: the run writes while it reads): three creates.
    let first = run(home.path(), d);
    assert_eq!(line(&first, "PREVIEW "), r#"PREVIEW ["1", "2", "3"]"#);
    assert_eq!(
        line(&first, "RUN "),
        r#"RUN ["1", "2", "3"] created=3 updated=0 failed=0"#
    );
    // The preview shows the values the closure gave.
    assert!(
        first.iter().any(|l| l == "ROW create 2 name=Bob Ray"),
        "{first:?}"
    );
    assert_eq!(
        target_rows(d),
        [("1", "Ann Lee"), ("2", "Bob Ray"), ("3", "Cy Oh")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // A later run: 2 changed (an update), 4 is new (a create), 1 and 3 unchanged (their
    // stored hash matches: no flow is evaluated for them at all).
    std::fs::write(
        d.join("hr.csv"),
        "id,first,last\n1,Ann,Lee\n2,Bobby,Ray\n3,Cy,Oh\n4,Di,Ng\n",
    )
    .unwrap();
    let later = run(home.path(), d);
    assert_eq!(line(&later, "PREVIEW "), r#"PREVIEW ["2", "4"]"#);
    assert_eq!(
        line(&later, "RUN "),
        r#"RUN ["2", "4"] created=1 updated=1 failed=0"#
    );
    assert!(
        later.iter().any(|l| l == "ROW update 2 name=Bobby Ray"),
        "{later:?}"
    );
    assert!(
        later.iter().any(|l| l == "ROW create 4 name=Di Ng"),
        "{later:?}"
    );
    assert_eq!(
        target_rows(d),
        [
            ("1", "Ann Lee"),
            ("2", "Bobby Ray"),
            ("3", "Cy Oh"),
            ("4", "Di Ng")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}
