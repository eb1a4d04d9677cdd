//! Our contract suite through `ObjectStoreBackend` over object_store's
//! `InMemory`: every check its capabilities claim passes (the rest are
//! reported as not run, with the capability missing). `LocalFileSystem`,
//! `AmazonS3` and `MicrosoftAzure` are the peer rows of `cargo xtask
//! conformance --peers`, where their differences from the contract are
//! listed check by check.

use std::sync::Arc;

use object_store::memory::InMemory;
use storage_conformance::{Filter, FnFactory, assert_no_failures, run, suites};
use storage_core::Backend;
use storage_object_store::{ObjectStoreBackend, in_memory_capabilities};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --peers` (row os-memory); alone: `--ignored`"]
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
