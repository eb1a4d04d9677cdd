//! Small file helpers shared by both backends.

use std::path::{Path, PathBuf};

use storage_core::{Error, Result};

/// Runs blocking file work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::backend(false, "file task failed", e))?
}

/// Removes a file when dropped unless disarmed: a failed, rejected or
/// cancelled write leaves nothing behind.
#[derive(Debug, Default)]
pub(crate) struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    /// Guards `path` instead of what was guarded before.
    pub(crate) fn guard(&mut self, path: PathBuf) {
        self.0 = Some(path);
    }

    /// Keeps the file: it now belongs to someone else.
    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && std::fs::remove_file(&path).is_ok()
        {
            crate::power_loss::removed(&path);
        }
    }
}

/// Makes the entries of `dir` durable (`fsync` on the directory).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    crate::power_loss::synced(dir);
    Ok(())
}

/// Creates `path` and the directories above it that are missing, reporting
/// each new one to the power-loss simulator; returns them, outermost first.
///
/// # Errors
/// The I/O error of creating one.
pub(crate) fn create_dirs(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing: Vec<PathBuf> = path
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    std::fs::create_dir_all(path)?;
    for dir in &missing {
        crate::power_loss::made_dir(dir);
    }
    Ok(missing)
}

/// The health check of a backend rooted at `root` (`Backend::health`): a
/// stat of the directory. Missing, or not a directory, is
/// [`Error::BucketNotFound`] naming it; no permission to reach it is
/// [`Error::PermissionDenied`]; any other failure is the classified I/O
/// error.
pub(crate) async fn root_health(root: &Path) -> Result<()> {
    let root = root.to_path_buf();
    blocking(move || match std::fs::metadata(&root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::BucketNotFound {
            bucket: format!("{} (not a directory)", root.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BucketNotFound {
            bucket: root.display().to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(Error::PermissionDenied {
                key: None,
                message: format!("stat of {}: {e}", root.display()),
            })
        }
        Err(e) => Err(Error::io(format!("stat of {}", root.display()), e)),
    })
    .await
}

/// The presigned URL of a disk store: signed by `presigner`, or
/// [`storage_core::Error::Unsupported`] without one.
///
/// # Errors
/// As [`LocalPresigner::sign`](storage_core::presign::LocalPresigner::sign),
/// and `Unsupported` without a presigner.
pub(crate) fn presign(
    backend: &dyn storage_core::Backend,
    presigner: Option<&storage_core::presign::LocalPresigner>,
    method: storage_core::PresignMethod,
    key: &storage_core::Key,
    expires_in: std::time::Duration,
) -> storage_core::Result<String> {
    match presigner {
        Some(presigner) => presigner.sign(method, key, expires_in),
        None => Err(storage_core::raw::unsupported(
            backend,
            "presigned URLs without a LocalPresigner",
        )),
    }
}
