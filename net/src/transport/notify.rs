//! Wakeups between tasks of one glommio executor: [`Notify`] for one waiter, [`WaitQueue`]
//! for many.
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

/// Wakes every task waiting for a condition, whenever it may have changed.
#[derive(Default)]
pub(crate) struct WaitQueue {
    wakers: std::cell::RefCell<Vec<Waker>>,
}

impl WaitQueue {
    /// Wakes every waiter; each re-checks its condition.
    pub(crate) fn wake_all(&self) {
        let wakers = self.wakers.take();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Returns once `ready()` holds, checking it again after each `wake_all`.
    pub(crate) async fn wait_until(&self, ready: impl Fn() -> bool) {
        poll_fn(|cx| {
            if ready() {
                Poll::Ready(())
            } else {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
