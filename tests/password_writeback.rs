//! Password write-back end to end: `idsync service` with `password_writeback(...)` over HTTPS
//! (a self-signed certificate made with `openssl`, requests made with `curl --cacert`), a CSV →
//! Samba AD users step whose links lead to the accounts, and the shared Samba AD DC (password
//! complexity on). Every effect on AD is checked with a simple bind by `ldapsearch` /
//! `ldapwhoami`, never with idsync; the audit log and every file under IDSYNC_HOME are searched
//! for the passwords sent.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use support::Ldap;
use support::password::{files_containing, password_body, post_json};

const ADMIN_PW_ENV: &str = "IDSYNC_TEST_AD_ADMIN_PW";
const KEY: &str = "test-writeback-key-0123456789abcdef";

fn lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unicode_pwd(pw: &str) -> String {
    let bytes: Vec<u8> = format!("\"{pw}\"")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    B64.encode(bytes)
}

/// A self-signed certificate for 127.0.0.1 (and its key), PEM files in `dir`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A uniquely named OU (removed with everything in it on drop).
struct Scratch<'a> {
    ad: &'a Ldap,
    dn: String,
}

impl<'a> Scratch<'a> {
    fn new(ad: &'a Ldap, prefix: &str) -> Scratch<'a> {
        let dn = format!("OU={},{}", support::unique(prefix), ad.base);
        ad.ldapadd(&format!("dn: {dn}\nobjectClass: organizationalUnit\n"));
        Scratch { ad, dn }
    }

    fn user(&self, cn: &str, sam: &str, pw: &str) -> String {
        let dn = format!("CN={cn},{}", self.dn);
        self.ad.ldapadd(&format!(
            "dn: {dn}\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@example.test\nunicodePwd:: {}\nuserAccountControl: 512\n",
            unicode_pwd(pw)
        ));
        dn
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ldapdelete")
            .env("LDAPCONF", "/dev/null")
            .args([
                "-x",
                "-H",
                &self.ad.url,
                "-D",
                &self.ad.admin_dn,
                "-w",
                &self.ad.admin_pw,
                "-e",
                "!1.2.840.113556.1.4.805",
                &self.dn,
            ])
            .output();
    }
}

/// A simple bind over LDAPS (the server's CA trusted) as `dn` with `pw`, by `ldapsearch` of
/// the root DSE (Samba does not implement the Who-am-I operation `ldapwhoami` sends): true when
/// it binds.
fn bind_ldaps(ad: &Ldap, dn: &str, pw: &str) -> bool {
    Command::new("ldapsearch")
        .env("LDAPCONF", "/dev/null")
        .env("LDAPTLS_CACERT", &ad.ca_file)
        .env("LDAPTLS_REQCERT", "demand")
        .args(["-x", "-H", &ad.ldaps_url, "-D", dn, "-w", pw])
        .args(["-s", "base", "-b", "", "(objectClass=*)", "1.1"])
        .stdin(Stdio::null())
        .output()
        .expect("run ldapwhoami")
        .status
        .success()
}

/// An idsync command with this home, the AD admin password and the write-back key in the
/// environment.
fn idsync(home: &Path, ad: &Ldap) -> Command {
    let mut cmd = support::idsync_command(home);
    cmd.env(ADMIN_PW_ENV, &ad.admin_pw).env("WB_KEY", KEY);
    cmd
}

fn run_script(home: &Path, ad: &Ldap, text: &str) -> (i32, String, String) {
    let f = home.join(format!("{}.rhai", support::unique("s")));
    std::fs::write(&f, text).unwrap();
    let out = idsync(home, ad).arg(&f).output().expect("run idsync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `idsync service`, killed (by its PID) on drop.
struct Service {
    child: Child,
    err: PathBuf,
}

impl Service {
    fn start(home: &Path, ad: &Ldap, script: &str, port: u16) -> Service {
        let file = home.join(format!("{}.rhai", support::unique("svc")));
        std::fs::write(&file, script).unwrap();
        let err = home.join(format!("{}.stderr", support::unique("svc")));
        let child = idsync(home, ad)
            .arg("service")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start idsync service");
        let mut s = Service { child, err };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("the service exited ({st}):\n{}", s.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the service does not listen on {port}:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST `body` to the HTTPS `/v1/password/reset`, trusting `cert`.
fn post(port: u16, cert: &Path, key: Option<&str>, body: &str) -> (u16, String) {
    post_json(
        &format!("https://127.0.0.1:{port}/v1/password/reset"),
        Some(cert),
        key,
        body,
    )
}

fn reset_body(identity: &str, pw: &str) -> String {
    password_body(identity, pw)
}

/// The connection and step both the linking run and the service use.
fn step_script(ad: &Ldap, ou: &str, csv: &Path) -> String {
    format!(
        "let c = connect_ldap({}, #{{ bind_dn: {}, password: secret({}), ca_file: {} }});\n\
         let hr = connect_csv({}, #{{ key: \"employee_id\" }});\n\
         let users = sync_step(\"hr-to-ad/pw-users\", hr, c, #{{\n\
           scope: #{{ where: |e| e.status == \"active\" }},\n\
           join: #{{ sAMAccountName: \"sam\" }},\n\
           flows: #{{ description: \"status\" }},\n\
           target_base: {},\n\
         }});\n",
        lit(&ad.ldaps_url),
        lit(&ad.admin_dn),
        lit(ADMIN_PW_ENV),
        lit(&ad.ca_file),
        lit(&csv.display().to_string()),
        lit(ou),
    )
}

#[test]
fn reset_through_the_link_policy_404_401_403_429_and_an_audit_without_passwords() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "pwb");
    let (sam_a, sam_c, sam_u) = (
        support::unique("pa"),
        support::unique("pc"),
        support::unique("pu"),
    );
    let pw0 = "Start!Passw0rd-1";
    let dn_a = ou.user("Ann Writeback", &sam_a, pw0);
    let dn_c = ou.user("Cid Writeback", &sam_c, pw0);
    let dn_u = ou.user("Una Unlinked", &sam_u, pw0);
    // 1 and 3 are linked by the step's join; 2 has no AD account; Una is in AD only.
    let csv = home.path().join("hr.csv");
    let write_csv = |c_status: &str| {
        std::fs::write(
            &csv,
            format!(
                "employee_id,sam,status\n1,{sam_a},active\n2,nobody{sam_a},active\n3,{sam_c},{c_status}\n"
            ),
        )
        .unwrap()
    };
    write_csv("active");
    let steps = step_script(ad, &ou.dn, &csv);
    let (code, out, err) = run_script(
        home.path(),
        ad,
        &format!(
            "{steps}let r = users.run();\nprint(`ERRORS ${{r.errors}}`);\nprint(`LINKS ${{links(\"hr-to-ad/pw-users\").len()}}`);\n"
        ),
    );
    // row 2 has no AD account and the step creates none: that object fails (exit 3)
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("2: no target object matches"), "{out}{err}");
    assert!(
        out.contains("LINKS 2"),
        "the step linked Ann and Cid: {out}{err}"
    );
    // Cid leaves the step's scope (the link stays until the next run).
    write_csv("inactive");

    let port = free_port();
    let (cert, key) = tls_files(home.path());
    let svc = Service::start(
        home.path(),
        ad,
        &format!(
            "{steps}password_writeback(#{{ step: users, ad: c, listen: \"127.0.0.1:{port}\", tls_cert: {}, tls_key: {}, key: secret(\"WB_KEY\") }});\n",
            lit(&cert.display().to_string()),
            lit(&key.display().to_string())
        ),
        port,
    );
    let weak = "weakpassword";
    let strong = "N3w-Str0ng!Pass";

    // no key, wrong key: 401, nothing changes
    let (s, b) = post(port, &cert, None, &reset_body("1", strong));
    assert_eq!(s, 401, "{b}");
    let (s, b) = post(
        port,
        &cert,
        Some("wrong-key-0123456789abcdef"),
        &reset_body("1", strong),
    );
    assert_eq!(s, 401, "{b}");
    assert!(bind_ldaps(ad, &dn_a, pw0), "a 401 changed nothing");

    // weak: 422 with the policy text, the old password still binds
    let (s, b) = post(port, &cert, Some(KEY), &reset_body("1", weak));
    assert_eq!(s, 422, "{b}\n{}", svc.log());
    assert!(
        b.contains("password does not meet the password policy"),
        "{b}"
    );
    assert!(!b.contains(weak), "the answer quotes the password: {b}");
    assert!(ad.can_bind(&dn_a, pw0), "the old password still binds");

    // strong: 200, the new password binds over LDAPS, the old one no more
    let (s, b) = post(port, &cert, Some(KEY), &reset_body("1", strong));
    assert_eq!(s, 200, "{b}\n{}", svc.log());
    assert!(bind_ldaps(ad, &dn_a, strong), "the new password binds");
    assert!(!bind_ldaps(ad, &dn_a, pw0), "the old password is gone");

    // unlinked: 404 (a source row without an AD account; an AD account outside the links)
    let (s, b) = post(port, &cert, Some(KEY), &reset_body("2", strong));
    assert_eq!(s, 404, "{b}");
    let (s, b) = post(port, &cert, Some(KEY), &reset_body(&sam_u, strong));
    assert_eq!(s, 404, "{b}");
    assert!(ad.can_bind(&dn_u, pw0), "the unlinked account is untouched");

    // linked, but its source row left the step's scope: 403
    let (s, b) = post(port, &cert, Some(KEY), &reset_body("3", strong));
    assert_eq!(s, 403, "{b}");
    assert!(ad.can_bind(&dn_c, pw0), "out of scope: untouched");

    // too many tries for one identity: "2" was tried once; four more are allowed, then 429
    for _ in 0..4 {
        let (s, b) = post(port, &cert, Some(KEY), &reset_body("2", strong));
        assert_eq!(s, 404, "{b}");
    }
    let (s, b) = post(port, &cert, Some(KEY), &reset_body("2", strong));
    assert_eq!(s, 429, "{b}");

    // plain HTTP on the HTTPS port gets no answer
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}/v1/password/reset"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");

    // the audit log: one line per request, results, never a password
    let audit = std::fs::read_to_string(home.path().join("password-audit.log")).unwrap();
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(lines.len(), 12, "one line per request:\n{audit}");
    for want in [
        "status=401",
        "status=422",
        "status=200",
        "status=404",
        "status=403",
        "status=429",
        "caller=127.0.0.1:",
        "identity=\"1\"",
    ] {
        assert!(audit.contains(want), "{want} missing:\n{audit}");
    }
    // status, read from the store by another process
    let (code, out, err) = run_script(
        home.path(),
        ad,
        "let s = password_writeback_status();\n\
         print(`STATUS ${s.enabled} ${s.step} ${s.endpoint} ${s.last_request.status} ${s.last_changed != ()}`);\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "STATUS true hr-to-ad/pw-users https://127.0.0.1:{port}/v1/password/reset 429 true"
        )),
        "{out}"
    );
    drop(svc);
    for pw in [weak, strong] {
        let found = files_containing(home.path(), pw);
        assert!(found.is_empty(), "{pw:?} is written in {found:?}");
    }
}

#[test]
fn disabled_write_back_answers_403_and_the_status_says_so() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "pwd");
    let sam = support::unique("pd");
    let pw0 = "Start!Passw0rd-2";
    let dn = ou.user("Dee Disabled", &sam, pw0);
    let csv = home.path().join("hr.csv");
    std::fs::write(&csv, format!("employee_id,sam,status\n1,{sam},active\n")).unwrap();
    let steps = step_script(ad, &ou.dn, &csv);
    let (code, out, err) = run_script(home.path(), ad, &format!("{steps}users.run();\n"));
    assert_eq!(code, 0, "{out}{err}");
    let (cert, key) = tls_files(home.path());
    let wb = |port: u16, enabled: bool| {
        format!(
            "{steps}password_writeback(#{{ step: users, ad: c, listen: \"127.0.0.1:{port}\", tls_cert: {}, tls_key: {}, key: secret(\"WB_KEY\"), enabled: {enabled} }});\n",
            lit(&cert.display().to_string()),
            lit(&key.display().to_string())
        )
    };
    let status = || {
        let (code, out, err) = run_script(
            home.path(),
            ad,
            "let s = password_writeback_status();\nprint(`STATUS ${s.enabled} ${s.last_changed}`);\n",
        );
        assert_eq!(code, 0, "{out}{err}");
        out.lines()
            .find(|l| l.starts_with("STATUS "))
            .unwrap_or_default()
            .to_string()
    };
    let port = free_port();
    let svc = Service::start(home.path(), ad, &wb(port, true), port);
    let enabled = status();
    assert!(enabled.starts_with("STATUS true "), "{enabled}");
    drop(svc);

    let port2 = free_port();
    let svc = Service::start(home.path(), ad, &wb(port2, false), port2);
    let strong = "N3w-Str0ng!Pass2";
    let (s, b) = post(port2, &cert, Some(KEY), &reset_body("1", strong));
    assert_eq!(s, 403, "{b}\n{}", svc.log());
    assert!(b.contains("disabled"), "{b}");
    assert!(ad.can_bind(&dn, pw0), "disabled: nothing changed");
    // a wrong key is still a 401 (the state is not told to strangers)
    let (s, _) = post(
        port2,
        &cert,
        Some("wrong-key-0123456789abcdef"),
        &reset_body("1", strong),
    );
    assert_eq!(s, 401);
    let disabled = status();
    assert!(disabled.starts_with("STATUS false "), "{disabled}");
    assert_ne!(
        disabled,
        enabled.replace("true", "false"),
        "last_changed moved"
    );
    drop(svc);

    // anything but loopback needs TLS
    let (code, out, err) = run_script(
        home.path(),
        ad,
        &format!(
            "{steps}password_writeback(#{{ step: users, ad: c, listen: \"0.0.0.0:{port2}\", key: secret(\"WB_KEY\") }});\n"
        ),
    );
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("without TLS"), "{err}");
}

/// `curl` over HTTPS to `path` with `extra` arguments and `body` on stdin; the status (0 when
/// curl got no answer).
fn curl_raw(port: u16, cert: &Path, path: &str, extra: &[&str], body: &str) -> u16 {
    let mut child = Command::new("curl")
        .args(["-s", "--max-time", "30", "--cacert"])
        .arg(cert)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            "@-",
        ])
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run curl");
    let _ = child.stdin.take().unwrap().write_all(body.as_bytes());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A raw request (not HTTP) sent over TLS with `openssl s_client`; what came back.
fn tls_raw(port: u16, cert: &Path, raw: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-CAfile"])
        .arg(cert)
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let _ = child.stdin.take().unwrap().write_all(raw);
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

#[test]
fn sighup_with_enabled_false_turns_a_200_into_a_403() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "pwh");
    let sam = support::unique("ph");
    let pw0 = "Start!Passw0rd-5";
    let dn = ou.user("Hal Hup", &sam, pw0);
    let csv = home.path().join("hr.csv");
    std::fs::write(&csv, format!("employee_id,sam,status\n1,{sam},active\n")).unwrap();
    let steps = step_script(ad, &ou.dn, &csv);
    let (code, out, err) = run_script(home.path(), ad, &format!("{steps}users.run();\n"));
    assert_eq!(code, 0, "{out}{err}");
    let (cert, key) = tls_files(home.path());
    let port = free_port();
    let wb = |enabled: bool| {
        format!(
            "{steps}password_writeback(#{{ step: users, ad: c, listen: \"127.0.0.1:{port}\", tls_cert: {}, tls_key: {}, key: secret(\"WB_KEY\"), enabled: {enabled} }});\n",
            lit(&cert.display().to_string()),
            lit(&key.display().to_string())
        )
    };
    let file = home.path().join("hup.rhai");
    std::fs::write(&file, wb(true)).unwrap();
    let err = home.path().join("hup.stderr");
    let child = idsync(home.path(), ad)
        .arg("service")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start idsync service");
    let svc = Service { child, err };
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the service does not listen:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // enabled: a reset is done
    let pw1 = "N3w-Str0ng!Hup1";
    let (s, b) = post(port, &cert, Some(KEY), &reset_body("1", pw1));
    assert_eq!(s, 200, "{b}\n{}", svc.log());
    assert!(bind_ldaps(ad, &dn, pw1), "the reset applied");

    // the script now says enabled: false; after SIGHUP the same endpoint answers 403
    std::fs::write(&file, wb(false)).unwrap();
    unsafe { libc::kill(svc.child.id() as i32, libc::SIGHUP) };
    let t = Instant::now();
    while !svc.log().contains("SIGHUP: password endpoints") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no reload logged:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(svc.log().contains("DISABLED"), "{}", svc.log());
    let pw2 = "N3w-Str0ng!Hup2";
    let (s, b) = post(port, &cert, Some(KEY), &reset_body("1", pw2));
    assert_eq!(s, 403, "{b}\n{}", svc.log());
    assert!(b.contains("disabled"), "{b}");
    assert!(
        ad.can_bind(&dn, pw1),
        "disabled after SIGHUP: nothing changed"
    );
    drop(svc);
    let audit = std::fs::read_to_string(home.path().join("password-audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 2, "one line per request:\n{audit}");
    for pw in [pw1, pw2] {
        let found = files_containing(home.path(), pw);
        assert!(found.is_empty(), "{pw:?} is written in {found:?}");
    }
}

#[test]
fn requests_refused_by_the_http_layer_are_audited_without_their_body() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "pwr");
    let csv = home.path().join("hr.csv");
    std::fs::write(&csv, "employee_id,sam,status\n").unwrap();
    let steps = step_script(ad, &ou.dn, &csv);
    let (cert, key) = tls_files(home.path());
    let port = free_port();
    let svc = Service::start(
        home.path(),
        ad,
        &format!(
            "{steps}password_writeback(#{{ step: users, ad: c, listen: \"127.0.0.1:{port}\", tls_cert: {}, tls_key: {}, key: secret(\"WB_KEY\") }});\n",
            lit(&cert.display().to_string()),
            lit(&key.display().to_string())
        ),
        port,
    );

    // refused before any handler: each is one audit line, with no body in it
    let marker = "Body-Secret!Pw9";
    let big = format!(
        "{{\"identity\":\"1\",\"password\":\"{marker}\",\"pad\":\"{}\"}}",
        "x".repeat(20_000)
    );
    let small = reset_body("1", marker);
    let auth = format!("Authorization: Bearer {KEY}");
    assert_eq!(
        curl_raw(port, &cert, "/v1/password/reset", &["-H", &auth], &big),
        413
    );
    assert_eq!(
        curl_raw(
            port,
            &cert,
            "/v1/password/reset",
            &["-H", &auth, "-H", "Transfer-Encoding: chunked"],
            &small
        ),
        411
    );
    let huge = format!("X-Filler: {}", "y".repeat(9000));
    assert_eq!(
        curl_raw(port, &cert, "/v1/password/reset", &["-H", &huge], &small),
        431
    );
    assert_eq!(
        curl_raw(port, &cert, "/v1/nowhere", &["-H", &auth], &small),
        404
    );
    let answer = tls_raw(
        port,
        &cert,
        format!("GARBAGE\x01 {marker}\r\n\r\n").as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");

    drop(svc);
    let audit = std::fs::read_to_string(home.path().join("password-audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 5, "one line per request:\n{audit}");
    for want in [
        "status=413",
        "status=411",
        "status=431",
        "status=404",
        "status=400",
        "refused by the HTTP layer",
        "/v1/nowhere",
    ] {
        assert!(audit.contains(want), "{want} missing:\n{audit}");
    }
    let found = files_containing(home.path(), marker);
    assert!(found.is_empty(), "the body is written in {found:?}");
}
