//! Request plumbing of `GcsBackend`: object names under the prefix, the
//! lazily resolved client and access token, sending requests this crate
//! builds under the request timeout, the mapping of answers and SDK errors
//! (with the bucket GET that tells a missing bucket from a missing object),
//! the health check, and the conversions every operation shares.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use gcloud_storage::http::objects::Object;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::HeaderMap;
use storage_core::{Backend, ETag, Error, Key, ListOptions, ObjectMeta, PutMode, Result};

use crate::backend::GcsBackend;
use crate::error::{
    Answer, Class, Context, classify, classify_sdk, from_answer, from_sdk, from_transport,
    token_failure,
};
use crate::metadata;

/// Longest object name GCS accepts, in bytes of UTF-8.
const GCS_MAX_NAME_BYTES: usize = 1024;

/// Bytes escaped in a path segment of the JSON API: everything but
/// unreserved characters (the object name is one segment, `/` included).
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

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

pub(crate) fn system_time(t: Option<time::OffsetDateTime>) -> SystemTime {
    t.map(SystemTime::from).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The CRC32C in an `x-goog-hash` header (`crc32c=…,md5=…`).
pub(crate) fn crc32c_of(hash: &str) -> Option<u32> {
    let value = hash
        .split(',')
        .find_map(|part| part.trim().strip_prefix("crc32c="))?;
    let bytes: [u8; 4] = BASE64.decode(value).ok()?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl GcsBackend {
    /// The object name in the bucket: the prefix, then the key.
    pub(crate) fn full_name(&self, key: &Key) -> String {
        format!("{}{}", self.inner.config.prefix, key.as_str())
    }

    /// Checks the prefixed name against GCS's 1,024 bytes, before any I/O.
    pub(crate) fn check_name(&self, key: &Key) -> Result<()> {
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
        match &self.auth().await?.token {
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
        self.answer_error(status, reason.as_deref(), &message, op, key, context)
            .await
    }

    /// The error of a failed answer (`status`, GCS `reason`, `message`) to
    /// operation `op` on `key`; a 404 asks the bucket first (see
    /// [`GcsBackend`]).
    pub(crate) async fn answer_error(
        &self,
        status: u16,
        reason: Option<&str>,
        message: &str,
        op: &str,
        key: &str,
        context: Context,
    ) -> Error {
        let ambiguous = classify(status, reason) == Class::KeyOrBucketNotFound
            && !matches!(context, Context::Bucket);
        if ambiguous && let Some(bucket_error) = self.bucket_missing().await {
            return bucket_error;
        }
        let answer = Answer {
            status,
            reason,
            message,
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

    /// The bucket's metadata (`GET /storage/v1/b/{bucket}`), or where the
    /// credentials may not read it (403: no `storage.buckets.get`) a
    /// listing of one object: 404 is [`Error::BucketNotFound`], 401
    /// [`Error::Unauthenticated`], 403 on both [`Error::PermissionDenied`],
    /// no answer a transient [`Error::Backend`].
    pub(crate) async fn check_health(&self) -> Result<()> {
        use gcloud_storage::http::buckets::get::GetBucketRequest;
        let request = GetBucketRequest {
            bucket: self.bucket().to_owned(),
            ..Default::default()
        };
        let answer = match self.client().await {
            Ok(client) => self.timed("get bucket", client.get_bucket(&request)).await,
            Err(e) => Err(e),
        };
        let answer = answer.and_then(|answer| {
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
pub(crate) fn serde_error(text: &str) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return (None, None);
    };
    let error = &value["error"];
    let reason = error["errors"][0]["reason"].as_str().map(str::to_owned);
    let message = error["message"].as_str().map(str::to_owned);
    (reason, message)
}

#[cfg(test)]
mod tests;
