//! The error type shared by every backend and layer, and its classification.
//!
//! Each backend converts its private errors into [`Error`] in one place and
//! documents its status-code mapping as a table in its own `error.rs`.

use std::fmt;

use crate::ETag;

/// A boxed error kept as the source of a [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure an operation of the contract can report (DESIGN section 2,
/// rule 11).
///
/// Variants carry what a caller needs to act on them: the key, the expected and
/// the actual ETag, the object size. [`Error::is_transient`] tells a retrying
/// layer whether trying again may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("object not found: {key}")]
    NotFound {
        /// The key that was looked up.
        key: String,
    },
    /// A [`PutMode::IfNotExists`](crate::PutMode::IfNotExists) write found the
    /// key present; nothing was changed.
    #[error("object already exists: {key}")]
    AlreadyExists {
        /// The key that was written.
        key: String,
    },
    /// An `If-Match` precondition did not hold: the key is missing or its ETag
    /// differs (RFC 9110 section 13.1.1). Nothing was changed.
    #[error(
        "precondition failed for {key}: expected ETag {expected}, found {}",
        DisplayActual(actual)
    )]
    PreconditionFailed {
        /// The key that was written, read or deleted.
        key: String,
        /// The ETag the caller required.
        expected: ETag,
        /// The ETag found, or `None` when the object is missing or the server
        /// did not say.
        actual: Option<ETag>,
    },
    /// A conditional read's `If-None-Match` matched, or its
    /// `If-Modified-Since` found no change since the given time: the caller's
    /// copy is current, and nothing was read (HTTP `304 Not Modified`, RFC
    /// 9110 section 15.4.5).
    #[error("not modified: {key}{}", DisplayEtag(etag))]
    NotModified {
        /// The key that was read.
        key: String,
        /// The current version's ETag, when known.
        etag: Option<ETag>,
    },
    /// A conditional read's `If-Unmodified-Since` failed: the object changed
    /// after the given time (HTTP `412 Precondition Failed`, RFC 9110
    /// section 13.1.4). Nothing was read.
    #[error(
        "precondition failed for {key}: modified at {} after {}",
        httpdate::fmt_http_date(*last_modified),
        httpdate::fmt_http_date(*since)
    )]
    ModifiedSince {
        /// The key that was read.
        key: String,
        /// The time the caller gave.
        since: std::time::SystemTime,
        /// The current version's last modification.
        last_modified: std::time::SystemTime,
    },
    /// The key is not a valid [`Key`](crate::Key); no I/O was done.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key, as given.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The byte range cannot be satisfied for this object (RFC 9110 section
    /// 15.5.17, `416 Range Not Satisfiable`).
    #[error("invalid range {range} for {key} of {size} bytes")]
    InvalidRange {
        /// The key that was read.
        key: String,
        /// The requested range, as written by [`ByteRange`](crate::ByteRange)'s `Display`.
        range: String,
        /// The object's size in bytes.
        size: u64,
    },
    /// An argument other than the key is invalid (metadata, options); no I/O
    /// was done.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// The stored content does not match the SHA-256 recorded when it was
    /// written: the bytes on storage are corrupt.
    #[error("checksum mismatch for {key}: recorded {expected}, computed {actual}")]
    ChecksumMismatch {
        /// The key that was read.
        key: String,
        /// The recorded digest, lower-case hex.
        expected: String,
        /// The digest of the bytes read, lower-case hex.
        actual: String,
    },
    /// Decryption or authentication failed: ciphertext tampered with, moved to
    /// another key or context, or the wrong key-encryption key.
    #[error("integrity check failed for {key}: {message}")]
    Integrity {
        /// The key that was read.
        key: String,
        /// What failed.
        message: String,
    },
    /// The credentials are valid but do not allow the operation (HTTP 403).
    #[error("permission denied{}: {message}", DisplayKey(key))]
    PermissionDenied {
        /// The key, when the operation had one.
        key: Option<String>,
        /// The server's explanation.
        message: String,
    },
    /// The bucket (S3, GCS) or container (Azure) the backend is configured
    /// with does not exist: a configuration error, never the
    /// [`Error::NotFound`] of a key, and not transient.
    #[error("bucket or container not found: {bucket}")]
    BucketNotFound {
        /// The bucket or container name.
        bucket: String,
    },
    /// No valid credentials were presented (HTTP 401).
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// The server's explanation.
        message: String,
    },
    /// The object or request exceeds a size limit of the backend.
    #[error(
        "too large{}: {size} bytes exceeds the limit of {limit} bytes",
        DisplayKey(key)
    )]
    TooLarge {
        /// The key, when the operation had one.
        key: Option<String>,
        /// The size that was attempted, in bytes.
        size: u64,
        /// The backend's limit, in bytes.
        limit: u64,
    },
    /// The backend does not support this operation; see
    /// [`Capabilities`](crate::Capabilities).
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported {
        /// The operation, for example `"conditional delete"`.
        operation: &'static str,
        /// The backend's name.
        backend: String,
    },
    /// A one-shot body was already (partly) sent and cannot be sent again, so
    /// the operation cannot be retried; no partial object was written.
    #[error("the body for {key} cannot be replayed{}", DisplaySource(source))]
    NonReplayableBody {
        /// The key that was written.
        key: String,
        /// The transient failure that would otherwise have been retried.
        #[source]
        source: Option<BoxError>,
    },
    /// Another writer holds a lock: another process or instance holds the
    /// exclusive lock on the store, or another transaction holds a key's
    /// lock (`K/.staging/.lock`, see [`Txn`](crate::Txn)).
    #[error("locked: {path} is held by another writer")]
    Locked {
        /// The lock file or directory.
        path: String,
    },
    /// Any other failure of the backend or its transport.
    #[error("{message}")]
    Backend {
        /// Whether trying the same operation again may succeed (timeouts,
        /// connection resets, throttling, 5xx).
        transient: bool,
        /// What failed, with the key where there is one.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

struct DisplayActual<'a>(&'a Option<ETag>);

impl fmt::Display for DisplayActual<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(etag) => write!(f, "{etag}"),
            None => f.write_str("no object"),
        }
    }
}

struct DisplayEtag<'a>(&'a Option<ETag>);

impl fmt::Display for DisplayEtag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(etag) => write!(f, " (ETag {etag})"),
            None => Ok(()),
        }
    }
}

struct DisplaySource<'a>(&'a Option<BoxError>);

impl fmt::Display for DisplaySource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(source) => write!(f, " after: {source}"),
            None => Ok(()),
        }
    }
}

struct DisplayKey<'a>(&'a Option<String>);

impl fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, " for {key}"),
            None => Ok(()),
        }
    }
}

impl Error {
    /// Whether retrying the same operation may succeed.
    ///
    /// True only for [`Error::Backend`] errors marked transient (timeouts,
    /// connection resets, HTTP 429, 500, 502, 503, 504, S3's 409
    /// `ConditionalRequestConflict`). Every other variant is a definite answer
    /// that a retry would repeat.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                transient: true,
                ..
            }
        )
    }

    /// A stable snake_case name of the variant, for logs and metric labels:
    /// `not_found`, `already_exists`, `precondition_failed`,
    /// `not_modified`, `modified_since`, `invalid_key`,
    /// `invalid_range`, `invalid_argument`, `checksum_mismatch`,
    /// `integrity`, `permission_denied`, `bucket_not_found`,
    /// `unauthenticated`, `too_large`, `unsupported`,
    /// `non_replayable_body`, `locked`, and for [`Error::Backend`]
    /// `transient` or `backend` after [`Error::is_transient`].
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::PreconditionFailed { .. } => "precondition_failed",
            Error::NotModified { .. } => "not_modified",
            Error::ModifiedSince { .. } => "modified_since",
            Error::InvalidKey { .. } => "invalid_key",
            Error::InvalidRange { .. } => "invalid_range",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::ChecksumMismatch { .. } => "checksum_mismatch",
            Error::Integrity { .. } => "integrity",
            Error::PermissionDenied { .. } => "permission_denied",
            Error::BucketNotFound { .. } => "bucket_not_found",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::TooLarge { .. } => "too_large",
            Error::Unsupported { .. } => "unsupported",
            Error::NonReplayableBody { .. } => "non_replayable_body",
            Error::Locked { .. } => "locked",
            Error::Backend {
                transient: true, ..
            } => "transient",
            Error::Backend { .. } => "backend",
        }
    }

    /// An [`Error::InvalidArgument`] with the given message.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
        }
    }

    /// A [`Error::Backend`] error with a message and a source.
    pub fn backend(
        transient: bool,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            transient,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Converts a local I/O error into [`Error::Backend`], classifying it.
    ///
    /// `context` says what was being done and on which key or path; it becomes
    /// the message. Timeouts, interruptions and connection failures are
    /// transient; everything else is not.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let transient = matches!(
            err.kind(),
            K::TimedOut
                | K::Interrupted
                | K::WouldBlock
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::ConnectionRefused
                | K::BrokenPipe
                | K::UnexpectedEof
        );
        let context = context.into();
        Error::Backend {
            transient,
            message: format!("{context}: {err}"),
            source: Some(Box::new(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_backend_errors_are_transient() {
        let timeout = Error::io("read", std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(timeout.is_transient());
        let denied = Error::io(
            "read",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(!denied.is_transient());
        assert!(!Error::NotFound { key: "a".into() }.is_transient());
    }

    #[test]
    fn precondition_message_names_both_etags() {
        let err = Error::PreconditionFailed {
            key: "k".into(),
            expected: ETag::new("e1"),
            actual: None,
        };
        assert_eq!(
            err.to_string(),
            "precondition failed for k: expected ETag e1, found no object"
        );
    }
}
