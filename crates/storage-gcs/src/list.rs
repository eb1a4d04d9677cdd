//! Listings of `GcsBackend`: pages by `startOffset` under the prefix (see
//! [`GcsBackend`] for why), names that are not keys skipped.

use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use storage_core::{Error, ListOptions, ListPage, Metadata, Result};

use crate::backend::GcsBackend;
use crate::error::Context;

impl GcsBackend {
    pub(crate) async fn list_objects(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let page_size = options.effective_page_size()?;
        let base = self.inner.config.prefix.as_str();
        let prefix = format!("{base}{}", options.prefix);
        // Everything up to `after` is done: `start_after`, or the last entry
        // of the previous page (the continuation is that entry's key).
        let mut after: Option<String> = [&options.start_after, &options.continuation]
            .into_iter()
            .flatten()
            .map(|s| format!("{base}{s}"))
            .max();
        let mut page = ListPage::default();
        let mut last: Option<String> = None;
        // The server's page token, followed only while pages bring nothing
        // new by name (see `page_bound`), and how many such pages in a row.
        let mut token: Option<String> = None;
        let mut stalled = 0u32;
        loop {
            let start_offset = after.as_ref().map(|a| {
                if options.delimiter && a.ends_with('/') {
                    // A common prefix already returned: skip its whole group.
                    format!("{}0", &a[..a.len() - 1])
                } else {
                    a.clone()
                }
            });
            let wanted = page_size - page.objects.len() - page.common_prefixes.len();
            let request = ListObjectsRequest {
                bucket: self.bucket().to_owned(),
                prefix: (!prefix.is_empty()).then(|| prefix.clone()),
                delimiter: options.delimiter.then(|| "/".to_owned()),
                // One more than needed: `startOffset` includes `after` itself.
                max_results: Some(i32::try_from(wanted.max(1) + 1).unwrap_or(i32::MAX)),
                start_offset,
                page_token: token.clone(),
                ..Default::default()
            };
            let raw = match self
                .timed("list", self.client().await?.list_objects(&request))
                .await?
            {
                Ok(raw) => raw,
                Err(e) => {
                    let err = self.error(e, "list", &options.prefix, Context::Bucket);
                    return Err(err.await);
                }
            };
            let next_token = raw.next_page_token.clone().filter(|t| !t.is_empty());
            let items = raw.items.unwrap_or_default();
            let mut groups = raw.prefixes.unwrap_or_default();
            groups.sort();
            groups.dedup();
            // Where the next request starts: past a bound by name, or, when
            // a truncated page brought nothing new by name (GCS may return
            // fewer entries than `maxResults`, omitting duplicate prefixes
            // after counting them), at the server's page token.
            let (bound, follow) = match next_token {
                None => (None, None),
                Some(next) => match page_bound(&items, &groups, after.as_deref()) {
                    Some(bound) => (Some(bound), None),
                    None if Some(&next) != token.as_ref() && stalled < MAX_STALLED_PAGES => {
                        (None, Some(next))
                    }
                    None => return Err(no_progress(&request, after.as_deref())),
                },
            };
            let mut entries: Vec<(String, Option<&Object>)> = items
                .iter()
                .map(|o| (o.name.clone(), Some(o)))
                .chain(groups.into_iter().map(|g| (g, None)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, object) in entries {
                if bound.as_deref().is_some_and(|b| name.as_str() > b) {
                    break;
                }
                // Staged state and transaction records have their own
                // listing.
                if !options.reserved
                    && name
                        .strip_prefix(base)
                        .is_some_and(storage_core::raw::is_reserved_name)
                {
                    continue;
                }
                if let Some(a) = after.as_deref() {
                    let inside_group =
                        object.is_none() && a.starts_with(name.as_str()) && a != name;
                    if inside_group {
                        if !self.any_after(&name, a).await? {
                            continue;
                        }
                    } else if name.as_str() <= a {
                        continue;
                    }
                }
                if page.objects.len() + page.common_prefixes.len() == page_size {
                    page.continuation = last.and_then(|l| l.strip_prefix(base).map(str::to_owned));
                    return Ok(page);
                }
                let Some(stripped) = name.strip_prefix(base) else {
                    continue;
                };
                match object {
                    Some(object) => {
                        let Ok(key) = storage_core::raw::stored_key(stripped) else {
                            continue;
                        };
                        let mut meta = Self::meta_from_object(&key, object);
                        meta.metadata = Metadata::new();
                        meta.content_type = None;
                        meta.sha256 = None;
                        page.objects.push(meta);
                    }
                    None => page.common_prefixes.push(stripped.to_owned()),
                }
                last = Some(name);
            }
            match (bound, follow) {
                (Some(bound), _) => {
                    after = Some(bound);
                    token = None;
                    stalled = 0;
                }
                (None, Some(next)) => {
                    token = Some(next);
                    stalled += 1;
                }
                (None, None) => return Ok(page),
            }
        }
    }

    /// Whether any object under `group` sorts after `after` (which starts
    /// with `group`).
    async fn any_after(&self, group: &str, after: &str) -> Result<bool> {
        let mut token: Option<String> = None;
        loop {
            let request = ListObjectsRequest {
                bucket: self.bucket().to_owned(),
                prefix: Some(group.to_owned()),
                start_offset: Some(after.to_owned()),
                max_results: Some(100),
                page_token: token.clone(),
                ..Default::default()
            };
            let page = match self
                .timed("list", self.client().await?.list_objects(&request))
                .await?
            {
                Ok(page) => page,
                Err(e) => return Err(self.error(e, "list", group, Context::Bucket).await),
            };
            if page.items.iter().flatten().any(|o| o.name.as_str() > after) {
                return Ok(true);
            }
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(false),
            }
        }
    }
}

/// Most truncated listing pages in a row with nothing new by name that a
/// listing follows by page token before it fails as making no progress.
const MAX_STALLED_PAGES: u32 = 100;

/// How far a truncated listing page is complete: every name up to the
/// returned bound (inclusive) has been returned, so the next request starts
/// after it. `None` when the page returned nothing past `after`, which
/// would repeat the same request forever.
///
/// GCS counts objects and common prefixes together against `maxResults`
/// and returns the first ones in name order (Cloud Storage JSON API,
/// "Objects: list", `maxResults`), so everything up to the last object or
/// prefix returned is complete. fake-gcs-server counts objects only and
/// returns every common prefix on every page, so only names up to the last
/// object are complete there. The bound is therefore the last object where
/// it is past `after` (right on both), and otherwise the last common
/// prefix, which GCS makes complete (a page of one repeated object plus
/// prefixes, on which a bound from objects alone would never move). With
/// nothing past `after` the listing follows the server's page token
/// instead, and fails after [`MAX_STALLED_PAGES`] such pages or a repeated
/// token.
fn page_bound(items: &[Object], groups: &[String], after: Option<&str>) -> Option<String> {
    let past = |name: &str| after.is_none_or(|a| name > a);
    items
        .last()
        .map(|o| o.name.as_str())
        .filter(|n| past(n))
        .or_else(|| groups.last().map(String::as_str).filter(|g| past(g)))
        .map(str::to_owned)
}

/// The error for truncated listing pages that bring nothing past `after`
/// and no new page token: a server that keeps answering so would make the
/// listing loop forever.
fn no_progress(request: &ListObjectsRequest, after: Option<&str>) -> Error {
    Error::backend(
        false,
        format!(
            "a truncated listing page of bucket {} (prefix {:?}, startOffset {:?}) returned \
             nothing past {:?}; listing stopped rather than repeating the request",
            request.bucket, request.prefix, request.start_offset, after
        ),
        "gcs",
    )
}
