//! The cloud backends' factories for `cargo xtask conformance`: a test
//! server started here (SeaweedFS or moto for S3, Azurite, fake-gcs-server)
//! and a fresh bucket or container per check, with the hooks of
//! [`crate::hooks`]. Built only with xtask's `full` feature.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use storage_azure::AzureConfig;
use storage_conformance::servers::{self, Lifetime, RunningServer};
use storage_conformance::{BackendFactory, Check, Hooks};
use storage_core::Backend;
use storage_gcs::GcsConfig;
use storage_s3::S3Config;

use crate::hooks;

/// The factory of the cloud backend `name` (`s3`, `s3-moto`, `azure` or
/// `gcs`), its server started; `retried` as in
/// [`crate::backends::factory`].
pub fn factory(name: &str, retried: bool) -> anyhow::Result<Box<dyn BackendFactory>> {
    match name {
        "s3" | "s3-moto" => {
            let tools = servers::tools_dir();
            servers::install(&tools)?;
            eprintln!("starting the {name} test server ...");
            let server = if name == "s3" {
                servers::start_seaweedfs(&tools, Lifetime::TiedToThisProcess)?
            } else {
                servers::start_moto(&tools, Lifetime::TiedToThisProcess)?
            };
            Ok(Box::new(S3 {
                name: name.to_owned(),
                wrap_retry: !retried,
                server,
                buckets: AtomicUsize::new(0),
                stores: Stores::default(),
            }))
        }
        "azure" => {
            let tools = servers::tools_dir();
            servers::install(&tools)?;
            eprintln!("starting the azure test server ...");
            let server = servers::start_azurite(&tools, Lifetime::TiedToThisProcess)?;
            Ok(Box::new(Azure {
                server,
                containers: AtomicUsize::new(0),
                stores: Stores::default(),
            }))
        }
        "gcs" => {
            let tools = servers::tools_dir();
            servers::install(&tools)?;
            eprintln!("starting the gcs test server ...");
            let server = servers::start_fake_gcs(&tools, Lifetime::TiedToThisProcess)?;
            Ok(Box::new(Gcs {
                server,
                buckets: AtomicUsize::new(0),
                stores: Stores::default(),
            }))
        }
        other => anyhow::bail!("{other:?} is not a cloud backend"),
    }
}

/// An S3 test server, and a fresh bucket on it per check.
struct S3 {
    name: String,
    /// Whether suites the server passes only through `Retry`
    /// ([`servers::needs_retry`]) get one from this factory.
    wrap_retry: bool,
    server: RunningServer,
    buckets: AtomicUsize,
    /// The bucket of each check, for its hooks.
    stores: Stores,
}

/// The bucket or container made for each check.
type Stores = std::sync::Mutex<std::collections::HashMap<String, String>>;

fn remember(stores: &Stores, check: &str, store: String) {
    stores
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(check.to_owned(), store);
}

fn recall(stores: &Stores, check: &str) -> Option<String> {
    stores
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(check)
}

fn s3_config(server: &RunningServer, bucket: &str, secret: &str) -> S3Config {
    S3Config::new(bucket)
        .endpoint(server.endpoint.clone())
        .path_style(true)
        .region("us-east-1")
        .credentials(servers::S3_ACCESS_KEY, secret, None)
}

#[async_trait]
impl BackendFactory for S3 {
    fn name(&self) -> &str {
        &self.name
    }

    fn server(&self) -> Option<String> {
        Some(servers::describe(&self.server))
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let bucket = format!("check-{:03}", self.buckets.fetch_add(1, Ordering::Relaxed));
        let backend = s3_config(&self.server, &bucket, servers::S3_SECRET_KEY)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &bucket, || backend.create_bucket()).await?;
        remember(&self.stores, check, bucket);
        let suite = check.split('/').next().unwrap_or_default();
        if self.wrap_retry && servers::needs_retry(self.server.name, suite).is_some() {
            let policy = storage_retry::RetryPolicy::default()
                .with_base_delay(Duration::from_millis(10))
                .with_cap_delay(Duration::from_millis(200));
            return Ok(Arc::new(storage_retry::Retry::with_policy(backend, policy)));
        }
        Ok(Arc::new(backend))
    }

    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let Some(bucket) = recall(&self.stores, check) else {
            return Hooks::default();
        };
        let _ = backend;
        let config = s3_config(&self.server, &bucket, "not-the-secret");
        let missing = s3_config(
            &self.server,
            &format!("missing-{bucket}"),
            servers::S3_SECRET_KEY,
        );
        Hooks {
            // No tamper hook: the server verifies x-amz-checksum-sha256 on
            // write (see `crate::hooks`), so the check is unsupported.
            tamper: None,
            missing_bucket: Some(hooks::make_backend(move || {
                let missing = missing.clone();
                async move { Ok(Arc::new(missing.build().await?) as Arc<dyn Backend>) }
            })),
            wrong_credentials: Some(hooks::make_backend(move || {
                let config = config.clone();
                async move { Ok(Arc::new(config.build().await?) as Arc<dyn Backend>) }
            })),
            // Cloud clients keep no state of their own to reopen.
            reopen: None,
            below: None,
        }
    }

    fn limitation(&self, check: &Check) -> Option<storage_conformance::Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}

/// Azurite, and a fresh container on it per check.
struct Azure {
    server: RunningServer,
    containers: AtomicUsize,
    /// The container of each check, for its hooks.
    stores: Stores,
}

impl Azure {
    fn endpoint(&self) -> String {
        format!("{}/devstoreaccount1", self.server.endpoint)
    }
}

#[async_trait]
impl BackendFactory for Azure {
    fn name(&self) -> &str {
        "azure"
    }

    fn server(&self) -> Option<String> {
        Some(servers::describe(&self.server))
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self.containers.fetch_add(1, Ordering::Relaxed);
        let container = format!("check-{n:03}");
        let backend = AzureConfig::emulator(self.endpoint(), &container)
            .build()
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &container, || backend.create_container()).await?;
        remember(&self.stores, check, container);
        Ok(Arc::new(backend))
    }

    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let Some(container) = recall(&self.stores, check) else {
            return Hooks::default();
        };
        // A well-formed account key that is not the emulator's.
        let config = AzureConfig::emulator(self.endpoint(), &container)
            .account_key("bm90LXRoZS1lbXVsYXRvci1rZXktbm90LXRoZS1lbXVsYXRvci1rZXk=");
        let missing = AzureConfig::emulator(self.endpoint(), format!("missing-{container}"));
        Hooks {
            missing_bucket: Some(hooks::make_backend(move || {
                let missing = missing.clone();
                async move { Ok(Arc::new(missing.build()?) as Arc<dyn Backend>) }
            })),
            tamper: Some(hooks::azure_tamper(
                Arc::clone(backend),
                self.endpoint(),
                container,
            )),
            wrong_credentials: Some(hooks::make_backend(move || {
                let config = config.clone();
                async move { Ok(Arc::new(config.build()?) as Arc<dyn Backend>) }
            })),
            // Cloud clients keep no state of their own to reopen.
            reopen: None,
            below: None,
        }
    }

    fn limitation(&self, check: &Check) -> Option<storage_conformance::Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}

/// fake-gcs-server, and a fresh bucket on it per check.
struct Gcs {
    server: RunningServer,
    buckets: AtomicUsize,
    /// The bucket of each check, for its hooks.
    stores: Stores,
}

#[async_trait]
impl BackendFactory for Gcs {
    fn name(&self) -> &str {
        "gcs"
    }

    fn server(&self) -> Option<String> {
        Some(servers::describe(&self.server))
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let bucket = format!("check-{:03}", self.buckets.fetch_add(1, Ordering::Relaxed));
        let backend = GcsConfig::emulator(self.server.endpoint.clone(), &bucket)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &bucket, || {
            backend.create_bucket("test-project")
        })
        .await?;
        remember(&self.stores, check, bucket);
        Ok(Arc::new(backend))
    }

    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let Some(bucket) = recall(&self.stores, check) else {
            return Hooks::default();
        };
        // fake-gcs-server checks no credentials (a declared limitation): a
        // client without any must still be refused by a real service.
        let config = GcsConfig::emulator(self.server.endpoint.clone(), &bucket).anonymous();
        let missing =
            GcsConfig::emulator(self.server.endpoint.clone(), format!("missing-{bucket}"));
        Hooks {
            missing_bucket: Some(hooks::make_backend(move || {
                let missing = missing.clone();
                async move { Ok(Arc::new(missing.build().await?) as Arc<dyn Backend>) }
            })),
            tamper: Some(hooks::gcs_tamper(
                Arc::clone(backend),
                self.server.endpoint.clone(),
                bucket,
            )),
            wrong_credentials: Some(hooks::make_backend(move || {
                let config = config.clone();
                async move { Ok(Arc::new(config.build().await?) as Arc<dyn Backend>) }
            })),
            // Cloud clients keep no state of their own to reopen.
            reopen: None,
            below: None,
        }
    }

    fn limitation(&self, check: &Check) -> Option<storage_conformance::Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}

/// Runs `create` (of a bucket or container named `what`) until it succeeds,
/// every 200 ms for up to 30 s: the server may still be starting.
pub async fn when_ready<F, Fut>(server: &RunningServer, what: &str, create: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = storage_core::Result<()>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match create().await {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => {
                return Err(format!(
                    "creating {what}: {e}; server log:\n{}",
                    server.log_tail()
                ));
            }
        }
    }
}
