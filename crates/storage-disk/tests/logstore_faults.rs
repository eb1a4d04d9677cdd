//! `LogStore` under faults: torn tails, flipped bits in sealed segments,
//! a second opener, and compaction racing writers and readers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use storage_core::{Backend, BackendExt, Body, Error, Key, Metadata, PutOptions};
use storage_disk::logstore::record;
use storage_disk::{LogStore, LogStoreOptions};

fn small_segments() -> LogStoreOptions {
    LogStoreOptions {
        segment_bytes: 4096,
        ..Default::default()
    }
}

fn value_of(key: &str) -> Bytes {
    Bytes::from(format!("value of {key} ").repeat(7))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .collect();
    out.sort();
    out
}

/// Start offsets and lengths of the records of a segment file.
fn records(path: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut offset = 40;
    let mut out = Vec::new();
    while offset < bytes.len() {
        let r = record::parse(&bytes[offset..]).expect("valid record");
        let len = r.header.record_len() as usize;
        out.push((offset, len));
        offset += len;
    }
    out
}

/// A closed store holding `keys`, without its snapshot, so that opening it
/// replays every record.
async fn written_store(dir: &Path, keys: &[String], options: LogStoreOptions) {
    let store = LogStore::open_with(dir, options).await.expect("open");
    for k in keys {
        let options = PutOptions {
            metadata: Metadata::from([("k".to_owned(), k.clone())]),
            ..Default::default()
        };
        store
            .put(&Key::new(k).expect("key"), Body::from(value_of(k)), options)
            .await
            .expect("put");
    }
    store.close().await.expect("close");
    std::fs::remove_file(dir.join("index.snap")).expect("remove snapshot");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_torn_tail_of_the_last_record_is_truncated_on_open() {
    let base = tempfile::tempdir().expect("temp dir");
    let original = base.path().join("original");
    let keys: Vec<String> = (0..5).map(|i| format!("torn/{i}")).collect();
    written_store(&original, &keys, LogStoreOptions::default()).await;
    let segment = segments(&original).pop().expect("a segment");
    let (last_start, last_len) = *records(&segment).last().expect("records");
    let name = segment.file_name().expect("name").to_owned();
    for cut in last_start..last_start + last_len {
        let dir = base.path().join(format!("cut-{cut}"));
        copy_dir(&original, &dir);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("segments").join(&name))
            .expect("open segment");
        file.set_len(cut as u64).expect("truncate");
        let store = LogStore::open(&dir)
            .await
            .unwrap_or_else(|e| panic!("open after cut at {cut}: {e}"));
        assert_eq!(
            store.open_report().truncated_bytes,
            (cut - last_start) as u64,
            "cut at {cut}"
        );
        assert_eq!(store.len(), 4, "cut at {cut}");
        for k in &keys[..4] {
            assert_eq!(
                store.get_bytes(k).await.expect("get"),
                value_of(k),
                "cut at {cut}"
            );
        }
        assert!(
            !store.exists(keys[4].as_str()).await.expect("exists"),
            "cut at {cut}"
        );
        store.close().await.expect("close");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}

/// Flips one bit in `region` of the first record of the first (sealed)
/// segment; returns the key of that record.
fn flip_in_region(dir: &Path, region: &str) -> String {
    let segment = segments(dir).remove(0);
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let (start, _) = records(&segment)[0];
    let r = record::parse(&bytes[start..]).expect("valid record");
    let key = r.key.to_owned();
    let key_at = start + record::HEADER_LEN;
    let meta_at = key_at + usize::from(r.header.key_len);
    let value_at = meta_at + r.header.meta_len as usize;
    let at = match region {
        "header" => start + 26,
        "key" => key_at + 2,
        "metadata" => meta_at + 3,
        "value" => value_at + 5,
        other => panic!("no region {other}"),
    };
    bytes[at] ^= 0x10;
    std::fs::write(&segment, bytes).expect("write segment");
    key
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_bit_in_a_sealed_segment_fails_the_open() {
    let base = tempfile::tempdir().expect("temp dir");
    let original = base.path().join("original");
    let keys: Vec<String> = (0..40).map(|i| format!("rot/{i:02}")).collect();
    written_store(&original, &keys, small_segments()).await;
    assert!(
        segments(&original).len() > 2,
        "the test needs sealed segments"
    );
    for region in ["header", "key", "metadata", "value"] {
        let dir = base.path().join(region);
        copy_dir(&original, &dir);
        flip_in_region(&dir, region);
        let err = LogStore::open_with(&dir, small_segments())
            .await
            .expect_err(&format!("a flipped bit in the {region} must fail the open"));
        assert!(
            err.to_string().contains("segment 1 is corrupt"),
            "{region}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_bit_under_a_snapshot_fails_the_read() {
    let base = tempfile::tempdir().expect("temp dir");
    let original = base.path().join("original");
    let keys: Vec<String> = (0..40).map(|i| format!("rot/{i:02}")).collect();
    written_store(&original, &keys, small_segments()).await;
    // Reopen and close once so that a snapshot covers every record.
    LogStore::open_with(&original, small_segments())
        .await
        .expect("open")
        .close()
        .await
        .expect("close");
    for region in ["header", "key", "metadata", "value"] {
        let dir = base.path().join(region);
        copy_dir(&original, &dir);
        let key = flip_in_region(&dir, region);
        let store = LogStore::open_with(&dir, small_segments())
            .await
            .expect("open from the snapshot");
        assert!(store.open_report().from_snapshot);
        let err = store
            .get_bytes(key.as_str())
            .await
            .expect_err(&format!("{region}: corrupt read"));
        assert!(
            matches!(err, Error::ChecksumMismatch { .. }),
            "{region}: {err}"
        );
        store.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_opener_is_locked_out_until_the_first_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = LogStore::open(dir.path()).await.expect("first open");
    let second = LogStore::open(dir.path()).await;
    assert!(matches!(second, Err(Error::Locked { .. })), "{second:?}");
    first.close().await.expect("close");
    let third = LogStore::open(dir.path()).await.expect("open after close");
    third.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_under_concurrent_writes_and_reads_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LogStoreOptions {
        segment_bytes: 16 * 1024,
        ..Default::default()
    };
    let store = Arc::new(
        LogStore::open_with(dir.path(), options.clone())
            .await
            .expect("open"),
    );
    let keys: Vec<String> = (0..32).map(|i| format!("hot/{i:02}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = keys
        .chunks(8)
        .map(|chunk| {
            let (store, chunk) = (Arc::clone(&store), chunk.to_vec());
            tokio::spawn(async move {
                let mut last = Vec::new();
                for round in 0..60u32 {
                    for k in &chunk {
                        let value = format!("{k}@{round}:").repeat(10);
                        store
                            .put_bytes(k.as_str(), value.clone())
                            .await
                            .expect("put");
                        if round == 59 {
                            last.push((k.clone(), value));
                        }
                    }
                }
                last
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, keys, stop) = (Arc::clone(&store), keys.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for k in &keys {
                        match store.get_bytes(k.as_str()).await {
                            Ok(v) => {
                                assert!(v.starts_with(format!("{k}@").as_bytes()), "{k} read {v:?}")
                            }
                            Err(Error::NotFound { .. }) => {}
                            Err(e) => panic!("read of {k} failed: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let compactor = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut removed = 0;
            while !stop.load(Ordering::Relaxed) {
                removed += store
                    .compact()
                    .await
                    .expect("compact")
                    .segments_removed
                    .len();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            removed
        })
    };
    let mut expected = Vec::new();
    for w in writers {
        expected.extend(w.await.expect("writer"));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    let removed = compactor.await.expect("compactor");
    assert!(removed > 0, "compaction never removed a segment");
    let report = store.compact().await.expect("final compaction");
    let (total, live) = store.space();
    for (k, v) in &expected {
        assert_eq!(
            store.get_bytes(k.as_str()).await.expect("get"),
            v.as_bytes()
        );
    }
    store.close().await.expect("close");
    // Sealed segments hold at most twice their live bytes; the active
    // segment adds at most one segment.
    assert!(
        total <= 2 * live + 2 * options.segment_bytes,
        "space amplification too high: {total} bytes on disk for {live} live ({report:?})"
    );
    let reopened = LogStore::open_with(dir.path(), options)
        .await
        .expect("reopen");
    for (k, v) in &expected {
        assert_eq!(
            reopened
                .get_bytes(k.as_str())
                .await
                .expect("get after reopen"),
            v.as_bytes()
        );
    }
    reopened.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn background_compaction_removes_dead_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LogStoreOptions {
        segment_bytes: 8 * 1024,
        background_compaction: Some(std::time::Duration::from_millis(20)),
        ..Default::default()
    };
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("open");
    for round in 0..40 {
        for k in 0..4 {
            store
                .put_bytes(format!("k{k}"), format!("round {round} ").repeat(40))
                .await
                .expect("put");
        }
    }
    // Segment ids count up from 1: the newest id is how many were created.
    let created = || -> u64 {
        let newest = segments(dir.path()).pop().expect("a segment");
        let name = newest
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("segment name")
            .to_owned();
        name.parse().expect("numbered segment")
    };
    let mut remaining = segments(dir.path()).len() as u64;
    for _ in 0..100 {
        if remaining * 2 < created() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        remaining = segments(dir.path()).len() as u64;
    }
    assert!(created() > 4, "the test must create several segments");
    assert!(
        remaining * 2 < created(),
        "{} segments created, {remaining} remain after background compaction",
        created()
    );
    for k in 0..4 {
        assert_eq!(
            store.get_bytes(format!("k{k}")).await.expect("get"),
            "round 39 ".repeat(40)
        );
    }
    store.close().await.expect("close");
}
