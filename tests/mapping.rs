//! Mappings edited by hand (issue 15, API §11) against a private slapd: `link` maps a source
//! row to an object created by hand in the target (which the step's join would not find), the
//! next run updates that object instead of creating a new one, `links(step, #{ source/target })`
//! finds the pair, and a second `link` to the same target is refused unless `replace: true`.
//! Every effect on the directory is checked with `ldapsearch`.

mod support;

use std::path::Path;

use serde_json::Value as Json;

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
