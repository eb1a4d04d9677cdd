//! Azure-specific behaviour against Azurite: delimiter listings parsed from
//! the raw XML, staged-block uploads with conditions, SAS URLs, the account
//! SAS being checked, and request timeouts.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use storage_azure::{AzureConfig, EMULATOR_ACCOUNT};
use storage_core::PresignMethod;
use storage_core::{
    Backend, BackendExt, Body, ByteStream, ETag, Error, GetOptions, Key, ListOptions, PutMode,
    PutOptions,
};

fn key(s: &str) -> Key {
    Key::new(s).expect("key")
}

async fn fill(store: &impl Backend, keys: &[&str]) {
    for k in keys {
        store.put_bytes(*k, "x").await.expect("put");
    }
}

/// Every page of a delimiter listing: (objects, common prefixes).
async fn delimited(store: &impl Backend, options: ListOptions) -> (Vec<String>, Vec<String>) {
    let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
    let mut options = ListOptions {
        delimiter: true,
        ..options
    };
    loop {
        let page = store.list(&options).await.expect("list");
        objects.extend(page.objects.iter().map(|o| o.key.to_string()));
        prefixes.extend(page.common_prefixes);
        match page.continuation {
            Some(next) => options.continuation = Some(next),
            None => return (objects, prefixes),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimiter_listings_return_common_prefixes_under_a_configured_prefix() {
    let server = common::start();
    common::create_container(&server, "listing").await;
    let store = common::config(&server, "listing", "tenant/")
        .build()
        .expect("client");
    fill(&store, &["a/1", "a/2", "b/1", "c", "d/x/y"]).await;
    // Another tenant's blob must not show up.
    let other = common::config(&server, "listing", "other/")
        .build()
        .expect("client");
    fill(&other, &["a/9"]).await;
    let one_per_page = ListOptions {
        page_size: Some(1),
        ..ListOptions::default()
    };
    let (objects, prefixes) = delimited(&store, one_per_page).await;
    assert_eq!(objects, ["c"]);
    assert_eq!(prefixes, ["a/", "b/", "d/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_after_inside_a_common_prefix_lists_the_prefix_only_if_keys_follow() {
    let server = common::start();
    let store = common::create_container(&server, "after").await;
    fill(&store, &["a/1", "a/2", "b"]).await;
    let after = |s: &str| ListOptions {
        start_after: Some(s.to_owned()),
        ..ListOptions::default()
    };
    assert_eq!(
        delimited(&store, after("a/1")).await,
        (vec!["b".to_owned()], vec!["a/".to_owned()])
    );
    assert_eq!(
        delimited(&store, after("a/2")).await,
        (vec!["b".to_owned()], vec![])
    );
}

/// A body of unknown length, in 64 KiB chunks.
fn stream_of(data: Bytes) -> Body {
    let chunks: Vec<storage_core::Result<Bytes>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream: ByteStream = futures::stream::iter(chunks).boxed();
    Body::stream(stream, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_uploads_carry_conditions_and_the_sha256() {
    let server = common::start();
    common::create_container(&server, "blocks").await;
    // Blocks of 256 KiB from 512 KiB: a 3 MiB body is 12 blocks.
    let store = common::config(&server, "blocks", "")
        .blocks(512 * 1024, 256 * 1024, 3)
        .build()
        .expect("client");
    let k = key("big");
    let first = storage_conformance::support::pattern(3 * 1024 * 1024 + 17, 1);
    let meta = store
        .put(
            &k,
            stream_of(first.clone()),
            PutOptions::mode(PutMode::IfNotExists),
        )
        .await
        .expect("create");
    assert_eq!(meta.size, first.len() as u64);
    let head = store.head(&k).await.expect("head");
    assert_eq!(head.etag, meta.etag);
    assert_eq!(
        head.sha256,
        Some(storage_conformance::support::sha256(&first))
    );

    let second = storage_conformance::support::pattern(2 * 1024 * 1024, 2);
    let again = store
        .put(
            &k,
            stream_of(second.clone()),
            PutOptions::mode(PutMode::IfNotExists),
        )
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );
    let stale = store
        .put(
            &k,
            stream_of(second.clone()),
            PutOptions::mode(PutMode::IfMatch(ETag::new("0x0"))),
        )
        .await;
    assert!(
        matches!(stale, Err(Error::PreconditionFailed { .. })),
        "{stale:?}"
    );
    assert_eq!(
        store.get_bytes("big").await.expect("get"),
        first,
        "refused uploads changed nothing"
    );

    let swapped = store
        .put(
            &k,
            stream_of(second.clone()),
            PutOptions::mode(PutMode::IfMatch(meta.etag.clone())),
        )
        .await
        .expect("compare-and-swap");
    assert_ne!(swapped.etag, meta.etag);
    assert_eq!(store.get_bytes("big").await.expect("get"), second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_urls_read_and_write_one_blob_until_they_expire() {
    let server = common::start();
    let store = common::create_container(&server, "sas").await;
    let http = reqwest::Client::new();

    let put_url = store
        .presign(
            PresignMethod::Put,
            &key("up/load.txt"),
            Duration::from_secs(300),
        )
        .await
        .expect("put url");
    let put = http
        .put(&put_url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("hello")
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text().await);
    assert_eq!(store.get_bytes("up/load.txt").await.expect("get"), "hello");

    let get_url = store
        .presign(
            PresignMethod::Get,
            &key("up/load.txt"),
            Duration::from_secs(300),
        )
        .await
        .expect("get url");
    let got = http.get(&get_url).send().await.expect("GET");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.text().await.expect("body"), "hello");

    // A read URL does not write.
    let refused = http
        .put(&get_url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("evil")
        .send()
        .await
        .expect("PUT");
    assert_eq!(refused.status().as_u16(), 403);

    // And it expires.
    let short = store
        .presign(
            PresignMethod::Get,
            &key("up/load.txt"),
            Duration::from_secs(1),
        )
        .await
        .expect("get url");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = http.get(&short).send().await.expect("GET");
    assert_eq!(late.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_account_key_is_refused() {
    // Proves the server checks the account SAS this crate signs (so the
    // passing suite is not an emulator that ignores signatures). Azure
    // answers a bad signature with 403 AuthenticationFailed
    // (`Unauthenticated`); Azurite with 403 AuthorizationFailure
    // (`PermissionDenied`).
    let server = common::start();
    common::create_container(&server, "auth").await;
    for account_sas in [false, true] {
        let wrong = AzureConfig::new(EMULATOR_ACCOUNT, "auth")
            .endpoint(format!("{}/devstoreaccount1", server.endpoint))
            .account_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .account_sas_requests(account_sas)
            .build()
            .expect("client");
        let err = wrong.get(&key("k"), GetOptions::default()).await;
        assert!(
            matches!(
                err,
                Err(Error::Unauthenticated { .. } | Error::PermissionDenied { .. })
            ),
            "account SAS {account_sas}: {:?}",
            err.map(|_| ())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_with_an_account_sas_are_accepted() {
    let server = common::start();
    common::create_container(&server, "sas-requests").await;
    let store = common::config(&server, "sas-requests", "")
        .account_sas_requests(true)
        .build()
        .expect("client");
    store.put_bytes("k", "v").await.expect("put");
    assert_eq!(store.get_bytes("k").await.expect("get"), "v");
    let listed = store.list(&ListOptions::default()).await.expect("list");
    assert_eq!(listed.objects.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_as_a_transient_error() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let store = AzureConfig::emulator(format!("http://127.0.0.1:{port}/devstoreaccount1"), "c")
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = store.head(&key("k")).await.expect_err("no answer");
    assert!(err.is_transient(), "{err:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_with_an_account_key_runs_inside_the_service() {
    let server = common::start();
    let store = common::create_container(&server, "copy").await;
    assert!(store.capabilities().server_side_copy);
    let put = store
        .put(
            &key("src"),
            Body::from("payload"),
            PutOptions {
                content_type: Some("text/csv".into()),
                ..PutOptions::default()
            },
        )
        .await
        .expect("put");
    let copied = store
        .copy(&key("src"), &key("dst"), PutMode::IfNotExists)
        .await
        .expect("copy");
    assert_eq!(copied.content_type.as_deref(), Some("text/csv"));
    assert_eq!(copied.sha256, put.sha256, "the recorded SHA-256 travels");
    // Only Copy Blob leaves copy properties on the destination.
    let url = store
        .presign(PresignMethod::Get, &key("dst"), Duration::from_secs(60))
        .await
        .expect("url");
    let head = reqwest::Client::new()
        .head(&url)
        .send()
        .await
        .expect("HEAD");
    assert_eq!(
        head.headers()
            .get("x-ms-copy-status")
            .and_then(|v| v.to_str().ok()),
        Some("success")
    );
    assert_eq!(store.get_bytes("dst").await.expect("get"), "payload");
}
