//! Google Cloud Storage (and fake-gcs-server) for [`storage_core`], over the
//! JSON API with `gcloud-storage`.
//!
//! Every rule of the contract holds (DESIGN section 2); the GCS mapping of
//! each operation is in [`GcsBackend`]'s docs, errors in the table of
//! [`error`]. The contract's ETag is the object generation. Bodies of at
//! least the resumable threshold (16 MiB by default) or of unknown length
//! are resumable uploads streamed in chunks with bounded memory.
//!
//! ```no_run
//! use storage_core::BackendExt;
//! use storage_gcs::GcsConfig;
//! # async fn example() -> storage_core::Result<()> {
//! let store = GcsConfig::emulator("http://127.0.0.1:4443", "reports")
//!     .build()?;
//! store.create_bucket("test-project").await?;
//! store.put_bytes("2026/totals.csv", "year,total\n").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod backend;
mod config;
mod core;
mod encryption;
pub mod error;
mod list;
pub mod metadata;
mod presign;
mod read;
mod upload;
mod write;
#[cfg(test)]
use storage_conformance::scripted_server as test_server;

pub use backend::{DEFAULT_CONTENT_TYPE, GcsBackend};
pub use config::{
    CHUNK_GRANULARITY, DEFAULT_CHUNK_SIZE, DEFAULT_ENDPOINT, DEFAULT_RESUMABLE_THRESHOLD,
    EMULATOR_HOST_VARIABLE, GcsConfig, GcsCredentials, URL_OPTIONS,
};
pub use encryption::{CustomerKey, GcsEncryption};
