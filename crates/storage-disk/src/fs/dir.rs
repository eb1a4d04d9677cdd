//! Directory handles: every write of `FsBackend` (creating, renaming and
//! removing files, making directories, `fsync` of a directory) is made
//! relative to an open handle of the object's directory, reached one
//! component at a time from the object directory with `O_NOFOLLOW`, so no
//! write ever follows a symbolic link anywhere inside the root, not even a
//! directory swapped for a link while a put runs: the put keeps writing
//! into the directory it opened.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use storage_core::{Error, Key, Result};

use super::io::{Current, ObjectDir, ReadMode, own, tail_meta};
use crate::power_loss;

/// An open directory beneath the object directory.
#[derive(Debug)]
pub struct DirHandle {
    fd: OwnedFd,
    path: PathBuf,
}

fn open_dir(parent: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// What an open of a directory found on its path.
#[derive(Debug)]
pub enum Found {
    /// The directory.
    Dir(DirHandle),
    /// A component is missing (and was not to be created).
    Missing,
    /// A component is a symbolic link, or not a directory: nothing below it
    /// is the store's.
    Link(PathBuf),
}

impl DirHandle {
    /// Opens `rel_dir` beneath `objects`, never following a symbolic link:
    /// in one `openat2(2)` call with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`
    /// when nothing is to be made, else one component at a time with
    /// `O_NOFOLLOW`; with `create`, makes the missing components, each made
    /// durable in its parent before the next.
    ///
    /// # Errors
    /// The I/O error of opening or making a directory.
    pub fn open(objects: &ObjectDir, rel_dir: &Path, create: bool) -> Result<Found> {
        let failed = |what: &str, path: &Path, e: Errno| {
            Error::io(format!("{what} {}", path.display()), io::Error::from(e))
        };
        // A directory this process has made durable, or one only to be
        // read: one call when the kernel has `openat2`.
        if !rel_dir.as_os_str().is_empty() {
            let path = objects.path().join(rel_dir);
            if (!create || objects.is_durable(&path))
                && let Ok(fd) = objects.open_dir_beneath(rel_dir)
            {
                return Ok(Found::Dir(DirHandle { fd, path }));
            }
        }
        let mut path = objects.path().to_path_buf();
        let mut fd =
            open_dir(objects.fd(), OsStr::new(".")).map_err(|e| failed("opening", &path, e))?;
        for component in rel_dir.components() {
            let name = component.as_os_str();
            let parent = path.clone();
            path.push(name);
            let next = match open_dir(&fd, name) {
                Ok(next) => next,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o777)) {
                        Ok(()) => power_loss::made_dir(&path),
                        // Made meanwhile by another put.
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(failed("creating", &path, e)),
                    }
                    match open_dir(&fd, name) {
                        Ok(next) => next,
                        Err(Errno::LOOP | Errno::NOTDIR) => return Ok(Found::Link(path)),
                        Err(e) => return Err(failed("opening", &path, e)),
                    }
                }
                Err(Errno::NOENT) => return Ok(Found::Missing),
                Err(Errno::LOOP | Errno::NOTDIR) => return Ok(Found::Link(path)),
                Err(e) => return Err(failed("opening", &path, e)),
            };
            // A write relies on the directory's entry being durable: made
            // by this put, by another put still running, or by a process
            // that crashed before its fsync, the parent is synced once per
            // directory and process.
            if create && !objects.is_durable(&path) {
                rustix::fs::fsync(&fd).map_err(|e| failed("syncing", &parent, e))?;
                power_loss::synced(&parent);
                objects.mark_durable(&path);
            }
            fd = next;
        }
        Ok(Found::Dir(DirHandle { fd, path }))
    }

    /// The directory's path (for messages and the power-loss simulator;
    /// never used to reach it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the new file `name` for writing; fails if anything is there.
    ///
    /// # Errors
    /// The I/O error of `openat`.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        power_loss::created(&self.path.join(name));
        Ok(File::from(fd))
    }

    /// Opens the file `name` for reading, refusing a symbolic link.
    ///
    /// # Errors
    /// The I/O error of `openat`.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Reads the metadata of `key`'s object file `name` for a writer (see
    /// [`Current`]).
    ///
    /// # Errors
    /// [`Error::Backend`] for I/O failures and an object of another key.
    pub fn read_current(&self, name: &str, key: &Key) -> Result<Current> {
        let path = self.path.join(name);
        let read = self.open_read(name).and_then(|file| {
            let len = file.metadata()?.len();
            tail_meta(&file, len, &path, ReadMode::Blocking)
        });
        match read {
            Ok(parsed) => match own(parsed, key, &path) {
                Ok(Some(meta)) => Ok(Current::Version(meta)),
                Ok(None) => Ok(Current::Absent),
                Err(Error::ChecksumMismatch { .. }) => Ok(Current::Unreadable),
                Err(e) => Err(e),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Current::Absent),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Opens the existing file `name` for writing, refusing a symbolic link.
    ///
    /// # Errors
    /// The I/O error of `openat`.
    pub fn open_write(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to` within the directory, replacing `to`.
    ///
    /// # Errors
    /// The I/O error of `renameat`.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)?;
        power_loss::renamed(&self.path.join(from), &self.path.join(to));
        Ok(())
    }

    /// Removes the file `name`; returns whether it was there.
    ///
    /// # Errors
    /// The I/O error of `unlinkat`, but not-found.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => {
                power_loss::removed(&self.path.join(name));
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The directory's entries but `.` and `..`, with their types (never
    /// following a link).
    ///
    /// # Errors
    /// The I/O error of reading the directory.
    pub fn entries(&self) -> io::Result<Vec<(String, rustix::fs::FileType)>> {
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                rustix::fs::FileType::Unknown => {
                    let stat = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
                    rustix::fs::FileType::from_raw_mode(stat.st_mode)
                }
                kind => kind,
            };
            out.push((name.to_string(), kind));
        }
        Ok(out)
    }

    /// Opens the subdirectory `name`, not following a link.
    ///
    /// # Errors
    /// The I/O error of `openat`, but not-found and links (answered).
    pub fn child(&self, name: &str) -> io::Result<Found> {
        match open_dir(&self.fd, OsStr::new(name)) {
            Ok(fd) => Ok(Found::Dir(DirHandle {
                fd,
                path: self.path.join(name),
            })),
            Err(Errno::NOENT) => Ok(Found::Missing),
            Err(Errno::LOOP | Errno::NOTDIR) => Ok(Found::Link(self.path.join(name))),
            Err(e) => Err(e.into()),
        }
    }

    /// The modification time of entry `name` (a link's own).
    ///
    /// # Errors
    /// The I/O error of `fstatat`.
    pub fn modified(&self, name: &str) -> io::Result<(std::time::SystemTime, u64)> {
        let stat = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let since = std::time::Duration::new(
            u64::try_from(stat.st_mtime).unwrap_or(0),
            u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
        );
        Ok((
            std::time::UNIX_EPOCH + since,
            u64::try_from(stat.st_size).unwrap_or(0),
        ))
    }

    /// Makes the directory's entries durable (`fsync`).
    ///
    /// # Errors
    /// The I/O error of `fsync`.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd)?;
        power_loss::synced(&self.path);
        Ok(())
    }
}

/// Removes a file of a directory when dropped unless disarmed: a failed,
/// rejected or cancelled put leaves nothing behind.
#[derive(Debug)]
pub struct RemoveOnDrop {
    dir: std::sync::Arc<DirHandle>,
    name: Option<String>,
}

impl RemoveOnDrop {
    /// Guards `name` in `dir`.
    pub fn new(dir: std::sync::Arc<DirHandle>, name: String) -> Self {
        RemoveOnDrop {
            dir,
            name: Some(name),
        }
    }

    /// Keeps the file: it now belongs to a published version.
    pub fn disarm(&mut self) {
        self.name = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = self.dir.remove(&name);
        }
    }
}
