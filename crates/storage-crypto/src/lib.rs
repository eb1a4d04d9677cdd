//! `Encrypted<B>`: client-side envelope encryption over any backend
//! (DESIGN section 4), so that no backend, and nobody with access to the
//! bucket or the disk, ever sees plaintext, and no tampering goes
//! unnoticed.
//!
//! - [`Encrypted`]: the layer; every put gets a fresh data key (DEK),
//!   wrapped by the active key-encryption key (KEK), and its content is
//!   sealed in AES-256-GCM segments bound to the key and a context kind.
//! - [`Keyring`]: identified KEKs, one active, loaded from bytes, a file or
//!   an environment variable; rotation and [`Encrypted::rewrap`].
//! - [`ContextKind`] and [`Resolver`]: the kind of content each key holds.
//! - [`mod@format`]: the stored format, as a table.
//!
//! Layer order: prefer `Retry<Encrypted<B>>`. A retried put then seals the
//! body again with a fresh DEK per attempt, and a retried read decrypts
//! again from the header; under `Encrypted<Retry<B>>` a replayable body is
//! also resealed per attempt (each replay draws a fresh DEK), and a read
//! that resumes mid-stream resumes below the layer, which is equally
//! correct. Both orders pass the conformance suite under injected faults.
//! One exception: over a store without atomic promotion, `Retry` promotes
//! staged writes with its own `copy`, which through this layer reads and
//! re-encrypts the object, while `Encrypted<Retry<B>>` promotes with the
//! store's server-side copy; for large transactional writes there, prefer
//! that order. Over a store that promotes atomically (memory, `LogStore`),
//! `Retry` forwards the store's promote in either order.
//!
//! ```
//! use std::sync::Arc;
//! use storage_core::{Backend, BackendExt, Body, Key, MemoryBackend, PutOptions};
//! use storage_crypto::{Encrypted, Keyring, all_state};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let keyring = Keyring::new("kek-2026", &[7u8; 32])?; // load it with Keyring::from_env in production
//! let store = Encrypted::new(MemoryBackend::new(), keyring, all_state());
//! let key = Key::new("secrets/db")?;
//! store.put(&key, Body::from("hunter2"), PutOptions::default()).await?;
//! assert_eq!(store.get_bytes(&key).await?, "hunter2");
//! assert_eq!(store.head(&key).await?.size, 7);
//! // Below the layer: ciphertext only.
//! let stored = store.inner().get_bytes(&key).await?;
//! assert!(!stored.windows(7).any(|w| w == b"hunter2"));
//! # Ok::<(), storage_core::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod backend;
mod context;
pub mod format;
mod keyring;
mod stream;

pub use backend::{Encrypted, SEALED_METADATA};
pub use context::{ContextKind, Resolver, all_state};
pub use keyring::{KEK_BYTES, Keyring};

use storage_core::{Error, Result};

/// `N` bytes from the operating system's random generator.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Backend {
            transient: false,
            message: "the system random generator failed".into(),
            source: None,
        })?;
    Ok(out)
}
