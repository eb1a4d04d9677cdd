//! Linearizability with eight tasks (the suite's check runs four, on every
//! backend and through injected faults): recorded concurrent histories of
//! gets, overwrites, creates, compare-and-swaps and deletes on a few keys
//! must pass the Wing–Gong checker, on memory, LogStore, one `FsBackend`
//! and two `FsBackend` handles on one directory (as two processes would
//! open it: their compare-and-swap is decided under the same file locks).

use std::sync::Arc;

use storage_conformance::suites::concurrency::check_random_history;
use storage_core::{Backend, MemoryBackend};
use storage_disk::{FsBackend, LogStore};

const TASKS: usize = 8;
const OPERATIONS: usize = 100;
const KEYS: usize = 3;
const SEEDS: [u64; 3] = [1, 2, 3];

async fn check(name: &str, seed: u64, handles: &[Arc<dyn Backend>]) {
    if let Err(failure) = check_random_history(handles, TASKS, OPERATIONS, KEYS, seed).await {
        panic!("{name}, seed {seed}: {}", failure.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_linearizable() {
    for seed in SEEDS {
        // A history starts from empty keys.
        let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        check("memory", seed, &[store]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logstore_is_linearizable() {
    for seed in SEEDS {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = LogStore::open(dir.path()).await.expect("open");
        check("LogStore", seed, &[Arc::new(store.clone())]).await;
        store.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fs_backend_is_linearizable() {
    for seed in SEEDS {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn Backend> = Arc::new(FsBackend::new(dir.path()).expect("open"));
        check("FsBackend", seed, &[store]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fs_backend_handles_on_one_directory_are_linearizable() {
    for seed in SEEDS {
        let dir = tempfile::tempdir().expect("temporary directory");
        let handles: Vec<Arc<dyn Backend>> = (0..2)
            .map(|_| Arc::new(FsBackend::new(dir.path()).expect("open")) as Arc<dyn Backend>)
            .collect();
        check("two FsBackend handles", seed, &handles).await;
    }
}
