//! Azure Blob Storage errors → [`storage_core::Error`], in one place.
//!
//! | Azure answer | put, create-only (`If-None-Match: *`) | put, compare-and-swap (`If-Match`) | get, head | delete with `If-Match` |
//! |---|---|---|---|---|
//! | 404 `BlobNotFound` | — | `PreconditionFailed` | `NotFound` | `PreconditionFailed` (without `If-Match`: success) |
//! | 404 `ContainerNotFound` | `NotFound` (the container) | `NotFound` (the container) | `NotFound` | `NotFound` (the container) |
//! | 409 `BlobAlreadyExists` (Azurite), 412 (Azure) | `AlreadyExists` | — | — | — |
//! | 412 `ConditionNotMet` | `AlreadyExists` | `PreconditionFailed` | `PreconditionFailed` (`if_match`) | `PreconditionFailed` |
//! | 416 `InvalidRange` | — | — | `InvalidRange` | — |
//! | 400 `Md5Mismatch`, `Crc64Mismatch` | `ChecksumMismatch` | `ChecksumMismatch` | — | — |
//! | 400 `InvalidMetadata`, `InvalidHeaderValue`, `InvalidInput` | `InvalidArgument` | `InvalidArgument` | — | — |
//! | 400 `InvalidResourceName`, `OutOfRangeInput` on the name | `InvalidKey` | `InvalidKey` | `InvalidKey` | `InvalidKey` |
//! | 413 `RequestBodyTooLarge` | `TooLarge` | `TooLarge` | — | — |
//! | 403 `AuthenticationFailed` | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` |
//! | 403 other (`AuthorizationFailure`, `AuthorizationPermissionMismatch`, …) | `PermissionDenied` | `PermissionDenied` | `PermissionDenied` | `PermissionDenied` |
//! | 401 | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` |
//! | 409 `LeaseIdMissing`, `LeaseAlreadyPresent` | `Backend` (not transient) | | | |
//! | 408, 429, 500, 502, 503, 504, `ServerBusy`, `OperationTimedOut` | transient `Backend` | transient `Backend` | transient `Backend` | transient `Backend` |
//! | connection failure, I/O error, timeout | transient `Backend` | transient `Backend` | transient `Backend` | transient `Backend` |
//! | anything else | `Backend` (not transient) | | | |
//!
//! The code is the `x-ms-error-code` header (or the `Code` of the XML error
//! body). Every message names the operation, the key, the Azure error code
//! and the status.
//! Source: Azure Storage REST reference, "Blob service error codes",
//! "Specifying conditional headers for Blob service operations".

use azure_core::error::ErrorKind;
use storage_core::{ETag, Error};

/// What the failed request was, which decides how 404, 409 and 412 read.
#[derive(Debug, Clone)]
pub enum Context {
    /// A put with `If-None-Match: *`.
    Create,
    /// A put or delete with `If-Match` on this ETag.
    IfMatch(ETag),
    /// A read or an unconditional write.
    Plain,
}

/// The status and Azure error code of an SDK error, if it came from a
/// response.
pub fn status_and_code(err: &azure_core::Error) -> (Option<u16>, Option<String>) {
    match err.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => (Some(u16::from(*status)), error_code.clone()),
        _ => (None, None),
    }
}

/// Converts an SDK error of operation `op` on `key`.
pub fn from_sdk(err: azure_core::Error, op: &str, key: &str, context: Context) -> Error {
    let (status, code) = status_and_code(&err);
    from_response(status, code.as_deref(), op, key, context, err)
}

/// Converts a failed answer (`status`, Azure error `code`) or, without a
/// status, a transport failure `source`.
pub fn from_response<E>(
    status: Option<u16>,
    code: Option<&str>,
    op: &str,
    key: &str,
    context: Context,
    source: E,
) -> Error
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let describe = || {
        format!(
            "Azure {op} of {key}: {} (HTTP {})",
            code.unwrap_or("no error code"),
            status.map_or("none".to_owned(), |s| s.to_string()),
        )
    };
    let key_s = key.to_owned();
    let code_is = |c: &str| code == Some(c);
    let Some(status) = status else {
        // No answer: the connection failed, timed out or broke.
        return Error::backend(true, describe(), source);
    };
    match (status, &context) {
        (404, _) if code_is("ContainerNotFound") => Error::NotFound {
            key: format!("{key_s} (the container does not exist)"),
        },
        (412 | 409, Context::Create) if status == 412 || code_is("BlobAlreadyExists") => {
            Error::AlreadyExists { key: key_s }
        }
        (412 | 404, Context::IfMatch(expected)) => Error::PreconditionFailed {
            key: key_s,
            expected: expected.clone(),
            actual: None,
        },
        (404, _) => Error::NotFound { key: key_s },
        (412, _) => Error::PreconditionFailed {
            key: key_s,
            expected: ETag::new("(If-Match of the request)"),
            actual: None,
        },
        (416, _) => Error::InvalidRange {
            key: key_s,
            range: describe(),
            size: 0,
        },
        _ if code_is("Md5Mismatch") || code_is("Crc64Mismatch") => Error::ChecksumMismatch {
            key: key_s,
            expected: "the checksum sent with the request".into(),
            actual: describe(),
        },
        _ if code_is("InvalidResourceName") => Error::InvalidKey {
            key: key_s,
            reason: "Azure rejects the blob name",
        },
        _ if code_is("InvalidMetadata")
            || code_is("InvalidHeaderValue")
            || code_is("InvalidInput") =>
        {
            Error::invalid_argument(describe())
        }
        (413, _) => Error::TooLarge {
            key: Some(key_s),
            size: 0,
            limit: 0,
        },
        (403, _) if code_is("AuthenticationFailed") => Error::Unauthenticated {
            message: describe(),
        },
        (403, _) => Error::PermissionDenied {
            key: Some(key_s),
            message: describe(),
        },
        (401, _) => Error::Unauthenticated {
            message: describe(),
        },
        (408 | 429 | 500 | 502 | 503 | 504, _) => Error::backend(true, describe(), source),
        _ if code_is("ServerBusy") || code_is("OperationTimedOut") => {
            Error::backend(true, describe(), source)
        }
        _ => Error::backend(false, describe(), source),
    }
}

/// The error for an Azure answer that lacks a field the protocol requires
/// (an ETag): a server bug, not transient.
pub fn missing(op: &str, key: &str, field: &str) -> Error {
    Error::backend(
        false,
        format!("Azure {op} of {key}: the answer has no {field}"),
        format!("missing {field}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, code: &str, context: Context) -> Error {
        from_response(Some(status), Some(code), "Put Blob", "k", context, "x")
    }

    #[test]
    fn azurite_409_and_azure_412_both_mean_already_exists() {
        assert!(matches!(
            map(409, "BlobAlreadyExists", Context::Create),
            Error::AlreadyExists { .. }
        ));
        assert!(matches!(
            map(412, "ConditionNotMet", Context::Create),
            Error::AlreadyExists { .. }
        ));
    }

    #[test]
    fn a_missing_blob_under_if_match_is_a_failed_precondition() {
        let err = map(404, "BlobNotFound", Context::IfMatch(ETag::new("e")));
        assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    }

    #[test]
    fn a_missing_container_is_not_found_whatever_the_condition() {
        let err = map(404, "ContainerNotFound", Context::IfMatch(ETag::new("e")));
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn busy_servers_and_lost_connections_are_transient() {
        assert!(map(503, "ServerBusy", Context::Plain).is_transient());
        assert!(map(500, "OperationTimedOut", Context::Plain).is_transient());
        let lost = from_response(None, None, "Get Blob", "k", Context::Plain, "reset");
        assert!(lost.is_transient());
        assert!(!map(400, "InvalidMetadata", Context::Plain).is_transient());
    }

    #[test]
    fn messages_name_the_operation_key_code_and_status() {
        let err = map(403, "AuthorizationPermissionMismatch", Context::Plain);
        let text = err.to_string();
        for part in ["Put Blob", "k", "AuthorizationPermissionMismatch", "403"] {
            assert!(text.contains(part), "{text}");
        }
    }
}
