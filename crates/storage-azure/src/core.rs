//! Request plumbing of `AzureBackend`: blob names and URLs under the
//! prefix, requests this crate builds sent through the SDK's pipeline under
//! the request timeout, the mapping of SDK errors (with the container
//! request that tells a missing container from a missing blob), the health
//! check, and the conversions every operation shares.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use azure_core::error::CheckSuccessOptions;
use azure_core::http::headers::Headers;
use azure_core::http::{
    AsyncRawResponse, Context as HttpContext, Etag, Method, PipelineStreamOptions, Request, Url,
};
use azure_storage_blob::BlobClient;
use storage_core::{ETag, Error, Key, ObjectMeta, PutMode, Result};
use time::OffsetDateTime;

use crate::backend::AzureBackend;
use crate::error::{Class, Context, classify_sdk, from_sdk, missing};
use crate::metadata;

/// The REST API version (`x-ms-version`) of the requests this crate builds
/// itself: the one `azure_storage_blob` 1.1 sends (its `DEFAULT_VERSION`),
/// so every request of a backend speaks one version, and one recent enough
/// for every parameter used (List Blobs `startFrom` needs 2026-02-06 or
/// later). `tests/documented_answers.rs` checks that both agree.
pub(crate) const API_VERSION: &str = "2026-04-06";

/// Longest blob name Azure accepts, in characters.
const AZURE_MAX_NAME_CHARS: usize = 1024;

/// Most path segments Azure allows in a blob name.
const AZURE_MAX_SEGMENTS: usize = 254;

/// Response headers read here, named once.
pub(crate) const ETAG: &str = "etag";
pub(crate) const LAST_MODIFIED: &str = "last-modified";
pub(crate) const CONTENT_TYPE: &str = "content-type";
pub(crate) const CONTENT_LENGTH: &str = "content-length";
pub(crate) const CONTENT_RANGE: &str = "content-range";

/// The value of header `name` (lower-case), if present.
///
/// `Headers::get_optional_str` builds an error (and, with `RUST_BACKTRACE`
/// set, captures a backtrace) for every absent header: measured at a third
/// of this crate's CPU per request, so lookups go through this instead.
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn to_etag(etag: &ETag) -> Etag {
    Etag::from(etag.quoted())
}

pub(crate) fn to_system_time(t: OffsetDateTime) -> SystemTime {
    SystemTime::from(t)
}

pub(crate) fn parse_http_date(value: Option<&str>) -> SystemTime {
    value
        .and_then(|v| azure_core::time::parse_rfc7231(v).ok())
        .map(to_system_time)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl AzureBackend {
    /// The blob name in the container: the prefix, then the key.
    pub(crate) fn full_name(&self, key: &Key) -> String {
        format!("{}{}", self.inner.config.prefix, key.as_str())
    }

    /// Checks the prefixed name against Azure's limits (1,024 characters,
    /// 254 segments) and refuses keys Azure would store under another
    /// name (`\\`, a segment ending in `.`), before any I/O.
    pub(crate) fn check_name(&self, key: &Key) -> Result<()> {
        let name = self.full_name(key);
        if name.chars().count() > AZURE_MAX_NAME_CHARS {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "with the configured prefix the name exceeds Azure's 1024 characters",
            });
        }
        if name.split('/').count() > AZURE_MAX_SEGMENTS {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "Azure allows at most 254 path segments in a blob name",
            });
        }
        if key.as_str().contains('\\') {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "Azure reads `\\` in a blob name as `/`, so this key would alias another",
            });
        }
        if key.segments().any(|segment| segment.ends_with('.')) {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "Azure drops a trailing `.` from a blob name's segments, so this key would alias another",
            });
        }
        Ok(())
    }

    /// The URL of `key`'s blob, without credentials: the whole name as one
    /// percent-encoded path segment (`/` as `%2F`), exactly as the SDK's
    /// `BlobContainerClient::blob_client` builds it, so that the requests
    /// this crate builds and the SDK's name (and sign) a blob identically.
    /// Azure reads `%2F` in a blob name as `/` ("Naming and Referencing
    /// Containers, Blobs, and Metadata"; the .NET and Python SDKs send it
    /// so too).
    pub(crate) fn blob_url(&self, key: &Key) -> Url {
        let mut url = self.inner.container_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(&self.full_name(key));
        }
        url
    }

    /// The SDK client of `key`'s blob.
    pub(crate) fn blob_client(&self, key: &Key) -> BlobClient {
        self.inner.container.blob_client(&self.full_name(key))
    }

    /// Runs `future` under the request timeout.
    pub(crate) async fn timed<T>(
        &self,
        op: &str,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        let limit = self.inner.config.request_timeout;
        storage_core::raw::timeout::within(limit, future, || format!("Azure {op}")).await
    }

    /// Converts an SDK error of operation `op` on `key`; a 404 that does not
    /// say whether the blob or the container is missing asks the container
    /// first (see [`AzureBackend`]).
    pub(crate) async fn error(
        &self,
        err: azure_core::Error,
        op: &str,
        key: &str,
        context: Context,
    ) -> Error {
        let ambiguous = classify_sdk(&err) == Some(Class::KeyOrBucketNotFound)
            && !matches!(context, Context::Bucket);
        if ambiguous && let Some(container_error) = self.container_missing().await {
            return container_error;
        }
        let converted = from_sdk(err, op, self.container(), key, context);
        if matches!(converted, Error::BucketNotFound { .. }) {
            self.inner.container_exists.store(false, Ordering::Relaxed);
        }
        converted
    }

    /// After a 404 that does not say what is missing: `BucketNotFound` when
    /// Get Container Properties finds no container, its error when it fails
    /// transiently, and `None` (the blob is missing) otherwise. A container
    /// found is remembered.
    pub(crate) async fn container_missing(&self) -> Option<Error> {
        if self.inner.container_exists.load(Ordering::Relaxed) {
            return None;
        }
        let op = "Get Container Properties";
        let container = self.container();
        let mut url = self.inner.container_url.clone();
        url.query_pairs_mut().append_pair("restype", "container");
        let answer = match self
            .send_checked(Request::new(url, Method::Head), op, &[200])
            .await
        {
            Ok(answer) => answer,
            Err(timeout) => return Some(timeout),
        };
        match answer {
            Ok(_) => {
                self.inner.container_exists.store(true, Ordering::Relaxed);
                None
            }
            Err(e) => match from_sdk(e, op, container, container, Context::Bucket) {
                err @ Error::BucketNotFound { .. } => Some(err),
                err if err.is_transient() => Some(err),
                _ => None,
            },
        }
    }

    /// Sends a request this crate built, under the request timeout, and
    /// checks its status; the SDK's error comes back unconverted.
    pub(crate) async fn send_checked(
        &self,
        mut request: Request,
        op: &str,
        success: &'static [u16],
    ) -> Result<azure_core::Result<AsyncRawResponse>> {
        request.insert_header("x-ms-version", API_VERSION);
        let ctx = HttpContext::new();
        let sent = self
            .timed(
                op,
                self.inner.pipeline.stream(
                    &ctx,
                    &mut request,
                    Some(PipelineStreamOptions {
                        skip_checks: true,
                        ..Default::default()
                    }),
                ),
            )
            .await?;
        Ok(match sent {
            Ok(response) => {
                azure_core::http::check_success(
                    response,
                    Some(CheckSuccessOptions {
                        success_codes: success,
                    }),
                )
                .await
            }
            Err(e) => Err(e),
        })
    }

    /// Sends a request this crate built and checks its status.
    pub(crate) async fn send(
        &self,
        request: Request,
        op: &str,
        key: &str,
        context: Context,
        success: &'static [u16],
    ) -> Result<AsyncRawResponse> {
        match self.send_checked(request, op, success).await? {
            Ok(response) => Ok(response),
            Err(e) => Err(self.error(e, op, key, context).await),
        }
    }

    pub(crate) fn meta_from_headers(
        key: &Key,
        headers: &Headers,
        size: u64,
        op: &str,
    ) -> Result<ObjectMeta> {
        let (user, sha256) = metadata::from_headers(headers);
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            etag: header(headers, ETAG)
                .map(ETag::new)
                .ok_or_else(|| missing(op, key.as_str(), "ETag"))?,
            last_modified: parse_http_date(header(headers, LAST_MODIFIED)),
            content_type: header(headers, CONTENT_TYPE).map(str::to_owned),
            metadata: user,
            sha256,
        })
    }

    /// Get Container Properties: 404 is [`Error::BucketNotFound`], a
    /// refused signature or token [`Error::Unauthenticated`] or
    /// [`Error::PermissionDenied`], no answer a transient [`Error::Backend`].
    pub(crate) async fn check_health(&self) -> Result<()> {
        let answer = self
            .timed(
                "Get Container Properties",
                self.inner.container.get_properties(None),
            )
            .await
            .and_then(|answer| {
                answer.map_err(|e| {
                    from_sdk(
                        e,
                        "Get Container Properties",
                        self.container(),
                        self.container(),
                        Context::Bucket,
                    )
                })
            });
        answer
            .map(|_| ())
            .map_err(|e| storage_core::raw::health_failure(e, &self.inner.container_url))
    }
}

/// The `If-Match` and `If-None-Match` headers of a put mode.
pub(crate) fn conditions(mode: &PutMode) -> (Option<Etag>, Option<Etag>) {
    match mode {
        PutMode::Overwrite => (None, None),
        PutMode::IfNotExists => (None, Some(Etag::from("*"))),
        PutMode::IfMatch(etag) => (Some(to_etag(etag)), None),
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
