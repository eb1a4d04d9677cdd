//! Reads of `S3Backend`: GetObject (ranges, SHA-256 and composite
//! checksum verification) and HeadObject.

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::ChecksumMode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use storage_core::raw::conditional_read_failure;
use storage_core::{
    Backend, ByteRange, ByteStream as BodyStream, ETag, Error, GetOptions, GetResult, Key,
    ObjectMeta, Result,
};

use crate::backend::S3Backend;
use crate::core::{modified, quoted, sha256_of};
use crate::error::{Context, missing};

impl S3Backend {
    pub(crate) async fn get_object(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        // Empty ranges have no HTTP form: answer them here, with the size.
        if let Some(range @ (ByteRange::Bounded { .. } | ByteRange::Suffix { .. })) = &options.range
        {
            let empty = match *range {
                ByteRange::Bounded { start, end } => start >= end,
                ByteRange::Suffix { len } => len == 0,
                ByteRange::From { .. } => false,
            };
            if empty {
                let size = self.head(key).await?.size;
                return Err(Error::InvalidRange {
                    key: key.to_string(),
                    range: range.to_string(),
                    size,
                });
            }
        }
        let mut request = crate::encryption::on_read!(
            self.sdk().await.get_object(),
            self.config.encryption.as_ref()
        )
        .bucket(&self.config.bucket)
        .key(self.full_key(key))
        .checksum_mode(ChecksumMode::Enabled)
        .set_range(options.range.map(|r| r.to_string()));
        if let Some(etag) = &options.if_match {
            request = request.if_match(quoted(etag));
        } else if let Some(since) = options.if_unmodified_since {
            request = request.if_unmodified_since(DateTime::from(since));
        }
        // RFC 9110 section 13.2.2: If-Modified-Since only without
        // If-None-Match.
        if let Some(etag) = &options.if_none_match {
            request = request.if_none_match(quoted(etag));
        } else if let Some(since) = options.if_modified_since {
            request = request.if_modified_since(DateTime::from(since));
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                let err = self
                    .error(e, "GetObject", key.as_str(), Context::Plain)
                    .await;
                // A 304 or a 412: the SDK names neither precisely; the
                // conditions' verdict on the current version does (RFC 9110
                // section 13.2.2 order), and a missing key is NotFound even
                // where an S3-compatible store answers 412 to If-Match
                // (DESIGN section 2, rule 5).
                let err = match err {
                    e @ (Error::NotFound { .. } | Error::InvalidRange { .. }) => e,
                    e if options.is_conditional() => {
                        conditional_read_failure(self, key, &options, e).await
                    }
                    e => e,
                };
                return Err(match (err, &options.range) {
                    (Error::InvalidRange { key: k, .. }, Some(range)) => Error::InvalidRange {
                        key: k,
                        range: range.to_string(),
                        size: self.head(key).await.map(|m| m.size).unwrap_or(0),
                    },
                    (other, _) => other,
                });
            }
        };
        let length = output.content_length().unwrap_or(0).max(0) as u64;
        let (range, size) = match output
            .content_range()
            .and_then(storage_core::raw::parse_content_range)
        {
            Some(parsed) => parsed,
            None => (0..length, length),
        };
        // Some servers answer a range on an empty object with the empty
        // object; the contract (and AWS S3) says 416.
        if let (Some(requested), 0) = (&options.range, size) {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range: requested.to_string(),
                size: 0,
            });
        }
        let sha256 = sha256_of(output.checksum_sha256());
        let (metadata, part_size) = crate::metadata::from_s3(output.metadata());
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            etag: output
                .e_tag()
                .map(ETag::new)
                .ok_or_else(|| missing_etag(key))?,
            last_modified: modified(output.last_modified()),
            content_type: output.content_type().map(str::to_owned),
            metadata,
            sha256,
        };
        // The same verdict on the version served, for S3-compatible stores
        // that ignore a condition header.
        options.check(key, &meta)?;
        // Only full reads are checked: against the SHA-256, or, for a
        // multipart object written here, against the composite checksum
        // with the part size recorded at initiation.
        let full = options.range.is_none();
        let composite = composite_of(output.checksum_sha256())
            .zip(part_size)
            .filter(|_| full)
            .map(|((digest, parts), part_size)| Composite {
                digest,
                parts,
                part_size,
            });
        let body = body_stream(output.body, key.clone());
        let body = match composite {
            Some(composite) => verify_composite(body, key.clone(), composite),
            None => body,
        };
        Ok(GetResult::new(meta, range, body))
    }

    pub(crate) async fn head_object(&self, key: &Key) -> Result<ObjectMeta> {
        let sent = crate::encryption::on_read!(
            self.sdk().await.head_object(),
            self.config.encryption.as_ref()
        )
        .bucket(&self.config.bucket)
        .key(self.full_key(key))
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await;
        match sent {
            Ok(output) => Self::meta_from_head(key, &output),
            Err(e) => Err(self
                .error(e, "HeadObject", key.as_str(), Context::Plain)
                .await),
        }
    }

    fn meta_from_head(
        key: &Key,
        out: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
    ) -> Result<ObjectMeta> {
        Ok(ObjectMeta {
            key: key.clone(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out
                .e_tag()
                .map(ETag::new)
                .ok_or_else(|| missing_etag(key))?,
            last_modified: modified(out.last_modified()),
            content_type: out.content_type().map(str::to_owned),
            metadata: crate::metadata::from_s3(out.metadata()).0,
            sha256: sha256_of(out.checksum_sha256()),
        })
    }
}

fn missing_etag(key: &Key) -> Error {
    missing("GetObject or HeadObject", key.as_str(), "ETag")
}

/// A multipart object's composite SHA-256 ("checksum of checksums": the
/// SHA-256 of its parts' SHA-256 digests, S3 User Guide, "Checking object
/// integrity", using part-level checksums for multipart uploads), with the
/// number of parts and their size.
struct Composite {
    digest: [u8; 32],
    parts: u64,
    part_size: u64,
}

/// The digest and part count of a composite checksum header
/// (`base64-N`), if it is one.
fn composite_of(header: Option<&str>) -> Option<([u8; 32], u64)> {
    let (digest, parts) = header?.rsplit_once('-')?;
    let digest: [u8; 32] = BASE64.decode(digest).ok()?.try_into().ok()?;
    Some((digest, parts.parse().ok()?))
}

/// Passes `body` through, hashing it part by part as `composite` lays it
/// out; at its end, fails with [`Error::ChecksumMismatch`] unless the
/// digest of the part digests and the number of parts match. Past its
/// first MiB the body is hashed beside the reader
/// ([`storage_core::raw::integrity::digest_beside`]).
fn verify_composite(body: BodyStream, key: Key, composite: Composite) -> BodyStream {
    struct State {
        part: Sha256,
        in_part: u64,
        whole: Sha256,
        parts: u64,
    }
    let state = State {
        part: Sha256::new(),
        in_part: 0,
        whole: Sha256::new(),
        parts: 0,
    };
    let part_size = composite.part_size;
    storage_core::raw::integrity::digest_beside(
        body,
        state,
        move |s: &mut State, chunk: &[u8]| {
            let mut rest = chunk;
            while !rest.is_empty() {
                let room = usize::try_from(part_size - s.in_part).unwrap_or(usize::MAX);
                let (now, later) = rest.split_at(room.min(rest.len()));
                s.part.update(now);
                s.in_part += now.len() as u64;
                if s.in_part == part_size {
                    s.whole.update(s.part.finalize_reset());
                    s.parts += 1;
                    s.in_part = 0;
                }
                rest = later;
            }
        },
        move |mut s: State| {
            if s.in_part > 0 {
                s.whole.update(s.part.finalize_reset());
                s.parts += 1;
            }
            let actual: [u8; 32] = s.whole.finalize().into();
            if (actual, s.parts) == (composite.digest, composite.parts) {
                return Ok(());
            }
            Err(Error::ChecksumMismatch {
                key: key.to_string(),
                expected: format!("{}-{}", hex::encode(composite.digest), composite.parts),
                actual: format!(
                    "{}-{} (composite SHA-256 of the parts read)",
                    hex::encode(actual),
                    s.parts
                ),
            })
        },
    )
}

/// Streams the response body. A full read whose answer carries a plain
/// (single-part) `x-amz-checksum-sha256` is checked by the SDK, which
/// validates it whenever the request asked for checksums
/// (`x-amz-checksum-mode: ENABLED`, as every GetObject here does; see
/// `aws-sdk-s3`'s `ResponseChecksumInterceptor`), so the bytes are hashed
/// once; its verdict ends the body as [`Error::ChecksumMismatch`], never as
/// a transient failure to be retried.
fn body_stream(body: ByteStream, key: Key) -> BodyStream {
    let name = key.to_string();
    stream::try_unfold(body, |mut body| async move {
        Ok(body.try_next().await?.map(|chunk| (chunk, body)))
    })
    .map_err(
        move |e: aws_sdk_s3::primitives::ByteStreamError| match sdk_checksum_mismatch(&e) {
            Some((expected, actual)) => Error::ChecksumMismatch {
                key: name.clone(),
                expected: hex::encode(expected),
                actual: format!("{} (SHA-256 of the bytes read)", hex::encode(actual)),
            },
            None => Error::backend(true, format!("S3 GetObject of {name}: the body failed"), e),
        },
    )
    .boxed()
}

/// The expected and actual checksums of the SDK's checksum verdict, if
/// `error` (or an error it wraps) is one.
fn sdk_checksum_mismatch(
    error: &(dyn std::error::Error + 'static),
) -> Option<(bytes::Bytes, bytes::Bytes)> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(aws_smithy_checksums::body::validate::Error::ChecksumMismatch {
            expected,
            actual,
        }) = e.downcast_ref::<aws_smithy_checksums::body::validate::Error>()
        {
            return Some((expected.clone(), actual.clone()));
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// The composite SHA-256 of `data` in parts of `part_size` bytes.
    fn composite(data: &[u8], part_size: usize) -> Composite {
        let mut whole = Sha256::new();
        let mut parts = 0;
        for part in data.chunks(part_size) {
            whole.update(Sha256::digest(part));
            parts += 1;
        }
        Composite {
            digest: whole.finalize().into(),
            parts,
            part_size: part_size as u64,
        }
    }

    fn chunks(data: &[u8]) -> BodyStream {
        let parts: Vec<Result<Bytes>> = data
            .chunks(100_003)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts).boxed()
    }

    /// A multipart object larger than the inline share of the digest, in
    /// chunks that straddle part boundaries: the composite checks out, and
    /// one part count off fails the read.
    #[tokio::test]
    async fn a_large_composite_is_checked_beside_the_reader() {
        let data: Vec<u8> = (0..3_500_000_usize).map(|i| (i % 253) as u8).collect();
        let key = Key::new("big").expect("key");
        let good = composite(&data, 1_048_583);
        let got: Vec<Bytes> = verify_composite(chunks(&data), key.clone(), good)
            .try_collect()
            .await
            .expect("the composite matches");
        assert_eq!(got.concat(), data);
        let mut wrong = composite(&data, 1_048_583);
        wrong.parts += 1;
        let err = verify_composite(chunks(&data), key, wrong)
            .try_collect::<Vec<Bytes>>()
            .await
            .expect_err("a part count off fails");
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
    }
}
