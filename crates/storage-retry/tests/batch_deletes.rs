//! `delete_many` through `Retry`: one call to the backend below (which
//! batches), and keys of an attempt that failed settled like single
//! deletes.

mod common;

use storage_core::{Backend, BackendExt, Key, MemoryBackend};
use storage_retry::Retry;

use common::{Script, Scripted, fast_policy};

fn keys(names: &[&str]) -> Vec<Key> {
    names
        .iter()
        .map(|name| Key::new(*name).expect("valid key"))
        .collect()
}

async fn stored(names: &[&str]) -> Retry<Scripted<MemoryBackend>> {
    let store = Retry::with_policy(
        Scripted::new(MemoryBackend::new(), Script::Pass),
        fast_policy(),
    );
    for name in names {
        store.put_bytes(*name, "x").await.expect("put");
    }
    store
}

const NAMES: [&str; 3] = ["a", "b/c", "d"];

/// The keys of [`NAMES`] still in the store below.
async fn left(store: &Retry<Scripted<MemoryBackend>>) -> Vec<Key> {
    let mut left = Vec::new();
    for key in keys(&NAMES) {
        if store.inner().inner.exists(&key).await.expect("head") {
            left.push(key);
        }
    }
    left
}

#[tokio::test]
async fn a_batch_reaches_the_backend_below_as_one_call() {
    let store = stored(&NAMES).await;
    let before = store.inner().calls();
    let results = store.delete_many(&keys(&NAMES)).await.expect("delete_many");
    assert_eq!(
        (
            store.inner().calls() - before,
            results.iter().all(Result::is_ok)
        ),
        (1, true)
    );
}

#[tokio::test]
async fn a_batch_whose_answer_was_lost_is_settled_and_reported_deleted() {
    let store = stored(&NAMES).await;
    store.inner().set(Script::LoseDeleteAnswers(1));
    let results = store.delete_many(&keys(&NAMES)).await.expect("delete_many");
    let left = left(&store).await;
    assert!(
        results.iter().all(Result::is_ok) && left.is_empty(),
        "results {results:?}, left {left:?}"
    );
}

#[tokio::test]
async fn a_batch_that_always_fails_transiently_reports_each_key_as_transient() {
    let store = stored(&NAMES).await;
    store.inner().set(Script::AlwaysTransient);
    let results = store.delete_many(&keys(&NAMES)).await.expect("delete_many");
    assert!(
        results.len() == NAMES.len()
            && results
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.is_transient())),
        "{results:?}"
    );
}

#[tokio::test]
async fn keys_refused_one_by_one_are_settled_and_sent_again() {
    let store = stored(&NAMES).await;
    store.inner().set(Script::RefuseDeletes(1));
    let results = store.delete_many(&keys(&NAMES)).await.expect("delete_many");
    let left = left(&store).await;
    assert!(
        results.iter().all(Result::is_ok) && left.is_empty(),
        "results {results:?}, left {left:?}"
    );
}

#[tokio::test]
async fn a_batch_the_policy_gives_up_on_leaves_each_key_transient_and_in_place() {
    let store = stored(&NAMES).await;
    store.inner().set(Script::DeletesAlwaysTransient);
    let results = store.delete_many(&keys(&NAMES)).await.expect("delete_many");
    let kept = left(&store).await.len();
    assert!(
        kept == NAMES.len()
            && results
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.is_transient())),
        "kept {kept}, results {results:?}"
    );
}
