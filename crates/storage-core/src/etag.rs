//! Opaque version tokens.

use std::fmt;
use std::sync::Arc;

/// An opaque version token for one stored version of an object.
///
/// Compare ETags only for equality. Surrounding double quotes and a weak
/// prefix `W/` (RFC 9110 section 8.8.3) are stripped at construction so that
/// `"abc"` from an HTTP header equals `abc`. On Google Cloud Storage the ETag
/// of the contract is the object generation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag(Arc<str>);

impl ETag {
    /// Wraps a token, stripping surrounding quotes and a `W/` prefix.
    pub fn new(tag: impl AsRef<str>) -> Self {
        let tag = tag.as_ref();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        let tag = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        ETag(Arc::from(tag))
    }

    /// The token without quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token quoted for an HTTP `If-Match` or `ETag` header.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({:?})", &*self.0)
    }
}

impl From<&str> for ETag {
    fn from(s: &str) -> Self {
        ETag::new(s)
    }
}

impl From<String> for ETag {
    fn from(s: String) -> Self {
        ETag::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_weak_prefix_are_stripped() {
        assert_eq!(ETag::new("\"abc\""), ETag::new("abc"));
        assert_eq!(ETag::new("W/\"abc\""), ETag::new("abc"));
        assert_eq!(ETag::new("abc").quoted(), "\"abc\"");
    }
}
