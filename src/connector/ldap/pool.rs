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
}

/// The open connections.
pub struct Pool {
    slots: Mutex<Vec<Slot>>,
}

/// One operation's connection; counts as in flight until dropped.
pub struct Handle {
    ldap: Ldap,
    busy: Arc<AtomicUsize>,
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
            }]),
        }
    }

    /// A connection for one operation (see the module doc).
    pub async fn handle(&self, opts: &LdapOptions) -> Result<Handle> {
        let (index, mut ldap, busy) = {
            let slots = self.slots.lock().map_err(|_| poisoned())?;
            let (index, slot) = slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.busy.load(Ordering::Relaxed))
                .expect("a pool has a connection");
            if slot.busy.load(Ordering::Relaxed) >= PER_CONNECTION && slots.len() < CONNECTIONS {
                (None, None, Arc::new(AtomicUsize::new(0)))
            } else {
                (Some(index), Some(slot.ldap.clone()), slot.busy.clone())
            }
        };
        busy.fetch_add(1, Ordering::Relaxed);
        // From here on the handle's drop gives the count back, also on error.
        let mut handle = Handle {
            ldap: match ldap.take() {
                Some(l) => l,
                None => super::open(opts, true).await?,
            },
            busy,
        };
        match index {
            None => {
                let mut slots = self.slots.lock().map_err(|_| poisoned())?;
                if slots.len() < CONNECTIONS {
                    slots.push(Slot {
                        ldap: handle.ldap.clone(),
                        busy: handle.busy.clone(),
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
