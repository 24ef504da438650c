//! A paced LDAP search (`Connector::search_paced`, src/connector/ldap/read.rs) against a real
//! slapd: it asks for the next entry (and, at a page's end, the next page) only while its
//! `Room` has room, so a consumer that takes nothing holds the reader at the room's limit, and
//! once the consumer takes, every entry arrives, each once. This is what keeps a first run's
//! memory flat: the sync engine's reader waits for its planner, the planner for the writer.

mod support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use idsync::connector::ldap::{LdapConnector, LdapOptions};
use idsync::connector::{Connector, Room, Scope, SearchQuery};
use idsync::model::Secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_search_waits_for_room_then_reads_every_entry_once() {
    let Some(l) = support::slapd() else { return };
    let name = support::unique("paced");
    let parent = format!("ou={name},{}", l.base);
    let mut ldif = format!("dn: {parent}\nobjectClass: organizationalUnit\nou: {name}\n\n");
    for i in 0..60 {
        ldif.push_str(&format!(
            "dn: uid=p{i:02},{parent}\nobjectClass: inetOrgPerson\nuid: p{i:02}\ncn: P {i}\nsn: P\n\n"
        ));
    }
    l.ldapadd(&ldif);
    let mut o = LdapOptions::new(l.url.clone());
    o.bind_dn = Some(l.admin_dn.clone());
    o.password = Some(Secret::literal(l.admin_pw.clone()));
    o.base = Some(l.base.clone());
    o.page_size = 10;
    let c = LdapConnector::connect(o).await.expect("connect");
    let q = SearchQuery {
        base: Some(parent.clone()),
        scope: Scope::One,
        filter: "(uid=*)".into(),
        attrs: Some(vec!["uid".into()]),
        limit: None,
    };

    const LIMIT: usize = 5;
    let room = Room::new(LIMIT);
    let got: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let search = async {
        let mut sink = |e: idsync::model::Entry| {
            got.lock().unwrap().extend(e.first("uid"));
            room.put();
            Ok::<bool, idsync::connector::Error>(true)
        };
        let r = c.search_paced(&q, &mut sink, &room).await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let consumer = async {
        // Takes nothing until the reader has filled the room, then lets it run on for a while:
        // a reader that did not wait would go past the limit meanwhile (a page holds 10).
        while room.queued() < LIMIT && !done.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let mut most = room.queued();
        for _ in 0..2_000 {
            tokio::task::yield_now().await;
            most = most.max(room.queued());
        }
        let finished_while_full = done.load(Ordering::SeqCst);
        // Now take everything as it comes.
        while !done.load(Ordering::SeqCst) || room.queued() > 0 {
            if room.queued() > 0 {
                room.take();
            }
            tokio::task::yield_now().await;
        }
        (most, finished_while_full)
    };
    let (r, (most, finished_while_full)) = tokio::join!(search, consumer);
    r.expect("paced search");
    assert_eq!(
        (most, finished_while_full),
        (LIMIT, false),
        "with nothing taken, the reader must stop at the room's limit"
    );
    let mut got = got.into_inner().unwrap();
    got.sort();
    let want: Vec<String> = (0..60).map(|i| format!("p{i:02}")).collect();
    assert_eq!(got, want, "every entry, each once");
}
