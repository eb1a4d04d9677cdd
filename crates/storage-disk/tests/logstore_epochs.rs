//! ETags and blob numbers are never reissued: not after writes are lost
//! (a power loss in `Buffered` mode), not after a restore from backup, not in
//! a recreated directory, and a new blob never takes the number an old record
//! names.

use std::path::Path;

use bytes::Bytes;
use storage_core::{Backend, BackendExt, ETag, Key};
use storage_disk::LogStore;

fn segment_1(dir: &Path) -> std::path::PathBuf {
    dir.join("segments").join(format!("{:020}.seg", 1))
}

/// The sequence-number half of a LogStore ETag.
fn seq_part(etag: &ETag) -> &str {
    &etag.as_str()[16..]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[tokio::test]
async fn a_sequence_number_reused_after_lost_writes_gets_another_etag() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path()).await.expect("open");
    store.put_bytes("k", "base").await.expect("put");
    store.close().await.expect("close");
    let kept = std::fs::metadata(segment_1(dir.path()))
        .expect("segment")
        .len();

    let store = LogStore::open(dir.path()).await.expect("reopen");
    let lost = store.put_bytes("k", "lost").await.expect("put").etag;
    store.close().await.expect("close");
    // What a power loss in `Buffered` mode does: the last write never
    // reached the disk.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment_1(dir.path()))
        .expect("segment");
    file.set_len(kept).expect("cut the lost write");
    std::fs::remove_file(dir.path().join("index.snap")).expect("remove the snapshot");

    let store = LogStore::open(dir.path())
        .await
        .expect("open after the loss");
    assert_eq!(store.get_bytes("k").await.expect("get"), "base");
    let other = store.put_bytes("k", "other").await.expect("put").etag;
    assert_eq!(
        seq_part(&other),
        seq_part(&lost),
        "the sequence number is reused"
    );
    assert_ne!(other, lost, "the ETag is not");
}

#[tokio::test]
async fn a_store_restored_from_backup_never_reissues_an_etag_of_the_original() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let live = dir.path().join("live");
    let backup = dir.path().join("backup");
    let store = LogStore::open(&live).await.expect("open");
    store.put_bytes("k", "base").await.expect("put");
    store.close().await.expect("close");
    copy_dir(&live, &backup);

    let store = LogStore::open(&live).await.expect("reopen");
    let original = store.put_bytes("k", "original").await.expect("put").etag;
    store.close().await.expect("close");

    let restored = LogStore::open(&backup).await.expect("open the backup");
    let etag = restored.put_bytes("k", "restored").await.expect("put").etag;
    assert_eq!(seq_part(&etag), seq_part(&original), "same sequence number");
    assert_ne!(etag, original);
}

#[tokio::test]
async fn a_recreated_directory_issues_other_etags() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path()).await.expect("open");
    let first = store.put_bytes("k", "one").await.expect("put").etag;
    store.close().await.expect("close");
    drop(store);
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).expect("remove");
        } else {
            std::fs::remove_file(path).expect("remove");
        }
    }
    let store = LogStore::open(dir.path()).await.expect("open afresh");
    let second = store.put_bytes("k", "two").await.expect("put").etag;
    assert_eq!(seq_part(&first), seq_part(&second));
    assert_ne!(first, second);
}

fn blob_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs"))
        .expect("list blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_new_blob_never_takes_the_number_an_old_record_names() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let big = Bytes::from(vec![7u8; 2 * 1024 * 1024]);
    let store = LogStore::open(dir.path()).await.expect("open");
    store.put_bytes("a", big.clone()).await.expect("put");
    let old = blob_names(dir.path());
    assert_eq!(old.len(), 1);
    // The blob is unlinked; the put record naming it stays in segment 1.
    store
        .delete(&Key::new("a").expect("key"), Default::default())
        .await
        .expect("delete");
    store.close().await.expect("close");
    assert!(blob_names(dir.path()).is_empty());
    std::fs::remove_file(dir.path().join("index.snap")).expect("remove the snapshot");

    let store = LogStore::open(dir.path()).await.expect("reopen");
    store.put_bytes("b", big).await.expect("put");
    let new = blob_names(dir.path());
    assert_eq!(new.len(), 1);
    assert_ne!(new, old, "blob number {} was reused", old[0]);
}
