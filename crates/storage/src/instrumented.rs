//! `Instrumented<B>`: a `tracing` span and `metrics` figures per operation.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use storage_core::{
    Backend, Body, Capabilities, ChangeStream, DeleteOptions, GetOptions, GetResult, Key,
    ListOptions, ListPage, ObjectMeta, PresignMethod, PutMode, PutOptions, Result,
    StagedListOptions, StagedPage, TxnId,
};
use tracing::Instrument;
use tracing::field::Empty;

/// Counter of operations, labelled `backend`, `operation` and `outcome`
/// (`ok` or `error`). A `get` counts as `ok` once the store answered with
/// a body; an error while that body streams (a checksum mismatch, a
/// broken connection) is counted in [`ERRORS`] only.
pub const OPERATIONS: &str = "storage_operations_total";
/// Counter of failed operations, labelled `backend`, `operation` and
/// `kind` ([`Error::kind`](storage_core::Error::kind)); for `get`, errors
/// of the body stream too.
pub const ERRORS: &str = "storage_errors_total";
/// Histogram of operation latency in seconds, labelled `backend` and
/// `operation`: from the call to its answer (for `get`, to the response
/// headers, not to the end of the body).
pub const DURATION: &str = "storage_operation_duration_seconds";
/// Counter of bytes sent to the store (the sizes of successful puts and
/// staged writes), labelled `backend`.
pub const BYTES_WRITTEN: &str = "storage_bytes_written_total";
/// Counter of bytes received from the store (body bytes of gets, counted
/// as the caller reads them), labelled `backend`.
pub const BYTES_READ: &str = "storage_bytes_read_total";

/// Observes every call to `inner`: a `tracing` span per operation and
/// `metrics` figures, through whatever subscriber and recorder the
/// application installed (none: both cost a few atomic loads).
///
/// The span is named `storage` at level INFO, with the fields `backend`,
/// `operation` (`put`, `get`, `get_ranges`, `head`, `delete`,
/// `delete_many`, `list`, `copy`, `watch`,
/// `presign`, `health`, `stage`, `promote`, `discard`, `list_staged`),
/// `key` (the list prefix for listings, the destination for copies),
/// `bytes` (the size written, the length served by a get, the number of
/// keys of a `delete_many`), `outcome`
/// (`ok` or `error`), `error_kind` ([`Error::kind`](storage_core::Error::kind))
/// and `duration_ms`. The metrics are [`OPERATIONS`], [`ERRORS`],
/// [`DURATION`], [`BYTES_WRITTEN`] and [`BYTES_READ`].
///
/// ```
/// use std::sync::Arc;
/// use storage::{BackendExt, Instrumented, MemoryBackend};
/// # async fn example() -> storage_core::Result<()> {
/// let store = Instrumented::new(Arc::new(MemoryBackend::new()));
/// store.put_bytes("k", "v").await?; // one span, one count, 1 byte written
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Instrumented<B> {
    inner: B,
    backend: Arc<str>,
}

impl<B: Backend> Instrumented<B> {
    /// Observes `inner`, labelling everything with its name.
    pub fn new(inner: B) -> Self {
        let backend = Arc::from(inner.name());
        Instrumented { inner, backend }
    }

    /// The backend underneath.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Runs `call` inside the operation's span, then records its outcome,
    /// duration and (from `bytes`) size.
    async fn observe<T>(
        &self,
        operation: &'static str,
        key: &str,
        call: impl Future<Output = Result<T>>,
        bytes: impl FnOnce(&T) -> Option<u64>,
    ) -> Result<T> {
        let span = tracing::info_span!(
            "storage",
            backend = &*self.backend,
            operation,
            key,
            bytes = Empty,
            outcome = Empty,
            error_kind = Empty,
            duration_ms = Empty,
        );
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        let elapsed = started.elapsed();
        self.record(&span, operation, elapsed, &result, bytes);
        result
    }

    fn record<T>(
        &self,
        span: &tracing::Span,
        operation: &'static str,
        elapsed: Duration,
        result: &Result<T>,
        bytes: impl FnOnce(&T) -> Option<u64>,
    ) {
        let backend = self.backend.to_string();
        span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
        metrics::histogram!(DURATION, "backend" => backend.clone(), "operation" => operation)
            .record(elapsed.as_secs_f64());
        match result {
            Ok(value) => {
                span.record("outcome", "ok");
                if let Some(bytes) = bytes(value) {
                    span.record("bytes", bytes);
                    if matches!(operation, "put" | "stage") {
                        metrics::counter!(BYTES_WRITTEN, "backend" => backend.clone())
                            .increment(bytes);
                    }
                }
                metrics::counter!(OPERATIONS, "backend" => backend, "operation" => operation, "outcome" => "ok")
                    .increment(1);
            }
            Err(error) => {
                span.record("outcome", "error");
                span.record("error_kind", error.kind());
                metrics::counter!(ERRORS, "backend" => backend.clone(), "operation" => operation, "kind" => error.kind())
                    .increment(1);
                metrics::counter!(OPERATIONS, "backend" => backend, "operation" => operation, "outcome" => "error")
                    .increment(1);
            }
        }
    }
}

fn size(meta: &ObjectMeta) -> Option<u64> {
    Some(meta.size)
}

fn total(parts: &[Bytes]) -> u64 {
    parts.iter().map(|part| part.len() as u64).sum()
}

fn none<T>(_: &T) -> Option<u64> {
    None
}

#[async_trait]
impl<B: Backend> Backend for Instrumented<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.observe(
            "put",
            key.as_str(),
            self.inner.put(key, body, options),
            size,
        )
        .await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let result = self
            .observe("get", key.as_str(), self.inner.get(key, options), |r| {
                Some(r.range.end - r.range.start)
            })
            .await?;
        let counter = metrics::counter!(BYTES_READ, "backend" => self.backend.to_string());
        let backend = self.backend.to_string();
        Ok(result
            .inspect_chunks(move |chunk| counter.increment(chunk.len() as u64))
            .map_errors(move |error| {
                metrics::counter!(ERRORS, "backend" => backend.clone(), "operation" => "get", "kind" => error.kind())
                    .increment(1);
                error
            }))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.observe("head", key.as_str(), self.inner.head(key), none)
            .await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.observe(
            "delete",
            key.as_str(),
            self.inner.delete(key, options),
            none,
        )
        .await
    }

    async fn head_if(&self, key: &Key, options: &GetOptions) -> Result<ObjectMeta> {
        self.observe("head", key.as_str(), self.inner.head_if(key, options), none)
            .await
    }

    async fn get_ranges(&self, key: &Key, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let call = self.inner.get_ranges(key, ranges);
        let parts = self
            .observe("get_ranges", key.as_str(), call, |parts| Some(total(parts)))
            .await?;
        metrics::counter!(BYTES_READ, "backend" => self.backend.to_string())
            .increment(total(&parts));
        Ok(parts)
    }

    /// One span for the whole call, `key` being the first key and `bytes`
    /// the number of keys; each key's failure is counted in [`ERRORS`]
    /// (operation `delete`), as when its delete is a call of its own.
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let first = keys.first().map_or("", Key::as_str);
        let call = self.inner.delete_many(keys);
        let results = self
            .observe("delete_many", first, call, |results| {
                u64::try_from(results.len()).ok()
            })
            .await?;
        for error in results.iter().filter_map(|result| result.as_ref().err()) {
            metrics::counter!(ERRORS, "backend" => self.backend.to_string(), "operation" => "delete", "kind" => error.kind())
                .increment(1);
        }
        Ok(results)
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.observe("list", &options.prefix, self.inner.list(options), none)
            .await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.observe("copy", to.as_str(), self.inner.copy(from, to, mode), size)
            .await
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        self.observe("watch", prefix, self.inner.watch(prefix), none)
            .await
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        let call = self.inner.presign(method, key, expires_in);
        self.observe("presign", key.as_str(), call, none).await
    }

    async fn health(&self) -> Result<()> {
        self.observe("health", "", self.inner.health(), none).await
    }

    async fn stage(
        &self,
        key: &Key,
        txn: &TxnId,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let call = self.inner.stage(key, txn, body, options);
        self.observe("stage", key.as_str(), call, size).await
    }

    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        let call = self.inner.promote(key, txn, mode);
        self.observe("promote", key.as_str(), call, none).await
    }

    async fn discard(&self, key: &Key, txn: &TxnId) -> Result<()> {
        self.observe("discard", key.as_str(), self.inner.discard(key, txn), none)
            .await
    }

    async fn list_staged(&self, options: &StagedListOptions) -> Result<StagedPage> {
        let call = self.inner.list_staged(options);
        self.observe("list_staged", &options.prefix, call, none)
            .await
    }
}
