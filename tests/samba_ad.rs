//! End-to-end tests of the `idsync` binary against the shared Samba AD DC (tests/support):
//! flavour detection, objectGUID / objectSid decoding checked against the raw bytes the server
//! returns, identity lookup, every object function, userAccountControl bit 2, unicodePwd over
//! LDAPS / StartTLS only, the password-policy message, TLS verification and bind errors.
//!
//! Every effect is checked independently of idsync, with `ldapsearch` / `ldapmodify` output or a
//! simple bind. Each test works in its own uniquely named OU (removed at the end with the tree
//! delete control), so the tests are safe to run in parallel and against a reused Samba.
//! The administrator password reaches scripts only through an environment variable and
//! `secret("...")`, never literally.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use support::Ldap;

/// Environment variable holding the administrator password for scripts.
const ADMIN_PW_ENV: &str = "IDSYNC_TEST_AD_ADMIN_PW";

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs `idsync FILE` with `script` written to a file under `home` (IDSYNC_HOME), plain output,
/// the admin password in [`ADMIN_PW_ENV`] and `extra_env`. Returns (exit code, stdout, stderr).
fn run_with(
    home: &Path,
    script: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> (i32, String, String) {
    let ad = support::samba().expect("samba");
    let file = tempfile::Builder::new()
        .prefix("script-")
        .suffix(".rhai")
        .tempfile_in(home)
        .expect("temp script");
    std::fs::write(file.path(), script).expect("write script");
    let mut cmd = Command::new(support::idsync_bin());
    cmd.args(args)
        .arg(file.path())
        .env("IDSYNC_HOME", home)
        .env("NO_COLOR", "1")
        .env(ADMIN_PW_ENV, &ad.admin_pw)
        .env_remove("RUST_BACKTRACE")
        .env_remove("IDSYNC_BACKTRACE")
        .stdin(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked") && !stdout.contains("panicked"),
        "Rust panic text in the output:\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains(&ad.admin_pw) && !stdout.contains(&ad.admin_pw),
        "the administrator password leaked into the output:\n{stdout}\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `run_with` without extra arguments or environment.
fn run(home: &Path, script: &str) -> (i32, String, String) {
    run_with(home, script, &[], &[])
}

/// Like [`run`] but asserts exit 0 and returns stdout.
fn run_ok(home: &Path, script: &str) -> String {
    run_ok_with(home, script, &[])
}

fn run_ok_with(home: &Path, script: &str, extra_env: &[(&str, &str)]) -> String {
    let (code, out, err) = run_with(home, script, &[], extra_env);
    assert_eq!(
        code, 0,
        "idsync failed\n--- script ---\n{script}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    out
}

/// A Rhai string literal.
fn lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// How a script connects.
enum Via {
    /// ldaps://127.0.0.1:636 with the right CA
    Ldaps,
    /// ldap://127.0.0.1 with tls: "starttls" and the right CA
    StartTls,
    /// plain ldap://127.0.0.1
    Plain,
}

/// `let c = connect_ldap(...);` as administrator.
fn connect(ad: &Ldap, via: Via) -> String {
    let opts = format!(
        "bind_dn: {}, password: secret({})",
        lit(&ad.admin_dn),
        lit(ADMIN_PW_ENV)
    );
    match via {
        Via::Ldaps => format!(
            "let c = connect_ldap({}, #{{ {opts}, ca_file: {} }});\n",
            lit(&ad.ldaps_url),
            lit(&ad.ca_file)
        ),
        Via::StartTls => format!(
            "let c = connect_ldap({}, #{{ {opts}, tls: \"starttls\", ca_file: {} }});\n",
            lit(&ad.url),
            lit(&ad.ca_file)
        ),
        Via::Plain => format!("let c = connect_ldap({}, #{{ {opts} }});\n", lit(&ad.url)),
    }
}

/// Runs an OpenLDAP client tool as administrator against `url`, trusting the right CA.
fn ldap_cmd(ad: &Ldap, tool: &str, url: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .env("LDAPCONF", "/dev/null")
        .env("LDAPTLS_CACERT", &ad.ca_file)
        .env("LDAPTLS_REQCERT", "demand")
        .args(["-x", "-H", url, "-D", &ad.admin_dn, "-w", &ad.admin_pw])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

/// Values of `attr` in ldapsearch LDIF output (first entry only): plain values as given,
/// base64 values (`attr:: ...`) decoded to bytes. Continuation lines are unfolded.
fn ldif_values(ldif: &str, attr: &str) -> Vec<Vec<u8>> {
    let mut lines: Vec<String> = Vec::new();
    for l in ldif.lines() {
        if let (Some(rest), Some(last)) = (l.strip_prefix(' '), lines.last_mut()) {
            last.push_str(rest);
            continue;
        }
        lines.push(l.to_string());
    }
    let mut out = Vec::new();
    let mut seen_dn = false;
    for l in lines {
        if l.is_empty() {
            if seen_dn {
                break;
            }
            continue;
        }
        if l.starts_with("dn:") {
            seen_dn = true;
        }
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if !name.eq_ignore_ascii_case(attr) {
            continue;
        }
        if let Some(b) = rest.strip_prefix(':') {
            out.push(B64.decode(b.trim()).expect("base64 value"));
        } else {
            out.push(rest.strip_prefix(' ').unwrap_or(rest).as_bytes().to_vec());
        }
    }
    out
}

/// Text values of `attr` in ldapsearch LDIF output.
fn ldif_text(ldif: &str, attr: &str) -> Vec<String> {
    ldif_values(ldif, attr)
        .into_iter()
        .map(|v| String::from_utf8(v).expect("utf-8 value"))
        .collect()
}

/// The raw base64 text of `attr:: ...` lines in LDIF (unfolded).
fn ldif_b64(ldif: &str, attr: &str) -> Option<String> {
    let mut joined = String::new();
    for l in ldif.lines() {
        match l.strip_prefix(' ') {
            Some(rest) => joined.push_str(rest),
            None => {
                joined.push('\n');
                joined.push_str(l);
            }
        }
    }
    joined.lines().find_map(|l| {
        let (name, rest) = l.split_once("::")?;
        name.eq_ignore_ascii_case(attr)
            .then(|| rest.trim().to_string())
    })
}

/// All DNs in ldapsearch output.
fn ldif_dns(ldif: &str) -> Vec<String> {
    ldif.lines()
        .filter_map(|l| l.strip_prefix("dn: "))
        .map(str::to_string)
        .collect()
}

/// One entry's attributes by base search; `None` when it does not exist.
fn read_entry(ad: &Ldap, dn: &str, attrs: &[&str]) -> Option<String> {
    let parent = dn.split_once(',').map(|x| x.1).unwrap_or(dn);
    let rdn = dn.split_once(',').map(|x| x.0).unwrap_or(dn);
    // one-level search under the parent: no error when the entry is absent
    let out = ad.ldapsearch(parent, "one", &format!("({rdn})"), attrs);
    ldif_dns(&out)
        .iter()
        .any(|d| d.eq_ignore_ascii_case(dn))
        .then_some(out)
}

/// The integer userAccountControl of `dn`, read with ldapsearch.
fn uac(ad: &Ldap, dn: &str) -> u32 {
    let out = ad.ldapsearch(dn, "base", "", &["userAccountControl"]);
    ldif_text(&out, "userAccountControl")
        .first()
        .unwrap_or_else(|| panic!("no userAccountControl on {dn}: {out}"))
        .parse()
        .unwrap()
}

/// `unicodePwd` value for LDIF: base64 of the quoted password in UTF-16LE.
fn unicode_pwd(pw: &str) -> String {
    let bytes: Vec<u8> = format!("\"{pw}\"")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    B64.encode(bytes)
}

/// A uniquely named OU directly under the domain, created with ldapadd and removed (with
/// everything in it) on drop by the tree-delete control.
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

    /// Creates a user with sAMAccountName `sam` (and UPN), enabled with `password` (over
    /// LDAPS) when given; returns its DN.
    fn user(&self, cn: &str, sam: &str, password: Option<&str>) -> String {
        let dn = format!("CN={cn},{}", self.dn);
        let mut ldif = format!(
            "dn: {dn}\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@example.test\n"
        );
        if let Some(pw) = password {
            ldif.push_str(&format!(
                "unicodePwd:: {}\nuserAccountControl: 512\n",
                unicode_pwd(pw)
            ));
        }
        self.ad.ldapadd(&ldif);
        dn
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = ldap_cmd(
            self.ad,
            "ldapdelete",
            &self.ad.url,
            &["-e", "!1.2.840.113556.1.4.805", &self.dn],
        );
    }
}

/// Our own .NET-order rendering of 16 objectGUID bytes: Data1 (u32), Data2 and Data3 (u16)
/// little-endian, then the 8 remaining bytes in order.
fn expected_guid(b: &[u8]) -> String {
    assert_eq!(b.len(), 16, "objectGUID is 16 bytes");
    let d1 = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let d2 = u16::from_le_bytes(b[4..6].try_into().unwrap());
    let d3 = u16::from_le_bytes(b[6..8].try_into().unwrap());
    let tail: String = b[8..].iter().map(|x| format!("{x:02x}")).collect();
    format!("{d1:08x}-{d2:04x}-{d3:04x}-{}-{}", &tail[..4], &tail[4..])
}

/// Our own rendering of a binary SID: S-revision-authority(48-bit BE)-subauthorities(u32 LE).
fn expected_sid(b: &[u8]) -> String {
    let count = b[1] as usize;
    assert_eq!(b.len(), 8 + 4 * count, "SID length");
    let authority = b[2..8].iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
    let subs: Vec<String> = b[8..]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()).to_string())
        .collect();
    format!("S-{}-{authority}-{}", b[0], subs.join("-"))
}

/// The stdout lines that start with `prefix`, without it.
fn tagged<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(prefix)).collect()
}

/// The single stdout line starting with `prefix`, without it.
fn tag<'a>(out: &'a str, prefix: &str) -> &'a str {
    let v = tagged(out, prefix);
    assert_eq!(v.len(), 1, "expected one '{prefix}' line in:\n{out}");
    v[0]
}

// ---------------------------------------------------------------------------------------------
// 1. flavour

#[test]
fn test_reports_ad_flavor_over_ldaps() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let script = format!(
        "{}let t = c.test();\n\
         print(\"flavor=\" + t.flavor);\n\
         print(\"bound=\" + t.bound);\n\
         print(\"reachable=\" + t.reachable);\n\
         print(\"tls=\" + t.tls);\n\
         print(\"vendor=\" + t.vendor);\n\
         for n in t.naming_contexts {{ print(\"nc=\" + n) }}\n\
         print(\"is_ad=\" + (c.flavor == \"ad\"));\n\
         print(\"kind=\" + c.kind);\n",
        connect(ad, Via::Ldaps)
    );
    let out = run_ok(home.path(), &script);
    assert_eq!(tag(&out, "flavor="), "ad", "{out}");
    assert_eq!(tag(&out, "bound="), "true", "{out}");
    assert_eq!(tag(&out, "reachable="), "true", "{out}");
    assert_eq!(tag(&out, "tls="), "ldaps", "{out}");
    assert!(tag(&out, "vendor=").contains("Samba"), "{out}");
    assert_eq!(tag(&out, "is_ad="), "true", "{out}");
    assert_eq!(tag(&out, "kind="), "ldap", "{out}");
    let ncs = tagged(&out, "nc=");
    assert!(
        ncs.iter()
            .any(|n| n.eq_ignore_ascii_case("DC=example,DC=test")),
        "{out}"
    );
    // the same contexts as the server's own rootDSE says
    let root = ad.ldapsearch("", "base", "", &["namingContexts"]);
    for nc in ldif_text(&root, "namingContexts") {
        assert!(ncs.contains(&nc.as_str()), "{nc} missing from {ncs:?}");
    }

    // the flavour is detected on a plain connection too, without being told
    let out = run_ok(
        home.path(),
        &format!("{}print(\"flavor=\" + c.flavor);", connect(ad, Via::Plain)),
    );
    assert_eq!(tag(&out, "flavor="), "ad", "{out}");
}

// ---------------------------------------------------------------------------------------------
// 2. objectGUID / objectSid decoding

#[test]
fn guid_and_sid_decode_like_the_raw_server_bytes() {
    let Some(ad) = support::samba() else { return };
    let ou = Scratch::new(ad, "og");
    let sam = support::unique("g");
    let dn = ou.user("Guid Test", &sam, None);

    // the raw bytes, straight from the server
    let raw = ad.ldapsearch(&dn, "base", "", &["objectGUID", "objectSid"]);
    let guid_b64 = ldif_b64(&raw, "objectGUID").expect("objectGUID:: in ldapsearch output");
    let guid_bytes = ldif_values(&raw, "objectGUID").remove(0);
    let sid_bytes = ldif_values(&raw, "objectSid").remove(0);
    let guid = expected_guid(&guid_bytes);
    let sid = expected_sid(&sid_bytes);
    assert!(sid.starts_with("S-1-5-21-"), "{sid}");

    let home = support::temp_home();
    let script = format!(
        "{}let e = c.get({});\n\
         print(\"guid=\" + e.objectGUID);\n\
         print(\"sid=\" + e.objectSid);\n\
         print(\"anchor=\" + e.anchor);\n\
         print(\"type=\" + type_of(e.objectGUID));\n",
        connect(ad, Via::Ldaps),
        lit(&dn)
    );
    let out = run_ok(home.path(), &script);
    assert_eq!(tag(&out, "guid="), guid, "{out}");
    assert_eq!(tag(&out, "sid="), sid, "{out}");
    assert_eq!(tag(&out, "anchor="), guid, "{out}");
    assert_eq!(tag(&out, "type="), "string", "{out}");

    // --format json shows the same strings
    let script = format!("{}c.get({})", connect(ad, Via::Ldaps), lit(&dn));
    let (code, out, err) = run_with(home.path(), &script, &["--format", "json"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let obj = v.as_object().expect("one entry as a JSON object");
    let get = |k: &str| {
        obj.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    assert_eq!(get("objectGUID"), serde_json::json!(guid), "{out}");
    assert_eq!(get("objectSid"), serde_json::json!(sid), "{out}");
    assert_eq!(get("dn"), serde_json::json!(dn), "{out}");

    // --format ldif writes the raw bytes, base64, exactly as the server's own LDIF does
    let (code, out, err) = run_with(home.path(), &script, &["--format", "ldif"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        ldif_b64(&out, "objectGUID").as_deref(),
        Some(guid_b64.as_str()),
        "{out}"
    );
    assert_eq!(
        ldif_b64(&out, "objectSid"),
        ldif_b64(&raw, "objectSid"),
        "{out}"
    );
    assert_eq!(ldif_dns(&out), vec![dn.clone()], "{out}");

    // a well-known SID too: the domain Administrator ends in -500 of the same domain
    let admin = ad.ldapsearch(&ad.admin_dn, "base", "", &["objectSid"]);
    let admin_sid = expected_sid(&ldif_values(&admin, "objectSid")[0]);
    assert!(admin_sid.ends_with("-500"), "{admin_sid}");
    assert_eq!(
        admin_sid.rsplit_once('-').unwrap().0,
        sid.rsplit_once('-').unwrap().0,
        "same domain SID"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. get() by every kind of identity

#[test]
fn get_by_dn_guid_sid_sam_and_upn_finds_the_same_entry() {
    let Some(ad) = support::samba() else { return };
    let ou = Scratch::new(ad, "oi");
    let sam = support::unique("i");
    let dn = ou.user("Ident Test", &sam, None);
    let raw = ad.ldapsearch(&dn, "base", "", &["objectGUID", "objectSid"]);
    let guid = expected_guid(&ldif_values(&raw, "objectGUID")[0]);
    let sid = expected_sid(&ldif_values(&raw, "objectSid")[0]);
    let upn = format!("{sam}@example.test");

    let identities = [
        dn.clone(),
        dn.to_lowercase(),
        guid.clone(),
        guid.to_uppercase(),
        format!("{{{guid}}}"),
        sid.clone(),
        sam.clone(),
        sam.to_uppercase(),
        upn.clone(),
    ];
    let mut script = connect(ad, Via::Ldaps);
    for (i, id) in identities.iter().enumerate() {
        script.push_str(&format!("print(\"{i}=\" + c.get({}).dn);\n", lit(id)));
    }
    // nothing matches: () rather than an error
    script.push_str("print(\"none=\" + type_of(c.get(\"nosuchaccount-zz9\")));\n");
    script.push_str(
        "print(\"noguid=\" + type_of(c.get(\"00000000-1111-2222-3333-444444444444\")));\n",
    );
    let home = support::temp_home();
    let out = run_ok(home.path(), &script);
    for (i, id) in identities.iter().enumerate() {
        let got = tag(&out, &format!("{i}="));
        assert!(
            got.eq_ignore_ascii_case(&dn),
            "get({id:?}) gave {got:?}, want {dn:?}\n{out}"
        );
    }
    assert_eq!(tag(&out, "none="), "()", "{out}");
    assert_eq!(tag(&out, "noguid="), "()", "{out}");
}

/// Issue 10 item 1: non-ASCII sAMAccountName / CN / UPN are ordinary identities on AD. Before
/// the fix the SID check sliced the first two bytes of `Søren…` / `山田…` and the process ended
/// with "internal error: end byte index 2 is not a char boundary", past `try`/`catch`.
#[test]
fn non_ascii_identities_get_delete_members_authenticate() {
    let Some(ad) = support::samba() else { return };
    let ou = Scratch::new(ad, "on");
    let u = support::unique("");
    let sam = format!("Sø{u}");
    let cn = format!("山田 Søren {u}");
    let upn = format!("山田{u}@example.test");
    let dn = format!("CN={cn},{}", ou.dn);
    let gdn = format!("CN=Gruppe Ø {u},{}", ou.dn);
    let home = support::temp_home();
    let script = format!(
        "{}c.create({}, #{{ objectClass: \"user\", sAMAccountName: {}, userPrincipalName: {} }});\n\
         c.create({}, #{{ objectClass: \"group\", sAMAccountName: {} }});\n\
         c.add_member({}, {});\n\
         print(\"by-sam=\" + c.get({}).dn);\n\
         print(\"by-upn=\" + c.get({}).dn);\n\
         print(\"by-dn=\" + c.get({}).sAMAccountName);\n\
         print(\"members=\" + c.members({}).len());\n\
         print(\"plain=\" + type_of(c.get(\"Søren\")) + type_of(c.get(\"山田\")));\n\
         print(\"auth=\" + c.authenticate({}, \"Wrong-1!\"));\n\
         let r = \"none\";\n\
         try {{ c.members(\"山田-nobody\"); r = \"returned\"; }} catch (e) {{ r = \"caught: \" + e; }}\n\
         print(\"members-missing=\" + r);\n\
         r = \"none\";\n\
         try {{ c.delete(\"Søren-nobody\"); r = \"returned\"; }} catch (e) {{ r = \"caught: \" + e; }}\n\
         print(\"delete-missing=\" + r);\n\
         c.delete({});\n\
         print(\"after=\" + type_of(c.get({})));\n",
        connect(ad, Via::Ldaps),
        lit(&dn),
        lit(&sam),
        lit(&upn),
        lit(&gdn),
        lit(&format!("gø{u}")),
        lit(&gdn),
        lit(&sam),
        lit(&sam),
        lit(&upn),
        lit(&dn),
        lit(&gdn),
        lit(&sam),
        lit(&sam),
        lit(&sam),
    );
    let out = run_ok(home.path(), &script);
    assert!(tag(&out, "by-sam=").eq_ignore_ascii_case(&dn), "{out}");
    assert!(tag(&out, "by-upn=").eq_ignore_ascii_case(&dn), "{out}");
    assert_eq!(tag(&out, "by-dn="), sam, "{out}");
    assert_eq!(tag(&out, "members="), "1", "{out}");
    assert_eq!(tag(&out, "plain="), "()()", "{out}");
    assert_eq!(tag(&out, "auth="), "false", "{out}");
    let m = tag(&out, "members-missing=");
    assert!(
        m.starts_with("caught: ") && m.contains("山田-nobody"),
        "{m}"
    );
    let d = tag(&out, "delete-missing=");
    assert!(
        d.starts_with("caught: ") && d.contains("Søren-nobody"),
        "{d}"
    );
    assert_eq!(tag(&out, "after="), "()", "{out}");
    // independently (ldapsearch base64-encodes these DNs, hence the count of `dn:` lines):
    // the group is there under its UTF-8 name, the user is gone
    let count = |filter: &str| {
        let out = ad.ldapsearch(&ou.dn, "sub", filter, &["1.1"]);
        out.lines().filter(|l| l.starts_with("dn:")).count()
    };
    assert_eq!(
        count(&format!("(sAMAccountName=gø{u})")),
        1,
        "group {gdn} missing"
    );
    assert_eq!(count(&format!("(cn={cn})")), 0, "user {dn} not deleted");
    assert_eq!(
        count("(cn=Gruppe Ø*)"),
        1,
        "the group's CN is stored as UTF-8"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. create / modify / rename / move / members / delete

#[test]
fn object_lifecycle_create_modify_rename_move_members_delete() {
    let Some(ad) = support::samba() else { return };
    let ou = Scratch::new(ad, "ol");
    let target = format!("OU=target,{}", ou.dn);
    ad.ldapadd(&format!("dn: {target}\nobjectClass: organizationalUnit\n"));
    let sam = support::unique("u");
    let gsam = support::unique("gr");
    let other = support::unique("o");
    let other_dn = ou.user("Other Person", &other, None);
    let user_dn = format!("CN=Ann Lee,{}", ou.dn);
    let group_dn = format!("CN=Staff {gsam},{}", ou.dn);
    let home = support::temp_home();
    let conn = connect(ad, Via::Ldaps);

    // create
    let out = run_ok(
        home.path(),
        &format!(
            "{conn}let u = c.create({}, #{{ objectClass: \"user\", sAMAccountName: {}, \
             userPrincipalName: {}, givenName: \"Ann\", sn: \"Lee\" }});\n\
             print(\"user=\" + u.dn);\n\
             print(\"uguid=\" + u.objectGUID);\n\
             let g = c.create({}, #{{ objectClass: [\"top\", \"group\"], sAMAccountName: {} }});\n\
             print(\"group=\" + g.dn);\n",
            lit(&user_dn),
            lit(&sam),
            lit(&format!("{sam}@example.test")),
            lit(&group_dn),
            lit(&gsam)
        ),
    );
    assert!(tag(&out, "user=").eq_ignore_ascii_case(&user_dn), "{out}");
    assert!(tag(&out, "group=").eq_ignore_ascii_case(&group_dn), "{out}");
    let u = read_entry(
        ad,
        &user_dn,
        &[
            "sAMAccountName",
            "userPrincipalName",
            "givenName",
            "sn",
            "objectClass",
            "objectGUID",
        ],
    )
    .expect("user created");
    assert_eq!(ldif_text(&u, "sAMAccountName"), vec![sam.clone()]);
    assert_eq!(
        ldif_text(&u, "userPrincipalName"),
        vec![format!("{sam}@example.test")]
    );
    assert_eq!(ldif_text(&u, "givenName"), vec!["Ann"]);
    assert_eq!(ldif_text(&u, "sn"), vec!["Lee"]);
    assert!(ldif_text(&u, "objectClass").contains(&"user".to_string()));
    let guid = expected_guid(&ldif_values(&u, "objectGUID")[0]);
    assert_eq!(tag(&out, "uguid="), guid, "create returns the stored entry");
    let g = read_entry(ad, &group_dn, &["sAMAccountName", "objectClass"]).expect("group created");
    assert_eq!(ldif_text(&g, "sAMAccountName"), vec![gsam.clone()]);
    assert!(ldif_text(&g, "objectClass").contains(&"group".to_string()));

    // modify: replace + add (by sAMAccountName)
    run_ok(
        home.path(),
        &format!(
            "{conn}c.modify({}, #{{ replace: #{{ title: \"Engineer\", sn: \"Lee-Smith\" }}, \
             add: #{{ otherTelephone: [\"+1 555 0100\", \"+1 555 0101\"] }} }});\n",
            lit(&sam)
        ),
    );
    let u = read_entry(
        ad,
        &user_dn,
        &["title", "sn", "otherTelephone", "givenName"],
    )
    .unwrap();
    assert_eq!(ldif_text(&u, "title"), vec!["Engineer"], "{u}");
    assert_eq!(ldif_text(&u, "sn"), vec!["Lee-Smith"], "{u}");
    let mut phones = ldif_text(&u, "otherTelephone");
    phones.sort();
    assert_eq!(phones, vec!["+1 555 0100", "+1 555 0101"], "{u}");

    // modify: delete one value, delete a whole attribute, replace with () clears (by GUID)
    run_ok(
        home.path(),
        &format!(
            "{conn}c.modify({}, #{{ delete: #{{ otherTelephone: \"+1 555 0100\", givenName: () }} }});\n\
             c.modify({}, #{{ replace: #{{ title: () }} }});\n",
            lit(&guid),
            lit(&user_dn)
        ),
    );
    let u = read_entry(
        ad,
        &user_dn,
        &["title", "sn", "otherTelephone", "givenName"],
    )
    .unwrap();
    assert_eq!(ldif_text(&u, "otherTelephone"), vec!["+1 555 0101"], "{u}");
    assert!(ldif_text(&u, "givenName").is_empty(), "{u}");
    assert!(ldif_text(&u, "title").is_empty(), "{u}");
    assert_eq!(ldif_text(&u, "sn"), vec!["Lee-Smith"], "{u}");

    // rename (by sAMAccountName)
    let renamed = format!("CN=Ann Lee-Smith,{}", ou.dn);
    let out = run_ok(
        home.path(),
        &format!(
            "{conn}print(\"new=\" + c.rename({}, \"CN=Ann Lee-Smith\"));\n",
            lit(&sam)
        ),
    );
    assert!(tag(&out, "new=").eq_ignore_ascii_case(&renamed), "{out}");
    assert!(read_entry(ad, &user_dn, &["1.1"]).is_none(), "old DN gone");
    let u = read_entry(ad, &renamed, &["sAMAccountName", "objectGUID"]).expect("renamed entry");
    assert_eq!(ldif_text(&u, "sAMAccountName"), vec![sam.clone()]);
    assert_eq!(
        expected_guid(&ldif_values(&u, "objectGUID")[0]),
        guid,
        "same object"
    );

    // move into the OU (by UPN)
    let moved = format!("CN=Ann Lee-Smith,{target}");
    let out = run_ok(
        home.path(),
        &format!(
            "{conn}print(\"new=\" + c.move({}, {}));\n",
            lit(&format!("{sam}@example.test")),
            lit(&target)
        ),
    );
    assert!(tag(&out, "new=").eq_ignore_ascii_case(&moved), "{out}");
    assert!(read_entry(ad, &renamed, &["1.1"]).is_none(), "old DN gone");
    let u = read_entry(ad, &moved, &["objectGUID"]).expect("moved entry");
    assert_eq!(expected_guid(&ldif_values(&u, "objectGUID")[0]), guid);

    // members: add twice (not an error), list
    let out = run_ok(
        home.path(),
        &format!(
            "{conn}c.add_member({g}, {m});\n\
             c.add_member({g}, {m});\n\
             c.add_member({g}, {o});\n\
             for m in c.members({g}) {{ print(\"member=\" + m) }}\n",
            g = lit(&gsam),
            m = lit(&sam),
            o = lit(&other_dn)
        ),
    );
    let listed = tagged(&out, "member=");
    let g = read_entry(ad, &group_dn, &["member"]).unwrap();
    let mut server_members = ldif_text(&g, "member");
    server_members.sort();
    let mut want = [moved.clone(), other_dn.clone()];
    want.sort();
    assert_eq!(
        server_members
            .iter()
            .map(|s| s.to_lowercase())
            .collect::<Vec<_>>(),
        want.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>(),
        "{g}"
    );
    let mut listed: Vec<String> = listed.iter().map(|s| s.to_lowercase()).collect();
    listed.sort();
    assert_eq!(
        listed,
        want.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>(),
        "members() agrees with the server\n{out}"
    );
    // the server's own back-link agrees
    let u = read_entry(ad, &moved, &["memberOf"]).unwrap();
    assert!(
        ldif_text(&u, "memberOf")
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&group_dn)),
        "{u}"
    );

    // remove twice (second time: not a member, not an error), and a never-member
    let never = support::unique("n");
    let never_dn = ou.user("Never Member", &never, None);
    let out = run_ok(
        home.path(),
        &format!(
            "{conn}c.remove_member({g}, {m});\n\
             c.remove_member({g}, {m});\n\
             c.remove_member({g}, {n});\n\
             print(\"count=\" + c.members({g}).len());\n",
            g = lit(&group_dn),
            m = lit(&sam),
            n = lit(&never_dn)
        ),
    );
    assert_eq!(tag(&out, "count="), "1", "{out}");
    let g = read_entry(ad, &group_dn, &["member"]).unwrap();
    let left = ldif_text(&g, "member");
    assert_eq!(left.len(), 1, "{g}");
    assert!(left[0].eq_ignore_ascii_case(&other_dn), "{g}");

    // delete user (by GUID) and group (by DN)
    run_ok(
        home.path(),
        &format!(
            "{conn}c.delete({});\nc.delete({});\n",
            lit(&guid),
            lit(&group_dn)
        ),
    );
    assert!(read_entry(ad, &moved, &["1.1"]).is_none(), "user deleted");
    assert!(
        read_entry(ad, &group_dn, &["1.1"]).is_none(),
        "group deleted"
    );
    let left = ad.ldapsearch(&ou.dn, "sub", &format!("(sAMAccountName={sam})"), &["1.1"]);
    assert!(ldif_dns(&left).is_empty(), "{left}");

    // deleting it again names the object
    let (code, out, err) = run(home.path(), &format!("{conn}c.delete({});\n", lit(&moved)));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.to_lowercase().contains("no such object"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 5. disable / enable

#[test]
fn disable_and_enable_flip_only_bit_2() {
    let Some(ad) = support::samba() else { return };
    let ou = Scratch::new(ad, "od");
    let sam = support::unique("d");
    let pw = "Start!Pass123";
    let dn = ou.user("Dis Able", &sam, Some(pw));
    assert_eq!(uac(ad, &dn), 512, "fixture starts as NORMAL_ACCOUNT");
    assert!(ad.can_bind(&dn, pw));
    let home = support::temp_home();
    let conn = connect(ad, Via::Plain);

    run_ok(home.path(), &format!("{conn}c.disable({});", lit(&sam)));
    assert_eq!(uac(ad, &dn), 514);
    assert!(!ad.can_bind(&dn, pw), "a disabled account cannot bind");
    // disabling again changes nothing
    run_ok(home.path(), &format!("{conn}c.disable({});", lit(&dn)));
    assert_eq!(uac(ad, &dn), 514);

    run_ok(home.path(), &format!("{conn}c.enable({});", lit(&sam)));
    assert_eq!(uac(ad, &dn), 512);
    assert!(ad.can_bind(&dn, pw), "enabled again");

    // with DONT_EXPIRE_PASSWORD (0x10000) set, the other bits are kept
    ad.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 66048\n"
    ));
    assert_eq!(uac(ad, &dn), 66048);
    run_ok(home.path(), &format!("{conn}c.disable({});", lit(&sam)));
    assert_eq!(uac(ad, &dn), 66050);
    run_ok(home.path(), &format!("{conn}c.enable({});", lit(&sam)));
    assert_eq!(uac(ad, &dn), 66048);

    // enabling an enabled account changes nothing
    run_ok(home.path(), &format!("{conn}c.enable({});", lit(&sam)));
    assert_eq!(uac(ad, &dn), 66048);
}

// ---------------------------------------------------------------------------------------------
// 6. set_password / authenticate

#[test]
fn set_password_over_ldaps_and_starttls_then_authenticate_refused_on_plain() {
    let Some(ad) = support::samba() else { return };
    let ou = Scratch::new(ad, "op");
    let sam = support::unique("p");
    let pw0 = "Initial!Pass0";
    let dn = ou.user("Pass Word", &sam, Some(pw0));
    assert!(ad.can_bind(&dn, pw0));
    let home = support::temp_home();
    let (pw1, pw2, pw3) = ("Second!Pass1x", "Third!Pass2yz", "Fourth!Pass3q");
    let env = [
        ("U_PW1", pw1),
        ("U_PW2", pw2),
        ("U_PW3", pw3),
        ("U_BAD", "Wrong!Pass999"),
    ];

    // LDAPS
    let script = format!(
        "{}c.set_password({s}, secret(\"U_PW1\"));\n\
         print(\"new=\" + c.authenticate({s}, secret(\"U_PW1\")));\n\
         print(\"wrong=\" + c.authenticate({s}, secret(\"U_BAD\")));\n\
         print(\"old=\" + c.authenticate({s}, {old}));\n\
         print(\"empty=\" + c.authenticate({s}, \"\"));\n",
        connect(ad, Via::Ldaps),
        s = lit(&sam),
        old = lit(pw0),
    );
    let out = run_ok_with(home.path(), &script, &env);
    assert_eq!(tag(&out, "new="), "true", "{out}");
    assert_eq!(tag(&out, "wrong="), "false", "{out}");
    assert_eq!(tag(&out, "old="), "false", "{out}");
    assert_eq!(tag(&out, "empty="), "false", "{out}");
    assert!(
        !out.contains(pw1),
        "the password must not be printed: {out}"
    );
    assert!(ad.can_bind(&dn, pw1), "new password binds");
    assert!(!ad.can_bind(&dn, pw0), "old password no longer binds");

    // StartTLS (by DN), authenticate over the same kind of connection
    let script = format!(
        "{}c.set_password({d}, secret(\"U_PW2\"));\n\
         print(\"new=\" + c.authenticate({d}, secret(\"U_PW2\")));\n\
         print(\"prev=\" + c.authenticate({d}, secret(\"U_PW1\")));\n",
        connect(ad, Via::StartTls),
        d = lit(&dn),
    );
    let out = run_ok_with(home.path(), &script, &env);
    assert_eq!(tag(&out, "new="), "true", "{out}");
    assert_eq!(tag(&out, "prev="), "false", "{out}");
    assert!(ad.can_bind(&dn, pw2));
    assert!(!ad.can_bind(&dn, pw1));

    // plain LDAP: refused before anything is sent
    let script = format!(
        "{}c.set_password({}, secret(\"U_PW3\"));\nprint(\"not reached\");\n",
        connect(ad, Via::Plain),
        lit(&sam)
    );
    let (code, out, err) = run_with(home.path(), &script, &[], &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("not reached"), "{out}");
    assert!(err.contains("encrypted connection"), "{err}");
    assert!(err.contains("set_password"), "{err}");
    assert!(!err.contains(pw3), "the password must not be echoed: {err}");
    assert!(ad.can_bind(&dn, pw2), "the old password still binds");
    assert!(!ad.can_bind(&dn, pw3), "the refused password was never set");

    // authenticate itself works on a plain connection (a bind, no password write)
    let script = format!(
        "{}print(\"ok=\" + c.authenticate({s}, secret(\"U_PW2\")));\n\
         print(\"bad=\" + c.authenticate({s}, secret(\"U_BAD\")));\n",
        connect(ad, Via::Plain),
        s = lit(&sam)
    );
    let out = run_ok_with(home.path(), &script, &env);
    assert_eq!(tag(&out, "ok="), "true", "{out}");
    assert_eq!(tag(&out, "bad="), "false", "{out}");
}

// ---------------------------------------------------------------------------------------------
// 7. password policy

#[test]
fn policy_rejection_is_explained_with_the_server_code() {
    let Some(ad) = support::samba() else { return };
    let ou = Scratch::new(ad, "oq");
    let sam = support::unique("q");
    let pw0 = "Policy!Start1";
    let dn = ou.user("Pol Icy", &sam, Some(pw0));
    let home = support::temp_home();
    // too short, and long enough but without complexity (lowercase letters only)
    for bad in ["abc", "abcdefghijkl"] {
        let script = format!(
            "{}c.set_password({}, secret(\"U_BAD\"));\n",
            connect(ad, Via::Ldaps),
            lit(&sam)
        );
        let (code, out, err) = run_with(home.path(), &script, &[], &[("U_BAD", bad)]);
        assert_eq!(code, 1, "{bad}: {out}{err}");
        assert!(
            err.contains("password does not meet the password policy"),
            "{bad}: {err}"
        );
        assert!(
            err.contains("LDAP 19") || err.contains("0000052D"),
            "{bad}: server code missing: {err}"
        );
        assert!(
            err.contains(&dn) || err.to_lowercase().contains(&dn.to_lowercase()),
            "the message names the object: {err}"
        );
        assert!(
            err.contains(":1:") || err.contains(":2:"),
            "location: {err}"
        );
        assert!(ad.can_bind(&dn, pw0), "{bad}: the password is unchanged");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. TLS verification

#[test]
fn tls_verifies_with_the_right_ca_and_fails_clearly_with_a_wrong_one() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let open = |url: &str, extra: &str| {
        format!(
            "let c = connect_ldap({}, #{{ bind_dn: {}, password: secret({}){extra} }});\n\
             let t = c.test();\nprint(\"bound=\" + t.bound);\nprint(\"tls=\" + t.tls);\n\
             print(\"n=\" + c.search(\"(objectClass=domain)\", #{{ scope: \"base\", base: {} }}).len());\n",
            lit(url),
            lit(&ad.admin_dn),
            lit(ADMIN_PW_ENV),
            lit(&ad.base),
        )
    };
    let ca = format!(", ca_file: {}", lit(&ad.ca_file));
    let wrong = format!(", ca_file: {}", lit(&ad.wrong_ca_file));

    // right CA: LDAPS and StartTLS
    let out = run_ok(home.path(), &open(&ad.ldaps_url, &ca));
    assert_eq!(tag(&out, "bound="), "true", "{out}");
    assert_eq!(tag(&out, "tls="), "ldaps", "{out}");
    assert_eq!(tag(&out, "n="), "1", "{out}");
    let out = run_ok(
        home.path(),
        &open(&ad.url, &format!("{ca}, tls: \"starttls\"")),
    );
    assert_eq!(tag(&out, "bound="), "true", "{out}");
    assert_eq!(tag(&out, "tls="), "starttls", "{out}");

    // wrong CA: LDAPS and StartTLS fail clearly at connect
    for (url, extra) in [
        (ad.ldaps_url.as_str(), wrong.clone()),
        (ad.url.as_str(), format!("{wrong}, tls: \"starttls\"")),
    ] {
        let (code, out, err) = run(home.path(), &open(url, &extra));
        assert_eq!(code, 1, "{url} {extra}: {out}{err}");
        assert!(!out.contains("bound="), "{out}");
        let lower = err.to_lowercase();
        assert!(
            lower.contains("certificate") && lower.contains("tls"),
            "{url}: unclear TLS error: {err}"
        );
        assert!(err.contains("connect_ldap"), "{err}");
        assert!(err.contains(":1:"), "location: {err}");
        assert!(!err.contains(&ad.admin_pw), "{err}");
    }

    // verify: false accepts any CA (and no CA at all)
    for extra in [
        format!("{wrong}, verify: false"),
        ", verify: false".to_string(),
    ] {
        let out = run_ok(home.path(), &open(&ad.ldaps_url, &extra));
        assert_eq!(tag(&out, "bound="), "true", "{extra}: {out}");
        assert_eq!(tag(&out, "n="), "1", "{out}");
    }
    let out = run_ok(
        home.path(),
        &open(
            &ad.url,
            &format!("{wrong}, verify: false, tls: \"starttls\""),
        ),
    );
    assert_eq!(tag(&out, "tls="), "starttls", "{out}");
}

// ---------------------------------------------------------------------------------------------
// 9. wrong bind password

#[test]
fn wrong_admin_password_is_invalid_credentials() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let bad = "Not!TheAdminPw7";
    for (url, extra) in [
        (ad.url.clone(), String::new()),
        (
            ad.ldaps_url.clone(),
            format!(", ca_file: {}", lit(&ad.ca_file)),
        ),
    ] {
        let script = format!(
            "let c = connect_ldap({}, #{{ bind_dn: {}, password: secret(\"BAD_PW\"){extra} }});\n\
             print(\"connected\");\n",
            lit(&url),
            lit(&ad.admin_dn)
        );
        let (code, out, err) = run_with(home.path(), &script, &[], &[("BAD_PW", bad)]);
        assert_eq!(code, 1, "{url}: {out}{err}");
        assert!(!out.contains("connected"), "{out}");
        assert!(err.contains("invalid credentials"), "{url}: {err}");
        assert!(err.contains(&ad.admin_dn), "names who: {err}");
        assert!(!err.contains(bad), "the password must not be echoed: {err}");
    }
    assert!(!ad.can_bind(&ad.admin_dn, bad));
    assert!(ad.can_bind(&ad.admin_dn, &ad.admin_pw));
}

// ---------------------------------------------------------------------------------------------
// 10. a large group

#[test]
fn members_of_a_1600_member_group() {
    let Some(ad) = support::samba() else { return };
    let t = Instant::now();
    let ou = Scratch::new(ad, "ob");
    const N: usize = 1600;
    let gsam = support::unique("bg");
    let group_dn = format!("CN={gsam},{}", ou.dn);
    let mut ldif = String::with_capacity(N * 100);
    for i in 0..N {
        ldif.push_str(&format!(
            "dn: CN=c{i:04},{}\nobjectClass: contact\n\n",
            ou.dn
        ));
    }
    ldif.push_str(&format!(
        "dn: {group_dn}\nobjectClass: group\nsAMAccountName: {gsam}\n"
    ));
    for i in 0..N {
        ldif.push_str(&format!("member: CN=c{i:04},{}\n", ou.dn));
    }
    ad.ldapadd(&ldif);
    let setup = t.elapsed();

    let home = support::temp_home();
    let script = format!(
        "{}let m = c.members({});\nprint(\"len=\" + m.len());\nfor x in m {{ print(\"m=\" + x) }}\n",
        connect(ad, Via::Ldaps),
        lit(&gsam)
    );
    let out = run_ok(home.path(), &script);
    assert_eq!(
        tag(&out, "len="),
        N.to_string(),
        "{}",
        &out[..out.len().min(2000)]
    );
    let mut got: Vec<String> = tagged(&out, "m=")
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), N, "distinct members");
    assert_eq!(got[0], format!("cn=c0000,{}", ou.dn.to_lowercase()));
    assert_eq!(
        got[N - 1],
        format!("cn=c{:04},{}", N - 1, ou.dn.to_lowercase())
    );

    // cleanup: the group first (its member links make deleting the contacts slow otherwise)
    let _ = ldap_cmd(ad, "ldapdelete", &ad.url, &[&group_dn]);
    eprintln!(
        "members_of_a_1600_member_group: setup {setup:?}, total before cleanup {:?}",
        t.elapsed()
    );
}

#[test]
fn sync_from_ad_reads_only_changes_after_the_first_run_by_usnchanged() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "incr");
    for i in 0..12 {
        ou.user(&format!("Incr User {i:02}"), &format!("incr{i:02}"), None);
    }
    let out_file = home.path().join("ad.csv");
    let script = format!(
        "{}let out = connect_csv({}, #{{ key: \"sam\" }});\n\
         let s = sync_step(\"ad-to-csv\", c, out, #{{\n\
           scope: #{{ base: {}, filter: \"(&(objectClass=user)(!(description=skip)))\", attrs: [\"sAMAccountName\", \"cn\", \"description\"] }},\n\
           create: #{{ parent: \"\", rdn: |e| e.sAMAccountName }},\n\
           flows: #{{ sam: \"sAMAccountName\", name: \"cn\", note: \"description\" }},\n\
           deprovision: #{{ action: \"delete\" }},\n\
         }});\n\
         let r = s.run(#{{ allow_deletes: 2 }});\n\
         print(`REPORT created=${{r.created}} updated=${{r.updated}} deprovisioned=${{r.deprovisioned}} unchanged=${{r.unchanged}}`);\n",
        connect(ad, Via::Ldaps),
        lit(&out_file.display().to_string()),
        lit(&ou.dn)
    );
    let report = |out: &str| tag(out, "REPORT ").to_string();
    let out = run_ok(home.path(), &script);
    assert_eq!(
        report(&out),
        "created=12 updated=0 deprovisioned=0 unchanged=0",
        "{out}"
    );

    let out = run_ok(home.path(), &script);
    assert_eq!(
        report(&out),
        "created=0 updated=0 deprovisioned=0 unchanged=12",
        "{out}"
    );
    let line = support::planned_line(home.path());
    assert!(
        line.contains("planned: 0 source objects (changes since the last run only)"),
        "{line}"
    );

    // One change, one deletion, one user leaving the scope.
    let dn = |i: usize| format!("CN=Incr User {i:02},{}", ou.dn);
    ad.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nreplace: description\ndescription: new note\n",
        dn(1)
    ));
    ad.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nreplace: description\ndescription: skip\n",
        dn(2)
    ));
    ad.ldapmodify(&format!("dn: {}\nchangetype: delete\n", dn(3)));
    let out = run_ok(home.path(), &script);
    assert_eq!(
        report(&out),
        "created=0 updated=1 deprovisioned=2 unchanged=9",
        "{out}"
    );
    let line = support::planned_line(home.path());
    assert!(
        line.contains("planned: 1 source objects (changes since the last run only)"),
        "{line}"
    );
    let csv = std::fs::read_to_string(&out_file).unwrap();
    assert!(csv.contains("new note"), "{csv}");
    assert!(!csv.contains("incr02") && !csv.contains("incr03"), "{csv}");
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 16: leavers and rehires

/// A person who leaves is disabled (userAccountControl bit 2), moved into a leavers OU outside
/// the step's `target_base` and prefixed; when the person is active again in HR, the same AD
/// object is enabled, moved back and unprefixed — no second account.
#[test]
fn rehire_restores_the_disabled_ad_account_from_the_leavers_ou() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "rh");
    let people = format!("OU=people,{}", ou.dn);
    let leavers = format!("OU=leavers,{}", ou.dn);
    for dn in [&people, &leavers] {
        ad.ldapadd(&format!("dn: {dn}\nobjectClass: organizationalUnit\n"));
    }
    let sam = support::unique("rh");
    let hr = home.path().join("hr.csv");
    let write_hr = |status: &str| {
        std::fs::write(
            &hr,
            format!(
                "employee_id,first,last,sam,status\n\
                 1,Ann,Lee,{sam},{status}\n2,Bob,Ray,{sam}b,active\n"
            ),
        )
        .unwrap();
    };
    write_hr("active");
    let script = |tail: &str| {
        format!(
            "{}let hr = connect_csv({}, #{{ key: \"employee_id\" }});\n\
             let s = sync_step(\"hr-to-ad/rehire\", hr, c, #{{\n\
               scope: #{{ where: |e| e.status == \"active\" }},\n\
               create: #{{ parent: {}, rdn: |e| `CN=${{e.first}} ${{e.last}}`,\n\
                           class: [\"top\", \"person\", \"organizationalPerson\", \"user\"] }},\n\
               flows: #{{ sAMAccountName: #{{ value: \"sam\", once: true }}, givenName: \"first\", sn: \"last\",\n\
                          userPrincipalName: |e| `${{e.sam}}@example.test`,\n\
                          mail: |e| `${{e.sam}}@example.test` }},\n\
               deprovision: #{{ action: \"disable_move\", parent: {}, prefix: [\"mail\"] }},\n\
               target_base: {},\n\
             }});\n{tail}\n",
            connect(ad, Via::Ldaps),
            lit(&hr.display().to_string()),
            lit(&people),
            lit(&leavers),
            lit(&people)
        )
    };
    let run_report = |tail: &str| {
        let out = run_ok(
            home.path(),
            &script(&format!(
                "{tail}\nlet r = s.run(#{{ allow_deletes: 1 }});\n\
                 print(`REPORT created=${{r.created}} updated=${{r.updated}} moved=${{r.moved}} deprovisioned=${{r.deprovisioned}} failed=${{r.failed}}`);"
            )),
        );
        (tag(&out, "REPORT ").to_string(), out)
    };
    let (r, out) = run_report("");
    assert_eq!(
        r, "created=2 updated=0 moved=0 deprovisioned=0 failed=0",
        "{out}"
    );
    let dn = format!("CN=Ann Lee,{people}");
    let guid_of = |dn: &str| {
        let e = read_entry(ad, dn, &["objectGUID"]).unwrap_or_else(|| panic!("{dn} missing"));
        ldif_b64(&e, "objectGUID").expect("objectGUID")
    };
    let guid = guid_of(&dn);
    // The account is in use: enabled (PASSWD_NOTREQD keeps Samba happy without a password).
    ad.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 544\n"
    ));
    assert_eq!(uac(ad, &dn), 544);

    // Ann leaves.
    write_hr("left");
    let (r, out) = run_report("");
    assert_eq!(
        r, "created=0 updated=0 moved=0 deprovisioned=1 failed=0",
        "{out}"
    );
    let gone = format!("CN=Ann Lee,{leavers}");
    assert!(read_entry(ad, &dn, &["cn"]).is_none(), "not moved");
    assert_eq!(guid_of(&gone), guid);
    assert_eq!(uac(ad, &gone) & 2, 2, "not disabled");
    let mail = ldif_text(&read_entry(ad, &gone, &["mail"]).unwrap(), "mail");
    assert!(
        mail.len() == 1 && mail[0].ends_with(&format!("-{sam}@example.test")) && mail[0].len() > 9,
        "{mail:?}"
    );

    // Ann is back: the preview shows the restore, the run restores the same account.
    write_hr("active");
    let out = run_ok(
        home.path(),
        &script("for r in s.preview() { print(`ROW ${r.op}|${r.object}|${r[\"new\"]}`); }"),
    );
    assert!(
        tagged(&out, "ROW ")
            .iter()
            .any(|r| r.starts_with("restore|")
                && r.to_ascii_lowercase().contains(&gone.to_ascii_lowercase())),
        "{out}"
    );
    assert!(!out.contains("ROW create|"), "{out}");
    let (r, out) = run_report("");
    assert_eq!(
        r, "created=0 updated=1 moved=1 deprovisioned=0 failed=0",
        "{out}"
    );
    assert!(read_entry(ad, &gone, &["cn"]).is_none(), "still in leavers");
    assert_eq!(guid_of(&dn), guid, "another account instead of the old one");
    assert_eq!(uac(ad, &dn), 544, "not enabled again (only bit 2 cleared)");
    let mail = ldif_text(&read_entry(ad, &dn, &["mail"]).unwrap(), "mail");
    assert_eq!(mail, [format!("{sam}@example.test")]);
    let all = ad.ldapsearch(&ou.dn, "sub", &format!("(sAMAccountName={sam})"), &["1.1"]);
    assert_eq!(ldif_dns(&all).len(), 1, "duplicated: {all}");
    let (r, out) = run_report("");
    assert_eq!(
        r, "created=0 updated=0 moved=0 deprovisioned=0 failed=0",
        "{out}"
    );
}

/// Issue 10, item 17 on AD: the plan is checked against Samba's schema (CN=Aggregate, with the
/// `user` class's inherited and auxiliary attributes): a normal user create with
/// sAMAccountName, userPrincipalName, names, mail (Unicode on AD, so non-ASCII is fine) raises
/// no false alarm; a value that does not fit its syntax, or an unknown attribute, is a preview
/// row and a failure of that object only.
#[test]
fn preview_checks_writes_against_the_ad_schema_without_false_alarms() {
    let Some(ad) = support::samba() else { return };
    let home = support::temp_home();
    let ou = Scratch::new(ad, "sc");
    let sam = support::unique("sc");
    let hr = home.path().join("hr.csv");
    std::fs::write(
        &hr,
        format!(
            "employee_id,first,last,sam,uac,extra\n\
             1,Ann,Lee,{sam}a,,\n2,Søren,Ørsted,{sam}b,,\n3,Eve,Bad,{sam}c,abc,\n4,Fay,Odd,{sam}d,,x\n"
        ),
    )
    .unwrap();
    let script = format!(
        "{}let hr = connect_csv({}, #{{ key: \"employee_id\" }});\n\
         let s = sync_step(\"hr-to-ad/schema\", hr, c, #{{\n\
           create: #{{ parent: {}, rdn: |e| `CN=${{e.first}} ${{e.last}}`,\n\
                       class: [\"top\", \"person\", \"organizationalPerson\", \"user\"] }},\n\
           flows: #{{ sAMAccountName: #{{ value: \"sam\", once: true }}, givenName: \"first\", sn: \"last\",\n\
                      displayName: |e| `${{e.first}} ${{e.last}}`, employeeID: \"employee_id\",\n\
                      userPrincipalName: |e| `${{e.sam}}@example.test`,\n\
                      mail: |e| `${{e.first.to_lower()}}@example.test`,\n\
                      description: |e| `HR ${{e.employee_id}}`,\n\
                      userAccountControl: |e| if e.uac == () || e.uac == \"\" {{ () }} else {{ e.uac }},\n\
                      noSuchAttributeX: |e| if e.extra == () || e.extra == \"\" {{ () }} else {{ e.extra }} }},\n\
           deprovision: #{{ action: \"disable\" }},\n\
         }});\n\
         for r in s.preview() {{ if r.op == \"error\" {{ print(`ERR ${{r.object}}|${{r.attribute}}|${{r[\"new\"]}}`); }} }}\n\
         let r = s.run();\n\
         print(`REPORT created=${{r.created}} failed=${{r.failed}}`);\n",
        connect(ad, Via::Ldaps),
        lit(&hr.display().to_string()),
        lit(&ou.dn),
    );
    let (code, out, err) = run(home.path(), &script);
    assert_eq!(code, 3, "{out}\n{err}");
    let errs = tagged(&out, "ERR ");
    assert_eq!(errs.len(), 2, "{out}");
    assert!(
        errs.iter().any(
            |e| e.starts_with(&format!("CN=Eve Bad,{}|userAccountControl|", ou.dn))
                && e.contains("attribute userAccountControl")
                && e.contains("'abc'")
                && e.contains("INTEGER")
        ),
        "{out}"
    );
    assert!(
        errs.iter().any(
            |e| e.starts_with(&format!("CN=Fay Odd,{}|noSuchAttributeX|", ou.dn))
                && e.contains("attribute noSuchAttributeX")
                && e.contains("no such attribute")
        ),
        "{out}"
    );
    assert_eq!(tag(&out, "REPORT "), "created=2 failed=2", "{out}");
    let e = ad.ldapsearch(
        &ou.dn,
        "sub",
        &format!("(sAMAccountName={sam}b)"),
        &["mail"],
    );
    assert_eq!(ldif_text(&e, "mail"), ["søren@example.test"], "{e}");
    assert!(read_entry(ad, &format!("CN=Eve Bad,{}", ou.dn), &["cn"]).is_none());
}
