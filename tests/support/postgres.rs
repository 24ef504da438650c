//! A private PostgreSQL per test binary: `scripts/dev/postgres reset` runs initdb in a
//! directory of its own under the harness root (TLS on with the test certificates, password
//! auth on 127.0.0.1 only, the unix socket in that directory); the server is spawned here on
//! a free loopback port so the harness owns its PID. As root the server runs as the
//! `postgres` user (PostgreSQL refuses root), which clears the parent-death signal, so a
//! small watchdog process stops it by PID when the test process is gone. Each test takes a
//! database of its own ([`Pg::fresh_db`]). Skipped when PostgreSQL is not installed, unless
//! `IDSYNC_REQUIRE_SERVERS=1`.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{alive, certs_dir, harness_root, run_script, spawn_server, stop_pid};

/// The running private PostgreSQL of this test binary.
pub struct Pg {
    /// 127.0.0.1 port.
    pub port: u16,
    /// Superuser name (password auth over TCP).
    pub user: String,
    /// Its password.
    pub password: String,
    /// PEM of the CA that signed the server certificate.
    pub ca_file: String,
    /// A PEM of an unrelated CA (verification must fail with it).
    pub wrong_ca_file: String,
    /// Instance directory (data, socket, log).
    pub dir: PathBuf,
    /// Server PID.
    pub pid: u32,
}

impl Pg {
    /// `postgres://user@127.0.0.1:port/db` (no password in it).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{db}", self.user, self.port)
    }

    /// A new empty database with a unique name; returns its name.
    pub fn fresh_db(&self, prefix: &str) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}_{}_{}",
            prefix.to_ascii_lowercase(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("idsync", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs SQL with psql over the unix socket (stops at the first error); returns the
    /// unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql failed: {e}\n--- SQL ---\n{sql}"))
    }

    /// Like [`Pg::psql`], returning the error text instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(bin_dir().unwrap().join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                &self.user,
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("postgres").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn available() -> Result<(), String> {
    match bin_dir() {
        Some(_) => Ok(()),
        None => Err(
            "no /usr/lib/postgresql/*/bin/initdb (Debian package `postgresql`; scripts/test installs it)"
                .into(),
        ),
    }
}

/// The private PostgreSQL of this test binary, started on first use.
pub fn postgres() -> Option<&'static Pg> {
    static SHARED: OnceLock<Option<Pg>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Err(why) = available() {
                return super::unavailable("PostgreSQL", &why);
            }
            Some(start())
        })
        .as_ref()
}

fn start() -> Pg {
    let root = harness_root();
    clean_stale(&root);
    let dir = root.join(format!("postgres-{}", std::process::id()));
    let certs = certs_dir();
    let mut last = String::new();
    for _attempt in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port_s = PathBuf::from(port.to_string());
        let env = [
            ("PG_DIR", dir.as_path()),
            ("PG_PORT", port_s.as_path()),
            ("PG_CERTS", certs.as_path()),
        ];
        if !dir.join("data").exists() {
            run_script("postgres", &["reset"], &env);
        }
        let argv: Vec<String> = run_script("postgres", &["cmdline"], &env)
            .lines()
            .map(str::to_string)
            .collect();
        let log = dir.join("postgres.log");
        let pid =
            spawn_server(argv, &log, true, true).unwrap_or_else(|e| panic!("spawn postgres: {e}"));
        watchdog(pid, &dir);
        let t = Instant::now();
        loop {
            let ready = Command::new(bin_dir().unwrap().join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-d",
                    "idsync",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                let _ = fs::write(dir.join("postgres.bgpid"), pid.to_string());
                return Pg {
                    port,
                    user: "idsync".into(),
                    password: "secret".into(),
                    ca_file: certs.join("ca.pem").to_string_lossy().into_owned(),
                    wrong_ca_file: certs.join("wrong-ca.pem").to_string_lossy().into_owned(),
                    dir,
                    pid,
                };
            }
            if !alive(pid) || t.elapsed() > Duration::from_secs(30) {
                stop_pid(pid);
                let text = fs::read_to_string(&log).unwrap_or_default();
                last = format!("postgres pid {pid} did not answer on port {port}:\n{text}");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !last.contains("already in use") {
            break;
        }
    }
    panic!("PostgreSQL did not start: {last}");
}

/// Stops the server by PID (TERM, then KILL) and removes its directory once this test
/// process has exited.
fn watchdog(pid: u32, dir: &std::path::Path) {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -TERM {pid} 2>/dev/null; \
         for i in $(seq 1 100); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; done; \
         kill -KILL {pid} 2>/dev/null; rm -rf '{}'",
        dir.display()
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Removes instance directories of test processes that are gone (a watchdog that did not
/// get to run).
fn clean_stale(root: &std::path::Path) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("postgres-") else {
            continue;
        };
        let Ok(owner) = rest.parse::<u32>() else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        let _ = fs::remove_dir_all(e.path());
    }
}
