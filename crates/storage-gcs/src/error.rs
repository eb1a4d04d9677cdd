//! Cloud Storage errors → [`storage_core::Error`], in one place.
//!
//! `gcloud-storage` reports a failed request in two forms: `Error::Response`
//! when the body is a JSON API error (`code`, `errors[].reason`), and
//! `Error::HttpClient` with the HTTP status when it is not (downloads,
//! whose error bodies are not JSON); the requests this crate builds itself
//! read the same JSON. All go through one table, [`TABLE`], by HTTP status
//! and reason, read top to bottom (the first row that matches wins; "any"
//! matches every status or reason); an answer that matches no row is a
//! [`Class::Other`]. The error column is what an unconditional request on
//! an object gets; `Context` says how conditional and bucket requests
//! read a missing object and a failed precondition (second table).
//!
//! | status | reason | class | error, unconditional request on an object | transient |
//! |---|---|---|---|---|
//! | 404 | any | KeyOrBucketNotFound | `NotFound`, or `BucketNotFound` after one bucket GET (GCS answers `notFound` alike for a missing object and a missing bucket) | no |
//! | 412 | any | ConditionFailed | `PreconditionFailed` (`conditionNotMet`) | no |
//! | 416 | any | InvalidRange | `InvalidRange` (`requestedRangeNotSatisfiable`) | no |
//! | 400 | any | InvalidArgument | `InvalidArgument` (`invalid`, `required`, …); `ChecksumMismatch` when the message names the CRC32C or the MD5 | no |
//! | 401 | any | Unauthenticated | `Unauthenticated` (`required`, `authError`) | no |
//! | 403 | any | PermissionDenied | `PermissionDenied` (`forbidden`, `insufficientPermissions`) | no |
//! | 413 | any | TooLarge | `TooLarge` | no |
//! | 408 | any | Transient | `Backend` | yes |
//! | 429 | any | Transient | `Backend` (`rateLimitExceeded`) | yes |
//! | 500 | any | Transient | `Backend` (`backendError`, `internalError`) | yes |
//! | 502 | any | Transient | `Backend` | yes |
//! | 503 | any | Transient | `Backend` (`backendError`) | yes |
//! | 504 | any | Transient | `Backend` | yes |
//!
//! | class | create-only write (`ifGenerationMatch=0`) | write, copy, delete or read with `ifGenerationMatch=g` | request on the bucket (listing, bucket GET) |
//! |---|---|---|---|
//! | KeyOrBucketNotFound | `NotFound` | `PreconditionFailed` | `BucketNotFound` |
//! | ConditionFailed | `AlreadyExists` | `PreconditionFailed` | `PreconditionFailed` |
//!
//! Failures without an answer:
//!
//! | failure | error | transient |
//! |---|---|---|
//! | the access token: the metadata server or token endpoint unreachable, timed out, or answering something other than a token (the metadata server's 5xx answers are not JSON) | `Backend` | yes |
//! | the access token: the token endpoint answered 408, 429 or 5xx | `Backend` | yes |
//! | the access token: any other failure (no or invalid credentials, a refused grant, 4xx) | `Unauthenticated` | no |
//! | timeout, connection failure, broken body | `Backend` | yes |
//! | an answer that cannot be read, a request that cannot be built | `Backend` | no |
//!
//! Every message names the operation, the key, the GCS reason and the
//! status. Sources: Cloud Storage JSON API, "HTTP status and error codes";
//! "Retry strategy" (which failures to retry); Google OAuth 2.0 token
//! endpoint and Compute Engine metadata server (the access token).

use std::error::Error as StdError;

use gcloud_storage::client::google_cloud_auth::error::Error as AuthError;
use gcloud_storage::http::Error as GcsError;
use storage_core::{BoxError, ETag, Error};

/// What the failed request was, which decides how a missing object and a
/// failed precondition read.
#[derive(Debug, Clone)]
pub(crate) enum Context {
    /// A put or copy with `ifGenerationMatch=0`.
    Create,
    /// A put, copy, delete or get with `ifGenerationMatch` on this ETag.
    IfMatch(ETag),
    /// A read or an unconditional write.
    Plain,
    /// A request on the bucket itself (a listing, a bucket GET): a 404
    /// means the bucket is missing.
    Bucket,
}

/// What an answer means, before the request's `Context` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A 404, which GCS sends alike for a missing object and a missing
    /// bucket: the backend asks the bucket with one bucket GET (until the
    /// bucket is known to exist), [`Error::BucketNotFound`] if it is
    /// missing; otherwise [`Error::NotFound`].
    KeyOrBucketNotFound,
    /// A precondition did not hold: [`Error::PreconditionFailed`], or
    /// [`Error::AlreadyExists`] for a create-only write.
    ConditionFailed,
    /// [`Error::InvalidRange`].
    InvalidRange,
    /// [`Error::InvalidArgument`], or [`Error::ChecksumMismatch`] when the
    /// message names the CRC32C or the MD5.
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

/// The classification of GCS answers, by status and reason; the first
/// matching row wins. The module documentation shows it as a table.
pub const TABLE: &[Row] = &[
    Row::status(404, Class::KeyOrBucketNotFound),
    Row::status(412, Class::ConditionFailed),
    Row::status(416, Class::InvalidRange),
    Row::status(400, Class::InvalidArgument),
    Row::status(401, Class::Unauthenticated),
    Row::status(403, Class::PermissionDenied),
    Row::status(413, Class::TooLarge),
    Row::status(408, Class::Transient),
    Row::status(429, Class::Transient),
    Row::status(500, Class::Transient),
    Row::status(502, Class::Transient),
    Row::status(503, Class::Transient),
    Row::status(504, Class::Transient),
];

/// The first row of [`TABLE`] that an answer with `status` and `reason`
/// matches, if any.
pub fn lookup(status: u16, reason: Option<&str>) -> Option<&'static Row> {
    storage_core::raw::lookup(TABLE, status, reason)
}

/// The class of an answer with `status` and `reason` ([`Class::Other`] when
/// no row of [`TABLE`] matches).
pub fn classify(status: u16, reason: Option<&str>) -> Class {
    lookup(status, reason).map_or(Class::Other, |row| row.class)
}

/// A failed answer: its status, GCS reason and message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The reason (`errors[0].reason`), if the body is a JSON API error.
    pub reason: Option<&'a str>,
    /// The message, or the body as text.
    pub message: &'a str,
}

/// The answer in an SDK error, if it carries one.
fn answer_of(err: &GcsError) -> Option<(u16, Option<String>, String)> {
    match err {
        GcsError::Response(response) => Some((
            response.code,
            response.errors.first().map(|e| e.reason.clone()),
            response.message.clone(),
        )),
        GcsError::HttpClient(e) => Some((e.status()?.as_u16(), None, e.to_string())),
        GcsError::RawResponse(e, detail) => {
            Some((e.status()?.as_u16(), None, format!("{e}: {detail}")))
        }
        _ => None,
    }
}

/// The class of an SDK error that carries an answer; `None` for failures
/// without one.
pub(crate) fn classify_sdk(err: &GcsError) -> Option<Class> {
    answer_of(err).map(|(status, reason, _)| classify(status, reason.as_deref()))
}

/// Converts an SDK error of operation `op` on `key` in `bucket`.
pub(crate) fn from_sdk(
    err: GcsError,
    op: &str,
    bucket: &str,
    key: &str,
    context: Context,
) -> Error {
    if let Some((status, reason, message)) = answer_of(&err) {
        let answer = Answer {
            status,
            reason: reason.as_deref(),
            message: &message,
        };
        return from_answer(answer, op, bucket, key, context, err);
    }
    let message = format!("GCS {op} of {key}: {}", chain(&err));
    match err {
        GcsError::TokenSource(source) => token_failure(source, op, key),
        GcsError::HttpClient(ref e) | GcsError::RawResponse(ref e, _) => {
            let transient = !e.is_decode() && !e.is_builder();
            Error::backend(transient, message, err)
        }
        GcsError::HttpMiddleware(_) => Error::backend(true, message, err),
        // A JSON error always carries its status (handled above).
        GcsError::Response(_) | GcsError::InvalidRangeHeader(_) => {
            Error::backend(false, message, err)
        }
    }
}

/// Converts a failed answer to operation `op` on `key` in `bucket`,
/// keeping `source`.
pub(crate) fn from_answer<E>(
    answer: Answer<'_>,
    op: &str,
    bucket: &str,
    key: &str,
    context: Context,
    source: E,
) -> Error
where
    E: Into<BoxError>,
{
    let Answer {
        status,
        reason,
        message,
    } = answer;
    let describe = || {
        format!(
            "GCS {op} of {key}: {} (HTTP {status}): {message}",
            reason.unwrap_or("no reason"),
        )
    };
    let key_s = key.to_owned();
    match classify(status, reason) {
        Class::KeyOrBucketNotFound => match context {
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
                expected: ETag::new("(ifGenerationMatch of the request)"),
                actual: None,
            },
        },
        Class::InvalidRange => Error::InvalidRange {
            key: key_s,
            range: describe(),
            size: 0,
        },
        Class::InvalidArgument => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("crc32c") || lower.contains("md5") {
                Error::ChecksumMismatch {
                    key: key_s,
                    expected: "the CRC32C sent with the upload".into(),
                    actual: describe(),
                }
            } else {
                Error::invalid_argument(describe())
            }
        }
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
        Class::Transient => Error::backend(true, describe(), source),
        Class::Other => Error::backend(false, describe(), source),
    }
}

/// Converts a request of this crate's own that got no answer (connection,
/// timeout, broken body, a request that cannot be built).
pub(crate) fn from_transport(err: reqwest::Error, op: &str, key: &str) -> Error {
    let transient = !err.is_builder() && !err.is_decode();
    let message = format!("GCS {op} of {key}: {}", chain(&err));
    Error::backend(transient, message, err)
}

/// Converts a failure to get an access token: transient when the metadata
/// server or the token endpoint could not be reached, timed out, answered
/// something other than a token, or answered with a status the table calls
/// transient; [`Error::Unauthenticated`] otherwise.
pub(crate) fn token_failure(err: BoxError, op: &str, key: &str) -> Error {
    let message = format!("GCS {op} of {key}: the access token: {}", chain(&*err));
    let transient = match err.downcast_ref::<AuthError>() {
        Some(AuthError::HttpError(e)) => match e.status() {
            Some(status) => classify(status.as_u16(), None).is_transient(),
            None => !e.is_builder(),
        },
        Some(
            AuthError::TokenErrorResponse { status, .. }
            | AuthError::UnexpectedImpersonateTokenResponse(status, _),
        ) => classify(*status, None).is_transient(),
        _ => false,
    };
    if transient {
        Error::backend(true, message, err)
    } else {
        Error::Unauthenticated { message }
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

/// The error for a GCS answer that lacks a field the protocol requires (a
/// generation): a server bug, not transient.
pub(crate) fn missing(op: &str, key: &str, field: &str) -> Error {
    Error::backend(
        false,
        format!("GCS {op} of {key}: the answer has no {field}"),
        format!("missing {field}"),
    )
}

#[cfg(test)]
mod tests;
