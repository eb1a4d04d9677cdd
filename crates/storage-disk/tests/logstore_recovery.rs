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
    let aside = std::fs::read_dir(dir.path())
        .expect("store directory")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("torn-1-{last}-")))
        })
        .map(|p| std::fs::read(p).expect("set aside"))
        .expect("the tail was set aside");
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

#[tokio::test]
async fn a_missing_blob_is_an_integrity_error_not_a_retry() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = storage_disk::LogStoreOptions {
        large_value_bytes: 1024,
        ..Default::default()
    };
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("open");
    store
        .put_bytes("big", Bytes::from(vec![7u8; 4096]))
        .await
        .expect("put");
    for blob in std::fs::read_dir(dir.path().join("blobs")).expect("blobs") {
        std::fs::remove_file(blob.expect("entry").path()).expect("remove the blob");
    }
    let read = store.get_bytes("big").await;
    assert!(
        matches!(&read, Err(e @ Error::Integrity { .. }) if !e.is_transient()),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_body_longer_or_shorter_than_declared_writes_nothing() {
    use futures::StreamExt;
    use storage_core::{Body, Key, PutOptions};
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = storage_disk::LogStoreOptions {
        large_value_bytes: 1024,
        ..Default::default()
    };
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("open");
    for (declared, carried) in [(10u64, 5usize), (5, 10), (5000, 6000), (6000, 5000)] {
        let chunk = Bytes::from(vec![1u8; carried]);
        let body = Body::stream(
            futures::stream::once(async move { Ok(chunk) }).boxed(),
            Some(declared),
        );
        let key = Key::new(format!("k/{declared}-{carried}")).expect("key");
        let put = store.put(&key, body, PutOptions::default()).await;
        assert!(
            matches!(put, Err(Error::InvalidArgument { .. })),
            "{declared} vs {carried}: {put:?}"
        );
        assert!(matches!(
            store.head(&key).await,
            Err(Error::NotFound { .. })
        ));
    }
    let blobs = std::fs::read_dir(dir.path().join("blobs"))
        .expect("blobs")
        .count();
    assert_eq!(blobs, 0, "no blob file is left");
}

#[tokio::test]
async fn in_buffered_mode_a_superseded_blob_outlives_its_replacement_until_it_is_durable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = storage_disk::LogStoreOptions {
        large_value_bytes: 1024,
        durability: storage_disk::Durability::Buffered,
        ..Default::default()
    };
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("open");
    let blobs = || {
        std::fs::read_dir(dir.path().join("blobs"))
            .expect("blobs")
            .count()
    };
    store
        .put_bytes("big", Bytes::from(vec![1u8; 4096]))
        .await
        .expect("first");
    store
        .put_bytes("big", Bytes::from(vec![2u8; 4096]))
        .await
        .expect("second");
    // The second record may not be on disk yet: a power loss would leave
    // the first, which needs its blob.
    assert_eq!(blobs(), 2);
    store.snapshot().await.expect("snapshot");
    assert_eq!(blobs(), 1);
}

/// A record of `key` (seq `seq`) as the writer frames it, marked as the
/// first of its batch or not.
fn crafted(key: &str, seq: u64, batch_start: bool) -> Vec<u8> {
    use storage_disk::logstore::record::{self, RecordHeader, RecordType};
    let header = RecordHeader {
        kind: RecordType::Put,
        key_len: key.len() as u16,
        meta_len: 0,
        value_len: 10,
        seq,
        modified_ms: 1,
    };
    let mut out = Vec::new();
    record::encode(&header, key, &[], b"value-crft", &[0; 32], &mut out);
    record::set_batch_start(&mut out, batch_start);
    out
}

/// The last batch's pages reach the disk in any order when power fails
/// mid-write: a damaged first record followed by an intact later record of
/// the same batch is a torn tail; followed by the first record of a later
/// batch, it is damage inside acknowledged writes.
#[tokio::test]
async fn damage_before_a_later_batch_fails_the_open_damage_inside_the_last_batch_is_cut() {
    for later_batch in [false, true] {
        let dir = tempfile::tempdir().expect("temporary directory");
        fill(dir.path()).await;
        let end = SEGMENT_HEADER + 50 * RECORD;
        edit(&segment(dir.path()), |b| {
            let mut torn = crafted("t/01", 100, true);
            torn[45] ^= 0xff;
            b.extend_from_slice(&torn);
            b.extend_from_slice(&crafted("t/02", 101, later_batch));
        });
        let opened = LogStore::open(dir.path()).await;
        if later_batch {
            let failed = matches!(&opened, Err(Error::Backend { message, .. }) if message.contains(&format!("corrupt at byte {end}")));
            assert!(failed, "{opened:?}");
        } else {
            let store = opened.expect("a torn last batch opens");
            assert_eq!(store.open_report().truncated_bytes, 2 * RECORD);
            assert_eq!(store.open_report().objects, 50);
        }
    }
}

#[tokio::test]
async fn a_zeroed_header_before_records_fails_the_open_instead_of_wiping_them() {
    let dir = tempfile::tempdir().expect("temporary directory");
    fill(dir.path()).await;
    edit(&segment(dir.path()), |b| {
        b[..SEGMENT_HEADER as usize].fill(0)
    });
    let opened = LogStore::open(dir.path()).await;
    assert!(matches!(opened, Err(Error::Backend { .. })), "{opened:?}");
    let after = std::fs::metadata(segment(dir.path()))
        .expect("segment")
        .len();
    assert_eq!(after, SEGMENT_HEADER + 50 * RECORD, "nothing was cut");
}
