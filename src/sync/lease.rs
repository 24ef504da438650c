//! Run leases: a run holds a lease on its step (a workflow on each of its
//! steps, all or none) in the state store, so a second run of the same step
//! — from this process, another process, or another machine sharing the
//! store — is refused before it writes anything, naming the holder. The
//! holder heartbeats while it runs and releases when it ends (also when it
//! fails or is refused). A lease whose holder died is taken over: on this
//! host when its process is gone, elsewhere when its heartbeat is older
//! than [`LEASE_PERIOD_MS`]; only then are the dead holder's runs marked
//! `interrupted` (the store does that in the same transaction).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::store::{Lease, LeaseTake, StateStore};

use super::clock;

/// A lease whose holder has not heartbeaten for this long is taken over,
/// whatever host it is on.
pub const LEASE_PERIOD_MS: i64 = 60_000;
/// How often a holder heartbeats.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

static PERIOD_SET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Sets this process's lease period (`idsync service --lease-period`: a
/// step lease left by a killed instance then blocks no longer than the
/// service lease does).
pub fn set_lease_period_ms(ms: i64) {
    PERIOD_SET.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// The lease period in force: the one set by [`set_lease_period_ms`],
/// else [`LEASE_PERIOD_MS`], or `IDSYNC_LEASE_PERIOD_MS`
/// (a test knob: lets the shared-store tests see a dead holder on another
/// host taken over in seconds); the heartbeat then comes at a quarter of it.
pub fn lease_period_ms() -> i64 {
    let set = PERIOD_SET.load(std::sync::atomic::Ordering::Relaxed);
    if set > 0 {
        return set;
    }
    std::env::var("IDSYNC_LEASE_PERIOD_MS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|&p| p > 0)
        .unwrap_or(LEASE_PERIOD_MS)
}

fn heartbeat_every() -> Duration {
    HEARTBEAT_EVERY.min(Duration::from_millis((lease_period_ms() / 4).max(1) as u64))
}

/// The leases of one running step or workflow; heartbeats on a thread of
/// its own and releases them when dropped.
pub struct LeaseGuard {
    store: Arc<dyn StateStore>,
    names: Vec<String>,
    token: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    beat: Option<std::thread::JoinHandle<()>>,
    notes: Vec<String>,
}

/// Why the leases could not be taken.
#[derive(Debug, Clone)]
pub enum LeaseError {
    /// A live run holds one of the steps: the message names it.
    Busy(String),
    /// The state store failed.
    Store(String),
}

impl LeaseGuard {
    /// Takes the leases on `names` for the run `owner` (a step's name, or a
    /// workflow's): all of them, or none and [`LeaseError::Busy`] naming the
    /// live holder.
    pub fn take(
        store: Arc<dyn StateStore>,
        owner: &str,
        names: &[String],
    ) -> Result<LeaseGuard, LeaseError> {
        Self::take_beating(store, owner, names, heartbeat_every())
    }

    /// [`LeaseGuard::take`], heartbeating every `every`.
    fn take_beating(
        store: Arc<dyn StateStore>,
        owner: &str,
        names: &[String],
        every: Duration,
    ) -> Result<LeaseGuard, LeaseError> {
        let host = host_name();
        let holder = Lease {
            name: String::new(),
            owner: owner.to_string(),
            host: host.clone(),
            pid: std::process::id(),
            token: uuid::Uuid::new_v4().to_string(),
            since_ms: 0,
            heartbeat_ms: 0,
        };
        let now = clock::now_ms();
        let dead = |l: &Lease| holder_is_dead(l, &host, now);
        let taken = store
            .take_leases(names, &holder, &dead)
            .map_err(|e| LeaseError::Store(format!("{owner}: taking the run lease: {e}")))?;
        let (taken_over, interrupted) = match taken {
            LeaseTake::Taken {
                taken_over,
                interrupted,
            } => (taken_over, interrupted),
            LeaseTake::Held(l) => return Err(LeaseError::Busy(busy_message(owner, &l, now))),
        };
        let mut notes: Vec<String> = taken_over
            .iter()
            .map(|l| {
                format!(
                    "took over the lease of {} ({}): its process has ended",
                    l.name,
                    holder_text(l, now)
                )
            })
            .collect();
        if !interrupted.is_empty() {
            let ids: Vec<String> = interrupted.iter().map(|i| i.to_string()).collect();
            notes.push(format!(
                "marked interrupted: run {} (no process was running it any more)",
                ids.join(", ")
            ));
        }
        if let Ok(mut h) = HELD_HERE.lock() {
            h.push(holder.token.clone());
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let beat = {
            let (store, names, token, stop) = (
                store.clone(),
                names.to_vec(),
                holder.token.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .name("idsync-lease".into())
                .spawn(move || heartbeat(&*store, &names, &token, &stop, every))
                .ok()
        };
        Ok(LeaseGuard {
            store,
            names: names.to_vec(),
            token: holder.token,
            stop,
            beat,
            notes,
        })
    }

    /// True when this guard holds the lease on step `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.trim() == name.trim())
    }

    /// What taking the leases did besides taking them (taken-over holders,
    /// runs marked interrupted), one line each, for the run log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        if let Ok(mut stop) = flag.lock() {
            *stop = true;
            cv.notify_all();
        }
        if let Some(t) = self.beat.take() {
            let _ = t.join();
        }
        let _ = self.store.release_leases(&self.names, &self.token);
        if let Ok(mut h) = HELD_HERE.lock() {
            h.retain(|t| t != &self.token);
        }
    }
}

/// Heartbeats every `every` until told to stop.
fn heartbeat(
    store: &dyn StateStore,
    names: &[String],
    token: &str,
    stop: &(Mutex<bool>, Condvar),
    every: Duration,
) {
    let (flag, cv) = stop;
    let Ok(mut stopped) = flag.lock() else { return };
    loop {
        let Ok((guard, _)) = cv.wait_timeout_while(stopped, every, |s| !*s) else {
            return;
        };
        stopped = guard;
        if *stopped {
            return;
        }
        let _ = store.heartbeat_leases(names, token);
    }
}

/// The tokens of the leases this process holds now.
static HELD_HERE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// True when the lease's holder is gone: no heartbeat for a lease period,
/// or (on this host) its process no longer runs. A lease recorded with
/// this process's own pid but a token it does not hold belongs to an
/// earlier process that had the same pid (common in containers).
pub fn holder_is_dead(l: &Lease, this_host: &str, now_ms: i64) -> bool {
    if now_ms.saturating_sub(l.heartbeat_ms) > lease_period_ms() {
        return true;
    }
    if l.host != this_host {
        return false;
    }
    if l.pid == std::process::id() {
        return !HELD_HERE
            .lock()
            .map(|h| h.contains(&l.token))
            .unwrap_or(true);
    }
    !process_alive(l.pid)
}

/// Whether process `pid` runs on this host (a zombie has ended). Where
/// this cannot be told (no `/proc`), it is assumed to run, and the
/// heartbeat's age decides.
fn process_alive(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: "123 (idsync) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// This machine's name, as leases record it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// "pid 123 on host1, since 2026-…Z, last heartbeat 3 s ago".
fn holder_text(l: &Lease, now_ms: i64) -> String {
    format!(
        "pid {} on {}, since {}, last heartbeat {} s ago",
        l.pid,
        l.host,
        clock::iso(l.since_ms),
        now_ms.saturating_sub(l.heartbeat_ms).max(0) / 1000
    )
}

/// The refusal: who holds which step, and what to do.
fn busy_message(owner: &str, l: &Lease, now_ms: i64) -> String {
    let what = if l.name == owner {
        "this step".to_string()
    } else {
        format!("step {:?}", l.name)
    };
    let by = if l.owner == l.name {
        "already running".to_string()
    } else {
        format!("already being run by workflow {:?}", l.owner)
    };
    format!(
        "{owner}: refused: {what} is {by} ({}); nothing was written. \
         Run it again when that run has finished (the lease of a process that has ended is taken over automatically)",
        holder_text(l, now_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(host: &str, pid: u32, beat: i64) -> Lease {
        Lease {
            name: "hr/users".into(),
            owner: "hr".into(),
            host: host.into(),
            pid,
            token: "t".into(),
            since_ms: 1_700_000_000_000,
            heartbeat_ms: beat,
        }
    }

    #[test]
    fn a_holder_is_dead_when_its_process_is_gone_or_its_heartbeat_is_old() {
        let now = clock::now_ms();
        let me = std::process::id();
        // This process, holding the lease: alive.
        HELD_HERE.lock().unwrap().push("mine".into());
        let mine = Lease {
            token: "mine".into(),
            ..lease("h", me, now)
        };
        assert!(!holder_is_dead(&mine, "h", now));
        // This pid, a token this process does not hold: an earlier process with the same pid.
        assert!(holder_is_dead(&lease("h", me, now), "h", now));
        // Another live process of this host.
        assert!(!holder_is_dead(
            &lease("h", std::os::unix::process::parent_id(), now),
            "h",
            now
        ));
        // Another host: only the heartbeat's age counts.
        assert!(!holder_is_dead(&lease("other", 999_999_999, now), "h", now));
        assert!(holder_is_dead(
            &lease("other", me, now - LEASE_PERIOD_MS - 1),
            "h",
            now
        ));
        // This host, a process that does not exist: dead at once.
        assert!(holder_is_dead(&lease("h", 999_999_999, now), "h", now));
    }

    #[test]
    fn a_guard_heartbeats_while_held_and_releases_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(crate::store::SqliteStore::open(dir.path().join("state.db")).unwrap());
        let names = vec!["wf/users".to_string(), "wf/groups".to_string()];
        let guard =
            LeaseGuard::take_beating(store.clone(), "wf", &names, Duration::from_millis(20))
                .unwrap();
        assert!(guard.covers("wf/users") && guard.covers(" wf/groups") && !guard.covers("wf"));
        let first = store.leases().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].host, host_name());
        assert_eq!(first[0].pid, std::process::id());
        std::thread::sleep(Duration::from_millis(150));
        let later = store.leases().unwrap();
        assert!(
            later[0].heartbeat_ms > first[0].heartbeat_ms,
            "no heartbeat"
        );
        assert_eq!(later[0].since_ms, first[0].since_ms);
        // A second run of one of the steps, in this same process, is refused.
        let e = LeaseGuard::take(store.clone(), "wf/users", &names[..1]).err();
        assert!(
            matches!(&e, Some(LeaseError::Busy(m)) if m.contains("already being run by workflow \"wf\"")),
            "{e:?}"
        );
        drop(guard);
        assert!(store.leases().unwrap().is_empty());
        assert!(LeaseGuard::take(store, "wf/users", &names[..1]).is_ok());
    }

    #[test]
    fn the_refusal_names_the_holder_and_when() {
        let l = lease("host-b", 4242, 1_700_000_003_000);
        let m = busy_message("hr/users", &l, 1_700_000_005_000);
        assert!(
            m.starts_with("hr/users: refused: this step is already being run by workflow \"hr\" (pid 4242 on host-b, since 2023-11-14T22:13:20"),
            "{m}"
        );
        assert!(m.contains("last heartbeat 2 s ago"), "{m}");
        assert!(m.contains("nothing was written"), "{m}");
        let m = busy_message(
            "hr",
            &Lease {
                owner: "hr/users".into(),
                ..l
            },
            1_700_000_005_000,
        );
        assert!(
            m.starts_with("hr: refused: step \"hr/users\" is already running (pid 4242"),
            "{m}"
        );
    }
}
