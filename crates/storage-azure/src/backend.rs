//! The `Backend` implementation of `AzureBackend`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::CheckSuccessOptions;
use azure_core::http::headers::Headers;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    AsyncRawResponse, ClientOptions, Context as HttpContext, Etag, Method, Pipeline,
    PipelineStreamOptions, Request, Url,
};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobContainerClientCreateOptions, DeleteSnapshotsOptionType,
};
use azure_storage_blob::{BlobClient, BlobContainerClient, BlobContainerClientOptions};
use futures::stream::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use storage_core::{
    Backend, Body, ByteRange, ByteStream, Capabilities, DeleteOptions, ETag, Error, GetOptions,
    GetResult, Key, ListOptions, ListPage, Locality, Metadata, ObjectMeta, PresignMethod, PutMode,
    PutOptions, Result,
};
use time::OffsetDateTime;

use crate::config::AzureConfig;
use crate::error::{Class, Context, classify_sdk, from_sdk, missing, status_and_code};
use crate::list::{self, RawPage};
use crate::metadata;
use crate::sas::{AccountKey, BlobPermission};

/// The REST API version (`x-ms-version`) of the requests this crate builds
/// itself: the one `azure_storage_blob` 1.1 sends (its `DEFAULT_VERSION`),
/// so every request of a backend speaks one version, and one recent enough
/// for every parameter used (List Blobs `startFrom` needs 2026-02-06 or
/// later). `tests/documented_answers.rs` checks that both agree.
pub(crate) const API_VERSION: &str = "2026-04-06";

/// Content type stored when a put gives none: Azure always stores one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Longest blob name Azure accepts, in characters.
const AZURE_MAX_NAME_CHARS: usize = 1024;

/// Most path segments Azure allows in a blob name.
const AZURE_MAX_SEGMENTS: usize = 254;

/// Response headers read here, named once.
const ETAG: &str = "etag";
const LAST_MODIFIED: &str = "last-modified";
const CONTENT_TYPE: &str = "content-type";
const CONTENT_LENGTH: &str = "content-length";
const CONTENT_RANGE: &str = "content-range";

/// The value of header `name` (lower-case), if present.
///
/// `Headers::get_optional_str` builds an error (and, with `RUST_BACKTRACE`
/// set, captures a backtrace) for every absent header: measured at a third
/// of this crate's CPU per request, so lookups go through this instead.
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, v)| v.as_str())
}

/// An object store in an Azure Blob Storage container (or on Azurite).
///
/// - Objects are block blobs. A put below the block threshold, or of a body
///   already in memory up to [`AzureConfig::single_put_in_memory`], is one
///   Put Blob; other large bodies and bodies of unknown length are staged as blocks
///   (Put Block, several in flight, bounded memory) and committed with Put
///   Block List, which carries the condition. Blocks of a failed upload are
///   never committed: Azure discards uncommitted blocks after 7 days.
/// - Keys holding `\` or a segment ending in `.` are refused with
///   [`Error::InvalidKey`] before any I/O: Azure reads `\` in a blob name
///   as `/` and drops a trailing dot ("Naming and Referencing Containers,
///   Blobs, and Metadata": avoid names whose segments end with a dot), so
///   such a key would be stored as, and overwrite, another key.
/// - `IfNotExists` sends `If-None-Match: *`, `IfMatch` sends `If-Match`
///   (Azure: "Specifying conditional headers"). Azure answers an existing
///   blob with 412, Azurite with 409 `BlobAlreadyExists`: both are
///   [`Error::AlreadyExists`].
/// - The SHA-256 of the content is stored as metadata (`storage_sha256`,
///   see [`crate::metadata`]) for every put, staged or not, and a full read
///   is checked against it ([`Error::ChecksumMismatch`]).
/// - Ranges use `x-ms-range`. Azure has no suffix ranges: a suffix read asks
///   for the size first and pins the read to that version with `If-Match`.
///   A range that starts at or past the size is [`Error::InvalidRange`],
///   also where Azurite answers 206 with no bytes.
/// - Listings parse the List Blobs XML themselves, because the SDK cannot
///   send `delimiter`; `start_after` is sent as `startFrom` and applied
///   exclusively here too, so servers without `startFrom` still list
///   correctly (more slowly).
/// - With an account key, `copy` is Copy Blob inside the service: the
///   source is named by a URL carrying a read SAS for that one blob (valid
///   1 hour), the destination's condition is sent as `If-Match` /
///   `If-None-Match`, content type and metadata (with the recorded
///   SHA-256) travel with the content, and a copy the service reports as
///   pending is awaited. With a SAS token or an Entra ID credential this
///   crate cannot authorize the source, so `copy` streams through the
///   client (`Capabilities::server_side_copy` says which).
/// - Delete removes the blob with its snapshots; deleting a missing blob
///   succeeds.
/// - A missing container is [`Error::BucketNotFound`] on every operation,
///   never the [`Error::NotFound`] of a blob: Azure names it
///   (`ContainerNotFound`) in the `x-ms-error-code` header of every failed
///   answer, HEAD answers included. A 404 whose code names neither is
///   followed by one Get Container Properties: 404 there is
///   `BucketNotFound`, success makes the 404 the blob's and is remembered;
///   a transient failure of that request is returned as is. The memory is
///   cleared whenever an answer names the container missing.
/// - A put without a content type stores [`DEFAULT_CONTENT_TYPE`].
#[derive(Debug, Clone)]
pub struct AzureBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: AzureConfig,
    container_url: Url,
    container: BlobContainerClient,
    /// For the requests the SDK does not offer (get with every range form,
    /// head with metadata, delimiter listings): the same transport and
    /// authorization as the SDK clients.
    pipeline: Pipeline,
    account_key: Option<AccountKey>,
    /// Whether Get Container Properties found the container (see
    /// [`AzureBackend`]).
    container_exists: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBackend")
            .field("container_url", &self.container_url.as_str())
            .field("prefix", &self.config.prefix)
            .field("account_key", &self.account_key.is_some())
            .finish_non_exhaustive()
    }
}

fn to_etag(etag: &ETag) -> Etag {
    Etag::from(etag.quoted())
}

fn to_system_time(t: OffsetDateTime) -> SystemTime {
    SystemTime::from(t)
}

fn parse_http_date(value: Option<&str>) -> SystemTime {
    value
        .and_then(|v| azure_core::time::parse_rfc7231(v).ok())
        .map(to_system_time)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl AzureBackend {
    pub(crate) fn new(
        config: AzureConfig,
        container_url: Url,
        client_options: ClientOptions,
        token: Option<Arc<dyn TokenCredential>>,
        account_key: Option<AccountKey>,
    ) -> Result<Self> {
        let container = BlobContainerClient::new(
            container_url.clone(),
            token.clone(),
            Some(BlobContainerClientOptions {
                client_options: client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| Error::invalid_argument(format!("Azure container client: {e}")))?;
        let mut per_try: Vec<Arc<dyn Policy>> = Vec::new();
        if let Some(token) = token {
            per_try.push(Arc::new(BearerTokenAuthorizationPolicy::new(
                token,
                vec!["https://storage.azure.com/.default"],
            )));
        }
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options,
            Vec::new(),
            per_try,
            None,
        );
        Ok(AzureBackend {
            inner: Arc::new(Inner {
                config,
                container_url,
                container,
                pipeline,
                account_key,
                container_exists: AtomicBool::new(false),
            }),
        })
    }

    pub(crate) fn config(&self) -> &AzureConfig {
        &self.inner.config
    }

    /// The blob name in the container: the prefix, then the key.
    pub(crate) fn full_name(&self, key: &Key) -> String {
        format!("{}{}", self.inner.config.prefix, key.as_str())
    }

    /// Checks the prefixed name against Azure's limits (1,024 characters,
    /// 254 segments) and refuses keys Azure would store under another
    /// name (`\\`, a segment ending in `.`), before any I/O.
    fn check_name(&self, key: &Key) -> Result<()> {
        let name = self.full_name(key);
        if name.chars().count() > AZURE_MAX_NAME_CHARS {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "with the configured prefix the name exceeds Azure's 1024 characters",
            });
        }
        if name.split('/').count() > AZURE_MAX_SEGMENTS {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "Azure allows at most 254 path segments in a blob name",
            });
        }
        if key.as_str().contains('\\') {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "Azure reads `\\` in a blob name as `/`, so this key would alias another",
            });
        }
        if key.segments().any(|segment| segment.ends_with('.')) {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "Azure drops a trailing `.` from a blob name's segments, so this key would alias another",
            });
        }
        Ok(())
    }

    /// The URL of `key`'s blob, without credentials: the whole name as one
    /// percent-encoded path segment (`/` as `%2F`), exactly as the SDK's
    /// `BlobContainerClient::blob_client` builds it, so that the requests
    /// this crate builds and the SDK's name (and sign) a blob identically.
    /// Azure reads `%2F` in a blob name as `/` ("Naming and Referencing
    /// Containers, Blobs, and Metadata"; the .NET and Python SDKs send it
    /// so too).
    pub(crate) fn blob_url(&self, key: &Key) -> Url {
        let mut url = self.inner.container_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(&self.full_name(key));
        }
        url
    }

    /// The SDK client of `key`'s blob.
    pub(crate) fn blob_client(&self, key: &Key) -> BlobClient {
        self.inner.container.blob_client(&self.full_name(key))
    }

    /// The container's name.
    pub fn container(&self) -> &str {
        &self.inner.config.container
    }

    /// The SDK's container client, for operations this crate does not wrap.
    pub fn container_client(&self) -> &BlobContainerClient {
        &self.inner.container
    }

    /// Creates the configured container; succeeds if it exists.
    ///
    /// # Errors
    /// The mapped Azure error (see [`crate::error`]).
    pub async fn create_container(&self) -> Result<()> {
        let created = self
            .timed(
                "Create Container",
                self.inner
                    .container
                    .create(Some(BlobContainerClientCreateOptions::default())),
            )
            .await?;
        match created {
            Ok(_) => Ok(()),
            Err(e) if status_and_code(&e).1.as_deref() == Some("ContainerAlreadyExists") => Ok(()),
            Err(e) => Err(from_sdk(
                e,
                "Create Container",
                self.container(),
                self.container(),
                Context::Bucket,
            )),
        }
    }

    /// The SAS URL of [`Backend::presign`]: a service SAS for this one
    /// blob, signed with the account key ("Create a service SAS"); a `PUT`
    /// through it must send `x-ms-blob-type: BlockBlob` (Put Blob).
    fn sas_url(&self, key: &Key, method: PresignMethod, expires_in: Duration) -> Result<String> {
        let permission = match method {
            PresignMethod::Get => BlobPermission::Read,
            PresignMethod::Put => BlobPermission::Write,
        };
        let Some(account_key) = &self.inner.account_key else {
            return Err(Error::Unsupported {
                operation: "SAS URLs without an account key",
                backend: self.name().to_owned(),
            });
        };
        if expires_in.is_zero() {
            return Err(Error::invalid_argument("a SAS URL needs a non-zero expiry"));
        }
        let mut url = self.blob_url(key);
        let token = account_key.blob_sas(
            self.container(),
            &self.full_name(key),
            permission,
            OffsetDateTime::now_utc(),
            expires_in,
            url.scheme() == "http",
        )?;
        url.set_query(Some(&token));
        Ok(url.into())
    }

    /// Runs `future` under the request timeout.
    pub(crate) async fn timed<T>(
        &self,
        op: &str,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        let limit = self.inner.config.request_timeout;
        storage_core::raw::timeout::within(limit, future, || format!("Azure {op}")).await
    }

    /// Converts an SDK error of operation `op` on `key`; a 404 that does not
    /// say whether the blob or the container is missing asks the container
    /// first (see [`AzureBackend`]).
    pub(crate) async fn error(
        &self,
        err: azure_core::Error,
        op: &str,
        key: &str,
        context: Context,
    ) -> Error {
        let ambiguous = classify_sdk(&err) == Some(Class::KeyOrBucketNotFound)
            && !matches!(context, Context::Bucket);
        if ambiguous && let Some(container_error) = self.container_missing().await {
            return container_error;
        }
        let converted = from_sdk(err, op, self.container(), key, context);
        if matches!(converted, Error::BucketNotFound { .. }) {
            self.inner.container_exists.store(false, Ordering::Relaxed);
        }
        converted
    }

    /// After a 404 that does not say what is missing: `BucketNotFound` when
    /// Get Container Properties finds no container, its error when it fails
    /// transiently, and `None` (the blob is missing) otherwise. A container
    /// found is remembered.
    async fn container_missing(&self) -> Option<Error> {
        if self.inner.container_exists.load(Ordering::Relaxed) {
            return None;
        }
        let op = "Get Container Properties";
        let container = self.container();
        let mut url = self.inner.container_url.clone();
        url.query_pairs_mut().append_pair("restype", "container");
        let answer = match self
            .send_checked(Request::new(url, Method::Head), op, &[200])
            .await
        {
            Ok(answer) => answer,
            Err(timeout) => return Some(timeout),
        };
        match answer {
            Ok(_) => {
                self.inner.container_exists.store(true, Ordering::Relaxed);
                None
            }
            Err(e) => match from_sdk(e, op, container, container, Context::Bucket) {
                err @ Error::BucketNotFound { .. } => Some(err),
                err if err.is_transient() => Some(err),
                _ => None,
            },
        }
    }

    /// Sends a request this crate built, under the request timeout, and
    /// checks its status; the SDK's error comes back unconverted.
    pub(crate) async fn send_checked(
        &self,
        mut request: Request,
        op: &str,
        success: &'static [u16],
    ) -> Result<azure_core::Result<AsyncRawResponse>> {
        request.insert_header("x-ms-version", API_VERSION);
        let ctx = HttpContext::new();
        let sent = self
            .timed(
                op,
                self.inner.pipeline.stream(
                    &ctx,
                    &mut request,
                    Some(PipelineStreamOptions {
                        skip_checks: true,
                        ..Default::default()
                    }),
                ),
            )
            .await?;
        Ok(match sent {
            Ok(response) => {
                azure_core::http::check_success(
                    response,
                    Some(CheckSuccessOptions {
                        success_codes: success,
                    }),
                )
                .await
            }
            Err(e) => Err(e),
        })
    }

    /// Sends a request this crate built and checks its status.
    async fn send(
        &self,
        request: Request,
        op: &str,
        key: &str,
        context: Context,
        success: &'static [u16],
    ) -> Result<AsyncRawResponse> {
        match self.send_checked(request, op, success).await? {
            Ok(response) => Ok(response),
            Err(e) => Err(self.error(e, op, key, context).await),
        }
    }

    fn meta_from_headers(key: &Key, headers: &Headers, size: u64, op: &str) -> Result<ObjectMeta> {
        let (user, sha256) = metadata::from_headers(headers);
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            etag: header(headers, ETAG)
                .map(ETag::new)
                .ok_or_else(|| missing(op, key.as_str(), "ETag"))?,
            last_modified: parse_http_date(header(headers, LAST_MODIFIED)),
            content_type: header(headers, CONTENT_TYPE).map(str::to_owned),
            metadata: user,
            sha256,
        })
    }

    /// Whether the blob at `to` reports a finished copy
    /// (`x-ms-copy-status: success`).
    async fn copy_succeeded(&self, to: &Key) -> bool {
        let mut request = Request::new(self.blob_url(to), Method::Head);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), false);
        let probe = self
            .send(
                request,
                "Get Blob Properties",
                to.as_str(),
                Context::Plain,
                &[200],
            )
            .await;
        probe.is_ok_and(|probe| header(probe.headers(), "x-ms-copy-status") == Some("success"))
    }

    /// Aborts the pending copy `copy_id` into `to` ("Abort Copy Blob":
    /// `PUT ?comp=copy&copyid=…` with `x-ms-copy-action: abort`), then
    /// deletes the zero-length blob an aborted copy leaves, under `If-Match`
    /// of that blob, so no empty object stands where the copy was meant to
    /// land; says what it did, for the copy's error.
    async fn abort_copy(&self, to: &Key, copy_id: Option<&str>) -> String {
        let Some(copy_id) = copy_id else {
            return "the answer named no copy id, so the copy was not aborted".to_owned();
        };
        let mut url = self.blob_url(to);
        url.query_pairs_mut()
            .append_pair("comp", "copy")
            .append_pair("copyid", copy_id);
        let mut request = Request::new(url, Method::Put);
        request.insert_header("x-ms-copy-action", "abort");
        request.insert_header("content-length", "0");
        let op = "Abort Copy Blob";
        if let Err(e) = self
            .send(request, op, to.as_str(), Context::Plain, &[204])
            .await
        {
            return format!("aborting it failed: {e}");
        }
        let left = match self.head(to).await {
            Ok(meta) if meta.size == 0 => meta.etag,
            Ok(_) => return "it was aborted; the destination holds another object".to_owned(),
            Err(e) => return format!("it was aborted; the destination could not be read: {e}"),
        };
        let delete = DeleteOptions {
            if_match: Some(left),
        };
        match self.delete(to, delete).await {
            Ok(()) => "it was aborted and the empty destination deleted".to_owned(),
            Err(e) => format!("it was aborted; deleting the empty destination failed: {e}"),
        }
    }

    /// One Put Blob of a body held in memory, with its SHA-256 (`None`:
    /// computed here; the upload engine passes the one it computed) and its
    /// MD5, which the service verifies (`Md5Mismatch` otherwise).
    ///
    /// Built here rather than with the SDK's `upload`, whose result reads
    /// eight optional headers through error-building lookups (see
    /// [`header`]).
    pub(crate) async fn put_single(
        &self,
        key: &Key,
        data: bytes::Bytes,
        sha256: Option<[u8; 32]>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let sha256: [u8; 32] = sha256.unwrap_or_else(|| Sha256::digest(&data).into());
        let size = data.len() as u64;
        let mut request = Request::new(self.blob_url(key), Method::Put);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), true);
        request.insert_header("x-ms-blob-type", "BlockBlob");
        request.insert_header("content-length", size.to_string());
        // Verified by the service ("Put Blob": Content-MD5).
        request.insert_header(
            "content-md5",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                md5::Md5::digest(&data),
            ),
        );
        if let Some(content_type) = &options.content_type {
            request.insert_header("x-ms-blob-content-type", content_type.clone());
        }
        for (name, value) in metadata::to_azure(&options.metadata, Some(&sha256)) {
            request.insert_header(format!("x-ms-meta-{name}"), value);
        }
        match &options.mode {
            PutMode::Overwrite => {}
            PutMode::IfNotExists => request.insert_header("if-none-match", "*"),
            PutMode::IfMatch(etag) => request.insert_header("if-match", etag.quoted()),
        }
        request.set_body(data);
        let response = self
            .send(
                request,
                "Put Blob",
                key.as_str(),
                context(&options.mode),
                &[201],
            )
            .await?;
        let headers = response.headers();
        let etag = header(headers, ETAG)
            .map(ETag::new)
            .ok_or_else(|| missing("Put Blob", key.as_str(), "ETag"))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            etag,
            last_modified: header(headers, LAST_MODIFIED)
                .map(|v| parse_http_date(Some(v)))
                .unwrap_or_else(SystemTime::now),
            content_type: options.content_type,
            metadata: options.metadata,
            sha256: Some(sha256),
        })
    }

    /// One Get Blob; `range` is the `x-ms-range` value.
    async fn get_once(
        &self,
        key: &Key,
        range: Option<(u64, Option<u64>)>,
        if_match: Option<&ETag>,
    ) -> Result<AsyncRawResponse> {
        let mut request = Request::new(self.blob_url(key), Method::Get);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), false);
        if let Some((start, last)) = range {
            let value = match last {
                Some(last) => format!("bytes={start}-{last}"),
                None => format!("bytes={start}-"),
            };
            request.insert_header("x-ms-range", value);
        }
        let context = match if_match {
            Some(etag) => {
                request.insert_header("if-match", etag.quoted());
                Context::IfMatch(etag.clone())
            }
            None => Context::Plain,
        };
        self.send(request, "Get Blob", key.as_str(), context, &[200, 206])
            .await
    }

    /// The error for a range the object cannot serve, with its size.
    async fn invalid_range(&self, key: &Key, range: &ByteRange) -> Error {
        Error::InvalidRange {
            key: key.to_string(),
            range: range.to_string(),
            size: self.head(key).await.map(|m| m.size).unwrap_or(0),
        }
    }

    /// One List Blobs page, names as stored.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: bool,
        max_results: usize,
        marker: Option<&str>,
        start_from: Option<&str>,
    ) -> Result<RawPage> {
        let mut url = self.inner.container_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("maxresults", &max_results.to_string());
            if !prefix.is_empty() {
                query.append_pair("prefix", prefix);
            }
            if delimiter {
                query.append_pair("delimiter", "/");
            }
            if let Some(marker) = marker {
                query.append_pair("marker", marker);
            }
            if let Some(start_from) = start_from {
                query.append_pair("startFrom", start_from);
            }
        }
        let request = Request::new(url, Method::Get);
        let response = self
            .send(request, "List Blobs", prefix, Context::Bucket, &[200])
            .await?;
        let body = self
            .timed("List Blobs", response.into_body().collect())
            .await?
            .map_err(|e| from_sdk(e, "List Blobs", self.container(), prefix, Context::Bucket))?;
        let text = std::str::from_utf8(&body)
            .map_err(|e| Error::backend(false, "Azure List Blobs: the answer is not UTF-8", e))?;
        list::parse(text, self.container())
    }

    /// Whether any blob under `group` sorts after `after` (which starts with
    /// `group`): decides whether a common prefix that `start_after` falls
    /// inside is listed.
    async fn any_after(&self, group: &str, after: &str) -> Result<bool> {
        let mut marker: Option<String> = None;
        loop {
            let start_from = marker.is_none().then_some(after);
            let page = self
                .list_page(group, false, 100, marker.as_deref(), start_from)
                .await?;
            if page.blobs.iter().any(|b| b.name.as_str() > after) {
                return Ok(true);
            }
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => return Ok(false),
            }
        }
    }
}

/// The `If-Match` and `If-None-Match` headers of a put mode.
pub(crate) fn conditions(mode: &PutMode) -> (Option<Etag>, Option<Etag>) {
    match mode {
        PutMode::Overwrite => (None, None),
        PutMode::IfNotExists => (None, Some(Etag::from("*"))),
        PutMode::IfMatch(etag) => (Some(to_etag(etag)), None),
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

/// Streams the response body; on a full read with a recorded SHA-256, ends
/// with the checksum's verdict.
fn body_stream(response: AsyncRawResponse, key: Key, expected: Option<[u8; 32]>) -> ByteStream {
    let name = key.to_string();
    let chunks = response
        .into_body()
        .map_err(move |e| {
            Error::backend(
                true,
                format!("Azure Get Blob of {name}: the body failed"),
                e,
            )
        })
        .boxed();
    storage_core::raw::integrity::verify_sha256(chunks, key, expected)
}

#[async_trait]
impl Backend for AzureBackend {
    fn name(&self) -> &str {
        "azure"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: true,
            conditional_delete: true,
            presigned_urls: self.inner.account_key.is_some(),
            server_side_copy: self.inner.account_key.is_some(),
            checksums: true,
            unique_etags: true,
            ..Capabilities::none(Locality::Remote)
        }
    }

    /// [`Error::Unsupported`] unless the backend authenticates with an
    /// account key ([`Capabilities::presigned_urls`]);
    /// [`Error::InvalidArgument`] for a zero expiry.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        self.check_name(key)?;
        self.sas_url(key, method, expires_in)
    }

    /// Get Container Properties: 404 is [`Error::BucketNotFound`], a
    /// refused signature or token [`Error::Unauthenticated`] or
    /// [`Error::PermissionDenied`], no answer a transient [`Error::Backend`].
    async fn health(&self) -> Result<()> {
        let answer = self
            .timed(
                "Get Container Properties",
                self.inner.container.get_properties(None),
            )
            .await
            .and_then(|answer| {
                answer.map_err(|e| {
                    from_sdk(
                        e,
                        "Get Container Properties",
                        self.container(),
                        self.container(),
                        Context::Bucket,
                    )
                })
            });
        answer
            .map(|_| ())
            .map_err(|e| storage_core::raw::health_failure(e, &self.inner.container_url))
    }

    async fn put(&self, key: &Key, body: Body, mut options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        self.check_name(key)?;
        options
            .content_type
            .get_or_insert_with(|| DEFAULT_CONTENT_TYPE.to_owned());
        let config = &self.inner.config;
        let in_memory = body.as_bytes().is_some();
        match body.len() {
            Some(len)
                if (len < config.block_threshold
                    || (in_memory && len <= config.single_put_in_memory))
                    && config.single_put_limit().is_none_or(|limit| len <= limit) =>
            {
                let data = body.into_bytes().await?;
                self.put_single(key, data, None, options).await
            }
            _ => self.put_blocks(key, body, options).await,
        }
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.check_name(key)?;
        let mut if_match = options.if_match.clone();
        let mut pinned = false;
        let header_range = match options.range {
            None => None,
            Some(range @ ByteRange::Bounded { start, end }) => {
                if start >= end {
                    return Err(self.invalid_range(key, &range).await);
                }
                Some((start, Some(end - 1)))
            }
            Some(ByteRange::From { start }) => Some((start, None)),
            Some(range @ ByteRange::Suffix { .. }) => {
                // No suffix ranges on Azure: read the size, then pin the
                // read to that version.
                let head = self.head(key).await?;
                if let Some(expected) = &if_match
                    && *expected != head.etag
                {
                    return Err(Error::PreconditionFailed {
                        key: key.to_string(),
                        expected: expected.clone(),
                        actual: Some(head.etag),
                    });
                }
                let resolved = range.resolve(key, head.size)?;
                pinned = if_match.is_none();
                if_match = Some(head.etag);
                Some((resolved.start, Some(resolved.end - 1)))
            }
        };
        let response = match self.get_once(key, header_range, if_match.as_ref()).await {
            Ok(response) => response,
            Err(Error::InvalidRange { .. }) => {
                let range = options.range.unwrap_or(ByteRange::From { start: 0 });
                return Err(self.invalid_range(key, &range).await);
            }
            Err(Error::PreconditionFailed { .. }) if pinned => {
                // The object changed between the size and the read.
                return Err(Error::backend(
                    true,
                    format!("Azure Get Blob of {key}: the object changed during a suffix read"),
                    "ConditionNotMet on the pinned version",
                ));
            }
            // Azure answers 412 to If-Match on a missing blob; the contract
            // says NotFound (DESIGN section 2, rule 5).
            Err(e @ Error::PreconditionFailed { .. }) => {
                return Err(match self.head(key).await {
                    Err(missing @ Error::NotFound { .. }) => missing,
                    _ => e,
                });
            }
            Err(e) => return Err(e),
        };
        let headers = response.headers();
        let length = header(headers, CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let (served, size) =
            match header(headers, CONTENT_RANGE).and_then(storage_core::raw::parse_content_range) {
                Some(parsed) => parsed,
                None => (0..length, length),
            };
        if let Some(requested) = &options.range {
            // Azurite answers a range starting at the size with 206 and no
            // bytes, and some servers ignore ranges on empty blobs.
            let resolved = requested.resolve(key, size)?;
            if served.start != resolved.start {
                return Err(Error::backend(
                    false,
                    format!(
                        "Azure Get Blob of {key}: asked for {requested}, the server sent bytes {}..{}",
                        served.start, served.end
                    ),
                    "range mismatch",
                ));
            }
        }
        let meta = Self::meta_from_headers(key, headers, size, "Get Blob")?;
        let verify = if options.range.is_none() {
            meta.sha256
        } else {
            None
        };
        let body = body_stream(response, key.clone(), verify);
        Ok(GetResult::new(meta, served, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.check_name(key)?;
        let mut request = Request::new(self.blob_url(key), Method::Head);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), false);
        let response = self
            .send(
                request,
                "Get Blob Properties",
                key.as_str(),
                Context::Plain,
                &[200],
            )
            .await?;
        let size = header(response.headers(), CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Self::meta_from_headers(key, response.headers(), size, "Get Blob Properties")
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.check_name(key)?;
        let context = match &options.if_match {
            Some(etag) => Context::IfMatch(etag.clone()),
            None => Context::Plain,
        };
        let request = BlobClientDeleteOptions {
            if_match: options.if_match.as_ref().map(to_etag),
            delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
            ..Default::default()
        };
        let blob = self.blob_client(key);
        match self
            .timed("Delete Blob", blob.delete(Some(request)))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error(e, "Delete Blob", key.as_str(), context).await {
                // Without If-Match a missing blob reads as NotFound: deleted.
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.check_name(from)?;
        self.check_name(to)?;
        // Copy Blob cannot carry a customer-provided key: such blobs are
        // copied through this client, read and written with the key.
        let customer_key = matches!(
            self.config().encryption,
            Some(crate::encryption::AzureEncryption::CustomerKey(_))
        );
        if self.inner.account_key.is_none() || customer_key {
            return storage_core::raw::copy_through_client(self, from, to, mode).await;
        }
        let source = self.sas_url(from, PresignMethod::Get, Duration::from_secs(3600))?;
        let mut request = Request::new(self.blob_url(to), Method::Put);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), true);
        request.insert_header("x-ms-copy-source", source);
        request.insert_header("content-length", "0");
        match &mode {
            PutMode::Overwrite => {}
            PutMode::IfNotExists => request.insert_header("if-none-match", "*"),
            PutMode::IfMatch(etag) => request.insert_header("if-match", etag.quoted()),
        }
        let response = match self
            .send(request, "Copy Blob", to.as_str(), context(&mode), &[202])
            .await
        {
            Ok(response) => response,
            Err(err) => {
                // A missing source is NotFound whatever the destination's
                // condition.
                if matches!(
                    err,
                    Error::NotFound { .. } | Error::PreconditionFailed { .. }
                ) {
                    self.head(from).await?;
                }
                return Err(err);
            }
        };
        let mut status = header(response.headers(), "x-ms-copy-status").map(str::to_owned);
        let copy_id = header(response.headers(), "x-ms-copy-id").map(str::to_owned);
        let deadline = tokio::time::Instant::now() + self.inner.config.copy_timeout;
        while status.as_deref() == Some("pending") {
            if tokio::time::Instant::now() >= deadline {
                let outcome = self.abort_copy(to, copy_id.as_deref()).await;
                // The copy may have finished just before the abort.
                if outcome.starts_with("aborting it failed") && self.copy_succeeded(to).await {
                    return self.head(to).await;
                }
                // Not transient: a copy that outlives its deadline would
                // outlive it again if retried.
                return Err(Error::backend(
                    false,
                    format!(
                        "Azure Copy Blob of {from} to {to}: still pending after the copy timeout; {outcome}"
                    ),
                    "copy pending",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let request = Request::new(self.blob_url(to), Method::Head);
            let probe = self
                .send(
                    request,
                    "Get Blob Properties",
                    to.as_str(),
                    Context::Plain,
                    &[200],
                )
                .await?;
            status = header(probe.headers(), "x-ms-copy-status").map(str::to_owned);
        }
        if let Some(failed) = status.filter(|s| s != "success") {
            return Err(Error::backend(
                false,
                format!("Azure Copy Blob of {from} to {to}: {failed}"),
                "copy failed",
            ));
        }
        self.head(to).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let page_size = options.effective_page_size()?;
        let base = self.inner.config.prefix.as_str();
        let prefix = format!("{base}{}", options.prefix);
        let after = options.start_after.as_ref().map(|s| format!("{base}{s}"));
        let mut marker = options.continuation.clone();
        loop {
            let start_from = if marker.is_none() {
                after.as_deref()
            } else {
                None
            };
            let raw = self
                .list_page(
                    &prefix,
                    options.delimiter,
                    page_size,
                    marker.as_deref(),
                    start_from,
                )
                .await?;
            let strip = |name: &str| name.strip_prefix(base).map(str::to_owned);
            let mut page = ListPage::default();
            for blob in raw.blobs {
                if after.as_deref().is_some_and(|a| blob.name.as_str() <= a) {
                    continue;
                }
                // Staged state and transaction records have their own
                // listing.
                let Some(key) =
                    strip(&blob.name).and_then(|k| storage_core::raw::stored_key(&k).ok())
                else {
                    continue;
                };
                if key.is_reserved() && !options.reserved {
                    continue;
                }
                page.objects.push(ObjectMeta {
                    key,
                    size: blob.size,
                    etag: ETag::new(&blob.etag),
                    last_modified: parse_http_date(blob.last_modified.as_deref()),
                    content_type: None,
                    metadata: Metadata::new(),
                    sha256: None,
                });
            }
            for group in raw.prefixes {
                let keep = match after.as_deref() {
                    None => true,
                    Some(a) if group.as_str() > a => true,
                    Some(a) if a.starts_with(group.as_str()) => self.any_after(&group, a).await?,
                    Some(_) => false,
                };
                if keep
                    && let Some(stripped) = strip(&group)
                    && (options.reserved || !storage_core::raw::is_reserved_name(&stripped))
                {
                    page.common_prefixes.push(stripped);
                }
            }
            page.common_prefixes.sort();
            page.continuation = raw.next_marker;
            if !page.objects.is_empty()
                || !page.common_prefixes.is_empty()
                || page.continuation.is_none()
            {
                return Ok(page);
            }
            marker = page.continuation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AzureConfig;

    fn offline() -> AzureBackend {
        AzureConfig::emulator("http://127.0.0.1:9/devstoreaccount1", "box")
            .prefix("tenant/")
            .build()
            .expect("config")
    }

    #[test]
    fn blob_urls_encode_the_whole_name_as_one_segment() {
        let key = Key::new("a b/c#d").expect("key");
        assert_eq!(
            offline().blob_url(&key).as_str(),
            "http://127.0.0.1:9/devstoreaccount1/box/tenant%2Fa%20b%2Fc%23d"
        );
    }

    #[test]
    fn this_crates_blob_urls_are_the_sdks_for_every_tricky_key() {
        let store = offline();
        for name in storage_conformance::suites::list::ESCAPED_KEYS
            .iter()
            .chain(&storage_conformance::suites::list::TRICKY_KEYS)
        {
            let key = Key::new(name).expect("key");
            assert_eq!(
                store.blob_url(&key).as_str(),
                store.blob_client(&key).url().as_str(),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_prefixed_name_over_1024_characters_is_rejected_before_io() {
        let key = Key::new("k".repeat(1020)).expect("key");
        let err = offline()
            .put(&key, Body::from("x"), PutOptions::default())
            .await;
        assert!(matches!(err, Err(Error::InvalidKey { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn presigned_urls_carry_a_blob_sas() {
        let key = Key::new("r/1.csv").expect("key");
        let url = offline()
            .presign(PresignMethod::Get, &key, Duration::from_secs(60))
            .await
            .expect("url");
        assert!(
            url.starts_with("http://127.0.0.1:9/devstoreaccount1/box/tenant%2Fr%2F1.csv?sv="),
            "{url}"
        );
        assert!(url.contains("&sr=b&sp=r&"), "{url}");
    }

    use crate::test_server::{Reply, Seen, TestServer};
    use bytes::Bytes;
    use storage_core::{BackendExt, DeleteOptions, ListOptions};

    fn azure_error(status: u16, code: Option<&str>) -> Reply {
        let reply = Reply::status(status);
        match code {
            Some(code) => reply
                .header("x-ms-error-code", code)
                .header("content-type", "application/xml")
                .body(format!(
                    "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>scripted</Message></Error>"
                )),
            None => reply,
        }
    }

    fn scripted(server: &TestServer) -> AzureBackend {
        AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
            .build()
            .expect("config")
    }

    /// Get Container Properties (`HEAD …/box?restype=container`).
    fn is_container_probe(seen: &Seen) -> bool {
        seen.method == "HEAD" && seen.has_query("restype")
    }

    #[tokio::test]
    async fn every_operation_on_a_missing_container_is_bucket_not_found() {
        // Azure and Azurite: `ContainerNotFound` in the header of every
        // failed answer, and in the body of those that have one.
        let server = TestServer::start(|_: &Seen| azure_error(404, Some("ContainerNotFound")));
        let store = scripted(&server);
        let k = Key::new("k").expect("key");
        let stale = ETag::new("e1");
        let one_shot = || Body::stream(futures::stream::iter([Ok(Bytes::from("x"))]).boxed(), None);
        let with_mode = |mode: PutMode| PutOptions {
            mode,
            ..PutOptions::default()
        };
        let listing = ListOptions {
            delimiter: true,
            ..ListOptions::default()
        };
        let outcomes: Vec<(&str, Result<()>)> = vec![
            ("exists", store.exists(&k).await.map(|_| ())),
            ("head", store.head(&k).await.map(|_| ())),
            ("get", store.get_bytes(&k).await.map(|_| ())),
            ("get range", store.get_range(&k, 1..3).await.map(|_| ())),
            (
                "get suffix",
                store
                    .get(
                        &k,
                        GetOptions {
                            range: Some(ByteRange::Suffix { len: 2 }),
                            ..GetOptions::default()
                        },
                    )
                    .await
                    .map(|_| ()),
            ),
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
                        with_mode(PutMode::IfMatch(stale.clone())),
                    )
                    .await
                    .map(|_| ()),
            ),
            (
                "staged blocks",
                store
                    .put(&k, one_shot(), PutOptions::default())
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
                            if_match: Some(stale.clone()),
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
                matches!(&outcome, Err(Error::BucketNotFound { bucket }) if bucket == "box"),
                "{operation}: {outcome:?}"
            );
        }
        assert!(
            !server.seen().iter().any(is_container_probe),
            "the code said it all: no Get Container Properties"
        );
    }

    #[tokio::test]
    async fn a_404_without_a_code_asks_the_container_once_and_remembers_it() {
        let server = TestServer::start(|seen: &Seen| {
            if is_container_probe(seen) {
                Reply::status(200)
            } else {
                azure_error(404, None)
            }
        });
        let store = scripted(&server);
        let k = Key::new("k").expect("key");
        assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
        assert_eq!(store.exists(&k).await.ok(), Some(false));
        assert!(store.delete(&k, DeleteOptions::default()).await.is_ok());
        let probes = server
            .seen()
            .iter()
            .filter(|s| is_container_probe(s))
            .count();
        assert_eq!(probes, 1, "{:#?}", server.seen());
    }

    #[tokio::test]
    async fn a_404_without_a_code_on_a_missing_container_is_bucket_not_found() {
        let server = TestServer::start(|_: &Seen| azure_error(404, None));
        let store = scripted(&server);
        let k = Key::new("k").expect("key");
        let err = store.exists(&k).await;
        assert!(matches!(err, Err(Error::BucketNotFound { .. })), "{err:?}");
        let err = store.delete(&k, DeleteOptions::default()).await;
        assert!(matches!(err, Err(Error::BucketNotFound { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn presigned_urls_need_an_account_key() {
        let store = AzureConfig::new("acct", "box")
            .sas_token("sv=2022-11-02&sig=x")
            .build()
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
