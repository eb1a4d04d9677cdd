//! Listings of `S3Backend`: ListObjectsV2 under the prefix, names that are
//! not keys skipped.

use storage_core::raw;
use storage_core::{ETag, ListOptions, ListPage, Metadata, ObjectMeta, Result};

use crate::backend::S3Backend;
use crate::core::modified;
use crate::error::Context;

impl S3Backend {
    pub(crate) async fn list_objects(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let page_size = options.effective_page_size()?;
        let prefix = &self.config.prefix;
        let mut request = self
            .sdk()
            .await
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(format!("{prefix}{}", options.prefix))
            .max_keys(page_size as i32)
            .set_continuation_token(options.continuation.clone())
            .set_start_after(options.start_after.as_ref().map(|s| format!("{prefix}{s}")));
        if options.delimiter {
            request = request.delimiter("/");
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                return Err(self
                    .error(e, "ListObjectsV2", &options.prefix, Context::Bucket)
                    .await);
            }
        };
        let strip = |name: &str| name.strip_prefix(prefix.as_str()).map(str::to_owned);
        let objects = output
            .contents()
            .iter()
            .filter_map(|o| {
                // Staged state and transaction records have their own
                // listing.
                let key = raw::stored_key(&strip(o.key()?)?).ok()?;
                if key.is_reserved() && !options.reserved {
                    return None;
                }
                Some(ObjectMeta {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: ETag::new(o.e_tag()?),
                    last_modified: modified(o.last_modified()),
                    content_type: None,
                    metadata: Metadata::new(),
                    sha256: None,
                })
            })
            .collect();
        let common_prefixes = output
            .common_prefixes()
            .iter()
            .filter_map(|p| strip(p.prefix()?))
            .filter(|p| options.reserved || !raw::is_reserved_name(p))
            .collect();
        let continuation = output
            .is_truncated()
            .unwrap_or(false)
            .then(|| output.next_continuation_token().map(str::to_owned))
            .flatten();
        Ok(ListPage {
            objects,
            common_prefixes,
            continuation,
        })
    }
}
