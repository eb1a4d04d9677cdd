//! GCS-specific behaviour against fake-gcs-server: resumable uploads (whole,
//! chunk-aligned, failed), delimiter listings under a prefix, V4 signed
//! URLs, and request timeouts.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use storage_core::PresignMethod;
use storage_core::{
    Backend, BackendExt, Body, ByteStream, Error, GetOptions, Key, ListOptions, PutMode, PutOptions,
};
use storage_gcs::GcsConfig;

fn key(s: &str) -> Key {
    Key::new(s).expect("key")
}

/// A body of unknown length from `chunks`.
fn stream_of(chunks: Vec<storage_core::Result<Bytes>>) -> Body {
    let stream: ByteStream = futures::stream::iter(chunks).boxed();
    Body::stream(stream, None)
}

/// `data` in 64 KiB chunks.
fn chunked(data: &Bytes) -> Vec<storage_core::Result<Bytes>> {
    data.chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect()
}

const KIB: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumable_uploads_store_every_byte_whatever_the_last_chunk() {
    let server = common::start();
    common::create_bucket(&server, "resumable").await;
    // Chunks of 256 KiB from 512 KiB.
    let store = common::config(&server, "resumable", "")
        .resumable(512 * KIB as u64, 256 * KIB as u64)
        .build()
        .expect("client");
    for (name, len) in [("ragged", 1024 * KIB + 17), ("aligned", 1024 * KIB)] {
        let data = storage_conformance::support::pattern(len, len as u64);
        let meta = store
            .put(
                &key(name),
                stream_of(chunked(&data)),
                PutOptions::mode(PutMode::IfNotExists),
            )
            .await
            .expect("resumable upload");
        assert_eq!(meta.size, len as u64, "{name}");
        // The full read checks GCS's CRC32C of the object.
        assert_eq!(store.get_bytes(name).await.expect("get"), data, "{name}");
        // The SHA-256 is recorded after the upload, under the generation.
        let sha256 = storage_conformance::support::sha256(&data);
        assert_eq!(meta.sha256, Some(sha256), "{name}");
        let head = store.head(&key(name)).await.expect("head");
        assert_eq!(
            (head.sha256, head.etag),
            (Some(sha256), meta.etag),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_resumable_upload_leaves_no_object() {
    let server = common::start();
    common::create_bucket(&server, "broken").await;
    let store = common::config(&server, "broken", "")
        .resumable(512 * KIB as u64, 256 * KIB as u64)
        .build()
        .expect("client");
    let mut chunks = chunked(&storage_conformance::support::pattern(768 * KIB, 3));
    chunks.push(Err(Error::backend(true, "the source broke", "test")));
    let err = store
        .put(&key("partial"), stream_of(chunks), PutOptions::default())
        .await;
    assert!(err.is_err(), "{:?}", err.map(|m| m.size));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let head = store.head(&key("partial")).await;
    assert!(
        matches!(head, Err(Error::NotFound { .. })),
        "a partial object became visible: {:?}",
        head.map(|m| m.size)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_body_of_unknown_length_records_its_sha256() {
    let server = common::start();
    let store = common::create_bucket(&server, "short").await;
    let data = Bytes::from_static(b"twelve bytes");
    store
        .put(&key("s"), stream_of(chunked(&data)), PutOptions::default())
        .await
        .expect("put");
    assert_eq!(
        store.head(&key("s")).await.expect("head").sha256,
        Some(storage_conformance::support::sha256(&data))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimiter_listings_under_a_prefix_return_each_common_prefix_once() {
    let server = common::start();
    common::create_bucket(&server, "listing").await;
    let store = common::config(&server, "listing", "tenant/")
        .build()
        .expect("client");
    for k in ["a/1", "a/2", "b/1", "c", "d/x/y", "e"] {
        store.put_bytes(k, "x").await.expect("put");
    }
    let other = common::config(&server, "listing", "other/")
        .build()
        .expect("client");
    other.put_bytes("a/9", "x").await.expect("put");
    let mut options = ListOptions {
        delimiter: true,
        page_size: Some(1),
        ..ListOptions::default()
    };
    let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
    loop {
        let page = store.list(&options).await.expect("list");
        assert!(
            page.objects.len() + page.common_prefixes.len() <= 1,
            "{page:?}"
        );
        objects.extend(page.objects.iter().map(|o| o.key.to_string()));
        prefixes.extend(page.common_prefixes);
        match page.continuation {
            Some(next) => options.continuation = Some(next),
            None => break,
        }
    }
    assert_eq!(objects, ["c", "e"]);
    assert_eq!(prefixes, ["a/", "b/", "d/"]);
}

/// A token endpoint on 127.0.0.1 that grants every request a bearer token
/// (the service account flow fetches one when the client is built).
fn token_endpoint() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 16 * 1024];
            let _ = stream.read(&mut buffer);
            let body = r#"{"access_token":"test-token","expires_in":3600,"token_type":"Bearer"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_are_v4_and_signed_by_the_service_account() {
    // A throwaway key made for this test; its token endpoint is local.
    let fixture = include_str!("data/test-service-account.json").replace(
        "http://127.0.0.1:9/token",
        &format!("http://127.0.0.1:{}/token", token_endpoint()),
    );
    let store = GcsConfig::new("signed-bucket")
        .service_account_json(fixture)
        .build()
        .expect("client");
    assert!(store.capabilities().presigned_urls);
    let url = store
        .presign(
            PresignMethod::Get,
            &key("r/1.csv"),
            Duration::from_secs(600),
        )
        .await
        .expect("signed URL");
    assert!(
        url.starts_with("https://storage.googleapis.com/signed-bucket/r/1.csv?"),
        "{url}"
    );
    for part in [
        "X-Goog-Algorithm=GOOG4-RSA-SHA256",
        "X-Goog-Credential=signer%40test-project.iam.gserviceaccount.com",
        "X-Goog-Expires=600",
        "X-Goog-Signature=",
    ] {
        assert!(url.contains(part), "{part} missing from {url}");
    }
    let too_long = store
        .presign(
            PresignMethod::Put,
            &key("k"),
            Duration::from_secs(8 * 24 * 3600),
        )
        .await;
    assert!(matches!(too_long, Err(Error::InvalidArgument { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_as_a_transient_error() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let store = GcsConfig::emulator(format!("http://127.0.0.1:{port}"), "b")
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = store
        .get(&key("k"), GetOptions::default())
        .await
        .map(|_| ())
        .expect_err("no answer");
    assert!(err.is_transient(), "{err:?}");
    drop(silent);
}
