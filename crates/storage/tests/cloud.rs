//! `open(url)` of the cloud schemes against the local servers (SeaweedFS,
//! Azurite, fake-gcs-server, installed by `cargo xtask servers install`):
//! the contract suite once through the facade per backend, presigned URLs
//! used with plain HTTP, and the causes `health()` reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use storage::{Backend, BackendExt, Error, PresignMethod, open};
use storage_conformance::servers::{self, Lifetime, RunningServer, S3_ACCESS_KEY, S3_SECRET_KEY};
use storage_conformance::{
    BackendFactory, Check, Declared, Filter, assert_no_failures, run, suites,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cloud {
    S3,
    Azure,
    Gcs,
}

fn start(cloud: Cloud) -> RunningServer {
    let tools = servers::tools_dir();
    let started = match cloud {
        Cloud::S3 => servers::start_seaweedfs(&tools, Lifetime::TiedToThisProcess),
        Cloud::Azure => servers::start_azurite(&tools, Lifetime::TiedToThisProcess),
        Cloud::Gcs => servers::start_fake_gcs(&tools, Lifetime::TiedToThisProcess),
    };
    started.unwrap_or_else(|e| panic!("{cloud:?} server did not start ({e})"))
}

/// The URL of `bucket` (a container on Azure) on a server at `endpoint`.
fn url(cloud: Cloud, endpoint: &str, bucket: &str) -> String {
    match cloud {
        Cloud::S3 => format!(
            "s3://{bucket}/?endpoint={endpoint}&region=us-east-1&path_style=true\
             &access_key_id={S3_ACCESS_KEY}&secret_access_key={S3_SECRET_KEY}"
        ),
        Cloud::Azure => format!(
            "az://devstoreaccount1/{bucket}?endpoint={endpoint}/devstoreaccount1&use_emulator=true"
        ),
        Cloud::Gcs => format!("gs://{bucket}?emulator={endpoint}"),
    }
}

/// Creates `bucket` with the backend crate's own call, retrying while the
/// server starts (up to 30 s).
async fn create_bucket(cloud: Cloud, server: &RunningServer, bucket: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = match cloud {
            Cloud::S3 => {
                storage_s3::S3Config::new(bucket)
                    .endpoint(server.endpoint.clone())
                    .path_style(true)
                    .region("us-east-1")
                    .credentials(S3_ACCESS_KEY, S3_SECRET_KEY, None)
                    .build()
                    .map_err(|e| e.to_string())?
                    .create_bucket()
                    .await
            }
            Cloud::Azure => {
                storage_azure::AzureConfig::emulator(
                    format!("{}/devstoreaccount1", server.endpoint),
                    bucket,
                )
                .build()
                .map_err(|e| e.to_string())?
                .create_container()
                .await
            }
            Cloud::Gcs => {
                storage_gcs::GcsConfig::emulator(server.endpoint.clone(), bucket)
                    .build()
                    .map_err(|e| e.to_string())?
                    .create_bucket("test-project")
                    .await
            }
        };
        match created {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(format!("creating {bucket}: {e}")),
        }
    }
}

/// A fresh bucket per check, opened through the facade.
struct Facade {
    cloud: Cloud,
    server: RunningServer,
    buckets: AtomicUsize,
}

#[async_trait]
impl BackendFactory for Facade {
    fn name(&self) -> &str {
        match self.cloud {
            Cloud::S3 => "s3:// (facade)",
            Cloud::Azure => "az:// (facade)",
            Cloud::Gcs => "gs:// (facade)",
        }
    }

    fn server(&self) -> Option<String> {
        Some(format!("{} {}", self.server.name, self.server.version))
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let bucket = format!("facade{}", self.buckets.fetch_add(1, Ordering::Relaxed));
        create_bucket(self.cloud, &self.server, &bucket).await?;
        let url = url(self.cloud, &self.server.endpoint, &bucket);
        open(&url).await.map_err(|e| format!("open({url}): {e}"))
    }

    fn limitation(&self, check: &Check) -> Option<Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}

async fn suite_passes(cloud: Cloud) {
    let factory = Facade {
        cloud,
        server: start(cloud),
        buckets: AtomicUsize::new(0),
    };
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_s3_urls() {
    suite_passes(Cloud::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_az_urls() {
    suite_passes(Cloud::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_gs_urls() {
    suite_passes(Cloud::Gcs).await;
}

/// Puts through a presigned PUT URL and reads back through a presigned
/// GET URL, with a plain HTTP client.
async fn presigned_urls_work_with_plain_http(cloud: Cloud) {
    let server = start(cloud);
    create_bucket(cloud, &server, "presign")
        .await
        .expect("bucket");
    let store = open(&url(cloud, &server.endpoint, "presign"))
        .await
        .expect("open");
    let key = "up/load.txt".parse().expect("key");
    let http = reqwest::Client::new();
    let put_url = store
        .presign(PresignMethod::Put, &key, Duration::from_secs(300))
        .await
        .expect("put url");
    let mut put = http.put(&put_url).body("through a URL");
    if cloud == Cloud::Azure {
        put = put.header("x-ms-blob-type", "BlockBlob");
    }
    let put = put.send().await.expect("PUT");
    assert!(put.status().is_success(), "PUT: {}", put.status());
    let get_url = store
        .presign(PresignMethod::Get, &key, Duration::from_secs(300))
        .await
        .expect("get url");
    let got = http.get(&get_url).send().await.expect("GET");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.text().await.expect("body"), "through a URL");
}

#[tokio::test]
async fn presigned_s3_urls_work_with_plain_http() {
    presigned_urls_work_with_plain_http(Cloud::S3).await;
}

#[tokio::test]
async fn presigned_azure_urls_work_with_plain_http() {
    presigned_urls_work_with_plain_http(Cloud::Azure).await;
}

/// fake-gcs-server takes no credentials, so an emulator store has no
/// service account key to sign with: `presign` says so. (Signed URLs name
/// `storage.googleapis.com`, which no local server answers.)
#[tokio::test]
async fn a_gcs_store_without_a_service_account_cannot_presign() {
    let store = open("gs://b?emulator=http://127.0.0.1:9")
        .await
        .expect("open");
    let key = "k".parse().expect("key");
    let url = store
        .presign(PresignMethod::Get, &key, Duration::from_secs(60))
        .await;
    assert!(matches!(url, Err(Error::Unsupported { .. })), "{url:?}");
}

/// An endpoint on which nothing listens: a port bound, then released.
fn silent_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn health_without_a_server_is_a_network_error(cloud: Cloud) {
    let store = open(&url(cloud, &silent_endpoint(), "any"))
        .await
        .expect("open");
    match store.health().await {
        Err(Error::Backend {
            transient: true,
            message,
            ..
        }) => assert!(message.starts_with("network:"), "{message}"),
        other => panic!("{cloud:?}: {other:?}"),
    }
}

#[tokio::test]
async fn health_without_an_s3_server_is_a_network_error() {
    health_without_a_server_is_a_network_error(Cloud::S3).await;
}

#[tokio::test]
async fn health_without_an_azure_server_is_a_network_error() {
    health_without_a_server_is_a_network_error(Cloud::Azure).await;
}

#[tokio::test]
async fn health_without_a_gcs_server_is_a_network_error() {
    health_without_a_server_is_a_network_error(Cloud::Gcs).await;
}

async fn health_of_a_missing_bucket_is_bucket_not_found(cloud: Cloud) {
    let server = start(cloud);
    // The server is up once a bucket can be made.
    create_bucket(cloud, &server, "present")
        .await
        .expect("bucket");
    let present = open(&url(cloud, &server.endpoint, "present"))
        .await
        .expect("open");
    present.health().await.expect("healthy");
    let missing = open(&url(cloud, &server.endpoint, "missing"))
        .await
        .expect("open");
    let health = missing.health().await;
    assert!(
        matches!(&health, Err(Error::BucketNotFound { bucket }) if bucket == "missing"),
        "{cloud:?}: {health:?}"
    );
}

#[tokio::test]
async fn health_of_a_missing_s3_bucket_is_bucket_not_found() {
    health_of_a_missing_bucket_is_bucket_not_found(Cloud::S3).await;
}

#[tokio::test]
async fn health_of_a_missing_azure_container_is_bucket_not_found() {
    health_of_a_missing_bucket_is_bucket_not_found(Cloud::Azure).await;
}

#[tokio::test]
async fn health_of_a_missing_gcs_bucket_is_bucket_not_found() {
    health_of_a_missing_bucket_is_bucket_not_found(Cloud::Gcs).await;
}

#[tokio::test]
async fn health_with_a_wrong_s3_secret_is_a_credentials_error() {
    let server = start(Cloud::S3);
    create_bucket(Cloud::S3, &server, "guarded")
        .await
        .expect("bucket");
    let wrong = url(Cloud::S3, &server.endpoint, "guarded").replace(
        &format!("secret_access_key={S3_SECRET_KEY}"),
        "secret_access_key=wrong",
    );
    let store = open(&wrong).await.expect("open");
    let health = store.health().await;
    assert!(
        matches!(
            health,
            Err(Error::PermissionDenied { .. } | Error::Unauthenticated { .. })
        ),
        "{health:?}"
    );
}

#[tokio::test]
async fn health_with_a_wrong_azure_key_is_a_credentials_error() {
    let server = start(Cloud::Azure);
    create_bucket(Cloud::Azure, &server, "guarded")
        .await
        .expect("container");
    // A well-formed key that is not the account's.
    let wrong_key = "A".repeat(86) + "==";
    let wrong = format!(
        "az://devstoreaccount1/guarded?endpoint={}/devstoreaccount1&access_key={wrong_key}",
        server.endpoint
    );
    let store = open(&wrong).await.expect("open");
    let health = store.health().await;
    assert!(
        matches!(
            health,
            Err(Error::PermissionDenied { .. } | Error::Unauthenticated { .. })
        ),
        "{health:?}"
    );
}

#[tokio::test]
async fn the_prefix_option_and_a_percent_encoded_path_place_keys_where_they_say() {
    let server = start(Cloud::S3);
    create_bucket(Cloud::S3, &server, "placed")
        .await
        .expect("bucket");
    let root = url(Cloud::S3, &server.endpoint, "placed");
    let in_path = root.replacen("placed/?", "placed/my%20logs/?", 1);
    open(&in_path)
        .await
        .expect("open")
        .put_bytes("k", "path")
        .await
        .expect("put");
    open(&format!("{root}&prefix=app/"))
        .await
        .expect("open")
        .put_bytes("k", "option")
        .await
        .expect("put");
    let bucket = open(&root).await.expect("open the bucket's root");
    assert_eq!(
        bucket.get_bytes("my logs/k").await.expect("get"),
        "path".as_bytes()
    );
    assert_eq!(
        bucket.get_bytes("app/k").await.expect("get"),
        "option".as_bytes()
    );
}

/// SigV4 signing is local: no server is needed to see the URL.
fn offline_s3(options: &str) -> String {
    format!(
        "s3://b/?endpoint=http://127.0.0.1:9&region=us-east-1&path_style=true\
         &access_key_id={S3_ACCESS_KEY}&secret_access_key={S3_SECRET_KEY}{options}"
    )
}

#[tokio::test]
async fn a_presigned_url_through_a_prefix_names_the_stored_key() {
    let store = open(&offline_s3("&prefix=p/")).await.expect("open");
    let url = store
        .presign(
            PresignMethod::Get,
            &"k".parse().expect("key"),
            Duration::from_secs(60),
        )
        .await
        .expect("url");
    assert!(url.starts_with("http://127.0.0.1:9/b/p/k?"), "{url}");
}

#[tokio::test]
async fn an_encrypted_store_refuses_to_presign() {
    let dir = tempfile::tempdir().expect("dir");
    let keyring = dir.path().join("keyring");
    std::fs::write(&keyring, format!("k1={}=\n", "A".repeat(43))).expect("keyring");
    let store = open(&offline_s3(&format!("&keyring_file={}", keyring.display())))
        .await
        .expect("open");
    let url = store
        .presign(
            PresignMethod::Put,
            &"k".parse().expect("key"),
            Duration::from_secs(60),
        )
        .await;
    assert!(matches!(url, Err(Error::Unsupported { .. })), "{url:?}");
}
