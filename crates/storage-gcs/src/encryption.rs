//! Server-side encryption options: customer-managed keys in Cloud KMS
//! (CMEK) and customer-supplied keys (CSEK), sent on every request that
//! needs them (Cloud Storage, "Use customer-managed encryption keys" and
//! "Use customer-supplied encryption keys").
//!
//! | option | uploads (multipart; resumable initiation, chunks and status queries) | download, object metadata | copy |
//! |---|---|---|---|
//! | CMEK | `kmsKeyName` (query parameter) | — | through this client (read, then uploaded with the key) |
//! | CSEK | `x-goog-encryption-algorithm: AES256`, `x-goog-encryption-key`, `x-goog-encryption-key-sha256` | the same three | through this client |
//!
//! Copies go through the client because `copyTo` would take the bucket's
//! default key for the destination (CMEK) or needs the source's key in
//! headers the JSON client does not send (CSEK). Under CSEK every object of
//! the backend is written and read with the one configured key; V4 signed
//! URLs cannot read such objects (the key travels only in headers).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use gcloud_storage::http::objects::Encryption;
use sha2::{Digest, Sha256};

/// How GCS encrypts the objects this backend writes; see
/// [`GcsConfig::server_side_encryption`](crate::GcsConfig::server_side_encryption).
#[derive(Clone, PartialEq, Eq)]
pub enum GcsEncryption {
    /// A Cloud KMS key, by resource name
    /// (`projects/P/locations/L/keyRings/R/cryptoKeys/K`).
    KmsKey(String),
    /// A customer-supplied AES-256 key, sent with every request that writes
    /// or reads an object, never stored by Google. Losing it loses the
    /// objects.
    CustomerKey(CustomerKey),
}

impl fmt::Debug for GcsEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcsEncryption::KmsKey(name) => f.debug_tuple("KmsKey").field(name).finish(),
            GcsEncryption::CustomerKey(_) => f.write_str("CustomerKey(…)"),
        }
    }
}

/// A customer-supplied key: 32 bytes, kept as base64 with the base64 of its
/// SHA-256, which GCS uses to check it; wiped from memory when dropped, and
/// never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKey {
    key: String,
    sha256: String,
}

impl CustomerKey {
    /// The key from its 32 bytes.
    pub fn new(mut key: [u8; 32]) -> Self {
        let made = CustomerKey {
            key: BASE64.encode(key),
            sha256: BASE64.encode(Sha256::digest(key)),
        };
        zeroize::Zeroize::zeroize(&mut key);
        made
    }
}

impl Drop for CustomerKey {
    /// The key's base64 form is wiped from memory.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerKey(sha256 {})", self.sha256)
    }
}

/// Adds the customer-supplied key's headers, if one is configured, to a
/// request this crate builds.
pub(crate) fn with_headers(
    request: reqwest::RequestBuilder,
    encryption: Option<&GcsEncryption>,
) -> reqwest::RequestBuilder {
    match encryption {
        Some(GcsEncryption::CustomerKey(key)) => request
            .header("x-goog-encryption-algorithm", "AES256")
            .header("x-goog-encryption-key", key.key.as_str())
            .header("x-goog-encryption-key-sha256", key.sha256.as_str()),
        _ => request,
    }
}

/// The customer-supplied key in the form of `gcloud-storage`'s requests.
pub(crate) fn for_client(encryption: Option<&GcsEncryption>) -> Option<Encryption> {
    match encryption {
        Some(GcsEncryption::CustomerKey(key)) => Some(Encryption {
            encryption_algorithm: "AES256".to_owned(),
            encryption_key: key.key.clone(),
            encryption_key_sha256: key.sha256.clone(),
        }),
        _ => None,
    }
}

/// The Cloud KMS key name, if CMEK is configured.
pub(crate) fn kms_key_name(encryption: Option<&GcsEncryption>) -> Option<String> {
    match encryption {
        Some(GcsEncryption::KmsKey(name)) => Some(name.clone()),
        _ => None,
    }
}
