//! The trailer: what follows an object's content in its file.
//!
//! An object is one file, `<segment>~obj`:
//!
//! | bytes | field |
//! |---|---|
//! | `0 .. size` | the content, as written |
//! | `size .. size + m` | the metadata: JSON (below), `m` bytes |
//! | next 4 | `m`, big-endian |
//! | next 4 | CRC-32C (Castagnoli) of the `m` JSON bytes, big-endian |
//! | last 8 | magic `sfsobj01` |
//!
//! The JSON holds the key, size, ETag, SHA-256 of the content, content type,
//! user metadata and time of the put; its field names are part of the
//! format (they are those of the sidecar of the first format, which
//! [`migrate`](super::migrate) converts). A reader takes the last 16 bytes,
//! then the JSON before them, and checks that the stated size is exactly
//! what precedes the JSON, so a torn, truncated or extended file is never
//! served as an object. Trailing rather than leading metadata lets a
//! streamed put write its content before its size and digest are known.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use storage_core::{ETag, Error, ObjectMeta, Result};

/// Length of the fixed footer at the end of every object file, in bytes.
pub const FOOTER_BYTES: u64 = 16;
/// The footer's last 8 bytes.
pub const MAGIC: &[u8; 8] = b"sfsobj01";
/// Largest metadata JSON accepted, in bytes: the key, 2 KiB of user
/// metadata and the fixed fields fit well within it.
pub const MAX_JSON_BYTES: u64 = 64 * 1024;
/// Bytes of a file's tail read first: the footer and the JSON of any object
/// without large metadata.
pub const TAIL_BYTES: u64 = 4096;

/// The metadata's JSON form. Field names are part of the on-disk format.
#[derive(Debug, Serialize, Deserialize)]
pub struct Trailer {
    /// Version of the JSON form, 1.
    pub version: u32,
    /// The object's key.
    pub key: String,
    /// Content size in bytes.
    pub size: u64,
    /// ETag: 32 lower-case hex digits, random per version.
    pub etag: String,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// Content type, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Time of the put, milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

/// What a file's tail says.
#[derive(Debug)]
pub enum Decoded {
    /// The object's metadata.
    Meta(ObjectMeta),
    /// The tail given was too short: the last this many bytes are needed.
    Need(u64),
}

/// A non-transient [`Error::Backend`] naming `path`.
fn corrupt(path: &Path, what: &str) -> Error {
    Error::Backend {
        transient: false,
        message: format!("corrupt object file {}: {what}", path.display()),
        source: None,
    }
}

/// The JSON and footer that follow `meta`'s content (whose `sha256` must be
/// set).
pub fn encode(meta: &ObjectMeta) -> Vec<u8> {
    let modified_ms = meta
        .last_modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let trailer = Trailer {
        version: 1,
        key: meta.key.to_string(),
        size: meta.size,
        etag: meta.etag.to_string(),
        sha256: meta.sha256.map(hex::encode).unwrap_or_default(),
        content_type: meta.content_type.clone(),
        metadata: meta.metadata.clone(),
        modified_ms,
    };
    let mut out =
        serde_json::to_vec(&trailer).expect("a trailer of strings and integers always serializes");
    let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(MAGIC);
    out
}

/// Decodes the metadata from `tail`, the last `tail.len()` bytes of a file
/// of `file_len` bytes read from `path` (named in errors).
///
/// # Errors
/// A non-transient [`Error::Backend`] for a file without our footer, a
/// JSON length over [`MAX_JSON_BYTES`] or past the file's start, a CRC
/// mismatch, malformed JSON, or a size that disagrees with the file's.
pub fn decode(file_len: u64, tail: &[u8], path: &Path) -> Result<Decoded> {
    let tail_len = tail.len() as u64;
    if file_len < FOOTER_BYTES || tail_len < FOOTER_BYTES || tail_len > file_len {
        return Err(corrupt(path, "too short for a footer"));
    }
    let footer = &tail[tail.len() - FOOTER_BYTES as usize..];
    if &footer[8..] != MAGIC {
        return Err(corrupt(path, "no footer"));
    }
    let json_len = u64::from(u32::from_be_bytes([
        footer[0], footer[1], footer[2], footer[3],
    ]));
    let crc = u32::from_be_bytes([footer[4], footer[5], footer[6], footer[7]]);
    if json_len > MAX_JSON_BYTES || json_len + FOOTER_BYTES > file_len {
        return Err(corrupt(path, "metadata length out of bounds"));
    }
    if json_len + FOOTER_BYTES > tail_len {
        return Ok(Decoded::Need(json_len + FOOTER_BYTES));
    }
    let end = tail.len() - FOOTER_BYTES as usize;
    let json = &tail[end - json_len as usize..end];
    if crc32c::crc32c(json) != crc {
        return Err(corrupt(path, "metadata CRC mismatch"));
    }
    let meta = parse_json(json, path)?;
    if meta.size != file_len - json_len - FOOTER_BYTES {
        return Err(corrupt(path, "content size disagrees with the file's"));
    }
    Ok(Decoded::Meta(meta))
}

/// Parses the metadata JSON read from `path` (named in errors); also the
/// sidecar of the first format.
///
/// # Errors
/// A non-transient [`Error::Backend`] for malformed JSON, another version,
/// an invalid key, an ETag other than 32 lower-case hex digits, or an
/// invalid digest.
pub fn parse_json(bytes: &[u8], path: &Path) -> Result<ObjectMeta> {
    let trailer: Trailer =
        serde_json::from_slice(bytes).map_err(|e| corrupt(path, &e.to_string()))?;
    if trailer.version != 1 {
        return Err(corrupt(path, "unknown metadata version"));
    }
    let key =
        storage_core::raw::stored_key(&trailer.key).map_err(|_| corrupt(path, "invalid key"))?;
    let etag_ok = trailer.etag.len() == 32
        && trailer
            .etag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !etag_ok {
        return Err(corrupt(path, "invalid ETag"));
    }
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(&trailer.sha256, &mut sha256)
        .map_err(|_| corrupt(path, "invalid sha256"))?;
    Ok(ObjectMeta {
        key,
        size: trailer.size,
        etag: ETag::new(&trailer.etag),
        last_modified: UNIX_EPOCH + Duration::from_millis(trailer.modified_ms),
        content_type: trailer.content_type,
        metadata: trailer.metadata,
        sha256: Some(sha256),
    })
}

/// The time of a new version.
pub fn now() -> SystemTime {
    SystemTime::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_core::Key;

    fn meta(size: u64) -> ObjectMeta {
        ObjectMeta {
            key: Key::new("a/b").expect("key"),
            size,
            etag: ETag::new("0123456789abcdef0123456789abcdef"),
            last_modified: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            content_type: Some("text/plain".into()),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            sha256: Some([7; 32]),
        }
    }

    fn file(content: &[u8]) -> Vec<u8> {
        let mut out = content.to_vec();
        out.extend(encode(&meta(content.len() as u64)));
        out
    }

    #[test]
    fn a_trailer_decodes_to_the_metadata_it_encodes() {
        let bytes = file(b"hello");
        let decoded = decode(bytes.len() as u64, &bytes, Path::new("f")).expect("decode");
        assert!(matches!(decoded, Decoded::Meta(m) if m == meta(5)));
    }

    #[test]
    fn a_short_tail_asks_for_the_bytes_it_needs() {
        let bytes = file(b"hello");
        let tail = &bytes[bytes.len() - 20..];
        let decoded = decode(bytes.len() as u64, tail, Path::new("f")).expect("decode");
        assert!(matches!(decoded, Decoded::Need(n) if n == bytes.len() as u64 - 5));
    }

    #[test]
    fn a_flipped_metadata_byte_fails_the_crc() {
        let mut bytes = file(b"hello");
        bytes[10] ^= 1;
        let err = decode(bytes.len() as u64, &bytes, Path::new("f")).expect_err("corrupt");
        assert!(err.to_string().contains("CRC"), "{err}");
    }

    #[test]
    fn a_truncated_or_extended_file_disagrees_with_its_size() {
        let mut bytes = b"x".to_vec();
        bytes.extend(file(b"hello"));
        let err = decode(bytes.len() as u64, &bytes, Path::new("f")).expect_err("extended");
        assert!(err.to_string().contains("size"), "{err}");
        let bytes = file(&[1; 100]);
        let err = decode(bytes.len() as u64 - 10, &bytes[10..], Path::new("f"))
            .expect_err("truncated at the front");
        assert!(err.to_string().contains("size"), "{err}");
    }

    #[test]
    fn a_file_without_a_footer_is_corrupt() {
        let err = decode(5, b"hello", Path::new("f")).expect_err("too short");
        assert!(err.to_string().contains("short"), "{err}");
        let bytes = [0u8; 64];
        let err = decode(64, &bytes, Path::new("f")).expect_err("no magic");
        assert!(err.to_string().contains("footer"), "{err}");
    }
}
