//! The whole contract suite against moto 5.2.5, the S3 cross-check server,
//! started by this test; moto's gaps are declared limitations.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn s3_backend_passes_the_contract_suite_on_moto() {
    common::suite::on_moto().await;
}
