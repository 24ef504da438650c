//! `idsync service` (issue 13, API §9) end to end: the real binary runs a service script
//! against a private slapd (source and target OUs in it), with intervals of seconds. Each
//! effect is checked independently: history straight from the state store's SQLite file,
//! the directory with `ldapsearch`, mail as the local SMTP sink (`python3-aiosmtpd`)
//! received it, the HTTP endpoints with a plain TCP client. Bounds on time are generous
//! (never "took less than"); what is asserted is order and counts.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idsync::store::{RunRecord, SqliteStore, StateStore};
use support::Ldap;

const PW_ENV: &str = support::PW_ENV;

/// One test's world: a private slapd, a source and a target OU, an IDSYNC_HOME.
struct Fx {
    l: Ldap,
    home: tempfile::TempDir,
    src: String,
    dst: String,
    step: String,
}

fn fx(prefix: &str) -> Option<Fx> {
    let l = support::private_slapd(None)?;
    let id = support::unique(prefix);
    let src = format!("ou={id}-src,{}", l.base);
    let dst = format!("ou={id}-dst,{}", l.base);
    for dn in [&src, &dst] {
        let ou = dn.split(',').next().unwrap().trim_start_matches("ou=");
        l.ldapadd(&format!(
            "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n"
        ));
    }
    Some(Fx {
        l,
        home: support::temp_home(),
        step: format!("{id}/users"),
        src,
        dst,
    })
}

impl Fx {
    fn home(&self) -> &Path {
        self.home.path()
    }

    fn add_people(&self, uids: &[&str]) {
        let ldif: Vec<String> = uids
            .iter()
            .map(|u| {
                format!(
                    "dn: uid={u},{src}\nobjectClass: inetOrgPerson\nuid: {u}\ncn: {u} Person\nsn: Person\nemployeeNumber: {u}\n",
                    src = self.src
                )
            })
            .collect();
        self.l.ldapadd(&ldif.join("\n"));
    }

    fn delete_people(&self, uids: &[&str]) {
        let ldif: Vec<String> = uids
            .iter()
            .map(|u| format!("dn: uid={u},{}\nchangetype: delete\n", self.src))
            .collect();
        self.l.ldapmodify(&ldif.join("\n"));
    }

    /// Connections and the step `st`; `where_` is the scope's where-closure body.
    fn step_script(&self, where_: &str) -> String {
        format!(
            "let src = connect_ldap(\"{url}\", #{{ bind_dn: \"{dn}\", password: secret(\"{PW_ENV}\"), base: \"{base}\" }});\n\
             let dst = connect_ldap(\"{url}\", #{{ bind_dn: \"{dn}\", password: secret(\"{PW_ENV}\"), base: \"{base}\" }});\n\
             let st = sync_step(\"{step}\", src, dst, #{{\n\
               scope: #{{ base: \"{src}\", filter: \"(objectClass=inetOrgPerson)\", where: |e| {{ {where_} }} }},\n\
               join: #{{ employeeNumber: \"employeeNumber\" }},\n\
               create: #{{ parent: \"{dst}\", rdn: |e| `uid=${{e.uid}}`, class: [\"inetOrgPerson\"] }},\n\
               flows: #{{ cn: \"cn\", sn: \"sn\", employeeNumber: \"employeeNumber\" }},\n\
               deprovision: #{{ action: \"delete\" }},\n\
               target_base: \"{dst}\" }});\n",
            url = self.l.url,
            dn = self.l.admin_dn,
            base = self.l.base,
            step = self.step,
            src = self.src,
            dst = self.dst,
        )
    }

    fn write_script(&self, name: &str, text: &str) -> PathBuf {
        let p = self.home().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Starts `idsync service ARGS... FILE`, stderr to a file in the home.
    fn service(&self, args: &[&str], file: &Path) -> Service {
        Service::start(
            support::idsync_command(self.home()),
            self.home(),
            args,
            file,
        )
    }

    /// Runs `idsync FILE` once (a plain script run); returns (status, stdout+stderr).
    fn run_script(&self, text: &str) -> (i32, String) {
        let f = self.write_script(&format!("{}.rhai", support::unique("s")), text);
        let out = support::idsync_command(self.home())
            .arg(&f)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.home().join("state.db")).unwrap()
    }

    /// The finished runs of the step, oldest first.
    fn runs(&self) -> Vec<RunRecord> {
        let mut r = self.store().runs(Some(&self.step), 1000).unwrap();
        r.reverse();
        r
    }

    /// `uid=...` entries under the target OU, with entryCSN, sorted.
    fn targets(&self) -> Vec<(String, String)> {
        let out = self.l.ldapsearch(&self.dst, "one", "", &["entryCSN"]);
        let mut v = Vec::new();
        let mut dn = String::new();
        for line in out.lines() {
            if let Some(d) = line.strip_prefix("dn: ") {
                dn = d.to_string();
            } else if let Some(c) = line.strip_prefix("entryCSN: ") {
                v.push((dn.clone(), c.to_string()));
            }
        }
        v.sort();
        v
    }
}

/// A running `idsync service`, killed on drop.
struct Service {
    child: Child,
    err: PathBuf,
}

impl Service {
    fn start(mut cmd: Command, home: &Path, args: &[&str], file: &Path) -> Service {
        let err = home.join(format!("{}.stderr", support::unique("svc")));
        let f = std::fs::File::create(&err).unwrap();
        cmd.arg("service")
            .args(args)
            .arg(file)
            .stdout(Stdio::null())
            .stderr(f);
        let child = cmd.spawn().expect("start idsync service");
        Service { child, err }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the process to exit (at most `within`); its status code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until the log contains `text` (at most `within`).
    fn wait_log(&self, text: &str, within: Duration) -> bool {
        wait_until(within, || self.log().contains(text))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// No two runs overlap in time (each finished before the next started).
fn assert_no_overlap(runs: &[RunRecord], log: &str) {
    for w in runs.windows(2) {
        let end = w[0]
            .finished_ms
            .unwrap_or_else(|| panic!("run {} never finished\n{log}", w[0].id));
        assert!(
            end <= w[1].started_ms,
            "runs {} and {} overlap ({}..{} vs {})\n{log}",
            w[0].id,
            w[1].id,
            w[0].started_ms,
            end,
            w[1].started_ms
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A `where` that takes ~2 ms per object, so a 1,500- or 3,000-object first run
/// lasts seconds however fast the writes are: tests that cut a run mid-way
/// (SIGTERM, SIGKILL, a timeout) must not race a run that already ended.
fn slow_where() -> String {
    format!("{} true", spin(0.002))
}

/// A spin of `secs` seconds inside a closure (Rhai has no sleep).
fn spin(secs: f64) -> String {
    format!("let t0 = timestamp(); while t0.elapsed < {secs} {{}}")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn a_schedule_fires_once_per_interval_and_never_overlaps_a_slow_run() {
    let Some(f) = fx("svtick") else { return };
    f.add_people(&["ann", "bob"]);
    // Fast runs every 2 s.
    let script = format!(
        "{}schedule(st, #{{ every: \"2s\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        svc.wait_log("active", Duration::from_secs(30)),
        "{}",
        svc.log()
    );
    let t0 = Instant::now();
    let before = f.runs().len();
    std::thread::sleep(Duration::from_secs(9));
    let n = f.runs().len() - before;
    let secs = t0.elapsed().as_secs_f64();
    // 9 s at one run per 2 s: 4 or 5 runs (the window may cut one either side).
    let expect = secs / 2.0;
    assert!(
        (n as f64) >= expect - 1.5 && (n as f64) <= expect + 1.5,
        "{n} runs in {secs:.1} s at every 2s\n{}",
        svc.log()
    );
    let runs = f.runs();
    assert!(
        runs.iter()
            .all(|r| r.status == "ok" || r.status == "running")
    );
    assert_no_overlap(&runs, &svc.log());
    assert_eq!(f.targets().len(), 2, "both objects created once");
    svc.signal(libc::SIGTERM);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.log()
    );

    // A slow run (3 s) on a 1 s schedule: the ticks that come while it runs are skipped.
    let slow = format!(
        "{}schedule(st, #{{ every: \"1s\", full_every: \"1s\" }});\n",
        f.step_script(&format!("if e.uid == \"ann\" {{ {} }} true", spin(3.0)))
    );
    let file = f.write_script("slow.rhai", &slow);
    let before = f.runs().len();
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        wait_until(Duration::from_secs(60), || f.runs().len() >= before + 3
            && f.runs().last().is_some_and(|r| r.finished_ms.is_some())),
        "{}",
        svc.log()
    );
    svc.signal(libc::SIGTERM);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.log()
    );
    let runs = f.runs();
    assert_no_overlap(&runs[before..], &svc.log());
    assert!(
        svc.log()
            .contains("previous run still running; this tick is skipped"),
        "{}",
        svc.log()
    );
}

/// Objects in a batch large enough that a run is still writing seconds after it started.
const BIG: usize = 3000;

#[test]
fn sigterm_during_a_run_records_it_and_exits_promptly() {
    let Some(f) = fx("svterm") else { return };
    // A large batch: the first run writes for a while (and streams: the writes start while
    // the source is still read).
    let uids: Vec<String> = (0..BIG).map(|i| format!("u{i:04}")).collect();
    f.add_people(&uids.iter().map(String::as_str).collect::<Vec<_>>());
    let script = format!(
        "{}schedule(st, #{{ every: \"1h\" }});\n",
        f.step_script(&slow_where())
    );
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        svc.wait_log("run starts", Duration::from_secs(60)),
        "{}",
        svc.log()
    );
    // SIGTERM in the middle of the writes.
    assert!(
        wait_until(Duration::from_secs(60), || f.targets().len() >= 50),
        "nothing was written\n{}",
        svc.log()
    );
    svc.signal(libc::SIGTERM);
    let code = svc.wait_exit(Duration::from_secs(8));
    assert_eq!(code, Some(0), "no prompt exit after SIGTERM\n{}", svc.log());
    let runs = f.runs();
    let last = runs.last().expect("a run was recorded");
    assert_eq!(last.status, "interrupted", "{last:?}\n{}", svc.log());
    let written = f.targets().len();
    assert!(written < BIG, "the run went on to the end ({written})");
    assert!(written > 0, "the SIGTERM came before any write");
    // What was written is linked: the links match the objects in the target.
    assert_eq!(f.store().links(&f.step).unwrap().len(), written);
}

#[test]
fn sighup_rereads_the_script_and_a_broken_one_keeps_the_old_schedules() {
    let Some(f) = fx("svhup") else { return };
    f.add_people(&["ann"]);
    let script = format!(
        "{}schedule(st, #{{ every: \"1s\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        wait_until(Duration::from_secs(30), || f.runs().len() >= 2),
        "{}",
        svc.log()
    );
    std::fs::write(&file, "let broken = ;\n").unwrap();
    svc.signal(libc::SIGHUP);
    assert!(
        svc.wait_log("keeping the current schedules", Duration::from_secs(20)),
        "{}",
        svc.log()
    );
    assert!(svc.log().contains("syntax error"), "{}", svc.log());
    let n = f.runs().len();
    assert!(
        wait_until(Duration::from_secs(20), || f.runs().len() >= n + 2),
        "the old schedule stopped after a broken SIGHUP\n{}",
        svc.log()
    );
    // A good script replaces the schedules.
    std::fs::write(
        &file,
        format!(
            "{}schedule(st, #{{ every: \"1h\" }});\n",
            f.step_script("true")
        ),
    )
    .unwrap();
    svc.signal(libc::SIGHUP);
    assert!(
        svc.wait_log("SIGHUP: re-read", Duration::from_secs(20)),
        "{}",
        svc.log()
    );
    let st = f.store();
    let state = st
        .get_setting(&format!("service.schedule.{}", f.step))
        .unwrap()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || st
            .get_setting(&format!("service.schedule.{}", f.step))
            .unwrap()
            .unwrap()
            .contains("every 1h")),
        "{state}"
    );
    // And it runs by the new rhythm: once at the change (the new schedule's first run),
    // then not again within the hour, where the old one ran every second.
    let n = f.runs().len();
    std::thread::sleep(Duration::from_secs(6));
    let more = f.runs().len() - n;
    assert!(
        more <= 2,
        "{more} runs in 6 s after the schedule became every 1h\n{}",
        svc.log()
    );
}

#[test]
fn health_and_metrics_answer_on_loopback_and_nothing_else_is_served() {
    let Some(f) = fx("svhttp") else { return };
    f.add_people(&["ann"]);
    let port = free_port();
    let script = format!(
        "{}schedule(st, #{{ every: \"1h\" }});\nserve(#{{ listen: \"127.0.0.1:{port}\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        wait_until(Duration::from_secs(30), || f
            .runs()
            .iter()
            .any(|r| r.status == "ok")),
        "{}",
        svc.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || http_get(port, "/metrics")
            .contains("result=\"ok\"")),
        "{}",
        svc.log()
    );
    let h = http_get(port, "/health");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    let body = h.split("\r\n\r\n").nth(1).unwrap();
    let j: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(j["status"], "ok", "{j}");
    assert_eq!(j["role"], "active", "{j}");
    assert_eq!(j["schedules"][0]["name"], f.step.as_str(), "{j}");
    let m = http_get(port, "/metrics");
    for want in [
        "# TYPE idsync_runs_total counter",
        &format!(
            "idsync_runs_total{{schedule=\"{}\",result=\"ok\"}} 1",
            f.step
        ),
        &format!("idsync_objects_written_total{{schedule=\"{}\"}} 1", f.step),
        "idsync_last_run_duration_seconds{",
        "idsync_lease_holder{",
    ] {
        assert!(m.contains(want), "{want:?} missing from\n{m}");
    }
    assert!(http_get(port, "/other").starts_with("HTTP/1.1 404"));
    // The port listens on loopback only.
    let listening = listeners(port);
    assert!(!listening.is_empty(), "nothing listens on {port}");
    assert!(listening.iter().all(|a| a == "127.0.0.1"), "{listening:?}");
    drop(svc);

    // A non-loopback address is refused, clearly, before anything runs.
    let port2 = free_port();
    let bad = format!(
        "{}schedule(st, #{{ every: \"1h\" }});\nserve(#{{ listen: \"0.0.0.0:{port2}\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("bad.rhai", &bad);
    let mut svc = f.service(&[], &file);
    let code = svc.wait_exit(Duration::from_secs(30));
    assert_ne!(code, Some(0), "{}", svc.log());
    assert!(
        svc.log().contains("only a loopback address") && svc.log().contains("TLS"),
        "{}",
        svc.log()
    );
    assert!(listeners(port2).is_empty());
    let mut svc = f.service(&["--listen", &format!("0.0.0.0:{port2}")], &file);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(2),
        "{}",
        svc.log()
    );
    assert!(listeners(port2).is_empty());
}

/// The addresses (IPv4 dotted, or "v6") listening on TCP `port`, from /proc/net.
fn listeners(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "0A" {
                continue;
            }
            let Some((addr, p)) = cols[1].split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            if v6 {
                out.push(format!("v6:{addr}"));
            } else {
                let n = u32::from_str_radix(addr, 16).unwrap_or(0).to_le_bytes();
                out.push(format!("{}.{}.{}.{}", n[0], n[1], n[2], n[3]));
            }
        }
    }
    out
}

#[test]
fn staging_writes_nothing_takes_no_lease_and_records_its_plan() {
    let Some(f) = fx("svstage") else { return };
    f.add_people(&["ann", "bob"]);
    let (code, out) = f.run_script(&format!("{}st.run()", f.step_script("true")));
    assert_eq!(code, 0, "{out}");
    let before = f.targets();
    assert_eq!(before.len(), 2);
    // A change in the source and a new person: a real run would write both.
    f.l.ldapmodify(&format!(
        "dn: uid=ann,{}\nchangetype: modify\nreplace: sn\nsn: Changed\n",
        f.src
    ));
    f.add_people(&["cid"]);
    let script = format!(
        "{}schedule(st, #{{ every: \"1s\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let n0 = f.runs().len();
    let mut svc = f.service(
        &["--staging", "--heartbeat", "1s", "--lease-period", "5s"],
        &file,
    );
    assert!(
        wait_until(Duration::from_secs(30), || f.runs().len() >= n0 + 2),
        "{}",
        svc.log()
    );
    // It never takes the service lease, and says it is staging.
    let st = f.store();
    assert!(
        !st.leases()
            .unwrap()
            .iter()
            .any(|l| l.name == "idsync-service"),
        "staging took the lease"
    );
    let inst = st.list_settings().unwrap();
    assert!(
        inst.iter()
            .any(|(k, v)| k.starts_with("service.instance.") && v.contains("\"staging\"")),
        "{inst:?}"
    );
    svc.signal(libc::SIGTERM);
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
    // Nothing written: same entries, same entryCSN.
    assert_eq!(f.targets(), before);
    let runs = f.runs();
    let staged = &runs[n0];
    assert_eq!(staged.status, "ok", "{staged:?}");
    let msg = staged.message.clone().unwrap_or_default();
    assert!(
        msg.starts_with("staging preview: would create 1, update 1"),
        "{msg}"
    );
    assert_eq!(staged.counts["preview"], true, "{:?}", staged.counts);
    assert_eq!(staged.counts["created"], 1, "{:?}", staged.counts);
    assert_eq!(staged.counts["updated"], 1, "{:?}", staged.counts);
    let log = std::fs::read_to_string(staged.log_path.as_ref().unwrap()).unwrap();
    assert!(log.contains("would create uid=cid"), "{log}");
    assert!(log.contains("sn: Person -> Changed"), "{log}");
}

/// A local SMTP sink (`python3 -m aiosmtpd`, Debugging handler: each message on stdout).
struct Sink {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Sink {
    fn start(dir: &Path) -> Option<Sink> {
        let python = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
            Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let Some(python) = python else {
            if std::env::var("IDSYNC_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
                panic!("python3-aiosmtpd not available (IDSYNC_REQUIRE_SERVERS=1)");
            }
            eprintln!("skipped: python3-aiosmtpd not available");
            return None;
        };
        let port = free_port();
        let out = dir.join("mail.txt");
        let child = Command::new(python)
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "the SMTP sink did not start"
        );
        Some(Sink { child, out, port })
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn messages(&self) -> usize {
        self.text()
            .matches("---------- MESSAGE FOLLOWS ----------")
            .count()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_emptied_source_is_refused_three_times_then_quarantined_with_one_alert() {
    let Some(f) = fx("svquar") else { return };
    let Some(sink) = Sink::start(f.home()) else {
        return;
    };
    let uids: Vec<String> = (0..6).map(|i| format!("q{i}")).collect();
    let uid_refs: Vec<&str> = uids.iter().map(String::as_str).collect();
    f.add_people(&uid_refs);
    let (code, out) = f.run_script(&format!("{}st.run()", f.step_script("true")));
    assert_eq!(code, 0, "{out}");
    // The source is emptied: every run would delete all six (over 10 %).
    f.delete_people(&uid_refs);
    let script = format!(
        "{}schedule(st, #{{ every: \"1s\" }});\n\
         notify(#{{ smtp: \"127.0.0.1:{port}\", tls: \"none\", from: \"idsync@example.com\", to: [\"iam@example.com\"] }});\n",
        f.step_script("true"),
        port = sink.port
    );
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        svc.wait_log("QUARANTINED", Duration::from_secs(60)),
        "{}",
        svc.log()
    );
    let refused = f.runs().iter().filter(|r| r.status == "refused").count();
    assert_eq!(refused, 3, "{}", svc.log());
    assert!(
        wait_until(Duration::from_secs(30), || sink.messages() >= 1),
        "no mail arrived\n{}",
        svc.log()
    );
    // Backoff: the next tries come 2 s, 4 s... apart; still exactly one alert.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(sink.messages(), 1, "{}", sink.text());
    let mail = sink.text();
    for want in [
        "Subject: idsync: ",
        &f.step,
        "quarantined",
        "refused 3 times in a row",
        "would deprovision 6 objects",
        "Log file: ",
    ] {
        assert!(
            mail.contains(want),
            "{want:?} missing from the mail\n{mail}"
        );
    }
    // The alert carries the refused plan's counts and names a run log that says why (read
    // as a mail client shows it: long lines come quoted-printable, "=" ending a cut line).
    let shown = mail.replace("=\n", "");
    for want in [
        "Plan (refused, nothing was written): 0 source objects, 0 to write, 6 to deprovision",
        "\"to_deprovision\":6",
    ] {
        assert!(
            shown.contains(want),
            "{want:?} missing from the mail\n{shown}"
        );
    }
    let log_file = shown
        .lines()
        .find_map(|l| l.strip_prefix("Log file: "))
        .unwrap()
        .trim();
    let run_log = std::fs::read_to_string(log_file).unwrap_or_else(|e| panic!("{log_file}: {e}"));
    assert!(run_log.contains("REFUSED"), "{run_log}");
    // Nothing was deleted.
    assert_eq!(f.targets().len(), 6);
    // status shows it, with why.
    let out = support::idsync_command(f.home())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &j["schedules"][0];
    assert_eq!(s["name"], f.step.as_str(), "{j}");
    assert_eq!(s["quarantined"], true, "{j}");
    assert!(
        s["quarantine_reason"]
            .as_str()
            .unwrap()
            .contains("refused 3 times"),
        "{j}"
    );
    let text = support::idsync_command(f.home())
        .arg("status")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("QUARANTINED"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // release() lifts it.
    let (code, out) = f.run_script(&format!("release(\"{}\")", f.step));
    assert_eq!(code, 0, "{out}");
    assert!(
        svc.wait_log("quarantine released", Duration::from_secs(20)),
        "{}",
        svc.log()
    );
    let out = support::idsync_command(f.home())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["schedules"][0]["quarantined"], false, "{j}");
    svc.signal(libc::SIGTERM);
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
}

#[test]
fn a_refused_workflow_run_notifies_with_the_refused_plans_counts_and_its_log() {
    let Some(f) = fx("svwfref") else { return };
    let Some(sink) = Sink::start(f.home()) else {
        return;
    };
    let uids: Vec<String> = (0..5).map(|i| format!("w{i}")).collect();
    let uid_refs: Vec<&str> = uids.iter().map(String::as_str).collect();
    f.add_people(&uid_refs);
    let (code, out) = f.run_script(&format!("{}st.run()", f.step_script("true")));
    assert_eq!(code, 0, "{out}");
    f.delete_people(&uid_refs);
    let wf = format!("{}-wf", f.step.replace('/', "-"));
    let script = format!(
        "{}let wf = workflow(\"{wf}\", [st]);\n\
         schedule(wf, #{{ every: \"1h\", notify: \"on_refusal\" }});\n\
         notify(#{{ smtp: \"127.0.0.1:{port}\", tls: \"none\", from: \"idsync@example.com\", to: [\"iam@example.com\"] }});\n",
        f.step_script("true"),
        port = sink.port
    );
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        wait_until(Duration::from_secs(60), || sink.messages() >= 1),
        "no mail arrived\n{}",
        svc.log()
    );
    let shown = sink.text().replace("=\n", "");
    for want in [
        format!("Subject: idsync: {wf} refused"),
        format!("Step: {wf}"),
        "Event: refused".to_string(),
        "would deprovision 5 objects".to_string(),
        "Plan (refused, nothing was written): 0 source objects, 0 to write, 5 to deprovision"
            .to_string(),
    ] {
        assert!(
            shown.contains(&want),
            "{want:?} missing from the mail\n{shown}"
        );
    }
    // The log named is the refused step's run log.
    let log_file = shown
        .lines()
        .find_map(|l| l.strip_prefix("Log file: "))
        .unwrap()
        .trim();
    let run_log = std::fs::read_to_string(log_file).unwrap_or_else(|e| panic!("{log_file}: {e}"));
    assert!(run_log.contains("REFUSED"), "{run_log}");
    assert_eq!(f.targets().len(), 5, "something was deleted");
    svc.signal(libc::SIGTERM);
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
}

#[test]
fn two_instances_one_store_one_active_and_the_standby_takes_over_after_sigkill() {
    let Some(f) = fx("svfail") else { return };
    if Command::new("unshare")
        .args(["--uts", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        if std::env::var("IDSYNC_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
            panic!("unshare --uts is not possible here (IDSYNC_REQUIRE_SERVERS=1)");
        }
        eprintln!("skipped: unshare --uts is not possible here");
        return;
    }
    f.add_people(&["a1", "a2", "a3"]);
    let script = format!(
        "{}schedule(st, #{{ every: \"1s\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let args = ["--heartbeat", "1s", "--lease-period", "5s"];
    let mut a = f.service(&args, &file);
    assert!(a.wait_log("active", Duration::from_secs(30)), "{}", a.log());
    // The second instance as another host: its own UTS namespace and host name.
    let cmd = support::idsync_command(f.home());
    let bin = support::idsync_bin();
    let mut other = Command::new("unshare");
    other.args([
        "--uts",
        "sh",
        "-c",
        "hostname idsync-other-host && exec \"$0\" \"$@\"",
    ]);
    other.arg(&bin);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => other.env(k, v),
            None => other.env_remove(k),
        };
    }
    other.stdin(Stdio::null());
    let b = Service::start(other, f.home(), &args, &file);
    let st = f.store();
    assert!(
        wait_until(Duration::from_secs(30), || st
            .list_settings()
            .unwrap()
            .iter()
            .any(
                |(k, v)| k.starts_with("service.instance.idsync-other-host:")
                    && v.contains("\"standby\"")
            )),
        "{}",
        b.log()
    );
    // Several ticks with both running: exactly one runs each (no overlap).
    assert!(wait_until(Duration::from_secs(30), || f.runs().len() >= 4));
    assert_no_overlap(&f.runs(), &a.log());
    assert!(
        !b.log().contains("run starts"),
        "the standby ran\n{}",
        b.log()
    );
    let created = f.targets();
    assert_eq!(created.len(), 3);
    // SIGKILL the active one between runs (no step lease held).
    assert!(wait_until(Duration::from_secs(10), || st
        .leases()
        .unwrap()
        .iter()
        .all(|l| l.name == "idsync-service")));
    a.signal(libc::SIGKILL);
    let _ = a.wait_exit(Duration::from_secs(10));
    let killed_at = Instant::now();
    let n_before = f.runs().len();
    f.add_people(&["b1"]);
    assert!(
        b.wait_log("took over the service lease", Duration::from_secs(30)),
        "{}",
        b.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || f.runs().len() > n_before
            && f.runs().last().unwrap().status == "ok"),
        "{}",
        b.log()
    );
    // Within the lease period (5 s) plus a tick, with a generous margin.
    assert!(
        killed_at.elapsed() < Duration::from_secs(25),
        "{:?}",
        killed_at.elapsed()
    );
    assert!(b.log().contains("run starts"), "{}", b.log());
    // Continued from the cursor: the new person was created, the old ones untouched.
    let after = f.targets();
    assert_eq!(after.len(), 4, "{after:?}");
    for (dn, csn) in &created {
        assert!(
            after.iter().any(|(d, c)| d == dn && c == csn),
            "{dn} was written again"
        );
    }
    let runs = f.runs();
    assert_no_overlap(&runs, &b.log());
    let newest = runs.last().unwrap();
    assert_eq!(newest.counts["created"], 1, "{newest:?}");
    drop(b);
}

#[test]
fn a_run_past_its_timeout_is_interrupted_recorded_and_keeps_the_links_of_what_it_wrote() {
    let Some(f) = fx("svtime") else { return };
    let uids: Vec<String> = (0..BIG).map(|i| format!("t{i:04}")).collect();
    f.add_people(&uids.iter().map(String::as_str).collect::<Vec<_>>());
    // A large first batch; the timeout cuts it after 2 s, in the middle of the writes.
    let script = format!(
        "{}schedule(st, #{{ every: \"1h\", timeout: \"2s\" }});\n",
        f.step_script(&slow_where())
    );
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        wait_until(Duration::from_secs(60), || f
            .runs()
            .last()
            .is_some_and(|r| r.finished_ms.is_some())),
        "{}",
        svc.log()
    );
    let run = f.runs().pop().unwrap();
    assert_eq!(run.status, "interrupted", "{run:?}\n{}", svc.log());
    assert!(
        svc.log()
            .contains("timeout (2s) reached; interrupting the run"),
        "{}",
        svc.log()
    );
    // The service goes on (only the run was interrupted).
    assert_eq!(svc.wait_exit(Duration::from_millis(500)), None);
    let written = f.targets();
    assert!(
        !written.is_empty() && written.len() < BIG,
        "{} written\n{}",
        written.len(),
        svc.log()
    );
    // What was written is linked, object by object, and counted.
    let links = f.store().links(&f.step).unwrap();
    assert_eq!(links.len(), written.len());
    for (dn, _) in &written {
        assert!(
            links.iter().any(|l| l.target_dn.eq_ignore_ascii_case(dn)),
            "{dn} written but not linked"
        );
    }
    assert_eq!(run.counts["created"], written.len() as i64, "{run:?}");
    svc.signal(libc::SIGTERM);
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));

    // A run busy in the step's own Rhai closure (10 minutes for each object in scope) is cut
    // there too, as Ctrl-C would cut it, not when the closure returns.
    let slow = format!(
        "{}schedule(st, #{{ every: \"1h\", timeout: \"2s\" }});\n",
        f.step_script(&format!("{} true", spin(600.0)))
    );
    let file = f.write_script("slow.rhai", &slow);
    let n = f.runs().len();
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        wait_until(Duration::from_secs(60), || f.runs().len() > n
            && f.runs().last().is_some_and(|r| r.finished_ms.is_some())),
        "the run was not cut in its closure\n{}",
        svc.log()
    );
    let run = f.runs().pop().unwrap();
    assert_eq!(run.status, "interrupted", "{run:?}\n{}", svc.log());
    svc.signal(libc::SIGTERM);
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
}

/// `base` run as another host: its own UTS namespace with host name `host`; `None` (or a
/// panic under IDSYNC_REQUIRE_SERVERS=1) where `unshare --uts` is not possible.
fn as_other_host(base: &Command, host: &str) -> Option<Command> {
    if Command::new("unshare")
        .args(["--uts", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        if std::env::var("IDSYNC_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
            panic!("unshare --uts is not possible here (IDSYNC_REQUIRE_SERVERS=1)");
        }
        eprintln!("skipped: unshare --uts is not possible here");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--uts", "sh", "-c"])
        .arg(format!("hostname {host} && exec \"$0\" \"$@\""))
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

/// The step's finished and running runs in `store`, oldest first.
fn runs_in(store: &dyn StateStore, step: &str) -> Vec<RunRecord> {
    let mut r = store.runs(Some(step), 1000).unwrap();
    r.reverse();
    r
}

#[test]
fn on_a_shared_postgresql_store_a_standby_on_another_host_takes_over_also_from_a_run_cut_mid_way() {
    let Some(pg) = support::postgres::postgres() else {
        return;
    };
    let Some(f) = fx("svpg") else { return };
    let url = pg.url(&pg.fresh_db("svc"));
    // Each instance has its own IDSYNC_HOME (logs, local state); the store is PostgreSQL.
    let cmd = |home: &Path| {
        let mut c = support::idsync_command(home);
        c.env("IDSYNC_STORE", &url)
            .env("IDSYNC_STORE_PASSWORD", &pg.password)
            .env("IDSYNC_STORE_CA_FILE", &pg.ca_file)
            .env_remove("IDSYNC_SYNC_STORE")
            .env_remove("IDSYNC_LEASE_PERIOD_MS");
        c
    };
    let (ha, hb) = (support::temp_home(), support::temp_home());
    let other = support::unique("idsync-far");
    let Some(b_cmd) = as_other_host(&cmd(hb.path()), &other) else {
        return;
    };
    f.add_people(&["a1", "a2", "a3"]);
    let file = f.write_script(
        "svc.rhai",
        &format!(
            "{}schedule(st, #{{ every: \"1s\" }});\n",
            f.step_script(&slow_where())
        ),
    );
    let args = ["--heartbeat", "1s", "--lease-period", "5s"];
    let mut a = Service::start(cmd(ha.path()), ha.path(), &args, &file);
    assert!(a.wait_log("active", Duration::from_secs(30)), "{}", a.log());
    let store = idsync::store::PostgresStore::open(
        &url,
        Some(&idsync::model::Secret::with_reference(
            pg.password.clone(),
            "env:TEST",
        )),
        Some(pg.ca_file.clone()),
    )
    .unwrap();
    let runs = || runs_in(&store, &f.step);
    let status = |home: &Path| -> serde_json::Value {
        let out = cmd(home).args(["status", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let instance = |j: &serde_json::Value, prefix: &str| -> serde_json::Value {
        j["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no instance {prefix}* in {j:#}"))
    };
    let mut b = Service::start(b_cmd, hb.path(), &args, &file);
    let b_id = format!("{other}:");
    assert!(
        wait_until(Duration::from_secs(30), || store
            .get_setting(&format!("service.instance.{b_id}{}", b.pid()))
            .unwrap()
            .is_some_and(|v| v.contains("\"standby\""))),
        "{}",
        b.log()
    );

    // 1. Both running on one store: exactly one runs each tick.
    let n0 = runs().len();
    assert!(
        wait_until(Duration::from_secs(30), || runs().len() >= n0 + 4),
        "{}",
        a.log()
    );
    assert_no_overlap(&runs(), &a.log());
    assert!(
        !b.log().contains("run starts"),
        "the standby ran\n{}",
        b.log()
    );
    let created = f.targets();
    assert_eq!(created.len(), 3);
    // The standby's heartbeat is shown while it stands by.
    let j = status(hb.path());
    let bi = instance(&j, &b_id);
    assert_eq!(bi["role"], "standby", "{j:#}");
    assert!(bi["last_heartbeat"].is_string(), "{j:#}");

    // 2. SIGKILL of the active one between runs: the standby (another host: only the lease
    // period tells it) takes over and continues from the cursor.
    assert!(wait_until(Duration::from_secs(10), || store
        .leases()
        .unwrap()
        .iter()
        .all(|l| l.name == "idsync-service")));
    let a_id = a.pid().to_string();
    a.signal(libc::SIGKILL);
    let _ = a.wait_exit(Duration::from_secs(10));
    let killed = Instant::now();
    let n1 = runs().len();
    f.add_people(&["b1"]);
    assert!(
        b.wait_log("took over the service lease", Duration::from_secs(30)),
        "{}",
        b.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || runs().len() > n1
            && runs().last().unwrap().status == "ok"
            && f.targets().len() == 4),
        "{}",
        b.log()
    );
    assert!(
        killed.elapsed() < Duration::from_secs(25),
        "{:?}",
        killed.elapsed()
    );
    let after = f.targets();
    for (dn, csn) in &created {
        assert!(
            after.iter().any(|(d, c)| d == dn && c == csn),
            "{dn} was written again"
        );
    }
    assert_no_overlap(&runs(), &b.log());
    // status: the killed instance is stale, with its last heartbeat; never "active".
    assert!(
        wait_until(Duration::from_secs(15), || {
            let j = status(hb.path());
            let ai = j["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| {
                    i["instance"]
                        .as_str()
                        .unwrap()
                        .ends_with(&format!(":{a_id}"))
                })
                .cloned()
                .unwrap_or_default();
            ai["role"] == "stale"
                && ai["stale"] == true
                && ai["last_role"] == "active"
                && ai["last_heartbeat"].is_string()
        }),
        "{:#}",
        status(hb.path())
    );
    let j = status(hb.path());
    assert_eq!(instance(&j, &b_id)["role"], "active", "{j:#}");
    assert!(
        j["lease"]["holder"].as_str().unwrap().starts_with(&b_id) && j["lease"]["expired"] == false,
        "{j:#}"
    );
    let text = cmd(hb.path()).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains(&format!(":{a_id}: STALE (was active;")),
        "{text}"
    );

    // 3. A standby on this host again; then the active one is SIGKILLed in the middle of a
    // large batch. Its step lease blocks no longer than the lease period.
    let mut a2 = Service::start(cmd(ha.path()), ha.path(), &args, &file);
    assert!(
        wait_until(Duration::from_secs(30), || store
            .get_setting(&format!(
                "service.instance.{}:{}",
                idsync::sync::lease::host_name(),
                a2.pid()
            ))
            .unwrap()
            .is_some_and(|v| v.contains("\"standby\""))),
        "{}",
        a2.log()
    );
    let big: Vec<String> = (0..1500).map(|i| format!("c{i:04}")).collect();
    f.add_people(&big.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        wait_until(Duration::from_secs(60), || f.targets().len() >= 4 + 50),
        "{}",
        b.log()
    );
    b.signal(libc::SIGKILL);
    let _ = b.wait_exit(Duration::from_secs(10));
    let cut = Instant::now();
    let before = f.targets();
    // The run that was cut: still marked running (nobody is left to say otherwise).
    let cut_run: Vec<i64> = runs()
        .iter()
        .filter(|r| r.status == "running")
        .map(|r| r.id)
        .collect();
    assert_eq!(cut_run.len(), 1, "{:?}", runs());
    assert!(
        before.len() < 4 + 1500,
        "the run finished before the kill\n{}",
        b.log()
    );
    assert!(
        wait_until(Duration::from_secs(60), || f.targets().len() == 4 + 1500
            && runs().last().is_some_and(|r| r.status == "ok")),
        "{}",
        a2.log()
    );
    // Lease period 5 s; a step lease of the default 60 s would hold it far longer.
    assert!(
        cut.elapsed() < Duration::from_secs(40),
        "{:?}\n{}",
        cut.elapsed(),
        a2.log()
    );
    assert!(
        a2.log().contains("took over the service lease"),
        "{}",
        a2.log()
    );
    // Nothing written twice: what the cut run wrote keeps its entryCSN.
    let after = f.targets();
    for (dn, csn) in &before {
        assert!(
            after.iter().any(|(d, c)| d == dn && c == csn),
            "{dn} was written again"
        );
    }
    // History: the cut run is recorded interrupted; the runs after it are the new holder's,
    // none overlapping; and the schedule goes on every tick.
    let h = runs();
    let cut_now = h.iter().find(|r| r.id == cut_run[0]).unwrap();
    assert_eq!(cut_now.status, "interrupted", "{h:?}");
    assert_no_overlap(&h, &a2.log());
    let n3 = h.len();
    assert!(
        wait_until(Duration::from_secs(30), || runs().len() >= n3 + 2),
        "{}",
        a2.log()
    );
    assert!(
        runs()[n3..]
            .iter()
            .all(|r| r.status == "ok" || r.status == "running"),
        "{:?}",
        runs()
    );

    // 4. The last instance SIGKILLed too: once its heartbeat is older than the lease period,
    // status shows the lease as expired (no longer as held).
    a2.signal(libc::SIGKILL);
    let _ = a2.wait_exit(Duration::from_secs(10));
    assert!(
        wait_until(
            Duration::from_secs(20),
            || status(ha.path())["lease"]["expired"] == true
        ),
        "{:#}",
        status(ha.path())
    );
    let text = cmd(ha.path()).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("lease: EXPIRED"), "{text}");
}

// --- issue 13's remaining promises: cron, full_every, webhook and per-schedule notify, a failing mail server

impl Fx {
    /// An OU under the base.
    fn add_ou(&self, dn: &str) {
        let ou = dn.split(',').next().unwrap().trim_start_matches("ou=");
        self.l.ldapadd(&format!(
            "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n"
        ));
    }

    /// [`Fx::step_script`] for another step `name` from `src` to `dst` (`let st = ...`).
    fn step_block(&self, name: &str, src: &str, dst: &str) -> String {
        self.step_script("true")
            .replace(&self.step, name)
            .replace(&self.src, src)
            .replace(&self.dst, dst)
    }

    /// The finished runs of step `name`, oldest first.
    fn runs_of(&self, name: &str) -> Vec<RunRecord> {
        let mut r = self.store().runs(Some(name), 1000).unwrap();
        r.reverse();
        r.retain(|r| r.finished_ms.is_some());
        r
    }

    /// `idsync status --json`.
    fn status(&self) -> serde_json::Value {
        let out = support::idsync_command(self.home())
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json: {e}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// The schedule named `name` in a status JSON.
fn schedule_of<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["schedules"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no schedule {name} in status\n{status:#}"))
}

#[test]
fn a_cron_schedule_with_seconds_fires_in_a_running_service_and_status_shows_its_next_run() {
    let Some(f) = fx("svcron") else { return };
    f.add_people(&["ann", "bob"]);
    // Every even second (croner takes a six-field pattern, seconds first), and a workflow on
    // a five-field (minute) pattern that does not come during the test: 00:00 on 1 January.
    let wf = format!("{}-yearly", f.step.replace('/', "-"));
    let script = format!(
        "{}schedule(st, #{{ cron: \"*/2 * * * * *\" }});\n\
         let wf = workflow(\"{wf}\", [st]);\n\
         schedule(wf, #{{ cron: \"0 0 1 1 *\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        svc.wait_log("active", Duration::from_secs(30)),
        "{}",
        svc.log()
    );
    // It fires: one run per two seconds (the window may cut one either side).
    assert!(
        wait_until(Duration::from_secs(30), || !f.runs_of(&f.step).is_empty()),
        "the cron schedule never fired\n{}",
        svc.log()
    );
    let before = f.runs_of(&f.step).len();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(9));
    let n = f.runs_of(&f.step).len() - before;
    let secs = t0.elapsed().as_secs_f64();
    let expect = secs / 2.0;
    assert!(
        (n as f64) >= expect - 1.5 && (n as f64) <= expect + 1.5,
        "{n} runs in {secs:.1} s at */2 seconds\n{}",
        svc.log()
    );
    let runs = f.runs();
    assert!(
        runs.iter()
            .all(|r| r.status == "ok" || r.status == "running"),
        "{runs:?}"
    );
    assert_no_overlap(&runs, &svc.log());
    assert_eq!(f.targets().len(), 2, "both objects created once");

    // status: the next run is the pattern's next time (an even second, on the second), after
    // the last run; the yearly one has its next run at 00:00 on 1 January and never ran.
    let j = f.status();
    let s = schedule_of(&j, &f.step);
    assert_eq!(s["when"], "cron */2 * * * * *", "{j:#}");
    assert_eq!(s["last_result"], "ok", "{j:#}");
    let next = s["next_run"].as_str().unwrap_or_else(|| panic!("{j:#}"));
    let last = s["last_run"].as_str().unwrap_or_else(|| panic!("{j:#}"));
    assert!(next.ends_with(".000Z"), "next run {next} not on a second");
    let sec: u32 = next[17..19].parse().unwrap();
    assert_eq!(sec % 2, 0, "next run {next} not on an even second");
    assert!(next > last, "next run {next} not after the last {last}");
    let y = schedule_of(&j, &wf);
    assert_eq!(y["when"], "cron 0 0 1 1 *", "{j:#}");
    let ynext = y["next_run"].as_str().unwrap_or_else(|| panic!("{j:#}"));
    assert!(
        ynext.ends_with("-01-01T00:00:00.000Z") && ynext > next,
        "yearly next run {ynext}"
    );
    assert!(y["last_run"].is_null(), "{j:#}");
    assert!(f.runs_of(&wf).is_empty(), "the yearly workflow ran");
    let text = support::idsync_command(f.home())
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "schedule {wf} (cron 0 0 1 1 *): last run - -, next {ynext}"
        )),
        "{text}"
    );
    svc.signal(libc::SIGTERM);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.log()
    );
}

/// Whether a run's log says it was a full run (its first line: "start step ...,  full").
fn logged_full(r: &RunRecord) -> bool {
    let path = r
        .log_path
        .as_deref()
        .unwrap_or_else(|| panic!("run {} has no log", r.id));
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let start = text
        .lines()
        .find(|l| l.contains("start step "))
        .unwrap_or_else(|| panic!("{path}: no start line\n{text}"));
    start.ends_with(", full")
}

#[test]
fn full_every_makes_the_periodic_run_full_and_the_runs_between_stay_incremental() {
    let Some(f) = fx("svfull") else { return };
    f.add_people(&["ann", "bob"]);
    let (code, out) = f.run_script(&format!("{}st.run()", f.step_script("true")));
    assert_eq!(code, 0, "{out}");
    // Edited by hand in the target: the source did not change, so an incremental run skips
    // ann by her stored hash; only a full run compares her with the target and restores cn.
    let ann = format!("uid=ann,{}", f.dst);
    f.l.ldapmodify(&format!(
        "dn: {ann}\nchangetype: modify\nreplace: cn\ncn: Edited By Hand\n"
    ));
    let cn = || f.l.ldapsearch(&ann, "base", "", &["cn"]);
    assert!(cn().contains("cn: Edited By Hand"), "{}", cn());
    let before = f.runs_of(&f.step).len();
    let script = format!(
        "{}schedule(st, #{{ every: \"1s\", full_every: \"5s\" }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    // Until a full run and an incremental one after it have finished.
    assert!(
        wait_until(Duration::from_secs(90), || {
            let runs = f.runs_of(&f.step);
            runs[before..]
                .iter()
                .position(logged_full)
                .is_some_and(|i| runs.len() > before + i + 1)
        }),
        "no full run followed by another\n{}",
        svc.log()
    );
    svc.signal(libc::SIGTERM);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.log()
    );
    let runs = f.runs_of(&f.step);
    let runs = &runs[before..];
    let full: Vec<bool> = runs.iter().map(logged_full).collect();
    let first = full.iter().position(|x| *x).unwrap();
    let summary: Vec<String> = runs
        .iter()
        .zip(&full)
        .map(|(r, x)| format!("run {} full={x} {} {}", r.id, r.status, r.counts))
        .collect();
    let summary = format!("{summary:#?}\n{}", svc.log());
    // Five seconds of one-second runs come before the first full one: incremental, and
    // they leave the hand edit alone.
    assert!(first >= 2, "{summary}");
    for r in &runs[..first] {
        assert_eq!(r.status, "ok", "{summary}");
        assert_eq!(r.counts["updated"], 0, "{summary}");
    }
    // The full run restores the flow's value; the run after it is incremental again.
    assert_eq!(runs[first].status, "ok", "{summary}");
    assert_eq!(runs[first].counts["updated"], 1, "{summary}");
    assert!(!full[first + 1], "{summary}");
    assert_eq!(runs[first + 1].counts["updated"], 0, "{summary}");
    assert!(cn().contains("cn: ann Person"), "{}", cn());
    // The service says which runs were full, as many as the run logs do.
    assert_eq!(
        svc.log().matches("run starts (full)").count(),
        full.iter().filter(|x| **x).count(),
        "{summary}"
    );
}

/// A periodic full run that fails (the directory is down when it is due) does not count as
/// done: once the directory is back, the next run is full, not an incremental one until the
/// next `full_every`.
#[test]
fn a_failed_full_run_is_tried_again_as_full_once_the_directory_is_back() {
    let Some(mut f) = fx("svfullretry") else {
        return;
    };
    f.add_people(&["ann", "bob"]);
    let (code, out) = f.run_script(&format!("{}st.run()", f.step_script("true")));
    assert_eq!(code, 0, "{out}");
    // A hand edit only a full run restores (see the test above).
    let ann = format!("uid=ann,{}", f.dst);
    f.l.ldapmodify(&format!(
        "dn: {ann}\nchangetype: modify\nreplace: cn\ncn: Edited By Hand\n"
    ));
    let before = f.runs_of(&f.step).len();
    let script = format!(
        "{}schedule(st, #{{ every: \"1s\", full_every: \"10s\", quarantine_after: 1000 }});\n",
        f.step_script("true")
    );
    let file = f.write_script("svc.rhai", &script);
    let started = Instant::now();
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    assert!(
        wait_until(Duration::from_secs(30), || f.runs_of(&f.step).len()
            >= before + 2),
        "no two runs\n{}",
        svc.log()
    );
    // Down from before the full run is due (10 s after the start) until well after it.
    f.l.kill();
    std::thread::sleep(Duration::from_secs(15).saturating_sub(started.elapsed()));
    f.l.restart();
    let back = f.runs_of(&f.step).len();
    assert!(
        wait_until(Duration::from_secs(30), || f.runs_of(&f.step)[back..]
            .iter()
            .any(|r| r.status == "ok")),
        "no run succeeded after the restart\n{}",
        svc.log()
    );
    svc.signal(libc::SIGTERM);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.log()
    );
    let runs = f.runs_of(&f.step);
    let summary = format!(
        "{:#?}\n{}",
        runs[before..]
            .iter()
            .map(|r| format!("run {} {} {}", r.id, r.status, r.counts))
            .collect::<Vec<_>>(),
        svc.log()
    );
    assert!(
        runs[before..back].iter().any(|r| r.status != "ok"),
        "no run failed while the directory was down\n{summary}"
    );
    // The first successful run after the outage is the full one the outage cost.
    let first_ok = runs[back..]
        .iter()
        .find(|r| r.status == "ok")
        .expect("an ok run");
    assert!(logged_full(first_ok), "{summary}");
    assert_eq!(first_ok.counts["updated"], 1, "{summary}");
    assert!(
        f.l.ldapsearch(&ann, "base", "", &["cn"])
            .contains("cn: ann Person"),
        "{summary}"
    );
}

/// A tiny HTTP receiver on loopback: each request it gets (head and JSON body), answered 200.
struct Hook {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Hook {
    fn start() -> Hook {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let g = g.clone();
                std::thread::spawn(move || {
                    let r = read_request(&mut s);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    if let Some(r) = r {
                        g.lock().unwrap().push(r);
                    }
                });
            }
        });
        Hook { port, got }
    }

    /// The hook's URL, with a token in its query (which must never be printed).
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook?token=t0psecrettoken", self.port)
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn heads(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.clone())
            .collect()
    }
}

/// One HTTP request: its head and its body as JSON (None when it is not that).
fn read_request(s: &mut std::net::TcpStream) -> Option<(String, serde_json::Value)> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let len: usize = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })?;
    while buf.len() < end + 4 + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((
        head,
        serde_json::from_slice(&buf[end + 4..end + 4 + len]).ok()?,
    ))
}

#[test]
fn webhook_notifications_name_step_reason_counts_and_log_and_each_policy_sends_only_when_it_should()
{
    let Some(f) = fx("svhook") else { return };
    let hook = Hook::start();
    let id = f.step.trim_end_matches("/users").to_string();
    let base = f.l.base.clone();
    // Runs that go well: from the fixture's source, each step to its own target OU.
    f.add_people(&["ann", "bob"]);
    // Runs that are refused: linked once, then their source is emptied.
    let ref_src = format!("ou={id}-refsrc,{base}");
    f.add_ou(&ref_src);
    let r_uids: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    let r_refs: Vec<&str> = r_uids.iter().map(String::as_str).collect();
    f.l.ldapadd(
        &r_refs
            .iter()
            .map(|u| {
                format!(
                    "dn: uid={u},{ref_src}\nobjectClass: inetOrgPerson\nuid: {u}\ncn: {u} Person\nsn: Person\nemployeeNumber: {u}\n"
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    // Runs that fail: their source base does not exist.
    let missing = format!("ou={id}-missing,{base}");
    let mut block = String::new();
    let mut pre = String::new();
    let mut steps = Vec::new();
    for (kind, src) in [("ok", &f.src), ("ref", &ref_src), ("fail", &missing)] {
        for when in ["always", "on_failure", "on_refusal", ""] {
            let name = format!(
                "{id}/{kind}-{}",
                if when.is_empty() { "default" } else { when }
            );
            let dst = format!("ou={id}-{kind}-{}-dst,{base}", when.replace('_', ""));
            f.add_ou(&dst);
            let b = f.step_block(&name, src, &dst);
            if kind == "ref" {
                pre.push_str(&format!("{b}st.run();\n"));
            }
            let opt = if when.is_empty() {
                String::new()
            } else {
                format!(", notify: \"{when}\"")
            };
            block.push_str(&format!("{b}schedule(st, #{{ every: \"1h\"{opt} }});\n"));
            steps.push(name);
        }
    }
    let (code, out) = f.run_script(&pre);
    assert_eq!(code, 0, "{out}");
    for u in &r_refs {
        f.l.ldapmodify(&format!("dn: uid={u},{ref_src}\nchangetype: delete\n"));
    }
    let script = format!("{block}notify(#{{ webhook: \"{}\" }});\n", hook.url());
    let file = f.write_script("svc.rhai", &script);
    let mut svc = f.service(&["--heartbeat", "1s", "--lease-period", "5s"], &file);
    // Every schedule fires once at the start (every 1h).
    assert!(
        wait_until(Duration::from_secs(90), || steps
            .iter()
            .all(
                |s| f.runs_of(s).len() >= if s.contains("/ref-") { 2 } else { 1 }
            )),
        "not every schedule ran\n{}",
        svc.log()
    );
    let mut expect = vec![
        (format!("{id}/ok-always"), "ok"),
        (format!("{id}/ref-always"), "refused"),
        (format!("{id}/ref-on_refusal"), "refused"),
        (format!("{id}/fail-always"), "failed"),
        (format!("{id}/fail-on_failure"), "failed"),
    ];
    expect.sort();
    assert!(
        wait_until(Duration::from_secs(30), || hook.bodies().len()
            >= expect.len()),
        "{:#?}\n{}",
        hook.bodies(),
        svc.log()
    );
    // Any that should not have been sent would be on its way by now.
    std::thread::sleep(Duration::from_secs(3));
    let bodies = hook.bodies();
    let mut got: Vec<(String, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["step"].as_str().unwrap_or_default().to_string(),
                b["event"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    got.sort();
    let status: Vec<String> = steps
        .iter()
        .map(|s| format!("{s}: {:?}", f.runs_of(s).last().map(|r| r.status.clone())))
        .collect();
    assert_eq!(got, expect, "{status:#?}\n{bodies:#?}\n{}", svc.log());
    // The runs ended as their names say.
    for s in &steps {
        let want = if s.contains("/ok-") {
            "ok"
        } else if s.contains("/ref-") {
            "refused"
        } else {
            "failed"
        };
        assert_eq!(
            f.runs_of(s).last().unwrap().status,
            want,
            "{s}\n{}",
            svc.log()
        );
    }
    // A JSON POST to the URL given.
    for h in hook.heads() {
        assert!(
            h.starts_with("POST /hook?token=t0psecrettoken HTTP/1.1"),
            "{h}"
        );
        assert!(
            h.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{h}"
        );
    }
    // Each body names the step, the reason, the counts and the log file.
    let body = |step: &str| {
        bodies
            .iter()
            .find(|b| b["step"] == format!("{id}/{step}").as_str())
            .unwrap()
    };
    for b in &bodies {
        let step = b["step"].as_str().unwrap();
        assert_eq!(
            b["subject"],
            format!("idsync: {step} {}", b["event"].as_str().unwrap()).as_str(),
            "{b:#}"
        );
        assert!(b["counts"].is_object(), "{b:#}");
        assert!(
            !b["reason"].as_str().unwrap_or_default().is_empty(),
            "{b:#}"
        );
        assert!(
            b["instance"].as_str().unwrap_or_default().contains(':'),
            "{b:#}"
        );
        let log = b["log"].as_str().unwrap_or_else(|| panic!("no log: {b:#}"));
        let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
        assert!(
            text.contains(&format!("start step {step}")),
            "{log}\n{text}"
        );
    }
    let ok = body("ok-always");
    assert_eq!(ok["counts"]["created"], 2, "{ok:#}");
    let refused = body("ref-on_refusal");
    assert_eq!(
        refused["counts"]["planned"]["to_deprovision"], 5,
        "{refused:#}"
    );
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("would deprovision 5 objects"),
        "{refused:#}"
    );
    let failed = body("fail-on_failure");
    let text = std::fs::read_to_string(failed["log"].as_str().unwrap()).unwrap();
    assert!(text.contains("FAILED"), "{text}");
    // Nothing was deleted by the refused runs; the failing ones wrote nothing.
    assert_eq!(
        f.l.ldapsearch(&base, "sub", "(uid=r*)", &["uid"])
            .matches("dn: ")
            .count(),
        5 * 4
    );
    // The URL's token is never printed.
    assert!(!svc.log().contains("t0psecrettoken"), "{}", svc.log());
    svc.signal(libc::SIGTERM);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.log()
    );
}

#[test]
fn a_failing_mail_server_is_logged_by_name_and_the_runs_go_on() {
    let Some(f) = fx("svsmtpfail") else { return };
    let Some(sink) = Sink::start(f.home()) else {
        return;
    };
    let hook = Hook::start();
    f.add_people(&["ann"]);
    // Nothing listens on `closed`; the sink offers no STARTTLS, so it cannot log in there;
    // `silent` takes the connection and never answers (the mail client gives up after 30 s).
    let closed = free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let script = format!(
        "{}schedule(st, #{{ every: \"1s\", notify: \"always\" }});\n\
         notify(#{{ smtp: \"127.0.0.1:{closed}\", tls: \"none\", from: \"idsync@example.com\", to: [\"iam@example.com\"] }});\n\
         notify(#{{ smtp: \"127.0.0.1:{port}\", from: \"idsync@example.com\", to: [\"iam@example.com\"], user: \"idsync\", password: secret(\"IDSYNC_TEST_SMTP_PW\") }});\n\
         notify(#{{ smtp: \"127.0.0.1:{silent_port}\", tls: \"none\", from: \"idsync@example.com\", to: [\"iam@example.com\"] }});\n\
         notify(#{{ webhook: \"{url}\" }});\n",
        f.step_script("true"),
        port = sink.port,
        url = hook.url(),
    );
    let file = f.write_script("svc.rhai", &script);
    let mut cmd = support::idsync_command(f.home());
    cmd.env("IDSYNC_TEST_SMTP_PW", "smtp-pw-not-to-print");
    let mut svc = Service::start(
        cmd,
        f.home(),
        &["--heartbeat", "1s", "--lease-period", "5s"],
        &file,
    );
    let closed_failed = format!("not sent: mail via 127.0.0.1:{closed}: ");
    let login_failed = format!("not sent: mail via 127.0.0.1:{}: ", sink.port);
    assert!(
        wait_until(Duration::from_secs(60), || {
            let log = svc.log();
            log.matches(&closed_failed).count() >= 3 && log.matches(&login_failed).count() >= 3
        }),
        "the mail failures were not logged by server\n{}",
        svc.log()
    );
    // The runs went on (each tick one), and the webhook still got their notifications.
    let n = f.runs_of(&f.step).len();
    assert!(
        wait_until(Duration::from_secs(30), || f.runs_of(&f.step).len()
            >= n + 3),
        "the runs stopped\n{}",
        svc.log()
    );
    assert!(svc.child.try_wait().unwrap().is_none(), "{}", svc.log());
    let runs = f.runs_of(&f.step);
    assert!(runs.iter().all(|r| r.status == "ok"), "{runs:?}");
    assert!(
        wait_until(Duration::from_secs(30), || hook.bodies().len() >= 4),
        "{}",
        svc.log()
    );
    assert!(hook.bodies().iter().all(|b| b["event"] == "ok"));
    // The silent server's first attempt times out and is logged by name; runs kept going meanwhile.
    let silent_failed = format!("not sent: mail via 127.0.0.1:{silent_port}: ");
    assert!(
        svc.wait_log(&silent_failed, Duration::from_secs(90)),
        "{}",
        svc.log()
    );
    assert!(svc.child.try_wait().unwrap().is_none(), "{}", svc.log());
    assert!(f.runs_of(&f.step).len() >= n + 10, "{}", svc.log());
    assert_eq!(sink.messages(), 0, "{}", sink.text());
    assert!(!svc.log().contains("smtp-pw-not-to-print"), "{}", svc.log());
    svc.signal(libc::SIGTERM);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.log()
    );
}
