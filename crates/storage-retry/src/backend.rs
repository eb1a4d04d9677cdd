//! [`Retry`]: the [`Backend`] that retries transient failures of another.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use storage_core::{
    Backend, Body, Capabilities, ChangeStream, DeleteOptions, Error, GetOptions, GetResult, Key,
    ListOptions, ListPage, ObjectMeta, PutMode, PutOptions, Result, TxnId,
};

use storage_core::raw::{PartRetry, with_part_retry};

use crate::policy::{Attempts, Operation, RetryPolicy, within};
use crate::read::{Fetched, fetch, resumable};
use crate::replay::Replay;
use crate::write_id::{
    Seen, WRITE_ID_METADATA, WriteId, WriteKind, Writers, Writing, adopted_write_id, hide_write_id,
    tag,
};

/// Wraps a backend and retries its transient failures (DESIGN section 5).
///
/// - Only failures for which [`Error::is_transient`] holds are retried; any
///   other error is returned after exactly one attempt. An attempt that
///   exceeds its time limit ([`RetryPolicy::attempt_timeout_for`]) is
///   dropped and counts as a transient failure whose outcome is unknown.
/// - Retries wait a jittered exponential delay and stop after
///   [`RetryPolicy::max_attempts`] attempts or when the next one could not
///   begin before [`RetryPolicy::deadline`], whichever comes first; the last
///   error is returned.
/// - `put` resends a replayable [`Body`] from its start; a one-shot stream
///   is sent again only if no byte of it was read (see
///   [`replay`](crate::replay)); otherwise the put fails with
///   [`Error::NonReplayableBody`].
/// - A put or delete whose attempt had an unknown outcome is checked (one
///   `head`) before it is sent again, and a retry refused by a precondition
///   is checked the same way, so that a write that was applied is reported
///   as done, once (see [`write_id`](crate::write_id)); where that cannot
///   be known, the answer says the outcome is unknown rather than guess.
/// - A `get` body that fails mid-way resumes from the next byte, pinned to
///   the ETag (see [`read`](crate::read)).
/// - `delete_many` goes to the inner backend's (batched where it batches);
///   keys that failed transiently are settled like a single delete and
///   only the undeleted ones sent again.
/// - `head`, `list` and `copy` are retried whole; `watch`, `name` and
///   `capabilities` are forwarded.
///
/// Wrap a concrete backend with [`Retry::new`], or a backend chosen at run
/// time with [`Retry::from_arc`] (`Retry<dyn Backend>`); `Retry` is itself a
/// [`Backend`], usable as `Arc<dyn Backend>`.
///
/// The layer stores each put's write id under
/// [`WRITE_ID_METADATA`](crate::WRITE_ID_METADATA) (a name reserved by
/// DESIGN section 2, rule 8) and removes that entry from every result. A
/// write id already present, put there by an outer `Retry`, is adopted, so
/// that nested retrying layers agree on one id; other reserved names pass
/// through to the backend, since they belong to layers above this one.
///
/// Do not put a `Retry` inside another: the inner layer removes write ids
/// from the results the outer one reads to settle an ambiguous write, so
/// the outer layer could report an applied compare-and-swap as failed.
///
/// # Panics
/// The operations sleep and time attempts out with Tokio's timer: they
/// must run on a Tokio runtime with time enabled.
#[derive(Debug)]
pub struct Retry<B: ?Sized> {
    policy: Arc<RetryPolicy>,
    seen: Arc<Seen>,
    writers: Writers,
    inner: Arc<B>,
}

impl<B: Backend> Retry<B> {
    /// Wraps `inner` with the default [`RetryPolicy`].
    pub fn new(inner: B) -> Self {
        Retry::with_policy(inner, RetryPolicy::default())
    }

    /// Wraps `inner` with `policy`.
    pub fn with_policy(inner: B, policy: RetryPolicy) -> Self {
        Retry::from_arc(Arc::new(inner), policy)
    }
}

impl<B: Backend + ?Sized> Retry<B> {
    /// Wraps a shared backend, for example an `Arc<dyn Backend>`, with
    /// `policy`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use storage_core::{Backend, MemoryBackend};
    /// use storage_retry::{Retry, RetryPolicy};
    ///
    /// let chosen: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    /// let retrying: Arc<dyn Backend> = Arc::new(Retry::from_arc(chosen, RetryPolicy::default()));
    /// assert_eq!(retrying.name(), "memory");
    /// ```
    pub fn from_arc(inner: Arc<B>, policy: RetryPolicy) -> Self {
        Retry {
            policy: Arc::new(policy),
            seen: Arc::default(),
            writers: Writers::default(),
            inner,
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy
    /// gives up.
    async fn whole<T, F, Fut>(
        &self,
        operation: Operation,
        key: Option<&str>,
        limit: Option<Duration>,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempts = Attempts::start(operation);
        loop {
            match within(limit, attempt(), operation, key).await {
                Err(e) if e.is_transient() => attempts.wait(&self.policy, key, e).await?,
                done => return done,
            }
        }
    }

    /// The destination's version when it carries the write id of the
    /// source's current version: a copy of unknown outcome was applied.
    async fn copied_already(&self, from: &Key, to: &Key) -> Option<ObjectMeta> {
        let limit = Some(self.policy.attempt_timeout());
        let head = |key: &Key| {
            let key = key.clone();
            async move {
                self.whole(Operation::Head, Some(key.as_str()), limit, || {
                    self.inner.head(&key)
                })
                .await
                .ok()
            }
        };
        let destination = head(to).await?;
        let source = head(from).await?;
        let id = destination.metadata.get(WRITE_ID_METADATA)?;
        (source.metadata.get(WRITE_ID_METADATA) == Some(id)).then(|| hide_write_id(destination))
    }

    /// `head` retried whole, its write id stripped.
    async fn head_retried(&self, key: &Key) -> Result<ObjectMeta> {
        let limit = Some(self.policy.attempt_timeout());
        let meta = self
            .whole(Operation::Head, Some(key.as_str()), limit, || {
                self.inner.head(key)
            })
            .await?;
        Ok(self.seen.strip(meta, &self.writers))
    }

    /// What became of a put (with write id `id`, if it has one) after an
    /// attempt of unknown outcome (rules in [`write_id`](crate::write_id)).
    async fn settle_put(
        &self,
        key: &Key,
        id: Option<WriteId>,
        writing: &Writing<'_>,
    ) -> PutOutcome {
        let Some(id) = id else {
            // No write id fitted in the metadata: nothing to look for.
            return PutOutcome::NotApplied;
        };
        match self.head_retried(key).await {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            // A backend refuses a key it cannot store before any I/O (for
            // example Azure, which would rename it), on every operation:
            // the put was refused too, as its next attempt will say.
            Err(Error::InvalidKey { .. }) => return PutOutcome::NotApplied,
            Err(_) => return PutOutcome::Unknown("reading the object failed too"),
        }
        if let Some(meta) = self.seen.written(key, id) {
            return PutOutcome::Applied(meta);
        }
        // Unseen, the write was not applied, unless a write that could hide
        // it overlapped: a blind write could have replaced it unread; a
        // conditional one could have been refused by it.
        let hiding = match writing.kind() {
            WriteKind::Conditional => WriteKind::Blind,
            WriteKind::Blind => WriteKind::Conditional,
        };
        if writing.overlapped_by(hiding) {
            return PutOutcome::Unknown(
                "it is not there now, but another write to the key that could hide it overlapped",
            );
        }
        PutOutcome::NotApplied
    }

    /// A delete retried until it is known to be done, refused, or of
    /// unknown outcome (rules in [`write_id`](crate::write_id)).
    async fn delete_settled(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        let kind = match options.if_match {
            Some(_) => WriteKind::Conditional,
            None => WriteKind::Blind,
        };
        let writing = self.writers.begin(key, kind);
        if let Some(expected) = &options.if_match {
            // The version must be there when the call begins, so that an
            // empty key later is evidence of this call's delete.
            let current = match self.head_retried(key).await {
                Ok(meta) => Some(meta.etag),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            if current.as_ref() != Some(expected) {
                return Err(Error::PreconditionFailed {
                    key: key.to_string(),
                    expected: expected.clone(),
                    actual: current,
                });
            }
        }
        let limit = Some(self.policy.attempt_timeout());
        let mut attempts = Attempts::start(Operation::Delete);
        let mut unknown_outcome = false;
        loop {
            let attempt = self.inner.delete(key, options.clone());
            let error = match within(limit, attempt, Operation::Delete, Some(key.as_str())).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let refused = matches!(error, Error::PreconditionFailed { .. }) && unknown_outcome;
            if !error.is_transient() && !refused {
                return Err(error);
            }
            unknown_outcome = true;
            match self.settle_delete(key, &options, &writing).await {
                Settled::Deleted => return Ok(()),
                Settled::Refused(refusal) => return Err(refusal),
                Settled::Unknown(why) => {
                    return Err(unknown_outcome_error("delete", key, error, why));
                }
                Settled::NotApplied if refused => return Err(error),
                Settled::NotApplied => {
                    attempts
                        .wait(&self.policy, Some(key.as_str()), error)
                        .await?
                }
            }
        }
    }

    /// [`Backend::delete_many`] of the inner backend (batched where it
    /// batches), [`DELETE_CHUNK`] keys per call, each call retried under its
    /// own attempt time limit (see [`Retry::delete_chunk_settled`]). A chunk
    /// after the first that fails as a whole gives each of its keys the
    /// error, so that the results of earlier chunks are kept.
    async fn delete_many_settled(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(keys.len());
        for (n, chunk) in keys.chunks(DELETE_CHUNK).enumerate() {
            match self.delete_chunk_settled(chunk).await {
                Ok(answers) => results.extend(answers),
                Err(e) if n == 0 => return Err(e),
                Err(e) => {
                    results.extend(storage_core::raw::ranges::failed_together(&e, chunk.len()))
                }
            }
        }
        Ok(results)
    }

    /// One chunk of [`Retry::delete_many_settled`]: each attempt sends the
    /// keys still pending; a key that failed transiently, or every key of
    /// an attempt that failed as a whole, is settled with a `head` as a
    /// single delete is ([`Retry::delete`]), and only those the head shows
    /// were not deleted are sent again. The chunk's keys are registered as
    /// writes in progress until each is settled.
    async fn delete_chunk_settled(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let (registered, own) = self.writers.begin_many(keys, WriteKind::Blind);
        let mut writings: Vec<Option<Writing<'_>>> = registered.into_iter().map(Some).collect();
        let mut first_round = true;
        let mut results: Vec<Option<Result<()>>> = keys.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let limit = Some(self.policy.attempt_timeout());
        let mut attempts = Attempts::start(Operation::Delete);
        let unconditional = DeleteOptions::default();
        while !pending.is_empty() {
            let batch: Vec<Key> = pending
                .iter()
                .filter_map(|&i| keys.get(i).cloned())
                .collect();
            let attempt = self.inner.delete_many(&batch);
            let answer = within(limit, attempt, Operation::Delete, None).await;
            // The transient failures to settle, with the error of each.
            let failed: Vec<(usize, Error)> = match answer {
                Ok(per_key) if per_key.len() == batch.len() => {
                    let mut failed = Vec::new();
                    for (&index, result) in pending.iter().zip(per_key) {
                        match result {
                            Err(e) if e.is_transient() => failed.push((index, e)),
                            done => {
                                if let Some(slot) = results.get_mut(index) {
                                    *slot = Some(done);
                                }
                            }
                        }
                    }
                    failed
                }
                Ok(per_key) => {
                    return Err(Error::Backend {
                        transient: false,
                        message: format!(
                            "delete_many of {} keys gave {} results",
                            batch.len(),
                            per_key.len()
                        ),
                        source: None,
                    });
                }
                Err(e) if e.is_transient() => {
                    let message = e.to_string();
                    pending
                        .iter()
                        .map(|&index| {
                            let each = Error::Backend {
                                transient: true,
                                message: message.clone(),
                                source: None,
                            };
                            (index, each)
                        })
                        .collect()
                }
                Err(e) if first_round => return Err(e),
                Err(e) => {
                    // Later rounds: the earlier rounds' results are kept.
                    let spread = storage_core::raw::ranges::failed_together(&e, pending.len());
                    for (&index, each) in pending.iter().zip(spread) {
                        if let Some(slot) = results.get_mut(index) {
                            *slot = Some(each);
                        }
                    }
                    break;
                }
            };
            first_round = false;
            let settled: Vec<(usize, Error, Settled)> = futures::stream::iter(failed)
                .map(|(index, error)| {
                    let key = keys.get(index);
                    let writing = own
                        .get(index)
                        .and_then(|&w| writings.get(w))
                        .and_then(Option::as_ref);
                    let unconditional = &unconditional;
                    async move {
                        let settled = match (key, writing) {
                            (Some(key), Some(writing)) => {
                                self.settle_delete(key, unconditional, writing).await
                            }
                            _ => Settled::Unknown("the key is not in the call"),
                        };
                        (index, error, settled)
                    }
                })
                .buffered(storage_core::raw::ranges::PARALLEL_REQUESTS)
                .collect()
                .await;
            pending.clear();
            let mut last = None;
            for (index, error, settled) in settled {
                let Some((slot, key)) = results.get_mut(index).zip(keys.get(index)) else {
                    continue;
                };
                match settled {
                    Settled::Deleted => *slot = Some(Ok(())),
                    Settled::Refused(refusal) => *slot = Some(Err(refusal)),
                    Settled::Unknown(why) => {
                        *slot = Some(Err(unknown_outcome_error("delete", key, error, why)));
                    }
                    Settled::NotApplied => {
                        pending.push(index);
                        last = Some(error);
                    }
                }
            }
            // A stripe none of whose keys is pending stops counting as
            // written to, so that other writes are not taken for overlaps.
            let needed: std::collections::HashSet<usize> = pending
                .iter()
                .filter_map(|&index| own.get(index).copied())
                .collect();
            for (w, writing) in writings.iter_mut().enumerate() {
                if !needed.contains(&w) {
                    *writing = None;
                }
            }
            if let Some(error) = last
                && let Err(gave_up) = attempts.wait(&self.policy, None, error).await
            {
                let message = gave_up.to_string();
                for &index in &pending {
                    if let Some(slot) = results.get_mut(index) {
                        *slot = Some(Err(Error::Backend {
                            transient: true,
                            message: message.clone(),
                            source: None,
                        }));
                    }
                }
                break;
            }
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(Error::Backend {
                        transient: true,
                        message: "delete_many left a key without an answer".into(),
                        source: None,
                    })
                })
            })
            .collect())
    }

    /// What became of a delete whose attempt had an unknown outcome.
    async fn settle_delete(
        &self,
        key: &Key,
        options: &DeleteOptions,
        writing: &Writing<'_>,
    ) -> Settled {
        let found = self.head_retried(key).await;
        // Read after the head: a writer whose version the head saw began
        // before it.
        let alone = !writing.overlapped();
        match (found, &options.if_match) {
            (Err(Error::NotFound { .. }), None) => Settled::Deleted,
            (Err(Error::NotFound { .. }), Some(_)) if alone => Settled::Deleted,
            (Err(Error::NotFound { .. }), Some(_)) => {
                Settled::Unknown("the object is gone, and another write to the key overlapped")
            }
            // Where ETags derive from the content (S3), the same ETag may be
            // a competitor's rewrite of the same bytes after this delete.
            (Ok(meta), Some(expected))
                if meta.etag == *expected && !alone && !self.inner.capabilities().unique_etags =>
            {
                Settled::Unknown(
                    "the version is there again, and its ETag may be another write's of the same bytes",
                )
            }
            (Ok(meta), Some(expected)) if meta.etag == *expected => Settled::NotApplied,
            (Ok(_), None) if alone => Settled::NotApplied,
            (Ok(meta), Some(expected)) if alone => Settled::Refused(Error::PreconditionFailed {
                key: key.to_string(),
                expected: expected.clone(),
                actual: Some(meta.etag),
            }),
            (Ok(_), _) => Settled::Unknown(
                "another version is there, and another write to the key overlapped",
            ),
            // Refused before any I/O, as the delete was (see `settle_put`).
            (Err(Error::InvalidKey { .. }), _) => Settled::NotApplied,
            (Err(_), _) => Settled::Unknown("reading the object failed too"),
        }
    }
}

/// Keys per call of the inner backend's `delete_many` made by
/// [`Retry`]'s, each call under its own attempt time limit: one S3
/// `DeleteObjects`, four Azure Blob Batches, ten GCS batches.
const DELETE_CHUNK: usize = 1000;

/// What became of a put of unknown outcome.
enum PutOutcome {
    /// This call's version, as the store holds or held it.
    Applied(ObjectMeta),
    /// The attempt did not apply; the put may be sent again.
    NotApplied,
    /// No sure answer, for the reason given.
    Unknown(&'static str),
}

/// What became of a delete of unknown outcome.
enum Settled {
    /// The object is gone by this call's doing (or, unseen, another process's).
    Deleted,
    /// The attempt did not apply; the delete may be sent again.
    NotApplied,
    /// The version was replaced: the conditional delete is refused with
    /// this error.
    Refused(Error),
    /// No sure answer, for the reason given.
    Unknown(&'static str),
}

/// The transient error of a write whose outcome could not be settled.
fn unknown_outcome_error(operation: &str, key: &Key, error: Error, why: &str) -> Error {
    Error::Backend {
        transient: true,
        message: format!(
            "the outcome of the {operation} of {key} is unknown: an attempt failed ({error}), and {why}"
        ),
        source: Some(Box::new(error)),
    }
}

/// The [`WriteKind`] of a put or copy in `mode`.
fn write_kind(mode: &PutMode) -> WriteKind {
    match mode {
        PutMode::Overwrite => WriteKind::Blind,
        PutMode::IfNotExists | PutMode::IfMatch(_) => WriteKind::Conditional,
    }
}

/// Whether `error` is a refused precondition of a put.
fn is_conflict(error: &Error) -> bool {
    matches!(
        error,
        Error::AlreadyExists { .. } | Error::PreconditionFailed { .. }
    )
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for Retry<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// The inner backend's URL, signed once: signing sends no request.
    async fn presign(
        &self,
        method: storage_core::PresignMethod,
        key: &Key,
        expires_in: std::time::Duration,
    ) -> Result<String> {
        self.inner.presign(method, key, expires_in).await
    }

    /// The inner backend's health check, tried once: a health check reports
    /// the failure it meets, it does not wait it out.
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    /// Stores `body` under `key`, retrying transient failures; see the
    /// type's docs for which bodies are sent again and how attempts of
    /// unknown outcome are settled.
    ///
    /// # Errors
    /// - those of the inner backend's [`Backend::put`], the last transient
    ///   one when the policy gives up;
    /// - [`Error::InvalidArgument`] for a write id entry that is not 32 hex
    ///   digits, before any I/O;
    /// - [`Error::NonReplayableBody`] when a one-shot body was read by an
    ///   attempt that failed transiently and its write is not shown to have
    ///   been applied: the object is then the previous one (or, where a late
    ///   request may still land, possibly the whole new one), never a part;
    /// - a transient [`Error::Backend`] saying the outcome is unknown when an
    ///   attempt of unknown outcome cannot be settled (rules in
    ///   [`write_id`](crate::write_id)).
    async fn put(&self, key: &Key, body: Body, mut options: PutOptions) -> Result<ObjectMeta> {
        let adopted = adopted_write_id(&options.metadata)?;
        let writing = self.writers.begin(key, write_kind(&options.mode));
        let replay = Replay::new(body, key);
        let limit = self.policy.attempt_timeout_for(replay.len());
        let id = match adopted {
            Some(id) => Some(id),
            None => {
                let id = WriteId::random();
                tag(&mut options.metadata, id).then_some(id)
            }
        };
        let mut attempts = Attempts::start(Operation::Put);
        let mut unknown_outcome = false;
        loop {
            let Some(body) = replay.next() else {
                return Err(Error::NonReplayableBody {
                    key: key.to_string(),
                    source: None,
                });
            };
            // The parts of a chunked upload below are retried with this
            // layer's policy.
            let part_retry: Arc<dyn PartRetry> = self.policy.clone();
            let attempt = with_part_retry(part_retry, self.inner.put(key, body, options.clone()));
            let error = match within(limit, attempt, Operation::Put, Some(key.as_str())).await {
                // This call's own version: nobody else needs it remembered.
                Ok(meta) => return Ok(hide_write_id(meta)),
                Err(e) => e,
            };
            // A refusal after an attempt of unknown outcome may be this
            // call's own write (object_store #464).
            let refused = is_conflict(&error) && unknown_outcome;
            if !error.is_transient() && !refused {
                return Err(error);
            }
            unknown_outcome = true;
            // The write may have been applied: if so, sending it again would
            // make a second version (or be refused by its own object).
            match self.settle_put(key, id, &writing).await {
                PutOutcome::Applied(meta) => return Ok(meta),
                PutOutcome::Unknown(why) => {
                    return Err(unknown_outcome_error("put", key, error, why));
                }
                // Without a write id the refusal may be by this call's own
                // write (object_store #464): the outcome is unknown.
                PutOutcome::NotApplied if refused && id.is_none() => {
                    return Err(unknown_outcome_error(
                        "put",
                        key,
                        error,
                        "the retry was refused, and no write id fitted in the metadata to tell whose write refused it",
                    ));
                }
                PutOutcome::NotApplied if refused => return Err(error),
                PutOutcome::NotApplied => {}
            }
            if replay.is_consumed() {
                return Err(Error::NonReplayableBody {
                    key: key.to_string(),
                    source: Some(Box::new(error)),
                });
            }
            attempts
                .wait(&self.policy, Some(key.as_str()), error)
                .await?;
            // A reader may have seen the write during the delay.
            if let Some(meta) = id.and_then(|id| self.seen.written(key, id)) {
                return Ok(meta);
            }
        }
    }

    /// Reads the object, retrying until the result arrives. A read of at
    /// most [`RetryPolicy::whole_read_limit`] bytes is read whole within its
    /// attempt; a longer one's body resumes after transient failures (see
    /// [`read`](crate::read)).
    ///
    /// # Errors
    /// Those of the inner backend's [`Backend::get`]; the body ends with
    /// [`Error::PreconditionFailed`] when the object changed before a
    /// resumed piece could be read.
    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let limit = Some(self.policy.attempt_timeout());
        let whole_read_limit = self.policy.whole_read_limit();
        let fetched = self
            .whole(Operation::Get, Some(key.as_str()), limit, || {
                let attempt = self.inner.get(key, options.clone());
                async move {
                    let mut got = attempt.await?;
                    // Stripped first, so that copies of the metadata are small.
                    got.meta = self.seen.strip(got.meta, &self.writers);
                    fetch(got, whole_read_limit).await
                }
            })
            .await?;
        Ok(match fetched {
            Fetched::Whole(got) => got,
            Fetched::Streaming(got) => resumable(
                Arc::clone(&self.inner),
                Arc::clone(&self.policy),
                key.clone(),
                got,
                options.range.is_none(),
            ),
        })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.head_retried(key).await
    }

    /// Deletes the object, retrying transient failures. An attempt of
    /// unknown outcome is settled with a `head` before the delete is sent
    /// again, and a conditional delete reads the object first (one `head`);
    /// see [`write_id`](crate::write_id) for the rules.
    ///
    /// # Errors
    /// Those of the inner backend's [`Backend::delete`], and a transient
    /// [`Error::Backend`] saying the outcome is unknown when another write
    /// to the key overlapped an attempt of unknown outcome.
    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        if options.if_match.is_some() && !self.inner.capabilities().conditional_delete {
            // The backend's own answer, `Unsupported`.
            return self.inner.delete(key, options).await;
        }
        self.delete_settled(key, options).await
    }

    /// Deletes every key through the inner backend's `delete_many` (so
    /// S3's `DeleteObjects` and the Azure and GCS batches keep batching),
    /// retrying transient failures: a key whose delete failed transiently,
    /// or every key of an attempt that failed as a whole, is settled with a
    /// `head` as [`Retry::delete`] settles one, and only the keys not
    /// deleted are sent again.
    ///
    /// # Errors
    /// A failure that is not transient as a whole; otherwise each key's
    /// outcome in its own result, with the transient error of
    /// [`Retry::delete`] where the outcome could not be settled, or the
    /// last transient error when the policy gave up.
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        self.delete_many_settled(keys).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let limit = Some(self.policy.attempt_timeout());
        let prefix = Some(options.prefix.as_str());
        let page = self
            .whole(Operation::List, prefix, limit, || self.inner.list(options))
            .await?;
        Ok(self.seen.strip_page(page, &self.writers))
    }

    /// Copies `from` to `to`, retried whole. No time limit applies to an
    /// attempt, whose length depends on the object's size.
    ///
    /// A conditional copy refused after an attempt of unknown outcome may
    /// have been refused by its own copy: the copy carries the source's
    /// metadata, so when the source version has a write id (it was written
    /// through this layer) and the destination now carries the same one,
    /// the copy is reported as applied, with the destination's version.
    /// Otherwise the refusal is returned.
    ///
    /// # Errors
    /// Those of the inner backend's [`Backend::copy`].
    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        let _writing = self.writers.begin(to, write_kind(&mode));
        let mut attempts = Attempts::start(Operation::Copy);
        let mut unknown_outcome = false;
        loop {
            let error = match self.inner.copy(from, to, mode.clone()).await {
                Ok(meta) => return Ok(self.seen.strip(meta, &self.writers)),
                Err(e) => e,
            };
            if unknown_outcome && is_conflict(&error) {
                return match self.copied_already(from, to).await {
                    Some(meta) => Ok(meta),
                    None => Err(error),
                };
            }
            if !error.is_transient() {
                return Err(error);
            }
            unknown_outcome = true;
            attempts
                .wait(&self.policy, Some(to.as_str()), error)
                .await?;
        }
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        self.inner.watch(prefix).await
    }

    /// Promotes the write of `key` staged in `txn`.
    ///
    /// Where the inner backend promotes in one atomic step
    /// ([`Capabilities::atomic_promote`]), its `promote` is called and
    /// retried on transient failures, each attempt within the policy's time
    /// limit. The staged object is read first (one `head`), so that it can
    /// be recognised later. After an attempt of unknown outcome, and for a
    /// refusal or a `NotFound` that follows one (the earlier attempt may
    /// have applied after it timed out), the staged object tells what
    /// happened: still there, the promote did not apply (a transient
    /// failure is retried, a refusal returned); gone, it applied (the step
    /// is atomic) when `key` holds the staged content (same SHA-256, where
    /// both report one), and `key`'s version is returned. Otherwise the
    /// outcome is unknown, reported as a transient error. Without an atomic
    /// promote below, the default copy-then-delete runs through this layer,
    /// each step retried as [`Backend::copy`] and [`Backend::delete`] are.
    ///
    /// # Errors
    /// Those of the inner backend's [`Backend::promote`] (the last
    /// transient one when the policy gives up); a transient
    /// [`Error::Backend`] when the outcome cannot be settled.
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        if !self.inner.capabilities().atomic_promote {
            return storage_core::raw::promote_by_copy(self, key, txn, mode).await;
        }
        let staged = key.staged(txn)?;
        let source = self.head_retried(&staged).await?;
        let _writing = self.writers.begin(key, write_kind(&mode));
        let limit = Some(self.policy.attempt_timeout());
        let mut attempts = Attempts::start(Operation::Promote);
        let mut unknown_outcome = false;
        loop {
            let attempt = self.inner.promote(key, txn, mode.clone());
            let error = match within(limit, attempt, Operation::Promote, Some(key.as_str())).await {
                Ok(meta) => return Ok(self.seen.strip(meta, &self.writers)),
                Err(e) => e,
            };
            if !error.is_transient() && !unknown_outcome {
                return Err(error);
            }
            match self.head_retried(&staged).await {
                Ok(_) if error.is_transient() => {}
                Ok(_) => return Err(error),
                Err(Error::NotFound { .. }) => {
                    return match self.head_retried(key).await {
                        Ok(meta) if source.sha256.is_none() || meta.sha256 == source.sha256 => {
                            Ok(meta)
                        }
                        _ => Err(unknown_outcome_error(
                            "promote",
                            key,
                            error,
                            "the staged object is gone but the key does not hold its content",
                        )),
                    };
                }
                Err(e) => return Err(e),
            }
            unknown_outcome = true;
            attempts
                .wait(&self.policy, Some(key.as_str()), error)
                .await?;
        }
    }
}
