//! Helpers shared by the suites.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use storage_core::{Backend, Body, Key, ObjectMeta, PutMode, PutOptions, Result};

/// A key the check knows to be valid.
pub fn key(s: &str) -> Result<Key> {
    Key::new(s)
}

/// Puts `data` at `key` with `mode`.
pub async fn put(
    b: &dyn Backend,
    key: &Key,
    data: impl Into<Bytes>,
    mode: PutMode,
) -> Result<ObjectMeta> {
    b.put(key, Body::from(data.into()), PutOptions::mode(mode))
        .await
}

/// Puts `data` with metadata `pairs`.
pub async fn put_with_metadata(
    b: &dyn Backend,
    key: &Key,
    data: &'static str,
    pairs: &[(&str, &str)],
) -> Result<ObjectMeta> {
    let options = PutOptions {
        metadata: metadata(pairs),
        ..Default::default()
    };
    b.put(key, Body::from(data), options).await
}

/// Metadata from pairs.
pub fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Deterministic bytes: `len` bytes of a xorshift sequence seeded by `seed`,
/// so that a misplaced chunk shows.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut out = Vec::with_capacity(len);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    Bytes::from(out)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Resident memory of this process in bytes, from `/proc/self/statm`, or
/// `None` where that file does not exist.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Resets this process's peak resident memory (`VmHWM`) to its current
/// resident memory, by writing `5` to `/proc/self/clear_refs` (Linux 4.0 and
/// later, proc(5)), and returns the resident bytes at that moment: the
/// baseline for [`peak_resident_bytes`].
///
/// # Errors
/// The I/O error when `/proc/self/clear_refs` cannot be written or the
/// resident memory cannot be read.
pub fn reset_peak_resident() -> std::io::Result<u64> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    resident_bytes().ok_or_else(|| std::io::Error::other("cannot read /proc/self/statm"))
}

/// Peak resident memory of this process in bytes since it started or since
/// the last [`reset_peak_resident`] (`VmHWM` of `/proc/self/status`), or
/// `None` where that file does not exist.
pub fn peak_resident_bytes() -> Option<u64> {
    peak_resident_kib().map(|kib| kib * 1024)
}

fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory of this process in MiB (`VmHWM` of
/// `/proc/self/status`), or `None` where that file does not exist.
pub fn peak_resident_mib() -> Option<u64> {
    peak_resident_kib().map(|kib| kib / 1024)
}

/// Free space for unprivileged users on the file system holding `path`, in
/// MiB (`statvfs(3)`: `f_bavail × f_frsize`), or `None` if it cannot be read.
pub fn free_mib(path: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize) >> 20)
}

/// What [`upload_from_a_sparse_file`] measured.
#[derive(Debug, Clone, Copy)]
pub struct UploadFigures {
    /// Seconds the put took.
    pub seconds: f64,
    /// Peak resident memory of this process before the put, in MiB.
    pub peak_before_mib: u64,
    /// Peak resident memory of this process after the put, in MiB.
    pub peak_after_mib: u64,
}

/// Puts a sparse file of `len` bytes (zeros that take no disk space) to
/// `key` as a file body, checks that the stored size is `len`, and returns
/// the time and this process's peak memory: the memory tests of the remote
/// backends, which run alone in their test binary so the peak is the
/// upload's.
///
/// # Errors
/// The put's or head's error, or a size mismatch, as a [`crate::Failure`].
pub async fn upload_from_a_sparse_file(
    backend: &dyn Backend,
    key: &Key,
    len: u64,
) -> std::result::Result<UploadFigures, crate::Failure> {
    // The local servers keep what they store under the temporary directory:
    // a full disk shows as an unexplained HTTP 500 from the server, so it is
    // checked first and named.
    let tmp = std::env::temp_dir();
    if let Some(free) = free_mib(&tmp) {
        let needed = (len >> 20) + 256;
        crate::ensure!(
            free >= needed,
            "{} has {free} MiB free; a local server stores the {} MiB upload there and needs {needed} MiB",
            tmp.display(),
            len >> 20
        );
    }
    let file = tempfile::NamedTempFile::new().map_err(|e| crate::Failure(e.to_string()))?;
    file.as_file()
        .set_len(len)
        .map_err(|e| crate::Failure(e.to_string()))?;
    let peak_before_mib = peak_resident_mib().unwrap_or(0);
    let started = std::time::Instant::now();
    let body = Body::file(file.path()).await?;
    let meta = backend
        .put(key, body, PutOptions::default())
        .await
        .map_err(|e| {
            let free = free_mib(&tmp).map_or_else(|| "unknown".to_owned(), |f| format!("{f} MiB"));
            crate::Failure(format!(
                "put failed: {e} (free space in {}: {free})",
                tmp.display()
            ))
        })?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_after_mib = peak_resident_mib().unwrap_or(0);
    crate::ensure_eq!(meta.size, len, "size returned by put");
    crate::ensure_eq!(backend.head(key).await?.size, len, "size from head");
    Ok(UploadFigures {
        seconds,
        peak_before_mib,
        peak_after_mib,
    })
}

/// The memory test of a remote backend: [`upload_from_a_sparse_file`] of
/// `len` bytes to `key`, printing the figures, then fails unless this
/// process's peak resident memory stayed under `limit_mib`.
///
/// # Errors
/// Those of [`upload_from_a_sparse_file`], or the peak at or over the limit.
pub async fn upload_stays_under(
    backend: &dyn Backend,
    key: &Key,
    len: u64,
    limit_mib: u64,
) -> std::result::Result<UploadFigures, crate::Failure> {
    let figures = upload_from_a_sparse_file(backend, key, len).await?;
    println!(
        "{} MiB upload: {:.1} s, peak RSS {} MiB (before the upload: {} MiB)",
        len >> 20,
        figures.seconds,
        figures.peak_after_mib,
        figures.peak_before_mib
    );
    crate::ensure!(
        figures.peak_after_mib < limit_mib,
        "peak resident memory {} MiB ≥ {limit_mib} MiB",
        figures.peak_after_mib
    );
    Ok(figures)
}
