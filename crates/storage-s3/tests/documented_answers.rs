//! Behaviour of AWS S3 and S3-compatible servers that SeaweedFS and moto do
//! not reproduce, pinned by a scripted server that answers as the Amazon S3
//! API Reference says (each answer cites its page). No account is needed.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use storage_conformance::scripted_server::{Reply, Seen, TestServer};
use storage_core::{
    Backend, Body, ByteStream, DeleteOptions, ETag, Error, Key, PutMode, PutOptions,
};
use storage_s3::{S3Backend, S3Config};

const MIB: usize = 1024 * 1024;

fn key(s: &str) -> Key {
    Key::new(s).expect("key")
}

fn config(server: &TestServer) -> S3Config {
    S3Config::new("b")
        .endpoint(server.url())
        .region("us-east-1")
        .credentials("id", "secret", None)
        .path_style(true)
        .request_timeout(Duration::from_secs(10))
}

async fn store(config: S3Config) -> S3Backend {
    config.build().expect("client")
}

/// A body of unknown length: `data` in 1 MiB chunks.
fn unknown_length(data: &Bytes) -> Body {
    let chunks: Vec<storage_core::Result<Bytes>> = data
        .chunks(MIB)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream: ByteStream = futures::stream::iter(chunks).boxed();
    Body::stream(stream, None)
}

/// Answers the writes of PutObject and of a multipart upload as the API
/// Reference's examples do: PutObject, CreateMultipartUpload
/// (`InitiateMultipartUploadResult`), UploadPart (an `ETag` header) and
/// CompleteMultipartUpload (`CompleteMultipartUploadResult`).
fn s3_writes(request: &Seen) -> Reply {
    let xml = |body: &str| {
        Reply::status(200)
            .header("content-type", "application/xml")
            .body(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"
            ))
    };
    match request.method.as_str() {
        "POST" if request.has_query("uploads") => xml(
            "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
             <UploadId>upload-1</UploadId></InitiateMultipartUploadResult>",
        ),
        "PUT" if request.has_query("uploadId") => {
            Reply::status(200).header("etag", "\"part-etag\"")
        }
        "POST" if request.has_query("uploadId") => xml(
            "<CompleteMultipartUploadResult><Location>http://b/k</Location><Bucket>b</Bucket>\
             <Key>k</Key><ETag>\"whole-etag-3\"</ETag></CompleteMultipartUploadResult>",
        ),
        "PUT" => Reply::status(200).header("etag", "\"object-etag\""),
        "DELETE" if request.has_query("uploadId") => Reply::status(204),
        _ => Reply::status(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_unknown_length_below_the_threshold_is_one_put_object() {
    let server = TestServer::start(s3_writes);
    // The defaults: multipart from 16 MiB, in 8 MiB parts.
    let store = store(config(&server)).await;
    let data = storage_conformance::support::pattern(12 * MIB, 12);
    let meta = store
        .put(&key("k"), unknown_length(&data), PutOptions::default())
        .await
        .expect("put");
    let seen = server.seen();
    let kinds: Vec<_> = seen
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.has_query("uploads") || r.has_query("uploadId"),
            )
        })
        .collect();
    assert_eq!(kinds, [("PUT", false)], "one PutObject: {seen:?}");
    let sha256: [u8; 32] = Sha256::digest(&data).into();
    assert_eq!(
        seen[0].header("x-amz-checksum-sha256"),
        Some(BASE64.encode(sha256).as_str())
    );
    assert_eq!(meta.sha256, Some(sha256));
    assert_eq!(meta.size, data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_unknown_length_over_the_threshold_is_one_multipart_upload() {
    let server = TestServer::start(s3_writes);
    let store = store(config(&server)).await;
    let data = storage_conformance::support::pattern(20 * MIB, 20);
    store
        .put(&key("k"), unknown_length(&data), PutOptions::default())
        .await
        .expect("put");
    let seen = server.seen();
    assert!(seen[0].has_query("uploads"), "{:?}", seen[0]);
    let parts: Vec<usize> = seen
        .iter()
        .filter(|r| r.method == "PUT" && r.has_query("partNumber"))
        .map(|r| r.body.len())
        .collect();
    assert_eq!(parts.iter().sum::<usize>(), data.len(), "{parts:?}");
    assert_eq!(parts.len(), 3, "8 MiB parts: {parts:?}");
    let last = seen.last().expect("requests");
    assert!(
        last.method == "POST" && last.has_query("uploadId"),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_5_tib_fails_before_any_request() {
    let server = TestServer::start(s3_writes);
    let store = store(config(&server)).await;
    let huge = (5u64 << 40) + 1;
    let stream: ByteStream = futures::stream::empty().boxed();
    let result = store
        .put(
            &key("k"),
            Body::stream(stream, Some(huge)),
            PutOptions::default(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::TooLarge { size, .. }) if size == huge),
        "{:?}",
        result.map(|m| m.size)
    );
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_answer_to_a_create_only_put_is_already_exists() {
    // Some S3-compatible servers answer a failed `If-None-Match` on a write
    // with 304 Not Modified, as RFC 9110 section 13.1.2 prescribes for GET
    // and HEAD, rather than S3's 412 ("Conditional requests").
    let server = TestServer::start(|request| match request.method.as_str() {
        "PUT" if request.header("if-none-match") == Some("*") => Reply::status(304),
        _ => Reply::status(500),
    });
    let store = store(config(&server)).await;
    let result = store
        .put(
            &key("k"),
            Body::from(Bytes::from_static(b"x")),
            PutOptions::mode(PutMode::IfNotExists),
        )
        .await;
    assert!(
        matches!(result, Err(Error::AlreadyExists { .. })),
        "{:?}",
        result.map(|m| m.etag)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_conditional_writes_conditional_requests_are_unsupported_before_any_request() {
    let server = TestServer::start(s3_writes);
    let store = store(
        config(&server)
            .conditional_put(false)
            .conditional_delete(false),
    )
    .await;
    assert!(!store.capabilities().conditional_put);
    assert!(!store.capabilities().conditional_delete);
    for mode in [PutMode::IfNotExists, PutMode::IfMatch(ETag::new("\"e\""))] {
        let result = store
            .put(
                &key("k"),
                Body::from(Bytes::from_static(b"x")),
                PutOptions::mode(mode.clone()),
            )
            .await;
        assert!(
            matches!(result, Err(Error::Unsupported { .. })),
            "{mode:?}: {:?}",
            result.map(|m| m.etag)
        );
    }
    let deleted = store
        .delete(
            &key("k"),
            DeleteOptions {
                if_match: Some(ETag::new("\"e\"")),
            },
        )
        .await;
    assert!(
        matches!(deleted, Err(Error::Unsupported { .. })),
        "{deleted:?}"
    );
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_conditional_copy_a_conditional_copy_is_a_read_and_a_conditional_put() {
    let server = TestServer::start(|request| match request.method.as_str() {
        "GET" => Reply::status(200)
            .header("etag", "\"source-etag\"")
            .header("content-type", "text/plain")
            .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
            .body("hello"),
        "PUT" if request.header("x-amz-copy-source").is_none() => {
            Reply::status(200).header("etag", "\"copy-etag\"")
        }
        _ => Reply::status(500),
    });
    let store = store(config(&server).conditional_copy(false)).await;
    let meta = store
        .copy(&key("from"), &key("to"), PutMode::IfNotExists)
        .await
        .expect("copy");
    assert_eq!(meta.etag, ETag::new("\"copy-etag\""));
    let seen = server.seen();
    let methods: Vec<_> = seen.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PUT"], "{seen:?}");
    assert_eq!(seen[1].header("if-none-match"), Some("*"));
    assert_eq!(seen[1].body, b"hello");
}

/// Answers PutObject, the multipart calls, GetObject, HeadObject and
/// CopyObject as the API Reference's examples do.
fn s3_objects(request: &Seen) -> Reply {
    match request.method.as_str() {
        "GET" | "HEAD" => Reply::status(200)
            .header("etag", "\"object-etag\"")
            .header("content-type", "application/octet-stream")
            .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
            .body("hello"),
        "PUT" if request.header("x-amz-copy-source").is_some() => Reply::status(200)
            .header("content-type", "application/xml")
            .body(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult>\
                 <LastModified>2026-11-30T00:00:00.000Z</LastModified>\
                 <ETag>\"copy-etag\"</ETag></CopyObjectResult>",
            ),
        _ => s3_writes(request),
    }
}

/// Each request's kind, for messages.
fn kind(request: &Seen) -> String {
    let what = if request.header("x-amz-copy-source").is_some() {
        "CopyObject"
    } else if request.has_query("uploads") {
        "CreateMultipartUpload"
    } else if request.has_query("partNumber") {
        "UploadPart"
    } else if request.method == "POST" {
        "CompleteMultipartUpload"
    } else {
        request.method.as_str()
    };
    what.to_owned()
}

/// Puts a small and a 20 MiB body (unknown length), gets, heads and copies.
async fn every_operation(store: &S3Backend) {
    store
        .put(
            &key("small"),
            Body::from(Bytes::from_static(b"hello")),
            PutOptions::default(),
        )
        .await
        .expect("put");
    let data = storage_conformance::support::pattern(20 * MIB, 21);
    store
        .put(&key("large"), unknown_length(&data), PutOptions::default())
        .await
        .expect("multipart put");
    storage_core::BackendExt::get_bytes(store, "small")
        .await
        .expect("get");
    store.head(&key("small")).await.expect("head");
    store
        .copy(&key("small"), &key("copy"), PutMode::Overwrite)
        .await
        .expect("copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_sends_the_customer_key_on_every_request_that_touches_the_bytes() {
    // "Using server-side encryption with customer-provided keys (SSE-C)":
    // PutObject, CreateMultipartUpload, UploadPart, GetObject, HeadObject
    // and CopyObject (its source too) carry the key, and so does
    // CompleteMultipartUpload of an upload created with a checksum
    // algorithm (its API Reference page).
    let server = TestServer::start(s3_objects);
    let key_bytes = [9u8; 32];
    let store = store(
        config(&server).server_side_encryption(storage_s3::S3Encryption::Customer(
            storage_s3::CustomerKey::new(key_bytes),
        )),
    )
    .await;
    every_operation(&store).await;
    let b64 = BASE64.encode(key_bytes);
    let mut kinds: Vec<String> = server.seen().iter().map(kind).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "CompleteMultipartUpload",
            "CopyObject",
            "CreateMultipartUpload",
            "GET",
            "HEAD",
            "PUT",
            "UploadPart"
        ],
        "every kind of request was made"
    );
    for request in server.seen() {
        let sent = request.header("x-amz-server-side-encryption-customer-key");
        let what = kind(&request);
        assert_eq!(sent, Some(b64.as_str()), "{what}: {request:?}");
        assert_eq!(
            request.header("x-amz-server-side-encryption-customer-algorithm"),
            Some("AES256"),
            "{what}"
        );
        assert!(
            request
                .header("x-amz-server-side-encryption-customer-key-md5")
                .is_some(),
            "{what}"
        );
        if kind(&request) == "CopyObject" {
            assert_eq!(
                request.header("x-amz-copy-source-server-side-encryption-customer-key"),
                Some(b64.as_str())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_kms_is_asked_for_on_object_writes_only() {
    // "Using server-side encryption with AWS KMS keys (SSE-KMS)": the
    // headers go on PutObject, CreateMultipartUpload and CopyObject; S3
    // refuses them on UploadPart, GetObject and HeadObject.
    let server = TestServer::start(s3_objects);
    let store = store(
        config(&server).server_side_encryption(storage_s3::S3Encryption::Kms {
            key_id: Some("arn:aws:kms:us-east-1:111122223333:key/k".to_owned()),
            bucket_key: true,
        }),
    )
    .await;
    every_operation(&store).await;
    let mut writes = 0;
    for request in server.seen() {
        let what = kind(&request);
        let sse = request.header("x-amz-server-side-encryption");
        match what.as_str() {
            "PUT" | "CreateMultipartUpload" | "CopyObject" => {
                writes += 1;
                assert_eq!(sse, Some("aws:kms"), "{what}");
                assert_eq!(
                    request.header("x-amz-server-side-encryption-aws-kms-key-id"),
                    Some("arn:aws:kms:us-east-1:111122223333:key/k"),
                    "{what}"
                );
                assert_eq!(
                    request.header("x-amz-server-side-encryption-bucket-key-enabled"),
                    Some("true"),
                    "{what}"
                );
            }
            _ => assert_eq!(sse, None, "{what}: {request:?}"),
        }
    }
    assert_eq!(writes, 3, "PutObject, CreateMultipartUpload, CopyObject");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_s3_is_asked_for_on_object_writes() {
    let server = TestServer::start(s3_objects);
    let store =
        store(config(&server).server_side_encryption(storage_s3::S3Encryption::S3Managed)).await;
    every_operation(&store).await;
    for request in server.seen() {
        let what = kind(&request);
        let expected = matches!(
            what.as_str(),
            "PUT" | "CreateMultipartUpload" | "CopyObject"
        )
        .then_some("AES256");
        assert_eq!(
            request.header("x-amz-server-side-encryption"),
            expected,
            "{what}: {request:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_5_gib_is_copied_in_upload_part_copy_parts() {
    // CopyObject: "You can store individual objects of up to 5 TB in Amazon
    // S3. You create a copy of your object up to 5 GB in size in a single
    // atomic action using this API. However, to copy an object greater than
    // 5 GB, you must use the multipart upload Upload Part - Copy
    // (UploadPartCopy) API."
    const SIX_GIB: u64 = 6 << 30;
    let server = TestServer::start(|request| {
        let xml = |body: &str| {
            Reply::status(200)
                .header("content-type", "application/xml")
                .body(format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"
                ))
        };
        let copying = request.header("x-amz-copy-source").is_some();
        match request.method.as_str() {
            "PUT" if copying && !request.has_query("uploadId") => Reply::status(400)
                .header("content-type", "application/xml")
                .body(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidRequest</Code>\
                     <Message>The specified copy source is larger than the maximum allowable size \
                     for a copy source: 5368709120</Message></Error>",
                ),
            "PUT" if copying => xml(
                "<CopyPartResult><LastModified>2026-11-30T00:00:00.000Z</LastModified>\
                 <ETag>\"part\"</ETag></CopyPartResult>",
            ),
            "HEAD" => Reply::status(200)
                .header("etag", "\"source-etag\"")
                .header("content-length", &SIX_GIB.to_string())
                .header("content-type", "application/octet-stream")
                .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT"),
            _ => s3_writes(request),
        }
    });
    let store = store(config(&server)).await;
    let meta = store
        .copy(&key("from"), &key("to"), PutMode::IfNotExists)
        .await
        .expect("copy");
    assert_eq!(meta.size, SIX_GIB);
    let seen = server.seen();
    let mut next = 0u64;
    let mut parts: Vec<(u64, u64, &Seen)> = seen
        .iter()
        .filter(|r| r.has_query("uploadId") && r.header("x-amz-copy-source").is_some())
        .map(|part| {
            let range = part.header("x-amz-copy-source-range").expect("a range");
            let (first, last) = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .expect("bytes=A-B");
            (first.parse().expect("A"), last.parse().expect("B"), part)
        })
        .collect();
    // Parts in flight arrive in any order.
    parts.sort_by_key(|(first, _, _)| *first);
    for &(first, last, part) in &parts {
        let range = format!("{first}-{last}");
        assert_eq!(first, next, "{range}");
        assert!(last - first < 5 << 30, "{range}");
        next = last + 1;
        assert_eq!(
            part.header("x-amz-copy-source-if-match"),
            Some("\"source-etag\""),
            "every part copies the same version"
        );
    }
    assert_eq!(next, SIX_GIB, "the parts cover the source");
    assert!(parts.len() > 1, "{}", parts.len());
    let complete = seen
        .iter()
        .find(|r| r.method == "POST" && r.has_query("uploadId"))
        .expect("CompleteMultipartUpload");
    assert_eq!(complete.header("if-none-match"), Some("*"));
}

/// A GetObject answer for a multipart object of `data` in parts of
/// `part_size`, as S3 gives it with `x-amz-checksum-mode: ENABLED`: the
/// composite checksum (`base64(SHA-256(part digests))-N`, User Guide,
/// "Checking object integrity": checksums of multipart objects) and this
/// crate's record of the part size.
fn multipart_object(data: &'static [u8], part_size: usize, body: &'static [u8]) -> Reply {
    let mut digests = Vec::new();
    for part in data.chunks(part_size) {
        digests.extend_from_slice(&Sha256::digest(part));
    }
    let composite = format!(
        "{}-{}",
        BASE64.encode(Sha256::digest(&digests)),
        data.len().div_ceil(part_size)
    );
    Reply::status(200)
        .header("etag", "\"multipart-etag-3\"")
        .header("content-type", "application/octet-stream")
        .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
        .header("x-amz-checksum-sha256", &composite)
        .header("x-amz-checksum-type", "COMPOSITE")
        .header("x-amz-meta-storage-part-size", &part_size.to_string())
        .body(body)
}

const WHOLE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_of_a_multipart_object_checks_its_composite_checksum() {
    let server = TestServer::start(|_| multipart_object(WHOLE, 16, WHOLE));
    let store = store(config(&server)).await;
    let read = storage_core::BackendExt::get_bytes(&store, "k")
        .await
        .expect("get");
    assert_eq!(&read[..], WHOLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_object_whose_bytes_changed_fails_its_full_read() {
    const FLIPPED: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyZ!";
    let server = TestServer::start(|_| multipart_object(WHOLE, 16, FLIPPED));
    let store = store(config(&server)).await;
    let read = storage_core::BackendExt::get_bytes(&store, "k").await;
    assert!(
        matches!(read, Err(Error::ChecksumMismatch { .. })),
        "{read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_records_its_part_size() {
    let server = TestServer::start(s3_writes);
    let store = store(config(&server)).await;
    let data = storage_conformance::support::pattern(20 * MIB, 22);
    store
        .put(&key("k"), unknown_length(&data), PutOptions::default())
        .await
        .expect("put");
    let seen = server.seen();
    assert_eq!(
        seen[0].header("x-amz-meta-storage-part-size"),
        Some((8 * MIB).to_string().as_str()),
        "{:?}",
        seen[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_object_ending_on_a_part_boundary_passes_its_check() {
    const EVEN: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let server = TestServer::start(|_| multipart_object(EVEN, 16, EVEN));
    let store = store(config(&server)).await;
    let read = storage_core::BackendExt::get_bytes(&store, "k")
        .await
        .expect("get");
    assert_eq!(&read[..], EVEN);
}

/// A GetObject answer for a single-part object whose recorded SHA-256
/// (`x-amz-checksum-sha256`, "Checking object integrity") is that of
/// `recorded`, with `body` as its bytes.
fn single_part_object(recorded: &'static [u8], body: &'static [u8]) -> Reply {
    Reply::status(200)
        .header("etag", "\"single-etag\"")
        .header("content-type", "application/octet-stream")
        .header("last-modified", "Mon, 30 Nov 2026 00:00:00 GMT")
        .header(
            "x-amz-checksum-sha256",
            &BASE64.encode(Sha256::digest(recorded)),
        )
        .header("x-amz-checksum-type", "FULL_OBJECT")
        .body(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_checked_by_the_sdk_passes_when_the_bytes_match() {
    let server = TestServer::start(|_| single_part_object(WHOLE, WHOLE));
    let store = store(config(&server)).await;
    let read = storage_core::BackendExt::get_bytes(&store, "k")
        .await
        .expect("get");
    assert_eq!(&read[..], WHOLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_the_sdk_detects_is_a_checksum_mismatch_not_a_transient_error() {
    const CHANGED: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyZ!";
    let server = TestServer::start(|_| single_part_object(WHOLE, CHANGED));
    let store = store(config(&server)).await;
    let read = storage_core::BackendExt::get_bytes(&store, "k").await;
    assert!(
        matches!(read, Err(Error::ChecksumMismatch { .. })),
        "{read:?}"
    );
}
