//! Azure Blob Storage errors → [`storage_core::Error`], in one place.
//!
//! An answer is classified by its HTTP status and Azure error code (the
//! `x-ms-error-code` header, which every failed answer carries from REST
//! version 2017-07-29 on; being a header, HEAD answers carry it too) in one
//! table, [`TABLE`], read top to bottom (the first row that matches wins;
//! "any" matches every status or code); an answer that matches no row is a
//! [`Class::Other`]. The error column is what an unconditional request on a
//! blob gets; `Context` says how conditional and container requests read
//! a missing blob and a failed precondition (second table).
//!
//! | status | code | class | error, unconditional request on a blob | transient |
//! |---|---|---|---|---|
//! | 404 | `ContainerNotFound` | BucketNotFound | `BucketNotFound` | no |
//! | 404 | `BlobNotFound` | KeyNotFound | `NotFound` | no |
//! | 404 | any | KeyOrBucketNotFound | `NotFound`, or `BucketNotFound` after one Get Container Properties (an answer without a code) | no |
//! | 412 | any | ConditionFailed | `PreconditionFailed` (`ConditionNotMet`) | no |
//! | 409 | `BlobAlreadyExists` | ConditionFailed | `PreconditionFailed` (Azurite's answer to `If-None-Match: *` on an existing blob) | no |
//! | 416 | any | InvalidRange | `InvalidRange` | no |
//! | 400 | `Md5Mismatch` | ChecksumMismatch | `ChecksumMismatch` | no |
//! | 400 | `Crc64Mismatch` | ChecksumMismatch | `ChecksumMismatch` | no |
//! | 400 | `InvalidResourceName` | InvalidKey | `InvalidKey` | no |
//! | 400 | `InvalidMetadata` | InvalidArgument | `InvalidArgument` | no |
//! | 400 | `InvalidHeaderValue` | InvalidArgument | `InvalidArgument` | no |
//! | 400 | `InvalidInput` | InvalidArgument | `InvalidArgument` | no |
//! | 413 | any | TooLarge | `TooLarge` (`RequestBodyTooLarge`) | no |
//! | 401 | any | Unauthenticated | `Unauthenticated` (`NoAuthenticationInformation`, `InvalidAuthenticationInfo`) | no |
//! | 403 | `AuthenticationFailed` | Unauthenticated | `Unauthenticated` | no |
//! | 403 | `AuthorizationFailure` | PermissionDenied | `PermissionDenied` (also Azurite's answer to a bad SAS signature) | no |
//! | 403 | `AuthorizationPermissionMismatch` | PermissionDenied | `PermissionDenied` | no |
//! | 403 | any | PermissionDenied | `PermissionDenied` | no |
//! | 500 | `InternalError` | Transient | `Backend` | yes |
//! | 500 | `OperationTimedOut` | Transient | `Backend` | yes |
//! | 503 | `ServerBusy` | Transient | `Backend` | yes |
//! | 408 | any | Transient | `Backend` | yes |
//! | 429 | any | Transient | `Backend` | yes |
//! | 500 | any | Transient | `Backend` | yes |
//! | 502 | any | Transient | `Backend` | yes |
//! | 503 | any | Transient | `Backend` | yes |
//! | 504 | any | Transient | `Backend` | yes |
//! | any | `ServerBusy` | Transient | `Backend` | yes |
//! | any | `OperationTimedOut` | Transient | `Backend` | yes |
//!
//! | class | create-only write (`If-None-Match: *`) | `If-Match` write or delete | request on the container (listing, Get Container Properties) |
//! |---|---|---|---|
//! | KeyNotFound, KeyOrBucketNotFound | `NotFound` | `PreconditionFailed` | `BucketNotFound` |
//! | ConditionFailed | `AlreadyExists` | `PreconditionFailed` | `PreconditionFailed` |
//!
//! Failures without an answer (`azure_core`'s error kind):
//!
//! | failure | error | transient |
//! |---|---|---|
//! | `Credential`: a token credential failed (no status) | `Unauthenticated` | no |
//! | `Connection`, `Io`: no connection, reset, broken body | `Backend` | yes |
//! | `DataConversion`, `Other`: a request or answer that cannot be built or read | `Backend` | no |
//!
//! The request time limit is this crate's ([`storage_core::raw::timeout`]): a
//! transient `Backend`. Every message names the operation, the key, the
//! Azure error code and the status.
//!
//! Sources: Azure Storage REST reference, "Blob service error codes",
//! "Common REST API error codes", "Status and error codes" (the
//! `x-ms-error-code` header), "Specifying conditional headers for Blob
//! service operations".

use std::error::Error as StdError;

use azure_core::error::ErrorKind;
use storage_core::{ETag, Error};

/// What the failed request was, which decides how a missing blob and a
/// failed precondition read.
#[derive(Debug, Clone)]
pub(crate) enum Context {
    /// A put or copy with `If-None-Match: *`.
    Create,
    /// A put, copy or delete with `If-Match` on this ETag.
    IfMatch(ETag),
    /// A read or an unconditional write.
    Plain,
    /// A request on the container itself (a listing, Get Container
    /// Properties): a 404 means the container is missing.
    Bucket,
}

/// What an answer means, before the request's `Context` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The container does not exist: [`Error::BucketNotFound`].
    BucketNotFound,
    /// The blob does not exist: [`Error::NotFound`].
    KeyNotFound,
    /// A 404 that does not say whether the blob or the container is
    /// missing: the backend asks the container with one Get Container
    /// Properties (until the container is known to exist); without that,
    /// read as [`Class::KeyNotFound`].
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
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::TooLarge`].
    TooLarge,
    /// Credentials missing or refused: [`Error::Unauthenticated`].
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

/// The classification of Azure answers, by status and error code; the first
/// matching row wins. The module documentation shows it as a table.
pub const TABLE: &[Row] = &[
    Row::exact(404, "ContainerNotFound", Class::BucketNotFound),
    Row::exact(404, "BlobNotFound", Class::KeyNotFound),
    Row::status(404, Class::KeyOrBucketNotFound),
    Row::status(412, Class::ConditionFailed),
    Row::exact(409, "BlobAlreadyExists", Class::ConditionFailed),
    Row::status(416, Class::InvalidRange),
    Row::exact(400, "Md5Mismatch", Class::ChecksumMismatch),
    Row::exact(400, "Crc64Mismatch", Class::ChecksumMismatch),
    Row::exact(400, "InvalidResourceName", Class::InvalidKey),
    Row::exact(400, "InvalidMetadata", Class::InvalidArgument),
    Row::exact(400, "InvalidHeaderValue", Class::InvalidArgument),
    Row::exact(400, "InvalidInput", Class::InvalidArgument),
    Row::status(413, Class::TooLarge),
    Row::status(401, Class::Unauthenticated),
    Row::exact(403, "AuthenticationFailed", Class::Unauthenticated),
    Row::exact(403, "AuthorizationFailure", Class::PermissionDenied),
    Row::exact(
        403,
        "AuthorizationPermissionMismatch",
        Class::PermissionDenied,
    ),
    Row::status(403, Class::PermissionDenied),
    Row::exact(500, "InternalError", Class::Transient),
    Row::exact(500, "OperationTimedOut", Class::Transient),
    Row::exact(503, "ServerBusy", Class::Transient),
    Row::status(408, Class::Transient),
    Row::status(429, Class::Transient),
    Row::status(500, Class::Transient),
    Row::status(502, Class::Transient),
    Row::status(503, Class::Transient),
    Row::status(504, Class::Transient),
    Row::code("ServerBusy", Class::Transient),
    Row::code("OperationTimedOut", Class::Transient),
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

/// The status and Azure error code of an SDK error, if it came from an
/// answer.
pub(crate) fn status_and_code(err: &azure_core::Error) -> (Option<u16>, Option<String>) {
    match err.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => (Some(u16::from(*status)), error_code.clone()),
        _ => (None, None),
    }
}

/// The class of an SDK error that carries an answer; `None` for failures
/// without one.
pub(crate) fn classify_sdk(err: &azure_core::Error) -> Option<Class> {
    match status_and_code(err) {
        (Some(status), code) => Some(classify(status, code.as_deref())),
        (None, _) => None,
    }
}

/// Converts an SDK error of operation `op` on `key` in `container`.
pub(crate) fn from_sdk(
    err: azure_core::Error,
    op: &str,
    container: &str,
    key: &str,
    context: Context,
) -> Error {
    let (status, code) = status_and_code(&err);
    let Some(status) = status else {
        return without_answer(err, op, key);
    };
    let describe = || {
        format!(
            "Azure {op} of {key}: {} (HTTP {status})",
            code.as_deref().unwrap_or("no error code"),
        )
    };
    let key_s = key.to_owned();
    match classify(status, code.as_deref()) {
        Class::BucketNotFound => Error::BucketNotFound {
            bucket: container.to_owned(),
        },
        Class::KeyNotFound | Class::KeyOrBucketNotFound => match context {
            Context::Bucket => Error::BucketNotFound {
                bucket: container.to_owned(),
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
            expected: "the checksum sent with the request".into(),
            actual: describe(),
        },
        Class::InvalidKey => Error::InvalidKey {
            key: key_s,
            reason: "Azure rejects the blob name",
        },
        Class::InvalidArgument => Error::invalid_argument(describe()),
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

/// Converts a failure without an answer, by `azure_core`'s error kind.
fn without_answer(err: azure_core::Error, op: &str, key: &str) -> Error {
    let message = format!("Azure {op} of {key}: {}", chain(&err));
    match err.kind() {
        ErrorKind::Credential => Error::Unauthenticated {
            message: format!("{message} (the token credential failed)"),
        },
        ErrorKind::Connection | ErrorKind::Io => Error::backend(true, message, err),
        _ => Error::backend(false, message, err),
    }
}

/// `err` and its sources, joined by `: `.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

/// The error for an Azure answer that lacks a field the protocol requires
/// (an ETag): a server bug, not transient.
pub(crate) fn missing(op: &str, key: &str, field: &str) -> Error {
    Error::backend(
        false,
        format!("Azure {op} of {key}: the answer has no {field}"),
        format!("missing {field}"),
    )
}

#[cfg(test)]
mod tests;
