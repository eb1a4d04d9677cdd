//! Suite `list`: byte order, pages, prefix, delimiter and `start_after`
//! (DESIGN section 2, rule 7; S3 `ListObjectsV2` semantics).

use std::sync::Arc;

use futures::TryStreamExt;
use storage_core::{Backend, BackendExt, Error, ListOptions, ListPage};

use crate::support::key;
use crate::{Check, CheckResult, Failure, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "list";

/// Keys whose byte order differs from naive orders: `-` (0x2d) and `.`
/// (0x2e) sort before `/` (0x2f), which sorts before `0` (0x30); non-ASCII
/// keys sort after ASCII by their UTF-8 bytes.
pub const TRICKY_KEYS: [&str; 12] = [
    "a",
    "a-c",
    "a.d",
    "a/b",
    "a/b/c",
    "a0",
    "b",
    "b/x",
    "z",
    "é",
    "ö/p",
    "日本/語",
];

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, keys_come_back_in_byte_order),
        check!(SUITE, pages_of_1_2_and_1000_return_the_same_keys),
        check!(SUITE, prefix_selects_only_matching_keys),
        check!(SUITE, prefix_without_matches_is_empty),
        check!(SUITE, delimiter_groups_common_prefixes),
        check!(SUITE, delimiter_under_a_prefix_groups_the_next_level),
        check!(SUITE, delimiter_pages_return_each_prefix_once),
        check!(SUITE, start_after_is_exclusive),
        check!(SUITE, start_after_with_prefix),
        check!(SUITE, listed_size_and_etag_match_head),
        check!(SUITE, deleted_keys_are_not_listed),
        check!(SUITE, page_size_zero_is_invalid_argument),
        check!(SUITE, list_all_streams_every_key),
    ]
}

async fn fill(b: &dyn Backend, keys: &[&str]) -> CheckResult {
    for k in keys {
        b.put_bytes(*k, format!("content of {k}")).await?;
    }
    Ok(())
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    v.sort();
    v
}

fn keys_of(page: &ListPage) -> Vec<String> {
    page.objects.iter().map(|m| m.key.to_string()).collect()
}

/// Every page of a listing, following continuations (at most 10,000 pages).
async fn all_pages(b: &dyn Backend, options: ListOptions) -> Result<Vec<ListPage>, Failure> {
    let mut pages = Vec::new();
    let mut options = options;
    loop {
        let page = b.list(&options).await?;
        let next = page.continuation.clone();
        pages.push(page);
        match next {
            Some(token) => options.continuation = Some(token),
            None => return Ok(pages),
        }
        ensure!(
            pages.len() < 10_000,
            "the listing did not end after 10000 pages"
        );
    }
}

async fn keys_come_back_in_byte_order(b: Arc<dyn Backend>) -> CheckResult {
    let mut shuffled = TRICKY_KEYS;
    shuffled.reverse();
    fill(&*b, &shuffled).await?;
    let page = b.list(&ListOptions::default()).await?;
    ensure_eq!(keys_of(&page), sorted(&TRICKY_KEYS), "listed keys");
    Ok(())
}

async fn pages_of_1_2_and_1000_return_the_same_keys(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &TRICKY_KEYS).await?;
    for size in [1, 2, 1000] {
        let options = ListOptions {
            page_size: Some(size),
            ..Default::default()
        };
        let pages = all_pages(&*b, options).await?;
        let keys: Vec<String> = pages.iter().flat_map(keys_of).collect();
        ensure_eq!(
            keys,
            sorted(&TRICKY_KEYS),
            format!("keys listed in pages of {size}")
        );
        ensure!(
            pages.iter().all(|p| p.objects.len() <= size),
            "a page held more than {size} objects"
        );
    }
    Ok(())
}

async fn prefix_selects_only_matching_keys(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &TRICKY_KEYS).await?;
    let page = b.list(&ListOptions::prefix("a/")).await?;
    ensure_eq!(keys_of(&page), vec!["a/b", "a/b/c"], "keys under a/");
    let page = b.list(&ListOptions::prefix("a")).await?;
    ensure_eq!(
        keys_of(&page),
        vec!["a", "a-c", "a.d", "a/b", "a/b/c", "a0"],
        "keys starting with a"
    );
    Ok(())
}

async fn prefix_without_matches_is_empty(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &TRICKY_KEYS).await?;
    let page = b.list(&ListOptions::prefix("nothing/here")).await?;
    ensure!(
        page.objects.is_empty() && page.common_prefixes.is_empty(),
        "found {page:?}"
    );
    ensure_eq!(page.continuation, None, "continuation of an empty listing");
    Ok(())
}

async fn delimiter_groups_common_prefixes(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &TRICKY_KEYS).await?;
    let options = ListOptions {
        delimiter: true,
        ..Default::default()
    };
    let page = b.list(&options).await?;
    ensure_eq!(
        keys_of(&page),
        vec!["a", "a-c", "a.d", "a0", "b", "z", "é"],
        "objects at the top level"
    );
    ensure_eq!(
        page.common_prefixes,
        vec!["a/", "b/", "ö/", "日本/"],
        "common prefixes at the top level"
    );
    Ok(())
}

async fn delimiter_under_a_prefix_groups_the_next_level(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &TRICKY_KEYS).await?;
    let options = ListOptions {
        prefix: "a/".into(),
        delimiter: true,
        ..Default::default()
    };
    let page = b.list(&options).await?;
    ensure_eq!(keys_of(&page), vec!["a/b"], "objects directly under a/");
    ensure_eq!(
        page.common_prefixes,
        vec!["a/b/"],
        "common prefixes under a/"
    );
    Ok(())
}

async fn delimiter_pages_return_each_prefix_once(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &["d/1", "d/2", "d/3", "e", "f/1", "f/2", "g"]).await?;
    let options = ListOptions {
        delimiter: true,
        page_size: Some(1),
        ..Default::default()
    };
    let pages = all_pages(&*b, options).await?;
    let mut entries = Vec::new();
    for page in &pages {
        ensure!(
            page.objects.len() + page.common_prefixes.len() <= 1,
            "a page of size 1 held {page:?}"
        );
        entries.extend(page.common_prefixes.iter().cloned());
        entries.extend(keys_of(page));
    }
    ensure_eq!(
        entries,
        vec!["d/", "e", "f/", "g"],
        "entries across pages of 1"
    );
    Ok(())
}

async fn start_after_is_exclusive(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &TRICKY_KEYS).await?;
    let options = ListOptions {
        start_after: Some("a/b".into()),
        ..Default::default()
    };
    let page = b.list(&options).await?;
    let expected: Vec<String> = sorted(&TRICKY_KEYS)
        .into_iter()
        .filter(|k| k.as_str() > "a/b")
        .collect();
    ensure_eq!(keys_of(&page), expected, "keys after a/b");
    Ok(())
}

async fn start_after_with_prefix(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &TRICKY_KEYS).await?;
    let options = ListOptions {
        prefix: "a".into(),
        start_after: Some("a.d".into()),
        ..Default::default()
    };
    let page = b.list(&options).await?;
    ensure_eq!(
        keys_of(&page),
        vec!["a/b", "a/b/c", "a0"],
        "keys under a after a.d"
    );
    Ok(())
}

async fn listed_size_and_etag_match_head(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("x", "12345").await?;
    let page = b.list(&ListOptions::default()).await?;
    let head = b.head(&key("x")?).await?;
    let listed = page
        .objects
        .first()
        .ok_or_else(|| Failure("x was not listed".into()))?;
    ensure_eq!(listed.size, 5, "listed size");
    ensure_eq!(listed.etag, head.etag, "listed ETag");
    Ok(())
}

async fn deleted_keys_are_not_listed(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &["p/1", "p/2", "p/3"]).await?;
    b.delete(&key("p/2")?, Default::default()).await?;
    let page = b.list(&ListOptions::prefix("p/")).await?;
    ensure_eq!(
        keys_of(&page),
        vec!["p/1", "p/3"],
        "keys after deleting p/2"
    );
    Ok(())
}

async fn page_size_zero_is_invalid_argument(b: Arc<dyn Backend>) -> CheckResult {
    let options = ListOptions {
        page_size: Some(0),
        ..Default::default()
    };
    expect_err!(b.list(&options).await, Error::InvalidArgument { .. });
    Ok(())
}

async fn list_all_streams_every_key(b: Arc<dyn Backend>) -> CheckResult {
    let keys: Vec<String> = (0..25).map(|i| format!("s/{i:02}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    fill(&*b, &refs).await?;
    let options = ListOptions {
        prefix: "s/".into(),
        page_size: Some(4),
        ..Default::default()
    };
    let listed: Vec<String> = b
        .list_all(options)
        .map_ok(|m| m.key.to_string())
        .try_collect()
        .await?;
    ensure_eq!(listed, keys, "keys streamed by list_all over pages of 4");
    Ok(())
}
