//! Local-disk backends for [`storage_core`].
//!
//! - [`LogStore`]: a log-structured store with group commit, for many small
//!   durable compare-and-swap writes per second (format in [`logstore`]);
//! - [`FsBackend`]: one plain file per object under a root directory, with
//!   durable atomic puts, compare-and-swap across processes and SHA-256
//!   verified on full reads.
//!
//! The layout of an [`FsBackend`] root:
//!
//! | path | what |
//! |---|---|
//! | `objects/…/<segment>~d/` | one directory per key segment but the last |
//! | `objects/…/<segment>~obj` | one object: its content byte for byte, then a trailer (JSON: key, size, ETag, SHA-256, content type, metadata; its length, CRC-32C and magic `sfsobj01`) |
//! | `objects/…/~tmp-<random>` | a put's object before its commit |
//! | `locks/NN.lock` | 256 lock stripes for compare-and-swap |
//! | `locks/format.lock` | held while a root of the first format is converted |
//! | `format` | `storage-disk fs 2`: the layout of `objects/` |
//!
//! Segments are encoded by escaping `%` as `%25` and `~` as `%7E`; a segment
//! whose encoding exceeds 200 bytes is named `~h<sha256 hex>`.
#![warn(missing_docs)]

pub mod fs;
pub mod logstore;
pub mod power_loss;
mod util;

pub use fs::{FsBackend, SweepReport};
pub use logstore::{
    CompactionReport, Durability, LogStore, LogStoreOptions, MAX_LARGE_VALUE_BYTES, OpenReport,
};
