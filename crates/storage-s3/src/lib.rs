//! AWS S3 and S3-compatible stores (MinIO, SeaweedFS, Ceph RGW, Cloudflare
//! R2, DigitalOcean Spaces, Wasabi) for [`storage_core`], on `aws-sdk-s3`.
//!
//! Every rule of the contract holds (DESIGN section 2); the S3 mapping of
//! each operation is in [`S3Backend`]'s docs, errors in the table of
//! [`error`]. Bodies of at least the multipart threshold (16 MiB by default)
//! or of unknown length are sent as multipart uploads streamed from the body
//! with bounded memory, conditions applied at `CompleteMultipartUpload`, and
//! aborted on any failure.
//!
//! ```no_run
//! use storage_core::BackendExt;
//! use storage_s3::S3Config;
//! # async fn example() -> storage_core::Result<()> {
//! let store = S3Config::new("my-bucket")
//!     .endpoint("http://127.0.0.1:8333")
//!     .path_style(true)
//!     .region("us-east-1")
//!     .credentials("test", "test", None)
//!     .build()?;
//! store.put_bytes("reports/2026.csv", "year,total\n").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod backend;
mod config;
mod core;
mod encryption;
pub mod error;
mod list;
mod metadata;
mod presign;
mod read;
mod upload;
mod write;
#[cfg(test)]
use storage_conformance::scripted_server as test_server;

pub use backend::{DEFAULT_CONTENT_TYPE, S3Backend};
pub use config::{
    DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Config, URL_OPTIONS,
};
pub use encryption::{CustomerKey, S3Encryption};
