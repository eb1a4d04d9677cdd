//! Writes of `S3Backend`: PutObject (multipart uploads are in
//! [`crate::upload`]), DeleteObject and CopyObject.

use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::stream::StreamExt;
use sha2::{Digest, Sha256};
use storage_core::{
    Backend, Body, ByteStream as BodyStream, DeleteOptions, ETag, Error, Key, ObjectMeta, PutMode,
    PutOptions, Result,
};

use crate::backend::{DEFAULT_CONTENT_TYPE, S3Backend};
use crate::core::quoted;
use crate::error::{Context, missing};

/// Most keys of one `DeleteObjects` request.
const DELETE_BATCH: usize = 1000;

/// One key's error in a `DeleteObjects` response, by its code (the codes of
/// the S3 error table): `NoSuchKey` is success, `AccessDenied` is
/// [`Error::PermissionDenied`], `InternalError`, `SlowDown` and
/// `ServiceUnavailable` are transient, anything else a non-transient
/// [`Error::Backend`].
fn delete_failure(key: &str, code: &str, message: &str) -> Result<()> {
    match code {
        "NoSuchKey" => Ok(()),
        "AccessDenied" => Err(Error::PermissionDenied {
            key: Some(key.to_owned()),
            message: message.to_owned(),
        }),
        _ => Err(Error::Backend {
            transient: matches!(code, "InternalError" | "SlowDown" | "ServiceUnavailable"),
            message: format!("DeleteObjects {key}: {code}: {message}"),
            source: None,
        }),
    }
}

impl S3Backend {
    pub(crate) async fn put_object(
        &self,
        key: &Key,
        body: Body,
        mut options: PutOptions,
    ) -> Result<ObjectMeta> {
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

    pub(crate) async fn delete_object(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        if options.if_match.is_some() && !self.config.conditional_delete {
            return Err(storage_core::raw::unsupported(self, "conditional delete"));
        }
        let mut request = self
            .sdk()
            .await
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

    /// `DeleteObjects` in quiet mode, 1000 keys per request (the API's
    /// ceiling), one request at a time: a missing key succeeds; the
    /// per-key errors of the response are mapped by [`delete_failure`].
    /// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html>
    pub(crate) async fn delete_objects(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(keys.len());
        for batch in keys.chunks(DELETE_BATCH) {
            let full: Vec<String> = batch.iter().map(|k| self.full_key(k)).collect();
            let objects = full
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::backend(false, "building DeleteObjects", e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::backend(false, "building DeleteObjects", e))?;
            let sent = self
                .sdk()
                .await
                .delete_objects()
                .bucket(&self.config.bucket)
                .delete(delete)
                .send()
                .await;
            let output = match sent {
                Ok(output) => output,
                Err(e) => {
                    let first = batch.first().map_or("", Key::as_str);
                    return Err(self.error(e, "DeleteObjects", first, Context::Plain).await);
                }
            };
            let mut batch_results: Vec<Result<()>> = batch.iter().map(|_| Ok(())).collect();
            for failed in output.errors() {
                let name = failed.key().unwrap_or_default();
                let (code, message) = (
                    failed.code().unwrap_or_default(),
                    failed.message().unwrap_or_default(),
                );
                let mut matched = false;
                for (index, _) in full.iter().enumerate().filter(|(_, k)| *k == name) {
                    matched = true;
                    if let Some(result) = batch_results.get_mut(index) {
                        *result = delete_failure(batch[index].as_str(), code, message);
                    }
                }
                // An error for a key not asked for: nothing can be said of
                // this batch's keys.
                if !matched {
                    return Err(Error::Backend {
                        transient: false,
                        message: format!(
                            "DeleteObjects answered an error for {name:?}, which was not in the request: {code}: {message}"
                        ),
                        source: None,
                    });
                }
            }
            results.extend(batch_results);
        }
        Ok(results)
    }

    pub(crate) async fn copy_object(
        &self,
        from: &Key,
        to: &Key,
        mode: PutMode,
    ) -> Result<ObjectMeta> {
        self.check_length(to)?;
        if mode != PutMode::Overwrite && !self.config.conditional_copy {
            if !self.config.conditional_put {
                return Err(storage_core::raw::unsupported(self, "conditional copy"));
            }
            return storage_core::raw::copy_through_client(self, from, to, mode).await;
        }
        let source = copy_source(&self.config.bucket, &self.full_key(from));
        let encryption = self.config.encryption.as_ref();
        let copy = crate::encryption::on_write!(self.sdk().await.copy_object(), encryption);
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
                if source.size > crate::upload::MAX_COPY_OBJECT_SIZE {
                    return self.copy_in_parts(from, &source, to, mode).await;
                }
            }
            return Err(err);
        }
        self.head(to).await
    }

    pub(crate) fn context(mode: &PutMode) -> Context {
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
        let mut request = crate::encryption::on_write!(
            self.sdk().await.put_object(),
            self.config.encryption.as_ref()
        )
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
        // The payload is not hashed again for the signature: its SHA-256
        // travels in `x-amz-checksum-sha256`, a signed header the service
        // checks the body against (S3 user guide, "Checking object
        // integrity"), so `UNSIGNED-PAYLOAD` loses no integrity and saves
        // a second pass over the bytes.
        let output = match request.customize().disable_payload_signing().send().await {
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

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(encode_copy_source("a/b c/é"), "a/b%20c/%C3%A9");
    }
}
