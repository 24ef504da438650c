//! End-to-end tests of the `idsync` binary against a real OpenLDAP slapd (issue 2, API §1-§4).
//!
//! Every test runs the real binary on a script file (bind password only through `secret()`),
//! and checks each effect independently with `ldapsearch` / `ldapadd` / a bind from the
//! harness, never only through idsync itself. Test objects get unique names, so the tests run
//! in parallel against the shared slapd; the two tests that need a big directory (paging, a
//! server stopped mid-search) get their own private slapd.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::Ldap;
use support::ldif::{Attrs, parse_ldif, unfold};

/// The environment variable the scripts read the bind password from.
const PW_ENV: &str = support::PW_ENV;

// ---------------------------------------------------------------------------------------------
// helpers

/// `let c = connect_ldap(...)` as admin on the plain URL, with `extra` options appended
/// (`extra` starts with a comma when not empty).
fn connect(l: &Ldap, extra: &str) -> String {
    connect_url(l, &l.url, extra)
}

fn connect_url(l: &Ldap, url: &str, extra: &str) -> String {
    format!(
        "let c = connect_ldap(\"{url}\", #{{ bind_dn: \"{}\", password: secret(\"{PW_ENV}\"), \
         base: \"{}\"{extra} }});\n",
        l.admin_dn, l.base
    )
}

fn command(home: &Path, format: Option<&str>, script: &str) -> (Command, std::path::PathBuf) {
    let file = home.join(format!("{}.rhai", support::unique("s")));
    std::fs::write(&file, script).unwrap();
    let mut cmd = support::idsync_command(home);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    cmd.arg(&file);
    (cmd, file)
}

/// Runs `idsync [--format F] FILE` on `script`; returns (exit code, stdout, stderr). Never
/// accepts Rust panic text in either stream.
fn run_fmt(home: &Path, format: Option<&str>, script: &str) -> (i32, String, String) {
    let (mut cmd, _file) = command(home, format, script);
    let out = cmd.output().expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for s in [&stdout, &stderr] {
        assert!(
            !s.contains("panicked")
                && !s.contains("internal error")
                && !s.contains("RUST_BACKTRACE"),
            "panic text in idsync output:\n--- script ---\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn run(home: &Path, script: &str) -> (i32, String, String) {
    run_fmt(home, None, script)
}

/// Runs and requires exit 0; returns stdout.
fn ok(home: &Path, format: Option<&str>, script: &str) -> String {
    let (code, out, err) = run_fmt(home, format, script);
    assert_eq!(
        code, 0,
        "idsync failed:\n--- script ---\n{script}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    out
}

/// Runs and requires exit 1 with an `error:` on stderr; returns stderr.
fn fails(home: &Path, script: &str) -> String {
    let (code, out, err) = run(home, script);
    assert_eq!(
        code, 1,
        "expected exit 1:\n--- script ---\n{script}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    assert!(err.contains("error:"), "no error message: {err}");
    err
}

/// idsync's JSON for entries (one object or an array) in the same shape as [`parse_ldif`].
fn json_entries(text: &str) -> BTreeMap<String, Attrs> {
    let v: serde_json::Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("idsync --format json printed invalid JSON ({e}):\n{text}"));
    let list = match v {
        serde_json::Value::Array(a) => a,
        o @ serde_json::Value::Object(_) => vec![o],
        other => panic!("expected entries, got {other}"),
    };
    let mut out = BTreeMap::new();
    for e in list {
        let obj = e.as_object().expect("entry is a JSON object");
        let dn = obj["dn"].as_str().expect("dn is a string").to_string();
        let mut attrs = Attrs::new();
        for (k, v) in obj {
            if k == "dn" {
                continue;
            }
            let mut vals: Vec<String> = match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().expect("string value").to_string())
                    .collect(),
                other => panic!("unexpected JSON value for {k}: {other}"),
            };
            vals.sort();
            let prev = attrs.insert(k.to_ascii_lowercase(), vals);
            assert!(prev.is_none(), "attribute {k} twice in {text}");
        }
        out.insert(dn.to_ascii_lowercase(), attrs);
    }
    out
}

/// ldapsearch, parsed.
fn search(
    l: &Ldap,
    base: &str,
    scope: &str,
    filter: &str,
    attrs: &[&str],
) -> BTreeMap<String, Attrs> {
    parse_ldif(&l.ldapsearch(base, scope, filter, attrs))
}

/// The single entry at `dn` (ldapsearch, base scope); panics if it does not exist.
fn entry(l: &Ldap, dn: &str, attrs: &[&str]) -> Attrs {
    let mut m = search(l, dn, "base", "", attrs);
    assert_eq!(m.len(), 1, "expected one entry at {dn}: {m:?}");
    m.pop_first().unwrap().1
}

/// True when `dn` exists (looked up from the suffix, so a missing entry is not an error).
fn exists(l: &Ldap, dn: &str) -> bool {
    let (rdn, _) = dn.split_once(',').unwrap();
    search(l, &l.base, "sub", &format!("({rdn})"), &["1.1"]).contains_key(&dn.to_ascii_lowercase())
}

fn vals(a: &Attrs, name: &str) -> Vec<String> {
    a.get(&name.to_ascii_lowercase())
        .cloned()
        .unwrap_or_default()
}

fn set(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Adds `ou=NAME,parent` with ldapadd; returns its DN.
fn add_ou(l: &Ldap, parent: &str, name: &str) -> String {
    let dn = format!("ou={name},{parent}");
    l.ldapadd(&format!(
        "dn: {dn}\nobjectClass: organizationalUnit\nou: {name}\n"
    ));
    dn
}

/// Adds an inetOrgPerson `uid=UID,parent` with ldapadd (cn "Name UID", sn, `extra` LDIF
/// lines); returns its DN.
fn add_user(l: &Ldap, parent: &str, uid: &str, sn: &str, extra: &str) -> String {
    let dn = format!("uid={uid},{parent}");
    l.ldapadd(&format!(
        "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Name {uid}\nsn: {sn}\n{extra}"
    ));
    dn
}

fn people(l: &Ldap) -> String {
    format!("ou=people,{}", l.base)
}

// ---------------------------------------------------------------------------------------------
// 1. search

/// A small tree: ou=U,ou=people with three users (two sn=Alpha, one with two mails) and a
/// sub-OU with one more Alpha.
struct Tree {
    ou: String,
    sub: String,
    users: Vec<String>,
}

fn small_tree(l: &Ldap, prefix: &str) -> Tree {
    let ou = add_ou(l, &people(l), &support::unique(prefix));
    let sub = add_ou(l, &ou, "sub");
    let uids: Vec<String> = (0..4).map(|_| support::unique("u")).collect();
    let users = vec![
        add_user(
            l,
            &ou,
            &uids[0],
            "Alpha",
            &format!(
                "mail: {0}@a.example\nmail: {0}@b.example\ncn: Second {0}\n",
                uids[0]
            ),
        ),
        add_user(
            l,
            &ou,
            &uids[1],
            "Alpha",
            &format!("mail: {}@a.example\n", uids[1]),
        ),
        add_user(l, &ou, &uids[2], "Beta", "title: Engineer\n"),
        add_user(l, &sub, &uids[3], "Alpha", "description: deep\n"),
    ];
    Tree { ou, sub, users }
}

#[test]
fn search_filter_attrs_base_scope_limit_json() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let t = small_tree(l, "srch");
    let c = connect(l, "");

    // filter + attrs + base + scope sub: the same entries and values ldapsearch sees, and only
    // the asked-for attributes
    let out = ok(
        home.path(),
        Some("json"),
        &format!(
            "{c}c.search(\"(sn=Alpha)\", #{{ base: \"{}\", scope: \"sub\", attrs: [\"uid\", \"sn\", \"mail\"] }})",
            t.ou
        ),
    );
    let got = json_entries(&out);
    let want = search(l, &t.ou, "sub", "(sn=Alpha)", &["uid", "sn", "mail"]);
    assert_eq!(got.len(), 3, "{out}");
    assert_eq!(got, want, "idsync json vs ldapsearch");
    for attrs in got.values() {
        for k in attrs.keys() {
            assert!(
                ["uid", "sn", "mail"].contains(&k.as_str()),
                "unasked attribute {k} in {out}"
            );
        }
    }
    let multi = &got[&t.users[0].to_ascii_lowercase()];
    assert_eq!(
        vals(multi, "mail").len(),
        2,
        "multi-valued mail as an array: {out}"
    );

    // scope one: only the direct children, not the entry in the sub-OU
    let out = ok(
        home.path(),
        Some("json"),
        &format!(
            "{c}c.search(\"(objectClass=inetOrgPerson)\", #{{ base: \"{}\", scope: \"one\" }})",
            t.ou
        ),
    );
    let got = json_entries(&out);
    let want = search(l, &t.ou, "one", "(objectClass=inetOrgPerson)", &[]);
    assert_eq!(got.len(), 3, "{out}");
    assert!(!got.contains_key(&t.users[3].to_ascii_lowercase()));
    // all user attributes, values as the server stores them (entryUUID not shown)
    assert_eq!(got, want, "idsync json (all attributes) vs ldapsearch");

    // scope sub over the same base finds the deeper one too; base scope finds the OU itself
    let out = ok(
        home.path(),
        None,
        &format!(
            "{c}print(c.search(\"(objectClass=inetOrgPerson)\", #{{ base: \"{0}\", scope: \"sub\" }}).len());\n\
             print(c.search(\"(objectClass=*)\", #{{ base: \"{0}\", scope: \"base\" }})[0].dn);\n\
             print(c.search(\"(objectClass=inetOrgPerson)\", #{{ base: \"{0}\", limit: 2 }}).len());\n\
             print(c.search(\"(uid={1})\")[0].dn);\n\
             print(c.search(\"(uid={1})\", #{{ base: \"{2}\", scope: \"one\" }}).len());",
            t.ou,
            t.users[3]
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("uid="),
            t.sub
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["4", t.ou.as_str(), "2", t.users[3].as_str(), "1"],
        "sub count, base scope, limit, default base, one-level under the sub-OU"
    );
    assert_eq!(
        search(l, &t.ou, "sub", "(objectClass=inetOrgPerson)", &["1.1"]).len(),
        4
    );
}

#[test]
fn search_csv_header_and_rows() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let t = small_tree(l, "csv");
    let c = connect(l, "");
    let out = ok(
        home.path(),
        Some("csv"),
        &format!(
            "{c}c.search(\"(objectClass=inetOrgPerson)\", #{{ base: \"{}\", attrs: [\"uid\", \"mail\", \"sn\"] }})",
            t.ou
        ),
    );
    let mut rdr = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header, vec!["dn", "uid", "mail", "sn"], "{out}");
    let want = search(
        l,
        &t.ou,
        "sub",
        "(objectClass=inetOrgPerson)",
        &["uid", "mail", "sn"],
    );
    let mut rows = 0;
    for rec in rdr.records() {
        let rec = rec.unwrap();
        rows += 1;
        let dn = rec[0].to_ascii_lowercase();
        let w = want
            .get(&dn)
            .unwrap_or_else(|| panic!("csv row for unknown {dn}: {out}"));
        assert_eq!(rec[1], vals(w, "uid").join(";"));
        let mut mail: Vec<String> = rec[2]
            .split(';')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        mail.sort();
        assert_eq!(mail, vals(w, "mail"), "multi-valued cell: {out}");
        assert_eq!(rec[3], vals(w, "sn").join(";"));
    }
    assert_eq!(rows, want.len(), "{out}");
    assert_eq!(rows, 4);
}

#[test]
fn search_ldif_output_is_importable_with_ldapadd() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let t = small_tree(l, "ldif");
    // values LDIF must base64: non-ASCII (also in the DN), leading ':' / '<' / space, a
    // trailing space, a line break, and binary data
    let b64 = |s: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let tricky_uid = format!("j\u{f6}rg{}", support::unique("x"));
    let tricky_dn = format!("uid={tricky_uid},{}", t.ou);
    l.ldapadd(&format!(
        "dn:: {}\nobjectClass: inetOrgPerson\nuid:: {}\ncn:: {}\ncn:: {}\nsn:: {}\n\
         description:: {}\ntitle:: {}\njpegPhoto:: {}\n",
        b64(tricky_dn.as_bytes()),
        b64(tricky_uid.as_bytes()),
        b64("J\u{f6}rg \u{dc}nal".as_bytes()),
        b64(b":colon"),
        b64(b"<angle"),
        b64(b" two\nlines "),
        b64(b"trailing "),
        b64(&[0xff, 0xd8, 0xff, 0x00, 0x10]),
    ));
    let c = connect(l, "");
    let out = ok(
        home.path(),
        Some("ldif"),
        &format!(
            "{c}c.search(\"(objectClass=inetOrgPerson)\", #{{ base: \"{}\", scope: \"one\" }})",
            t.ou
        ),
    );
    let exported = parse_ldif(&out);
    assert_eq!(exported.len(), 4, "{out}");
    let tricky = &exported[&tricky_dn.to_ascii_lowercase()];
    assert_eq!(vals(tricky, "description"), vec![" two\nlines "]);
    assert_eq!(vals(tricky, "cn"), set(&[":colon", "J\u{f6}rg \u{dc}nal"]));
    // the LDIF says exactly what ldapsearch says
    assert_eq!(
        exported,
        search(l, &t.ou, "one", "(objectClass=inetOrgPerson)", &[])
    );

    // rewrite the DNs into another branch and import with ldapadd
    let target = add_ou(l, &l.base, &support::unique("imp"));
    let rewritten: String = unfold(&out)
        .lines()
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            let dn = if let Some(d) = lower.strip_prefix("dn: ") {
                line[line.len() - d.len()..].to_string()
            } else if let Some(d) = lower.strip_prefix("dn:: ") {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(&line[line.len() - d.len()..])
                    .unwrap();
                String::from_utf8(raw).unwrap()
            } else {
                return format!("{line}\n");
            };
            let rdn = dn.split(',').next().unwrap();
            assert_eq!(
                dn.to_ascii_lowercase(),
                format!("{rdn},{}", t.ou).to_ascii_lowercase()
            );
            format!("dn:: {}\n", b64(format!("{rdn},{target}").as_bytes()))
        })
        .collect();
    l.ldapadd(&rewritten);
    let imported = search(l, &target, "one", "(objectClass=inetOrgPerson)", &[]);
    assert_eq!(imported.len(), 4);
    assert!(imported.contains_key(&format!("uid={tricky_uid},{target}").to_ascii_lowercase()));
    let strip = |m: &BTreeMap<String, Attrs>| -> Vec<Attrs> { m.values().cloned().collect() };
    let mut a = strip(&imported);
    let mut b = strip(&exported);
    a.sort();
    b.sort();
    assert_eq!(a, b, "imported copies carry the same attributes");
}

#[test]
fn search_pages_through_1200_entries() {
    let Some(l) = support::private_slapd(Some(&support::gen_users(1200))) else {
        return;
    };
    let home = support::temp_home();
    let c = connect(&l, ", page_size: 100");
    let out = ok(
        home.path(),
        Some("json"),
        &format!("{c}c.search(\"(objectClass=inetOrgPerson)\", #{{ attrs: [\"uid\"] }})"),
    );
    let got = json_entries(&out);
    assert_eq!(got.len(), 1200, "all pages collected");
    let uids: BTreeSet<String> = got.values().map(|a| vals(a, "uid").join(";")).collect();
    let want: BTreeSet<String> =
        search(&l, &l.base, "sub", "(objectClass=inetOrgPerson)", &["uid"])
            .values()
            .map(|a| vals(a, "uid").join(";"))
            .collect();
    assert_eq!(want.len(), 1200);
    assert_eq!(uids, want, "each entry exactly once");

    // limits below, across and above the page size; 0 means no limit (as in LDAP)
    let out = ok(
        home.path(),
        None,
        &format!(
            "{c}for n in [50, 100, 150, 1000, 5000, 0] {{\n  print(c.search(\"(objectClass=inetOrgPerson)\", #{{ limit: n, attrs: [\"uid\"] }}).len());\n}}"
        ),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["50", "100", "150", "1000", "1200", "1200"]
    );
}

// ---------------------------------------------------------------------------------------------
// 2. get

#[test]
fn get_by_dn_uuid_uid_cn_absent_and_ambiguous() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let uid = support::unique("get");
    let dn = add_user(
        l,
        &people(l),
        &uid,
        "Getter",
        &format!("mail: {uid}@example.com\n"),
    );
    let uuid = vals(&entry(l, &dn, &["entryUUID"]), "entryUUID")
        .pop()
        .expect("entryUUID");
    let c = connect(l, "");

    // by DN: the entry as ldapsearch sees it
    let out = ok(home.path(), Some("json"), &format!("{c}c.get(\"{dn}\")"));
    let got = json_entries(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[&dn.to_ascii_lowercase()], entry(l, &dn, &[]));

    // by entryUUID, uid, cn; the anchor is the entryUUID ldapsearch reports
    let out = ok(
        home.path(),
        None,
        &format!(
            "{c}print(c.get(\"{uuid}\").dn);\nprint(c.get(\"{uid}\").dn);\nprint(c.get(\"Name {uid}\").dn);\n\
             print(c.get(\"{dn}\").anchor);\nprint(type_of(c.get(\"nobody{uid}\")));"
        ),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![dn.as_str(), &dn, &dn, &uuid, "()"],
        "get by entryUUID, uid, cn; anchor; absent"
    );

    // absent: prints nothing, exit 0
    let (code, out, err) = run(home.path(), &format!("{c}c.get(\"nobody{uid}\")"));
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, out, _) = run(
        home.path(),
        &format!("{c}c.get(\"uid=nobody{uid},{}\")", people(l)),
    );
    assert_eq!((code, out.as_str()), (0, ""), "absent DN is () too");

    // two entries with the same cn: an error, never a guess
    let twin = support::unique("twin");
    add_user(
        l,
        &people(l),
        &format!("{twin}a"),
        "Twin",
        &format!("cn: Twin {twin}\n"),
    );
    add_user(
        l,
        &people(l),
        &format!("{twin}b"),
        "Twin",
        &format!("cn: Twin {twin}\n"),
    );
    assert_eq!(
        search(l, &l.base, "sub", &format!("(cn=Twin {twin})"), &["1.1"]).len(),
        2
    );
    let err = fails(home.path(), &format!("{c}c.get(\"Twin {twin}\")"));
    assert!(err.contains("ambiguous"), "{err}");
}

/// Issue 10 item 1: non-ASCII identities (`Søren`, `山田`) are ordinary names. Before the fix
/// the SID check sliced the first two bytes and every one of these calls ended the process
/// with "internal error: end byte index 2 is not a char boundary", past `try`/`catch`.
#[test]
fn non_ascii_identities_get_delete_members_authenticate() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let u = support::unique("");
    let uid = format!("Søren{u}");
    let cn = format!("山田{u}");
    let dn = format!("uid={uid},{}", people(l));
    let c = connect(l, "");
    let script = format!(
        "{c}c.create(\"{dn}\", #{{ objectClass: \"inetOrgPerson\", uid: \"{uid}\", cn: \"{cn}\", \
         sn: \"Søren\", userPassword: \"Pw-{u}\" }});\n\
         print(\"by-uid=\" + c.get(\"{uid}\").dn);\n\
         print(\"by-cn=\" + c.get(\"{cn}\").dn);\n\
         print(\"by-dn=\" + c.get(\"{dn}\").uid);\n\
         print(\"plain=\" + type_of(c.get(\"Søren-nobody{u}\")) + type_of(c.get(\"山田-nobody{u}\")));\n\
         print(\"auth=\" + c.authenticate(\"{uid}\", \"Pw-{u}\") + \",\" + c.authenticate(\"{cn}\", \"wrong\"));\n\
         let r = \"none\";\n\
         try {{ c.members(\"山田-nobody{u}\"); r = \"returned\"; }} catch (e) {{ r = \"caught: \" + e; }}\n\
         print(\"members=\" + r);\n\
         r = \"none\";\n\
         try {{ c.delete(\"Søren-nobody{u}\"); r = \"returned\"; }} catch (e) {{ r = \"caught: \" + e; }}\n\
         print(\"delete-missing=\" + r);\n\
         c.delete(\"{uid}\");\n\
         print(\"after=\" + type_of(c.get(\"{uid}\")));"
    );
    let out = ok(home.path(), None, &script);
    let line = |tag: &str| {
        out.lines()
            .find_map(|x| x.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag} line in:\n{out}"))
            .to_string()
    };
    assert_eq!(line("by-uid="), dn, "{out}");
    assert_eq!(line("by-cn="), dn, "{out}");
    assert_eq!(line("by-dn="), uid, "{out}");
    assert_eq!(line("plain="), "()()", "{out}");
    assert_eq!(line("auth="), "true,false", "{out}");
    let members = line("members=");
    assert!(
        members.starts_with("caught: ") && members.contains("山田-nobody"),
        "members of a missing group is a catchable error naming it: {members}"
    );
    let deleted = line("delete-missing=");
    assert!(
        deleted.starts_with("caught: ") && deleted.contains("Søren-nobody"),
        "delete of a missing entry is a catchable error naming it: {deleted}"
    );
    assert_eq!(line("after="), "()", "{out}");
    // independently: the entry was created with its UTF-8 names and is gone now
    assert!(
        search(l, &l.base, "sub", &format!("(cn={cn})"), &["1.1"]).is_empty(),
        "deleted entry still found by ldapsearch"
    );
}

#[test]
fn get_by_guid_string_finds_entry_by_entry_uuid() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let uid = support::unique("guid");
    let dn = add_user(l, &people(l), &uid, "Guid", "");
    let uuid = vals(&entry(l, &dn, &["entryUUID"]), "entryUUID")
        .pop()
        .expect("entryUUID");
    // the Windows way of writing a GUID: braces, upper case
    let braced = format!("{{{}}}", uuid.to_ascii_uppercase());
    let c = connect(l, "");
    let out = ok(
        home.path(),
        None,
        &format!("{c}let e = c.get(\"{braced}\");\nprint(e.dn);\nprint(e.anchor);\nprint(e.uid);"),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![dn.as_str(), &uuid, &uid]
    );
}

// ---------------------------------------------------------------------------------------------
// 3. create, modify, rename, move, delete

#[test]
fn create_modify_rename_move_delete() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let ou = add_ou(l, &people(l), &support::unique("cud"));
    let uid = support::unique("cr");
    let dn = format!("uid={uid},{ou}");
    let c = connect(l, "");

    // create with a multi-valued attribute; the returned entry is the stored one
    let out = ok(
        home.path(),
        None,
        &format!(
            "{c}let e = c.create(\"{dn}\", #{{ objectClass: [\"top\", \"inetOrgPerson\"], uid: \"{uid}\", \
             cn: \"Carol {uid}\", sn: \"Create\", mail: [\"a@{uid}.org\", \"b@{uid}.org\"], description: \"temp\" }});\n\
             print(e.dn); print(e.values(\"mail\").len());"
        ),
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), vec![dn.as_str(), "2"]);
    let e = entry(l, &dn, &[]);
    assert_eq!(
        vals(&e, "mail"),
        set(&[&format!("a@{uid}.org"), &format!("b@{uid}.org")])
    );
    assert_eq!(vals(&e, "objectClass"), set(&["top", "inetOrgPerson"]));
    assert_eq!(vals(&e, "cn"), vec![format!("Carol {uid}")]);
    assert_eq!(vals(&e, "description"), vec!["temp"]);

    // modify: replace, add a value, delete one value, delete a whole attribute
    ok(
        home.path(),
        None,
        &format!(
            "{c}c.modify(\"{uid}\", #{{ replace: #{{ title: \"Engineer\", telephoneNumber: [\"+1 1\", \"+1 2\"] }}, \
             add: #{{ mail: \"c@{uid}.org\" }}, delete: #{{ description: () }} }});\n\
             c.modify(\"{dn}\", #{{ delete: #{{ mail: \"a@{uid}.org\" }} }});"
        ),
    );
    let e = entry(l, &dn, &[]);
    assert_eq!(vals(&e, "title"), vec!["Engineer"]);
    assert_eq!(vals(&e, "telephoneNumber"), set(&["+1 1", "+1 2"]));
    assert_eq!(
        vals(&e, "mail"),
        set(&[&format!("b@{uid}.org"), &format!("c@{uid}.org")])
    );
    assert!(
        vals(&e, "description").is_empty(),
        "description deleted: {e:?}"
    );

    // replace with [] clears; replace overwrites all values
    ok(
        home.path(),
        None,
        &format!(
            "{c}c.modify(\"{dn}\", #{{ replace: #{{ telephoneNumber: [], mail: \"only@{uid}.org\" }} }});"
        ),
    );
    let e = entry(l, &dn, &[]);
    assert!(vals(&e, "telephoneNumber").is_empty(), "{e:?}");
    assert_eq!(vals(&e, "mail"), vec![format!("only@{uid}.org")]);

    // rename with a full RDN: the old DN is gone, the old RDN value too
    let uid2 = support::unique("rn");
    let dn2 = format!("uid={uid2},{ou}");
    let out = ok(
        home.path(),
        None,
        &format!("{c}c.rename(\"{dn}\", \"uid={uid2}\")"),
    );
    assert_eq!(out.trim(), dn2);
    assert!(!exists(l, &dn), "old DN still there");
    assert_eq!(vals(&entry(l, &dn2, &["uid"]), "uid"), vec![uid2.clone()]);

    // rename with just the value keeps the naming attribute
    let uid3 = support::unique("rv");
    let dn3 = format!("uid={uid3},{ou}");
    let out = ok(
        home.path(),
        None,
        &format!("{c}c.rename(\"{uid2}\", \"{uid3}\")"),
    );
    assert_eq!(out.trim(), dn3);
    assert!(!exists(l, &dn2));
    let e = entry(l, &dn3, &[]);
    assert_eq!(vals(&e, "uid"), vec![uid3.clone()]);
    assert_eq!(
        vals(&e, "title"),
        vec!["Engineer"],
        "attributes survive renames"
    );

    // move under another parent, keeping the RDN
    let dest = add_ou(l, &people(l), &support::unique("dst"));
    let dn4 = format!("uid={uid3},{dest}");
    let out = ok(
        home.path(),
        None,
        &format!("{c}c.move(\"{dn3}\", \"{dest}\")"),
    );
    assert_eq!(out.trim(), dn4);
    assert!(!exists(l, &dn3));
    assert_eq!(vals(&entry(l, &dn4, &["title"]), "title"), vec!["Engineer"]);

    // delete (by uid)
    ok(home.path(), None, &format!("{c}c.delete(\"{uid3}\")"));
    assert!(!exists(l, &dn4), "deleted entry still found");
    assert!(
        search(l, &l.base, "sub", &format!("(uid={uid3})"), &["1.1"]).is_empty(),
        "deleted"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. group membership

#[test]
fn members_add_member_remove_member_group_of_names() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let m1 = support::unique("m");
    let m2 = support::unique("m");
    let dn1 = add_user(l, &people(l), &m1, "Member", "");
    let dn2 = add_user(l, &people(l), &m2, "Member", "");
    let gname = support::unique("grp");
    let gdn = format!("cn={gname},ou=groups,{}", l.base);
    l.ldapadd(&format!(
        "dn: {gdn}\nobjectClass: groupOfNames\ncn: {gname}\nmember: {dn1}\n"
    ));
    let members = |l: &Ldap| {
        let mut v = vals(&entry(l, &gdn, &["member"]), "member");
        v.iter_mut().for_each(|s| *s = s.to_ascii_lowercase());
        v.sort();
        v
    };
    let c = connect(l, "");

    // members() = what ldapsearch shows
    let out = ok(
        home.path(),
        Some("json"),
        &format!("{c}c.members(\"{gdn}\")"),
    );
    let listed: Vec<String> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed, vec![dn1.clone()]);

    // add twice (by uid, then by DN): one value, no error
    ok(
        home.path(),
        None,
        &format!("{c}c.add_member(\"{gdn}\", \"{m2}\");\nc.add_member(\"{gname}\", \"{dn2}\");"),
    );
    let mut want = vec![dn1.to_ascii_lowercase(), dn2.to_ascii_lowercase()];
    want.sort();
    assert_eq!(members(l), want, "member added exactly once");
    let out = ok(
        home.path(),
        Some("json"),
        &format!("{c}c.members(\"{gname}\")"),
    );
    let mut listed: Vec<String> = serde_json::from_str::<Vec<String>>(&out)
        .unwrap()
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    listed.sort();
    assert_eq!(listed, want);

    // remove twice: gone, no error
    ok(
        home.path(),
        None,
        &format!(
            "{c}c.remove_member(\"{gdn}\", \"{m2}\");\nc.remove_member(\"{gdn}\", \"{dn2}\");"
        ),
    );
    assert_eq!(members(l), vec![dn1.to_ascii_lowercase()]);
}

// ---------------------------------------------------------------------------------------------
// 5, 6. passwords and accounts

#[test]
fn set_password_then_authenticate() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let uid = support::unique("pw");
    let dn = add_user(
        l,
        &people(l),
        &uid,
        "Password",
        "userPassword: Old-pass-1\n",
    );
    assert!(l.can_bind(&dn, "Old-pass-1"));
    let new_pw = format!("N3w-{}", support::unique("p"));
    let c = connect(l, "");
    let script = format!(
        "{c}c.set_password(\"{uid}\", secret(\"NEW_PW\"));\n\
         print(c.authenticate(\"{uid}\", secret(\"NEW_PW\")));\n\
         print(c.authenticate(\"{dn}\", \"wrong-password\"));\n\
         print(c.authenticate(\"{uid}\", \"\"));\n\
         print(c.authenticate(\"{uid}\", \"Old-pass-1\"));"
    );
    let (mut cmd, _f) = command(home.path(), None, &script);
    let out = cmd.env("NEW_PW", &new_pw).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec!["true", "false", "false", "false"],
        "new password, wrong one, empty one, old one"
    );
    assert!(
        !stdout.contains(&new_pw) && !stderr.contains(&new_pw),
        "secret printed"
    );
    // independently: the directory takes the new password and not the old one
    assert!(l.can_bind(&dn, &new_pw), "can_bind with the new password");
    assert!(!l.can_bind(&dn, "Old-pass-1"), "old password still works");
}

#[test]
fn disable_and_enable_lock_and_unlock() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let uid = support::unique("dis");
    let pw = "Dis-pass-1";
    let dn = add_user(
        l,
        &people(l),
        &uid,
        "Disable",
        &format!("userPassword: {pw}\n"),
    );
    assert!(l.can_bind(&dn, pw));
    let c = connect(l, "");

    let out = ok(
        home.path(),
        None,
        &format!("{c}c.disable(\"{uid}\");\nc.authenticate(\"{uid}\", \"{pw}\")"),
    );
    assert_eq!(out.trim(), "false", "authenticate on a disabled account");
    assert!(!l.can_bind(&dn, pw), "disabled account still binds");
    let locked = entry(l, &dn, &["pwdAccountLockedTime"]);
    assert_eq!(vals(&locked, "pwdAccountLockedTime"), vec!["000001010000Z"]);
    let all_op = entry(l, &dn, &["+"]);
    assert_eq!(vals(&all_op, "pwdAccountLockedTime"), vec!["000001010000Z"]);

    // enable twice: the second is a no-op, not an error
    let out = ok(
        home.path(),
        None,
        &format!(
            "{c}c.enable(\"{dn}\");\nc.enable(\"{uid}\");\nc.authenticate(\"{uid}\", \"{pw}\")"
        ),
    );
    assert_eq!(out.trim(), "true");
    assert!(l.can_bind(&dn, pw), "enabled account cannot bind");
    assert!(
        vals(&entry(l, &dn, &["+"]), "pwdAccountLockedTime").is_empty(),
        "pwdAccountLockedTime left behind"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. TLS

#[test]
fn tls_ldaps_verify_and_starttls() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();

    // LDAPS with the right CA
    let c = connect_url(l, &l.ldaps_url, &format!(", ca_file: \"{}\"", l.ca_file));
    let out = ok(
        home.path(),
        None,
        &format!(
            "{c}let t = c.test();\nprint(t.tls);\nprint(t.bound);\nprint(c.search(\"(ou=people)\").len());"
        ),
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["ldaps", "true", "1"]);

    // LDAPS with an unrelated CA: a clear certificate error
    let c = connect_url(
        l,
        &l.ldaps_url,
        &format!(", ca_file: \"{}\"", l.wrong_ca_file),
    );
    let err = fails(home.path(), &format!("{c}c.test()"));
    let lower = err.to_ascii_lowercase();
    assert!(
        lower.contains("certificate") || lower.contains("tls"),
        "{err}"
    );

    // verify: false accepts it
    let c = connect_url(
        l,
        &l.ldaps_url,
        &format!(", ca_file: \"{}\", verify: false", l.wrong_ca_file),
    );
    let out = ok(home.path(), None, &format!("{c}c.test().tls"));
    assert_eq!(out.trim(), "ldaps");

    // StartTLS on the plain URL with the right CA; and with the wrong one, a clear error
    let c = connect(
        l,
        &format!(", tls: \"starttls\", ca_file: \"{}\"", l.ca_file),
    );
    let out = ok(
        home.path(),
        None,
        &format!("{c}let t = c.test();\nprint(t.tls);\nprint(t.bound);"),
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["starttls", "true"]);
    let c = connect(
        l,
        &format!(", tls: \"starttls\", ca_file: \"{}\"", l.wrong_ca_file),
    );
    let err = fails(home.path(), &format!("{c}c.test()"));
    assert!(err.to_ascii_lowercase().contains("certificate"), "{err}");
}

/// A name for this machine that is not loopback by idsync's rule (a name other than
/// `localhost`) but reaches the harness slapd on 127.0.0.1: the host name, when it resolves to
/// 127.0.0.1 (as /etc/hosts says on this VM and on Debian by default).
fn non_loopback_name() -> String {
    use std::net::ToSocketAddrs;
    let mut buf = [0u8; 256];
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    let reaches = (name.as_str(), 389)
        .to_socket_addrs()
        .map(|mut a| a.any(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST))
        .unwrap_or(false);
    assert!(
        reaches && name != "localhost",
        "this test needs a host name other than localhost that resolves to 127.0.0.1; '{name}' does not"
    );
    name
}

/// `ldapmodify` on cn=config of a private slapd (as cn=admin,cn=config).
fn config_modify(l: &Ldap, ldif: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ldapmodify")
        .args([
            "-x",
            "-H",
            &l.url,
            "-D",
            "cn=admin,cn=config",
            "-w",
            "secret",
        ])
        .env("LDAPCONF", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ldapmodify");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ldif.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Issue 10 item 12. A slapd that refuses simple binds without TLS (olcSecurity
/// simple_bind=1) proves what went over the wire: to a non-loopback name, a password bind on
/// an ldap:// URL succeeds only because idsync used StartTLS on its own; the same bind to
/// 127.0.0.1 (loopback: plain) and with tls: "none" is refused by the server as unencrypted.
/// `c.test()` says that StartTLS was chosen and that verification is off; authenticate() on
/// an anonymous connection protects the user's password the same way.
#[test]
fn password_bind_to_a_non_loopback_host_uses_starttls_unless_tls_none() {
    let Some(l) = support::private_slapd(None) else {
        return;
    };
    let home = support::temp_home();
    config_modify(
        &l,
        "dn: cn=config\nchangetype: modify\nreplace: olcSecurity\nolcSecurity: simple_bind=1\n",
    )
    .unwrap();
    let port = l.url.rsplit(':').next().unwrap().to_string();
    let name = non_loopback_name();
    let remote = format!("ldap://{name}:{port}");

    // to the non-loopback name: StartTLS on its own, the bind succeeds (the certificate does
    // not name this host, so verification is switched off here, and test() says so)
    let c = connect_url(&l, &remote, ", verify: false");
    let out = ok(
        home.path(),
        None,
        &format!(
            "{c}let t = c.test();\nprint(t.tls);\nprint(t.bound);\nprint(t.tls_reason);\nprint(t.verify);\nprint(c.search(\"(ou=people)\").len());"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["starttls", "true"], "{out}");
    assert!(lines[2].contains("not loopback"), "{out}");
    assert!(
        lines[3].starts_with("OFF") && lines[3].contains("verify: false"),
        "{out}"
    );
    assert_eq!(lines[4], "1", "{out}");

    // authenticate() on an anonymous connection to that name: the user's bind is protected too
    let anon = format!(
        "let a = connect_ldap(\"{remote}\", #{{ verify: false, base: \"{}\" }});\n",
        l.base
    );
    let out = ok(
        home.path(),
        None,
        &format!(
            "{anon}print(a.authenticate(\"{}\", secret(\"{PW_ENV}\")));",
            l.admin_dn
        ),
    );
    assert_eq!(out.trim(), "true");

    // the same server refuses a plain bind: loopback stays plain, tls: "none" is plain
    let err = fails(home.path(), &connect_url(&l, &l.url, ""));
    assert!(err.contains("confidentiality required"), "{err}");
    let err = fails(home.path(), &connect_url(&l, &remote, ", tls: \"none\""));
    assert!(err.contains("confidentiality required"), "{err}");

    // with certificate verification on, a name the certificate does not list is said so
    let err = fails(
        home.path(),
        &connect_url(&l, &remote, &format!(", ca_file: \"{}\"", l.ca_file)),
    );
    assert!(
        err.contains(&format!("not issued for the name '{name}'")),
        "{err}"
    );

    // ca_file with tls: "none" is an error, not silently ignored
    let err = fails(
        home.path(),
        &connect_url(
            &l,
            &remote,
            &format!(", tls: \"none\", ca_file: \"{}\"", l.ca_file),
        ),
    );
    assert!(
        err.contains("ca_file") && err.contains("tls: \"none\""),
        "{err}"
    );
}

/// Issue 10 item 12: a server that offers no StartTLS (a private slapd with its TLS
/// certificate removed) gives a clear message for a password bind to a non-loopback name,
/// and nothing is sent in clear text; tls: "none" is the explicit way to bind anyway.
#[test]
fn a_server_without_starttls_is_a_clear_error_for_a_password_bind() {
    let Some(mut l) = support::private_slapd(None) else {
        return;
    };
    let home = support::temp_home();
    // slapd refuses to drop its certificate while running: stop it, take the TLS settings
    // out of its cn=config, start it again (same ports and data)
    l.kill();
    let config = l.dir().join("slapd.d/cn=config.ldif");
    let text = std::fs::read_to_string(&config).unwrap();
    let kept: Vec<&str> = text.lines().filter(|x| !x.starts_with("olcTLS")).collect();
    assert!(
        kept.len() < text.lines().count(),
        "no olcTLS lines in {text}"
    );
    std::fs::write(&config, kept.join("\n") + "\n").unwrap();
    l.restart();
    let port = l.url.rsplit(':').next().unwrap().to_string();
    let remote = format!("ldap://{}:{port}", non_loopback_name());
    let err = fails(home.path(), &connect_url(&l, &remote, ""));
    assert!(err.contains("offers no StartTLS"), "{err}");
    assert!(err.contains("tls: \"none\""), "names the way out: {err}");
    let out = ok(
        home.path(),
        None,
        &format!(
            "{}c.test().tls",
            connect_url(&l, &remote, ", tls: \"none\"")
        ),
    );
    assert_eq!(out.trim(), "none");
}

/// Issue 10 item 13: TLS failures say what to do. LDAPS without ca_file: an unknown issuer
/// names ca_file and verify: false; with the wrong ca_file it names that file; ldaps:// to
/// the plain LDAP port is a port that does not speak TLS, not a certificate problem.
#[test]
fn tls_failures_say_what_to_do() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let err = fails(home.path(), &connect_url(l, &l.ldaps_url, ""));
    assert!(
        err.contains("signed by a CA this machine does not trust")
            && err.contains("ca_file")
            && err.contains("verify: false"),
        "{err}"
    );
    let err = fails(
        home.path(),
        &connect_url(
            l,
            &l.ldaps_url,
            &format!(", ca_file: \"{}\"", l.wrong_ca_file),
        ),
    );
    assert!(
        err.contains(&format!(
            "not signed by the CA in ca_file '{}'",
            l.wrong_ca_file
        )),
        "{err}"
    );
    let plain_as_ldaps = l.url.replacen("ldap://", "ldaps://", 1);
    let err = fails(
        home.path(),
        &connect_url(l, &plain_as_ldaps, &format!(", ca_file: \"{}\"", l.ca_file)),
    );
    assert!(err.contains("does not speak TLS"), "{err}");
    assert!(!err.to_ascii_lowercase().contains("certificate"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 8. errors

#[test]
fn errors_are_clear_and_exit_1() {
    let Some(l) = support::slapd() else { return };
    let home = support::temp_home();
    let c = connect(l, "");

    let err = fails(home.path(), &format!("{c}c.search(\"(cn=a\")"));
    assert!(err.contains("bad filter"), "{err}");
    assert!(err.contains(".rhai:2:"), "names file:line: {err}");

    // issue 10 item 11: a long bad filter is quoted as a window around the position, and a
    // 100,000-level one is refused before ldap3's recursive parser overflows the stack
    let err = fails(
        home.path(),
        &format!(
            "{c}let f = \"(|\"; for i in 0..50000 {{ f += \"(cn=x)\"; }}\nc.search(f + \"(cn=a\")"
        ),
    );
    assert!(err.len() < 1000, "{err}");
    assert!(
        err.contains("position 300008") && err.contains("bad filter '…"),
        "{err}"
    );
    let err = fails(
        home.path(),
        &format!(
            "{c}let f = \"\"; for i in 0..100000 {{ f += \"(!\"; }}\nf += \"(a=b)\";\n\
             for i in 0..100000 {{ f += \")\"; }}\nc.search(f)"
        ),
    );
    assert!(
        err.contains("nested more than") && err.len() < 1000,
        "{err}"
    );

    let err = fails(home.path(), &format!("{c}c.get(\"cn=a,,dc=x\")"));
    assert!(err.contains("bad DN"), "{err}");
    let err = fails(
        home.path(),
        &format!(
            "{c}c.create(\"cn=a,,dc=x\", #{{ objectClass: \"person\", cn: \"a\", sn: \"b\" }})"
        ),
    );
    assert!(err.contains("bad DN"), "{err}");

    // wrong bind password (the right one is in the env var the script does not read)
    let bad = format!(
        "let c = connect_ldap(\"{}\", #{{ bind_dn: \"{}\", password: secret(\"WRONG_PW\") }});\nc.test()",
        l.url, l.admin_dn
    );
    let (mut cmd, _f) = command(home.path(), None, &bad);
    let out = cmd.env("WRONG_PW", "not-the-password").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid credentials"), "{stderr}");
    assert!(
        !stderr.contains("not-the-password"),
        "secret in error: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // nobody listening
    let port = {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let dead = format!("ldap://127.0.0.1:{port}");
    let err = fails(home.path(), &connect_url(l, &dead, ""));
    assert!(err.contains("connection refused"), "{err}");

    // unknown option key
    let err = fails(home.path(), &connect(l, ", page_sise: 10"));
    assert!(err.contains("page_sise"), "{err}");

    // non-leaf delete
    let ou = add_ou(l, &people(l), &support::unique("nl"));
    add_user(l, &ou, &support::unique("kid"), "Kid", "");
    let err = fails(home.path(), &format!("{c}c.delete(\"{ou}\")"));
    assert!(
        err.contains("non-leaf") || err.contains("children"),
        "{err}"
    );
    assert!(exists(l, &ou), "non-leaf entry was deleted");

    // create of an existing DN
    let err = fails(
        home.path(),
        &format!("{c}c.create(\"{ou}\", #{{ objectClass: \"organizationalUnit\", ou: \"x\" }})"),
    );
    assert!(err.contains("already exists"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 9. server stopped mid-search

#[test]
fn server_killed_mid_search_is_a_clear_error() {
    let Some(l) = support::private_slapd(Some(&support::gen_users(20000))) else {
        return;
    };
    let home = support::temp_home();
    let c = connect(&l, ", page_size: 50");
    // Searches forever: whenever the server dies, a search is in flight (or about to start).
    let script = format!(
        "{c}let n = 0;\nloop {{\n  let r = c.search(\"(objectClass=inetOrgPerson)\", #{{}});\n  n += 1;\n  print(`search ${{n}}: ${{r.len()}}`);\n}}"
    );
    let (mut cmd, _f) = command(home.path(), None, &script);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    // one whole paged search first (proves it works and that the loop is running), then kill
    // while the next one is reading pages
    let first = rx.recv_timeout(Duration::from_secs(30));
    if first.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "no search finished within 30 s; stderr: {}",
            err_reader.join().unwrap()
        );
    }
    assert_eq!(first.unwrap(), "search 1: 20000");
    std::thread::sleep(Duration::from_millis(100));
    l.kill();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("idsync still running 10 s after the server was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = err_reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let lower = err.to_ascii_lowercase();
    assert!(
        ["connection", "lost", "closed", "refused"]
            .iter()
            .any(|w| lower.contains(w)),
        "no connection error: {err}"
    );
    assert!(err.contains("error:"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
}
