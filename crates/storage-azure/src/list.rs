//! The List Blobs answer (`restype=container&comp=list`), parsed from its
//! XML because the SDK's pager has no `delimiter` (SERVERS.md: removed
//! before 1.0), so it cannot return `BlobPrefix` entries.
//!
//! Source: Azure Storage REST reference, "List Blobs", response body.

use serde::Deserialize;
use storage_core::{Error, Result};

/// One page of a listing, names as stored (with the configured prefix).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RawPage {
    /// Blobs, in the server's order.
    pub(crate) blobs: Vec<RawBlob>,
    /// Common prefixes (`BlobPrefix`), with their trailing delimiter.
    pub(crate) prefixes: Vec<String>,
    /// The marker of the next page; `None` when this page is the last (an
    /// empty `NextMarker` ends a listing).
    pub(crate) next_marker: Option<String>,
}

/// A listed blob.
#[derive(Debug, PartialEq)]
pub(crate) struct RawBlob {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) etag: String,
    pub(crate) last_modified: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    blobs: Blobs,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct Blobs {
    #[serde(rename = "$value", default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
enum Item {
    Blob(BlobEntry),
    BlobPrefix(PrefixEntry),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BlobEntry {
    name: Name,
    properties: Properties,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PrefixEntry {
    name: Name,
}

/// `<Name Encoded="true">` carries a percent-encoded name (names with
/// characters XML 1.0 cannot hold).
#[derive(Deserialize)]
struct Name {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<bool>,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(rename = "Content-Length", default)]
    content_length: u64,
    #[serde(rename = "Etag", default)]
    etag: String,
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
}

impl Name {
    /// The name, or `None` for an encoded name that does not decode to
    /// UTF-8.
    fn decoded(self) -> Option<String> {
        if self.encoded == Some(true) {
            percent_encoding::percent_decode_str(&self.text)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        } else {
            Some(self.text)
        }
    }
}

/// Parses one List Blobs answer.
///
/// # Errors
/// A non-transient [`Error::Backend`] when the body is not a List Blobs
/// answer.
pub(crate) fn parse(xml: &str, container: &str) -> Result<RawPage> {
    let results: EnumerationResults = quick_xml::de::from_str(xml).map_err(|e| {
        Error::backend(
            false,
            format!("Azure List Blobs of container {container}: the answer is not a listing"),
            e,
        )
    })?;
    let mut page = RawPage {
        next_marker: results.next_marker.filter(|m| !m.is_empty()),
        ..RawPage::default()
    };
    for item in results.blobs.items {
        match item {
            Item::Blob(blob) => {
                if let Some(name) = blob.name.decoded() {
                    page.blobs.push(RawBlob {
                        name,
                        size: blob.properties.content_length,
                        etag: blob.properties.etag,
                        last_modified: blob.properties.last_modified,
                    });
                }
            }
            Item::BlobPrefix(prefix) => {
                if let Some(name) = prefix.name.decoded() {
                    page.prefixes.push(name);
                }
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c">
  <Prefix>a</Prefix><MaxResults>3</MaxResults><Delimiter>/</Delimiter>
  <Blobs>
    <Blob><Name>a&amp;b</Name><Properties><Creation-Time>Sun, 22 Nov 2026 03:00:00 GMT</Creation-Time><Last-Modified>Sun, 22 Nov 2026 03:00:00 GMT</Last-Modified><Etag>0x8DE1</Etag><Content-Length>5</Content-Length><Content-Type>text/plain</Content-Type><BlobType>BlockBlob</BlobType></Properties><Metadata /></Blob>
    <BlobPrefix><Name>a/</Name></BlobPrefix>
    <Blob><Name Encoded="true">a%C3%A9</Name><Properties><Etag>"0x8DE2"</Etag><Content-Length>0</Content-Length></Properties></Blob>
  </Blobs>
  <NextMarker />
</EnumerationResults>"#;

    #[test]
    fn blobs_prefixes_and_an_empty_marker_parse() {
        let page = parse(ANSWER, "c").expect("parse");
        assert_eq!(
            page.blobs
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>(),
            ["a&b", "aé"]
        );
        assert_eq!(page.blobs[0].size, 5);
        assert_eq!(page.blobs[0].etag, "0x8DE1");
        assert_eq!(page.prefixes, ["a/"]);
        assert_eq!(page.next_marker, None);
    }

    #[test]
    fn a_marker_continues_the_listing() {
        let xml = "<EnumerationResults><Blobs /><NextMarker>m2</NextMarker></EnumerationResults>";
        let page = parse(xml, "c").expect("parse");
        assert!(page.blobs.is_empty());
        assert_eq!(page.next_marker.as_deref(), Some("m2"));
    }

    #[test]
    fn a_body_that_is_not_a_listing_is_an_error() {
        assert!(parse("<Error><Code>x</Code></Error>", "c").is_err());
    }
}
