//! Unique values in a run (`unique(conn, attr, candidates)`): the first
//! candidate that is neither present in the connected system (a search for
//! `(attr=value)`, the value escaped, under the step's target base when the
//! connection is the step's target) nor already planned by this run, so two
//! new people named Ann Lee planned in one run get `alee` and `alee2`.
//!
//! A preview or run of a step opens a [`RunScope`] ([`enter`]); while it is
//! open every value `unique` hands out is recorded in its registry, which
//! the flows' closures reach through [`current`] (the script layer's
//! binding calls [`first_free`]). Outside a run only the system is asked.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::connector::{Connector, Error as CError, SearchQuery};
use crate::model::dn::ldap_escape;

use super::rules::StepDef;

/// The values planned by one preview or run of a step.
pub struct Registry {
    step: String,
    target: Arc<dyn Connector>,
    target_base: Option<String>,
    /// (connection, lower-case attribute, lower-case value).
    planned: Mutex<HashSet<(String, String, String)>>,
}

impl Registry {
    /// The step whose run this is.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Where `conn` is searched: the step's target base when `conn` is the
    /// step's target, the connection's own base otherwise.
    fn base_for(&self, conn: &Arc<dyn Connector>) -> Option<String> {
        let same = Arc::as_ptr(conn) as *const () == Arc::as_ptr(&self.target) as *const ();
        if same { self.target_base.clone() } else { None }
    }

    /// Records `value` as planned for `attr` in `conn`; false when this run
    /// planned it already (values compare ignoring case, as directories do).
    fn reserve(&self, conn: &dyn Connector, attr: &str, value: &str) -> bool {
        let key = (
            conn.describe(),
            attr.to_lowercase(),
            value.trim().to_lowercase(),
        );
        self.planned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
    }

    /// How many values this run planned.
    pub fn len(&self) -> usize {
        self.planned.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// True when this run planned no value yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The registry of the preview or run in progress.
static CURRENT: Mutex<Option<Arc<Registry>>> = Mutex::new(None);

/// While alive, `step`'s preview or run is the one [`current`] names;
/// dropping it restores what was current before (a workflow's steps open
/// one each, in turn).
pub struct RunScope {
    previous: Option<Arc<Registry>>,
}

/// Opens the registry of a preview or run of `step` (empty: each preview
/// and each run plans its values afresh).
pub fn enter(step: &StepDef) -> RunScope {
    let reg = Arc::new(Registry {
        step: step.name.clone(),
        target: step.target.clone(),
        target_base: step.target_base.clone(),
        planned: Mutex::new(HashSet::new()),
    });
    let mut cur = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    RunScope {
        previous: cur.replace(reg),
    }
}

impl Drop for RunScope {
    fn drop(&mut self) {
        let mut cur = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        *cur = self.previous.take();
    }
}

/// The registry of the preview or run in progress, if any.
pub fn current() -> Option<Arc<Registry>> {
    CURRENT.lock().ok().and_then(|c| c.clone())
}

/// True when an object under `base` (the connection's base when `None`)
/// holds `value` in `attr`.
pub async fn is_present(
    conn: &dyn Connector,
    base: Option<String>,
    attr: &str,
    value: &str,
) -> Result<bool, CError> {
    let q = SearchQuery {
        base,
        filter: format!("({attr}={})", ldap_escape(value)),
        attrs: Some(vec![attr.to_string()]),
        limit: Some(1),
        ..SearchQuery::default()
    };
    let mut found = false;
    conn.search(&q, &mut |_| {
        found = true;
        Ok(false)
    })
    .await?;
    Ok(found)
}

/// Why no value could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UniqueError {
    /// Producing the n-th candidate failed (a closure's error).
    Candidate(String),
    /// The presence search failed.
    Search(String),
}

impl std::fmt::Display for UniqueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UniqueError::Candidate(m) | UniqueError::Search(m) => f.write_str(m),
        }
    }
}

/// The first of the candidates (`next(n)` gives the n-th, from 1; `None`
/// when there are no more) that is not present in `conn` and, in a run
/// (`reg`), not planned by it; the value chosen is recorded as planned.
/// `None` when every candidate is taken. Empty candidates are skipped.
pub async fn first_free(
    conn: &Arc<dyn Connector>,
    attr: &str,
    reg: Option<&Registry>,
    mut next: impl FnMut(usize) -> Result<Option<String>, String>,
) -> Result<Option<String>, UniqueError> {
    let base = reg.and_then(|r| r.base_for(conn));
    let mut tried: HashSet<String> = HashSet::new();
    for n in 1.. {
        let Some(value) = next(n).map_err(UniqueError::Candidate)? else {
            return Ok(None);
        };
        let value = value.trim().to_string();
        if value.is_empty() || !tried.insert(value.to_lowercase()) {
            continue;
        }
        let present = is_present(conn.as_ref(), base.clone(), attr, &value)
            .await
            .map_err(|e| {
                UniqueError::Search(format!(
                    "looking for {attr}={value} in {}: {e}",
                    conn.describe()
                ))
            })?;
        if present {
            continue;
        }
        match reg {
            Some(r) if !r.reserve(conn.as_ref(), attr, &value) => continue,
            _ => return Ok(Some(value)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::csv::{CsvConnector, CsvOptions};

    fn step(target: Arc<dyn Connector>) -> StepDef {
        StepDef {
            name: "u".into(),
            source: target.clone(),
            target,
            scope: Default::default(),
            join: Vec::new(),
            create: None,
            flows: Vec::new(),
            deprovision: Default::default(),
            target_base: None,
            members: None,
            tree: None,
            fingerprint: String::new(),
        }
    }

    /// In a run, a value handed out once is not handed out again (nor one
    /// present in the system); outside a run only the system counts; the
    /// registry ends with its run.
    #[tokio::test]
    async fn a_run_never_hands_out_one_value_twice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "id,uid\n1,alee\n").unwrap();
        let conn: Arc<dyn Connector> =
            Arc::new(CsvConnector::open(p, CsvOptions::new("id")).unwrap());
        let cands = |n: usize| {
            Ok(match n {
                1 => Some("alee".to_string()),
                n if n < 5 => Some(format!("alee{n}")),
                _ => None,
            })
        };
        // outside a run: the system only
        assert!(current().is_none());
        let v = first_free(&conn, "uid", None, cands).await.unwrap();
        assert_eq!(v.as_deref(), Some("alee2"));
        let v = first_free(&conn, "uid", None, cands).await.unwrap();
        assert_eq!(v.as_deref(), Some("alee2"));
        {
            let _run = enter(&step(conn.clone()));
            let reg = current().unwrap();
            let got: Vec<Option<String>> = vec![
                first_free(&conn, "uid", Some(&reg), cands).await.unwrap(),
                first_free(&conn, "UID", Some(&reg), cands).await.unwrap(),
                first_free(&conn, "uid", Some(&reg), cands).await.unwrap(),
                first_free(&conn, "uid", Some(&reg), cands).await.unwrap(),
            ];
            assert_eq!(
                got,
                [
                    Some("alee2".into()),
                    Some("alee3".into()),
                    Some("alee4".into()),
                    None
                ]
            );
            assert_eq!(reg.len(), 3);
        }
        assert!(current().is_none(), "the registry ends with its run");
        let e = first_free(&conn, "uid", None, |_| Err("boom".into()))
            .await
            .unwrap_err();
        assert_eq!(e, UniqueError::Candidate("boom".into()));
    }
}
