//! A bare ldap3 copy of the entries below one base to another base on the
//! same server: the floor that `scripts/bench/full-sync` measures the sync
//! engine against. A paged search of the source streams into adds, several
//! in flight over a few connections, while the search is still running. No
//! state, no links, no hashing, no log: only the protocol work.
//!
//! ```text
//! BENCH_PW=secret cargo run --release --example bare-copy -- \
//!     URL BIND_DN FROM_BASE TO_BASE FILTER IN_FLIGHT CONNECTIONS ATTR...
//! ```
//!
//! Prints how many entries it copied and how many adds failed. With
//! `BARE_POSTREAD=1` every add also asks for the new entry's entryUUID in its
//! reply (the Post-Read control), to measure what that costs the server.
//! With `BARE_READBACK=1` the anchors are read back instead, after all the
//! adds, by one paged search of `TO_BASE` for entryUUID (DN to anchor, the
//! way a sync engine would pair them with what it created); it also prints
//! how many of the copied entries it found that way.

use std::collections::HashSet;

use futures::stream::StreamExt;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry};

type Add = (String, Vec<(String, HashSet<String>)>);

async fn connect(url: &str, dn: &str, pw: &str) -> Result<Ldap, Box<dyn std::error::Error>> {
    let (conn, mut ldap) = LdapConnAsync::new(url).await?;
    ldap3::drive!(conn);
    ldap.simple_bind(dn, pw).await?.success()?;
    Ok(ldap)
}

/// The entry as an add under `to` instead of `from`.
fn rewrite(e: SearchEntry, from: &str, to: &str) -> Option<Add> {
    let cut = e.dn.len().checked_sub(from.len())?;
    if !e.dn[cut..].eq_ignore_ascii_case(from) {
        return None;
    }
    let dn = format!("{}{to}", &e.dn[..cut]);
    let attrs = e
        .attrs
        .into_iter()
        .map(|(a, v)| (a, v.into_iter().collect()))
        .collect();
    Some((dn, attrs))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 7 {
        eprintln!(
            "usage: bare-copy URL BIND_DN FROM_BASE TO_BASE FILTER IN_FLIGHT CONNECTIONS ATTR... \
             (password in BENCH_PW)"
        );
        std::process::exit(2);
    }
    let (url, bind, from, to, filter) = (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let in_flight: usize = args[5].parse()?;
    let connections: usize = args[6].parse::<usize>()?.max(1);
    let attrs: Vec<String> = args[7..].to_vec();
    let pw = std::env::var("BENCH_PW")?;

    let mut writers = Vec::new();
    for _ in 0..connections {
        writers.push(connect(url, bind, &pw).await?);
    }
    let mut reader = connect(url, bind, &pw).await?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Add>(10_000);
    let (from_sfx, to_sfx) = (format!(",{from}"), format!(",{to}"));
    let filter = filter.clone();
    let read = tokio::spawn(async move {
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(1000)),
        ];
        let mut stream = reader
            .streaming_search_with(adapters, &from_sfx[1..], Scope::Subtree, &filter, attrs)
            .await?;
        while let Some(raw) = stream.next().await? {
            if let Some(add) = rewrite(SearchEntry::construct(raw), &from_sfx, &to_sfx)
                && tx.send(add).await.is_err()
            {
                break;
            }
        }
        stream.finish().await.success()?;
        Ok::<(), ldap3::LdapError>(())
    });

    let adds = tokio_stream_from(rx);
    let results: Vec<bool> = adds
        .enumerate()
        .map(|(i, (dn, attrs))| {
            let mut l = writers[i % connections].clone();
            async move {
                if std::env::var("BARE_POSTREAD").is_ok() {
                    l.with_controls(ldap3::controls::PostRead::new(vec!["entryUUID"]));
                }
                matches!(l.add(&dn, attrs).await, Ok(r) if r.rc == 0)
            }
        })
        .buffer_unordered(in_flight * connections)
        .collect()
        .await;
    read.await??;
    let failed = results.iter().filter(|ok| !**ok).count();
    if std::env::var("BARE_READBACK").is_ok() {
        let anchors = read_back(&writers[0], to).await?;
        println!(
            "copied={} failed={failed} anchors_read_back={}",
            results.len() - failed,
            anchors.len()
        );
    } else {
        println!("copied={} failed={failed}", results.len() - failed);
    }
    Ok(())
}

/// The entryUUID of every entry below `base`, by lower-case DN: one paged
/// search, read after the adds instead of a Post-Read control on each.
async fn read_back(
    ldap: &Ldap,
    base: &str,
) -> Result<std::collections::HashMap<String, String>, ldap3::LdapError> {
    let mut ldap = ldap.clone();
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(1000)),
    ];
    let mut stream = ldap
        .streaming_search_with(
            adapters,
            base,
            Scope::OneLevel,
            "(objectClass=*)",
            vec!["entryUUID"],
        )
        .await?;
    let mut out = std::collections::HashMap::new();
    while let Some(raw) = stream.next().await? {
        let e = SearchEntry::construct(raw);
        if let Some(u) = e.attrs.get("entryUUID").and_then(|v| v.first()) {
            out.insert(e.dn.to_ascii_lowercase(), u.clone());
        }
    }
    stream.finish().await.success()?;
    Ok(out)
}

/// The receiver as a stream (without tokio-stream).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}
