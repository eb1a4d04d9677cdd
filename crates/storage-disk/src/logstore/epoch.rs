//! Epochs: what keeps ETags and blob numbers unique for a store's whole
//! life, across power loss, restores from backup and recreated directories.
//!
//! A sequence number alone is not enough: after a power loss in
//! [`Durability::Buffered`](super::Durability::Buffered) mode, or after a
//! restore from a backup, the store resumes from a lower sequence number
//! than it already handed out, and would give the next writes ETags that
//! callers hold for other content. So every open starts an *epoch*: a
//! random tag, fsynced with the first sequence number it covers before the
//! open's first write. The ETag of sequence number *s* is the store id, the
//! tag of the newest epoch whose first sequence number is at most *s*, and
//! *s*. A sequence number reissued after a loss falls in a newer epoch with
//! another tag; a restored copy draws a new tag on its next open; a
//! recreated directory draws a new store id.
//!
//! Blob numbers are `epoch number << 40 | n`, `n` counting from 1 within
//! the open: epoch numbers only grow and are durable before a blob is
//! written, so a new blob never takes the number of a blob that an old
//! record (dead or not) still names.
//!
//! # File format
//!
//! `EPOCHS`, written to `EPOCHS.tmp`, fsynced, renamed and the directory
//! fsynced. Integers little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `STLGEPO1` |
//! | 8 | 4 | store id: random, drawn when the file is first written |
//! | 12 | 4 | number of epochs *n* |
//! | 16 | 24 × *n* | epochs, oldest first: number (`u64`), first sequence number (`u64`), tag (`u32`, random), reserved (`u32`, 0) |
//! | 16 + 24*n* | 4 | CRC32C of every byte before it |
//!
//! When an open adds its epoch, the epochs starting at or after its first
//! sequence number are dropped: they cover no surviving record.

use std::io::Write;
use std::path::Path;

use rand::Rng;
use storage_core::{ETag, Error, Result};

use super::sync_dir;
use crate::power_loss;

/// The first eight bytes of the epochs file.
pub const EPOCHS_MAGIC: [u8; 8] = *b"STLGEPO1";
/// Bits of a blob number counted within one epoch.
pub const BLOB_COUNTER_BITS: u32 = 40;
const ENTRY_LEN: usize = 24;
/// Epoch numbers must leave a blob number room in a `u64`.
const MAX_EPOCH_NUMBER: u64 = 1 << (64 - BLOB_COUNTER_BITS);

/// One open's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    /// Grows by one per open.
    pub number: u64,
    /// The first sequence number written in it.
    pub first_seq: u64,
    /// Random: what tells its ETags from those of an epoch with the same
    /// sequence numbers.
    pub tag: u32,
}

/// The store id and every epoch, the current (this open's) last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epochs {
    store_id: u32,
    list: Vec<Epoch>,
}

impl Epochs {
    /// The ETag of sequence number `seq`: 32 lower-case hex digits, store
    /// id, epoch tag and sequence number.
    pub fn etag(&self, seq: u64) -> ETag {
        // The newest epoch starting at or before `seq` (the oldest for a
        // number below every epoch, which only a store from before epochs
        // holds, and which the first epoch covers).
        let at = self.list.partition_point(|e| e.first_seq <= seq);
        let tag = self.list[at.saturating_sub(1).min(self.list.len() - 1)].tag;
        // `{store_id:08x}{tag:08x}{seq:016x}`, written without the
        // formatter: this runs on every get, head and listed object.
        let mut hex = [0u8; 32];
        let fields = [
            (&self.store_id.to_be_bytes()[..], 0..8),
            (&tag.to_be_bytes()[..], 8..16),
            (&seq.to_be_bytes()[..], 16..32),
        ];
        for (bytes, at) in fields {
            // The lengths match: 4, 4 and 8 bytes into 8, 8 and 16 digits.
            let _ = hex::encode_to_slice(bytes, &mut hex[at]);
        }
        ETag::new(std::str::from_utf8(&hex).unwrap_or_default())
    }

    /// This open's epoch.
    pub fn current(&self) -> Epoch {
        self.list[self.list.len() - 1]
    }

    /// The first blob number of this open.
    pub fn first_blob(&self) -> u64 {
        (self.current().number << BLOB_COUNTER_BITS) | 1
    }

    /// Whether `blob` was numbered by this open (false once the open has
    /// used up its 2⁴⁰ numbers).
    pub fn blob_in_current(&self, blob: u64) -> bool {
        blob >> BLOB_COUNTER_BITS == self.current().number
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + ENTRY_LEN * self.list.len());
        out.extend_from_slice(&EPOCHS_MAGIC);
        out.extend_from_slice(&self.store_id.to_le_bytes());
        out.extend_from_slice(&(self.list.len() as u32).to_le_bytes());
        for e in &self.list {
            out.extend_from_slice(&e.number.to_le_bytes());
            out.extend_from_slice(&e.first_seq.to_le_bytes());
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Self, &'static str> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or("shorter than its header")?;
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err("CRC32C mismatch");
        }
        let (head, entries) = body.split_at_checked(16).ok_or("shorter than its header")?;
        if head[..8] != EPOCHS_MAGIC {
            return Err("bad magic");
        }
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let store_id = word(&head[8..12]);
        let n = word(&head[12..16]) as usize;
        if n == 0 || entries.len() != n * ENTRY_LEN {
            return Err("length does not match the number of epochs");
        }
        let long = |b: &[u8]| {
            let mut v = [0u8; 8];
            v.copy_from_slice(b);
            u64::from_le_bytes(v)
        };
        let list: Vec<Epoch> = entries
            .chunks_exact(ENTRY_LEN)
            .map(|e| Epoch {
                number: long(&e[..8]),
                first_seq: long(&e[8..16]),
                tag: word(&e[16..20]),
            })
            .collect();
        let ordered = list
            .windows(2)
            .all(|w| w[0].number < w[1].number && w[0].first_seq <= w[1].first_seq);
        if !ordered || list.iter().any(|e| e.number >= MAX_EPOCH_NUMBER) {
            return Err("epochs out of order");
        }
        Ok(Epochs { store_id, list })
    }
}

/// Loads `dir/EPOCHS`, adds this open's epoch (first sequence number
/// `next_seq`) and writes it back durably, before the open writes anything.
///
/// `has_data` says whether the store already holds records; `max_blob` is
/// the highest blob number found in the blob directory or the index. A
/// store with data but no epochs file (written before epochs existed, or
/// whose file was removed) gets an epoch covering its old sequence numbers,
/// and its new epoch number is above every blob number found.
///
/// # Errors
/// A non-transient [`Error::Backend`] when the file is damaged (ETags could
/// no longer be told apart, so the store is not opened), or when epoch
/// numbers are used up; I/O errors.
pub fn begin(dir: &Path, next_seq: u64, has_data: bool, max_blob: u64) -> Result<Epochs> {
    let path = dir.join("EPOCHS");
    let mut rng = rand::rng();
    let mut epochs = match std::fs::read(&path) {
        Ok(bytes) => Epochs::decode(&bytes).map_err(|reason| Error::Backend {
            transient: false,
            message: format!(
                "{} is damaged ({reason}): without it ETags could be reissued, so the store is not opened",
                path.display()
            ),
            source: None,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut list = Vec::new();
            if has_data {
                list.push(Epoch {
                    number: max_blob >> BLOB_COUNTER_BITS,
                    first_seq: 1,
                    tag: rng.random(),
                });
            }
            Epochs {
                store_id: rng.random(),
                list,
            }
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let number = epochs
        .list
        .last()
        .map_or(1, |e| e.number + 1)
        .max((max_blob >> BLOB_COUNTER_BITS) + 1);
    if number >= MAX_EPOCH_NUMBER {
        return Err(Error::Backend {
            transient: false,
            message: format!("{} has used up its epoch numbers", path.display()),
            source: None,
        });
    }
    // Epochs starting at or after `next_seq` cover no surviving record:
    // nothing written in them survived (a power loss took what an earlier
    // open had read from the page cache, or the segments were restored
    // from an older copy). Their tags stay unused, and the new epoch's
    // fresh tag keeps the list sorted.
    epochs.list.retain(|e| e.first_seq < next_seq);
    epochs.list.push(Epoch {
        number,
        first_seq: next_seq,
        tag: rng.random(),
    });
    let temp = dir.join("EPOCHS.tmp");
    let write = || -> std::io::Result<()> {
        let bytes = epochs.encode();
        let mut file = std::fs::File::create(&temp)?;
        power_loss::created(&temp);
        file.write_all(&bytes)?;
        power_loss::wrote(&temp, 0, &bytes);
        file.sync_all()?;
        power_loss::synced(&temp);
        std::fs::rename(&temp, &path)?;
        power_loss::renamed(&temp, &path);
        sync_dir(dir)
    };
    write().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_epochs() -> Epochs {
        Epochs {
            store_id: 0xabcd,
            list: vec![
                Epoch {
                    number: 1,
                    first_seq: 1,
                    tag: 7,
                },
                Epoch {
                    number: 2,
                    first_seq: 100,
                    tag: 9,
                },
            ],
        }
    }

    #[test]
    fn a_sequence_number_takes_the_tag_of_the_epoch_it_falls_in() {
        let epochs = two_epochs();
        assert_eq!(epochs.etag(99).as_str(), "0000abcd000000070000000000000063");
        assert_eq!(
            epochs.etag(100).as_str(),
            "0000abcd000000090000000000000064"
        );
    }

    #[test]
    fn an_etag_spells_every_field_in_full_width_lower_case_hex() {
        let epochs = Epochs {
            store_id: 0xdead_beef,
            list: vec![Epoch {
                number: 1,
                first_seq: 0,
                tag: 0xfedc_ba98,
            }],
        };
        let seq = 0x0123_4567_89ab_cdef;
        assert_eq!(
            epochs.etag(seq).as_str(),
            format!("{:08x}{:08x}{seq:016x}", 0xdead_beef_u32, 0xfedc_ba98_u32)
        );
    }

    #[test]
    fn the_file_round_trips_and_a_flipped_bit_is_refused() {
        let epochs = two_epochs();
        let mut bytes = epochs.encode();
        assert_eq!(Epochs::decode(&bytes), Ok(epochs));
        bytes[20] ^= 1;
        assert_eq!(Epochs::decode(&bytes), Err("CRC32C mismatch"));
    }

    #[test]
    fn every_open_adds_an_epoch_with_a_higher_number_and_an_empty_one_is_dropped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let first = begin(dir.path(), 1, false, 0).expect("begin");
        assert_eq!(first.current().number, 1);
        let second = begin(dir.path(), 1, false, 0).expect("begin");
        assert_eq!(second.current().number, 2);
        assert_eq!(second.list.len(), 1, "the first epoch covered nothing");
        let third = begin(dir.path(), 50, true, 0).expect("begin");
        assert_eq!(third.list.len(), 2);
        assert_eq!(third.store_id, first.store_id);
        assert_eq!(third.first_blob(), (3 << BLOB_COUNTER_BITS) | 1);
    }

    #[test]
    fn epochs_past_the_recovered_sequence_number_are_dropped_and_the_list_stays_sorted() {
        let dir = tempfile::tempdir().expect("temporary directory");
        begin(dir.path(), 1, false, 0).expect("begin");
        let second = begin(dir.path(), 101, true, 0).expect("begin");
        // The writes of the first two opens were lost: back to 51.
        let third = begin(dir.path(), 51, true, 0).expect("begin");
        assert_eq!(
            third.list.iter().map(|e| e.first_seq).collect::<Vec<_>>(),
            [1, 51]
        );
        assert_eq!(third.current().number, 3, "numbers only grow");
        assert_ne!(third.etag(60), second.etag(60));
        assert_ne!(third.etag(120), second.etag(120));
        let reopened = begin(dir.path(), 51, true, 0).expect("the file still loads");
        assert_eq!(reopened.list.len(), 2);
    }

    #[test]
    fn a_store_without_the_file_numbers_new_blobs_above_every_blob_found() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let epochs = begin(dir.path(), 10, true, (4 << BLOB_COUNTER_BITS) | 3).expect("begin");
        assert_eq!(epochs.current().number, 5);
        assert_eq!(
            epochs.list[0].first_seq, 1,
            "old sequence numbers are covered"
        );
    }
}
