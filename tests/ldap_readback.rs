//! The LDAP connector's change mark and read-back (`Connector::write_mark`, `add`,
//! `anchors_since`), which a sync run uses to learn the anchors of a batch of new objects with
//! one search instead of one read per create: against the real slapd (the target suffix keeps
//! `contextCSN` through syncprov; entries found by `entryCSN`) and the real Samba AD DC
//! (`highestCommittedUSN`, entries found by `uSNChanged`). Every anchor is checked against
//! what `ldapsearch` shows, not through idsync.

mod support;

use std::collections::BTreeMap;

use idsync::connector::Connector;
use idsync::connector::ldap::{LdapConnector, LdapOptions, TlsMode};
use idsync::model::{Secret, Value};
use support::ldif::parse_ldif;

fn options(l: &support::Ldap, url: &str) -> LdapOptions {
    let mut o = LdapOptions::new(url.to_string());
    o.bind_dn = Some(l.admin_dn.clone());
    o.password = Some(Secret::literal(l.admin_pw.clone()));
    o.base = Some(l.base.clone());
    o.ca_file = Some(l.ca_file.clone());
    o
}

fn text(s: &str) -> Vec<Value> {
    vec![Value::Text(s.to_string())]
}

/// Lists what was written below `base` since `mark`: DN (lower case) -> anchor.
async fn listed(c: &LdapConnector, base: &str, mark: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    c.anchors_since(base, mark, &mut |dn, anchor| {
        assert!(
            out.insert(dn.to_ascii_lowercase(), anchor).is_none(),
            "listed twice"
        );
    })
    .await
    .expect("anchors_since");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slapd_lists_what_was_added_after_the_mark_with_its_entry_uuid() {
    let Some(l) = support::slapd() else { return };
    let id = support::unique("readback");
    // The target suffix of the test slapd has syncprov (contextCSN) and an entryCSN index.
    let parent = format!("ou={id},dc=target,dc=com");
    l.ldapadd(&format!(
        "dn: {parent}\nobjectClass: organizationalUnit\nou: {id}\n"
    ));
    let c = LdapConnector::connect(options(l, &l.url))
        .await
        .expect("connect");
    let before = format!("uid=early,{parent}");
    c.add(
        &before,
        vec![
            ("objectClass".into(), text("inetOrgPerson")),
            ("cn".into(), text("early")),
            ("sn".into(), text("early")),
        ],
    )
    .await
    .expect("add before the mark");
    let mark = c
        .write_mark(&parent)
        .await
        .expect("write_mark")
        .expect("slapd with syncprov has a mark");
    for i in 0..20 {
        let dn = format!("uid=p{i},{parent}");
        c.add(
            &dn,
            vec![
                ("objectClass".into(), text("inetOrgPerson")),
                ("cn".into(), text(&format!("p {i}"))),
                ("sn".into(), text("p")),
            ],
        )
        .await
        .expect("add");
    }
    let got = listed(&c, &parent, &mark).await;
    let truth: BTreeMap<String, String> =
        parse_ldif(&l.ldapsearch(&parent, "one", "(uid=p*)", &["entryUUID"]))
            .into_iter()
            .map(|(dn, a)| (dn.to_ascii_lowercase(), a["entryuuid"][0].clone()))
            .collect();
    assert_eq!(truth.len(), 20);
    assert_eq!(
        got, truth,
        "the listing differs from ldapsearch's entryUUIDs"
    );
    assert!(
        !got.contains_key(&before.to_ascii_lowercase()),
        "an entry added before the mark was listed"
    );
    // A mark taken now lists nothing; a bad mark is refused, not sent as a filter.
    let now = c.write_mark(&parent).await.unwrap().unwrap();
    assert!(listed(&c, &parent, &now).await.is_empty());
    let err = c
        .anchors_since(&parent, "x)(objectClass=*", &mut |_, _| {})
        .await
        .expect_err("a mark with filter syntax");
    assert!(err.to_string().contains("is not a entryCSN value"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samba_lists_what_was_added_after_the_mark_with_its_object_guid() {
    let Some(l) = support::samba() else { return };
    let id = support::unique("readback");
    let mut o = options(l, &l.ldaps_url);
    o.tls = Some(TlsMode::Ldaps);
    let c = LdapConnector::connect(o).await.expect("connect");
    let parent = format!("OU={id},{}", l.base);
    c.add(
        &parent,
        vec![
            ("objectClass".into(), text("organizationalUnit")),
            ("ou".into(), text(&id)),
        ],
    )
    .await
    .expect("add the OU");
    let mark = c
        .write_mark(&parent)
        .await
        .expect("write_mark")
        .expect("AD has highestCommittedUSN");
    for i in 0..5 {
        c.add(
            &format!("CN=c{i},{parent}"),
            vec![
                ("objectClass".into(), text("contact")),
                ("cn".into(), text(&format!("c{i}"))),
            ],
        )
        .await
        .expect("add a contact");
    }
    let got = listed(&c, &parent, &mark).await;
    let contacts = parse_ldif(&l.ldapsearch(&parent, "one", "(objectClass=contact)", &["1.1"]));
    assert_eq!(contacts.len(), 5);
    let mut wanted: Vec<String> = contacts.keys().map(|d| d.to_ascii_lowercase()).collect();
    wanted.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), wanted);
    // Each anchor names its own entry: the server finds it by <GUID=...>.
    for (dn, anchor) in &got {
        let found = parse_ldif(&l.ldapsearch(&format!("<GUID={anchor}>"), "base", "", &["1.1"]));
        let found: Vec<String> = found.keys().map(|d| d.to_ascii_lowercase()).collect();
        assert_eq!(
            found,
            vec![dn.clone()],
            "the anchor of {dn} is another entry's"
        );
    }
    for i in (0..5).rev() {
        c.delete(&format!("CN=c{i},{parent}"))
            .await
            .expect("clean up");
    }
    c.delete(&parent).await.expect("clean up the OU");
}
