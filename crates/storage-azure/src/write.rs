//! Writes of `AzureBackend`: Put Blob below the block threshold (block
//! uploads are in [`crate::upload`]), Delete Blob, Blob Batch of deletes
//! and Copy Blob.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use azure_core::http::{Method, Request};
use azure_storage_blob::models::{BlobClientDeleteOptions, DeleteSnapshotsOptionType};
use sha2::{Digest, Sha256};
use storage_core::{
    Backend, Body, DeleteOptions, ETag, Error, Key, ObjectMeta, PresignMethod, PutMode, PutOptions,
    Result,
};

use crate::backend::{AzureBackend, DEFAULT_CONTENT_TYPE};
use storage_core::raw::batch::{self, SubRequest, SubResponse};

use crate::core::{CONTENT_TYPE, ETAG, LAST_MODIFIED, context, header, parse_http_date, to_etag};
use crate::error::{Context, from_sdk, missing};
use crate::metadata;
use crate::sas::AccountKey;
use crate::shared_key::string_to_sign;

/// Most sub-requests Azure takes in one Blob Batch ("Blob Batch": "up to
/// 256 subrequests").
pub(crate) const BATCH_SIZE: usize = 256;

impl AzureBackend {
    pub(crate) async fn put_blob(
        &self,
        key: &Key,
        body: Body,
        mut options: PutOptions,
    ) -> Result<ObjectMeta> {
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
        let (sha256, md5) = digests(&data, sha256).await?;
        let size = data.len() as u64;
        let mut request = Request::new(self.blob_url(key), Method::Put);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), true);
        request.insert_header("x-ms-blob-type", "BlockBlob");
        request.insert_header("content-length", size.to_string());
        // Verified by the service ("Put Blob": Content-MD5).
        request.insert_header(
            "content-md5",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, md5),
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

    pub(crate) async fn delete_blob(&self, key: &Key, options: DeleteOptions) -> Result<()> {
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

    /// Blob Batch of Delete Blob sub-requests ("Blob Batch", Azure Storage
    /// REST reference): at most [`BATCH_SIZE`] keys per request, one
    /// request at a time, each sub-request signed with Shared Key (as the
    /// service requires of every sub-request) and deleting the blob's
    /// snapshots with it, as [`Backend::delete`] does. A missing blob
    /// succeeds. A missing container is [`Error::BucketNotFound`] for the
    /// call, found as for a single delete (a sub-response naming it, or
    /// one Get Container Properties after a 404 without an error code).
    /// Sub-requests are signed with the account key only: with SAS or token
    /// credentials (which the service also accepts per sub-request, not
    /// implemented here) each key is one Delete Blob (the default of
    /// [`Backend::delete_many`]).
    ///
    /// # Errors
    /// The outer error when a batch request fails as a whole and not
    /// transiently (the keys of earlier batches are deleted); a batch that
    /// fails transiently as a whole gives each of its keys a transient
    /// error, and the next batch is sent; an invalid key, or a
    /// sub-request's failure, is in that key's result.
    pub(crate) async fn delete_blobs(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let Some(account_key) = self.inner.account_key.as_ref() else {
            return storage_core::raw::ranges::delete_many(self, keys).await;
        };
        let mut results = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_SIZE) {
            match self.delete_batch(account_key, chunk).await {
                Ok(answers) => results.extend(answers),
                Err(e) if e.is_transient() => {
                    results.extend(storage_core::raw::ranges::failed_together(&e, chunk.len()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    /// One Blob Batch of at most [`BATCH_SIZE`] deletes; the sub-request
    /// of `keys[i]` has `Content-ID: i`.
    async fn delete_batch(
        &self,
        account_key: &AccountKey,
        keys: &[Key],
    ) -> Result<Vec<Result<()>>> {
        let op = "Blob Batch";
        let mut results: Vec<Option<Result<()>>> = keys
            .iter()
            .map(|key| self.check_name(key).err().map(Err))
            .collect();
        let date = azure_core::time::to_rfc7231(&time::OffsetDateTime::now_utc());
        let mut requests = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            if results.get(index).is_some_and(Option::is_some) {
                continue;
            }
            let url = self.blob_url(key);
            let mut signed = Request::new(url.clone(), Method::Delete);
            signed.insert_header("x-ms-date", date.clone());
            signed.insert_header("x-ms-delete-snapshots", "include");
            let signature = account_key.sign(&string_to_sign(&account_key.account, &signed));
            requests.push(SubRequest {
                content_id: index.to_string(),
                method: "DELETE",
                target: url.path().to_owned(),
                headers: vec![
                    ("x-ms-date".into(), date.clone()),
                    ("x-ms-delete-snapshots".into(), "include".into()),
                    (
                        "authorization".into(),
                        format!("SharedKey {}:{signature}", account_key.account),
                    ),
                    ("content-length".into(), "0".into()),
                ],
            });
        }
        if !requests.is_empty() {
            let encoded = batch::encode(&requests);
            let mut url = self.inner.container_url.clone();
            url.query_pairs_mut()
                .append_pair("restype", "container")
                .append_pair("comp", "batch");
            let mut request = Request::new(url, Method::Post);
            request.insert_header("content-type", encoded.content_type);
            request.set_body(bytes::Bytes::from(encoded.body));
            let container = self.container();
            let response = self
                .send(request, op, container, Context::Bucket, &[202])
                .await?;
            let content_type = header(response.headers(), CONTENT_TYPE)
                .unwrap_or_default()
                .to_owned();
            let body = self
                .timed(op, response.into_body().collect())
                .await?
                .map_err(|e| {
                    Error::backend(true, format!("Azure {op}: the answer broke off"), e)
                })?;
            let mut ambiguous = false;
            for answer in batch::decode(op, &content_type, body).await? {
                let index = answer
                    .content_id
                    .as_deref()
                    .and_then(|id| id.trim().parse::<usize>().ok());
                let (Some(index), Some(key)) = (index, index.and_then(|i| keys.get(i))) else {
                    // A response for no sub-request: the service refused
                    // the batch as a whole (Azurite answers so).
                    return Err(self.sub_error(&answer, op, container, Context::Bucket));
                };
                let result = match answer.status {
                    202 => Ok(()),
                    status => {
                        let code = answer.header("x-ms-error-code");
                        ambiguous |= status == 404 && code.is_none();
                        let op = "Delete Blob";
                        match self.sub_error(&answer, op, key.as_str(), Context::Plain) {
                            Error::NotFound { .. } => Ok(()),
                            err @ Error::BucketNotFound { .. } => {
                                self.inner.container_exists.store(false, Ordering::Relaxed);
                                return Err(err);
                            }
                            other => Err(other),
                        }
                    }
                };
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
            }
            // A 404 that names neither the blob nor the container: asked
            // once for the whole batch, as a single delete asks.
            if ambiguous && let Some(err) = self.container_missing().await {
                return Err(err);
            }
        }
        Ok(batch::answered(&format!("Azure {op}"), keys, results))
    }

    /// The error of a failed sub-response of a Blob Batch, read as the
    /// same answer to a request of its own would be.
    fn sub_error(&self, answer: &SubResponse, op: &str, key: &str, context: Context) -> Error {
        let code = answer.header("x-ms-error-code").map(str::to_owned);
        let err = azure_core::Error::with_message(
            azure_core::error::ErrorKind::HttpResponse {
                status: answer.status.into(),
                error_code: code,
                raw_response: None,
            },
            format!("a sub-response of Blob Batch: HTTP {}", answer.status),
        );
        from_sdk(err, op, self.container(), key, context)
    }

    pub(crate) async fn copy_blob(
        &self,
        from: &Key,
        to: &Key,
        mode: PutMode,
    ) -> Result<ObjectMeta> {
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

    /// Whether the blob at `to` reports a finished copy
    /// (`x-ms-copy-status: success`).
    pub(crate) async fn copy_succeeded(&self, to: &Key) -> bool {
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
    pub(crate) async fn abort_copy(&self, to: &Key, copy_id: Option<&str>) -> String {
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
}

/// Bodies from this size on are hashed off the async runtime, the SHA-256
/// and the MD5 on two threads at once: 1 MiB.
const PARALLEL_DIGEST_BYTES: usize = 1 << 20;

/// The SHA-256 (`known`, or computed) and the MD5 of `data`. A large body
/// is hashed on the blocking pool, both digests at once, so that a 64 MiB
/// Put Blob waits for the slower of the two rather than their sum and no
/// runtime thread is held meanwhile.
///
/// # Errors
/// [`Error::Backend`] (transient) if the blocking pool is gone (the runtime
/// is shutting down).
async fn digests(data: &bytes::Bytes, known: Option<[u8; 32]>) -> Result<([u8; 32], [u8; 16])> {
    fn both(data: &[u8], known: Option<[u8; 32]>) -> ([u8; 32], [u8; 16]) {
        let md5 = |data: &[u8]| -> [u8; 16] { md5::Md5::digest(data).into() };
        match known {
            Some(sha256) => (sha256, md5(data)),
            None if data.len() < PARALLEL_DIGEST_BYTES => (Sha256::digest(data).into(), md5(data)),
            None => std::thread::scope(|scope| {
                let sha256 = scope.spawn(|| -> [u8; 32] { Sha256::digest(data).into() });
                let md5 = md5(data);
                let sha256 = sha256
                    .join()
                    .unwrap_or_else(|_| Sha256::digest(data).into());
                (sha256, md5)
            }),
        }
    }
    if data.len() < PARALLEL_DIGEST_BYTES {
        return Ok(both(data, known));
    }
    let owned = data.clone();
    tokio::task::spawn_blocking(move || both(&owned, known))
        .await
        .map_err(|e| Error::backend(true, "hashing the body of a Put Blob", e))
}
