//! The `Backend` implementation of `FsBackend`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use storage_core::list::page_from_sorted;
use storage_core::{
    Backend, Body, ByteStream, Capabilities, DeleteOptions, ETag, Error, GetOptions, GetResult,
    Key, ListOptions, ListPage, Locality, ObjectMeta, PutMode, PutOptions, Result, check_if_match,
    check_put_mode,
};
use tokio::io::AsyncWriteExt;

use super::io::{
    StripeLock, create_new, open_read, read_exact_at, read_sidecar, sync_dir, write_synced,
};
use super::layout::{self, DIR_SUFFIX, Location, META_SUFFIX};
use super::sidecar::{self, Sidecar};

/// Content of at most this many bytes is read in the same blocking call that
/// opens it; larger content is streamed in [`READ_CHUNK_BYTES`] chunks.
const INLINE_READ_BYTES: u64 = 256 * 1024;
/// Size of each chunk of a streamed read, in bytes.
const READ_CHUNK_BYTES: u64 = 1024 * 1024;
/// How often a read retries when a concurrent put replaced the version it was
/// about to open.
const OPEN_ATTEMPTS: usize = 16;

/// An object store of plain files under a root directory (DESIGN section 3,
/// last paragraph).
///
/// Each object is two files in a directory tree that mirrors its key (see
/// the layout table in [`crate::fs`]): its content, as written, in a file named
/// by its ETag, and a JSON sidecar holding the key, size, ETag, SHA-256,
/// content type and user metadata.
///
/// **Durability and atomicity.** A put writes the content to a new file and
/// fsyncs it, fsyncs the directory, writes the new sidecar to a temporary
/// file and fsyncs it, renames it over the old sidecar (the commit point) and
/// fsyncs the directory again before returning. A reader sees the old version
/// or the new one, with matching content and metadata; a crash before the
/// rename leaves the old version. The previous content file is removed after
/// the commit; a reader that already opened it keeps reading it.
///
/// **Compare-and-swap.** The precondition check and the rename run under an
/// exclusive `flock` on one of 256 lock files, chosen by the key's SHA-256.
/// The lock holds across tasks, across `FsBackend` instances and across
/// processes on the same root.
///
/// **Integrity.** A full read computes the SHA-256 of the content and ends
/// with [`Error::ChecksumMismatch`] if it differs from the sidecar. Range reads
/// are not verified (the digest covers the whole object).
///
/// **Confinement.** Keys map to names that cannot leave the root (`..` and
/// `.` are not valid keys; every name carries a suffix of ours), files are
/// opened with `O_NOFOLLOW` and listing does not descend into symbolic links.
///
/// **Costs.** A listing walks the directory tree under the prefix and reads
/// every sidecar there, for each page. Empty directories are left behind by
/// deletes, as `object_store`'s `LocalFileSystem` does. A crash during a put
/// can leave an unreferenced content or temporary file (`~v…`, `~tmp-…`),
/// which no read or listing ever sees.
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
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    objects: PathBuf,
    locks: PathBuf,
}

impl FsBackend {
    /// Opens (creating if needed) a store rooted at `root`, which holds the
    /// folders `objects/` and `locks/`.
    ///
    /// # Errors
    /// [`Error::Backend`] when the folders cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let objects = root.join("objects");
        let locks = root.join("locks");
        for dir in [&objects, &locks] {
            fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(FsBackend {
            inner: Arc::new(Inner {
                root,
                objects,
                locks,
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn location(&self, key: &Key) -> Location {
        Location::of(&self.inner.objects, key)
    }
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::backend(false, "file task failed", e))?
}

/// Removes a content file unless disarmed: a failed, rejected or cancelled
/// put leaves nothing behind.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn new_etag() -> ETag {
    ETag::new(format!("{:032x}", rand::random::<u128>()))
}

fn write_bytes(location: &Location, path: &Path, data: &[u8]) -> Result<(u64, [u8; 32])> {
    let context = || format!("writing {}", path.display());
    fs::create_dir_all(&location.dir).map_err(|e| Error::io(context(), e))?;
    let mut file = create_new(path).map_err(|e| Error::io(context(), e))?;
    file.write_all(data).map_err(|e| Error::io(context(), e))?;
    file.sync_data().map_err(|e| Error::io(context(), e))?;
    Ok((data.len() as u64, Sha256::digest(data).into()))
}

async fn write_stream(location: &Location, path: &Path, body: Body) -> Result<(u64, [u8; 32])> {
    let context = || format!("writing {}", path.display());
    tokio::fs::create_dir_all(&location.dir)
        .await
        .map_err(|e| Error::io(context(), e))?;
    let owned = path.to_path_buf();
    let file =
        blocking(move || create_new(&owned).map_err(|e| Error::io("creating content file", e)))
            .await?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut chunks = body.into_stream();
    while let Some(chunk) = chunks.try_next().await? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(context(), e))?;
    }
    file.flush().await.map_err(|e| Error::io(context(), e))?;
    file.sync_data()
        .await
        .map_err(|e| Error::io(context(), e))?;
    Ok((size, hasher.finalize().into()))
}

/// The commit of a put, after its content is durable: publish the sidecar
/// under the stripe lock if the precondition holds.
fn commit(
    inner: &Inner,
    location: &Location,
    meta: &ObjectMeta,
    mode: &PutMode,
    content: &mut RemoveOnDrop,
) -> Result<()> {
    let dir_context = || format!("syncing {}", location.dir.display());
    sync_dir(&location.dir).map_err(|e| Error::io(dir_context(), e))?;
    let temp = location.temp();
    write_synced(&temp, &Sidecar::from_meta(meta).to_vec())?;
    let published = (|| {
        let _lock = StripeLock::acquire(&inner.locks, layout::stripe(&meta.key))?;
        let current = read_sidecar(&location.meta())?;
        check_put_mode(&meta.key, mode, current.as_ref().map(|c| &c.etag))?;
        fs::rename(&temp, location.meta())
            .map_err(|e| Error::io(format!("publishing {}", meta.key), e))?;
        Ok(current)
    })();
    let previous = match published {
        Ok(previous) => previous,
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    };
    content.disarm();
    sync_dir(&location.dir).map_err(|e| Error::io(dir_context(), e))?;
    if let Some(previous) = previous {
        remove_if_present(&location.data(&previous.etag))?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
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

fn open_version(location: &Location, key: &Key, options: &GetOptions) -> Result<Opened> {
    for _ in 0..OPEN_ATTEMPTS {
        let meta = read_sidecar(&location.meta())?.ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        if let Some(expected) = &options.if_match {
            check_if_match(key, expected, Some(&meta.etag))?;
        }
        let range = match &options.range {
            Some(r) => r.resolve(key, meta.size)?,
            None => 0..meta.size,
        };
        let file = match open_read(&location.data(&meta.etag)) {
            Ok(file) => file,
            // A concurrent put replaced this version: read the new sidecar.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("opening {key}"), e)),
        };
        let len = range.end - range.start;
        let content = if len <= INLINE_READ_BYTES {
            let mut buf = vec![0u8; len as usize];
            read_exact_at(&file, &mut buf, range.start, key)?;
            if options.range.is_none() {
                verify(key, &meta, Sha256::digest(&buf).into())?;
            }
            Content::Ready(Bytes::from(buf))
        } else {
            Content::File(file)
        };
        return Ok(Opened {
            meta,
            range,
            content,
        });
    }
    Err(Error::Backend {
        transient: true,
        message: format!("{key} was replaced {OPEN_ATTEMPTS} times while opening it"),
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

/// Streams `range` of `file` in chunks read on the blocking pool; with
/// `verify_against`, hashes every byte and ends with the checksum's verdict.
fn read_stream(
    file: File,
    range: std::ops::Range<u64>,
    key: Key,
    verify_against: Option<ObjectMeta>,
) -> ByteStream {
    struct State {
        file: Arc<File>,
        pos: u64,
        end: u64,
        hasher: Option<Sha256>,
    }
    let state = State {
        file: Arc::new(file),
        pos: range.start,
        end: range.end,
        hasher: verify_against.as_ref().map(|_| Sha256::new()),
    };
    stream::try_unfold(state, move |mut state| {
        let key = key.clone();
        let verify_against = verify_against.clone();
        async move {
            if state.pos == state.end {
                if let (Some(hasher), Some(meta)) = (state.hasher.take(), &verify_against) {
                    verify(&key, meta, hasher.finalize().into())?;
                }
                return Ok(None);
            }
            let len = (state.end - state.pos).min(READ_CHUNK_BYTES);
            blocking(move || {
                let mut buf = vec![0u8; len as usize];
                read_exact_at(&state.file, &mut buf, state.pos, &key)?;
                if let Some(hasher) = state.hasher.as_mut() {
                    hasher.update(&buf);
                }
                state.pos += len;
                Ok(Some((Bytes::from(buf), state)))
            })
            .await
        }
    })
    .boxed()
}

fn delete_blocking(
    inner: &Inner,
    location: &Location,
    key: &Key,
    options: &DeleteOptions,
) -> Result<()> {
    let removed = {
        let _lock = StripeLock::acquire(&inner.locks, layout::stripe(key))?;
        let current = read_sidecar(&location.meta())?;
        if let Some(expected) = &options.if_match {
            check_if_match(key, expected, current.as_ref().map(|c| &c.etag))?;
        }
        if current.is_some() {
            remove_if_present(&location.meta())?;
        }
        current
    };
    if let Some(removed) = removed {
        sync_dir(&location.dir)
            .map_err(|e| Error::io(format!("syncing {}", location.dir.display()), e))?;
        remove_if_present(&location.data(&removed.etag))?;
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
        } else if file_type.is_file() && name.ends_with(META_SUFFIX) {
            if let Some(meta) = read_sidecar(&entry.path())? {
                out.push(meta);
            }
        }
    }
    Ok(())
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
    let mut found = Vec::new();
    walk(&layout::directory(objects, segments), &mut found)?;
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
            checksums: true,
            ..Capabilities::none(Locality::Local)
        }
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let location = self.location(key);
        let etag = new_etag();
        let path = location.data(&etag);
        let mut content = RemoveOnDrop(Some(path.clone()));
        let (size, sha256) = match body.as_bytes().cloned() {
            Some(data) => {
                let (location, path) = (location.clone(), path.clone());
                blocking(move || write_bytes(&location, &path, &data)).await?
            }
            None => write_stream(&location, &path, body).await?,
        };
        let PutOptions {
            mode,
            content_type,
            metadata,
        } = options;
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            etag,
            last_modified: sidecar::now(),
            content_type,
            metadata,
            sha256: Some(sha256),
        };
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            commit(&inner, &location, &meta, &mode, &mut content)?;
            Ok(meta)
        })
        .await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let location = self.location(key);
        let owned_key = key.clone();
        let full_read = options.range.is_none();
        let opened = blocking(move || open_version(&location, &owned_key, &options)).await?;
        let body = match opened.content {
            Content::Ready(bytes) => stream::once(async move { Ok(bytes) }).boxed(),
            Content::File(file) => read_stream(
                file,
                opened.range.clone(),
                key.clone(),
                full_read.then(|| opened.meta.clone()),
            ),
        };
        Ok(GetResult {
            meta: opened.meta,
            range: opened.range,
            body,
        })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let meta_path = self.location(key).meta();
        let owned_key = key.clone();
        blocking(move || {
            read_sidecar(&meta_path)?.ok_or_else(|| Error::NotFound {
                key: owned_key.to_string(),
            })
        })
        .await
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
