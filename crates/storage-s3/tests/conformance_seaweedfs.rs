//! The whole contract suite against SeaweedFS 4.48, the primary S3 test
//! server, started by this test.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "in the matrix of `cargo xtask conformance --all`, which `cargo xtask test` runs; alone: `--ignored`"]
async fn s3_backend_passes_the_contract_suite_on_seaweedfs() {
    common::suite::on_seaweedfs().await;
}
