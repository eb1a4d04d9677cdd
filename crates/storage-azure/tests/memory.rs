//! A 1 GiB upload from a file keeps the process's peak resident memory under
//! 128 MiB (it runs alone in this test binary, so the peak is its own).

mod common;

use storage_conformance::support::upload_from_a_sparse_file;
use storage_core::Key;

const GIB: u64 = 1024 * 1024 * 1024;
const LIMIT_MIB: u64 = 128;

#[tokio::test(flavor = "multi_thread")]
async fn a_1_gib_upload_from_a_file_stays_under_128_mib() {
    let server = common::start();
    let store = common::create_container(&server, "memory").await;
    let key = Key::new("one-gib").expect("key");
    let figures = upload_from_a_sparse_file(&store, &key, GIB)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    println!(
        "1 GiB upload: {:.1} s, peak RSS {} MiB (before the upload: {} MiB)",
        figures.seconds, figures.peak_after_mib, figures.peak_before_mib
    );
    assert!(
        figures.peak_after_mib < LIMIT_MIB,
        "peak resident memory {} MiB ≥ {LIMIT_MIB} MiB",
        figures.peak_after_mib
    );
}
