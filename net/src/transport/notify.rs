//! A single-waiter wakeup for tasks of one glommio executor.
//!
//! `notify` before `wait` is remembered (one pending flag), so a wakeup is never lost
//! between a check and the wait that follows it.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Wakes the one task waiting on it.
#[derive(Default)]
pub(crate) struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter, or lets its next `wait` return at once.
    pub(crate) fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Returns once `notify` has been called since the last `wait` returned.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}
