//! `Retry<B>`: retries of transient failures over any backend (DESIGN
//! section 5), so that no transient fault fails, corrupts or misreports an
//! operation.
//!
//! - [`RetryPolicy`]: exponential backoff with full jitter (`backon`), a
//!   number of attempts, a total deadline and a time limit per attempt that
//!   grows with the body's size; defaults close to object_store's.
//! - [`Retry`]: the [`Backend`](storage_core::Backend) that applies it. Only
//!   [`Error::is_transient`](storage_core::Error::is_transient) failures are
//!   retried. Bodies are never sent twice unless they can be
//!   ([`replay`]); refused retries of conditional writes whose first answer
//!   was lost are recognised as this call's own success ([`write_id`]);
//!   broken reads resume from the next byte of the same version ([`read`]).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use storage_core::{Backend, BackendExt, Body, Key, MemoryBackend, PutMode, PutOptions};
//! use storage_retry::{Retry, RetryPolicy};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let policy = RetryPolicy::default()
//!     .with_max_attempts(5)
//!     .with_observer(|event| eprintln!("{} of {:?} failed: {}", event.operation, event.key, event.error));
//! let store: Arc<dyn Backend> = Arc::new(Retry::with_policy(MemoryBackend::new(), policy));
//! let key = Key::new("leases/job-7")?;
//! let lease = store
//!     .put(&key, Body::from("worker-1"), PutOptions::mode(PutMode::IfNotExists))
//!     .await?;
//! // The layer's write id never shows.
//! assert!(store.head(&key).await?.metadata.is_empty());
//! assert_eq!(store.get_bytes(&key).await?, "worker-1");
//! assert_eq!(store.head(&key).await?.etag, lease.etag);
//! # Ok::<(), storage_core::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod backend;
pub mod policy;
pub mod read;
pub mod replay;
pub mod write_id;

pub use backend::Retry;
pub use policy::{
    Backoff, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_BASE_DELAY, DEFAULT_CAP_DELAY, DEFAULT_DEADLINE,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MIN_THROUGHPUT, DEFAULT_WHOLE_READ_LIMIT, Observer, Operation,
    RetryEvent, RetryPolicy,
};
pub use write_id::{RESERVED_METADATA_PREFIX, WRITE_ID_METADATA};
