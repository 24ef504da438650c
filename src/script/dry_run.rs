//! `--dry-run`: what a step's `run()` gives instead of running. The plan is
//! previewed (the same code a run would apply), shown as the preview table
//! on stdout, and returned as a report with status `"dry-run"` whose counts
//! are what the run would have done; nothing is written, no link or change
//! cursor is stored.

use std::collections::HashSet;

use rhai::{Array, Dynamic, Map};

use crate::sync::rules::StepDef;

use super::context;
use super::convert::ScriptResult;

/// The dry-run report of `step` from its preview `rows`.
pub fn step(step: &StepDef, rows: Array) -> ScriptResult<Map> {
    if !super::run_mode::quiet() {
        eprintln!(
            "dry run: {}: previewed instead of run, nothing written",
            step.name
        );
        context::show(&Dynamic::from_array(rows.clone()));
    }
    // Objects per kind of operation (a create has one row per attribute).
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut unchanged = 0i64;
    for r in &rows {
        let Some(m) = r.read_lock::<Map>() else {
            continue;
        };
        let op = m.get("op").map(|v| v.to_string()).unwrap_or_default();
        let object = m.get("object").map(|v| v.to_string()).unwrap_or_default();
        let kind = match op.as_str() {
            "create" => "created",
            "update" => "updated",
            "join" => "joined",
            "rename/move" => "renamed",
            "error" => "failed",
            "unchanged" => {
                unchanged = object
                    .trim_start_matches('(')
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                continue;
            }
            o if o.starts_with("deprovision") => "deprovisioned",
            _ => continue,
        };
        seen.insert((kind.to_string(), object));
    }
    let count = |kind: &str| -> i64 { seen.iter().filter(|(k, _)| k == kind).count() as i64 };
    let mut m = Map::new();
    m.insert("step".into(), step.name.clone().into());
    m.insert("status".into(), "dry-run".into());
    for k in [
        "created",
        "updated",
        "joined",
        "renamed",
        "deprovisioned",
        "failed",
    ] {
        m.insert(k.into(), Dynamic::from(count(k)));
    }
    m.insert("unchanged".into(), Dynamic::from(unchanged));
    m.insert("preview".into(), Dynamic::from_array(rows));
    Ok(m)
}
