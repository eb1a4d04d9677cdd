//! One way in to every backend of this workspace: [`open`] a store from a
//! URL, with its layers (retry, encryption, a namespace prefix,
//! instrumentation) chosen by options, and get an `Arc<dyn Backend>` that
//! honours the contract of `storage_core` (DESIGN section 2).
//!
//! ```
//! # async fn example() -> storage_core::Result<()> {
//! use storage::BackendExt;
//! let store = storage::open("memory://?prefix=tenant-a/").await?;
//! store.put_bytes("report.csv", "a,b\n").await?;
//! assert_eq!(store.get_bytes("report.csv").await?, "a,b\n".as_bytes());
//! # Ok(()) }
//! ```
//!
//! Every backend and layer sits behind its own feature, and none is on by
//! default but `memory`: a build with only `s3` compiles no Azure or GCS
//! code. The features: `memory`, `fs`, `logstore`, `s3`, `gcs`, `azure`,
//! `retry`, `crypto`, `instrument`. A scheme or option whose feature is off
//! is refused with [`Error::InvalidArgument`] naming the feature.
//!
//! The schemes and options are listed at [`open_with`].

#![warn(missing_docs)]

mod open;
mod schemes;

#[cfg(feature = "instrument")]
pub mod instrumented;

pub use open::{open, open_config, open_with};
pub use schemes::SCHEMES;
pub use storage_core::raw::url_options::UrlForm as StoreConfig;

#[cfg(feature = "instrument")]
pub use instrumented::Instrumented;

pub use storage_core::{
    Backend, BackendExt, Body, Capabilities, Error, GetOptions, Key, ListOptions, MemoryBackend,
    ObjectMeta, Prefixed, PresignMethod, PutMode, PutOptions, Result,
};

/// The README's Rust blocks, compiled as doc tests of this crate (they use
/// every backend crate, so only with every feature on:
/// `cargo test -p storage --all-features --doc`).
#[cfg(all(
    doctest,
    feature = "fs",
    feature = "logstore",
    feature = "s3",
    feature = "gcs",
    feature = "azure",
    feature = "retry",
    feature = "crypto",
    feature = "instrument"
))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
