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
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use azure_core::http::{Method, Request};
    use storage_core::Key;

    use super::*;
    use crate::test_server::{Reply, Seen, TestServer, closed_port_url};
    use crate::{AzureBackend, AzureConfig};

    const CONTAINER: &str = "box";

    /// An answer that the first match of `row` should be: its status (418,
    /// which no row names, where it takes any) and its code
    /// (`UnlistedCode` where it takes any).
    fn sample(row: &Row) -> (u16, &'static str) {
        (
            row.status.unwrap_or(418),
            row.code.unwrap_or("UnlistedCode"),
        )
    }

    /// An Azure error answer: the code in `x-ms-error-code` and in the XML
    /// body.
    fn azure_error(status: u16, code: &str) -> Reply {
        Reply::status(status)
            .header("x-ms-error-code", code)
            .header("content-type", "application/xml")
            .body(format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>scripted {code}</Message></Error>"
            ))
    }

    fn store(server_url: &str) -> AzureBackend {
        AzureConfig::emulator(format!("{server_url}/devstoreaccount1"), CONTAINER)
            .request_timeout(Duration::from_millis(500))
            .build()
            .expect("config")
    }

    fn is_expected(class: Class, err: &Error) -> bool {
        match class {
            Class::BucketNotFound => {
                matches!(err, Error::BucketNotFound { bucket } if bucket == CONTAINER)
            }
            Class::KeyNotFound | Class::KeyOrBucketNotFound => {
                matches!(err, Error::NotFound { .. })
            }
            Class::ConditionFailed => matches!(err, Error::PreconditionFailed { .. }),
            Class::InvalidRange => matches!(err, Error::InvalidRange { .. }),
            Class::ChecksumMismatch => matches!(err, Error::ChecksumMismatch { .. }),
            Class::InvalidKey => matches!(err, Error::InvalidKey { .. }),
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
        matches!(
            class,
            Class::InvalidRange
                | Class::ChecksumMismatch
                | Class::InvalidArgument
                | Class::Unauthenticated
                | Class::PermissionDenied
                | Class::Transient
                | Class::Other
        )
    }

    fn documented_rows() -> Vec<Vec<String>> {
        let header =
            "//! | status | code | class | error, unconditional request on a blob | transient |";
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
            let code = row.code.map_or("any".to_owned(), |c| format!("`{c}`"));
            let transient = if row.class.is_transient() {
                "yes"
            } else {
                "no"
            };
            assert_eq!(
                [&cells[0], &cells[1], &cells[2], &cells[4]],
                [
                    &status,
                    &code,
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
            (500, Some("InternalError"), Class::Transient),
            (503, Some("ServerBusy"), Class::Transient),
            (500, Some("OperationTimedOut"), Class::Transient),
            (408, None, Class::Transient),
            (429, None, Class::Transient),
            (502, None, Class::Transient),
            (504, None, Class::Transient),
            (403, Some("AuthenticationFailed"), Class::Unauthenticated),
            (
                401,
                Some("NoAuthenticationInformation"),
                Class::Unauthenticated,
            ),
            (401, None, Class::Unauthenticated),
            (403, Some("AuthorizationFailure"), Class::PermissionDenied),
            (
                403,
                Some("AuthorizationPermissionMismatch"),
                Class::PermissionDenied,
            ),
            (404, Some("ContainerNotFound"), Class::BucketNotFound),
            (404, Some("BlobNotFound"), Class::KeyNotFound),
            (404, None, Class::KeyOrBucketNotFound),
            (412, Some("ConditionNotMet"), Class::ConditionFailed),
            (409, Some("BlobAlreadyExists"), Class::ConditionFailed),
            (409, Some("LeaseIdMissing"), Class::Other),
        ];
        for (status, code, class) in cases {
            assert_eq!(classify(status, code), class, "{status} {code:?}");
        }
    }

    #[test]
    fn every_row_is_the_first_match_of_its_sample() {
        for row in TABLE {
            let (status, code) = sample(row);
            assert_eq!(lookup(status, Some(code)), Some(row), "{row:?} is shadowed");
        }
        assert_eq!(classify(418, Some("UnlistedCode")), Class::Other);
        assert_eq!(classify(409, Some("LeaseIdMissing")), Class::Other);
    }

    /// Every row, as a real answer read by `azure_core` and converted here:
    /// a Get Blob (the code in the header and in the body) and a Get Blob
    /// Properties (HEAD: the code in the header only).
    #[tokio::test]
    async fn every_row_fed_through_the_pipeline_gives_its_error() {
        let server = TestServer::start(|seen: &Seen| {
            let index = seen
                .path()
                .rsplit("row-")
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(0);
            let (status, code) = sample(&TABLE[index]);
            azure_error(status, code)
        });
        let store = store(&server.url());
        for (index, row) in TABLE.iter().enumerate() {
            let key = Key::new(format!("row-{index}")).expect("key");
            let (status, code) = sample(row);
            for (method, op) in [
                (Method::Get, "Get Blob"),
                (Method::Head, "Get Blob Properties"),
            ] {
                let request = Request::new(store.blob_url(&key), method);
                let answer = store
                    .send_checked(request, op, &[200])
                    .await
                    .expect("within the time limit");
                let Err(sdk_err) = answer else {
                    panic!("{op} of {row:?} succeeded");
                };
                assert_eq!(classify_sdk(&sdk_err), Some(row.class), "{op} of {row:?}");
                let err = from_sdk(sdk_err, op, CONTAINER, key.as_str(), Context::Plain);
                assert!(is_expected(row.class, &err), "{op} of {row:?}: {err:?}");
                assert_eq!(
                    err.is_transient(),
                    row.class.is_transient(),
                    "{op} of {row:?}: {err}"
                );
                if has_message(row.class) {
                    let text = err.to_string();
                    for part in [op, key.as_str(), code, &status.to_string()] {
                        assert!(text.contains(part), "{op} of {row:?}: {text}");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn the_context_decides_how_a_missing_blob_and_a_failed_condition_read() {
        let server = TestServer::start(|seen: &Seen| match seen.path().rsplit('/').next() {
            Some("missing") => azure_error(404, "BlobNotFound"),
            Some("no-container") => azure_error(404, "ContainerNotFound"),
            Some("exists") => azure_error(409, "BlobAlreadyExists"),
            _ => azure_error(412, "ConditionNotMet"),
        });
        let store = store(&server.url());
        let stale = ETag::new("e1");
        let cases = [
            ("failed", Context::Create, "AlreadyExists"),
            ("exists", Context::Create, "AlreadyExists"),
            (
                "failed",
                Context::IfMatch(stale.clone()),
                "PreconditionFailed",
            ),
            (
                "missing",
                Context::IfMatch(stale.clone()),
                "PreconditionFailed",
            ),
            ("missing", Context::Bucket, "BucketNotFound"),
            ("no-container", Context::IfMatch(stale), "BucketNotFound"),
            ("no-container", Context::Create, "BucketNotFound"),
        ];
        for (name, context, expected) in cases {
            let key = Key::new(name).expect("key");
            let request = Request::new(store.blob_url(&key), Method::Put);
            let answer = store
                .send_checked(request, "Put Blob", &[201])
                .await
                .expect("within the time limit");
            let err = from_sdk(
                answer.expect_err("an error answer"),
                "Put Blob",
                CONTAINER,
                name,
                context.clone(),
            );
            let variant = format!("{err:?}");
            assert!(
                variant.starts_with(expected),
                "{name} under {context:?}: {variant}"
            );
        }
    }

    #[derive(Debug)]
    struct RefusedCredential;

    #[async_trait::async_trait]
    impl azure_core::credentials::TokenCredential for RefusedCredential {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "the identity endpoint refused the client secret",
            ))
        }
    }

    /// A token credential that fails stops the request before it is sent,
    /// with no status: `Unauthenticated`, not transient.
    #[tokio::test]
    async fn token_credential_failures_are_unauthenticated() {
        let store = AzureConfig::new("acct", CONTAINER)
            .endpoint("https://127.0.0.1:1/acct")
            .token_credential(Arc::new(RefusedCredential))
            .build()
            .expect("config");
        let key = Key::new("k").expect("key");
        let err = storage_core::Backend::head(&store, &key).await;
        let Err(err) = err else {
            panic!("head succeeded without a token");
        };
        assert!(matches!(err, Error::Unauthenticated { .. }), "{err:?}");
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(
            text.contains("Get Blob Properties") && text.contains("refused"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn lost_connections_and_timeouts_are_transient() {
        let key = Key::new("k").expect("key");
        let refused = store(&closed_port_url());
        let err = storage_core::Backend::head(&refused, &key).await;
        assert!(err.as_ref().is_err_and(Error::is_transient), "{err:?}");

        let server = TestServer::start(|_: &Seen| Reply::status(200).after(Duration::from_secs(2)));
        let slow = store(&server.url());
        let err = storage_core::Backend::head(&slow, &key).await;
        assert!(err.as_ref().is_err_and(Error::is_transient), "{err:?}");
    }
}
