//! Object metadata: what `head`, `put` and `list` return, and user metadata rules.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::{ETag, Error, Key, Result};

/// User metadata: lower-case ASCII names to ASCII values.
pub type Metadata = BTreeMap<String, String>;

/// Most bytes of user metadata per object: the sum of every name's and
/// value's length (DESIGN section 2, rule 8; S3 allows 2 KiB).
pub const MAX_METADATA_BYTES: usize = 2048;

/// What the store knows of one version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: Key,
    /// Size of the content in bytes.
    pub size: u64,
    /// The version token of this content (see [`ETag`]).
    pub etag: ETag,
    /// When this version was written, as the store's clock saw it.
    pub last_modified: SystemTime,
    /// The content type given at put, if any.
    pub content_type: Option<String>,
    /// User metadata given at put.
    pub metadata: Metadata,
    /// SHA-256 of the content, where the backend records it.
    pub sha256: Option<[u8; 32]>,
}

/// Checks user metadata against the portable rules, before any I/O.
///
/// Names: 1 or more of `a-z`, `0-9`, `-`, `_`, starting with a letter (the
/// intersection of what S3, GCS and Azure accept once lower-cased). Values:
/// printable ASCII (`0x20..=0x7e`), since they travel as HTTP headers; encode
/// anything else yourself. All names and values together: at most
/// [`MAX_METADATA_BYTES`].
///
/// # Errors
/// [`Error::InvalidArgument`] naming the offending entry or the total size.
pub fn validate_metadata(metadata: &Metadata) -> Result<()> {
    let mut total = 0usize;
    for (name, value) in metadata {
        let name_ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(Error::invalid_argument(format!(
                "metadata name {name:?} must be lower-case ASCII letters, digits, '-' or '_', starting with a letter"
            )));
        }
        if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(Error::invalid_argument(format!(
                "metadata value of {name:?} must be printable ASCII"
            )));
        }
        total += name.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(Error::invalid_argument(format!(
            "metadata is {total} bytes; at most {MAX_METADATA_BYTES} bytes are allowed"
        )));
    }
    Ok(())
}

/// Checks a content type: printable ASCII, at most 256 bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] when it is not.
pub fn validate_content_type(content_type: &str) -> Result<()> {
    if content_type.len() > 256 || !content_type.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Error::invalid_argument(format!(
            "content type {content_type:?} must be printable ASCII of at most 256 bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> Metadata {
        Metadata::from([(name.to_owned(), value.to_owned())])
    }

    #[test]
    fn limit_is_inclusive() {
        assert!(validate_metadata(&one("k", &"v".repeat(MAX_METADATA_BYTES - 1))).is_ok());
        assert!(validate_metadata(&one("k", &"v".repeat(MAX_METADATA_BYTES))).is_err());
    }

    #[test]
    fn names_must_be_lower_case() {
        assert!(validate_metadata(&one("owner-id_2", "x")).is_ok());
        assert!(validate_metadata(&one("Owner", "x")).is_err());
        assert!(validate_metadata(&one("", "x")).is_err());
        assert!(validate_metadata(&one("1a", "x")).is_err());
    }

    #[test]
    fn values_must_be_printable_ascii() {
        assert!(validate_metadata(&one("a", "line\nbreak")).is_err());
        assert!(validate_metadata(&one("a", "café")).is_err());
    }
}
