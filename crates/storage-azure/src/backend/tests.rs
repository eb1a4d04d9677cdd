//! Unit tests of `AzureBackend` against scripted answers.

use super::*;
use crate::AzureConfig;
use futures::StreamExt;
use storage_core::{ByteRange, ETag};

fn offline() -> AzureBackend {
    AzureConfig::emulator("http://127.0.0.1:9/devstoreaccount1", "box")
        .prefix("tenant/")
        .build()
        .expect("config")
}

#[test]
fn blob_urls_encode_the_whole_name_as_one_segment() {
    let key = Key::new("a b/c#d").expect("key");
    assert_eq!(
        offline().blob_url(&key).as_str(),
        "http://127.0.0.1:9/devstoreaccount1/box/tenant%2Fa%20b%2Fc%23d"
    );
}

#[test]
fn this_crates_blob_urls_are_the_sdks_for_every_tricky_key() {
    let store = offline();
    for name in storage_conformance::suites::list::ESCAPED_KEYS
        .iter()
        .chain(&storage_conformance::suites::list::TRICKY_KEYS)
    {
        let key = Key::new(name).expect("key");
        assert_eq!(
            store.blob_url(&key).as_str(),
            store.blob_client(&key).url().as_str(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_prefixed_name_over_1024_characters_is_rejected_before_io() {
    let key = Key::new("k".repeat(1020)).expect("key");
    let err = offline()
        .put(&key, Body::from("x"), PutOptions::default())
        .await;
    assert!(matches!(err, Err(Error::InvalidKey { .. })), "{err:?}");
}

#[tokio::test]
async fn presigned_urls_carry_a_blob_sas() {
    let key = Key::new("r/1.csv").expect("key");
    let url = offline()
        .presign(PresignMethod::Get, &key, Duration::from_secs(60))
        .await
        .expect("url");
    assert!(
        url.starts_with("http://127.0.0.1:9/devstoreaccount1/box/tenant%2Fr%2F1.csv?sv="),
        "{url}"
    );
    assert!(url.contains("&sr=b&sp=r&"), "{url}");
}

use crate::test_server::{Reply, Seen, TestServer};
use bytes::Bytes;
use storage_core::{BackendExt, DeleteOptions, ListOptions};

fn azure_error(status: u16, code: Option<&str>) -> Reply {
    let reply = Reply::status(status);
    match code {
        Some(code) => reply
            .header("x-ms-error-code", code)
            .header("content-type", "application/xml")
            .body(format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>scripted</Message></Error>"
            )),
        None => reply,
    }
}

fn scripted(server: &TestServer) -> AzureBackend {
    AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
        .build()
        .expect("config")
}

/// Get Container Properties (`HEAD …/box?restype=container`).
fn is_container_probe(seen: &Seen) -> bool {
    seen.method == "HEAD" && seen.has_query("restype")
}

#[tokio::test]
async fn every_operation_on_a_missing_container_is_bucket_not_found() {
    // Azure and Azurite: `ContainerNotFound` in the header of every
    // failed answer, and in the body of those that have one.
    let server = TestServer::start(|_: &Seen| azure_error(404, Some("ContainerNotFound")));
    let store = scripted(&server);
    let k = Key::new("k").expect("key");
    let stale = ETag::new("e1");
    let one_shot = || Body::stream(futures::stream::iter([Ok(Bytes::from("x"))]).boxed(), None);
    let with_mode = |mode: PutMode| PutOptions {
        mode,
        ..PutOptions::default()
    };
    let listing = ListOptions {
        delimiter: true,
        ..ListOptions::default()
    };
    let outcomes: Vec<(&str, Result<()>)> = vec![
        ("exists", store.exists(&k).await.map(|_| ())),
        ("head", store.head(&k).await.map(|_| ())),
        ("get", store.get_bytes(&k).await.map(|_| ())),
        ("get range", store.get_range(&k, 1..3).await.map(|_| ())),
        (
            "get suffix",
            store
                .get(
                    &k,
                    GetOptions {
                        range: Some(ByteRange::Suffix { len: 2 }),
                        ..GetOptions::default()
                    },
                )
                .await
                .map(|_| ()),
        ),
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
                    with_mode(PutMode::IfMatch(stale.clone())),
                )
                .await
                .map(|_| ()),
        ),
        (
            "staged blocks",
            store
                .put(&k, one_shot(), PutOptions::default())
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
                        if_match: Some(stale.clone()),
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
            matches!(&outcome, Err(Error::BucketNotFound { bucket }) if bucket == "box"),
            "{operation}: {outcome:?}"
        );
    }
    assert!(
        !server.seen().iter().any(is_container_probe),
        "the code said it all: no Get Container Properties"
    );
}

#[tokio::test]
async fn a_404_without_a_code_asks_the_container_once_and_remembers_it() {
    let server = TestServer::start(|seen: &Seen| {
        if is_container_probe(seen) {
            Reply::status(200)
        } else {
            azure_error(404, None)
        }
    });
    let store = scripted(&server);
    let k = Key::new("k").expect("key");
    assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
    assert_eq!(store.exists(&k).await.ok(), Some(false));
    assert!(store.delete(&k, DeleteOptions::default()).await.is_ok());
    let probes = server
        .seen()
        .iter()
        .filter(|s| is_container_probe(s))
        .count();
    assert_eq!(probes, 1, "{:#?}", server.seen());
}

#[tokio::test]
async fn a_404_without_a_code_on_a_missing_container_is_bucket_not_found() {
    let server = TestServer::start(|_: &Seen| azure_error(404, None));
    let store = scripted(&server);
    let k = Key::new("k").expect("key");
    let err = store.exists(&k).await;
    assert!(matches!(err, Err(Error::BucketNotFound { .. })), "{err:?}");
    let err = store.delete(&k, DeleteOptions::default()).await;
    assert!(matches!(err, Err(Error::BucketNotFound { .. })), "{err:?}");
}

#[tokio::test]
async fn presigned_urls_need_an_account_key() {
    let store = AzureConfig::new("acct", "box")
        .sas_token("sv=2022-11-02&sig=x")
        .build()
        .expect("config");
    let key = Key::new("k").expect("key");
    assert!(!store.capabilities().presigned_urls);
    assert!(matches!(
        store
            .presign(PresignMethod::Get, &key, Duration::from_secs(60))
            .await,
        Err(Error::Unsupported { .. })
    ));
}
