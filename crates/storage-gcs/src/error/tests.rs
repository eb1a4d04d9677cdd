//! Unit tests of `error.rs`.

use std::sync::Arc;
use std::time::Duration;

use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::objects::get::GetObjectRequest;
use storage_core::{Backend, Key};
use token_source::{TokenSource, TokenSourceProvider};

use super::*;
use crate::core::read_answer;
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
    let header =
        "//! | status | reason | class | error, unconditional request on an object | transient |";
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
                .await
                .expect("an anonymous client")
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
        let auth = crate::backend::Auth {
            client,
            token: Some(token),
            can_sign: false,
        };
        let store = GcsBackend::with_auth(config, http, auth);
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
