//! Interoperability with an independent client: Python's boto3 (installed
//! in the tools venv) reads what storage-s3 wrote, storage-s3 reads what
//! boto3 wrote, and presigned URLs work from plain HTTP (urllib).

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use storage_conformance::servers::{S3_ACCESS_KEY, S3_SECRET_KEY, tools_dir};
use storage_core::PresignMethod;
use storage_core::{Backend, BackendExt, Body, Key, Metadata, PutOptions};

const SCRIPT: &str = r#"
import hashlib, json, sys, urllib.request
import boto3
op, endpoint, bucket, key = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=sys.argv[5], aws_secret_access_key=sys.argv[6])
if op == "read":
    o = s3.get_object(Bucket=bucket, Key=key)
    body = o["Body"].read()
    print(json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "len": len(body),
                      "metadata": o["Metadata"], "content_type": o["ContentType"]}))
elif op == "write":
    body = bytes(range(256)) * 4000
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-test",
                  Metadata={"written-by": "boto3", "n": "7"})
    print(json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "len": len(body)}))
elif op == "fetch":
    body = urllib.request.urlopen(sys.argv[7]).read()
    print(json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "len": len(body)}))
elif op == "upload":
    req = urllib.request.Request(sys.argv[7], data=b"via presigned PUT", method="PUT")
    print(json.dumps({"status": urllib.request.urlopen(req).status}))
"#;

fn python(op: &str, endpoint: &str, bucket: &str, key: &str, url: &str) -> serde_json::Value {
    let python = tools_dir().join("venv").join("bin").join("python");
    let output = Command::new(python)
        .args([
            "-c",
            SCRIPT,
            op,
            endpoint,
            bucket,
            key,
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
            url,
        ])
        .output()
        .expect("run python (cargo xtask servers install)");
    assert!(
        output.status.success(),
        "boto3 {op} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json from the script")
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_and_storage_s3_read_each_others_objects() {
    let server = common::start(common::Server::SeaweedFs);
    let store = common::create_bucket(&server, "interop").await;
    let endpoint = server.endpoint.clone();

    // storage-s3 writes, boto3 reads: one single-part and one multipart object.
    for (name, len) in [
        ("ours/small", 300_000usize),
        ("ours/multipart", 20 * 1024 * 1024),
    ] {
        let data = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let options = PutOptions {
            content_type: Some("text/csv".into()),
            metadata: Metadata::from([("owner".to_owned(), "storage-s3".to_owned())]),
            ..Default::default()
        };
        store
            .put(
                &Key::new(name).expect("key"),
                Body::from(data.clone()),
                options,
            )
            .await
            .expect("put");
        let seen = python("read", &endpoint, "interop", name, "");
        assert_eq!(seen["sha256"], sha256_hex(&data), "{name}: bytes differ");
        assert_eq!(seen["content_type"], "text/csv", "{name}");
        assert_eq!(seen["metadata"]["owner"], "storage-s3", "{name}");
    }

    // boto3 writes, storage-s3 reads.
    let written = python("write", &endpoint, "interop", "theirs/object", "");
    let key = Key::new("theirs/object").expect("key");
    let got = store.get_bytes(&key).await.expect("read boto3's object");
    assert_eq!(written["sha256"], sha256_hex(&got));
    let head = store.head(&key).await.expect("head");
    assert_eq!(head.content_type.as_deref(), Some("application/x-test"));
    assert_eq!(
        head.metadata.get("written-by").map(String::as_str),
        Some("boto3")
    );
    assert_eq!(head.metadata.get("n").map(String::as_str), Some("7"));

    // Presigned URLs from plain HTTP.
    let url = store
        .presign(PresignMethod::Get, &key, Duration::from_secs(60))
        .await
        .expect("presign");
    let fetched = python("fetch", &endpoint, "interop", "-", &url);
    assert_eq!(fetched["sha256"], sha256_hex(&got));
    let target = Key::new("uploaded/by-url").expect("key");
    let url = store
        .presign(PresignMethod::Put, &target, Duration::from_secs(60))
        .await
        .expect("presign put");
    let uploaded = python("upload", &endpoint, "interop", "-", &url);
    assert_eq!(uploaded["status"], 200);
    assert_eq!(
        store.get_bytes(&target).await.expect("read"),
        "via presigned PUT"
    );
}
