//! S3 errors → [`storage_core::Error`], in one place.
//!
//! | S3 answer | put, create-only (`If-None-Match: *`) | put, compare-and-swap (`If-Match`) | get, head, copy source | delete with `If-Match` |
//! |---|---|---|---|---|
//! | 404, `NoSuchKey`, `NotFound` | `NotFound` | `PreconditionFailed` (moto answers 404 for a missing key) | `NotFound` | `PreconditionFailed` |
//! | 412 `PreconditionFailed` | `AlreadyExists` | `PreconditionFailed` | `PreconditionFailed` | `PreconditionFailed` |
//! | 416, `InvalidRange` | — | — | `InvalidRange` | — |
//! | 400 `BadDigest`, `XAmzContentSHA256Mismatch` | `ChecksumMismatch` | `ChecksumMismatch` | — | — |
//! | 409 `ConditionalRequestConflict` | transient `Backend` | transient `Backend` | transient `Backend` | transient `Backend` |
//! | 429, 500, 502, 503, 504, `SlowDown` | transient `Backend` | transient `Backend` | transient `Backend` | transient `Backend` |
//! | timeout, connection failure, broken response | transient `Backend` | transient `Backend` | transient `Backend` | transient `Backend` |
//! | 403 | `PermissionDenied` | `PermissionDenied` | `PermissionDenied` | `PermissionDenied` |
//! | 401 | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` |
//! | 413, `EntityTooLarge` | `TooLarge` | `TooLarge` | — | — |
//! | 400 `KeyTooLongError` | `InvalidKey` | `InvalidKey` | — | — |
//! | anything else | `Backend` (not transient) | | | |
//!
//! Every message names the S3 operation, the key and the S3 error code (the
//! SDK's own `Display` says only "service error").
//! Source: S3 API reference, "Error responses" and "Conditional requests".

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use storage_core::{ETag, Error};

/// What the failed request was, which decides how 404 and 412 read.
#[derive(Debug, Clone)]
pub enum Context {
    /// A put or copy with `If-None-Match: *`.
    Create,
    /// A put, copy or delete with `If-Match` on this ETag.
    IfMatch(ETag),
    /// A read or an unconditional write.
    Plain,
}

/// Converts an SDK error of operation `op` on `key`.
pub fn from_sdk<E>(err: SdkError<E, HttpResponse>, op: &str, key: &str, context: Context) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let detail = err.message().map(str::to_owned);
    let transport = matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    );
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
    let key_s = key.to_owned();
    let code_is = |c: &str| code.as_deref() == Some(c);
    match (status, &context) {
        _ if transport => Error::backend(true, describe(), err),
        (Some(412), Context::Create) => Error::AlreadyExists { key: key_s },
        (Some(412), Context::IfMatch(expected)) | (Some(404), Context::IfMatch(expected)) => {
            Error::PreconditionFailed {
                key: key_s,
                expected: expected.clone(),
                actual: None,
            }
        }
        (Some(404), _) => Error::NotFound { key: key_s },
        (Some(412), Context::Plain) => Error::PreconditionFailed {
            key: key_s,
            expected: ETag::new("(If-Match of the request)"),
            actual: None,
        },
        (Some(416), _) => Error::InvalidRange {
            key: key_s,
            range: describe(),
            size: 0,
        },
        _ if code_is("NoSuchKey") || code_is("NotFound") => Error::NotFound { key: key_s },
        _ if code_is("KeyTooLongError") => Error::InvalidKey {
            key: key_s,
            reason: "the server rejects the name as too long",
        },
        _ if code_is("BadDigest") || code_is("XAmzContentSHA256Mismatch") => {
            Error::ChecksumMismatch {
                key: key_s,
                expected: "the SHA-256 sent with the request".into(),
                actual: describe(),
            }
        }
        (Some(403), _) => Error::PermissionDenied {
            key: Some(key_s),
            message: describe(),
        },
        (Some(401), _) => Error::Unauthenticated {
            message: describe(),
        },
        (Some(413), _) => Error::TooLarge {
            key: Some(key_s),
            size: 0,
            limit: 0,
        },
        _ if code_is("EntityTooLarge") => Error::TooLarge {
            key: Some(key_s),
            size: 0,
            limit: 0,
        },
        (Some(409), _) if code_is("ConditionalRequestConflict") => {
            Error::backend(true, describe(), err)
        }
        (Some(429 | 500 | 502 | 503 | 504), _) => Error::backend(true, describe(), err),
        _ if code_is("SlowDown") => Error::backend(true, describe(), err),
        _ => Error::backend(false, describe(), err),
    }
}

/// The error for an S3 answer that lacks a field the protocol requires (an
/// ETag, an upload id): a server bug, not transient.
pub fn missing(op: &str, key: &str, field: &str) -> Error {
    Error::backend(
        false,
        format!("S3 {op} of {key}: the answer has no {field}"),
        format!("missing {field}"),
    )
}
