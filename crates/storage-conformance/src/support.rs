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
