//! One active instance among several: the service lease, held in the state
//! store's lease table under [`SERVICE_LEASE`] (the store's existing
//! `take_leases` / `heartbeat_leases` / `release_leases`, no new trait
//! method). The active instance heartbeats it; a standby polls and takes it
//! over when the holder's heartbeat is older than the lease period — on
//! any host (the holder's process is checked only when it runs on this
//! host, as a quicker way to see it gone). Every instance also records its
//! own heartbeat, role and lease period in a setting
//! (`service.instance.HOST:PID`), which is where `status` finds the
//! standbys and tells a dead instance (no heartbeat for a lease period) as
//! stale; the active instance removes a record silent for a week.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::script::service::{INSTANCE_KEY, SERVICE_LEASE};
use crate::store::{Lease, LeaseTake, StateStore};
use crate::sync::clock;
use crate::sync::lease::host_name;

/// This process as a service instance.
pub struct Instance {
    store: Arc<dyn StateStore>,
    /// `HOST:PID`.
    pub id: String,
    host: String,
    token: String,
    /// Holder silent this long: taken over.
    pub period: Duration,
    /// True while this instance holds the service lease.
    pub active: bool,
    started_ms: i64,
    /// When [`Instance::forget_dead`] last looked.
    last_forget_ms: i64,
}

/// An instance record silent this long is removed (see [`Instance::forget_dead`]).
pub const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the active instance looks for such records.
const FORGET_EVERY: Duration = Duration::from_secs(3600);

impl Instance {
    /// A new instance (not active yet).
    pub fn new(store: Arc<dyn StateStore>, period: Duration) -> Instance {
        let host = host_name();
        Instance {
            id: format!("{host}:{}", std::process::id()),
            host,
            token: uuid::Uuid::new_v4().to_string(),
            store,
            period,
            active: false,
            started_ms: clock::now_ms(),
            last_forget_ms: 0,
        }
    }

    fn names() -> Vec<String> {
        vec![SERVICE_LEASE.to_string()]
    }

    /// Heartbeats the lease when active, or tries to take it when not.
    /// Returns a line for the log when the role changed.
    pub fn tick(&mut self) -> Option<String> {
        if self.active {
            match self.store.heartbeat_leases(&Self::names(), &self.token) {
                Ok(0) => {
                    self.active = false;
                    return Some(
                        "lost the service lease (another instance took it over); standing by"
                            .into(),
                    );
                }
                Ok(_) => return None,
                // A store that fails now and then: keep running; the lease
                // period decides whether another instance takes over.
                Err(e) => return Some(format!("heartbeat failed: {e}")),
            }
        }
        let holder = Lease {
            name: String::new(),
            owner: "idsync service".into(),
            host: self.host.clone(),
            pid: std::process::id(),
            token: self.token.clone(),
            since_ms: 0,
            heartbeat_ms: 0,
        };
        let now = clock::now_ms();
        let period_ms = self.period.as_millis() as i64;
        let host = self.host.clone();
        let dead = |l: &Lease| {
            now.saturating_sub(l.heartbeat_ms) > period_ms
                || (l.host == host && l.pid != std::process::id() && !process_alive(l.pid))
        };
        match self.store.take_leases(&Self::names(), &holder, &dead) {
            Ok(LeaseTake::Taken { taken_over, .. }) => {
                self.active = true;
                Some(match taken_over.first() {
                    Some(l) => format!(
                        "active: took over the service lease from {}:{} (last heartbeat {} s ago)",
                        l.host,
                        l.pid,
                        now.saturating_sub(l.heartbeat_ms) / 1000
                    ),
                    None => "active: holding the service lease".into(),
                })
            }
            Ok(LeaseTake::Held(_)) => None,
            Err(e) => Some(format!("cannot take the service lease: {e}")),
        }
    }

    /// Records this instance's heartbeat and role (`active`, `standby`, `staging`).
    pub fn record(&self, role: &str) {
        let v = json!({
            "role": role,
            "heartbeat_ms": clock::now_ms(),
            "started_ms": self.started_ms,
            "lease_period_ms": self.period.as_millis() as i64,
        });
        let _ = self
            .store
            .put_setting(&format!("{INSTANCE_KEY}{}", self.id), &v.to_string());
    }

    /// The current holder of the service lease, as `HOST:PID`.
    pub fn holder(&self) -> Option<String> {
        self.store.leases().ok().and_then(|ls| {
            ls.into_iter()
                .find(|l| l.name == SERVICE_LEASE)
                .map(|l| format!("{}:{}", l.host, l.pid))
        })
    }

    /// Removes the records of instances silent for [`FORGET_AFTER`] (a
    /// process killed, a host gone): until then `status` shows them as
    /// stale. Done by the active instance, at most once per
    /// [`FORGET_EVERY`]; returns a log line per record removed.
    pub fn forget_dead(&mut self) -> Vec<String> {
        let now = clock::now_ms();
        let every = FORGET_EVERY.as_millis() as i64;
        if !self.active || now.saturating_sub(self.last_forget_ms) < every {
            return Vec::new();
        }
        self.last_forget_ms = now;
        let Ok(settings) = self.store.list_settings() else {
            return Vec::new();
        };
        let limit = FORGET_AFTER.as_millis() as i64;
        let mut lines = Vec::new();
        for (key, value) in settings {
            let Some(id) = key.strip_prefix(INSTANCE_KEY) else {
                continue;
            };
            let beat = serde_json::from_str::<serde_json::Value>(&value)
                .ok()
                .and_then(|v| v["heartbeat_ms"].as_i64());
            let why = match beat {
                Some(b) if now.saturating_sub(b) > limit => {
                    format!(
                        "no heartbeat for {} days",
                        now.saturating_sub(b) / 86_400_000
                    )
                }
                Some(_) => continue,
                None => "its record has no heartbeat".to_string(),
            };
            if id != self.id && self.store.remove_setting(&key).is_ok() {
                lines.push(format!("forgot instance {id}: {why}"));
            }
        }
        lines
    }

    /// Gives the lease up and removes this instance's record (a clean stop).
    pub fn leave(&mut self) {
        if self.active {
            let _ = self.store.release_leases(&Self::names(), &self.token);
            self.active = false;
        }
        let _ = self
            .store
            .remove_setting(&format!("{INSTANCE_KEY}{}", self.id));
    }
}

/// Whether process `pid` runs on this host (a zombie has ended).
fn process_alive(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn the_active_instance_forgets_records_silent_for_a_week_once_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap());
        let now = clock::now_ms();
        let week = FORGET_AFTER.as_millis() as i64;
        let beat = |ms: i64| json!({ "role": "active", "heartbeat_ms": ms }).to_string();
        let put = |id: &str, v: &str| {
            store
                .put_setting(&format!("{INSTANCE_KEY}{id}"), v)
                .unwrap()
        };
        put("h:1", &beat(now - 60_000));
        put("h:2", &beat(now - week - 86_400_000));
        put("h:3", "not json");
        store.put_setting("other.setting", "kept").unwrap();
        let mut inst = Instance::new(store.clone(), Duration::from_secs(5));
        inst.record("active");
        assert!(inst.forget_dead().is_empty(), "a standby forgets nothing");
        inst.active = true;
        let mut lines = inst.forget_dead();
        lines.sort();
        assert_eq!(
            lines,
            [
                "forgot instance h:2: no heartbeat for 8 days",
                "forgot instance h:3: its record has no heartbeat"
            ]
        );
        let mut left: Vec<String> = store
            .list_settings()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        left.sort();
        let mut want = vec![
            format!("{INSTANCE_KEY}h:1"),
            format!("{INSTANCE_KEY}{}", inst.id),
            "other.setting".to_string(),
        ];
        want.sort();
        assert_eq!(left, want);
        put("h:4", &beat(now - week - 1000));
        assert!(
            inst.forget_dead().is_empty(),
            "looked again within the hour"
        );
    }
}
