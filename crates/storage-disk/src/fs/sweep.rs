//! Orphans: temporary files that were never published, left behind by a
//! crash during a put; and content files of the first format
//! (`<segment>~v<etag>`) that the conversion did not turn into objects
//! (older versions, or leftovers of an interrupted conversion), except
//! beside an object file that cannot be decoded, whose version is unknown.
//!
//! A put writes its object to a temporary file before it renames it into
//! place, so a temporary file may belong to a put still under way: the
//! sweep skips files a put holds an `flock` on (held while the object is
//! written, however long the body pauses), and removes only files unchanged
//! for longer than its age limit (a put publishes its file within moments
//! of closing it). A put whose file vanished anyway fails instead of
//! publishing it. The sweep also reports object files whose trailer cannot
//! be decoded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FileType;
use storage_core::{Error, Result};

use super::dir::{DirHandle, Found};
use super::io::{ObjectDir, ReadMode, tail_meta};
use super::layout::{DIR_SUFFIX, OBJECT_SUFFIX, TEMP_PREFIX};
use super::migrate::LEGACY_CONTENT_INFIX;

/// Age past which [`FsBackend::new`](super::FsBackend::new) sweeps orphans
/// in the background: one hour.
pub const DEFAULT_SWEEP_AGE: Duration = Duration::from_secs(3600);

/// What a sweep found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Orphaned files removed.
    pub files_removed: u64,
    /// Their size in bytes.
    pub bytes_removed: u64,
    /// Object files whose trailer cannot be decoded (their keys fail to
    /// read with `ChecksumMismatch`; they are kept, for a person to look at).
    pub unreadable_objects: Vec<PathBuf>,
}

/// Sweeps the object directory and every object directory below it,
/// reaching each through open directory handles without following a link
/// (see [`DirHandle`]), removing orphans unchanged for at least
/// `older_than`.
///
/// # Errors
/// The I/O error of listing a directory or reading a trailer.
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
        // Segments whose object file cannot be decoded: the content files
        // of the first format beside them are kept (see the module docs).
        let mut unreadable: HashSet<String> = HashSet::new();
        for (name, kind) in &entries {
            if *kind == FileType::Directory && name.ends_with(DIR_SUFFIX) {
                pending.push((std::sync::Arc::clone(&dir), name.clone()));
                continue;
            }
            let Some(segment) = name.strip_suffix(OBJECT_SUFFIX) else {
                continue;
            };
            if *kind != FileType::RegularFile {
                continue;
            }
            let path = dir.path().join(name);
            let read = dir.open_read(name).and_then(|file| {
                let len = file.metadata()?.len();
                tail_meta(&file, len, &path, ReadMode::Blocking)
            });
            match read {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    unreadable.insert(segment.to_string());
                    report.unreadable_objects.push(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            }
        }
        for (name, kind) in entries {
            if kind != FileType::RegularFile {
                continue;
            }
            let orphan = if name.starts_with(TEMP_PREFIX) {
                true
            } else if let Some((segment, _)) = name.rsplit_once(LEGACY_CONTENT_INFIX) {
                !name.ends_with(OBJECT_SUFFIX) && !unreadable.contains(segment)
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
            // A put still writing holds a lock on its temporary file.
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
