//! User metadata and the recorded SHA-256 as GCS object metadata.
//!
//! | stored name | meaning |
//! |---|---|
//! | `storage_sha256` | hex SHA-256 of the content, written by this crate |
//! | `storage_u_<name>` | a user name that starts with `storage_`, escaped |
//! | anything else | the user name, unchanged |

use std::collections::HashMap;

use storage_core::Metadata;

/// The metadata name of the recorded SHA-256 (hex).
pub(crate) const SHA256_NAME: &str = "storage_sha256";
const RESERVED: &str = "storage_";
const ESCAPED: &str = "storage_u_";

/// The metadata to store: the user's, escaped, and the SHA-256.
pub(crate) fn to_gcs(metadata: &Metadata, sha256: Option<&[u8; 32]>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| {
            let name = if k.starts_with(RESERVED) {
                format!("{ESCAPED}{k}")
            } else {
                k.clone()
            };
            (name, v.clone())
        })
        .collect();
    if let Some(sha256) = sha256 {
        out.insert(SHA256_NAME.to_owned(), hex::encode(sha256));
    }
    out
}

/// Splits stored metadata into the user's and the recorded SHA-256; other
/// names under the reserved prefix are dropped.
pub(crate) fn from_gcs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (Metadata, Option<[u8; 32]>) {
    let mut metadata = Metadata::new();
    let mut sha256 = None;
    for (name, value) in pairs {
        let name = name.to_ascii_lowercase();
        if name == SHA256_NAME {
            sha256 = storage_core::raw::integrity::sha256_from_hex(value);
        } else if let Some(user) = name.strip_prefix(ESCAPED) {
            metadata.insert(user.to_owned(), value.to_owned());
        } else if !name.starts_with(RESERVED) {
            metadata.insert(name, value.to_owned());
        }
    }
    (metadata, sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_user_names_round_trip() {
        let user = Metadata::from([
            ("storage_sha256".to_owned(), "mine".to_owned()),
            ("x-trace".to_owned(), "1".to_owned()),
        ]);
        let stored = to_gcs(&user, Some(&[1; 32]));
        let (back, sha) = from_gcs(stored.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(back, user);
        assert_eq!(sha, Some([1; 32]));
    }
}
