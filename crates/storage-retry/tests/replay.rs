//! Bodies are sent again only when they can be: replayable bodies whole,
//! one-shot streams only if no byte of them was read.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use storage_core::{Backend, BackendExt, Body, Error, Key, MemoryBackend, PutOptions};
use storage_retry::Retry;

use common::{Script, Scripted, counted_stream, fast_policy};

fn chunks() -> Vec<Bytes> {
    vec![
        Bytes::from("alpha-"),
        Bytes::from("beta-"),
        Bytes::from("gamma"),
    ]
}

fn store(script: Script) -> Retry<Scripted<MemoryBackend>> {
    Retry::with_policy(Scripted::new(MemoryBackend::new(), script), fast_policy())
}

#[tokio::test]
async fn a_one_shot_body_broken_after_its_first_chunk_is_non_replayable() {
    let store = store(Script::BreakAfterFirstChunk);
    let pulled = Arc::new(AtomicU64::new(0));
    let body = counted_stream(chunks(), Arc::clone(&pulled));
    let put = store
        .put(&Key::new("k").expect("key"), body, PutOptions::default())
        .await;
    assert!(
        matches!(put, Err(Error::NonReplayableBody { .. })),
        "{put:?}"
    );
    assert_eq!(pulled.load(Ordering::Relaxed), 1, "the body was sent again");
}

#[tokio::test]
async fn a_one_shot_put_that_failed_part_way_leaves_the_old_object() {
    let store = store(Script::Pass);
    let k = Key::new("k").expect("key");
    let old = store.put_bytes(&k, "old").await.expect("put");
    store.inner().set(Script::BreakAfterFirstChunk);
    let body = counted_stream(chunks(), Arc::default());
    let _ = store.put(&k, body, PutOptions::default()).await;
    let now = store.inner().inner.head(&k).await.expect("head");
    assert_eq!(now.etag, old.etag);
}

#[tokio::test]
async fn a_one_shot_put_that_failed_part_way_on_a_new_key_leaves_nothing() {
    let store = store(Script::BreakAfterFirstChunk);
    let k = Key::new("k").expect("key");
    let _ = store
        .put(
            &k,
            counted_stream(chunks(), Arc::default()),
            PutOptions::default(),
        )
        .await;
    assert!(!store.inner().inner.exists(&k).await.expect("head"));
}

#[tokio::test]
async fn a_one_shot_body_refused_before_it_was_read_is_sent_on_retry() {
    let store = store(Script::Refuse(2));
    let pulled = Arc::new(AtomicU64::new(0));
    let body = counted_stream(chunks(), Arc::clone(&pulled));
    store
        .put(&Key::new("k").expect("key"), body, PutOptions::default())
        .await
        .expect("the untouched body is sent on the third attempt");
    assert_eq!(
        store.inner().inner.get_bytes("k").await.expect("get"),
        "alpha-beta-gamma"
    );
}

#[tokio::test]
async fn a_one_shot_body_whose_answer_was_lost_is_reported_done() {
    let store = store(Script::LoseAnswers(1));
    let body = counted_stream(chunks(), Arc::default());
    let put = store
        .put(&Key::new("k").expect("key"), body, PutOptions::default())
        .await;
    let stored = store
        .inner()
        .inner
        .head(&Key::new("k").expect("key"))
        .await
        .expect("head");
    assert_eq!(put.expect("reported as done").etag, stored.etag);
}

#[tokio::test]
async fn a_replayable_body_is_sent_again_from_its_start() {
    let store = store(Script::Refuse(3));
    store
        .put(
            &Key::new("k").expect("key"),
            Body::chunks(chunks()),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert_eq!(
        store.inner().inner.get_bytes("k").await.expect("get"),
        "alpha-beta-gamma"
    );
}
