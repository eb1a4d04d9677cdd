//! A multipart upload whose part requests fail: a fifth of the UploadPart
//! requests to SeaweedFS are refused with 503 SlowDown or have their answer
//! lost after the part was stored, and the upload engine sends each again.

mod common;

use storage_conformance::fault_proxy::{Fault, FaultProxy, assert_stored_whole};
use storage_conformance::scripted_server::Reply;

const MIB: usize = 1024 * 1024;
const SEED: u64 = 0x5EED_0010;

/// S3's answer when it sheds load (S3 API, "Error responses": `SlowDown`).
fn slow_down() -> Reply {
    Reply::status(503)
        .header("content-type", "application/xml")
        .body("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_upload_with_a_fifth_of_its_parts_failing_is_stored_whole() {
    let server = common::start(common::Server::SeaweedFs);
    let direct = common::create_bucket(&server, "part-faults").await;
    let proxy = FaultProxy::start(
        &server.endpoint,
        |request| request.method == "PUT" && request.has_query("partNumber"),
        0.2,
        SEED,
        vec![Fault::Refuse(slow_down()), Fault::LoseAnswer],
    )
    .expect("the proxy starts");
    let through_proxy = common::config(&server, "part-faults", "")
        .endpoint(proxy.url())
        .multipart(5 << 20, 5 << 20, 4)
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
