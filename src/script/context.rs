//! Process-wide state that Rhai bindings reach: the state store (opened on
//! first use) and the open connections (for attribute-name completion).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rhai::{AST, Engine};

use crate::connector::Connector;
use crate::store::StateStore;
use crate::store::sqlite::SqliteStore;

use super::convert::{ScriptResult, rt_err};

static STORE: OnceLock<Arc<dyn StateStore>> = OnceLock::new();
static OPEN: Mutex<Vec<Weak<dyn Connector>>> = Mutex::new(Vec::new());
/// Connections opened since attribute names were last loaded.
static ATTR_NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The engine and AST of the script being evaluated (closures need both).
static EVAL_ENV: Mutex<Option<(Arc<Engine>, Arc<AST>)>> = Mutex::new(None);
/// Set when a sync run in this process ended with failed objects (exit 3).
static RUN_FAILED: AtomicBool = AtomicBool::new(false);
/// Set when a safety rule refused a run (exit 4).
static RUN_REFUSED: AtomicBool = AtomicBool::new(false);
/// Set when a run was refused because another run held its lease (exit 5).
static RUN_BUSY: AtomicBool = AtomicBool::new(false);

/// How `show(value)` prints: installed by the shell (which owns rendering).
type ShowFn = Box<dyn Fn(&rhai::Dynamic) + Send + Sync>;
static SHOW: OnceLock<ShowFn> = OnceLock::new();

/// Installs the printer behind `show(value)`.
pub fn set_show(f: ShowFn) {
    let _ = SHOW.set(f);
}

/// Prints a value the way the shell prints results (plain text when no
/// shell installed a printer).
pub fn show(v: &rhai::Dynamic) {
    match SHOW.get() {
        Some(f) => f(v),
        None => println!("{v}"),
    }
}

/// Records the engine and AST of the evaluation in progress.
pub fn set_eval_env(engine: Arc<Engine>, ast: Arc<AST>) {
    if let Ok(mut env) = EVAL_ENV.lock() {
        *env = Some((engine, ast));
    }
}

/// The engine and AST of the evaluation in progress.
pub fn eval_env() -> ScriptResult<(Arc<Engine>, Arc<AST>)> {
    EVAL_ENV
        .lock()
        .ok()
        .and_then(|e| e.clone())
        .ok_or_else(|| rt_err("no script is being evaluated"))
}

/// Notes that a run had failed objects.
pub fn note_run_failed() {
    RUN_FAILED.store(true, Ordering::SeqCst);
}

/// Notes that a run was refused by a safety rule.
pub fn note_run_refused() {
    RUN_REFUSED.store(true, Ordering::SeqCst);
}

/// Notes that a run was refused because another run held its lease.
pub fn note_run_busy() {
    RUN_BUSY.store(true, Ordering::SeqCst);
}

/// True when a run was refused because another run held its lease.
pub fn run_busy() -> bool {
    RUN_BUSY.load(Ordering::SeqCst)
}

/// (a run had failed objects, a run was refused) so far in this process.
pub fn run_flags() -> (bool, bool) {
    (
        RUN_FAILED.load(Ordering::SeqCst),
        RUN_REFUSED.load(Ordering::SeqCst),
    )
}

/// The state store, opened on first use: `IDSYNC_STORE` / `IDSYNC_SYNC_STORE`
/// or the `use_store` settings of the local store under `IDSYNC_HOME`, else
/// that local store itself (see [`crate::store::select`]).
pub fn store() -> ScriptResult<Arc<dyn StateStore>> {
    if let Some(s) = STORE.get() {
        return Ok(s.clone());
    }
    let s =
        crate::store::select::open_selected(local_store()?).map_err(|e| rt_err(e.to_string()))?;
    Ok(STORE.get_or_init(|| s).clone())
}

/// The local SQLite store under `IDSYNC_HOME` (where `use_store` writes).
pub fn local_store() -> ScriptResult<Arc<SqliteStore>> {
    static LOCAL: OnceLock<Arc<SqliteStore>> = OnceLock::new();
    if let Some(s) = LOCAL.get() {
        return Ok(s.clone());
    }
    let s = SqliteStore::open_default().map_err(|e| rt_err(format!("{e:#}")))?;
    Ok(LOCAL.get_or_init(|| Arc::new(s)).clone())
}

/// Remembers an open connection, for completion.
pub fn register(c: &Arc<dyn Connector>) {
    if let Ok(mut list) = OPEN.lock() {
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(c));
    }
}

/// Attribute names known to the open connections: each new connection's
/// schema is read once (5 s at most), then served from a cache.
pub fn attribute_names() -> Vec<String> {
    let fresh: Vec<Arc<dyn Connector>> = match OPEN.lock() {
        Ok(mut list) => list.drain(..).filter_map(|w| w.upgrade()).collect(),
        Err(_) => Vec::new(),
    };
    let Ok(mut cache) = ATTR_NAMES.lock() else {
        return Vec::new();
    };
    for c in fresh {
        let fut = c.attribute_names();
        if let Ok(Ok(found)) = super::runtime::block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), fut).await
        }) {
            cache.extend(found);
        }
    }
    cache.sort_by_key(|n| n.to_ascii_lowercase());
    cache.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    cache.clone()
}
