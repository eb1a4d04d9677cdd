//! The peer rows of the matrix: object_store's own stores (0.14) run
//! through `storage_object_store::ObjectStoreBackend`, so the matrix shows,
//! check by check, where object_store meets our contract. Their failures
//! are findings about object_store, reported but not fatal. Built only with
//! xtask's `full` feature.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use object_store_014 as os;
use storage_conformance::BackendFactory;
use storage_conformance::cloud::{AzureFactory, S3Factory, S3Server, when_ready};
use storage_conformance::servers::{self, RunningServer, S3_ACCESS_KEY, S3_SECRET_KEY};
use storage_core::{Backend, Capabilities, Locality};
use storage_object_store::{
    ObjectStoreBackend, in_memory_capabilities, local_file_system_capabilities,
};

/// The peer rows, in matrix order.
pub const PEERS: [&str; 4] = ["os-memory", "os-fs", "os-s3", "os-azure"];

/// The factory of peer row `name`; `scratch` is a fresh directory.
pub fn factory(name: &str, scratch: PathBuf) -> anyhow::Result<Box<dyn BackendFactory>> {
    Ok(match name {
        "os-memory" => Box::new(Peer {
            name: "os-memory",
            kind: Kind::Memory,
            next: AtomicUsize::new(0),
        }),
        "os-fs" => Box::new(Peer {
            name: "os-fs",
            kind: Kind::Fs(scratch),
            next: AtomicUsize::new(0),
        }),
        "os-s3" => {
            let server =
                S3Factory::start(S3Server::SeaweedFs, false).map_err(anyhow::Error::msg)?;
            Box::new(Peer {
                name: "os-s3",
                kind: Kind::S3(server),
                next: AtomicUsize::new(0),
            })
        }
        "os-azure" => Box::new(Peer {
            name: "os-azure",
            kind: Kind::Azure(AzureFactory::start().map_err(anyhow::Error::msg)?),
            next: AtomicUsize::new(0),
        }),
        other => anyhow::bail!("{other:?} is not a peer row; known: {}", PEERS.join(", ")),
    })
}

enum Kind {
    /// `InMemory`.
    Memory,
    /// `LocalFileSystem` in a directory per check under this one.
    Fs(PathBuf),
    /// `AmazonS3` on the SeaweedFS this factory started.
    S3(S3Factory),
    /// `MicrosoftAzure` on the Azurite this factory started.
    Azure(AzureFactory),
}

struct Peer {
    name: &'static str,
    kind: Kind,
    next: AtomicUsize,
}

/// What object_store's `AmazonS3` honours on SeaweedFS: conditional puts
/// (`Create`, `Update` with `If-Match`, its default `ETagMatch` mode) and
/// server-side copies; MD5 ETags are not unique.
fn s3_capabilities() -> Capabilities {
    Capabilities {
        conditional_put: true,
        server_side_copy: true,
        ..Capabilities::none(Locality::Remote)
    }
}

/// What object_store's `MicrosoftAzure` honours: conditional puts, server
/// copies, ETags unique per write.
fn azure_capabilities() -> Capabilities {
    Capabilities {
        conditional_put: true,
        server_side_copy: true,
        unique_etags: true,
        ..Capabilities::none(Locality::Remote)
    }
}

fn wrap<O: os::ObjectStore>(store: O, name: &str, capabilities: Capabilities) -> Arc<dyn Backend> {
    Arc::new(ObjectStoreBackend::new(Arc::new(store), name, capabilities))
}

impl Peer {
    fn server_of(&self) -> Option<&RunningServer> {
        match &self.kind {
            Kind::S3(factory) => Some(factory.server_process()),
            Kind::Azure(factory) => Some(factory.server_process()),
            Kind::Memory | Kind::Fs(_) => None,
        }
    }
}

#[async_trait]
impl BackendFactory for Peer {
    fn name(&self) -> &str {
        self.name
    }

    fn server(&self) -> Option<String> {
        self.server_of().map(servers::describe)
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match &self.kind {
            Kind::Memory => Ok(wrap(
                os::memory::InMemory::new(),
                self.name,
                in_memory_capabilities(),
            )),
            Kind::Fs(root) => {
                let dir = root.join(format!("check-{n:03}"));
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let store =
                    os::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| e.to_string())?;
                Ok(wrap(store, self.name, local_file_system_capabilities()))
            }
            Kind::S3(factory) => {
                let server = factory.server_process();
                let bucket = format!("peer-{n:03}");
                let ours = storage_s3::S3Config::new(&bucket)
                    .endpoint(server.endpoint.clone())
                    .path_style(true)
                    .region("us-east-1")
                    .credentials(S3_ACCESS_KEY, S3_SECRET_KEY, None)
                    .build()
                    .map_err(|e| e.to_string())?;
                when_ready(server, &bucket, || ours.create_bucket()).await?;
                let store = os::aws::AmazonS3Builder::new()
                    .with_endpoint(server.endpoint.clone())
                    .with_bucket_name(&bucket)
                    .with_access_key_id(S3_ACCESS_KEY)
                    .with_secret_access_key(S3_SECRET_KEY)
                    .with_region("us-east-1")
                    .with_allow_http(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(wrap(store, self.name, s3_capabilities()))
            }
            Kind::Azure(factory) => {
                let container = format!("peer-{n:03}");
                let ours = storage_azure::AzureConfig::emulator(factory.endpoint(), &container)
                    .build()
                    .map_err(|e| e.to_string())?;
                when_ready(factory.server_process(), &container, || {
                    ours.create_container()
                })
                .await?;
                let store = os::azure::MicrosoftAzureBuilder::new()
                    .with_account(storage_azure::EMULATOR_ACCOUNT)
                    .with_access_key(storage_azure::EMULATOR_KEY)
                    .with_container_name(&container)
                    .with_endpoint(factory.endpoint())
                    .with_allow_http(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(wrap(store, self.name, azure_capabilities()))
            }
        }
    }
}
