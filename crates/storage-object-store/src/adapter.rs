//! [`StorageAdapter`]: any [`Backend`] as an [`ObjectStore`], with
//! [`PaginatedListStore`] and [`MultipartStore`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attributes, CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult,
};
use storage_core::{Backend, Body, ETag, Error, Key, ListOptions};

use crate::convert::{
    STORE, attributes, key_of, one_etag, put_options, system_time, to_byte_range, to_object_meta,
    to_store_error,
};
use crate::upload::StreamingUpload;

/// Most keys [`ObjectStore::delete_stream`] hands to one
/// [`Backend::delete_many`] call (S3's `DeleteObjects` ceiling).
const DELETE_BATCH: usize = 1000;

/// Any [`Backend`] as an [`ObjectStore`] (object_store 0.14), so that
/// DataFusion, Polars, delta-rs and the rest read and write through our
/// backends and layers (`Retry`, `Encrypted`, `Prefixed`).
///
/// What each operation becomes:
/// - paths are keys: a path that is not a valid [`Key`] is `Generic` with
///   [`Error::InvalidKey`] as the source (object_store's `InvalidPath`
///   carries no reason);
/// - `put_opts`: [`Backend::put`]; `PutMode::Create` is
///   [`PutMode::IfNotExists`](storage_core::PutMode::IfNotExists) and
///   `Update` a compare-and-swap on its ETag (an update of a missing object
///   is `Precondition`, as object_store requires). The content type and
///   `Metadata` attributes are stored; other attributes and tags are
///   `NotImplemented`, not dropped;
/// - `get_opts`: [`Backend::get`] (or [`Backend::head_if`] for `head`) with
///   the four conditions passed through, native where the backend has
///   them. `*` as `if_match` means "exists"; `*` as `if_none_match` is
///   `NotModified` for any existing object; lists of ETags are
///   `NotImplemented`, and so is `version` (the contract has no versions);
/// - `get_ranges`: [`Backend::get_ranges`] (coalesced, one version), with
///   object_store's range rules: an empty range or one starting at or past
///   the size is an error, an end past the size is clamped;
/// - `delete_stream`: [`Backend::delete_many`], 1000 keys per call;
/// - `list`, `list_with_offset`, `list_with_delimiter` and
///   [`PaginatedListStore::list_paginated`]: [`Backend::list`] pages;
/// - `copy_opts`: [`Backend::copy`] (`CopyMode::Create` is
///   [`PutMode::IfNotExists`](storage_core::PutMode::IfNotExists));
/// - `put_multipart_opts`: one streaming [`Backend::put`], fed part by part
///   as a tokio task (so it needs a tokio runtime): parts become the body
///   in the order `put_part` was called, each part's future resolves when
///   the backend has taken it, so memory is bounded by the parts in
///   flight; nothing is visible until `complete`, and `abort` or a drop
///   fails the put, which writes nothing; [`MultipartStore`] holds its parts in memory until
///   `complete_multipart`, since its parts arrive in any order.
///
/// Errors map to object_store's variants: `NotFound`, `AlreadyExists`,
/// `Precondition` (a failed `if_match`, `if_unmodified_since` or `Update`),
/// `NotModified`, `NotSupported` (a missing capability), `PermissionDenied`,
/// `Unauthenticated`; the rest are `Generic` with our
/// [`Error`] as the source.
pub struct StorageAdapter<B: ?Sized> {
    inner: Arc<B>,
    /// The uploads of [`MultipartStore`], by id.
    uploads: Arc<Mutex<Uploads>>,
}

/// Uploads of [`MultipartStore`] in progress: their attributes and parts by
/// index.
#[derive(Debug, Default)]
struct Uploads {
    next: u64,
    open: HashMap<String, (Attributes, BTreeMap<usize, Bytes>)>,
}

impl<B: Backend + ?Sized> StorageAdapter<B> {
    /// Serves `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        StorageAdapter {
            inner: backend,
            uploads: Arc::default(),
        }
    }

    /// The backend served.
    pub fn backend(&self) -> &Arc<B> {
        &self.inner
    }
}

impl<B: Backend + ?Sized> fmt::Debug for StorageAdapter<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageAdapter")
            .field("backend", &self.inner.name())
            .finish_non_exhaustive()
    }
}

impl<B: Backend + ?Sized> fmt::Display for StorageAdapter<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageAdapter({})", self.inner.name())
    }
}

/// Our conditions (no range) for object_store's options.
fn conditions(options: &GetOptions) -> object_store::Result<storage_core::GetOptions> {
    if options.version.is_some() {
        return Err(object_store::Error::NotImplemented {
            operation: "reading a version other than the current one".to_owned(),
            implementer: STORE.to_owned(),
        });
    }
    Ok(storage_core::GetOptions {
        range: None,
        if_match: match &options.if_match {
            Some(value) => one_etag(value, "if_match")?,
            None => None,
        },
        if_none_match: match &options.if_none_match {
            Some(value) => one_etag(value, "if_none_match")?,
            None => None,
        },
        if_modified_since: options.if_modified_since.map(system_time),
        if_unmodified_since: options.if_unmodified_since.map(system_time),
    })
}

/// A result without a body: for `head` and empty ranges.
fn bodiless(meta: &storage_core::ObjectMeta, range: Range<u64>) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(stream::empty().boxed()),
        meta: to_object_meta(meta),
        range,
        attributes: attributes(meta.content_type.as_ref(), &meta.metadata),
        extensions: Default::default(),
    }
}

impl<B: Backend + ?Sized> StorageAdapter<B> {
    async fn put_with(
        &self,
        location: &Path,
        body: Body,
        mode: PutMode,
        attributes: &Attributes,
    ) -> object_store::Result<PutResult> {
        let key = key_of(location)?;
        let mut options = put_options(attributes, location.as_ref())?;
        options.mode = put_mode(&mode)?;
        let meta = match self.inner.put(&key, body, options).await {
            Ok(meta) => meta,
            // An update of a missing key is a failed precondition in
            // object_store.
            Err(Error::NotFound { .. }) if matches!(mode, PutMode::Update(_)) => {
                return Err(object_store::Error::Precondition {
                    path: location.to_string(),
                    source: "the object to update does not exist".into(),
                });
            }
            Err(e) => return Err(to_store_error(e, location.as_ref())),
        };
        Ok(PutResult {
            e_tag: Some(meta.etag.as_str().to_owned()),
            version: None,
            extensions: Default::default(),
        })
    }

    /// One read; `ours` are the caller's conditions in our terms.
    async fn get_with(
        &self,
        location: &Path,
        options: &GetOptions,
        mut ours: storage_core::GetOptions,
    ) -> Result<GetResult, Error> {
        let key = Key::new(location.as_ref())?;
        // `If-None-Match: *` matches any existing object, after `If-Match`
        // (RFC 9110 section 13.2.2 order).
        if options.if_none_match.as_deref().map(str::trim) == Some("*") {
            let meta = self.inner.head_if(&key, &ours).await?;
            return Err(Error::NotModified {
                key: key.to_string(),
                etag: Some(meta.etag),
            });
        }
        if options.head {
            let meta = self.inner.head_if(&key, &ours).await?;
            return Ok(bodiless(&meta, 0..meta.size));
        }
        // object_store's range rules are ours: an empty range and a start
        // at or past the size are errors, an end past the size is clamped.
        ours.range = options.range.as_ref().map(to_byte_range);
        let got = self.inner.get(&key, ours).await?;
        let (meta, range) = (got.meta.clone(), got.range.clone());
        let owned = location.to_string();
        let body = got.body.map_err(move |e| to_store_error(e, &owned)).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta: to_object_meta(&meta),
            range,
            attributes: attributes(meta.content_type.as_ref(), &meta.metadata),
            extensions: Default::default(),
        })
    }
}

/// Object tags are `NotImplemented`: the contract does not store them, and
/// dropping them silently would lose what the caller asked for.
fn refuse_tags(tags: &object_store::TagSet, location: &Path) -> object_store::Result<()> {
    if tags.encoded().is_empty() {
        return Ok(());
    }
    Err(object_store::Error::NotImplemented {
        operation: format!("object tags on {location}"),
        implementer: STORE.to_owned(),
    })
}

/// Our put mode for object_store's.
fn put_mode(mode: &PutMode) -> object_store::Result<storage_core::PutMode> {
    Ok(match mode {
        PutMode::Overwrite => storage_core::PutMode::Overwrite,
        PutMode::Create => storage_core::PutMode::IfNotExists,
        PutMode::Update(version) => {
            let etag = version
                .e_tag
                .as_deref()
                .ok_or_else(|| object_store::Error::Generic {
                    store: STORE,
                    source: "PutMode::Update needs an ETag: the contract has no versions".into(),
                })?;
            storage_core::PutMode::IfMatch(ETag::new(etag))
        }
    })
}

#[async_trait]
impl<B: Backend + ?Sized> ObjectStore for StorageAdapter<B> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        refuse_tags(&opts.tags, location)?;
        let body = Body::chunks(payload.into_iter().collect());
        self.put_with(location, body, opts.mode, &opts.attributes)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let key = key_of(location)?;
        refuse_tags(&opts.tags, location)?;
        let options = put_options(&opts.attributes, location.as_ref())?;
        Ok(Box::new(StreamingUpload::start(
            Arc::clone(&self.inner),
            key,
            options,
        )))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        // Lists of ETags and versions are NotImplemented, before any I/O.
        let ours = conditions(&options)?;
        self.get_with(location, &options, ours)
            .await
            .map_err(|e| to_store_error(e, location.as_ref()))
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let key = key_of(location)?;
        let path = location.as_ref();
        // object_store's rules (`GetRange::as_range`): an empty range or one
        // starting at or past the size is an error, an end past the size is
        // clamped.
        if let Some(empty) = ranges.iter().find(|r| r.start >= r.end) {
            return Err(object_store::Error::Generic {
                store: STORE,
                source: format!("range {}..{} of {path} is empty", empty.start, empty.end).into(),
            });
        }
        match self.inner.get_ranges(&key, ranges).await {
            Err(Error::InvalidRange { size, .. }) => {
                if let Some(late) = ranges.iter().find(|r| r.start >= size) {
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source: format!(
                            "range {}..{} of {path} starts at or past its size, {size} bytes",
                            late.start, late.end
                        )
                        .into(),
                    });
                }
                let clamped: Vec<Range<u64>> =
                    ranges.iter().map(|r| r.start..r.end.min(size)).collect();
                self.inner
                    .get_ranges(&key, &clamped)
                    .await
                    .map_err(|e| to_store_error(e, path))
            }
            other => other.map_err(|e| to_store_error(e, path)),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        locations
            .ready_chunks(DELETE_BATCH)
            .then(move |batch| delete_batch(Arc::clone(&inner), batch))
            .flat_map(stream::iter)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_from(dir_prefix(prefix), None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_from(dir_prefix(prefix), Some(offset.to_string()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix = dir_prefix(prefix);
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let mut continuation = None;
        loop {
            let page = self
                .inner
                .list(&ListOptions {
                    delimiter: true,
                    continuation,
                    ..ListOptions::prefix(prefix.clone())
                })
                .await
                .map_err(|e| to_store_error(e, &prefix))?;
            result
                .objects
                .extend(page.objects.iter().map(to_object_meta));
            result
                .common_prefixes
                .extend(common_prefixes(&page.common_prefixes));
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => break,
            }
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let (source, destination) = (key_of(from)?, key_of(to)?);
        let mode = match options.mode {
            CopyMode::Overwrite => storage_core::PutMode::Overwrite,
            CopyMode::Create => storage_core::PutMode::IfNotExists,
        };
        match self.inner.copy(&source, &destination, mode).await {
            Ok(_) => Ok(()),
            Err(e @ Error::NotFound { .. }) => Err(to_store_error(e, from.as_ref())),
            Err(e) => Err(to_store_error(e, to.as_ref())),
        }
    }
}

impl<B: Backend + ?Sized> StorageAdapter<B> {
    /// Every object under the raw `prefix`, after `offset`, page by page.
    fn list_from(
        &self,
        prefix: String,
        offset: Option<String>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        stream::try_unfold(Some(None::<String>), move |state| {
            let (inner, prefix, offset) = (Arc::clone(&inner), prefix.clone(), offset.clone());
            async move {
                let Some(continuation) = state else {
                    return Ok::<_, object_store::Error>(None);
                };
                let page = inner
                    .list(&ListOptions {
                        continuation,
                        start_after: offset,
                        ..ListOptions::prefix(prefix.clone())
                    })
                    .await
                    .map_err(|e| to_store_error(e, &prefix))?;
                let next = page.continuation.clone().map(Some);
                let metas: Vec<object_store::Result<ObjectMeta>> =
                    page.objects.iter().map(|m| Ok(to_object_meta(m))).collect();
                Ok(Some((stream::iter(metas), next)))
            }
        })
        .try_flatten()
        .boxed()
    }
}

/// Deletes one batch of `delete_stream` with one [`Backend::delete_many`]
/// call; results in the batch's order.
async fn delete_batch<B: Backend + ?Sized>(
    inner: Arc<B>,
    batch: Vec<object_store::Result<Path>>,
) -> Vec<object_store::Result<Path>> {
    // Each entry: the path and, when it is a valid key, its index in `keys`.
    let mut keys = Vec::with_capacity(batch.len());
    let mut entries = Vec::with_capacity(batch.len());
    for item in batch {
        entries.push(item.and_then(|path| {
            let key = key_of(&path)?;
            keys.push(key);
            Ok((path, keys.len() - 1))
        }));
    }
    match inner.delete_many(&keys).await {
        Ok(results) => {
            let mut results: Vec<Option<storage_core::Result<()>>> =
                results.into_iter().map(Some).collect();
            entries
                .into_iter()
                .map(|entry| {
                    let (path, index) = entry?;
                    match results.get_mut(index).and_then(Option::take) {
                        Some(Ok(())) => Ok(path),
                        Some(Err(e)) => Err(to_store_error(e, path.as_ref())),
                        None => Err(object_store::Error::Generic {
                            store: STORE,
                            source: format!("delete_many gave no result for {path}").into(),
                        }),
                    }
                })
                .collect()
        }
        Err(e) => {
            // Nothing is known of this batch's keys: each gets the error.
            let message = e.to_string();
            entries
                .into_iter()
                .map(|entry| {
                    let (path, _) = entry?;
                    Err(object_store::Error::Generic {
                        store: STORE,
                        source: format!("deleting {path}: {message}").into(),
                    })
                })
                .collect()
        }
    }
}

/// Our common prefixes (`a/b/`) as object_store paths (`a/b`).
fn common_prefixes(prefixes: &[String]) -> impl Iterator<Item = Path> + '_ {
    prefixes
        .iter()
        .filter_map(|p| Path::parse(p.trim_end_matches('/')).ok())
}

/// A listing prefix: a path's segments, then `/` (object_store matches
/// whole segments).
fn dir_prefix(prefix: Option<&Path>) -> String {
    match prefix.map(|p| p.as_ref()).filter(|p| !p.is_empty()) {
        Some(p) => format!("{p}/"),
        None => String::new(),
    }
}

#[async_trait]
impl<B: Backend + ?Sized> PaginatedListStore for StorageAdapter<B> {
    /// One page of the backend's listing: `prefix` is a raw string prefix,
    /// `offset` the key after which the page starts, a `/` delimiter the
    /// backend's delimiter listing (another delimiter is `NotImplemented`),
    /// `max_keys` the page size (clamped to 1..=1000), `page_token` the backend's
    /// continuation.
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> object_store::Result<PaginatedListResult> {
        let delimiter = match opts.delimiter.as_deref() {
            None => false,
            Some("/") => true,
            Some(other) => {
                return Err(object_store::Error::NotImplemented {
                    operation: format!("listing with delimiter {other:?}"),
                    implementer: STORE.to_owned(),
                });
            }
        };
        let prefix = prefix.unwrap_or_default().to_owned();
        let page = self
            .inner
            .list(&ListOptions {
                delimiter,
                start_after: opts.offset.clone(),
                page_size: opts
                    .max_keys
                    .map(|n| n.clamp(1, storage_core::MAX_PAGE_SIZE)),
                continuation: opts.page_token.clone(),
                ..ListOptions::prefix(prefix.clone())
            })
            .await
            .map_err(|e| to_store_error(e, &prefix))?;
        Ok(PaginatedListResult {
            result: ListResult {
                common_prefixes: common_prefixes(&page.common_prefixes).collect(),
                objects: page.objects.iter().map(to_object_meta).collect(),
                extensions: Default::default(),
            },
            page_token: page.continuation,
        })
    }
}

#[async_trait]
impl<B: Backend + ?Sized> MultipartStore for StorageAdapter<B> {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<String> {
        self.create_multipart_opts(path, PutMultipartOptions::default())
            .await
    }

    /// Parts are held in memory until `complete_multipart`: they may arrive
    /// in any order, and the contract's put takes one ordered body. For
    /// bounded memory, use [`ObjectStore::put_multipart_opts`].
    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<String> {
        key_of(path)?;
        put_options(&opts.attributes, path.as_ref())?;
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        uploads.next += 1;
        let id = uploads.next.to_string();
        uploads
            .open
            .insert(id.clone(), (opts.attributes, BTreeMap::new()));
        Ok(id)
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &String,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, parts) = uploads
            .open
            .get_mut(id)
            .ok_or_else(|| no_upload(path, id))?;
        parts.insert(part_idx, data.into());
        Ok(PartId {
            content_id: part_idx.to_string(),
        })
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &String,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        let (attributes, mut held) = self
            .uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .remove(id)
            .ok_or_else(|| no_upload(path, id))?;
        let mut chosen = Vec::with_capacity(parts.len());
        for part in parts {
            let bytes = part
                .content_id
                .parse::<usize>()
                .ok()
                .and_then(|index| held.remove(&index))
                .ok_or_else(|| object_store::Error::Generic {
                    store: STORE,
                    source: format!("upload {id} of {path} has no part {}", part.content_id).into(),
                })?;
            chosen.push(bytes);
        }
        self.put_with(path, Body::chunks(chosen), PutMode::Overwrite, &attributes)
            .await
    }

    async fn abort_multipart(&self, path: &Path, id: &String) -> object_store::Result<()> {
        self.uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| no_upload(path, id))
    }
}

/// The error for an upload id this adapter does not hold.
fn no_upload(path: &Path, id: &str) -> object_store::Error {
    object_store::Error::NotFound {
        path: path.to_string(),
        source: format!("no multipart upload {id}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_prefixes_are_whole_segments() {
        assert_eq!(dir_prefix(None), "");
        assert_eq!(dir_prefix(Some(&Path::from("a/b"))), "a/b/");
    }
}
