//! Request plumbing of `S3Backend`: object names under the prefix, the
//! mapping of SDK errors (with the HeadBucket that tells a missing bucket
//! from a missing key), the health check and the small conversions every
//! operation shares.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use storage_core::raw;
use storage_core::{ETag, Error, Key, Result};

use crate::backend::S3Backend;
use crate::error::{Class, Context, classify_sdk, from_sdk};

/// Longest object name S3 accepts, in bytes.
const S3_MAX_KEY_BYTES: usize = 1024;

pub(crate) fn quoted(etag: &ETag) -> String {
    etag.quoted()
}

pub(crate) fn modified(dt: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    dt.and_then(|d| SystemTime::try_from(*d).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

pub(crate) fn sha256_of(header: Option<&str>) -> Option<[u8; 32]> {
    // Multipart objects report a composite checksum ("…-N"), not the
    // content's SHA-256.
    let decoded = BASE64.decode(header?).ok()?;
    decoded.try_into().ok()
}

impl S3Backend {
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
        match self.sdk().await.head_bucket().bucket(bucket).send().await {
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
    pub(crate) fn check_length(&self, key: &Key) -> Result<()> {
        if self.config.prefix.len() + key.as_str().len() > S3_MAX_KEY_BYTES {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "with the configured prefix the name exceeds S3's 1024 bytes",
            });
        }
        Ok(())
    }

    /// The endpoint the client talks to, for messages: the configured one,
    /// or AWS's for the region.
    pub(crate) async fn endpoint_name(&self) -> String {
        match (&self.config.endpoint, self.sdk().await.config().region()) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(region)) => format!("https://s3.{region}.amazonaws.com"),
            (None, None) => "https://s3.amazonaws.com".to_owned(),
        }
    }

    /// [`storage_core::Backend::health`]: `HeadBucket` (it needs `s3:ListBucket`): 404 is
    /// [`Error::BucketNotFound`], 403 [`Error::PermissionDenied`] (S3
    /// answers a HEAD with a bad signature with a bare 403 too), no answer
    /// a transient [`Error::Backend`].
    pub(crate) async fn head_bucket(&self) -> Result<()> {
        let bucket = &self.config.bucket;
        match self.sdk().await.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(raw::health_failure(
                from_sdk(e, "HeadBucket", bucket, bucket, Context::Bucket),
                self.endpoint_name().await,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::S3Config;
    use bytes::Bytes;
    use storage_core::{Backend, Body, DeleteOptions, PutMode, PutOptions};

    #[tokio::test]
    async fn a_prefixed_name_over_1024_bytes_is_rejected_before_io() {
        let store = S3Config::new("bucket")
            .endpoint("http://127.0.0.1:9")
            .region("us-east-1")
            .credentials("id", "secret", None)
            .prefix("p/")
            .build()
            .expect("config");
        let key = Key::new("k".repeat(1023)).expect("key");
        let err = store
            .put(&key, Body::from("x"), PutOptions::default())
            .await;
        assert!(matches!(err, Err(Error::InvalidKey { .. })), "{err:?}");
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
