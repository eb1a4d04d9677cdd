//! User metadata and this crate's own records as S3 object metadata
//! (`x-amz-meta-*`).
//!
//! | stored name | meaning |
//! |---|---|
//! | `storage-part-size` | the part size, in bytes, of a multipart upload written by this crate, so that a full read can check the composite SHA-256 |
//! | `storage-u-<name>` | a user name that starts with `storage-`, escaped |
//! | anything else | the user name, lower-cased (S3 keeps names case-insensitively) |

use std::collections::HashMap;

use storage_core::Metadata;

/// The metadata name of a multipart upload's part size.
pub(crate) const PART_SIZE_NAME: &str = "storage-part-size";
const RESERVED: &str = "storage-";
const ESCAPED: &str = "storage-u-";

/// The metadata to store: the user's, escaped, then this crate's records.
pub(crate) fn to_s3(metadata: &Metadata, part_size: Option<u64>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = metadata
        .iter()
        .map(|(k, v)| {
            let name = match k.to_ascii_lowercase().starts_with(RESERVED) {
                true => format!("{ESCAPED}{k}"),
                false => k.clone(),
            };
            (name, v.clone())
        })
        .collect();
    if let Some(size) = part_size {
        out.push((PART_SIZE_NAME.to_owned(), size.to_string()));
    }
    out
}

/// Splits stored metadata into the user's and the recorded part size;
/// other names under the reserved prefix are dropped.
pub(crate) fn from_s3(map: Option<&HashMap<String, String>>) -> (Metadata, Option<u64>) {
    let mut user = Metadata::new();
    let mut part_size = None;
    for (name, value) in map.into_iter().flatten() {
        let name = name.to_ascii_lowercase();
        if name == PART_SIZE_NAME {
            part_size = value.parse().ok().filter(|&size| size > 0);
        } else if let Some(escaped) = name.strip_prefix(ESCAPED) {
            user.insert(escaped.to_owned(), value.clone());
        } else if !name.starts_with(RESERVED) {
            user.insert(name, value.clone());
        }
    }
    (user, part_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_user_names_round_trip_and_the_part_size_is_read_back() {
        let user = Metadata::from([
            ("storage-part-size".to_owned(), "mine".to_owned()),
            ("trace".to_owned(), "1".to_owned()),
        ]);
        let stored: HashMap<String, String> = to_s3(&user, Some(8 << 20)).into_iter().collect();
        let (back, part_size) = from_s3(Some(&stored));
        assert_eq!(back, user);
        assert_eq!(part_size, Some(8 << 20));
    }
}
