//! The backends xtask can run, and how to make a fresh one per check.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use storage_conformance::BackendFactory;
use storage_core::{Backend, MemoryBackend};

use storage_conformance::Hooks;
use storage_disk::{FsBackend, LogStore};

use storage_conformance::hooks;

/// Backends run when none is named: the embedded ones.
pub const DEFAULT: [&str; 3] = ["memory", "fs", "logstore"];
/// Every backend xtask knows; `s3` runs on SeaweedFS, `s3-moto` on moto,
/// `azure` on Azurite, `gcs` on fake-gcs-server, each started here.
pub const ALL: [&str; 7] = ["memory", "fs", "logstore", "s3", "s3-moto", "azure", "gcs"];

/// The peer rows (`--peers`): object_store's `InMemory`,
/// `LocalFileSystem`, `AmazonS3` on SeaweedFS and `MicrosoftAzure` on
/// Azurite, through `ObjectStoreBackend`. Their failures are reported, not
/// fatal: they are findings about object_store.
pub const PEERS: [&str; 4] = ["os-memory", "os-fs", "os-s3", "os-azure"];

/// Whether backend `name` runs against a test server (the cloud ones).
pub fn needs_servers(name: &str) -> bool {
    !DEFAULT.contains(&name) && !matches!(name, "os-memory" | "os-fs")
}

/// Whether `name` is a peer row, whose failures do not fail the run.
pub fn is_peer(name: &str) -> bool {
    PEERS.contains(&name)
}

/// A factory for the backend named `name`; `scratch` is a fresh directory for
/// local backends. `retried`: the caller puts every backend behind `Retry`
/// itself, so the factory adds none of its own (`Retry` must not be nested:
/// an inner layer hides its write ids from the outer one).
pub fn factory(
    name: &str,
    scratch: PathBuf,
    retried: bool,
) -> anyhow::Result<Box<dyn BackendFactory>> {
    match name {
        "memory" => Ok(Box::new(Memory)),
        "fs" => Ok(Box::new(Fs { root: scratch })),
        "logstore" => Ok(Box::new(Log {
            root: scratch,
            stores: Default::default(),
        })),
        #[cfg(feature = "full")]
        "s3" | "s3-moto" | "azure" | "gcs" => crate::cloud::factory(name, retried),
        #[cfg(not(feature = "full"))]
        "s3" | "s3-moto" | "azure" | "gcs" => {
            let _ = retried;
            anyhow::bail!(
                "the {name} backend needs xtask's `full` feature (`cargo xtask` adds it itself)"
            )
        }
        #[cfg(feature = "full")]
        peer if is_peer(peer) => crate::peers::factory(peer, scratch),
        other => anyhow::bail!(
            "unknown backend {other:?}; known: {}, and the peer rows {} (with xtask's `full` feature)",
            ALL.join(", "),
            PEERS.join(", ")
        ),
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
    fn hooks(&self, check: &str, _backend: &Arc<dyn Backend>) -> Hooks {
        let dir = self.root.join(check.replace('/', "-"));
        Hooks {
            tamper: Some(Arc::new({
                let dir = dir.clone();
                move |key| {
                    let dir = dir.clone();
                    Box::pin(async move {
                        flip_stored_content(&dir, &key).await?;
                        Ok(None)
                    })
                }
            })),
            reopen: Some(hooks::make_backend(move || {
                let dir = dir.clone();
                async move { Ok(Arc::new(FsBackend::new(dir)?) as Arc<dyn Backend>) }
            })),
            ..Hooks::default()
        }
    }
}

/// Flips a byte of the content of `key`, found by its bytes in the files
/// under `dir` (the tamper checks write a pseudo-random pattern).
async fn flip_stored_content(dir: &std::path::Path, key: &storage_core::Key) -> Result<(), String> {
    let needle = storage_conformance::support::pattern(1024, 99);
    let changed = storage_conformance::hooks::flip_byte_in_files(dir, &needle)
        .map_err(|e| format!("corrupting {key}: {e}"))?;
    if changed == 0 {
        return Err(format!(
            "the content of {key} was not found under {}",
            dir.display()
        ));
    }
    Ok(())
}

struct Log {
    root: PathBuf,
    /// Every store made, by check, so that the tamper hook can close it.
    stores: std::sync::Mutex<std::collections::HashMap<String, LogStore>>,
}

#[async_trait]
impl BackendFactory for Log {
    fn name(&self) -> &str {
        "logstore"
    }
    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let dir = self.root.join(check.replace('/', "-"));
        let store = LogStore::open(dir).await.map_err(|e| e.to_string())?;
        self.stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(check.to_owned(), store.clone());
        Ok(Arc::new(store))
    }
    fn hooks(&self, check: &str, _backend: &Arc<dyn Backend>) -> Hooks {
        let dir = self.root.join(check.replace('/', "-"));
        let store = self
            .stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(check);
        let reopen = store.clone().map(|store| {
            let dir = dir.clone();
            hooks::make_backend(move || {
                let (dir, store) = (dir.clone(), store.clone());
                async move {
                    store.compact().await?;
                    store.close().await?;
                    Ok(Arc::new(LogStore::open(&dir).await?) as Arc<dyn Backend>)
                }
            })
        });
        Hooks {
            reopen,
            // The active segment's records are served from memory: close the
            // store, corrupt the segment file, and read through a reopened one.
            tamper: store.map(|store| -> storage_conformance::hooks::TamperFn {
                Arc::new(move |key| {
                    let (dir, store) = (dir.clone(), store.clone());
                    Box::pin(async move {
                        store.close().await.map_err(|e| e.to_string())?;
                        flip_stored_content(&dir, &key).await?;
                        let reopened = LogStore::open(&dir).await.map_err(|e| e.to_string())?;
                        Ok(Some(Arc::new(reopened) as Arc<dyn Backend>))
                    })
                })
            }),
            ..Hooks::default()
        }
    }
}
