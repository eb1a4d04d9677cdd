//! Cloud Storage errors → [`storage_core::Error`], in one place.
//!
//! `gcloud-storage` reports a failed request in two forms: `Error::Response`
//! when the body is a JSON API error (`code`, `errors[].reason`), and
//! `Error::HttpClient` with the HTTP status when it is not (downloads,
//! whose error bodies are not JSON); both go through the same table.
//!
//! | GCS answer | put, create-only (`ifGenerationMatch=0`) | put, copy or delete with `ifGenerationMatch=g` | get, head, list |
//! |---|---|---|---|
//! | 404 `notFound` | `NotFound` (the bucket) | `PreconditionFailed` | `NotFound` |
//! | 412 `conditionNotMet` | `AlreadyExists` | `PreconditionFailed` | `PreconditionFailed` (get with `if_match`) |
//! | 416 `requestedRangeNotSatisfiable` | — | — | `InvalidRange` |
//! | 400 `invalid`, `invalidArgument`, `required` | `InvalidArgument` | `InvalidArgument` | `InvalidArgument` |
//! | 400 with a CRC32C or MD5 mismatch (`invalid` naming the hash) | `ChecksumMismatch` | `ChecksumMismatch` | — |
//! | 401 | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` |
//! | 403 | `PermissionDenied` | `PermissionDenied` | `PermissionDenied` |
//! | 413 | `TooLarge` | `TooLarge` | — |
//! | 408, 429, 500, 502, 503, 504 | transient `Backend` | transient `Backend` | transient `Backend` |
//! | timeout, connection failure, broken body | transient `Backend` | transient `Backend` | transient `Backend` |
//! | a token that cannot be fetched | `Unauthenticated` | `Unauthenticated` | `Unauthenticated` |
//! | anything else | `Backend` (not transient) | | |
//!
//! Every message names the operation, the key, the GCS reason and the
//! status. Source: Cloud Storage JSON API, "HTTP status and error codes".

use gcloud_storage::http::Error as GcsError;
use storage_core::{ETag, Error};

/// What the failed request was, which decides how 404 and 412 read.
#[derive(Debug, Clone)]
pub enum Context {
    /// A put or copy with `ifGenerationMatch=0`.
    Create,
    /// A put, copy, delete or get with `ifGenerationMatch` on this ETag.
    IfMatch(ETag),
    /// A read or an unconditional write.
    Plain,
}

/// Converts an SDK error of operation `op` on `key`.
pub fn from_sdk(err: GcsError, op: &str, key: &str, context: Context) -> Error {
    let (status, reason, message) = match &err {
        GcsError::Response(response) => (
            Some(response.code),
            response.errors.first().map(|e| e.reason.clone()),
            response.message.clone(),
        ),
        GcsError::HttpClient(e) | GcsError::RawResponse(e, _) => {
            (e.status().map(|s| s.as_u16()), None, e.to_string())
        }
        GcsError::TokenSource(e) => {
            return Error::Unauthenticated {
                message: format!("GCS {op} of {key}: the access token: {e}"),
            };
        }
        GcsError::HttpMiddleware(e) => (None, None, e.to_string()),
        GcsError::InvalidRangeHeader(h) => (None, None, format!("invalid range header {h}")),
    };
    let transport = match &err {
        GcsError::HttpClient(e) | GcsError::RawResponse(e, _) => {
            e.status().is_none() && !e.is_decode() && !e.is_builder()
        }
        GcsError::HttpMiddleware(_) => true,
        _ => false,
    };
    from_status(
        status,
        reason.as_deref(),
        &message,
        transport,
        op,
        key,
        context,
        err,
    )
}

/// Converts a failed answer (`status` and GCS `reason`), or a transport
/// failure (`transport`), keeping `source`.
#[allow(clippy::too_many_arguments)]
pub fn from_status<E>(
    status: Option<u16>,
    reason: Option<&str>,
    message: &str,
    transport: bool,
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
            "GCS {op} of {key}: {} (HTTP {}): {message}",
            reason.unwrap_or("no reason"),
            status.map_or("none".to_owned(), |s| s.to_string()),
        )
    };
    let key_s = key.to_owned();
    let Some(status) = status else {
        return Error::backend(transport, describe(), source);
    };
    let hash_mismatch = status == 400 && {
        let m = message.to_ascii_lowercase();
        m.contains("crc32c") || m.contains("md5")
    };
    match (status, &context) {
        (412, Context::Create) => Error::AlreadyExists { key: key_s },
        (412 | 404, Context::IfMatch(expected)) => Error::PreconditionFailed {
            key: key_s,
            expected: expected.clone(),
            actual: None,
        },
        (404, Context::Create) => Error::NotFound {
            key: format!("{key_s} (the bucket does not exist)"),
        },
        (404, _) => Error::NotFound { key: key_s },
        (412, _) => Error::PreconditionFailed {
            key: key_s,
            expected: ETag::new("(ifGenerationMatch of the request)"),
            actual: None,
        },
        (416, _) => Error::InvalidRange {
            key: key_s,
            range: describe(),
            size: 0,
        },
        (400, _) if hash_mismatch => Error::ChecksumMismatch {
            key: key_s,
            expected: "the CRC32C sent with the upload".into(),
            actual: describe(),
        },
        (400, _) => Error::invalid_argument(describe()),
        (401, _) => Error::Unauthenticated {
            message: describe(),
        },
        (403, _) => Error::PermissionDenied {
            key: Some(key_s),
            message: describe(),
        },
        (413, _) => Error::TooLarge {
            key: Some(key_s),
            size: 0,
            limit: 0,
        },
        (408 | 429 | 500 | 502 | 503 | 504, _) => Error::backend(true, describe(), source),
        _ => Error::backend(false, describe(), source),
    }
}

/// The error for a GCS answer that lacks a field the protocol requires (a
/// generation): a server bug, not transient.
pub fn missing(op: &str, key: &str, field: &str) -> Error {
    Error::backend(
        false,
        format!("GCS {op} of {key}: the answer has no {field}"),
        format!("missing {field}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, context: Context) -> Error {
        from_status(
            Some(status),
            Some("r"),
            "m",
            false,
            "upload",
            "k",
            context,
            "x",
        )
    }

    #[test]
    fn a_failed_create_is_already_exists_and_a_failed_swap_a_precondition() {
        assert!(matches!(
            map(412, Context::Create),
            Error::AlreadyExists { .. }
        ));
        assert!(matches!(
            map(412, Context::IfMatch(ETag::new("7"))),
            Error::PreconditionFailed { .. }
        ));
        assert!(matches!(
            map(404, Context::IfMatch(ETag::new("7"))),
            Error::PreconditionFailed { .. }
        ));
    }

    #[test]
    fn throttling_server_errors_and_lost_connections_are_transient() {
        for status in [408, 429, 500, 503] {
            assert!(map(status, Context::Plain).is_transient(), "{status}");
        }
        let lost = from_status(None, None, "reset", true, "get", "k", Context::Plain, "x");
        assert!(lost.is_transient());
        assert!(!map(400, Context::Plain).is_transient());
    }

    #[test]
    fn messages_name_the_operation_key_reason_and_status() {
        let text = from_status(
            Some(403),
            Some("forbidden"),
            "no",
            false,
            "list",
            "p/",
            Context::Plain,
            "x",
        )
        .to_string();
        for part in ["list", "p/", "forbidden", "403"] {
            assert!(text.contains(part), "{text}");
        }
    }
}
