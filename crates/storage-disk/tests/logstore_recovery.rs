//! Opening after damage: corruption inside the last segment is not taken
//! for a torn tail, a torn tail is set aside before it is cut, and a last
//! segment of zeros opens.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use storage_core::{Backend, BackendExt, Error};
use storage_disk::LogStore;

/// Bytes of each record written by `fill`: 40-byte header, a 4-byte key, a
/// 10-byte value, the 36-byte trailer.
const RECORD: u64 = 90;
/// Bytes of a segment header.
const SEGMENT_HEADER: u64 = 40;

fn segment(dir: &Path) -> PathBuf {
    dir.join("segments").join(format!("{:020}.seg", 1))
}

/// 50 puts of `k/00`…`k/49`, then a close and the snapshot removed, so
/// that opening replays every record of segment 1.
async fn fill(dir: &Path) {
    let store = LogStore::open(dir).await.expect("open");
    for i in 0..50 {
        store
            .put_bytes(format!("k/{i:02}"), Bytes::from(format!("value-{i:04}")))
            .await
            .expect("put");
    }
    store.close().await.expect("close");
    std::fs::remove_file(dir.join("index.snap")).expect("remove the snapshot");
    let len = std::fs::metadata(segment(dir)).expect("segment").len();
    assert_eq!(len, SEGMENT_HEADER + 50 * RECORD, "record layout");
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    f(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

#[tokio::test]
async fn a_bit_flip_in_record_5_of_50_fails_the_open_naming_its_offset() {
    let dir = tempfile::tempdir().expect("temporary directory");
    fill(dir.path()).await;
    let record_5 = SEGMENT_HEADER + 4 * RECORD;
    edit(&segment(dir.path()), |b| {
        b[(record_5 + 50) as usize] ^= 0x04
    });
    let opened = LogStore::open(dir.path()).await;
    let message = match opened {
        Err(Error::Backend { message, .. }) => message,
        other => panic!("expected the open to fail, got {other:?}"),
    };
    assert!(
        message.contains(&format!("corrupt at byte {record_5}")),
        "{message}"
    );
    let after = std::fs::metadata(segment(dir.path()))
        .expect("segment")
        .len();
    assert_eq!(after, SEGMENT_HEADER + 50 * RECORD, "nothing was cut");
}

#[tokio::test]
async fn a_torn_last_record_is_set_aside_and_cut() {
    let dir = tempfile::tempdir().expect("temporary directory");
    fill(dir.path()).await;
    let last = SEGMENT_HEADER + 49 * RECORD;
    edit(&segment(dir.path()), |b| b.truncate((last + 60) as usize));
    let store = LogStore::open(dir.path()).await.expect("open");
    assert_eq!(store.open_report().truncated_bytes, 60);
    assert_eq!(
        store.get_bytes("k/48").await.expect("k/48"),
        Bytes::from("value-0048")
    );
    assert!(matches!(
        store
            .head(&storage_core::Key::new("k/49").expect("key"))
            .await,
        Err(Error::NotFound { .. })
    ));
    let aside = std::fs::read(dir.path().join(format!("torn-1-{last}"))).expect("set aside");
    assert_eq!(aside.len(), 60);
}

#[tokio::test]
async fn zeros_after_the_last_record_are_a_torn_tail() {
    let dir = tempfile::tempdir().expect("temporary directory");
    fill(dir.path()).await;
    edit(&segment(dir.path()), |b| b.extend_from_slice(&[0; 8192]));
    let store = LogStore::open(dir.path()).await.expect("open");
    assert_eq!(store.open_report().truncated_bytes, 8192);
    assert_eq!(store.open_report().objects, 50);
}

#[tokio::test]
async fn a_last_segment_of_zeros_opens() {
    let dir = tempfile::tempdir().expect("temporary directory");
    fill(dir.path()).await;
    let second = dir.path().join("segments").join(format!("{:020}.seg", 2));
    std::fs::write(&second, vec![0u8; 4096]).expect("a preallocated segment");
    let store = LogStore::open(dir.path()).await.expect("open");
    assert_eq!(store.open_report().objects, 50);
    store.put_bytes("after", "x").await.expect("put after");
}
