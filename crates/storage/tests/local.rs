//! `open(url)` of the embedded schemes, with the contract suite run once
//! through the facade per backend, and the layers the options add.

use std::sync::Arc;

use async_trait::async_trait;
use storage::{Backend, BackendExt, Error, open};
use storage_conformance::{
    BackendFactory, Check, Declared, Filter, assert_no_failures, prefix_limitation, run, suites,
};

/// A fresh store per check, opened from `{url}` with `{dir}` replaced by a
/// fresh directory.
struct Facade {
    name: &'static str,
    url: &'static str,
    scratch: tempfile::TempDir,
    prefix_len: usize,
}

impl Facade {
    fn new(name: &'static str, url: &'static str, prefix_len: usize) -> Self {
        Facade {
            name,
            url,
            scratch: tempfile::tempdir().expect("scratch directory"),
            prefix_len,
        }
    }
}

#[async_trait]
impl BackendFactory for Facade {
    fn name(&self) -> &str {
        self.name
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let dir = self.scratch.path().join(check.replace('/', "-"));
        let url = self.url.replace("{dir}", &dir.display().to_string());
        open(&url).await.map_err(|e| format!("open({url}): {e}"))
    }

    fn limitation(&self, check: &Check) -> Option<Declared> {
        prefix_limitation(self.prefix_len, check)
    }
}

async fn suite_passes(factory: Facade) {
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_memory_with_a_prefix() {
    suite_passes(Facade::new(
        "memory://?prefix",
        "memory://?prefix=tenant/",
        "tenant/".len(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_file() {
    suite_passes(Facade::new("file://", "file://{dir}", 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_logstore_with_retry() {
    suite_passes(Facade::new(
        "logstore://?retry",
        "logstore://{dir}?retry=true",
        0,
    ))
    .await;
}

#[tokio::test]
async fn a_keyring_option_encrypts_what_the_store_holds() {
    let dir = tempfile::tempdir().expect("dir");
    let keyring = dir.path().join("keyring");
    // One 32-byte KEK, `k1`, in the text form of `Keyring::from_text`.
    std::fs::write(&keyring, format!("k1={}=\n", "A".repeat(43))).expect("keyring file");
    let url = format!("file://{}", dir.path().join("data").display());
    let encrypted = open(&format!("{url}?keyring_file={}", keyring.display()))
        .await
        .expect("open encrypted");
    encrypted
        .put_bytes("secret.txt", "attack at dawn")
        .await
        .expect("put");
    let plain = open(&url).await.expect("open plain");
    let stored = plain.get_bytes("secret.txt").await.expect("raw read");
    assert!(
        !stored
            .windows(b"attack at dawn".len())
            .any(|w| w == b"attack at dawn"),
        "the plaintext is in the stored object"
    );
    assert_eq!(
        encrypted.get_bytes("secret.txt").await.expect("read"),
        "attack at dawn".as_bytes()
    );
}

#[tokio::test]
async fn a_missing_keyring_variable_is_an_invalid_argument() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!(
        "file://{}?keyring_env=STORAGE_FACADE_TEST_UNSET",
        dir.path().display()
    );
    let opened = open(&url).await;
    assert!(
        matches!(&opened, Err(Error::InvalidArgument { message }) if message.contains("STORAGE_FACADE_TEST_UNSET")),
        "{opened:?}"
    );
}

#[tokio::test]
async fn health_of_a_file_store_whose_root_is_gone_is_bucket_not_found() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("root");
    let store = open(&format!("file://{}", root.display()))
        .await
        .expect("open");
    store.health().await.expect("healthy while the root exists");
    std::fs::remove_dir_all(&root).expect("remove root");
    let health = store.health().await;
    assert!(
        matches!(health, Err(Error::BucketNotFound { .. })),
        "{health:?}"
    );
}

#[tokio::test]
async fn a_bad_layer_option_fails_before_the_store_is_touched() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("never-made");
    let opened = open(&format!("file://{}?prefix=no-slash", root.display())).await;
    assert!(
        matches!(opened, Err(Error::InvalidArgument { .. })),
        "{opened:?}"
    );
    assert!(!root.exists(), "the store's directory was made");
}

#[tokio::test]
async fn presign_options_give_a_file_store_local_presigned_urls() {
    let dir = tempfile::tempdir().expect("dir");
    let base = "http://127.0.0.1:8080/files";
    let url = format!("file://{}?presign_base={base}", dir.path().display());
    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let store = storage::open_with(&url, [("presign_secret", secret)])
        .await
        .expect("open");
    assert!(store.capabilities().presigned_urls);
    let key = storage_core::Key::new("a.txt").expect("key");
    let signed = store
        .presign(
            storage_core::PresignMethod::Put,
            &key,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("presigned");
    // What the application's server does with the same base and secret.
    let verifier = storage_core::presign::LocalPresigner::new(base, secret).expect("verifier");
    let target = signed
        .strip_prefix("http://127.0.0.1:8080")
        .expect("under the base");
    let verified = verifier.verify("PUT", target, std::time::SystemTime::now());
    assert_eq!(verified.ok(), Some(key));
}

#[tokio::test]
async fn presign_options_are_refused_half_given_or_with_a_prefix() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!(
        "file://{}?presign_base=http://127.0.0.1:8080/files",
        dir.path().display()
    );
    let half = storage::open(&url).await.map(|_| ());
    assert!(
        matches!(&half, Err(Error::InvalidArgument { message }) if message.contains("presign_secret")),
        "{half:?}"
    );
    let secret = ("presign_secret", "0123456789abcdef0123456789abcdef");
    let prefixed = storage::open_with(&format!("{url}&prefix=tenant/"), [secret])
        .await
        .map(|_| ());
    assert!(
        matches!(&prefixed, Err(Error::InvalidArgument { message }) if message.contains("exclude each other")),
        "{prefixed:?}"
    );
}
