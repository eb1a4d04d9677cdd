//! The whole contract suite against `LogStore`, each check in a fresh
//! directory, with small segments so that reads hit sealed, memory-mapped
//! segments and large values go to blob files. The suite with default
//! options is in `logstore_conformance_defaults.rs`: one suite per test
//! binary, since the bounded-memory check measures the whole process.

use std::sync::Arc;

use storage_conformance::{Filter, FnFactory, assert_no_failures, run, suites};
use storage_core::Backend;
use storage_disk::{LogStore, LogStoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logstore_passes_the_contract_suite() {
    let root = tempfile::tempdir().expect("temporary directory");
    let base = root.path().to_path_buf();
    let factory = FnFactory::new("logstore", move |check: String| {
        let dir = base.join(check.replace('/', "-"));
        async move {
            let options = LogStoreOptions {
                segment_bytes: 256 * 1024,
                large_value_bytes: 128 * 1024,
                ..Default::default()
            };
            let store = LogStore::open_with(dir, options)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(store) as Arc<dyn Backend>)
        }
    });
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
