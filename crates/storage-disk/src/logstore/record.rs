//! Record framing: a fixed header, the key, the metadata, the value and a
//! trailer holding the content's SHA-256 and a CRC32C over the whole record.
//!
//! See the format table in the crate docs (`storage_disk::logstore`).

use storage_core::{Metadata, ObjectMeta};

/// The first four bytes of every record: `STLR`.
pub const RECORD_MAGIC: [u8; 4] = *b"STLR";
/// The record format version written by this crate.
pub const RECORD_VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Bytes of the trailer: SHA-256 (32) and CRC32C (4).
pub const TRAILER_LEN: usize = 36;
/// Bytes of a blob reference, the value of a [`RecordType::PutBlob`] record.
pub const BLOB_REF_LEN: usize = 20;
/// Bit of the flags byte (offset 12) marking the first record of a
/// committed batch. Recovery uses it to tell damage inside acknowledged
/// writes from a torn last batch.
pub const FLAG_BATCH_START: u8 = 1;

/// Sets or clears the batch-start flag of the complete record `record`
/// (header through CRC32C), recomputing its CRC32C.
pub fn set_batch_start(record: &mut [u8], on: bool) {
    let Some(crc_at) = record.len().checked_sub(4) else {
        return;
    };
    if record.len() < HEADER_LEN {
        return;
    }
    if on {
        record[12] |= FLAG_BATCH_START;
    } else {
        record[12] &= !FLAG_BATCH_START;
    }
    let crc = crc32c::crc32c(&record[..crc_at]);
    record[crc_at..].copy_from_slice(&crc.to_le_bytes());
}

/// Whether the record starting at `record[0]` is marked as the first of a
/// batch (the flag is covered by the CRC32C; check it with [`parse`]).
pub fn is_batch_start(record: &[u8]) -> bool {
    record.get(12).is_some_and(|f| f & FLAG_BATCH_START != 0)
}

/// Longest metadata section accepted when decoding.
pub const MAX_META_LEN: u32 = 64 * 1024;
/// Longest inline value accepted when decoding (values above the large-value
/// threshold go to blob files).
pub const MAX_INLINE_VALUE: u64 = 1 << 32;

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// Puts a value stored inline in the record.
    Put = 1,
    /// Deletes the key (a tombstone).
    Delete = 2,
    /// Puts a value stored in a blob file; the record's value is a
    /// [`BlobRef`].
    PutBlob = 3,
    /// Promotes a staged write: puts the value at the record's key and
    /// deletes the staged key, in one record. The value is the staged key
    /// (see [`promote_parts`]) followed by the content, stored inline.
    Promote = 4,
    /// As [`RecordType::Promote`], with the content in a blob file: the
    /// staged key is followed by a [`BlobRef`]. The blob moves from the
    /// staged key to the record's key; nothing is copied.
    PromoteBlob = 5,
}

impl RecordType {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordType::Put),
            2 => Some(RecordType::Delete),
            3 => Some(RecordType::PutBlob),
            4 => Some(RecordType::Promote),
            5 => Some(RecordType::PromoteBlob),
            _ => None,
        }
    }

    /// Whether the record promotes a staged write.
    pub fn is_promote(self) -> bool {
        matches!(self, RecordType::Promote | RecordType::PromoteBlob)
    }

    /// Whether the record's value lives in a blob file.
    pub fn in_blob(self) -> bool {
        matches!(self, RecordType::PutBlob | RecordType::PromoteBlob)
    }
}

/// Bytes before the content in the value of a promote record: the staged
/// key's length (`u16` LE) and the staged key.
pub fn promote_prefix_len(staged: &str) -> usize {
    2 + staged.len()
}

/// Appends the prefix of a promote record's value: the staged key's length
/// (`u16` LE) and the staged key.
pub fn encode_promote_prefix(staged: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(staged.len() as u16).to_le_bytes());
    out.extend_from_slice(staged.as_bytes());
}

/// Splits the value of a promote record into the staged key and the content
/// (the inline value, or the [`BlobRef`] encoding).
///
/// # Errors
/// [`RecordError::Corrupt`] when the staged key's length runs past the value
/// or the key is not UTF-8.
pub fn promote_parts(value: &[u8]) -> Result<(&str, &[u8]), RecordError> {
    let bad = RecordError::Corrupt("bad staged key in a promote record");
    let (len, rest) = value.split_at_checked(2).ok_or(bad.clone())?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    if len == 0 || len > storage_core::MAX_KEY_BYTES {
        return Err(bad);
    }
    let (key, content) = rest.split_at_checked(len).ok_or(bad.clone())?;
    let key = std::str::from_utf8(key).map_err(|_| bad)?;
    Ok((key, content))
}

/// The fixed header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record does.
    pub kind: RecordType,
    /// Key length in bytes.
    pub key_len: u16,
    /// Metadata section length in bytes.
    pub meta_len: u32,
    /// Value length in bytes.
    pub value_len: u64,
    /// The store-wide sequence number: the version's ETag.
    pub seq: u64,
    /// Time of the write, milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The buffer ends before the record does (a torn write at the tail).
    Incomplete,
    /// The bytes are not a valid record.
    Corrupt(&'static str),
}

impl RecordHeader {
    /// Total length of the record in bytes.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64
            + u64::from(self.key_len)
            + u64::from(self.meta_len)
            + self.value_len
            + TRAILER_LEN as u64
    }

    /// Offset of the value within the record.
    pub fn value_offset(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.key_len) + u64::from(self.meta_len)
    }

    /// Appends the header's 40 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.key_len.to_le_bytes());
        out.extend_from_slice(&self.meta_len.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&self.value_len.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.modified_ms.to_le_bytes());
    }

    /// Parses a header from the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Errors
    /// [`RecordError::Incomplete`] for a short buffer; [`RecordError::Corrupt`]
    /// for a wrong magic, version or type, or impossible lengths.
    pub fn decode(buf: &[u8]) -> Result<Self, RecordError> {
        let h = buf.get(..HEADER_LEN).ok_or(RecordError::Incomplete)?;
        if h[..4] != RECORD_MAGIC {
            return Err(RecordError::Corrupt("bad record magic"));
        }
        if h[4] != RECORD_VERSION {
            return Err(RecordError::Corrupt("unknown record version"));
        }
        let kind =
            RecordType::from_byte(h[5]).ok_or(RecordError::Corrupt("unknown record type"))?;
        let header = RecordHeader {
            kind,
            key_len: u16::from_le_bytes([h[6], h[7]]),
            meta_len: u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
            value_len: le_u64(&h[16..24]),
            seq: le_u64(&h[24..32]),
            modified_ms: le_u64(&h[32..40]),
        };
        let sane = header.key_len >= 1
            && usize::from(header.key_len) <= storage_core::MAX_KEY_BYTES
            && header.meta_len <= MAX_META_LEN
            && header.value_len <= MAX_INLINE_VALUE
            && h[12] & !FLAG_BATCH_START == 0
            && h[13..16] == [0; 3]
            && match kind {
                RecordType::Put => true,
                RecordType::Delete => header.meta_len == 0 && header.value_len == 0,
                RecordType::PutBlob => header.value_len == BLOB_REF_LEN as u64,
                RecordType::Promote => header.value_len >= 3,
                RecordType::PromoteBlob => (3 + BLOB_REF_LEN as u64
                    ..=(2 + storage_core::MAX_KEY_BYTES + BLOB_REF_LEN) as u64)
                    .contains(&header.value_len),
            };
        if !sane {
            return Err(RecordError::Corrupt("impossible record lengths"));
        }
        Ok(header)
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// A record parsed and checked against its CRC32C, borrowing its bytes.
#[derive(Debug)]
pub struct Record<'a> {
    /// The header.
    pub header: RecordHeader,
    /// The key (valid UTF-8, not yet validated as a [`storage_core::Key`]).
    pub key: &'a str,
    /// The encoded metadata section.
    pub meta: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// SHA-256 of the object's content (zero for a delete).
    pub sha256: [u8; 32],
}

/// Parses and verifies the record at the start of `buf`.
///
/// # Errors
/// [`RecordError::Incomplete`] when `buf` ends inside the record,
/// [`RecordError::Corrupt`] when its header, key or CRC32C is wrong.
pub fn parse(buf: &[u8]) -> Result<Record<'_>, RecordError> {
    let header = RecordHeader::decode(buf)?;
    let len = usize::try_from(header.record_len())
        .map_err(|_| RecordError::Corrupt("record too long"))?;
    let bytes = buf.get(..len).ok_or(RecordError::Incomplete)?;
    let crc_at = len - 4;
    let stored = u32::from_le_bytes([
        bytes[crc_at],
        bytes[crc_at + 1],
        bytes[crc_at + 2],
        bytes[crc_at + 3],
    ]);
    if crc32c::crc32c(&bytes[..crc_at]) != stored {
        return Err(RecordError::Corrupt("record CRC32C mismatch"));
    }
    let key_end = HEADER_LEN + usize::from(header.key_len);
    let meta_end = key_end + header.meta_len as usize;
    let value_end = meta_end + header.value_len as usize;
    let key = std::str::from_utf8(&bytes[HEADER_LEN..key_end])
        .map_err(|_| RecordError::Corrupt("key is not UTF-8"))?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&bytes[value_end..value_end + 32]);
    Ok(Record {
        header,
        key,
        meta: &bytes[key_end..meta_end],
        value: &bytes[meta_end..value_end],
        sha256,
    })
}

/// Whether the record bytes' CRC32C matches their trailer (for reads).
pub fn crc_ok(record: &[u8]) -> bool {
    let Some(crc_at) = record.len().checked_sub(4) else {
        return false;
    };
    let stored = u32::from_le_bytes([
        record[crc_at],
        record[crc_at + 1],
        record[crc_at + 2],
        record[crc_at + 3],
    ]);
    crc32c::crc32c(&record[..crc_at]) == stored
}

/// Appends a complete record to `out`; returns its length in bytes.
pub fn encode(
    header: &RecordHeader,
    key: &str,
    meta: &[u8],
    value: &[u8],
    sha256: &[u8; 32],
    out: &mut Vec<u8>,
) -> u64 {
    let start = out.len();
    header.encode(out);
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(value);
    out.extend_from_slice(sha256);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    (out.len() - start) as u64
}

/// Appends a tombstone (a delete record) of `key` at `seq`.
pub fn encode_tombstone(key: &str, seq: u64, modified_ms: u64, out: &mut Vec<u8>) {
    let header = RecordHeader {
        kind: RecordType::Delete,
        key_len: key.len() as u16,
        meta_len: 0,
        value_len: 0,
        seq,
        modified_ms,
    };
    encode(&header, key, &[], &[], &[0; 32], out);
}

/// Content type and user metadata of a version, as stored in the metadata
/// section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// The content type.
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: Metadata,
}

impl RecordMeta {
    /// The metadata of `meta`.
    pub fn of(meta: &ObjectMeta) -> Self {
        RecordMeta {
            content_type: meta.content_type.clone(),
            metadata: meta.metadata.clone(),
        }
    }

    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.content_type.is_none() && self.metadata.is_empty()
    }

    /// Encodes: `u16` content-type length (`0xffff` for none) and bytes, `u16`
    /// entry count, then per entry `u16` name length, name, `u16` value
    /// length, value; all little-endian. Empty metadata encodes as nothing.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        match &self.content_type {
            Some(ct) => {
                out.extend_from_slice(&(ct.len() as u16).to_le_bytes());
                out.extend_from_slice(ct.as_bytes());
            }
            None => out.extend_from_slice(&u16::MAX.to_le_bytes()),
        }
        out.extend_from_slice(&(self.metadata.len() as u16).to_le_bytes());
        for (name, value) in &self.metadata {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
    }

    /// Decodes what [`RecordMeta::encode`] wrote.
    ///
    /// # Errors
    /// [`RecordError::Corrupt`] for truncated or non-UTF-8 sections.
    pub fn decode(mut buf: &[u8]) -> Result<Self, RecordError> {
        let mut meta = RecordMeta::default();
        if buf.is_empty() {
            return Ok(meta);
        }
        let ct_len = take_u16(&mut buf)?;
        if ct_len != u16::MAX {
            meta.content_type = Some(take_str(&mut buf, ct_len)?);
        }
        let count = take_u16(&mut buf)?;
        for _ in 0..count {
            let n = take_u16(&mut buf)?;
            let name = take_str(&mut buf, n)?;
            let v = take_u16(&mut buf)?;
            let value = take_str(&mut buf, v)?;
            meta.metadata.insert(name, value);
        }
        if !buf.is_empty() {
            return Err(RecordError::Corrupt("trailing bytes in metadata"));
        }
        Ok(meta)
    }
}

fn take_u16(buf: &mut &[u8]) -> Result<u16, RecordError> {
    let (head, rest) = buf
        .split_at_checked(2)
        .ok_or(RecordError::Corrupt("truncated metadata"))?;
    *buf = rest;
    Ok(u16::from_le_bytes([head[0], head[1]]))
}

fn take_str(buf: &mut &[u8], len: u16) -> Result<String, RecordError> {
    let (head, rest) = buf
        .split_at_checked(usize::from(len))
        .ok_or(RecordError::Corrupt("truncated metadata"))?;
    *buf = rest;
    String::from_utf8(head.to_vec()).map_err(|_| RecordError::Corrupt("metadata is not UTF-8"))
}

/// Where a large value lives: a blob file and what to verify it against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    /// The blob file's number.
    pub id: u64,
    /// The value's length in bytes.
    pub len: u64,
    /// CRC32C of the value.
    pub crc32c: u32,
}

impl BlobRef {
    /// The 20-byte encoding: id, length (`u64` LE each), CRC32C (`u32` LE).
    pub fn encode(&self) -> [u8; BLOB_REF_LEN] {
        let mut out = [0u8; BLOB_REF_LEN];
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..16].copy_from_slice(&self.len.to_le_bytes());
        out[16..].copy_from_slice(&self.crc32c.to_le_bytes());
        out
    }

    /// Decodes a blob reference.
    ///
    /// # Errors
    /// [`RecordError::Corrupt`] for a value of the wrong length.
    pub fn decode(value: &[u8]) -> Result<Self, RecordError> {
        if value.len() != BLOB_REF_LEN {
            return Err(RecordError::Corrupt("bad blob reference"));
        }
        Ok(BlobRef {
            id: le_u64(&value[..8]),
            len: le_u64(&value[8..16]),
            crc32c: u32::from_le_bytes([value[16], value[17], value[18], value[19]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let meta = RecordMeta {
            content_type: Some("text/plain".into()),
            metadata: Metadata::from([("a".to_owned(), "b".to_owned())]),
        };
        let mut meta_bytes = Vec::new();
        meta.encode(&mut meta_bytes);
        let header = RecordHeader {
            kind: RecordType::Put,
            key_len: 3,
            meta_len: meta_bytes.len() as u32,
            value_len: 5,
            seq: 42,
            modified_ms: 7,
        };
        let mut out = Vec::new();
        let len = encode(&header, "k/1", &meta_bytes, b"hello", &[9; 32], &mut out);
        assert_eq!(len as usize, out.len());
        assert_eq!(header.record_len(), len);
        out
    }

    #[test]
    fn a_record_round_trips() {
        let bytes = sample();
        let record = parse(&bytes).expect("valid record");
        assert_eq!(record.key, "k/1");
        assert_eq!(record.value, b"hello");
        assert_eq!(record.header.seq, 42);
        assert_eq!(record.sha256, [9; 32]);
        let meta = RecordMeta::decode(record.meta).expect("valid metadata");
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert!(crc_ok(&bytes));
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut]).err(),
                Some(RecordError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample();
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[byte] ^= 1 << bit;
                let parsed = parse(&flipped);
                assert!(
                    parsed.is_err(),
                    "flip at byte {byte} bit {bit} parsed as {parsed:?}"
                );
            }
        }
    }
}
