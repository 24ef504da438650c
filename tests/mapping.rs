//! Mappings edited by hand (issue 15, API §11) against a private slapd: `link` maps a source
//! row to an object created by hand in the target (which the step's join would not find), the
//! next run updates that object instead of creating a new one, `links(step, #{ source/target })`
//! finds the pair, and a second `link` to the same target is refused unless `replace: true`.
//! Every effect on the directory is checked with `ldapsearch`.

mod support;

use std::path::Path;

use serde_json::{Value as Json, json};

fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Runs `script` with `--format json`; (exit code, stdout, stderr).
fn run(home: &Path, dir: &Path, script: &str) -> (i32, String, String) {
    let file = dir.join("m.rhai");
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

fn ok(home: &Path, dir: &Path, script: &str) -> Json {
    let (code, out, err) = run(home, dir, script);
    assert_eq!(code, 0, "{script}\n--- stdout\n{out}\n--- stderr\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn link_maps_a_hand_made_object_the_join_misses_and_the_next_run_updates_it() {
    let Some(l) = support::private_slapd(None) else {
        return;
    };
    let ou = format!("ou=map,{}", l.base);
    l.ldapadd(&format!(
        "dn: {ou}\nobjectClass: organizationalUnit\nou: map\n\n\
         dn: uid=ann.hand,{ou}\nobjectClass: inetOrgPerson\nuid: ann.hand\ncn: Ann (by hand)\nsn: Lee\n\n\
         dn: uid=bob.hand,{ou}\nobjectClass: inetOrgPerson\nuid: bob.hand\ncn: Bob (by hand)\nsn: Stone\n"
    ));
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hr.csv"),
        "employee_id,first,last\nE1,Ann,Lee\nE2,Bob,Stone\n",
    )
    .unwrap();
    let head = format!(
        "let hr = connect_csv(\"hr.csv\", #{{ key: \"employee_id\" }});\n\
         let ol = connect_ldap({url}, #{{ bind_dn: {dn}, password: secret(\"{pw}\"), base: {ou} }});\n\
         let users = sync_step(\"hr/users\", hr, ol, #{{ scope: #{{ base: {ou} }}, join: #{{ employeeNumber: \"employee_id\" }},\n\
           create: #{{ parent: {ou}, rdn: |e| `uid=${{e.employee_id}}`, class: [\"inetOrgPerson\"] }},\n\
           flows: #{{ cn: |e| `${{e.first}} ${{e.last}}`, sn: \"last\", employeeNumber: \"employee_id\" }} }});\n",
        url = lit(&l.url),
        dn = lit(&l.admin_dn),
        pw = support::PW_ENV,
        ou = lit(&ou),
    );
    let ann = format!("uid=ann.hand,{ou}");
    let bob = format!("uid=bob.hand,{ou}");
    let v = ok(
        home.path(),
        dir.path(),
        &format!("{head}link(users, \"E1\", {})", lit(&ann)),
    );
    assert_eq!(v["source_anchor"], "E1", "{v}");
    assert_eq!(
        v["target_dn"].as_str().map(str::to_lowercase),
        Some(ann.to_lowercase()),
        "{v}"
    );
    assert_eq!(v["unchanged"], false, "{v}");
    // one side at a time
    let v = ok(
        home.path(),
        dir.path(),
        &format!(
            "{head}[links(\"hr/users\", #{{ target: {} }}), links(\"hr/users\", #{{ source: \"E1\" }}), links(\"hr/users\", #{{ source: \"E2\" }})]",
            lit(&ann.to_uppercase())
        ),
    );
    assert_eq!(v[0]["source_anchor"], "E1", "{v}");
    assert_eq!(v[1]["target_dn"], v[0]["target_dn"], "{v}");
    assert!(v[2].is_null(), "{v}");
    // the target is taken: refused, naming the other link; nothing stored
    let (code, out, err) = run(
        home.path(),
        dir.path(),
        &format!("{head}link(users, \"E2\", {})", lit(&ann)),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("is linked to source E1") && err.contains("replace: true"),
        "{err}"
    );
    // the run updates the hand-mapped object (E1) and creates E2 (no join match)
    ok(home.path(), dir.path(), &format!("{head}users.run()"));
    let found = l.ldapsearch(
        &ou,
        "one",
        "(objectClass=inetOrgPerson)",
        &["cn", "employeeNumber"],
    );
    let entries: Vec<&str> = found.split("\n\n").filter(|b| b.contains("dn:")).collect();
    assert_eq!(entries.len(), 3, "{found}");
    let ann_now = entries
        .iter()
        .find(|b| b.contains("uid=ann.hand"))
        .unwrap_or_else(|| panic!("{found}"));
    assert!(
        ann_now.contains("cn: Ann Lee") && ann_now.contains("employeeNumber: E1"),
        "{ann_now}"
    );
    assert!(found.contains("dn: uid=E2,"), "{found}");
    assert!(
        !found.contains("uid=E1,"),
        "E1 was created instead of mapped: {found}"
    );
    // replace: E2 moves to bob.hand; its old link (uid=E2) is dropped
    let v = ok(
        home.path(),
        dir.path(),
        &format!(
            "{head}link(users, \"E2\", {}, #{{ replace: true }})",
            lit(&bob)
        ),
    );
    assert_eq!(v["replaced"].as_array().map(Vec::len), Some(1), "{v}");
    ok(home.path(), dir.path(), &format!("{head}users.run()"));
    let bob_now = l.ldapsearch(&bob, "base", "", &["cn", "employeeNumber"]);
    assert!(
        bob_now.contains("cn: Bob Stone") && bob_now.contains("employeeNumber: E2"),
        "{bob_now}"
    );
}

/// (exit code, stdout, stderr) of `script` for callers that expect a failure or exit 3.
fn code_of(home: &Path, dir: &Path, script: &str) -> (i32, String, String) {
    run(home, dir, script)
}

/// `map(step)` against a slapd target populated by hand: E1 matches one object, E2 two, E3
/// none, E4 is linked by hand to the object E5's join finds. The counts are exact; the preview
/// and a `map` refused by another run's lease store no link; the real `map` stores only E1's
/// and writes nothing to the directory (entryCSN and modifyTimestamp of every entry below the
/// OU unchanged); `conflicts` lists E2 (both candidates) and E5 (linked to E4) until `link`
/// resolves E2; the next run updates the object `map` linked instead of creating one.
#[test]
fn map_links_every_unambiguous_match_writes_nothing_and_conflicts_lists_the_rest() {
    let Some(l) = support::private_slapd(None) else {
        return;
    };
    let ou = format!("ou=mapnow,{}", l.base);
    let person = |uid: &str, cn: &str, num: Option<&str>| {
        format!(
            "dn: uid={uid},{ou}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: Hand\n{}\n",
            num.map(|n| format!("employeeNumber: {n}\n"))
                .unwrap_or_default()
        )
    };
    l.ldapadd(&format!(
        "dn: {ou}\nobjectClass: organizationalUnit\nou: mapnow\n\n{}{}{}{}{}",
        person("ann.hand", "Ann (by hand)", Some("E1")),
        person("bob.a", "Bob A", Some("E2")),
        person("bob.b", "Bob B", Some("E2")),
        person("dan.hand", "Dan (by hand)", None),
        person("eve.hand", "Eve (by hand)", Some("E5")),
    ));
    let stamps = || l.ldapsearch(&ou, "sub", "", &["entryCSN", "modifyTimestamp"]);
    let before = stamps();
    assert_eq!(before.matches("entryCSN:").count(), 6, "{before}");
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hr.csv"),
        "employee_id,first,last\nE1,Ann,Lee\nE2,Bob,Stone\nE3,Cid,Moss\nE4,Dan,Ray\nE5,Eve,Fox\n",
    )
    .unwrap();
    let head = format!(
        "let hr = connect_csv(\"hr.csv\", #{{ key: \"employee_id\" }});\n\
         let ol = connect_ldap({url}, #{{ bind_dn: {dn}, password: secret(\"{pw}\"), base: {ou} }});\n\
         let users = sync_step(\"hr/users\", hr, ol, #{{ scope: #{{ base: {ou} }}, join: #{{ employeeNumber: \"employee_id\" }},\n\
           create: #{{ parent: {ou}, rdn: |e| `uid=${{e.employee_id}}`, class: [\"inetOrgPerson\"] }},\n\
           flows: #{{ cn: |e| `${{e.first}} ${{e.last}}`, sn: \"last\", employeeNumber: \"employee_id\" }} }});\n",
        url = lit(&l.url),
        dn = lit(&l.admin_dn),
        pw = support::PW_ENV,
        ou = lit(&ou),
    );
    let dn = |uid: &str| format!("uid={uid},{ou}").to_lowercase();
    let links = |home: &Path| -> Vec<(String, String)> {
        let v = ok(home, dir.path(), &format!("{head}links(\"hr/users\")"));
        let mut out: Vec<(String, String)> = v
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|l| {
                (
                    l["source_anchor"].as_str().unwrap().to_string(),
                    l["target_dn"].as_str().unwrap().to_lowercase(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let counts = |v: &Json| -> [i64; 5] {
        ["matched", "linked", "ambiguous", "unmatched", "error"]
            .map(|k| v[k].as_i64().unwrap_or_else(|| panic!("{k}: {v}")))
    };
    let row = |v: &Json, src: &str| -> Json {
        v["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .find(|r| r["source"] == src)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {src}: {v}"))
    };

    // E4 is linked by hand to eve.hand, the object E5 joins to
    ok(
        home.path(),
        dir.path(),
        &format!("{head}link(users, \"E4\", {})", lit(&dn("eve.hand"))),
    );
    let hand = links(home.path());
    assert_eq!(hand, [("E4".to_string(), dn("eve.hand"))]);

    // preview: the counts, no link stored
    let v = ok(
        home.path(),
        dir.path(),
        &format!("{head}map(users, #{{ preview: true }})"),
    );
    assert_eq!(counts(&v), [1, 1, 2, 1, 0], "{v}");
    assert_eq!(v["stored"], false, "{v}");
    assert_eq!(row(&v, "E1")["result"], "matched", "{v}");
    assert_eq!(
        row(&v, "E1")["target"].as_str().map(str::to_lowercase),
        Some(dn("ann.hand"))
    );
    let e2 = row(&v, "E2");
    assert_eq!(e2["result"], "ambiguous", "{v}");
    let mut cands: Vec<String> = e2["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_lowercase())
        .collect();
    cands.sort();
    assert_eq!(cands, [dn("bob.a"), dn("bob.b")], "{v}");
    assert_eq!(row(&v, "E3")["result"], "unmatched", "{v}");
    assert_eq!(row(&v, "E4")["result"], "linked", "{v}");
    let e5 = row(&v, "E5");
    assert_eq!(e5["result"], "ambiguous", "{v}");
    assert!(
        e5["reason"]
            .as_str()
            .is_some_and(|r| r.contains("linked to source 'E4'")),
        "{v}"
    );
    assert_eq!(links(home.path()), hand, "the preview stored links");

    // a run of the step holds its lease (another machine): map stores nothing, exit 5
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let db = rusqlite::Connection::open(home.path().join("state.db")).unwrap();
    db.execute(
        "INSERT INTO lease (name, owner, host, pid, token, since_ms, heartbeat_ms)
         VALUES ('hr/users', 'hr/users', 'dc2.other.example', 4242, 'remote-token', ?1, ?1)",
        rusqlite::params![now],
    )
    .unwrap();
    let (code, out, err) = code_of(home.path(), dir.path(), &format!("{head}map(users)"));
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains("dc2.other.example"), "{err}");
    assert_eq!(
        links(home.path()),
        hand,
        "map stored links under another run's lease"
    );
    db.execute("DELETE FROM lease", []).unwrap();

    // map: E1 linked, nothing else; nothing written in the directory
    let v = ok(home.path(), dir.path(), &format!("{head}map(users)"));
    assert_eq!(counts(&v), [1, 1, 2, 1, 0], "{v}");
    assert_eq!(v["stored"], true, "{v}");
    assert!(
        v["summary"]
            .as_str()
            .is_some_and(|s| s.contains("1 matched") && s.contains("2 ambiguous")),
        "{v}"
    );
    assert_eq!(
        links(home.path()),
        [
            ("E1".to_string(), dn("ann.hand")),
            ("E4".to_string(), dn("eve.hand"))
        ]
    );
    assert_eq!(stamps(), before, "map wrote to the target");
    // mapped again: E1 is now linked
    let v = ok(
        home.path(),
        dir.path(),
        &format!("{head}map(users, #{{ preview: true }})"),
    );
    assert_eq!(counts(&v), [0, 2, 2, 1, 0], "{v}");

    // conflicts: E2 (two candidates) and E5 (its match linked to E4), until link resolves E2
    let v = ok(home.path(), dir.path(), &format!("{head}conflicts(users)"));
    let mut srcs: Vec<&str> = v
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    srcs.sort();
    assert_eq!(srcs, ["E2", "E5"], "{v}");
    assert_eq!(
        row(&json!({ "rows": v.clone() }), "E2")["candidates"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    ok(
        home.path(),
        dir.path(),
        &format!("{head}link(users, \"E2\", {})", lit(&dn("bob.a"))),
    );
    let v = ok(home.path(), dir.path(), &format!("{head}conflicts(users)"));
    let srcs: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(srcs, ["E5"], "{v}");
    assert_eq!(stamps(), before, "conflicts or link wrote to the target");

    // the run updates the objects map and link chose (E5's join is refused: exit 3)
    let (code, out, err) = code_of(home.path(), dir.path(), &format!("{head}users.run()"));
    assert_eq!(code, 3, "{out}{err}");
    let found = l.ldapsearch(
        &ou,
        "one",
        "(objectClass=inetOrgPerson)",
        &["cn", "employeeNumber"],
    );
    let entry = |uid: &str| -> String {
        found
            .split("\n\n")
            .find(|b| b.to_lowercase().contains(&format!("dn: uid={uid},")))
            .unwrap_or_else(|| panic!("{uid}: {found}"))
            .to_string()
    };
    assert!(entry("ann.hand").contains("cn: Ann Lee"), "{found}");
    assert!(entry("bob.a").contains("cn: Bob Stone"), "{found}");
    assert!(entry("bob.b").contains("cn: Bob B"), "{found}");
    assert!(entry("eve.hand").contains("cn: Dan Ray"), "{found}");
    assert!(entry("e3").contains("cn: Cid Moss"), "{found}");
    assert!(
        !found.contains("dn: uid=E1,"),
        "E1 was created instead of mapped: {found}"
    );
}
