//! Paging a sorted sequence of objects by the listing rules (DESIGN section 2,
//! rule 7), shared by the backends that keep their own ordered index.

#[cfg(doc)]
use crate::Key;
use crate::{ListOptions, ListPage, ObjectMeta, Result};

/// The delimiter of delimiter listings.
pub const DELIMITER: char = '/';

/// The key to start a sorted scan at (inclusive) for `options`: the largest of
/// the prefix, `start_after` and the continuation. Entries equal to the
/// latter two are skipped by [`page_from_sorted`].
pub fn scan_start(options: &ListOptions) -> &str {
    [
        options.start_after.as_deref(),
        options.continuation.as_deref(),
    ]
    .into_iter()
    .flatten()
    .fold(options.prefix.as_str(), |a, b| a.max(b))
}

/// Builds one page from objects in ascending key order, starting at or before
/// [`scan_start`].
///
/// Leaves out keys with a reserved segment ([`Key::is_reserved`]) unless
/// [`ListOptions::reserved`] is set, so a common prefix is shown only when
/// a key the listing shows lies under it. Applies
/// the prefix (stopping at the first key past it), `start_after` and
/// the continuation (both exclusive), the delimiter (each common prefix once,
/// counted as one entry) and the page size. A continuation that ends with `/`
/// is a common prefix already returned: every key under it is skipped. The
/// page's continuation is set only when another entry follows.
///
/// # Errors
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) from
/// [`ListOptions::validate`].
pub fn page_from_sorted<I>(objects: I, options: &ListOptions) -> Result<ListPage>
where
    I: IntoIterator<Item = ObjectMeta>,
{
    options.validate()?;
    let page_size = options.effective_page_size()?;
    let after = [
        options.start_after.as_deref(),
        options.continuation.as_deref(),
    ]
    .into_iter()
    .flatten()
    .max();
    let skipped_group = options
        .continuation
        .as_deref()
        .filter(|c| c.ends_with(DELIMITER));
    let prefix = options.prefix.as_str();

    let mut page = ListPage::default();
    let mut emitted = 0usize;
    let mut last: Option<String> = None;
    for object in objects {
        let key = object.key.as_str();
        if !key.starts_with(prefix) {
            if key > prefix {
                break;
            }
            continue;
        }
        // Staged state and transaction records have their own listing.
        if !options.reserved && object.key.is_reserved() {
            continue;
        }
        if after.is_some_and(|a| key <= a) || skipped_group.is_some_and(|g| key.starts_with(g)) {
            continue;
        }
        let group = if options.delimiter {
            key[prefix.len()..]
                .find(DELIMITER)
                .map(|i| &key[..prefix.len() + i + 1])
        } else {
            None
        };
        if group.is_some() && group == last.as_deref() {
            continue;
        }
        if emitted == page_size {
            page.continuation = last;
            return Ok(page);
        }
        emitted += 1;
        match group {
            Some(group) => {
                page.common_prefixes.push(group.to_owned());
                last = Some(group.to_owned());
            }
            None => {
                last = Some(key.to_owned());
                page.objects.push(object);
            }
        }
    }
    Ok(page)
}
