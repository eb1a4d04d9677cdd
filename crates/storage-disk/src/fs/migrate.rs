//! The root's format, and the conversion of a root of the first format.
//!
//! A root holds the file `format`, whose content names the layout of
//! `objects/`. The first format, written before that file existed, kept each
//! object as two files: its content, `<segment>~v<etag>`, and a JSON
//! sidecar, `<segment>~meta`, holding exactly the JSON of today's trailer.
//! [`FsBackend::new`](super::FsBackend::new) converts such a root in place
//! before it serves anything, under an exclusive lock on `locks/format.lock`
//! (so that two processes opening it at once convert it once), and writes
//! the `format` file last.
//!
//! In each directory: every sidecar's content file gets the trailer
//! appended (after truncating it to the recorded size, which drops the
//! trailer of an interrupted conversion) and is fsynced; it is renamed to
//! `<segment>~obj`; the directory is fsynced; only then are the sidecars
//! removed, and the directory fsynced again. A sidecar beside an object
//! file is stale (the object file is its converted form). A sidecar that
//! cannot be parsed, or whose content file is missing (or not a regular
//! file of this directory) or short, is renamed to `<segment>~obj` itself,
//! so that its key still fails to read with `ChecksumMismatch` rather than
//! vanish. Content files that no sidecar named are left to the sweep (see
//! [`sweep`](super::sweep)), which keeps those beside an object it cannot
//! decode. A crash anywhere leaves a root that the next open converts
//! again: the conversion is idempotent.
//!
//! Processes of an earlier version must not use the root while, or after,
//! it is converted.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::FileType;
use storage_core::{Error, Result};

use super::dir::{DirHandle, Found};
use super::io::ObjectDir;
use super::layout::{DIR_SUFFIX, OBJECT_SUFFIX};
use super::trailer;
use crate::power_loss;

/// The file naming the root's format.
pub const FORMAT_FILE: &str = "format";
/// Its content for the one-file format.
pub const FORMAT: &str = "storage-disk fs 2\n";
/// Suffix of a sidecar of the first format.
const LEGACY_META_SUFFIX: &str = "~meta";
/// Infix of a content file of the first format, before its ETag.
pub const LEGACY_CONTENT_INFIX: &str = "~v";
/// Largest sidecar the first format wrote, in bytes.
const LEGACY_MAX_SIDECAR_BYTES: u64 = 64 * 1024;

/// What a conversion did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Converted {
    /// Objects converted.
    pub objects: u64,
    /// Sidecars that could not be converted, kept as unreadable objects.
    pub unreadable: u64,
}

/// Makes the root at `root` one of the current format, converting it if it
/// is of the first format (see the module docs); `locks` is the open lock
/// directory.
///
/// # Errors
/// A non-transient [`Error::Backend`] for a `format` file naming another
/// format; the I/O error of the conversion.
pub fn ensure_format(root: &Path, objects: &ObjectDir, locks: &File) -> Result<Option<Converted>> {
    if current_format(root)? {
        return Ok(None);
    }
    let _lock = lock(locks, root)?;
    if current_format(root)? {
        return Ok(None);
    }
    let converted = convert(objects)?;
    write_format(root)?;
    Ok(Some(converted))
}

/// Whether the root's `format` file names this format; false without one.
fn current_format(root: &Path) -> Result<bool> {
    let path = root.join(FORMAT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) if bytes == FORMAT.as_bytes() => Ok(true),
        Ok(bytes) => Err(Error::Backend {
            transient: false,
            message: format!(
                "{} names a format this version cannot read ({:?}); expected {:?}",
                path.display(),
                String::from_utf8_lossy(&bytes),
                FORMAT
            ),
            source: None,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// An exclusive `flock` on `locks/format.lock`, held until dropped.
fn lock(locks: &File, root: &Path) -> Result<File> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(
        locks,
        "format.lock",
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map(File::from)
    .map_err(io::Error::from)
    .and_then(|f| f.lock().map(|()| f))
    .map_err(|e| Error::io(format!("locking the format of {}", root.display()), e))
}

/// Writes the `format` file durably: a temporary file, fsynced, renamed
/// into place, the root fsynced.
fn write_format(root: &Path) -> Result<()> {
    let path = root.join(FORMAT_FILE);
    let temp = root.join(format!("{FORMAT_FILE}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut file = File::create_new(&temp)?;
        power_loss::created(&temp);
        file.write_all(FORMAT.as_bytes())?;
        power_loss::wrote(&temp, 0, FORMAT.as_bytes());
        file.sync_data()?;
        power_loss::synced(&temp);
        std::fs::rename(&temp, &path)?;
        power_loss::renamed(&temp, &path);
        crate::util::sync_dir(root)
    })();
    written.map_err(|e| {
        if std::fs::remove_file(&temp).is_ok() {
            power_loss::removed(&temp);
        }
        Error::io(format!("writing {}", path.display()), e)
    })
}

/// Converts every directory under `objects` (see the module docs).
fn convert(objects: &ObjectDir) -> Result<Converted> {
    let mut converted = Converted::default();
    let root = match DirHandle::open(objects, Path::new(""), false)? {
        Found::Dir(dir) => dir,
        Found::Missing | Found::Link(_) => return Ok(converted),
    };
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        let failed = |e| Error::io(format!("converting {}", dir.path().display()), e);
        let entries = dir.entries().map_err(failed)?;
        for (name, kind) in &entries {
            if *kind == FileType::Directory && name.ends_with(DIR_SUFFIX) {
                match dir.child(name).map_err(failed)? {
                    Found::Dir(child) => pending.push(child),
                    Found::Missing | Found::Link(_) => {}
                }
            }
        }
        convert_dir(&dir, &entries, &mut converted).map_err(failed)?;
    }
    Ok(converted)
}

/// Converts the objects of one directory, given its entries.
fn convert_dir(
    dir: &DirHandle,
    entries: &[(String, FileType)],
    converted: &mut Converted,
) -> io::Result<()> {
    let files: HashSet<&str> = entries
        .iter()
        .filter(|(_, kind)| *kind == FileType::RegularFile)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut renames: Vec<(String, String)> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    for name in &files {
        let Some(segment) = name.strip_suffix(LEGACY_META_SUFFIX) else {
            continue;
        };
        let object = format!("{segment}{OBJECT_SUFFIX}");
        if files.contains(object.as_str()) {
            stale.push((*name).to_string());
            continue;
        }
        match append_trailer(dir, name, segment, &files)? {
            Some(content) => {
                renames.push((content, object));
                stale.push((*name).to_string());
                converted.objects += 1;
            }
            None => {
                renames.push(((*name).to_string(), object));
                converted.unreadable += 1;
            }
        }
    }
    for (from, to) in &renames {
        dir.rename(from, to)?;
    }
    if !renames.is_empty() {
        dir.sync()?;
    }
    let mut removed = false;
    for name in &stale {
        removed |= dir.remove(name)?;
    }
    if removed {
        dir.sync()?;
    }
    Ok(())
}

/// Appends the trailer to the content file the sidecar `name` names and
/// fsyncs it; returns that file's name, or `None` when the sidecar cannot
/// be parsed or its content is not among `files` (the directory's regular
/// files) or is short.
fn append_trailer(
    dir: &DirHandle,
    name: &str,
    segment: &str,
    files: &HashSet<&str>,
) -> io::Result<Option<String>> {
    let path = dir.path().join(name);
    let mut bytes = Vec::new();
    dir.open_read(name)?
        .take(LEGACY_MAX_SIDECAR_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > LEGACY_MAX_SIDECAR_BYTES {
        return Ok(None);
    }
    let Ok(meta) = trailer::parse_json(&bytes, &path) else {
        return Ok(None);
    };
    let content = format!("{segment}{LEGACY_CONTENT_INFIX}{}", meta.etag.as_str());
    // Only a regular file of this very directory: the name comes from the
    // sidecar, and must never reach through a link or a slash.
    if !files.contains(content.as_str()) {
        return Ok(None);
    }
    let file = match dir.open_write(&content) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let content_path = dir.path().join(&content);
    let len = file.metadata()?.len();
    if len < meta.size {
        return Ok(None);
    }
    if len > meta.size {
        file.set_len(meta.size)?;
        power_loss::set_len(&content_path, meta.size);
    }
    let trailer = trailer::encode(&meta);
    file.write_all_at(&trailer, meta.size)?;
    power_loss::wrote(&content_path, meta.size, &trailer);
    file.sync_data()?;
    power_loss::synced(&content_path);
    Ok(Some(content))
}
