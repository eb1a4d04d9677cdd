//! S3 errors → [`storage_core::Error`], in one place.
//!
//! An answer is classified by its HTTP status and S3 error code in one table,
//! [`TABLE`], read top to bottom (the first row that matches wins; "any"
//! matches every status or code); an answer that matches no row is a
//! [`Class::Other`]. The error column is what an unconditional request on a
//! key gets; `Context` says how conditional and bucket requests read a
//! missing key and a failed precondition (second table).
//!
//! | status | code | class | error, unconditional request on a key | transient |
//! |---|---|---|---|---|
//! | any | `NoSuchBucket` | BucketNotFound | `BucketNotFound` | no |
//! | 404 | `NoSuchKey` | KeyNotFound | `NotFound` | no |
//! | 404 | `NoSuchUpload` | KeyNotFound | `NotFound` (the multipart upload is gone) | no |
//! | 404 | any | KeyOrBucketNotFound | `NotFound`, or `BucketNotFound` after one HeadBucket (HEAD answers have no body: the SDK reads their 404 as code `NotFound`) | no |
//! | 412 | any | ConditionFailed | `PreconditionFailed` | no |
//! | 304 | any | ConditionFailed | `PreconditionFailed` (some S3-compatible servers answer `If-None-Match: *` on a write with 304 Not Modified rather than 412) | no |
//! | 416 | any | InvalidRange | `InvalidRange` | no |
//! | 400 | `RequestTimeout` | Transient | `Backend` | yes |
//! | 400 | `BadDigest` | ChecksumMismatch | `ChecksumMismatch` | no |
//! | 400 | `XAmzContentSHA256Mismatch` | ChecksumMismatch | `ChecksumMismatch` | no |
//! | 400 | `KeyTooLongError` | InvalidKey | `InvalidKey` | no |
//! | 400 | `ExpiredToken` | Unauthenticated | `Unauthenticated` | no |
//! | 400 | `InvalidToken` | Unauthenticated | `Unauthenticated` | no |
//! | 403 | `InvalidAccessKeyId` | Unauthenticated | `Unauthenticated` | no |
//! | 403 | `SignatureDoesNotMatch` | Unauthenticated | `Unauthenticated` | no |
//! | 403 | any | PermissionDenied | `PermissionDenied` (`AccessDenied`; a HEAD answer has no code) | no |
//! | 401 | any | Unauthenticated | `Unauthenticated` | no |
//! | 413 | any | TooLarge | `TooLarge` | no |
//! | any | `EntityTooLarge` | TooLarge | `TooLarge` | no |
//! | 409 | `ConditionalRequestConflict` | Transient | `Backend` | yes |
//! | 409 | `OperationAborted` | Transient | `Backend` | yes |
//! | 200 | `InternalError` | Transient | `Backend` (CompleteMultipartUpload, CopyObject: an error inside a 200 answer, which the SDK turns into an error) | yes |
//! | 408 | any | Transient | `Backend` | yes |
//! | 429 | any | Transient | `Backend` | yes |
//! | 500 | any | Transient | `Backend` (`InternalError`) | yes |
//! | 502 | any | Transient | `Backend` | yes |
//! | 503 | any | Transient | `Backend` (`SlowDown`, `ServiceUnavailable`) | yes |
//! | 504 | any | Transient | `Backend` | yes |
//! | any | `SlowDown` | Transient | `Backend` | yes |
//!
//! | class | create-only write (`If-None-Match: *`) | `If-Match` write or delete | request on the bucket (listing, HeadBucket) |
//! |---|---|---|---|
//! | KeyNotFound, KeyOrBucketNotFound | `NotFound` | `PreconditionFailed` (moto answers 404 for a missing key) | `BucketNotFound` |
//! | ConditionFailed | `AlreadyExists` | `PreconditionFailed` | `PreconditionFailed` |
//!
//! Failures without an answer:
//!
//! | failure | error | transient |
//! |---|---|---|
//! | the credentials provider timed out | `Backend` | yes |
//! | any other credentials failure: none found, refused by their provider, badly configured (the SDK reports it as a dispatch or construction failure carrying a `CredentialsError`) | `Unauthenticated` | no |
//! | timeout, connection failure, broken or unreadable answer | `Backend` | yes |
//! | a request the connector or the SDK cannot build | `Backend` | no |
//!
//! Every message names the S3 operation, the key, the S3 error code and the
//! HTTP status (the SDK's own `Display` says only "service error").
//!
//! Sources: Amazon S3 API Reference, "Error responses" (the list of error
//! codes) and "Conditional requests"; CompleteMultipartUpload and
//! CopyObject ("a 200 OK response can contain either a success or an
//! error"; `aws-sdk-s3` parses an `<Error>` body of a 200 answer of these
//! operations as an error); HeadObject and HeadBucket (no body on errors).

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use storage_core::{ETag, Error};

/// What the failed request was, which decides how a missing key and a
/// failed precondition read.
#[derive(Debug, Clone)]
pub(crate) enum Context {
    /// A put or copy with `If-None-Match: *`.
    Create,
    /// A put, copy or delete with `If-Match` on this ETag.
    IfMatch(ETag),
    /// A read or an unconditional write.
    Plain,
    /// A request on the bucket itself (a listing, HeadBucket): a 404 means
    /// the bucket is missing.
    Bucket,
}

/// What an answer means, before the request's `Context` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The bucket does not exist: [`Error::BucketNotFound`].
    BucketNotFound,
    /// The key does not exist: [`Error::NotFound`].
    KeyNotFound,
    /// A 404 that does not say whether the key or the bucket is missing:
    /// the backend asks the bucket with one HeadBucket (until the bucket is
    /// known to exist); without that, read as [`Class::KeyNotFound`].
    KeyOrBucketNotFound,
    /// A precondition did not hold: [`Error::PreconditionFailed`], or
    /// [`Error::AlreadyExists`] for a create-only write.
    ConditionFailed,
    /// [`Error::InvalidRange`].
    InvalidRange,
    /// The server computed another checksum than the one sent:
    /// [`Error::ChecksumMismatch`].
    ChecksumMismatch,
    /// [`Error::InvalidKey`].
    InvalidKey,
    /// [`Error::TooLarge`].
    TooLarge,
    /// Credentials missing, unknown, expired or with a wrong signature:
    /// [`Error::Unauthenticated`].
    Unauthenticated,
    /// Valid credentials without the right: [`Error::PermissionDenied`].
    PermissionDenied,
    /// Trying again may succeed: [`Error::Backend`], transient.
    Transient,
    /// Anything else: [`Error::Backend`], not transient.
    Other,
}

impl Class {
    /// Whether errors of this class are transient.
    pub fn is_transient(self) -> bool {
        self == Class::Transient
    }
}

/// One row of [`TABLE`]: an answer's HTTP status and service error code
/// (`None`: any), and its [`Class`].
pub type Row = storage_core::raw::StatusRow<Class>;

/// The classification of S3 answers, by status and error code; the first
/// matching row wins. The module documentation shows it as a table.
pub const TABLE: &[Row] = &[
    Row::code("NoSuchBucket", Class::BucketNotFound),
    Row::exact(404, "NoSuchKey", Class::KeyNotFound),
    Row::exact(404, "NoSuchUpload", Class::KeyNotFound),
    Row::status(404, Class::KeyOrBucketNotFound),
    Row::status(412, Class::ConditionFailed),
    Row::status(304, Class::ConditionFailed),
    Row::status(416, Class::InvalidRange),
    Row::exact(400, "RequestTimeout", Class::Transient),
    Row::exact(400, "BadDigest", Class::ChecksumMismatch),
    Row::exact(400, "XAmzContentSHA256Mismatch", Class::ChecksumMismatch),
    Row::exact(400, "KeyTooLongError", Class::InvalidKey),
    Row::exact(400, "ExpiredToken", Class::Unauthenticated),
    Row::exact(400, "InvalidToken", Class::Unauthenticated),
    Row::exact(403, "InvalidAccessKeyId", Class::Unauthenticated),
    Row::exact(403, "SignatureDoesNotMatch", Class::Unauthenticated),
    Row::status(403, Class::PermissionDenied),
    Row::status(401, Class::Unauthenticated),
    Row::status(413, Class::TooLarge),
    Row::code("EntityTooLarge", Class::TooLarge),
    Row::exact(409, "ConditionalRequestConflict", Class::Transient),
    Row::exact(409, "OperationAborted", Class::Transient),
    Row::exact(200, "InternalError", Class::Transient),
    Row::status(408, Class::Transient),
    Row::status(429, Class::Transient),
    Row::status(500, Class::Transient),
    Row::status(502, Class::Transient),
    Row::status(503, Class::Transient),
    Row::status(504, Class::Transient),
    Row::code("SlowDown", Class::Transient),
];

/// The first row of [`TABLE`] that an answer with `status` and `code`
/// matches, if any.
pub fn lookup(status: u16, code: Option<&str>) -> Option<&'static Row> {
    storage_core::raw::lookup(TABLE, status, code)
}

/// The class of an answer with `status` and `code` ([`Class::Other`] when no
/// row of [`TABLE`] matches).
pub fn classify(status: u16, code: Option<&str>) -> Class {
    lookup(status, code).map_or(Class::Other, |row| row.class)
}

/// The class of an SDK error that carries an answer; `None` for failures
/// without one (and for answers the SDK could not read).
pub(crate) fn classify_sdk<E>(err: &SdkError<E, HttpResponse>) -> Option<Class>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(_) => {
            let status = err.raw_response()?.status().as_u16();
            Some(classify(status, err.code()))
        }
        _ => None,
    }
}

/// Converts an SDK error of operation `op` on `key` in `bucket`.
pub(crate) fn from_sdk<E>(
    err: SdkError<E, HttpResponse>,
    op: &str,
    bucket: &str,
    key: &str,
    context: Context,
) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let detail = err.message().map(str::to_owned);
    let describe = || {
        format!(
            "S3 {op} of {key}: {} (HTTP {}){}",
            code.as_deref().unwrap_or("no error code"),
            status.map_or("none".to_owned(), |s| s.to_string()),
            detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )
    };
    let class = match (&err, status) {
        (SdkError::ServiceError(_), Some(status)) => classify(status, code.as_deref()),
        _ => return without_answer(err, op, key),
    };
    let key_s = key.to_owned();
    match class {
        Class::BucketNotFound => Error::BucketNotFound {
            bucket: bucket.to_owned(),
        },
        Class::KeyNotFound | Class::KeyOrBucketNotFound => match context {
            Context::Bucket => Error::BucketNotFound {
                bucket: bucket.to_owned(),
            },
            Context::IfMatch(expected) => Error::PreconditionFailed {
                key: key_s,
                expected,
                actual: None,
            },
            Context::Create | Context::Plain => Error::NotFound { key: key_s },
        },
        Class::ConditionFailed => match context {
            Context::Create => Error::AlreadyExists { key: key_s },
            Context::IfMatch(expected) => Error::PreconditionFailed {
                key: key_s,
                expected,
                actual: None,
            },
            Context::Plain | Context::Bucket => Error::PreconditionFailed {
                key: key_s,
                expected: ETag::new("(If-Match of the request)"),
                actual: None,
            },
        },
        Class::InvalidRange => Error::InvalidRange {
            key: key_s,
            range: describe(),
            size: 0,
        },
        Class::ChecksumMismatch => Error::ChecksumMismatch {
            key: key_s,
            expected: "the SHA-256 sent with the request".into(),
            actual: describe(),
        },
        Class::InvalidKey => Error::InvalidKey {
            key: key_s,
            reason: "the server rejects the name as too long",
        },
        Class::TooLarge => Error::TooLarge {
            key: Some(key_s),
            size: 0,
            limit: 0,
        },
        Class::Unauthenticated => Error::Unauthenticated {
            message: describe(),
        },
        Class::PermissionDenied => Error::PermissionDenied {
            key: Some(key_s),
            message: describe(),
        },
        Class::Transient => Error::backend(true, describe(), err),
        Class::Other => Error::backend(false, describe(), err),
    }
}

/// Converts a failure without a service answer: credentials, transport,
/// timeouts, unreadable answers, requests that cannot be built.
fn without_answer<E>(err: SdkError<E, HttpResponse>, op: &str, key: &str) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    if let Some(credentials) = credentials_failure(&err) {
        let message = format!(
            "S3 {op} of {key}: the credentials: {}",
            DisplayErrorContext(credentials)
        );
        return match credentials {
            CredentialsError::ProviderTimedOut(_) => Error::backend(true, message, err),
            _ => Error::Unauthenticated { message },
        };
    }
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        _ => false,
    };
    let message = format!("S3 {op} of {key}: {}", DisplayErrorContext(&err));
    Error::backend(transient, message, err)
}

/// The credentials provider's error in the source chain of `err`, if a
/// credentials failure is what stopped the request.
fn credentials_failure<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(credentials) = e.downcast_ref::<CredentialsError>() {
            return Some(credentials);
        }
        current = e.source();
    }
    None
}

/// The error for an S3 answer that lacks a field the protocol requires (an
/// ETag, an upload id): a server bug, not transient.
pub(crate) fn missing(op: &str, key: &str, field: &str) -> Error {
    Error::backend(
        false,
        format!("S3 {op} of {key}: the answer has no {field}"),
        format!("missing {field}"),
    )
}

#[cfg(test)]
mod tests;
