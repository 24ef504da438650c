//! Configuration and sync data in two stores (`IDSYNC_STORE` +
//! `IDSYNC_SYNC_STORE`): a [`StateStore`] that sends each call to one of
//! them. Connection profiles and settings go to the configuration store;
//! links, the change cursors (settings under
//! [`super::config_file::MACHINE_STATE_PREFIXES`]), leases and run history
//! go to the sync store — leases and runs together, because taking a
//! lease marks the dead holder's runs interrupted in the same transaction.

use std::sync::Arc;

use super::config_file::travels;
use super::{Lease, LeaseTake, Link, Profile, RunRecord, Snapshot, StateStore, StoreError};

/// Two stores behind one [`StateStore`].
pub struct RouterStore {
    config: Arc<dyn StateStore>,
    sync: Arc<dyn StateStore>,
}

impl RouterStore {
    /// Configuration in `config`, sync data in `sync`.
    pub fn new(config: Arc<dyn StateStore>, sync: Arc<dyn StateStore>) -> Self {
        RouterStore { config, sync }
    }

    /// The store that keeps the setting `key`.
    fn setting_store(&self, key: &str) -> &dyn StateStore {
        if travels(key.trim()) {
            self.config.as_ref()
        } else {
            self.sync.as_ref()
        }
    }
}

impl StateStore for RouterStore {
    fn put_profile(
        &self,
        name: &str,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.config.put_profile(name, kind, data)
    }
    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError> {
        self.config.get_profile(name)
    }
    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.config.list_profiles()
    }
    fn remove_profile(&self, name: &str) -> Result<bool, StoreError> {
        self.config.remove_profile(name)
    }
    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.setting_store(key).get_setting(key)
    }
    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.setting_store(key).put_setting(key, value)
    }
    fn list_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut all: Vec<(String, String)> = self
            .config
            .list_settings()?
            .into_iter()
            .filter(|(k, _)| travels(k))
            .collect();
        all.extend(
            self.sync
                .list_settings()?
                .into_iter()
                .filter(|(k, _)| !travels(k)),
        );
        all.sort();
        Ok(all)
    }
    fn remove_setting(&self, key: &str) -> Result<bool, StoreError> {
        self.setting_store(key).remove_setting(key)
    }
    fn links(&self, step: &str) -> Result<Vec<Link>, StoreError> {
        self.sync.links(step)
    }
    fn put_links(&self, step: &str, links: &[Link]) -> Result<(), StoreError> {
        self.sync.put_links(step, links)
    }
    fn remove_links(&self, step: &str, source_anchors: &[String]) -> Result<usize, StoreError> {
        self.sync.remove_links(step, source_anchors)
    }
    fn link_count(&self, step: &str) -> Result<usize, StoreError> {
        self.sync.link_count(step)
    }
    fn links_of(&self, step: &str, source_anchors: &[String]) -> Result<Vec<Link>, StoreError> {
        self.sync.links_of(step, source_anchors)
    }
    fn links_not_in(&self, step: &str, present: &[String]) -> Result<Vec<Link>, StoreError> {
        self.sync.links_not_in(step, present)
    }
    fn deprovisioned_links(&self, step: &str) -> Result<Vec<Link>, StoreError> {
        self.sync.deprovisioned_links(step)
    }
    fn keep_deprovisioned(&self, step: &str, links: &[Link]) -> Result<(), StoreError> {
        self.sync.keep_deprovisioned(step, links)
    }
    fn step_names(&self) -> Result<Vec<String>, StoreError> {
        self.sync.step_names()
    }
    fn take_leases(
        &self,
        names: &[String],
        holder: &Lease,
        dead: &dyn Fn(&Lease) -> bool,
    ) -> Result<LeaseTake, StoreError> {
        self.sync.take_leases(names, holder, dead)
    }
    fn heartbeat_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError> {
        self.sync.heartbeat_leases(names, token)
    }
    fn release_leases(&self, names: &[String], token: &str) -> Result<usize, StoreError> {
        self.sync.release_leases(names, token)
    }
    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.sync.leases()
    }
    fn start_run(&self, name: &str, kind: &str, log_path: Option<&str>) -> Result<i64, StoreError> {
        self.sync.start_run(name, kind, log_path)
    }
    fn finish_run(
        &self,
        id: i64,
        status: &str,
        counts: &serde_json::Value,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        self.sync.finish_run(id, status, counts, message)
    }
    fn runs(&self, name: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.sync.runs(name, limit)
    }
    fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        self.sync.import_runs(runs)
    }
    fn import_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        self.config.import_profiles(profiles)
    }
    /// One transaction in each store: profiles and travelling settings in
    /// the configuration store first, then the rest in the sync store (two
    /// databases cannot share one transaction).
    fn import_snapshot(&self, s: &Snapshot) -> Result<(), StoreError> {
        let (conf, sync): (Vec<_>, Vec<_>) = s
            .settings
            .iter()
            .cloned()
            .partition(|(k, _)| travels(k.trim()));
        let config = Snapshot {
            profiles: s.profiles.clone(),
            settings: conf,
            ..Snapshot::default()
        };
        self.config.import_snapshot(&config)?;
        let rest = Snapshot {
            profiles: Vec::new(),
            settings: sync,
            ..s.clone()
        };
        self.sync.import_snapshot(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn router_keeps_the_contract_and_splits_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(SqliteStore::open(dir.path().join("c.db")).unwrap());
        let sync = Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap());
        let r = RouterStore::new(config.clone(), sync.clone());
        crate::store::contract(&r);
        r.put_setting("sync-cursor/a", "c1").unwrap();
        r.put_setting("x", "1").unwrap();
        r.put_links(
            "s/u",
            &[crate::store::Link {
                source_anchor: "a".into(),
                target_anchor: "b".into(),
                target_dn: "cn=b".into(),
                source_hash: None,
                desired_dn: None,
                updated_ms: 1,
            }],
        )
        .unwrap();
        assert_eq!(config.get_setting("sync-cursor/a").unwrap(), None);
        assert_eq!(
            sync.get_setting("sync-cursor/a").unwrap().as_deref(),
            Some("c1")
        );
        assert_eq!(config.get_setting("x").unwrap().as_deref(), Some("1"));
        assert_eq!(sync.get_setting("x").unwrap(), None);
        assert_eq!(sync.link_count("s/u").unwrap(), 1);
        assert_eq!(config.link_count("s/u").unwrap(), 0);
        assert!(sync.list_profiles().unwrap().is_empty());
        assert!(!config.list_profiles().unwrap().is_empty());
        assert!(config.runs(None, 10).unwrap().is_empty());
        assert!(!sync.runs(None, 10).unwrap().is_empty());
    }
}
