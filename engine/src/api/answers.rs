//! The answers to requests, each awaitable as a future or waited for by blocking.

use crate::api::RequestError;
use crate::runtime::oneshot;

/// The answer to one request: await it, or [`Answer::wait`] to block. If the shard stops
/// before answering, the answer is `Shutdown`.
pub struct Answer<T>(pub(crate) oneshot::Receiver<Result<T, RequestError>>);

/// The answer to a proposal: the state machine's result once the entry is applied here.
pub type Proposal = Answer<Vec<u8>>;

impl<T> Answer<T> {
    /// An answer known already.
    pub(crate) fn ready(result: Result<T, RequestError>) -> Answer<T> {
        let (tx, rx) = oneshot::channel();
        tx.send(result);
        Answer(rx)
    }

    /// Blocks until the answer.
    pub fn wait(self) -> Result<T, RequestError> {
        self.0.wait().unwrap_or(Err(RequestError::Shutdown))
    }
}

impl<T> std::future::Future for Answer<T> {
    type Output = Result<T, RequestError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(RequestError::Shutdown)))
    }
}

/// The answers to a batch of proposals, in order: await it, or [`BatchProposal::wait`].
pub struct BatchProposal {
    pub(crate) receiver: oneshot::Receiver<Vec<Result<Vec<u8>, RequestError>>>,
    pub(crate) count: usize,
}

impl BatchProposal {
    /// Blocks until every answer is known.
    pub fn wait(self) -> Vec<Result<Vec<u8>, RequestError>> {
        let count = self.count;
        self.receiver
            .wait()
            .unwrap_or_else(|| vec![Err(RequestError::Shutdown); count])
    }

    /// The answers if they are all known, without blocking; the batch back otherwise.
    pub fn try_take(self) -> Result<Vec<Result<Vec<u8>, RequestError>>, BatchProposal> {
        let count = self.count;
        match self.receiver.try_take() {
            Ok(answers) => Ok(answers.unwrap_or_else(|| vec![Err(RequestError::Shutdown); count])),
            Err(receiver) => Err(BatchProposal { receiver, count }),
        }
    }
}

impl std::future::Future for BatchProposal {
    type Output = Vec<Result<Vec<u8>, RequestError>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let count = self.count;
        std::pin::Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|answers| answers.unwrap_or_else(|| vec![Err(RequestError::Shutdown); count]))
    }
}
