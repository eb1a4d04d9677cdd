//! A staged-block upload whose Put Block requests fail: a fifth of them
//! are refused by Azurite's stand-in with 503 ServerBusy or have their
//! answer lost after the block was staged, and the upload engine sends each
//! again.

mod common;

use storage_conformance::fault_proxy::{Fault, FaultProxy, assert_stored_whole};
use storage_conformance::scripted_server::Reply;

const MIB: usize = 1024 * 1024;
const SEED: u64 = 0x5EED_0010;

/// Azure's answer when it sheds load (Azure Storage, "Blob service error
/// codes": `ServerBusy`, 503).
fn server_busy() -> Reply {
    Reply::status(503)
        .header("x-ms-error-code", "ServerBusy")
        .header("content-type", "application/xml")
        .body("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>The server is currently unable to receive requests. Please retry your request.</Message></Error>")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_upload_with_a_fifth_of_its_blocks_failing_is_stored_whole() {
    let server = common::start();
    let direct = common::create_container(&server, "block-faults").await;
    let proxy = FaultProxy::start(
        &server.endpoint,
        |request| {
            request.method == "PUT"
                && request.target.contains("comp=block")
                && !request.target.contains("comp=blocklist")
        },
        0.2,
        SEED,
        vec![Fault::Refuse(server_busy()), Fault::LoseAnswer],
    )
    .expect("the proxy starts");
    let through_proxy = storage_azure::AzureConfig::emulator(
        format!("{}/devstoreaccount1", proxy.url()),
        "block-faults",
    )
    .blocks(4 << 20, 4 << 20, 4)
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
