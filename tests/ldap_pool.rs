//! The LDAP connector's connections (`src/connector/ldap/pool.rs`) against a real slapd:
//! one connection while one thing is done at a time, more (up to the limit) when many writes
//! are in flight, every one reopened after the server restarts, and every entry written exactly
//! once with the anchor the server gave it (checked with `ldapsearch`, not through idsync).

mod support;

use std::collections::BTreeMap;

use idsync::connector::Connector;
use idsync::connector::ldap::{CONNECTIONS, LdapConnector, LdapOptions, PER_CONNECTION};
use idsync::model::{Secret, Value};
use support::ldif::parse_ldif;

fn options(l: &support::Ldap) -> LdapOptions {
    let mut o = LdapOptions::new(l.url.clone());
    o.bind_dn = Some(l.admin_dn.clone());
    o.password = Some(Secret::literal(l.admin_pw.clone()));
    o.base = Some(l.base.clone());
    o
}

fn text(s: &str) -> Vec<Value> {
    vec![Value::Text(s.to_string())]
}

fn person(uid: &str) -> Vec<(String, Vec<Value>)> {
    vec![
        ("objectClass".into(), text("inetOrgPerson")),
        ("uid".into(), text(uid)),
        ("cn".into(), text(&format!("Pool {uid}"))),
        ("sn".into(), text(uid)),
    ]
}

fn add_ou(l: &support::Ldap, name: &str) -> String {
    let dn = format!("ou={name},{}", l.base);
    l.ldapadd(&format!(
        "dn: {dn}\nobjectClass: organizationalUnit\nou: {name}\n"
    ));
    dn
}

/// uid -> entryUUID of the people under `parent`, as ldapsearch sees them.
fn uuids(l: &support::Ldap, parent: &str) -> BTreeMap<String, String> {
    let entries = parse_ldif(&l.ldapsearch(parent, "one", "(uid=*)", &["uid", "entryUUID"]));
    let mut map = BTreeMap::new();
    for attrs in entries.values() {
        let one = |name: &str| attrs.get(name).and_then(|v| v.first()).cloned();
        if let (Some(uid), Some(uuid)) = (one("uid"), one("entryuuid")) {
            assert!(
                map.insert(uid.clone(), uuid).is_none(),
                "{uid} is in the directory twice"
            );
        }
    }
    map
}

/// Creates `uids` under `parent`, all at once; returns uid -> the anchor create_anchor gave.
async fn create_all(c: &LdapConnector, parent: &str, uids: &[String]) -> BTreeMap<String, String> {
    let adds = uids.iter().map(|uid| async move {
        let anchor = c
            .create_anchor(&format!("uid={uid},{parent}"), &person(uid))
            .await
            .unwrap_or_else(|e| panic!("create {uid}: {e}"))
            .unwrap_or_else(|| panic!("create {uid}: no anchor"));
        (uid.clone(), anchor)
    });
    futures::future::join_all(adds).await.into_iter().collect()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thing_at_a_time_uses_one_connection() {
    let Some(l) = support::slapd() else { return };
    let parent = add_ou(l, &support::unique("pool1"));
    let c = LdapConnector::connect(options(l)).await.expect("connect");
    for uid in names("seq", 30) {
        c.create_anchor(&format!("uid={uid},{parent}"), &person(&uid))
            .await
            .expect("create");
        assert!(
            c.get(&format!("uid={uid},{parent}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(
        c.connections(),
        1,
        "sequential work opened more connections"
    );
    assert_eq!(uuids(l, &parent).len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writes_in_flight_spread_over_several_connections_each_entry_once() {
    let Some(l) = support::slapd() else { return };
    let parent = add_ou(l, &support::unique("pool2"));
    let c = LdapConnector::connect(options(l)).await.expect("connect");
    assert_eq!(c.writes_in_flight(), CONNECTIONS * PER_CONNECTION);
    let uids = names("par", 200);
    let anchors = create_all(&c, &parent, &uids).await;
    let n = c.connections();
    assert!(
        n > 1 && n <= CONNECTIONS,
        "200 creates at once used {n} connections"
    );
    // Exactly the 200 entries, each with the anchor its create returned.
    assert_eq!(uuids(l, &parent), anchors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_reopened_after_the_server_restarts() {
    let Some(mut l) = support::private_slapd(None) else {
        return;
    };
    let parent = add_ou(&l, "pool3");
    let c = LdapConnector::connect(options(&l)).await.expect("connect");
    let first = create_all(&c, &parent, &names("before", 100)).await;
    let opened = c.connections();
    assert!(
        opened > 1,
        "100 creates at once used {opened} connection(s)"
    );

    l.kill();
    l.restart();

    // The first operation on each dead connection reconnects instead of failing.
    let second = create_all(&c, &parent, &names("after", 100)).await;
    assert!(c.connections() <= CONNECTIONS);
    let mut all = first;
    all.extend(second);
    assert_eq!(uuids(&l, &parent), all);
    // And one at a time still works on whichever connection comes first.
    assert!(
        c.get(&format!("uid=after000,{parent}"))
            .await
            .unwrap()
            .is_some()
    );
}

/// Reads the `uid`s under `base` with a paged search (page size 7 on `c`), page by page.
async fn paged_uids(c: &LdapConnector, base: &str) -> Result<Vec<String>, String> {
    let q = idsync::connector::SearchQuery {
        base: Some(base.to_string()),
        scope: idsync::connector::Scope::One,
        filter: "(uid=*)".into(),
        attrs: Some(vec!["uid".into()]),
        limit: None,
    };
    let mut out = Vec::new();
    c.search(&q, &mut |e| {
        out.push(e.first("uid").unwrap_or_default());
        Ok(true)
    })
    .await
    .map_err(|e| format!("{base}: {e}"))?;
    out.sort();
    Ok(out)
}

/// slapd keeps one paged-results state per connection: two paged searches on one connection
/// make the first one's next cookie invalid. Six at once (more than the pool's connections),
/// each of 50 entries in pages of 7, must all read every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_searches_at_the_same_time_each_read_everything() {
    let Some(l) = support::slapd() else { return };
    let mut o = options(l);
    o.page_size = 7;
    let c = LdapConnector::connect(o).await.expect("connect");
    let mut bases = Vec::new();
    for i in 0..6 {
        let parent = add_ou(l, &support::unique(&format!("paged{i}")));
        let people: String = names(&format!("p{i}x"), 50)
            .iter()
            .map(|uid| {
                format!(
                    "dn: uid={uid},{parent}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\n"
                )
            })
            .collect();
        l.ldapadd(&people);
        bases.push((parent, names(&format!("p{i}x"), 50)));
    }
    let reads = bases.iter().map(|(b, _)| paged_uids(&c, b));
    let got = futures::future::join_all(reads).await;
    for ((base, want), got) in bases.iter().zip(got) {
        let got = got.unwrap_or_else(|e| panic!("concurrent paged search failed: {e}"));
        assert_eq!(&got, want, "{base}");
    }
    assert!(
        c.connections() <= CONNECTIONS,
        "{} connections pooled",
        c.connections()
    );
    // The pool is usable afterwards, paged or not.
    assert_eq!(paged_uids(&c, &bases[0].0).await.unwrap(), bases[0].1);
}
