//! What a check may ask of the test harness besides a fresh backend: to
//! corrupt stored bytes behind the backend's back, a backend on the same
//! store whose credentials the service refuses, one on a bucket that does
//! not exist, or the same storage closed and reopened.
//!
//! A [`BackendFactory`](crate::BackendFactory) offers them through
//! [`BackendFactory::hooks`](crate::BackendFactory::hooks); a check that
//! needs one the factory does not offer is reported as unsupported, with the
//! reason, never as passed.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use storage_core::{Backend, Key};

/// Corrupts the stored content of a key without updating what the backend
/// recorded about it (its SHA-256). Resolves to the backend to read through
/// from then on: `None` for the same one, or a reopened one for backends
/// that cache what they wrote (LogStore's active segment).
pub type TamperFn =
    Arc<dyn Fn(Key) -> BoxFuture<'static, Result<Option<Arc<dyn Backend>>, String>> + Send + Sync>;

/// Makes a backend on the same server as the check's, configured in a way
/// the service must refuse (see the fields of [`Hooks`]).
pub type MakeBackendFn =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Backend>, String>> + Send + Sync>;

/// The hooks a factory offers for one check's backend.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Corrupts stored bytes; see [`TamperFn`].
    pub tamper: Option<TamperFn>,
    /// A backend on the check's bucket or container with credentials the
    /// service must refuse.
    pub wrong_credentials: Option<MakeBackendFn>,
    /// A backend, with valid credentials, on a bucket or container that
    /// does not exist.
    pub missing_bucket: Option<MakeBackendFn>,
    /// Closes the check's backend (compacting it first, where the backend
    /// compacts) and opens a new one on the same storage: how the suite
    /// proves that what a backend wrote survives recovery and compaction.
    pub reopen: Option<MakeBackendFn>,
    /// The store below the layer under test (an encrypting layer's inner
    /// backend, for example): how the `crypto` suite reads and rewrites
    /// what the layer stored, behind its back.
    pub below: Option<Arc<dyn Backend>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("tamper", &self.tamper.is_some())
            .field("wrong_credentials", &self.wrong_credentials.is_some())
            .field("missing_bucket", &self.missing_bucket.is_some())
            .field("reopen", &self.reopen.is_some())
            .field("below", &self.below.is_some())
            .finish()
    }
}

/// Flips one byte in the middle of every occurrence of `needle` in the
/// regular files under `root` (symbolic links are not followed), and returns
/// how many occurrences it changed: the tamper hook of backends that keep
/// objects in local files, whatever their layout. Give a `needle` of a few
/// KiB of pseudo-random bytes ([`support::pattern`](crate::support::pattern)),
/// so that it occurs only where the object's content is stored.
///
/// # Errors
/// The I/O error of a directory or file that cannot be read or written.
pub fn flip_byte_in_files(root: &Path, needle: &[u8]) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                changed += flip_in_file(&entry.path(), needle)?;
            }
        }
    }
    Ok(changed)
}

fn flip_in_file(path: &Path, needle: &[u8]) -> std::io::Result<usize> {
    if needle.is_empty() {
        return Ok(0);
    }
    let mut data = std::fs::read(path)?;
    let mut changed = 0;
    let mut from = 0;
    while let Some(at) = data[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
    {
        data[at + needle.len() / 2] ^= 0x5a;
        changed += 1;
        from = at + needle.len();
    }
    if changed > 0 {
        std::fs::write(path, &data)?;
    }
    Ok(changed)
}

/// A [`MakeBackendFn`] from an async constructor, its error turned into
/// the hook's message.
pub fn make_backend<F, Fut>(make: F) -> MakeBackendFn
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = storage_core::Result<Arc<dyn Backend>>> + Send + 'static,
{
    Arc::new(move || {
        let made = make();
        Box::pin(async move { made.await.map_err(|e| e.to_string()) })
    })
}
