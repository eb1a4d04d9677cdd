//! Unit tests of `error.rs`.

use std::time::Duration;

use aws_credential_types::credential_fn::provide_credentials_fn;
use aws_sdk_s3::config::{BehaviorVersion, Region};

use super::*;
use crate::test_server::{Reply, Seen, TestServer, closed_port_url};
use crate::{S3Backend, S3Config};

const BUCKET: &str = "bucket";

/// An answer that the first match of `row` should be: its status (418,
/// which no row names, where it takes any) and its code
/// (`UnlistedCode` where it takes any).
fn sample(row: &Row) -> (u16, &'static str) {
    (
        row.status.unwrap_or(418),
        row.code.unwrap_or("UnlistedCode"),
    )
}

/// An S3 error answer (`<Error><Code>…`).
/// An S3 error answer; a 304 has no content (RFC 9110, 15.4.5).
fn s3_error(status: u16, code: &str) -> Reply {
    if status == 304 {
        return Reply::status(304);
    }
    Reply::status(status)
        .header("content-type", "application/xml")
        .body(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>scripted {code}</Message><RequestId>r1</RequestId></Error>"
        ))
}

async fn store(endpoint: &str) -> S3Backend {
    S3Config::new(BUCKET)
        .endpoint(endpoint)
        .path_style(true)
        .region("us-east-1")
        .credentials("id", "secret", None)
        .request_timeout(Duration::from_millis(500))
        .build()
        .expect("config")
}

/// Whether `err` is what an unconditional request on a key gets for
/// `class`.
fn is_expected(class: Class, err: &Error) -> bool {
    match class {
        Class::BucketNotFound => {
            matches!(err, Error::BucketNotFound { bucket } if bucket == BUCKET)
        }
        Class::KeyNotFound | Class::KeyOrBucketNotFound => {
            matches!(err, Error::NotFound { .. })
        }
        Class::ConditionFailed => matches!(err, Error::PreconditionFailed { .. }),
        Class::InvalidRange => matches!(err, Error::InvalidRange { .. }),
        Class::ChecksumMismatch => matches!(err, Error::ChecksumMismatch { .. }),
        Class::InvalidKey => matches!(err, Error::InvalidKey { .. }),
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

/// Whether the variant of `class` carries a message (which must then
/// name the operation, the key, the code and the status).
fn has_message(class: Class) -> bool {
    matches!(
        class,
        Class::InvalidRange
            | Class::ChecksumMismatch
            | Class::Unauthenticated
            | Class::PermissionDenied
            | Class::Transient
            | Class::Other
    )
}

/// The rows of the table in the module documentation, as cells.
fn documented_rows() -> Vec<Vec<String>> {
    let header =
        "//! | status | code | class | error, unconditional request on a key | transient |";
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
        (400, Some("RequestTimeout"), Class::Transient),
        (408, None, Class::Transient),
        (429, None, Class::Transient),
        (500, Some("InternalError"), Class::Transient),
        (502, None, Class::Transient),
        (503, Some("SlowDown"), Class::Transient),
        (504, None, Class::Transient),
        (409, Some("ConditionalRequestConflict"), Class::Transient),
        (200, Some("InternalError"), Class::Transient),
        (404, Some("NoSuchBucket"), Class::BucketNotFound),
        (404, Some("NoSuchKey"), Class::KeyNotFound),
        (404, Some("NotFound"), Class::KeyOrBucketNotFound),
        (403, Some("InvalidAccessKeyId"), Class::Unauthenticated),
        (403, Some("SignatureDoesNotMatch"), Class::Unauthenticated),
        (403, Some("AccessDenied"), Class::PermissionDenied),
        (403, None, Class::PermissionDenied),
        (412, Some("PreconditionFailed"), Class::ConditionFailed),
        (409, Some("BucketAlreadyExists"), Class::Other),
        (501, Some("NotImplemented"), Class::Other),
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
    assert_eq!(classify(501, Some("NotImplemented")), Class::Other);
}

/// Every row, as a real S3 answer read by the SDK and converted here: a
/// GetObject for answers that are errors by status, CopyObject and
/// CompleteMultipartUpload for the 200 answers that carry an error.
#[tokio::test]
async fn every_row_fed_through_the_sdk_gives_its_error() {
    let server = TestServer::start(|seen: &Seen| {
        let index = seen
            .path()
            .rsplit("row-")
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0);
        let (status, code) = sample(&TABLE[index]);
        s3_error(status, code)
    });
    let store = store(&server.url()).await;
    let client = store.client().await;
    for (index, row) in TABLE.iter().enumerate() {
        let key = format!("row-{index}");
        let (status, code) = sample(row);
        let errors = if status == 200 {
            let copy = client
                .copy_object()
                .bucket(BUCKET)
                .key(&key)
                .copy_source(format!("{BUCKET}/source"))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| from_sdk(e, "CopyObject", BUCKET, &key, Context::Plain));
            let complete = client
                .complete_multipart_upload()
                .bucket(BUCKET)
                .key(&key)
                .upload_id("u1")
                .send()
                .await
                .map(|_| ())
                .map_err(|e| from_sdk(e, "CompleteMultipartUpload", BUCKET, &key, Context::Plain));
            vec![("CopyObject", copy), ("CompleteMultipartUpload", complete)]
        } else {
            let get = client
                .get_object()
                .bucket(BUCKET)
                .key(&key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| from_sdk(e, "GetObject", BUCKET, &key, Context::Plain));
            vec![("GetObject", get)]
        };
        for (op, result) in errors {
            let Err(err) = result else {
                panic!("{op} of {row:?} succeeded");
            };
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

/// HEAD answers have no body: the SDK reads a 404 as code `NotFound`,
/// the row that asks the bucket; a 403 has no code at all.
#[tokio::test]
async fn head_answers_without_a_body_are_classified_by_status() {
    let server = TestServer::start(|seen: &Seen| {
        Reply::status(if seen.path().ends_with("/denied") {
            403
        } else {
            404
        })
    });
    let store = store(&server.url()).await;
    let client = store.client().await;
    let head = |key: &'static str| client.head_object().bucket(BUCKET).key(key).send();
    let missing = head("k").await.expect_err("404");
    assert_eq!(classify_sdk(&missing), Some(Class::KeyOrBucketNotFound));
    let err = from_sdk(missing, "HeadObject", BUCKET, "k", Context::Plain);
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let denied = head("denied").await.expect_err("403");
    let err = from_sdk(denied, "HeadObject", BUCKET, "denied", Context::Plain);
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn the_context_decides_how_a_missing_key_and_a_failed_condition_read() {
    let server = TestServer::start(|seen: &Seen| match seen.path() {
        "/bucket/missing" => s3_error(404, "NoSuchKey"),
        "/bucket/no-bucket" => s3_error(404, "NoSuchBucket"),
        _ => s3_error(412, "PreconditionFailed"),
    });
    let store = store(&server.url()).await;
    let sdk = store.client().await.clone();
    let convert = |key: &'static str, context: Context| {
        let client = sdk.clone();
        async move {
            let err = client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .expect_err("an error answer");
            from_sdk(err, "GetObject", BUCKET, key, context)
        }
    };
    let stale = ETag::new("e1");
    let cases = [
        ("failed", Context::Create, "AlreadyExists"),
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
        ("missing", Context::Create, "NotFound"),
        ("missing", Context::Bucket, "BucketNotFound"),
        ("no-bucket", Context::IfMatch(stale), "BucketNotFound"),
        ("no-bucket", Context::Create, "BucketNotFound"),
    ];
    for (key, context, expected) in cases {
        let err = convert(key, context.clone()).await;
        let variant = format!("{err:?}");
        assert!(
            variant.starts_with(expected),
            "{key} under {context:?}: {variant}"
        );
    }
}

/// Credentials the provider cannot give stop the request before it is
/// sent; the SDK reports a dispatch failure carrying the provider's
/// error.
type MakeError = fn() -> CredentialsError;

#[tokio::test]
async fn credentials_failures_are_unauthenticated_unless_the_provider_timed_out() {
    let server = TestServer::start(|_: &Seen| Reply::status(200));
    let kinds: [(&str, MakeError, bool); 5] = [
        (
            "not loaded",
            || CredentialsError::not_loaded("no credentials in the chain"),
            false,
        ),
        (
            "provider error",
            || CredentialsError::provider_error("refused by STS"),
            false,
        ),
        (
            "invalid configuration",
            || CredentialsError::invalid_configuration("bad profile"),
            false,
        ),
        (
            "unhandled",
            || CredentialsError::unhandled("not UTF-8"),
            false,
        ),
        (
            "timed out",
            || CredentialsError::provider_timed_out(Duration::from_secs(5)),
            true,
        ),
    ];
    for (name, make, transient) in kinds {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(server.url())
            .force_path_style(true)
            .credentials_provider(provide_credentials_fn(move || async move { Err(make()) }))
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let sdk_err = client
            .get_object()
            .bucket(BUCKET)
            .key("k")
            .send()
            .await
            .expect_err("no credentials");
        let err = from_sdk(sdk_err, "GetObject", BUCKET, "k", Context::Plain);
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
            text.contains("GetObject") && text.contains("credentials"),
            "{name}: {text}"
        );
    }
    assert!(
        server.seen().is_empty(),
        "a request was sent without credentials"
    );
}

#[tokio::test]
async fn lost_connections_and_timeouts_are_transient() {
    let refused = store(&closed_port_url()).await;
    let err = refused
        .client()
        .await
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .send()
        .await;
    let err = from_sdk(
        err.expect_err("refused"),
        "GetObject",
        BUCKET,
        "k",
        Context::Plain,
    );
    assert!(err.is_transient(), "{err:?}");

    let server = TestServer::start(|_: &Seen| Reply::status(200).after(Duration::from_secs(2)));
    let slow = store(&server.url()).await;
    let err = slow
        .client()
        .await
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .send()
        .await;
    let err = from_sdk(
        err.expect_err("timed out"),
        "GetObject",
        BUCKET,
        "k",
        Context::Plain,
    );
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("GetObject"), "{err}");
}
