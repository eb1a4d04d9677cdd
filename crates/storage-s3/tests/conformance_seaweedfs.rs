//! The whole contract suite against SeaweedFS 4.48, the primary S3 test
//! server, started by this test.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_backend_passes_the_contract_suite_on_seaweedfs() {
    common::suite::on_seaweedfs().await;
}
