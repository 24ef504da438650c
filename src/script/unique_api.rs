//! `unique(conn, attr, candidates)` (API §11): the first candidate value
//! free in a connected system and not planned by the preview or run in
//! progress. The rules and the run's registry of planned values are the
//! engine's, in [`crate::sync::unique`]; this binding turns the candidates
//! (an array, or a closure giving the n-th) into what the engine asks for.

use rhai::plugin::*;

use super::convert::rt_err;
use super::objects::Connection;
use crate::sync::unique;

type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// A closure is asked for at most this many candidates.
const MAX_TRIES: usize = 1000;

/// Chooses among `next(n)`'s candidates, in the run in progress if any.
fn choose(
    conn: &Connection,
    attr: &str,
    next: impl FnMut(usize) -> Result<Option<String>, String>,
) -> ScriptResult<String> {
    let attr = attr.trim();
    if attr.is_empty() {
        return Err(rt_err("unique: the attribute name is empty"));
    }
    let reg = unique::current();
    let conn_ = conn.0.clone();
    let found = crate::script::runtime::block_on_to_end(async move {
        unique::first_free(&conn_, attr, reg.as_deref(), next).await
    })
    .map_err(|e| rt_err(format!("unique({attr}): {e}")))?;
    found.ok_or_else(|| {
        rt_err(format!(
            "unique({attr}): every candidate is taken in {}{}",
            conn.0.describe(),
            if unique::current().is_some() {
                " or planned by this run"
            } else {
                ""
            }
        ))
    })
}

/// The text of one candidate; `()` ends the candidates.
fn candidate(v: &Dynamic) -> Result<Option<String>, String> {
    if v.is_unit() {
        return Ok(None);
    }
    if v.is_string() || v.is_int() {
        return Ok(Some(v.to_string()));
    }
    Err(format!(
        "a candidate is a string (or a number), not {}",
        v.type_name()
    ))
}

/// `unique` bindings.
#[export_module]
pub mod unique_api {
    use super::*;
    use rhai::{Array, FnPtr};

    /// The first of `candidates` that no object of `conn` holds in `attr`
    /// (an escaped `(attr=value)` search, below the step's target base
    /// when `conn` is the step's target) and, inside a step's preview or
    /// run, that no other object of the same run was given: two new Ann
    /// Lees in one run get `alee` and `alee2`. Outside a preview or run it
    /// checks the directory only. Values compare ignoring case. An error
    /// when every candidate is taken. Use it in a `once: true` flow or a
    /// create rule, so existing objects keep their value.
    ///
    /// Example:
    /// ```rhai
    /// unique(ol, "uid", ["ann", "ann.lee", "alee"])
    /// ```
    #[rhai_fn(name = "unique", return_raw)]
    pub fn unique_list(conn: Connection, attr: &str, candidates: Array) -> ScriptResult<String> {
        choose(&conn, attr, |n| match candidates.get(n - 1) {
            Some(v) => candidate(v),
            None => Ok(None),
        })
    }

    /// `unique` with a closure giving the n-th candidate (n = 1, 2, ...;
    /// `()` when there are no more; at most 1000 are asked for).
    ///
    /// Example:
    /// ```rhai
    /// unique(ol, "uid", |n| if n == 1 { "alee" } else { `alee${n}` })
    /// ```
    #[rhai_fn(name = "unique", return_raw)]
    pub fn unique_fn(
        ctx: NativeCallContext,
        conn: Connection,
        attr: &str,
        candidates: FnPtr,
    ) -> ScriptResult<String> {
        choose(&conn, attr, |n| {
            if n > MAX_TRIES {
                return Ok(None);
            }
            let v: Dynamic = candidates
                .call_within_context(&ctx, (n as i64,))
                .map_err(|e| format!("candidate {n}: {e}"))?;
            candidate(&v)
        })
    }
}
