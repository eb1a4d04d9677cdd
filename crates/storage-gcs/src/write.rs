//! Writes of `GcsBackend`: uploads below the resumable threshold
//! (resumable ones are in [`crate::upload`]), metadata patches, deletes
//! (one, or batched), and server-side copies.

use bytes::Bytes;
use futures::stream;
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::copy::CopyObjectRequest;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use percent_encoding::utf8_percent_encode;
use sha2::{Digest, Sha256};
use storage_core::{
    Backend, Body, DeleteOptions, ETag, Error, Key, ObjectMeta, PutMode, PutOptions, Result,
};

use crate::backend::{DEFAULT_CONTENT_TYPE, GcsBackend};
use storage_core::raw::batch::{self, SubRequest};

use crate::core::{SEGMENT, condition, context, crc32c_base64, generation, serde_error};
use crate::error::Context;
use crate::metadata;

/// Most calls GCS takes in one batch request ("Sending batch requests":
/// "You're limited to 100 calls in a single batch request").
pub(crate) const BATCH_SIZE: usize = 100;

/// The index `i` of a batch answer's `Content-ID: <response-i>` (GCS) or
/// `<i>`.
fn response_index(content_id: &str) -> Option<usize> {
    let id = content_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    id.strip_prefix("response-").unwrap_or(id).parse().ok()
}

impl GcsBackend {
    pub(crate) async fn put_object(
        &self,
        key: &Key,
        body: Body,
        mut options: PutOptions,
    ) -> Result<ObjectMeta> {
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

    pub(crate) async fn delete_object(&self, key: &Key, options: DeleteOptions) -> Result<()> {
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
            .timed("delete", self.client().await?.delete_object(&request))
            .await?
        {
            Ok(()) => Ok(()),
            Err(e) => match self.error(e, "delete", key.as_str(), context).await {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Deletes through the JSON API's batch endpoint (`POST
    /// /batch/storage/v1`, "Sending batch requests"): at most
    /// [`BATCH_SIZE`] `DELETE` calls per request, one request at a time,
    /// authorized by the outer request's token. A missing object succeeds;
    /// when a call answers 404 the bucket is asked once, as for a single
    /// delete, so a missing bucket is [`Error::BucketNotFound`].
    ///
    /// # Errors
    /// The outer error when a batch request fails as a whole and not
    /// transiently (the keys of earlier batches are deleted); a batch that
    /// fails transiently as a whole gives each of its keys a transient
    /// error, and the next batch is sent; an invalid key, or a call's
    /// failure, is in that key's result.
    pub(crate) async fn delete_objects(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_SIZE) {
            match self.delete_batch(chunk).await {
                Ok(answers) => results.extend(answers),
                Err(e) if e.is_transient() => {
                    results.extend(storage_core::raw::ranges::failed_together(&e, chunk.len()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    /// One batch of at most [`BATCH_SIZE`] deletes; the call for `keys[i]`
    /// has `Content-ID: <i>`, its answer `Content-ID: <response-i>`.
    async fn delete_batch(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let op = "batch delete";
        let mut results: Vec<Option<Result<()>>> = keys
            .iter()
            .map(|key| self.check_name(key).err().map(Err))
            .collect();
        let bucket = utf8_percent_encode(self.bucket(), SEGMENT).to_string();
        let requests: Vec<SubRequest> = keys
            .iter()
            .enumerate()
            .filter(|(index, _)| results.get(*index).is_some_and(Option::is_none))
            .map(|(index, key)| SubRequest {
                content_id: format!("<{index}>"),
                method: "DELETE",
                target: format!(
                    "/storage/v1/b/{bucket}/o/{}",
                    utf8_percent_encode(&self.full_name(key), SEGMENT)
                ),
                headers: Vec::new(),
            })
            .collect();
        if !requests.is_empty() {
            let encoded = batch::encode(&requests);
            let url = format!("{}/batch/storage/v1", self.inner.config.endpoint);
            let request = self
                .inner
                .http
                .post(url)
                .header("content-type", encoded.content_type)
                .body(encoded.body);
            let request = self.authorize(request, op, self.bucket()).await?;
            let response = self.send_raw(request, op, self.bucket()).await?;
            if response.status().as_u16() == 404 {
                // The endpoint, not the bucket (which only the calls name).
                return Err(Error::Backend {
                    transient: false,
                    message: format!(
                        "GCS {op}: {} has no batch endpoint (HTTP 404 to /batch/storage/v1)",
                        self.inner.config.endpoint
                    ),
                    source: None,
                });
            }
            if !response.status().is_success() {
                return Err(self
                    .error_answer(response, op, self.bucket(), Context::Bucket)
                    .await);
            }
            let content_type = crate::core::header(response.headers(), "content-type")
                .unwrap_or_default()
                .to_owned();
            let body = self
                .timed(op, response.bytes())
                .await?
                .map_err(|e| Error::backend(true, format!("GCS {op}: the answer broke off"), e))?;
            for answer in batch::decode(op, &content_type, body).await? {
                let index = answer.content_id.as_deref().and_then(response_index);
                let (Some(index), Some(key)) = (index, index.and_then(|i| keys.get(i))) else {
                    return Err(Error::Backend {
                        transient: false,
                        message: format!(
                            "GCS {op}: a response (HTTP {}) names no call of the request: {:?}",
                            answer.status, answer.content_id
                        ),
                        source: None,
                    });
                };
                let result = if (200..300).contains(&answer.status) {
                    Ok(())
                } else {
                    let text = String::from_utf8_lossy(&answer.body);
                    let (reason, message) = serde_error(&text);
                    let message = message.unwrap_or_else(|| text.trim().to_owned());
                    let err = self
                        .answer_error(
                            answer.status,
                            reason.as_deref(),
                            &message,
                            "delete",
                            key.as_str(),
                            Context::Plain,
                        )
                        .await;
                    match err {
                        Error::NotFound { .. } => Ok(()),
                        err @ Error::BucketNotFound { .. } => return Err(err),
                        other => Err(other),
                    }
                };
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
            }
        }
        Ok(batch::answered(&format!("GCS {op}"), keys, results))
    }

    pub(crate) async fn copy_object(
        &self,
        from: &Key,
        to: &Key,
        mode: PutMode,
    ) -> Result<ObjectMeta> {
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
            .timed("copy", self.client().await?.copy_object(&request))
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
