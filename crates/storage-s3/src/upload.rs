//! Multipart upload through the upload engine of `storage_core::raw`: the
//! body is cut into parts as it streams in, several parts are in flight,
//! each failed part is sent again, and the upload is aborted on every
//! failure path, a dropped future included (S3 API: CreateMultipartUpload,
//! UploadPart, CompleteMultipartUpload, AbortMultipartUpload).
//!
//! Each part carries its SHA-256, which the server verifies. The part size
//! grows with a known length so that the body fits in S3's 10,000 parts,
//! in whole MiB; a body over 5 TiB (S3's largest object) fails before any
//! request. A body that turns out to fit in one part goes as one
//! PutObject.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use storage_core::raw::{self, ChunkedUpload, Part, UploadPlan, Uploaded};
use storage_core::{Backend, Body, ETag, Error, Key, ObjectMeta, PutMode, PutOptions, Result};

use crate::S3Backend;
use crate::error::{Context, missing};

/// Most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// Largest object S3 stores: 5 TiB.
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// Largest source CopyObject copies in one request: 5 GiB.
pub const MAX_COPY_OBJECT_SIZE: u64 = 5 << 30;

/// Part size of a copy in parts: 512 MiB (S3 allows up to 5 GiB per part;
/// larger objects get larger parts, in whole MiB, to fit 10,000).
const COPY_PART_SIZE: u64 = 512 * MIB;

const MIB: u64 = 1024 * 1024;

/// The part size for a body of `len` bytes (unknown: `None`): the
/// configured size, or the smallest whole number of MiB that fits the body
/// in [`MAX_PARTS`] parts when that is larger.
pub(crate) fn part_size_for(configured: u64, len: Option<u64>) -> u64 {
    let needed = len.map_or(0, |len| len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB);
    configured.max(needed)
}

impl S3Backend {
    /// Uploads `body` in parts and completes the upload under `options.mode`.
    pub(crate) async fn put_multipart(
        &self,
        key: &Key,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        if let Some(len) = body.len()
            && len > MAX_OBJECT_SIZE
        {
            return Err(Error::TooLarge {
                key: Some(key.to_string()),
                size: len,
                limit: MAX_OBJECT_SIZE,
            });
        }
        let plan = UploadPlan {
            part_size: part_size_for(self.config.part_size, body.len()),
            parts_in_flight: self.config.parts_in_flight,
            max_parts: MAX_PARTS,
        };
        let upload = S3Upload {
            backend: self.clone(),
            key: key.clone(),
            name: self.full_key(key),
            options,
            part_size: plan.part_size,
        };
        raw::upload(upload, key, body, plan).await
    }
}

/// One multipart upload's calls.
#[derive(Clone)]
struct S3Upload {
    backend: S3Backend,
    key: Key,
    name: String,
    options: PutOptions,
    /// Bytes per part (all but the last), recorded in the metadata.
    part_size: u64,
}

#[async_trait::async_trait]
impl ChunkedUpload for S3Upload {
    type Session = String;
    type Receipt = CompletedPart;

    async fn initiate(&self) -> Result<String> {
        let b = &self.backend;
        let mut create = crate::encryption::on_write!(
            b.sdk().await.create_multipart_upload(),
            b.config.encryption.as_ref()
        )
        .bucket(&b.config.bucket)
        .key(&self.name)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .set_content_type(self.options.content_type.clone());
        // The part size, so that a full read can check the composite
        // checksum.
        let records = crate::metadata::to_s3(&self.options.metadata, Some(self.part_size));
        for (k, v) in records {
            create = create.metadata(k, v);
        }
        let op = "CreateMultipartUpload";
        match create.send().await {
            Ok(created) => created
                .upload_id()
                .map(str::to_owned)
                .ok_or_else(|| missing(op, self.key.as_str(), "upload id")),
            Err(e) => Err(b.error(e, op, self.key.as_str(), Context::Plain).await),
        }
    }

    /// Uploads part `index + 1` with its SHA-256, which the server verifies.
    async fn upload_part(&self, upload_id: &String, part: &Part) -> Result<CompletedPart> {
        let b = &self.backend;
        let number = i32::try_from(part.index + 1)
            .map_err(|_| Error::invalid_argument("more parts than S3 numbers"))?;
        let checksum = BASE64.encode(Sha256::digest(&part.bytes));
        let sent =
            crate::encryption::on_read!(b.sdk().await.upload_part(), b.config.encryption.as_ref())
                .bucket(&b.config.bucket)
                .key(&self.name)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(part.bytes.len() as i64)
                .checksum_sha256(checksum.clone())
                .body(ByteStream::from(part.bytes.clone()))
                // Unsigned payload, checked by its signed checksum header,
                // as `put_single` explains.
                .customize()
                .disable_payload_signing()
                .send()
                .await;
        let output = match sent {
            Ok(output) => output,
            Err(e) => {
                return Err(b
                    .error(e, "UploadPart", self.key.as_str(), Context::Plain)
                    .await);
            }
        };
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(output.e_tag().map(str::to_owned))
            .checksum_sha256(checksum)
            .build())
    }

    async fn complete(
        &self,
        upload_id: &String,
        parts: Vec<CompletedPart>,
        whole: &Uploaded,
    ) -> Result<ObjectMeta> {
        // SSE-C: CompleteMultipartUpload needs the key when the upload was
        // created with a checksum algorithm, as every upload here is.
        let output = self.send_complete(upload_id, parts, true).await?;
        let op = "CompleteMultipartUpload";
        let etag = output
            .e_tag()
            .map(ETag::new)
            .ok_or_else(|| missing(op, self.key.as_str(), "ETag"))?;
        Ok(ObjectMeta {
            key: self.key.clone(),
            size: whole.size,
            etag,
            last_modified: std::time::SystemTime::now(),
            content_type: self.options.content_type.clone(),
            metadata: self.options.metadata.clone(),
            // A multipart object's metadata was sent before its content:
            // it does not record the SHA-256, so neither does this answer.
            sha256: None,
        })
    }

    async fn abort(&self, upload_id: &String) -> Result<()> {
        let b = &self.backend;
        let aborted = b
            .sdk()
            .await
            .abort_multipart_upload()
            .bucket(&b.config.bucket)
            .key(&self.name)
            .upload_id(upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => Ok(()),
            Err(e) => {
                let op = "AbortMultipartUpload";
                match b.error(e, op, self.key.as_str(), Context::Plain).await {
                    // Already completed or aborted: nothing is left.
                    Error::NotFound { .. } => Ok(()),
                    other => Err(other),
                }
            }
        }
    }

    async fn put_whole(&self, bytes: Bytes, whole: &Uploaded) -> Result<ObjectMeta> {
        self.backend
            .put_single(&self.key, bytes, Some(whole.sha256), self.options.clone())
            .await
    }
}

impl S3Backend {
    /// Copies `from` (whose metadata is `source`) to `to` inside the
    /// service with a multipart upload of `UploadPartCopy` parts (S3 API,
    /// UploadPartCopy; "Copy an object using multipart upload"): every part
    /// names the source's ETag (`x-amz-copy-source-if-match`), so a source
    /// replaced mid-copy fails the copy rather than mixing versions; the
    /// completion carries `mode`; any failure aborts the upload.
    pub(crate) async fn copy_in_parts(
        &self,
        from: &Key,
        source: &ObjectMeta,
        to: &Key,
        mode: PutMode,
    ) -> Result<ObjectMeta> {
        let options = PutOptions {
            mode,
            content_type: source.content_type.clone(),
            metadata: source.metadata.clone(),
        };
        let upload = S3Upload {
            backend: self.clone(),
            key: to.clone(),
            name: self.full_key(to),
            options,
            part_size: 0,
        };
        let upload_id = upload.initiate_plain().await?;
        let copied = upload.copy_parts(&upload_id, from, source).await;
        let done = match copied {
            Ok(parts) => upload.complete_parts(&upload_id, parts).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => self.head(to).await,
            Err(e) => {
                // What the abort leaves is reported with the copy's error.
                if let Err(abort) = upload.abort(&upload_id).await {
                    return Err(Error::backend(
                        e.is_transient(),
                        format!("{e}; aborting the multipart copy failed too: {abort}"),
                        e,
                    ));
                }
                Err(e)
            }
        }
    }
}

impl S3Upload {
    /// CreateMultipartUpload without a checksum algorithm (copied parts
    /// carry the source's bytes, checked by the service).
    async fn initiate_plain(&self) -> Result<String> {
        let b = &self.backend;
        let mut create = crate::encryption::on_write!(
            b.sdk().await.create_multipart_upload(),
            b.config.encryption.as_ref()
        )
        .bucket(&b.config.bucket)
        .key(&self.name)
        .set_content_type(self.options.content_type.clone());
        for (k, v) in crate::metadata::to_s3(&self.options.metadata, None) {
            create = create.metadata(k, v);
        }
        let op = "CreateMultipartUpload";
        match create.send().await {
            Ok(created) => created
                .upload_id()
                .map(str::to_owned)
                .ok_or_else(|| missing(op, self.key.as_str(), "upload id")),
            Err(e) => Err(b.error(e, op, self.key.as_str(), Context::Plain).await),
        }
    }

    /// The UploadPartCopy parts of `from`, `parts_in_flight` at a time.
    async fn copy_parts(
        &self,
        upload_id: &str,
        from: &Key,
        source: &ObjectMeta,
    ) -> Result<Vec<CompletedPart>> {
        use futures::{StreamExt, TryStreamExt};
        let b = &self.backend;
        let part_size = part_size_for(COPY_PART_SIZE, Some(source.size));
        let ranges: Vec<(i32, u64, u64)> = (0..source.size.div_ceil(part_size))
            .map(|i| {
                let first = i * part_size;
                let last = (first + part_size).min(source.size) - 1;
                (i as i32 + 1, first, last)
            })
            .collect();
        let copy_source = crate::write::copy_source(&b.config.bucket, &b.full_key(from));
        futures::stream::iter(ranges)
            .map(|(number, first, last)| {
                let copy_source = copy_source.clone();
                async move {
                    let request = crate::encryption::on_read!(
                        b.sdk().await.upload_part_copy(),
                        b.config.encryption.as_ref()
                    );
                    let sent =
                        crate::encryption::on_copy_source!(request, b.config.encryption.as_ref())
                            .bucket(&b.config.bucket)
                            .key(&self.name)
                            .upload_id(upload_id)
                            .part_number(number)
                            .copy_source(copy_source)
                            .copy_source_range(format!("bytes={first}-{last}"))
                            .copy_source_if_match(source.etag.quoted())
                            .send()
                            .await;
                    match sent {
                        Ok(output) => Ok(CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(
                                output
                                    .copy_part_result()
                                    .and_then(|r| r.e_tag())
                                    .map(str::to_owned),
                            )
                            .build()),
                        Err(e) => {
                            // A 412 here means the source changed mid-copy.
                            let context = Context::IfMatch(source.etag.clone());
                            Err(b.error(e, "UploadPartCopy", from.as_str(), context).await)
                        }
                    }
                }
            })
            .buffered(b.config.parts_in_flight)
            .try_collect()
            .await
    }

    /// CompleteMultipartUpload of copied parts, under the copy's mode.
    async fn complete_parts(&self, upload_id: &str, parts: Vec<CompletedPart>) -> Result<()> {
        // Created without a checksum algorithm: no SSE-C key needed.
        self.send_complete(upload_id, parts, false)
            .await
            .map(|_| ())
    }

    /// CompleteMultipartUpload of `parts` under the upload's mode, with the
    /// SSE-C key when `customer_key` (and SSE-C is configured).
    async fn send_complete(
        &self,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        customer_key: bool,
    ) -> Result<aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput>
    {
        let b = &self.backend;
        let mut complete = crate::encryption::on_read!(
            b.sdk().await.complete_multipart_upload(),
            b.config.encryption.as_ref().filter(|_| customer_key)
        )
        .bucket(&b.config.bucket)
        .key(&self.name)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        );
        let context = match &self.options.mode {
            PutMode::Overwrite => Context::Plain,
            PutMode::IfNotExists => {
                complete = complete.if_none_match("*");
                Context::Create
            }
            PutMode::IfMatch(etag) => {
                complete = complete.if_match(etag.quoted());
                Context::IfMatch(etag.clone())
            }
        };
        match complete.send().await {
            Ok(output) => Ok(output),
            Err(e) => Err(b
                .error(e, "CompleteMultipartUpload", self.key.as_str(), context)
                .await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_size_grows_to_fit_ten_thousand_parts_in_whole_mib() {
        let configured = 8 * MIB;
        assert_eq!(part_size_for(configured, None), configured);
        assert_eq!(part_size_for(configured, Some(80_000 * MIB)), configured);
        let len = 80_000 * MIB + 1;
        let size = part_size_for(configured, Some(len));
        assert_eq!((size, size % MIB), (9 * MIB, 0));
        assert!(len.div_ceil(size) <= MAX_PARTS);
    }
}
