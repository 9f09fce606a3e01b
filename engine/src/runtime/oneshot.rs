//! A one-value channel from a shard thread to whoever waits for an answer, on any thread:
//! by blocking ([`Receiver::wait`]) or as a future ([`Receiver`] implements `Future`).
//!
//! A sender dropped without sending (its shard stopped) wakes the receiver with `None`.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
    /// A thread blocks in `wait`: only then does `send` pay for a condvar notification.
    blocked: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves only plain data behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sending half; sends at most once.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The receiving half.
pub struct Receiver<T>(Arc<Shared<T>>);

/// A new channel.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            value: None,
            closed: false,
            waker: None,
            blocked: false,
        }),
        ready: Condvar::new(),
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

impl<T> Sender<T> {
    /// Delivers `value` and wakes the receiver.
    pub(crate) fn send(self, value: T) {
        self.finish(Some(value));
    }

    fn finish(&self, value: Option<T>) {
        let (waker, blocked) = {
            let mut state = self.0.lock();
            if state.closed {
                return;
            }
            state.value = value;
            state.closed = true;
            (state.waker.take(), state.blocked)
        };
        if blocked {
            self.0.ready.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

impl<T> Receiver<T> {
    /// Blocks until the value arrives; `None` if the sender was dropped without one.
    pub fn wait(self) -> Option<T> {
        let mut state = self.0.lock();
        while !state.closed {
            state.blocked = true;
            state = self
                .0
                .ready
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.value.take()
    }

    /// The value if it has arrived, without blocking: `Err(self)` while it has not,
    /// `Ok(None)` if the sender was dropped without one.
    pub fn try_take(self) -> Result<Option<T>, Receiver<T>> {
        let mut state = self.0.lock();
        if !state.closed {
            drop(state);
            return Err(self);
        }
        Ok(state.value.take())
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        if state.closed {
            return Poll::Ready(state.value.take());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_crosses_threads_and_a_dropped_sender_is_seen() {
        let (tx, rx) = channel();
        let sender = std::thread::spawn(move || tx.send(42));
        assert_eq!(rx.wait(), Some(42));
        sender.join().expect("sender thread");
        let (tx, rx) = channel::<u8>();
        drop(tx);
        assert_eq!(rx.wait(), None);
        let (tx, rx) = channel();
        tx.send("async");
        assert_eq!(futures_lite::future::block_on(rx), Some("async"));
    }
}
