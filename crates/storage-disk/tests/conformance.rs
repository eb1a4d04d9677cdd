//! The whole contract suite against `FsBackend`, each check in a fresh
//! directory.

use std::sync::Arc;

use storage_conformance::{Filter, FnFactory, assert_no_failures, run, suites};
use storage_core::Backend;
use storage_disk::FsBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn fs_backend_passes_the_contract_suite() {
    let root = tempfile::tempdir().expect("temporary directory");
    let base = root.path().to_path_buf();
    let factory = FnFactory::new("fs", move |check: String| {
        let dir = base.join(check.replace('/', "-"));
        async move {
            let backend = FsBackend::new(dir).map_err(|e| e.to_string())?;
            Ok(Arc::new(backend) as Arc<dyn Backend>)
        }
    });
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
