//! [`ObjectStoreBackend`]: any [`ObjectStore`] as a [`Backend`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use futures::stream::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions as StoreGetOptions, ObjectStore, ObjectStoreExt, PutMode as StorePutMode,
    PutOptions as StorePutOptions, PutPayload, UpdateVersion,
};
use storage_core::raw::list::page_from_sorted;
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, ETag, Error, GetOptions, GetResult, Key,
    ListOptions, ListPage, Locality, ObjectMeta, PutMode, PutOptions, Result,
};

use crate::convert::{attributes, from_attributes, from_store_error, to_get_range};

/// Any [`ObjectStore`] as a [`Backend`], so that `Retry`, `Encrypted`,
/// transactions and the conformance suite run over object_store's
/// backends (InMemory, LocalFileSystem, AmazonS3, MicrosoftAzure, ...).
///
/// The [`Capabilities`] are the caller's word on what the inner store does
/// (object_store cannot say): [`in_memory_capabilities`] and
/// [`local_file_system_capabilities`] are those of object_store's own
/// stores. Whatever is claimed, conditional deletes, atomic promotion,
/// change feeds, presigned URLs and recorded checksums are off: the
/// `ObjectStore` trait has none of them.
///
/// What each operation becomes:
/// - `put`: one `put_opts` with the body collected in memory (the
///   `ObjectStore` trait takes a whole payload), except that an
///   unconditional put of more than 16 MiB (or of unknown length) streams
///   through a multipart upload in 8 MiB parts, two in flight; `IfNotExists` is
///   `PutMode::Create`, `IfMatch` is `PutMode::Update` with the ETag in
///   the form the store issues (quoted or bare, learned from its answers);
/// - `get`: `get_opts` with the range and the four conditions; the range
///   rules of [`ByteRange`](storage_core::ByteRange) are checked on the
///   size served, so a store that answers an unsatisfiable range with
///   bytes still gives [`Error::InvalidRange`];
/// - `head`: `get_opts` with `head` set (a plain `head` carries no
///   attributes, so no content type or metadata);
/// - `delete`: `delete` (a missing object succeeds);
/// - `list`: the store's listing of the directory holding the prefix,
///   filtered, sorted and paged here ([`page_from_sorted`]): object_store
///   lists whole path segments and has no continuation tokens, so every
///   page lists that directory again (fine for tests and small stores;
///   the cost is the directory's size per page);
/// - `copy`: `copy` or `copy_if_not_exists` (where the store does not
///   support the latter, as AmazonS3 without a configured mechanism, and
///   for a compare-and-swap copy: read and written through the client).
///
/// Errors: object_store's `NotFound`, `AlreadyExists`, `NotModified`,
/// `PermissionDenied`, `Unauthenticated` map to ours, `Precondition` to
/// [`Error::PreconditionFailed`] or [`Error::ModifiedSince`] after the
/// condition asked; the rest are non-transient [`Error::Backend`]s
/// (object_store's stores retry inside).
pub struct ObjectStoreBackend<O: ?Sized> {
    store: Arc<O>,
    name: String,
    capabilities: Capabilities,
    /// The ETag form the store issues: 0 not seen yet, 1 quoted, 2 bare.
    quoting: AtomicU8,
}

/// What object_store's `InMemory` honours: conditional puts (`Create`,
/// `Update`), server-side copies and ETags unique per put (a counter).
pub fn in_memory_capabilities() -> Capabilities {
    Capabilities {
        conditional_put: true,
        server_side_copy: true,
        unique_etags: true,
        ..Capabilities::none(Locality::Memory)
    }
}

/// What object_store's `LocalFileSystem` honours: `PutMode::Create` only
/// (so no conditional put in the contract's sense, which needs
/// compare-and-swap too) and server-side copies. Its ETags derive from
/// inode, modification time and size, so two puts within the clock's
/// resolution may share one: not unique.
pub fn local_file_system_capabilities() -> Capabilities {
    Capabilities {
        server_side_copy: true,
        ..Capabilities::none(Locality::Local)
    }
}

/// Bodies longer than this (or of unknown length) under
/// `PutMode::Overwrite` are streamed through a multipart upload instead of
/// collected: 16 MiB.
const STREAM_ABOVE: u64 = 16 * 1024 * 1024;

/// The part size of a streamed put: 8 MiB (above S3's 5 MiB minimum).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of a streamed put in flight at once: memory is bounded by this
/// many parts.
const PARTS_IN_FLIGHT: usize = 2;

/// The last instant of `time`'s second: the contract compares times in
/// whole seconds (an HTTP date's precision), object_store's own stores
/// compare exactly, so a time condition is sent as the end of its second.
fn end_of_second(time: std::time::SystemTime) -> chrono::DateTime<chrono::Utc> {
    let seconds = time
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let floor = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    (floor + std::time::Duration::from_nanos(999_999_999)).into()
}

/// The path of `key`: its segments as they are where object_store accepts
/// them (`Path::parse`), otherwise object_store's encoding of them.
fn store_path(key: &Key) -> Path {
    Path::parse(key.as_str()).unwrap_or_else(|_| Path::from(key.as_str()))
}

impl<O: ObjectStore + ?Sized> ObjectStoreBackend<O> {
    /// Serves `store` under `name` (for reports), claiming `capabilities`
    /// (those the `ObjectStore` trait cannot have are cleared; see the
    /// type's docs).
    pub fn new(store: Arc<O>, name: impl Into<String>, capabilities: Capabilities) -> Self {
        ObjectStoreBackend {
            store,
            name: name.into(),
            capabilities: Capabilities {
                conditional_delete: false,
                atomic_promote: false,
                change_feed: false,
                presigned_urls: false,
                checksums: false,
                ..capabilities
            },
            quoting: AtomicU8::new(0),
        }
    }

    /// The store served.
    pub fn store(&self) -> &Arc<O> {
        &self.store
    }

    /// Our ETag of the store's, noting the form it uses.
    fn etag_of(&self, e_tag: Option<&str>, key: &Key) -> Result<ETag> {
        let e_tag = e_tag.ok_or_else(|| Error::Backend {
            transient: false,
            message: format!("{}: no ETag for {key}", self.name),
            source: None,
        })?;
        let form = if e_tag.starts_with('"') { 1 } else { 2 };
        self.quoting.store(form, Ordering::Relaxed);
        Ok(ETag::new(e_tag))
    }

    /// `etag` in the form the store issues (quoted until it shows
    /// otherwise).
    fn store_etag(&self, etag: &ETag) -> String {
        match self.quoting.load(Ordering::Relaxed) {
            2 => etag.as_str().to_owned(),
            _ => etag.quoted(),
        }
    }

    /// Our metadata of the store's, with the attributes that came with it.
    fn meta_of(
        &self,
        key: &Key,
        meta: &object_store::ObjectMeta,
        attributes: Option<&object_store::Attributes>,
    ) -> Result<ObjectMeta> {
        let mut ours = ObjectMeta {
            key: key.clone(),
            size: meta.size,
            etag: self.etag_of(meta.e_tag.as_deref(), key)?,
            last_modified: meta.last_modified.into(),
            content_type: None,
            metadata: Default::default(),
            sha256: None,
        };
        if let Some(attributes) = attributes {
            from_attributes(attributes, &mut ours);
        }
        Ok(ours)
    }

    /// Streams `body` into a multipart upload, parts of [`PART_BYTES`], at
    /// most [`PARTS_IN_FLIGHT`] in flight; returns the put's result and
    /// the size written, or the upload's failure (the upload is aborted).
    ///
    /// # Errors
    /// The body's error; object_store's error of a part or of `complete`
    /// comes back as the inner `Err`.
    async fn put_streamed(
        &self,
        path: &Path,
        body: Body,
        attributes: object_store::Attributes,
    ) -> Result<object_store::Result<(object_store::PutResult, u64)>> {
        let options = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut upload = match self.store.put_multipart_opts(path, options).await {
            Ok(upload) => upload,
            Err(e) => return Ok(Err(e)),
        };
        let mut chunks = body.into_stream();
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut part = bytes::BytesMut::new();
        let mut size = 0u64;
        let mut failed = None;
        loop {
            let chunk = match chunks.try_next().await {
                Ok(chunk) => chunk,
                Err(e) => {
                    failed = Some(e);
                    None
                }
            };
            if let Some(chunk) = &chunk {
                size += chunk.len() as u64;
                part.extend_from_slice(chunk);
            }
            let last = chunk.is_none();
            while part.len() >= PART_BYTES || (last && !part.is_empty() && failed.is_none()) {
                let take = part.len().min(PART_BYTES);
                let bytes = part.split_to(take).freeze();
                in_flight.push_back(upload.put_part(PutPayload::from(bytes)));
                while in_flight.len() >= PARTS_IN_FLIGHT {
                    if let Some(Err(e)) = in_flight.next().await {
                        let _ = upload.abort().await;
                        return Ok(Err(e));
                    }
                }
            }
            if last {
                break;
            }
        }
        if let Some(e) = failed {
            let _ = upload.abort().await;
            return Err(e);
        }
        while let Some(done) = in_flight.next().await {
            if let Err(e) = done {
                let _ = upload.abort().await;
                return Ok(Err(e));
            }
        }
        Ok(upload.complete().await.map(|result| (result, size)))
    }

    fn error(&self, err: object_store::Error, key: &Key) -> Error {
        from_store_error(err, key, &self.name)
    }

    /// The store's options for our conditions.
    fn store_options(&self, options: &GetOptions) -> StoreGetOptions {
        // RFC 9110 section 13.2.2: a time condition only without its ETag
        // counterpart (Azurite, for one, evaluates both).
        StoreGetOptions {
            if_match: options.if_match.as_ref().map(|e| self.store_etag(e)),
            if_none_match: options.if_none_match.as_ref().map(|e| self.store_etag(e)),
            if_modified_since: options
                .if_modified_since
                .filter(|_| options.if_none_match.is_none())
                .map(end_of_second),
            if_unmodified_since: options
                .if_unmodified_since
                .filter(|_| options.if_match.is_none())
                .map(end_of_second),
            range: options.range.as_ref().map(to_get_range),
            ..Default::default()
        }
    }

    /// A failed read's error: a `Precondition` becomes the failed condition
    /// (re-checked on the current version when the store cannot say which).
    async fn read_error(&self, err: object_store::Error, key: &Key, options: &GetOptions) -> Error {
        match err {
            object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
                let conditions = GetOptions {
                    range: None,
                    ..options.clone()
                };
                match self.head(key).await {
                    Ok(meta) => match conditions.check(key, &meta) {
                        Err(e) => e,
                        // Changed back in between: report what the store said.
                        Ok(()) => self.error(err, key),
                    },
                    Err(e) => e,
                }
            }
            other => self.error(other, key),
        }
    }
}

impl<O: ?Sized> fmt::Debug for ObjectStoreBackend<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<O: ObjectStore + ?Sized> Backend for ObjectStoreBackend<O> {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let mode = match &options.mode {
            PutMode::Overwrite => StorePutMode::Overwrite,
            _ if !self.capabilities.conditional_put => {
                // LocalFileSystem has `Create` but no compare-and-swap: the
                // contract's conditional put is both or neither.
                return Err(storage_core::raw::unsupported(self, "conditional put"));
            }
            PutMode::IfNotExists => StorePutMode::Create,
            PutMode::IfMatch(etag) => StorePutMode::Update(UpdateVersion {
                e_tag: Some(self.store_etag(etag)),
                version: None,
            }),
        };
        let path = store_path(key);
        let attributes = attributes(options.content_type.as_ref(), &options.metadata);
        let streamed = matches!(mode, StorePutMode::Overwrite)
            && body.len().is_none_or(|len| len > STREAM_ABOVE);
        let put = if streamed {
            self.put_streamed(&path, body, attributes).await?
        } else {
            let data = body.into_bytes().await?;
            let size = data.len() as u64;
            let put = StorePutOptions {
                mode,
                attributes,
                ..Default::default()
            };
            self.store
                .put_opts(&path, PutPayload::from(data), put)
                .await
                .map(|result| (result, size))
        };
        match put {
            Ok((result, size)) => {
                let etag = self.etag_of(result.e_tag.as_deref(), key)?;
                // object_store's put result has no time: read it back.
                let last_modified = match self.store.head(&path).await {
                    Ok(meta) if meta.e_tag.as_deref().map(ETag::new) == Some(etag.clone()) => {
                        meta.last_modified.into()
                    }
                    _ => std::time::SystemTime::now(),
                };
                Ok(ObjectMeta {
                    key: key.clone(),
                    size,
                    etag,
                    last_modified,
                    content_type: options.content_type,
                    metadata: options.metadata,
                    sha256: None,
                })
            }
            Err(object_store::Error::Precondition { .. }) => match options.mode {
                PutMode::IfMatch(expected) => Err(Error::PreconditionFailed {
                    key: key.to_string(),
                    expected,
                    actual: None,
                }),
                _ => Err(Error::AlreadyExists {
                    key: key.to_string(),
                }),
            },
            // An update of a missing object.
            Err(object_store::Error::NotFound { .. })
                if matches!(options.mode, PutMode::IfMatch(_)) =>
            {
                let PutMode::IfMatch(expected) = options.mode else {
                    unreachable!("matched above")
                };
                Err(Error::PreconditionFailed {
                    key: key.to_string(),
                    expected,
                    actual: None,
                })
            }
            Err(e) => Err(self.error(e, key)),
        }
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let path = store_path(key);
        // Empty ranges have no HTTP form; the contract calls them invalid.
        if let Some(range) = options.range.filter(|r| match *r {
            storage_core::ByteRange::Bounded { start, end } => start >= end,
            storage_core::ByteRange::Suffix { len } => len == 0,
            storage_core::ByteRange::From { .. } => false,
        }) {
            let size = self.head_if(key, &options).await?.size;
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range: range.to_string(),
                size,
            });
        }
        let result = match self
            .store
            .get_opts(&path, self.store_options(&options))
            .await
        {
            Ok(result) => result,
            Err(e)
                if options.range.is_some()
                    && !matches!(
                        e,
                        object_store::Error::NotFound { .. }
                            | object_store::Error::Precondition { .. }
                            | object_store::Error::NotModified { .. }
                    ) =>
            {
                // A range the store refused: the contract's rules decide.
                let meta = self.head_if(key, &options).await?;
                return Err(match options.range.map(|r| r.resolve(key, meta.size)) {
                    Some(Err(invalid)) => invalid,
                    _ => self.error(e, key),
                });
            }
            Err(e) => return Err(self.read_error(e, key, &options).await),
        };
        let meta = self.meta_of(key, &result.meta, Some(&result.attributes))?;
        options.check(key, &meta)?;
        let range = result.range.clone();
        if let Some(requested) = &options.range {
            let resolved = requested.resolve(key, meta.size)?;
            if resolved != range {
                return Err(Error::Backend {
                    transient: false,
                    message: format!(
                        "{}: asked for {requested} of {key}, the store served {}..{}",
                        self.name, range.start, range.end
                    ),
                    source: None,
                });
            }
        }
        let name = self.name.clone();
        let owned = key.clone();
        let body = result
            .into_stream()
            .map_err(move |e| from_store_error(e, &owned, &name))
            .boxed();
        Ok(GetResult::new(meta, range, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.head_if(key, &GetOptions::default()).await
    }

    async fn head_if(&self, key: &Key, options: &GetOptions) -> Result<ObjectMeta> {
        let path = store_path(key);
        let store_options = StoreGetOptions {
            head: true,
            range: None,
            ..self.store_options(options)
        };
        match self.store.get_opts(&path, store_options).await {
            Ok(result) => {
                let meta = self.meta_of(key, &result.meta, Some(&result.attributes))?;
                options.check(key, &meta)?;
                Ok(meta)
            }
            Err(
                e @ (object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. }),
            ) => {
                // Read the metadata unconditionally for the verdict.
                match self
                    .store
                    .get_opts(
                        &path,
                        StoreGetOptions {
                            head: true,
                            ..Default::default()
                        },
                    )
                    .await
                {
                    Ok(result) => {
                        let meta = self.meta_of(key, &result.meta, Some(&result.attributes))?;
                        options.check(key, &meta)?;
                        Err(self.error(e, key))
                    }
                    Err(other) => Err(self.error(other, key)),
                }
            }
            Err(e) => Err(self.error(e, key)),
        }
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        if options.if_match.is_some() {
            return Err(storage_core::raw::unsupported(self, "conditional delete"));
        }
        match self.store.delete(&store_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(e, key)),
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        // The directory holding the prefix: object_store lists whole
        // segments.
        let directory = options.prefix.rfind('/').map(|end| {
            let dir = &options.prefix[..end];
            Path::parse(dir).unwrap_or_else(|_| Path::from(dir))
        });
        let mut objects = Vec::new();
        let mut listing = self.store.list(directory.as_ref());
        while let Some(meta) = listing.try_next().await.map_err(|e| Error::Backend {
            transient: false,
            message: format!("{}: listing {:?}: {e}", self.name, options.prefix),
            source: Some(Box::new(e)),
        })? {
            let name = meta.location.as_ref();
            if !name.starts_with(options.prefix.as_str()) {
                continue;
            }
            // A name that is not a valid key cannot be shown as one.
            let Ok(key) = storage_core::raw::stored_key(name) else {
                continue;
            };
            let ours = self.meta_of(&key, &meta, None)?;
            objects.push(ours);
        }
        objects.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        page_from_sorted(objects, options)
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        let (source, destination) = (store_path(from), store_path(to));
        let copied = match mode {
            PutMode::Overwrite => self.store.copy(&source, &destination).await,
            PutMode::IfNotExists if self.capabilities.conditional_put => {
                self.store.copy_if_not_exists(&source, &destination).await
            }
            _ => return storage_core::raw::copy_through_client(self, from, to, mode).await,
        };
        match copied {
            Ok(()) => self.head(to).await,
            // AmazonS3 has no copy-if-not-exists without a configured
            // mechanism: read and write through the client, `Create` put.
            Err(object_store::Error::NotSupported { .. }) if mode == PutMode::IfNotExists => {
                storage_core::raw::copy_through_client(self, from, to, mode).await
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound {
                key: from.to_string(),
            }),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::AlreadyExists {
                key: to.to_string(),
            }),
            Err(e) => Err(self.error(e, to)),
        }
    }
}
