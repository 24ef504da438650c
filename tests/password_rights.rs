//! `ad.check_password_rights` and `ad.grant_password_rights` (API §10) against the shared Samba
//! AD DC (tests/support): an account without the rights is reported lacking them; after
//! `samba-tool dsacl set` adds the Reset/Change Password ACEs it is reported holding them
//! (explicit on the OU, inherited below); an OU whose DACL is protected (set with Samba's own
//! Python library, not with idsync) is listed as blocking inheritance and lacking them; after
//! `grant_password_rights` a second account holds them everywhere, can reset a user's password
//! by binding as itself (ldapmodify over LDAPS; the new password checked with a bind by
//! ldapsearch — Samba does not answer ldapwhoami's extended operation), and a second grant adds
//! nothing.
//!
//! Every effect is checked independently of idsync where it can be (samba-tool, ldapmodify,
//! ldapsearch binds). Each test works in its own uniquely named OU, removed at the end with the
//! tree-delete control (the service accounts live inside it).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value as Json;
use support::Ldap;

const ADMIN_PW_ENV: &str = "IDSYNC_TEST_AD_ADMIN_PW";
const RESET: &str = "00299570-246d-11d0-a768-00aa006e0529";
const CHANGE: &str = "ab721a53-1e2f-11d0-9819-00aa0040529b";
const USER_CLASS: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";

// ---------------------------------------------------------------------------------------------
// helpers

/// A Rhai string literal.
fn lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs `idsync --format json FILE` with `body` after an administrator connection `ad` over
/// LDAPS; returns the printed JSON value of the last expression.
fn run_json(ad: &Ldap, home: &Path, body: &str) -> Json {
    let script = format!(
        "let ad = connect_ldap({}, #{{ bind_dn: {}, password: secret({}), ca_file: {} }});\n{body}\n",
        lit(&ad.ldaps_url),
        lit(&ad.admin_dn),
        lit(ADMIN_PW_ENV),
        lit(&ad.ca_file)
    );
    let file = home.join(format!("{}.rhai", support::unique("s")));
    std::fs::write(&file, &script).unwrap();
    let out = Command::new(support::idsync_bin())
        .args(["--format", "json"])
        .arg(&file)
        .env("IDSYNC_HOME", home)
        .env("NO_COLOR", "1")
        .env(ADMIN_PW_ENV, &ad.admin_pw)
        .env_remove("RUST_BACKTRACE")
        .env_remove("IDSYNC_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "idsync failed ({})\n--- script ---\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains(&ad.admin_pw) && !stderr.contains(&ad.admin_pw),
        "the password leaked"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// `ad.check_password_rights(account, #{ base })` as rows keyed by lower-case OU DN.
fn check(ad: &Ldap, home: &Path, account: &str, base: &str) -> Vec<Json> {
    let v = run_json(
        ad,
        home,
        &format!(
            "ad.check_password_rights({}, #{{ base: {} }})",
            lit(account),
            lit(base)
        ),
    );
    v.as_array().expect("an array of rows").clone()
}

/// The row of `dn` in check output.
fn row<'a>(rows: &'a [Json], dn: &str) -> &'a Json {
    rows.iter()
        .find(|r| {
            r["object"]
                .as_str()
                .is_some_and(|o| o.eq_ignore_ascii_case(dn))
        })
        .unwrap_or_else(|| panic!("no row for {dn} in {rows:#?}"))
}

/// Runs an OpenLDAP client tool against LDAPS bound as `dn` / `pw`, trusting the right CA.
fn ldap_as(
    ad: &Ldap,
    tool: &str,
    dn: &str,
    pw: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(tool)
        .env("LDAPCONF", "/dev/null")
        .env("LDAPTLS_CACERT", &ad.ca_file)
        .env("LDAPTLS_REQCERT", "demand")
        .args(["-x", "-H", &ad.ldaps_url, "-D", dn, "-w", pw])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

/// `unicodePwd` value for LDIF: base64 of the quoted password in UTF-16LE.
fn unicode_pwd(pw: &str) -> String {
    let bytes: Vec<u8> = format!("\"{pw}\"")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    B64.encode(bytes)
}

/// A binary SID as `S-1-5-…` (our own reading, independent of idsync).
fn sid_text(b: &[u8]) -> String {
    let authority = b[2..8].iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
    let subs: Vec<String> = b[8..]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()).to_string())
        .collect();
    format!("S-{}-{authority}-{}", b[0], subs.join("-"))
}

/// A password Samba's complexity policy accepts.
fn password() -> String {
    format!("Pr-{}-9a!", support::unique("p"))
}

/// A uniquely named OU under the domain, removed with everything in it on drop.
struct Scratch<'a> {
    ad: &'a Ldap,
    dn: String,
}

impl<'a> Scratch<'a> {
    fn new(ad: &'a Ldap) -> Scratch<'a> {
        let dn = format!("OU={},{}", support::unique("pr"), ad.base);
        ad.ldapadd(&format!("dn: {dn}\nobjectClass: organizationalUnit\n"));
        Scratch { ad, dn }
    }

    /// An OU directly below the scratch OU; returns its DN.
    fn ou(&self, name: &str) -> String {
        let dn = format!("OU={name},{}", self.dn);
        self.ad
            .ldapadd(&format!("dn: {dn}\nobjectClass: organizationalUnit\n"));
        dn
    }

    /// An enabled user in `parent` with `password`; returns (DN, sAMAccountName).
    fn user(&self, parent: &str, prefix: &str, password: &str) -> (String, String) {
        let sam = support::unique(prefix);
        let dn = format!("CN={sam},{parent}");
        self.ad.ldapadd(&format!(
            "dn: {dn}\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@example.test\n\
             unicodePwd:: {}\nuserAccountControl: 512\n",
            unicode_pwd(password)
        ));
        (dn, sam)
    }

    /// The objectSid of `dn`, read with ldapsearch.
    fn sid(&self, dn: &str) -> String {
        let out = self.ad.ldapsearch(dn, "base", "", &["objectSid"]);
        let b64 = out
            .lines()
            .find_map(|l| l.strip_prefix("objectSid:: "))
            .unwrap_or_else(|| panic!("no objectSid on {dn}: {out}"));
        sid_text(&B64.decode(b64.trim()).unwrap())
    }

    /// Sets SE_DACL_PROTECTED on `dn` ("blocks inheritance") with Samba's own Python library
    /// on the local database, as `samba-tool dsacl` does.
    fn block_inheritance(&self, dn: &str) {
        let py = r#"
import sys
from samba.samdb import SamDB
from samba.param import LoadParm
from samba.auth import system_session
from samba.sd_utils import SDUtils
from samba.dcerpc import security
conf, dn = sys.argv[1], sys.argv[2]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
u = SDUtils(db)
sd = u.read_sd_on_dn(dn, controls=["sd_flags:1:4"])
sd.type |= security.SEC_DESC_DACL_PROTECTED
u.modify_sd_on_dn(dn, sd, controls=["sd_flags:1:4"])
print(u.get_sd_as_sddl(dn, controls=["sd_flags:1:4"]))
"#;
        let out = Command::new(samba_python())
            .args(["-c", py])
            .arg(self.ad.smb_conf())
            .arg(dn)
            .stdin(Stdio::null())
            .output()
            .expect("run python3");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("D:P"),
            "blocking inheritance on {dn} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds the Reset and Change Password ACEs for `sid` on `dn` with `samba-tool dsacl set`.
    fn dsacl_grant(&self, dn: &str, sid: &str) {
        for right in [RESET, CHANGE] {
            self.ad.samba_tool(&[
                "dsacl",
                "set",
                &format!("--objectdn={dn}"),
                &format!("--sddl=(OA;CI;CR;{right};{USER_CLASS};{sid})"),
            ]);
        }
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
            .stdin(Stdio::null())
            .output();
    }
}

/// The Python that runs samba-tool (its `#!` line): the one with Samba's modules, which need
/// not be the first `python3` on PATH.
fn samba_python() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v samba-tool"])
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("sh");
    let tool = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::read_to_string(&tool)
        .ok()
        .and_then(|t| {
            let first = t.lines().next()?.strip_prefix("#!")?.trim().to_string();
            // `#!/usr/bin/env python3` names the interpreter second
            let mut words = first.split_whitespace();
            let a = words.next()?.to_string();
            Some(if a.ends_with("/env") {
                words.next()?.to_string()
            } else {
                a
            })
        })
        .unwrap_or_else(|| "/usr/bin/python3".into())
}

/// Resets `user`'s password to `new` over LDAPS bound as `who` (ldapmodify); Ok or the error.
fn reset_as(ad: &Ldap, who: (&str, &str), user: &str, new: &str) -> Result<(), String> {
    let ldif = format!(
        "dn: {user}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n-\n",
        unicode_pwd(new)
    );
    let out = ldap_as(ad, "ldapmodify", who.0, who.1, &[], Some(&ldif));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// True when a simple bind as `dn` with `pw` over LDAPS succeeds (ldapsearch of the root DSE;
/// Samba does not answer ldapwhoami's "Who am I?" extended operation, so the bind is checked
/// with a search instead).
fn binds(ad: &Ldap, dn: &str, pw: &str) -> bool {
    ldap_as(
        ad,
        "ldapsearch",
        dn,
        pw,
        &["-s", "base", "-b", "", "(objectClass=*)", "1.1"],
        None,
    )
    .status
    .success()
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn an_account_without_the_rights_is_reported_lacking_them_and_holding_them_after_dsacl_set() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let s = Scratch::new(ad);
    let child = s.ou("Staff");
    let (svc_dn, svc) = s.user(&s.dn, "svc", &password());

    let rows = check(ad, home.path(), &svc, &s.dn);
    assert_eq!(rows.len(), 2, "the base and the OU below it: {rows:#?}");
    for dn in [&s.dn, &child] {
        let r = row(&rows, dn);
        assert_eq!(r["holds"], Json::Bool(false), "{r:#}");
        assert_eq!(r["reset_password"], "missing", "{r:#}");
        assert_eq!(r["change_password"], "missing", "{r:#}");
        assert_eq!(r["blocks_inheritance"], Json::Bool(false), "{r:#}");
    }

    s.dsacl_grant(&s.dn, &s.sid(&svc_dn));
    // by UPN this time: the same account
    let rows = check(ad, home.path(), &format!("{svc}@example.test"), &s.dn);
    let base = row(&rows, &s.dn);
    assert_eq!(base["holds"], Json::Bool(true), "{base:#}");
    assert_eq!(base["reset_password"], "explicit", "{base:#}");
    assert_eq!(base["change_password"], "explicit", "{base:#}");
    let below = row(&rows, &child);
    assert_eq!(below["holds"], Json::Bool(true), "{below:#}");
    assert_eq!(below["reset_password"], "inherited", "{below:#}");
    assert_eq!(below["change_password"], "inherited", "{below:#}");

    // another account is still lacking them
    let (_, other) = s.user(&s.dn, "oth", &password());
    let rows = check(ad, home.path(), &other, &s.dn);
    assert!(
        rows.iter().all(|r| r["holds"] == Json::Bool(false)),
        "{rows:#?}"
    );
}

#[test]
fn an_ou_blocking_inheritance_is_listed_as_lacking_the_rights() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let s = Scratch::new(ad);
    let open = s.ou("Open");
    let closed = s.ou("Closed");
    s.block_inheritance(&closed);
    let (svc_dn, svc) = s.user(&s.dn, "svc", &password());
    s.dsacl_grant(&s.dn, &s.sid(&svc_dn));

    let rows = check(ad, home.path(), &svc_dn, &s.dn);
    let r = row(&rows, &open);
    assert_eq!(r["holds"], Json::Bool(true), "{r:#}");
    assert_eq!(r["blocks_inheritance"], Json::Bool(false), "{r:#}");
    let r = row(&rows, &closed);
    assert_eq!(r["blocks_inheritance"], Json::Bool(true), "{r:#}");
    assert_eq!(r["holds"], Json::Bool(false), "{r:#}");
    assert_eq!(r["reset_password"], "missing", "{r:#}");
    assert!(
        r["note"].as_str().unwrap().contains("blocks inheritance"),
        "{r:#}"
    );
    let blocked: Vec<&str> = rows
        .iter()
        .filter(|r| r["blocks_inheritance"] == Json::Bool(true) && r["holds"] == Json::Bool(false))
        .map(|r| r["object"].as_str().unwrap())
        .collect();
    assert_eq!(blocked.len(), 1, "{rows:#?}");
    assert!(blocked[0].eq_ignore_ascii_case(&closed), "{blocked:?}");
    let _ = svc;
}

#[test]
fn granted_rights_let_the_account_reset_a_password_and_a_second_grant_adds_nothing() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let s = Scratch::new(ad);
    let open = s.ou("Open");
    let closed = s.ou("Closed");
    s.block_inheritance(&closed);
    let svc_pw = password();
    let (svc_dn, svc) = s.user(&s.dn, "svc", &svc_pw);
    let (ann_pw, bob_pw) = (password(), password());
    let (ann, _) = s.user(&open, "ann", &ann_pw);
    let (bob, _) = s.user(&closed, "bob", &bob_pw);

    // without the rights the service account cannot reset a password
    let denied = reset_as(ad, (&svc_dn, &svc_pw), &ann, &password());
    assert!(denied.is_err(), "reset worked without the rights");

    // preview: the ACEs it would add, nothing written
    let grant = |commit: bool| {
        run_json(
            ad,
            home.path(),
            &format!(
                "ad.grant_password_rights({}, #{{ base: {}, commit: {commit} }})",
                lit(&svc),
                lit(&s.dn)
            ),
        )
        .as_array()
        .unwrap()
        .clone()
    };
    let preview = grant(false);
    let sid = s.sid(&svc_dn);
    let would: Vec<(String, String)> = preview
        .iter()
        .map(|r| {
            assert_eq!(r["op"], "would add", "{r:#}");
            (
                r["object"].as_str().unwrap().to_lowercase(),
                r["ace"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for dn in [&s.dn, &closed] {
        for right in [RESET, CHANGE] {
            let ace = format!("(OA;CIIO;CR;{right};{USER_CLASS};{sid})");
            assert!(
                would.contains(&(dn.to_lowercase(), ace.clone())),
                "{ace} on {dn} missing from {would:#?}"
            );
        }
    }
    assert_eq!(would.len(), 4, "{would:#?}");
    assert!(
        check(ad, home.path(), &svc, &s.dn)
            .iter()
            .all(|r| r["holds"] == Json::Bool(false)),
        "the preview wrote"
    );

    let done = grant(true);
    assert_eq!(done.len(), 4, "{done:#?}");
    assert!(done.iter().all(|r| r["op"] == "added"), "{done:#?}");
    let rows = check(ad, home.path(), &svc, &s.dn);
    assert!(
        rows.iter().all(|r| r["holds"] == Json::Bool(true)),
        "{rows:#?}"
    );
    assert_eq!(row(&rows, &open)["reset_password"], "inherited");
    assert_eq!(row(&rows, &closed)["reset_password"], "explicit");
    // samba-tool sees the ACE on the base
    let sddl = ad.samba_tool(&["dsacl", "get", &format!("--objectdn={}", s.dn)]);
    assert!(
        sddl.to_lowercase()
            .contains(&format!("(oa;ciio;cr;{RESET};{USER_CLASS};{sid})").to_lowercase()),
        "{sddl}"
    );

    // idempotent: a second grant adds nothing
    let again = grant(true);
    assert!(
        !again.is_empty() && again.iter().all(|r| r["op"] == "present"),
        "{again:#?}"
    );

    // the service account resets passwords by binding as itself, in both OUs
    for (user, old) in [(&ann, &ann_pw), (&bob, &bob_pw)] {
        assert!(binds(ad, user, old), "{user} cannot bind before the reset");
        let new = password();
        reset_as(ad, (&svc_dn, &svc_pw), user, &new)
            .unwrap_or_else(|e| panic!("reset of {user} as the service account failed: {e}"));
        assert!(
            binds(ad, user, &new),
            "{user} cannot bind with the new password"
        );
        assert!(
            !binds(ad, user, old),
            "{user} still binds with the old password"
        );
    }
}

#[test]
fn on_an_openldap_connection_it_is_an_error_that_says_active_directory_is_needed() {
    let Some(ol) = support::slapd() else { return };
    let home = support::temp_home();
    let script = format!(
        "let c = connect_ldap({}, #{{ bind_dn: {}, password: secret({}) }});\n\
         c.check_password_rights(\"ann\", #{{ base: {} }})\n",
        lit(&ol.url),
        lit(&ol.admin_dn),
        lit(support::PW_ENV),
        lit(&ol.base)
    );
    let file = home.path().join("check.rhai");
    std::fs::write(&file, &script).unwrap();
    let out = support::idsync_command(home.path())
        .env(support::PW_ENV, &ol.admin_pw)
        .arg(&file)
        .output()
        .expect("run idsync");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "check_password_rights needs an Active Directory connection (this one is openldap)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
