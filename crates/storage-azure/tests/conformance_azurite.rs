//! The whole contract suite against Azurite 3.37, through the shared
//! factory of `storage_conformance::cloud`. What Azurite cannot honour is
//! declared, with the reason, and reported as a limitation, never as a
//! pass.

use storage_conformance::cloud::AzureFactory;
use storage_conformance::{Filter, assert_no_failures, run, suites};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn azure_backend_passes_the_contract_suite_on_azurite() {
    let factory = AzureFactory::start().unwrap_or_else(|e| panic!("{e}"));
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
