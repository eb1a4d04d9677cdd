//! A 1 GiB upload from a file keeps the process's peak resident memory under
//! 128 MiB (it runs alone in this test binary, so the peak is its own):
//! a resumable upload holds two chunks at most.

mod common;

use storage_conformance::support::upload_stays_under;
use storage_core::Key;

const GIB: u64 = 1024 * 1024 * 1024;
const LIMIT_MIB: u64 = 128;

#[tokio::test(flavor = "multi_thread")]
async fn a_1_gib_upload_from_a_file_stays_under_128_mib() {
    let server = common::start();
    common::create_bucket(&server, "memory").await;
    // 16 MiB chunks: fake-gcs-server takes 113 s for this upload in 8 MiB
    // chunks and 70 s in 16 MiB chunks (the client holds two chunks).
    let store = common::config(&server, "memory", "")
        .resumable(16 << 20, 16 << 20)
        .build()
        .expect("client");
    let key = Key::new("one-gib").expect("key");
    upload_stays_under(&store, &key, GIB, LIMIT_MIB)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
}
