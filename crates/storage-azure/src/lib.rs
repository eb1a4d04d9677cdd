//! Azure Blob Storage (and the Azurite emulator) for [`storage_core`], on
//! the GA SDK `azure_storage_blob`.
//!
//! Every rule of the contract holds (DESIGN section 2); the Azure mapping of
//! each operation is in [`AzureBackend`]'s docs, errors in the table of
//! [`error`], the metadata names in [`metadata`]. Bodies of at least the
//! block threshold (16 MiB by default) or of unknown length are staged as
//! blocks streamed from the body with bounded memory and committed with the
//! condition.
//!
//! Authentication: an account key (requests carry an account SAS signed
//! with it and renewed before it expires), a SAS token given by the user,
//! or an Entra ID `TokenCredential` (the `identity` feature adds
//! `azure_identity`). The SDK's retries are off: retrying is
//! `storage-retry`'s job.
//!
//! ```no_run
//! use storage_core::BackendExt;
//! use storage_azure::AzureConfig;
//! # async fn example() -> storage_core::Result<()> {
//! let store = AzureConfig::emulator("http://127.0.0.1:10000/devstoreaccount1", "reports")
//!     .build()?;
//! store.create_container().await?;
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
mod sas;
mod shared_key;
mod upload;
mod write;
#[cfg(test)]
use storage_conformance::scripted_server as test_server;

#[cfg(feature = "identity")]
pub use azure_identity;
pub use backend::{AzureBackend, DEFAULT_CONTENT_TYPE};
pub use config::{
    AzureConfig, AzureCredential, DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_THRESHOLD,
    DEFAULT_MIN_UPLOAD_RATE, DEFAULT_SINGLE_PUT_IN_MEMORY, EMULATOR_ACCOUNT, EMULATOR_KEY,
    MAX_BLOCK_SIZE, MAX_BLOCKS, MAX_SINGLE_PUT, URL_OPTIONS,
};
pub use encryption::{AzureEncryption, CustomerKey};
