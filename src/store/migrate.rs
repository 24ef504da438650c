//! `idsync store migrate --to LOCATION [--from LOCATION] [--force]`: copies
//! one state store into another — connection profiles (with their times),
//! settings, links (live and those kept for deprovisioned objects) and run
//! history (ids, times, statuses, counts) — then reads the target back and
//! prints the count per table for both sides; any difference is an error.
//!
//! - The source is the store this process would use (`IDSYNC_STORE`, the
//!   `use_store` setting, else `IDSYNC_HOME/state.db`), or `--from`.
//! - Not copied: leases (they belong to running processes: a source with a
//!   lease held is refused unless `--force`), and the settings `store` /
//!   `sync-store` (where a store is, is not data of the store).
//! - Everything is written in one transaction of the target
//!   ([`StateStore::import_snapshot`]): a row the target refuses leaves it
//!   exactly as it was.
//! - A target that already holds profiles, links or runs is refused unless
//!   `--force`, which writes over it (create or replace by key); the check
//!   then is that every copied item is in the target.

use std::sync::Arc;

use clap::Parser;

use super::config_file::{STORE_SETTING, SYNC_STORE_SETTING};
use super::select::{self, open_location, shown};
use super::{Snapshot, SqliteStore, StateStore};

/// Copy the state store into another one, verifying counts.
#[derive(Parser, Debug)]
#[command(name = "idsync store", about = "Manage the state store")]
struct StoreCli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Copy every profile, setting, link and run into another store.
    Migrate {
        /// Target: postgres://user@host:port/db, mssql://user@host:port/db or an
        /// ADO.NET string, sqlite:PATH or a path.
        #[arg(long, value_name = "LOCATION")]
        to: String,
        /// Source (default: the store this process uses).
        #[arg(long, value_name = "LOCATION")]
        from: Option<String>,
        /// Write into a non-empty target; copy although leases are held.
        #[arg(long)]
        force: bool,
    },
}

/// Counts per table of one store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Connection profiles.
    pub profiles: usize,
    /// Settings (without `store` / `sync-store`).
    pub settings: usize,
    /// Live links.
    pub links: usize,
    /// Links kept for deprovisioned objects.
    pub deprovisioned_links: usize,
    /// Recorded runs.
    pub runs: usize,
}

impl Counts {
    fn rows(&self) -> [(&'static str, usize); 5] {
        [
            ("profiles", self.profiles),
            ("settings", self.settings),
            ("links", self.links),
            ("deprovisioned links", self.deprovisioned_links),
            ("runs", self.runs),
        ]
    }
}

fn copied_setting(k: &str) -> bool {
    k != STORE_SETTING && k != SYNC_STORE_SETTING
}

/// Counts what `store` holds.
pub fn count(store: &dyn StateStore) -> anyhow::Result<Counts> {
    let mut c = Counts {
        profiles: store.list_profiles()?.len(),
        settings: store
            .list_settings()?
            .iter()
            .filter(|(k, _)| copied_setting(k))
            .count(),
        runs: store.runs(None, usize::MAX)?.len(),
        ..Counts::default()
    };
    for step in store.step_names()? {
        c.links += store.link_count(&step)?;
        c.deprovisioned_links += store.deprovisioned_links(&step)?.len();
    }
    Ok(c)
}

/// Copies `from` into `to` (see the module doc) and returns the counts of
/// both, checked.
pub fn migrate(
    from: &dyn StateStore,
    to: &dyn StateStore,
    force: bool,
) -> anyhow::Result<(Counts, Counts)> {
    if !force {
        let held = from.leases()?;
        if let Some(l) = held.first() {
            anyhow::bail!(
                "the source store has {} lease(s) held (step {:?}, pid {} on {}): a run is in progress; \
                 migrate when it has finished, or give --force",
                held.len(),
                l.name,
                l.pid,
                l.host
            );
        }
        let there = count(to)?;
        if there.profiles + there.links + there.deprovisioned_links + there.runs > 0 {
            anyhow::bail!(
                "the target store is not empty ({} profiles, {} links, {} deprovisioned links, {} runs); \
                 give --force to write over it",
                there.profiles,
                there.links,
                there.deprovisioned_links,
                there.runs
            );
        }
    }
    let src = count(from)?;
    let mut snapshot = Snapshot {
        profiles: from.list_profiles()?,
        settings: from.list_settings()?,
        runs: from.runs(None, usize::MAX)?,
        ..Snapshot::default()
    };
    snapshot.settings.retain(|(k, _)| copied_setting(k));
    snapshot.runs.reverse();
    for step in from.step_names()? {
        snapshot.links.push((step.clone(), from.links(&step)?));
        snapshot
            .deprovisioned
            .push((step.clone(), from.deprovisioned_links(&step)?));
    }
    // One transaction: a refusal part-way leaves the target as it was.
    to.import_snapshot(&snapshot)
        .map_err(|e| anyhow::anyhow!("{e}; nothing was written to the target"))?;
    let dst = count(to)?;
    let ok = if force {
        dst.rows().iter().zip(src.rows()).all(|(d, s)| d.1 >= s.1)
    } else {
        dst == src
    };
    if !ok {
        anyhow::bail!("the copy does not verify: source {src:?}, target {dst:?}");
    }
    Ok((src, dst))
}

/// `idsync store ...`: `args` are the words after `store`. Returns the exit status.
pub fn main(args: &[String]) -> u8 {
    let argv = std::iter::once("idsync store".to_string()).chain(args.iter().cloned());
    let cli = match StoreCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let Cmd::Migrate { to, from, force } = cli.cmd;
    match run_migrate(&to, from.as_deref(), force) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: store migrate: {e:#}");
            1
        }
    }
}

fn run_migrate(to: &str, from: Option<&str>, force: bool) -> anyhow::Result<String> {
    let (source, from_shown): (Arc<dyn StateStore>, String) = match from {
        Some(loc) => (open_location(loc, false)?, shown(loc)),
        None => {
            let local = Arc::new(SqliteStore::open_default()?);
            let path = local.path().display().to_string();
            let (store, sync) = select::chosen(local.as_ref())?;
            let shown_from = match (&store, &sync) {
                (None, None) => path,
                (s, y) => format!(
                    "{}{}",
                    s.as_deref().map(shown).unwrap_or(path),
                    y.as_deref()
                        .map(|y| format!(" + sync data in {}", shown(y)))
                        .unwrap_or_default()
                ),
            };
            (select::open_selected(local)?, shown_from)
        }
    };
    let target = open_location(to, false)?;
    let (src, dst) = migrate(source.as_ref(), target.as_ref(), force)?;
    let mut out = format!("copied {from_shown} -> {}\n", shown(to));
    out.push_str(&format!(
        "{:<22}{:>10}{:>10}\n",
        "table", "source", "target"
    ));
    for ((name, s), (_, d)) in src.rows().into_iter().zip(dst.rows()) {
        out.push_str(&format!("{name:<22}{s:>10}{d:>10}\n"));
    }
    out.push_str("verified: the counts agree\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn migrate_copies_everything_and_refuses_a_non_empty_target() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path().join("a.db")).unwrap();
        let b = SqliteStore::open(dir.path().join("b.db")).unwrap();
        a.put_profile("ad", "ldap", &json!({"url": "ldap://x"}))
            .unwrap();
        a.put_setting("sync-cursor/s", "c").unwrap();
        a.put_setting(STORE_SETTING, "postgres://u@h/db").unwrap();
        let l = |n: &str| crate::store::Link {
            source_anchor: n.into(),
            target_anchor: format!("t{n}"),
            target_dn: format!("cn={n}"),
            source_hash: Some("h".into()),
            desired_dn: None,
            updated_ms: 7,
        };
        a.put_links("s", &[l("1"), l("2")]).unwrap();
        a.keep_deprovisioned("s", &[l("3")]).unwrap();
        let r1 = a.start_run("s", "step", Some("/l")).unwrap();
        a.finish_run(r1, "ok", &json!({"created": 2}), None)
            .unwrap();
        let r2 = a.start_run("s", "step", None).unwrap();
        let (src, dst) = migrate(&a, &b, false).unwrap();
        assert_eq!(src, dst);
        assert_eq!(
            src,
            Counts {
                profiles: 1,
                settings: 1,
                links: 2,
                deprovisioned_links: 1,
                runs: 2
            }
        );
        assert_eq!(b.runs(None, 10).unwrap(), a.runs(None, 10).unwrap());
        assert_eq!(b.list_profiles().unwrap(), a.list_profiles().unwrap());
        assert_eq!(b.deprovisioned_links("s").unwrap(), [l("3")]);
        assert_eq!(b.get_setting(STORE_SETTING).unwrap(), None);
        // New runs in the target come after the copied ones.
        assert!(b.start_run("s", "step", None).unwrap() > r2);
        let e = migrate(&a, &b, false).unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("--force"), "{e}");
        migrate(&a, &b, true).unwrap();
    }
}
