//! `reconcile` decides an abandoned transaction once, however many staged
//! writes it left, and removes every one of them.

use std::time::Duration;

use storage_conformance::spy::{Call, Spy};
use storage_core::{
    Backend, Body, Key, MemoryBackend, PutOptions, StagedListOptions, TxnId, reconcile,
};

#[tokio::test]
async fn an_abandoned_transaction_with_many_staged_writes_is_decided_once() {
    let store = Spy::new(MemoryBackend::new());
    let txn = TxnId::generate();
    for i in 0..50 {
        let key = Key::new(format!("k/{i}")).expect("valid key");
        store
            .stage(&key, &txn, Body::from("staged"), PutOptions::default())
            .await
            .expect("stage");
    }
    let report = reconcile(&store, Duration::ZERO).await.expect("reconcile");
    assert_eq!(report.discarded.len(), 50, "{report:?}");
    let decisions = store
        .calls()
        .into_iter()
        .filter(|call| matches!(call, Call::Put(key, ..) if key.as_str().starts_with(".txn/")))
        .count();
    assert_eq!(decisions, 1);
    let left = store
        .list_staged(&StagedListOptions::default())
        .await
        .expect("list_staged");
    assert!(left.staged.is_empty(), "{left:?}");
}
