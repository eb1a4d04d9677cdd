//! The whole contract suite against `LogStore` with its default options,
//! each check in a fresh directory (its own test binary: the bounded-memory
//! check measures the whole process).

use std::sync::Arc;

use storage_conformance::{Filter, FnFactory, assert_no_failures, run, suites};
use storage_core::Backend;
use storage_disk::LogStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn logstore_with_default_options_passes_the_contract_suite() {
    let root = tempfile::tempdir().expect("temporary directory");
    let base = root.path().to_path_buf();
    let factory = FnFactory::new("logstore", move |check: String| {
        let dir = base.join(check.replace('/', "-"));
        async move {
            let store = LogStore::open(dir).await.map_err(|e| e.to_string())?;
            Ok(Arc::new(store) as Arc<dyn Backend>)
        }
    });
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
