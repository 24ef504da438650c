//! Room in a queue between a reader and its consumer: the consumer counts
//! what it takes, the reader what it queues, and a streaming read waits
//! for room before it asks the system for more (an LDAP paged search then
//! asks for the next page only when the page before has been taken). The
//! sink that queues stays a plain callback; only the read loop waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A shared count of queued objects with a limit. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Room(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    queued: AtomicUsize,
    limit: usize,
    closed: AtomicBool,
    notify: Notify,
}

impl Room {
    /// Room for `limit` queued objects (`usize::MAX`: never waits).
    pub fn new(limit: usize) -> Room {
        Room(Arc::new(Inner {
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
            closed: AtomicBool::new(false),
            notify: Notify::new(),
        }))
    }

    /// One more object queued (never waits: a callback may call it).
    pub fn put(&self) {
        self.0.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// One object taken by the consumer.
    pub fn take(&self) {
        let before = self
            .0
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        // Only a queue that was full can have a reader waiting.
        if before >= self.0.limit {
            self.0.notify.notify_waiters();
        }
    }

    /// The consumer is gone: nobody waits for room any more.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// How many objects are queued now.
    pub fn queued(&self) -> usize {
        self.0.queued.load(Ordering::Acquire)
    }

    /// True when another object fits (or the consumer is gone).
    pub fn has_room(&self) -> bool {
        self.queued() < self.0.limit || self.0.closed.load(Ordering::Acquire)
    }

    /// Waits until another object fits, or the consumer is gone.
    pub async fn wait(&self) {
        if self.has_room() {
            return;
        }
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `take` in between wakes it.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_room_waits_until_the_consumer_takes_or_leaves() {
        let room = Room::new(2);
        room.put();
        room.put();
        assert!(!room.has_room());
        let waiting = tokio::spawn({
            let room = room.clone();
            async move { room.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a full room must wait");
        room.take();
        waiting.await.unwrap();
        assert_eq!(room.queued(), 1);

        room.put();
        let waiting = tokio::spawn({
            let room = room.clone();
            async move { room.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        room.close();
        waiting.await.unwrap();
        // Unbounded: never waits.
        let free = Room::new(usize::MAX);
        for _ in 0..10 {
            free.put();
        }
        free.wait().await;
    }
}
