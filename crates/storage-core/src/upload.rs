//! The upload engine: one driver for chunked uploads (S3 multipart uploads,
//! Azure staged blocks, GCS resumable uploads), so that every cloud backend
//! bounds its memory, hashes, retries and cleans up the same way.
//!
//! A backend describes its service's calls with [`ChunkedUpload`]
//! (initiate, upload a part, complete under the caller's precondition,
//! abort, and one ordinary put for a body that fits in one part) and hands
//! the body to [`upload`], which:
//!
//! - cuts the body into parts of [`UploadPlan::part_size`] bytes as it
//!   streams in (only the last part is shorter), reading one part ahead so
//!   that each part knows whether it is the last;
//! - keeps at most [`UploadPlan::parts_in_flight`] parts being sent while it
//!   reads the next, so the memory it adds stays within
//!   `part_size × (parts_in_flight + 2)` bytes whatever the body's size; a
//!   part that lies within one chunk of the body is a slice of that chunk,
//!   not a copy, so a body held in memory is never copied, and a body
//!   streamed in chunks larger than a part keeps up to two of its chunks
//!   alive besides;
//! - computes the SHA-256 and the size of the whole body, for
//!   [`ChunkedUpload::complete`];
//! - retries each part (and the initiation and the abort) that fails with a
//!   transient error, with the [`PartRetry`] schedule in force (the
//!   enclosing `Retry` layer's policy, see [`with_part_retry`], or
//!   [`PartBackoff::default`]), sending the same bytes again: they are
//!   still in memory, so even a one-shot body survives a failed part;
//! - aborts the upload when a part or the completion fails, and when the
//!   returned future is dropped before it finishes (the abort then runs as a
//!   task on the current tokio runtime). An abort that fails is logged
//!   (`tracing`, target `storage_core::upload`) and, when the upload's error
//!   has a source, chained to it.
//!
//! The completion is not retried here: it carries the caller's precondition,
//! so a retry after a lost answer is ambiguous, and settling that is the
//! `Retry` layer's work (DESIGN section 5). Neither is the single put used
//! for a body of one part.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::future::{Either, select};
use futures::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};

use crate::{Body, ByteStream, Error, Key, ObjectMeta, Result};

/// One part of a chunked upload, as [`upload`] hands it to
/// [`ChunkedUpload::upload_part`].
#[derive(Debug, Clone)]
pub struct Part {
    /// The part's index, from 0 (S3 part numbers are this plus one).
    pub index: u32,
    /// The offset of its first byte in the body, in bytes.
    pub offset: u64,
    /// Its bytes: [`UploadPlan::part_size`] of them, fewer only for the
    /// last part.
    pub bytes: Bytes,
    /// Whether it is the last part, so that `offset + bytes.len()` is the
    /// body's size (GCS sends the total with the last chunk).
    pub last: bool,
}

/// The whole body, once every part is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    /// Its size, in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// How [`upload`] cuts and sends a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPlan {
    /// Bytes per part, at least 1 (S3: 5 MiB to 5 GiB; GCS: a multiple of
    /// 256 KiB).
    pub part_size: u64,
    /// Most parts being sent at once, at least 1 (GCS chunks go one at a
    /// time, in order).
    pub parts_in_flight: usize,
    /// Most parts in one upload (S3: 10,000; Azure: 50,000 blocks).
    pub max_parts: u64,
}

impl UploadPlan {
    /// The largest body this plan can send, in bytes.
    pub fn max_size(&self) -> u64 {
        self.part_size.saturating_mul(self.max_parts)
    }
}

/// A service's chunked upload, as [`upload`] drives it.
///
/// The value is cloned into the task that aborts a dropped upload, so it
/// should be cheap to clone (a client handle and the names).
#[async_trait]
pub trait ChunkedUpload: Clone + Send + Sync + 'static {
    /// What names one upload (S3 upload id, GCS session URI, Azure block-id
    /// prefix).
    type Session: Clone + Send + Sync + 'static;
    /// What the service answers for one part and the completion needs (S3
    /// part ETag and checksum, Azure block id).
    type Receipt: Send + 'static;

    /// Starts an upload. Retried on transient errors, so it must be safe to
    /// repeat (an upload started but never used costs nothing).
    async fn initiate(&self) -> Result<Self::Session>;

    /// Sends one part. Retried on transient errors with the same bytes, so
    /// sending a part twice must leave one copy of it.
    async fn upload_part(&self, session: &Self::Session, part: &Part) -> Result<Self::Receipt>;

    /// Makes the object visible from its parts' `receipts` (in part order),
    /// under the caller's precondition. Not retried.
    async fn complete(
        &self,
        session: &Self::Session,
        receipts: Vec<Self::Receipt>,
        whole: &Uploaded,
    ) -> Result<ObjectMeta>;

    /// Discards the upload and its parts. Retried on transient errors.
    async fn abort(&self, session: &Self::Session) -> Result<()>;

    /// Stores a body that fits in one part with one ordinary put, under the
    /// caller's precondition. Not retried.
    async fn put_whole(&self, bytes: Bytes, whole: &Uploaded) -> Result<ObjectMeta>;
}

/// Uploads `body` to `key` through `uploader` as `plan` says.
///
/// A backend describes its service's calls with [`ChunkedUpload`]
/// (initiate, upload a part, complete under the caller's precondition,
/// abort, and one ordinary put for a body that fits in one part) and hands
/// the body to this function, which:
///
/// - cuts the body into parts of [`UploadPlan::part_size`] bytes as it
///   streams in (only the last part is shorter), reading one part ahead so
///   that each part knows whether it is the last;
/// - keeps at most [`UploadPlan::parts_in_flight`] parts being sent while it
///   reads the next, so the memory it adds stays within
///   `part_size × (parts_in_flight + 2)` bytes whatever the body's size; a
///   part that lies within one chunk of the body is a slice of that chunk,
///   not a copy, so a body held in memory is never copied, and a body
///   streamed in chunks larger than a part keeps up to two of its chunks
///   alive besides;
/// - computes the SHA-256 and the size of the whole body, for
///   [`ChunkedUpload::complete`];
/// - retries each part (and the initiation and the abort) that fails with a
///   transient error, with the [`PartRetry`] schedule in force (the
///   enclosing `Retry` layer's policy, see [`with_part_retry`], or
///   [`PartBackoff::default`]), sending the same bytes again: they are
///   still in memory, so even a one-shot body survives a failed part;
/// - aborts the upload when a part or the completion fails, and when the
///   returned future is dropped before it finishes (the abort then runs as a
///   task on the current tokio runtime). An abort that fails is logged
///   (`tracing`, target `storage_core::upload`) and, when the upload's error
///   has a source, chained to it.
///
/// The completion is not retried here: it carries the caller's precondition,
/// so a retry after a lost answer is ambiguous, and settling that is the
/// `Retry` layer's work (DESIGN section 5). Neither is the single put used
/// for a body of one part.
///
/// # Errors
/// - [`Error::TooLarge`] before any request when the body's declared length
///   exceeds [`UploadPlan::max_size`], and once the body proves longer;
/// - [`Error::InvalidArgument`] for a plan with a zero part size or no
///   parts in flight;
/// - the body's own error when reading it fails;
/// - the uploader's error, the last transient one when a part's retries run
///   out, with a failed abort chained where the error has a source.
pub async fn upload<U: ChunkedUpload>(
    uploader: U,
    key: &Key,
    body: Body,
    plan: UploadPlan,
) -> Result<ObjectMeta> {
    let part_size = usize::try_from(plan.part_size)
        .ok()
        .filter(|size| *size > 0)
        .ok_or_else(|| Error::invalid_argument("an upload's part size must be 1 byte or more"))?;
    if plan.parts_in_flight == 0 {
        return Err(Error::invalid_argument(
            "an upload needs at least one part in flight",
        ));
    }
    if let Some(len) = body.len()
        && len > plan.max_size()
    {
        return Err(too_large(key, len, &plan));
    }
    let mut reader = PartReader::new(body.into_stream(), part_size);
    let first = reader.next().await?;
    let second = reader.next().await?;
    if second.is_empty() {
        let whole = reader.finish();
        return uploader.put_whole(first, &whole).await;
    }
    let retry = part_retry();
    let ctx = Ctx {
        key,
        retry: &*retry,
    };
    let session = retried(&ctx, None, || uploader.initiate()).await?;
    let mut guard = AbortOnDrop {
        uploader: Some((uploader.clone(), session.clone())),
        key: key.clone(),
        retry: Arc::clone(&retry),
    };
    let sent = send_parts(
        &uploader,
        &session,
        &ctx,
        &mut reader,
        [first, second],
        &plan,
    )
    .await;
    let done = match sent {
        Ok(receipts) => {
            let whole = reader.finish();
            uploader.complete(&session, receipts, &whole).await
        }
        Err(e) => Err(e),
    };
    guard.uploader = None;
    match done {
        Ok(meta) => Ok(meta),
        Err(error) => {
            let aborted = retried(&ctx, None, || uploader.abort(&session)).await;
            Err(chain_abort(key, error, aborted))
        }
    }
}

/// What every retried call of one upload shares.
struct Ctx<'a> {
    key: &'a Key,
    retry: &'a dyn PartRetry,
}

/// Sends every part, the two already read first, reading the rest while
/// earlier parts are in flight; returns the receipts in part order.
async fn send_parts<U: ChunkedUpload>(
    uploader: &U,
    session: &U::Session,
    ctx: &Ctx<'_>,
    reader: &mut PartReader,
    [first, second]: [Bytes; 2],
    plan: &UploadPlan,
) -> Result<Vec<U::Receipt>> {
    let mut in_flight = FuturesUnordered::new();
    let mut receipts: Vec<Option<U::Receipt>> = Vec::new();
    let (mut current, mut next) = (first, second);
    let mut offset = 0u64;
    loop {
        while in_flight.len() >= plan.parts_in_flight {
            if let Some(done) = in_flight.next().await {
                store(&mut receipts, done)?;
            }
        }
        let index = receipts.len();
        if index as u64 >= plan.max_parts {
            return Err(too_large(ctx.key, offset + current.len() as u64, plan));
        }
        let last = next.is_empty();
        let part = Part {
            index: index as u32,
            offset,
            bytes: current,
            last,
        };
        offset += part.bytes.len() as u64;
        receipts.push(None);
        in_flight.push(send_part(uploader, session, ctx, part));
        if last {
            break;
        }
        current = next;
        // Read the following part while the parts in flight progress.
        let mut reading = pin!(reader.next());
        next = loop {
            if in_flight.is_empty() {
                break reading.await?;
            }
            match select(in_flight.next(), reading.as_mut()).await {
                Either::Left((Some(done), _)) => store(&mut receipts, done)?,
                Either::Left((None, _)) => {}
                Either::Right((read, _)) => break read?,
            }
        };
    }
    while let Some(done) = in_flight.next().await {
        store(&mut receipts, done)?;
    }
    receipts
        .into_iter()
        .enumerate()
        .map(|(index, receipt)| {
            receipt.ok_or_else(|| {
                Error::backend(
                    false,
                    format!("upload of {}: part {index} has no receipt", ctx.key),
                    "upload engine",
                )
            })
        })
        .collect()
}

/// Files a finished part's receipt under its index.
fn store<R>(receipts: &mut [Option<R>], done: Result<(u32, R)>) -> Result<()> {
    let (index, receipt) = done?;
    if let Some(slot) = receipts.get_mut(index as usize) {
        *slot = Some(receipt);
    }
    Ok(())
}

/// Sends one part, retrying transient failures.
async fn send_part<U: ChunkedUpload>(
    uploader: &U,
    session: &U::Session,
    ctx: &Ctx<'_>,
    part: Part,
) -> Result<(u32, U::Receipt)> {
    let receipt = retried(ctx, Some(&part), || uploader.upload_part(session, &part)).await?;
    Ok((part.index, receipt))
}

/// Runs `call` until it succeeds, fails with a non-transient error, or the
/// schedule gives up; each attempt is bounded by the schedule's time limit
/// for `part`'s size (or for no body).
async fn retried<T, F, Fut>(ctx: &Ctx<'_>, part: Option<&Part>, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let len = part.map_or(0, |p| p.bytes.len() as u64);
    let mut retry = 0u32;
    loop {
        let attempt = call();
        let result = match ctx.retry.attempt_timeout(len) {
            Some(limit) => crate::raw::timeout::within(limit, attempt, || match part {
                Some(p) => format!("upload of {}: part {}", ctx.key, p.index),
                None => format!("upload of {}", ctx.key),
            })
            .await
            .and_then(|r| r),
            None => attempt.await,
        };
        let error = match result {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        let failure = PartFailure {
            key: ctx.key.as_str(),
            part: part.map(|p| p.index),
            retry,
            elapsed: started.elapsed(),
            error: &error,
        };
        let Some(delay) = ctx.retry.delay(&failure) else {
            return Err(error);
        };
        retry = retry.saturating_add(1);
        tokio::time::sleep(delay).await;
    }
}

fn too_large(key: &Key, size: u64, plan: &UploadPlan) -> Error {
    Error::TooLarge {
        key: Some(key.to_string()),
        size,
        limit: plan.max_size(),
    }
}

/// The upload's error, with a failed abort logged and chained to it.
fn chain_abort(key: &Key, error: Error, aborted: Result<()>) -> Error {
    let Err(abort) = aborted else {
        return error;
    };
    tracing::warn!(
        target: "storage_core::upload",
        key = %key,
        error = %error,
        abort_error = %abort,
        "the failed upload could not be aborted; its parts stay until the service expires them"
    );
    let failed = AbortFailed {
        key: key.to_string(),
        abort: Box::new(abort),
    };
    match error {
        Error::Backend {
            transient,
            message,
            source,
        } => Error::Backend {
            transient,
            message,
            source: Some(Box::new(Chained {
                first: source,
                then: failed,
            })),
        },
        Error::NonReplayableBody { key, source } => Error::NonReplayableBody {
            key,
            source: Some(Box::new(Chained {
                first: source,
                then: failed,
            })),
        },
        other => other,
    }
}

/// An abort that failed after the upload did.
#[derive(Debug)]
struct AbortFailed {
    key: String,
    abort: Box<Error>,
}

impl fmt::Display for AbortFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "and aborting the upload of {} failed: {}",
            self.key, self.abort
        )
    }
}

impl std::error::Error for AbortFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.abort)
    }
}

/// An error's own source (if any) followed by the failed abort.
#[derive(Debug)]
struct Chained {
    first: Option<crate::BoxError>,
    then: AbortFailed,
}

impl fmt::Display for Chained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first {
            Some(first) => write!(f, "{first}, {}", self.then),
            None => write!(f, "{}", self.then),
        }
    }
}

impl std::error::Error for Chained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.first {
            Some(first) => Some(&**first),
            None => Some(&self.then),
        }
    }
}

/// Aborts a dropped upload from a task of its own.
struct AbortOnDrop<U: ChunkedUpload> {
    uploader: Option<(U, U::Session)>,
    key: Key,
    retry: Arc<dyn PartRetry>,
}

impl<U: ChunkedUpload> Drop for AbortOnDrop<U> {
    fn drop(&mut self) {
        let Some((uploader, session)) = self.uploader.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                target: "storage_core::upload",
                key = %self.key,
                "a dropped upload could not be aborted outside a tokio runtime"
            );
            return;
        };
        let (key, retry) = (self.key.clone(), Arc::clone(&self.retry));
        runtime.spawn(async move {
            let ctx = Ctx {
                key: &key,
                retry: &*retry,
            };
            if let Err(e) = retried(&ctx, None, || uploader.abort(&session)).await {
                tracing::warn!(
                    target: "storage_core::upload",
                    key = %key,
                    error = %e,
                    "a dropped upload could not be aborted; its parts stay until the service expires them"
                );
            }
        });
    }
}

/// Cuts a body into parts and hashes it as it goes.
///
/// A part that lies within one chunk of the body is a slice of that chunk,
/// not a copy: a body held in memory as one buffer is sent without ever
/// being copied (a slice keeps its whole chunk alive, which the caller
/// holds anyway). Only a part assembled from several chunks is copied into
/// a buffer of its own. Each part is hashed when it is handed out, so
/// hashing a large chunk does not hold back the first part.
struct PartReader {
    stream: ByteStream,
    /// The unread rest of the last chunk.
    rest: Bytes,
    /// A part being assembled from several chunks.
    carry: BytesMut,
    part_size: usize,
    hasher: Sha256,
    size: u64,
    ended: bool,
}

impl PartReader {
    fn new(stream: ByteStream, part_size: usize) -> Self {
        PartReader {
            stream,
            rest: Bytes::new(),
            carry: BytesMut::new(),
            part_size,
            hasher: Sha256::new(),
            size: 0,
            ended: false,
        }
    }

    /// The next part: `part_size` bytes, fewer only at the end of the body
    /// (empty once it is all read).
    async fn next(&mut self) -> Result<Bytes> {
        let part = self.cut().await?;
        self.hasher.update(&part);
        self.size += part.len() as u64;
        Ok(part)
    }

    async fn cut(&mut self) -> Result<Bytes> {
        loop {
            if self.carry.is_empty() && self.rest.len() >= self.part_size {
                return Ok(self.rest.split_to(self.part_size));
            }
            if !self.rest.is_empty() {
                let take = (self.part_size - self.carry.len()).min(self.rest.len());
                if self.carry.capacity() < self.part_size {
                    self.carry.reserve(self.part_size - self.carry.len());
                }
                self.carry.extend_from_slice(&self.rest.split_to(take));
                if self.carry.len() == self.part_size {
                    return Ok(self.carry.split().freeze());
                }
            }
            if self.ended {
                return Ok(self.carry.split().freeze());
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.rest = chunk,
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            }
        }
    }

    /// The size and SHA-256 of everything read.
    fn finish(&mut self) -> Uploaded {
        Uploaded {
            size: self.size,
            sha256: std::mem::take(&mut self.hasher).finalize().into(),
        }
    }
}

/// A failed call of an upload, as a [`PartRetry`] schedule sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct PartFailure<'a> {
    /// The key being uploaded.
    pub key: &'a str,
    /// The part's index, or `None` for the initiation or the abort.
    pub part: Option<u32>,
    /// How many retries of this call were made before, from 0.
    pub retry: u32,
    /// Time since this call's first attempt started.
    pub elapsed: Duration,
    /// The transient error the attempt failed with.
    pub error: &'a Error,
}

impl<'a> PartFailure<'a> {
    /// A failure of attempt `retry + 1` of a call of the upload of `key`
    /// (`part`: the part's index, `None` for the initiation or the abort),
    /// `elapsed` after the call's first attempt started.
    pub fn new(
        key: &'a str,
        part: Option<u32>,
        retry: u32,
        elapsed: Duration,
        error: &'a Error,
    ) -> Self {
        PartFailure {
            key,
            part,
            retry,
            elapsed,
            error,
        }
    }
}

/// How [`upload`] retries the calls of a chunked upload that fail with a
/// transient error: `storage_retry::RetryPolicy` implements it, so that
/// parts are retried with the policy of the enclosing `Retry` layer.
pub trait PartRetry: Send + Sync {
    /// The delay before the next attempt after `failure`, or `None` to give
    /// up and return its error.
    fn delay(&self, failure: &PartFailure<'_>) -> Option<Duration>;

    /// The time limit of one attempt sending `len` bytes (0 for calls
    /// without a body), or `None` for none: the backend's own request
    /// timeout still applies.
    fn attempt_timeout(&self, len: u64) -> Option<Duration>;
}

/// The schedule [`upload`] uses outside any [`with_part_retry`] scope:
/// exponential backoff with full jitter, by default 10 attempts per call
/// within 3 minutes, ceilings from 100 ms doubling up to 15 s (the
/// defaults of `storage_retry::RetryPolicy` and of object_store's
/// `RetryConfig`), and no time limit of its own per attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartBackoff {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Time after a call's first attempt past which no retry starts.
    pub deadline: Duration,
    /// Ceiling of the first retry's delay.
    pub base_delay: Duration,
    /// Largest ceiling of any delay.
    pub cap_delay: Duration,
}

impl Default for PartBackoff {
    fn default() -> Self {
        PartBackoff {
            max_attempts: 10,
            deadline: Duration::from_secs(180),
            base_delay: Duration::from_millis(100),
            cap_delay: Duration::from_secs(15),
        }
    }
}

impl PartBackoff {
    /// The ceiling of retry `n`'s delay (0 for the first retry):
    /// `min(cap, base · 2ⁿ)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .map_or(self.cap_delay, |d| d.min(self.cap_delay))
    }
}

impl PartRetry for PartBackoff {
    fn delay(&self, failure: &PartFailure<'_>) -> Option<Duration> {
        if failure.retry.saturating_add(1) >= self.max_attempts {
            return None;
        }
        let ceiling = self.ceiling(failure.retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Full jitter: uniform in [0, ceiling]. The hasher's random keys are
        // the randomness; no statistical quality beyond spreading clients
        // out is needed.
        let draw = RandomState::new().hash_one((failure.retry, failure.elapsed));
        let delay = Duration::from_nanos(draw % nanos.saturating_add(1));
        (failure.elapsed.saturating_add(delay) <= self.deadline).then_some(delay)
    }

    fn attempt_timeout(&self, _len: u64) -> Option<Duration> {
        None
    }
}

tokio::task_local! {
    static PART_RETRY: Arc<dyn PartRetry>;
}

/// Runs `future` with `retry` as the schedule of the chunked uploads it
/// makes in this task: how a retrying layer lends its policy to the
/// backend below it.
pub async fn with_part_retry<F: Future>(retry: Arc<dyn PartRetry>, future: F) -> F::Output {
    PART_RETRY.scope(retry, future).await
}

/// The schedule in force: the innermost [`with_part_retry`]'s, or
/// [`PartBackoff::default`].
pub fn part_retry() -> Arc<dyn PartRetry> {
    PART_RETRY
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::new(PartBackoff::default()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::stream;

    use super::*;
    use crate::ETag;

    /// An in-memory chunked upload whose part attempts fail as told.
    #[derive(Clone, Default)]
    struct Mock {
        state: Arc<Mutex<State>>,
        in_flight: Arc<AtomicUsize>,
    }

    #[derive(Default)]
    struct State {
        /// Part index → how many of its next attempts fail transiently.
        fail: BTreeMap<u32, u32>,
        /// Part indexes whose first attempt fails for good.
        refuse: Vec<u32>,
        abort_fails: bool,
        parts: BTreeMap<u32, Bytes>,
        attempts: u32,
        initiated: u32,
        aborted: u32,
        whole_puts: u32,
        max_in_flight: usize,
        stored: Option<Bytes>,
    }

    impl Mock {
        fn with(f: impl FnOnce(&mut State)) -> Self {
            let mock = Mock::default();
            f(&mut mock.state.lock().expect("lock"));
            mock
        }

        fn state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
            f(&self.state.lock().expect("lock"))
        }
    }

    fn meta(size: u64) -> ObjectMeta {
        ObjectMeta {
            key: Key::new("k").expect("key"),
            size,
            etag: ETag::new("e"),
            last_modified: std::time::SystemTime::now(),
            content_type: None,
            metadata: Default::default(),
            sha256: None,
        }
    }

    #[async_trait]
    impl ChunkedUpload for Mock {
        type Session = u32;
        type Receipt = u32;

        async fn initiate(&self) -> Result<u32> {
            let mut state = self.state.lock().expect("lock");
            state.initiated += 1;
            Ok(7)
        }

        async fn upload_part(&self, _: &u32, part: &Part) -> Result<u32> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::task::yield_now().await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut state = self.state.lock().expect("lock");
            state.max_in_flight = state.max_in_flight.max(now);
            state.attempts += 1;
            if state.refuse.contains(&part.index) {
                return Err(Error::invalid_argument("refused"));
            }
            if let Some(left) = state.fail.get_mut(&part.index)
                && *left > 0
            {
                *left -= 1;
                return Err(Error::backend(true, "503", "injected"));
            }
            state.parts.insert(part.index, part.bytes.clone());
            Ok(part.index)
        }

        async fn complete(
            &self,
            _: &u32,
            receipts: Vec<u32>,
            whole: &Uploaded,
        ) -> Result<ObjectMeta> {
            let mut state = self.state.lock().expect("lock");
            let mut all = BytesMut::new();
            for index in receipts {
                all.extend_from_slice(&state.parts[&index]);
            }
            state.stored = Some(all.freeze());
            Ok(meta(whole.size))
        }

        async fn abort(&self, _: &u32) -> Result<()> {
            let mut state = self.state.lock().expect("lock");
            state.aborted += 1;
            if state.abort_fails {
                return Err(Error::invalid_argument("abort refused"));
            }
            Ok(())
        }

        async fn put_whole(&self, bytes: Bytes, whole: &Uploaded) -> Result<ObjectMeta> {
            let mut state = self.state.lock().expect("lock");
            state.whole_puts += 1;
            state.stored = Some(bytes);
            Ok(meta(whole.size))
        }
    }

    const PLAN: UploadPlan = UploadPlan {
        part_size: 1000,
        parts_in_flight: 3,
        max_parts: 100,
    };

    fn key() -> Key {
        Key::new("big").expect("key")
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// A one-shot body of `bytes` in uneven chunks.
    fn one_shot(bytes: &[u8]) -> Body {
        let chunks: Vec<Result<Bytes>> = bytes
            .chunks(377)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::stream(stream::iter(chunks).boxed(), None)
    }

    fn no_delay() -> Arc<dyn PartRetry> {
        Arc::new(PartBackoff {
            base_delay: Duration::ZERO,
            cap_delay: Duration::ZERO,
            ..PartBackoff::default()
        })
    }

    #[tokio::test]
    async fn failed_parts_of_a_one_shot_body_are_sent_again() {
        let mock = Mock::with(|s| s.fail = (0..11).step_by(2).map(|i| (i, 2)).collect());
        let bytes = data(10_500);
        let stored = with_part_retry(
            no_delay(),
            upload(mock.clone(), &key(), one_shot(&bytes), PLAN),
        )
        .await
        .expect("upload");
        assert_eq!(stored.size, 10_500);
        assert_eq!(mock.state(|s| s.stored.clone()), Some(Bytes::from(bytes)));
    }

    #[tokio::test]
    async fn complete_gets_the_whole_body_s_size_and_sha256() {
        #[derive(Clone, Default)]
        struct Hashes(Mock, Arc<Mutex<Option<Uploaded>>>);
        #[async_trait]
        impl ChunkedUpload for Hashes {
            type Session = u32;
            type Receipt = u32;
            async fn initiate(&self) -> Result<u32> {
                self.0.initiate().await
            }
            async fn upload_part(&self, s: &u32, p: &Part) -> Result<u32> {
                self.0.upload_part(s, p).await
            }
            async fn complete(&self, s: &u32, r: Vec<u32>, w: &Uploaded) -> Result<ObjectMeta> {
                *self.1.lock().expect("lock") = Some(*w);
                self.0.complete(s, r, w).await
            }
            async fn abort(&self, s: &u32) -> Result<()> {
                self.0.abort(s).await
            }
            async fn put_whole(&self, b: Bytes, w: &Uploaded) -> Result<ObjectMeta> {
                self.0.put_whole(b, w).await
            }
        }
        let uploader = Hashes::default();
        let bytes = data(4_321);
        upload(uploader.clone(), &key(), one_shot(&bytes), PLAN)
            .await
            .expect("upload");
        let expected = Uploaded {
            size: 4_321,
            sha256: Sha256::digest(&bytes).into(),
        };
        assert_eq!(*uploader.1.lock().expect("lock"), Some(expected));
    }

    #[tokio::test]
    async fn a_body_of_one_part_is_one_ordinary_put() {
        let mock = Mock::default();
        upload(mock.clone(), &key(), Body::from(data(1000)), PLAN)
            .await
            .expect("upload");
        assert_eq!(mock.state(|s| (s.whole_puts, s.initiated)), (1, 0));
    }

    /// A body held as one buffer is cut into slices of that buffer, never
    /// copied; parts assembled from small chunks hold the same bytes.
    #[tokio::test]
    async fn parts_of_one_large_chunk_are_slices_of_it() {
        let whole = Bytes::from(data(3500));
        let span = whole.as_ptr() as usize..whole.as_ptr() as usize + whole.len();
        let mut reader = PartReader::new(Body::from(whole.clone()).into_stream(), 1000);
        let mut parts = Vec::new();
        loop {
            let part = reader.next().await.expect("part");
            if part.is_empty() {
                break;
            }
            parts.push(part);
        }
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [1000, 1000, 1000, 500]
        );
        for part in &parts[..3] {
            assert!(
                span.contains(&(part.as_ptr() as usize)),
                "a whole part was copied"
            );
        }
        assert_eq!(parts.concat(), whole);
        let digest: [u8; 32] = Sha256::digest(&whole).into();
        assert_eq!(reader.finish().sha256, digest);

        let mut reader = PartReader::new(one_shot(&whole).into_stream(), 1000);
        let mut again = Vec::new();
        loop {
            let part = reader.next().await.expect("part");
            if part.is_empty() {
                break;
            }
            assert!(
                part.len() == 1000 || again.len() == 3,
                "a short part before the end"
            );
            again.push(part);
        }
        assert_eq!(again.concat(), whole);
        assert_eq!(reader.finish().sha256, digest);
    }

    #[tokio::test]
    async fn parts_in_flight_never_exceed_the_plan() {
        let mock = Mock::default();
        upload(mock.clone(), &key(), Body::from(data(20_000)), PLAN)
            .await
            .expect("upload");
        let most = mock.state(|s| s.max_in_flight);
        assert!(most <= PLAN.parts_in_flight, "{most} parts in flight");
    }

    #[tokio::test]
    async fn a_refused_part_fails_the_upload_and_aborts_it() {
        let mock = Mock::with(|s| s.refuse = vec![3]);
        let failed = upload(mock.clone(), &key(), Body::from(data(9_000)), PLAN).await;
        assert!(
            matches!(failed, Err(Error::InvalidArgument { .. })),
            "{failed:?}"
        );
        assert_eq!(mock.state(|s| (s.aborted, s.stored.is_some())), (1, false));
    }

    #[tokio::test]
    async fn retries_stop_where_the_schedule_says() {
        let mock = Mock::with(|s| s.fail = [(1, 50)].into());
        let once: Arc<dyn PartRetry> = Arc::new(PartBackoff {
            max_attempts: 3,
            base_delay: Duration::ZERO,
            cap_delay: Duration::ZERO,
            ..PartBackoff::default()
        });
        let failed = with_part_retry(
            once,
            upload(mock.clone(), &key(), Body::from(data(3_000)), PLAN),
        )
        .await;
        assert!(failed.is_err_and(|e| e.is_transient()));
        // Parts 0 and 2 once, part 1 three times.
        assert_eq!(mock.state(|s| s.attempts), 5);
    }

    #[tokio::test]
    async fn a_failed_abort_is_chained_to_the_upload_s_error() {
        let mock = Mock::with(|s| {
            s.fail = [(0, 50)].into();
            s.abort_fails = true;
        });
        let once: Arc<dyn PartRetry> = Arc::new(PartBackoff {
            max_attempts: 1,
            ..PartBackoff::default()
        });
        let failed = with_part_retry(once, upload(mock, &key(), Body::from(data(3_000)), PLAN))
            .await
            .expect_err("the part fails");
        let mut chain = Vec::new();
        let mut next: Option<&dyn std::error::Error> = Some(&failed);
        while let Some(error) = next {
            chain.push(error.to_string());
            next = error.source();
        }
        assert!(
            chain.iter().any(|e| e.contains("abort refused")),
            "{chain:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_upload_is_aborted() {
        let mock = Mock::default();
        let head = stream::iter(vec![Ok(Bytes::from(data(2_500)))]);
        let body = Body::stream(head.chain(stream::pending()).boxed(), None);
        let uploader = mock.clone();
        let task = tokio::spawn(async move { upload(uploader, &key(), body, PLAN).await });
        while mock.state(|s| s.initiated) == 0 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        for _ in 0..100 {
            if mock.state(|s| s.aborted) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(mock.state(|s| s.aborted), 1);
    }

    #[tokio::test]
    async fn a_declared_length_past_the_limit_fails_before_any_request() {
        let mock = Mock::default();
        let body = Body::stream(stream::empty().boxed(), Some(PLAN.max_size() + 1));
        let failed = upload(mock.clone(), &key(), body, PLAN).await;
        assert!(matches!(failed, Err(Error::TooLarge { .. })), "{failed:?}");
        assert_eq!(mock.state(|s| s.initiated), 0);
    }

    #[tokio::test]
    async fn a_body_longer_than_the_limit_fails_when_it_proves_so() {
        let mock = Mock::default();
        let plan = UploadPlan {
            max_parts: 3,
            ..PLAN
        };
        let failed = upload(mock.clone(), &key(), one_shot(&data(3_001)), plan).await;
        assert!(matches!(failed, Err(Error::TooLarge { .. })), "{failed:?}");
        assert_eq!(mock.state(|s| (s.aborted, s.stored.is_some())), (1, false));
    }

    #[test]
    fn backoff_delays_lie_within_their_ceilings_and_stop() {
        let backoff = PartBackoff::default();
        let error = Error::backend(true, "503", "test");
        for retry in 0..9 {
            let failure = PartFailure {
                key: "k",
                part: Some(0),
                retry,
                elapsed: Duration::ZERO,
                error: &error,
            };
            let delay = backoff.delay(&failure).expect("a retry is left");
            assert!(delay <= backoff.ceiling(retry), "retry {retry}: {delay:?}");
        }
        let last = PartFailure {
            key: "k",
            part: Some(0),
            retry: 9,
            elapsed: Duration::ZERO,
            error: &error,
        };
        assert_eq!(backoff.delay(&last), None);
    }
}
