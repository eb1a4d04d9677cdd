//! Unit tests of `error.rs`.

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
    include_str!("../error.rs")
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
