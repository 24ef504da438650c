//! Proves the real-server harness in tests/support: the servers answer, fixtures load, TLS
//! verifies with the right CA only, the AD schema extension is writable, and lock/reset
//! semantics that sync tests rely on hold.

mod support;

use std::process::{Command, Stdio};

/// ldapsearch of the root DSE over `url` as admin, trusting only `ca`; true on success.
fn tls_search(l: &support::Ldap, url: &str, ca: &str, starttls: bool) -> (bool, String) {
    let mut cmd = Command::new("ldapsearch");
    cmd.env("LDAPCONF", "/dev/null")
        .env("LDAPTLS_CACERT", ca)
        .env("LDAPTLS_REQCERT", "demand")
        .args([
            "-LLL",
            "-x",
            "-H",
            url,
            "-D",
            &l.admin_dn,
            "-w",
            &l.admin_pw,
            "-b",
            &l.base,
            "-s",
            "base",
            "dn",
        ])
        .stdin(Stdio::null());
    if starttls {
        cmd.arg("-ZZ");
    }
    let out = cmd.output().expect("run ldapsearch");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn slapd_answers_and_base_entries_exist() {
    let Some(l) = support::slapd() else { return };
    let out = l.ldapsearch(&l.base, "one", "(objectClass=organizationalUnit)", &["ou"]);
    assert!(out.contains("dn: ou=people,dc=example,dc=com"), "{out}");
    assert!(out.contains("dn: ou=groups,dc=example,dc=com"), "{out}");
    // syncprov answers an RFC 4533 refresh with a cookie
    let root = l.ldapsearch("", "base", "(objectClass=*)", &["supportedControl"]);
    assert!(
        root.contains("1.3.6.1.4.1.4203.1.9.1.1"),
        "sync control not advertised: {root}"
    );
}

#[test]
fn slapd_ldaps_verifies_with_ca_only() {
    let Some(l) = support::slapd() else { return };
    let (ok, out) = tls_search(l, &l.ldaps_url, &l.ca_file, false);
    assert!(ok, "LDAPS with the right CA failed: {out}");
    let (ok, out) = tls_search(l, &l.url, &l.ca_file, true);
    assert!(ok, "StartTLS with the right CA failed: {out}");
    let (ok, out) = tls_search(l, &l.ldaps_url, &l.wrong_ca_file, false);
    assert!(!ok, "LDAPS verified against the wrong CA: {out}");
}

#[test]
fn private_slapd_loads_fixture_and_dies_on_kill() {
    let n = 250;
    let Some(l) = support::private_slapd(Some(&support::gen_users(n))) else {
        return;
    };
    let out = l.ldapsearch(
        &format!("ou=people,{}", l.base),
        "one",
        "(objectClass=inetOrgPerson)",
        &["1.1"],
    );
    assert_eq!(
        out.lines()
            .filter(|x| x.starts_with("dn: uid=user"))
            .count(),
        n
    );
    assert!(l.can_bind("uid=user00007,ou=people,dc=example,dc=com", "pw7"));
    assert!(!l.can_bind("uid=user00007,ou=people,dc=example,dc=com", "wrong"));
    // a second private instance is independent of the first
    let Some(other) = support::private_slapd(None) else {
        return;
    };
    assert_ne!(other.url, l.url);
    let out = other.ldapsearch(&other.base, "sub", "(objectClass=inetOrgPerson)", &["1.1"]);
    assert!(
        out.trim().is_empty(),
        "fixture leaked into another instance: {out}"
    );
    l.kill();
    assert!(
        !l.can_bind(&l.admin_dn, &l.admin_pw),
        "slapd still answers after kill()"
    );
    assert!(other.can_bind(&other.admin_dn, &other.admin_pw));
}

#[test]
fn slapd_ppolicy_lock_blocks_bind_and_unlock_restores_it() {
    let Some(l) = support::slapd() else { return };
    let uid = support::unique("pp");
    let dn = format!("uid={uid},ou=people,{}", l.base);
    l.ldapadd(&format!(
        "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: Lock\nuserPassword: Secret-1\n"
    ));
    assert!(l.can_bind(&dn, "Secret-1"));
    l.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n"
    ));
    assert!(
        !l.can_bind(&dn, "Secret-1"),
        "locked account could still bind"
    );
    l.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\ndelete: pwdAccountLockedTime\n"
    ));
    assert!(l.can_bind(&dn, "Secret-1"), "unlocked account cannot bind");
    // wrong passwords do not lock an account (pwdMaxFailure 0)
    for _ in 0..5 {
        assert!(!l.can_bind(&dn, "nope"));
    }
    assert!(l.can_bind(&dn, "Secret-1"));
}

#[test]
fn samba_answers_with_ad_naming_context() {
    let Some(ad) = support::samba() else { return };
    let root = ad.ldapsearch(
        "",
        "base",
        "(objectClass=*)",
        &["defaultNamingContext", "supportedControl"],
    );
    assert!(
        root.contains("defaultNamingContext: DC=example,DC=test"),
        "{root}"
    );
    assert!(
        root.contains("1.2.840.113556.1.4.841"),
        "DirSync not advertised: {root}"
    );
    let admin = ad.ldapsearch(
        &ad.admin_dn,
        "base",
        "(objectClass=user)",
        &["sAMAccountName"],
    );
    assert!(admin.contains("sAMAccountName: Administrator"), "{admin}");
}

#[test]
fn samba_ldaps_and_starttls_verify_with_ca_only() {
    let Some(ad) = support::samba() else { return };
    let (ok, out) = tls_search(ad, &ad.ldaps_url, &ad.ca_file, false);
    assert!(ok, "LDAPS with the right CA failed: {out}");
    let (ok, out) = tls_search(ad, &ad.url, &ad.ca_file, true);
    assert!(ok, "StartTLS with the right CA failed: {out}");
    let (ok, out) = tls_search(ad, &ad.ldaps_url, &ad.wrong_ca_file, false);
    assert!(!ok, "LDAPS verified against the wrong CA: {out}");
}

#[test]
fn samba_schema_extension_is_writable_and_single_valued() {
    let Some(ad) = support::samba() else { return };
    let sam = support::unique("az");
    ad.samba_tool(&["user", "create", &sam, "Passw0rd!Passw0rd"]);
    let dn = format!("CN={sam},CN=Users,{}", ad.base);
    let guid = "0b1e2f3a-1111-2222-3333-1234567890ab";
    ad.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: edsvaAzureObjectID\nedsvaAzureObjectID: {guid}\n"
    ));
    let out = ad.ldapsearch(&dn, "base", "(objectClass=user)", &["edsvaAzureObjectID"]);
    assert!(
        out.contains(&format!("edsvaAzureObjectID: {guid}")),
        "{out}"
    );
    let second = ad.try_ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nadd: edsvaAzureObjectID\nedsvaAzureObjectID: other\n"
    ));
    assert!(
        second.is_err(),
        "a second value was accepted on a single-valued attribute"
    );
    // also on groups
    let g = support::unique("azg");
    ad.samba_tool(&["group", "add", &g]);
    let gdn = format!("CN={g},CN=Users,{}", ad.base);
    ad.ldapmodify(&format!(
        "dn: {gdn}\nchangetype: modify\nreplace: edsvaAzureObjectID\nedsvaAzureObjectID: {guid}\n"
    ));
    ad.ldapmodify(&format!(
        "dn: {dn}\nchangetype: delete\n\ndn: {gdn}\nchangetype: delete\n"
    ));
}

#[test]
fn samba_admin_reset_makes_old_password_fail_at_once_and_complexity_is_on() {
    let Some(ad) = support::samba() else { return };
    let sam = support::unique("pw");
    let dn = format!("CN={sam},CN=Users,{}", ad.base);
    let weak = Command::new("samba-tool")
        .args(["user", "create", &sam, "abc", "-s"])
        .arg(ad.smb_conf())
        .output()
        .expect("samba-tool");
    assert!(
        !weak.status.success(),
        "a weak password was accepted: complexity should be on"
    );
    ad.samba_tool(&["user", "create", &sam, "Passw0rd!Passw0rd"]);
    assert!(ad.can_bind(&dn, "Passw0rd!Passw0rd"));
    let utf16: Vec<u8> = "\"N3w!Passw0rdX\""
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let b64 = {
        // tiny base64 to avoid a dev-dependency
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in utf16.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    };
    ad.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {b64}\n"
    ));
    assert!(
        ad.can_bind(&dn, "N3w!Passw0rdX"),
        "new password does not work"
    );
    assert!(
        !ad.can_bind(&dn, "Passw0rd!Passw0rd"),
        "old password still works after an admin reset"
    );
    ad.ldapmodify(&format!("dn: {dn}\nchangetype: delete\n"));
}

#[test]
fn unique_names_differ_and_fit_sam_account_name() {
    let a = support::unique("u");
    let b = support::unique("u");
    assert_ne!(a, b);
    assert!(a.len() <= 20, "{a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{a}"
    );
    let home = support::temp_home();
    assert!(home.path().is_dir());
    assert!(support::idsync_bin().ends_with("idsync"));
}
