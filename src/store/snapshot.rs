//! What one import writes into a state store — profiles, settings, links and
//! run history — as one unit: [`StateStore::import_snapshot`], used by
//! `import_config` and `idsync store migrate`. Also the test-only failure
//! knob that lets the tests refuse an import part-way.

use super::{Link, Profile, RunRecord, StateStore, StoreError};

/// The environment variable of the test-only failure knob: when it holds a
/// number N, [`StateStore::import_snapshot`] fails just before its item
/// number N+1 (profiles, settings, each step's links, each step's kept
/// links, the runs — in that order), as a destination that refuses a row
/// would. For the tests only; never set it in production.
pub const FAIL_AFTER_ENV: &str = "IDSYNC_TEST_FAIL_IMPORT_AFTER";

/// Everything one import writes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Profiles, written with their `updated_ms` (create or replace by name).
    pub profiles: Vec<Profile>,
    /// Settings as `(key, value)` (create or replace by key).
    pub settings: Vec<(String, String)>,
    /// Live links per step (create or replace by source anchor).
    pub links: Vec<(String, Vec<Link>)>,
    /// Links kept for deprovisioned objects, per step.
    pub deprovisioned: Vec<(String, Vec<Link>)>,
    /// Run history, oldest first (create or replace by id).
    pub runs: Vec<RunRecord>,
}

/// The test-only knob ([`FAIL_AFTER_ENV`]): an error when `written` items
/// have been written and the knob says to stop there.
pub(crate) fn fail_point(written: usize) -> Result<(), StoreError> {
    match std::env::var(FAIL_AFTER_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) if n == written => Err(StoreError::InvalidName {
            what: "import item",
            name: format!("number {}", written + 1),
            reason: format!("refused on purpose by the test-only knob {FAIL_AFTER_ENV}"),
        }),
        _ => Ok(()),
    }
}

/// Calls `write` for every item of `s` in order, each after its
/// [`fail_point`]: the backends run it inside their one transaction, the
/// trait default without one.
pub(crate) fn each_item(
    s: &Snapshot,
    mut write: impl FnMut(Item<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut n = 0;
    let mut step = |item: Item<'_>| {
        fail_point(n)?;
        n += 1;
        write(item)
    };
    for p in &s.profiles {
        step(Item::Profile(p))?;
    }
    for (k, v) in &s.settings {
        step(Item::Setting(k, v))?;
    }
    for (name, links) in &s.links {
        step(Item::Links(name, links, false))?;
    }
    for (name, links) in &s.deprovisioned {
        step(Item::Links(name, links, true))?;
    }
    if !s.runs.is_empty() {
        step(Item::Runs(&s.runs))?;
    }
    Ok(())
}

/// One item of a [`Snapshot`].
pub(crate) enum Item<'a> {
    /// A profile, with its time.
    Profile(&'a Profile),
    /// A setting.
    Setting(&'a str, &'a str),
    /// The links of a step: live (`false`) or kept for deprovisioned objects.
    Links(&'a str, &'a [Link], bool),
    /// The run history.
    Runs(&'a [RunRecord]),
}

/// The trait default: every item written on its own, no transaction.
pub(crate) fn item_by_item<S: StateStore + ?Sized>(
    store: &S,
    s: &Snapshot,
) -> Result<(), StoreError> {
    each_item(s, |item| match item {
        Item::Profile(p) => store.import_profiles(std::slice::from_ref(p)),
        Item::Setting(k, v) => store.put_setting(k, v),
        Item::Links(step, links, false) => store.put_links(step, links),
        Item::Links(step, links, true) => store.keep_deprovisioned(step, links),
        Item::Runs(runs) => store.import_runs(runs),
    })
}

/// Each source anchor once, the last link given for it kept (one statement
/// cannot write a row twice; one upsert after the other would keep the last).
pub(crate) fn last_per_anchor(links: &[Link]) -> Vec<Link> {
    let mut last = std::collections::HashMap::new();
    for (i, l) in links.iter().enumerate() {
        last.insert(l.source_anchor.as_str(), i);
    }
    links
        .iter()
        .enumerate()
        .filter(|(i, l)| last.get(l.source_anchor.as_str()) == Some(i))
        .map(|(_, l)| l.clone())
        .collect()
}
