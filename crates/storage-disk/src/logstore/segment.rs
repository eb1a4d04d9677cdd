//! Segment files: a 40-byte header, then records back to back.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use memmap2::Mmap;

/// The first eight bytes of a segment: `STLGSEG1`.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STLGSEG1";
/// The segment format version written by this crate.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of the segment header; the first record starts here.
pub const SEGMENT_HEADER_LEN: u64 = 40;

/// The header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's number; files are named after it.
    pub id: u64,
    /// The store's next sequence number when the segment was created: every
    /// sequence number ever used is below the newest segment's.
    pub first_seq: u64,
}

impl SegmentHeader {
    /// The 40-byte encoding: magic (8), version (`u32` LE), reserved (4),
    /// id (`u64` LE), first sequence number (`u64` LE), CRC32C of bytes 0..32
    /// (`u32` LE), reserved (4).
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
        out[..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.id.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32c::crc32c(&out[..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a segment header.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn decode(buf: &[u8]) -> Result<Self, &'static str> {
        let h = buf
            .get(..SEGMENT_HEADER_LEN as usize)
            .ok_or("segment shorter than its header")?;
        if h[..8] != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        let crc = u32::from_le_bytes([h[32], h[33], h[34], h[35]]);
        if crc32c::crc32c(&h[..32]) != crc {
            return Err("segment header CRC32C mismatch");
        }
        if u32::from_le_bytes([h[8], h[9], h[10], h[11]]) != SEGMENT_VERSION {
            return Err("unknown segment version");
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[16..24]);
        let mut first_seq = [0u8; 8];
        first_seq.copy_from_slice(&h[24..32]);
        Ok(SegmentHeader {
            id: u64::from_le_bytes(id),
            first_seq: u64::from_le_bytes(first_seq),
        })
    }
}

/// The path of segment `id` under the store directory.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("segments").join(format!("{id:020}.seg"))
}

/// The segment id named by a file name like `00000000000000000007.seg`.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

/// A segment open for reading, shared by every index entry that points into
/// it.
///
/// Sealed segments on local file systems are memory-mapped once; reads of
/// the active segment, and every read in NFS mode, are positional reads
/// (`pread`). The map is never truncated: segments are only ever unlinked
/// (by compaction), which leaves existing maps valid.
#[derive(Debug)]
pub struct Segment {
    /// The segment's number.
    pub id: u64,
    /// Its file.
    pub path: PathBuf,
    file: File,
    map: OnceLock<Arc<Mmap>>,
    /// Which keys the sealed segment holds, read once, when compaction
    /// first asks.
    summary: OnceLock<Arc<KeySummary>>,
}

/// What compaction needs to know of a sealed segment's keys, by 64-bit
/// hash ([`key_hash`]): a collision only makes a tombstone live longer.
#[derive(Debug, Default)]
pub struct KeySummary {
    /// Hashes of the keys the segment holds a put of (a promote counts as
    /// a put of its key), sorted, without repeats.
    pub puts: Vec<u64>,
    /// Each tombstone record: its key's hash and its length in bytes.
    pub tombstones: Vec<(u64, u64)>,
}

impl KeySummary {
    /// Whether the segment may hold a put of the key with hash `hash`.
    pub fn may_hold_put(&self, hash: u64) -> bool {
        self.puts.binary_search(&hash).is_ok()
    }
}

/// The hash [`KeySummary`] uses: SipHash with fixed keys, the same for the
/// life of the process.
pub fn key_hash(key: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

impl Segment {
    /// Opens segment `path` for reading.
    ///
    /// # Errors
    /// The I/O error of `open`.
    pub fn open(id: u64, path: PathBuf) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).open(&path)?;
        Ok(Segment {
            id,
            path,
            file,
            map: OnceLock::new(),
            summary: OnceLock::new(),
        })
    }

    /// The keys of this sealed segment (read from it on first use, then
    /// kept). A segment removed meanwhile has none.
    ///
    /// # Errors
    /// I/O errors, and `InvalidData` naming the offset of a bad record.
    pub fn summary(&self) -> io::Result<Arc<KeySummary>> {
        if let Some(summary) = self.summary.get() {
            return Ok(Arc::clone(summary));
        }
        let bytes = match self.map.get() {
            Some(map) => Bytes::from_owner(MapSlice {
                map: Arc::clone(map),
                start: 0,
                end: map.len(),
            }),
            None => match std::fs::read(&self.path) {
                Ok(bytes) => Bytes::from(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Bytes::new(),
                Err(e) => return Err(e),
            },
        };
        let mut summary = KeySummary::default();
        let mut offset = SEGMENT_HEADER_LEN as usize;
        while offset < bytes.len() {
            let record = super::record::parse(&bytes[offset..]).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("segment {} is corrupt at byte {offset}: {e:?}", self.id),
                )
            })?;
            let hash = key_hash(record.key);
            let len = record.header.record_len();
            match record.header.kind {
                super::record::RecordType::Delete => summary.tombstones.push((hash, len)),
                _ => summary.puts.push(hash),
            }
            offset += len as usize;
        }
        summary.puts.sort_unstable();
        summary.puts.dedup();
        Ok(Arc::clone(self.summary.get_or_init(|| Arc::new(summary))))
    }

    /// Maps the sealed segment into memory for reads.
    ///
    /// # Errors
    /// The I/O error of `mmap`.
    #[allow(unsafe_code)]
    pub fn map_sealed(&self) -> io::Result<()> {
        if self.map.get().is_some() {
            return Ok(());
        }
        // SAFETY: the segment is sealed: this store never writes to or
        // truncates it again (compaction only unlinks it, which keeps the map
        // valid), and the directory is locked against other LogStores. A
        // process outside this library truncating the file would make reads
        // fault; the module docs say so, and NFS mode never maps.
        let map = unsafe { Mmap::map(&self.file)? };
        let _ = self.map.set(Arc::new(map));
        Ok(())
    }

    /// Bytes `offset..offset + len` from the map, without copying, if the
    /// segment is mapped.
    pub fn mapped(&self, offset: u64, len: u64) -> Option<Bytes> {
        let map = self.map.get()?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > map.len() {
            return None;
        }
        Some(Bytes::from_owner(MapSlice {
            map: Arc::clone(map),
            start,
            end,
        }))
    }

    /// Makes the segment's content durable (`fdatasync`, through the read
    /// handle: it applies to the file).
    ///
    /// # Errors
    /// The I/O error of `fdatasync`.
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Reads `buf.len()` bytes at `offset` (blocking).
    ///
    /// # Errors
    /// The I/O error, or `UnexpectedEof` when the segment is shorter.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Reads `buf.len()` bytes at `offset` only if the page cache holds them
    /// (`preadv2` with `RWF_NOWAIT`); `WouldBlock` otherwise.
    ///
    /// # Errors
    /// `WouldBlock` when the disk would be needed or the read is short.
    pub fn read_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut slices = [io::IoSliceMut::new(buf)];
        let want = slices[0].len();
        match rustix::io::preadv2(
            &self.file,
            &mut slices,
            offset,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) if n == want => Ok(()),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// A byte range of a shared map, owned by a `Bytes`.
struct MapSlice {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}
