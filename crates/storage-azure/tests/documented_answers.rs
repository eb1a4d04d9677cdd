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

/// Put Blob, Put Block and Put Block List as their pages document their
/// success answers (201 with `ETag` and `Last-Modified`).
fn write_answers(request: &Seen) -> Reply {
    match request.method.as_str() {
        "PUT" => Reply::status(201)
            .header("etag", "\"0x8D0000000000002\"")
            .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT"),
        _ => Reply::status(500),
    }
}

fn md5_base64(data: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_put_blob_and_put_block_carries_the_md5_the_service_verifies() {
    let server = TestServer::start(write_answers);
    let store = AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
        .blocks(1 << 20, 1 << 20, 2)
        .single_put_in_memory(0)
        .build()
        .expect("config");
    let small = Bytes::from_static(b"small body");
    store
        .put(
            &key("small"),
            Body::from(small.clone()),
            PutOptions::default(),
        )
        .await
        .expect("put blob");
    let large = storage_conformance::support::pattern(3 << 20, 3);
    store
        .put(&key("large"), Body::from(large), PutOptions::default())
        .await
        .expect("put blocks");
    let seen = server.seen();
    let put_blob = &seen[0];
    assert!(!put_blob.has_query("comp"), "{put_blob:?}");
    assert_eq!(
        put_blob.header("content-md5"),
        Some(md5_base64(&small).as_str())
    );
    let blocks: Vec<&Seen> = seen.iter().filter(|r| r.has_query("blockid")).collect();
    assert_eq!(blocks.len(), 3, "{seen:?}");
    for block in blocks {
        assert_eq!(
            block.header("content-md5"),
            Some(md5_base64(&block.body).as_str()),
            "{block:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_service_finds_corrupt_is_a_checksum_mismatch() {
    // "Put Block": 400 Md5Mismatch when the body does not match Content-MD5.
    let server = TestServer::start(|request: &Seen| {
        if request.has_query("blockid") {
            Reply::status(400)
                .header("x-ms-error-code", "Md5Mismatch")
                .header("content-type", "application/xml")
                .body("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>Md5Mismatch</Code><Message>The MD5 value specified in the request did not match with the MD5 value calculated by the server.</Message></Error>")
        } else {
            write_answers(request)
        }
    });
    let store = AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
        .blocks(1 << 20, 1 << 20, 1)
        .single_put_in_memory(0)
        .build()
        .expect("config");
    let result = store
        .put(
            &key("large"),
            Body::from(storage_conformance::support::pattern(3 << 20, 4)),
            PutOptions::default(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::ChecksumMismatch { .. })),
        "{:?}",
        result.map(|m| m.etag)
    );
    assert!(
        !server
            .seen()
            .iter()
            .any(|r| r.target.contains("comp=blocklist")),
        "a corrupt upload was committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_cannot_arrive_within_the_timeout_at_the_minimum_rate_is_staged() {
    let server = TestServer::start(write_answers);
    // 2 s at 1 MiB/s: one Put Blob carries at most 2 MiB.
    let store = AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
        .request_timeout(std::time::Duration::from_secs(2))
        .min_upload_rate(1 << 20)
        .build()
        .expect("config");
    let fits = storage_conformance::support::pattern(2 << 20, 5);
    store
        .put(&key("fits"), Body::from(fits), PutOptions::default())
        .await
        .expect("put");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "one Put Blob: {seen:?}");
    let too_slow = storage_conformance::support::pattern(3 << 20, 6);
    store
        .put(&key("slow"), Body::from(too_slow), PutOptions::default())
        .await
        .expect("put");
    let seen = server.seen();
    assert!(
        seen[1..].iter().all(|r| r.has_query("comp")),
        "staged blocks, then a block list: {seen:?}"
    );
    assert!(
        seen.last()
            .is_some_and(|r| r.target.contains("comp=blocklist"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_still_pending_at_the_deadline_is_aborted_and_its_empty_blob_removed() {
    // "Copy Blob": 202 with x-ms-copy-status pending and x-ms-copy-id;
    // "Abort Copy Blob": 204, leaving a zero-length destination blob.
    let aborted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let aborted = std::sync::Arc::clone(&aborted);
        TestServer::start(move |request: &Seen| {
            use std::sync::atomic::Ordering;
            match request.method.as_str() {
                "PUT" if request.header("x-ms-copy-action") == Some("abort") => {
                    aborted.store(true, Ordering::SeqCst);
                    Reply::status(204)
                }
                "PUT" if request.header("x-ms-copy-source").is_some() => Reply::status(202)
                    .header("etag", "\"0x8D0000000000003\"")
                    .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
                    .header("x-ms-copy-id", "copy-1")
                    .header("x-ms-copy-status", "pending"),
                "HEAD" => {
                    let status = match aborted.load(Ordering::SeqCst) {
                        true => "aborted",
                        false => "pending",
                    };
                    Reply::status(200)
                        .header("etag", "\"0x8D0000000000004\"")
                        .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
                        .header("content-length", "0")
                        .header("x-ms-blob-type", "BlockBlob")
                        .header("x-ms-copy-status", status)
                }
                "DELETE" => Reply::status(202),
                _ => Reply::status(500),
            }
        })
    };
    let store = AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
        .copy_timeout(std::time::Duration::from_millis(500))
        .build()
        .expect("config");
    let result = store
        .copy(&key("from"), &key("to"), Default::default())
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Backend {
                transient: false,
                ..
            })
        ),
        "{:?}",
        result.map(|m| m.etag)
    );
    let seen = server.seen();
    let abort = seen
        .iter()
        .find(|r| r.header("x-ms-copy-action") == Some("abort"))
        .expect("an Abort Copy Blob");
    assert!(
        abort.target.contains("comp=copy") && abort.target.contains("copyid=copy-1"),
        "{abort:?}"
    );
    let delete = seen.last().expect("requests");
    assert_eq!(delete.method, "DELETE", "{seen:?}");
    assert_eq!(delete.header("if-match"), Some("\"0x8D0000000000004\""));
}

/// Put Blob, Put Block, Put Block List, Get Blob, Get Blob Properties and
/// Copy Blob (finished at once) as their pages document their success
/// answers.
fn blob_service(request: &Seen) -> Reply {
    let properties = |reply: Reply| {
        reply
            .header("etag", "\"0x8D0000000000005\"")
            .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
            .header("content-type", "application/octet-stream")
            .header("x-ms-blob-type", "BlockBlob")
    };
    match request.method.as_str() {
        "GET" => properties(Reply::status(200)).body("hello"),
        "HEAD" => properties(Reply::status(200)).header("content-length", "5"),
        "PUT" if request.header("x-ms-copy-source").is_some() => {
            properties(Reply::status(202)).header("x-ms-copy-status", "success")
        }
        _ => write_answers(request),
    }
}

/// What a request of this crate is, by Azure's operation names.
fn operation(request: &Seen) -> &'static str {
    match request.method.as_str() {
        "GET" => "Get Blob",
        "HEAD" => "Get Blob Properties",
        "PUT" if request.header("x-ms-copy-source").is_some() => "Copy Blob",
        "PUT" if request.has_query("blockid") => "Put Block",
        "PUT" if request.target.contains("comp=blocklist") => "Put Block List",
        "PUT" => "Put Blob",
        _ => "other",
    }
}

/// Puts a small and a 3 MiB body (1 MiB blocks), reads, heads and copies.
async fn every_operation(store: &AzureBackend) {
    store
        .put(
            &key("small"),
            Body::from(Bytes::from_static(b"hello")),
            PutOptions::default(),
        )
        .await
        .expect("put");
    store
        .put(
            &key("large"),
            Body::from(storage_conformance::support::pattern(3 << 20, 8)),
            PutOptions::default(),
        )
        .await
        .expect("put blocks");
    store.get_bytes("small").await.expect("get");
    store.head(&key("small")).await.expect("head");
    store
        .copy(&key("small"), &key("copy"), Default::default())
        .await
        .expect("copy");
}

fn encrypted_store(
    server: &TestServer,
    encryption: storage_azure::AzureEncryption,
) -> AzureBackend {
    AzureConfig::emulator(format!("{}/devstoreaccount1", server.url()), "box")
        .blocks(1 << 20, 1 << 20, 2)
        .single_put_in_memory(0)
        .server_side_encryption(encryption)
        .build()
        .expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_provided_key_goes_with_every_request_that_touches_a_blob() {
    // "Provide an encryption key on a request to Blob storage": Put Blob,
    // Put Block, Put Block List, Get Blob and Get Blob Properties carry the
    // key; Copy Blob cannot, so the copy is a Get Blob and a Put Blob.
    let server = TestServer::start(blob_service);
    let key_bytes = [3u8; 32];
    let store = encrypted_store(
        &server,
        storage_azure::AzureEncryption::CustomerKey(storage_azure::CustomerKey::new(key_bytes)),
    );
    every_operation(&store).await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key_bytes);
    let seen = server.seen();
    let mut operations: Vec<&str> = seen.iter().map(operation).collect();
    operations.sort_unstable();
    operations.dedup();
    assert_eq!(
        operations,
        [
            "Get Blob",
            "Get Blob Properties",
            "Put Blob",
            "Put Block",
            "Put Block List"
        ],
        "no Copy Blob under a customer key"
    );
    for request in &seen {
        assert_eq!(
            request.header("x-ms-encryption-key"),
            Some(b64.as_str()),
            "{}: {request:?}",
            operation(request)
        );
        assert_eq!(request.header("x-ms-encryption-algorithm"), Some("AES256"));
        assert!(request.header("x-ms-encryption-key-sha256").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encryption_scope_goes_with_every_write() {
    // "Encryption scopes": Put Blob, Put Block, Put Block List and Copy
    // Blob name the scope; reads do not.
    let server = TestServer::start(blob_service);
    let store = encrypted_store(
        &server,
        storage_azure::AzureEncryption::Scope("tenant-scope".to_owned()),
    );
    every_operation(&store).await;
    let seen = server.seen();
    assert!(seen.iter().any(|r| operation(r) == "Copy Blob"), "{seen:?}");
    for request in &seen {
        let expected = match operation(request) {
            "Get Blob" | "Get Blob Properties" => None,
            _ => Some("tenant-scope"),
        };
        assert_eq!(
            request.header("x-ms-encryption-scope"),
            expected,
            "{}: {request:?}",
            operation(request)
        );
    }
}
