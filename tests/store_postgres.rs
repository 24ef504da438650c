//! The shared state store on PostgreSQL (issue 12 item 2), against the private PostgreSQL of
//! tests/support/postgres and a private slapd: the store contract, the schema version check,
//! store selection (`IDSYNC_STORE`, a password in the URL refused unseen, an `mssql://` URL
//! without a login refused),
//! two idsync processes with different `IDSYNC_HOME` sharing profiles, links, history and run
//! leases (also from another UTS namespace, which is another host), and `idsync store migrate`
//! both ways with counts checked.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idsync::model::Secret;
use idsync::store::{PostgresStore, SqliteStore, StateStore, StoreError};
use serde_json::Value as Json;
use support::postgres::Pg;
use support::report::{counts, n, s};
use support::{Ldap, PW_ENV};

fn pg() -> Option<&'static Pg> {
    support::postgres::postgres()
}

/// A store URL on a fresh database of the private PostgreSQL (TLS on, verified).
fn store_url(pg: &Pg, prefix: &str) -> String {
    pg.url(&pg.fresh_db(prefix))
}

fn open(pg: &Pg, url: &str) -> Result<PostgresStore, StoreError> {
    let pw = Secret::with_reference(pg.password.clone(), "env:TEST");
    PostgresStore::open(url, Some(&pw), Some(pg.ca_file.clone()))
}

/// An idsync command in `home` using the shared store at `url`.
fn idsync(pg: &Pg, home: &Path, url: &str) -> Command {
    let mut cmd = support::idsync_command(home);
    cmd.env("IDSYNC_STORE", url)
        .env("IDSYNC_STORE_PASSWORD", &pg.password)
        .env("IDSYNC_STORE_CA_FILE", &pg.ca_file)
        .env_remove("IDSYNC_SYNC_STORE")
        .env_remove("IDSYNC_LEASE_PERIOD_MS");
    cmd
}

/// (exit code, stdout, stderr); never Rust panic text.
fn output(mut cmd: Command) -> (i32, String, String) {
    let o = cmd.output().expect("run idsync");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    (o.status.code().unwrap_or(-1), out, err)
}

fn script_file(home: &Path, script: &str) -> std::path::PathBuf {
    let file = home.join(format!("{}.rhai", support::unique("s")));
    std::fs::write(&file, script).unwrap();
    file
}

/// Runs `script` as JSON in `home` on the store `url`; expects exit 0; the printed value.
fn json_ok(pg: &Pg, home: &Path, url: &str, script: &str) -> Json {
    let mut cmd = idsync(pg, home, url);
    cmd.args(["--format", "json"])
        .arg(script_file(home, script));
    let (code, out, err) = output(cmd);
    assert_eq!(code, 0, "exit {code}\n--- stdout\n{out}\n--- stderr\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

// ---------------------------------------------------------------------------------------------
// the store itself

#[test]
fn postgres_store_keeps_the_contract() {
    let Some(pg) = pg() else { return };
    let store = open(pg, &store_url(pg, "contract")).expect("open the store");
    idsync::store::contract(&store);
}

#[test]
fn two_handles_on_one_database_share_everything_and_the_schema_is_made_once() {
    let Some(pg) = pg() else { return };
    let url = store_url(pg, "twoh");
    // Eight openers of a new store at once: one creates the schema, none fails.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| open(pg, &url).map(|_| ())))
            .collect();
        for h in handles {
            h.join().unwrap().expect("open a new store concurrently");
        }
    });
    let a = open(pg, &url).unwrap();
    let b = open(pg, &url).unwrap();
    a.put_profile("ad", "ldap", &serde_json::json!({"url": "ldap://x"}))
        .unwrap();
    assert_eq!(b.get_profile("ad").unwrap().unwrap().kind, "ldap");
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(db, "SELECT version FROM idsync_schema"),
        PostgresStore::schema_version().to_string()
    );
}

#[test]
fn a_newer_schema_is_refused_naming_the_store_url() {
    let Some(pg) = pg() else { return };
    let url = store_url(pg, "toonew");
    drop(open(pg, &url).unwrap());
    let db = url.rsplit('/').next().unwrap();
    pg.psql(db, "UPDATE idsync_schema SET version = 99");
    let e = open(pg, &url).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::TooNew {
                found: 99,
                supported,
                ..
            } if supported == PostgresStore::schema_version()
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&url) && msg.contains("schema version 99 is newer"),
        "{msg}"
    );
    assert!(!msg.contains(&pg.password), "{msg}");
    // Through the CLI too: exit 1, the URL named, nothing else opened.
    let home = support::temp_home();
    let mut cmd = idsync(pg, home.path(), &url);
    cmd.args(["-c", "connections()"]);
    let (code, _, err) = output(cmd);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&url) && err.contains("newer"), "{err}");
}

#[test]
fn store_urls_with_a_password_or_for_sql_server_are_refused_without_printing_the_secret() {
    let Some(pg) = pg() else { return };
    let home = support::temp_home();
    let leaky = format!(
        "postgres://{}:Hunter2Secret@127.0.0.1:{}/idsync",
        pg.user, pg.port
    );
    for url in [
        leaky.clone(),
        format!("{}?password=Hunter2Secret", pg.url("idsync")),
    ] {
        let mut cmd = idsync(pg, home.path(), &url);
        cmd.args(["-c", "connections()"]);
        let (code, out, err) = output(cmd);
        assert_eq!(code, 1, "{url}: {err}");
        assert!(err.contains("password"), "{err}");
        assert!(
            !err.contains("Hunter2Secret") && !out.contains("Hunter2Secret"),
            "{err}{out}"
        );
    }
    // use_store refuses it too, and saves nothing.
    let mut cmd = idsync(pg, home.path(), "");
    cmd.env_remove("IDSYNC_STORE")
        .args(["-c", &format!("use_store(\"{leaky}\")")]);
    let (code, out, err) = output(cmd);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("holds a password"), "{err}");
    let local = SqliteStore::open(home.path().join("state.db")).unwrap();
    assert_eq!(local.get_setting("store").unwrap(), None);
    // SQL Server: a location without a login is refused saying so (the SQL Server store
    // itself is tested in tests/store_mssql.rs).
    let mut cmd = idsync(pg, home.path(), "mssql://sql1:1433/idsync");
    cmd.args(["-c", "connections()"]);
    let (code, _, err) = output(cmd);
    assert_eq!(code, 1);
    assert!(err.contains("no login"), "{err}");
}

#[test]
fn use_store_saves_the_choice_for_later_processes_and_the_environment_wins() {
    let Some(pg) = pg() else { return };
    let url = store_url(pg, "usest");
    let home = support::temp_home();
    let local = |cmd: &mut Command| {
        cmd.env_remove("IDSYNC_STORE");
    };
    let mut cmd = idsync(pg, home.path(), &url);
    local(&mut cmd);
    cmd.args(["-c", &format!("use_store(\"{url}\")")]);
    let (code, out, err) = output(cmd);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&url), "{out}");
    // A later process without IDSYNC_STORE saves its profile in PostgreSQL.
    let mut cmd = idsync(pg, home.path(), &url);
    local(&mut cmd);
    cmd.args([
        "-c",
        "save_connection(\"from-setting\", connect_csv(\"x.csv\", #{ key: \"id\" }))",
    ]);
    let (code, _, err) = output(cmd);
    assert_eq!(code, 0, "{err}");
    assert!(
        open(pg, &url)
            .unwrap()
            .get_profile("from-setting")
            .unwrap()
            .is_some()
    );
    let plain = SqliteStore::open(home.path().join("state.db")).unwrap();
    assert!(plain.get_profile("from-setting").unwrap().is_none());
    // IDSYNC_STORE wins over the setting.
    let other = store_url(pg, "usest2");
    let mut cmd = idsync(pg, home.path(), &other);
    cmd.args([
        "-c",
        "save_connection(\"from-env\", connect_csv(\"x.csv\", #{ key: \"id\" }))",
    ]);
    assert_eq!(output(cmd).0, 0);
    assert!(
        open(pg, &other)
            .unwrap()
            .get_profile("from-env")
            .unwrap()
            .is_some()
    );
    assert!(
        open(pg, &url)
            .unwrap()
            .get_profile("from-env")
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_second_sync_store_holds_links_runs_and_cursors() {
    let Some(pg) = pg() else { return };
    let Some(l) = support::slapd() else { return };
    let (config, sync) = (store_url(pg, "cfg"), store_url(pg, "syn"));
    let f = Fixture::new(l, "split", 20);
    let home = support::temp_home();
    let mut cmd = idsync(pg, home.path(), &config);
    cmd.env("IDSYNC_SYNC_STORE", &sync)
        .args(["--format", "json"])
        .arg(script_file(home.path(), &f.script(true, "st.run()")));
    let (code, out, err) = output(cmd);
    assert_eq!(code, 0, "{err}");
    let r: Json = serde_json::from_str(&out).unwrap();
    counts(&r, &[("created", 20)]);
    let (c, y) = (open(pg, &config).unwrap(), open(pg, &sync).unwrap());
    assert!(c.get_profile(&f.profile).unwrap().is_some());
    assert!(y.list_profiles().unwrap().is_empty());
    assert_eq!(y.link_count(&f.step).unwrap(), 20);
    assert_eq!(c.link_count(&f.step).unwrap(), 0);
    assert_eq!(y.runs(None, 10).unwrap().len(), 1);
    assert!(c.runs(None, 10).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// two idsync processes on one store

/// A source OU with `count` persons and an empty target OU on the shared slapd.
struct Fixture {
    l: &'static Ldap,
    src: String,
    dst: String,
    step: String,
    profile: String,
}

impl Fixture {
    fn new(l: &'static Ldap, tag: &str, count: usize) -> Fixture {
        let id = support::unique(tag);
        let src = format!("ou={id}-src,{}", l.base);
        let dst = format!("ou={id}-dst,{}", l.base);
        let mut ldif = String::new();
        for ou in [&src, &dst] {
            let name = ou.split(',').next().unwrap().trim_start_matches("ou=");
            ldif.push_str(&format!(
                "dn: {ou}\nobjectClass: organizationalUnit\nou: {name}\n\n"
            ));
        }
        for i in 0..count {
            ldif.push_str(&format!(
                "dn: uid=p{i:05},{src}\nobjectClass: inetOrgPerson\nuid: p{i:05}\ncn: P {i}\n\
                 sn: Person\nemployeeNumber: {id}-{i}\n\n"
            ));
        }
        l.ldapadd(&ldif);
        Fixture {
            l,
            src,
            dst,
            step: format!("{id}/users"),
            profile: format!("{id}-src"),
        }
    }

    /// A script: the source connection opened directly and saved as a profile (`save`), or
    /// opened from that profile; then the step, then `tail`.
    fn script(&self, save: bool, tail: &str) -> String {
        let l = self.l;
        let src = if save {
            format!(
                "let src = connect_ldap(\"{url}\", #{{ bind_dn: \"{dn}\", password: secret(\"{PW_ENV}\"), base: \"{base}\" }});\n\
                 save_connection(\"{p}\", src);\n",
                url = l.url,
                dn = l.admin_dn,
                base = self.src,
                p = self.profile
            )
        } else {
            format!("let src = connection(\"{}\");\n", self.profile)
        };
        format!(
            "{src}let dst = connect_ldap(\"{url}\", #{{ bind_dn: \"{dn}\", password: secret(\"{PW_ENV}\"), base: \"{dst}\" }});\n\
             let st = sync_step(\"{step}\", src, dst, #{{\n\
               scope: #{{ base: \"{srcb}\", filter: \"(objectClass=inetOrgPerson)\" }},\n\
               join: #{{ employeeNumber: \"employeeNumber\" }},\n\
               create: #{{ parent: \"{dst}\", rdn: |e| `uid=${{e.uid}}`, class: [\"inetOrgPerson\"] }},\n\
               flows: #{{ cn: \"cn\", sn: \"sn\", employeeNumber: \"employeeNumber\" }},\n\
               target_base: \"{dst}\",\n\
             }});\n{tail}\n",
            url = l.url,
            dn = l.admin_dn,
            dst = self.dst,
            srcb = self.src,
            step = self.step
        )
    }

    /// `dn -> entryCSN` of the target entries.
    fn target_csns(&self) -> std::collections::BTreeMap<String, String> {
        let out = self
            .l
            .ldapsearch(&self.dst, "one", "(uid=*)", &["entryCSN"]);
        let mut m = std::collections::BTreeMap::new();
        let mut dn = String::new();
        for line in out.lines() {
            if let Some(d) = line.strip_prefix("dn: ") {
                dn = d.to_string();
            } else if let Some(c) = line.strip_prefix("entryCSN: ") {
                m.insert(dn.clone(), c.to_string());
            }
        }
        m
    }

    fn target_count(&self) -> usize {
        self.target_csns().len()
    }
}

/// Starts idsync on `script` without waiting; `wrap` may put it in another namespace.
fn spawn(mut cmd: Command, home: &Path, script: &str) -> Child {
    cmd.args(["--format", "json"])
        .arg(script_file(home, script))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idsync")
}

/// Waits until the run in `child` has written `at_least` target entries.
fn wait_for_writes(child: &mut Child, f: &Fixture, at_least: usize) {
    let t = Instant::now();
    while f.target_count() < at_least {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the run ended early ({st}): {err}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the run wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn history(pg: &Pg, home: &Path, url: &str, name: &str) -> Vec<Json> {
    json_ok(pg, home, url, &format!("history(\"{name}\")"))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn two_homes_on_one_store_share_profiles_links_and_history() {
    let Some(pg) = pg() else { return };
    let Some(l) = support::slapd() else { return };
    let url = store_url(pg, "share");
    let f = Fixture::new(l, "share", 30);
    let (a, b) = (support::temp_home(), support::temp_home());
    // A saves the source profile and runs the step: everything created.
    let r = json_ok(pg, a.path(), &url, &f.script(true, "st.run()"));
    counts(&r, &[("created", 30)]);
    let before = f.target_csns();
    assert_eq!(before.len(), 30);
    // B (another home, nothing local) opens A's profile and re-runs: nothing written.
    let r = json_ok(pg, b.path(), &url, &f.script(false, "st.run()"));
    counts(&r, &[("unchanged", 30)]);
    assert_eq!(
        f.target_csns(),
        before,
        "the re-run by B wrote to the directory"
    );
    // Both see both runs.
    for home in [a.path(), b.path()] {
        let h = history(pg, home, &url, &f.step);
        let st: Vec<&str> = h.iter().map(|r| s(r, "status")).collect();
        assert_eq!(st, ["ok", "ok"], "{h:#?}");
        assert_eq!(n(&h[1], "created"), 30);
    }
    // And B's local store holds none of it.
    let local = SqliteStore::open(b.path().join("state.db")).unwrap();
    assert!(local.list_profiles().unwrap().is_empty());
    assert_eq!(local.link_count(&f.step).unwrap(), 0);
}

/// Big enough that a run is still writing when the other process starts.
const BIG: usize = 3000;

#[test]
fn a_concurrent_run_from_another_home_is_refused_and_a_sigkilled_runs_lease_is_taken_over() {
    let Some(pg) = pg() else { return };
    let Some(l) = support::slapd() else { return };
    let url = store_url(pg, "race");
    let f = Fixture::new(l, "race", BIG);
    let (a, b) = (support::temp_home(), support::temp_home());
    let mut child = spawn(
        idsync(pg, a.path(), &url),
        a.path(),
        &f.script(true, "st.run()"),
    );
    wait_for_writes(&mut child, &f, 50);
    // B, meanwhile: refused, exit 5, naming A's process on this host.
    let mut cmd = idsync(pg, b.path(), &url);
    cmd.arg(script_file(b.path(), &f.script(false, "st.run()")));
    let (code, _, err) = output(cmd);
    assert_eq!(code, 5, "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for want in [
        "refused".to_string(),
        format!("pid {} on {}", child.id(), host.trim()),
        "nothing was written".into(),
    ] {
        assert!(err.contains(&want), "no {want:?} in {err}");
    }
    // A is SIGKILLed mid-run; B takes its lease over at once (same host: the pid is gone).
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(f.target_count() < BIG, "the run finished before the kill");
    let r = json_ok(pg, b.path(), &url, &f.script(false, "st.run()"));
    assert_eq!(
        n(&r, "created") + n(&r, "joined") + n(&r, "unchanged"),
        BIG as i64,
        "{r:#}"
    );
    assert_eq!(f.target_count(), BIG);
    let h = history(pg, b.path(), &url, &f.step);
    let st: Vec<&str> = h.iter().map(|r| s(r, "status")).collect();
    assert_eq!(st, ["ok", "interrupted"], "{h:#?}");
    let log = support::newest_run_log(b.path());
    assert!(
        log.contains(&format!("took over the lease of {}", f.step)),
        "{log}"
    );
}

/// `unshare --uts` with its own host name: to idsync, another machine.
fn other_host(pg: &Pg, home: &Path, url: &str, hostname: &str) -> Option<Command> {
    let probe = Command::new("unshare")
        .args(["--uts", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !probe {
        if std::env::var("IDSYNC_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
            panic!("unshare --uts is not possible here (needs root)");
        }
        eprintln!("skipped: unshare --uts is not possible here (needs root)");
        return None;
    }
    let base = idsync(pg, home, url);
    let mut cmd = Command::new("unshare");
    cmd.args(["--uts", "sh", "-c"])
        .arg(format!("hostname {hostname} && exec \"$0\" \"$@\""))
        .arg(support::idsync_bin());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(Stdio::null());
    Some(cmd)
}

#[test]
fn a_holder_in_another_uts_namespace_is_another_host_refused_until_its_heartbeat_expires() {
    let Some(pg) = pg() else { return };
    let Some(l) = support::slapd() else { return };
    let url = store_url(pg, "uts");
    let f = Fixture::new(l, "uts", BIG);
    let (a, b) = (support::temp_home(), support::temp_home());
    let remote = support::unique("far");
    let Some(mut cmd) = other_host(pg, a.path(), &url, &remote) else {
        return;
    };
    cmd.env("IDSYNC_LEASE_PERIOD_MS", "3000");
    let mut child = spawn(cmd, a.path(), &f.script(true, "st.run()"));
    wait_for_writes(&mut child, &f, 50);
    let refused = |what: &str| {
        let mut cmd = idsync(pg, b.path(), &url);
        cmd.env("IDSYNC_LEASE_PERIOD_MS", "3000")
            .arg(script_file(b.path(), &f.script(false, "st.run()")));
        let (code, _, err) = output(cmd);
        assert_eq!(code, 5, "{what}: {err}");
        assert!(err.contains(&format!("on {remote}")), "{what}: {err}");
    };
    refused("while it runs");
    // Killed: from here its pid cannot be checked (another host), so the lease holds until
    // the heartbeat is older than the lease period.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(f.target_count() < BIG, "the run finished before the kill");
    refused("just after the kill");
    std::thread::sleep(Duration::from_millis(3500));
    let mut cmd = idsync(pg, b.path(), &url);
    cmd.env("IDSYNC_LEASE_PERIOD_MS", "3000")
        .args(["--format", "json"])
        .arg(script_file(b.path(), &f.script(false, "st.run()")));
    let (code, out, err) = output(cmd);
    assert_eq!(code, 0, "{err}");
    let r: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(
        n(&r, "created") + n(&r, "joined") + n(&r, "unchanged"),
        BIG as i64
    );
    let log = support::newest_run_log(b.path());
    assert!(
        log.contains(&format!("took over the lease of {}", f.step)) && log.contains(&remote),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// store migrate

fn migrate(pg: &Pg, home: &Path, store: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = idsync(pg, home, store.unwrap_or(""));
    if store.is_none() {
        cmd.env_remove("IDSYNC_STORE");
    }
    cmd.args(["store", "migrate"]).args(args);
    output(cmd)
}

/// The count printed for `table` in the source and target columns.
fn printed(out: &str, table: &str) -> (usize, usize) {
    let line = out
        .lines()
        .find(|l| l.starts_with(table) && l[table.len()..].starts_with("  "))
        .unwrap_or_else(|| panic!("no {table} line in {out}"));
    let nums: Vec<usize> = line[table.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn store_migrate_copies_sqlite_to_postgres_and_back_with_counts_checked() {
    let Some(pg) = pg() else { return };
    let Some(l) = support::slapd() else { return };
    let f = Fixture::new(l, "mig", 12);
    let home = support::temp_home();
    // A local store with a profile, links (some of them of deprovisioned objects), a run.
    let mut cmd = idsync(pg, home.path(), "");
    cmd.env_remove("IDSYNC_STORE")
        .args(["--format", "json"])
        .arg(script_file(home.path(), &f.script(true, "st.run()")));
    assert_eq!(output(cmd).0, 0);
    let local = SqliteStore::open(home.path().join("state.db")).unwrap();
    let gone: Vec<_> = local.links(&f.step).unwrap()[..2].to_vec();
    local.keep_deprovisioned(&f.step, &gone).unwrap();
    local.put_setting("note", "kept").unwrap();
    let src_runs = local.runs(None, 100).unwrap();

    // SQLite -> PostgreSQL.
    let url = store_url(pg, "mig");
    let (code, out, err) = migrate(pg, home.path(), None, &["--to", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed(&out, "profiles"), (1, 1), "{out}");
    assert_eq!(printed(&out, "links"), (10, 10), "{out}");
    assert_eq!(printed(&out, "deprovisioned links"), (2, 2), "{out}");
    assert_eq!(printed(&out, "runs"), (1, 1), "{out}");
    assert!(out.contains("verified"), "{out}");
    let p = open(pg, &url).unwrap();
    assert_eq!(p.runs(None, 100).unwrap(), src_runs);
    assert_eq!(p.link_count(&f.step).unwrap(), 10);
    assert_eq!(p.get_setting("note").unwrap().as_deref(), Some("kept"));
    assert_eq!(p.list_profiles().unwrap(), local.list_profiles().unwrap());
    // A second copy into the same (now non-empty) store is refused.
    let (code, _, err) = migrate(pg, home.path(), None, &["--to", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );

    // The PostgreSQL store is usable: a run there creates nothing (the links came along) and
    // adds to its history.
    let r = json_ok(pg, home.path(), &url, &f.script(false, "st.run()"));
    assert_eq!(n(&r, "created"), 0, "{r:#}");
    assert_eq!(f.target_count(), 12);

    // PostgreSQL -> a new SQLite file.
    let back = home.path().join("back.db");
    let (code, out, err) = migrate(
        pg,
        home.path(),
        Some(&url),
        &["--to", &format!("sqlite:{}", back.display())],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed(&out, "runs"), (2, 2), "{out}");
    let b = SqliteStore::open(&back).unwrap();
    assert_eq!(b.runs(None, 100).unwrap(), p.runs(None, 100).unwrap());
    assert_eq!(
        b.link_count(&f.step).unwrap(),
        p.link_count(&f.step).unwrap()
    );
    assert_eq!(
        b.deprovisioned_links(&f.step).unwrap().len(),
        p.deprovisioned_links(&f.step).unwrap().len()
    );
}

/// Everything `store migrate` writes into a store, times included.
fn everything(s: &dyn StateStore) -> String {
    let mut out = format!(
        "{:?}\n{:?}\n",
        s.list_profiles().unwrap(),
        s.list_settings().unwrap()
    );
    for step in s.step_names().unwrap() {
        let mut live = s.links(&step).unwrap();
        live.sort_by(|a, b| a.source_anchor.cmp(&b.source_anchor));
        let mut kept = s.deprovisioned_links(&step).unwrap();
        kept.sort_by(|a, b| a.source_anchor.cmp(&b.source_anchor));
        out += &format!("{step}: {live:?}\nkept: {kept:?}\n");
    }
    format!("{out}{:?}", s.runs(None, usize::MAX).unwrap())
}

fn mig_link(i: usize) -> idsync::store::Link {
    idsync::store::Link {
        source_anchor: format!("S{i}"),
        target_anchor: format!("T{i}"),
        target_dn: format!("uid=u{i},ou=people,dc=example,dc=com"),
        source_hash: Some(format!("h{i}")),
        desired_dn: None,
        updated_ms: 1_000 + i as i64,
    }
}

fn mig_run(id: i64, message: &str) -> idsync::store::RunRecord {
    idsync::store::RunRecord {
        id,
        name: "hr-to-ldap".into(),
        kind: "step".into(),
        started_ms: 5_000 + id,
        finished_ms: Some(6_000 + id),
        status: "ok".into(),
        counts: serde_json::json!({"created": id}),
        message: Some(message.into()),
        log_path: None,
    }
}

#[test]
fn a_migrate_refused_part_way_leaves_the_target_exactly_as_it_was() {
    let Some(pg) = pg() else { return };
    let home = support::temp_home();
    // The target already holds data of its own (so --force), which a refusal must keep.
    let url = store_url(pg, "migfail");
    let p = open(pg, &url).unwrap();
    p.put_profile("theirs", "csv", &serde_json::json!({"path": "t.csv"}))
        .unwrap();
    p.put_setting("note", "theirs").unwrap();
    p.put_links("their-step", &[mig_link(90)]).unwrap();
    let before = everything(&p);
    // The source: profiles, settings and links PostgreSQL takes, then a run whose message
    // holds a NUL character, which SQLite stores and PostgreSQL text refuses: the last write.
    let local = SqliteStore::open(home.path().join("state.db")).unwrap();
    local
        .put_profile("hr", "csv", &serde_json::json!({"path": "hr.csv"}))
        .unwrap();
    local.put_setting("note", "mine").unwrap();
    let links: Vec<_> = (0..20).map(mig_link).collect();
    local.put_links("hr-to-ldap", &links).unwrap();
    local.keep_deprovisioned("hr-to-ldap", &links[..3]).unwrap();
    local
        .import_runs(&[mig_run(1, "fine"), mig_run(2, "bad\0byte")])
        .unwrap();

    let (code, out, err) = migrate(pg, home.path(), None, &["--to", &url, "--force"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("0x00") && err.contains("nothing was written to the target"),
        "{err}"
    );
    assert_eq!(
        everything(&p),
        before,
        "a migrate refused part-way changed the PostgreSQL target"
    );

    // The same on an SQLite target, refused by the test-only knob after 3 writes (profile,
    // setting, the live links), PostgreSQL as the source.
    local.import_runs(&[mig_run(2, "good")]).unwrap();
    let (code, _, err) = migrate(pg, home.path(), None, &["--to", &url, "--force"]);
    assert_eq!(code, 0, "{err}");
    let back = home.path().join("back.db");
    let b = SqliteStore::open(&back).unwrap();
    b.put_profile("own", "csv", &serde_json::json!({"path": "o.csv"}))
        .unwrap();
    b.put_setting("note", "own").unwrap();
    let before = everything(&b);
    let mut cmd = idsync(pg, home.path(), &url);
    cmd.env(idsync::store::snapshot::FAIL_AFTER_ENV, "3").args([
        "store",
        "migrate",
        "--from",
        &url,
        "--to",
        &format!("sqlite:{}", back.display()),
        "--force",
    ]);
    let (code, out, err) = output(cmd);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("number 4") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(
        everything(&b),
        before,
        "a migrate refused part-way changed the SQLite target"
    );
}
