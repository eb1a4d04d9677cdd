//! `cargo xtask conformance --backend s3|azure|gcs --endpoint URL --bucket
//! NAME`: the contract suite against a real account, opt-in.
//!
//! Credentials come from the environment, as each service's own tools read
//! them: the AWS chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
//! `AWS_PROFILE`, web identity, container credentials) and `AWS_REGION`;
//! `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or
//! `AZURE_STORAGE_SAS_TOKEN`, or `AZURE_STORAGE_CONNECTION_STRING`;
//! `GOOGLE_APPLICATION_CREDENTIALS`. Without them the run is skipped, and
//! says so. The bucket (or container) must exist; each check writes under a
//! prefix of its own (`storage-smoke-<time>/<n>/`), and everything under the
//! run's prefix is deleted at the end. Every backend is wrapped in `Retry`
//! (the default policy), since real services shed load with transient
//! errors. Checks that need a second bucket, wrong credentials or a view
//! of the stored bytes are not run (no hooks).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::TryStreamExt;
use storage_conformance::BackendFactory;
use storage_core::{Backend, BackendExt, ListOptions};

/// A real account's bucket and the run's prefix in it.
pub struct RealAccount {
    name: String,
    endpoint: String,
    bucket: String,
    run: String,
    checks: AtomicUsize,
}

/// Why a run against `name` cannot find credentials, if it cannot.
fn missing_credentials(name: &str) -> Option<&'static str> {
    let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
    let found = match name {
        "s3" => [
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ]
        .iter()
        .any(|v| set(v)),
        "azure" => {
            set("AZURE_STORAGE_CONNECTION_STRING")
                || ((set("AZURE_STORAGE_ACCOUNT") || set("AZURE_STORAGE_ACCOUNT_NAME"))
                    && (set("AZURE_STORAGE_KEY")
                        || set("AZURE_STORAGE_ACCOUNT_KEY")
                        || set("AZURE_STORAGE_SAS_TOKEN")))
        }
        "gcs" => set("GOOGLE_APPLICATION_CREDENTIALS"),
        _ => false,
    };
    (!found).then_some(match name {
        "s3" => "no AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity or container credentials)",
        "azure" => "no Azure credentials in the environment (AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN)",
        "gcs" => "no Google credentials in the environment (GOOGLE_APPLICATION_CREDENTIALS)",
        _ => "only s3, azure and gcs run against real accounts",
    })
}

impl RealAccount {
    /// The account for backend `name`, or why the run is skipped.
    pub fn new(name: &str, endpoint: String, bucket: String) -> Result<Self, &'static str> {
        if let Some(reason) = missing_credentials(name) {
            return Err(reason);
        }
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(RealAccount {
            name: name.to_owned(),
            endpoint,
            bucket,
            run: format!("storage-smoke-{seconds}/"),
            checks: AtomicUsize::new(0),
        })
    }

    /// A backend on the bucket with every key under `prefix`.
    async fn backend(&self, prefix: &str) -> storage_core::Result<Arc<dyn Backend>> {
        let bare: Arc<dyn Backend> = match self.name.as_str() {
            "s3" => {
                let mut config = storage_s3::S3Config::new(&self.bucket).prefix(prefix);
                if !self.endpoint.is_empty() {
                    config = config.endpoint(&self.endpoint);
                }
                if let Ok(region) = std::env::var("AWS_REGION") {
                    config = config.region(region);
                }
                Arc::new(config.build()?)
            }
            "azure" => {
                let mut config = storage_azure::AzureConfig::from_env(&self.bucket)?.prefix(prefix);
                if !self.endpoint.is_empty() {
                    config = config.endpoint(&self.endpoint);
                }
                Arc::new(config.build()?)
            }
            _ => {
                let mut config = storage_gcs::GcsConfig::new(&self.bucket).prefix(prefix);
                if !self.endpoint.is_empty() {
                    config = config.endpoint(&self.endpoint);
                }
                Arc::new(config.build()?)
            }
        };
        Ok(Arc::new(storage_retry::Retry::new(bare)))
    }

    /// Deletes every object under the run's prefix; returns how many.
    pub async fn clean_up(&self) -> storage_core::Result<usize> {
        let store = self.backend(&self.run).await?;
        let keys: Vec<storage_core::Key> = store
            .list_all(ListOptions {
                reserved: true,
                ..ListOptions::default()
            })
            .map_ok(|meta| meta.key)
            .try_collect()
            .await?;
        for key in &keys {
            store.delete(key, Default::default()).await?;
        }
        Ok(keys.len())
    }
}

#[async_trait]
impl BackendFactory for RealAccount {
    fn name(&self) -> &str {
        &self.name
    }

    fn server(&self) -> Option<String> {
        Some(format!(
            "real account: {} bucket {}, prefix {}",
            match self.endpoint.as_str() {
                "" => "default endpoint,",
                endpoint => endpoint,
            },
            self.bucket,
            self.run
        ))
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        self.backend(&format!("{}{n:03}/", self.run))
            .await
            .map_err(|e| e.to_string())
    }
}
