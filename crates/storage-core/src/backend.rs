//! The `Backend` trait every store implements, and what `get` returns.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};

use crate::{
    Body, ByteStream, Capabilities, ChangeStream, DeleteOptions, Error, GetOptions, Key,
    ListOptions, ListPage, ObjectMeta, PresignMethod, PutMode, PutOptions, Result,
    StagedListOptions, StagedPage, TxnId,
};

/// The result of [`Backend::get`]: the object's metadata, the bytes served and
/// a stream of them.
pub struct GetResult {
    /// Metadata of the version being read; `meta.size` is the full size.
    pub meta: ObjectMeta,
    /// The half-open byte range served, within `0..meta.size`.
    pub range: Range<u64>,
    /// The bytes of `range`, in order. On a full read of a backend that
    /// records checksums, the stream ends with [`Error::ChecksumMismatch`]
    /// instead of its last chunk if the content does not match.
    pub body: ByteStream,
    /// A backend's faster way to read the whole range into one buffer, used
    /// by [`GetResult::bytes`] instead of the stream (which is then never
    /// polled).
    collect: Option<BoxFuture<'static, Result<Bytes>>>,
}

impl GetResult {
    /// A result serving `range` of the object described by `meta` from `body`.
    pub fn new(meta: ObjectMeta, range: Range<u64>, body: ByteStream) -> Self {
        GetResult {
            meta,
            range,
            body,
            collect: None,
        }
    }

    /// Gives [`GetResult::bytes`] a faster way to produce the same bytes, for
    /// example one read into a single buffer instead of a stream of chunks.
    /// The future must check what the stream would check (checksums), and
    /// must not start any I/O before it is first polled.
    pub fn with_collect(mut self, collect: BoxFuture<'static, Result<Bytes>>) -> Self {
        self.collect = Some(collect);
        self
    }

    /// Calls `observe` with every chunk of the body the caller receives,
    /// whichever way it reads ([`GetResult::body`] or
    /// [`GetResult::bytes`]): for layers that count bytes. Errors are not
    /// observed.
    pub fn inspect_chunks(mut self, observe: impl Fn(&Bytes) + Send + Sync + 'static) -> Self {
        let observe = Arc::new(observe);
        let on_stream = Arc::clone(&observe);
        let body = std::mem::replace(&mut self.body, futures::stream::empty().boxed());
        self.body = body
            .inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    on_stream(chunk);
                }
            })
            .boxed();
        if let Some(collect) = self.collect.take() {
            self.collect = Some(
                async move {
                    let data = collect.await?;
                    observe(&data);
                    Ok(data)
                }
                .boxed(),
            );
        }
        self
    }

    /// Passes every error of the body through `map`, whichever way the
    /// caller reads ([`GetResult::body`] or [`GetResult::bytes`]): for
    /// layers that rename keys in errors or count them.
    pub fn map_errors(mut self, map: impl Fn(Error) -> Error + Send + Sync + 'static) -> Self {
        let map = Arc::new(map);
        let on_stream = Arc::clone(&map);
        let body = std::mem::replace(&mut self.body, futures::stream::empty().boxed());
        self.body = body.map_err(move |e| on_stream(e)).boxed();
        if let Some(collect) = self.collect.take() {
            self.collect = Some(async move { collect.await.map_err(|e| map(e)) }.boxed());
        }
        self
    }

    /// Collects the body into one buffer.
    ///
    /// # Errors
    /// Whatever the body stream fails with, for example
    /// [`Error::ChecksumMismatch`].
    pub async fn bytes(self) -> Result<Bytes> {
        match self.collect {
            Some(collect) => collect.await,
            None => collect_stream(self.body, self.range.end - self.range.start).await,
        }
    }

    /// Reads the whole body into one buffer and returns the same result
    /// served from it: a layer that must see every byte before it answers
    /// (to retry a failed read whole, for example) keeps the metadata
    /// without copying it, and [`GetResult::bytes`] of the result costs no
    /// copy either.
    ///
    /// # Errors
    /// Those of [`GetResult::bytes`].
    pub async fn buffered(mut self) -> Result<GetResult> {
        let data = match self.collect.take() {
            Some(collect) => collect.await?,
            None => {
                let body = std::mem::replace(&mut self.body, futures::stream::empty().boxed());
                collect_stream(body, self.range.end - self.range.start).await?
            }
        };
        self.body = futures::stream::iter((!data.is_empty()).then_some(Ok(data))).boxed();
        Ok(self)
    }
}

/// Collects `body`, `len` bytes long, into one buffer; a body of one chunk
/// is returned without a copy.
async fn collect_stream(mut body: ByteStream, len: u64) -> Result<Bytes> {
    let len = len.min(1 << 30) as usize;
    let Some(first) = body.try_next().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = body.try_next().await? else {
        return Ok(first);
    };
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(&first);
    out.extend_from_slice(&second);
    while let Some(chunk) = body.try_next().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// An object store honouring the contract of DESIGN section 2.
///
/// Every method validates its input before any I/O ([`Key`] is valid by
/// construction; metadata and options are checked by the implementation) and
/// reports failures as typed [`Error`]s. The trait is object safe: use it as
/// `Arc<dyn Backend>` to choose a backend at run time.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name for reports, for example `"memory"` or `"fs"`.
    fn name(&self) -> &str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Stores `body` under `key`, atomically: a reader sees the previous
    /// object or the whole new one, never a part of it. Returns the new
    /// version's metadata with a fresh ETag.
    ///
    /// # Errors
    /// - [`Error::AlreadyExists`] for [`PutMode::IfNotExists`] on a present key;
    /// - [`Error::PreconditionFailed`] for [`PutMode::IfMatch`] on a missing key
    ///   or another ETag; in both cases nothing changes;
    /// - [`Error::InvalidArgument`] for invalid metadata or content type;
    /// - [`Error::Unsupported`] for a conditional mode the backend lacks;
    /// - the body stream's own error, with nothing written.
    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta>;

    /// Reads the object, or the range of it named in `options`, if the
    /// conditions of `options` hold ([`GetOptions`] gives their order).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidRange`] (rules in
    /// [`ByteRange`](crate::ByteRange)), the errors of
    /// [`GetOptions::check`] ([`Error::PreconditionFailed`],
    /// [`Error::NotModified`], [`Error::ModifiedSince`]), and
    /// [`Error::ChecksumMismatch`] from the stream of a corrupt object.
    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult>;

    /// Reads the object's metadata.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the key is missing.
    async fn head(&self, key: &Key) -> Result<ObjectMeta>;

    /// Reads the object's metadata if the conditions of `options` hold
    /// (a conditional `HEAD`, RFC 9110 section 13.2.2); `options.range` is
    /// ignored. The default is [`Backend::head`] then
    /// [`GetOptions::check`], exact on every backend.
    ///
    /// # Errors
    /// [`Error::NotFound`]; the errors of [`GetOptions::check`].
    async fn head_if(&self, key: &Key, options: &GetOptions) -> Result<ObjectMeta> {
        let meta = self.head(key).await?;
        options.check(key, &meta)?;
        Ok(meta)
    }

    /// Reads several half-open byte ranges of one version of the object,
    /// returning their bytes in the order of `ranges`: the read pattern of
    /// columnar readers (Parquet footers and column chunks). The default
    /// ([`raw::ranges::get_ranges`](crate::raw::ranges::get_ranges))
    /// coalesces ranges less than 1 MiB apart into one request, keeps at
    /// most 10 requests in flight and pins them all to one ETag. An empty
    /// range gives empty bytes.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidRange`] for a range that ends
    /// past the object (ranges are not clamped here, unlike
    /// [`ByteRange::Bounded`](crate::ByteRange::Bounded)) or starts after
    /// its end; the errors of [`Backend::get`].
    async fn get_ranges(&self, key: &Key, ranges: &[Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        crate::raw::ranges::get_ranges(self, key, ranges).await
    }

    /// Deletes every key of `keys` unconditionally, returning one result
    /// per key in the order of `keys` (a missing key succeeds, as in
    /// [`Backend::delete`]). The default deletes one key per request, 10 in
    /// flight; S3 overrides it with `DeleteObjects` (1000 keys per request).
    ///
    /// # Errors
    /// The outer error when a request failed as a whole, so that nothing is
    /// known of its keys (the keys of earlier requests are deleted; deleting
    /// is idempotent, so the call can be repeated); otherwise each key's
    /// failure in its own result.
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        crate::raw::ranges::delete_many(self, keys).await
    }

    /// Deletes the object. Deleting a missing key succeeds unless
    /// `options.if_match` is set.
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] when `options.if_match` is set and the key
    /// is missing or has another ETag; [`Error::Unsupported`] when it is set
    /// and the backend cannot delete conditionally.
    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()>;

    /// Lists one page of keys in ascending byte order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid prefix or page size.
    async fn list(&self, options: &ListOptions) -> Result<ListPage>;

    /// Copies `from` to `to` with its content type and metadata; `mode`
    /// applies to the destination. The default streams the object through
    /// the client; backends that can copy server-side override it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing source, and the errors of
    /// [`Backend::put`] for the destination.
    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        copy_through_client(self, from, to, mode).await
    }

    /// Streams every change committed under `prefix` from now on, in commit
    /// order, each after it is durable and visible to readers.
    ///
    /// # Errors
    /// [`Error::Unsupported`] unless [`Capabilities::change_feed`] is set (the
    /// default). The stream yields a non-transient [`Error::Backend`] when the
    /// subscriber fell too far behind; see [`ChangeFeed`](crate::ChangeFeed).
    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        let _ = prefix;
        Err(unsupported(self, "watch"))
    }

    /// A URL that lets its holder `GET` or `PUT` the object at `key` without
    /// credentials, for `expires_in` (S3 SigV4 query signing, GCS V4 signed
    /// URLs, Azure service SAS). The URL carries no conditions and none of
    /// this backend's checks: a `PUT` through it stores no SHA-256 and
    /// bypasses layers such as encryption, which therefore refuse to
    /// presign.
    ///
    /// # Errors
    /// [`Error::Unsupported`] unless [`Capabilities::presigned_urls`] is set
    /// (the default); [`Error::InvalidArgument`] for an expiry the service
    /// refuses (S3 and GCS: at most 7 days); [`Error::Unauthenticated`]
    /// when the credentials cannot sign.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        let _ = (method, key, expires_in);
        Err(unsupported(self, "presigned URLs"))
    }

    /// Checks that the store answers and accepts this backend's
    /// credentials with one cheap request (S3 `HeadBucket`, GCS bucket
    /// metadata, Azure Get Container Properties; a stat of the root
    /// directory on disk). Succeeds without I/O where there is nothing to
    /// reach (memory).
    ///
    /// # Errors
    /// Which of the three failed, as its own variant:
    /// - the network: a transient [`Error::Backend`] whose message says the
    ///   endpoint did not answer;
    /// - the credentials: [`Error::Unauthenticated`] or
    ///   [`Error::PermissionDenied`];
    /// - the bucket or container: [`Error::BucketNotFound`] (on disk, a
    ///   missing root directory).
    ///
    /// [`Error::Unsupported`] where the backend cannot tell (the default).
    async fn health(&self) -> Result<()> {
        Err(unsupported(self, "health checks"))
    }

    /// Stages `body` as the write of `key` in transaction `txn`: stores it
    /// at `K/.staging/T` (the layout in [`TxnId`]'s docs), where
    /// ordinary reads of `key` and listings do not see it, replacing what
    /// was staged there before. `options.mode` is ignored: the condition
    /// applies at [`Backend::promote`].
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when `K/.staging/T` exceeds 1024 bytes, before
    /// any I/O; the errors of [`Backend::put`].
    async fn stage(
        &self,
        key: &Key,
        txn: &TxnId,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        crate::staging::stage(self, key, txn, body, options).await
    }

    /// Makes the write of `key` staged in `txn` the object at `key`, under
    /// `mode` (checked against `key`'s current version), and removes the
    /// staged object. Returns the new version of `key`.
    ///
    /// Where [`Capabilities::atomic_promote`] is set, this is one atomic
    /// step. Otherwise (the default) it is a copy of the staged object to
    /// `key` under `mode` (server-side where the backend can), then a delete
    /// of the staged object conditional on the version copied: a reader sees
    /// the old or the new object at `key` (the copy is atomic), but a crash
    /// between the two steps leaves the staged object behind. A failed
    /// removal is logged (`tracing`, target `storage_core::staging`), not
    /// returned: the promotion happened, and [`Backend::discard`] or
    /// [`Backend::list_staged`] find the leftover.
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing is staged; [`Error::AlreadyExists`]
    /// or [`Error::PreconditionFailed`] when `mode` refuses the write (the
    /// staged object is kept); the errors of [`Backend::copy`].
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        crate::staging::promote(self, key, txn, mode).await
    }

    /// Removes the write of `key` staged in `txn` and its staged
    /// attachments. Idempotent: nothing staged is not an error.
    ///
    /// # Errors
    /// The errors of [`Backend::list`] and [`Backend::delete`].
    async fn discard(&self, key: &Key, txn: &TxnId) -> Result<()> {
        crate::staging::discard(self, key, txn).await
    }

    /// Lists staged writes, nested (`K/.staging/T`) and root
    /// (`.staging/T`) forms, in ascending order of stored name, without
    /// attachments, filtered by prefix and transaction-id prefix, in pages.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad prefix or page size, before any
    /// I/O; the errors of [`Backend::list`].
    async fn list_staged(&self, options: &StagedListOptions) -> Result<StagedPage> {
        crate::staging::list_staged(self, options).await
    }
}

/// Copies an object by reading it and writing it back: the default of
/// [`Backend::copy`], public so that overriding backends can fall back to it.
///
/// The source is read as one consistent version; its content type and user
/// metadata are carried to the destination.
///
/// # Errors
/// As [`Backend::copy`].
pub async fn copy_through_client<B: Backend + ?Sized>(
    backend: &B,
    from: &Key,
    to: &Key,
    mode: PutMode,
) -> Result<ObjectMeta> {
    crate::raw::note_client_copy();
    let source = backend.get(from, GetOptions::default()).await?;
    let options = PutOptions {
        mode,
        content_type: source.meta.content_type.clone(),
        metadata: source.meta.metadata.clone(),
    };
    let body = match source.meta.size {
        0 => Body::empty(),
        size => Body::stream(source.body, Some(size)),
    };
    backend.put(to, body, options).await
}

macro_rules! forward_backend {
    ($($wrapper:ident),*) => {$(
        #[async_trait]
        impl<B: Backend + ?Sized> Backend for $wrapper<B> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
                (**self).put(key, body, options).await
            }
            async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
                (**self).get(key, options).await
            }
            async fn head(&self, key: &Key) -> Result<ObjectMeta> {
                (**self).head(key).await
            }
            async fn head_if(&self, key: &Key, options: &GetOptions) -> Result<ObjectMeta> {
                (**self).head_if(key, options).await
            }
            async fn get_ranges(&self, key: &Key, ranges: &[Range<u64>]) -> Result<Vec<bytes::Bytes>> {
                (**self).get_ranges(key, ranges).await
            }
            async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
                (**self).delete_many(keys).await
            }
            async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
                (**self).delete(key, options).await
            }
            async fn list(&self, options: &ListOptions) -> Result<ListPage> {
                (**self).list(options).await
            }
            async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
                (**self).copy(from, to, mode).await
            }
            async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
                (**self).watch(prefix).await
            }
            async fn presign(
                &self,
                method: PresignMethod,
                key: &Key,
                expires_in: Duration,
            ) -> Result<String> {
                (**self).presign(method, key, expires_in).await
            }
            async fn health(&self) -> Result<()> {
                (**self).health().await
            }
            async fn stage(
                &self,
                key: &Key,
                txn: &TxnId,
                body: Body,
                options: PutOptions,
            ) -> Result<ObjectMeta> {
                (**self).stage(key, txn, body, options).await
            }
            async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
                (**self).promote(key, txn, mode).await
            }
            async fn discard(&self, key: &Key, txn: &TxnId) -> Result<()> {
                (**self).discard(key, txn).await
            }
            async fn list_staged(&self, options: &StagedListOptions) -> Result<StagedPage> {
                (**self).list_staged(options).await
            }
        }
    )*};
}

forward_backend!(Arc, Box);

/// The [`Error::Unsupported`] a backend returns for an operation it lacks.
pub fn unsupported(backend: &(impl Backend + ?Sized), operation: &'static str) -> Error {
    Error::Unsupported {
        operation,
        backend: backend.name().to_owned(),
    }
}
