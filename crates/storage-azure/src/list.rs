//! The List Blobs answer (`restype=container&comp=list`), parsed from its
//! XML because the SDK's pager has no `delimiter` (SERVERS.md: removed
//! before 1.0), so it cannot return `BlobPrefix` entries.
//!
//! Source: Azure Storage REST reference, "List Blobs", response body.

use azure_core::http::{Method, Request};
use serde::Deserialize;
use storage_core::{ETag, Error, ListOptions, ListPage, Metadata, ObjectMeta, Result};

use crate::backend::AzureBackend;
use crate::core::parse_http_date;
use crate::error::{Context, from_sdk};

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

impl AzureBackend {
    pub(crate) async fn list_blobs(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let page_size = options.effective_page_size()?;
        let base = self.inner.config.prefix.as_str();
        let prefix = format!("{base}{}", options.prefix);
        let after = options.start_after.as_ref().map(|s| format!("{base}{s}"));
        let mut marker = options.continuation.clone();
        loop {
            let start_from = if marker.is_none() {
                after.as_deref()
            } else {
                None
            };
            let raw = self
                .list_page(
                    &prefix,
                    options.delimiter,
                    page_size,
                    marker.as_deref(),
                    start_from,
                )
                .await?;
            let strip = |name: &str| name.strip_prefix(base).map(str::to_owned);
            let mut page = ListPage::default();
            for blob in raw.blobs {
                if after.as_deref().is_some_and(|a| blob.name.as_str() <= a) {
                    continue;
                }
                // Staged state and transaction records have their own
                // listing.
                let Some(key) =
                    strip(&blob.name).and_then(|k| storage_core::raw::stored_key(&k).ok())
                else {
                    continue;
                };
                if key.is_reserved() && !options.reserved {
                    continue;
                }
                page.objects.push(ObjectMeta {
                    key,
                    size: blob.size,
                    etag: ETag::new(&blob.etag),
                    last_modified: parse_http_date(blob.last_modified.as_deref()),
                    content_type: None,
                    metadata: Metadata::new(),
                    sha256: None,
                });
            }
            for group in raw.prefixes {
                let keep = match after.as_deref() {
                    None => true,
                    Some(a) if group.as_str() > a => true,
                    Some(a) if a.starts_with(group.as_str()) => self.any_after(&group, a).await?,
                    Some(_) => false,
                };
                if keep
                    && let Some(stripped) = strip(&group)
                    && (options.reserved || !storage_core::raw::is_reserved_name(&stripped))
                {
                    page.common_prefixes.push(stripped);
                }
            }
            page.common_prefixes.sort();
            page.continuation = raw.next_marker;
            if !page.objects.is_empty()
                || !page.common_prefixes.is_empty()
                || page.continuation.is_none()
            {
                return Ok(page);
            }
            marker = page.continuation;
        }
    }

    /// One List Blobs page, names as stored.
    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        delimiter: bool,
        max_results: usize,
        marker: Option<&str>,
        start_from: Option<&str>,
    ) -> Result<RawPage> {
        let mut url = self.inner.container_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("maxresults", &max_results.to_string());
            if !prefix.is_empty() {
                query.append_pair("prefix", prefix);
            }
            if delimiter {
                query.append_pair("delimiter", "/");
            }
            if let Some(marker) = marker {
                query.append_pair("marker", marker);
            }
            if let Some(start_from) = start_from {
                query.append_pair("startFrom", start_from);
            }
        }
        let request = Request::new(url, Method::Get);
        let response = self
            .send(request, "List Blobs", prefix, Context::Bucket, &[200])
            .await?;
        let body = self
            .timed("List Blobs", response.into_body().collect())
            .await?
            .map_err(|e| from_sdk(e, "List Blobs", self.container(), prefix, Context::Bucket))?;
        let text = std::str::from_utf8(&body)
            .map_err(|e| Error::backend(false, "Azure List Blobs: the answer is not UTF-8", e))?;
        parse(text, self.container())
    }

    /// Whether any blob under `group` sorts after `after` (which starts with
    /// `group`): decides whether a common prefix that `start_after` falls
    /// inside is listed.
    pub(crate) async fn any_after(&self, group: &str, after: &str) -> Result<bool> {
        let mut marker: Option<String> = None;
        loop {
            let start_from = marker.is_none().then_some(after);
            let page = self
                .list_page(group, false, 100, marker.as_deref(), start_from)
                .await?;
            if page.blobs.iter().any(|b| b.name.as_str() > after) {
                return Ok(true);
            }
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => return Ok(false),
            }
        }
    }
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
