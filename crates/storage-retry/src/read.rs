//! Resumable reads: a body that fails mid-way goes on from the next byte,
//! pinned to the version being read (DESIGN section 5).
//!
//! A read of at most [`RetryPolicy::whole_read_limit`] bytes (1 MiB by
//! default) is read into memory within its attempt, so that a failure of
//! its body is the attempt's failure and the get is retried whole: it may
//! then serve a newer version, consistently with the metadata it returns,
//! where resuming could only fail. Longer reads are streamed.
//!
//! When the body stream of a [`GetResult`] fails with a transient error, the
//! layer asks for the rest of the range served, from the first byte not yet
//! delivered to the end of that range, with `If-Match` set to the ETag of
//! the version being read (RFC 9110 section 13.1.1). The caller's stream
//! goes on as if nothing happened; if the object was replaced or deleted in
//! between, it ends with [`Error::PreconditionFailed`] rather than splicing
//! two versions. Each break gets the policy's attempts and deadline afresh,
//! counted from the break, so a long read may survive any number of breaks
//! as long as each one heals.
//!
//! A full streamed read (no range asked for) of an object whose SHA-256 is
//! recorded is hashed by the layer as it streams and ends with
//! [`Error::ChecksumMismatch`] if the stitched bytes differ: the resumed
//! pieces are range reads, which no backend verifies. (A read that never
//! breaks is then hashed twice, by the backend and by the layer; the layer
//! cannot know in advance that it will not need its own hash.)
//!
//! A body that stalls without failing is not cut by the layer: the
//! per-attempt time limit covers a streamed get until its result arrives,
//! and the backend's own read timeouts cover its body.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream;
use storage_core::raw::integrity::verify_sha256;
use storage_core::{
    Backend, ByteRange, ByteStream, ETag, Error, GetOptions, GetResult, Key, Result,
};

use crate::policy::{Attempts, Operation, RetryPolicy, within};

/// What one get attempt fetched.
pub(crate) enum Fetched {
    /// A read within the whole-read limit, its body in memory.
    Whole(GetResult),
    /// A longer read, still to be streamed.
    Streaming(GetResult),
}

/// Reads `got`'s body into memory when it holds at most `limit` bytes.
///
/// # Errors
/// Whatever the body fails with.
pub(crate) async fn fetch(got: GetResult, limit: u64) -> Result<Fetched> {
    if got.range.end.saturating_sub(got.range.start) > limit {
        return Ok(Fetched::Streaming(got));
    }
    Ok(Fetched::Whole(got.buffered().await?))
}

/// Makes `first`'s body resume after transient failures; `full` says
/// whether the caller asked for the whole object (then a recorded SHA-256 is
/// checked over the stitched bytes).
pub(crate) fn resumable<B: Backend + ?Sized>(
    inner: Arc<B>,
    policy: Arc<RetryPolicy>,
    key: Key,
    first: GetResult,
    full: bool,
) -> GetResult {
    let GetResult {
        meta, range, body, ..
    } = first;
    let expected = meta.sha256.filter(|_| full);
    let state = Resume {
        inner,
        policy,
        key: key.clone(),
        etag: meta.etag.clone(),
        next: range.start,
        end: range.end,
        body: Some(body),
        attempts: None,
    };
    let stitched = stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next_chunk().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(state))),
            Some(Err(e)) => Some((Err(e), None)),
            None => None,
        }
    })
    .boxed();
    GetResult::new(meta, range, verify_sha256(stitched, key, expected))
}

/// A read in progress: the bytes `next..end` are still to come.
struct Resume<B: ?Sized> {
    inner: Arc<B>,
    policy: Arc<RetryPolicy>,
    key: Key,
    etag: ETag,
    next: u64,
    end: u64,
    /// The current piece's stream; `None` after it broke.
    body: Option<ByteStream>,
    /// The retries of the current break; `None` while bytes flow.
    attempts: Option<Attempts>,
}

impl<B: Backend + ?Sized> Resume<B> {
    /// The next chunk, resuming as often as the policy allows; `None` at
    /// the end of the range.
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        loop {
            let Some(body) = self.body.as_mut() else {
                if let Err(e) = self.reopen().await {
                    return Some(Err(e));
                }
                continue;
            };
            let broken = match body.next().await {
                Some(Ok(chunk)) => {
                    let len = chunk.len() as u64;
                    if len > self.end - self.next {
                        return Some(Err(self.overrun(len)));
                    }
                    self.next += len;
                    if len > 0 {
                        self.attempts = None;
                    }
                    return Some(Ok(chunk));
                }
                None if self.next == self.end => return None,
                None => Error::Backend {
                    transient: true,
                    message: format!(
                        "the body of {} ended at byte {} of {}",
                        self.key, self.next, self.end
                    ),
                    source: None,
                },
                Some(Err(e)) if !e.is_transient() => return Some(Err(e)),
                // Every byte arrived; what failed came after them.
                Some(Err(_)) if self.next == self.end => return None,
                Some(Err(e)) => e,
            };
            self.body = None;
            if let Err(e) = self.wait(broken).await {
                return Some(Err(e));
            }
        }
    }

    /// Waits before the next attempt of the current break.
    async fn wait(&mut self, error: Error) -> Result<()> {
        let attempts = self
            .attempts
            .get_or_insert_with(|| Attempts::start(Operation::ResumeRead));
        attempts
            .wait(&self.policy, Some(self.key.as_str()), error)
            .await
    }

    /// Asks for `next..end` of the same version; a failed attempt is waited
    /// out and left for the caller's loop to try again.
    async fn reopen(&mut self) -> Result<()> {
        let options = GetOptions {
            range: Some(ByteRange::from(self.next..self.end)),
            if_match: Some(self.etag.clone()),
            ..GetOptions::default()
        };
        // Some servers read the whole remainder before they answer (moto):
        // the limit grows with it, as a put's does with its body.
        let limit = self
            .policy
            .attempt_timeout_for(Some(self.end.saturating_sub(self.next)));
        let attempt = self.inner.get(&self.key, options);
        match within(
            limit,
            attempt,
            Operation::ResumeRead,
            Some(self.key.as_str()),
        )
        .await
        {
            Ok(piece) if piece.range == (self.next..self.end) => {
                self.body = Some(piece.body);
                Ok(())
            }
            Ok(piece) => Err(self.misplaced(piece.range)),
            Err(Error::PreconditionFailed { actual, .. }) => Err(self.changed(actual)),
            Err(Error::NotFound { .. }) => Err(self.changed(None)),
            Err(e) if e.is_transient() => self.wait(e).await,
            Err(e) => Err(e),
        }
    }

    fn changed(&self, actual: Option<ETag>) -> Error {
        Error::PreconditionFailed {
            key: self.key.to_string(),
            expected: self.etag.clone(),
            actual,
        }
    }

    fn misplaced(&self, served: Range<u64>) -> Error {
        Error::Backend {
            transient: false,
            message: format!(
                "resuming {} at bytes {}..{}, the backend served {}..{}",
                self.key, self.next, self.end, served.start, served.end
            ),
            source: None,
        }
    }

    fn overrun(&self, len: u64) -> Error {
        Error::Backend {
            transient: false,
            message: format!(
                "the body of {} sent a chunk of {len} bytes past byte {} of {}",
                self.key, self.next, self.end
            ),
            source: None,
        }
    }
}
