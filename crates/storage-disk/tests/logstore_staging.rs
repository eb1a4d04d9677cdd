//! LogStore lists 10,000 staged writes (with attachments beside half of
//! them) in pages of 100, each once, then finds them all again after
//! compaction and reopening.

use std::sync::Arc;

use storage_conformance::suites::staging::stage_many_and_list;
use storage_core::{Backend, StagedListOptions};
use storage_disk::LogStore;

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_staged_writes_are_listed_once_each_in_pages_of_100() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path()).await.expect("open");
    let listed = stage_many_and_list(Arc::new(store.clone()), 10_000, 100).await;
    assert!(listed.is_ok(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_writes_survive_compaction_and_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path()).await.expect("open");
    stage_many_and_list(Arc::new(store.clone()), 1_000, 1_000)
        .await
        .expect("staged");
    store.compact().await.expect("compact");
    store.close().await.expect("close");
    let reopened = LogStore::open(dir.path()).await.expect("reopen");
    let page = reopened
        .list_staged(&StagedListOptions::default())
        .await
        .expect("list_staged");
    assert_eq!(page.staged.len(), 1_000);
}
