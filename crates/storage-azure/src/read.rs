//! Reads of `AzureBackend`: Get Blob (every range form, SHA-256 checked
//! on full reads) and Get Blob Properties.

use azure_core::http::{AsyncRawResponse, Method, Request};
use futures::stream::{StreamExt, TryStreamExt};
use storage_core::raw::conditional_read_failure;
use storage_core::{
    Backend, ByteRange, ByteStream, ETag, Error, GetOptions, GetResult, Key, ObjectMeta, Result,
};

use crate::backend::AzureBackend;
use crate::core::{CONTENT_LENGTH, CONTENT_RANGE, header};
use crate::error::Context;

impl AzureBackend {
    pub(crate) async fn get_blob(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.check_name(key)?;
        let mut if_match = options.if_match.clone();
        let mut pinned = false;
        let header_range = match options.range {
            None => None,
            Some(range @ ByteRange::Bounded { start, end }) => {
                if start >= end {
                    return Err(self.invalid_range(key, &range).await);
                }
                Some((start, Some(end - 1)))
            }
            Some(ByteRange::From { start }) => Some((start, None)),
            Some(range @ ByteRange::Suffix { .. }) => {
                // No suffix ranges on Azure: read the size, then pin the
                // read to that version.
                let head = self.head(key).await?;
                options.check(key, &head)?;
                let resolved = range.resolve(key, head.size)?;
                pinned = if_match.is_none();
                if_match = Some(head.etag);
                Some((resolved.start, Some(resolved.end - 1)))
            }
        };
        let response = match self
            .get_once(key, header_range, if_match.as_ref(), &options)
            .await
        {
            Ok(response) => response,
            Err(Error::InvalidRange { .. }) => {
                let range = options.range.unwrap_or(ByteRange::From { start: 0 });
                return Err(self.invalid_range(key, &range).await);
            }
            Err(Error::PreconditionFailed { .. }) if pinned => {
                // The object changed between the size and the read.
                return Err(Error::backend(
                    true,
                    format!("Azure Get Blob of {key}: the object changed during a suffix read"),
                    "ConditionNotMet on the pinned version",
                ));
            }
            Err(e @ Error::NotFound { .. }) => return Err(e),
            // A 304 or a 412: the conditions' verdict on the current
            // version names it (RFC 9110 section 13.2.2 order); Azure
            // answers 412 to If-Match on a missing blob, where the contract
            // says NotFound (DESIGN section 2, rule 5).
            Err(e) if options.is_conditional() => {
                return Err(conditional_read_failure(self, key, &options, e).await);
            }
            Err(e) => return Err(e),
        };
        let headers = response.headers();
        let length = header(headers, CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let (served, size) =
            match header(headers, CONTENT_RANGE).and_then(storage_core::raw::parse_content_range) {
                Some(parsed) => parsed,
                None => (0..length, length),
            };
        if let Some(requested) = &options.range {
            // Azurite answers a range starting at the size with 206 and no
            // bytes, and some servers ignore ranges on empty blobs.
            let resolved = requested.resolve(key, size)?;
            if served.start != resolved.start {
                return Err(Error::backend(
                    false,
                    format!(
                        "Azure Get Blob of {key}: asked for {requested}, the server sent bytes {}..{}",
                        served.start, served.end
                    ),
                    "range mismatch",
                ));
            }
        }
        let meta = Self::meta_from_headers(key, headers, size, "Get Blob")?;
        // Exact whatever the server honoured.
        options.check(key, &meta)?;
        let verify = if options.range.is_none() {
            meta.sha256
        } else {
            None
        };
        let body = body_stream(response, key.clone(), verify);
        Ok(GetResult::new(meta, served, body))
    }

    pub(crate) async fn get_properties(&self, key: &Key) -> Result<ObjectMeta> {
        self.check_name(key)?;
        let mut request = Request::new(self.blob_url(key), Method::Head);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), false);
        let response = self
            .send(
                request,
                "Get Blob Properties",
                key.as_str(),
                Context::Plain,
                &[200],
            )
            .await?;
        let size = header(response.headers(), CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Self::meta_from_headers(key, response.headers(), size, "Get Blob Properties")
    }

    /// One Get Blob; `range` is the `x-ms-range` value, `if_match` the
    /// version to read, `conditions` the caller's other conditions, sent as
    /// `If-None-Match`, `If-Modified-Since` and `If-Unmodified-Since`
    /// (RFC 9110 section 13.2.2 order: a time condition only without its
    /// ETag counterpart).
    /// <https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations>
    pub(crate) async fn get_once(
        &self,
        key: &Key,
        range: Option<(u64, Option<u64>)>,
        if_match: Option<&ETag>,
        conditions: &GetOptions,
    ) -> Result<AsyncRawResponse> {
        let mut request = Request::new(self.blob_url(key), Method::Get);
        crate::encryption::add_headers(&mut request, self.config().encryption.as_ref(), false);
        if let Some((start, last)) = range {
            let value = match last {
                Some(last) => format!("bytes={start}-{last}"),
                None => format!("bytes={start}-"),
            };
            request.insert_header("x-ms-range", value);
        }
        let context = match if_match {
            Some(etag) => {
                request.insert_header("if-match", etag.quoted());
                Context::IfMatch(etag.clone())
            }
            None => Context::Plain,
        };
        if let Some(etag) = &conditions.if_none_match {
            request.insert_header("if-none-match", etag.quoted());
        } else if let Some(since) = conditions.if_modified_since {
            request.insert_header("if-modified-since", httpdate::fmt_http_date(since));
        }
        if let (None, Some(since)) = (if_match, conditions.if_unmodified_since) {
            request.insert_header("if-unmodified-since", httpdate::fmt_http_date(since));
        }
        self.send(request, "Get Blob", key.as_str(), context, &[200, 206])
            .await
    }

    /// The error for a range the object cannot serve, with its size.
    pub(crate) async fn invalid_range(&self, key: &Key, range: &ByteRange) -> Error {
        Error::InvalidRange {
            key: key.to_string(),
            range: range.to_string(),
            size: self.head(key).await.map(|m| m.size).unwrap_or(0),
        }
    }
}

/// Streams the response body; on a full read with a recorded SHA-256, ends
/// with the checksum's verdict.
fn body_stream(response: AsyncRawResponse, key: Key, expected: Option<[u8; 32]>) -> ByteStream {
    let name = key.to_string();
    let chunks = response
        .into_body()
        .map_err(move |e| {
            Error::backend(
                true,
                format!("Azure Get Blob of {name}: the body failed"),
                e,
            )
        })
        .boxed();
    storage_core::raw::integrity::verify_sha256(chunks, key, expected)
}
