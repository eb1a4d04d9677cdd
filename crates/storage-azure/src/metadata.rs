//! User metadata and the recorded SHA-256 as Azure `x-ms-meta-*` headers.
//!
//! Azure metadata names must be C# identifiers (letters, digits, `_`, not
//! starting with a digit) and are case-insensitive; the contract allows `-`
//! as well (`storage_core::validate_metadata`). So:
//!
//! | stored name | meaning |
//! |---|---|
//! | `storage_sha256` | hex SHA-256 of the content, written by this crate |
//! | `storage_h_<hex>` | a user name that Azure cannot hold as is (it has a `-`, or starts with `storage_`), hex-encoded |
//! | anything else | the user name, unchanged |
//!
//! Hex at most doubles a name: 2 KiB of user metadata stays under Azure's
//! 8 KiB limit.

use std::collections::HashMap;

use azure_core::http::headers::Headers;
use storage_core::Metadata;

/// The metadata name of the recorded SHA-256 (hex).
pub(crate) const SHA256_NAME: &str = "storage_sha256";
/// The prefix of hex-encoded user names.
const ENCODED: &str = "storage_h_";
/// Names starting with this are this crate's own.
const RESERVED: &str = "storage_";

/// The stored name of user metadata name `name`.
fn encode_name(name: &str) -> String {
    if name.contains('-') || name.starts_with(RESERVED) {
        format!("{ENCODED}{}", hex::encode(name))
    } else {
        name.to_owned()
    }
}

/// The metadata to send with a put: the user's, encoded, and the SHA-256.
pub(crate) fn to_azure(metadata: &Metadata, sha256: Option<&[u8; 32]>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (encode_name(k), v.clone()))
        .collect();
    if let Some(sha256) = sha256 {
        out.insert(SHA256_NAME.to_owned(), hex::encode(sha256));
    }
    out
}

/// Splits stored metadata (names as Azure returns them, any case) into the
/// user's metadata and the recorded SHA-256. Names this crate does not know
/// under its reserved prefix are dropped.
pub(crate) fn from_azure<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (Metadata, Option<[u8; 32]>) {
    let mut metadata = Metadata::new();
    let mut sha256 = None;
    for (name, value) in pairs {
        let name = name.to_ascii_lowercase();
        if name == SHA256_NAME {
            sha256 = storage_core::raw::integrity::sha256_from_hex(value);
        } else if let Some(encoded) = name.strip_prefix(ENCODED) {
            if let Some(decoded) = hex::decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
            {
                metadata.insert(decoded, value.to_owned());
            }
        } else if !name.starts_with(RESERVED) {
            metadata.insert(name, value.to_owned());
        }
    }
    (metadata, sha256)
}

/// The `x-ms-meta-*` response headers as (name, value) pairs.
pub(crate) fn from_headers(headers: &Headers) -> (Metadata, Option<[u8; 32]>) {
    from_azure(headers.iter().filter_map(|(name, value)| {
        name.as_str()
            .strip_prefix("x-ms-meta-")
            .map(|n| (n, value.as_str()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_azure_cannot_hold_round_trip_through_hex() {
        let user = Metadata::from([
            ("owner".to_owned(), "a".to_owned()),
            ("x-trace".to_owned(), "b".to_owned()),
            ("storage_sha256".to_owned(), "mine".to_owned()),
        ]);
        let sha = [7u8; 32];
        let stored = to_azure(&user, Some(&sha));
        assert!(stored.keys().all(|k| !k.contains('-')), "{stored:?}");
        assert_eq!(stored.get("owner").map(String::as_str), Some("a"));
        let (back, back_sha) = from_azure(stored.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(back, user);
        assert_eq!(back_sha, Some(sha));
    }

    #[test]
    fn stored_names_come_back_lower_case() {
        let (back, sha) = from_azure([("Owner", "a")]);
        assert_eq!(back, Metadata::from([("owner".to_owned(), "a".to_owned())]));
        assert_eq!(sha, None);
    }
}
