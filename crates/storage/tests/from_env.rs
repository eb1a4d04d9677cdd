//! `from_env` per cloud backend, with the variables set in a child process
//! (this test binary run again on one test, so nothing leaks into the
//! environment of the other tests): each child builds its backend from the
//! environment alone, then writes and reads through it, and through
//! `storage::open` with a URL that names only the bucket.

use std::time::Duration;

use storage::{BackendExt, open};
use storage_conformance::servers::{self, Lifetime, RunningServer, S3_ACCESS_KEY, S3_SECRET_KEY};

/// Set in the child: run the child's half of the test.
const CHILD: &str = "STORAGE_FROM_ENV_CHILD";

/// Runs `test` alone in a child process with `vars` set, and fails unless
/// it passes there.
fn in_child(test: &str, vars: &[(&str, String)]) {
    let exe = std::env::current_exe().expect("test binary");
    let mut command = std::process::Command::new(exe);
    command.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    // Only the variables given reach the child: none of the developer's.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if ["AWS_", "AZURE_", "GOOGLE_", "STORAGE_EMULATOR_HOST"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            command.env_remove(name);
        }
    }
    let mut child = command
        .env(CHILD, "1")
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("child test");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("child status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("child {test} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("child output");
    assert!(
        output.status.success(),
        "child {test} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The child really ran the test (a filter that matches nothing passes).
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "child {test} ran no test:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

async fn round_trip(store: &dyn storage::Backend, what: &str) {
    store
        .put_bytes("from-env", what.to_owned())
        .await
        .expect("put");
    assert_eq!(
        store.get_bytes("from-env").await.expect("get"),
        what.as_bytes()
    );
}

fn started(server: Result<RunningServer, servers::ServerError>) -> RunningServer {
    server.unwrap_or_else(|e| panic!("the test server did not start ({e})"))
}

#[tokio::test]
async fn s3_from_env() {
    if is_child() {
        let store = storage_s3::S3Config::from_env("fromenv")
            .build()
            .expect("build");
        round_trip(&store, "s3 config").await;
        let opened = open("s3://fromenv/").await.expect("open");
        round_trip(opened.as_ref(), "s3 url").await;
        return;
    }
    let server = started(servers::start_seaweedfs(
        &servers::tools_dir(),
        Lifetime::TiedToThisProcess,
    ));
    let admin = storage_s3::S3Config::new("fromenv")
        .endpoint(server.endpoint.clone())
        .path_style(true)
        .region("us-east-1")
        .credentials(S3_ACCESS_KEY, S3_SECRET_KEY, None)
        .build()
        .expect("admin");
    ready(|| admin.create_bucket()).await;
    in_child(
        "s3_from_env",
        &[
            // The S3-specific variable must win over the general one.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned()),
            ("AWS_ENDPOINT_URL_S3", server.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_S3_FORCE_PATH_STYLE", "true".into()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
        ],
    );
}

#[tokio::test]
async fn gcs_from_env() {
    if is_child() {
        let store = storage_gcs::GcsConfig::from_env("fromenv")
            .build()
            .expect("build");
        round_trip(&store, "gcs config").await;
        let opened = open("gs://fromenv").await.expect("open");
        round_trip(opened.as_ref(), "gcs url").await;
        return;
    }
    let server = started(servers::start_fake_gcs(
        &servers::tools_dir(),
        Lifetime::TiedToThisProcess,
    ));
    let admin = storage_gcs::GcsConfig::emulator(server.endpoint.clone(), "fromenv")
        .build()
        .expect("admin");
    ready(|| admin.create_bucket("test-project")).await;
    let host = server.endpoint.trim_start_matches("http://").to_owned();
    in_child("gcs_from_env", &[("STORAGE_EMULATOR_HOST", host)]);
}

#[tokio::test]
async fn azure_from_env() {
    if is_child() {
        let store = storage_azure::AzureConfig::from_env("fromenv")
            .expect("config")
            .build()
            .expect("build");
        round_trip(&store, "azure config").await;
        let opened = open("az://devstoreaccount1/fromenv").await.expect("open");
        round_trip(opened.as_ref(), "azure url").await;
        return;
    }
    let server = started(servers::start_azurite(
        &servers::tools_dir(),
        Lifetime::TiedToThisProcess,
    ));
    let blob_endpoint = format!("{}/devstoreaccount1", server.endpoint);
    let admin = storage_azure::AzureConfig::emulator(blob_endpoint.clone(), "fromenv")
        .build()
        .expect("admin");
    ready(|| admin.create_container()).await;
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={blob_endpoint};",
        storage_azure::EMULATOR_ACCOUNT,
        storage_azure::EMULATOR_KEY
    );
    in_child(
        "azure_from_env",
        &[("AZURE_STORAGE_CONNECTION_STRING", connection)],
    );
}

/// Runs `create` until it succeeds, for up to 30 s (the server may still
/// be starting).
async fn ready<F, Fut>(create: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = storage::Result<()>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match create().await {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() >= deadline => panic!("creating: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
