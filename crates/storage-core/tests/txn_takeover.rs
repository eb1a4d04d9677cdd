//! A commit that stalls before its decision while its transaction is
//! taken over (here by `reconcile`, which discards its staged writes)
//! fails cleanly: the takeover decided the transaction as aborted first.

use std::time::Duration;

use async_trait::async_trait;
use storage_core::{
    Backend, BackendExt, Body, Capabilities, DeleteOptions, Error, GetOptions, GetResult, Key,
    ListOptions, ListPage, MemoryBackend, ObjectMeta, PutOptions, Result, StagedListOptions, Txn,
    reconcile,
};

/// Runs `reconcile` with no age limit on the inner store just before a
/// decision record is written: what a commit that stalled past the lock
/// TTL at that point meets.
#[derive(Debug)]
struct StallsBeforeTheDecision(MemoryBackend);

#[async_trait]
impl Backend for StallsBeforeTheDecision {
    fn name(&self) -> &str {
        "stalls-before-the-decision"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        if key.as_str().starts_with(".txn/") {
            reconcile(&self.0, Duration::ZERO).await?;
        }
        self.0.put(key, body, options).await
    }
    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.0.get(key, options).await
    }
    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.0.head(key).await
    }
    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.0.delete(key, options).await
    }
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.0.list(options).await
    }
}

#[tokio::test]
async fn a_commit_stalled_past_a_takeover_fails_cleanly_and_writes_nothing() {
    let store = StallsBeforeTheDecision(MemoryBackend::new());
    let (a, b) = (Key::new("a").expect("key"), Key::new("b").expect("key"));
    let mut txn = Txn::begin(&store);
    txn.stage(&a, Body::from("1"), PutOptions::default())
        .await
        .expect("stage a");
    txn.stage(&b, Body::from("2"), PutOptions::default())
        .await
        .expect("stage b");
    let committed = txn.commit().await;
    assert!(
        matches!(committed, Err(Error::Locked { .. })),
        "expected Error::Locked, got {committed:?}"
    );
    for key in [&a, &b] {
        assert!(
            !store.0.exists(key).await.expect("exists"),
            "{key} was written"
        );
    }
    let staged = store
        .0
        .list_staged(&StagedListOptions::default())
        .await
        .expect("list staged");
    assert!(staged.staged.is_empty(), "left staged: {:?}", staged.staged);
    // The locks are gone (reconcile removed them as stale).
    let reserved = store
        .0
        .list(&ListOptions {
            reserved: true,
            ..ListOptions::default()
        })
        .await
        .expect("list");
    let names: Vec<&str> = reserved.objects.iter().map(|o| o.key.as_str()).collect();
    assert!(
        names.iter().all(|n| n.starts_with(".txn/")),
        "left behind: {names:?}"
    );
    // The aborted decision stays, so the commit cannot be decided later.
    assert_eq!(names.len(), 1, "{names:?}");
    let record = store
        .0
        .get_bytes(storage_core::raw::stored_key(names[0]).expect("stored name"))
        .await
        .expect("record");
    assert_eq!(record, "storage-txn 1\naborted\n");
}
