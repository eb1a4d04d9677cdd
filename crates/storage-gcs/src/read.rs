//! Reads of `GcsBackend`: media downloads (ranges, generation checks,
//! CRC32C and SHA-256 verification) and object metadata.

use std::time::SystemTime;

use futures::stream::{self, StreamExt, TryStreamExt};
use gcloud_storage::http::objects::get::GetObjectRequest;
use percent_encoding::utf8_percent_encode;
use storage_core::raw::conditional_read_failure;
use storage_core::{
    Backend, ByteRange, ByteStream, ETag, Error, GetOptions, GetResult, Key, ObjectMeta, Result,
};

use crate::backend::GcsBackend;
use crate::core::{SEGMENT, crc32c_of, generation, header};
use crate::error::{Context, missing};
use crate::metadata;

impl GcsBackend {
    pub(crate) async fn get_object(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.check_name(key)?;
        let range_header = match options.range {
            None => None,
            Some(range @ ByteRange::Bounded { start, end }) => {
                if start >= end {
                    return Err(self.invalid_range(key, &range).await);
                }
                Some(range.to_string())
            }
            Some(range @ ByteRange::Suffix { len }) => {
                if len == 0 {
                    return Err(self.invalid_range(key, &range).await);
                }
                Some(range.to_string())
            }
            Some(range @ ByteRange::From { .. }) => Some(range.to_string()),
        };
        let mut url = self.download_url(key);
        let context = match &options.if_match {
            Some(etag) => {
                let Some(g) = generation(etag) else {
                    // No version ever had this ETag; a missing key is
                    // NotFound all the same (DESIGN section 2, rule 5).
                    self.head(key).await?;
                    return Err(Error::PreconditionFailed {
                        key: key.to_string(),
                        expected: etag.clone(),
                        actual: None,
                    });
                };
                url.push_str(&format!("&ifGenerationMatch={g}"));
                Context::IfMatch(etag.clone())
            }
            None => Context::Plain,
        };
        // If-None-Match is native (a version that is not a generation
        // matches nothing); the JSON API has no time conditions: those are
        // checked on the version served, below.
        if let Some(g) = options.if_none_match.as_ref().and_then(generation) {
            url.push_str(&format!("&ifGenerationNotMatch={g}"));
        }
        let mut request =
            crate::encryption::with_headers(self.inner.http.get(url), self.encryption());
        if let Some(range) = &range_header {
            request = request.header("range", range);
        }
        let request = self.authorize(request, "download", key.as_str()).await?;
        let response = self.send_raw(request, "download", key.as_str()).await?;
        if !response.status().is_success() {
            let err = self
                .error_answer(response, "download", key.as_str(), context)
                .await;
            return Err(match (err, options.range) {
                (Error::InvalidRange { .. }, Some(range)) => self.invalid_range(key, &range).await,
                (e @ Error::NotFound { .. }, _) => e,
                // A 304 or a 412: the conditions' verdict on the current
                // version names it (RFC 9110 section 13.2.2 order); GCS
                // answers 412 to ifGenerationMatch on a missing object,
                // where the contract says NotFound (DESIGN section 2,
                // rule 5).
                (e, _) if options.is_conditional() => {
                    conditional_read_failure(self, key, &options, e).await
                }
                (other, _) => other,
            });
        }
        let headers = response.headers();
        let generation_header = header(headers, "x-goog-generation")
            .ok_or_else(|| missing("download", key.as_str(), "x-goog-generation"))?;
        let etag = ETag::new(generation_header);
        if let Some(expected) = &options.if_match
            && *expected != etag
        {
            // fake-gcs-server ignores ifGenerationMatch on downloads.
            return Err(Error::PreconditionFailed {
                key: key.to_string(),
                expected: expected.clone(),
                actual: Some(etag),
            });
        }
        let length = header(headers, "content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let (served, size) = match header(headers, "content-range")
            .and_then(storage_core::raw::parse_content_range)
        {
            Some(parsed) => parsed,
            None => (0..length, length),
        };
        if let Some(requested) = &options.range {
            // fake-gcs-server answers a range starting at the size with no
            // bytes and no Content-Range.
            let Ok(resolved) = requested.resolve(key, size) else {
                return Err(self.invalid_range(key, requested).await);
            };
            if served != resolved {
                return Err(Error::backend(
                    false,
                    format!(
                        "GCS download of {key}: asked for {requested}, the server sent bytes {}..{}",
                        served.start, served.end
                    ),
                    "range mismatch",
                ));
            }
        }
        let (user, sha256) = metadata::from_gcs(headers.iter().filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-goog-meta-")?;
            Some((name, value.to_str().ok()?))
        }));
        let crc = header(headers, "x-goog-hash").and_then(crc32c_of);
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            etag,
            last_modified: header(headers, "last-modified")
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            content_type: header(headers, "content-type").map(str::to_owned),
            metadata: user,
            sha256,
        };
        options.check(key, &meta)?;
        let full = options.range.is_none();
        let body = body_stream(
            response,
            key.clone(),
            sha256.filter(|_| full),
            crc.filter(|_| full),
        );
        Ok(GetResult::new(meta, served, body))
    }

    pub(crate) async fn get_metadata(&self, key: &Key) -> Result<ObjectMeta> {
        self.check_name(key)?;
        let request = GetObjectRequest {
            bucket: self.bucket().to_owned(),
            object: self.full_name(key),
            encryption: crate::encryption::for_client(self.encryption()),
            ..Default::default()
        };
        match self
            .timed("get", self.client().await?.get_object(&request))
            .await?
        {
            Ok(object) => Ok(Self::meta_from_object(key, &object)),
            Err(e) => Err(self.error(e, "get", key.as_str(), Context::Plain).await),
        }
    }

    /// The media download request of `key`.
    pub(crate) fn download_url(&self, key: &Key) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.inner.config.endpoint,
            utf8_percent_encode(self.bucket(), SEGMENT),
            utf8_percent_encode(&self.full_name(key), SEGMENT)
        )
    }

    /// The error for a range the object cannot serve, with its size.
    ///
    /// fake-gcs-server closes the connection after a 416 without saying so,
    /// so the size lookup that follows may meet a reset pooled connection:
    /// it is tried twice.
    pub(crate) async fn invalid_range(&self, key: &Key, range: &ByteRange) -> Error {
        let mut size = 0;
        for _ in 0..2 {
            match self.head(key).await {
                Ok(meta) => {
                    size = meta.size;
                    break;
                }
                Err(e) if e.is_transient() => continue,
                Err(_) => break,
            }
        }
        Error::InvalidRange {
            key: key.to_string(),
            range: range.to_string(),
            size,
        }
    }
}

/// Streams a download; on a full read, ends with the CRC32C and SHA-256
/// verdicts.
fn body_stream(
    response: reqwest::Response,
    key: Key,
    sha256: Option<[u8; 32]>,
    crc: Option<u32>,
) -> ByteStream {
    let name = key.to_string();
    let chunks = response
        .bytes_stream()
        .map_err(move |e| {
            Error::backend(true, format!("GCS download of {name}: the body failed"), e)
        })
        .boxed();
    let checked = match crc {
        Some(expected) => verify_crc32c(chunks, key.clone(), expected),
        None => chunks,
    };
    storage_core::raw::integrity::verify_sha256(checked, key, sha256)
}

/// Passes `body` through and ends it with [`Error::ChecksumMismatch`] when
/// the CRC32C of every byte is not `expected` (GCS's `x-goog-hash`).
fn verify_crc32c(body: ByteStream, key: Key, expected: u32) -> ByteStream {
    stream::try_unfold(
        (body, Some(0u32), key),
        move |(mut body, running, key)| async move {
            match body.next().await {
                Some(Ok(chunk)) => {
                    let running = running.map(|r| crc32c::crc32c_append(r, &chunk));
                    Ok(Some((chunk, (body, running, key))))
                }
                Some(Err(e)) => Err(e),
                None => match running {
                    Some(actual) if actual != expected => Err(Error::ChecksumMismatch {
                        key: key.to_string(),
                        expected: format!("CRC32C {expected:08x}"),
                        actual: format!("CRC32C {actual:08x}"),
                    }),
                    _ => Ok(None),
                },
            }
        },
    )
    .boxed()
}
