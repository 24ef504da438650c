//! The progress total of a run, known before the writes end: a run that
//! plans in full first knows it before the first write (the items of the
//! plan: on an incremental run, the changes); a first run, which writes
//! while the source is still read, knows it once the source is read (the
//! objects in scope). [`SourceTotal`] carries that count from the planner
//! to [`WithTotal`], which tells the run's [`Progress`] and its log.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use super::apply::Progress;
use super::log::RunLog;

/// The number of source objects in scope, set by the planner when it has
/// read the whole source.
pub type SourceTotal = Arc<OnceLock<usize>>;

/// A [`Progress`] that reports the total of a streaming run as soon as
/// the source is read (at the next progress tick), and from then on never
/// a smaller total than it.
pub struct WithTotal<'a> {
    inner: &'a dyn Progress,
    total: SourceTotal,
    log: &'a RunLog,
    told: Cell<bool>,
}

impl<'a> WithTotal<'a> {
    /// Wraps `inner`; `total` is what the planner sets.
    pub fn new(inner: &'a dyn Progress, total: SourceTotal, log: &'a RunLog) -> Self {
        WithTotal {
            inner,
            total,
            log,
            told: Cell::new(false),
        }
    }
}

impl Progress for WithTotal<'_> {
    fn tick(&self, done: usize, total: usize) {
        let known = self.total.get().copied();
        if let Some(n) = known
            && !self.told.replace(true)
        {
            self.log
                .line(&format!("total: {n} source objects in scope (source read)"));
            self.inner.total(n);
        }
        self.inner.tick(done, total.max(known.unwrap_or(0)));
    }

    fn total(&self, total: usize) {
        self.inner.total(total);
    }
}
