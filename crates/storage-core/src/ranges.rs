//! The defaults of [`Backend::get_ranges`] and
//! [`Backend::delete_many`], and what
//! backends need to answer conditional reads.

use std::ops::Range;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use crate::{Backend, ByteRange, DeleteOptions, Error, GetOptions, Key, Result};

/// Ranges closer than this many bytes are read with one request (1 MiB,
/// object_store's `OBJECT_STORE_COALESCE_DEFAULT`): a second request costs
/// more than reading the gap.
pub const COALESCE_GAP: u64 = 1024 * 1024;

/// Most requests [`get_ranges`] and [`delete_many`] keep in flight (10, as
/// object_store's `OBJECT_STORE_COALESCE_PARALLEL`).
pub const PARALLEL_REQUESTS: usize = 10;

/// How many times [`get_ranges`] starts over when the object changes
/// between its requests.
const ATTEMPTS: usize = 3;

/// The requests that serve `ranges`: ascending, non-overlapping, each
/// covering every range that lies within [`COALESCE_GAP`] bytes of the
/// previous one. Empty ranges need no request and are left out.
pub fn coalesce(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
    sorted.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match merged.last_mut() {
            Some(last) if range.start <= last.end.saturating_add(COALESCE_GAP) => {
                last.end = last.end.max(range.end);
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// The default of [`Backend::get_ranges`]: the ranges [`coalesce`]d into
/// few requests, at most [`PARALLEL_REQUESTS`] in flight, all pinned to the
/// version the first one read (`if_match` its ETag); if the object changes
/// in between, the read starts over (at most 3 times; then a transient
/// [`Error::Backend`]), so every slice comes from one version (one ETag:
/// on a store whose ETags are not unique, one content).
///
/// # Errors
/// As [`Backend::get_ranges`].
pub async fn get_ranges<B: Backend + ?Sized>(
    backend: &B,
    key: &Key,
    ranges: &[Range<u64>],
) -> Result<Vec<Bytes>> {
    let requests = coalesce(ranges);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match read_requests(backend, key, &requests).await {
            Ok(fetched) => return slice(key, ranges, &requests, &fetched),
            // The pin failed: the object changed between two requests.
            Err(Error::PreconditionFailed { .. }) if attempt < ATTEMPTS => {}
            Err(Error::PreconditionFailed { .. }) => {
                return Err(Error::Backend {
                    transient: true,
                    message: format!(
                        "{key} was replaced during each of {ATTEMPTS} reads of its ranges"
                    ),
                    source: None,
                });
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads `requests` of one version: the first alone, the rest pinned to
/// its ETag. Returns each request's bytes and the object's size.
async fn read_requests<B: Backend + ?Sized>(
    backend: &B,
    key: &Key,
    requests: &[Range<u64>],
) -> Result<(Vec<Bytes>, u64)> {
    let Some(first) = requests.first() else {
        // Only empty ranges: the object must still exist.
        let meta = backend.head(key).await?;
        return Ok((Vec::new(), meta.size));
    };
    let got = backend
        .get(key, GetOptions::range(ByteRange::from(first.clone())))
        .await?;
    let (etag, size) = (got.meta.etag.clone(), got.meta.size);
    let mut fetched = vec![got.bytes().await?];
    let rest: Vec<Bytes> = stream::iter(requests[1..].iter().cloned())
        .map(|range| {
            let options = GetOptions {
                if_match: Some(etag.clone()),
                ..GetOptions::range(ByteRange::from(range))
            };
            async move { backend.get(key, options).await?.bytes().await }
        })
        .buffered(PARALLEL_REQUESTS)
        .try_collect()
        .await?;
    fetched.extend(rest);
    Ok((fetched, size))
}

/// Cuts each of `ranges` out of the bytes fetched for `requests`.
fn slice(
    key: &Key,
    ranges: &[Range<u64>],
    requests: &[Range<u64>],
    (fetched, size): &(Vec<Bytes>, u64),
) -> Result<Vec<Bytes>> {
    ranges
        .iter()
        .map(|range| {
            if range.end > *size || range.start > range.end {
                return Err(Error::InvalidRange {
                    key: key.to_string(),
                    range: ByteRange::from(range.clone()).to_string(),
                    size: *size,
                });
            }
            if range.start == range.end {
                return Ok(Bytes::new());
            }
            let index = requests.partition_point(|r| r.end <= range.start);
            let (request, bytes) = requests
                .get(index)
                .zip(fetched.get(index))
                .filter(|(r, _)| r.start <= range.start)
                .ok_or_else(|| short_read(key, range))?;
            let (from, to) = (
                (range.start - request.start) as usize,
                (range.end - request.start) as usize,
            );
            if to > bytes.len() {
                return Err(short_read(key, range));
            }
            Ok(bytes.slice(from..to))
        })
        .collect()
}

/// The error of a response shorter than the range it had to serve.
fn short_read(key: &Key, range: &Range<u64>) -> Error {
    Error::Backend {
        transient: true,
        message: format!(
            "reading {} of {key}: the backend served fewer bytes than requested",
            ByteRange::from(range.clone())
        ),
        source: None,
    }
}

/// The default of [`Backend::delete_many`]: one unconditional
/// [`Backend::delete`] per key, at most [`PARALLEL_REQUESTS`] in flight,
/// results in the order of `keys`.
///
/// # Errors
/// Never as a whole; each key's failure is in its own result.
pub async fn delete_many<B: Backend + ?Sized>(
    backend: &B,
    keys: &[Key],
) -> Result<Vec<Result<()>>> {
    Ok(stream::iter(keys.iter().cloned())
        .map(|key| async move { backend.delete(&key, DeleteOptions::default()).await })
        .buffered(PARALLEL_REQUESTS)
        .collect()
        .await)
}

/// One result per key of a request that failed as a whole with `error`,
/// for `delete_many` implementations that go on with their next request:
/// each key gets an [`Error::Backend`] with the error's message and
/// transience (errors are not `Clone`, so the variant survives only in the
/// message).
pub fn failed_together(error: &Error, keys: usize) -> Vec<Result<()>> {
    let message = error.to_string();
    (0..keys)
        .map(|_| {
            Err(Error::Backend {
                transient: error.is_transient(),
                message: message.clone(),
                source: None,
            })
        })
        .collect()
}

/// The error to report when a conditional read (`options`) of `key` failed
/// with `answer`, for backends whose service answers a failed condition
/// with a status the SDK does not name (a bare 304 or 412): reads the
/// object's metadata and returns the conditions' own verdict
/// ([`GetOptions::check`]); when they hold (the object changed in between,
/// or the failure had another cause), `answer` unchanged.
pub async fn conditional_read_failure<B: Backend + ?Sized>(
    backend: &B,
    key: &Key,
    options: &GetOptions,
    answer: Error,
) -> Error {
    if !options.is_conditional() {
        return answer;
    }
    match backend.head(key).await {
        Ok(meta) => options.check(key, &meta).err().unwrap_or(answer),
        Err(e @ Error::NotFound { .. }) => e,
        Err(_) => answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_ranges_share_a_request() {
        let mib = COALESCE_GAP;
        assert_eq!(
            coalesce(&[10..20, 0..5, 30..40, 5 * mib..5 * mib + 1, 7..7]),
            vec![0..40, 5 * mib..5 * mib + 1]
        );
    }
}
