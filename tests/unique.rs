//! `unique(conn, attr, candidates)` (issue 15, API §11) in a step's preview and run, against a
//! private slapd and the shared Samba AD DC: two new people with the same name in one run get
//! two distinct values (the second one planned by the run is not handed out again), a value
//! present in the directory under the step's target base is skipped, one outside it is not, and
//! outside a run only the directory counts (the filter value escaped). Every value is checked
//! with `ldapsearch`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value as Json;

fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Runs `script` with `--format json` and `env`; asserts exit 0; returns the printed value.
fn ok(home: &Path, dir: &Path, script: &str, env: &[(&str, &str)]) -> Json {
    let file = dir.join("u.rhai");
    std::fs::write(&file, script).unwrap();
    let mut cmd = support::idsync_command(home);
    cmd.args(["--format", "json"]).arg(&file).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run idsync");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// The distinct values preview rows plan: the created objects' DNs (`attr` = None) or the new
/// values of `attr` on create rows, lower-cased.
fn planned(rows: &Json, attr: Option<&str>) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for r in rows.as_array().unwrap_or_else(|| panic!("{rows}")) {
        if r["op"] != "create" {
            continue;
        }
        match attr {
            None => out.insert(r["object"].as_str().unwrap_or_default().to_lowercase()),
            Some(a) if r["attribute"].as_str() == Some(a) => {
                out.insert(r["new"].as_str().unwrap_or_default().to_lowercase())
            }
            Some(_) => false,
        };
    }
    out.into_iter().collect()
}

/// Values of `attr` in ldapsearch output, lower-cased and sorted.
fn values(ldif: &str, attr: &str) -> Vec<String> {
    let prefix = format!("{}: ", attr.to_lowercase());
    let mut v: Vec<String> = ldif
        .lines()
        .filter_map(|l| l.to_lowercase().strip_prefix(&prefix).map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Against slapd: the RDN comes from `unique`. `alee` is free, `bray` is taken under the target
/// base, `cmoss` only outside it: the two Ann Lees get `alee` and `alee2`, Bob `bray2`, Cid
/// `cmoss`, in the preview (twice: each preview plans afresh) and in the run.
#[test]
fn two_ann_lees_in_one_slapd_run_get_alee_and_alee2() {
    let Some(l) = support::private_slapd(None) else {
        return;
    };
    let ou = format!("ou=uniq,{}", l.base);
    let other = format!("ou=elsewhere,{}", l.base);
    l.ldapadd(&format!(
        "dn: {ou}\nobjectClass: organizationalUnit\nou: uniq\n\n\
         dn: {other}\nobjectClass: organizationalUnit\nou: elsewhere\n\n\
         dn: uid=bray,{ou}\nobjectClass: inetOrgPerson\nuid: bray\ncn: Bob Ray (old)\nsn: Ray\n\n\
         dn: uid=cmoss,{other}\nobjectClass: inetOrgPerson\nuid: cmoss\ncn: Cid Moss (elsewhere)\nsn: Moss\n"
    ));
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hr.csv"),
        "employee_id,first,last\nE1,Ann,Lee\nE2,Ann,Lee\nE3,Bob,Ray\nE4,Cid,Moss\n",
    )
    .unwrap();
    let head = format!(
        "let hr = connect_csv(\"hr.csv\", #{{ key: \"employee_id\" }});\n\
         let ol = connect_ldap({url}, #{{ bind_dn: {dn}, password: secret(\"{pw}\"), base: {base} }});\n\
         let users = sync_step(\"hr/uniq\", hr, ol, #{{ join: #{{ employeeNumber: \"employee_id\" }}, target_base: {ou},\n\
           create: #{{ parent: {ou}, class: [\"inetOrgPerson\"], rdn: |e| {{\n\
             let b = (e.first.sub_string(0, 1) + e.last).to_lower();\n\
             `uid=${{unique(ol, \"uid\", |n| if n == 1 {{ b }} else {{ `${{b}}${{n}}` }})}}`\n\
           }} }},\n\
           flows: #{{ cn: |e| `${{e.first}} ${{e.last}}`, sn: \"last\", employeeNumber: \"employee_id\" }} }});\n",
        url = lit(&l.url),
        dn = lit(&l.admin_dn),
        pw = support::PW_ENV,
        base = lit(&l.base),
        ou = lit(&ou),
    );
    let want: Vec<String> = ["alee", "alee2", "bray2", "cmoss"]
        .iter()
        .map(|u| format!("uid={u},{ou}"))
        .collect();

    let v = ok(
        home.path(),
        dir.path(),
        &format!("{head}[users.preview(), users.preview()]"),
        &[],
    );
    assert_eq!(planned(&v[0], None), want, "{v}");
    assert_eq!(planned(&v[1], None), want, "a second preview: {v}");
    let found = l.ldapsearch(&ou, "one", "(objectClass=inetOrgPerson)", &["uid"]);
    assert_eq!(
        values(&found, "uid"),
        ["bray"],
        "the preview wrote: {found}"
    );

    let r = ok(home.path(), dir.path(), &format!("{head}users.run()"), &[]);
    assert_eq!(r["created"], 4, "{r}");
    let found = l.ldapsearch(&ou, "one", "(cn=*)", &["uid", "employeeNumber"]);
    assert_eq!(
        values(&found, "uid"),
        ["alee", "alee2", "bray", "bray2", "cmoss"],
        "{found}"
    );
    let ann = l.ldapsearch(&ou, "one", "(cn=Ann Lee)", &["uid", "employeeNumber"]);
    assert_eq!(values(&ann, "uid"), ["alee", "alee2"], "{ann}");
    assert_eq!(values(&ann, "employeeNumber"), ["e1", "e2"], "{ann}");

    // outside a run: the directory only (under the connection's base), the value escaped
    let v = ok(
        home.path(),
        dir.path(),
        &format!(
            "{head}[unique(ol, \"uid\", [\"alee\", \"alee2\", \"alee3\"]), unique(ol, \"uid\", [\"a*\", \"x\"]), unique(ol, \"uid\", |n| if n == 1 {{ \"cmoss\" }} else {{ `cmoss${{n}}` }})]"
        ),
        &[],
    );
    assert_eq!(v, serde_json::json!(["alee3", "a*", "cmoss2"]), "{v}");
}

/// Runs an OpenLDAP client tool as the AD administrator.
fn ad_tool(ad: &support::Ldap, tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .env("LDAPCONF", "/dev/null")
        .env("LDAPTLS_CACERT", &ad.ca_file)
        .args(["-x", "-H", &ad.url, "-D", &ad.admin_dn, "-w", &ad.admin_pw])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

/// Against Samba AD: `sAMAccountName` from `unique` in a `once` flow. The base name is taken
/// by a user made by hand in the step's OU: the two same-name people get `base2` and `base3`
/// in the preview and the run.
#[test]
fn two_same_name_people_in_one_samba_run_get_distinct_sam_account_names() {
    let Some(ad) = support::samba() else { return };
    let ou = format!("OU={},{}", support::unique("uq"), ad.base);
    ad.ldapadd(&format!("dn: {ou}\nobjectClass: organizationalUnit\n"));
    struct Cleanup<'a>(&'a support::Ldap, String);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = ad_tool(
                self.0,
                "ldapdelete",
                &["-e", "!1.2.840.113556.1.4.805", &self.1],
            );
        }
    }
    let _cleanup = Cleanup(ad, ou.clone());
    let base = support::unique("al");
    ad.ldapadd(&format!(
        "dn: CN=Hand Made,{ou}\nobjectClass: user\nsAMAccountName: {base}\n"
    ));
    let home = support::temp_home();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hr.csv"),
        "employee_id,first,last\n1,Ann,Lee\n2,Ann,Lee\n",
    )
    .unwrap();
    let head = format!(
        "let hr = connect_csv(\"hr.csv\", #{{ key: \"employee_id\" }});\n\
         let ad = connect_ldap({url}, #{{ bind_dn: {dn}, password: secret(\"AD_PW\"), ca_file: {ca} }});\n\
         let users = sync_step(\"hr-to-ad/uniq\", hr, ad, #{{ join: #{{ employeeID: \"employee_id\" }}, target_base: {ou},\n\
           create: #{{ parent: {ou}, rdn: |e| `CN=${{e.first}} ${{e.last}} ${{e.employee_id}}`,\n\
                       class: [\"top\", \"person\", \"organizationalPerson\", \"user\"] }},\n\
           flows: #{{ givenName: \"first\", sn: \"last\", employeeID: \"employee_id\",\n\
             sAMAccountName: #{{ once: true, value: |e| unique(ad, \"sAMAccountName\", |n| if n == 1 {{ {b} }} else {{ `{base}${{n}}` }}) }} }} }});\n",
        url = lit(&ad.ldaps_url),
        dn = lit(&ad.admin_dn),
        ca = lit(&ad.ca_file),
        ou = lit(&ou),
        b = lit(&base),
    );
    let env = [("AD_PW", ad.admin_pw.as_str())];
    let want = vec![format!("{base}2"), format!("{base}3")];
    let v = ok(
        home.path(),
        dir.path(),
        &format!("{head}users.preview()"),
        &env,
    );
    assert_eq!(planned(&v, Some("sAMAccountName")), want, "{v}");

    let r = ok(home.path(), dir.path(), &format!("{head}users.run()"), &env);
    assert_eq!((&r["created"], &r["failed"]), (&2.into(), &0.into()), "{r}");
    let found = ad.ldapsearch(&ou, "one", "(employeeID=*)", &["sAMAccountName"]);
    assert_eq!(values(&found, "sAMAccountName"), want, "{found}");
}
