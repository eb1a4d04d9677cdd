//! Presigned URLs of `FsBackend` and `LogStore`: signed by a
//! `LocalPresigner` under the base URL of a small HTTP server that checks
//! each request with `LocalPresigner::verify` and answers it from the store,
//! then used with plain HTTP.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use storage_conformance::scripted_server::{Reply, Seen, TestServer};
use storage_core::presign::LocalPresigner;
use storage_core::{Backend, BackendExt, Error, Key, PresignMethod};
use storage_disk::{FsBackend, LogStore};

const SECRET: [u8; 32] = [42; 32];

/// What the server needs once it knows its own URL.
struct Serving {
    presigner: LocalPresigner,
    store: Arc<dyn Backend>,
}

/// The answer of the application's server: 403 for a refused URL, 400 for
/// a malformed one, otherwise the store's object (GET) or a put of the
/// request body (PUT).
fn answer(serving: &OnceLock<Serving>, runtime: &tokio::runtime::Handle, seen: &Seen) -> Reply {
    let Some(serving) = serving.get() else {
        return Reply::status(503);
    };
    let key = match serving
        .presigner
        .verify(&seen.method, &seen.target, SystemTime::now())
    {
        Ok(key) => key,
        Err(Error::PermissionDenied { .. }) => return Reply::status(403),
        Err(_) => return Reply::status(400),
    };
    let store = &serving.store;
    match seen.method.as_str() {
        "GET" => match runtime.block_on(store.get_bytes(&key)) {
            Ok(bytes) => Reply::status(200).body(bytes.to_vec()),
            Err(Error::NotFound { .. }) => Reply::status(404),
            Err(_) => Reply::status(500),
        },
        "PUT" => match runtime.block_on(store.put_bytes(&key, seen.body.clone())) {
            Ok(meta) => Reply::status(200).header("etag", &meta.etag.quoted()),
            Err(_) => Reply::status(500),
        },
        _ => Reply::status(405),
    }
}

/// Serves `store` behind a server and returns the server and the store with
/// its presigner.
fn serve(make: impl FnOnce(LocalPresigner) -> Arc<dyn Backend>) -> (TestServer, Arc<dyn Backend>) {
    let serving = Arc::new(OnceLock::new());
    let runtime = tokio::runtime::Handle::current();
    let server = {
        let serving = Arc::clone(&serving);
        TestServer::start(move |seen: &Seen| answer(&serving, &runtime, seen))
    };
    let base = format!("{}/files", server.url());
    let presigner = LocalPresigner::new(&base, SECRET).expect("presigner");
    let store = make(presigner.clone());
    let _ = serving.set(Serving {
        presigner,
        store: Arc::clone(&store),
    });
    (server, store)
}

/// Writes through a presigned PUT URL, reads back through a presigned GET
/// URL, and checks that a URL with another key is refused.
async fn round_trip(store: &Arc<dyn Backend>) {
    assert!(store.capabilities().presigned_urls);
    let key = Key::new("shared/report 2026.csv").expect("key");
    let minute = Duration::from_secs(60);
    let http = reqwest::Client::new();
    let put_url = store
        .presign(PresignMethod::Put, &key, minute)
        .await
        .expect("put URL");
    let put = http
        .put(&put_url)
        .body("year,total\n")
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), 200, "{put_url}");
    assert_eq!(store.get_bytes(&key).await.expect("stored"), "year,total\n");
    let get_url = store
        .presign(PresignMethod::Get, &key, minute)
        .await
        .expect("get URL");
    let got = http.get(&get_url).send().await.expect("GET");
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.expect("body"), "year,total\n");
    let elsewhere = get_url.replace("report%202026.csv", "other.csv");
    let refused = http.get(&elsewhere).send().await.expect("GET");
    assert_eq!(refused.status(), 403, "{elsewhere}");
    let as_put = http
        .put(&get_url)
        .body("overwritten")
        .send()
        .await
        .expect("PUT");
    assert_eq!(as_put.status(), 403, "a GET URL used to PUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_backend_urls_work_over_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, store) = serve(|presigner| {
        Arc::new(
            FsBackend::new(dir.path())
                .expect("fs")
                .with_presigner(presigner),
        )
    });
    round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logstore_urls_work_over_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = LogStore::open(dir.path()).await.expect("logstore");
    let (_server, store) = serve(move |presigner| Arc::new(log.with_presigner(presigner)));
    round_trip(&store).await;
}

#[tokio::test]
async fn without_a_presigner_presign_is_unsupported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsBackend::new(dir.path()).expect("fs");
    assert!(!store.capabilities().presigned_urls);
    let key = Key::new("k").expect("key");
    let outcome = store
        .presign(PresignMethod::Get, &key, Duration::from_secs(60))
        .await;
    assert!(
        matches!(outcome, Err(Error::Unsupported { .. })),
        "{outcome:?}"
    );
}
