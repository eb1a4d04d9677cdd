//! The backends xtask can run, and how to make a fresh one per check.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use storage_conformance::BackendFactory;
use storage_core::{Backend, MemoryBackend};

use storage_azure::AzureConfig;
use storage_conformance::Check;
use storage_conformance::servers::{self, Lifetime, RunningServer};
use storage_disk::{FsBackend, LogStore};
use storage_gcs::GcsConfig;
use storage_s3::S3Config;

/// Backends run when none is named: the embedded ones.
pub const DEFAULT: [&str; 3] = ["memory", "fs", "logstore"];
/// Every backend xtask knows; `s3` runs on SeaweedFS, `s3-moto` on moto,
/// `azure` on Azurite, `gcs` on fake-gcs-server, each started here.
pub const ALL: [&str; 7] = ["memory", "fs", "logstore", "s3", "s3-moto", "azure", "gcs"];

/// A factory for the backend named `name`; `scratch` is a fresh directory for
/// local backends.
pub fn factory(name: &str, scratch: PathBuf) -> anyhow::Result<Box<dyn BackendFactory>> {
    match name {
        "memory" => Ok(Box::new(Memory)),
        "fs" => Ok(Box::new(Fs { root: scratch })),
        "logstore" => Ok(Box::new(Log { root: scratch })),
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
                server,
                buckets: AtomicUsize::new(0),
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
            }))
        }
        other => anyhow::bail!("unknown backend {other:?}; known: {}", ALL.join(", ")),
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

struct Memory;

#[async_trait]
impl BackendFactory for Memory {
    fn name(&self) -> &str {
        "memory"
    }
    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        Ok(Arc::new(MemoryBackend::new()))
    }
}

struct Fs {
    root: PathBuf,
}

#[async_trait]
impl BackendFactory for Fs {
    fn name(&self) -> &str {
        "fs"
    }
    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let dir = self.root.join(check.replace('/', "-"));
        FsBackend::new(dir)
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| e.to_string())
    }
}

struct Log {
    root: PathBuf,
}

#[async_trait]
impl BackendFactory for Log {
    fn name(&self) -> &str {
        "logstore"
    }
    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let dir = self.root.join(check.replace('/', "-"));
        LogStore::open(dir)
            .await
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| e.to_string())
    }
}

/// An S3 test server, and a fresh bucket on it per check.
struct S3 {
    name: String,
    server: RunningServer,
    buckets: AtomicUsize,
}

#[async_trait]
impl BackendFactory for S3 {
    fn name(&self) -> &str {
        &self.name
    }

    fn server(&self) -> Option<String> {
        Some(format!("{} {}", self.server.name, self.server.version))
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let bucket = format!("check-{:03}", self.buckets.fetch_add(1, Ordering::Relaxed));
        let backend = S3Config::new(&bucket)
            .endpoint(self.server.endpoint.clone())
            .path_style(true)
            .region("us-east-1")
            .credentials(servers::S3_ACCESS_KEY, servers::S3_SECRET_KEY, None)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &bucket, || backend.create_bucket()).await?;
        Ok(Arc::new(backend))
    }

    fn limitation(&self, check: &Check) -> Option<String> {
        servers::declared_limitation(self.server.name, check)
            .map(|r| format!("{}: {r}", self.server.name))
    }
}

/// Azurite, and a fresh container on it per check.
struct Azure {
    server: RunningServer,
    containers: AtomicUsize,
}

#[async_trait]
impl BackendFactory for Azure {
    fn name(&self) -> &str {
        "azure"
    }

    fn server(&self) -> Option<String> {
        Some(format!("{} {}", self.server.name, self.server.version))
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self.containers.fetch_add(1, Ordering::Relaxed);
        let container = format!("check-{n:03}");
        let backend = AzureConfig::emulator(
            format!("{}/devstoreaccount1", self.server.endpoint),
            &container,
        )
        .build()
        .map_err(|e| e.to_string())?;
        when_ready(&self.server, &container, || backend.create_container()).await?;
        Ok(Arc::new(backend))
    }

    fn limitation(&self, check: &Check) -> Option<String> {
        servers::declared_limitation(self.server.name, check)
            .map(|r| format!("{}: {r}", self.server.name))
    }
}

/// fake-gcs-server, and a fresh bucket on it per check.
struct Gcs {
    server: RunningServer,
    buckets: AtomicUsize,
}

#[async_trait]
impl BackendFactory for Gcs {
    fn name(&self) -> &str {
        "gcs"
    }

    fn server(&self) -> Option<String> {
        Some(format!("{} {}", self.server.name, self.server.version))
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let bucket = format!("check-{:03}", self.buckets.fetch_add(1, Ordering::Relaxed));
        let backend = GcsConfig::emulator(self.server.endpoint.clone(), &bucket)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &bucket, || {
            backend.create_bucket("test-project")
        })
        .await?;
        Ok(Arc::new(backend))
    }

    fn limitation(&self, check: &Check) -> Option<String> {
        servers::declared_limitation(self.server.name, check)
            .map(|r| format!("{}: {r}", self.server.name))
    }
}
