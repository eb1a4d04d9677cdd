//! `cargo xtask conformance --encrypt`: every backend through
//! `Encrypted` (issue 12), alone or on either side of `Retry` over the
//! fault injector, with the `crypto` suite reading the store below the
//! layer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use storage_conformance::hooks::MakeBackendFn;
use storage_conformance::{BackendFactory, Check, Declared, Hooks, Requires};
use storage_core::Backend;
use storage_crypto::{Encrypted, Keyring, all_state};

/// The fixed test KEK of the runs: not a secret.
fn keyring() -> Keyring {
    Keyring::new("conformance", &[0x5a; 32]).expect("a 32-byte key with a valid id")
}

/// Segment size of the runs: 1 KiB, so that most checks' content spans
/// several segments (the crate's own tests cover the 64 KiB default).
const SEGMENT_BYTES: u32 = 1024;

/// `b` behind `Encrypted` with the test keyring and [`SEGMENT_BYTES`].
pub fn encrypt(b: Arc<dyn Backend>) -> Arc<dyn Backend> {
    let layer = Encrypted::new(b, keyring(), all_state())
        .with_segment_bytes(SEGMENT_BYTES)
        .expect("1 KiB is a valid segment size");
    Arc::new(layer)
}

fn encrypt_made(make: MakeBackendFn) -> MakeBackendFn {
    Arc::new(move || {
        let make = Arc::clone(&make);
        Box::pin(async move { make().await.map(encrypt) })
    })
}

/// The hooks of a check run through the layer: the store below for the
/// `crypto` suite; the backends the other hooks make, encrypted too; no
/// tamper hook (it finds stored plaintext to corrupt, and there is none:
/// the `crypto` suite tampers with the store below instead).
pub fn hooks(inner: Hooks, below: Arc<dyn Backend>) -> Hooks {
    Hooks {
        tamper: None,
        wrong_credentials: inner.wrong_credentials.map(encrypt_made),
        missing_bucket: inner.missing_bucket.map(encrypt_made),
        reopen: inner.reopen.map(encrypt_made),
        below: Some(below),
    }
}

/// The server limitations that still apply through the layer: not those
/// of server-side copies, since the layer copies through the client (a get
/// and a conditional put), nor those of checks the layer's capabilities
/// leave out (no SHA-256 recorded, no server-side copy).
pub fn limitation(inner: Option<Declared>, check: &Check) -> Option<Declared> {
    let copies_through_client = matches!(
        check.name,
        "copy_if_not_exists_keeps_the_destination"
            | "copy_if_match_with_a_stale_destination_etag_fails"
    );
    let not_run = check
        .requires
        .iter()
        .any(|r| matches!(r, Requires::Checksums | Requires::ServerSideCopy));
    inner.filter(|_| !copies_through_client && !not_run)
}

/// Wraps a factory: each backend it makes is put behind `Encrypted`.
pub struct EncryptedFactory {
    inner: Box<dyn BackendFactory>,
    name: String,
    /// The store below the layer, per check, for the hooks.
    below: Mutex<HashMap<String, Arc<dyn Backend>>>,
}

impl EncryptedFactory {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn BackendFactory>) -> Self {
        let name = format!("{}+crypto", inner.name());
        EncryptedFactory {
            inner,
            name,
            below: Mutex::default(),
        }
    }
}

#[async_trait]
impl BackendFactory for EncryptedFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn server(&self) -> Option<String> {
        self.inner.server()
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let below = self.inner.create(check).await?;
        self.below
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(check.to_owned(), Arc::clone(&below));
        Ok(encrypt(below))
    }

    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let below = self
            .below
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(check);
        match below {
            Some(below) => hooks(self.inner.hooks(check, &below), below),
            // Not made by this factory: no store below to offer.
            None => Hooks {
                below: None,
                ..hooks(self.inner.hooks(check, backend), Arc::clone(backend))
            },
        }
    }

    fn limitation(&self, check: &Check) -> Option<Declared> {
        limitation(self.inner.limitation(check), check)
    }
}
