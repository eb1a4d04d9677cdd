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

/// The object file of the only object under `root`.
fn content_file(root: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = files_under(&root.join("objects"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("~obj"))
        .collect();
    assert_eq!(found.len(), 1, "expected one object file, found {found:?}");
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
async fn truncated_object_file_is_an_error_not_short_data() {
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
    assert!(
        matches!(&err, Error::ChecksumMismatch { key, .. } if key == "k"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_object_file_without_its_trailer_is_a_checksum_mismatch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    store.put_bytes("k", "x").await.expect("put");
    std::fs::write(dir.path().join("objects/k~obj"), b"{not json").expect("overwrite");
    let err = store
        .head(&Key::new("k").expect("key"))
        .await
        .expect_err("corrupt trailer");
    assert!(
        matches!(&err, Error::ChecksumMismatch { key, .. } if key == "k"),
        "{err:?}"
    );
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

/// A second store outside the root holding `key` = `data`: valid files for
/// links to point at, so that a test fails only if links are followed.
async fn store_outside(key: &str, data: &'static str) -> (tempfile::TempDir, FsBackend) {
    let dir = tempfile::tempdir().expect("outside dir");
    let store = FsBackend::new(dir.path()).expect("outside store");
    store.put_bytes(key, data).await.expect("outside put");
    (dir, store)
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// The file under `objects` (of either store) whose name is `name`.
fn file_named(objects: &Path, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = files_under(objects)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(name))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one file named {name}*, found {found:?}"
    );
    found.into_iter().next().expect("one file")
}

#[tokio::test]
async fn symlinked_object_files_are_not_followed() {
    let (outside, _) = store_outside("evil", "secret").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    let objects = outside.path().join("objects");
    let object = file_named(&objects, "evil~obj");
    let inside = dir.path().join("objects");
    symlink(&object, &inside.join(object.file_name().expect("name")));
    let read = store.get_bytes("evil").await;
    assert!(
        read.is_err(),
        "a linked object outside the root was read: {read:?}"
    );
    let head = store.head(&Key::new("evil").expect("key")).await;
    assert!(
        head.is_err(),
        "the metadata of a linked object outside the root was read: {head:?}"
    );
}

#[tokio::test]
async fn symlinked_content_file_is_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    store.put_bytes("k", "inside").await.expect("put");
    // The same bytes moved outside the root and linked back: only the link
    // is wrong, so the read fails only if the link is refused.
    let outside = tempfile::tempdir().expect("outside dir");
    let data = content_file(dir.path());
    let moved = outside.path().join("content");
    std::fs::copy(&data, &moved).expect("copy content");
    std::fs::remove_file(&data).expect("remove content");
    symlink(&moved, &data);
    let read = store.get_bytes("k").await;
    assert!(
        read.is_err(),
        "a content file linked from outside the root was read: {read:?}"
    );
}

#[tokio::test]
async fn symlinked_directory_is_not_followed() {
    let (outside, outside_store) = store_outside("dir/evil", "secret").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    symlink(
        &outside.path().join("objects/dir~d"),
        &dir.path().join("objects/dir~d"),
    );
    let read = store.get_bytes("dir/evil").await;
    assert!(
        read.is_err(),
        "an object in a linked directory was read: {read:?}"
    );
    let listed: Vec<_> = store
        .list_all(storage_core::ListOptions::prefix("dir/"))
        .collect()
        .await;
    assert!(
        !listed
            .iter()
            .any(|m| m.as_ref().is_ok_and(|m| m.key.as_str() == "dir/evil")),
        "a listing followed a linked directory: {listed:?}"
    );
    let _ = store.put_bytes("dir/new", "x").await;
    assert!(
        !outside_store
            .exists("dir/new")
            .await
            .expect("outside exists"),
        "a put wrote through a linked directory"
    );
    let _ = store.put_bytes("dir/sub/new", "x").await;
    assert!(
        !outside.path().join("objects/dir~d/sub~d").exists(),
        "a put created a directory through a linked directory"
    );
    let _ = store
        .delete(&Key::new("dir/evil").expect("key"), Default::default())
        .await;
    assert_eq!(
        outside_store
            .get_bytes("dir/evil")
            .await
            .expect("outside get"),
        "secret",
        "a delete removed an object through a linked directory"
    );
}

/// A directory swapped for a link to outside the root while a put is
/// writing into it: the put goes on in the directory it opened (now under
/// another name inside the root), and nothing is written or read outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_link_during_a_put_leads_nowhere_outside() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside dir");
    let store = FsBackend::new(dir.path()).expect("store");
    let (resume, resumed) = tokio::sync::oneshot::channel::<()>();
    let first = stream::once(async { Ok(Bytes::from_static(b"first, ")) });
    let rest = stream::once(async move {
        let _ = resumed.await;
        Ok(Bytes::from_static(b"rest"))
    });
    let body = Body::stream(first.chain(rest).boxed(), None);
    let writer = store.clone();
    let key = Key::new("d/y").expect("key");
    let put_key = key.clone();
    let put = tokio::spawn(async move { writer.put(&put_key, body, PutOptions::default()).await });
    let objects = dir.path().join("objects");
    let victim = objects.join("d~d");
    while !victim.is_dir() || std::fs::read_dir(&victim).expect("list").next().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::rename(&victim, objects.join("moved~d")).expect("move the directory away");
    symlink(outside.path(), &victim);
    resume.send(()).expect("resume the body");
    let _ = put.await.expect("joined");
    let escaped: Vec<PathBuf> = files_under(outside.path());
    assert!(escaped.is_empty(), "written outside the root: {escaped:?}");
    let read = store.get_bytes(&key).await;
    assert!(read.is_err(), "read through the link: {read:?}");
    assert!(files_under(outside.path()).is_empty());
}

#[tokio::test]
async fn put_replaces_a_symlinked_object_file_without_writing_through_it() {
    let (outside, outside_store) = store_outside("w", "old").await;
    let object = file_named(&outside.path().join("objects"), "w~obj");
    let before = std::fs::read(&object).expect("outside object");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsBackend::new(dir.path()).expect("store");
    symlink(&object, &dir.path().join("objects/w~obj"));
    let _ = store.put_bytes("w", "new").await;
    assert_eq!(
        std::fs::read(&object).expect("outside object"),
        before,
        "the outside object file changed"
    );
    assert_eq!(
        outside_store.get_bytes("w").await.expect("outside get"),
        "old",
        "the outside object changed"
    );
}

#[tokio::test]
async fn hostile_key_names_stay_under_the_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let store = FsBackend::new(&root).expect("store");
    let keys = [
        "..a/b",
        "a~meta",
        "a~obj",
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

#[tokio::test]
async fn a_root_whose_lock_or_object_directory_is_a_link_is_refused() {
    for linked in ["locks", "objects"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let outside = tempfile::tempdir().expect("outside dir");
        symlink(outside.path(), &dir.path().join(linked));
        let opened = FsBackend::new(dir.path());
        assert!(opened.is_err(), "{linked} as a link was followed");
        assert!(
            files_under(outside.path()).is_empty(),
            "{linked}: written outside the root"
        );
    }
}
