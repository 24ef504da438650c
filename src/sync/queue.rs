//! The queues between a run's stages (source reader → planner → writer):
//! a channel whose sender may push without waiting (the reader's sink is a
//! plain callback) or wait for room first (the planner), with the
//! [`Room`] the source's read loop waits on. A first run bounds them, so
//! that what the planner has planned ahead of the writer, and what the
//! reader has read ahead of the planner, stays a few thousand objects
//! whatever the size of the directory; a queue made with `usize::MAX`
//! never waits (a plan collected whole, a reader with no consumer yet).

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, error::SendError};

pub use crate::connector::Room;

/// How many objects a bounded queue holds before its sender waits.
pub const ROOM: usize = 2048;

/// The sending end.
pub struct Sender<T> {
    tx: UnboundedSender<T>,
    room: Room,
}

/// The receiving end: each object taken makes room; dropping it closes
/// the queue (a waiting sender then goes on, and its sends fail).
pub struct Receiver<T> {
    rx: UnboundedReceiver<T>,
    room: Room,
}

/// A queue holding up to `limit` objects before [`Sender::send_when_room`]
/// waits.
pub fn queue<T>(limit: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let room = Room::new(limit);
    (
        Sender {
            tx,
            room: room.clone(),
        },
        Receiver { rx, room },
    )
}

impl<T> Sender<T> {
    /// Queues `v` without waiting; an error when the receiver is gone.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.tx.send(v)?;
        self.room.put();
        Ok(())
    }

    /// Waits for room, then queues `v`.
    pub async fn send_when_room(&self, v: T) -> Result<(), SendError<T>> {
        self.room.wait().await;
        self.send(v)
    }

    /// The room a reader feeding this queue waits on.
    pub fn room(&self) -> &Room {
        &self.room
    }
}

impl<T> Receiver<T> {
    fn took(&self, v: Option<T>) -> Option<T> {
        if v.is_some() {
            self.room.take();
        }
        v
    }

    /// The next object, `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        let v = self.rx.recv().await;
        self.took(v)
    }

    /// The next object if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        let v = self.rx.try_recv().ok();
        self.took(v)
    }

    /// Polls for the next object.
    pub fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        let p = self.rx.poll_recv(cx);
        if let std::task::Poll::Ready(Some(_)) = &p {
            self.room.take();
        }
        p
    }

    /// How many objects are queued.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bounded_queue_makes_its_sender_wait_and_a_gone_receiver_lets_it_go() {
        let (tx, mut rx) = queue::<u32>(2);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert!(!tx.room().has_room());
        let tx2 = std::sync::Arc::new(tx);
        let sender = tokio::spawn({
            let tx = tx2.clone();
            async move { tx.send_when_room(3).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished(), "no room: the sender waits");
        assert_eq!(rx.recv().await, Some(1));
        assert!(sender.await.unwrap());
        assert_eq!((rx.len(), tx2.room().queued()), (2, 2));
        let sender = tokio::spawn({
            let tx = tx2.clone();
            async move { tx.send_when_room(4).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished());
        drop(rx);
        assert!(
            !sender.await.unwrap(),
            "the receiver is gone: the send fails"
        );
    }
}
