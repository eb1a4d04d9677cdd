//! The backends xtask can run, and how to make a fresh one per check.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use storage_conformance::BackendFactory;
use storage_core::{Backend, MemoryBackend};
use storage_disk::{FsBackend, LogStore};

/// Backends run when none is named.
pub const DEFAULT: [&str; 3] = ["memory", "fs", "logstore"];
/// Every backend xtask knows.
pub const ALL: [&str; 3] = ["memory", "fs", "logstore"];

/// A factory for the backend named `name`; `scratch` is a fresh directory for
/// local backends.
pub fn factory(name: &str, scratch: PathBuf) -> anyhow::Result<Box<dyn BackendFactory>> {
    match name {
        "memory" => Ok(Box::new(Memory)),
        "fs" => Ok(Box::new(Fs { root: scratch })),
        "logstore" => Ok(Box::new(Log { root: scratch })),
        other => anyhow::bail!("unknown backend {other:?}; known: {}", ALL.join(", ")),
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
