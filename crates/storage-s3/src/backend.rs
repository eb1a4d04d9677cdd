//! The `Backend` implementation of `S3Backend`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, MetadataDirective};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use storage_core::raw;
use storage_core::{
    Backend, Body, ByteRange, ByteStream as BodyStream, Capabilities, DeleteOptions, ETag, Error,
    GetOptions, GetResult, Key, ListOptions, ListPage, Locality, Metadata, ObjectMeta,
    PresignMethod, PutMode, PutOptions, Result,
};

use crate::config::S3Config;
use crate::error::{Class, Context, classify_sdk, from_sdk, missing};

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
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) config: S3Config,
    /// Whether HeadBucket found the bucket (see the type's docs).
    bucket_exists: Arc<AtomicBool>,
}

/// Longest object name S3 accepts, in bytes.
const S3_MAX_KEY_BYTES: usize = 1024;

/// Content type stored when a put gives none: S3 always stores one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

fn quoted(etag: &ETag) -> String {
    etag.quoted()
}

fn modified(dt: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    dt.and_then(|d| SystemTime::try_from(*d).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn sha256_of(header: Option<&str>) -> Option<[u8; 32]> {
    // Multipart objects report a composite checksum ("…-N"), not the
    // content's SHA-256.
    let decoded = BASE64.decode(header?).ok()?;
    decoded.try_into().ok()
}

impl S3Backend {
    pub(crate) fn new(client: aws_sdk_s3::Client, config: S3Config) -> Self {
        S3Backend {
            client,
            config,
            bucket_exists: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Converts an SDK error of operation `op` on `key`; a 404 that does not
    /// say whether the key or the bucket is missing asks the bucket first
    /// (see the type's docs).
    pub(crate) async fn error<E>(
        &self,
        err: aws_sdk_s3::error::SdkError<E, HttpResponse>,
        op: &str,
        key: &str,
        context: Context,
    ) -> Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let ambiguous = classify_sdk(&err) == Some(Class::KeyOrBucketNotFound)
            && !matches!(context, Context::Bucket);
        if ambiguous && let Some(bucket_error) = self.bucket_missing().await {
            return bucket_error;
        }
        let converted = from_sdk(err, op, &self.config.bucket, key, context);
        if matches!(converted, Error::BucketNotFound { .. }) {
            self.bucket_exists.store(false, Ordering::Relaxed);
        }
        converted
    }

    /// After a 404 that does not say what is missing: `BucketNotFound` when
    /// HeadBucket finds no bucket, its error when it fails transiently, and
    /// `None` (the key is missing) otherwise. A bucket found is remembered.
    async fn bucket_missing(&self) -> Option<Error> {
        if self.bucket_exists.load(Ordering::Relaxed) {
            return None;
        }
        let bucket = &self.config.bucket;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => {
                self.bucket_exists.store(true, Ordering::Relaxed);
                None
            }
            Err(e) => match from_sdk(e, "HeadBucket", bucket, bucket, Context::Bucket) {
                err @ Error::BucketNotFound { .. } => Some(err),
                err if err.is_transient() => Some(err),
                // 403 (HeadBucket needs s3:ListBucket) or anything else:
                // nothing says the bucket is missing.
                _ => None,
            },
        }
    }

    /// The object name in the bucket: the prefix, then the key.
    pub(crate) fn full_key(&self, key: &Key) -> String {
        format!("{}{}", self.config.prefix, key.as_str())
    }

    /// Checks that the prefixed name fits S3's 1,024-byte limit, before any
    /// I/O.
    fn check_length(&self, key: &Key) -> Result<()> {
        if self.config.prefix.len() + key.as_str().len() > S3_MAX_KEY_BYTES {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "with the configured prefix the name exceeds S3's 1024 bytes",
            });
        }
        Ok(())
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
            .client
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

    /// The SDK client, for operations this crate does not wrap.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The presigned URL of [`Backend::presign`]: SigV4 query signing, at
    /// most 7 days (S3 API reference, "Authenticating Requests: Using Query
    /// Parameters").
    async fn presigned(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        let config = presigning(expires_in)?;
        match method {
            PresignMethod::Get => {
                let request = self
                    .client
                    .get_object()
                    .bucket(&self.config.bucket)
                    .key(self.full_key(key))
                    .presigned(config)
                    .await;
                presigned_uri(request, "presign GetObject", self.bucket(), key)
            }
            PresignMethod::Put => {
                let request = self
                    .client
                    .put_object()
                    .bucket(&self.config.bucket)
                    .key(self.full_key(key))
                    .presigned(config)
                    .await;
                presigned_uri(request, "presign PutObject", self.bucket(), key)
            }
        }
    }

    /// The endpoint the client talks to, for messages: the configured one,
    /// or AWS's for the region.
    fn endpoint_name(&self) -> String {
        match (&self.config.endpoint, self.client.config().region()) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(region)) => format!("https://s3.{region}.amazonaws.com"),
            (None, None) => "https://s3.amazonaws.com".to_owned(),
        }
    }

    /// The public URL of `key` under the configured public base URL, if any.
    pub fn public_url(&self, key: &Key) -> Option<String> {
        let base = self.config.public_base_url.as_deref()?;
        Some(format!(
            "{}/{}",
            base.trim_end_matches('/'),
            self.full_key(key)
        ))
    }

    fn context(mode: &PutMode) -> Context {
        match mode {
            PutMode::Overwrite => Context::Plain,
            PutMode::IfNotExists => Context::Create,
            PutMode::IfMatch(etag) => Context::IfMatch(etag.clone()),
        }
    }

    /// One `PutObject` of a body held in memory, with its SHA-256 (`None`:
    /// computed here; the upload engine passes the one it computed).
    pub(crate) async fn put_single(
        &self,
        key: &Key,
        data: Bytes,
        sha256: Option<[u8; 32]>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let sha256: [u8; 32] = sha256.unwrap_or_else(|| Sha256::digest(&data).into());
        let size = data.len() as u64;
        let mut request =
            crate::encryption::on_write!(self.client.put_object(), self.config.encryption.as_ref())
                .bucket(&self.config.bucket)
                .key(self.full_key(key))
                .content_length(size as i64)
                .checksum_sha256(BASE64.encode(sha256))
                .body(ByteStream::from(data))
                .set_content_type(options.content_type.clone());
        for (k, v) in crate::metadata::to_s3(&options.metadata, None) {
            request = request.metadata(k, v);
        }
        request = match &options.mode {
            PutMode::Overwrite => request,
            PutMode::IfNotExists => request.if_none_match("*"),
            PutMode::IfMatch(etag) => request.if_match(quoted(etag)),
        };
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                let context = Self::context(&options.mode);
                return Err(self.error(e, "PutObject", key.as_str(), context).await);
            }
        };
        let etag = output
            .e_tag()
            .map(ETag::new)
            .ok_or_else(|| missing("PutObject", key.as_str(), "ETag"))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            etag,
            last_modified: SystemTime::now(),
            content_type: options.content_type,
            metadata: options.metadata,
            sha256: Some(sha256),
        })
    }

    fn meta_from_head(
        key: &Key,
        out: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
    ) -> Result<ObjectMeta> {
        Ok(ObjectMeta {
            key: key.clone(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out
                .e_tag()
                .map(ETag::new)
                .ok_or_else(|| missing_etag(key))?,
            last_modified: modified(out.last_modified()),
            content_type: out.content_type().map(str::to_owned),
            metadata: crate::metadata::from_s3(out.metadata()).0,
            sha256: sha256_of(out.checksum_sha256()),
        })
    }
}

/// A body of unknown length after [`buffer_below`].
enum Buffered {
    /// It ended below the threshold: these are all its bytes.
    Whole(Bytes),
    /// It reached the threshold: the bytes read so far, then the rest.
    Longer(Body),
}

/// Reads `body` until it ends or holds `threshold` bytes, so that a stream
/// of unknown length that turns out small goes as one PutObject (one
/// request, whole-object SHA-256) rather than as a multipart upload. At
/// most `threshold` bytes (plus one chunk) are held.
async fn buffer_below(body: Body, threshold: u64) -> Result<Buffered> {
    let mut stream = body.into_stream();
    let mut held: Vec<Bytes> = Vec::new();
    let mut size = 0u64;
    while size < threshold {
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                size += chunk.len() as u64;
                held.push(chunk);
            }
            None => {
                let mut whole = bytes::BytesMut::with_capacity(size as usize);
                for chunk in held {
                    whole.extend_from_slice(&chunk);
                }
                return Ok(Buffered::Whole(whole.freeze()));
            }
        }
    }
    let rest: BodyStream = futures::stream::iter(held.into_iter().map(Ok))
        .chain(stream)
        .boxed();
    Ok(Buffered::Longer(Body::stream(rest, None)))
}

/// The presigning settings for an expiry (S3 allows at most 7 days).
fn presigning(expires_in: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(expires_in).map_err(|e| Error::invalid_argument(e.to_string()))
}

/// The URL of a presigned request, or its mapped error.
fn presigned_uri<E>(
    request: std::result::Result<
        aws_sdk_s3::presigning::PresignedRequest,
        aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    >,
    op: &str,
    bucket: &str,
    key: &Key,
) -> Result<String>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    request
        .map(|r| r.uri().to_owned())
        .map_err(|e| from_sdk(e, op, bucket, key.as_str(), Context::Plain))
}

fn missing_etag(key: &Key) -> Error {
    missing("GetObject or HeadObject", key.as_str(), "ETag")
}

/// A multipart object's composite SHA-256 ("checksum of checksums": the
/// SHA-256 of its parts' SHA-256 digests, S3 User Guide, "Checking object
/// integrity", using part-level checksums for multipart uploads), with the
/// number of parts and their size.
struct Composite {
    digest: [u8; 32],
    parts: u64,
    part_size: u64,
}

/// The digest and part count of a composite checksum header
/// (`base64-N`), if it is one.
fn composite_of(header: Option<&str>) -> Option<([u8; 32], u64)> {
    let (digest, parts) = header?.rsplit_once('-')?;
    let digest: [u8; 32] = BASE64.decode(digest).ok()?.try_into().ok()?;
    Some((digest, parts.parse().ok()?))
}

/// Passes `body` through, hashing it part by part as `composite` lays it
/// out; at its end, fails with [`Error::ChecksumMismatch`] unless the
/// digest of the part digests and the number of parts match.
fn verify_composite(body: BodyStream, key: Key, composite: Composite) -> BodyStream {
    struct State {
        body: BodyStream,
        part: Sha256,
        in_part: u64,
        whole: Sha256,
        parts: u64,
    }
    let state = State {
        body,
        part: Sha256::new(),
        in_part: 0,
        whole: Sha256::new(),
        parts: 0,
    };
    let part_size = composite.part_size;
    stream::try_unfold(Some(state), move |state| {
        let key = key.clone();
        async move {
            let Some(mut s) = state else {
                return Ok(None);
            };
            match s.body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    let mut rest: &[u8] = &chunk;
                    while !rest.is_empty() {
                        let room = usize::try_from(part_size - s.in_part).unwrap_or(usize::MAX);
                        let (now, later) = rest.split_at(room.min(rest.len()));
                        s.part.update(now);
                        s.in_part += now.len() as u64;
                        if s.in_part == part_size {
                            s.whole.update(s.part.finalize_reset());
                            s.parts += 1;
                            s.in_part = 0;
                        }
                        rest = later;
                    }
                    Ok(Some((chunk, Some(s))))
                }
                None => {
                    if s.in_part > 0 {
                        s.whole.update(s.part.finalize_reset());
                        s.parts += 1;
                    }
                    let actual: [u8; 32] = s.whole.finalize().into();
                    if (actual, s.parts) != (composite.digest, composite.parts) {
                        return Err(Error::ChecksumMismatch {
                            key: key.to_string(),
                            expected: format!(
                                "{}-{}",
                                hex::encode(composite.digest),
                                composite.parts
                            ),
                            actual: format!(
                                "{}-{} (composite SHA-256 of the parts read)",
                                hex::encode(actual),
                                s.parts
                            ),
                        });
                    }
                    Ok(None)
                }
            }
        }
    })
    .boxed()
}

/// Streams the response body. A full read whose answer carries a plain
/// (single-part) `x-amz-checksum-sha256` is checked by the SDK, which
/// validates it whenever the request asked for checksums
/// (`x-amz-checksum-mode: ENABLED`, as every GetObject here does; see
/// `aws-sdk-s3`'s `ResponseChecksumInterceptor`), so the bytes are hashed
/// once; its verdict ends the body as [`Error::ChecksumMismatch`], never as
/// a transient failure to be retried.
fn body_stream(body: ByteStream, key: Key) -> BodyStream {
    let name = key.to_string();
    stream::try_unfold(body, |mut body| async move {
        Ok(body.try_next().await?.map(|chunk| (chunk, body)))
    })
    .map_err(
        move |e: aws_sdk_s3::primitives::ByteStreamError| match sdk_checksum_mismatch(&e) {
            Some((expected, actual)) => Error::ChecksumMismatch {
                key: name.clone(),
                expected: hex::encode(expected),
                actual: format!("{} (SHA-256 of the bytes read)", hex::encode(actual)),
            },
            None => Error::backend(true, format!("S3 GetObject of {name}: the body failed"), e),
        },
    )
    .boxed()
}

/// The expected and actual checksums of the SDK's checksum verdict, if
/// `error` (or an error it wraps) is one.
fn sdk_checksum_mismatch(
    error: &(dyn std::error::Error + 'static),
) -> Option<(bytes::Bytes, bytes::Bytes)> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(aws_smithy_checksums::body::validate::Error::ChecksumMismatch {
            expected,
            actual,
        }) = e.downcast_ref::<aws_smithy_checksums::body::validate::Error>()
        {
            return Some((expected.clone(), actual.clone()));
        }
        current = e.source();
    }
    None
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
        self.check_length(key)?;
        self.presigned(method, key, expires_in).await
    }

    /// `HeadBucket` (it needs `s3:ListBucket`): 404 is
    /// [`Error::BucketNotFound`], 403 [`Error::PermissionDenied`] (S3
    /// answers a HEAD with a bad signature with a bare 403 too), no answer
    /// a transient [`Error::Backend`].
    async fn health(&self) -> Result<()> {
        let bucket = &self.config.bucket;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(raw::health_failure(
                from_sdk(e, "HeadBucket", bucket, bucket, Context::Bucket),
                self.endpoint_name(),
            )),
        }
    }

    async fn put(&self, key: &Key, body: Body, mut options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        self.check_length(key)?;
        if options.mode != PutMode::Overwrite && !self.config.conditional_put {
            return Err(storage_core::raw::unsupported(self, "conditional put"));
        }
        options
            .content_type
            .get_or_insert_with(|| DEFAULT_CONTENT_TYPE.to_owned());
        let threshold = self.config.multipart_threshold;
        match body.len() {
            Some(len) if len < threshold => {
                let data = body.into_bytes().await?;
                self.put_single(key, data, None, options).await
            }
            Some(_) => self.put_multipart(key, body, options).await,
            None => match buffer_below(body, threshold).await? {
                Buffered::Whole(data) => self.put_single(key, data, None, options).await,
                Buffered::Longer(body) => self.put_multipart(key, body, options).await,
            },
        }
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        // Empty ranges have no HTTP form: answer them here, with the size.
        if let Some(range @ (ByteRange::Bounded { .. } | ByteRange::Suffix { .. })) = &options.range
        {
            let empty = match *range {
                ByteRange::Bounded { start, end } => start >= end,
                ByteRange::Suffix { len } => len == 0,
                ByteRange::From { .. } => false,
            };
            if empty {
                let size = self.head(key).await?.size;
                return Err(Error::InvalidRange {
                    key: key.to_string(),
                    range: range.to_string(),
                    size,
                });
            }
        }
        let mut request =
            crate::encryption::on_read!(self.client.get_object(), self.config.encryption.as_ref())
                .bucket(&self.config.bucket)
                .key(self.full_key(key))
                .checksum_mode(ChecksumMode::Enabled)
                .set_range(options.range.map(|r| r.to_string()));
        if let Some(etag) = &options.if_match {
            request = request.if_match(quoted(etag));
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                let err = self
                    .error(e, "GetObject", key.as_str(), Context::Plain)
                    .await;
                return Err(match (err, &options.if_match, &options.range) {
                    // Some S3-compatible stores answer 412 to If-Match on a
                    // missing key; the contract says NotFound (DESIGN
                    // section 2, rule 5), as AWS answers.
                    (
                        Error::PreconditionFailed {
                            key: name, actual, ..
                        },
                        Some(expected),
                        _,
                    ) => match self.head(key).await {
                        Err(missing @ Error::NotFound { .. }) => missing,
                        _ => Error::PreconditionFailed {
                            key: name,
                            expected: expected.clone(),
                            actual,
                        },
                    },
                    (Error::InvalidRange { key: k, .. }, _, Some(range)) => Error::InvalidRange {
                        key: k,
                        range: range.to_string(),
                        size: self.head(key).await.map(|m| m.size).unwrap_or(0),
                    },
                    (other, _, _) => other,
                });
            }
        };
        let length = output.content_length().unwrap_or(0).max(0) as u64;
        let (range, size) = match output
            .content_range()
            .and_then(storage_core::raw::parse_content_range)
        {
            Some(parsed) => parsed,
            None => (0..length, length),
        };
        // Some servers answer a range on an empty object with the empty
        // object; the contract (and AWS S3) says 416.
        if let (Some(requested), 0) = (&options.range, size) {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range: requested.to_string(),
                size: 0,
            });
        }
        let sha256 = sha256_of(output.checksum_sha256());
        let (metadata, part_size) = crate::metadata::from_s3(output.metadata());
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            etag: output
                .e_tag()
                .map(ETag::new)
                .ok_or_else(|| missing_etag(key))?,
            last_modified: modified(output.last_modified()),
            content_type: output.content_type().map(str::to_owned),
            metadata,
            sha256,
        };
        // Only full reads are checked: against the SHA-256, or, for a
        // multipart object written here, against the composite checksum
        // with the part size recorded at initiation.
        let full = options.range.is_none();
        let composite = composite_of(output.checksum_sha256())
            .zip(part_size)
            .filter(|_| full)
            .map(|((digest, parts), part_size)| Composite {
                digest,
                parts,
                part_size,
            });
        let body = body_stream(output.body, key.clone());
        let body = match composite {
            Some(composite) => verify_composite(body, key.clone(), composite),
            None => body,
        };
        Ok(GetResult::new(meta, range, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let sent =
            crate::encryption::on_read!(self.client.head_object(), self.config.encryption.as_ref())
                .bucket(&self.config.bucket)
                .key(self.full_key(key))
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await;
        match sent {
            Ok(output) => Self::meta_from_head(key, &output),
            Err(e) => Err(self
                .error(e, "HeadObject", key.as_str(), Context::Plain)
                .await),
        }
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        if options.if_match.is_some() && !self.config.conditional_delete {
            return Err(storage_core::raw::unsupported(self, "conditional delete"));
        }
        let mut request = self
            .client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(self.full_key(key));
        let context = match &options.if_match {
            Some(etag) => {
                request = request.if_match(quoted(etag));
                Context::IfMatch(etag.clone())
            }
            None => Context::Plain,
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.error(e, "DeleteObject", key.as_str(), context).await {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let page_size = options.effective_page_size()?;
        let prefix = &self.config.prefix;
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(format!("{prefix}{}", options.prefix))
            .max_keys(page_size as i32)
            .set_continuation_token(options.continuation.clone())
            .set_start_after(options.start_after.as_ref().map(|s| format!("{prefix}{s}")));
        if options.delimiter {
            request = request.delimiter("/");
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                return Err(self
                    .error(e, "ListObjectsV2", &options.prefix, Context::Bucket)
                    .await);
            }
        };
        let strip = |name: &str| name.strip_prefix(prefix.as_str()).map(str::to_owned);
        let objects = output
            .contents()
            .iter()
            .filter_map(|o| {
                // Staged state and transaction records have their own
                // listing.
                let key = raw::stored_key(&strip(o.key()?)?).ok()?;
                if key.is_reserved() && !options.reserved {
                    return None;
                }
                Some(ObjectMeta {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: ETag::new(o.e_tag()?),
                    last_modified: modified(o.last_modified()),
                    content_type: None,
                    metadata: Metadata::new(),
                    sha256: None,
                })
            })
            .collect();
        let common_prefixes = output
            .common_prefixes()
            .iter()
            .filter_map(|p| strip(p.prefix()?))
            .filter(|p| options.reserved || !raw::is_reserved_name(p))
            .collect();
        let continuation = output
            .is_truncated()
            .unwrap_or(false)
            .then(|| output.next_continuation_token().map(str::to_owned))
            .flatten();
        Ok(ListPage {
            objects,
            common_prefixes,
            continuation,
        })
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.check_length(to)?;
        if mode != PutMode::Overwrite && !self.config.conditional_copy {
            if !self.config.conditional_put {
                return Err(storage_core::raw::unsupported(self, "conditional copy"));
            }
            return storage_core::raw::copy_through_client(self, from, to, mode).await;
        }
        let source = copy_source(&self.config.bucket, &self.full_key(from));
        let encryption = self.config.encryption.as_ref();
        let copy = crate::encryption::on_write!(self.client.copy_object(), encryption);
        let mut request = crate::encryption::on_copy_source!(copy, encryption)
            .bucket(&self.config.bucket)
            .key(self.full_key(to))
            .copy_source(source)
            .metadata_directive(MetadataDirective::Copy);
        request = match &mode {
            PutMode::Overwrite => request,
            PutMode::IfNotExists => request.if_none_match("*"),
            PutMode::IfMatch(etag) => request.if_match(quoted(etag)),
        };
        if let Err(e) = request.send().await {
            // A missing source is 404 whatever the destination's condition.
            let err = self
                .error(e, "CopyObject", to.as_str(), Self::context(&mode))
                .await;
            if matches!(
                err,
                Error::NotFound { .. } | Error::PreconditionFailed { .. }
            ) {
                self.head(from).await?;
            }
            // CopyObject refuses sources over 5 GiB (400 InvalidRequest):
            // those are copied in parts, inside the service.
            if matches!(
                err,
                Error::Backend {
                    transient: false,
                    ..
                }
            ) {
                let source = self.head(from).await?;
                if source.size > crate::multipart::MAX_COPY_OBJECT_SIZE {
                    return self.copy_in_parts(from, &source, to, mode).await;
                }
            }
            return Err(err);
        }
        self.head(to).await
    }
}

/// The `x-amz-copy-source` of `name` in `bucket`.
pub(crate) fn copy_source(bucket: &str, name: &str) -> String {
    format!("{bucket}/{}", encode_copy_source(name))
}

/// Bytes escaped in a copy source (`x-amz-copy-source`): everything but
/// unreserved characters and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes a copy source, keeping `/`.
fn encode_copy_source(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, COPY_SOURCE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn public_urls_join_the_base_the_prefix_and_the_key() {
        let store = S3Config::new("bucket")
            .region("us-east-1")
            .credentials("id", "secret", None)
            .prefix("tenant/")
            .public_base_url("https://cdn.example.com/")
            .build()
            .await
            .expect("config");
        let key = Key::new("img/logo.png").expect("key");
        assert_eq!(
            store.public_url(&key).as_deref(),
            Some("https://cdn.example.com/tenant/img/logo.png")
        );
    }

    #[tokio::test]
    async fn a_prefixed_name_over_1024_bytes_is_rejected_before_io() {
        let store = S3Config::new("bucket")
            .endpoint("http://127.0.0.1:9")
            .region("us-east-1")
            .credentials("id", "secret", None)
            .prefix("p/")
            .build()
            .await
            .expect("config");
        let key = Key::new("k".repeat(1023)).expect("key");
        let err = store
            .put(&key, Body::from("x"), PutOptions::default())
            .await;
        assert!(matches!(err, Err(Error::InvalidKey { .. })), "{err:?}");
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(encode_copy_source("a/b c/é"), "a/b%20c/%C3%A9");
    }

    use crate::test_server::{Reply, Seen, TestServer};
    use futures::stream::StreamExt;
    use storage_core::{BackendExt, ListOptions};

    fn s3_error(status: u16, code: &str) -> Reply {
        Reply::status(status)
            .header("content-type", "application/xml")
            .body(format!(
                "<Error><Code>{code}</Code><Message>scripted</Message></Error>"
            ))
    }

    async fn scripted(server: &TestServer) -> S3Backend {
        S3Config::new("bucket")
            .endpoint(server.url())
            .path_style(true)
            .region("us-east-1")
            .credentials("id", "secret", None)
            .build()
            .await
            .expect("config")
    }

    fn is_bucket(seen: &Seen) -> bool {
        seen.path().trim_end_matches('/') == "/bucket"
    }

    /// What S3 (and SeaweedFS without bucket auto-creation) answers for a
    /// bucket that does not exist: `NoSuchBucket` in every body, a bare 404
    /// to HEAD.
    fn no_bucket(seen: &Seen) -> Reply {
        if seen.method == "HEAD" {
            Reply::status(404)
        } else {
            s3_error(404, "NoSuchBucket")
        }
    }

    #[tokio::test]
    async fn every_operation_on_a_missing_bucket_is_bucket_not_found() {
        let server = TestServer::start(no_bucket);
        let store = scripted(&server).await;
        let k = Key::new("k").expect("key");
        let stale = ETag::new("e1");
        let one_shot = || Body::stream(futures::stream::iter([Ok(Bytes::from("x"))]).boxed(), None);
        let with_mode = |mode: PutMode| PutOptions {
            mode,
            ..PutOptions::default()
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
                "multipart put",
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
                matches!(&outcome, Err(Error::BucketNotFound { bucket }) if bucket == "bucket"),
                "{operation}: {outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_miss_asks_the_bucket_once_and_remembers_it() {
        let server = TestServer::start(|seen: &Seen| {
            if is_bucket(seen) {
                Reply::status(200)
            } else {
                Reply::status(404)
            }
        });
        let store = scripted(&server).await;
        let k = Key::new("k").expect("key");
        assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
        assert_eq!(store.exists(&k).await.ok(), Some(false));
        let seen: Vec<(String, bool)> = server
            .seen()
            .iter()
            .map(|s| (s.method.clone(), is_bucket(s)))
            .collect();
        assert_eq!(
            seen,
            [
                ("HEAD".to_owned(), false),
                ("HEAD".to_owned(), true),
                ("HEAD".to_owned(), false)
            ],
            "one HeadBucket, then none"
        );
    }

    #[tokio::test]
    async fn a_bucket_that_cannot_be_asked_leaves_the_miss_to_the_key() {
        let server =
            TestServer::start(|seen: &Seen| Reply::status(if is_bucket(seen) { 403 } else { 404 }));
        let store = scripted(&server).await;
        let k = Key::new("k").expect("key");
        assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
        assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
        // Not remembered: each miss asks again.
        assert_eq!(server.seen().iter().filter(|s| is_bucket(s)).count(), 2);
    }

    #[tokio::test]
    async fn a_transient_head_bucket_failure_is_returned_as_such() {
        let server =
            TestServer::start(|seen: &Seen| Reply::status(if is_bucket(seen) { 503 } else { 404 }));
        let store = scripted(&server).await;
        let err = store.head(&Key::new("k").expect("key")).await;
        assert!(err.as_ref().is_err_and(Error::is_transient), "{err:?}");
    }
}
