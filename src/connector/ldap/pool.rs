//! The connections of one LDAP connector. Operations go to the connection
//! with the fewest in flight; another connection (same URL, same bind) is
//! opened only when every one has [`PER_CONNECTION`] in flight, up to
//! [`CONNECTIONS`]. A script doing one thing at a time uses one connection;
//! a sync run with many writes in flight spreads them over several, which a
//! server works through faster than the same requests on one connection
//! (slapd measured about a quarter faster; see BENCHMARKS.md).
//!
//! A connection found closed (server restart, idle timeout) is opened again
//! before use.
//!
//! A paged search gets a connection on which no other paged search is
//! running: slapd keeps one paged-results state per connection, and a
//! second paged search there makes the first one's next cookie invalid. When
//! every pooled connection is paging already, the search opens one of its
//! own, closed when it ends.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ldap3::Ldap;

use super::options::LdapOptions;
use crate::connector::{Error, Result};

/// Connections at most.
pub const CONNECTIONS: usize = 4;

/// Operations in flight on every connection before another is opened.
pub const PER_CONNECTION: usize = 8;

struct Slot {
    ldap: Ldap,
    busy: Arc<AtomicUsize>,
    /// Paged searches running on it (0 or 1).
    paging: Arc<AtomicUsize>,
}

/// The open connections.
pub struct Pool {
    slots: Mutex<Vec<Slot>>,
    /// Connections being opened for the pool: counted against the limit, so
    /// a burst of operations at the start opens the limit's worth, not one
    /// each.
    opening: AtomicUsize,
}

/// A place among the connections being opened, given back on drop.
struct Opening<'a> {
    pool: &'a Pool,
    held: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.held {
            self.pool.opening.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One operation's connection; counts as in flight until dropped.
pub struct Handle {
    ldap: Ldap,
    busy: Arc<AtomicUsize>,
    /// Set for a paged search: its connection's paging count.
    paging: Option<Arc<AtomicUsize>>,
}

impl Deref for Handle {
    type Target = Ldap;
    fn deref(&self) -> &Ldap {
        &self.ldap
    }
}

impl DerefMut for Handle {
    fn deref_mut(&mut self) -> &mut Ldap {
        &mut self.ldap
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = &self.paging {
            p.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn poisoned() -> Error {
    Error::Other("connection lock poisoned".into())
}

impl Pool {
    /// A pool holding the connection opened at connect time.
    pub fn new(first: Ldap) -> Pool {
        Pool {
            slots: Mutex::new(vec![Slot {
                ldap: first,
                busy: Arc::new(AtomicUsize::new(0)),
                paging: Arc::new(AtomicUsize::new(0)),
            }]),
            opening: AtomicUsize::new(0),
        }
    }

    /// A connection for one operation (see the module doc).
    pub async fn handle(&self, opts: &LdapOptions) -> Result<Handle> {
        self.take(opts, false).await
    }

    /// A connection for one paged search (see the module doc).
    pub async fn paged(&self, opts: &LdapOptions) -> Result<Handle> {
        self.take(opts, true).await
    }

    async fn take(&self, opts: &LdapOptions, paged: bool) -> Result<Handle> {
        // (slot index or None for a new connection, its connection, counts)
        let (index, mut ldap, busy, paging, pooling) = {
            let slots = self.slots.lock().map_err(|_| poisoned())?;
            // Under the lock, so two takes never both see the last free place.
            let room = slots.len() + self.opening.load(Ordering::Relaxed) < CONNECTIONS;
            let best = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| !paged || s.paging.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, s)| s.busy.load(Ordering::Relaxed));
            let fresh = || {
                if room {
                    self.opening.fetch_add(1, Ordering::Relaxed);
                }
                (
                    None,
                    None,
                    Arc::new(AtomicUsize::new(0)),
                    Arc::new(AtomicUsize::new(0)),
                    room,
                )
            };
            match best {
                Some((_, slot)) if slot.busy.load(Ordering::Relaxed) >= PER_CONNECTION && room => {
                    fresh()
                }
                Some((index, slot)) => (
                    Some(index),
                    Some(slot.ldap.clone()),
                    slot.busy.clone(),
                    slot.paging.clone(),
                    false,
                ),
                None => fresh(),
            }
        };
        // Gives the place back however the open ends (error included).
        let _opening = Opening {
            pool: self,
            held: pooling,
        };
        busy.fetch_add(1, Ordering::Relaxed);
        if paged {
            paging.fetch_add(1, Ordering::Relaxed);
        }
        // From here on the handle's drop gives the counts back, also on
        // error (a failed open leaves only fresh counts behind).
        let mut handle = Handle {
            ldap: match ldap.take() {
                Some(l) => l,
                None => super::open(opts, true).await?,
            },
            busy,
            paging: paged.then(|| paging.clone()),
        };
        match index {
            None => {
                // Pooled when it took a place; otherwise (a paged search when
                // every connection pages) it closes when the handle drops.
                let mut slots = self.slots.lock().map_err(|_| poisoned())?;
                if pooling && slots.len() < CONNECTIONS {
                    slots.push(Slot {
                        ldap: handle.ldap.clone(),
                        busy: handle.busy.clone(),
                        paging,
                    });
                }
            }
            Some(i) if handle.ldap.is_closed() => {
                handle.ldap = super::open(opts, true).await?;
                let mut slots = self.slots.lock().map_err(|_| poisoned())?;
                if let Some(s) = slots.get_mut(i) {
                    s.ldap = handle.ldap.clone();
                }
            }
            Some(_) => {}
        }
        handle.ldap.with_timeout(opts.timeout);
        Ok(handle)
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }
}
