//! The `Backend` implementation of `GcsBackend`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use gcloud_storage::client::Client;
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::copy::CopyObjectRequest;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::sign::{SignedURLMethod, SignedURLOptions};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};
use storage_core::{
    Backend, Body, ByteRange, ByteStream, Capabilities, DeleteOptions, ETag, Error, GetOptions,
    GetResult, Key, ListOptions, ListPage, Locality, Metadata, ObjectMeta, PresignMethod, PutMode,
    PutOptions, Result,
};
use token_source::TokenSource;

use crate::config::GcsConfig;
use crate::error::{
    Answer, Class, Context, classify, classify_sdk, from_answer, from_sdk, from_transport, missing,
    token_failure,
};
use crate::metadata;

/// Content type stored when a put gives none: GCS always stores one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Longest object name GCS accepts, in bytes of UTF-8.
const GCS_MAX_NAME_BYTES: usize = 1024;

/// Bytes escaped in a path segment of the JSON API: everything but
/// unreserved characters (the object name is one segment, `/` included).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An object store in a Google Cloud Storage bucket (or on
/// fake-gcs-server), over the JSON API.
///
/// - The [`ETag`] of the contract is the object generation, as a decimal
///   string. `IfNotExists` sends `ifGenerationMatch=0`, `IfMatch(g)` sends
///   `ifGenerationMatch=g` (GCS: "Request preconditions"); an ETag that is
///   not a generation matches nothing. Puts below the resumable threshold
///   are multipart uploads (metadata and content in one request), the only
///   upload form whose precondition fake-gcs-server honours.
/// - Larger bodies, and bodies of unknown length past one chunk, are
///   resumable uploads streamed in chunks (two chunks in memory at most),
///   carrying the same precondition; a chunk of unknown outcome is
///   recovered with the session's status query, except on emulators (see
///   [`GcsConfig::upload_status_queries`]). A failed or dropped upload
///   cancels its session.
/// - The SHA-256 of the content is stored as metadata (`storage_sha256`,
///   see [`crate::metadata`]) and checked on full reads
///   ([`Error::ChecksumMismatch`]): multipart uploads send it with the
///   content; resumable uploads, which send their metadata before the
///   content, record it afterwards with a metadata patch under
///   `ifGenerationMatch`. GCS's own CRC32C is sent with multipart uploads
///   (the server verifies it), checked against the server's after a
///   resumable upload (a mismatch deletes the generation the session
///   wrote), and checked on every full read where the server returns it
///   (`x-goog-hash`).
/// - A get is one media download (`alt=media`) whose `x-goog-generation`,
///   `x-goog-hash` and `x-goog-meta-*` headers give the version and
///   metadata of exactly the bytes returned (a download without
///   `x-goog-generation` is an error, never a guess); `if_match` is sent as
///   `ifGenerationMatch` and also checked against `x-goog-generation`.
/// - Conditional deletes send `ifGenerationMatch`. GCS honours it;
///   fake-gcs-server ignores it (a declared limitation of the test server).
///   Against GCS the contract holds by construction: the precondition is in
///   the request and a 412 maps to [`Error::PreconditionFailed`].
/// - `copy` is the server-side `copyTo` with `ifGenerationMatch` on the
///   destination; metadata (and the recorded SHA-256) travel with it.
/// - Listings page by `startOffset` (GCS's is inclusive: the key itself is
///   skipped here): the continuation is the last key or common prefix
///   returned, so a common prefix repeated by the server on a later page is
///   returned once, and a page holds at most `page_size` entries even where
///   the server returns every common prefix on every page
///   (fake-gcs-server). On a truncated answer only entries up to its last
///   object are used (the rest come with the next request), or up to its
///   last common prefix when no object is new: GCS counts prefixes against
///   `maxResults` too, so a page can hold one already-seen object and
///   prefixes. A truncated answer with nothing new by name is followed by
///   its page token (GCS may omit duplicate prefixes after counting them);
///   a repeated token is an error, never a repeated request.
/// - A put without a content type stores [`DEFAULT_CONTENT_TYPE`].
/// - A missing bucket is [`Error::BucketNotFound`] on every operation, never
///   the [`Error::NotFound`] of an object. GCS answers a missing object and
///   a missing bucket alike (404 `notFound`), so a 404 to a request on an
///   object is followed by one bucket GET (`fields=name`): 404 there is
///   `BucketNotFound`, success makes the 404 the object's and is
///   remembered, so later misses cost no second request; a transient
///   failure of the bucket GET is returned as is. A 404 to a listing is the
///   bucket's without asking. The memory is cleared whenever a request
///   finds the bucket missing.
#[derive(Clone)]
pub struct GcsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: GcsConfig,
    client: Client,
    http: reqwest::Client,
    token: Option<Arc<dyn TokenSource>>,
    can_sign: bool,
    /// Whether a bucket GET found the bucket (see [`GcsBackend`]).
    bucket_exists: AtomicBool,
}

impl std::fmt::Debug for GcsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBackend")
            .field("bucket", &self.inner.config.bucket)
            .field("prefix", &self.inner.config.prefix)
            .field("endpoint", &self.inner.config.endpoint)
            .field("can_sign", &self.inner.can_sign)
            .finish_non_exhaustive()
    }
}

/// The generation an ETag names, if it names one.
pub(crate) fn generation(etag: &ETag) -> Option<i64> {
    etag.as_str().parse().ok()
}

/// The `ifGenerationMatch` of a put mode; `Err` for an ETag that names no
/// generation (no object can match it).
pub(crate) fn condition(key: &Key, mode: &PutMode) -> Result<Option<i64>> {
    match mode {
        PutMode::Overwrite => Ok(None),
        PutMode::IfNotExists => Ok(Some(0)),
        PutMode::IfMatch(etag) => {
            generation(etag)
                .map(Some)
                .ok_or_else(|| Error::PreconditionFailed {
                    key: key.to_string(),
                    expected: etag.clone(),
                    actual: None,
                })
        }
    }
}

/// The error context of a put mode.
pub(crate) fn context(mode: &PutMode) -> Context {
    match mode {
        PutMode::Overwrite => Context::Plain,
        PutMode::IfNotExists => Context::Create,
        PutMode::IfMatch(etag) => Context::IfMatch(etag.clone()),
    }
}

/// The CRC32C of `data` as GCS writes it: base64 of the big-endian value.
pub(crate) fn crc32c_base64(crc: u32) -> String {
    BASE64.encode(crc.to_be_bytes())
}

fn system_time(t: Option<time::OffsetDateTime>) -> SystemTime {
    t.map(SystemTime::from).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The CRC32C in an `x-goog-hash` header (`crc32c=…,md5=…`).
fn crc32c_of(hash: &str) -> Option<u32> {
    let value = hash
        .split(',')
        .find_map(|part| part.trim().strip_prefix("crc32c="))?;
    let bytes: [u8; 4] = BASE64.decode(value).ok()?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl GcsBackend {
    pub(crate) fn new(
        config: GcsConfig,
        client: Client,
        http: reqwest::Client,
        token: Option<Arc<dyn TokenSource>>,
        can_sign: bool,
    ) -> Self {
        GcsBackend {
            inner: Arc::new(Inner {
                config,
                client,
                http,
                token,
                can_sign,
                bucket_exists: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn config(&self) -> &GcsConfig {
        &self.inner.config
    }

    /// The HTTP client of the requests this crate builds.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The configured server-side encryption, if any.
    pub(crate) fn encryption(&self) -> Option<&crate::GcsEncryption> {
        self.inner.config.encryption.as_ref()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.config.bucket
    }

    /// The object name in the bucket: the prefix, then the key.
    pub(crate) fn full_name(&self, key: &Key) -> String {
        format!("{}{}", self.inner.config.prefix, key.as_str())
    }

    /// Checks the prefixed name against GCS's 1,024 bytes, before any I/O.
    fn check_name(&self, key: &Key) -> Result<()> {
        if self.full_name(key).len() > GCS_MAX_NAME_BYTES {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "with the configured prefix the name exceeds GCS's 1024 bytes",
            });
        }
        Ok(())
    }

    /// Runs `future` under the request timeout.
    pub(crate) async fn timed<T>(
        &self,
        op: &str,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        let limit = self.inner.config.request_timeout;
        storage_core::raw::timeout::within(limit, future, || format!("GCS {op}")).await
    }

    /// Creates the configured bucket in `project`; succeeds if it exists.
    ///
    /// # Errors
    /// The mapped GCS error (see [`crate::error`]).
    pub async fn create_bucket(&self, project: &str) -> Result<()> {
        use gcloud_storage::http::buckets::insert::{InsertBucketParam, InsertBucketRequest};
        let request = InsertBucketRequest {
            name: self.bucket().to_owned(),
            param: InsertBucketParam {
                project: project.to_owned(),
                ..Default::default()
            },
            ..Default::default()
        };
        match self
            .timed("insert bucket", self.client().insert_bucket(&request))
            .await?
        {
            Ok(_) => Ok(()),
            Err(gcloud_storage::http::Error::Response(r)) if r.code == 409 => Ok(()),
            Err(e) => Err(from_sdk(
                e,
                "insert bucket",
                self.bucket(),
                self.bucket(),
                Context::Bucket,
            )),
        }
    }

    /// The V4 signed URL of [`Backend::presign`] (GCS: "V4 signing
    /// process with Cloud Storage tools"), at most 7 days; it names
    /// `storage.googleapis.com`.
    async fn signed_url(
        &self,
        key: &Key,
        method: PresignMethod,
        expires_in: Duration,
    ) -> Result<String> {
        let method = match method {
            PresignMethod::Get => SignedURLMethod::GET,
            PresignMethod::Put => SignedURLMethod::PUT,
        };
        if !self.inner.can_sign {
            return Err(Error::Unsupported {
                operation: "signed URLs without a service account key",
                backend: self.name().to_owned(),
            });
        }
        if expires_in > Duration::from_secs(7 * 24 * 3600) || expires_in.is_zero() {
            return Err(Error::invalid_argument(
                "a signed URL expires after 1 second to 7 days",
            ));
        }
        let options = SignedURLOptions {
            method,
            expires: expires_in,
            ..Default::default()
        };
        self.client()
            .signed_url(self.bucket(), &self.full_name(key), None, None, options)
            .await
            .map_err(|e| Error::invalid_argument(format!("signing a URL for {key}: {e}")))
    }

    pub(crate) fn meta_from_object(key: &Key, object: &Object) -> ObjectMeta {
        let (user, sha256) = metadata::from_gcs(
            object
                .metadata
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        ObjectMeta {
            key: key.clone(),
            size: u64::try_from(object.size).unwrap_or(0),
            etag: ETag::new(object.generation.to_string()),
            last_modified: system_time(object.updated.or(object.time_created)),
            content_type: object.content_type.clone(),
            metadata: user,
            sha256,
        }
    }

    /// Adds the access token, if any, to a request this crate builds.
    pub(crate) async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        op: &str,
        key: &str,
    ) -> Result<reqwest::RequestBuilder> {
        match &self.inner.token {
            Some(token) => {
                let token = token.token().await.map_err(|e| token_failure(e, op, key))?;
                Ok(request.header("authorization", token))
            }
            None => Ok(request),
        }
    }

    /// Sends a request this crate built, under the request timeout; a
    /// failure to get an answer is a (transient) transport error.
    pub(crate) async fn send_raw(
        &self,
        request: reqwest::RequestBuilder,
        op: &str,
        key: &str,
    ) -> Result<reqwest::Response> {
        self.timed(op, request.send())
            .await?
            .map_err(|e| from_transport(e, op, key))
    }

    /// One multipart upload (`multipart/related`: the JSON metadata, then
    /// the content) of a body held in memory, with its SHA-256 and CRC32C.
    ///
    /// Built here rather than with the SDK's `upload_object`, which sends a
    /// `multipart/form-data` body whose content part has no content type
    /// (fake-gcs-server then stores none). Source: Cloud Storage JSON API,
    /// "Perform multipart uploads".
    pub(crate) async fn put_single(
        &self,
        key: &Key,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let sha256: [u8; 32] = Sha256::digest(&data).into();
        let if_generation_match = condition(key, &options.mode)?;
        let content_type = options
            .content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        let object = Object {
            name: self.full_name(key),
            content_type: Some(content_type.clone()),
            metadata: Some(metadata::to_gcs(&options.metadata, Some(&sha256))),
            crc32c: Some(crc32c_base64(crc32c::crc32c(&data))),
            ..Default::default()
        };
        let json = serde_json::to_string(&object)
            .map_err(|e| Error::backend(false, format!("GCS upload of {key}: metadata"), e))?;
        let boundary = format!("storage-gcs-{}", hex::encode(rand::random::<[u8; 16]>()));
        let head = Bytes::from(format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n"
        ));
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        let length = head.len() + data.len() + tail.len();
        let parts: Vec<std::result::Result<Bytes, std::io::Error>> =
            vec![Ok(head), Ok(data), Ok(tail)];
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.inner.config.endpoint,
            utf8_percent_encode(self.bucket(), SEGMENT)
        );
        if let Some(g) = if_generation_match {
            url.push_str(&format!("&ifGenerationMatch={g}"));
        }
        if let Some(name) = crate::encryption::kms_key_name(self.encryption()) {
            url.push_str(&format!(
                "&kmsKeyName={}",
                utf8_percent_encode(&name, SEGMENT)
            ));
        }
        let request = self
            .inner
            .http
            .post(url)
            .header(
                "content-type",
                format!("multipart/related; boundary={boundary}"),
            )
            .header("content-length", length)
            .body(reqwest::Body::wrap_stream(stream::iter(parts)));
        let request = crate::encryption::with_headers(request, self.encryption());
        let request = self.authorize(request, "upload", key.as_str()).await?;
        let response = self.send_raw(request, "upload", key.as_str()).await?;
        let uploaded: Object = self
            .json_answer(response, "upload", key, context(&options.mode))
            .await?;
        let mut meta = Self::meta_from_object(key, &uploaded);
        meta.sha256 = Some(sha256);
        Ok(meta)
    }

    /// The JSON body of a successful answer, or the mapped error.
    pub(crate) async fn json_answer<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        op: &str,
        key: &Key,
        context: Context,
    ) -> Result<T> {
        if !response.status().is_success() {
            return Err(self.error_answer(response, op, key.as_str(), context).await);
        }
        let body = self
            .timed(op, response.bytes())
            .await?
            .map_err(|e| Error::backend(true, format!("GCS {op} of {key}: the answer broke"), e))?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::backend(
                false,
                format!("GCS {op} of {key}: the answer is not the expected JSON"),
                e,
            )
        })
    }

    /// Replaces the user metadata of `key`'s object, generation
    /// `generation` only (`ifGenerationMatch`): one `PATCH` of the object
    /// resource ("Objects: patch") answered with the generation alone
    /// (`fields=generation`; servers that answer the whole resource are
    /// read for nothing else).
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] when the object is another generation
    /// now, [`Error::NotFound`] when it is gone, and the transport's errors.
    pub(crate) async fn patch_metadata(
        &self,
        key: &Key,
        generation: i64,
        metadata: &std::collections::HashMap<String, String>,
    ) -> Result<()> {
        let op = "record SHA-256";
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?ifGenerationMatch={generation}&fields=generation",
            self.inner.config.endpoint,
            utf8_percent_encode(self.bucket(), SEGMENT),
            utf8_percent_encode(&self.full_name(key), SEGMENT)
        );
        let body = serde_json::json!({ "metadata": metadata }).to_string();
        let request = self
            .inner
            .http
            .patch(url)
            .header("content-type", "application/json")
            .body(body);
        let request = self.authorize(request, op, key.as_str()).await?;
        let response = self.send_raw(request, op, key.as_str()).await?;
        let context = Context::IfMatch(ETag::new(generation.to_string()));
        self.json_answer::<serde_json::Value>(response, op, key, context)
            .await
            .map(|_| ())
    }

    /// The media download request of `key`.
    pub(crate) fn download_url(&self, key: &Key) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.inner.config.endpoint,
            utf8_percent_encode(self.bucket(), SEGMENT),
            utf8_percent_encode(&self.full_name(key), SEGMENT)
        )
    }

    /// The error of a failed request this crate built: the JSON error body
    /// where there is one, the status otherwise; a 404 asks the bucket
    /// first (see [`GcsBackend`]).
    pub(crate) async fn error_answer(
        &self,
        response: reqwest::Response,
        op: &str,
        key: &str,
        context: Context,
    ) -> Error {
        let (status, reason, message) = read_answer(response).await;
        let ambiguous = classify(status, reason.as_deref()) == Class::KeyOrBucketNotFound
            && !matches!(context, Context::Bucket);
        if ambiguous && let Some(bucket_error) = self.bucket_missing().await {
            return bucket_error;
        }
        let answer = Answer {
            status,
            reason: reason.as_deref(),
            message: &message,
        };
        let err = from_answer(
            answer,
            op,
            self.bucket(),
            key,
            context,
            format!("HTTP {status}"),
        );
        self.forget_bucket_if_missing(&err);
        err
    }

    /// Converts an SDK error of operation `op` on `key`; a 404 to a request
    /// on an object asks the bucket first (see [`GcsBackend`]).
    pub(crate) async fn error(
        &self,
        err: gcloud_storage::http::Error,
        op: &str,
        key: &str,
        context: Context,
    ) -> Error {
        let ambiguous = classify_sdk(&err) == Some(Class::KeyOrBucketNotFound)
            && !matches!(context, Context::Bucket);
        if ambiguous && let Some(bucket_error) = self.bucket_missing().await {
            return bucket_error;
        }
        let converted = from_sdk(err, op, self.bucket(), key, context);
        self.forget_bucket_if_missing(&converted);
        converted
    }

    fn forget_bucket_if_missing(&self, err: &Error) {
        if matches!(err, Error::BucketNotFound { .. }) {
            self.inner.bucket_exists.store(false, Ordering::Relaxed);
        }
    }

    /// After a 404 to a request on an object: `BucketNotFound` when a bucket
    /// GET finds no bucket, its error when it fails transiently, and `None`
    /// (the object is missing) otherwise. A bucket found is remembered.
    async fn bucket_missing(&self) -> Option<Error> {
        if self.inner.bucket_exists.load(Ordering::Relaxed) {
            return None;
        }
        let op = "get bucket";
        let bucket = self.bucket();
        let url = format!(
            "{}/storage/v1/b/{}?fields=name",
            self.inner.config.endpoint,
            utf8_percent_encode(bucket, SEGMENT)
        );
        let asked = match self.authorize(self.inner.http.get(url), op, bucket).await {
            Ok(request) => self.send_raw(request, op, bucket).await,
            Err(e) => Err(e),
        };
        let response = match asked {
            Ok(response) => response,
            Err(e) => return e.is_transient().then_some(e),
        };
        if response.status().is_success() {
            self.inner.bucket_exists.store(true, Ordering::Relaxed);
            return None;
        }
        let (status, reason, message) = read_answer(response).await;
        let answer = Answer {
            status,
            reason: reason.as_deref(),
            message: &message,
        };
        let source = format!("HTTP {status}");
        match from_answer(answer, op, bucket, bucket, Context::Bucket, source) {
            err @ Error::BucketNotFound { .. } => Some(err),
            err if err.is_transient() => Some(err),
            // 403 (the bucket GET needs storage.buckets.get) or anything
            // else: nothing says the bucket is missing.
            _ => None,
        }
    }

    /// The error for a range the object cannot serve, with its size.
    ///
    /// fake-gcs-server closes the connection after a 416 without saying so,
    /// so the size lookup that follows may meet a reset pooled connection:
    /// it is tried twice.
    async fn invalid_range(&self, key: &Key, range: &ByteRange) -> Error {
        let mut size = 0;
        for _ in 0..2 {
            match self.head(key).await {
                Ok(meta) => {
                    size = meta.size;
                    break;
                }
                Err(e) if e.is_transient() => continue,
                Err(_) => break,
            }
        }
        Error::InvalidRange {
            key: key.to_string(),
            range: range.to_string(),
            size,
        }
    }

    /// Whether any object under `group` sorts after `after` (which starts
    /// with `group`).
    async fn any_after(&self, group: &str, after: &str) -> Result<bool> {
        let mut token: Option<String> = None;
        loop {
            let request = ListObjectsRequest {
                bucket: self.bucket().to_owned(),
                prefix: Some(group.to_owned()),
                start_offset: Some(after.to_owned()),
                max_results: Some(100),
                page_token: token.clone(),
                ..Default::default()
            };
            let page = match self
                .timed("list", self.client().list_objects(&request))
                .await?
            {
                Ok(page) => page,
                Err(e) => return Err(self.error(e, "list", group, Context::Bucket).await),
            };
            if page.items.iter().flatten().any(|o| o.name.as_str() > after) {
                return Ok(true);
            }
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(false),
            }
        }
    }
}

/// Most truncated listing pages in a row with nothing new by name that a
/// listing follows by page token before it fails as making no progress.
const MAX_STALLED_PAGES: u32 = 100;

/// How far a truncated listing page is complete: every name up to the
/// returned bound (inclusive) has been returned, so the next request starts
/// after it. `None` when the page returned nothing past `after`, which
/// would repeat the same request forever.
///
/// GCS counts objects and common prefixes together against `maxResults`
/// and returns the first ones in name order (Cloud Storage JSON API,
/// "Objects: list", `maxResults`), so everything up to the last object or
/// prefix returned is complete. fake-gcs-server counts objects only and
/// returns every common prefix on every page, so only names up to the last
/// object are complete there. The bound is therefore the last object where
/// it is past `after` (right on both), and otherwise the last common
/// prefix, which GCS makes complete (a page of one repeated object plus
/// prefixes, on which a bound from objects alone would never move). With
/// nothing past `after` the listing follows the server's page token
/// instead, and fails after [`MAX_STALLED_PAGES`] such pages or a repeated
/// token.
fn page_bound(items: &[Object], groups: &[String], after: Option<&str>) -> Option<String> {
    let past = |name: &str| after.is_none_or(|a| name > a);
    items
        .last()
        .map(|o| o.name.as_str())
        .filter(|n| past(n))
        .or_else(|| groups.last().map(String::as_str).filter(|g| past(g)))
        .map(str::to_owned)
}

/// The error for truncated listing pages that bring nothing past `after`
/// and no new page token: a server that keeps answering so would make the
/// listing loop forever.
fn no_progress(request: &ListObjectsRequest, after: Option<&str>) -> Error {
    Error::backend(
        false,
        format!(
            "a truncated listing page of bucket {} (prefix {:?}, startOffset {:?}) returned \
             nothing past {:?}; listing stopped rather than repeating the request",
            request.bucket, request.prefix, request.start_offset, after
        ),
        "gcs",
    )
}

/// The status, GCS reason and message of a failed answer: the JSON API
/// error body where there is one, the body as text otherwise.
pub(crate) async fn read_answer(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let (reason, message) = serde_error(&text);
    (status, reason, message.unwrap_or(text))
}

/// The `reason` and `message` of a JSON API error body
/// (`{"error": {"message": …, "errors": [{"reason": …}]}}`), if it is one.
fn serde_error(text: &str) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return (None, None);
    };
    let error = &value["error"];
    let reason = error["errors"][0]["reason"].as_str().map(str::to_owned);
    let message = error["message"].as_str().map(str::to_owned);
    (reason, message)
}

/// Streams a download; on a full read, ends with the CRC32C and SHA-256
/// verdicts.
fn body_stream(
    response: reqwest::Response,
    key: Key,
    sha256: Option<[u8; 32]>,
    crc: Option<u32>,
) -> ByteStream {
    let name = key.to_string();
    let chunks = response
        .bytes_stream()
        .map_err(move |e| {
            Error::backend(true, format!("GCS download of {name}: the body failed"), e)
        })
        .boxed();
    let checked = match crc {
        Some(expected) => verify_crc32c(chunks, key.clone(), expected),
        None => chunks,
    };
    storage_core::raw::integrity::verify_sha256(checked, key, sha256)
}

/// Passes `body` through and ends it with [`Error::ChecksumMismatch`] when
/// the CRC32C of every byte is not `expected` (GCS's `x-goog-hash`).
fn verify_crc32c(body: ByteStream, key: Key, expected: u32) -> ByteStream {
    stream::try_unfold(
        (body, Some(0u32), key),
        move |(mut body, running, key)| async move {
            match body.next().await {
                Some(Ok(chunk)) => {
                    let running = running.map(|r| crc32c::crc32c_append(r, &chunk));
                    Ok(Some((chunk, (body, running, key))))
                }
                Some(Err(e)) => Err(e),
                None => match running {
                    Some(actual) if actual != expected => Err(Error::ChecksumMismatch {
                        key: key.to_string(),
                        expected: format!("CRC32C {expected:08x}"),
                        actual: format!("CRC32C {actual:08x}"),
                    }),
                    _ => Ok(None),
                },
            }
        },
    )
    .boxed()
}

#[async_trait]
impl Backend for GcsBackend {
    fn name(&self) -> &str {
        "gcs"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: true,
            conditional_delete: true,
            presigned_urls: self.inner.can_sign,
            server_side_copy: true,
            checksums: true,
            unique_etags: true,
            ..Capabilities::none(Locality::Remote)
        }
    }

    /// [`Error::Unsupported`] unless a service account key is configured
    /// ([`Capabilities::presigned_urls`]).
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        self.check_name(key)?;
        self.signed_url(key, method, expires_in).await
    }

    /// The bucket's metadata (`GET /storage/v1/b/{bucket}`), or where the
    /// credentials may not read it (403: no `storage.buckets.get`) a
    /// listing of one object: 404 is [`Error::BucketNotFound`], 401
    /// [`Error::Unauthenticated`], 403 on both [`Error::PermissionDenied`],
    /// no answer a transient [`Error::Backend`].
    async fn health(&self) -> Result<()> {
        use gcloud_storage::http::buckets::get::GetBucketRequest;
        let request = GetBucketRequest {
            bucket: self.bucket().to_owned(),
            ..Default::default()
        };
        let answer = self
            .timed("get bucket", self.client().get_bucket(&request))
            .await
            .and_then(|answer| {
                answer.map_err(|e| {
                    from_sdk(
                        e,
                        "get bucket",
                        self.bucket(),
                        self.bucket(),
                        Context::Bucket,
                    )
                })
            });
        let answer = match answer {
            // Object roles (`roles/storage.objectUser`, `objectAdmin`) lack
            // `storage.buckets.get`: one listed object proves the bucket,
            // the credentials and the network just as well.
            Err(Error::PermissionDenied { .. }) => {
                let probe = ListOptions {
                    page_size: Some(1),
                    ..ListOptions::default()
                };
                self.list(&probe).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        answer.map_err(|e| storage_core::raw::health_failure(e, &self.inner.config.endpoint))
    }

    async fn put(&self, key: &Key, body: Body, mut options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        self.check_name(key)?;
        condition(key, &options.mode)?;
        options
            .content_type
            .get_or_insert_with(|| DEFAULT_CONTENT_TYPE.to_owned());
        match body.len() {
            Some(len) if len < self.inner.config.resumable_threshold => {
                let data = body.into_bytes().await?;
                self.put_single(key, data, options).await
            }
            _ => self.put_resumable(key, body, options).await,
        }
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.check_name(key)?;
        let range_header = match options.range {
            None => None,
            Some(range @ ByteRange::Bounded { start, end }) => {
                if start >= end {
                    return Err(self.invalid_range(key, &range).await);
                }
                Some(range.to_string())
            }
            Some(range @ ByteRange::Suffix { len }) => {
                if len == 0 {
                    return Err(self.invalid_range(key, &range).await);
                }
                Some(range.to_string())
            }
            Some(range @ ByteRange::From { .. }) => Some(range.to_string()),
        };
        let mut url = self.download_url(key);
        let context = match &options.if_match {
            Some(etag) => {
                let Some(g) = generation(etag) else {
                    // No version ever had this ETag; a missing key is
                    // NotFound all the same (DESIGN section 2, rule 5).
                    self.head(key).await?;
                    return Err(Error::PreconditionFailed {
                        key: key.to_string(),
                        expected: etag.clone(),
                        actual: None,
                    });
                };
                url.push_str(&format!("&ifGenerationMatch={g}"));
                Context::IfMatch(etag.clone())
            }
            None => Context::Plain,
        };
        let mut request =
            crate::encryption::with_headers(self.inner.http.get(url), self.encryption());
        if let Some(range) = &range_header {
            request = request.header("range", range);
        }
        let request = self.authorize(request, "download", key.as_str()).await?;
        let response = self.send_raw(request, "download", key.as_str()).await?;
        if !response.status().is_success() {
            let err = self
                .error_answer(response, "download", key.as_str(), context)
                .await;
            return Err(match (err, options.range) {
                (Error::InvalidRange { .. }, Some(range)) => self.invalid_range(key, &range).await,
                // GCS answers 412 to ifGenerationMatch on a missing object;
                // the contract says NotFound (DESIGN section 2, rule 5).
                (e @ Error::PreconditionFailed { .. }, _) => match self.head(key).await {
                    Err(missing @ Error::NotFound { .. }) => missing,
                    _ => e,
                },
                (other, _) => other,
            });
        }
        let headers = response.headers();
        let generation_header = header(headers, "x-goog-generation")
            .ok_or_else(|| missing("download", key.as_str(), "x-goog-generation"))?;
        let etag = ETag::new(generation_header);
        if let Some(expected) = &options.if_match
            && *expected != etag
        {
            // fake-gcs-server ignores ifGenerationMatch on downloads.
            return Err(Error::PreconditionFailed {
                key: key.to_string(),
                expected: expected.clone(),
                actual: Some(etag),
            });
        }
        let length = header(headers, "content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let (served, size) = match header(headers, "content-range")
            .and_then(storage_core::raw::parse_content_range)
        {
            Some(parsed) => parsed,
            None => (0..length, length),
        };
        if let Some(requested) = &options.range {
            // fake-gcs-server answers a range starting at the size with no
            // bytes and no Content-Range.
            let Ok(resolved) = requested.resolve(key, size) else {
                return Err(self.invalid_range(key, requested).await);
            };
            if served != resolved {
                return Err(Error::backend(
                    false,
                    format!(
                        "GCS download of {key}: asked for {requested}, the server sent bytes {}..{}",
                        served.start, served.end
                    ),
                    "range mismatch",
                ));
            }
        }
        let (user, sha256) = metadata::from_gcs(headers.iter().filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-goog-meta-")?;
            Some((name, value.to_str().ok()?))
        }));
        let crc = header(headers, "x-goog-hash").and_then(crc32c_of);
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            etag,
            last_modified: header(headers, "last-modified")
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            content_type: header(headers, "content-type").map(str::to_owned),
            metadata: user,
            sha256,
        };
        let full = options.range.is_none();
        let body = body_stream(
            response,
            key.clone(),
            sha256.filter(|_| full),
            crc.filter(|_| full),
        );
        Ok(GetResult::new(meta, served, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.check_name(key)?;
        let request = GetObjectRequest {
            bucket: self.bucket().to_owned(),
            object: self.full_name(key),
            encryption: crate::encryption::for_client(self.encryption()),
            ..Default::default()
        };
        match self
            .timed("get", self.client().get_object(&request))
            .await?
        {
            Ok(object) => Ok(Self::meta_from_object(key, &object)),
            Err(e) => Err(self.error(e, "get", key.as_str(), Context::Plain).await),
        }
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.check_name(key)?;
        let (if_generation_match, context) = match &options.if_match {
            Some(etag) => {
                let g = generation(etag).ok_or_else(|| Error::PreconditionFailed {
                    key: key.to_string(),
                    expected: etag.clone(),
                    actual: None,
                })?;
                (Some(g), Context::IfMatch(etag.clone()))
            }
            None => (None, Context::Plain),
        };
        let request = DeleteObjectRequest {
            bucket: self.bucket().to_owned(),
            object: self.full_name(key),
            if_generation_match,
            ..Default::default()
        };
        match self
            .timed("delete", self.client().delete_object(&request))
            .await?
        {
            Ok(()) => Ok(()),
            Err(e) => match self.error(e, "delete", key.as_str(), context).await {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let page_size = options.effective_page_size()?;
        let base = self.inner.config.prefix.as_str();
        let prefix = format!("{base}{}", options.prefix);
        // Everything up to `after` is done: `start_after`, or the last entry
        // of the previous page (the continuation is that entry's key).
        let mut after: Option<String> = [&options.start_after, &options.continuation]
            .into_iter()
            .flatten()
            .map(|s| format!("{base}{s}"))
            .max();
        let mut page = ListPage::default();
        let mut last: Option<String> = None;
        // The server's page token, followed only while pages bring nothing
        // new by name (see `page_bound`), and how many such pages in a row.
        let mut token: Option<String> = None;
        let mut stalled = 0u32;
        loop {
            let start_offset = after.as_ref().map(|a| {
                if options.delimiter && a.ends_with('/') {
                    // A common prefix already returned: skip its whole group.
                    format!("{}0", &a[..a.len() - 1])
                } else {
                    a.clone()
                }
            });
            let wanted = page_size - page.objects.len() - page.common_prefixes.len();
            let request = ListObjectsRequest {
                bucket: self.bucket().to_owned(),
                prefix: (!prefix.is_empty()).then(|| prefix.clone()),
                delimiter: options.delimiter.then(|| "/".to_owned()),
                // One more than needed: `startOffset` includes `after` itself.
                max_results: Some(i32::try_from(wanted.max(1) + 1).unwrap_or(i32::MAX)),
                start_offset,
                page_token: token.clone(),
                ..Default::default()
            };
            let raw = match self
                .timed("list", self.client().list_objects(&request))
                .await?
            {
                Ok(raw) => raw,
                Err(e) => {
                    let err = self.error(e, "list", &options.prefix, Context::Bucket);
                    return Err(err.await);
                }
            };
            let next_token = raw.next_page_token.clone().filter(|t| !t.is_empty());
            let items = raw.items.unwrap_or_default();
            let mut groups = raw.prefixes.unwrap_or_default();
            groups.sort();
            groups.dedup();
            // Where the next request starts: past a bound by name, or, when
            // a truncated page brought nothing new by name (GCS may return
            // fewer entries than `maxResults`, omitting duplicate prefixes
            // after counting them), at the server's page token.
            let (bound, follow) = match next_token {
                None => (None, None),
                Some(next) => match page_bound(&items, &groups, after.as_deref()) {
                    Some(bound) => (Some(bound), None),
                    None if Some(&next) != token.as_ref() && stalled < MAX_STALLED_PAGES => {
                        (None, Some(next))
                    }
                    None => return Err(no_progress(&request, after.as_deref())),
                },
            };
            let mut entries: Vec<(String, Option<&Object>)> = items
                .iter()
                .map(|o| (o.name.clone(), Some(o)))
                .chain(groups.into_iter().map(|g| (g, None)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, object) in entries {
                if bound.as_deref().is_some_and(|b| name.as_str() > b) {
                    break;
                }
                // Staged state and transaction records have their own
                // listing.
                if !options.reserved
                    && name
                        .strip_prefix(base)
                        .is_some_and(storage_core::raw::is_reserved_name)
                {
                    continue;
                }
                if let Some(a) = after.as_deref() {
                    let inside_group =
                        object.is_none() && a.starts_with(name.as_str()) && a != name;
                    if inside_group {
                        if !self.any_after(&name, a).await? {
                            continue;
                        }
                    } else if name.as_str() <= a {
                        continue;
                    }
                }
                if page.objects.len() + page.common_prefixes.len() == page_size {
                    page.continuation = last.and_then(|l| l.strip_prefix(base).map(str::to_owned));
                    return Ok(page);
                }
                let Some(stripped) = name.strip_prefix(base) else {
                    continue;
                };
                match object {
                    Some(object) => {
                        let Ok(key) = storage_core::raw::stored_key(stripped) else {
                            continue;
                        };
                        let mut meta = Self::meta_from_object(&key, object);
                        meta.metadata = Metadata::new();
                        meta.content_type = None;
                        meta.sha256 = None;
                        page.objects.push(meta);
                    }
                    None => page.common_prefixes.push(stripped.to_owned()),
                }
                last = Some(name);
            }
            match (bound, follow) {
                (Some(bound), _) => {
                    after = Some(bound);
                    token = None;
                    stalled = 0;
                }
                (None, Some(next)) => {
                    token = Some(next);
                    stalled += 1;
                }
                (None, None) => return Ok(page),
            }
        }
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.check_name(from)?;
        self.check_name(to)?;
        if self.encryption().is_some() {
            // See the table in `encryption.rs`: copyTo cannot carry the key.
            return storage_core::raw::copy_through_client(self, from, to, mode).await;
        }
        let request = CopyObjectRequest {
            source_bucket: self.bucket().to_owned(),
            source_object: self.full_name(from),
            destination_bucket: self.bucket().to_owned(),
            destination_object: self.full_name(to),
            if_generation_match: condition(to, &mode)?,
            ..Default::default()
        };
        match self
            .timed("copy", self.client().copy_object(&request))
            .await?
        {
            Ok(object) => Ok(Self::meta_from_object(to, &object)),
            Err(e) => {
                let err = self.error(e, "copy", to.as_str(), context(&mode)).await;
                // A missing source is NotFound whatever the destination's
                // condition.
                if matches!(
                    err,
                    Error::NotFound { .. } | Error::PreconditionFailed { .. }
                ) {
                    self.head(from).await?;
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_goog_hash_gives_the_crc32c() {
        // "hello": crc32c 0x9a71bb4c, base64 "mnG7TA=="
        assert_eq!(
            crc32c_of("crc32c=mnG7TA==,md5=XUFAKrxLKna5cZ2REBfFkg=="),
            Some(0x9a71_bb4c)
        );
        assert_eq!(crc32c_base64(crc32c::crc32c(b"hello")), "mnG7TA==");
    }

    #[test]
    fn etags_that_name_no_generation_match_nothing() {
        let key = Key::new("k").expect("key");
        let err = condition(&key, &PutMode::IfMatch(ETag::new("not-a-number")));
        assert!(matches!(err, Err(Error::PreconditionFailed { .. })));
        assert_eq!(condition(&key, &PutMode::IfNotExists).ok(), Some(Some(0)));
    }

    use crate::test_server::{Reply, Seen, TestServer};
    use storage_core::{BackendExt, ListOptions};

    fn not_found() -> Reply {
        Reply::status(404)
            .header("content-type", "application/json; charset=UTF-8")
            .body(
                r#"{"error":{"code":404,"message":"The specified bucket does not exist.","errors":[{"domain":"global","reason":"notFound","message":"The specified bucket does not exist."}]}}"#,
            )
    }

    /// The bucket GET (`/storage/v1/b/bucket?fields=name`).
    fn is_bucket_get(seen: &Seen) -> bool {
        seen.method == "GET" && seen.path() == "/storage/v1/b/bucket"
    }

    async fn scripted(server: &TestServer) -> GcsBackend {
        GcsConfig::emulator(server.url(), "bucket")
            .resumable(256 * 1024, 256 * 1024)
            .build()
            .await
            .expect("config")
    }

    #[tokio::test]
    async fn every_operation_on_a_missing_bucket_is_bucket_not_found() {
        // GCS: 404 `notFound` for everything in a bucket that does not
        // exist, the bucket GET included.
        let server = TestServer::start(|_: &Seen| not_found());
        let store = scripted(&server).await;
        let k = Key::new("k").expect("key");
        let generation = ETag::new("5");
        let with_mode = |mode: PutMode| PutOptions {
            mode,
            ..PutOptions::default()
        };
        let large = || {
            let chunks = vec![Ok(Bytes::from(vec![7u8; 300 * 1024]))];
            Body::stream(futures::stream::iter(chunks).boxed(), None)
        };
        let listing = ListOptions {
            delimiter: true,
            start_after: Some("a/b".into()),
            ..ListOptions::default()
        };
        let outcomes: Vec<(&str, Result<()>)> = vec![
            ("exists", store.exists(&k).await.map(|_| ())),
            ("head", store.head(&k).await.map(|_| ())),
            ("get", store.get_bytes(&k).await.map(|_| ())),
            ("get range", store.get_range(&k, 1..3).await.map(|_| ())),
            (
                "list",
                store.list(&ListOptions::default()).await.map(|_| ()),
            ),
            (
                "list with delimiter",
                store.list(&listing).await.map(|_| ()),
            ),
            ("put", store.put_bytes(&k, "x").await.map(|_| ())),
            (
                "put if not exists",
                store
                    .put(&k, Body::from("x"), with_mode(PutMode::IfNotExists))
                    .await
                    .map(|_| ()),
            ),
            (
                "put if match",
                store
                    .put(
                        &k,
                        Body::from("x"),
                        with_mode(PutMode::IfMatch(generation.clone())),
                    )
                    .await
                    .map(|_| ()),
            ),
            (
                "resumable put",
                store
                    .put(&k, large(), PutOptions::default())
                    .await
                    .map(|_| ()),
            ),
            ("delete", store.delete(&k, DeleteOptions::default()).await),
            (
                "delete if match",
                store
                    .delete(
                        &k,
                        DeleteOptions {
                            if_match: Some(generation.clone()),
                        },
                    )
                    .await,
            ),
            (
                "copy",
                store
                    .copy(&k, &Key::new("k2").expect("key"), PutMode::Overwrite)
                    .await
                    .map(|_| ()),
            ),
        ];
        for (operation, outcome) in outcomes {
            assert!(
                matches!(&outcome, Err(Error::BucketNotFound { bucket }) if bucket == "bucket"),
                "{operation}: {outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_404_asks_the_bucket_once_and_remembers_it() {
        let server = TestServer::start(|seen: &Seen| {
            if is_bucket_get(seen) {
                Reply::status(200).body(r#"{"name":"bucket"}"#)
            } else {
                not_found()
            }
        });
        let store = scripted(&server).await;
        let k = Key::new("k").expect("key");
        assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
        assert_eq!(store.exists(&k).await.ok(), Some(false));
        assert!(matches!(
            store.get_bytes(&k).await,
            Err(Error::NotFound { .. })
        ));
        assert!(store.delete(&k, DeleteOptions::default()).await.is_ok());
        let probes = server.seen().iter().filter(|s| is_bucket_get(s)).count();
        assert_eq!(probes, 1, "{:#?}", server.seen());
    }

    #[tokio::test]
    async fn a_transient_bucket_get_failure_is_returned_as_such() {
        let server = TestServer::start(|seen: &Seen| {
            if is_bucket_get(seen) {
                Reply::status(503)
            } else {
                not_found()
            }
        });
        let store = scripted(&server).await;
        let err = store.head(&Key::new("k").expect("key")).await;
        assert!(err.as_ref().is_err_and(Error::is_transient), "{err:?}");
    }

    #[tokio::test]
    async fn signed_urls_need_a_service_account_key() {
        let store = GcsConfig::emulator("http://127.0.0.1:1", "b")
            .build()
            .await
            .expect("config");
        let key = Key::new("k").expect("key");
        assert!(!store.capabilities().presigned_urls);
        assert!(matches!(
            store
                .presign(PresignMethod::Get, &key, Duration::from_secs(60))
                .await,
            Err(Error::Unsupported { .. })
        ));
    }
}
