//! storage-s3 on SeaweedFS beyond the contract suite: cancelled and failed
//! multipart uploads leave no parts, preconditions on multipart completion,
//! prefixes, presigned URLs.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use storage_core::PresignMethod;
use storage_core::{Backend, BackendExt, Body, Error, Key, PutMode, PutOptions};

const MIB: usize = 1024 * 1024;

async fn open_uploads(store: &storage_s3::S3Backend) -> usize {
    let listed = store
        .client()
        .await
        .list_multipart_uploads()
        .bucket(store.bucket())
        .send()
        .await
        .expect("ListMultipartUploads");
    listed.uploads().len()
}

/// Waits up to 10 s for every multipart upload of the bucket to be gone.
async fn no_uploads_left(store: &storage_s3::S3Backend) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = open_uploads(store).await;
        if left == 0 || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_uploads_leave_no_parts_when_dropped_failed_or_refused() {
    let server = common::start(common::Server::SeaweedFs);
    let store = common::create_bucket(&server, "faults").await;
    let key = Key::new("big/object").expect("key");

    // Dropped while the body is still coming: two parts sent, then it hangs.
    let head = stream::iter(vec![Ok(Bytes::from(vec![1u8; 20 * MIB]))]);
    let body = Body::stream(head.chain(stream::pending()).boxed(), None);
    let (hanging, k) = (store.clone(), key.clone());
    let put = tokio::spawn(async move { hanging.put(&k, body, PutOptions::default()).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_uploads(&store).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the multipart upload never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    put.abort();
    assert!(
        put.await.is_err_and(|e| e.is_cancelled()),
        "the put should have been cancelled"
    );
    assert_eq!(
        no_uploads_left(&store).await,
        0,
        "a dropped put left its upload"
    );

    // The body fails after a part.
    let failing = stream::iter(vec![
        Ok(Bytes::from(vec![2u8; 10 * MIB])),
        Err(Error::invalid_argument("the producer failed")),
    ]);
    let result = store
        .put(
            &key,
            Body::stream(failing.boxed(), None),
            PutOptions::default(),
        )
        .await;
    assert!(result.is_err());
    assert_eq!(
        no_uploads_left(&store).await,
        0,
        "a failed put left its upload"
    );
    assert!(
        !store.exists(&key).await.expect("exists"),
        "a failed put left an object"
    );

    // The precondition refuses the completion.
    store.put_bytes(&key, "present").await.expect("put");
    let big = Body::from(Bytes::from(vec![3u8; 17 * MIB]));
    let refused = store
        .put(&key, big, PutOptions::mode(PutMode::IfNotExists))
        .await;
    assert!(
        matches!(refused, Err(Error::AlreadyExists { .. })),
        "{refused:?}"
    );
    assert_eq!(
        no_uploads_left(&store).await,
        0,
        "a refused put left its upload"
    );
    assert_eq!(store.get_bytes(&key).await.expect("get"), "present");
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_if_match_swaps_only_the_current_version() {
    let server = common::start(common::Server::SeaweedFs);
    let store = common::create_bucket(&server, "swap").await;
    let key = Key::new("state").expect("key");
    let v1 = store.put_bytes(&key, "v1").await.expect("put");
    let big = || Body::from(Bytes::from(vec![4u8; 17 * MIB]));
    let v2 = store
        .put(
            &key,
            big(),
            PutOptions::mode(PutMode::IfMatch(v1.etag.clone())),
        )
        .await
        .expect("swap");
    assert_eq!(store.head(&key).await.expect("head").etag, v2.etag);
    let stale = store
        .put(&key, big(), PutOptions::mode(PutMode::IfMatch(v1.etag)))
        .await;
    assert!(
        matches!(stale, Err(Error::PreconditionFailed { .. })),
        "{stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_is_applied_and_stripped() {
    let server = common::start(common::Server::SeaweedFs);
    let raw = common::create_bucket(&server, "prefixed").await;
    let store = common::config(&server, "prefixed", "tenant-a/")
        .build()
        .expect("client");
    store.put_bytes("x/1", "one").await.expect("put");
    let head = raw
        .head(&Key::new("tenant-a/x/1").expect("key"))
        .await
        .expect("stored under the prefix");
    assert_eq!(head.size, 3);
    let page = store
        .list(&storage_core::ListOptions::prefix("x/"))
        .await
        .expect("list");
    let keys: Vec<&str> = page.objects.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["x/1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_name_the_object_and_expire() {
    let server = common::start(common::Server::SeaweedFs);
    let store = common::create_bucket(&server, "presign").await;
    let key = Key::new("shared/report.csv").expect("key");
    let get = store
        .presign(PresignMethod::Get, &key, Duration::from_secs(300))
        .await
        .expect("presign get");
    assert!(
        get.starts_with(&format!("{}/presign/shared/report.csv?", server.endpoint)),
        "{get}"
    );
    assert!(
        get.contains("X-Amz-Expires=300") && get.contains("X-Amz-Signature="),
        "{get}"
    );
    let put = store
        .presign(PresignMethod::Put, &key, Duration::from_secs(60))
        .await
        .expect("presign put");
    assert!(put.contains("X-Amz-Expires=60"), "{put}");
    let too_long = store
        .presign(PresignMethod::Get, &key, Duration::from_secs(8 * 24 * 3600))
        .await;
    assert!(
        matches!(too_long, Err(Error::InvalidArgument { .. })),
        "{too_long:?}"
    );
}
