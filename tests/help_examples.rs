//! Every Rhai example in the bindings' doc comments — the examples `help()` prints — runs
//! here, as nushell runs each command's examples, so help cannot show an example that does
//! not work.
//!
//! The examples are collected from the registered functions' metadata
//! (`idsync::script::help::collect`, the same source `help()` reads), not from a hand-kept
//! list. Each one runs through the `idsync` binary as a script in a fresh world of its own:
//! a private slapd holding a small fixture, the shared Samba AD DC (under the harness'
//! lock), the Graph stand-in, two CSV files in the working directory and its own
//! `IDSYNC_HOME`. What an example needs is read from the example itself: the variables it
//! uses without defining them (Rhai's strict-variables compile) are bound first from
//! [`STAND_INS`], the environment variables it names come from [`ENVS`], and the address of
//! the dev slapd (`scripts/dev/slapd`, 127.0.0.1:3389) is pointed at the private one. The
//! servers started are the ones those need.
//!
//! The test fails when an example fails, when an example uses a variable or environment
//! variable this file does not provide (a new function's example that is not covered), or
//! when a documented function has no example. The one example that cannot run here is in
//! [`CANNOT_RUN`] with the reason; it is still compiled. `IDSYNC_SHOW_EXAMPLES=1` prints
//! every script run and its output.

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;

use idsync::script::help::{self, FnDoc};
use serde_json::json;
use support::Ldap;
use support::graph::GraphFake;

/// Examples that cannot run here, by signature as `help()` prints it, with the reason.
const CANNOT_RUN: &[(&str, &str)] = &[
    (
        "connect_graph(opts: Map) -> Connection",
        "signs in at login.microsoftonline.com (no tenant is reachable here); the `az` stand-in \
         makes the same call with `graph_url` and `authority_url` pointing at the Graph stand-in",
    ),
    (
        "password_writeback(opts: Map) -> Map",
        "needs the TLS certificate and key files it names and a step whose target is AD; \
         tests/password_writeback.rs runs it under `idsync service` with real ones",
    ),
    (
        "password_sync(opts: Map) -> Map",
        "needs a step whose source is the AD connection (the `users` stand-in reads a CSV); \
         tests/password_sync.rs runs it under `idsync service` with an AD -> OpenLDAP step",
    ),
];

/// Variables examples use without defining them, in dependency order: the code that binds
/// each (it may use the ones above it).
const STAND_INS: &[(&str, &str)] = &[
    (
        "c",
        r#"let c = connect_ldap(env("LDAP_URL"), #{ bind_dn: "cn=admin,dc=example,dc=com", password: secret("OL_PW") });"#,
    ),
    (
        "ol",
        r#"let ol = connect_ldap(env("LDAP_URL"), #{ bind_dn: "cn=admin,dc=example,dc=com", password: secret("OL_PW") });"#,
    ),
    ("e", r#"let e = c.get("ann");"#),
    ("name", r#"let name = "Lee (contractor)";"#),
    (
        "ad",
        r#"let ad = connect_ldap(env("AD_LDAPS_URL"), #{ bind_dn: env("AD_ADMIN_DN"), password: secret("AD_PW"), ca_file: env("AD_CA") });"#,
    ),
    (
        "az",
        r#"let az = connect_graph(#{ tenant: env("AZ_TENANT"), client_id: env("AZ_CLIENT_ID"), client_secret: secret("AZ_SECRET"), graph_url: env("AZ_URL"), authority_url: env("AZ_URL") });"#,
    ),
    (
        "hr",
        r#"let hr = connect_csv("hr.csv", #{ key: "employee_id" });"#,
    ),
    (
        "users",
        r#"let users = sync_step("hr-to-ldap/users", hr, ol, #{ join: #{ employeeNumber: "employee_id" }, create: #{ parent: "ou=people,dc=example,dc=com", rdn: |e| `uid=${e.employee_id}`, class: ["inetOrgPerson"] }, flows: #{ cn: |e| `${e.first} ${e.last}`, sn: "last", employeeNumber: "employee_id" } });"#,
    ),
    (
        "groups",
        r#"let groups = sync_step("hr-to-ldap/groups", connect_csv("groups.csv", #{ key: "name" }), ol, #{ join: #{ cn: "name" }, create: #{ parent: "ou=groups,dc=example,dc=com", rdn: |g| `cn=${g.name}`, class: ["groupOfNames"] }, flows: #{ cn: "name", description: "description" }, members: "member" });"#,
    ),
    ("wf", r#"let wf = workflow("hr-to-ldap", [users, groups]);"#),
];

/// State some examples read, by function name: run after the stand-ins, before the example.
const SETUP: &[(&str, &str)] = &[
    // the fixture holds Ann; the example creates her anew
    (
        "create",
        r#"c.delete("uid=ann,ou=people,dc=example,dc=com");"#,
    ),
    ("connection", r#"save_connection("corp-ad", ad);"#),
    ("remove_connection", r#"save_connection("corp-ad", ad);"#),
    ("last_run", "users.run();"),
    // a fresh tenant has no active roles
    ("role_members", r#"az.enable_role("Directory Writers");"#),
    ("add_role_member", r#"az.enable_role("Directory Writers");"#),
    // a file to import, written with the same password
    (
        "import_config",
        r#"export_config("idsync-config.bin", secret("CONFIG_PW"));"#,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Server {
    Slapd,
    Samba,
    Graph,
    Postgres,
}

/// Environment variables examples and stand-ins name (`env("X")`, `secret("X")`), and the
/// server whose value each one carries (`None`: a value of its own).
const ENVS: &[(&str, Option<Server>)] = &[
    ("LDAP_URL", Some(Server::Slapd)),
    ("OL_PW", Some(Server::Slapd)),
    ("ANN_PW", Some(Server::Slapd)),
    ("LDAP_BIND_DN", Some(Server::Slapd)),
    ("AD_LDAPS_URL", Some(Server::Samba)),
    ("AD_ADMIN_DN", Some(Server::Samba)),
    ("AD_CA", Some(Server::Samba)),
    ("AD_PW", None),
    ("AZ_TENANT", Some(Server::Graph)),
    ("AZ_CLIENT_ID", Some(Server::Graph)),
    ("AZ_SECRET", Some(Server::Graph)),
    ("AZ_URL", Some(Server::Graph)),
    ("AZ_GRAPH_URL", Some(Server::Graph)),
    ("AZ_AUTHORITY_URL", Some(Server::Graph)),
    ("CONFIG_PW", None),
    ("PG_PW", Some(Server::Postgres)),
    ("PG_CA", Some(Server::Postgres)),
];

/// The dev servers' addresses (README "Servers for trying things out") and the server that
/// stands in for each.
const ADDRS: &[(&str, Server)] = &[
    ("ldap://127.0.0.1:3389", Server::Slapd),
    ("ldaps://127.0.0.1:3636", Server::Slapd),
    (PG_DEV_URL, Server::Postgres),
];

/// The dev PostgreSQL's address in examples (scripts/dev/postgres), pointed at a fresh
/// database of the private one holding [`PG_EMPLOYEES`].
const PG_DEV_URL: &str = "postgres://idsync@127.0.0.1:5433/idsync";

const PG_EMPLOYEES: &str = "CREATE TABLE employees (employee_id integer PRIMARY KEY, \
    first text, last text); INSERT INTO employees VALUES (1001, 'Ann', 'Lee');";

const ANN_PW: &str = "Ann-example-pw-1";

const FIXTURE: &str = "\
dn: uid=ann,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: ann
cn: Ann Lee
givenName: Ann
sn: Lee
mail: ann@example.com
description: from the fixture
userPassword: Ann-example-pw-1

dn: uid=bob,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: bob
cn: Bob Stone
sn: Stone

dn: cn=staff,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: staff
member: uid=bob,ou=people,dc=example,dc=com

dn: ou=leavers,dc=example,dc=com
objectClass: organizationalUnit
ou: leavers
";

const HR_CSV: &str = "employee_id,first,last,dept\nE1001,Ann,Lee,Sales\nE1002,Bob,Stone,IT\n";
const GROUPS_CSV: &str = "name,description,member\nsales,Sales team,E1001\nit,IT team,E1002\n";

/// The AD account the examples name.
const AD_USER: &str = "ann.lee";

// ---------------------------------------------------------------------------------------------
// reading an example

/// The variables `code` uses without defining them, found by compiling it with strict
/// variables and binding each undefined one in turn.
fn free_vars(code: &str) -> Result<Vec<String>, String> {
    let mut engine = idsync::script::engine();
    engine.set_strict_variables(true);
    let mut scope = rhai::Scope::new();
    let mut found = Vec::new();
    loop {
        match engine.compile_with_scope(&scope, code) {
            Ok(_) => return Ok(found),
            Err(e) => match e.err_type() {
                rhai::ParseErrorType::VariableUndefined(v) if !found.contains(v) => {
                    found.push(v.clone());
                    scope.push(v.clone(), ());
                }
                _ => return Err(format!("does not compile: {e}")),
            },
        }
    }
}

/// The names in `name("X")` calls of `code` (`env("X")` only with one argument: the form
/// with a default needs nothing).
fn env_names(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (func, one_arg_only) in [("secret", false), ("env", true)] {
        let pat = format!("{func}(\"");
        let mut rest = code;
        while let Some(i) = rest.find(&pat) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + pat.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // prompt_secret(...)
            }
            let Some(end) = rest.find('"') else { break };
            if !one_arg_only || rest[end + 1..].starts_with(')') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

/// What one example needs: stand-in code (in order), environment variables, servers.
#[derive(Default, Debug)]
struct Needs {
    stand_ins: BTreeSet<usize>,
    envs: BTreeSet<&'static str>,
    servers: BTreeSet<Server>,
}

/// Adds what `code` needs to `needs`; an unknown variable or environment variable is an
/// error naming it.
fn add_needs(code: &str, needs: &mut Needs) -> Result<(), String> {
    for v in free_vars(code)? {
        let Some(i) = STAND_INS.iter().position(|(name, _)| *name == v) else {
            return Err(format!(
                "uses the variable `{v}`, which tests/help_examples.rs does not provide \
                 (add a stand-in to STAND_INS)"
            ));
        };
        if needs.stand_ins.insert(i) {
            add_needs(STAND_INS[i].1, needs)?;
        }
    }
    for n in env_names(code) {
        let Some((name, server)) = ENVS.iter().find(|(e, _)| *e == n) else {
            return Err(format!(
                "reads the environment variable {n}, which tests/help_examples.rs does not \
                 provide (add it to ENVS)"
            ));
        };
        needs.envs.insert(name);
        needs.servers.extend(*server);
    }
    for (addr, server) in ADDRS {
        if code.contains(addr) {
            needs.servers.insert(*server);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// one example's world

struct World {
    slapd: Option<Ldap>,
    samba: Option<&'static Ldap>,
    graph: Option<GraphFake>,
    /// The private PostgreSQL and the example's database.
    pg: Option<(&'static support::postgres::Pg, String)>,
}

/// Starts what `needs` asks for; `None` when a server is not available here (the harness
/// printed why, or panicked under IDSYNC_REQUIRE_SERVERS=1).
fn world(needs: &Needs) -> Option<World> {
    let mut w = World {
        slapd: None,
        samba: None,
        graph: None,
        pg: None,
    };
    if needs.servers.contains(&Server::Slapd) {
        w.slapd = Some(support::private_slapd(Some(FIXTURE))?);
    }
    if needs.servers.contains(&Server::Samba) {
        let ad = support::samba()?;
        ensure_ad_user(ad);
        w.samba = Some(ad);
    }
    if needs.servers.contains(&Server::Graph) {
        let g = GraphFake::start();
        g.add_user(json!({ "displayName": "Ann Lee", "userPrincipalName": "ann.lee@contoso.onmicrosoft.com" }));
        let svc = g.add_user(
            json!({ "displayName": "svc-sync", "userPrincipalName": "svc-sync@corp.example" }),
        );
        let staff = g.add_group(json!({ "displayName": "Staff" }));
        g.add_member(&staff, &svc);
        w.graph = Some(g);
    }
    if needs.servers.contains(&Server::Postgres) {
        let pg = support::postgres::postgres()?;
        let db = pg.fresh_db("example");
        pg.psql(&db, PG_EMPLOYEES);
        w.pg = Some((pg, db));
    }
    Some(w)
}

/// The AD account the examples name exists (created once in the shared Samba).
fn ensure_ad_user(ad: &Ldap) {
    let found = ad.ldapsearch(
        &ad.base,
        "sub",
        &format!("(sAMAccountName={AD_USER})"),
        &["dn"],
    );
    if !found.contains("dn:") {
        ad.samba_tool(&[
            "user",
            "create",
            AD_USER,
            &format!("Ex-{}-9a!", support::unique("p")),
            "--given-name=Ann",
            "--surname=Lee",
        ]);
    }
}

impl World {
    fn env(&self, name: &str) -> String {
        let slapd = || self.slapd.as_ref().expect("slapd");
        let samba = || self.samba.expect("samba");
        let graph = || self.graph.as_ref().expect("graph");
        let pg = || self.pg.as_ref().expect("postgres").0;
        match name {
            "LDAP_URL" => slapd().url.clone(),
            "OL_PW" => slapd().admin_pw.clone(),
            "LDAP_BIND_DN" => slapd().admin_dn.clone(),
            "ANN_PW" => ANN_PW.into(),
            "AD_LDAPS_URL" => samba().ldaps_url.clone(),
            "AD_ADMIN_DN" => samba().admin_dn.clone(),
            "AD_CA" => samba().ca_file.clone(),
            "AD_PW" => self
                .samba
                .map(|s| s.admin_pw.clone())
                .unwrap_or_else(|| "an-example-password".into()),
            "AZ_TENANT" => graph().tenant_domain(),
            "AZ_CLIENT_ID" => graph().client_id(),
            "AZ_SECRET" => graph().client_secret(),
            "AZ_URL" | "AZ_GRAPH_URL" | "AZ_AUTHORITY_URL" => graph().url(),
            "CONFIG_PW" => "an-example-config-password".into(),
            "PG_PW" => pg().password.clone(),
            "PG_CA" => pg().ca_file.clone(),
            other => panic!("ENVS lists {other} but World::env has no value for it"),
        }
    }

    /// `code` with the dev servers' addresses pointed at this world's.
    fn localize(&self, code: &str) -> String {
        let mut code = code.to_string();
        if let Some(l) = &self.slapd {
            code = code
                .replace("ldap://127.0.0.1:3389", &l.url)
                .replace("ldaps://127.0.0.1:3636", &l.ldaps_url);
        }
        if let Some((pg, db)) = &self.pg {
            code = code.replace(PG_DEV_URL, &pg.url(db));
        }
        code
    }
}

/// Runs `script` with `idsync FILE` in a fresh directory; `Err` with the output when it
/// does not end with status 0 or panics.
fn run(world: &World, needs: &Needs, script: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(dir.path().join("hr.csv"), HR_CSV).unwrap();
    std::fs::write(dir.path().join("groups.csv"), GROUPS_CSV).unwrap();
    let file = dir.path().join("example.rhai");
    std::fs::write(&file, script).unwrap();
    let mut cmd = support::idsync_command(&home);
    cmd.arg(&file).current_dir(dir.path()).stdin(Stdio::piped());
    for name in &needs.envs {
        cmd.env(name, world.env(name));
    }
    if !needs.envs.contains("AD_PW") {
        cmd.env("AD_PW", world.env("AD_PW"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run idsync");
    // what prompt_secret reads: a password AD's complexity policy accepts
    let answer = format!("Ex-{}-9a!\n", support::unique("p"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(answer.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for idsync");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if std::env::var_os("IDSYNC_SHOW_EXAMPLES").is_some() {
        eprintln!("--- script\n{script}--- stdout\n{stdout}--- stderr\n{stderr}");
    }
    if out.status.code() == Some(0) && !stderr.contains("panicked") {
        return Ok(());
    }
    Err(format!(
        "exit {:?}\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status.code()
    ))
}

/// Runs one example; `Ok(false)` when a server it needs is not available here.
fn run_example(d: &FnDoc, example: &str) -> Result<bool, String> {
    let setup = SETUP
        .iter()
        .filter(|(name, _)| *name == d.name)
        .map(|(_, code)| *code)
        .collect::<Vec<_>>()
        .join("\n");
    let mut needs = Needs::default();
    add_needs(&format!("{setup}\n{example}"), &mut needs)?;
    let Some(world) = world(&needs) else {
        return Ok(false);
    };
    let mut script = String::new();
    for &i in &needs.stand_ins {
        script.push_str(STAND_INS[i].1);
        script.push('\n');
    }
    script.push_str(&setup);
    script.push('\n');
    script.push_str(&world.localize(example));
    script.push('\n');
    run(&world, &needs, &script).map(|()| true)
}

fn documented() -> Vec<FnDoc> {
    help::collect(&idsync::script::engine())
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn every_example_in_help_runs() {
    let docs = documented();
    assert!(
        docs.len() > 50,
        "too few functions collected: {}",
        docs.len()
    );
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for d in &docs {
        for example in d.examples() {
            if let Some((_, why)) = CANNOT_RUN.iter().find(|(sig, _)| *sig == d.signature) {
                // still compiles, with every variable it uses
                if let Err(e) = free_vars(&example) {
                    failures.push(format!("{}: {e}\n{example}", d.signature));
                }
                eprintln!("not run: {}: {why}", d.signature);
                continue;
            }
            match run_example(d, &example) {
                Ok(true) => ran += 1,
                Ok(false) => skipped += 1,
                Err(e) => failures.push(format!("{}:\n{example}\n{e}", d.signature)),
            }
        }
    }
    eprintln!("help examples: {ran} ran, {skipped} skipped (server not available)");
    assert!(
        failures.is_empty(),
        "{} help example(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_documented_function_has_an_example() {
    let missing: Vec<String> = documented()
        .iter()
        .filter(|d| d.examples().is_empty())
        .map(|d| d.signature.clone())
        .collect();
    assert!(
        missing.is_empty(),
        "documented functions without an example (add ```rhai ... ``` to the doc comment):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_lists_in_this_file_name_what_exists() {
    let docs = documented();
    for (sig, _) in CANNOT_RUN {
        assert!(
            docs.iter()
                .any(|d| d.signature == *sig && !d.examples().is_empty()),
            "CANNOT_RUN names {sig}, which has no example (any more)"
        );
    }
    for (name, _) in SETUP {
        assert!(
            docs.iter().any(|d| d.name == *name),
            "SETUP names {name}, which is not a documented function"
        );
    }
    // every stand-in is used by some example (directly or through another stand-in)
    let mut used = Needs::default();
    for d in &docs {
        for ex in d.examples() {
            let _ = add_needs(&ex, &mut used);
        }
    }
    for (i, (var, _)) in STAND_INS.iter().enumerate() {
        assert!(
            used.stand_ins.contains(&i),
            "the stand-in `{var}` is used by no example"
        );
    }
}

#[test]
fn an_example_s_needs_are_read_from_it() {
    let mut n = Needs::default();
    add_needs(
        r#"for x in wf.run() { print(x) } secret("AZ_SECRET"); prompt_secret("pw")"#,
        &mut n,
    )
    .unwrap();
    let vars: Vec<&str> = n.stand_ins.iter().map(|&i| STAND_INS[i].0).collect();
    assert_eq!(vars, ["ol", "hr", "users", "groups", "wf"]);
    assert_eq!(
        n.servers.iter().copied().collect::<Vec<_>>(),
        [Server::Slapd, Server::Graph]
    );
    let e = add_needs("brand_new_thing.frobnicate()", &mut Needs::default()).unwrap_err();
    assert!(e.contains("`brand_new_thing`"), "{e}");
    let e = add_needs(r#"env("NOT_PROVIDED")"#, &mut Needs::default()).unwrap_err();
    assert!(e.contains("NOT_PROVIDED"), "{e}");
    add_needs(r#"env("NOT_PROVIDED", "default")"#, &mut Needs::default()).unwrap();
}
