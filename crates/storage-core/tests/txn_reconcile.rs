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

#[tokio::test]
async fn a_lock_left_by_a_transaction_decided_aborted_is_taken_at_once() {
    let store = MemoryBackend::new();
    let target = Key::new("k").expect("valid key");
    let abandoned = TxnId::generate();
    let stored = |name: String| storage_core::raw::stored_key(&name).expect("stored name");
    // A fresh transaction's lock, and its record deciding it aborted.
    store
        .put(
            &stored(format!("{target}/.staging/.lock")),
            Body::from(abandoned.to_string()),
            PutOptions::default(),
        )
        .await
        .expect("lock");
    store
        .put(
            &stored(format!(".txn/{abandoned}")),
            Body::from("storage-txn 1\naborted\n"),
            PutOptions::default(),
        )
        .await
        .expect("record");
    let mut txn = storage_core::Txn::begin(&store);
    txn.stage(&target, Body::from("new"), PutOptions::default())
        .await
        .expect("stage");
    txn.commit()
        .await
        .expect("the aborted holder's lock is taken over");
}
