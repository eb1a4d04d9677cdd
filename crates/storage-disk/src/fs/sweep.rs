//! Orphans: content and temporary files that no sidecar names, left behind
//! by a crash during a put, by a failed removal of an old version, or by an
//! overwrite of an unreadable sidecar.
//!
//! A put writes its content file before it publishes the sidecar naming it,
//! so a content file that no sidecar names may belong to a put still under
//! way: the sweep skips files a put holds an `flock` on (held while the
//! content is written, however long the body pauses), and removes only
//! files unchanged for longer than its age limit (a put publishes its
//! content within moments of closing it). A put whose content vanished
//! anyway fails instead of publishing it. The content files of a key whose
//! sidecar cannot be parsed are all kept, since its version is unknown.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use storage_core::{Error, Result};

use super::io::{open_read, read_any_sidecar};
use super::layout::{DIR_SUFFIX, META_SUFFIX, TEMP_PREFIX};

/// Age past which [`FsBackend::new`](super::FsBackend::new) sweeps orphans
/// in the background: one hour.
pub const DEFAULT_SWEEP_AGE: Duration = Duration::from_secs(3600);

/// What a sweep found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Orphaned content and temporary files removed.
    pub files_removed: u64,
    /// Their size in bytes.
    pub bytes_removed: u64,
    /// Sidecars that cannot be parsed (their keys fail to read with
    /// `ChecksumMismatch`; their content files are kept).
    pub unreadable_sidecars: Vec<PathBuf>,
}

/// What a directory's sidecar says of the content files beside it.
enum Named {
    Etag(String),
    Unknown,
}

/// Sweeps `dir` (the object directory) and every object directory below
/// it, never following a symbolic link, removing orphans unchanged for at
/// least `older_than`.
///
/// # Errors
/// The I/O error of listing a directory or reading a sidecar.
pub(crate) fn sweep_blocking(dir: &Path, older_than: Duration) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let now = SystemTime::now();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let listing = || format!("sweeping {}", dir.display());
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| Error::io(listing(), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(listing(), e)),
        };
        let mut named: HashMap<String, Named> = HashMap::new();
        for entry in &entries {
            let name = entry.file_name();
            let Some(segment) = name.to_str().and_then(|n| n.strip_suffix(META_SUFFIX)) else {
                continue;
            };
            let what = match read_any_sidecar(&entry.path()) {
                Ok(Some(meta)) => Named::Etag(meta.etag.as_str().to_string()),
                Ok(None) => continue,
                Err(Error::ChecksumMismatch { .. }) => {
                    report.unreadable_sidecars.push(entry.path());
                    Named::Unknown
                }
                Err(e) => return Err(e),
            };
            named.insert(segment.to_string(), what);
        }
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let file_type = entry.file_type().map_err(|e| Error::io(listing(), e))?;
            if file_type.is_dir() && name.ends_with(DIR_SUFFIX) {
                pending.push(entry.path());
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let orphan = if name.starts_with(TEMP_PREFIX) {
                true
            } else if let Some((segment, etag)) = name.rsplit_once("~v") {
                match named.get(segment) {
                    Some(Named::Etag(current)) => current != etag,
                    Some(Named::Unknown) => false,
                    None => true,
                }
            } else {
                false
            };
            if !orphan {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age < older_than {
                continue;
            }
            // A put still writing holds a lock on its content file.
            let Ok(held) = open_read(&entry.path()) else {
                continue;
            };
            if held.try_lock().is_err() {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    crate::power_loss::removed(&entry.path());
                    report.files_removed += 1;
                    report.bytes_removed += meta.len();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(format!("removing {}", entry.path().display()), e));
                }
            }
        }
    }
    Ok(report)
}
