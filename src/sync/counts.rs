//! What a run did, counted: one type from the engine's writes through the
//! history record and the Rhai maps to the printed report. Every place
//! that names, adds up, stores or prints the counts goes through
//! [`Counts::NAMES`] / [`Counts::fields`], so a count cannot be dropped in
//! one of them (a workflow's totals, a history record) and kept in another.

use std::iter::Sum;
use std::ops::AddAssign;

use serde_json::{Map, Value};

/// What a run did (one step's run, or the sum over a workflow's steps).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Objects created.
    pub created: usize,
    /// Objects updated (attributes written).
    pub updated: usize,
    /// Objects renamed.
    pub renamed: usize,
    /// Objects moved.
    pub moved: usize,
    /// Objects linked by a join this run.
    pub joined: usize,
    /// Objects deprovisioned.
    pub deprovisioned: usize,
    /// Objects with nothing to write.
    pub unchanged: usize,
    /// Objects that failed.
    pub failed: usize,
    /// Containers created for a sync-tree.
    pub containers: usize,
}

impl Counts {
    /// The names of the counts, in the order reports, logs and history
    /// show them; also their keys in the JSON form and the Rhai maps.
    pub const NAMES: [&'static str; 9] = [
        "created",
        "updated",
        "renamed",
        "moved",
        "joined",
        "deprovisioned",
        "unchanged",
        "failed",
        "containers",
    ];

    /// Each count with its name, in [`Counts::NAMES`] order.
    pub fn fields(&self) -> [(&'static str, usize); 9] {
        let Counts {
            created,
            updated,
            renamed,
            moved,
            joined,
            deprovisioned,
            unchanged,
            failed,
            containers,
        } = *self;
        let values = [
            created,
            updated,
            renamed,
            moved,
            joined,
            deprovisioned,
            unchanged,
            failed,
            containers,
        ];
        std::array::from_fn(|i| (Self::NAMES[i], values[i]))
    }

    /// The count called `name` (one of [`Counts::NAMES`]), mutably.
    fn slot(&mut self, name: &str) -> Option<&mut usize> {
        Some(match name {
            "created" => &mut self.created,
            "updated" => &mut self.updated,
            "renamed" => &mut self.renamed,
            "moved" => &mut self.moved,
            "joined" => &mut self.joined,
            "deprovisioned" => &mut self.deprovisioned,
            "unchanged" => &mut self.unchanged,
            "failed" => &mut self.failed,
            "containers" => &mut self.containers,
            _ => return None,
        })
    }

    /// Adds `other`'s counts to these, every one of them.
    pub fn add(&mut self, other: &Counts) {
        let Counts {
            created,
            updated,
            renamed,
            moved,
            joined,
            deprovisioned,
            unchanged,
            failed,
            containers,
        } = other;
        self.created += created;
        self.updated += updated;
        self.renamed += renamed;
        self.moved += moved;
        self.joined += joined;
        self.deprovisioned += deprovisioned;
        self.unchanged += unchanged;
        self.failed += failed;
        self.containers += containers;
    }

    /// The sum of several runs' counts (a workflow's totals).
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Counts>) -> Counts {
        let mut total = Counts::default();
        for c in all {
            total.add(c);
        }
        total
    }

    /// The JSON form stored in the run history:
    /// `{"created": n, "updated": n, ...}`, every count present.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.fields()
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::from(v)))
                .collect::<Map<String, Value>>(),
        )
    }

    /// Reads the JSON form back. `None` when `v` holds none of the counts
    /// (a run still running is stored with `{}`); a count missing from an
    /// older record reads as 0; other keys are ignored.
    pub fn from_json(v: &Value) -> Option<Counts> {
        let m = v.as_object()?;
        let mut c = Counts::default();
        let mut any = false;
        for (k, v) in m {
            if let (Some(slot), Some(n)) = (c.slot(k), v.as_u64()) {
                *slot = n as usize;
                any = true;
            }
        }
        any.then_some(c)
    }
}

impl AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, other: &Counts) {
        self.add(other);
    }
}

impl<'a> Sum<&'a Counts> for Counts {
    fn sum<I: Iterator<Item = &'a Counts>>(iter: I) -> Counts {
        Counts::sum(iter)
    }
}

/// "created 1, updated 0, renamed 0, ..." (every count, in
/// [`Counts::NAMES`] order): the form run logs and messages print.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.fields().into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts whose every field differs (1..=9), so a dropped or swapped
    /// field shows.
    fn distinct() -> Counts {
        Counts {
            created: 1,
            updated: 2,
            renamed: 3,
            moved: 4,
            joined: 5,
            deprovisioned: 6,
            unchanged: 7,
            failed: 8,
            containers: 9,
        }
    }

    #[test]
    fn names_and_fields_agree_and_cover_every_count() {
        let c = distinct();
        let fields = c.fields();
        assert_eq!(fields.map(|(k, _)| k), Counts::NAMES);
        assert_eq!(fields.map(|(_, v)| v), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut back = Counts::default();
        for (k, v) in fields {
            *back.slot(k).unwrap() = v;
        }
        assert_eq!(back, c);
    }

    #[test]
    fn the_sum_adds_every_count() {
        let a = distinct();
        let b = Counts {
            created: 10,
            containers: 100,
            ..Counts::default()
        };
        let total = Counts::sum([&a, &b, &a]);
        assert_eq!(
            total.fields().map(|(_, v)| v),
            [12, 4, 6, 8, 10, 12, 14, 16, 118]
        );
        assert_eq!([&a, &b, &a].into_iter().sum::<Counts>(), total);
        let mut c = a.clone();
        c += &b;
        c.add(&a);
        assert_eq!(c, total);
    }

    #[test]
    fn the_json_form_holds_every_count_and_reads_back() {
        let c = distinct();
        let j = c.to_json();
        assert_eq!(
            j,
            serde_json::json!({"created": 1, "updated": 2, "renamed": 3, "moved": 4, "joined": 5,
                "deprovisioned": 6, "unchanged": 7, "failed": 8, "containers": 9})
        );
        assert_eq!(Counts::from_json(&j), Some(c));
        // A running record, and an older record without some counts.
        assert_eq!(Counts::from_json(&serde_json::json!({})), None);
        assert_eq!(
            Counts::from_json(&serde_json::json!({"created": 3, "other": "x"})),
            Some(Counts {
                created: 3,
                ..Counts::default()
            })
        );
        assert_eq!(
            distinct().to_string(),
            "created 1, updated 2, renamed 3, moved 4, joined 5, deprovisioned 6, \
             unchanged 7, failed 8, containers 9"
        );
    }
}
