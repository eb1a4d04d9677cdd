//! Behaviour of Azure Blob Storage that Azurite does not reproduce, pinned
//! by a scripted server that answers as the Azure Storage REST reference
//! says (each answer cites its page). No account is needed.

use bytes::Bytes;
use storage_azure::{AzureBackend, AzureConfig};
use storage_conformance::scripted_server::{Reply, Seen, TestServer};
use storage_core::{Backend, BackendExt, Body, DeleteOptions, Error, Key, PutOptions};

fn key(s: &str) -> Key {
    Key::new(s).expect("key")
}

fn store(server: &TestServer) -> AzureBackend {
    AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
        .build()
        .expect("config")
}

/// Get Blob Properties (HEAD) and Delete Blob (202) as "Get Blob
/// Properties" and "Delete Blob" document their success answers.
fn blob_answers(request: &Seen) -> Reply {
    match request.method.as_str() {
        "HEAD" => Reply::status(200)
            .header("etag", "\"0x8D0000000000001\"")
            .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
            .header("content-length", "0")
            .header("content-type", "application/octet-stream")
            .header("x-ms-blob-type", "BlockBlob"),
        "DELETE" => Reply::status(202),
        _ => Reply::status(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crates_own_requests_and_the_sdks_send_one_x_ms_version() {
    let server = TestServer::start(blob_answers);
    let store = store(&server);
    // Get Blob Properties is built by this crate; Delete Blob by the SDK.
    store.head(&key("a/b c")).await.expect("head");
    store
        .delete(&key("a/b c"), DeleteOptions::default())
        .await
        .expect("delete");
    let seen = server.seen();
    let versions: Vec<Option<&str>> = seen.iter().map(|r| r.header("x-ms-version")).collect();
    assert_eq!(versions.len(), 2, "{seen:?}");
    assert!(versions[0].is_some(), "{seen:?}");
    assert_eq!(versions[0], versions[1], "{seen:?}");
    // List Blobs `startFrom` needs 2026-02-06 or later.
    assert!(versions[0] >= Some("2026-02-06"), "{versions:?}");
    // Both name the blob with the same path.
    assert_eq!(seen[0].path(), seen[1].path(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_azure_would_rename_are_refused_before_any_request() {
    // "Naming and Referencing Containers, Blobs, and Metadata": Azure reads
    // `\` in a blob name as `/`, and path segments should not end with `.`
    // (the service drops it), so these keys would alias `a/b`, `dot` and
    // `seg/x`.
    let server = TestServer::start(blob_answers);
    let store = store(&server);
    for name in ["a\\b", "dot.", "seg./x", "trailing.."] {
        let put = store
            .put(
                &key(name),
                Body::from(Bytes::from_static(b"x")),
                PutOptions::default(),
            )
            .await;
        assert!(
            matches!(put, Err(Error::InvalidKey { .. })),
            "{name}: {:?}",
            put.map(|m| m.etag)
        );
        let got = store.get_bytes(name).await;
        assert!(
            matches!(got, Err(Error::InvalidKey { .. })),
            "{name}: {got:?}"
        );
        let copied = store
            .copy(&key("fine"), &key(name), Default::default())
            .await;
        assert!(
            matches!(copied, Err(Error::InvalidKey { .. })),
            "{name}: {:?}",
            copied.map(|m| m.etag)
        );
    }
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}
