//! Password sync end to end: `idsync service` with `password_sync(...)`, an AD → OpenLDAP
//! users step (the shared Samba AD DC as the source, a private slapd as the target) whose links
//! say which account gets the password, `POST /v1/password/changed` made with `curl`. The
//! target's password is checked with `ldapwhoami` as the user, never with idsync. With slapd
//! stopped the change is queued (the queue file is searched for the clear text) and delivered
//! once slapd is back.
//!
//! `samba-tool user syncpasswords --script` (the feeder the README documents) is not run here:
//! it needs the DC's sam.ldb opened locally as root-owned files with the clear-text attribute
//! stored (`password hash userPassword schemes` / `unix password sync`), which the shared test DC
//! is not provisioned with; the endpoint is exercised directly.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use support::Ldap;
use support::password::{files_containing, password_body, post_json};

const ADMIN_PW_ENV: &str = "IDSYNC_TEST_AD_ADMIN_PW";
const KEY: &str = "test-sync-key-0123456789abcdef";
const QUEUE_KEY: &str = "test-queue-key-0123456789abcdef";

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

/// An idsync command with this home, the AD admin password, the endpoint's key and the queue's
/// key in the environment (the slapd admin password is in `support::PW_ENV`).
fn idsync(home: &Path, ad: &Ldap) -> Command {
    let mut cmd = support::idsync_command(home);
    cmd.env(ADMIN_PW_ENV, &ad.admin_pw)
        .env("WB_KEY", KEY)
        .env("PWQ_KEY", QUEUE_KEY);
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

/// POST `body` to the plain-HTTP (loopback) `/v1/password/changed`.
fn post(port: u16, key: Option<&str>, body: &str) -> (u16, String) {
    post_json(
        &format!("http://127.0.0.1:{port}/v1/password/changed"),
        None,
        key,
        body,
    )
}

fn change_body(identity: &str, pw: &str) -> String {
    password_body(identity, pw)
}

/// `ldapwhoami` against slapd as `dn` with `pw`: true when it binds.
fn whoami(l: &Ldap, dn: &str, pw: &str) -> bool {
    Command::new("ldapwhoami")
        .env("LDAPCONF", "/dev/null")
        .args(["-x", "-H", &l.url, "-D", dn, "-w", pw])
        .stdin(Stdio::null())
        .output()
        .expect("run ldapwhoami")
        .status
        .success()
}

fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

#[test]
fn a_change_reaches_the_linked_openldap_account_and_is_queued_while_slapd_is_down() {
    let Some(ad) = support::samba() else { return };
    let Some(mut ol) = support::private_slapd(None) else {
        return;
    };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "pws");
    let sam = support::unique("ps");
    let pw0 = "Start!Passw0rd-3";
    let dn_ad = ou.user("Sam Sync", &sam, pw0);
    let dn_ol = format!("uid={sam},ou=people,dc=example,dc=com");
    ol.ldapadd(&format!(
        "dn: {dn_ol}\nobjectClass: inetOrgPerson\nuid: {sam}\ncn: Sam Sync\nsn: Sync\nuserPassword: Old-Pw-0\n"
    ));
    let steps = format!(
        "let c = connect_ldap({}, #{{ bind_dn: {}, password: secret({}), ca_file: {} }});\n\
         let ol = connect_ldap({}, #{{ bind_dn: {}, password: secret({}) }});\n\
         let users = sync_step(\"ad-to-ldap/pw-users\", c, ol, #{{\n\
           scope: #{{ base: {}, filter: \"(objectClass=user)\" }},\n\
           join: #{{ uid: \"sAMAccountName\" }},\n\
           flows: #{{ description: \"sAMAccountName\" }},\n\
           target_base: \"ou=people,dc=example,dc=com\",\n\
         }});\n",
        lit(&ad.ldaps_url),
        lit(&ad.admin_dn),
        lit(ADMIN_PW_ENV),
        lit(&ad.ca_file),
        lit(&ol.url),
        lit(&ol.admin_dn),
        lit(support::PW_ENV),
        lit(&ou.dn),
    );
    let (code, out, err) = run_script(
        home.path(),
        ad,
        &format!(
            "{steps}users.run();\nprint(`LINKS ${{links(\"ad-to-ldap/pw-users\").len()}}`);\n"
        ),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("LINKS 1"), "{out}{err}");

    let port = free_port();
    let svc = Service::start(
        home.path(),
        ad,
        &format!(
            "{steps}password_sync(#{{ source: c, steps: [users], transform: |pw, e| pw + \"!\", key: secret(\"WB_KEY\"), queue_key: secret(\"PWQ_KEY\"), listen: \"127.0.0.1:{port}\" }});\n"
        ),
        port,
    );
    let (pw1, pw2) = ("Sync-Pw-One1", "Sync-Pw-Two2");

    // no key: 401; an unknown AD identity: 404
    let (s, b) = post(port, None, &change_body(&sam, pw1));
    assert_eq!(s, 401, "{b}");
    let (s, b) = post(port, Some(KEY), &change_body("nosuchuser-xyz", pw1));
    assert_eq!(s, 404, "{b}");

    // by sAMAccountName: delivered at once, through the transform
    let (s, b) = post(port, Some(KEY), &change_body(&sam, pw1));
    assert_eq!(s, 200, "{b}\n{}", svc.log());
    assert!(
        whoami(&ol, &dn_ol, &format!("{pw1}!")),
        "the new password binds"
    );
    assert!(!whoami(&ol, &dn_ol, "Old-Pw-0"), "the old one no more");
    assert!(!whoami(&ol, &dn_ol, pw1), "the transform was applied");

    // slapd down: queued (by DN), the queue file holds no clear text
    ol.kill();
    let (s, b) = post(port, Some(KEY), &change_body(&dn_ad, pw2));
    assert_eq!(s, 202, "{b}\n{}", svc.log());
    assert!(b.contains("queued"), "{b}");
    let queue = home.path().join("password-queue.sealed");
    let raw = std::fs::read(&queue).expect("the queue file exists while slapd is down");
    for needle in [pw2.to_string(), format!("{pw2}!")] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the queue file holds the clear text"
        );
    }
    // slapd back: delivered by the retries, the queue emptied
    ol.restart();
    assert!(
        wait_until(Duration::from_secs(60), || whoami(
            &ol,
            &dn_ol,
            &format!("{pw2}!")
        )),
        "the queued change was not delivered:\n{}",
        svc.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !queue.exists()),
        "the queue is emptied"
    );
    assert!(
        svc.log().contains("delivered the queued change"),
        "{}",
        svc.log()
    );
    drop(svc);
    for pw in [pw1, pw2] {
        let found = files_containing(home.path(), pw);
        assert!(found.is_empty(), "{pw:?} is written in {found:?}");
    }
    let audit = std::fs::read_to_string(home.path().join("password-audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 4, "{audit}");
    assert!(audit.contains("status=202"), "{audit}");
}

/// An AD → Entra users step (the Graph stand-in as the target): a change posted for the AD user
/// sets the linked Entra user's `passwordProfile` (checked in the stand-in's own state). Without
/// the password permission the push fails with the hint and no password in the answer; while
/// Graph throttles every write (429, past the connector's own retries) the change is queued and
/// delivered by the retries once Graph answers again.
#[test]
fn a_change_reaches_the_linked_entra_user_and_is_queued_while_graph_is_unavailable() {
    use support::graph::{GraphFake, Scope, Throttle, USER_ADMINISTRATOR};
    let Some(ad) = support::samba() else { return };
    let az = GraphFake::start();
    let home = support::temp_home();
    let ou = Scratch::new(ad, "pwe");
    let sam = support::unique("pe");
    let dn_ad = ou.user("Eve Entra", &sam, "Start!Passw0rd-4");
    let u = az.add_user(serde_json::json!({
        "userPrincipalName": format!("{sam}@contoso.onmicrosoft.com"),
        "displayName": "Eve Entra", "employeeId": sam, "accountEnabled": true,
    }));
    let steps = format!(
        "let c = connect_ldap({}, #{{ bind_dn: {}, password: secret({}), ca_file: {} }});\n\
         let az = connect_graph(#{{ tenant: {}, client_id: {}, client_secret: secret(\"AZ_SECRET\"), graph_url: {}, authority_url: {} }});\n\
         let users = sync_step(\"ad-to-entra/pw-users\", c, az, #{{\n\
           scope: #{{ base: {}, filter: \"(objectClass=user)\" }},\n\
           join: #{{ employeeId: \"sAMAccountName\" }},\n\
           flows: #{{ department: \"sAMAccountName\" }},\n\
         }});\n",
        lit(&ad.ldaps_url),
        lit(&ad.admin_dn),
        lit(ADMIN_PW_ENV),
        lit(&ad.ca_file),
        lit(&az.tenant_domain()),
        lit(&az.client_id()),
        lit(&az.url()),
        lit(&az.url()),
        lit(&ou.dn),
    );
    let script = |text: &str| {
        let f = home.path().join(format!("{}.rhai", support::unique("s")));
        std::fs::write(&f, text).unwrap();
        f
    };
    let out = idsync(home.path(), ad)
        .env("AZ_SECRET", az.client_secret())
        .arg(script(&format!(
            "{steps}users.run();\nprint(`LINKS ${{links(\"ad-to-entra/pw-users\").len()}}`);\n"
        )))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("LINKS 1"), "{text}");
    assert_eq!(
        az.object(&u).unwrap()["department"],
        sam,
        "joined, not created"
    );

    let port = free_port();
    let file = script(&format!(
        "{steps}password_sync(#{{ source: c, steps: [users], key: secret(\"WB_KEY\"), queue_key: secret(\"PWQ_KEY\"), listen: \"127.0.0.1:{port}\" }});\n"
    ));
    let err = home.path().join("entra-svc.stderr");
    let child = idsync(home.path(), ad)
        .env("AZ_SECRET", az.client_secret())
        .arg("service")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let svc = Service { child, err };
    assert!(
        wait_until(Duration::from_secs(60), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the service does not listen:\n{}",
        svc.log()
    );
    let (pw1, pw2, pw3) = ("Entra-Pw-One1", "Entra-Pw-Two2", "Entra-Pw-Three3");
    let password = || az.object(&u).unwrap()["passwordProfile"]["password"].clone();

    // the app may not set passwords: a failure with the hint, never the password
    let (s, b) = post(port, Some(KEY), &change_body(&sam, pw1));
    assert_eq!(s, 502, "{b}\n{}", svc.log());
    assert!(b.contains("User-PasswordProfile.ReadWrite.All"), "{b}");
    assert!(!b.contains(pw1), "the answer quotes the password: {b}");
    assert_ne!(password(), pw1);

    // with the permission and a role: set at once, no change required at next sign-in
    az.set_password_permission(true);
    az.assign_role(USER_ADMINISTRATOR, &az.app_service_principal_id());
    let (s, b) = post(port, Some(KEY), &change_body(&sam, pw2));
    assert_eq!(s, 200, "{b}\n{}", svc.log());
    assert_eq!(password(), pw2);
    assert_eq!(
        az.object(&u).unwrap()["passwordProfile"]["forceChangePasswordNextSignIn"],
        false
    );

    // Graph throttles (429: not applied; the stand-in applies a write it answers 503) every
    // attempt the connector makes (6 per push): the post and the
    // first two retries (2 s, then 4 s later) are refused, so the change stays queued for
    // seconds; then delivered
    az.throttle(Throttle {
        scope: Scope::Write,
        after: 0,
        count: 18,
        status: 429,
        retry_after: Some(0),
    });
    let (s, b) = post(port, Some(KEY), &change_body(&dn_ad, pw3));
    assert_eq!(s, 202, "{b}\n{}", svc.log());
    assert!(b.contains("queued"), "{b}");
    let patches = || {
        az.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        password(),
        pw2,
        "not set while Graph refused: {:?}\n{}",
        patches(),
        svc.log()
    );
    let queue = home.path().join("password-queue.sealed");
    let raw = std::fs::read(&queue).expect("the queue file exists");
    assert!(
        !raw.windows(pw3.len()).any(|w| w == pw3.as_bytes()),
        "the queue file holds the clear text"
    );
    assert!(
        wait_until(Duration::from_secs(60), || password() == pw3),
        "the queued change was not delivered:\n{}",
        svc.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !queue.exists()),
        "the queue is emptied"
    );
    drop(svc);
    for pw in [pw1, pw2, pw3] {
        let found = files_containing(home.path(), pw);
        assert!(found.is_empty(), "{pw:?} is written in {found:?}");
    }
}

/// A change queued while slapd is down is dropped once it is older than `max_age` (here 3 s
/// through the `IDSYNC_PASSWORD_MAX_AGE_MS` test knob): the log says so by name, the queue file
/// goes, and when slapd comes back the old password still binds (nothing is delivered).
#[test]
fn a_queued_change_older_than_max_age_is_dropped_and_never_delivered() {
    let Some(ad) = support::samba() else { return };
    let Some(mut ol) = support::private_slapd(None) else {
        return;
    };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "pwx");
    let sam = support::unique("px");
    ou.user("Max Age", &sam, "Start!Passw0rd-6");
    let dn_ol = format!("uid={sam},ou=people,dc=example,dc=com");
    ol.ldapadd(&format!(
        "dn: {dn_ol}\nobjectClass: inetOrgPerson\nuid: {sam}\ncn: Max Age\nsn: Age\nuserPassword: Old-Pw-6\n"
    ));
    let steps = format!(
        "let c = connect_ldap({}, #{{ bind_dn: {}, password: secret({}), ca_file: {} }});\n\
         let ol = connect_ldap({}, #{{ bind_dn: {}, password: secret({}) }});\n\
         let users = sync_step(\"ad-to-ldap/pw-age\", c, ol, #{{\n\
           scope: #{{ base: {}, filter: \"(objectClass=user)\" }},\n\
           join: #{{ uid: \"sAMAccountName\" }},\n\
           flows: #{{ description: \"sAMAccountName\" }},\n\
           target_base: \"ou=people,dc=example,dc=com\",\n\
         }});\n",
        lit(&ad.ldaps_url),
        lit(&ad.admin_dn),
        lit(ADMIN_PW_ENV),
        lit(&ad.ca_file),
        lit(&ol.url),
        lit(&ol.admin_dn),
        lit(support::PW_ENV),
        lit(&ou.dn),
    );
    let (code, out, err) = run_script(home.path(), ad, &format!("{steps}users.run();\n"));
    assert_eq!(code, 0, "{out}{err}");

    let port = free_port();
    let file = home.path().join("age.rhai");
    std::fs::write(
        &file,
        format!(
            "{steps}password_sync(#{{ source: c, steps: [users], key: secret(\"WB_KEY\"), queue_key: secret(\"PWQ_KEY\"), listen: \"127.0.0.1:{port}\" }});\n"
        ),
    )
    .unwrap();
    let err = home.path().join("age.stderr");
    let child = idsync(home.path(), ad)
        .env("IDSYNC_PASSWORD_MAX_AGE_MS", "3000")
        .arg("service")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let svc = Service { child, err };
    assert!(
        wait_until(Duration::from_secs(60), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the service does not listen:\n{}",
        svc.log()
    );

    ol.kill();
    let pw = "Aged-Pw-Gone6";
    let (s, b) = post(port, Some(KEY), &change_body(&sam, pw));
    assert_eq!(s, 202, "{b}\n{}", svc.log());
    let queue = home.path().join("password-queue.sealed");
    assert!(queue.exists(), "queued while slapd is down");
    assert!(
        wait_until(Duration::from_secs(60), || svc
            .log()
            .contains("older than max_age")),
        "not dropped:\n{}",
        svc.log()
    );
    assert!(svc.log().contains(&dn_ol), "the log names the account");
    assert!(!queue.exists(), "the queue is empty after the drop");
    ol.restart();
    assert!(
        whoami(&ol, &dn_ol, "Old-Pw-6"),
        "the old password still binds"
    );
    assert!(
        !whoami(&ol, &dn_ol, pw),
        "the dropped change was not delivered"
    );
    drop(svc);
    assert!(files_containing(home.path(), pw).is_empty());
}
