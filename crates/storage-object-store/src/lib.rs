//! `object_store` interop for [`storage_core`], both ways (object_store
//! 0.14):
//!
//! - [`StorageAdapter`] serves any [`Backend`](storage_core::Backend) (and
//!   any stack of layers: `Retry`, `Encrypted`, `Prefixed`) as an
//!   [`object_store::ObjectStore`], for DataFusion, Polars, delta-rs,
//!   iceberg-rust and Lance;
//! - [`ObjectStoreBackend`] runs any `ObjectStore` as a
//!   [`Backend`](storage_core::Backend), with [`Capabilities`] that say
//!   what the inner store can do, so that our layers, transactions and the
//!   conformance suite run over it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use object_store::{ObjectStore, ObjectStoreExt, path::Path};
//! use storage_core::MemoryBackend;
//! use storage_object_store::StorageAdapter;
//!
//! let store = StorageAdapter::new(Arc::new(MemoryBackend::new()));
//! let path = Path::from("tables/t/part-0.parquet");
//! store.put(&path, vec![7u8; 4096].into()).await?;
//! // A reader's footer and column chunks, as one version.
//! let parts = store.get_ranges(&path, &[4088..4096, 0..100, 1000..1100]).await?;
//! assert_eq!(parts[0].len(), 8);
//! # Ok(())
//! # }
//! ```
//!
//! [`Capabilities`]: storage_core::Capabilities
#![warn(missing_docs)]

mod adapter;
mod backend;
mod convert;
mod upload;

pub use adapter::StorageAdapter;
pub use backend::{ObjectStoreBackend, in_memory_capabilities, local_file_system_capabilities};
