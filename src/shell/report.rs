//! How a sync run's report prints. A report is the map `run()` returns
//! (step, status, run id, counts, log, `failures`); its failed objects are
//! a list, never one line: in the table format the first [`SHOWN`], one per
//! line (operation, object, cause; each line cut to the terminal's width or
//! [`LINE_MAX`]), then "… and N more, see LOG" — the run log has them all.
//! In csv a report is its failures, one row each; json prints the map as it
//! is (one `failures` element per failed object); ldif has no form for it.

use rhai::{Array, Dynamic, Map};

use super::render::{RenderOptions, compact, key_union, one_line, record, truncate};
use crate::sync::Counts;

/// Failed objects listed in the table format before "… and N more".
pub const SHOWN: usize = 20;
/// Longest failure line when the output is not a terminal.
pub const LINE_MAX: usize = 240;

/// Keys of the summary that the failure list replaces in the table format.
const LIST_KEYS: [&str; 2] = ["errors", "failures"];

/// Keys of the summary that come before the counts.
const HEAD_KEYS: [&str; 3] = ["step", "status", "run_id"];

/// The summary's keys in the order a reader wants them: step, status and
/// run id, then every count in [`Counts::NAMES`] order (the engine's, the
/// history's and the log's order), then the rest (duration, log, ...).
fn summary_keys(m: &Map) -> Vec<String> {
    let rank = |k: &str| {
        HEAD_KEYS
            .iter()
            .chain(Counts::NAMES.iter())
            .position(|p| *p == k)
            .unwrap_or(usize::MAX)
    };
    let mut keys: Vec<String> = key_union([m])
        .into_iter()
        .filter(|k| !LIST_KEYS.contains(&k.as_str()))
        .collect();
    // A stable sort: the keys that are neither keep key_union's order.
    keys.sort_by_key(|k| rank(k));
    keys
}

/// True when `m` is a sync run's report (the map `run()` returns).
pub fn is_report(m: &Map) -> bool {
    ["step", "run_id", "status"]
        .iter()
        .all(|k| m.contains_key(*k))
        && m.get("failures").is_some_and(Dynamic::is_array)
}

/// True when `v` is a report, or a non-empty array of reports (a
/// workflow's run).
pub fn is_reports(v: &Dynamic) -> bool {
    if let Some(m) = v.read_lock::<Map>() {
        return is_report(&m);
    }
    v.read_lock::<Array>().is_some_and(|a| {
        !a.is_empty()
            && a.iter()
                .all(|x| x.read_lock::<Map>().is_some_and(|m| is_report(&m)))
    })
}

/// The reports in `v` (one, or each of an array).
fn reports(v: &Dynamic) -> Vec<Map> {
    if let Some(m) = v.read_lock::<Map>() {
        return vec![m.clone()];
    }
    v.read_lock::<Array>()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.read_lock::<Map>().map(|m| m.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// One failure of a report: (operation, object, cause).
fn failure(v: &Dynamic) -> (String, String, String) {
    match v.read_lock::<Map>() {
        Some(m) => {
            let get = |k: &str| m.get(k).map(compact).unwrap_or_default();
            (get("operation"), get("object"), get("cause"))
        }
        None => (String::new(), String::new(), compact(v)),
    }
}

/// The failures of a report.
fn failures(m: &Map) -> Vec<(String, String, String)> {
    m.get("failures")
        .and_then(|f| {
            f.read_lock::<Array>()
                .map(|a| a.iter().map(failure).collect())
        })
        .unwrap_or_default()
}

/// The table format of a report (or of a workflow's reports, one after
/// the other): the summary as a record, then the bounded failure list.
pub fn table(v: &Dynamic, opts: &RenderOptions) -> String {
    reports(v)
        .iter()
        .map(|m| one_table(m, opts))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn one_table(m: &Map, opts: &RenderOptions) -> String {
    let mut lines: Vec<(String, Vec<String>)> = summary_keys(m)
        .into_iter()
        .map(|k| {
            let v = m.get(k.as_str()).map(compact).unwrap_or_default();
            (k, vec![v])
        })
        .collect();
    let list = failures(m);
    if !list.is_empty() {
        let label_width = lines
            .iter()
            .map(|(n, _)| n.chars().count() + 1)
            .chain(["failures".len() + 1])
            .max()
            .unwrap_or(0)
            + 1;
        let width = opts
            .width
            .unwrap_or(LINE_MAX)
            .saturating_sub(label_width)
            .max(20);
        let log = m.get("log").map(compact).unwrap_or_default();
        let shown = list.len().min(SHOWN);
        let mut values = vec![if shown < list.len() {
            format!("{} objects failed, the first {shown}:", list.len())
        } else {
            format!("{} objects failed:", list.len())
        }];
        for (op, object, cause) in &list[..shown] {
            let text = match op.is_empty() {
                true => format!("{object}: {cause}"),
                false => format!("{op} {object}: {cause}"),
            };
            values.push(truncate(&one_line(&text), width));
        }
        if shown < list.len() {
            let more = list.len() - shown;
            let rest = if log.is_empty() {
                format!("… and {more} more (r.failures has them all)")
            } else {
                format!("… and {more} more, see {log}")
            };
            values.push(rest);
        }
        lines.push(("failures".into(), values));
    }
    record(&lines, opts)
}

/// The csv form of a report (or of a workflow's reports): one row per
/// failed object: step, run_id, operation, object, cause.
pub fn csv_rows(v: &Dynamic) -> (Vec<String>, Vec<Vec<String>>) {
    let headers = ["step", "run_id", "operation", "object", "cause"]
        .map(String::from)
        .to_vec();
    let mut rows = Vec::new();
    for m in reports(v) {
        let step = m.get("step").map(compact).unwrap_or_default();
        let run_id = m.get("run_id").map(compact).unwrap_or_default();
        for (op, object, cause) in failures(&m) {
            rows.push(vec![step.clone(), run_id.clone(), op, object, cause]);
        }
    }
    (headers, rows)
}

/// Why a report has no ldif form, and what to use instead.
pub fn ldif_refusal() -> String {
    "a sync run's report cannot be printed as ldif (ldif holds directory entries, a report \
     holds counts and failures); use --format table, json or csv (csv lists one failed object \
     per row). The run itself is recorded: see history() and its log"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: usize, cause: &str) -> Dynamic {
        let mut m = Map::new();
        m.insert("step".into(), "s".into());
        m.insert("run_id".into(), Dynamic::from(7_i64));
        m.insert("status".into(), "failed".into());
        m.insert("failed".into(), Dynamic::from(n as i64));
        m.insert("log".into(), "/var/log/s.log".into());
        let list: Array = (0..n)
            .map(|i| {
                let mut f = Map::new();
                f.insert("object".into(), format!("uid=u{i},dc=x").into());
                f.insert("operation".into(), "create".into());
                f.insert("cause".into(), cause.into());
                Dynamic::from_map(f)
            })
            .collect();
        m.insert("failures".into(), Dynamic::from_array(list));
        Dynamic::from_map(m)
    }

    #[test]
    fn a_long_failure_list_is_bounded_and_points_at_the_log() {
        let long_cause = format!("bad value\n{}", "x".repeat(5000));
        let text = table(&report(2000, &long_cause), &RenderOptions::default());
        assert!(
            text.lines().all(|l| l.chars().count() <= LINE_MAX),
            "{text}"
        );
        assert_eq!(text.matches("create uid=u").count(), SHOWN, "{text}");
        assert!(
            text.contains("… and 1980 more, see /var/log/s.log"),
            "{text}"
        );
        assert!(
            text.contains("2000 objects failed, the first 20:"),
            "{text}"
        );
        let narrow = RenderOptions {
            color: false,
            width: Some(60),
        };
        let text = table(&report(3, &long_cause), &narrow);
        assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
        assert!(!text.contains("more"), "{text}");
    }

    #[test]
    fn the_summary_shows_every_count_in_the_engines_order() {
        let mut r = report(0, "");
        if let Some(mut m) = r.write_lock::<Map>() {
            for (i, k) in Counts::NAMES.iter().enumerate() {
                m.insert((*k).into(), Dynamic::from(10 + i as i64));
            }
            m.insert("duration_ms".into(), Dynamic::from(5_i64));
        }
        let plain = RenderOptions {
            color: false,
            width: None,
        };
        let text = table(&r, &plain);
        let labels: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once(':').map(|(k, _)| k))
            .collect();
        let mut want = vec!["step", "status", "run_id"];
        want.extend(Counts::NAMES);
        want.extend(["duration_ms", "log"]);
        assert_eq!(labels, want, "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("containers:") && l.ends_with(" 18")),
            "{text}"
        );
    }

    #[test]
    fn csv_is_one_row_per_failure_and_maps_are_not_reports() {
        let (h, rows) = csv_rows(&report(3, "no such object"));
        assert_eq!(h, ["step", "run_id", "operation", "object", "cause"]);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            ["s", "7", "create", "uid=u1,dc=x", "no such object"]
        );
        let both = Dynamic::from_array(vec![report(2, "a"), report(1, "b")]);
        assert!(is_reports(&both));
        assert_eq!(csv_rows(&both).1.len(), 3);
        assert!(!is_reports(&Dynamic::from_map(Map::new())));
        assert!(!is_reports(&Dynamic::from_array(vec![])));
    }
}
