//! SQL tables as connected systems, against a real private PostgreSQL (tests/support/postgres)
//! and, for the syncs, the private OpenLDAP slapd: rows as typed entries, LDAP filters as
//! parameterised WHERE clauses (injection attempts inert), keyset paging, TLS, HR table ->
//! OpenLDAP (create, incremental update, deprovisioning) and OpenLDAP -> SQL table (typed
//! columns, per-row failures, one transaction per batch). Each test takes a database of its own.

mod support;

use std::path::Path;

use serde_json::Value as Json;
use support::postgres::{Pg, postgres};
use support::report::{counts, errors};

const PW_ENV: &str = support::PW_ENV;

fn run(home: &Path, script: &str) -> (i32, String, String) {
    let file = home.join(format!("{}.rhai", support::unique("s")));
    std::fs::write(&file, script).unwrap();
    let out = support::idsync_command(home)
        .args(["--format", "json"])
        .arg(&file)
        .output()
        .expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains("panicked") && !stderr.contains("panicked"),
        "panic:\n{stdout}\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn json(home: &Path, code: i32, script: &str) -> Json {
    let (c, out, err) = run(home, script);
    assert_eq!(
        c, code,
        "exit code\n--- script ---\n{script}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!("not JSON ({e}):\n--- script ---\n{script}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
    })
}

fn connect(pg: &Pg, db: &str, opts: &str) -> String {
    format!(
        "let db = connect_sql(\"{}\", #{{ password: secret(\"{PW_ENV}\"), ca_file: \"{}\", {opts} }});\n",
        pg.url(db),
        pg.ca_file
    )
}

/// The `dn`s of a JSON array of entries, in order.
fn dns(v: &Json) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v:#}"))
        .iter()
        .map(|e| e["dn"].as_str().unwrap().to_string())
        .collect()
}

const HR: &str = "CREATE TABLE employees (
    employee_id integer PRIMARY KEY,
    first text NOT NULL,
    last text NOT NULL,
    salary numeric(10,2),
    active boolean NOT NULL DEFAULT true,
    hired date,
    mail text,
    note text,
    updated_at timestamptz NOT NULL DEFAULT now());
  INSERT INTO employees VALUES
    (1001, 'Ann', 'Lee', 10000.50, true, '2021-03-01', 'ann@example.com;a.lee@example.com', NULL, '2026-01-01 10:00:00+00'),
    (1002, 'Bob', 'Stone', 900, true, '2019-07-15', 'bob@example.com', 'contractor', '2026-01-01 10:01:00+00'),
    (1003, 'Cid', 'Leeds', NULL, false, NULL, NULL, NULL, '2026-01-01 10:02:00+00');";

#[test]
fn rows_are_typed_entries_null_is_absent_and_filters_compare_in_the_column_type() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("basics");
    pg.psql(&db, HR);
    let home = support::temp_home();
    let c = connect(
        pg,
        &db,
        "table: \"employees\", key: \"employee_id\", multi: #{ mail: \";\" }",
    );

    let all = json(home.path(), 0, &format!("{c}db.search(\"\")"));
    assert_eq!(dns(&all), ["1001", "1002", "1003"]);
    let ann = &all[0];
    assert_eq!(ann["employee_id"], "1001");
    assert_eq!(ann["salary"], "10000.50");
    assert_eq!(ann["active"], "true");
    assert_eq!(ann["hired"], "2021-03-01");
    assert_eq!(ann["updated_at"], "2026-01-01 10:00:00+00");
    assert_eq!(
        ann["mail"],
        serde_json::json!(["ann@example.com", "a.lee@example.com"]),
        "separator-split values"
    );
    assert!(ann.get("note").is_none(), "NULL is absent: {ann:#}");
    let cid = &all[2];
    assert!(
        cid.get("salary").is_none() && cid.get("hired").is_none(),
        "{cid:#}"
    );
    assert_eq!(cid["active"], "false");

    let q = |f: &str| dns(&json(home.path(), 0, &format!("{c}db.search(\"{f}\")")));
    // numeric, not text, order: "900" > "10000.50" as text
    assert_eq!(q("(salary>=5000)"), ["1001"]);
    assert_eq!(q("(salary<=5000)"), ["1002"]);
    assert_eq!(q("(active=FALSE)"), ["1003"]);
    assert_eq!(q("(hired>=2020-01-01)"), ["1001"]);
    // text: case-insensitive like LDAP; substrings; NULL is "absent" for NOT
    assert_eq!(q("(last=lee)"), ["1001"]);
    assert_eq!(q("(last=Lee*)"), ["1001", "1003"]);
    assert_eq!(q("(!(note=contractor))"), ["1001", "1003"]);
    assert_eq!(q("(note=*)"), ["1002"]);
    assert_eq!(
        q("(mail=A.LEE@example.com)"),
        ["1001"],
        "one value of a multi"
    );
    assert_eq!(
        q("(|(employee_id=1002)(&(active=TRUE)(last=L*)))"),
        ["1001", "1002"]
    );
    assert_eq!(q("(objectClass=*)"), ["1001", "1002", "1003"]);

    let one = json(home.path(), 0, &format!("{c}db.get(\"1002\")"));
    assert_eq!(one["dn"], "1002");
    assert_eq!(one["first"], "Bob");
    let none = json(home.path(), 0, &format!("{c}db.get(\"9999\") == ()"));
    assert_eq!(none, Json::Bool(true));

    // an unknown column is an error naming the real ones
    let (code, _, err) = run(home.path(), &format!("{c}db.search(\"(nosuch=1)\")"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no column 'nosuch'") && err.contains("employee_id"),
        "{err}"
    );
}

#[test]
fn injection_attempts_in_filter_values_and_identities_are_inert() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("inject");
    pg.psql(
        &db,
        "CREATE TABLE people (name text PRIMARY KEY, dept text);
         INSERT INTO people VALUES ('ann', 'it'), ('bob', 'hr');",
    );
    let home = support::temp_home();
    let c = connect(pg, &db, "table: \"people\", key: \"name\"");
    let attempts = [
        "(dept=x' OR '1'='1)",
        "(dept=it\\29 OR TRUE --)",
        "(dept=it'; DROP TABLE people; --)",
        "(name=*' OR name LIKE '*)",
    ];
    for f in attempts {
        let got = json(
            home.path(),
            0,
            &format!("{c}db.search({})", serde_json::to_string(f).unwrap()),
        );
        assert_eq!(dns(&got), Vec::<String>::new(), "filter {f} matched rows");
    }
    for id in ["ann' OR '1'='1", "x'; DELETE FROM people; --"] {
        let got = json(
            home.path(),
            0,
            &format!("{c}db.get({}) == ()", serde_json::to_string(id).unwrap()),
        );
        assert_eq!(got, Json::Bool(true), "identity {id} found a row");
    }
    // as a new row's key and value: stored literally
    let evil = "z'); DROP TABLE people; --";
    json(
        home.path(),
        0,
        &format!(
            "{c}db.create({e}, #{{ dept: {e} }}); 1",
            e = serde_json::to_string(evil).unwrap()
        ),
    );
    // deleting by an identity that would match everything when concatenated
    let (code, _, err) = run(home.path(), &format!("{c}db.delete(\"x' OR '1'='1\")"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no such object"), "{err}");
    // an attribute name that tries to leave the quoting is not a column
    let (code, _, err) = run(home.path(), &format!("{c}db.search(\"(dept\\\"=1)\")"));
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        pg.psql(&db, "SELECT name || '|' || dept FROM people ORDER BY name"),
        format!("ann|it\nbob|hr\n{evil}|{evil}")
    );
}

#[test]
fn paging_by_key_reads_every_row_once_and_limit_stops() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("paging");
    pg.psql(
        &db,
        "CREATE TABLE t (id integer PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 53) g;",
    );
    let home = support::temp_home();
    let c = connect(pg, &db, "table: \"t\", key: \"id\", page_size: 7");
    let all = dns(&json(home.path(), 0, &format!("{c}db.search(\"\")")));
    let want: Vec<String> = (1..=53).map(|i| i.to_string()).collect();
    assert_eq!(
        all, want,
        "every row once, in key order (numeric, not text)"
    );
    let some = dns(&json(
        home.path(),
        0,
        &format!("{c}db.search(\"(id>=10)\", #{{ limit: 9 }})"),
    ));
    assert_eq!(some, (10..=18).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn tls_is_verified_by_default_and_a_url_password_is_refused() {
    let Some(pg) = postgres() else { return };
    let home = support::temp_home();
    let pw = format!("password: secret(\"{PW_ENV}\")");
    let test = |opts: &str, url: &str| {
        run(
            home.path(),
            &format!(
                "let db = connect_sql(\"{url}\", #{{ {pw}, table: \"pg_database\", key: \"datname\", {opts} }}); db.test()"
            ),
        )
    };
    let url = pg.url("idsync");
    let (code, out, err) = test(
        &format!("ca_file: \"{}\"", pg.ca_file),
        &format!("{url}?sslmode=require"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"tls\"") && out.contains("\"on\""), "{out}");
    let (code, _, err) = test(
        &format!("ca_file: \"{}\"", pg.wrong_ca_file),
        &format!("{url}?sslmode=require"),
    );
    assert_eq!(code, 1, "an unknown CA must fail: {err}");
    assert!(err.contains("ca_file"), "{err}");
    let (code, out, err) = test(
        &format!("ca_file: \"{}\", verify: false", pg.wrong_ca_file),
        &format!("{url}?sslmode=require"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OFF"), "{out}");
    let (code, out, err) = test("", &format!("{url}?sslmode=disable"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"off\""), "{out}");
    let with_pw = format!("postgres://idsync:secret@127.0.0.1:{}/idsync", pg.port);
    let (code, out, err) = run(
        home.path(),
        &format!("connect_sql(\"{with_pw}\", #{{ table: \"t\", key: \"k\" }})"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("`password` option"), "{err}");
    assert!(!out.contains("secret"), "{out}");
    assert!(!err.contains("connect_sql: connect_sql"), "{err}");
    // The driver also reads a password (and a password file, another host) from the
    // query string: refused, naming the key but never the value, and nothing written.
    for (key, value) in [
        ("password", "pw-Qx7-leak"),
        ("passfile", "/tmp/pgpass-secret"),
    ] {
        let (code, out, err) = run(
            home.path(),
            &format!(
                "let db = connect_sql(\"{url}?sslmode=disable&{key}={value}\", \
                 #{{ table: \"pg_database\", key: \"datname\" }}); print(db.describe()); db.test()"
            ),
        );
        assert_eq!(code, 1, "{key} in the query must be refused: {out}{err}");
        assert!(err.contains(&format!("'{key}'")), "{err}");
        assert!(!out.contains(value) && !err.contains(value), "{out}{err}");
    }
    for key in ["host", "hostaddr"] {
        let (code, out, err) = test("", &format!("{url}?sslmode=disable&{key}=127.0.0.1"));
        assert_eq!(code, 1, "{key} in the query must be refused: {out}{err}");
        assert!(err.contains(&format!("'{key}'")), "{err}");
    }
    // (the scripts themselves are in the home too: not counted)
    let stored: Vec<_> = files_under(home.path())
        .into_iter()
        .filter(|f| f.extension().is_none_or(|e| e != "rhai"))
        .filter(|f| {
            std::fs::read(f).is_ok_and(|b| {
                let text = String::from_utf8_lossy(&b);
                text.contains("pw-Qx7-leak") || text.contains("pgpass-secret")
            })
        })
        .collect();
    assert!(
        stored.is_empty(),
        "a query password was written: {stored:?}"
    );
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn hr_table_to_openldap_creates_updates_only_changed_rows_and_deprovisions_deleted_rows() {
    let Some(pg) = postgres() else { return };
    let Some(l) = support::slapd() else { return };
    let db = pg.fresh_db("hr2ldap");
    pg.psql(&db, HR);
    let id = support::unique("sqlhr");
    let dst = format!("ou={id},dc=target,dc=com");
    l.ldapadd(&format!(
        "dn: {dst}\nobjectClass: organizationalUnit\nou: {id}\n"
    ));
    let home = support::temp_home();
    let script = format!(
        "{c}let ol = connect_ldap(\"{url}\", #{{ bind_dn: \"{admin}\", password: secret(\"{PW_ENV}\"), base: \"{dst}\" }});\n\
         let st = sync_step(\"{id}/users\", db, ol, #{{\n\
           join: #{{ employeeNumber: \"employee_id\" }},\n\
           create: #{{ parent: \"{dst}\", rdn: |e| `uid=e${{e.employee_id}}`, class: [\"inetOrgPerson\"] }},\n\
           flows: #{{ cn: |e| `${{e.first}} ${{e.last}}`, sn: \"last\", givenName: \"first\", employeeNumber: \"employee_id\", mail: \"mail\" }},\n\
           deprovision: #{{ action: \"delete\" }},\n\
         }});\n\
         st.run()",
        c = connect(
            pg,
            &db,
            "table: \"employees\", key: \"employee_id\", changed: \"updated_at\", multi: #{ mail: \";\" }"
        ),
        url = l.url,
        admin = l.admin_dn,
    );
    let r = json(home.path(), 0, &script);
    counts(&r, &[("created", 3)]);
    let ann = l.ldapsearch(
        &format!("uid=e1001,{dst}"),
        "base",
        "(objectClass=*)",
        &["cn", "mail"],
    );
    assert!(ann.contains("cn: Ann Lee"), "{ann}");
    assert!(ann.contains("mail: a.lee@example.com"), "{ann}");

    // Bob changes (his change column moves on); Ann changes too but her change column stays
    // behind the cursor: an incremental run reads from the cursor on, so it writes Bob only.
    pg.psql(
        &db,
        "UPDATE employees SET last = 'Rock', updated_at = '2026-02-01 00:00:00+00' WHERE employee_id = 1002;
         UPDATE employees SET first = 'Anna' WHERE employee_id = 1001;",
    );
    let r = json(home.path(), 0, &script);
    counts(&r, &[("updated", 1), ("unchanged", 2)]);
    let bob = l.ldapsearch(
        &format!("uid=e1002,{dst}"),
        "base",
        "(objectClass=*)",
        &["sn"],
    );
    assert!(bob.contains("sn: Rock"), "{bob}");
    let ann = l.ldapsearch(
        &format!("uid=e1001,{dst}"),
        "base",
        "(objectClass=*)",
        &["cn"],
    );
    assert!(
        ann.contains("cn: Ann Lee"),
        "Ann's row was read although unchanged by its change column: {ann}"
    );
    // a full run compares everything and finds Ann
    let full = script.replace("st.run()", "st.run(#{ full: true })");
    let r = json(home.path(), 0, &full);
    counts(&r, &[("updated", 1), ("unchanged", 2)]);
    let ann = l.ldapsearch(
        &format!("uid=e1001,{dst}"),
        "base",
        "(objectClass=*)",
        &["cn"],
    );
    assert!(ann.contains("cn: Anna Lee"), "{ann}");

    // a deleted row: found by listing the keys in scope, deprovisioned
    pg.psql(&db, "DELETE FROM employees WHERE employee_id = 1003");
    let r = json(
        home.path(),
        0,
        &script.replace("st.run()", "st.run(#{ allow_deletes: 1 })"),
    );
    counts(&r, &[("deprovisioned", 1), ("unchanged", 2)]);
    let left = l.ldapsearch(&dst, "one", "(objectClass=inetOrgPerson)", &["uid"]);
    assert!(
        left.contains("uid: e1001") && left.contains("uid: e1002"),
        "{left}"
    );
    assert!(!left.contains("uid: e1003"), "{left}");

    // nothing changed: nothing written
    let r = json(home.path(), 0, &script);
    counts(&r, &[("unchanged", 2)]);
}

fn ldap_people(l: &support::Ldap, id: &str, people: &[(&str, &str)]) -> String {
    let src = format!("ou={id},ou=people,{}", l.base);
    let mut ldif = format!("dn: {src}\nobjectClass: organizationalUnit\nou: {id}\n\n");
    for (uid, emp) in people {
        ldif.push_str(&format!(
            "dn: uid={uid},{src}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid} Person\nsn: Person\nemployeeNumber: {emp}\n\n"
        ));
    }
    l.ldapadd(&ldif);
    src
}

const ACCOUNTS: &str = "CREATE TABLE accounts (
    uid text PRIMARY KEY,
    employee_no integer NOT NULL CHECK (employee_no > 0),
    cn text,
    active boolean NOT NULL DEFAULT true);";

fn ldap_to_sql_script(pg: &Pg, db: &str, l: &support::Ldap, id: &str, src: &str) -> String {
    format!(
        "{c}let ol = connect_ldap(\"{url}\", #{{ bind_dn: \"{admin}\", password: secret(\"{PW_ENV}\"), base: \"{src}\" }});\n\
         let st = sync_step(\"{id}/accounts\", ol, db, #{{\n\
           scope: #{{ filter: \"(objectClass=inetOrgPerson)\" }},\n\
           join: #{{ uid: \"uid\" }},\n\
           create: #{{ parent: \"\", rdn: |e| e.uid }},\n\
           flows: #{{ uid: \"uid\", employee_no: \"employeeNumber\", cn: \"cn\", active: |e| true }},\n\
         }});\n\
         st.run()",
        c = connect(pg, db, "table: \"accounts\", key: \"uid\""),
        url = l.url,
        admin = l.admin_dn,
    )
}

#[test]
fn openldap_to_sql_table_writes_typed_columns_and_reports_bad_rows_per_object() {
    let Some(pg) = postgres() else { return };
    let Some(l) = support::slapd() else { return };
    let db = pg.fresh_db("ldap2sql");
    pg.psql(&db, ACCOUNTS);
    let id = support::unique("sqlacc");
    let src = ldap_people(
        l,
        &id,
        &[("ann", "7"), ("bob", "abc"), ("cid", "-4"), ("dan", "12")],
    );
    let home = support::temp_home();
    let script = ldap_to_sql_script(pg, &db, l, &id, &src);
    let r = json(home.path(), 3, &script);
    counts(&r, &[("created", 2), ("failed", 2)]);
    let errs = errors(&r).join("\n");
    assert!(
        errs.contains("'bob'") && errs.contains("invalid input syntax for type integer"),
        "type error names the row: {errs}"
    );
    assert!(
        errs.contains("'cid'") && errs.contains("accounts_employee_no_check"),
        "constraint named with the row: {errs}"
    );
    assert_eq!(
        pg.psql(
            &db,
            "SELECT uid || '|' || (employee_no + 1) || '|' || cn || '|' || active FROM accounts ORDER BY uid"
        ),
        "ann|8|ann Person|true\ndan|13|dan Person|true"
    );
    // fixed in the source: the failed rows are retried and land
    l.ldapmodify(&format!(
        "dn: uid=bob,{src}\nchangetype: modify\nreplace: employeeNumber\nemployeeNumber: 5\n\n\
         dn: uid=cid,{src}\nchangetype: modify\nreplace: employeeNumber\nemployeeNumber: 6\n"
    ));
    let r = json(home.path(), 0, &script);
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM accounts"), "4");
    // A leaver under the default deprovisioning: a row cannot be disabled,
    // so it is left as it is (not a per-object failure every run).
    l.ldapmodify(&format!("dn: uid=dan,{src}\nchangetype: delete\n"));
    let leave = script.replace("st.run()", "st.run(#{ allow_deletes: 1 })");
    let r = json(home.path(), 0, &leave);
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(
        pg.psql(&db, "SELECT uid FROM accounts ORDER BY uid"),
        "ann\nbob\ncid\ndan"
    );
}

/// A database with `accounts`, `n` OpenLDAP people, an OpenLDAP → SQL step over them, and its
/// run started in the background (for tests that interrupt it).
struct Big {
    db: String,
    id: String,
    home: tempfile::TempDir,
    script: String,
    child: std::process::Child,
}

fn start_big_ldap_to_sql(pg: &Pg, l: &support::Ldap, db: &str, id: &str, n: u32) -> Big {
    let db = pg.fresh_db(db);
    pg.psql(&db, ACCOUNTS);
    let id = support::unique(id);
    let people: Vec<(String, String)> = (1..=n)
        .map(|i| (format!("u{i:05}"), i.to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = people
        .iter()
        .map(|(u, e)| (u.as_str(), e.as_str()))
        .collect();
    let src = ldap_people(l, &id, &refs);
    let home = support::temp_home();
    let script = ldap_to_sql_script(pg, &db, l, &id, &src);
    let file = home.path().join("run.rhai");
    std::fs::write(&file, &script).unwrap();
    let child = support::idsync_command(home.path())
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn idsync");
    Big {
        db,
        id,
        home,
        script,
        child,
    }
}

#[test]
fn sigkill_mid_run_leaves_no_half_batch_and_the_next_run_completes() {
    let Some(pg) = postgres() else { return };
    let Some(l) = support::slapd() else { return };
    const N: u32 = 3000;
    let Big {
        db,
        home,
        script,
        mut child,
        ..
    } = start_big_ldap_to_sql(pg, l, "sigkill", "sqlkill", N);
    // Wait until a batch (500 rows a commit) is committed and the next one has written rows
    // it has not committed yet (its session holds a transaction id), then SIGKILL idsync.
    let t = std::time::Instant::now();
    loop {
        let state = pg.psql(
            &db,
            "SELECT (SELECT count(*) FROM accounts) || '|' || \
             (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
              AND application_name = 'idsync' AND backend_xid IS NOT NULL)",
        );
        if let Some((committed, open)) = state.split_once('|')
            && committed.parse::<u32>().unwrap_or(0) >= 500
            && open != "0"
        {
            break;
        }
        if t.elapsed() > std::time::Duration::from_secs(120) || committed_all(&state, N) {
            let _ = child.kill();
            panic!("the run was not caught with a batch open: {state}");
        }
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
    let t = std::time::Instant::now();
    while pg.psql(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'idsync'",
    ) != "0"
    {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "sessions stay");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kept: u32 = pg
        .psql(&db, "SELECT count(*) FROM accounts")
        .parse()
        .unwrap();
    assert!(
        kept.is_multiple_of(500) && kept < N,
        "{kept} rows: whole batches of 500 only, nothing of the half batch"
    );
    let r = json(home.path(), 0, &script);
    assert_eq!(r["created"], N - kept, "{r:#}");
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM accounts"), N.to_string());
}

/// The writing session killed by the server between two rows of an open batch (the server rolls
/// the batch back): the run must not carry on in a new session and store links for the rolled-back
/// rows. Invariant: every link stored for the step has its row in the table; a second run then
/// writes the rest.
#[test]
fn a_writer_session_terminated_mid_batch_stores_no_link_without_its_row() {
    let Some(pg) = postgres() else { return };
    let Some(l) = support::slapd() else { return };
    const N: u32 = 3000;
    let Big {
        db,
        id,
        home,
        script,
        mut child,
    } = start_big_ldap_to_sql(pg, l, "terminate", "sqlterm", N);
    // Once a batch (500 rows a commit) is committed and the next one holds uncommitted rows,
    // terminate the writing session while it is idle in that transaction.
    let t = std::time::Instant::now();
    loop {
        let killed = pg.psql(
            &db,
            "SELECT (SELECT count(*) FROM accounts) || '|' || \
             (SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
              WHERE datname = current_database() AND application_name = 'idsync' \
              AND backend_xid IS NOT NULL AND state = 'idle in transaction' \
              AND (SELECT count(*) FROM accounts) >= 500)",
        );
        if killed.split_once('|').is_some_and(|(_, k)| k != "0") {
            break;
        }
        if t.elapsed() > std::time::Duration::from_secs(120) || committed_all(&killed, N) {
            let _ = child.kill();
            panic!("the writer was not caught with a batch open: {killed}");
        }
    }
    let status = child.wait().expect("idsync ends");
    let linked = json(
        home.path(),
        0,
        &format!("links(\"{id}/accounts\").map(|k| k.target_dn)"),
    );
    let linked: Vec<String> = linked
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {linked:#}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let rows: std::collections::BTreeSet<String> = pg
        .psql(&db, "SELECT uid FROM accounts")
        .lines()
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = linked.iter().filter(|u| !rows.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} links have no row (run ended with {status}), e.g. {:?}",
        missing.len(),
        linked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        (500..N).contains(&(linked.len() as u32)),
        "the run was not interrupted: {} links",
        linked.len()
    );
    let r = json(home.path(), 0, &script);
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM accounts"), N.to_string());
    let all = json(home.path(), 0, &format!("links(\"{id}/accounts\").len()"));
    assert_eq!(all, serde_json::json!(N));
}

fn committed_all(state: &str, n: u32) -> bool {
    state
        .split('|')
        .next()
        .and_then(|c| c.parse::<u32>().ok())
        .is_some_and(|c| c >= n)
}

#[test]
fn a_child_table_holds_a_multi_valued_attribute_for_reads_filters_and_writes() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("child");
    pg.psql(
        &db,
        "CREATE TABLE emp (employee_id integer PRIMARY KEY, name text);
         CREATE TABLE hr_phone (employee_id integer REFERENCES emp, number text NOT NULL);
         INSERT INTO emp VALUES (1, 'ann'), (2, 'bob');
         INSERT INTO hr_phone VALUES (1, '555-0101'), (1, '555-0102'), (2, '777-0201');",
    );
    let home = support::temp_home();
    let c = connect(
        pg,
        &db,
        "table: \"emp\", key: \"employee_id\", \
         multi: #{ phone: #{ table: \"hr_phone\", key: \"employee_id\", column: \"number\" } }",
    );
    let ann = json(home.path(), 0, &format!("{c}db.get(\"1\")"));
    assert_eq!(ann["phone"], serde_json::json!(["555-0101", "555-0102"]));
    let hit = dns(&json(
        home.path(),
        0,
        &format!("{c}db.search(\"(phone=777*)\")"),
    ));
    assert_eq!(hit, ["2"]);
    json(
        home.path(),
        0,
        &format!(
            "{c}db.create(\"3\", #{{ name: \"cid\", phone: [\"111\", \"222\"] }});\n\
             db.modify(\"1\", #{{ add: #{{ phone: \"555-0103\" }}, delete: #{{ phone: \"555-0101\" }} }});\n\
             db.modify(\"2\", #{{ delete: #{{ phone: [] }} }}); 1"
        ),
    );
    assert_eq!(
        pg.psql(
            &db,
            "SELECT employee_id || ':' || number FROM hr_phone ORDER BY employee_id, number"
        ),
        "1:555-0102\n1:555-0103\n3:111\n3:222"
    );
    json(home.path(), 0, &format!("{c}db.delete(\"3\"); 1"));
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM hr_phone WHERE employee_id = 3"),
        "0"
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM emp"), "2");
}

#[test]
fn a_query_reads_a_select_and_refuses_writes() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("query");
    pg.psql(&db, HR);
    let home = support::temp_home();
    let c = connect(
        pg,
        &db,
        "query: \"SELECT employee_id, first || ' ' || last AS full_name, salary FROM employees WHERE active\", \
         key: \"employee_id\"",
    );
    let rows = json(home.path(), 0, &format!("{c}db.search(\"(salary>=1000)\")"));
    assert_eq!(dns(&rows), ["1001"]);
    assert_eq!(rows[0]["full_name"], "Ann Lee");
    assert_eq!(
        dns(&json(home.path(), 0, &format!("{c}db.search(\"\")"))),
        ["1001", "1002"],
        "only the rows the SELECT gives"
    );
    let (code, _, err) = run(home.path(), &format!("{c}db.delete(\"1001\")"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM employees"), "3");
}

#[test]
fn a_saved_sql_connection_keeps_the_password_as_a_reference_and_reopens() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("profile");
    pg.psql(&db, HR);
    let home = support::temp_home();
    let c = connect(
        pg,
        &db,
        "table: \"employees\", key: \"employee_id\", multi: #{ mail: \";\" }",
    );
    json(
        home.path(),
        0,
        &format!("{c}save_connection(\"hr-db\", db); 1"),
    );
    let listed = json(home.path(), 0, "connections()").to_string();
    assert!(listed.contains(&format!("env:{PW_ENV}")), "{listed}");
    assert!(
        !listed.contains("\"secret\""),
        "the password's value is stored: {listed}"
    );
    let ann = json(home.path(), 0, "connection(\"hr-db\").get(\"1001\")");
    assert_eq!(
        ann["mail"],
        serde_json::json!(["ann@example.com", "a.lee@example.com"])
    );
    // a plain-text password is usable but not storable
    let (code, _, err) = run(
        home.path(),
        &format!(
            "let db = connect_sql(\"{}\", #{{ password: \"secret\", ca_file: \"{}\", table: \"employees\", key: \"employee_id\" }}); save_connection(\"x\", db)",
            pg.url(&db),
            pg.ca_file
        ),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("never stored"), "{err}");
}

#[test]
fn a_row_fine_in_sql_but_refused_by_ldap_is_retried_on_the_next_incremental_run() {
    let Some(pg) = postgres() else { return };
    let Some(l) = support::slapd() else { return };
    let db = pg.fresh_db("retry");
    pg.psql(&db, HR);
    let id = support::unique("sqlretry");
    let dst = format!("ou={id},dc=target,dc=com");
    l.ldapadd(&format!(
        "dn: {dst}\nobjectClass: organizationalUnit\nou: {id}\n"
    ));
    let home = support::temp_home();
    let script = format!(
        "{c}let ol = connect_ldap(\"{url}\", #{{ bind_dn: \"{admin}\", password: secret(\"{PW_ENV}\"), base: \"{dst}\" }});\n\
         let st = sync_step(\"{id}/users\", db, ol, #{{\n\
           join: #{{ employeeNumber: \"employee_id\" }},\n\
           create: #{{ parent: \"{dst}\", rdn: |e| `uid=e${{e.employee_id}}`, class: [\"inetOrgPerson\"] }},\n\
           flows: #{{ cn: |e| `${{e.first}} ${{e.last}}`, sn: \"last\", employeeNumber: \"employee_id\", mail: \"mail\" }},\n\
         }});\n\
         st.run()",
        c = connect(
            pg,
            &db,
            "table: \"employees\", key: \"employee_id\", changed: \"updated_at\", multi: #{ mail: \";\" }"
        ),
        url = l.url,
        admin = l.admin_dn,
    );
    let r = json(home.path(), 0, &script);
    counts(&r, &[("created", 3)]);
    // a new row whose mail LDAP refuses (mail is IA5, ASCII only); SQL takes it
    pg.psql(
        &db,
        "INSERT INTO employees (employee_id, first, last, mail, updated_at)
         VALUES (1004, 'Dan', 'Öz', 'dan.öz@example.com', '2026-03-01 00:00:00+00');
         UPDATE employees SET last = 'Rock', updated_at = '2026-04-01 00:00:00+00' WHERE employee_id = 1002;",
    );
    let r = json(home.path(), 3, &script);
    counts(&r, &[("failed", 1), ("updated", 1), ("unchanged", 2)]);
    assert!(errors(&r).join("\n").contains("1004"), "{r:#}");
    // fixed in SQL without moving the change column (now older than Bob's): the failed row
    // comes back anyway, because the cursor only moves after a clean run
    pg.psql(
        &db,
        "UPDATE employees SET mail = 'dan.oz@example.com' WHERE employee_id = 1004",
    );
    let r = json(home.path(), 0, &script);
    counts(&r, &[("created", 1), ("unchanged", 3)]);
    let dan = l.ldapsearch(
        &format!("uid=e1004,{dst}"),
        "base",
        "(objectClass=*)",
        &["mail"],
    );
    assert!(dan.contains("mail: dan.oz@example.com"), "{dan}");
}

/// The key is compared in its own type (so the primary key's index serves get, modify,
/// delete and the read-back of a create): an integer key `007` is row 7 and an upper-case uuid
/// is the row of that uuid, which a comparison of the key as text misses; an identity that is
/// no value of the key's type is simply no row.
#[test]
fn keys_compare_in_their_own_type_for_get_modify_delete_and_read_back() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("keytype");
    pg.psql(
        &db,
        "CREATE TABLE nums (id integer PRIMARY KEY, label text);
         INSERT INTO nums VALUES (7, 'seven'), (8, 'eight');
         CREATE TABLE badges (id uuid PRIMARY KEY, label text);
         INSERT INTO badges VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'first');
         CREATE TABLE tags (id integer NOT NULL, tag text NOT NULL);
         INSERT INTO tags VALUES (7, 'x');",
    );
    let home = support::temp_home();
    let n = connect(
        pg,
        &db,
        "table: \"nums\", key: \"id\", multi: #{ tags: #{ table: \"tags\", key: \"id\", column: \"tag\" } }",
    );
    let one = json(home.path(), 0, &format!("{n}db.get(\"007\")"));
    assert_eq!(one["dn"], "7", "{one:#}");
    assert_eq!(one["tags"], "x", "{one:#}");
    let none = json(home.path(), 0, &format!("{n}db.get(\"seven\") == ()"));
    assert_eq!(none, Json::Bool(true), "no integer, no row (not an error)");
    json(
        home.path(),
        0,
        &format!("{n}db.modify(\"+7\", #{{ replace: #{{ label: \"SEVEN\", tags: [\"y\"] }} }}); 1"),
    );
    assert_eq!(pg.psql(&db, "SELECT label FROM nums WHERE id = 7"), "SEVEN");
    assert_eq!(pg.psql(&db, "SELECT tag FROM tags WHERE id = 7"), "y");
    json(home.path(), 0, &format!("{n}db.delete(\"08\"); 1"));
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM nums"), "1");
    let created = json(
        home.path(),
        0,
        &format!("{n}db.create(\"0009\", #{{ label: \"nine\" }})"),
    );
    assert_eq!(
        created["dn"], "9",
        "read back by the stored key: {created:#}"
    );

    let b = connect(pg, &db, "table: \"badges\", key: \"id\"");
    let got = json(
        home.path(),
        0,
        &format!("{b}db.get(\"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\")"),
    );
    assert_eq!(got["label"], "first", "{got:#}");
    let base = json(
        home.path(),
        0,
        &format!(
            "{b}db.search(\"\", #{{ base: \"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\", scope: \"base\" }})"
        ),
    );
    assert_eq!(
        dns(&base),
        ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        "scope base"
    );
}

/// PostgreSQL's "Failing row contains (...)" detail lists every value of the row; a refused row
/// is reported by constraint, without the values (a password column must never reach a log).
#[test]
fn a_refused_row_is_reported_without_the_values_of_the_row() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("detail");
    pg.psql(
        &db,
        "CREATE TABLE creds (id text PRIMARY KEY, pin text NOT NULL, \
         CONSTRAINT pin_len CHECK (length(pin) = 4), note text NOT NULL);",
    );
    let home = support::temp_home();
    let c = connect(pg, &db, "table: \"creds\", key: \"id\"");
    // the value is built in the script, so the echoed script line does not hold it
    for (attrs, why) in [
        ("pin: \"s3cr\" + \"3t-pin-value\", note: \"n\"", "pin_len"),
        ("pin: \"s3cr\" + \"3t-pin-value\"", "not-null"),
    ] {
        let (code, out, err) = run(
            home.path(),
            &format!("{c}db.create(\"u1\", #{{ {attrs} }})"),
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(why) && err.contains("u1"), "{err}");
        assert!(
            !err.contains("s3cr3t") && !out.contains("s3cr3t"),
            "a value of the row leaked: {err}"
        );
    }
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM creds"), "0");
}

/// A `query`'s column types are written into casts as SQL text (format_type: quoted and
/// schema-qualified where needed), so a filter on a column of a mixed-case enum type in another
/// schema works.
#[test]
fn a_query_column_of_a_quoted_type_in_another_schema_filters_in_its_type() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("qtype");
    pg.psql(
        &db,
        "CREATE SCHEMA hr; CREATE TYPE hr.\"Mood\" AS ENUM ('happy', 'sad');
         CREATE TABLE hr.people (id integer PRIMARY KEY, mood hr.\"Mood\");
         INSERT INTO hr.people VALUES (1, 'happy'), (2, 'sad'), (3, NULL);",
    );
    let home = support::temp_home();
    let c = connect(
        pg,
        &db,
        "query: \"SELECT id, mood FROM hr.people\", key: \"id\"",
    );
    let rows = json(home.path(), 0, &format!("{c}db.search(\"(mood=sad)\")"));
    assert_eq!(dns(&rows), ["2"]);
    assert_eq!(rows[0]["mood"], "sad");
    let rows = json(home.path(), 0, &format!("{c}db.search(\"(mood>=sad)\")"));
    assert_eq!(dns(&rows), ["2"], "enum order, not text order");
}

/// A value holding the separator of a separator-joined column would read back as several
/// values: refused per row (the attribute named, the value not shown), on create and modify.
#[test]
fn a_value_holding_the_separator_of_its_column_is_refused() {
    let Some(pg) = postgres() else { return };
    let db = pg.fresh_db("sep");
    pg.psql(
        &db,
        "CREATE TABLE people (id text PRIMARY KEY, mail text);
         INSERT INTO people VALUES ('a', 'a@x;b@x');",
    );
    let home = support::temp_home();
    let c = connect(
        pg,
        &db,
        "table: \"people\", key: \"id\", multi: #{ mail: \";\" }",
    );
    let (code, _, err) = run(
        home.path(),
        &format!("{c}db.create(\"b\", #{{ mail: [\"c@x;d@x\", \"e@x\"] }})"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("separator") && err.contains("'mail'") && err.contains("row 'b'"),
        "{err}"
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM people"), "1");
    let (code, _, err) = run(
        home.path(),
        &format!("{c}db.modify(\"a\", #{{ add: #{{ mail: \"f@x;g@x\" }} }})"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("separator"), "{err}");
    assert_eq!(pg.psql(&db, "SELECT mail FROM people"), "a@x;b@x");
    // values without it still join and split
    json(
        home.path(),
        0,
        &format!("{c}db.modify(\"a\", #{{ add: #{{ mail: \"f@x\" }} }}); 1"),
    );
    assert_eq!(pg.psql(&db, "SELECT mail FROM people"), "a@x;b@x;f@x");
}

mod batches {
    //! The batch guards, driven through the library (begin_batch / flush are no script
    //! functions): a session lost under an open batch is an error, never a silent new session;
    //! the next batch starts clean.
    use super::support::postgres::{Pg, postgres};
    use idsync::connector::Connector;
    use idsync::connector::sql::{SqlConnector, SqlOptions};
    use idsync::model::{Secret, Value};

    fn open(rt: &tokio::runtime::Runtime, pg: &Pg, db: &str) -> SqlConnector {
        let mut o = SqlOptions::new(pg.url(db), "id");
        o.table = Some("rows".into());
        o.password = Some(Secret::with_reference(pg.password.clone(), "PW"));
        o.ca_file = Some(pg.ca_file.clone());
        rt.block_on(SqlConnector::connect(o)).expect("connect")
    }

    fn create(rt: &tokio::runtime::Runtime, c: &SqlConnector, id: &str) -> Result<(), String> {
        rt.block_on(c.create(id, &[("v".to_string(), vec![Value::Text("x".into())])]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn kill_writer(pg: &Pg, db: &str) {
        let n = pg.psql(
            db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'idsync' \
             AND state = 'idle in transaction'",
        );
        assert_eq!(n, "1", "one writer in an open batch");
    }

    fn setup(tag: &str) -> Option<(&'static Pg, String, tokio::runtime::Runtime)> {
        let pg = postgres()?;
        let db = pg.fresh_db(tag);
        pg.psql(&db, "CREATE TABLE rows (id text PRIMARY KEY, v text)");
        let rt = tokio::runtime::Runtime::new().unwrap();
        Some((pg, db, rt))
    }

    #[test]
    fn a_write_after_the_session_was_lost_under_an_open_batch_is_refused() {
        let Some((pg, db, rt)) = setup("lostsess") else {
            return;
        };
        let c = open(&rt, pg, &db);
        c.begin_batch();
        create(&rt, &c, "a").expect("first row");
        kill_writer(pg, &db);
        let _ = create(&rt, &c, "b"); // notices the loss (its error may vary)
        let e = create(&rt, &c, "c").expect_err("no new session under the open batch");
        assert!(e.contains("none of the batch's rows is written"), "{e}");
        assert!(
            rt.block_on(c.flush()).is_err(),
            "flush reports the lost batch"
        );
        assert_eq!(pg.psql(&db, "SELECT count(*) FROM rows"), "0");
    }

    #[test]
    fn begin_batch_starts_afresh_after_a_lost_or_unflushed_batch() {
        let Some((pg, db, rt)) = setup("freshbatch") else {
            return;
        };
        let c = open(&rt, pg, &db);
        // a lost batch that never reached flush
        c.begin_batch();
        create(&rt, &c, "a").unwrap();
        kill_writer(pg, &db);
        let _ = create(&rt, &c, "b");
        c.begin_batch();
        create(&rt, &c, "c").expect("the next batch writes in a new session");
        rt.block_on(c.flush()).expect("flush");
        assert_eq!(pg.psql(&db, "SELECT string_agg(id, ',') FROM rows"), "c");
        // a batch left open without flush: its rows never commit with the next one
        c.begin_batch();
        create(&rt, &c, "d").unwrap();
        c.begin_batch();
        create(&rt, &c, "e").unwrap();
        rt.block_on(c.flush()).expect("flush");
        assert_eq!(
            pg.psql(&db, "SELECT string_agg(id, ',' ORDER BY id) FROM rows"),
            "c,e"
        );
    }
}
