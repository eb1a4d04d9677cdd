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
