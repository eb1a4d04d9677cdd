//! The whole contract suite against `MemoryBackend`.

use std::sync::Arc;

use storage_conformance::{Filter, FnFactory, assert_no_failures, run, suites};
use storage_core::{Backend, MemoryBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn memory_backend_passes_the_contract_suite() {
    let factory = FnFactory::new("memory", |_check| async {
        Ok(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
    });
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
