//! `object_store` interop for [`storage_core`]: [`StorageAdapter`] serves
//! any [`Backend`] as an [`object_store::ObjectStore`] (object_store 0.14).
//!
//! Work in progress (issue 16): multipart uploads are held in memory until
//! `complete`; conditional reads beyond `if_match` are evaluated here with
//! `GetOptions::check_preconditions` after a `head`.
#![warn(missing_docs)]

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyMode, CopyOptions, GetOptions, GetRange, GetResult,
    GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use storage_core::{Backend, Body, ByteRange, DeleteOptions, ETag, Error, Key, ListOptions};

/// The store's name in `object_store` errors.
const STORE: &str = "StorageAdapter";

/// Any [`Backend`] as an [`ObjectStore`].
///
/// - Paths are keys (`Path::parse` of the key; a path that is not a valid
///   key is `InvalidPath`).
/// - `PutMode::Create` and `Update` are the backend's conditional puts;
///   `Update` of a missing key is `Precondition`, as object_store requires.
/// - Content type and `Metadata` attributes are stored; other attributes
///   are `NotImplemented`.
/// - Versions are not supported (`version` is always `None`).
pub struct StorageAdapter<B: ?Sized> {
    inner: Arc<B>,
    /// The uploads of [`MultipartStore`](object_store::multipart::MultipartStore):
    /// attributes and parts by index, held until complete or abort.
    uploads: Arc<Mutex<Uploads>>,
}

/// Uploads in progress, by id.
#[derive(Debug, Default)]
struct Uploads {
    next: u64,
    open: std::collections::HashMap<String, (Attributes, std::collections::BTreeMap<usize, Bytes>)>,
}

impl<B: Backend + ?Sized> StorageAdapter<B> {
    /// Serves `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        StorageAdapter {
            inner: backend,
            uploads: Arc::default(),
        }
    }
}

impl<B: ?Sized> fmt::Debug for StorageAdapter<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageAdapter")
    }
}

impl<B: ?Sized> fmt::Display for StorageAdapter<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageAdapter")
    }
}

/// The key of `path`.
fn key_of(path: &Path) -> object_store::Result<Key> {
    Key::new(path.as_ref()).map_err(|e| object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    })
}

/// The path of `key`.
fn path_of(key: &Key) -> Path {
    Path::parse(key.as_str()).unwrap_or_else(|_| Path::from(key.as_str()))
}

/// Our error as object_store's.
fn convert(err: Error, path: &str) -> object_store::Error {
    match err {
        Error::NotFound { .. } => object_store::Error::NotFound {
            path: path.to_owned(),
            source: Box::new(err),
        },
        Error::AlreadyExists { .. } => object_store::Error::AlreadyExists {
            path: path.to_owned(),
            source: Box::new(err),
        },
        Error::PreconditionFailed { .. } => object_store::Error::Precondition {
            path: path.to_owned(),
            source: Box::new(err),
        },
        Error::Unsupported { .. } => object_store::Error::NotSupported {
            source: Box::new(err),
        },
        Error::PermissionDenied { .. } => object_store::Error::PermissionDenied {
            path: path.to_owned(),
            source: Box::new(err),
        },
        Error::Unauthenticated { .. } => object_store::Error::Unauthenticated {
            path: path.to_owned(),
            source: Box::new(err),
        },
        other => object_store::Error::Generic {
            store: STORE,
            source: Box::new(other),
        },
    }
}

fn to_meta(meta: &storage_core::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        location: path_of(&meta.key),
        last_modified: chrono::DateTime::<chrono::Utc>::from(meta.last_modified),
        size: meta.size,
        e_tag: Some(meta.etag.as_str().to_owned()),
        version: None,
    }
}

fn to_attributes(meta: &storage_core::ObjectMeta) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(content_type) = &meta.content_type {
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type.clone()),
        );
    }
    for (name, value) in &meta.metadata {
        attributes.insert(
            Attribute::Metadata(name.clone().into()),
            AttributeValue::from(value.clone()),
        );
    }
    attributes
}

/// Our put options from object_store's attributes.
fn put_options(
    attributes: &Attributes,
    path: &str,
) -> object_store::Result<storage_core::PutOptions> {
    let mut options = storage_core::PutOptions::default();
    for (attribute, value) in attributes {
        match attribute {
            Attribute::ContentType => options.content_type = Some(value.as_ref().to_owned()),
            Attribute::Metadata(name) => {
                options
                    .metadata
                    .insert(name.as_ref().to_owned(), value.as_ref().to_owned());
            }
            _ => {
                return Err(object_store::Error::NotImplemented {
                    operation: format!("attribute {attribute:?} on {path}"),
                    implementer: STORE.to_owned(),
                });
            }
        }
    }
    Ok(options)
}

fn to_range(range: &GetRange) -> ByteRange {
    match range {
        GetRange::Bounded(r) => ByteRange::Bounded {
            start: r.start,
            end: r.end,
        },
        GetRange::Offset(start) => ByteRange::From { start: *start },
        GetRange::Suffix(len) => ByteRange::Suffix { len: *len },
    }
}

impl<B: Backend + ?Sized> StorageAdapter<B> {
    /// One read of `location`: `head`, the preconditions checked against
    /// it, then a `get` pinned to its ETag.
    async fn get_version(
        &self,
        location: &Path,
        options: &GetOptions,
    ) -> object_store::Result<GetResult> {
        let key = key_of(location)?;

        let path = location.as_ref();
        let head = self.inner.head(&key).await.map_err(|e| convert(e, path))?;
        let meta = to_meta(&head);
        options.check_preconditions(&meta)?;
        let attributes = to_attributes(&head);
        if options.head {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes,
                extensions: Default::default(),
            });
        }
        let range = match &options.range {
            Some(range) => {
                Some(
                    range
                        .as_range(meta.size)
                        .map_err(|e| object_store::Error::Generic {
                            store: STORE,
                            source: Box::new(e),
                        })?,
                )
            }
            None => None,
        };
        let ours = storage_core::GetOptions {
            range: match (&options.range, &range) {
                (Some(_), Some(r)) if r.start == r.end => None,
                (Some(requested), _) => Some(to_range(requested)),
                _ => None,
            },
            if_match: Some(head.etag.clone()),
        };
        if let Some(r) = &range
            && r.start == r.end
        {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: r.clone(),
                meta,
                attributes,
                extensions: Default::default(),
            });
        }
        let got = self
            .inner
            .get(&key, ours)
            .await
            .map_err(|e| convert(e, path))?;
        let owned = path.to_owned();
        let body = got.body.map_err(move |e| convert(e, &owned)).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            range: got.range,
            meta,
            attributes,
            extensions: Default::default(),
        })
    }

    async fn put_with(
        &self,
        location: &Path,
        payload: PutPayload,
        mode: PutMode,
        attributes: &Attributes,
    ) -> object_store::Result<PutResult> {
        let key = key_of(location)?;
        let mut options = put_options(attributes, location.as_ref())?;
        options.mode = match &mode {
            PutMode::Overwrite => storage_core::PutMode::Overwrite,
            PutMode::Create => storage_core::PutMode::IfNotExists,
            PutMode::Update(version) => {
                let etag = version
                    .e_tag
                    .clone()
                    .ok_or_else(|| object_store::Error::Generic {
                        store: STORE,
                        source: "an update needs an ETag".into(),
                    })?;
                storage_core::PutMode::IfMatch(ETag::new(etag))
            }
        };
        let bytes: Bytes = payload.into();
        let meta = match self.inner.put(&key, Body::from(bytes), options).await {
            Ok(meta) => meta,
            // An update of a missing key is a failed precondition in
            // object_store.
            Err(Error::NotFound { key }) if matches!(mode, PutMode::Update(_)) => {
                return Err(object_store::Error::Precondition {
                    path: key,
                    source: "the object does not exist".into(),
                });
            }
            Err(e) => return Err(convert(e, location.as_ref())),
        };
        Ok(PutResult {
            e_tag: Some(meta.etag.as_str().to_owned()),
            version: None,
            extensions: Default::default(),
        })
    }
}

#[async_trait]
impl<B: Backend + ?Sized + 'static> ObjectStore for StorageAdapter<B> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.put_with(location, payload, opts.mode, &opts.attributes)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        put_options(&opts.attributes, location.as_ref())?;
        Ok(Box::new(Upload {
            adapter: StorageAdapter::new(Arc::clone(&self.inner)),
            location: location.clone(),
            attributes: opts.attributes,
            parts: Arc::new(Mutex::new(Vec::new())),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        // The read is pinned to the version `head` saw; a write in between
        // fails that pin, and the read starts over on the new version.
        let mut attempts = 0;
        loop {
            match self.get_version(location, &options).await {
                Err(object_store::Error::Precondition { .. })
                    if attempts < 16
                        && options.if_match.is_none()
                        && options.if_unmodified_since.is_none() =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                async move {
                    let location = location?;
                    let key = key_of(&location)?;
                    inner
                        .delete(&key, DeleteOptions::default())
                        .await
                        .map_err(|e| convert(e, location.as_ref()))?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = dir_prefix(prefix);
        stream::try_unfold(Some(None::<String>), move |state| {
            let (inner, prefix) = (Arc::clone(&inner), prefix.clone());
            async move {
                let Some(continuation) = state else {
                    return Ok::<_, object_store::Error>(None);
                };
                let page = inner
                    .list(&ListOptions {
                        continuation,
                        ..ListOptions::prefix(prefix.clone())
                    })
                    .await
                    .map_err(|e| convert(e, &prefix))?;
                let next = page.continuation.clone().map(Some);
                let metas: Vec<object_store::Result<ObjectMeta>> =
                    page.objects.iter().map(|m| Ok(to_meta(m))).collect();
                Ok(Some((stream::iter(metas), next)))
            }
        })
        .try_flatten()
        .boxed()
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
                .map_err(|e| convert(e, &prefix))?;
            result.objects.extend(page.objects.iter().map(to_meta));
            result.common_prefixes.extend(
                page.common_prefixes
                    .iter()
                    .filter_map(|p| Path::parse(p.trim_end_matches('/')).ok()),
            );
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => break,
            }
        }
        result.common_prefixes.sort();
        result.common_prefixes.dedup();
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let (source, destination) = (key_of(from)?, key_of(to)?);
        // A missing source is NotFound whatever the destination.
        self.inner
            .head(&source)
            .await
            .map_err(|e| convert(e, from.as_ref()))?;
        let mode = match options.mode {
            CopyMode::Overwrite => storage_core::PutMode::Overwrite,
            CopyMode::Create => storage_core::PutMode::IfNotExists,
        };
        self.inner
            .copy(&source, &destination, mode)
            .await
            .map(|_| ())
            .map_err(|e| convert(e, to.as_ref()))
    }
}

#[async_trait]
impl<B: Backend + ?Sized + 'static> object_store::list::PaginatedListStore for StorageAdapter<B> {
    /// One page of the backend's listing: `prefix` is a raw string prefix,
    /// `offset` the key after which the page starts, a `/` delimiter the
    /// backend's delimiter listing (another delimiter is `NotImplemented`),
    /// `page_token` the backend's continuation.
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: object_store::list::PaginatedListOptions,
    ) -> object_store::Result<object_store::list::PaginatedListResult> {
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
                page_size: opts.max_keys,
                continuation: opts.page_token.clone(),
                ..ListOptions::prefix(prefix.clone())
            })
            .await
            .map_err(|e| convert(e, &prefix))?;
        Ok(object_store::list::PaginatedListResult {
            result: ListResult {
                common_prefixes: page
                    .common_prefixes
                    .iter()
                    .filter_map(|p| Path::parse(p.trim_end_matches('/')).ok())
                    .collect(),
                objects: page.objects.iter().map(to_meta).collect(),
                extensions: Default::default(),
            },
            page_token: page.continuation,
        })
    }
}

#[async_trait]
impl<B: Backend + ?Sized + 'static> object_store::multipart::MultipartStore for StorageAdapter<B> {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<String> {
        self.create_multipart_opts(path, PutMultipartOptions::default())
            .await
    }

    /// Parts are held in memory until `complete_multipart` (work in
    /// progress).
    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<String> {
        key_of(path)?;
        put_options(&opts.attributes, path.as_ref())?;
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        uploads.next += 1;
        let id = format!("{}", uploads.next);
        uploads
            .open
            .insert(id.clone(), (opts.attributes, Default::default()));
        Ok(id)
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &String,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<object_store::multipart::PartId> {
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, parts) = uploads
            .open
            .get_mut(id)
            .ok_or_else(|| no_upload(path, id))?;
        parts.insert(part_idx, data.into());
        Ok(object_store::multipart::PartId {
            content_id: part_idx.to_string(),
        })
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &String,
        parts: Vec<object_store::multipart::PartId>,
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
        self.put_with(
            path,
            PutPayload::from_iter(chosen),
            PutMode::Overwrite,
            &attributes,
        )
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

/// A listing prefix: a path's segments, then `/` (object_store matches
/// whole segments).
fn dir_prefix(prefix: Option<&Path>) -> String {
    match prefix.map(|p| p.as_ref()).filter(|p| !p.is_empty()) {
        Some(p) => format!("{p}/"),
        None => String::new(),
    }
}

/// A multipart upload held in memory until `complete` (work in progress:
/// bounded memory comes with the upload engine).
#[derive(Debug)]
struct Upload<B: ?Sized> {
    adapter: StorageAdapter<B>,
    location: Path,
    attributes: Attributes,
    /// The parts, in the order `put_part` was called.
    parts: Arc<Mutex<Vec<Bytes>>>,
}

#[async_trait]
impl<B: Backend + ?Sized + 'static> MultipartUpload for Upload<B> {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let bytes: Bytes = data.into();
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(bytes);
        Box::pin(async { Ok(()) })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts = std::mem::take(&mut *self.parts.lock().unwrap_or_else(PoisonError::into_inner));
        let payload = PutPayload::from_iter(parts);
        self.adapter
            .put_with(
                &self.location,
                payload,
                PutMode::Overwrite,
                &self.attributes,
            )
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }
}
