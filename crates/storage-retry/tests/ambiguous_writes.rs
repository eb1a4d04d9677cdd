//! Writes whose answer was lost: each is reported once, as what happened.

mod common;

use std::sync::Arc;

use futures::StreamExt;
use storage_core::{
    Backend, BackendExt, Body, ChangeKind, DeleteOptions, ETag, Error, GetOptions, Key,
    ListOptions, MemoryBackend, Metadata, PutMode, PutOptions, TxnId,
};
use storage_retry::{Retry, WRITE_ID_METADATA};

use common::{Script, Scripted, fast_policy};

fn key(s: &str) -> Key {
    Key::new(s).expect("valid key")
}

fn scripted(script: Script) -> Retry<Scripted<MemoryBackend>> {
    Retry::with_policy(Scripted::new(MemoryBackend::new(), script), fast_policy())
}

fn create() -> PutOptions {
    PutOptions::mode(PutMode::IfNotExists)
}

#[tokio::test]
async fn an_applied_create_whose_answer_was_lost_succeeds_with_its_etag() {
    let store = scripted(Script::LoseAnswers(1));
    let k = key("lease");
    let put = store.put(&k, Body::from("mine"), create()).await;
    let stored = store
        .inner()
        .inner
        .head(&k)
        .await
        .expect("the create was applied");
    assert_eq!(put.expect("reported as done").etag, stored.etag);
}

#[tokio::test]
async fn a_create_that_landed_after_its_retry_was_refused_succeeds_with_its_etag() {
    // object_store #464: the first request lands late, so the retry meets
    // the call's own object and is refused with AlreadyExists.
    let store = scripted(Script::LandLate);
    let k = key("lease");
    let put = store.put(&k, Body::from("mine"), create()).await;
    let stored = store
        .inner()
        .inner
        .head(&k)
        .await
        .expect("the create landed");
    assert_eq!(put.expect("reported as done").etag, stored.etag);
}

#[tokio::test]
async fn a_competing_create_is_still_already_exists() {
    let store = scripted(Script::Refuse(1));
    let k = key("lease");
    let theirs = store
        .inner()
        .inner
        .put_bytes(&k, "theirs")
        .await
        .expect("put");
    let put = store.put(&k, Body::from("mine"), create()).await;
    assert!(matches!(put, Err(Error::AlreadyExists { .. })), "{put:?}");
    assert_eq!(
        store.inner().inner.head(&k).await.expect("head").etag,
        theirs.etag
    );
}

#[tokio::test]
async fn an_applied_compare_and_swap_whose_answer_was_lost_succeeds_once() {
    let store = scripted(Script::Pass);
    let k = key("counter");
    let v1 = store.put_bytes(&k, "1").await.expect("put");
    store.inner().set(Script::LoseAnswers(1));
    let v2 = store
        .put(
            &k,
            Body::from("2"),
            PutOptions::mode(PutMode::IfMatch(v1.etag)),
        )
        .await
        .expect("reported as done");
    let stored = store.inner().inner.head(&k).await.expect("head");
    assert_eq!(v2.etag, stored.etag);
}

#[tokio::test]
async fn a_lost_answer_never_makes_a_second_version() {
    let store = scripted(Script::LoseAnswers(1));
    let mut changes = store.inner().inner.watch("k").await.expect("watch");
    store
        .put_bytes("k", "once")
        .await
        .expect("reported as done");
    store
        .inner()
        .inner
        .put_bytes("k-end", "marker")
        .await
        .expect("put");
    let first = changes.next().await.expect("a change").expect("change");
    let second = changes.next().await.expect("a change").expect("change");
    assert_eq!((first.key.as_str(), first.kind), ("k", ChangeKind::Put));
    assert_eq!(
        second.key.as_str(),
        "k-end",
        "a second version of k was written"
    );
}

#[tokio::test]
async fn an_applied_conditional_delete_whose_answer_was_lost_succeeds() {
    let store = scripted(Script::Pass);
    let k = key("lease");
    let lease = store.put_bytes(&k, "mine").await.expect("put");
    store.inner().set(Script::LoseDeleteAnswers(1));
    let options = DeleteOptions {
        if_match: Some(lease.etag),
    };
    store.delete(&k, options).await.expect("reported as done");
    assert!(!store.inner().inner.exists(&k).await.expect("head"));
}

#[tokio::test]
async fn a_conditional_delete_of_a_missing_key_is_refused_without_being_sent() {
    let store = scripted(Script::LoseDeleteAnswers(1));
    let options = DeleteOptions {
        if_match: Some(ETag::new("v1")),
    };
    let deleted = store.delete(&key("missing"), options).await;
    assert!(
        matches!(deleted, Err(Error::PreconditionFailed { actual: None, .. })),
        "{deleted:?}"
    );
}

#[tokio::test]
async fn a_malformed_write_id_is_refused_before_any_call() {
    let store = scripted(Script::Pass);
    let options = PutOptions {
        metadata: Metadata::from([("storage_write_id".to_owned(), "x".to_owned())]),
        ..PutOptions::default()
    };
    let put = store.put(&key("k"), Body::from("x"), options).await;
    assert!(matches!(put, Err(Error::InvalidArgument { .. })), "{put:?}");
    assert_eq!(store.inner().calls(), 0);
}

#[tokio::test]
async fn the_write_id_never_shows_in_results() {
    let store: Arc<dyn Backend> = Arc::new(scripted(Script::Pass));
    let k = key("k");
    let put = store.put(&k, Body::from("x"), create()).await.expect("put");
    let got = store.get(&k, GetOptions::default()).await.expect("get");
    let listed = store.list(&ListOptions::default()).await.expect("list");
    let copied = store
        .copy(&k, &key("k2"), PutMode::Overwrite)
        .await
        .expect("copy");
    let head = store.head(&key("k2")).await.expect("head");
    let shown = [put, got.meta, listed.objects[0].clone(), copied, head];
    for meta in shown {
        assert!(!meta.metadata.contains_key(WRITE_ID_METADATA), "{meta:?}");
    }
}

#[tokio::test]
async fn an_applied_conditional_copy_whose_answer_was_lost_succeeds() {
    let store = scripted(Script::Pass);
    let (source, target) = (key("staged"), key("target"));
    store
        .put(&source, Body::from("new"), PutOptions::default())
        .await
        .expect("source");
    let old = store
        .put(&target, Body::from("old"), PutOptions::default())
        .await
        .expect("target");
    store.inner().set(Script::LoseAnswers(1));
    let copied = store
        .copy(&source, &target, PutMode::IfMatch(old.etag))
        .await;
    let stored = store.inner().inner.head(&target).await.expect("head");
    assert_eq!(copied.expect("reported as applied").etag, stored.etag);
}

#[tokio::test]
async fn an_atomic_promote_whose_answer_was_lost_succeeds_once() {
    let store = scripted(Script::Pass);
    let (target, txn) = (key("promoted"), TxnId::generate());
    store
        .stage(&target, &txn, Body::from("staged"), PutOptions::default())
        .await
        .expect("stage");
    store.inner().set(Script::LoseAnswers(1));
    let promoted = store.promote(&target, &txn, PutMode::IfNotExists).await;
    let stored = store.inner().inner.head(&target).await.expect("head");
    assert_eq!(promoted.expect("reported as applied").etag, stored.etag);
}

#[tokio::test]
async fn an_atomic_promote_refused_before_it_applied_is_sent_again() {
    let store = scripted(Script::Pass);
    let (target, txn) = (key("promoted"), TxnId::generate());
    store
        .stage(&target, &txn, Body::from("staged"), PutOptions::default())
        .await
        .expect("stage");
    store.inner().set(Script::Refuse(2));
    store
        .promote(&target, &txn, PutMode::IfNotExists)
        .await
        .expect("promoted on the third attempt");
    assert_eq!(
        store.get_bytes(&target).await.expect("read"),
        bytes::Bytes::from_static(b"staged")
    );
    let staged = target.staged(&txn).expect("staged key");
    assert!(matches!(
        store.inner().inner.head(&staged).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_atomic_promote_that_landed_after_its_retry_was_refused_succeeds() {
    let store = scripted(Script::Pass);
    let (target, txn) = (key("promoted"), TxnId::generate());
    store
        .stage(&target, &txn, Body::from("staged"), PutOptions::default())
        .await
        .expect("stage");
    store.inner().set(Script::LandLate);
    let promoted = store.promote(&target, &txn, PutMode::IfNotExists).await;
    let stored = store.inner().inner.head(&target).await.expect("head");
    assert_eq!(promoted.expect("reported as applied").etag, stored.etag);
}

#[tokio::test]
async fn a_promote_refused_by_its_condition_is_refused() {
    let store = scripted(Script::Pass);
    let (target, txn) = (key("promoted"), TxnId::generate());
    store.put_bytes(&target, "taken").await.expect("put");
    store
        .stage(&target, &txn, Body::from("staged"), PutOptions::default())
        .await
        .expect("stage");
    let refused = store.promote(&target, &txn, PutMode::IfNotExists).await;
    assert!(
        matches!(refused, Err(Error::AlreadyExists { .. })),
        "{refused:?}"
    );
}
