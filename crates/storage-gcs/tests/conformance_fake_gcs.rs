//! The whole contract suite against fake-gcs-server 1.54, through the
//! shared factory of `storage_conformance::cloud`. What the server cannot
//! honour is declared, with the reason, and reported as a limitation, never
//! as a pass.

use storage_conformance::cloud::GcsFactory;
use storage_conformance::{Filter, assert_no_failures, run, suites};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn gcs_backend_passes_the_contract_suite_on_fake_gcs_server() {
    let factory = GcsFactory::start().unwrap_or_else(|e| panic!("{e}"));
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
