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
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use gcloud_storage::client::{Client, ClientConfig};
    use gcloud_storage::http::objects::get::GetObjectRequest;
    use storage_core::{Backend, Key};
    use token_source::{TokenSource, TokenSourceProvider};

    use super::*;
    use crate::backend::read_answer;
    use crate::test_server::{Reply, Seen, TestServer, closed_port_url};
    use crate::{GcsBackend, GcsConfig};

    const BUCKET: &str = "bucket";

    /// An answer that the first match of `row` should be: its status and
    /// its reason (`unlistedReason` where it takes any).
    fn sample(row: &Row) -> (u16, &'static str) {
        (
            row.status.unwrap_or(418),
            row.code.unwrap_or("unlistedReason"),
        )
    }

    /// A JSON API error answer.
    fn json_error(status: u16, reason: &str, message: &str) -> Reply {
        Reply::status(status)
            .header("content-type", "application/json; charset=UTF-8")
            .body(format!(
                r#"{{"error":{{"code":{status},"message":"{message}","errors":[{{"domain":"global","reason":"{reason}","message":"{message}"}}]}}}}"#
            ))
    }

    async fn store(endpoint: &str) -> GcsBackend {
        GcsConfig::emulator(endpoint, BUCKET)
            .request_timeout(Duration::from_millis(500))
            .build()
            .await
            .expect("config")
    }

    fn is_expected(class: Class, err: &Error) -> bool {
        match class {
            Class::KeyOrBucketNotFound => matches!(err, Error::NotFound { .. }),
            Class::ConditionFailed => matches!(err, Error::PreconditionFailed { .. }),
            Class::InvalidRange => matches!(err, Error::InvalidRange { .. }),
            Class::InvalidArgument => matches!(err, Error::InvalidArgument { .. }),
            Class::TooLarge => matches!(err, Error::TooLarge { .. }),
            Class::Unauthenticated => matches!(err, Error::Unauthenticated { .. }),
            Class::PermissionDenied => matches!(err, Error::PermissionDenied { .. }),
            Class::Transient => matches!(
                err,
                Error::Backend {
                    transient: true,
                    ..
                }
            ),
            Class::Other => matches!(
                err,
                Error::Backend {
                    transient: false,
                    ..
                }
            ),
        }
    }

    fn has_message(class: Class) -> bool {
        !matches!(
            class,
            Class::KeyOrBucketNotFound | Class::ConditionFailed | Class::TooLarge
        )
    }

    fn documented_rows() -> Vec<Vec<String>> {
        let header = "//! | status | reason | class | error, unconditional request on an object | transient |";
        include_str!("error.rs")
            .lines()
            .skip_while(|line| *line != header)
            .skip(2)
            .take_while(|line| line.starts_with("//! |"))
            .map(|line| {
                line.trim_start_matches("//!")
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_documented_table_is_the_table() {
        let documented = documented_rows();
        assert_eq!(documented.len(), TABLE.len(), "{documented:#?}");
        for (row, cells) in TABLE.iter().zip(&documented) {
            let status = row.status.map_or("any".to_owned(), |s| s.to_string());
            let reason = row.code.map_or("any".to_owned(), |r| format!("`{r}`"));
            let transient = if row.class.is_transient() {
                "yes"
            } else {
                "no"
            };
            assert_eq!(
                [&cells[0], &cells[1], &cells[2], &cells[4]],
                [
                    &status,
                    &reason,
                    &format!("{:?}", row.class),
                    &transient.to_owned()
                ],
                "{row:?}"
            );
        }
    }

    /// The cases DESIGN section 5 and issue 10 name, pinned independently
    /// of the table's own rows.
    #[test]
    fn the_specified_cases_are_classified_as_specified() {
        let cases = [
            (408, None, Class::Transient),
            (429, Some("rateLimitExceeded"), Class::Transient),
            (500, Some("backendError"), Class::Transient),
            (502, None, Class::Transient),
            (503, Some("backendError"), Class::Transient),
            (504, None, Class::Transient),
            (401, Some("required"), Class::Unauthenticated),
            (403, Some("forbidden"), Class::PermissionDenied),
            (404, Some("notFound"), Class::KeyOrBucketNotFound),
            (412, Some("conditionNotMet"), Class::ConditionFailed),
            (
                416,
                Some("requestedRangeNotSatisfiable"),
                Class::InvalidRange,
            ),
            (409, Some("conflict"), Class::Other),
        ];
        for (status, reason, class) in cases {
            assert_eq!(classify(status, reason), class, "{status} {reason:?}");
        }
    }

    #[test]
    fn every_row_is_the_first_match_of_its_sample() {
        for row in TABLE {
            let (status, reason) = sample(row);
            assert_eq!(
                lookup(status, Some(reason)),
                Some(row),
                "{row:?} is shadowed"
            );
        }
        assert_eq!(classify(418, None), Class::Other);
        assert_eq!(classify(501, Some("notImplemented")), Class::Other);
    }

    /// Every row, as a real answer, through the three ways this crate reads
    /// one: `gcloud-storage` with a JSON error body (`Error::Response`) and
    /// with a text body (`Error::HttpClient` with the status), and this
    /// crate's own requests (downloads, uploads).
    #[tokio::test]
    async fn every_row_fed_through_each_reading_gives_its_error() {
        let server = TestServer::start(|seen: &Seen| {
            let index = seen
                .target
                .rsplit("row-")
                .next()
                .and_then(|i| i.split(['?', '&']).next())
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(0);
            let (status, reason) = sample(&TABLE[index]);
            if seen.target.contains("text") {
                Reply::status(status).body(format!("scripted {reason}"))
            } else {
                json_error(status, reason, &format!("scripted {reason}"))
            }
        });
        let store = store(&server.url()).await;
        let http = reqwest::Client::new();
        for (index, row) in TABLE.iter().enumerate() {
            let (status, reason) = sample(row);
            let mut errors = Vec::new();
            for form in ["json", "text"] {
                let key = format!("{form}/row-{index}");
                let request = GetObjectRequest {
                    bucket: BUCKET.to_owned(),
                    object: key.clone(),
                    ..Default::default()
                };
                let sdk_err = store
                    .client()
                    .get_object(&request)
                    .await
                    .expect_err("an error answer");
                assert_eq!(
                    classify_sdk(&sdk_err),
                    Some(row.class),
                    "{key}: {sdk_err:?}"
                );
                let err = from_sdk(sdk_err, "get", BUCKET, &key, Context::Plain);
                errors.push(("get", key, err, form == "json"));
            }
            let key = Key::new(format!("json/row-{index}")).expect("key");
            let response = http
                .get(store.download_url(&key))
                .send()
                .await
                .expect("an answer");
            let (answer_status, answer_reason, message) = read_answer(response).await;
            let answer = Answer {
                status: answer_status,
                reason: answer_reason.as_deref(),
                message: &message,
            };
            let err = from_answer(
                answer,
                "download",
                BUCKET,
                key.as_str(),
                Context::Plain,
                "x",
            );
            errors.push(("download", key.to_string(), err, true));
            for (op, key, err, has_reason) in errors {
                assert!(
                    is_expected(row.class, &err),
                    "{op} of {key}, {row:?}: {err:?}"
                );
                assert_eq!(
                    err.is_transient(),
                    row.class.is_transient(),
                    "{op} of {key}, {row:?}: {err}"
                );
                if has_message(row.class) {
                    let text = err.to_string();
                    let mut parts = vec![op, key.as_str()];
                    let status = status.to_string();
                    parts.push(&status);
                    if has_reason {
                        parts.push(reason);
                    }
                    for part in parts {
                        assert!(text.contains(part), "{op} of {key}, {row:?}: {text}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_400_naming_the_crc32c_is_a_checksum_mismatch() {
        let answer = Answer {
            status: 400,
            reason: Some("invalid"),
            message: "Provided CRC32C \"AAAAAA==\" doesn't match calculated CRC32C \"mnG7TA==\".",
        };
        let err = from_answer(answer, "upload", BUCKET, "k", Context::Plain, "x");
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
    }

    #[test]
    fn the_context_decides_how_a_missing_object_and_a_failed_condition_read() {
        let answer = |status| Answer {
            status,
            reason: None,
            message: "m",
        };
        let stale = ETag::new("7");
        let cases = [
            (412, Context::Create, "AlreadyExists"),
            (412, Context::IfMatch(stale.clone()), "PreconditionFailed"),
            (412, Context::Plain, "PreconditionFailed"),
            (404, Context::IfMatch(stale), "PreconditionFailed"),
            (404, Context::Create, "NotFound"),
            (404, Context::Bucket, "BucketNotFound"),
        ];
        for (status, context, expected) in cases {
            let err = from_answer(answer(status), "upload", BUCKET, "k", context.clone(), "x");
            let variant = format!("{err:?}");
            assert!(
                variant.starts_with(expected),
                "{status} under {context:?}: {variant}"
            );
        }
    }

    /// Token failures as `gcloud-auth` reports them, the `reqwest` errors
    /// made by real requests.
    #[tokio::test]
    async fn token_hiccups_are_transient_and_refused_credentials_unauthenticated() {
        let server = TestServer::start(|seen: &Seen| match seen.path() {
            "/unavailable" => Reply::status(503).body("<html>try again</html>"),
            "/missing" => Reply::status(404).body("<html>no service account</html>"),
            _ => Reply::status(200).body("<html>not a token</html>"),
        });
        let http = reqwest::Client::new();
        let unreachable = http
            .get(closed_port_url())
            .send()
            .await
            .expect_err("nothing listens");
        let not_json = http
            .get(format!("{}/garbage", server.url()))
            .send()
            .await
            .expect("an answer")
            .json::<serde_json::Value>()
            .await
            .expect_err("not JSON");
        let status_error = |path: &'static str| {
            let (http, url) = (http.clone(), server.url());
            async move {
                http.get(format!("{url}{path}"))
                    .send()
                    .await
                    .expect("an answer")
                    .error_for_status()
                    .expect_err("an error status")
            }
        };
        let unavailable = status_error("/unavailable").await;
        let missing = status_error("/missing").await;
        let token_error = |status: u16, error: &str| AuthError::TokenErrorResponse {
            status,
            error: error.to_owned(),
            error_description: "scripted".to_owned(),
        };
        let cases: Vec<(&str, BoxError, bool)> = vec![
            (
                "metadata server unreachable",
                Box::new(AuthError::HttpError(unreachable)),
                true,
            ),
            (
                "not a token",
                Box::new(AuthError::HttpError(not_json)),
                true,
            ),
            (
                "metadata server 503",
                Box::new(AuthError::HttpError(unavailable)),
                true,
            ),
            (
                "metadata server 404",
                Box::new(AuthError::HttpError(missing)),
                false,
            ),
            (
                "token endpoint 503",
                Box::new(token_error(503, "backend_error")),
                true,
            ),
            (
                "token endpoint 429",
                Box::new(token_error(429, "rate_limit")),
                true,
            ),
            (
                "refused grant",
                Box::new(token_error(400, "invalid_grant")),
                false,
            ),
            (
                "refused client",
                Box::new(token_error(401, "invalid_client")),
                false,
            ),
            (
                "impersonation refused",
                Box::new(AuthError::UnexpectedImpersonateTokenResponse(
                    403,
                    "no".into(),
                )),
                false,
            ),
            (
                "no credentials",
                Box::new(AuthError::NoCredentialsFileFound),
                false,
            ),
            (
                "unknown",
                "a token source of another crate failed".into(),
                false,
            ),
        ];
        for (name, source, transient) in cases {
            let err = token_failure(source, "get", "k");
            if transient {
                assert!(err.is_transient(), "{name}: {err:?}");
            } else {
                assert!(
                    matches!(err, Error::Unauthenticated { .. }),
                    "{name}: {err:?}"
                );
            }
            let text = err.to_string();
            assert!(
                text.contains("GCS get of k: the access token"),
                "{name}: {text}"
            );
        }
    }

    #[derive(Debug)]
    struct FailingToken(u16);

    #[async_trait::async_trait]
    impl TokenSource for FailingToken {
        async fn token(&self) -> std::result::Result<String, BoxError> {
            Err(Box::new(AuthError::TokenErrorResponse {
                status: self.0,
                error: "scripted".to_owned(),
                error_description: "scripted".to_owned(),
            }))
        }
    }

    #[derive(Debug)]
    struct Provider(Arc<dyn TokenSource>);

    impl TokenSourceProvider for Provider {
        fn token_source(&self) -> Arc<dyn TokenSource> {
            Arc::clone(&self.0)
        }
    }

    /// Both ways a request gets its token: `gcloud-storage`'s (head) and
    /// this crate's own (get).
    #[tokio::test]
    async fn token_failures_reach_every_operation_classified() {
        let server = TestServer::start(|_: &Seen| Reply::status(200));
        for (status, transient) in [(503, true), (401, false)] {
            let token: Arc<dyn TokenSource> = Arc::new(FailingToken(status));
            let http = reqwest::Client::new();
            let client = Client::new(ClientConfig {
                http: Some(reqwest_middleware::ClientBuilder::new(http.clone()).build()),
                storage_endpoint: server.url(),
                token_source_provider: Some(Box::new(Provider(Arc::clone(&token)))),
                ..ClientConfig::default()
            });
            let config = GcsConfig::emulator(server.url(), BUCKET);
            let store = GcsBackend::new(config, client, http, Some(token), false);
            let key = Key::new("k").expect("key");
            let head = store.head(&key).await.map(|_| ());
            let get = store.get(&key, Default::default()).await.map(|_| ());
            for (op, outcome) in [("head", head), ("get", get)] {
                let Err(err) = outcome else {
                    panic!("{op} succeeded without a token");
                };
                if transient {
                    assert!(err.is_transient(), "{op}, token {status}: {err:?}");
                } else {
                    assert!(
                        matches!(err, Error::Unauthenticated { .. }),
                        "{op}, token {status}: {err:?}"
                    );
                }
            }
        }
        assert!(
            server.seen().is_empty(),
            "a request was sent without a token"
        );
    }

    #[tokio::test]
    async fn lost_connections_and_timeouts_are_transient() {
        let key = Key::new("k").expect("key");
        let refused = store(&closed_port_url()).await;
        let head = refused.head(&key).await;
        assert!(head.as_ref().is_err_and(Error::is_transient), "{head:?}");
        let get = refused.get(&key, Default::default()).await.map(|_| ());
        assert!(get.as_ref().is_err_and(Error::is_transient), "{get:?}");

        let server = TestServer::start(|_: &Seen| Reply::status(200).after(Duration::from_secs(2)));
        let slow = store(&server.url()).await;
        let head = slow.head(&key).await;
        assert!(head.as_ref().is_err_and(Error::is_transient), "{head:?}");
    }
}
