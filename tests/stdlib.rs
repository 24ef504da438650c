//! The stdlib shipped inside the binary (issue 15, API §11): the `stdlib/` Rhai modules are
//! importable by name (`import "names" as names;`) and global at once, give the values the
//! issue names (ascii_fold, sam_account_name, upn, mail_local, uac_flags and back, FILETIME and
//! generalizedTime, HR dates, is_active), are listed by `help()`, and do not stop scripts from
//! importing their own files. Each function's doc example runs in tests/help_examples.rs;
//! this file checks the values, through the real `idsync` binary.

mod support;

use std::path::Path;

use serde_json::{Value as Json, json};

/// Runs `script` as a file in `dir` with `--format json`; (exit code, stdout, stderr).
fn run(home: &Path, dir: &Path, script: &str) -> (i32, String, String) {
    let file = dir.join("t.rhai");
    std::fs::write(&file, script).unwrap();
    let out = support::idsync_command(home)
        .args(["--format", "json"])
        .arg(&file)
        .current_dir(dir)
        .output()
        .expect("run idsync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(home: &Path, dir: &Path, script: &str) -> Json {
    let (code, out, err) = run(home, dir, script);
    assert_eq!(code, 0, "{script}\n--- stdout\n{out}\n--- stderr\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn stdlib_values_imported_and_global_agree_with_the_issue() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    let v = json_of(
        home.path(),
        dir.path(),
        r#"
import "names" as names;
import "ad" as ad;
import "hr" as hrm;
let e = connect_csv("hr.csv", #{ key: "id" }).get("E1");
#{
  fold: ascii_fold("Zoë Müller-Núñez"),
  fold_caps: ascii_fold("GÜNTHER Straße"),
  sam: names::sam_account_name("Zoë", "Müller-Núñez"),
  sam_global: sam_account_name("Zoë", "Müller-Núñez"),
  sam_short: sam_account_name("Bartholomew", "Vandenberghe-Oosterhuis", #{ max: 20 }),
  sam_bad_chars: sam_account_name("Ann", "O'Neil [contractor]"),
  upn: names::upn("Zoë.Müller", "Corp.Example"),
  mail: mail_local("Anna Lena", "Weiß"),
  flags: ad::uac_flags(514),
  flags_text: uac_flags("66050"),
  back: uac_value(uac_flags(66050)),
  ft: ad::filetime_to_date(date_to_filetime("2026-11-22T09:30:00Z")),
  ft_never: filetime_to_date("9223372036854775807"),
  gt: generalized_time("22.11.2026"),
  gt_back: parse_generalized_time("20261122093000.0Z"),
  dates: ["22.11.2026", "2026-11-22", "11/22/2026", "22/11/2026", "46348", "20261122"].map(|d| parse_date(d)),
  us: parse_date("03/04/2026", "MM/DD/YYYY"),
  active_mid: hrm::is_active(e, #{ start: "hire", end: "leave", on: "2026-06-30" }),
  active_first_day: is_active(e, #{ start: "hire", end: "leave", on: "01.03.2026" }),
  active_last_day: is_active(e, #{ start: "hire", end: "leave", on: "2026-12-31" }),
  before: is_active(e, #{ start: "hire", end: "leave", on: "2026-02-28" }),
  after: is_active(e, #{ start: "hire", end: "leave", on: "2027-01-01" }),
  no_leave: is_active(connect_csv("hr.csv", #{ key: "id" }).get("E2"), #{ start: "hire", end: "leave", on: "2099-01-01" }),
}
"#
        .replace("hr.csv", &{
            std::fs::write(
                dir.path().join("hr.csv"),
                "id,hire,leave\nE1,01.03.2026,12/31/2026\nE2,2020-01-15,\n",
            )
            .unwrap();
            "hr.csv".to_string()
        })
        .as_str(),
    );
    let want = json!({
        "fold": "Zoe Mueller-Nunez",
        "fold_caps": "GUENTHER Strasse",
        "sam": "zmueller-nunez",
        "sam_global": "zmueller-nunez",
        "sam_short": "bvandenberghe-ooster",
        "sam_bad_chars": "aoneilcontractor",
        "upn": "zoe.mueller@corp.example",
        "mail": "anna.lena.weiss",
        "flags": ["ACCOUNTDISABLE", "NORMAL_ACCOUNT"],
        "flags_text": ["ACCOUNTDISABLE", "NORMAL_ACCOUNT", "DONT_EXPIRE_PASSWORD"],
        "back": 66050,
        "ft": "2026-11-22T09:30:00Z",
        "ft_never": null,
        "gt": "20261122000000Z",
        "gt_back": "2026-11-22T09:30:00Z",
        "dates": ["2026-11-22", "2026-11-22", "2026-11-22", "2026-11-22", "2026-11-22", "2026-11-22"],
        "us": "2026-03-04",
        "active_mid": true,
        "active_first_day": true,
        "active_last_day": true,
        "before": false,
        "after": false,
        "no_leave": true,
    });
    assert_eq!(v, want);
}

#[test]
fn stdlib_errors_help_and_file_imports() {
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    // an ambiguous date asks for the format; an unknown flag is named
    for (script, want) in [
        ("parse_date(\"03/04/2026\")", "DD/MM/YYYY"),
        ("parse_date(\"31.02.2026\")", "not a calendar date"),
        (
            "uac_value([\"NORMAL_ACCOUNT\", \"NOPE\"])",
            "unknown userAccountControl flag 'NOPE'",
        ),
        ("import \"nosuch\" as x; 1", "nosuch"),
    ] {
        let (code, out, err) = run(home.path(), dir.path(), script);
        assert_eq!(code, 1, "{script}: {out}{err}");
        assert!(err.contains(want), "{script}: {want:?} not in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // a script's own module file still imports
    std::fs::write(dir.path().join("mine.rhai"), "fn twice(x) { x * 2 }").unwrap();
    let v = json_of(
        home.path(),
        dir.path(),
        "import \"mine\" as m; m::twice(21)",
    );
    assert_eq!(v, json!(42));
    // help() lists the stdlib, and help("name") prints the doc with its example
    let (code, out, err) = run(
        home.path(),
        dir.path(),
        "print(help()); print(help(\"sam_account_name\"))",
    );
    assert_eq!(code, 0, "{err}");
    for name in [
        "ascii_fold",
        "sam_account_name",
        "uac_flags",
        "is_active",
        "graph_from_env",
        "filetime_to_date",
        "link",
    ] {
        assert!(out.contains(name), "help() lacks {name}:\n{out}");
    }
    assert!(
        out.contains("sam_account_name(\"Zoë\", \"Müller-Núñez\", #{ max: 8 })"),
        "{out}"
    );
}
