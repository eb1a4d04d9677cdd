//! Multipart upload: the body is cut into parts as it streams in, several
//! parts are in flight at once, and the upload is aborted on every failure
//! path, a dropped future included.

use std::pin::pin;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use futures::stream::TryStreamExt;
use sha2::{Digest, Sha256};
use storage_core::{Body, ETag, Error, Key, ObjectMeta, PutMode, PutOptions, Result};
use tokio::task::JoinSet;

use crate::S3Backend;
use crate::error::{Context, from_sdk, missing};

/// Aborts the upload when dropped unless disarmed, so that a failed or
/// cancelled put leaves no parts behind. The abort of a dropped upload runs
/// as a task on the current tokio runtime.
struct AbortOnDrop {
    client: aws_sdk_s3::Client,
    bucket: String,
    name: String,
    upload_id: Option<String>,
}

impl AbortOnDrop {
    async fn abort_now(&mut self) {
        if let Some(id) = self.upload_id.take() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.name)
                .upload_id(id)
                .send()
                .await;
        }
    }

    fn disarm(&mut self) {
        self.upload_id = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, name) = (self.client.clone(), self.bucket.clone(), self.name.clone());
        runtime.spawn(async move {
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(name)
                .upload_id(id)
                .send()
                .await;
        });
    }
}

impl S3Backend {
    /// Uploads `body` in parts and completes the upload under `options.mode`.
    pub(crate) async fn put_multipart(
        &self,
        key: &Key,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let name = self.full_key(key);
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(&name)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_content_type(options.content_type.clone());
        for (k, v) in &options.metadata {
            create = create.metadata(k, v);
        }
        let created = match create.send().await {
            Ok(created) => created,
            Err(e) => {
                let op = "CreateMultipartUpload";
                return Err(self.error(e, op, key.as_str(), Context::Plain).await);
            }
        };
        let upload_id = created
            .upload_id()
            .ok_or_else(|| missing("CreateMultipartUpload", key.as_str(), "upload id"))?
            .to_owned();
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.config.bucket.clone(),
            name: name.clone(),
            upload_id: Some(upload_id.clone()),
        };
        match self
            .upload_and_complete(key, &name, &upload_id, body, &options)
            .await
        {
            Ok(meta) => {
                guard.disarm();
                Ok(meta)
            }
            Err(e) => {
                guard.abort_now().await;
                Err(e)
            }
        }
    }

    async fn upload_and_complete(
        &self,
        key: &Key,
        name: &str,
        upload_id: &str,
        body: Body,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        let part_size = self.config.part_size as usize;
        let mut chunks = pin!(body.into_stream());
        // Parts upload on their own tasks while the body is read; dropping
        // the set (a failed or cancelled put) cancels them.
        let mut in_flight = JoinSet::new();
        let mut completed = Vec::new();
        let mut buffer = BytesMut::new();
        let mut number = 0i32;
        let mut size = 0u64;
        let mut ended = false;
        while !ended || !buffer.is_empty() || number == 0 {
            // Fill one part (or take the rest at the end of the body).
            while buffer.len() < part_size && !ended {
                match chunks.try_next().await? {
                    Some(chunk) => buffer.extend_from_slice(&chunk),
                    None => ended = true,
                }
            }
            let take = buffer.len().min(part_size);
            let part = buffer.split_to(take).freeze();
            number += 1;
            size += part.len() as u64;
            let upload = PartUpload {
                client: self.client.clone(),
                bucket: self.config.bucket.clone(),
                name: name.to_owned(),
                upload_id: upload_id.to_owned(),
                key: key.clone(),
            };
            in_flight.spawn(upload.send(number, part));
            if in_flight.len() >= self.config.parts_in_flight
                && let Some(done) = in_flight.join_next().await
            {
                completed.push(joined(done)?);
            }
        }
        while let Some(done) = in_flight.join_next().await {
            completed.push(joined(done)?);
        }
        completed.sort_by_key(|p: &CompletedPart| p.part_number());
        let mut complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.config.bucket)
            .key(name)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            );
        let context = match &options.mode {
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
        let output = match complete.send().await {
            Ok(output) => output,
            Err(e) => {
                let op = "CompleteMultipartUpload";
                return Err(self.error(e, op, key.as_str(), context).await);
            }
        };
        let etag = output
            .e_tag()
            .map(ETag::new)
            .ok_or_else(|| missing("CompleteMultipartUpload", key.as_str(), "ETag"))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            etag,
            last_modified: std::time::SystemTime::now(),
            content_type: options.content_type.clone(),
            metadata: options.metadata.clone(),
            sha256: None,
        })
    }
}

fn joined(
    done: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
) -> Result<CompletedPart> {
    done.map_err(|e| Error::backend(false, "a part upload task failed", e))?
}

/// What a part upload task needs.
struct PartUpload {
    client: aws_sdk_s3::Client,
    bucket: String,
    name: String,
    upload_id: String,
    key: Key,
}

impl PartUpload {
    /// Uploads part `number` with its SHA-256, which the server verifies.
    async fn send(self, number: i32, part: Bytes) -> Result<CompletedPart> {
        let checksum = BASE64.encode(Sha256::digest(&part));
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.name)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(part.len() as i64)
            .checksum_sha256(checksum.clone())
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| {
                from_sdk(
                    e,
                    "UploadPart",
                    &self.bucket,
                    self.key.as_str(),
                    Context::Plain,
                )
            })?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(output.e_tag().map(str::to_owned))
            .checksum_sha256(checksum)
            .build())
    }
}
