//! Reading idsync's JSON run reports in tests (`--format json` of `run()`).

use serde_json::Value as Json;

/// An integer field of a report; panics naming the field when absent.
pub fn n(v: &Json, key: &str) -> i64 {
    v.get(key)
        .and_then(Json::as_i64)
        .unwrap_or_else(|| panic!("no integer '{key}' in {v:#}"))
}

/// A string field of a report; panics naming the field when absent.
pub fn s<'a>(v: &'a Json, key: &str) -> &'a str {
    v.get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no string '{key}' in {v:#}"))
}

/// Checks a run report's counts: `expect` lists (name, value); names not listed must be 0.
pub fn counts(report: &Json, expect: &[(&str, i64)]) {
    for k in [
        "created",
        "updated",
        "renamed",
        "moved",
        "joined",
        "deprovisioned",
        "unchanged",
        "failed",
    ] {
        let want = expect
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| *v)
            .unwrap_or(0);
        assert_eq!(n(report, k), want, "report count '{k}' in {report:#}");
    }
}

/// The `errors` of a report, as text.
pub fn errors(report: &Json) -> Vec<String> {
    report["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array in {report:#}"))
        .iter()
        .map(|e| e.as_str().expect("error text").to_string())
        .collect()
}
