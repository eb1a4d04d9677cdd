//! `GcsBackend`: its shared state, bucket creation, and the `Backend` trait
//! implemented by delegating to [`crate::read`], [`crate::write`],
//! [`crate::list`], [`crate::presign`] and [`crate::core`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use gcloud_storage::client::Client;
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, GetOptions, GetResult, Key, ListOptions, ListPage,
    Locality, ObjectMeta, PresignMethod, PutMode, PutOptions, Result,
};
use token_source::TokenSource;

use crate::config::GcsConfig;
use crate::error::{Context, from_sdk};
#[cfg(doc)]
use storage_core::{ETag, Error};

/// Content type stored when a put gives none: GCS always stores one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

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
/// - `delete_many` sends JSON-API batch requests (`/batch/storage/v1`) of
///   up to 100 `DELETE` calls, each answered on its own.
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: GcsConfig,
    pub(crate) http: reqwest::Client,
    /// Whether the credentials hold a key that signs URLs (see
    /// [`GcsConfig::build`]).
    pub(crate) signs: bool,
    /// The SDK client and the access token, resolved from the credentials
    /// on first use (see [`GcsConfig::build`]).
    auth: tokio::sync::OnceCell<Auth>,
    /// Whether a bucket GET found the bucket (see [`GcsBackend`]).
    pub(crate) bucket_exists: AtomicBool,
}

/// What the credentials resolve to on first use.
pub(crate) struct Auth {
    /// The SDK client, authorized as the credentials say.
    pub(crate) client: Client,
    /// The source of access tokens for requests this crate builds (`None`:
    /// anonymous).
    pub(crate) token: Option<Arc<dyn TokenSource>>,
    /// Whether the resolved credentials can sign URLs.
    pub(crate) can_sign: bool,
}

impl std::fmt::Debug for GcsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBackend")
            .field("bucket", &self.inner.config.bucket)
            .field("prefix", &self.inner.config.prefix)
            .field("endpoint", &self.inner.config.endpoint)
            .field("can_sign", &self.can_sign())
            .finish_non_exhaustive()
    }
}

impl GcsBackend {
    pub(crate) fn new(config: GcsConfig, http: reqwest::Client, signs: bool) -> Self {
        GcsBackend {
            inner: Arc::new(Inner {
                config,
                http,
                signs,
                auth: tokio::sync::OnceCell::new(),
                bucket_exists: AtomicBool::new(false),
            }),
        }
    }

    /// A backend whose credentials are already resolved to `auth`.
    #[cfg(test)]
    pub(crate) fn with_auth(config: GcsConfig, http: reqwest::Client, auth: Auth) -> Self {
        let backend = GcsBackend::new(config, http, auth.can_sign);
        let set = backend.inner.auth.set(auth);
        assert!(set.is_ok(), "a new backend has no credentials yet");
        backend
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

    /// The client and access token, resolved from the credentials the
    /// first time a request needs them; a failure is returned and tried
    /// again by the next request.
    ///
    /// # Errors
    /// [`storage_core::Error::Unauthenticated`] when the credentials cannot
    /// be loaded.
    pub(crate) async fn auth(&self) -> Result<&Auth> {
        self.inner
            .auth
            .get_or_try_init(|| self.inner.config.resolve(&self.inner.http))
            .await
    }

    /// The SDK client (see [`GcsBackend::auth`]).
    ///
    /// # Errors
    /// As [`GcsBackend::auth`].
    pub(crate) async fn client(&self) -> Result<&Client> {
        Ok(&self.auth().await?.client)
    }

    /// Whether the credentials can sign URLs: a service account key (file or
    /// JSON text) with a private key, read by [`GcsConfig::build`].
    pub(crate) fn can_sign(&self) -> bool {
        self.inner.signs
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.config.bucket
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
            .timed(
                "insert bucket",
                self.client().await?.insert_bucket(&request),
            )
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
            presigned_urls: self.can_sign(),
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
        self.signed_url(key, method, expires_in).await
    }

    /// The bucket's metadata (`GET /storage/v1/b/{bucket}`), or where the
    /// credentials may not read it (403: no `storage.buckets.get`) a
    /// listing of one object: 404 is [`Error::BucketNotFound`], 401
    /// [`Error::Unauthenticated`], 403 on both [`Error::PermissionDenied`],
    /// no answer a transient [`Error::Backend`].
    async fn health(&self) -> Result<()> {
        self.check_health().await
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.put_object(key, body, options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.get_object(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.get_metadata(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.delete_object(key, options).await
    }

    /// Batch requests of up to 100 deletes (see [`GcsBackend`]).
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        self.delete_objects(keys).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.list_objects(options).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.copy_object(from, to, mode).await
    }
}
