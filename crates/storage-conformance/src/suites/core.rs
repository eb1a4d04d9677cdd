//! Suite `core`: put, get, head, delete, copy and bodies (DESIGN section 2,
//! rules 1, 5, 6, 9 and 10).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use storage_core::{
    Backend, BackendExt, Body, DeleteOptions, Error, GetOptions, PutMode, PutOptions,
};

use crate::support::{key, pattern, put_with_metadata, resident_bytes, sha256};
use crate::{Check, CheckResult, Failure, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "core";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, put_then_get_returns_the_bytes),
        check!(SUITE, put_returns_the_metadata_head_reports),
        check!(SUITE, overwrite_replaces_the_content),
        check!(SUITE, overwrite_gives_a_new_etag),
        check!(SUITE, get_of_a_missing_key_is_not_found),
        check!(SUITE, head_of_a_missing_key_is_not_found),
        check!(SUITE, delete_removes_the_object),
        check!(SUITE, delete_of_a_missing_key_succeeds),
        check!(SUITE, empty_object_round_trips),
        check!(SUITE, exists_reports_presence),
        check!(SUITE, chunked_body_is_stored_in_order),
        check!(SUITE, file_region_body_stores_only_the_region),
        check!(SUITE, one_shot_stream_body_is_stored),
        check!(SUITE, failed_body_stream_writes_nothing),
        check!(SUITE, copy_carries_content_type_and_metadata),
        check!(SUITE, copy_of_a_missing_source_is_not_found),
        check!(
            SUITE,
            copy_if_not_exists_keeps_the_destination,
            [ConditionalPut]
        ),
        check!(SUITE, sha256_of_the_content_is_recorded, [Checksums]),
        check!(SUITE, large_object_round_trips_64_mib),
        check!(
            SUITE,
            large_object_streams_with_bounded_memory,
            [OutOfProcessStorage]
        ),
    ]
}

async fn put_then_get_returns_the_bytes(b: Arc<dyn Backend>) -> CheckResult {
    let data = pattern(10_000, 1);
    b.put_bytes("a/b", data.clone()).await?;
    ensure_eq!(b.get_bytes("a/b").await?, data, "content read back");
    Ok(())
}

async fn put_returns_the_metadata_head_reports(b: Arc<dyn Backend>) -> CheckResult {
    let put = b.put_bytes("k", "hello").await?;
    let head = b.head(&key("k")?).await?;
    ensure_eq!(put.key.as_str(), "k", "key of the put result");
    ensure_eq!(put.size, 5, "size of the put result");
    ensure_eq!(head.size, 5, "size from head");
    ensure_eq!(head.etag, put.etag, "ETag from head");
    Ok(())
}

async fn overwrite_replaces_the_content(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", "first version").await?;
    b.put_bytes("k", "second").await?;
    ensure_eq!(
        b.get_bytes("k").await?,
        Bytes::from("second"),
        "content after overwrite"
    );
    Ok(())
}

async fn overwrite_gives_a_new_etag(b: Arc<dyn Backend>) -> CheckResult {
    let first = b.put_bytes("k", "same").await?;
    let second = b.put_bytes("k", "same").await?;
    ensure!(
        first.etag != second.etag,
        "two puts of the same bytes got the same ETag {}",
        first.etag
    );
    Ok(())
}

async fn get_of_a_missing_key_is_not_found(b: Arc<dyn Backend>) -> CheckResult {
    expect_err!(
        b.get(&key("missing")?, GetOptions::default()).await,
        Error::NotFound { .. }
    );
    Ok(())
}

async fn head_of_a_missing_key_is_not_found(b: Arc<dyn Backend>) -> CheckResult {
    expect_err!(b.head(&key("missing")?).await, Error::NotFound { .. });
    Ok(())
}

async fn delete_removes_the_object(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", "x").await?;
    b.delete(&key("k")?, DeleteOptions::default()).await?;
    expect_err!(b.get_bytes("k").await, Error::NotFound { .. });
    Ok(())
}

async fn delete_of_a_missing_key_succeeds(b: Arc<dyn Backend>) -> CheckResult {
    b.delete(&key("never-written")?, DeleteOptions::default())
        .await?;
    Ok(())
}

async fn empty_object_round_trips(b: Arc<dyn Backend>) -> CheckResult {
    let meta = b.put_bytes("empty", Bytes::new()).await?;
    ensure_eq!(meta.size, 0, "size of an empty object");
    ensure_eq!(
        b.get_bytes("empty").await?,
        Bytes::new(),
        "content of an empty object"
    );
    Ok(())
}

async fn exists_reports_presence(b: Arc<dyn Backend>) -> CheckResult {
    ensure!(!b.exists("k").await?, "exists() is true before any put");
    b.put_bytes("k", "x").await?;
    ensure!(b.exists("k").await?, "exists() is false after a put");
    Ok(())
}

async fn chunked_body_is_stored_in_order(b: Arc<dyn Backend>) -> CheckResult {
    let chunks = vec![
        Bytes::from("alpha-"),
        Bytes::from("beta-"),
        Bytes::from("gamma"),
    ];
    b.put(&key("k")?, Body::chunks(chunks), PutOptions::default())
        .await?;
    ensure_eq!(
        b.get_bytes("k").await?,
        Bytes::from("alpha-beta-gamma"),
        "content of a chunked body"
    );
    Ok(())
}

async fn file_region_body_stores_only_the_region(b: Arc<dyn Backend>) -> CheckResult {
    let data = pattern(300_000, 7);
    let mut file =
        tempfile::NamedTempFile::new().map_err(|e| Failure(format!("temp file: {e}")))?;
    file.write_all(&data)
        .map_err(|e| Failure(format!("temp file: {e}")))?;
    let body = Body::file_region(file.path(), 1000, 200_000);
    b.put(&key("k")?, body, PutOptions::default()).await?;
    ensure!(
        b.get_bytes("k").await? == data.slice(1000..201_000),
        "content differs from bytes 1000..201000 of the file"
    );
    Ok(())
}

async fn one_shot_stream_body_is_stored(b: Arc<dyn Backend>) -> CheckResult {
    let parts = (0..10).map(|i| Ok(pattern(70_000, i)));
    let expected: Vec<u8> = (0..10).flat_map(|i| pattern(70_000, i).to_vec()).collect();
    let body = Body::stream(stream::iter(parts).boxed(), None);
    ensure!(
        !body.is_replayable(),
        "a stream body claims to be replayable"
    );
    b.put(&key("k")?, body, PutOptions::default()).await?;
    ensure!(
        b.get_bytes("k").await? == expected,
        "content differs from the streamed bytes"
    );
    Ok(())
}

async fn failed_body_stream_writes_nothing(b: Arc<dyn Backend>) -> CheckResult {
    let parts: Vec<storage_core::Result<Bytes>> = vec![
        Ok(pattern(100_000, 1)),
        Err(Error::invalid_argument("the producer failed")),
    ];
    let body = Body::stream(stream::iter(parts).boxed(), None);
    let result = b.put(&key("k")?, body, PutOptions::default()).await;
    ensure!(result.is_err(), "a put whose body failed reported success");
    ensure!(
        !b.exists("k").await?,
        "a put whose body failed left an object"
    );
    Ok(())
}

async fn copy_carries_content_type_and_metadata(b: Arc<dyn Backend>) -> CheckResult {
    let options = PutOptions {
        content_type: Some("text/csv".into()),
        metadata: crate::support::metadata(&[("owner", "team-a")]),
        ..Default::default()
    };
    b.put(&key("src")?, Body::from("x,y\n1,2\n"), options.clone())
        .await?;
    let copied = b
        .copy(&key("src")?, &key("dst")?, PutMode::Overwrite)
        .await?;
    let head = b.head(&key("dst")?).await?;
    ensure_eq!(
        b.get_bytes("dst").await?,
        Bytes::from("x,y\n1,2\n"),
        "copied content"
    );
    ensure_eq!(
        head.content_type,
        options.content_type,
        "copied content type"
    );
    ensure_eq!(head.metadata, options.metadata, "copied metadata");
    ensure_eq!(copied.etag, head.etag, "ETag returned by copy");
    Ok(())
}

async fn copy_of_a_missing_source_is_not_found(b: Arc<dyn Backend>) -> CheckResult {
    expect_err!(
        b.copy(&key("missing")?, &key("dst")?, PutMode::Overwrite)
            .await,
        Error::NotFound { .. }
    );
    ensure!(
        !b.exists("dst").await?,
        "a failed copy created the destination"
    );
    Ok(())
}

async fn copy_if_not_exists_keeps_the_destination(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("src", "new").await?;
    let before = put_with_metadata(&*b, &key("dst")?, "old", &[("v", "1")]).await?;
    expect_err!(
        b.copy(&key("src")?, &key("dst")?, PutMode::IfNotExists)
            .await,
        Error::AlreadyExists { .. }
    );
    let after = b.head(&key("dst")?).await?;
    ensure_eq!(
        after.etag,
        before.etag,
        "destination ETag after a refused copy"
    );
    ensure_eq!(
        b.get_bytes("dst").await?,
        Bytes::from("old"),
        "destination content"
    );
    Ok(())
}

async fn sha256_of_the_content_is_recorded(b: Arc<dyn Backend>) -> CheckResult {
    let data = pattern(50_000, 3);
    let put = b.put_bytes("k", data.clone()).await?;
    let head = b.head(&key("k")?).await?;
    ensure_eq!(put.sha256, Some(sha256(&data)), "SHA-256 returned by put");
    ensure_eq!(head.sha256, Some(sha256(&data)), "SHA-256 reported by head");
    Ok(())
}

const LARGE: usize = 64 * 1024 * 1024;
const LARGE_CHUNK: usize = 256 * 1024;

fn large_body(resident_peak: Option<Arc<AtomicU64>>) -> Body {
    let chunks = (0..LARGE / LARGE_CHUNK).map(move |i| {
        if let Some(peak) = &resident_peak {
            peak.fetch_max(resident_bytes().unwrap_or(0), Ordering::Relaxed);
        }
        Ok(pattern(LARGE_CHUNK, i as u64))
    });
    Body::stream(stream::iter(chunks).boxed(), Some(LARGE as u64))
}

fn large_digest() -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for i in 0..LARGE / LARGE_CHUNK {
        hasher.update(pattern(LARGE_CHUNK, i as u64));
    }
    hasher.finalize().into()
}

async fn large_object_round_trips_64_mib(b: Arc<dyn Backend>) -> CheckResult {
    let put = b
        .put(&key("large")?, large_body(None), PutOptions::default())
        .await?;
    ensure_eq!(put.size, LARGE as u64, "size of the 64 MiB object");
    let got = b.get(&key("large")?, GetOptions::default()).await?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut body = got.body;
    let mut len = 0usize;
    while let Some(chunk) = body.try_next().await? {
        len += chunk.len();
        sha2::Digest::update(&mut hasher, &chunk);
    }
    ensure_eq!(len, LARGE, "bytes read back");
    ensure!(
        <[u8; 32]>::from(sha2::Digest::finalize(hasher)) == large_digest(),
        "the 64 MiB object read back differs from what was written"
    );
    Ok(())
}

/// Most the process may grow while streaming 64 MiB in and out: three
/// quarters of the object, room for a multipart upload's parts in flight,
/// while a backend that holds the whole object grows by 64 MiB or more.
const MEMORY_BOUND: u64 = 48 * 1024 * 1024;

async fn large_object_streams_with_bounded_memory(b: Arc<dyn Backend>) -> CheckResult {
    let Some(baseline) = resident_bytes() else {
        return Err(Failure(
            "cannot read /proc/self/statm to measure memory".into(),
        ));
    };
    let peak = Arc::new(AtomicU64::new(baseline));
    b.put(
        &key("large")?,
        large_body(Some(Arc::clone(&peak))),
        PutOptions::default(),
    )
    .await?;
    let got = b.get(&key("large")?, GetOptions::default()).await?;
    let mut body = got.body;
    while let Some(chunk) = body.try_next().await? {
        drop(chunk);
        peak.fetch_max(resident_bytes().unwrap_or(0), Ordering::Relaxed);
    }
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    ensure!(
        growth <= MEMORY_BOUND,
        "resident memory grew by {} MiB while streaming 64 MiB (bound: {} MiB)",
        growth >> 20,
        MEMORY_BOUND >> 20
    );
    Ok(())
}
