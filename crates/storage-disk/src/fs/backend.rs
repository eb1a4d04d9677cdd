//! The `Backend` implementation of `FsBackend`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use storage_core::presign::LocalPresigner;
use storage_core::raw::list::page_from_sorted;
use storage_core::raw::{check_if_match, check_put_mode};
use storage_core::{
    Backend, Body, ByteStream, Capabilities, DeleteOptions, ETag, Error, GetOptions, GetResult,
    Key, ListOptions, ListPage, Locality, ObjectMeta, PresignMethod, PutMode, PutOptions, Result,
};
use tokio::io::AsyncWriteExt;

use super::dir::{DirHandle, Found, RemoveOnDrop};
use super::io::{
    Current, ObjectDir, ReadMode, StripeLocks, name_folding, open_directory, own, read_any_object,
    read_at, read_exact_at, read_meta_at, sync_dir, tail_meta, would_block,
};
use super::layout::{self, DIR_SUFFIX, Location, OBJECT_SUFFIX};
use super::sweep::{DEFAULT_SWEEP_AGE, SweepReport, sweep_blocking};
use super::trailer::{self, Decoded};
use crate::power_loss;
use crate::util::blocking;

/// Content of at most this many bytes is read in the same blocking call that
/// opens it; larger content is streamed in [`READ_CHUNK_BYTES`] chunks.
const INLINE_READ_BYTES: u64 = 256 * 1024;
/// Size of each chunk of a streamed read, in bytes.
const READ_CHUNK_BYTES: u64 = 2 * 1024 * 1024;
/// Content of at most this many bytes may be read on the async worker thread
/// when the page cache holds it (see [`ReadMode::Cached`]): its SHA-256 takes
/// a few tens of microseconds at most.
const CACHED_READ_BYTES: u64 = 64 * 1024;
/// Chunks queued for the hashing thread of a streamed full read.
const HASH_QUEUE_CHUNKS: usize = 4;
/// Content larger than this is hashed on a second thread while it is written.
const PARALLEL_HASH_BYTES: usize = 1024 * 1024;
/// An object store of plain files under a root directory (DESIGN section 3,
/// last paragraph).
///
/// Each object is one file, `<segment>~obj`, in a directory tree that
/// mirrors its key: its content as written, followed by a trailer holding
/// the key, size, ETag, SHA-256, content type and user metadata (the
/// layout table is in the [crate docs](crate)).
///
/// **Durability and atomicity.** A put writes content and trailer to a new
/// temporary file and fsyncs it, then renames it over the key's object file
/// (the commit point) and fsyncs the directory before returning: two
/// `fsync` calls per put. A reader opens one file, so it sees the old
/// version or the new one, with matching content and metadata, and keeps
/// reading the version it opened whatever puts follow; a crash before the
/// rename leaves the old version.
///
/// **Format.** Roots written by the first format (a content file and a JSON
/// sidecar per object) are converted when opened: see [`FsBackend::new`].
///
/// **Compare-and-swap.** The precondition check and the rename run under an
/// exclusive `flock` on one of 256 lock files, chosen by the key's SHA-256.
/// The lock holds across tasks, across `FsBackend` instances and across
/// processes on the same root.
///
/// **Integrity.** A full read computes the SHA-256 of the content and ends
/// with [`Error::ChecksumMismatch`] if it differs from the trailer's; the
/// trailer carries its own CRC-32C, and its size must match the file's. Range reads
/// are not verified (the digest covers the whole object).
///
/// **Confinement.** Keys map to names that cannot leave the root (`..` and
/// `.` are not valid keys; every name carries a suffix of ours). Every
/// write (puts, deletes, the sweep) is made relative to a handle of the
/// object's directory, opened one component at a time with `O_NOFOLLOW`,
/// so it never follows a symbolic link inside the root, even a directory
/// swapped for a link while a put runs; reads resolve beneath the object
/// directory with `openat2(RESOLVE_NO_SYMLINKS)`; listing does not descend
/// into symbolic links.
///
/// **Costs.** A listing walks the directory tree under the prefix and reads
/// every object's trailer there, for each page. Empty directories are left
/// behind by deletes, as `object_store`'s `LocalFileSystem` does. A crash
/// during a put can leave a temporary file (`~tmp-…`), which no read or
/// listing ever sees; [`FsBackend::new`] sweeps those older
/// than an hour on a background thread, and [`FsBackend::sweep`] on demand.
///
/// **Damage and hostile file systems.** An object file whose trailer cannot
/// be decoded makes reads of its own key fail with
/// [`Error::ChecksumMismatch`]; an
/// overwrite or unconditional delete replaces it (a conditional one is
/// refused, since its version is unknown), and listings leave it out with a
/// warning instead of failing. Opening refuses a file system that folds
/// case or normalizes Unicode in names (probed with a file), and every read
/// and write checks that the trailer it found holds its own key, so that
/// `a` can never be served or overwrite `A`'s object.
///
/// ```
/// use storage_core::BackendExt;
/// use storage_disk::FsBackend;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = FsBackend::new(dir.path())?;
/// store.put_bytes("reports/2026.csv", "year,total\n").await?;
/// assert_eq!(store.get_bytes("reports/2026.csv").await?, "year,total\n");
/// # Ok::<(), storage_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FsBackend {
    inner: Arc<Inner>,
    /// Signs the URLs of [`Backend::presign`] (see
    /// [`FsBackend::with_presigner`]).
    presigner: Option<Arc<LocalPresigner>>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    objects: PathBuf,
    /// The lock stripes of compare-and-swap.
    locks: StripeLocks,
    dir: ObjectDir,
}

impl FsBackend {
    /// Opens (creating if needed) a store rooted at `root`, which holds the
    /// folders `objects/` and `locks/` and the file `format`.
    ///
    /// A root of the first format (a content file and a JSON sidecar per
    /// object, before the `format` file existed) is converted in place
    /// first, once, whatever crashes interrupt it; processes of an earlier
    /// version must not use the root afterwards.
    ///
    /// # Errors
    /// [`Error::Backend`] when the folders cannot be created, the file
    /// system folds case or normalizes names, the `format` file names
    /// another format, or the conversion fails.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let objects = root.join("objects");
        let locks = root.join("locks");
        for dir in [&objects, &locks] {
            let made = crate::util::create_dirs(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            // Each new directory's entry is durable before anything in it.
            for parent in made.iter().filter_map(|d| d.parent()) {
                if !parent.as_os_str().is_empty() {
                    sync_dir(parent)
                        .map_err(|e| Error::io(format!("syncing {}", parent.display()), e))?;
                }
            }
        }
        let dir = ObjectDir::open(&objects)?;
        let locks_dir = open_directory(&locks)?;
        let folding = name_folding(&dir)
            .map_err(|e| Error::io(format!("probing names in {}", objects.display()), e))?;
        if let Some(what) = folding {
            return Err(Error::Backend {
                transient: false,
                message: format!(
                    "the file system of {} {what}: keys that differ only there would share files, so FsBackend does not open it (use a file system that keeps names byte for byte)",
                    objects.display()
                ),
                source: None,
            });
        }
        let locks = StripeLocks::new(locks_dir, &locks);
        if let Some(converted) = super::migrate::ensure_format(&root, &dir, locks.dir())?
            && converted != super::migrate::Converted::default()
        {
            tracing::info!(
                objects = converted.objects,
                unreadable = converted.unreadable,
                "converted a root of the first format"
            );
        }
        let swept = ObjectDir::open(&objects)?;
        let sweeping = std::thread::Builder::new()
            .name("fs-sweep".into())
            .spawn(move || match sweep_blocking(&swept, DEFAULT_SWEEP_AGE) {
                Ok(report) if report.files_removed > 0 => tracing::info!(
                    files = report.files_removed,
                    bytes = report.bytes_removed,
                    "removed orphaned files"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping orphaned files failed"),
            });
        if let Err(e) = sweeping {
            tracing::warn!(error = %e, "could not start the sweep of orphaned files");
        }
        Ok(FsBackend {
            inner: Arc::new(Inner {
                root,
                objects,
                locks,
                dir,
            }),
            presigner: None,
        })
    }

    /// This store with presigned URLs: [`Backend::presign`] signs URLs
    /// under `presigner`'s base URL, which the application serves by
    /// checking each request with [`LocalPresigner::verify`] and answering
    /// it from this store (see [`storage_core::presign`]), and
    /// [`Capabilities::presigned_urls`] is true. Clones share the setting
    /// they were made with.
    pub fn with_presigner(mut self, presigner: LocalPresigner) -> Self {
        self.presigner = Some(Arc::new(presigner));
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Removes orphaned files (temporary files left by crashes, and content
    /// files of the first format no object took; see [`SweepReport`])
    /// unchanged for at least
    /// `older_than`. [`FsBackend::new`] runs one in the background with
    /// [`DEFAULT_SWEEP_AGE`]. Safe while other tasks and processes use the
    /// store, as long as no put takes longer than `older_than` between
    /// writing its last byte and committing.
    ///
    /// # Errors
    /// The I/O error of listing a directory, reading a trailer or removing
    /// a file.
    pub async fn sweep(&self, older_than: std::time::Duration) -> Result<SweepReport> {
        let inner = Arc::clone(&self.inner);
        blocking(move || sweep_blocking(&inner.dir, older_than)).await
    }

    fn location(&self, key: &Key) -> Location {
        Location::of(&self.inner.objects, key)
    }
}

fn new_etag() -> ETag {
    ETag::new(format!("{:032x}", rand::random::<u128>()))
}

/// Opens (making it if needed) the directory of `location` beneath the
/// object directory, through no symbolic link (see [`DirHandle`]).
///
/// # Errors
/// [`Error::Backend`] (not transient) naming a link on the path, or the I/O
/// error.
fn object_dir(inner: &Inner, location: &Location) -> Result<Arc<DirHandle>> {
    match DirHandle::open(&inner.dir, &location.rel_dir, true)? {
        Found::Dir(dir) => Ok(Arc::new(dir)),
        Found::Link(path) => Err(Error::Backend {
            transient: false,
            message: format!(
                "{} is a symbolic link or not a directory; FsBackend never follows links",
                path.display()
            ),
            source: None,
        }),
        Found::Missing => Err(Error::Backend {
            transient: true,
            message: format!("{} vanished while it was made", location.dir.display()),
            source: None,
        }),
    }
}

/// Writes `data` to the new file `name` in `dir`, hashing it (on a second
/// thread past [`PARALLEL_HASH_BYTES`]); the file is not yet synced.
fn write_bytes(dir: &DirHandle, name: &str, data: &[u8]) -> Result<(File, [u8; 32])> {
    let path = dir.path().join(name);
    let context = || format!("writing {}", path.display());
    let mut file = create_content(dir, name).map_err(|e| Error::io(context(), e))?;
    let digest = std::thread::scope(|scope| {
        let hashing =
            (data.len() > PARALLEL_HASH_BYTES).then(|| scope.spawn(|| Sha256::digest(data)));
        file.write_all(data)?;
        power_loss::wrote(&path, 0, data);
        Ok::<_, io::Error>(match hashing {
            Some(handle) => handle.join().unwrap_or_else(|_| Sha256::digest(data)),
            None => Sha256::digest(data),
        })
    })
    .map_err(|e| Error::io(context(), e))?;
    Ok((file, digest.into()))
}

/// Writes the body to the new file `name` in `dir`, hashing it; the file is
/// not yet synced. Returns the file, the content's size and SHA-256.
async fn write_stream(
    dir: &Arc<DirHandle>,
    name: &str,
    body: Body,
) -> Result<(File, u64, [u8; 32])> {
    let path = dir.path().join(name);
    let context = || format!("writing {}", path.display());
    let (owned_dir, owned_name) = (Arc::clone(dir), name.to_string());
    let file = blocking(move || {
        create_content(&owned_dir, &owned_name)
            .map_err(|e| Error::io("creating a temporary file", e))
    })
    .await?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut chunks = body.into_stream();
    while let Some(chunk) = chunks.try_next().await? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(context(), e))?;
        power_loss::wrote(&path, size, &chunk);
        size += chunk.len() as u64;
    }
    file.flush().await.map_err(|e| Error::io(context(), e))?;
    Ok((file.into_std().await, size, hasher.finalize().into()))
}

/// Appends `meta`'s trailer to `file` (the file `name` in `dir`, whose
/// content is `meta.size` bytes) and fsyncs it.
fn seal(dir: &DirHandle, name: &str, mut file: File, meta: &ObjectMeta) -> Result<()> {
    let path = dir.path().join(name);
    let trailer = trailer::encode(meta);
    file.write_all(&trailer)
        .and_then(|()| {
            power_loss::wrote(&path, meta.size, &trailer);
            file.sync_data()
        })
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    power_loss::synced(&path);
    Ok(())
}

/// Creates a put's temporary file and holds an exclusive `flock` on it
/// while it is written, so that [`FsBackend::sweep`] (in any process) never
/// takes a put that pauses for a long time for an orphan.
fn create_content(dir: &DirHandle, name: &str) -> io::Result<File> {
    let file = dir.create_new(name)?;
    file.lock()?;
    Ok(file)
}

/// The commit of a put, after its file `temp` is durable: under the stripe
/// lock, if the precondition holds, rename it over the key's object file
/// and make the rename durable, all within `dir`.
fn commit(
    inner: &Inner,
    dir: &DirHandle,
    location: &Location,
    temp: &str,
    meta: &ObjectMeta,
    mode: &PutMode,
    guard: &mut RemoveOnDrop,
) -> Result<()> {
    let object = location.object_name();
    let _lock = inner.locks.acquire(layout::stripe(&meta.key))?;
    let current = dir.read_current(&object, &meta.key)?;
    match (mode, &current) {
        // Something is there, whatever its version.
        (PutMode::IfNotExists, Current::Unreadable) => {
            return Err(Error::AlreadyExists {
                key: meta.key.to_string(),
            });
        }
        _ => check_put_mode(&meta.key, mode, current.version().map(|c| &c.etag))?,
    }
    dir.rename(temp, &object).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            // Removed by hand, or by a sweep that misjudged a paused put.
            Error::Backend {
                transient: false,
                message: format!("the file of {} vanished before it was published", meta.key),
                source: Some(Box::new(e)),
            }
        } else {
            Error::io(format!("publishing {}", meta.key), e)
        }
    })?;
    guard.disarm();
    // Still under the lock: a writer after this one finds the rename
    // durable, so its own commit can never be ordered before ours on disk.
    dir.sync()
        .map_err(|e| Error::io(format!("syncing {}", dir.path().display()), e))
}

/// What a read found: the version's metadata, the range to serve, and its
/// bytes when small enough to read at once, or the open content file.
struct Opened {
    meta: ObjectMeta,
    range: std::ops::Range<u64>,
    content: Content,
}

enum Content {
    Ready(Bytes),
    File(File),
}

/// Reads `buf.len()` bytes of `key`'s file at `offset` under `mode`.
fn read_in(file: &File, buf: &mut [u8], offset: u64, mode: ReadMode, key: &Key) -> Result<()> {
    match mode {
        ReadMode::Blocking => read_exact_at(file, buf, offset, key),
        ReadMode::Cached => {
            read_at(file, buf, offset, mode).map_err(|e| Error::io(format!("reading {key}"), e))
        }
    }
}

/// Opens the current version of `key` and reads its trailer, under `mode`;
/// a small full read takes the whole file in one read.
///
/// In [`ReadMode::Cached`] mode anything that would wait for the disk, and
/// content larger than [`CACHED_READ_BYTES`], fails with the would-block
/// signal (see [`would_block`]) and the caller retries on the blocking pool.
fn open_version(
    dir: &ObjectDir,
    location: &Location,
    key: &Key,
    options: &GetOptions,
    mode: ReadMode,
) -> Result<Opened> {
    let rel = location.rel_object();
    let file = match dir.open_read(&rel, mode) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                key: key.to_string(),
            });
        }
        Err(e) => return Err(Error::io(format!("opening {key}"), e)),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("opening {key}"), e))?
        .len();
    let limit = match mode {
        ReadMode::Blocking => INLINE_READ_BYTES,
        ReadMode::Cached => CACHED_READ_BYTES,
    };
    let not_found = || Error::NotFound {
        key: key.to_string(),
    };
    if options.range.is_none() && len <= limit {
        let mut buf = vec![0u8; len as usize];
        read_in(&file, &mut buf, 0, mode, key)?;
        let decoded = trailer::decode(len, &buf, &rel).and_then(|d| match d {
            Decoded::Meta(meta) => Ok(meta),
            Decoded::Need(_) => unreachable_need(&rel),
        });
        let meta = own(decoded, key, &rel)?.ok_or_else(not_found)?;
        options.check(key, &meta)?;
        buf.truncate(meta.size as usize);
        verify(key, &meta, Sha256::digest(&buf).into())?;
        return Ok(Opened {
            range: 0..meta.size,
            meta,
            content: Content::Ready(Bytes::from(buf)),
        });
    }
    let decoded =
        tail_meta(&file, len, &rel, mode).map_err(|e| Error::io(format!("reading {key}"), e))?;
    let meta = own(decoded, key, &rel)?.ok_or_else(not_found)?;
    options.check(key, &meta)?;
    let range = match &options.range {
        Some(r) => r.resolve(key, meta.size)?,
        None => 0..meta.size,
    };
    let len = range.end - range.start;
    if mode == ReadMode::Cached && len > CACHED_READ_BYTES {
        return Err(Error::io("large read", io::ErrorKind::WouldBlock.into()));
    }
    let content = if len <= INLINE_READ_BYTES {
        let mut buf = vec![0u8; len as usize];
        read_in(&file, &mut buf, range.start, mode, key)?;
        if options.range.is_none() {
            verify(key, &meta, Sha256::digest(&buf).into())?;
        }
        Content::Ready(Bytes::from(buf))
    } else {
        Content::File(file)
    };
    Ok(Opened {
        meta,
        range,
        content,
    })
}

/// A whole file decoded as a tail can never need more of it; were it to,
/// the file is not ours.
fn unreachable_need(path: &Path) -> Result<ObjectMeta> {
    Err(Error::Backend {
        transient: false,
        message: format!(
            "corrupt object file {}: trailer past its start",
            path.display()
        ),
        source: None,
    })
}

fn verify(key: &Key, meta: &ObjectMeta, actual: [u8; 32]) -> Result<()> {
    match meta.sha256 {
        Some(expected) if expected != actual => Err(Error::ChecksumMismatch {
            key: key.to_string(),
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        }),
        _ => Ok(()),
    }
}

/// Streams `range` of `file` in chunks read on the blocking pool.
///
/// With `verify_against` (a full read), every chunk is also sent to a hashing
/// task on another thread, so that hashing overlaps reading; the stream ends
/// with the checksum's verdict.
fn read_stream(
    file: Arc<File>,
    range: std::ops::Range<u64>,
    key: Key,
    verify_against: Option<ObjectMeta>,
) -> ByteStream {
    struct State {
        file: Arc<File>,
        pos: u64,
        end: u64,
        hashing: Option<Hashing>,
    }
    struct Hashing {
        chunks: std::sync::mpsc::SyncSender<Bytes>,
        digest: tokio::task::JoinHandle<[u8; 32]>,
        meta: ObjectMeta,
    }
    let hashing = verify_against.map(|meta| {
        let (chunks, received) = std::sync::mpsc::sync_channel::<Bytes>(HASH_QUEUE_CHUNKS);
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            for chunk in received {
                hasher.update(&chunk);
            }
            <[u8; 32]>::from(hasher.finalize())
        });
        Hashing {
            chunks,
            digest,
            meta,
        }
    });
    let state = State {
        file,
        pos: range.start,
        end: range.end,
        hashing,
    };
    stream::try_unfold(state, move |mut state| {
        let key = key.clone();
        async move {
            if state.pos == state.end {
                if let Some(Hashing {
                    chunks,
                    digest,
                    meta,
                }) = state.hashing.take()
                {
                    drop(chunks);
                    let actual = digest
                        .await
                        .map_err(|e| Error::backend(false, "hashing task failed", e))?;
                    verify(&key, &meta, actual)?;
                }
                return Ok(None);
            }
            let len = (state.end - state.pos).min(READ_CHUNK_BYTES);
            blocking(move || {
                let chunk = read_chunk(&state.file, state.pos, len, &key)?;
                if let Some(hashing) = &state.hashing {
                    hashing.chunks.send(chunk.clone()).map_err(|e| {
                        Error::backend(false, format!("hashing {key} stopped"), e.to_string())
                    })?;
                }
                state.pos += len;
                Ok(Some((chunk, state)))
            })
            .await
        }
    })
    .boxed()
}

/// Reads `range` of `file` into one buffer; with `verify_against`, a second
/// thread hashes each piece as soon as it is read, and a mismatch is
/// [`Error::ChecksumMismatch`].
fn read_whole(
    file: &File,
    range: std::ops::Range<u64>,
    key: &Key,
    verify_against: Option<&ObjectMeta>,
) -> Result<Bytes> {
    // A zeroed allocation this large comes from fresh pages: no memset.
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    let digest = std::thread::scope(|scope| {
        let (pieces, received) = std::sync::mpsc::sync_channel::<&[u8]>(HASH_QUEUE_CHUNKS);
        let hasher = verify_against.map(|_| {
            scope.spawn(move || {
                let mut hasher = Sha256::new();
                for piece in received {
                    hasher.update(piece);
                }
                <[u8; 32]>::from(hasher.finalize())
            })
        });
        let mut pos = range.start;
        for piece in buf.chunks_mut(READ_CHUNK_BYTES as usize) {
            read_exact_at(file, piece, pos, key)?;
            pos += piece.len() as u64;
            if hasher.is_some() {
                let _ = pieces.send(&*piece);
            }
        }
        drop(pieces);
        hasher
            .map(|h| {
                h.join()
                    .map_err(|_| Error::backend(false, format!("hashing {key} failed"), "panic"))
            })
            .transpose()
    })?;
    if let (Some(meta), Some(actual)) = (verify_against, digest) {
        verify(key, meta, actual)?;
    }
    Ok(Bytes::from(buf))
}

/// Reads `len` bytes at `pos` without zero-filling the buffer first.
fn read_chunk(file: &File, pos: u64, len: u64, key: &Key) -> Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut reader = file;
    let mut buf = Vec::with_capacity(len as usize);
    reader
        .seek(SeekFrom::Start(pos))
        .and_then(|_| reader.take(len).read_to_end(&mut buf))
        .map_err(|e| Error::io(format!("reading {key}"), e))?;
    if buf.len() as u64 != len {
        return Err(Error::Backend {
            transient: false,
            message: format!("content of {key} is shorter than recorded"),
            source: None,
        });
    }
    Ok(Bytes::from(buf))
}

fn delete_blocking(
    inner: &Inner,
    location: &Location,
    key: &Key,
    options: &DeleteOptions,
) -> Result<()> {
    let absent = || match &options.if_match {
        Some(expected) => check_if_match(key, expected, None),
        None => Ok(()),
    };
    let dir = match DirHandle::open(&inner.dir, &location.rel_dir, false)? {
        Found::Dir(dir) => dir,
        // Nothing below a link is ours: the key holds no object here.
        Found::Missing | Found::Link(_) => return absent(),
    };
    let object = location.object_name();
    let removed = {
        let _lock = inner.locks.acquire(layout::stripe(key))?;
        let current = dir.read_current(&object, key)?;
        if let Some(expected) = &options.if_match {
            check_if_match(key, expected, current.version().map(|c| &c.etag))?;
        }
        !matches!(current, Current::Absent)
            && dir
                .remove(&object)
                .map_err(|e| Error::io(format!("removing {key}"), e))?
    };
    if removed {
        dir.sync()
            .map_err(|e| Error::io(format!("syncing {}", dir.path().display()), e))?;
    }
    Ok(())
}

/// Collects the metadata of every object in and below `dir`.
fn walk(dir: &Path, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let file_type = entry
            .file_type()
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if file_type.is_dir() && name.ends_with(DIR_SUFFIX) {
            walk(&entry.path(), out)?;
        } else if file_type.is_file() && name.ends_with(OBJECT_SUFFIX) {
            match read_any_object(&entry.path()) {
                Ok(Some(meta)) => out.push(meta),
                Ok(None) => {}
                // Its own key fails on read; its neighbours still list.
                Err(e @ Error::ChecksumMismatch { .. }) => {
                    tracing::warn!(error = %e, "an unreadable object file is left out of a listing");
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Whether a directory between `objects` and `dir` (inclusive) is a symbolic
/// link: see [`io::linked_below`](super::io::linked_below).
fn linked_below(objects: &Path, dir: &Path) -> Result<bool> {
    super::io::linked_below(objects, dir)
        .map_err(|e| Error::io(format!("checking {} for links", dir.display()), e))
}

fn list_blocking(objects: &Path, options: &ListOptions) -> Result<ListPage> {
    // Only the directory of the prefix's complete segments can hold matches.
    let complete = options
        .prefix
        .rfind('/')
        .map_or("", |i| &options.prefix[..i]);
    let segments = complete.split('/').filter(|s| !s.is_empty());
    if complete.split('/').any(|s| s == "." || s == "..") {
        return Ok(ListPage::default());
    }
    let start = layout::directory(objects, segments);
    let mut found = Vec::new();
    if !linked_below(objects, &start)? {
        walk(&start, &mut found)?;
    }
    found.retain(|m| m.key.as_str().starts_with(options.prefix.as_str()));
    found.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    page_from_sorted(found, options)
}

#[async_trait]
impl Backend for FsBackend {
    fn name(&self) -> &str {
        "fs"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: true,
            conditional_delete: true,
            presigned_urls: self.presigner.is_some(),
            checksums: true,
            unique_etags: true,
            ..Capabilities::none(Locality::Local)
        }
    }

    /// A stat of the root directory.
    async fn health(&self) -> Result<()> {
        crate::util::root_health(self.root()).await
    }

    /// A URL of the configured [`LocalPresigner`]
    /// ([`FsBackend::with_presigner`]); [`Error::Unsupported`] without one.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: std::time::Duration,
    ) -> Result<String> {
        crate::util::presign(self, self.presigner.as_deref(), method, key, expires_in)
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let location = self.location(key);
        let temp = location.temp_name();
        let PutOptions {
            mode,
            content_type,
            metadata,
        } = options;
        let key = key.clone();
        let version = move |size: u64, sha256: [u8; 32]| ObjectMeta {
            key,
            size,
            etag: new_etag(),
            last_modified: trailer::now(),
            content_type,
            metadata,
            sha256: Some(sha256),
        };
        let inner = Arc::clone(&self.inner);
        // A body in memory is written, sealed and committed in one call on
        // the blocking pool.
        if let Some(data) = body.as_bytes().cloned() {
            return blocking(move || {
                let dir = object_dir(&inner, &location)?;
                let mut guard = RemoveOnDrop::new(Arc::clone(&dir), temp.clone());
                let (file, sha256) = write_bytes(&dir, &temp, &data)?;
                let meta = version(data.len() as u64, sha256);
                seal(&dir, &temp, file, &meta)?;
                commit(&inner, &dir, &location, &temp, &meta, &mode, &mut guard)?;
                Ok(meta)
            })
            .await;
        }
        let (owned, of) = (Arc::clone(&inner), location.clone());
        let dir = blocking(move || object_dir(&owned, &of)).await?;
        let mut guard = RemoveOnDrop::new(Arc::clone(&dir), temp.clone());
        let (file, size, sha256) = write_stream(&dir, &temp, body).await?;
        let meta = version(size, sha256);
        blocking(move || {
            seal(&dir, &temp, file, &meta)?;
            commit(&inner, &dir, &location, &temp, &meta, &mode, &mut guard)?;
            Ok(meta)
        })
        .await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let location = self.location(key);
        let full_read = options.range.is_none();
        let opened = match open_version(&self.inner.dir, &location, key, &options, ReadMode::Cached)
        {
            Err(e) if would_block(&e) => {
                let inner = Arc::clone(&self.inner);
                let owned_key = key.clone();
                blocking(move || {
                    open_version(
                        &inner.dir,
                        &location,
                        &owned_key,
                        &options,
                        ReadMode::Blocking,
                    )
                })
                .await?
            }
            other => other?,
        };
        let Opened {
            meta,
            range,
            content,
        } = opened;
        let file = match content {
            Content::Ready(bytes) => {
                let body = stream::once(async move { Ok(bytes) }).boxed();
                return Ok(GetResult::new(meta, range, body));
            }
            Content::File(file) => Arc::new(file),
        };
        let verify_against = full_read.then(|| meta.clone());
        let body = read_stream(
            Arc::clone(&file),
            range.clone(),
            key.clone(),
            verify_against.clone(),
        );
        let (whole_range, owned_key) = (range.clone(), key.clone());
        let collect = async move {
            blocking(move || read_whole(&file, whole_range, &owned_key, verify_against.as_ref()))
                .await
        };
        Ok(GetResult::new(meta, range, body).with_collect(Box::pin(collect)))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let rel = self.location(key).rel_object();
        let found = match read_meta_at(&self.inner.dir, &rel, key, ReadMode::Cached) {
            Err(e) if would_block(&e) => {
                let inner = Arc::clone(&self.inner);
                let key = key.clone();
                blocking(move || read_meta_at(&inner.dir, &rel, &key, ReadMode::Blocking)).await?
            }
            other => other?,
        };
        found.ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let location = self.location(key);
        let key = key.clone();
        blocking(move || delete_blocking(&inner, &location, &key, &options)).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let inner = Arc::clone(&self.inner);
        let options = options.clone();
        blocking(move || list_blocking(&inner.objects, &options)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_core::BackendExt;

    fn ready_bytes(opened: Opened) -> Bytes {
        match opened.content {
            Content::Ready(bytes) => bytes,
            Content::File(_) => panic!("expected content read at once"),
        }
    }

    #[tokio::test]
    async fn cached_and_blocking_reads_agree() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FsBackend::new(dir.path()).expect("store");
        store.put_bytes("a/b", vec![9u8; 5000]).await.expect("put");
        let key = Key::new("a/b").expect("key");
        let location = store.location(&key);
        let options = GetOptions::default();
        let cached = open_version(
            &store.inner.dir,
            &location,
            &key,
            &options,
            ReadMode::Cached,
        )
        .expect("a just-written object is in the page cache");
        let blocking = open_version(
            &store.inner.dir,
            &location,
            &key,
            &options,
            ReadMode::Blocking,
        )
        .expect("blocking read");
        assert_eq!(cached.meta, blocking.meta);
        assert_eq!(ready_bytes(cached), ready_bytes(blocking));
    }

    #[tokio::test]
    async fn cached_mode_defers_large_reads_to_the_blocking_pool() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FsBackend::new(dir.path()).expect("store");
        let len = CACHED_READ_BYTES as usize + 1;
        store.put_bytes("big", vec![1u8; len]).await.expect("put");
        let key = Key::new("big").expect("key");
        let location = store.location(&key);
        let result = open_version(
            &store.inner.dir,
            &location,
            &key,
            &GetOptions::default(),
            ReadMode::Cached,
        );
        assert!(
            matches!(&result, Err(e) if would_block(e)),
            "{:?}",
            result.err()
        );
    }
}
