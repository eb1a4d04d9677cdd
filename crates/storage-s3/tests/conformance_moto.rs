//! The whole contract suite against moto 5.2.5, the S3 cross-check server, through the shared factory of
//! `storage_conformance::cloud`; the server's gaps are declared
//! limitations. Each server has its own test binary, since one check
//! measures this process's memory.

use storage_conformance::cloud::{S3Factory, S3Server};
use storage_conformance::{Filter, assert_no_failures, run, suites};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn s3_backend_passes_the_contract_suite_on_moto() {
    let factory = S3Factory::start(S3Server::Moto, true).unwrap_or_else(|e| panic!("{e}"));
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
