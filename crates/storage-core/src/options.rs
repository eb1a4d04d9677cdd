//! Options of each operation: put modes, byte ranges, listing and deletion.

use std::fmt;
use std::ops::{Range, RangeFrom};
use std::time::SystemTime;

use crate::{ETag, Error, Key, Metadata, ObjectMeta, Result};

/// How a put treats an existing object (DESIGN section 2, rules 2 and 3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PutMode {
    /// Replace whatever is there.
    #[default]
    Overwrite,
    /// Create only: fail with [`Error::AlreadyExists`] if the key is present
    /// (HTTP `If-None-Match: *`).
    IfNotExists,
    /// Compare-and-swap: replace only the version with this ETag; fail with
    /// [`Error::PreconditionFailed`] if the key is missing or has another ETag
    /// (HTTP `If-Match`, RFC 9110 section 13.1.1).
    IfMatch(ETag),
}

/// The HTTP method a presigned URL is good for
/// ([`Backend::presign`](crate::Backend::presign)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresignMethod {
    /// Reading the object (`GET`; the URL serves `HEAD` too on S3 and GCS).
    Get,
    /// Writing the whole object with one `PUT` of its body (on Azure with
    /// the header `x-ms-blob-type: BlockBlob`, as Put Blob requires).
    Put,
}

impl PresignMethod {
    /// The method's name as sent on the wire: `"GET"` or `"PUT"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PresignMethod::Get => "GET",
            PresignMethod::Put => "PUT",
        }
    }
}

/// Options of [`Backend::put`](crate::Backend::put).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The precondition.
    pub mode: PutMode,
    /// Content type to store, for example `application/json`.
    pub content_type: Option<String>,
    /// User metadata; see [`validate_metadata`](crate::validate_metadata).
    pub metadata: Metadata,
}

impl PutOptions {
    /// Options with the given mode and nothing else.
    pub fn mode(mode: PutMode) -> Self {
        PutOptions {
            mode,
            ..Default::default()
        }
    }

    /// Checks the content type and metadata before any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when either breaks its rule.
    pub fn validate(&self) -> Result<()> {
        if let Some(ct) = &self.content_type {
            crate::validate_content_type(ct)?;
        }
        crate::validate_metadata(&self.metadata)
    }
}

/// A byte range to read, as in an HTTP `Range` header (RFC 9110 section 14.1.2).
///
/// Resolved against an object's size by [`ByteRange::resolve`]:
/// - the end of a [`ByteRange::Bounded`] range past the size is clamped;
/// - a start at or past the size is [`Error::InvalidRange`], and so is every
///   range on an empty object;
/// - an empty bounded range (`start >= end`) and a zero-length suffix are
///   [`Error::InvalidRange`];
/// - a suffix longer than the object returns the whole object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The half-open range `start..end`.
    Bounded {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// From `start` to the end.
    From {
        /// First byte.
        start: u64,
    },
    /// The last `len` bytes.
    Suffix {
        /// Number of bytes.
        len: u64,
    },
}

impl ByteRange {
    /// The last `len` bytes of the object.
    pub fn suffix(len: u64) -> Self {
        ByteRange::Suffix { len }
    }

    /// The half-open range of bytes this range selects in an object of `size`
    /// bytes.
    ///
    /// # Errors
    /// [`Error::InvalidRange`] under the rules in the type's docs.
    pub fn resolve(&self, key: &Key, size: u64) -> Result<Range<u64>> {
        let resolved = match *self {
            ByteRange::Bounded { start, end } if start < end && start < size => {
                Some(start..end.min(size))
            }
            ByteRange::From { start } if start < size => Some(start..size),
            ByteRange::Suffix { len } if len > 0 && size > 0 => Some(size - len.min(size)..size),
            _ => None,
        };
        resolved.ok_or_else(|| Error::InvalidRange {
            key: key.to_string(),
            range: self.to_string(),
            size,
        })
    }
}

impl From<Range<u64>> for ByteRange {
    fn from(r: Range<u64>) -> Self {
        ByteRange::Bounded {
            start: r.start,
            end: r.end,
        }
    }
}

impl From<RangeFrom<u64>> for ByteRange {
    fn from(r: RangeFrom<u64>) -> Self {
        ByteRange::From { start: r.start }
    }
}

/// Parses an HTTP `Content-Range` value of the form `bytes a-b/size`
/// (RFC 9110, section 14.4) into the half-open range served (`a..b + 1`)
/// and the object's full size in bytes; `None` for the other forms
/// (`bytes */size`, an unknown size) and for malformed values. The inverse
/// of the `Range` header that [`ByteRange`] writes, for backends that read
/// ranges over HTTP.
pub fn parse_content_range(value: &str) -> Option<(Range<u64>, u64)> {
    let rest = value.strip_prefix("bytes ")?;
    let (span, size) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, size): (u64, u64, u64) = (a.parse().ok()?, b.parse().ok()?, size.parse().ok()?);
    Some((a..b.checked_add(1)?, size))
}

impl fmt::Display for ByteRange {
    /// Writes the range as an HTTP `Range` header value, for example
    /// `bytes=0-99` for the half-open `0..100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ByteRange::Bounded { start, end } => {
                write!(f, "bytes={start}-{}", end.saturating_sub(1))
            }
            ByteRange::From { start } => write!(f, "bytes={start}-"),
            ByteRange::Suffix { len } => write!(f, "bytes=-{len}"),
        }
    }
}

/// Options of [`Backend::get`](crate::Backend::get) and
/// [`Backend::head_if`](crate::Backend::head_if).
///
/// The four conditions are those of an HTTP conditional `GET` (RFC 9110
/// section 13.1), evaluated in the order of section 13.2.2 by
/// [`GetOptions::check`]: `if_match`, then `if_unmodified_since` (only
/// without `if_match`), then `if_none_match`, then `if_modified_since`
/// (only without `if_none_match`). Times compare in whole seconds, the
/// precision of an HTTP date. A missing object is [`Error::NotFound`]
/// whatever the conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Read only these bytes.
    pub range: Option<ByteRange>,
    /// Read only if the current version has this ETag, otherwise fail with
    /// [`Error::PreconditionFailed`] (`If-Match`).
    pub if_match: Option<ETag>,
    /// Read only if the current version does not have this ETag, otherwise
    /// fail with [`Error::NotModified`] (`If-None-Match`): the poller's
    /// "has it changed since the version I hold?".
    pub if_none_match: Option<ETag>,
    /// Read only if the object changed after this time, otherwise fail with
    /// [`Error::NotModified`] (`If-Modified-Since`).
    pub if_modified_since: Option<SystemTime>,
    /// Read only if the object did not change after this time, otherwise
    /// fail with [`Error::ModifiedSince`] (`If-Unmodified-Since`).
    pub if_unmodified_since: Option<SystemTime>,
}

impl GetOptions {
    /// Options reading the given range.
    pub fn range(range: impl Into<ByteRange>) -> Self {
        GetOptions {
            range: Some(range.into()),
            ..Default::default()
        }
    }

    /// Whether any of the four conditions is set.
    pub fn is_conditional(&self) -> bool {
        self.if_match.is_some()
            || self.if_none_match.is_some()
            || self.if_modified_since.is_some()
            || self.if_unmodified_since.is_some()
    }

    /// The conditions' verdict on the current version `meta` of `key`, in
    /// the order of RFC 9110 section 13.2.2 (see the type's docs).
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] for a failed `if_match`,
    /// [`Error::ModifiedSince`] for a failed `if_unmodified_since`,
    /// [`Error::NotModified`] for a matching `if_none_match` or a failed
    /// `if_modified_since`.
    pub fn check(&self, key: &Key, meta: &ObjectMeta) -> Result<()> {
        let modified = whole_seconds(meta.last_modified);
        if let Some(expected) = &self.if_match {
            crate::memory::check_if_match(key, expected, Some(&meta.etag))?;
        } else if let Some(since) = self.if_unmodified_since
            && modified > whole_seconds(since)
        {
            return Err(Error::ModifiedSince {
                key: key.to_string(),
                since,
                last_modified: meta.last_modified,
            });
        }
        let not_modified = match (&self.if_none_match, self.if_modified_since) {
            (Some(etag), _) => *etag == meta.etag,
            (None, Some(since)) => modified <= whole_seconds(since),
            (None, None) => false,
        };
        if not_modified {
            return Err(Error::NotModified {
                key: key.to_string(),
                etag: Some(meta.etag.clone()),
            });
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch, rounded down (times before it are 0): the
/// precision of an HTTP date.
fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Most entries a listing page may hold (S3's `MaxKeys` ceiling).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Options of [`Backend::list`](crate::Backend::list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys starting with this string (byte-wise).
    pub prefix: String,
    /// Group keys by `/` after the prefix: a key with a `/` after the prefix
    /// is reported once as the common prefix up to and including that `/`.
    pub delimiter: bool,
    /// Only keys (and common prefixes) greater than this string, byte-wise.
    pub start_after: Option<String>,
    /// Most entries (objects plus common prefixes) per page: 1 to
    /// [`MAX_PAGE_SIZE`]; `None` means [`MAX_PAGE_SIZE`].
    pub page_size: Option<usize>,
    /// The [`ListPage::continuation`] of the previous page.
    pub continuation: Option<String>,
    /// Include keys with a reserved segment (staged writes, attachments,
    /// transaction records; [`Key::is_reserved`](crate::Key::is_reserved)),
    /// which ordinary listings leave out (DESIGN section 2, rule 7): for the
    /// staging layer's own listings, such as
    /// [`Backend::list_staged`](crate::Backend::list_staged).
    pub reserved: bool,
}

impl ListOptions {
    /// Options listing every key under `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        ListOptions {
            prefix: prefix.into(),
            ..Default::default()
        }
    }

    /// The page size to use, checked.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 or more than [`MAX_PAGE_SIZE`].
    pub fn effective_page_size(&self) -> Result<usize> {
        match self.page_size {
            None => Ok(MAX_PAGE_SIZE),
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            Some(n) => Err(Error::invalid_argument(format!(
                "page size {n} must be between 1 and {MAX_PAGE_SIZE}"
            ))),
        }
    }

    /// Checks the prefix, `start_after` and page size before any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        crate::validate_prefix(&self.prefix)?;
        if self
            .start_after
            .as_ref()
            .is_some_and(|s| s.len() > crate::MAX_KEY_BYTES)
        {
            return Err(Error::invalid_argument(
                "start_after must be at most 1024 bytes",
            ));
        }
        self.effective_page_size().map(|_| ())
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in ascending byte order of their keys.
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the distinct prefixes up to and including the first
    /// `/` after the listing prefix, ascending.
    pub common_prefixes: Vec<String>,
    /// Pass as [`ListOptions::continuation`] to get the next page; `None` on
    /// the last page.
    pub continuation: Option<String>,
}

/// Options of [`Backend::delete`](crate::Backend::delete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Delete only the version with this ETag; a missing object or another
    /// ETag is [`Error::PreconditionFailed`].
    pub if_match: Option<ETag>,
}

#[cfg(test)]
mod tests {

    #[test]
    fn content_ranges_parse_into_half_open_ranges() {
        assert_eq!(parse_content_range("bytes 2-5/10"), Some((2..6, 10)));
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("bytes 0-18446744073709551615/1"), None);
    }
    use super::*;

    fn key() -> Key {
        Key::new("k").expect("valid key")
    }

    #[test]
    fn ranges_resolve_by_the_rules() {
        let k = key();
        assert_eq!(ByteRange::from(2..5).resolve(&k, 10).ok(), Some(2..5));
        assert_eq!(ByteRange::from(8..50).resolve(&k, 10).ok(), Some(8..10));
        assert_eq!(ByteRange::from(3..).resolve(&k, 10).ok(), Some(3..10));
        assert_eq!(ByteRange::suffix(4).resolve(&k, 10).ok(), Some(6..10));
        assert_eq!(ByteRange::suffix(40).resolve(&k, 10).ok(), Some(0..10));
        for bad in [
            ByteRange::from(10..12),
            ByteRange::from(5..5),
            ByteRange::from(10..),
            ByteRange::suffix(0),
        ] {
            assert!(bad.resolve(&k, 10).is_err(), "{bad} should be invalid");
        }
        assert!(ByteRange::suffix(1).resolve(&k, 0).is_err());
    }

    #[test]
    fn ranges_display_as_http_headers() {
        assert_eq!(ByteRange::from(0..100).to_string(), "bytes=0-99");
        assert_eq!(ByteRange::from(7..).to_string(), "bytes=7-");
        assert_eq!(ByteRange::suffix(5).to_string(), "bytes=-5");
    }
}
