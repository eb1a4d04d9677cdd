//! Replay safety: which body each put attempt sends, and whether a one-shot
//! body may still be sent (DESIGN section 5).
//!
//! A replayable [`Body`] is sent again from its start with
//! [`Body::try_clone`]. A one-shot stream is handed to each attempt behind a
//! guard that takes the stream out of a shared slot on its first poll: while
//! the slot still holds it, no byte has been pulled, so an attempt that
//! failed before reading the body (a refused connection, a stalled request
//! dropped by its time limit) gives it back untouched for the next attempt.
//! Once taken, the stream belongs to that attempt alone, and a retryable
//! failure ends the put with [`Error::NonReplayableBody`] instead of sending
//! a body whose start is gone.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use storage_core::{Body, ByteStream, Error, Key, Result};

/// The body of a put, as its attempts see it.
pub(crate) enum Replay {
    /// Cloned for every attempt.
    Replayable(Body),
    /// A one-shot stream, in its slot until an attempt first polls it.
    OneShot {
        slot: Arc<Mutex<Option<ByteStream>>>,
        len: Option<u64>,
        key: Key,
    },
}

impl Replay {
    /// Prepares `body` (to be written at `key`) for one or more attempts.
    pub(crate) fn new(body: Body, key: &Key) -> Self {
        if body.is_replayable() {
            return Replay::Replayable(body);
        }
        let len = body.len();
        Replay::OneShot {
            slot: Arc::new(Mutex::new(Some(body.into_stream()))),
            len,
            key: key.clone(),
        }
    }

    /// The body's length in bytes, when known.
    pub(crate) fn len(&self) -> Option<u64> {
        match self {
            Replay::Replayable(body) => body.len(),
            Replay::OneShot { len, .. } => *len,
        }
    }

    /// Whether an attempt has pulled from a one-shot stream, so that it can
    /// never be sent again. Always false for a replayable body.
    pub(crate) fn is_consumed(&self) -> bool {
        match self {
            Replay::Replayable(_) => false,
            Replay::OneShot { slot, .. } => lock(slot).is_none(),
        }
    }

    /// The body for the next attempt, or `None` when a one-shot stream was
    /// already pulled from.
    pub(crate) fn next(&self) -> Option<Body> {
        match self {
            Replay::Replayable(body) => body.try_clone(),
            Replay::OneShot { slot, len, key } => {
                if self.is_consumed() {
                    return None;
                }
                let guard = Guarded {
                    slot: Arc::clone(slot),
                    stream: None,
                    key: key.clone(),
                };
                Some(Body::stream(guard.boxed(), *len))
            }
        }
    }
}

fn lock(slot: &Mutex<Option<ByteStream>>) -> std::sync::MutexGuard<'_, Option<ByteStream>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A one-shot stream as one attempt sees it: the stream is taken from the
/// slot on the first poll, never before.
struct Guarded {
    slot: Arc<Mutex<Option<ByteStream>>>,
    stream: Option<ByteStream>,
    key: Key,
}

impl Stream for Guarded {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        if self.stream.is_none() {
            let taken = lock(&self.slot).take();
            match taken {
                Some(stream) => self.stream = Some(stream),
                // An abandoned attempt that outlived its time limit took the
                // stream first: this attempt cannot send it.
                None => {
                    return Poll::Ready(Some(Err(Error::NonReplayableBody {
                        key: self.key.to_string(),
                        source: None,
                    })));
                }
            }
        }
        match self.stream.as_mut() {
            Some(stream) => stream.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn one_shot() -> Replay {
        let chunks = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
        let key = Key::new("k").expect("valid key");
        Replay::new(Body::stream(stream::iter(chunks).boxed(), Some(4)), &key)
    }

    #[tokio::test]
    async fn an_unread_one_shot_body_is_given_to_the_next_attempt_whole() {
        let replay = one_shot();
        drop(replay.next());
        let body = replay.next().expect("nothing was read");
        assert_eq!(body.into_bytes().await.expect("stream"), "abcd");
    }

    #[tokio::test]
    async fn a_one_shot_body_read_by_one_attempt_is_never_sent_again() {
        let replay = one_shot();
        let mut first = replay.next().expect("fresh body").into_stream();
        let _ = first.next().await;
        assert!(replay.is_consumed());
        assert!(replay.next().is_none());
    }
}
