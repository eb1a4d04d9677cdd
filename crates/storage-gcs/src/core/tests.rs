//! Unit tests of `core.rs`.

use super::*;
use crate::GcsConfig;
use bytes::Bytes;
use futures::StreamExt;
use storage_core::{Body, DeleteOptions, PutOptions};

#[test]
fn x_goog_hash_gives_the_crc32c() {
    // "hello": crc32c 0x9a71bb4c, base64 "mnG7TA=="
    assert_eq!(
        crc32c_of("crc32c=mnG7TA==,md5=XUFAKrxLKna5cZ2REBfFkg=="),
        Some(0x9a71_bb4c)
    );
    assert_eq!(crc32c_base64(crc32c::crc32c(b"hello")), "mnG7TA==");
}

#[test]
fn etags_that_name_no_generation_match_nothing() {
    let key = Key::new("k").expect("key");
    let err = condition(&key, &PutMode::IfMatch(ETag::new("not-a-number")));
    assert!(matches!(err, Err(Error::PreconditionFailed { .. })));
    assert_eq!(condition(&key, &PutMode::IfNotExists).ok(), Some(Some(0)));
}

use crate::test_server::{Reply, Seen, TestServer};
use storage_core::{BackendExt, ListOptions};

fn not_found() -> Reply {
    Reply::status(404)
        .header("content-type", "application/json; charset=UTF-8")
        .body(
            r#"{"error":{"code":404,"message":"The specified bucket does not exist.","errors":[{"domain":"global","reason":"notFound","message":"The specified bucket does not exist."}]}}"#,
        )
}

/// The bucket GET (`/storage/v1/b/bucket?fields=name`).
fn is_bucket_get(seen: &Seen) -> bool {
    seen.method == "GET" && seen.path() == "/storage/v1/b/bucket"
}

async fn scripted(server: &TestServer) -> GcsBackend {
    GcsConfig::emulator(server.url(), "bucket")
        .resumable(256 * 1024, 256 * 1024)
        .build()
        .expect("config")
}

#[tokio::test]
async fn every_operation_on_a_missing_bucket_is_bucket_not_found() {
    // GCS: 404 `notFound` for everything in a bucket that does not
    // exist, the bucket GET included.
    let server = TestServer::start(|_: &Seen| not_found());
    let store = scripted(&server).await;
    let k = Key::new("k").expect("key");
    let generation = ETag::new("5");
    let with_mode = |mode: PutMode| PutOptions {
        mode,
        ..PutOptions::default()
    };
    let large = || {
        let chunks = vec![Ok(Bytes::from(vec![7u8; 300 * 1024]))];
        Body::stream(futures::stream::iter(chunks).boxed(), None)
    };
    let listing = ListOptions {
        delimiter: true,
        start_after: Some("a/b".into()),
        ..ListOptions::default()
    };
    let outcomes: Vec<(&str, Result<()>)> = vec![
        ("exists", store.exists(&k).await.map(|_| ())),
        ("head", store.head(&k).await.map(|_| ())),
        ("get", store.get_bytes(&k).await.map(|_| ())),
        ("get range", store.get_range(&k, 1..3).await.map(|_| ())),
        (
            "list",
            store.list(&ListOptions::default()).await.map(|_| ()),
        ),
        (
            "list with delimiter",
            store.list(&listing).await.map(|_| ()),
        ),
        ("put", store.put_bytes(&k, "x").await.map(|_| ())),
        (
            "put if not exists",
            store
                .put(&k, Body::from("x"), with_mode(PutMode::IfNotExists))
                .await
                .map(|_| ()),
        ),
        (
            "put if match",
            store
                .put(
                    &k,
                    Body::from("x"),
                    with_mode(PutMode::IfMatch(generation.clone())),
                )
                .await
                .map(|_| ()),
        ),
        (
            "resumable put",
            store
                .put(&k, large(), PutOptions::default())
                .await
                .map(|_| ()),
        ),
        ("delete", store.delete(&k, DeleteOptions::default()).await),
        (
            "delete if match",
            store
                .delete(
                    &k,
                    DeleteOptions {
                        if_match: Some(generation.clone()),
                    },
                )
                .await,
        ),
        (
            "copy",
            store
                .copy(&k, &Key::new("k2").expect("key"), PutMode::Overwrite)
                .await
                .map(|_| ()),
        ),
    ];
    for (operation, outcome) in outcomes {
        assert!(
            matches!(&outcome, Err(Error::BucketNotFound { bucket }) if bucket == "bucket"),
            "{operation}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_404_asks_the_bucket_once_and_remembers_it() {
    let server = TestServer::start(|seen: &Seen| {
        if is_bucket_get(seen) {
            Reply::status(200).body(r#"{"name":"bucket"}"#)
        } else {
            not_found()
        }
    });
    let store = scripted(&server).await;
    let k = Key::new("k").expect("key");
    assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
    assert_eq!(store.exists(&k).await.ok(), Some(false));
    assert!(matches!(
        store.get_bytes(&k).await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.delete(&k, DeleteOptions::default()).await.is_ok());
    let probes = server.seen().iter().filter(|s| is_bucket_get(s)).count();
    assert_eq!(probes, 1, "{:#?}", server.seen());
}

#[tokio::test]
async fn a_transient_bucket_get_failure_is_returned_as_such() {
    let server = TestServer::start(|seen: &Seen| {
        if is_bucket_get(seen) {
            Reply::status(503)
        } else {
            not_found()
        }
    });
    let store = scripted(&server).await;
    let err = store.head(&Key::new("k").expect("key")).await;
    assert!(err.as_ref().is_err_and(Error::is_transient), "{err:?}");
}
