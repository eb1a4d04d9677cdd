//! Suite `core`: put, get, head, delete, copy and bodies (DESIGN section 2,
//! rules 1, 5, 6, 9 and 10): content and metadata round-trip, every put gets
//! a fresh ETag, an overwrite is atomic (a reader sees the old version whole
//! while it is unfinished, and a failed one leaves the old version whole), a
//! failed body writes nothing, `last_modified` lies within the put and moves
//! forward on overwrite, missing keys are `NotFound`, and large objects
//! stream.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use storage_core::{
    Backend, BackendExt, Body, DeleteOptions, Error, GetOptions, Key, ObjectMeta, PutMode,
    PutOptions,
};
use tokio::sync::oneshot;

use crate::support::{
    key, metadata, pattern, peak_resident_bytes, put_with_metadata, reset_peak_resident, sha256,
};
use crate::{Check, CheckResult, Failure, Hooks, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "core";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, put_then_get_returns_the_bytes),
        check!(SUITE, put_returns_the_metadata_head_reports),
        check!(SUITE, overwrite_replaces_the_content),
        check!(SUITE, overwrite_gives_a_new_etag, [UniqueEtags]),
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
        check!(SUITE, failed_overwrite_keeps_the_old_version),
        check!(SUITE, overwrite_in_progress_leaves_the_old_version_readable),
        check!(
            SUITE,
            last_modified_is_within_the_put_and_never_goes_backwards
        ),
        check!(SUITE, copy_carries_content_type_and_metadata),
        check!(SUITE, copy_of_a_missing_source_is_not_found),
        check!(
            SUITE,
            server_side_copy_moves_no_content_through_the_client,
            [ServerSideCopy]
        ),
        check!(
            SUITE,
            copy_if_not_exists_keeps_the_destination,
            [ConditionalPut]
        ),
        check!(SUITE, sha256_of_the_content_is_recorded, [Checksums]),
        check!(
            SUITE,
            corrupted_content_is_checksum_mismatch,
            [Checksums, TamperHook],
            hooks
        ),
        check!(SUITE, large_object_round_trips_64_mib),
        check!(
            SUITE,
            large_object_streams_with_bounded_memory,
            [OutOfProcessStorage],
            first
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

async fn failed_overwrite_keeps_the_old_version(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let old = pattern(1000, 1);
    let original = PutOptions {
        content_type: Some("text/plain".into()),
        metadata: metadata(&[("rev", "1")]),
        ..Default::default()
    };
    let before = b.put(&k, Body::from(old.clone()), original).await?;
    let parts: Vec<storage_core::Result<Bytes>> = vec![
        Ok(pattern(100_000, 2)),
        Err(Error::invalid_argument("the producer failed")),
    ];
    let replacement = PutOptions {
        content_type: Some("application/octet-stream".into()),
        metadata: metadata(&[("rev", "2")]),
        ..Default::default()
    };
    let body = Body::stream(stream::iter(parts).boxed(), None);
    let result = b.put(&k, body, replacement).await;
    ensure!(
        result.is_err(),
        "an overwrite whose body failed reported success"
    );
    let after = match b.head(&k).await {
        Err(Error::NotFound { .. }) => {
            return Err(Failure("a failed overwrite deleted the old version".into()));
        }
        other => other?,
    };
    ensure_eq!(after.etag, before.etag, "ETag after a failed overwrite");
    ensure_eq!(after.size, before.size, "size after a failed overwrite");
    ensure_eq!(
        after.content_type,
        before.content_type,
        "content type after a failed overwrite"
    );
    ensure_eq!(
        after.metadata,
        before.metadata,
        "metadata after a failed overwrite"
    );
    ensure!(
        b.get_bytes(&k).await? == old,
        "the content after a failed overwrite is not the old version"
    );
    Ok(())
}

/// Longest a check waits for a backend to ask for more of a body, or to
/// answer a read made while a put is unfinished.
const WAIT: Duration = Duration::from_secs(10);

/// A one-shot body whose first chunk is sent at once and whose second is
/// held back: `asked` fires when the backend asks for the second chunk, which
/// is sent when `release` fires (and the stream fails if `release` is
/// dropped).
fn held_back_body(asked: oneshot::Sender<()>, release: oneshot::Receiver<()>) -> Body {
    let first = stream::once(async { Ok(Bytes::from_static(b"new version, ")) });
    let second = stream::once(async move {
        let _ = asked.send(());
        release
            .await
            .map_err(|_| Error::invalid_argument("the check ended before the body did"))?;
        Ok(Bytes::from_static(b"sent whole"))
    });
    Body::stream(first.chain(second).boxed(), None)
}

/// While an overwrite's body is still being sent, a reader sees the old
/// version whole (rule 1: the old object or the whole new one, never a part
/// and never nothing); once it is sent, the new one.
async fn overwrite_in_progress_leaves_the_old_version_readable(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let old = b.put_bytes(&k, "old version").await?;
    let (asked, asked_rx) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    let body = held_back_body(asked, release_rx);
    let writer = {
        let (b, k) = (Arc::clone(&b), k.clone());
        tokio::spawn(async move { b.put(&k, body, PutOptions::default()).await })
    };
    match tokio::time::timeout(WAIT, asked_rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            let outcome = writer.await;
            return Err(Failure(format!(
                "the put ended without reading its whole body: {outcome:?}"
            )));
        }
        Err(_) => {
            return Err(Failure("the put did not read its body within 10 s".into()));
        }
    }
    let (etag, data) = match tokio::time::timeout(WAIT, read(&*b, &k)).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            return Err(Failure(format!(
                "a read during an unfinished overwrite failed: {e}"
            )));
        }
        Err(_) => {
            return Err(Failure(
                "a read waited for an unfinished overwrite to finish".into(),
            ));
        }
    };
    ensure_eq!(
        data,
        Bytes::from("old version"),
        "content read during an unfinished overwrite"
    );
    ensure_eq!(etag, old.etag, "ETag read during an unfinished overwrite");
    let _ = release.send(());
    writer
        .await
        .map_err(|e| Failure(format!("the writer task failed: {e}")))??;
    ensure_eq!(
        b.get_bytes(&k).await?,
        Bytes::from("new version, sent whole"),
        "content after the overwrite finished"
    );
    Ok(())
}

/// The ETag and content of the current version of `key`.
async fn read(b: &dyn Backend, key: &Key) -> storage_core::Result<(storage_core::ETag, Bytes)> {
    let got = b.get(key, GetOptions::default()).await?;
    let etag = got.meta.etag.clone();
    Ok((etag, got.bytes().await?))
}

/// How far before the start of its put a `last_modified` may lie: remote
/// services report it in whole seconds (the HTTP dates of S3 and Azure), cut
/// down to the second, so up to 1 s early, plus up to 1 s for the service's
/// clock running behind ours.
const EARLIEST_BEFORE_START: Duration = Duration::from_secs(2);

/// How far after the end of its put a `last_modified` may lie: up to 1 s for
/// a service that rounds its whole seconds up, plus up to 1 s for its clock
/// running ahead of ours.
const LATEST_AFTER_END: Duration = Duration::from_secs(2);

/// Pause between a put and its overwrite: longer than the coarsest
/// granularity of `last_modified` (1 s), so that even a clock in whole
/// seconds has moved on.
const OVERWRITE_PAUSE: Duration = Duration::from_millis(1100);

/// Puts `data` at `key` and checks the `last_modified` that put and head
/// report against the time the put took; returns both metadata.
async fn put_timed(
    b: &dyn Backend,
    key: &Key,
    data: &'static str,
) -> Result<(ObjectMeta, ObjectMeta), Failure> {
    let start = SystemTime::now();
    let put = b.put_bytes(key, data).await?;
    let end = SystemTime::now();
    let head = b.head(key).await?;
    let earliest = start
        .checked_sub(EARLIEST_BEFORE_START)
        .unwrap_or(UNIX_EPOCH);
    let latest = end.checked_add(LATEST_AFTER_END).unwrap_or(end);
    for (source, meta) in [("put", &put), ("head", &head)] {
        ensure!(
            (earliest..=latest).contains(&meta.last_modified),
            "last_modified from {source} is {}, outside the put's {}..{} widened to {}..{}",
            unix_seconds(meta.last_modified),
            unix_seconds(start),
            unix_seconds(end),
            unix_seconds(earliest),
            unix_seconds(latest)
        );
    }
    Ok((put, head))
}

/// Seconds since the Unix epoch, to the millisecond, for messages.
fn unix_seconds(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{:.3} s", d.as_secs_f64()),
        Err(e) => format!("-{:.3} s", e.duration().as_secs_f64()),
    }
}

/// Both puts' `last_modified`, from put and from head, lie within the put;
/// the overwrite's is strictly later than the first version's. Strictly,
/// because the overwrite starts [`OVERWRITE_PAUSE`] after the first put
/// ended, longer than the coarsest granularity, by the service's own clock:
/// a time that stayed put (the first version's, or the key's creation time)
/// is as wrong as one that went backwards.
async fn last_modified_is_within_the_put_and_never_goes_backwards(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let k = key("k")?;
    let (first_put, first_head) = put_timed(&*b, &k, "v1").await?;
    tokio::time::sleep(OVERWRITE_PAUSE).await;
    let (second_put, second_head) = put_timed(&*b, &k, "v2").await?;
    for (source, first, second) in [
        ("put", &first_put, &second_put),
        ("head", &first_head, &second_head),
    ] {
        ensure!(
            second.last_modified > first.last_modified,
            "last_modified from {source} went from {} to {} on an overwrite {} ms later",
            unix_seconds(first.last_modified),
            unix_seconds(second.last_modified),
            OVERWRITE_PAUSE.as_millis()
        );
    }
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

/// Rule 10 and [`Capabilities::server_side_copy`](storage_core::Capabilities::server_side_copy):
/// a backend that claims server-side copies copies without the content
/// passing through this process, as seen by
/// [`count_client_copies`](storage_core::raw::count_client_copies).
async fn server_side_copy_moves_no_content_through_the_client(b: Arc<dyn Backend>) -> CheckResult {
    let data = pattern(256 * 1024, 5);
    b.put_bytes("src", data.clone()).await?;
    let (copied, through_client) = storage_core::raw::count_client_copies(b.copy(
        &key("src")?,
        &key("dst")?,
        PutMode::Overwrite,
    ))
    .await;
    copied?;
    ensure_eq!(
        through_client,
        0,
        "copies read and written back through the client"
    );
    ensure!(
        b.get_bytes("dst").await? == data,
        "the copy holds other bytes"
    );
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

/// Rule 9: bytes changed on storage behind the backend's back (through the
/// factory's tamper hook, which keeps the recorded SHA-256) are reported as
/// [`Error::ChecksumMismatch`] on a full read, never returned as content.
async fn corrupted_content_is_checksum_mismatch(b: Arc<dyn Backend>, hooks: Hooks) -> CheckResult {
    let Some(tamper) = hooks.tamper else {
        return Err(Failure("the factory offers no tamper hook".into()));
    };
    let k = key("tampered")?;
    let data = pattern(16 * 1024, 99);
    b.put_bytes(&k, data.clone()).await?;
    let b = tamper(k.clone())
        .await
        .map_err(|e| Failure(format!("the tamper hook failed: {e}")))?
        .unwrap_or(b);
    let read = async { b.get(&k, GetOptions::default()).await?.bytes().await }.await;
    match read {
        Err(Error::ChecksumMismatch { .. }) => Ok(()),
        Err(other) => Err(Failure(format!(
            "reading corrupted content failed with {other}, not ChecksumMismatch"
        ))),
        Ok(bytes) if bytes == data => Err(Failure(
            "the read returned the original bytes: the tamper hook changed nothing".into(),
        )),
        Ok(bytes) => Err(Failure(format!(
            "corrupted content was returned as {} bytes of wrong data",
            bytes.len()
        ))),
    }
}

const LARGE: usize = 64 * 1024 * 1024;
const LARGE_CHUNK: usize = 256 * 1024;

/// A one-shot body of `len` bytes of [`pattern`] chunks, made as it is read.
fn large_body(len: usize) -> Body {
    let chunks = (0..len / LARGE_CHUNK).map(|i| Ok(pattern(LARGE_CHUNK, i as u64)));
    Body::stream(stream::iter(chunks).boxed(), Some(len as u64))
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
        .put(&key("large")?, large_body(LARGE), PutOptions::default())
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

/// Size of the object the bounded-memory check streams in and out: 192 MiB.
const MEMORY_OBJECT: usize = 192 * 1024 * 1024;

/// Most the process may grow while streaming [`MEMORY_OBJECT`] in and out:
/// 80 MiB, room for a multipart upload's parts in flight and the SDKs'
/// buffers in debug builds (S3 on moto under injected faults: 41 MiB, 3 parts
/// of 8 MiB in flight, one being filled, one being retried, when `cargo
/// xtask` fixes glibc's mmap threshold; 58–82 MiB when glibc's per-thread
/// arenas keep freed buffers), while a backend that buffers half the object
/// grows by 96 MiB or more.
const MEMORY_BOUND: u64 = 80 * 1024 * 1024;

/// Measures the kernel's peak resident memory of this process (`VmHWM`, reset
/// first), so no allocation between two samples escapes. The runner runs this
/// check before any other check of its process (see [`Check::first`]), and
/// `cargo xtask conformance` gives every backend a process of its own, so
/// memory freed by earlier checks cannot hide the growth.
async fn large_object_streams_with_bounded_memory(b: Arc<dyn Backend>) -> CheckResult {
    let baseline = reset_peak_resident().map_err(|e| {
        Failure(format!(
            "cannot reset the peak resident memory through /proc/self/clear_refs: {e}"
        ))
    })?;
    b.put(
        &key("large")?,
        large_body(MEMORY_OBJECT),
        PutOptions::default(),
    )
    .await?;
    let got = b.get(&key("large")?, GetOptions::default()).await?;
    let mut body = got.body;
    let mut len = 0;
    while let Some(chunk) = body.try_next().await? {
        len += chunk.len();
    }
    ensure_eq!(len, MEMORY_OBJECT, "bytes read back");
    let peak = peak_resident_bytes()
        .ok_or_else(|| Failure("cannot read VmHWM from /proc/self/status".into()))?;
    let growth = peak.saturating_sub(baseline);
    ensure!(
        growth <= MEMORY_BOUND,
        "peak resident memory grew by {} MiB while streaming {} MiB (bound: {} MiB)",
        growth >> 20,
        MEMORY_OBJECT >> 20,
        MEMORY_BOUND >> 20
    );
    Ok(())
}
