//! The storage contract: one set of types and rules for object stores with
//! compare-and-swap, over memory, local disk and cloud object storage.
//!
//! This crate holds the contract of DESIGN section 2 and its reference
//! implementation:
//!
//! - [`Key`]: validated object keys; [`ETag`]: opaque version tokens;
//! - [`PutMode`]: overwrite, create-only (`If-None-Match: *`) or
//!   compare-and-swap (`If-Match`);
//! - [`Body`]: replayable (bytes, chunks, file region) and one-shot (stream)
//!   bodies;
//! - [`ObjectMeta`], [`GetOptions`] with [`ByteRange`]s, [`ListOptions`] and
//!   [`ListPage`], [`DeleteOptions`], [`Capabilities`];
//! - [`Error`], typed and classified by [`Error::is_transient`];
//! - the [`Backend`] trait, usable as `Arc<dyn Backend>`, and [`BackendExt`]
//!   with `put_bytes`, `get_bytes`, `exists` and `list_all`;
//! - [`MemoryBackend`], the reference implementation of every rule.
//!
//! ```
//! use std::sync::Arc;
//! use futures::TryStreamExt;
//! use storage_core::{Backend, BackendExt, ListOptions, MemoryBackend};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
//! store.put_bytes("logs/2026/11/22", "...").await?;
//! store.put_bytes("logs/2026/11/23", "...").await?;
//! let keys: Vec<String> = store
//!     .list_all(ListOptions::prefix("logs/2026/"))
//!     .map_ok(|meta| meta.key.to_string())
//!     .try_collect()
//!     .await?;
//! assert_eq!(keys, ["logs/2026/11/22", "logs/2026/11/23"]);
//! # Ok::<(), storage_core::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod backend;
mod body;
mod capabilities;
mod error;
mod etag;
mod ext;
mod key;
mod memory;
mod meta;
mod options;
mod prefixed;
pub mod presign;
pub mod raw;
mod staging;
mod txn;
mod upload;
mod watch;

pub use backend::{Backend, GetResult};
pub use body::{Body, ByteStream, FILE_CHUNK_BYTES, FileRegion, OpenFn};
pub use capabilities::{Capabilities, Locality};
pub use error::{BoxError, Error, Result};
pub use etag::ETag;
pub use ext::BackendExt;
pub use key::{IntoKey, Key, MAX_KEY_BYTES, RESERVED_SEGMENTS, validate_prefix};
pub use memory::MemoryBackend;
pub use meta::{
    MAX_METADATA_BYTES, Metadata, ObjectMeta, validate_content_type, validate_metadata,
};
pub use options::{
    ByteRange, DeleteOptions, GetOptions, ListOptions, ListPage, MAX_PAGE_SIZE, PresignMethod,
    PutMode, PutOptions,
};
pub use prefixed::{Prefixed, validate_namespace_prefix};
pub use staging::{MAX_TXN_ID_BYTES, StagedListOptions, StagedObject, StagedPage, TxnId};
pub use txn::{ABORTED_KEEP, CommitReport, LOCK_TTL, ReconcileReport, Txn, reconcile};
pub use watch::{CHANGE_FEED_CAPACITY, Change, ChangeFeed, ChangeKind, ChangeStream};
