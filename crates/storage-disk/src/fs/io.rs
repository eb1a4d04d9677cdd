//! Blocking file operations of `FsBackend`: the lock stripes, opening
//! beneath the object directory, reading object files' trailers and content.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use storage_core::{Error, Key, ObjectMeta, Result};

use super::layout::TEMP_PREFIX;
use super::trailer::{self, Decoded, TAIL_BYTES};
use crate::power_loss;

/// Whether a directory between `base` and `dir` (inclusive) is a symbolic
/// link. Directories reached by path have every component followed, so a
/// link there would lead outside the root; a missing component is not a
/// link. (Entries found while listing are judged by their own type, and
/// reads use `openat2` with `RESOLVE_NO_SYMLINKS` where the kernel has it.)
///
/// # Errors
/// The I/O error of a component that cannot be inspected.
pub fn linked_below(base: &Path, dir: &Path) -> io::Result<bool> {
    let Ok(relative) = dir.strip_prefix(base) else {
        return Ok(false);
    };
    let mut current = base.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Opens an existing file for reading, refusing to follow a symlink.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

pub(crate) use crate::util::sync_dir;

/// What the file system of the object directory does to names, if
/// anything: a probe file is created under one spelling and looked up under
/// another, for case (`a`, `A`) and Unicode normalization (NFC `é`, NFD `e`
/// then U+0301), relative to the open directory. `None` too when no probe can
/// be created (a read-only mount): reads still check each trailer's key
/// ([`own`]).
///
/// # Errors
/// The I/O error of a lookup.
pub fn name_folding(objects: &ObjectDir) -> io::Result<Option<&'static str>> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let stamp: u64 = rand::random();
    let probes = [
        ("a", "A", "folds case"),
        ("\u{e9}", "e\u{301}", "normalizes Unicode"),
    ];
    for (written, other, what) in probes {
        let name = |spelling: &str| format!("{TEMP_PREFIX}probe-{stamp:016x}-{spelling}");
        let probe = name(written);
        let created = rustix::fs::openat(
            &objects.fd,
            probe.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        );
        if created.is_err() {
            return Ok(None);
        }
        power_loss::created(&objects.path.join(&probe));
        let found =
            rustix::fs::statat(&objects.fd, name(other).as_str(), AtFlags::SYMLINK_NOFOLLOW);
        if rustix::fs::unlinkat(&objects.fd, probe.as_str(), AtFlags::empty()).is_ok() {
            power_loss::removed(&objects.path.join(&probe));
        }
        match found {
            Ok(_) => return Ok(Some(what)),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// What a key's object file holds, for a writer deciding a precondition.
#[derive(Debug)]
pub enum Current {
    /// No object file: the key holds no object.
    Absent,
    /// The key's current version.
    Version(ObjectMeta),
    /// An object file whose trailer cannot be decoded: the key holds an object whose
    /// version is unknown. An overwrite or unconditional delete replaces
    /// it; a conditional write is refused.
    Unreadable,
}

impl Current {
    /// The ETag a precondition is checked against: none for an unreadable
    /// version, which no `IfMatch` can name.
    pub fn version(&self) -> Option<&ObjectMeta> {
        match self {
            Current::Version(meta) => Some(meta),
            _ => None,
        }
    }
}

/// Reads the metadata of the object file at `path`, whatever key it holds
/// (listing); `Ok(None)` when there is none.
///
/// # Errors
/// [`Error::Backend`] for I/O failures; [`Error::ChecksumMismatch`] naming
/// the path for a trailer that cannot be decoded.
pub fn read_any_object(path: &Path) -> Result<Option<ObjectMeta>> {
    let read = open_read(path).and_then(|file| {
        let len = file.metadata()?.len();
        tail_meta(&file, len, path, ReadMode::Blocking)
    });
    match read {
        Ok(parsed) => parsed
            .map(Some)
            .map_err(|e| unreadable(&path.display().to_string(), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The metadata at the end of `file`, `len` bytes long, read under `mode`:
/// the last [`TAIL_BYTES`] first, then as many more as the footer says.
/// The outer result is the I/O; the inner one the decoding (see
/// [`trailer::decode`]), `path` naming the file in its errors.
///
/// # Errors
/// The I/O error of a read, or [`io::ErrorKind::WouldBlock`] in cached mode
/// (see [`read_at`]).
pub fn tail_meta(
    file: &File,
    len: u64,
    path: &Path,
    mode: ReadMode,
) -> io::Result<Result<ObjectMeta>> {
    let mut want = len.min(TAIL_BYTES);
    loop {
        let mut tail = vec![0u8; want as usize];
        read_at(file, &mut tail, len - want, mode)?;
        match trailer::decode(len, &tail, path) {
            Ok(Decoded::Meta(meta)) => return Ok(Ok(meta)),
            // Larger than what was read, and within the file (checked).
            Ok(Decoded::Need(more)) => want = more,
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// An object file whose trailer cannot be decoded, as the error of reading
/// `what`.
pub fn unreadable(what: &str, e: Error) -> Error {
    Error::ChecksumMismatch {
        key: what.to_string(),
        expected: "a well-formed object file".into(),
        actual: e.to_string(),
    }
}

/// The decoded trailer of `key` found at `path`, checked to be `key`'s: on a
/// file system that folds case or normalizes names (ext4 `casefold`, CIFS,
/// APFS-like mounts), `a~obj` may be the file `A~obj`, and a read of `a`
/// must never return `A`'s object, nor a write of `a` replace it.
///
/// # Errors
/// [`Error::ChecksumMismatch`] naming `key` for a trailer that cannot be
/// decoded; a non-transient [`Error::Backend`] for an object of another key.
pub fn own(parsed: Result<ObjectMeta>, key: &Key, path: &Path) -> Result<Option<ObjectMeta>> {
    let meta = parsed.map_err(|e| unreadable(key.as_str(), e))?;
    if meta.key != *key {
        return Err(Error::Backend {
            transient: false,
            message: format!(
                "{} holds the object of {:?}, not of {key:?}: the file system folds case or normalizes names (which FsBackend cannot store keys on), or the file was copied or damaged; it is neither served nor overwritten (remove it by hand to drop it)",
                path.display(),
                meta.key.as_str()
            ),
            source: None,
        });
    }
    Ok(Some(meta))
}

/// The store's 256 lock stripes: for each, a lock file `locks/<xx>.lock`,
/// opened once per [`StripeLocks`] and kept open, behind a mutex.
///
/// A writer takes the stripe's mutex (excluding the other tasks of this
/// store), then an exclusive `flock` on the stripe's file (excluding other
/// processes, and other `FsBackend`s of this process, each of which has its
/// own open file description).
#[derive(Debug)]
pub struct StripeLocks {
    /// The open lock directory; lock files are made relative to it.
    dir: File,
    /// Its path, for messages.
    path: std::path::PathBuf,
    stripes: Vec<std::sync::Mutex<Option<File>>>,
}

/// An exclusive lock on one stripe, held until dropped.
#[derive(Debug)]
pub struct StripeLock<'a> {
    file: std::sync::MutexGuard<'a, Option<File>>,
}

impl Drop for StripeLock<'_> {
    fn drop(&mut self) {
        // Released before the mutex, which the guard's own drop releases.
        if let Some(file) = self.file.as_ref() {
            let _ = file.unlock();
        }
    }
}

impl StripeLocks {
    /// The stripes of the lock directory `dir`, open, at `path`.
    pub fn new(dir: File, path: &Path) -> Self {
        StripeLocks {
            dir,
            path: path.to_path_buf(),
            stripes: (0..256).map(|_| std::sync::Mutex::new(None)).collect(),
        }
    }

    /// The open lock directory.
    pub fn dir(&self) -> &File {
        &self.dir
    }

    /// Blocks until `stripe` is held: its mutex, then its file's `flock`
    /// (the file is opened, or made, on first use).
    ///
    /// # Errors
    /// [`Error::Backend`] when the lock file cannot be opened or locked.
    pub fn acquire(&self, stripe: u8) -> Result<StripeLock<'_>> {
        use rustix::fs::{Mode, OFlags};
        let mut slot = self.stripes[usize::from(stripe)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = format!("{stripe:02x}.lock");
        let failed = |e| Error::io(format!("locking {}", self.path.join(&name).display()), e);
        let file = match slot.take() {
            Some(file) => file,
            None => rustix::fs::openat(
                &self.dir,
                name.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )
            .map(File::from)
            .map_err(|e| failed(io::Error::from(e)))?,
        };
        file.lock().map_err(failed)?;
        *slot = Some(file);
        Ok(StripeLock { file: slot })
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, failing on a short file.
///
/// # Errors
/// [`Error::Backend`] naming the key on I/O failures or a file shorter than
/// its trailer says.
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

/// How a read may wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Only what the kernel's caches hold: path lookups with
    /// `RESOLVE_CACHED` and reads with `RWF_NOWAIT`. Anything that would wait
    /// for the disk fails with [`io::ErrorKind::WouldBlock`], so this is safe
    /// to run on an async worker thread.
    Cached,
    /// Whatever it takes; run on the blocking pool.
    Blocking,
}

/// The object directory, opened once, that every read resolves beneath.
///
/// Reads use `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so no
/// path component may be a symbolic link or lead outside the directory. On
/// kernels without `openat2` (before Linux 5.6) the blocking path falls back to
/// `open` with `O_NOFOLLOW` on the last component.
#[derive(Debug)]
pub struct ObjectDir {
    path: std::path::PathBuf,
    fd: File,
    /// Set once the kernel refused `RESOLVE_CACHED` with `EINVAL` (Linux
    /// before 5.12): cached reads then go straight to the blocking path.
    no_cached_lookups: std::sync::atomic::AtomicBool,
    /// Object directories whose entries this process has made durable in
    /// their parents (see [`DirHandle::open`](super::dir::DirHandle::open)).
    durable: std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
}

/// Opens the directory at `path` for `*at` calls, refusing a symbolic link
/// as its last component.
///
/// # Errors
/// [`Error::Backend`] when it cannot be opened or is a link.
pub fn open_directory(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            Error::io(
                format!("opening {} (never through a link)", path.display()),
                e,
            )
        })
}

impl ObjectDir {
    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory.
    pub fn fd(&self) -> &File {
        &self.fd
    }

    /// Opens the directory at `path`.
    ///
    /// # Errors
    /// [`Error::Backend`] when it cannot be opened.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(ObjectDir {
            path: path.to_path_buf(),
            fd: open_directory(path)?,
            no_cached_lookups: std::sync::atomic::AtomicBool::new(false),
            durable: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Whether this process has made `dir`'s entry durable in its parent.
    pub fn is_durable(&self, dir: &Path) -> bool {
        self.durable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(dir)
    }

    /// Notes that `dir`'s entry is durable in its parent.
    pub fn mark_durable(&self, dir: &Path) {
        self.durable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dir.to_path_buf());
    }

    /// `openat2(2)` beneath this directory (the seam where tests inject the
    /// answers of older kernels).
    fn openat2(
        &self,
        rel: &Path,
        flags: rustix::fs::OFlags,
        resolve: rustix::fs::ResolveFlags,
    ) -> rustix::io::Result<rustix::fd::OwnedFd> {
        #[cfg(test)]
        if resolve.contains(rustix::fs::ResolveFlags::CACHED) && tests::OLD_KERNEL.with(|k| k.get())
        {
            return Err(rustix::io::Errno::INVAL);
        }
        rustix::fs::openat2(&self.fd, rel, flags, rustix::fs::Mode::empty(), resolve)
    }

    /// Opens the directory `rel` beneath this one in one `openat2(2)` call
    /// that follows no symbolic link; any error (including a kernel without
    /// `openat2`) sends the caller to the component-by-component path.
    pub fn open_dir_beneath(&self, rel: &Path) -> rustix::io::Result<rustix::fd::OwnedFd> {
        use rustix::fs::{OFlags, ResolveFlags};
        rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        )
    }

    /// Opens `rel` (relative to this directory) for reading.
    pub fn open_read(&self, rel: &Path, mode: ReadMode) -> io::Result<File> {
        use rustix::fs::{OFlags, ResolveFlags};
        use std::sync::atomic::Ordering;
        let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        if mode == ReadMode::Cached {
            if self.no_cached_lookups.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            resolve |= ResolveFlags::CACHED;
        }
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        match self.openat2(rel, flags, resolve) {
            Ok(fd) => Ok(File::from(fd)),
            // `RESOLVE_CACHED` is newer than `openat2` (Linux 5.12): the
            // caller takes the blocking path, now and from now on.
            Err(rustix::io::Errno::INVAL) if mode == ReadMode::Cached => {
                self.no_cached_lookups.store(true, Ordering::Relaxed);
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(rustix::io::Errno::AGAIN) => Err(io::ErrorKind::WouldBlock.into()),
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => match mode {
                ReadMode::Cached => Err(io::ErrorKind::WouldBlock.into()),
                // Without openat2 (Linux before 5.6, or refused by a
                // seccomp filter), `O_NOFOLLOW` guards only the last
                // component: refuse links in the directories first.
                ReadMode::Blocking => {
                    let path = self.path.join(rel);
                    let dir = path.parent().unwrap_or(&self.path);
                    if linked_below(&self.path, dir)? {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            "a directory on the path is a symbolic link",
                        ));
                    }
                    open_read(&path)
                }
            },
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads exactly `buf.len()` bytes at `offset` under `mode`; a short read is
/// [`io::ErrorKind::WouldBlock`] in cached mode (part of the data is not in
/// the page cache, or the file is short: the blocking path tells which) and
/// [`io::ErrorKind::UnexpectedEof`] in blocking mode.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64, mode: ReadMode) -> io::Result<()> {
    match mode {
        ReadMode::Blocking => file.read_exact_at(buf, offset),
        ReadMode::Cached if buf.is_empty() => Ok(()),
        ReadMode::Cached => {
            let flags = rustix::io::ReadWriteFlags::NOWAIT;
            let mut slices = [io::IoSliceMut::new(buf)];
            match rustix::io::preadv2(file, &mut slices, offset, flags) {
                Ok(n) if n == slices[0].len() => Ok(()),
                Ok(_) | Err(_) => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }
}

/// Reads the metadata of `key`'s object file at `rel` under `mode`;
/// `Ok(None)` when there is none.
///
/// # Errors
/// As [`own`]; [`Error::Backend`] for I/O failures, and in cached mode an
/// I/O error of kind [`io::ErrorKind::WouldBlock`] when the disk is needed.
pub fn read_meta_at(
    dir: &ObjectDir,
    rel: &Path,
    key: &Key,
    mode: ReadMode,
) -> Result<Option<ObjectMeta>> {
    let read = dir.open_read(rel, mode).and_then(|file| {
        let len = file.metadata()?.len();
        tail_meta(&file, len, rel, mode)
    });
    match read {
        Ok(parsed) => own(parsed, key, rel),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", rel.display()), e)),
    }
}

/// Whether `err` is the would-block signal of a cached read.
pub fn would_block(err: &Error) -> bool {
    use std::error::Error as _;
    matches!(err, Error::Backend { .. })
        && err
            .source()
            .and_then(|s| s.downcast_ref::<io::Error>())
            .is_some_and(|e| e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Makes `openat2` refuse `RESOLVE_CACHED` with `EINVAL`, as Linux
        /// before 5.12 does, on this thread.
        pub(super) static OLD_KERNEL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn a_kernel_without_cached_lookups_sends_reads_to_the_blocking_path() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("f"), b"content").expect("write");
        let objects = ObjectDir::open(dir.path()).expect("open");
        OLD_KERNEL.with(|k| k.set(true));
        let cached = objects.open_read(Path::new("f"), ReadMode::Cached);
        assert_eq!(
            cached.err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        OLD_KERNEL.with(|k| k.set(false));
        // Remembered: no second attempt at a cached lookup.
        let again = objects.open_read(Path::new("f"), ReadMode::Cached);
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        let mut read = String::new();
        std::io::Read::read_to_string(
            &mut objects
                .open_read(Path::new("f"), ReadMode::Blocking)
                .expect("blocking read"),
            &mut read,
        )
        .expect("read");
        assert_eq!(read, "content");
    }
}
