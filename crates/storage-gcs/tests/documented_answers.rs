//! Behaviour of real Cloud Storage that fake-gcs-server does not reproduce,
//! pinned by a scripted server that answers as Google's documentation
//! says (each answer cites its page). No cloud account is needed.

use std::collections::BTreeSet;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use storage_conformance::scripted_server::{Reply, Seen, TestServer};
use storage_core::{Backend, Error, ListOptions};
use storage_gcs::GcsConfig;

fn key(s: &str) -> storage_core::Key {
    storage_core::Key::new(s).expect("key")
}

/// The decoded value of query parameter `name` of `request`.
fn query(request: &Seen, name: &str) -> Option<String> {
    let (_, q) = request.target.split_once('?')?;
    q.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// An object resource as "Objects" (JSON API reference) describes it.
fn object(bucket: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/1"),
        "selfLink": "",
        "mediaLink": "",
        "name": name,
        "bucket": bucket,
        "generation": "1",
        "metageneration": "1",
        "size": "1",
        "contentType": "application/octet-stream",
        "crc32c": "AAAAAA==",
        "timeCreated": "2026-01-01T00:00:00.000Z",
        "updated": "2026-01-01T00:00:00.000Z",
    })
}

/// "Objects: list" (cloud.google.com/storage/docs/json_api/v1/objects/list)
/// over `names`: results in lexicographic order from `startOffset`
/// (inclusive) or after the position a `pageToken` names; with a
/// `delimiter`, names holding it past the `prefix` collapse into one
/// prefix each; "the total number of items and prefixes returned" is at
/// most `maxResults`, and `nextPageToken` is set when more remain.
fn list_as_gcs_documents(names: &BTreeSet<String>, request: &Seen) -> Reply {
    let prefix = query(request, "prefix").unwrap_or_default();
    let delimiter = query(request, "delimiter");
    let start = query(request, "startOffset").unwrap_or_default();
    let token = query(request, "pageToken");
    let max = query(request, "maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000);
    let mut results: Vec<(String, bool)> = Vec::new();
    for name in names {
        if !name.starts_with(&prefix) || name.as_str() < start.as_str() {
            continue;
        }
        let entry = match delimiter.as_deref().and_then(|d| {
            name[prefix.len()..]
                .find(d)
                .map(|i| name[..prefix.len() + i + d.len()].to_owned())
        }) {
            Some(group) => (group, false),
            None => (name.clone(), true),
        };
        if token.as_deref().is_some_and(|t| entry.0.as_str() <= t) {
            continue;
        }
        if results.last() != Some(&entry) {
            results.push(entry);
        }
    }
    let more = results.len() > max;
    results.truncate(max);
    let mut body = serde_json::json!({"kind": "storage#objects"});
    let items: Vec<_> = results
        .iter()
        .filter(|(_, is_object)| *is_object)
        .map(|(name, _)| object("b", name))
        .collect();
    let prefixes: Vec<_> = results
        .iter()
        .filter(|(_, is_object)| !*is_object)
        .map(|(name, _)| name.clone())
        .collect();
    if !items.is_empty() {
        body["items"] = items.into();
    }
    if !prefixes.is_empty() {
        body["prefixes"] = prefixes.into();
    }
    if more && let Some((last, _)) = results.last() {
        body["nextPageToken"] = last.clone().into();
    }
    Reply::status(200)
        .header("content-type", "application/json")
        .body(body.to_string())
}

fn store(server: &TestServer) -> impl std::future::Future<Output = storage_gcs::GcsBackend> {
    let config = GcsConfig::emulator(server.url(), "b").request_timeout(Duration::from_secs(5));
    async move { config.build().expect("client") }
}

/// Lists everything with `page_size`, page by page; fails the test rather
/// than looping when the listing does not end within 200 requests.
async fn list_all(
    backend: &storage_gcs::GcsBackend,
    server: &TestServer,
    page_size: usize,
) -> (Vec<String>, Vec<String>) {
    let mut options = ListOptions {
        delimiter: true,
        page_size: Some(page_size),
        ..ListOptions::default()
    };
    let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
    loop {
        let page = tokio::time::timeout(Duration::from_secs(10), backend.list(&options))
            .await
            .expect("a listing page took over 10 s: the client repeats a request")
            .expect("list");
        assert!(
            server.seen().len() < 200,
            "the listing did not end after {} requests",
            server.seen().len()
        );
        objects.extend(page.objects.iter().map(|o| o.key.to_string()));
        prefixes.extend(page.common_prefixes);
        match page.continuation {
            Some(next) => options.continuation = Some(next),
            None => return (objects, prefixes),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delimiter_listing_ends_when_gcs_counts_prefixes_against_max_results() {
    // One object, then many groups: a page can hold an object already
    // returned plus prefixes only, which a bound from objects alone never
    // moves past.
    let mut names: BTreeSet<String> = ["a", "z"].iter().map(|s| s.to_string()).collect();
    for group in ["b", "c", "d", "e", "f", "g"] {
        names.insert(format!("{group}/1"));
        names.insert(format!("{group}/2"));
    }
    let server = {
        let names = names.clone();
        TestServer::start(move |request| {
            if request.method == "GET" && request.path().ends_with("/b/b/o") {
                list_as_gcs_documents(&names, request)
            } else {
                Reply::status(500)
            }
        })
    };
    let backend = store(&server).await;
    for page_size in [1, 2, 3] {
        let (objects, prefixes) = list_all(&backend, &server, page_size).await;
        assert_eq!(objects, ["a", "z"], "page size {page_size}");
        assert_eq!(
            prefixes,
            ["b/", "c/", "d/", "e/", "f/", "g/"],
            "page size {page_size}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_page_with_nothing_new_is_an_error_not_a_loop() {
    // A server that always answers the same truncated page.
    let server = TestServer::start(|_| {
        Reply::status(200)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "kind": "storage#objects",
                    "items": [object("b", "a")],
                    "nextPageToken": "a",
                })
                .to_string(),
            )
    });
    let backend = store(&server).await;
    let options = ListOptions {
        start_after: Some("a".to_owned()),
        ..ListOptions::default()
    };
    let result = tokio::time::timeout(Duration::from_secs(10), backend.list(&options))
        .await
        .expect("the listing repeated its request instead of failing");
    assert!(
        matches!(
            result,
            Err(Error::Backend {
                transient: false,
                ..
            })
        ),
        "{result:?}"
    );
    // The first page's token is followed once; the same token again stops.
    assert_eq!(server.seen().len(), 2, "{:?}", server.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_page_with_nothing_new_by_name_is_followed_by_its_page_token() {
    // "Objects: list", maxResults: "As duplicate prefixes are omitted,
    // fewer total results may be returned than requested": a truncated
    // page can hold only the prefix that contains `startOffset`.
    let server = TestServer::start(|request| {
        let json = |value: serde_json::Value| {
            Reply::status(200)
                .header("content-type", "application/json")
                .body(value.to_string())
        };
        match (
            query(request, "prefix").as_deref(),
            query(request, "pageToken").as_deref(),
        ) {
            // The probe for keys after `a/b` inside `a/`.
            (Some("a/"), _) => json(serde_json::json!({
                "kind": "storage#objects",
                "items": [object("b", "a/b"), object("b", "a/c")],
            })),
            (_, None) => json(serde_json::json!({
                "kind": "storage#objects",
                "prefixes": ["a/"],
                "nextPageToken": "t1",
            })),
            (_, Some("t1")) => json(serde_json::json!({
                "kind": "storage#objects",
                "items": [object("b", "b")],
            })),
            _ => Reply::status(500),
        }
    });
    let backend = store(&server).await;
    let options = ListOptions {
        delimiter: true,
        start_after: Some("a/b".to_owned()),
        ..ListOptions::default()
    };
    let page = tokio::time::timeout(Duration::from_secs(10), backend.list(&options))
        .await
        .expect("the listing ended")
        .expect("list");
    assert_eq!(page.common_prefixes, ["a/"], "{page:?}");
    let objects: Vec<String> = page.objects.iter().map(|o| o.key.to_string()).collect();
    assert_eq!(objects, ["b"], "{page:?}");
    assert_eq!(page.continuation, None);
}

/// A resumable session as "Perform resumable uploads" documents it: chunks
/// at `Content-Range: bytes A-B/TOTAL` must start where the session's
/// persisted bytes end (308 with `Range: bytes=0-N` while incomplete, the
/// object when every byte arrived); a status query (`bytes */TOTAL`) reports
/// the persisted range without changing it. The first chunk is broken: half
/// of it is persisted, then the server answers 503.
struct ResumableSession {
    url: std::sync::OnceLock<String>,
    stored: std::sync::Mutex<Vec<u8>>,
    chunks: std::sync::atomic::AtomicUsize,
    /// The CRC32C the server reports for the finished object (`None`: the
    /// real one).
    reported_crc32c: Option<&'static str>,
    /// Whether the first chunk is broken (half persisted, then 503).
    break_first: bool,
    /// Whether the last chunk is answered 404 (as emulators answer a
    /// finished session) although the object was stored.
    lose_last_answer: bool,
    /// Whether the first chunk is answered 308 with only half of it
    /// persisted.
    short_first: bool,
}

const GENERATION: &str = "7";

impl ResumableSession {
    fn object(&self, stored: &[u8], metadata: Option<serde_json::Value>) -> serde_json::Value {
        let mut object = object("b", "big");
        object["generation"] = GENERATION.into();
        object["size"] = stored.len().to_string().into();
        object["crc32c"] = self
            .reported_crc32c
            .map(str::to_owned)
            .unwrap_or_else(|| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .encode(crc32c::crc32c(stored).to_be_bytes())
            })
            .into();
        if let Some(metadata) = metadata {
            object["metadata"] = metadata;
        }
        object
    }

    fn json(value: serde_json::Value) -> Reply {
        Reply::status(200)
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    fn persisted(stored: &[u8]) -> Reply {
        match stored.len() {
            0 => Reply::status(308),
            n => Reply::status(308).header("range", &format!("bytes=0-{}", n - 1)),
        }
    }

    fn answer(&self, request: &Seen) -> Reply {
        let url = self.url.get().cloned().unwrap_or_default();
        let mut stored = self.stored.lock().expect("lock");
        match (request.method.as_str(), request.path()) {
            ("POST", path) if path.starts_with("/upload/") => {
                Reply::status(200).header("location", &format!("{url}/session/1"))
            }
            ("PUT", "/session/1") => {
                let range = request.header("content-range").unwrap_or_default();
                let total: Option<usize> = range.rsplit('/').next().and_then(|t| t.parse().ok());
                let finished = |stored: &[u8]| total == Some(stored.len());
                if range.starts_with("bytes */") {
                    return match finished(&stored) {
                        true => Self::json(self.object(&stored, None)),
                        false => Self::persisted(&stored),
                    };
                }
                let first: Option<usize> = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|a| a.parse().ok());
                if first != Some(stored.len()) {
                    // GCS expects the next byte after the persisted ones.
                    return Reply::status(400).body(format!(
                        "chunk starts at {first:?}, {} bytes persisted",
                        stored.len()
                    ));
                }
                let n = self
                    .chunks
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n == 0 && self.break_first {
                    stored.extend_from_slice(&request.body[..request.body.len() / 2]);
                    return Reply::status(503);
                }
                if n == 0 && self.short_first {
                    stored.extend_from_slice(&request.body[..request.body.len() / 2]);
                    return Self::persisted(&stored);
                }
                stored.extend_from_slice(&request.body);
                match finished(&stored) {
                    true if self.lose_last_answer => Reply::status(404),
                    true => Self::json(self.object(&stored, None)),
                    false => Self::persisted(&stored),
                }
            }
            ("GET", path) if path.ends_with("/o/big") => Self::json(self.object(&stored, None)),
            // "Buckets: get": the bucket exists, so a 404 is the object's.
            ("GET", path) if path.ends_with("/b/b") => {
                Self::json(serde_json::json!({"kind": "storage#bucket", "name": "b"}))
            }
            ("PATCH", _) => {
                let sent: serde_json::Value =
                    serde_json::from_slice(&request.body).unwrap_or_default();
                Self::json(self.object(&stored, sent.get("metadata").cloned()))
            }
            ("DELETE", _) => Reply::status(204),
            _ => Reply::status(500),
        }
    }
}

fn resumable_server(
    reported_crc32c: Option<&'static str>,
) -> (TestServer, std::sync::Arc<ResumableSession>) {
    session_server(ResumableSession {
        url: std::sync::OnceLock::new(),
        stored: std::sync::Mutex::new(Vec::new()),
        chunks: std::sync::atomic::AtomicUsize::new(0),
        reported_crc32c,
        break_first: true,
        lose_last_answer: false,
        short_first: false,
    })
}

fn session_server(session: ResumableSession) -> (TestServer, std::sync::Arc<ResumableSession>) {
    let session = std::sync::Arc::new(session);
    let server = {
        let session = std::sync::Arc::clone(&session);
        TestServer::start(move |request| session.answer(request))
    };
    session.url.set(server.url()).expect("set once");
    (server, session)
}

const KIB: usize = 1024;

async fn resumable_store(server: &TestServer) -> storage_gcs::GcsBackend {
    GcsConfig::emulator(server.url(), "b")
        .upload_status_queries(true)
        .resumable(1024 * KIB as u64, 512 * KIB as u64)
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chunk_resumes_from_the_bytes_the_session_persisted() {
    let (server, session) = resumable_server(None);
    let store = resumable_store(&server).await;
    let data = storage_conformance::support::pattern(1536 * KIB + 17, 5);
    let meta = store
        .put(
            &key("big"),
            storage_core::Body::from(data.clone()),
            Default::default(),
        )
        .await
        .expect("put");
    assert_eq!(
        session.stored.lock().expect("lock").as_slice(),
        &data[..],
        "the bytes the session holds"
    );
    let seen = server.seen();
    let ranges: Vec<&str> = seen
        .iter()
        .filter_map(|r| r.header("content-range"))
        .collect();
    assert_eq!(
        ranges,
        [
            "bytes 0-524287/*",
            "bytes */*",
            "bytes 262144-524287/*",
            "bytes 524288-1048575/*",
            "bytes 1048576-1572863/*",
            "bytes 1572864-1572880/1572881",
        ],
        "chunks, the status query, and the rest of the broken chunk"
    );
    let sha256 = storage_conformance::support::sha256(&data);
    assert_eq!(meta.sha256, Some(sha256));
    assert_eq!(meta.etag.as_str(), GENERATION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_upload_records_its_sha256_under_its_generation() {
    let (server, _session) = resumable_server(None);
    let store = resumable_store(&server).await;
    let data = storage_conformance::support::pattern(1536 * KIB, 6);
    store
        .put(
            &key("big"),
            storage_core::Body::from(data.clone()),
            Default::default(),
        )
        .await
        .expect("put");
    let seen = server.seen();
    let patch = seen
        .iter()
        .find(|r| r.method == "PATCH")
        .expect("a metadata patch");
    assert_eq!(
        query(patch, "ifGenerationMatch").as_deref(),
        Some(GENERATION)
    );
    let body: serde_json::Value = serde_json::from_slice(&patch.body).expect("JSON");
    let sha256 = storage_conformance::support::sha256(&data);
    assert_eq!(
        body["metadata"]["storage_sha256"].as_str(),
        Some(hex::encode(sha256).as_str()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crc32c_mismatch_deletes_the_generation_just_written_and_fails() {
    let (server, _session) = resumable_server(Some("AAAAAA=="));
    let store = resumable_store(&server).await;
    let data = storage_conformance::support::pattern(1536 * KIB, 7);
    let result = store
        .put(
            &key("big"),
            storage_core::Body::from(data),
            Default::default(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::ChecksumMismatch { .. })),
        "{:?}",
        result.map(|m| m.etag)
    );
    let seen = server.seen();
    let delete = seen
        .iter()
        .find(|r| r.method == "DELETE")
        .expect("a delete of the corrupt object");
    assert!(delete.path().ends_with("/o/big"), "{delete:?}");
    assert_eq!(
        query(delete, "ifGenerationMatch").as_deref(),
        Some(GENERATION)
    );
    assert!(!seen.iter().any(|r| r.method == "PATCH"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crc32c_mismatch_of_an_object_read_back_after_a_lost_answer_deletes_nothing() {
    // Without status queries, a last chunk answered 404 is settled by
    // reading the key, which may hold another writer's object: a mismatch
    // then fails the put but deletes nothing.
    let (server, _session) = session_server(ResumableSession {
        url: std::sync::OnceLock::new(),
        stored: std::sync::Mutex::new(Vec::new()),
        chunks: std::sync::atomic::AtomicUsize::new(0),
        reported_crc32c: Some("AAAAAA=="),
        break_first: false,
        lose_last_answer: true,
        short_first: false,
    });
    let store = GcsConfig::emulator(server.url(), "b")
        .resumable(1024 * KIB as u64, 512 * KIB as u64)
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let data = storage_conformance::support::pattern(1536 * KIB, 8);
    let result = store
        .put(
            &key("big"),
            storage_core::Body::from(data),
            Default::default(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::ChecksumMismatch { .. })),
        "{:?}",
        result.map(|m| m.etag)
    );
    let seen = server.seen();
    assert!(
        seen.iter().any(|r| r.method == "GET"),
        "the key was read: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|r| r.method == "DELETE" && r.path().contains("/o/")),
        "the object was deleted: {seen:?}"
    );
}

/// Uploads (multipart; resumable initiation and chunks), media downloads,
/// object metadata and metadata patches, as "Objects: insert", "Perform
/// resumable uploads", "Objects: get" and "Objects: patch" document them.
fn gcs_objects(server_url: &std::sync::OnceLock<String>, request: &Seen) -> Reply {
    let json = |value: serde_json::Value| {
        Reply::status(200)
            .header("content-type", "application/json")
            .body(value.to_string())
    };
    let name = request
        .path()
        .rsplit("/o/")
        .next()
        .unwrap_or_default()
        .to_owned();
    match (
        request.method.as_str(),
        query(request, "uploadType").as_deref(),
    ) {
        ("POST", Some("multipart")) => json(object("b", "uploaded")),
        ("POST", Some("resumable")) => Reply::status(200).header(
            "location",
            &format!(
                "{}/session/1",
                server_url.get().cloned().unwrap_or_default()
            ),
        ),
        ("PUT", _) => {
            let range = request.header("content-range").unwrap_or_default();
            match range.ends_with("/*") {
                true => Reply::status(308).header(
                    "range",
                    &format!(
                        "bytes=0-{}",
                        range
                            .trim_start_matches("bytes ")
                            .split(['-', '/'])
                            .nth(1)
                            .unwrap_or("0")
                    ),
                ),
                false => {
                    // The last chunk: the object, here without a CRC32C.
                    let mut large = object("b", "large");
                    if let Some(fields) = large.as_object_mut() {
                        fields.remove("crc32c");
                    }
                    json(large)
                }
            }
        }
        ("GET", _) if query(request, "alt").as_deref() == Some("media") => Reply::status(200)
            .header("x-goog-generation", "1")
            .header("x-goog-metageneration", "1")
            .header("content-type", "application/octet-stream")
            .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
            .body("x"),
        ("GET", _) => json(object("b", &name)),
        ("PATCH", _) => json(object("b", &name)),
        _ => Reply::status(500),
    }
}

fn gcs_objects_server() -> TestServer {
    let url = std::sync::Arc::new(std::sync::OnceLock::new());
    let server = {
        let url = std::sync::Arc::clone(&url);
        TestServer::start(move |request| gcs_objects(&url, request))
    };
    url.set(server.url()).expect("set once");
    server
}

/// Puts a small body and a 1.5 MiB one (resumable, 512 KiB chunks), reads,
/// heads and copies.
async fn every_operation(server: &TestServer, encryption: storage_gcs::GcsEncryption) {
    let store = GcsConfig::emulator(server.url(), "b")
        .resumable(1024 * KIB as u64, 512 * KIB as u64)
        .server_side_encryption(encryption)
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    use storage_core::BackendExt;
    store.put_bytes("small", "x").await.expect("put");
    store
        .put(
            &key("large"),
            storage_core::Body::from(storage_conformance::support::pattern(1536 * KIB, 9)),
            Default::default(),
        )
        .await
        .expect("resumable put");
    store.get_bytes("small").await.expect("get");
    store.head(&key("small")).await.expect("head");
    store
        .copy(&key("small"), &key("copy"), Default::default())
        .await
        .expect("copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_supplied_key_goes_with_every_upload_download_and_metadata_read() {
    // "Use customer-supplied encryption keys": uploads (each request of a
    // resumable one), downloads and metadata reads carry the key; a copy
    // is a download and an upload.
    let server = gcs_objects_server();
    let key_bytes = [5u8; 32];
    every_operation(
        &server,
        storage_gcs::GcsEncryption::CustomerKey(storage_gcs::CustomerKey::new(key_bytes)),
    )
    .await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key_bytes);
    let seen = server.seen();
    assert!(
        !seen.iter().any(|r| r.path().contains("copyTo")),
        "{seen:?}"
    );
    let mut checked = 0;
    for request in &seen {
        if request.method == "PATCH" {
            continue;
        }
        checked += 1;
        assert_eq!(
            request.header("x-goog-encryption-key"),
            Some(b64.as_str()),
            "{request:?}"
        );
        assert_eq!(
            request.header("x-goog-encryption-algorithm"),
            Some("AES256")
        );
    }
    // Two multipart uploads, a resumable initiation and three chunks, two
    // downloads and a metadata read.
    assert_eq!(checked, 9, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_key_is_named_on_every_upload() {
    // "Use customer-managed encryption keys": `kmsKeyName` on each upload;
    // a copy is a download and an upload, so the copy gets the key too.
    let server = gcs_objects_server();
    let name = "projects/p/locations/eu/keyRings/r/cryptoKeys/k";
    every_operation(&server, storage_gcs::GcsEncryption::KmsKey(name.to_owned())).await;
    let seen = server.seen();
    let uploads: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.method == "POST" && r.path().starts_with("/upload/"))
        .collect();
    assert_eq!(uploads.len(), 3, "{seen:?}");
    for upload in uploads {
        assert_eq!(
            query(upload, "kmsKeyName").as_deref(),
            Some(name),
            "{upload:?}"
        );
    }
    assert!(
        !seen.iter().any(|r| r.path().contains("copyTo")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_answered_with_a_shorter_range_is_completed_from_that_range() {
    // "Perform resumable uploads": a 308's `Range` says what the session
    // persisted, which can be less than the chunk sent; the upload goes on
    // from the byte after it.
    let (server, session) = session_server(ResumableSession {
        url: std::sync::OnceLock::new(),
        stored: std::sync::Mutex::new(Vec::new()),
        chunks: std::sync::atomic::AtomicUsize::new(0),
        reported_crc32c: None,
        break_first: false,
        lose_last_answer: false,
        short_first: true,
    });
    let store = resumable_store(&server).await;
    let data = storage_conformance::support::pattern(1536 * KIB + 17, 10);
    store
        .put(
            &key("big"),
            storage_core::Body::from(data.clone()),
            Default::default(),
        )
        .await
        .expect("put");
    assert_eq!(session.stored.lock().expect("lock").as_slice(), &data[..]);
    let ranges: Vec<String> = server
        .seen()
        .iter()
        .filter_map(|r| r.header("content-range").map(str::to_owned))
        .collect();
    assert_eq!(
        ranges[..2],
        ["bytes 0-524287/*", "bytes 262144-524287/*"],
        "{ranges:?}"
    );
}
