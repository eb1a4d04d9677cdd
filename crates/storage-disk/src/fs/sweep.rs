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
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FileType;
use storage_core::{Error, Result};

use super::dir::{DirHandle, Found};
use super::io::{MAX_SIDECAR_BYTES, ObjectDir};
use super::layout::{DIR_SUFFIX, META_SUFFIX, TEMP_PREFIX};
use super::sidecar::Sidecar;

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

/// Sweeps the object directory and every object directory below it,
/// reaching each through open directory handles without following a link
/// (see [`DirHandle`]), removing orphans unchanged for at least
/// `older_than`.
///
/// # Errors
/// The I/O error of listing a directory or reading a sidecar.
pub(crate) fn sweep_blocking(objects: &ObjectDir, older_than: Duration) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let now = SystemTime::now();
    let root = match DirHandle::open(objects, Path::new(""), false)? {
        Found::Dir(dir) => dir,
        Found::Missing | Found::Link(_) => return Ok(report),
    };
    // Children are opened when visited, so open handles are bounded by the
    // tree's depth, not its width.
    let mut pending: Vec<(std::sync::Arc<DirHandle>, String)> = Vec::new();
    let mut next = Some(root);
    loop {
        let dir = match next.take() {
            Some(dir) => dir,
            None => {
                let Some((parent, name)) = pending.pop() else {
                    break;
                };
                match parent.child(&name) {
                    Ok(Found::Dir(dir)) => dir,
                    Ok(Found::Missing | Found::Link(_)) => continue,
                    Err(e) => {
                        return Err(Error::io(
                            format!("sweeping {}", parent.path().join(&name).display()),
                            e,
                        ));
                    }
                }
            }
        };
        let dir = std::sync::Arc::new(dir);
        let listing = |e| Error::io(format!("sweeping {}", dir.path().display()), e);
        let entries = dir.entries().map_err(listing)?;
        let mut named: HashMap<String, Named> = HashMap::new();
        for (name, kind) in &entries {
            let Some(segment) = name.strip_suffix(META_SUFFIX) else {
                continue;
            };
            if *kind != FileType::RegularFile {
                continue;
            }
            let path = dir.path().join(name);
            let bytes = match dir.open_read(name).and_then(|file| {
                let mut bytes = Vec::new();
                file.take(MAX_SIDECAR_BYTES + 1).read_to_end(&mut bytes)?;
                Ok(bytes)
            }) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            };
            let parsed = (bytes.len() as u64 <= MAX_SIDECAR_BYTES)
                .then(|| Sidecar::parse(&bytes, &path).ok())
                .flatten();
            let what = match parsed {
                Some(meta) => Named::Etag(meta.etag.as_str().to_string()),
                None => {
                    report.unreadable_sidecars.push(path);
                    Named::Unknown
                }
            };
            named.insert(segment.to_string(), what);
        }
        for (name, kind) in entries {
            if kind == FileType::Directory && name.ends_with(DIR_SUFFIX) {
                pending.push((std::sync::Arc::clone(&dir), name));
                continue;
            }
            if kind != FileType::RegularFile {
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
            let Ok((modified, len)) = dir.modified(&name) else {
                continue;
            };
            let age = now.duration_since(modified).unwrap_or_default();
            if age < older_than {
                continue;
            }
            // A put still writing holds a lock on its content file.
            let Ok(held) = dir.open_read(&name) else {
                continue;
            };
            if held.try_lock().is_err() {
                continue;
            }
            let removed = dir.remove(&name).map_err(|e| {
                Error::io(format!("removing {}", dir.path().join(&name).display()), e)
            })?;
            if removed {
                report.files_removed += 1;
                report.bytes_removed += len;
            }
        }
    }
    Ok(report)
}
