//! Real-server test harness: private OpenLDAP `slapd` instances and one shared Samba AD DC.
//!
//! Integration tests use it through `mod support;`. The shell scripts in `scripts/dev` are the
//! single source of truth for certificates, configuration, reset and provisioning; this module
//! only spawns the server processes itself (slapd `-d 0`, samba `-F --debug-stdout`) so that it
//! owns their PIDs, waits (bounded) until they answer, and stops them by PID.
//!
//! * [`slapd`]: one shared slapd per test binary, on free loopback ports, killed by the kernel
//!   (`PR_SET_PDEATHSIG`) when the test process exits.
//! * [`private_slapd`]: a fresh slapd owned by the caller, stopped on `Drop`.
//! * [`samba`]: the Samba AD DC (its LDAP ports are fixed at 389/636, so there is one per
//!   machine). It is provisioned once and reused while the provision's marker matches
//!   `scripts/dev/samba-ad version`; starting is serialised by an flock. Every test process
//!   using it holds a shared lock on `samba.users.lock`; a small watchdog
//!   (`scripts/dev/samba-ad watch`) stops it by PID a few seconds after the last user is gone,
//!   so consecutive test binaries (and parallel processes such as nextest's) share one server.
//!
//! When a server is not installed, the functions print `skipped: ... not available: <why>` and
//! return `None`, unless `IDSYNC_REQUIRE_SERVERS=1`, in which case they panic with the reason.
//! All servers listen on loopback only. Scratch space lives under
//! `${IDSYNC_HARNESS_DIR:-${TMPDIR:-/tmp}/idsync-harness}`.
#![allow(dead_code)]

pub mod graph;
pub mod ldif;
pub mod password;
pub mod postgres;
pub mod report;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const SLAPD_READY: Duration = Duration::from_secs(20);
const SAMBA_READY: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// the per-binary shared slapd
    SharedSlapd,
    /// a caller-owned slapd (stopped on Drop)
    PrivateSlapd,
    /// the machine-wide Samba AD DC
    Samba,
}

/// A running directory server and how to reach it as administrator.
#[derive(Debug)]
pub struct Ldap {
    /// plain LDAP URL, e.g. `ldap://127.0.0.1:34567`
    pub url: String,
    /// LDAPS URL whose certificate verifies with `ca_file` (SAN IP:127.0.0.1)
    pub ldaps_url: String,
    /// naming context: `dc=example,dc=com` (slapd) or `DC=example,DC=test` (Samba)
    pub base: String,
    /// administrator DN (slapd rootdn / AD Administrator)
    pub admin_dn: String,
    /// administrator password
    pub admin_pw: String,
    /// PEM file of the CA that signed the server certificate
    pub ca_file: String,
    /// PEM file of an unrelated CA: verification against it must fail
    pub wrong_ca_file: String,
    /// PID of the server process
    pub pid: u32,
    kind: Kind,
    dir: PathBuf,
    log: PathBuf,
    /// for private instances: the directory removed after the server is stopped
    owned_dir: Option<PathBuf>,
    /// the server's command line (slapd only), for [`Ldap::restart`]
    argv: Vec<String>,
}

impl Ldap {
    /// Runs `ldapsearch -LLL -o ldif-wrap=no -x -H url -D admin -w pw -b BASE -s SCOPE FILTER
    /// ATTRS...` and returns stdout; panics with stderr on failure. An empty `filter` means
    /// `(objectClass=*)`.
    pub fn ldapsearch(&self, base: &str, scope: &str, filter: &str, attrs: &[&str]) -> String {
        let filter = if filter.is_empty() {
            "(objectClass=*)"
        } else {
            filter
        };
        let mut args: Vec<&str> = vec![
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-x",
            "-H",
            &self.url,
            "-D",
            &self.admin_dn,
            "-w",
            &self.admin_pw,
            "-b",
            base,
            "-s",
            scope,
            filter,
        ];
        args.extend_from_slice(attrs);
        let out = self.ldap_tool("ldapsearch", &args, None);
        if !out.status.success() {
            panic!(
                "ldapsearch -b {base:?} -s {scope} {filter:?} on {} failed ({}): {}",
                self.url,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `ldapmodify -x` as administrator with `ldif` on stdin; panics on failure. Against
    /// Samba, LDIF touching `unicodePwd` goes over LDAPS (as real AD requires).
    pub fn ldapmodify(&self, ldif: &str) {
        self.modify_impl(ldif, false)
    }

    /// Like [`Ldap::ldapmodify`] but adds entries (`ldapmodify -a`).
    pub fn ldapadd(&self, ldif: &str) {
        self.modify_impl(ldif, true)
    }

    /// Like [`Ldap::ldapmodify`] but returns the error text instead of panicking.
    pub fn try_ldapmodify(&self, ldif: &str) -> Result<(), String> {
        self.try_modify_impl(ldif, false)
    }

    /// Tries a simple bind as `dn` with `pw` (a base search of the root DSE); true if it worked.
    pub fn can_bind(&self, dn: &str, pw: &str) -> bool {
        let args = [
            "-x",
            "-H",
            &self.url,
            "-D",
            dn,
            "-w",
            pw,
            "-s",
            "base",
            "-b",
            "",
            "(objectClass=*)",
            "1.1",
        ];
        self.ldap_tool("ldapsearch", &args, None).status.success()
    }

    /// SIGKILLs the server by PID. Only for private instances ([`private_slapd`]); panics on a
    /// shared one, which other tests are using.
    pub fn kill(&self) {
        assert_eq!(
            self.kind,
            Kind::PrivateSlapd,
            "Ldap::kill is only for private_slapd() instances"
        );
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        wait_gone(self.pid, STOP_GRACE);
    }

    /// Starts a private instance again after [`Ldap::kill`]: the same command line (same
    /// directory, same ports), so the mdb data that survived the SIGKILL is served again at the
    /// same URLs. Waits (bounded) until it answers and tracks the new PID (`self.pid`, Drop).
    /// The previous run's log is kept as `slapd.log.1`. Panics on a shared instance, if the
    /// server is still running, or if it does not come back.
    pub fn restart(&mut self) {
        assert_eq!(
            self.kind,
            Kind::PrivateSlapd,
            "Ldap::restart is only for private_slapd() instances"
        );
        assert!(
            !alive(self.pid),
            "Ldap::restart: slapd pid {} is still running; kill() it first",
            self.pid
        );
        let _ = fs::rename(&self.log, self.dir.join("slapd.log.1"));
        let mut last_err = String::new();
        // The listening sockets died with the old process; a port can still be briefly busy
        // (e.g. while the kernel tears the old sockets down), so retry a few times.
        for attempt in 0..10 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            let t = Instant::now();
            let pid = spawn_server(self.argv.clone(), &self.log, true, false)
                .unwrap_or_else(|e| panic!("spawn slapd: {e}"));
            match wait_ready(pid, &self.url, SLAPD_READY) {
                Ok(()) => {
                    if std::env::var_os("IDSYNC_HARNESS_VERBOSE").is_some() {
                        eprintln!(
                            "harness: slapd pid {pid} ready again on {} in {:?}",
                            self.url,
                            t.elapsed()
                        );
                    }
                    let _ = fs::write(self.dir.join("slapd.bgpid"), pid.to_string());
                    self.pid = pid;
                    return;
                }
                Err(e) => {
                    stop_pid(pid);
                    let text = fs::read_to_string(&self.log).unwrap_or_default();
                    last_err = format!("{e}\n--- slapd log ({}) ---\n{text}", self.log.display());
                    if !text.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("slapd did not start again: {last_err}");
    }

    /// Makes slapd's accesslog (`cn=accesslog`) an independent record of what a test's
    /// clients did: searches as well as writes on `dc=example,dc=com` (the test configuration
    /// records writes only), and searches and writes on `dc=target,dc=com` too (an accesslog
    /// overlay added to that database). Changes cn=config as its rootdn.
    ///
    /// Each operation becomes an entry `reqStart=<time>,cn=accesslog` (`auditSearch`,
    /// `auditAdd`, `auditModify`...; each page of a paged search is its own search) with its
    /// base or DN (`reqDN`), filter (`reqFilter`), number of entries returned (`reqEntries`),
    /// start and end (`reqStart`, `reqEnd`). slapd stamps those with the second and a counter
    /// of operations in that second (`20261202003121.000065Z`), one sequence for the whole
    /// server: comparing two stamps tells which came first.
    /// Only for private instances ([`private_slapd`]): it would slow the shared one down.
    pub fn log_operations(&self) {
        assert_eq!(
            self.kind,
            Kind::PrivateSlapd,
            "Ldap::log_operations is only for private_slapd() instances"
        );
        let ldif = "dn: olcOverlay={1}accesslog,olcDatabase={2}mdb,cn=config\n\
                    changetype: modify\nreplace: olcAccessLogOps\n\
                    olcAccessLogOps: writes\nolcAccessLogOps: search\n\n\
                    dn: olcOverlay={1}accesslog,olcDatabase={3}mdb,cn=config\n\
                    changetype: add\nobjectClass: olcOverlayConfig\n\
                    objectClass: olcAccessLogConfig\nolcOverlay: {1}accesslog\n\
                    olcAccessLogDB: cn=accesslog\nolcAccessLogSuccess: TRUE\n\
                    olcAccessLogOps: writes\nolcAccessLogOps: search\n";
        let args = [
            "-x",
            "-H",
            &self.url,
            "-D",
            "cn=admin,cn=config",
            "-w",
            "secret",
        ];
        let out = self.ldap_tool("ldapmodify", &args, Some(ldif));
        assert!(
            out.status.success(),
            "turning on the accesslog for all operations failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The accesslog entries matching `filter` (e.g. `(objectClass=auditSearch)`), oldest
    /// first (by `reqStart`), as (DN, attributes with lowercased names: `reqdn`, `reqfilter`,
    /// `reqentries`, `reqstart`, `reqend`...). See [`Ldap::log_operations`].
    pub fn accesslog(&self, filter: &str) -> Vec<(String, ldif::Attrs)> {
        let text = self.ldapsearch("cn=accesslog", "one", filter, &["*"]);
        let mut ops: Vec<(String, ldif::Attrs)> = ldif::parse_ldif(&text).into_iter().collect();
        let start = |a: &ldif::Attrs| a.get("reqstart").and_then(|v| v.first()).cloned();
        ops.sort_by_key(|(_, a)| start(a));
        ops
    }

    /// Runs `samba-tool ARGS... -s smb.conf` against the Samba instance; returns stdout,
    /// panics with the output on failure. Example: `ad.samba_tool(&["user", "create", "ann",
    /// "Passw0rd!Passw0rd"])`.
    pub fn samba_tool(&self, args: &[&str]) -> String {
        assert_eq!(self.kind, Kind::Samba, "samba_tool is only for samba()");
        let conf = self.smb_conf();
        let out = Command::new(find_cmd("samba-tool").unwrap_or_else(|| "samba-tool".into()))
            .args(args)
            .arg("-s")
            .arg(&conf)
            .env("PATH", sbin_path())
            .stdin(Stdio::null())
            .output()
            .expect("run samba-tool");
        if !out.status.success() {
            panic!(
                "samba-tool {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Path of the Samba instance's smb.conf (for `samba-tool -s`).
    pub fn smb_conf(&self) -> PathBuf {
        self.dir.join("etc/smb.conf")
    }

    /// The server's instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file (stdout/stderr of the server process).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn modify_impl(&self, ldif: &str, add: bool) {
        if let Err(e) = self.try_modify_impl(ldif, add) {
            panic!("{e}");
        }
    }

    fn try_modify_impl(&self, ldif: &str, add: bool) -> Result<(), String> {
        let url = if self.kind == Kind::Samba && ldif.to_ascii_lowercase().contains("unicodepwd") {
            &self.ldaps_url
        } else {
            &self.url
        };
        let mut args = vec!["-x", "-H", url, "-D", &self.admin_dn, "-w", &self.admin_pw];
        if add {
            args.push("-a");
        }
        let tool = if add { "ldapadd" } else { "ldapmodify" };
        let out = self.ldap_tool("ldapmodify", &args, Some(ldif));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} on {url} failed ({}): {}\n--- LDIF ---\n{ldif}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn ldap_tool(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(find_cmd(tool).unwrap_or_else(|| tool.into()));
        cmd.args(args)
            .env("LDAPCONF", "/dev/null")
            .env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        if let Some(text) = stdin {
            let mut si = child.stdin.take().unwrap();
            let text = text.to_owned();
            // write from a thread so a large LDIF cannot deadlock against a full stdout pipe
            std::thread::spawn(move || {
                let _ = si.write_all(text.as_bytes());
            });
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"))
    }
}

impl Drop for Ldap {
    fn drop(&mut self) {
        if self.kind != Kind::PrivateSlapd {
            return;
        }
        // The instance's data is thrown away with its directory, so there is nothing for a
        // graceful shutdown to save; SIGTERM would cost slapd ~1.5 s per instance.
        if alive(self.pid) {
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            wait_gone(self.pid, STOP_GRACE);
        }
        if let Some(d) = &self.owned_dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// public entry points

/// The shared private slapd of this test binary: started once, lazily, in its own directory on
/// free loopback ports, killed when the test process exits. `None` (after printing why) when
/// slapd is not installed, unless `IDSYNC_REQUIRE_SERVERS=1`, which panics instead.
pub fn slapd() -> Option<&'static Ldap> {
    static SHARED: OnceLock<Option<Ldap>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Err(why) = slapd_available() {
                return unavailable("slapd", &why);
            }
            Some(start_slapd(None, Kind::SharedSlapd))
        })
        .as_ref()
}

/// A fresh private slapd owned by the caller (own directory and ports), optionally preloaded
/// offline with `fixture_ldif` (entries under `dc=example,dc=com`, loaded with slapadd);
/// stopped by PID (SIGKILL: its data is discarded) on Drop, which also removes its directory.
/// Same `None`/panic rule as [`slapd`].
pub fn private_slapd(fixture_ldif: Option<&str>) -> Option<Ldap> {
    if let Err(why) = slapd_available() {
        return unavailable("slapd", &why);
    }
    Some(start_slapd(fixture_ldif, Kind::PrivateSlapd))
}

/// The shared Samba AD DC (realm EXAMPLE.TEST, `DC=example,DC=test`, LDAP on 127.0.0.1:389,
/// LDAPS on 636). Same `None`/panic rule as [`slapd`].
pub fn samba() -> Option<&'static Ldap> {
    static SHARED: OnceLock<Option<Ldap>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Err(why) = samba_available() {
                return unavailable("samba", &why);
            }
            match start_samba() {
                Ok(l) => Some(l),
                Err(Unavail(why)) => unavailable("samba", &why),
            }
        })
        .as_ref()
}

/// A unique lowercase alphanumeric name for test objects: `prefix` + pid + counter + short
/// random part (at most prefix + 14 characters, so it fits sAMAccountName with a short prefix).
pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    let r = h.finish() % (36 * 36 * 36);
    format!(
        "{prefix}{}x{}{:0>3}",
        base36(std::process::id() as u64),
        base36(n),
        base36(r)
    )
}

/// Path of the built `idsync` binary.
pub fn idsync_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_idsync"))
}

/// A fresh temporary directory to use as `IDSYNC_HOME` in a CLI test.
pub fn temp_home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("idsync-home-")
        .tempdir()
        .expect("create temp IDSYNC_HOME")
}

/// The log file of the newest run under `home` (the highest "(run N)"), as text.
pub fn newest_run_log(home: &Path) -> String {
    let logs: Vec<String> = fs::read_dir(home.join("logs"))
        .unwrap_or_else(|e| panic!("{}/logs: {e}", home.display()))
        .flatten()
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let run_no = |t: &str| -> u64 {
        t.split("(run ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    logs.into_iter()
        .max_by_key(|t| run_no(t))
        .unwrap_or_default()
}

/// The "planned: ..." line of the newest run under `home`.
pub fn planned_line(home: &Path) -> String {
    newest_run_log(home)
        .lines()
        .find(|l| l.contains(" planned: "))
        .unwrap_or_default()
        .to_string()
}

/// Directory of the developer scripts (`scripts/dev`).
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev")
}

/// Generates `n` users as LDIF with `scripts/dev/gen-users` (uid=userNNNNN,ou=people,...).
pub fn gen_users(n: usize) -> String {
    let out = Command::new(scripts_dir().join("gen-users"))
        .arg(n.to_string())
        .output()
        .expect("run scripts/dev/gen-users");
    assert!(
        out.status.success(),
        "gen-users failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// helpers

struct Unavail(String);

fn require_servers() -> bool {
    std::env::var("IDSYNC_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

fn unavailable<T>(what: &str, why: &str) -> Option<T> {
    if require_servers() {
        panic!("{what} not available (IDSYNC_REQUIRE_SERVERS=1): {why}");
    }
    eprintln!("skipped: {what} not available: {why}");
    None
}

fn base36(mut v: u64) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(D[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

/// PATH with the sbin directories appended (slapd and samba live in /usr/sbin).
fn sbin_path() -> String {
    let p = std::env::var("PATH").unwrap_or_default();
    format!("{p}:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")
}

fn find_cmd(name: &str) -> Option<PathBuf> {
    sbin_path()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn missing(cmds: &[&str]) -> Result<(), String> {
    let miss: Vec<&str> = cmds
        .iter()
        .copied()
        .filter(|c| find_cmd(c).is_none())
        .collect();
    if miss.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} not installed (run scripts/test, which installs them)",
            miss.join(", ")
        ))
    }
}

fn slapd_available() -> Result<(), String> {
    missing(&[
        "slapd",
        "slapadd",
        "ldapsearch",
        "ldapmodify",
        "openssl",
        "flock",
    ])?;
    slapd_files_missing()
}

/// The files the test slapd's cn=config needs, read from the template `scripts/dev/slapd`
/// builds it from (`scripts/dev/slapd-config.ldif.in`, so the list cannot drift from the
/// config): each `olcModuleLoad` module in `olcModulePath` (e.g. `/usr/lib/ldap/back_mdb.so`,
/// `syncprov`, `accesslog`, `ppolicy`) and each `include: file://` schema (e.g.
/// `/etc/ldap/schema/core.ldif`). Debian's `slapd` package ships them all. Err names every
/// missing path and the package to install.
fn slapd_files_missing() -> Result<(), String> {
    let template = scripts_dir().join("slapd-config.ldif.in");
    let text = fs::read_to_string(&template)
        .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
    let value = |line: &str, attr: &str| -> Option<String> {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(attr)
            .then(|| v.trim().to_string())
    };
    let module_dir = text
        .lines()
        .find_map(|l| value(l, "olcModulePath"))
        .unwrap_or_else(|| "/usr/lib/ldap".into());
    let mut needed: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        if let Some(m) = value(line, "olcModuleLoad") {
            let file = if m.ends_with(".so") || m.ends_with(".la") {
                m
            } else {
                format!("{m}.so")
            };
            needed.push(Path::new(&module_dir).join(file));
        } else if let Some(url) = value(line, "include") {
            let path = url.strip_prefix("file://").unwrap_or(&url);
            needed.push(PathBuf::from(path));
        }
    }
    let miss: Vec<String> = needed
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if miss.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} missing (the test slapd's cn=config in scripts/dev/slapd-config.ldif.in loads \
             them; install the Debian package slapd: apt-get install slapd, or run scripts/test)",
            miss.join(", ")
        ))
    }
}

fn samba_available() -> Result<(), String> {
    missing(&[
        "samba",
        "samba-tool",
        "ldapsearch",
        "ldapmodify",
        "openssl",
        "flock",
    ])?;
    if !Path::new("/usr/bin/python3").exists() {
        return Err("/usr/bin/python3 (samba's python) not installed".into());
    }
    Ok(())
}

fn harness_root() -> PathBuf {
    let root = std::env::var_os("IDSYNC_HARNESS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/tmp".into())
                .join("idsync-harness")
        });
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    root
}

fn certs_dir() -> PathBuf {
    harness_root().join("certs")
}

/// Runs a scripts/dev script; panics with its output on failure.
fn run_script(script: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(scripts_dir().join(script));
    cmd.args(args).env("PATH", sbin_path()).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/dev/{script}: {e}"));
    if !out.status.success() {
        panic!(
            "scripts/dev/{script} {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn alive(pid: u32) -> bool {
    if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return false;
    }
    // a zombie is dead for our purposes
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pid: u32, limit: Duration) -> bool {
    let t = Instant::now();
    while alive(pid) {
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop_pid(pid: u32) {
    if !alive(pid) {
        return;
    }
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    if !wait_gone(pid, STOP_GRACE) {
        eprintln!("harness: pid {pid} ignored SIGTERM for {STOP_GRACE:?}; SIGKILL");
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        wait_gone(pid, STOP_GRACE);
    }
}

/// How a server process is spawned.
struct SpawnReq {
    argv: Vec<String>,
    log: PathBuf,
    /// PR_SET_PDEATHSIG (dies with the keeper thread, i.e. with the test process)
    pdeathsig: bool,
    /// start a new session (detached from the terminal's Ctrl-C)
    setsid: bool,
    reply: mpsc::Sender<std::io::Result<u32>>,
}

/// Spawns `argv` from a dedicated never-exiting keeper thread (PDEATHSIG fires when the
/// spawning *thread* exits) and reaps it from a per-child waiter thread. Returns the PID.
fn spawn_server(
    argv: Vec<String>,
    log: &Path,
    pdeathsig: bool,
    setsid: bool,
) -> std::io::Result<u32> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    let tx = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        std::thread::Builder::new()
            .name("harness-keeper".into())
            .spawn(move || {
                for req in rx {
                    let r = spawn_now(&req);
                    let _ = req.reply.send(r.map(|child| {
                        let pid = child.id();
                        reap_in_background(child);
                        pid
                    }));
                }
                // the sender lives in a static: never reached, but never exit anyway
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn keeper thread");
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .unwrap()
        .send(SpawnReq {
            argv,
            log: log.to_owned(),
            pdeathsig,
            setsid,
            reply: rtx,
        })
        .expect("keeper thread gone");
    rrx.recv().expect("keeper thread gone")
}

fn spawn_now(req: &SpawnReq) -> std::io::Result<Child> {
    let log = File::create(&req.log)?;
    let mut cmd = Command::new(&req.argv[0]);
    cmd.args(&req.argv[1..])
        .env("PATH", sbin_path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let parent = unsafe { libc::getpid() };
    let (pdeath, setsid) = (req.pdeathsig, req.setsid);
    unsafe {
        cmd.pre_exec(move || {
            if setsid {
                libc::setsid();
            }
            if pdeath {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // the parent may have died before prctl took effect
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

fn reap_in_background(mut child: Child) {
    std::thread::Builder::new()
        .name(format!("harness-reap-{}", child.id()))
        .spawn(move || {
            let _ = child.wait();
        })
        .expect("spawn reaper thread");
}

fn ldap_answers(url: &str) -> bool {
    Command::new(find_cmd("ldapsearch").unwrap_or_else(|| "ldapsearch".into()))
        .args([
            "-x",
            "-H",
            url,
            "-s",
            "base",
            "-b",
            "",
            "(objectClass=*)",
            "namingContexts",
        ])
        .env("LDAPCONF", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls until `url` answers; false if the process died or the limit passed.
fn wait_ready(pid: u32, url: &str, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    loop {
        if ldap_answers(url) {
            return Ok(());
        }
        if !alive(pid) {
            return Err(format!("server pid {pid} exited before answering on {url}"));
        }
        if t.elapsed() > limit {
            return Err(format!(
                "server pid {pid} did not answer on {url} within {limit:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_lines(script_out: &str) -> Vec<String> {
    script_out.lines().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// slapd

/// Removes slapd directories left behind by test processes that no longer exist.
fn clean_stale_slapd_dirs(root: &Path) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("slapd-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !alive(pid) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn start_slapd(fixture_ldif: Option<&str>, kind: Kind) -> Ldap {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static CLEANED: OnceLock<()> = OnceLock::new();
    let root = harness_root();
    CLEANED.get_or_init(|| clean_stale_slapd_dirs(&root));
    let dir = root.join(format!(
        "slapd-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let certs = certs_dir();
    let fixture = fixture_ldif.map(|text| {
        let p = dir.join("fixture.ldif");
        fs::write(&p, text).unwrap();
        p
    });
    let mut env: Vec<(&str, &Path)> = vec![("SLAPD_DIR", &dir), ("SLAPD_CERTS", &certs)];
    if let Some(f) = &fixture {
        env.push(("SLAPD_FIXTURE", f));
    }
    run_script("slapd", &["reset"], &env);
    let log = dir.join("slapd.log");
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let (port, ldaps_port) = free_ports();
        let (p1, p2) = (
            PathBuf::from(port.to_string()),
            PathBuf::from(ldaps_port.to_string()),
        );
        let mut env2 = env.clone();
        env2.push(("SLAPD_PORT", &p1));
        env2.push(("SLAPD_LDAPS_PORT", &p2));
        let argv = read_lines(&run_script("slapd", &["cmdline"], &env2));
        let t = Instant::now();
        let pid = spawn_server(argv.clone(), &log, true, false)
            .unwrap_or_else(|e| panic!("spawn slapd: {e}"));
        let url = format!("ldap://127.0.0.1:{port}");
        match wait_ready(pid, &url, SLAPD_READY) {
            Ok(()) => {
                if std::env::var_os("IDSYNC_HARNESS_VERBOSE").is_some() {
                    eprintln!(
                        "harness: slapd pid {pid} ready on {url} in {:?}",
                        t.elapsed()
                    );
                }
                let _ = fs::write(dir.join("slapd.bgpid"), pid.to_string());
                return Ldap {
                    url,
                    ldaps_url: format!("ldaps://127.0.0.1:{ldaps_port}"),
                    base: "dc=example,dc=com".into(),
                    admin_dn: "cn=admin,dc=example,dc=com".into(),
                    admin_pw: "secret".into(),
                    ca_file: certs.join("ca.pem").to_string_lossy().into_owned(),
                    wrong_ca_file: certs.join("wrong-ca.pem").to_string_lossy().into_owned(),
                    pid,
                    kind,
                    dir: dir.clone(),
                    log,
                    owned_dir: (kind == Kind::PrivateSlapd).then(|| dir.clone()),
                    argv,
                };
            }
            Err(e) => {
                stop_pid(pid);
                let text = fs::read_to_string(&log).unwrap_or_default();
                last_err = format!("{e}\n--- slapd log ({}) ---\n{text}", log.display());
                // a port taken between probing and binding: try other ports
                if !text.contains("Address already in use") {
                    break;
                }
            }
        }
    }
    panic!("slapd did not start: {last_err}");
}

// ---------------------------------------------------------------------------------------------
// samba

struct FileLock(File);

impl FileLock {
    fn open(path: &Path, op: libc::c_int) -> FileLock {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open lock {}: {e}", path.display()));
        use std::os::fd::AsRawFd;
        loop {
            let r = unsafe { libc::flock(f.as_raw_fd(), op) };
            if r == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                panic!("flock {}: {err}", path.display());
            }
        }
        FileLock(f)
    }
}

/// True if `pid` is a live samba process serving the instance in `ad` (samba rewrites its
/// argv, so look at the executable and at its open files).
fn samba_pid_matches(pid: u32, ad: &Path) -> bool {
    if !alive(pid) {
        return false;
    }
    let exe_ok = fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|e| e.file_name().is_some_and(|n| n == "samba"));
    if !exe_ok {
        return false;
    }
    // /proc shows resolved paths; TMPDIR may contain a symlink
    let ad = fs::canonicalize(ad).unwrap_or_else(|_| ad.to_owned());
    match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(rd) => rd
            .flatten()
            .any(|e| fs::read_link(e.path()).is_ok_and(|t| t.starts_with(&ad))),
        Err(_) => true,
    }
}

fn start_samba() -> Result<Ldap, Unavail> {
    // Shared lock held for the life of this process: tells the watchdog Samba is in use.
    static USERS: OnceLock<FileLock> = OnceLock::new();
    let root = harness_root();
    let ad = root.join("samba");
    let certs = certs_dir();
    let smb_conf = ad.join("etc/smb.conf");
    let state = root.join("samba.harness.pid");
    let lock_path = root.join("samba.lock");
    let users_path = root.join("samba.users.lock");
    let log = ad.join("samba.out");
    let env: Vec<(&str, &Path)> = vec![("AD_DIR", &ad), ("AD_CERTS", &certs)];

    let _guard = FileLock::open(&lock_path, libc::LOCK_EX);
    let mk = |pid: u32| Ldap {
        url: "ldap://127.0.0.1".into(),
        ldaps_url: "ldaps://127.0.0.1:636".into(),
        base: "DC=example,DC=test".into(),
        admin_dn: "CN=Administrator,CN=Users,DC=example,DC=test".into(),
        admin_pw: "Passw0rd!Passw0rd".into(),
        ca_file: certs.join("ca.pem").to_string_lossy().into_owned(),
        wrong_ca_file: certs.join("wrong-ca.pem").to_string_lossy().into_owned(),
        pid,
        kind: Kind::Samba,
        dir: ad.clone(),
        log: log.clone(),
        owned_dir: None,
        argv: Vec::new(),
    };

    // 1. reuse a harness-started Samba that is still running
    let version = run_script("samba-ad", &["version"], &env);
    if let Some(pid) = fs::read_to_string(&state)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        let current = fs::read_to_string(ad.join("provisioned")).is_ok_and(|m| m == version);
        if samba_pid_matches(pid, &ad) && current && ldap_answers("ldap://127.0.0.1") {
            USERS.get_or_init(|| FileLock::open(&users_path, libc::LOCK_SH));
            return Ok(mk(pid));
        }
        if samba_pid_matches(pid, &ad) {
            // ours but stale (script changed) or not answering: stop it by PID
            stop_pid(pid);
        }
        let _ = fs::remove_file(&state);
    }

    // 2. 389 must be free: Samba's LDAP ports are fixed
    if TcpStream::connect_timeout(
        &"127.0.0.1:389".parse().unwrap(),
        Duration::from_millis(500),
    )
    .is_ok()
    {
        return Err(Unavail(
            "something not started by the test harness is listening on 127.0.0.1:389 \
             (Samba needs the fixed LDAP ports 389/636; stop it, e.g. scripts/dev/samba-ad stop)"
                .into(),
        ));
    }

    // 3. provision once per machine state
    let marker = fs::read_to_string(ad.join("provisioned")).unwrap_or_default();
    if marker != version || !smb_conf.exists() {
        let t = Instant::now();
        fs::create_dir_all(&ad).unwrap();
        run_script("samba-ad", &["provision"], &env);
        if std::env::var_os("IDSYNC_HARNESS_VERBOSE").is_some() {
            eprintln!("harness: samba provisioned in {:?}", t.elapsed());
        }
    }

    // 4. start it (new session, no PDEATHSIG: it outlives this process while others use it),
    //    register as a user, and hand it to the watchdog
    USERS.get_or_init(|| FileLock::open(&users_path, libc::LOCK_SH));
    let argv = read_lines(&run_script("samba-ad", &["cmdline"], &env));
    let t = Instant::now();
    // A port Samba listens on can be briefly taken (a previous instance's sockets going away,
    // or a client's local port): Samba then exits at once saying so; try again a few times.
    let mut attempt = 0;
    let pid = loop {
        attempt += 1;
        let pid = spawn_server(argv.clone(), &log, false, true)
            .unwrap_or_else(|e| panic!("spawn samba: {e}"));
        fs::write(&state, pid.to_string()).unwrap();
        let Err(e) = wait_ready(pid, "ldap://127.0.0.1", SAMBA_READY) else {
            break pid;
        };
        stop_pid(pid);
        let _ = fs::remove_file(&state);
        let text = fs::read_to_string(&log).unwrap_or_default();
        if attempt < 5 && text.contains("NT_STATUS_ADDRESS_ALREADY_ASSOCIATED") {
            eprintln!("harness: samba found a port taken (attempt {attempt}); trying again in 2 s");
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        panic!(
            "samba did not start: {e}\n--- samba log ({}) ---\n{text}",
            log.display()
        );
    };
    if std::env::var_os("IDSYNC_HARNESS_VERBOSE").is_some() {
        eprintln!("harness: samba pid {pid} ready in {:?}", t.elapsed());
    }
    let linger = std::env::var("IDSYNC_SAMBA_LINGER").unwrap_or_else(|_| "3".into());
    let pid_s = pid.to_string();
    let mut watch = Command::new(scripts_dir().join("samba-ad"));
    watch
        .args(["watch", &pid_s])
        .arg(&lock_path)
        .arg(&users_path)
        .arg(&state)
        .arg(&linger)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .env("PATH", sbin_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            File::create(root.join("samba.watch.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        );
    unsafe {
        watch.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    match watch.spawn() {
        // the watchdog outlives us by design; reap it if it exits first
        Ok(child) => reap_in_background(child),
        Err(e) => {
            stop_pid(pid);
            let _ = fs::remove_file(&state);
            panic!("cannot start the samba watchdog: {e}");
        }
    }
    Ok(mk(pid))
}

/// The environment variable tests pass the bind password in (scripts read it with `secret`).
pub const PW_ENV: &str = "IDSYNC_TEST_BIND_PW";

/// An `idsync` command for a test: its own IDSYNC_HOME, no colour, the bind password in
/// [`PW_ENV`], no backtrace variables (so panic text can never be mistaken for output), no stdin.
pub fn idsync_command(home: &Path) -> Command {
    let mut cmd = Command::new(idsync_bin());
    cmd.env("IDSYNC_HOME", home)
        .env("NO_COLOR", "1")
        .env(PW_ENV, "secret")
        .env_remove("RUST_BACKTRACE")
        .env_remove("IDSYNC_BACKTRACE")
        .stdin(Stdio::null());
    cmd
}
