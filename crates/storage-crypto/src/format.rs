//! The stored form of an encrypted object: a fixed-length header, then
//! fixed-size AEAD segments.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SENC` |
//! | 4 | 1 | format version, `1` |
//! | 5 | 3 | reserved, zero |
//! | 8 | 4 | segment size `S`: plaintext bytes per segment, big-endian |
//! | 12 | 7 | nonce prefix, random per object |
//! | 19 | 1 | reserved, zero |
//! | 20 | 1 | KEK id length `L`, 1 to 31 |
//! | 21 | 31 | KEK id (ASCII, `L` bytes), then random padding |
//! | 52 | 12 | wrap nonce, random per object |
//! | 64 | 48 | the DEK wrapped with the KEK: AES-256-GCM ciphertext (32) and tag (16) |
//! | 112 | … | segments: `S` plaintext bytes each, sealed with the DEK into `S + 16` bytes; the last holds 1 to `S` bytes (0 only when the object is empty) |
//!
//! Segment `i` of `n` is sealed with the nonce `prefix ‖ i (4 bytes,
//! big-endian) ‖ last`, where `last` is 1 for segment `n - 1` and 0 for
//! the others (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
//! Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance", CRYPTO 2015), and the associated data
//! `header[0..20] ‖ context`, where `context` is the key and the context
//! kind, each prefixed by its length (4 bytes, big-endian). A truncation
//! (at a segment boundary or inside one), a reordering, a duplication or an extension changes
//! which nonce a segment is opened with, and the tag check fails. The DEK
//! is wrapped with the associated data `header[0..52] ‖ context`, so the
//! KEK id, the segment size and the nonce prefix are bound too; `rewrap`
//! replaces bytes 20..112 only.
//!
//! The plaintext size follows from the stored size and `S` alone
//! ([`plaintext_size`]): listings report it without reading any object.

use ring::aead::NONCE_LEN;

/// Bytes of the header.
pub const HEADER_BYTES: usize = 112;
/// Bytes an AES-256-GCM tag adds to each segment.
pub const TAG_BYTES: usize = 16;
/// The default segment size: 64 KiB of plaintext (DESIGN section 4).
pub const DEFAULT_SEGMENT_BYTES: u32 = 64 * 1024;
/// The smallest segment size accepted: 16 bytes (for tests of segment
/// boundaries; anything below 4 KiB costs more in tags than it saves).
pub const MIN_SEGMENT_BYTES: u32 = 16;
/// The largest segment size accepted: 16 MiB (a reader holds one segment).
pub const MAX_SEGMENT_BYTES: u32 = 16 << 20;
/// Most bytes of a KEK id.
pub const MAX_KEK_ID_BYTES: usize = 31;

pub(crate) const MAGIC: [u8; 4] = *b"SENC";
pub(crate) const VERSION: u8 = 1;
pub(crate) const PREFIX_BYTES: usize = 7;
/// End of the part of the header every segment binds.
pub(crate) const BOUND_BYTES: usize = 20;
/// End of the part of the header the wrapped DEK binds.
pub(crate) const WRAP_BOUND_BYTES: usize = 52;
pub(crate) const DEK_BYTES: usize = 32;
pub(crate) const WRAPPED_DEK_BYTES: usize = DEK_BYTES + TAG_BYTES;

/// The decoded header of an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub segment_bytes: u32,
    pub nonce_prefix: [u8; PREFIX_BYTES],
    pub kek_id: String,
    /// Bytes 20..52: the KEK id's length, the id and its padding.
    pub kek_field: [u8; 32],
    pub wrap_nonce: [u8; NONCE_LEN],
    pub wrapped_dek: [u8; WRAPPED_DEK_BYTES],
}

impl Header {
    /// The header's stored bytes.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[..WRAP_BOUND_BYTES].copy_from_slice(&self.bound_for_wrap());
        out[52..64].copy_from_slice(&self.wrap_nonce);
        out[64..].copy_from_slice(&self.wrapped_dek);
        out
    }

    /// Bytes `0..20`: what every segment's associated data starts with.
    pub fn bound(&self) -> [u8; BOUND_BYTES] {
        let mut out = [0u8; BOUND_BYTES];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[8..12].copy_from_slice(&self.segment_bytes.to_be_bytes());
        out[12..19].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Bytes `0..52`: what the wrapped DEK's associated data starts with.
    pub fn bound_for_wrap(&self) -> [u8; WRAP_BOUND_BYTES] {
        let mut out = [0u8; WRAP_BOUND_BYTES];
        out[..BOUND_BYTES].copy_from_slice(&self.bound());
        out[BOUND_BYTES..].copy_from_slice(&self.kek_field);
        out
    }

    /// Parses a stored header; the reason it is not one otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Header, String> {
        if bytes.len() < HEADER_BYTES {
            return Err(format!(
                "the stored object is {} bytes, shorter than the {HEADER_BYTES}-byte header",
                bytes.len()
            ));
        }
        if bytes[..4] != MAGIC {
            return Err("the header does not start with the magic bytes SENC".into());
        }
        if bytes[4] != VERSION {
            return Err(format!("unknown format version {}", bytes[4]));
        }
        if bytes[5..8] != [0, 0, 0] || bytes[19] != 0 {
            return Err("reserved header bytes are not zero".into());
        }
        let segment_bytes = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let id_len = usize::from(bytes[20]);
        if !(1..=MAX_KEK_ID_BYTES).contains(&id_len) {
            return Err(format!(
                "a KEK id length of {id_len} bytes is outside 1 to {MAX_KEK_ID_BYTES}"
            ));
        }
        let kek_id = std::str::from_utf8(&bytes[21..21 + id_len])
            .ok()
            .filter(|id| crate::keyring::valid_kek_id(id))
            .ok_or("the KEK id is not a valid id")?
            .to_owned();
        let mut header = Header {
            segment_bytes,
            nonce_prefix: [0; PREFIX_BYTES],
            kek_id,
            kek_field: [0; 32],
            wrap_nonce: [0; NONCE_LEN],
            wrapped_dek: [0; WRAPPED_DEK_BYTES],
        };
        header.nonce_prefix.copy_from_slice(&bytes[12..19]);
        header.kek_field.copy_from_slice(&bytes[20..52]);
        header.wrap_nonce.copy_from_slice(&bytes[52..64]);
        header.wrapped_dek.copy_from_slice(&bytes[64..HEADER_BYTES]);
        Ok(header)
    }
}

/// Bytes 20..52 of a header naming `kek_id` (at most
/// [`MAX_KEK_ID_BYTES`], checked by the keyring): its length, the id and
/// `padding` (random, so that no run of header bytes is predictable).
pub(crate) fn kek_field(kek_id: &str, padding: [u8; 32]) -> [u8; 32] {
    let mut field = padding;
    field[0] = kek_id.len() as u8;
    field[1..=kek_id.len()].copy_from_slice(kek_id.as_bytes());
    field
}

/// The nonce of segment `index`, `last` when it is the final one.
pub(crate) fn segment_nonce(prefix: &[u8; PREFIX_BYTES], index: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..PREFIX_BYTES].copy_from_slice(prefix);
    nonce[7..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// The context part of the associated data: the key and the context kind,
/// each prefixed by its length in bytes (4 bytes, big-endian), so that no
/// two (key, kind) pairs give the same bytes.
pub(crate) fn context_bytes(key: &str, kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len() + kind.len());
    for part in [key, kind] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// Number of segments of a plaintext of `plain` bytes: at least one.
pub(crate) fn segment_count(plain: u64, segment_bytes: u32) -> u64 {
    plain.div_ceil(u64::from(segment_bytes)).max(1)
}

/// The stored size of a plaintext of `plain` bytes, or `None` when it
/// would need more than 2³² segments or overflow.
pub fn stored_size(plain: u64, segment_bytes: u32) -> Option<u64> {
    let segments = segment_count(plain, segment_bytes);
    if segments > u64::from(u32::MAX) + 1 {
        return None;
    }
    (HEADER_BYTES as u64)
        .checked_add(plain)?
        .checked_add(segments.checked_mul(TAG_BYTES as u64)?)
}

/// The plaintext size of an object stored in `stored` bytes with segments
/// of `segment_bytes`, or `None` when no plaintext encrypts to that size (a
/// truncated or foreign object).
pub fn plaintext_size(stored: u64, segment_bytes: u32) -> Option<u64> {
    let body = stored.checked_sub(HEADER_BYTES as u64)?;
    if body < TAG_BYTES as u64 {
        return None;
    }
    let sealed = u64::from(segment_bytes) + TAG_BYTES as u64;
    let segments = body.div_ceil(sealed);
    let last = body - (segments - 1) * sealed;
    if last < TAG_BYTES as u64
        || (segments > 1 && last == TAG_BYTES as u64)
        || segments > u64::from(u32::MAX) + 1
    {
        return None;
    }
    Some(body - segments * TAG_BYTES as u64)
}

/// The stored half-open range of segment `index` of an object of `plain`
/// plaintext bytes.
pub(crate) fn stored_segment_range(
    index: u64,
    plain: u64,
    segment_bytes: u32,
) -> std::ops::Range<u64> {
    let size = u64::from(segment_bytes);
    let start = HEADER_BYTES as u64 + index * (size + TAG_BYTES as u64);
    let plain_len = plain.saturating_sub(index * size).min(size);
    start..start + plain_len + TAG_BYTES as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plaintext_size_round_trips_through_the_stored_size() {
        for segment in [16u32, 17, 64] {
            for plain in 0..1000u64 {
                let stored = stored_size(plain, segment).expect("small sizes fit");
                assert_eq!(
                    plaintext_size(stored, segment),
                    Some(plain),
                    "{plain} @ {segment}"
                );
            }
        }
    }

    #[test]
    fn sizes_no_plaintext_encrypts_to_are_refused() {
        let valid: std::collections::HashSet<u64> = (0..1000)
            .map(|p| stored_size(p, 16).expect("fits"))
            .collect();
        for stored in 0..(stored_size(999, 16).expect("fits")) {
            assert_eq!(
                plaintext_size(stored, 16).is_some(),
                valid.contains(&stored),
                "stored size {stored}"
            );
        }
    }

    #[test]
    fn a_header_round_trips() {
        let header = Header {
            segment_bytes: 65536,
            nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
            kek_id: "kek-2026.1".into(),
            kek_field: kek_field("kek-2026.1", [0xEE; 32]),
            wrap_nonce: [9; 12],
            wrapped_dek: [7; 48],
        };
        assert_eq!(Header::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn segment_nonces_differ_by_index_and_by_the_last_flag() {
        let prefix = [0u8; 7];
        assert_ne!(
            segment_nonce(&prefix, 1, false),
            segment_nonce(&prefix, 2, false)
        );
        assert_ne!(
            segment_nonce(&prefix, 1, false),
            segment_nonce(&prefix, 1, true)
        );
    }
}
