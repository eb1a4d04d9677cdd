//! Compactions running at once under overwrite and delete churn: no
//! errors, and after a full replay (no snapshot) deleted keys stay gone.

use std::collections::BTreeMap;

use bytes::Bytes;
use storage_core::{Backend, BackendExt, DeleteOptions, Error, Key};
use storage_disk::{LogStore, LogStoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_compactors_under_churn_keep_deleted_keys_gone() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogStoreOptions {
        segment_bytes: 8 * 1024,
        large_value_bytes: 2048,
        ..LogStoreOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options.clone())
        .await
        .expect("open");
    let compactors: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    store.compact().await?;
                    tokio::task::yield_now().await;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    // Expected final state: the last write of each key, or none.
    let mut expected: BTreeMap<String, Option<Bytes>> = BTreeMap::new();
    for round in 0..60u32 {
        for k in 0..20u32 {
            let name = format!("churn/{k:02}");
            if (round + k) % 3 == 0 {
                let key = Key::new(&name).expect("valid key");
                store
                    .delete(&key, DeleteOptions::default())
                    .await
                    .expect("delete");
                expected.insert(name, None);
            } else {
                // Every fifth value goes to a blob file.
                let len = if k % 5 == 0 { 3000 } else { 200 };
                let value = Bytes::from(vec![(round % 251) as u8; len]);
                store.put_bytes(&name, value.clone()).await.expect("put");
                expected.insert(name, Some(value));
            }
        }
    }
    for compactor in compactors {
        compactor.await.expect("joined").expect("compaction");
    }
    store.compact().await.expect("compact");
    store.close().await.expect("close");
    std::fs::remove_file(dir.path().join("index.snap")).expect("remove the snapshot");
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("reopen");
    for (name, value) in expected {
        let key = Key::new(&name).expect("valid key");
        match value {
            Some(value) => assert_eq!(store.get_bytes(&key).await.expect("read"), value),
            None => {
                let gone = store.head(&key).await;
                assert!(
                    matches!(gone, Err(Error::NotFound { .. })),
                    "{name}: {gone:?}"
                );
            }
        }
    }
}

/// 20,000 rounds of put then delete of a new key each, beside a segment of
/// long-lived keys (one of which is deleted during the churn), then 10
/// compactions: segment bytes end within 2× the live bytes plus two
/// segments, the last compactions copy nothing, and after a full replay the
/// deleted long-lived key stays deleted (its tombstone was kept while the
/// long-lived segment held its put).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_delete_churn_of_new_keys_leaves_no_tombstones_behind() {
    const SEGMENT: u64 = 64 * 1024;
    const ROUNDS: usize = 20_000;
    const WRITERS: usize = 16;
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogStoreOptions {
        segment_bytes: SEGMENT,
        // Commits need not reach the disk for a test of space.
        durability: storage_disk::Durability::Buffered,
        ..LogStoreOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options.clone())
        .await
        .expect("open");
    for i in 0..250u32 {
        store
            .put_bytes(format!("long/{i:04}"), Bytes::from(vec![1u8; 160]))
            .await
            .expect("put");
    }
    let gone = Key::new("long/0007").expect("valid key");
    store
        .delete(&gone, DeleteOptions::default())
        .await
        .expect("delete");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in (w..ROUNDS).step_by(WRITERS) {
                    let key = Key::new(format!("churn/{round:06}")).expect("valid key");
                    store
                        .put_bytes(&key, Bytes::from_static(b"short-lived value"))
                        .await?;
                    store.delete(&key, DeleteOptions::default()).await?;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("joined").expect("churn");
    }
    let mut copied = Vec::new();
    for _ in 0..10 {
        copied.push(store.compact().await.expect("compact").records_copied);
    }
    let (disk, live) = store.space();
    eprintln!("segments {disk} B, live {live} B, records copied per compaction {copied:?}");
    assert!(
        disk <= 2 * live + 2 * SEGMENT,
        "{disk} bytes of segments for {live} live bytes (records copied per compaction: {copied:?})"
    );
    assert_eq!(
        copied[8..],
        [0, 0],
        "records copied per compaction: {copied:?}"
    );
    store.close().await.expect("close");
    std::fs::remove_file(dir.path().join("index.snap")).expect("remove the snapshot");
    let store = LogStore::open_with(dir.path(), options)
        .await
        .expect("reopen");
    assert_eq!(store.len(), 249, "the long-lived keys, and nothing else");
    assert!(matches!(
        store.head(&gone).await,
        Err(Error::NotFound { .. })
    ));
}
