//! The memory backend lists 10,000 staged writes (with attachments beside
//! half of them) in pages of 100, each once.

use std::sync::Arc;

use storage_conformance::suites::staging::stage_many_and_list;
use storage_core::MemoryBackend;

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_staged_writes_are_listed_once_each_in_pages_of_100() {
    let listed = stage_many_and_list(Arc::new(MemoryBackend::new()), 10_000, 100).await;
    assert!(listed.is_ok(), "{listed:?}");
}
