//! A resumable upload whose chunk requests fail: a fifth of them are
//! refused with 503 before they reach fake-gcs-server, and the upload
//! engine sends each again at the same offset.
//!
//! Only refusals: a chunk whose answer is lost after the server stored it
//! must be recovered by asking the session for its status (GCS: "Perform
//! resumable uploads", resuming an interrupted upload), which
//! fake-gcs-server answers by committing the partial object; see
//! `upload.rs`.

mod common;

use storage_conformance::fault_proxy::{Fault, FaultProxy, assert_stored_whole};
use storage_conformance::scripted_server::Reply;

const MIB: usize = 1024 * 1024;
const SEED: u64 = 0x5EED_0010;

/// GCS's answer when it sheds load (Cloud Storage, "HTTP status and error
/// codes": 503 `backendError`).
fn backend_error() -> Reply {
    Reply::status(503)
        .header("content-type", "application/json")
        .body(r#"{"error":{"code":503,"message":"Backend Error","errors":[{"reason":"backendError","message":"Backend Error"}]}}"#)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_upload_with_a_fifth_of_its_chunks_failing_is_stored_whole() {
    let server = common::start();
    let direct = common::create_bucket(&server, "chunk-faults").await;
    let proxy = FaultProxy::start(
        &server.endpoint,
        |request| request.method == "PUT" && request.has_query("upload_id"),
        0.2,
        SEED,
        vec![Fault::Refuse(backend_error())],
    )
    .expect("the proxy starts");
    let through_proxy = storage_gcs::GcsConfig::emulator(proxy.url(), "chunk-faults")
        .resumable(2 << 20, 2 << 20)
        .build()
        .expect("client");
    assert_stored_whole(
        &proxy,
        &through_proxy,
        &direct,
        "big/object",
        64 * MIB,
        SEED,
    )
    .await;
}
