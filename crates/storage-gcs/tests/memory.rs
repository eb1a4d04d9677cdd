//! A 1 GiB upload from a file keeps the process's peak resident memory under
//! 128 MiB (it runs alone in this test binary, so the peak is its own):
//! a resumable upload holds two chunks at most.

mod common;

use std::time::Instant;

use storage_core::{Backend, Body, Key, PutOptions};

const GIB: u64 = 1024 * 1024 * 1024;
const LIMIT_MIB: u64 = 128;

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1_gib_upload_from_a_file_stays_under_128_mib() {
    let server = common::start();
    common::create_bucket(&server, "memory").await;
    // 16 MiB chunks: fake-gcs-server copies the object so far on every
    // chunk, so small chunks make the server, not this client, slow.
    let store = common::config(&server, "memory", "")
        .resumable(16 << 20, 16 << 20)
        .build()
        .await
        .expect("client");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    // A sparse file: reads return zeros without using disk space.
    file.as_file().set_len(GIB).expect("size the file");
    let before = peak_rss_mib();
    let started = Instant::now();
    let key = Key::new("one-gib").expect("key");
    let body = Body::file(file.path()).await.expect("file body");
    let meta = store
        .put(&key, body, PutOptions::default())
        .await
        .expect("upload");
    let secs = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    println!("1 GiB upload: {secs:.1} s, peak RSS {peak} MiB (before the upload: {before} MiB)");
    assert_eq!(meta.size, GIB);
    assert_eq!(store.head(&key).await.expect("head").size, GIB);
    assert!(
        peak < LIMIT_MIB,
        "peak resident memory {peak} MiB ≥ {LIMIT_MIB} MiB"
    );
}
