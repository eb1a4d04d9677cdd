//! `FsBackend` under faults: corruption on disk, concurrent instances on one
//! root, cancelled puts, symbolic links and hostile key names.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use storage_core::{Backend, BackendExt, Body, Error, GetOptions, Key, PutMode, PutOptions};
use storage_disk::FsBackend;

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("readable directory") {
            let entry = entry.expect("directory entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The content file of the only object under `root`.
fn content_file(root: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = files_under(&root.join("objects"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("~v"))
        .collect();
    assert_eq!(found.len(), 1, "expected one content file, found {found:?}");
    found.remove(0)
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read content file");
    bytes[offset] ^= 0x01;
    std::fs::write(path, bytes).expect("write content file");
}

fn data(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

/// Writes `len` bytes, flips the byte at `offset` on disk, and asserts that
/// a full read reports `ChecksumMismatch`.
async fn assert_flip_is_detected(len: usize, offset: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    store.put_bytes("k", data(len)).await.expect("put");
    flip_byte(&content_file(dir.path()), offset);
    let err = store
        .get_bytes("k")
        .await
        .expect_err("corruption must be detected");
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
}

#[tokio::test]
async fn flipped_byte_in_a_small_object_is_checksum_mismatch() {
    assert_flip_is_detected(4096, 100).await;
}

#[tokio::test]
async fn flipped_byte_in_a_streamed_object_is_checksum_mismatch() {
    assert_flip_is_detected(3 << 20, (3 << 20) - 1).await;
}

#[tokio::test]
async fn range_read_reads_only_the_requested_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    let original = data(1 << 20);
    store.put_bytes("k", original.clone()).await.expect("put");
    // Corrupt byte 0: a range that does not cover it is served without
    // reading (or verifying) the rest of the file.
    flip_byte(&content_file(dir.path()), 0);
    let got = store
        .get_range("k", 500_000..600_000)
        .await
        .expect("range read");
    assert_eq!(got, original.slice(500_000..600_000));
}

#[tokio::test]
async fn truncated_content_file_is_an_error_not_short_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    store.put_bytes("k", data(10_000)).await.expect("put");
    let file = content_file(dir.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(5_000))
        .expect("truncate");
    let err = store
        .get_bytes("k")
        .await
        .expect_err("truncation must be detected");
    assert!(err.to_string().contains("shorter than recorded"), "{err}");
}

#[tokio::test]
async fn corrupt_sidecar_is_a_backend_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    store.put_bytes("k", "x").await.expect("put");
    std::fs::write(dir.path().join("objects/k~meta"), b"{not json").expect("overwrite sidecar");
    let err = store
        .head(&Key::new("k").expect("key"))
        .await
        .expect_err("corrupt sidecar");
    assert!(err.to_string().contains("corrupt sidecar"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_swap_holds_across_two_instances_on_one_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores: [Arc<dyn Backend>; 2] = [
        Arc::new(FsBackend::new(dir.path()).expect("first store")),
        Arc::new(FsBackend::new(dir.path()).expect("second store")),
    ];
    let key = Key::new("counter").expect("key");
    stores[0]
        .put(
            &key,
            Body::from("0"),
            PutOptions::mode(PutMode::IfNotExists),
        )
        .await
        .expect("create");
    let tasks = (0..8).map(|i| {
        let store = Arc::clone(&stores[i % 2]);
        let key = key.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                loop {
                    let current = store.get(&key, GetOptions::default()).await.expect("get");
                    let etag = current.meta.etag.clone();
                    let value: u64 = std::str::from_utf8(&current.bytes().await.expect("read"))
                        .expect("utf-8")
                        .parse()
                        .expect("a number");
                    let next = Body::from((value + 1).to_string());
                    match store
                        .put(&key, next, PutOptions::mode(PutMode::IfMatch(etag)))
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::PreconditionFailed { .. }) => continue,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    assert_eq!(stores[1].get_bytes(&key).await.expect("final read"), "400");
}

#[tokio::test]
async fn cancelled_put_leaves_no_files_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    let first = stream::once(async { Ok(Bytes::from(vec![7u8; 100_000])) });
    let never = stream::pending();
    let body = Body::stream(first.chain(never).boxed(), None);
    let key = Key::new("a/b").expect("key");
    let put = store.put(&key, body, PutOptions::default());
    let outcome = tokio::time::timeout(Duration::from_millis(300), put).await;
    assert!(
        outcome.is_err(),
        "the put should still be waiting for its body"
    );
    let left: Vec<PathBuf> = files_under(&dir.path().join("objects"));
    assert!(left.is_empty(), "a cancelled put left {left:?}");
}

#[tokio::test]
async fn symlinked_sidecar_is_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::NamedTempFile::new().expect("outside file");
    std::fs::write(outside.path(), br#"{"version":1}"#).expect("write outside file");
    let store = FsBackend::new(dir.path()).expect("store");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("objects/evil~meta"))
        .expect("symlink");
    let result = store.head(&Key::new("evil").expect("key")).await;
    assert!(result.is_err(), "a symlinked sidecar was read: {result:?}");
}

#[tokio::test]
async fn hostile_key_names_stay_under_the_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let store = FsBackend::new(&root).expect("store");
    let keys = [
        "..a/b",
        "a~meta",
        "x/~tmp-1",
        "%2e%2e/escape",
        "~d/~v1",
        &"long".repeat(250),
    ];
    for k in keys {
        store.put_bytes(k, k.to_owned()).await.expect("put");
    }
    for k in keys {
        assert_eq!(store.get_bytes(k).await.expect("get"), k.as_bytes());
    }
    let siblings: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(siblings, ["root"], "files were written outside the root");
    let listed: Vec<String> =
        futures::TryStreamExt::try_collect::<Vec<_>>(store.list_all(Default::default()))
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.key.to_string())
            .collect();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}
