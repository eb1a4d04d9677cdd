//! Server-side encryption options: customer-provided keys (CPK) and
//! encryption scopes, sent on every request that needs them (Azure Storage
//! REST reference, "Provide an encryption key on a request to Blob
//! storage" and "Encryption scopes for Blob storage").
//!
//! | option | Put Blob, Put Block, Put Block List | Get Blob, Get Blob Properties | Copy Blob |
//! |---|---|---|---|
//! | customer-provided key | `x-ms-encryption-key`, `x-ms-encryption-key-sha256`, `x-ms-encryption-algorithm: AES256` | the same three | not sent: the copy goes through this client (read with the key, written with it) |
//! | encryption scope | `x-ms-encryption-scope` | — | `x-ms-encryption-scope` |
//!
//! Under a customer-provided key every blob of the backend is written and
//! read with the one configured key; presigned URLs cannot read such
//! blobs (the key travels only in headers).

use std::fmt;

use azure_core::http::Request;
use azure_storage_blob::models::EncryptionAlgorithmType;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

/// How Azure encrypts the blobs this backend writes; see
/// [`AzureConfig::server_side_encryption`](crate::AzureConfig::server_side_encryption).
#[derive(Clone, PartialEq, Eq)]
pub enum AzureEncryption {
    /// A customer-provided AES-256 key, sent with every request that
    /// writes or reads a blob's content or properties, never stored by
    /// Azure. Losing it loses the blobs.
    CustomerKey(CustomerKey),
    /// A named encryption scope of the account (its key managed by
    /// Microsoft or in Key Vault), applied to every blob written.
    Scope(String),
}

impl fmt::Debug for AzureEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureEncryption::CustomerKey(_) => f.write_str("CustomerKey(…)"),
            AzureEncryption::Scope(scope) => f.debug_tuple("Scope").field(scope).finish(),
        }
    }
}

/// A customer-provided key: 32 bytes, kept as base64 with the base64 of
/// its SHA-256, which Azure uses to check the key; wiped from memory when
/// dropped, and never shown by `Debug`.
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

/// Adds the headers of `encryption` to a request this crate builds:
/// `write` for Put Blob and Copy Blob, not for reads.
pub(crate) fn add_headers(
    request: &mut Request,
    encryption: Option<&AzureEncryption>,
    write: bool,
) {
    match encryption {
        Some(AzureEncryption::CustomerKey(key)) => {
            request.insert_header("x-ms-encryption-key", key.key.clone());
            request.insert_header("x-ms-encryption-key-sha256", key.sha256.clone());
            request.insert_header("x-ms-encryption-algorithm", "AES256");
        }
        Some(AzureEncryption::Scope(scope)) if write => {
            request.insert_header("x-ms-encryption-scope", scope.clone());
        }
        _ => {}
    }
}

/// The SDK's encryption options of a Put Block or Put Block List: the key,
/// its SHA-256, the algorithm and the scope.
pub(crate) fn sdk_options(
    encryption: Option<&AzureEncryption>,
) -> (
    Option<String>,
    Option<String>,
    Option<EncryptionAlgorithmType>,
    Option<String>,
) {
    match encryption {
        Some(AzureEncryption::CustomerKey(key)) => (
            Some(key.key.clone()),
            Some(key.sha256.clone()),
            Some(EncryptionAlgorithmType::Aes256),
            None,
        ),
        Some(AzureEncryption::Scope(scope)) => (None, None, None, Some(scope.clone())),
        None => (None, None, None, None),
    }
}
