//! End to end: Azure BackSync and directory-role enablement, through the `idsync` binary,
//! between the real Samba AD DC (tests/support) and the Graph stand-in
//! (tests/support/graph).
//!
//! The cloud side holds the AD users and groups with `onPremisesImmutableId` computed here
//! from the objectGUID bytes `ldapsearch` returns, and `onPremisesSecurityIdentifier` decoded
//! here from the raw objectSid, plus decoys: a same-name user without anchors, a cloud-only
//! user, an anchor no AD object has, and two cloud users claiming one AD object. Every
//! effect is checked with `ldapsearch`, independently of idsync.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use support::Ldap;
use support::graph::GraphFake;

const AD_PW_ENV: &str = "IDSYNC_TEST_AD_PW";
const AZ_SECRET_ENV: &str = "IDSYNC_TEST_AZ_SECRET";

/// Runs `idsync FILE ARGS` with the script in a file under `home`, both secrets in the
/// environment; returns (exit code, stdout, stderr) and checks that no secret leaked.
fn run(
    home: &Path,
    ad: &Ldap,
    az: &GraphFake,
    script: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> (i32, String, String) {
    let file = home.join(format!("{}.rhai", support::unique("script")));
    std::fs::write(&file, script).unwrap();
    let mut cmd = Command::new(support::idsync_bin());
    cmd.arg(&file)
        .args(args)
        .env("IDSYNC_HOME", home)
        .env("NO_COLOR", "1")
        .env(AD_PW_ENV, &ad.admin_pw)
        .env(AZ_SECRET_ENV, az.client_secret())
        .env_remove("RUST_BACKTRACE")
        .env_remove("IDSYNC_BACKTRACE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for secret in [ad.admin_pw.as_str(), &az.client_secret()] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret leaked into the output:\n{stdout}\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn run_ok(home: &Path, ad: &Ldap, az: &GraphFake, script: &str) -> String {
    let (code, out, err) = run(home, ad, az, script, &[], &[]);
    assert_eq!(
        code, 0,
        "idsync failed\n{script}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    out
}

fn lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `let ad = ...; let az = ...;` prologue.
fn connect(ad: &Ldap, az: &GraphFake) -> String {
    format!(
        "let ad = connect_ldap({}, #{{ bind_dn: {}, password: secret({}), ca_file: {} }});\n\
         let az = connect_graph(#{{ tenant: {}, client_id: {}, client_secret: secret({}), \
         graph_url: {}, authority_url: {} }});\n",
        lit(&ad.ldaps_url),
        lit(&ad.admin_dn),
        lit(AD_PW_ENV),
        lit(&ad.ca_file),
        lit(&az.tenant_id()),
        lit(&az.client_id()),
        lit(AZ_SECRET_ENV),
        lit(&az.url()),
        lit(&az.url()),
    )
}

/// The raw base64 of a binary attribute in `ldapsearch` output (one entry).
fn raw_b64(ldif: &str, attr: &str) -> Option<String> {
    ldif.lines().find_map(|l| {
        let (name, rest) = l.split_once("::")?;
        name.eq_ignore_ascii_case(attr)
            .then(|| rest.trim().to_string())
    })
}

/// A plain value of `attr` in `ldapsearch` output (one entry).
fn text(ldif: &str, attr: &str) -> Option<String> {
    ldif.lines().find_map(|l| {
        let (name, rest) = l.split_once(": ")?;
        name.eq_ignore_ascii_case(attr)
            .then(|| rest.trim().to_string())
    })
}

/// S-revision-authority-subauthorities from the binary SID (our own decoder).
fn sid_string(b: &[u8]) -> String {
    let authority = b[2..8].iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
    let subs: Vec<String> = b[8..]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()).to_string())
        .collect();
    format!("S-{}-{authority}-{}", b[0], subs.join("-"))
}

/// An OU with users and groups, removed with the tree-delete control on drop.
struct Scratch<'a> {
    ad: &'a Ldap,
    dn: String,
}

/// An AD object as the test knows it from `ldapsearch`.
struct AdObj {
    dn: String,
    immutable_id: String,
    sid: String,
}

impl<'a> Scratch<'a> {
    fn new(ad: &'a Ldap) -> Scratch<'a> {
        let dn = format!("OU={},{}", support::unique("bsync"), ad.base);
        ad.ldapadd(&format!("dn: {dn}\nobjectClass: organizationalUnit\n"));
        Scratch { ad, dn }
    }

    fn add(&self, cn: &str, class: &str) -> AdObj {
        let dn = format!("CN={cn},{}", self.dn);
        let sam: String = cn
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(18)
            .collect();
        self.ad.ldapadd(&format!(
            "dn: {dn}\nobjectClass: {class}\nsAMAccountName: {sam}\n"
        ));
        let out = self
            .ad
            .ldapsearch(&dn, "base", "(objectClass=*)", &["objectGUID", "objectSid"]);
        let immutable_id = raw_b64(&out, "objectGUID").expect("objectGUID");
        assert_eq!(B64.decode(&immutable_id).unwrap().len(), 16);
        let sid = sid_string(
            &B64.decode(raw_b64(&out, "objectSid").expect("objectSid"))
                .unwrap(),
        );
        AdObj {
            dn,
            immutable_id,
            sid,
        }
    }

    fn attr(&self, dn: &str, attr: &str) -> Option<String> {
        text(
            &self.ad.ldapsearch(dn, "base", "(objectClass=*)", &[attr]),
            attr,
        )
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ldapdelete")
            .env("LDAPCONF", "/dev/null")
            .env("LDAPTLS_REQCERT", "never")
            .args([
                "-x",
                "-H",
                &self.ad.url,
                "-D",
                &self.ad.admin_dn,
                "-w",
                &self.ad.admin_pw,
            ])
            .args(["-e", "!1.2.840.113556.1.4.805", &self.dn])
            .stdin(Stdio::null())
            .output();
    }
}

/// The report line the scripts print: `key=value` pairs after a tag.
fn counts(out: &str, tag: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(tag))
        .unwrap_or_else(|| panic!("no '{tag}' line in:\n{out}"))
        .trim()
        .to_string()
}

const COUNTS: &str = "`matched=${r.matched} written=${r.written} unchanged=${r.unchanged} unmatched=${r.unmatched} ambiguous=${r.ambiguous} failed=${r.failed}`";

#[test]
fn backsync_writes_cloud_ids_by_anchor_then_writes_nothing_and_leaves_decoys_alone() {
    let Some(ad) = support::samba() else { return };
    let az = GraphFake::start();
    let home_dir = support::temp_home();
    let home = home_dir.path();
    let ou = Scratch::new(ad);

    // AD side.
    let ann = ou.add("Ann Backsync", "user"); // matched by immutable id
    let bob = ou.add("Bob Backsync", "user"); // matched by SID only
    let dup = ou.add("Dee Duplicate", "user"); // two cloud users claim it
    let carl = ou.add("Carl Decoy", "user"); // a cloud namesake without anchors
    let sales = ou.add("Sales Backsync", "group"); // group matched by SID
    let lone = ou.add("Lone Group", "group"); // no cloud counterpart

    // Cloud side.
    let ann_id = az.add_user(json!({"userPrincipalName": "ann@contoso.example", "displayName": "Ann Backsync",
        "onPremisesImmutableId": ann.immutable_id, "onPremisesSecurityIdentifier": ann.sid, "onPremisesSyncEnabled": true}));
    let bob_id = az.add_user(
        json!({"userPrincipalName": "bob@contoso.example", "displayName": "Bob Backsync",
        "onPremisesSecurityIdentifier": bob.sid, "onPremisesSyncEnabled": true}),
    );
    let sales_id = az.add_group(json!({"displayName": "Sales Backsync", "mailNickname": "sales", "securityEnabled": true,
        "mailEnabled": false, "onPremisesSecurityIdentifier": sales.sid, "onPremisesSyncEnabled": true}));
    az.add_user(json!({"userPrincipalName": "carl@contoso.example", "displayName": "Carl Decoy"}));
    az.add_user(
        json!({"userPrincipalName": "cloudonly@contoso.example", "displayName": "Cloud Only"}),
    );
    az.add_user(
        json!({"userPrincipalName": "ghost@contoso.example", "displayName": "Ghost",
        "onPremisesImmutableId": B64.encode([7u8; 16])}),
    );
    az.add_user(json!({"userPrincipalName": "dee1@contoso.example", "displayName": "Dee One", "onPremisesImmutableId": dup.immutable_id}));
    az.add_user(json!({"userPrincipalName": "dee2@contoso.example", "displayName": "Dee Two", "onPremisesImmutableId": dup.immutable_id}));

    let script = format!(
        "{}let r = backsync(ad, az, #{{ base: {}, commit: ARGS.len() > 0 && ARGS[0] == \"commit\", tenant_attribute: \"info\" }});\n\
         print(\"COUNTS \" + {COUNTS});\n\
         for row in r.rows {{ print(`ROW ${{row.op}}|${{row.kind}}|${{row.name}}|${{row.dn}}|${{row.matched_by}}|${{row.reason}}`); }}\n",
        connect(ad, &az),
        lit(&ou.dn)
    );

    // Preview: reports what it would write and writes nothing.
    let (code, out, err) = run(home, ad, &az, &script, &[], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        counts(&out, "COUNTS "),
        "matched=3 written=3 unchanged=0 unmatched=3 ambiguous=2 failed=0",
        "{out}"
    );
    assert!(
        out.contains("ROW would write|user|ann@contoso.example|"),
        "{out}"
    );
    for o in [&ann, &bob, &sales] {
        assert_eq!(
            ou.attr(&o.dn, "edsvaAzureObjectID"),
            None,
            "preview wrote to {}",
            o.dn
        );
    }

    // The run writes the cloud ids (and the tenant id), matched by anchor, never by name.
    let (code, out, err) = run(home, ad, &az, &script, &["commit"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        counts(&out, "COUNTS "),
        "matched=3 written=3 unchanged=0 unmatched=3 ambiguous=2 failed=0",
        "{out}"
    );
    assert_eq!(
        ou.attr(&ann.dn, "edsvaAzureObjectID").as_deref(),
        Some(ann_id.as_str())
    );
    assert_eq!(
        ou.attr(&bob.dn, "edsvaAzureObjectID").as_deref(),
        Some(bob_id.as_str())
    );
    assert_eq!(
        ou.attr(&sales.dn, "edsvaAzureObjectID").as_deref(),
        Some(sales_id.as_str())
    );
    assert_eq!(ou.attr(&ann.dn, "info"), Some(az.tenant_id()));
    assert!(
        out.contains(&format!(
            "ROW written|user|ann@contoso.example|{}|onPremisesImmutableId|",
            ann.dn
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "ROW written|user|bob@contoso.example|{}|onPremisesSecurityIdentifier|",
            bob.dn
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "ROW written|group|Sales Backsync|{}|onPremisesSecurityIdentifier|",
            sales.dn
        )),
        "{out}"
    );
    // Decoys: untouched and reported.
    for o in [&carl, &dup, &lone] {
        assert_eq!(
            ou.attr(&o.dn, "edsvaAzureObjectID"),
            None,
            "{} was written",
            o.dn
        );
    }
    assert!(
        out.contains("ROW unmatched|user|carl@contoso.example|||cloud-only"),
        "{out}"
    );
    assert!(
        out.contains("ROW unmatched|user|cloudonly@contoso.example|"),
        "{out}"
    );
    assert!(
        out.contains("ROW unmatched|user|ghost@contoso.example|||no AD object has objectGUID"),
        "{out}"
    );
    assert_eq!(out.matches("ROW ambiguous|user|dee").count(), 2, "{out}");

    // A second run writes nothing.
    let (code, out, err) = run(home, ad, &az, &script, &["commit"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        counts(&out, "COUNTS "),
        "matched=3 written=0 unchanged=3 unmatched=3 ambiguous=2 failed=0",
        "{out}"
    );

    // A changed cloud id (the object was re-created in the cloud) is written again.
    ou.ad.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nreplace: edsvaAzureObjectID\nedsvaAzureObjectID: stale\n",
        ann.dn
    ));
    let (_, out, _) = run(home, ad, &az, &script, &["commit"], &[]);
    assert_eq!(
        counts(&out, "COUNTS "),
        "matched=3 written=1 unchanged=2 unmatched=3 ambiguous=2 failed=0",
        "{out}"
    );
    assert_eq!(
        ou.attr(&ann.dn, "edsvaAzureObjectID").as_deref(),
        Some(ann_id.as_str())
    );
}

#[test]
fn backsync_matches_ms_ds_consistency_guid_and_only_the_chosen_kinds() {
    let Some(ad) = support::samba() else { return };
    let az = GraphFake::start();
    let home_dir = support::temp_home();
    let home = home_dir.path();
    let ou = Scratch::new(ad);
    let user = ou.add("Cora Consistency", "user");
    let group = ou.add("Only Users Group", "group");
    // The anchor Entra holds is the base64 of ms-DS-ConsistencyGuid (here other bytes than
    // the objectGUID, as after a forest migration).
    let consistency = [
        0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        0x01,
    ];
    ou.ad.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mS-DS-ConsistencyGuid\nmS-DS-ConsistencyGuid:: {}\n",
        user.dn,
        B64.encode(consistency)
    ));
    let uid = az.add_user(
        json!({"userPrincipalName": "cora@contoso.example", "displayName": "Cora",
        "onPremisesImmutableId": B64.encode(consistency)}),
    );
    az.add_group(
        json!({"displayName": "Only Users Group", "mailNickname": "oug", "securityEnabled": true,
        "mailEnabled": false, "onPremisesSecurityIdentifier": group.sid}),
    );
    let script = format!(
        "{}let r = backsync(ad, az, #{{ base: {}, groups: false, attribute: \"edsvaAzureObjectID\" }});\nprint(\"COUNTS \" + {COUNTS});\n",
        connect(ad, &az),
        lit(&ou.dn)
    );
    let out = run_ok(home, ad, &az, &script);
    assert_eq!(
        counts(&out, "COUNTS "),
        "matched=1 written=1 unchanged=0 unmatched=0 ambiguous=0 failed=0",
        "{out}"
    );
    assert_eq!(
        ou.attr(&user.dn, "edsvaAzureObjectID").as_deref(),
        Some(uid.as_str())
    );
    assert_eq!(
        ou.attr(&group.dn, "edsvaAzureObjectID"),
        None,
        "groups: false was ignored"
    );
}

#[test]
fn backsync_reports_a_per_object_failure_and_goes_on() {
    let Some(ad) = support::samba() else { return };
    let az = GraphFake::start();
    let home_dir = support::temp_home();
    let home = home_dir.path();
    let ou = Scratch::new(ad);
    let a = ou.add("Fail Alpha", "user");
    let b = ou.add("Fail Beta", "user");
    az.add_user(json!({"userPrincipalName": "a@contoso.example", "displayName": "A", "onPremisesImmutableId": a.immutable_id}));
    let bid = az.add_user(json!({"userPrincipalName": "b@contoso.example", "displayName": "B", "onPremisesImmutableId": b.immutable_id}));
    // An attribute the schema does not allow on users makes every write fail per object;
    // a missing attribute name is a schema error for that object only.
    let script = format!(
        "{}let r = backsync(ad, az, #{{ base: {}, attribute: \"uSNChanged\" }});\nprint(\"COUNTS \" + {COUNTS});\n\
         for row in r.rows {{ print(`ROW ${{row.op}}|${{row.dn}}|${{row.reason}}`); }}\n",
        connect(ad, &az),
        lit(&ou.dn)
    );
    let out = run_ok(home, ad, &az, &script);
    assert_eq!(
        counts(&out, "COUNTS "),
        "matched=2 written=0 unchanged=0 unmatched=0 ambiguous=0 failed=2",
        "{out}"
    );
    assert!(out.contains(&format!("ROW failed|{}|", a.dn)), "{out}");
    // and the real attribute still works afterwards
    let script2 = format!(
        "{}let r = backsync(ad, az, #{{ base: {} }});\nprint(\"COUNTS \" + {COUNTS});\n",
        connect(ad, &az),
        lit(&ou.dn)
    );
    let out = run_ok(home, ad, &az, &script2);
    assert!(
        counts(&out, "COUNTS ").starts_with("matched=2 written=2"),
        "{out}"
    );
    assert_eq!(
        ou.attr(&b.dn, "edsvaAzureObjectID").as_deref(),
        Some(bid.as_str())
    );
}

#[test]
fn shipped_scripts_enable_directory_writers_and_backsync() {
    let Some(ad) = support::samba() else { return };
    let az = GraphFake::start();
    let home_dir = support::temp_home();
    let home = home_dir.path();
    let ou = Scratch::new(ad);
    let u = ou.add("Script Backsync", "user");
    let uid = az.add_user(
        json!({"userPrincipalName": "script@contoso.example", "displayName": "Script",
        "onPremisesImmutableId": u.immutable_id}),
    );
    let env = [
        ("AZ_TENANT", az.tenant_domain()),
        ("AZ_CLIENT_ID", az.client_id()),
        ("AZ_GRAPH_URL", az.url()),
        ("AZ_AUTHORITY_URL", az.url()),
        ("AD_URL", ad.ldaps_url.clone()),
        ("AD_BIND_DN", ad.admin_dn.clone()),
        ("AD_CA_FILE", ad.ca_file.clone()),
        ("AD_BASE", ou.dn.clone()),
    ];
    let with_secrets: Vec<(&str, String)> = env
        .iter()
        .cloned()
        .chain([
            ("AD_PW", ad.admin_pw.clone()),
            ("AZ_SECRET", az.client_secret()),
        ])
        .collect();
    let script = |name: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .join(name),
        )
        .unwrap()
    };

    // Directory Writers: activated once, then a no-op; the app added as a member once.
    let (code, out, err) = run(
        home,
        ad,
        &az,
        &script("enable-directory-writers.rhai"),
        &[&az.client_id()],
        &with_secrets,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("activated: Directory Writers"), "{out}");
    assert!(out.contains("added member"), "{out}");
    let writers = || {
        az.active_roles()
            .into_iter()
            .filter(|r| r["roleTemplateId"] == "9360feb5-f418-4baa-8175-e2a00bac4301")
            .count()
    };
    assert_eq!(writers(), 1);
    assert_eq!(
        az.role_member_ids("9360feb5-f418-4baa-8175-e2a00bac4301")
            .len(),
        1
    );
    let (code, out, err) = run(
        home,
        ad,
        &az,
        &script("enable-directory-writers.rhai"),
        &[&az.client_id()],
        &with_secrets,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("already active: Directory Writers"), "{out}");
    assert!(out.contains("already a member"), "{out}");
    assert_eq!(writers(), 1);
    assert_eq!(
        az.role_member_ids("9360feb5-f418-4baa-8175-e2a00bac4301")
            .len(),
        1
    );

    // BackSync: preview, then commit.
    let (code, out, err) = run(
        home,
        ad,
        &az,
        &script("azure-backsync.rhai"),
        &[],
        &with_secrets,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("would write: 1"), "{out}");
    assert_eq!(ou.attr(&u.dn, "edsvaAzureObjectID"), None);
    let (code, out, err) = run(
        home,
        ad,
        &az,
        &script("azure-backsync.rhai"),
        &["commit"],
        &with_secrets,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("written: 1"), "{out}");
    assert_eq!(
        ou.attr(&u.dn, "edsvaAzureObjectID").as_deref(),
        Some(uid.as_str())
    );
}

#[test]
fn backsync_falls_back_to_the_sid_and_refuses_disagreeing_anchors() {
    let Some(ad) = support::samba() else { return };
    let az = GraphFake::start();
    let home_dir = support::temp_home();
    let home = home_dir.path();
    let ou = Scratch::new(ad);
    let mig = ou.add("Mia Migrated", "user");
    let one = ou.add("Odd One", "user");
    let two = ou.add("Odd Two", "user");
    // An immutable id from another forest (matches nothing here), but the SID matches.
    let mig_id = az.add_user(
        json!({"userPrincipalName": "mia@contoso.example", "displayName": "Mia",
        "onPremisesImmutableId": B64.encode([9u8; 16]), "onPremisesSecurityIdentifier": mig.sid}),
    );
    // Anchors that point at two different AD objects: reported, not written.
    az.add_user(
        json!({"userPrincipalName": "odd@contoso.example", "displayName": "Odd",
        "onPremisesImmutableId": one.immutable_id, "onPremisesSecurityIdentifier": two.sid}),
    );
    let script = format!(
        "{}let r = backsync(ad, az, #{{ base: {} }});\nprint(\"COUNTS \" + {COUNTS});\n\
         for row in r.rows {{ print(`ROW ${{row.op}}|${{row.name}}|${{row.matched_by}}|${{row.reason}}`); }}\n",
        connect(ad, &az),
        lit(&ou.dn)
    );
    let out = run_ok(home, ad, &az, &script);
    assert_eq!(
        counts(&out, "COUNTS "),
        "matched=1 written=1 unchanged=0 unmatched=0 ambiguous=1 failed=0",
        "{out}"
    );
    assert!(
        out.contains("ROW written|mia@contoso.example|onPremisesSecurityIdentifier|"),
        "{out}"
    );
    assert!(
        out.contains("ROW ambiguous|odd@contoso.example||anchors disagree"),
        "{out}"
    );
    assert_eq!(
        ou.attr(&mig.dn, "edsvaAzureObjectID").as_deref(),
        Some(mig_id.as_str())
    );
    assert_eq!(ou.attr(&one.dn, "edsvaAzureObjectID"), None);
    assert_eq!(ou.attr(&two.dn, "edsvaAzureObjectID"), None);
    // Contacts cannot be matched without guessing: refused, clearly.
    let (code, _, err) = run(
        home,
        ad,
        &az,
        &format!(
            "{}backsync(ad, az, #{{ contacts: true }});\n",
            connect(ad, &az)
        ),
        &[],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("contacts cannot be matched"), "{err}");
}
