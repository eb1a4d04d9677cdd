//! Two `FsBackend` handles on one directory (as two processes would open
//! it) give linearizable histories: their compare-and-swap is decided under
//! the same file locks, so neither can see or overwrite a version the other
//! has not committed. One handle is the matrix's
//! `concurrency/linearizability` check.

use std::sync::Arc;

use storage_conformance::suites::concurrency::check_random_history;
use storage_core::Backend;
use storage_disk::FsBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_directory_are_linearizable() {
    for seed in [1, 2, 3] {
        // A history starts from empty keys.
        let dir = tempfile::tempdir().expect("temporary directory");
        let handles: Vec<Arc<dyn Backend>> = (0..2)
            .map(|_| Arc::new(FsBackend::new(dir.path()).expect("open")) as Arc<dyn Backend>)
            .collect();
        if let Err(failure) = check_random_history(&handles, 8, 100, 3, seed).await {
            panic!("seed {seed}: {}", failure.0);
        }
    }
}
