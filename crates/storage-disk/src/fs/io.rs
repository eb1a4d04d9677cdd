//! Blocking file operations of `FsBackend`: durable writes, the lock stripes,
//! reading sidecars and content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use storage_core::{Error, Key, ObjectMeta, Result};

use super::sidecar::Sidecar;

/// Opens an existing file for reading, refusing to follow a symlink.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Creates a new file for writing; fails if anything is at `path`.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Makes the entries of `dir` durable (`fsync` on the directory).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads the sidecar at `path`; `Ok(None)` when there is none.
///
/// # Errors
/// [`Error::Backend`] for I/O failures and corrupt sidecars.
pub fn read_sidecar(path: &Path) -> Result<Option<ObjectMeta>> {
    let mut bytes = Vec::with_capacity(512);
    match open_read(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => Sidecar::parse(&bytes, path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes `bytes` to a new temporary file at `temp` and fsyncs it.
///
/// # Errors
/// [`Error::Backend`] for I/O failures; the temporary file is removed.
pub fn write_synced(temp: &Path, bytes: &[u8]) -> Result<()> {
    let result = create_new(temp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_data()
    });
    result.map_err(|e| {
        let _ = fs::remove_file(temp);
        Error::io(format!("writing {}", temp.display()), e)
    })
}

/// An exclusive lock on one of the store's lock stripes, held until dropped.
///
/// Each lock opens its own file description, so `flock` excludes other tasks
/// of this process as well as other processes and other `FsBackend`s on the
/// same root.
#[derive(Debug)]
pub struct StripeLock {
    _file: File,
}

impl StripeLock {
    /// Blocks until the stripe's lock is held.
    ///
    /// # Errors
    /// [`Error::Backend`] when the lock file cannot be opened or locked.
    pub fn acquire(locks: &Path, stripe: u8) -> Result<Self> {
        let path = locks.join(format!("{stripe:02x}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(StripeLock { _file: file })
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, failing on a short file.
///
/// # Errors
/// [`Error::Backend`] naming the key on I/O failures or a file shorter than
/// its sidecar says.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64, key: &Key) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Backend {
                transient: false,
                message: format!("content of {key} is shorter than recorded"),
                source: Some(Box::new(e)),
            }
        } else {
            Error::io(format!("reading {key}"), e)
        }
    })
}
