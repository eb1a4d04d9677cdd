//! The sidecar: a small JSON file beside each object holding its key, size,
//! ETag, SHA-256, content type and user metadata.
//!
//! Renaming a new sidecar over the old one is the commit point of a put: the
//! sidecar names the content file of its version (`<segment>~v<etag>`), so a
//! reader always sees content and metadata of the same version.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use storage_core::{ETag, Error, ObjectMeta, Result};

/// The sidecar's JSON form. Field names are part of the on-disk format.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sidecar {
    /// Format version, 1.
    pub version: u32,
    /// The object's key.
    pub key: String,
    /// Content size in bytes.
    pub size: u64,
    /// ETag: 32 lower-case hex digits, random per version.
    pub etag: String,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// Content type, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Time of the put, milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

impl Sidecar {
    /// The sidecar describing `meta`, whose `sha256` must be set.
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        let modified_ms = meta
            .last_modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Sidecar {
            version: 1,
            key: meta.key.to_string(),
            size: meta.size,
            etag: meta.etag.to_string(),
            sha256: meta.sha256.map(hex::encode).unwrap_or_default(),
            content_type: meta.content_type.clone(),
            metadata: meta.metadata.clone(),
            modified_ms,
        }
    }

    /// Parses a sidecar read from `path` (named in errors).
    ///
    /// # Errors
    /// A non-transient [`Error::Backend`] for malformed JSON, another version,
    /// an invalid key or digest.
    pub fn parse(bytes: &[u8], path: &std::path::Path) -> Result<ObjectMeta> {
        let corrupt = |what: &str| Error::Backend {
            transient: false,
            message: format!("corrupt sidecar {}: {what}", path.display()),
            source: None,
        };
        let sidecar: Sidecar =
            serde_json::from_slice(bytes).map_err(|e| corrupt(&e.to_string()))?;
        if sidecar.version != 1 {
            return Err(corrupt("unknown version"));
        }
        let key =
            storage_core::raw::stored_key(&sidecar.key).map_err(|_| corrupt("invalid key"))?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&sidecar.sha256, &mut sha256)
            .map_err(|_| corrupt("invalid sha256"))?;
        Ok(ObjectMeta {
            key,
            size: sidecar.size,
            etag: ETag::new(&sidecar.etag),
            last_modified: UNIX_EPOCH + Duration::from_millis(sidecar.modified_ms),
            content_type: sidecar.content_type,
            metadata: sidecar.metadata,
            sha256: Some(sha256),
        })
    }

    /// The JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a sidecar of strings and integers always serializes")
    }
}

/// The time of a new version.
pub fn now() -> SystemTime {
    SystemTime::now()
}
