//! LogStore promotes a staged write in one record: a large value's blob
//! changes owner without a copy, and the promote survives reopening and
//! compaction without the staged write coming back.

use std::path::Path;

use bytes::Bytes;
use storage_core::{Backend, BackendExt, Body, Error, Key, PutMode, PutOptions, TxnId};
use storage_disk::{LogStore, LogStoreOptions};

fn key(name: &str) -> Key {
    Key::new(name).expect("valid key")
}

/// Bytes of every segment file.
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("segments"))
        .expect("segments directory")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum()
}

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs"))
        .expect("blobs directory")
        .count()
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

async fn stage(store: &LogStore, k: &Key, txn: &TxnId, value: Bytes) {
    store
        .stage(k, txn, Body::from(value), PutOptions::default())
        .await
        .expect("stage");
}

#[tokio::test(flavor = "multi_thread")]
async fn promoting_a_64_mib_staged_value_appends_under_1_kib_of_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path()).await.expect("open");
    let (k, txn) = (key("big"), TxnId::generate());
    let value = pattern(64 << 20, 7);
    stage(&store, &k, &txn, value.clone()).await;
    let before = log_bytes(dir.path());
    store
        .promote(&k, &txn, PutMode::Overwrite)
        .await
        .expect("promote");
    let appended = log_bytes(dir.path()) - before;
    assert!(appended < 1024, "the promote appended {appended} bytes");
    assert_eq!(store.get_bytes(&k).await.expect("read"), value);
    assert_eq!(blob_count(dir.path()), 1, "the blob moved, not copied");
}

#[tokio::test(flavor = "multi_thread")]
async fn promotes_of_inline_and_blob_values_survive_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogStoreOptions {
        large_value_bytes: 4096,
        ..LogStoreOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options.clone())
        .await
        .expect("open");
    let txn = TxnId::generate();
    let (small, large) = (key("small"), key("large"));
    stage(&store, &small, &txn, pattern(100, 1)).await;
    stage(&store, &large, &txn, pattern(10_000, 2)).await;
    for k in [&small, &large] {
        store
            .promote(k, &txn, PutMode::IfNotExists)
            .await
            .expect("promote");
    }
    store.close().await.expect("close");
    // No snapshot: the records are replayed.
    std::fs::remove_file(dir.path().join("index.snap")).expect("remove the snapshot");
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("reopen");
    assert_eq!(
        store.get_bytes(&small).await.expect("small"),
        pattern(100, 1)
    );
    assert_eq!(
        store.get_bytes(&large).await.expect("large"),
        pattern(10_000, 2)
    );
    for k in [&small, &large] {
        let staged = k.staged(&txn).expect("staged key");
        let gone = store.head(&staged).await;
        assert!(
            matches!(gone, Err(Error::NotFound { .. })),
            "{staged}: {gone:?}"
        );
    }
    assert_eq!(blob_count(dir.path()), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staged_write_stays_promoted_through_compaction_and_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogStoreOptions {
        segment_bytes: 4096,
        large_value_bytes: 2048,
        ..LogStoreOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options.clone())
        .await
        .expect("open");
    let txn = TxnId::generate();
    let (k, blob_key) = (key("k"), key("b"));
    stage(&store, &k, &txn, pattern(300, 3)).await;
    stage(&store, &blob_key, &txn, pattern(3000, 4)).await;
    // A segment of padding keeps the staged records in a segment of their
    // own, older than the promote records.
    for i in 0..20 {
        store
            .put_bytes(key(&format!("pad/{i}")), pattern(400, 5))
            .await
            .expect("pad");
    }
    for target in [&k, &blob_key] {
        store
            .promote(target, &txn, PutMode::Overwrite)
            .await
            .expect("promote");
    }
    // Overwrite both many times so that the promote records hold no live
    // version, then compact: they must still hide the staged records.
    for round in 0..40u8 {
        for target in [&k, &blob_key] {
            store
                .put_bytes(target, pattern(300, round))
                .await
                .expect("overwrite");
        }
        if round % 10 == 9 {
            store.compact().await.expect("compact");
        }
    }
    store.compact().await.expect("compact");
    store.close().await.expect("close");
    std::fs::remove_file(dir.path().join("index.snap")).expect("remove the snapshot");
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("reopen");
    for target in [&k, &blob_key] {
        assert_eq!(
            store.get_bytes(target).await.expect("read"),
            pattern(300, 39)
        );
        let staged = target.staged(&txn).expect("staged key");
        let gone = store.head(&staged).await;
        assert!(
            matches!(gone, Err(Error::NotFound { .. })),
            "{staged}: {gone:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_promote_keeps_the_staged_write_and_its_blob() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogStoreOptions {
        large_value_bytes: 1024,
        ..LogStoreOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("open");
    let (k, txn) = (key("taken"), TxnId::generate());
    store
        .put_bytes(&k, Bytes::from_static(b"first"))
        .await
        .expect("put");
    stage(&store, &k, &txn, pattern(5000, 9)).await;
    let refused = store.promote(&k, &txn, PutMode::IfNotExists).await;
    assert!(
        matches!(refused, Err(Error::AlreadyExists { .. })),
        "{refused:?}"
    );
    let staged = k.staged(&txn).expect("staged key");
    assert_eq!(
        store.get_bytes(&staged).await.expect("staged"),
        pattern(5000, 9)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_key_deleted_later_stays_deleted_through_compaction_and_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogStoreOptions {
        segment_bytes: 4096,
        large_value_bytes: 2048,
        ..LogStoreOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options.clone())
        .await
        .expect("open");
    let put = |name: String, seed: u8| {
        let store = store.clone();
        async move {
            store
                .put_bytes(key(&name), pattern(1000, seed))
                .await
                .expect("put");
        }
    };
    let txn = TxnId::generate();
    let targets = [key("k"), key("b")];
    // Segment 1: the staged writes, and padding that stays live for now.
    stage(&store, &targets[0], &txn, pattern(300, 3)).await;
    stage(&store, &targets[1], &txn, pattern(3000, 4)).await;
    for i in 0..4 {
        put(format!("pad/{i}"), 1).await;
    }
    // Segment 2: the promote records. Segment 3: the keys' tombstones.
    for target in &targets {
        store
            .promote(target, &txn, PutMode::Overwrite)
            .await
            .expect("promote");
    }
    for i in 0..4 {
        put(format!("fill/{i}"), 1).await;
    }
    for target in &targets {
        store
            .delete(target, Default::default())
            .await
            .expect("delete");
    }
    for i in 4..8 {
        put(format!("fill/{i}"), 1).await;
    }
    // Segment 2 dies and is compacted while segment 1 lives: the staged
    // writes' tombstones must be copied forward, the puts of the keys not.
    for i in 0..4 {
        put(format!("fill/{i}"), 2).await;
    }
    store.compact().await.expect("compact");
    // Then segments 1 and 3 die: compaction drops the keys' tombstones.
    for i in (0..4)
        .map(|i| format!("pad/{i}"))
        .chain((4..8).map(|i| format!("fill/{i}")))
    {
        put(i, 2).await;
    }
    store.compact().await.expect("compact");
    store.close().await.expect("close");
    std::fs::remove_file(dir.path().join("index.snap")).expect("remove the snapshot");
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("reopen");
    for target in &targets {
        let staged = target.staged(&txn).expect("staged key");
        for k in [target, &staged] {
            let gone = store.head(k).await;
            assert!(matches!(gone, Err(Error::NotFound { .. })), "{k}: {gone:?}");
        }
    }
}
