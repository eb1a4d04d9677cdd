//! Backends and policies shared by the tests of `storage-retry`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, stream};
use storage_core::{
    Backend, Body, ByteStream, Capabilities, ChangeStream, DeleteOptions, Error, GetOptions,
    GetResult, Key, ListOptions, ListPage, ObjectMeta, PutMode, PutOptions, Result, TxnId,
};
use storage_retry::RetryPolicy;

/// A policy with short delays and time limits, for tests over memory:
/// delays of at most 1 ms doubling up to 20 ms, 10 attempts, 50 ms per
/// attempt plus 1 s per 16 MiB of body.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_base_delay(Duration::from_millis(1))
        .with_cap_delay(Duration::from_millis(20))
        .with_attempt_timeout(Duration::from_millis(50))
        .with_min_throughput(16 << 20)
        .with_deadline(Duration::from_secs(30))
}

/// A transient error as a network failure would give.
pub fn transient(what: &str) -> Error {
    Error::Backend {
        transient: true,
        message: format!("test fault: {what}"),
        source: None,
    }
}

/// Which calls of a [`Scripted`] backend fail, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Every call runs.
    Pass,
    /// The next `n` puts are applied, then answered with a transient error.
    LoseAnswers(u64),
    /// The next `n` puts fail transiently before reaching the store.
    Refuse(u64),
    /// The next put reads its body's first chunk, then fails transiently
    /// without storing anything.
    BreakAfterFirstChunk,
    /// The next put is answered with a transient error at once, and lands
    /// later: just before the put after it (a request delayed in the
    /// network past the client's time limit).
    LandLate,
    /// The next `n` deletes are applied, then answered with a transient
    /// error.
    LoseDeleteAnswers(u64),
    /// The next `n` deletes fail transiently before reaching the store; a
    /// `delete_many` answers each of its keys so.
    RefuseDeletes(u64),
    /// Every delete fails transiently before reaching the store (a
    /// `delete_many` as a whole); other calls run.
    DeletesAlwaysTransient,
    /// Every call fails with a transient error.
    AlwaysTransient,
    /// Every call fails with a non-transient error.
    AlwaysDenied,
}

/// Wraps a backend, counts every call that reaches it and fails puts and
/// deletes as scripted.
#[derive(Debug)]
pub struct Scripted<B> {
    pub inner: B,
    script: Mutex<Script>,
    calls: AtomicU64,
    late: Mutex<Option<(Key, Bytes, PutOptions)>>,
    late_promote: Mutex<Option<(Key, TxnId, PutMode)>>,
}

impl<B: Backend> Scripted<B> {
    pub fn new(inner: B, script: Script) -> Self {
        Scripted {
            inner,
            script: Mutex::new(script),
            calls: AtomicU64::new(0),
            late: Mutex::new(None),
            late_promote: Mutex::new(None),
        }
    }

    /// Calls that reached this backend.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = script;
    }

    /// The script for this call (`put` says whether it is a put, `delete`
    /// whether a delete), counting down the scripts that apply to it.
    fn take(&self, put: bool, delete: bool) -> Script {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
        let now = *script;
        let applies = match now {
            Script::LoseAnswers(_)
            | Script::Refuse(_)
            | Script::BreakAfterFirstChunk
            | Script::LandLate => put,
            Script::LoseDeleteAnswers(_)
            | Script::RefuseDeletes(_)
            | Script::DeletesAlwaysTransient => delete,
            Script::Pass | Script::AlwaysTransient | Script::AlwaysDenied => true,
        };
        if !applies {
            return Script::Pass;
        }
        *script = match now {
            Script::LoseAnswers(n) if n > 1 => Script::LoseAnswers(n - 1),
            Script::Refuse(n) if n > 1 => Script::Refuse(n - 1),
            Script::LoseDeleteAnswers(n) if n > 1 => Script::LoseDeleteAnswers(n - 1),
            Script::RefuseDeletes(n) if n > 1 => Script::RefuseDeletes(n - 1),
            Script::LoseAnswers(_)
            | Script::Refuse(_)
            | Script::BreakAfterFirstChunk
            | Script::LandLate
            | Script::LoseDeleteAnswers(_)
            | Script::RefuseDeletes(_) => Script::Pass,
            other => other,
        };
        now
    }

    fn common(&self) -> Result<()> {
        match self.take(false, false) {
            Script::AlwaysTransient => Err(transient("always")),
            Script::AlwaysDenied => Err(Error::PermissionDenied {
                key: None,
                message: "test: denied".into(),
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl<B: Backend> Backend for Scripted<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        let late = self
            .late
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((k, data, o)) = late {
            let _ = self.inner.put(&k, Body::from(data), o).await;
        }
        match self.take(true, false) {
            Script::LandLate => {
                let data = body.into_bytes().await?;
                *self.late.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((key.clone(), data, options));
                Err(transient("no answer in time"))
            }
            Script::LoseAnswers(_) => {
                self.inner.put(key, body, options).await?;
                Err(transient("answer lost"))
            }
            Script::Refuse(_) => Err(transient("refused")),
            Script::BreakAfterFirstChunk => {
                let mut stream = body.into_stream();
                let _first = stream.next().await;
                Err(transient("connection reset after the first chunk"))
            }
            Script::AlwaysTransient => Err(transient("always")),
            Script::AlwaysDenied => Err(Error::PermissionDenied {
                key: Some(key.to_string()),
                message: "test: denied".into(),
            }),
            Script::Pass
            | Script::LoseDeleteAnswers(_)
            | Script::RefuseDeletes(_)
            | Script::DeletesAlwaysTransient => self.inner.put(key, body, options).await,
        }
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.common()?;
        self.inner.get(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.common()?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        match self.take(false, true) {
            Script::LoseDeleteAnswers(_) => {
                self.inner.delete(key, options).await?;
                Err(transient("delete answer lost"))
            }
            Script::RefuseDeletes(_) => Err(transient("delete refused")),
            Script::AlwaysTransient | Script::DeletesAlwaysTransient => Err(transient("always")),
            _ => self.inner.delete(key, options).await,
        }
    }

    /// Scripted as one delete: the whole call.
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        match self.take(false, true) {
            Script::LoseDeleteAnswers(_) => {
                self.inner.delete_many(keys).await?;
                Err(transient("delete_many answer lost"))
            }
            Script::RefuseDeletes(_) => Ok(keys
                .iter()
                .map(|_| Err(transient("delete refused")))
                .collect()),
            Script::AlwaysTransient | Script::DeletesAlwaysTransient => Err(transient("always")),
            _ => self.inner.delete_many(keys).await,
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.common()?;
        self.inner.list(options).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.common()?;
        self.inner.copy(from, to, mode).await
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        self.inner.watch(prefix).await
    }

    /// Scripted as a put: the inner backend's own (atomic) promote.
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        let late = self
            .late_promote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((k, t, m)) = late {
            let _ = self.inner.promote(&k, &t, m).await;
        }
        match self.take(true, false) {
            Script::LandLate => {
                *self
                    .late_promote
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some((key.clone(), txn.clone(), mode));
                Err(transient("no answer in time"))
            }
            Script::LoseAnswers(_) => {
                self.inner.promote(key, txn, mode).await?;
                Err(transient("answer lost"))
            }
            Script::Refuse(_) | Script::AlwaysTransient => Err(transient("refused")),
            _ => self.inner.promote(key, txn, mode).await,
        }
    }
}

/// Wraps a backend and breaks every read body at planned absolute byte
/// offsets of the object, each offset once: a piece that would cross the
/// next planned offset passes the bytes before it, then fails transiently.
#[derive(Debug)]
pub struct BreakReads<B> {
    pub inner: B,
    offsets: Mutex<Vec<u64>>,
    pub gets: AtomicU64,
}

impl<B: Backend> BreakReads<B> {
    /// Breaks reads at `offsets` (any order).
    pub fn new(inner: B, mut offsets: Vec<u64>) -> Self {
        offsets.sort_unstable();
        offsets.dedup();
        BreakReads {
            inner,
            offsets: Mutex::new(offsets),
            gets: AtomicU64::new(0),
        }
    }

    /// The next planned offset inside `start..end`, removed from the plan.
    fn next_break(&self, start: u64, end: u64) -> Option<u64> {
        let mut offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        let index = offsets.iter().position(|&o| o > start && o < end)?;
        Some(offsets.remove(index))
    }
}

/// Passes `body` (which starts at absolute byte `start`) up to absolute
/// byte `at`, then fails transiently.
fn cut(body: ByteStream, start: u64, at: u64) -> ByteStream {
    stream::unfold((Some(body), start), move |(body, pos)| async move {
        let mut body = body?;
        if pos >= at {
            return Some((Err(transient("read broken")), (None, pos)));
        }
        match body.next().await {
            Some(Ok(chunk)) if pos + chunk.len() as u64 > at => {
                let head = chunk.slice(..(at - pos) as usize);
                Some((Ok(head), (Some(body), at)))
            }
            Some(Ok(chunk)) => {
                let pos = pos + chunk.len() as u64;
                Some((Ok(chunk), (Some(body), pos)))
            }
            other => other.map(|item| (item, (None, pos))),
        }
    })
    .boxed()
}

#[async_trait]
impl<B: Backend> Backend for BreakReads<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.inner.put(key, body, options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let got = self.inner.get(key, options).await?;
        let GetResult {
            meta, range, body, ..
        } = got;
        let body = match self.next_break(range.start, range.end) {
            Some(at) => cut(body, range.start, at),
            None => body,
        };
        Ok(GetResult::new(meta, range, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.inner.delete(key, options).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }
}

/// A one-shot body of `chunks`, counting the chunks pulled from it.
pub fn counted_stream(chunks: Vec<Bytes>, pulled: Arc<AtomicU64>) -> Body {
    let len = chunks.iter().map(|c| c.len() as u64).sum();
    let stream = stream::iter(chunks.into_iter().map(Ok))
        .inspect(move |_| {
            pulled.fetch_add(1, Ordering::Relaxed);
        })
        .boxed();
    Body::stream(stream, Some(len))
}
