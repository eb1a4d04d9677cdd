//! `S3Backend`: its settings, bucket creation, and the `Backend` trait
//! implemented by delegating to [`crate::read`], [`crate::write`],
//! [`crate::list`], [`crate::presign`] and [`crate::core`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, GetOptions, GetResult, Key, ListOptions, ListPage,
    Locality, ObjectMeta, PresignMethod, PutMode, PutOptions, Result,
};

use crate::config::S3Config;
use crate::error::{Context, from_sdk};
#[cfg(doc)]
use storage_core::Error;

/// An object store in an S3 bucket (AWS S3 or an S3-compatible server).
///
/// - Conditional puts send `If-None-Match: *` and `If-Match` (S3 conditional
///   writes, 2024); conditional deletes send `If-Match`. For S3-compatible
///   servers that ignore them, [`S3Config::conditional_put`],
///   [`S3Config::conditional_delete`] and [`S3Config::conditional_copy`]
///   turn them off: the capability is then false and such requests fail
///   with [`Error::Unsupported`] before any I/O (a conditional copy falls
///   back to a read and a conditional put). A 304 answer to `If-None-Match`
///   (some S3-compatible servers) reads as a failed precondition.
/// - A body of unknown length is read up to the multipart threshold before
///   the upload is chosen: one that ends below it goes as one PutObject.
/// - A put below the multipart threshold sends the body's SHA-256 as
///   `x-amz-checksum-sha256`, which the server verifies and stores; `head`
///   and `get` ask for it back (`x-amz-checksum-mode: ENABLED`) and a full
///   read is checked against it. Objects written by multipart upload carry
///   per-part SHA-256 checksums (verified by the server per part) but no
///   whole-object SHA-256: their `ObjectMeta::sha256` is `None`.
/// - Keys are stored under the configured prefix; listings strip it and skip
///   names that are not valid [`Key`]s (written by other clients).
/// - `copy` is `CopyObject` (server-side, metadata copied) for objects up to
///   5 GiB, and a multipart upload of `UploadPartCopy` parts (server-side
///   too, each part conditional on the source's ETag) for larger ones.
/// - A put without a content type stores [`DEFAULT_CONTENT_TYPE`]: S3 always
///   stores one, and `head` must report what `put` returned.
/// - ETags are the server's: for single-part uploads the MD5 of the content,
///   so writing the same bytes twice gives the same ETag (AWS S3 behaves so;
///   a compare-and-swap against such an ETag sees equal content).
/// - A missing bucket is [`Error::BucketNotFound`] on every operation, never
///   the [`Error::NotFound`] of a key: S3 names it (`NoSuchBucket`) in every
///   answer that has a body. A HEAD answer has none, so a 404 to HeadObject
///   (and any 404 whose code names neither the key nor the bucket) is
///   followed by one HeadBucket: 404 there is `BucketNotFound`, success
///   makes the 404 the key's and is remembered, so later misses cost no
///   second request; a transient failure of HeadBucket is returned as is.
///   The memory is cleared whenever an answer names the bucket missing.
#[derive(Debug, Clone)]
pub struct S3Backend {
    /// The SDK client, made on first use (see [`S3Config::build`]).
    client: Arc<tokio::sync::OnceCell<aws_sdk_s3::Client>>,
    pub(crate) config: S3Config,
    /// Whether HeadBucket found the bucket (see the type's docs).
    pub(crate) bucket_exists: Arc<AtomicBool>,
}

/// Content type stored when a put gives none: S3 always stores one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl S3Backend {
    pub(crate) fn new(config: S3Config) -> Self {
        S3Backend {
            client: Arc::new(tokio::sync::OnceCell::new()),
            config,
            bucket_exists: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// Creates the configured bucket; succeeds if this account already owns it.
    ///
    /// # Errors
    /// The mapped S3 error (see [`crate::error`]).
    pub async fn create_bucket(&self) -> Result<()> {
        match self
            .sdk()
            .await
            .create_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(from_sdk(
                e,
                "CreateBucket",
                &self.config.bucket,
                &self.config.bucket,
                Context::Bucket,
            )),
        }
    }

    /// The SDK client, for operations this crate does not wrap; made on
    /// first use (see [`S3Config::build`]).
    pub async fn client(&self) -> &aws_sdk_s3::Client {
        self.sdk().await
    }

    /// The SDK client: the shared AWS configuration (region, credentials
    /// chain, profile) is loaded by the first call, which later calls
    /// share.
    pub(crate) async fn sdk(&self) -> &aws_sdk_s3::Client {
        self.client.get_or_init(|| self.config.make_client()).await
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn name(&self) -> &str {
        "s3"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: self.config.conditional_put,
            conditional_delete: self.config.conditional_delete,
            presigned_urls: true,
            server_side_copy: true,
            checksums: true,
            // ETags are the MD5 of the content (of the parts, for multipart
            // uploads): the same bytes give the same ETag.
            unique_etags: false,
            ..Capabilities::none(Locality::Remote)
        }
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        self.presigned(method, key, expires_in).await
    }

    /// `HeadBucket` (it needs `s3:ListBucket`): 404 is
    /// [`storage_core::Error::BucketNotFound`], 403
    /// [`storage_core::Error::PermissionDenied`] (S3
    /// answers a HEAD with a bad signature with a bare 403 too), no answer
    /// a transient [`storage_core::Error::Backend`].
    async fn health(&self) -> Result<()> {
        self.head_bucket().await
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.put_object(key, body, options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.get_object(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.head_object(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.delete_object(key, options).await
    }

    /// `DeleteObjects`, 1000 keys per request.
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
