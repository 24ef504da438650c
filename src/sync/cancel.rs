//! Stopping a run from outside: a token that the caller sets (Ctrl-C,
//! SIGTERM, `exit(n)` in a closure) and the run checks between writes. A run
//! that sees it stops taking new objects, lets the writes already sent
//! finish, stores their links, and records itself `interrupted`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// A cancellation token; clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    set: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// A token that is not set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Sets the token and wakes everyone waiting in [`Cancel::cancelled`].
    pub fn cancel(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Clears the token (the shell, before its next command).
    pub fn reset(&self) {
        self.0.set.store(false, Ordering::SeqCst);
    }

    /// True once [`Cancel::cancel`] was called (and not reset since).
    pub fn is_cancelled(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Completes when the token is set (at once if it is already).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a cancel in between is not lost.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cancel;

    #[test]
    fn cancelled_completes_for_a_waiter_and_after_the_fact() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let c = Cancel::new();
        let waiter = {
            let c = c.clone();
            rt.spawn(async move { c.cancelled().await })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!c.is_cancelled());
        c.cancel();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("the waiter was not woken")
                .unwrap();
            c.cancelled().await;
        });
        c.reset();
        assert!(!c.is_cancelled());
    }
}
