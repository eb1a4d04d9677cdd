//! Validated object keys (DESIGN section 2, `Key`).

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{Error, Result};

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Key segments reserved for the staging and transaction layer.
pub const RESERVED_SEGMENTS: [&str; 2] = [".staging", ".txn"];

/// A validated object key: UTF-8, 1 to [`MAX_KEY_BYTES`] bytes, `/`-separated
/// segments.
///
/// Rules, checked by [`Key::new`] before any I/O:
/// - not empty and at most 1024 bytes;
/// - no NUL and no control characters (Unicode category Cc);
/// - no leading `/`, and no empty segment (so no trailing `/` and no `//`);
/// - no `.` or `..` segment;
/// - no `.staging` or `.txn` segment: they are reserved for staged writes and
///   transaction records.
///
/// Keys order by their bytes, which is the order every listing uses.
///
/// ```
/// use storage_core::Key;
/// let key = Key::new("tables/orders/part-0001.parquet")?;
/// assert_eq!(key.as_str(), "tables/orders/part-0001.parquet");
/// assert!(Key::new("a//b").is_err());
/// # Ok::<(), storage_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Arc<str>);

impl Key {
    /// Validates `key` and wraps it.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the broken rule.
    pub fn new(key: impl AsRef<str>) -> Result<Self> {
        Self::checked(key.as_ref(), Reserved::Refused)
    }

    /// Validates a name read back from a store, where the reserved segments
    /// are allowed: the staging and transaction layer writes them. For
    /// backend authors; see [`raw::stored_key`](crate::raw::stored_key).
    pub(crate) fn stored(key: &str) -> Result<Self> {
        Self::checked(key, Reserved::Allowed)
    }

    fn checked(key: &str, reserved: Reserved) -> Result<Self> {
        validate(key, reserved).map_err(|reason| Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })?;
        Ok(Key(Arc::from(key)))
    }

    /// Whether a segment of the key is reserved (`.staging` or `.txn`): the
    /// key names staged state or a transaction record, which ordinary
    /// listings and change feeds never show.
    pub fn is_reserved(&self) -> bool {
        is_reserved_name(&self.0)
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// Whether the reserved segments pass validation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reserved {
    Refused,
    Allowed,
}

/// Whether a segment of `name` (a key or a listing's common prefix) is
/// reserved.
pub(crate) fn is_reserved_name(name: &str) -> bool {
    name.split('/').any(|s| RESERVED_SEGMENTS.contains(&s))
}

fn validate(key: &str, reserved: Reserved) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        return Err("a key must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("a key must be at most 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return Err("a key must not contain NUL or control characters");
    }
    if key.starts_with('/') {
        return Err("a key must not start with '/'");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("a key must not contain an empty segment ('//' or a trailing '/')"),
            "." | ".." => return Err("a key must not contain a '.' or '..' segment"),
            s if reserved == Reserved::Refused && RESERVED_SEGMENTS.contains(&s) => {
                return Err("the segments '.staging' and '.txn' are reserved");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: any string a key could start with.
///
/// A prefix may be empty and may end with `/`; it must not start with `/`,
/// hold control characters or exceed [`MAX_KEY_BYTES`].
///
/// # Errors
/// [`Error::InvalidArgument`] naming the broken rule.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let reason = if prefix.len() > MAX_KEY_BYTES {
        "a prefix must be at most 1024 bytes"
    } else if prefix.chars().any(char::is_control) {
        "a prefix must not contain control characters"
    } else if prefix.starts_with('/') {
        "a prefix must not start with '/'"
    } else {
        return Ok(());
    };
    Err(Error::invalid_argument(format!(
        "prefix {prefix:?}: {reason}"
    )))
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", &*self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Key::new(s)
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Key::new(s)
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Key::new(s)
    }
}

/// Anything that names an object: a [`Key`], or a string validated into one.
///
/// The conveniences of [`BackendExt`](crate::BackendExt) take `impl IntoKey`
/// so that `store.put_bytes("a/b", data)` works and an invalid string fails
/// with [`Error::InvalidKey`] before the backend is called.
pub trait IntoKey {
    /// Converts into a validated key.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a string that breaks a rule of [`Key`].
    fn into_key(self) -> Result<Key>;
}

impl IntoKey for Key {
    fn into_key(self) -> Result<Key> {
        Ok(self)
    }
}

impl IntoKey for &Key {
    fn into_key(self) -> Result<Key> {
        Ok(self.clone())
    }
}

impl IntoKey for &str {
    fn into_key(self) -> Result<Key> {
        Key::new(self)
    }
}

impl IntoKey for String {
    fn into_key(self) -> Result<Key> {
        Key::new(self)
    }
}

impl IntoKey for &String {
    fn into_key(self) -> Result<Key> {
        Key::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> &'static str {
        match Key::new(key) {
            Err(Error::InvalidKey { reason, .. }) => reason,
            other => panic!("expected InvalidKey for {key:?}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_and_non_ascii_keys() {
        for key in [
            "a",
            "a/b/c",
            "a.d",
            "ünïcødé/キー",
            ".hidden",
            "a..b",
            "x/.y",
        ] {
            assert!(Key::new(key).is_ok(), "{key:?} should be valid");
        }
    }

    #[test]
    fn length_limits_are_in_bytes() {
        assert!(Key::new("é".repeat(512)).is_ok());
        assert_eq!(reason(&"é".repeat(513)), "a key must be at most 1024 bytes");
    }

    #[test]
    fn rejects_each_invalid_form() {
        assert!(reason("").contains("empty"));
        assert!(reason("a\0b").contains("control"));
        assert!(reason("a\u{7f}").contains("control"));
        assert!(reason("/a").contains("start"));
        assert!(reason("a//b").contains("empty segment"));
        assert!(reason("a/").contains("empty segment"));
        assert!(reason("a/./b").contains("'.'"));
        assert!(reason("../a").contains("'.'"));
        assert!(reason("a/.staging/t").contains("reserved"));
        assert!(reason(".txn/t").contains("reserved"));
    }

    #[test]
    fn rejects_every_form_the_contract_names() {
        let too_long = "k".repeat(MAX_KEY_BYTES + 1);
        let too_long_multibyte = "é".repeat(MAX_KEY_BYTES / 2 + 1);
        for key in [
            "",
            too_long.as_str(),
            too_long_multibyte.as_str(),
            "a\0b",
            "line\nbreak",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
            "/a",
            "/",
            "a//b",
            "a/",
            "a/b/",
            ".",
            "..",
            "a/./b",
            "a/../../etc/passwd",
            "../escape",
            ".staging",
            "a/.staging/t",
            ".txn/t1",
            "a/.txn",
        ] {
            assert!(
                matches!(Key::new(key), Err(Error::InvalidKey { .. })),
                "{key:?} should be an invalid key"
            );
        }
    }

    #[test]
    fn orders_by_bytes() {
        let mut keys: Vec<Key> = ["a0", "a/b", "a", "a-c", "a.d"]
            .into_iter()
            .map(|k| Key::new(k).expect("valid key"))
            .collect();
        keys.sort();
        let sorted: Vec<&str> = keys.iter().map(Key::as_str).collect();
        assert_eq!(sorted, ["a", "a-c", "a.d", "a/b", "a0"]);
    }
}
