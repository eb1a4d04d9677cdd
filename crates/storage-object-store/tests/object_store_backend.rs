//! Our contract suite through `ObjectStoreBackend` over object_store's
//! `InMemory` and `LocalFileSystem`: every check their capabilities claim
//! passes (the rest are reported as not run, with the capability missing).

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use storage_conformance::{Filter, FnFactory, assert_no_failures, run, suites};
use storage_core::Backend;
use storage_object_store::{
    ObjectStoreBackend, in_memory_capabilities, local_file_system_capabilities,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all` (row os-memory); alone: `--ignored`"]
async fn object_store_in_memory_passes_what_it_claims() {
    let factory = FnFactory::new("os-memory", |_check| async {
        let store = Arc::new(InMemory::new());
        Ok(Arc::new(ObjectStoreBackend::new(
            store,
            "os-memory",
            in_memory_capabilities(),
        )) as Arc<dyn Backend>)
    });
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all` (row os-fs); alone: `--ignored`"]
async fn object_store_local_file_system_passes_what_it_claims() {
    let root = tempfile::tempdir().expect("temporary directory");
    let base = root.path().to_path_buf();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let factory = FnFactory::new("os-fs", move |_check| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!("check-{n}"));
        async move {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| e.to_string())?;
            Ok(Arc::new(ObjectStoreBackend::new(
                Arc::new(store),
                "os-fs",
                local_file_system_capabilities(),
            )) as Arc<dyn Backend>)
        }
    });
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
