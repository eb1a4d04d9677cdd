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

/// Keys whose characters need escaping somewhere on the way to a service:
/// in a URL path or query (space, `+`, `%`, `?`, `#`, `&`, `=`, a literal
/// `%2F`), in a signature's canonical form, or as 4-byte UTF-8; one sits
/// under a common prefix that itself needs escaping.
pub const ESCAPED_KEYS: [&str; 12] = [
    "esc/amp&ersand",
    "esc/dir with space/x+y",
    "esc/emoji-\u{1F600}",
    "esc/eq=ual",
    "esc/hash#tag",
    "esc/lit%2Fslash",
    "esc/per%cent",
    "esc/plus+sign",
    "esc/quest?ion",
    "esc/sp ace",
    "esc/tilde~and'quote",
    "esc/\u{fc}mlaut",
];

/// Distinct keys that services or file systems are known to fold into one
/// name: `\` and `/` (Azure; SeaweedFS), a segment ending in `.` and the
/// same without it (Azure drops a trailing dot), letter case
/// (case-insensitive file systems), and the NFC and NFD forms of `é`
/// (file systems that normalise Unicode).
pub const ALIASING_KEYS: [&str; 10] = [
    "alias/a\\b",
    "alias/a/b",
    "alias/dot.",
    "alias/dot",
    "alias/seg./x",
    "alias/seg/x",
    "alias/Case",
    "alias/case",
    "alias/\u{e9}",
    "alias/e\u{301}",
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
        check!(SUITE, keys_that_need_escaping_round_trip),
        check!(SUITE, distinct_keys_never_alias),
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

async fn keys_that_need_escaping_round_trip(b: Arc<dyn Backend>) -> CheckResult {
    fill(&*b, &ESCAPED_KEYS).await?;
    let listed: Vec<String> = all_pages(&*b, ListOptions::prefix("esc/"))
        .await?
        .iter()
        .flat_map(keys_of)
        .collect();
    ensure_eq!(listed, sorted(&ESCAPED_KEYS), "keys listed under esc/");
    let grouped = b
        .list(&ListOptions {
            prefix: "esc/".into(),
            delimiter: true,
            ..Default::default()
        })
        .await?;
    let top: Vec<&str> = ESCAPED_KEYS
        .iter()
        .copied()
        .filter(|k| !k["esc/".len()..].contains('/'))
        .collect();
    ensure_eq!(
        keys_of(&grouped),
        sorted(&top),
        "objects directly under esc/"
    );
    ensure_eq!(
        grouped.common_prefixes,
        vec!["esc/dir with space/"],
        "common prefixes under esc/"
    );
    let nested = b.list(&ListOptions::prefix("esc/dir with space/")).await?;
    ensure_eq!(
        keys_of(&nested),
        vec!["esc/dir with space/x+y"],
        "keys under a prefix with a space"
    );
    for k in ESCAPED_KEYS {
        let expected = format!("content of {k}");
        ensure_eq!(
            b.get_bytes(k).await?,
            expected.as_bytes(),
            format!("get {k:?}")
        );
        let copy = format!("esc-copy/{}", &k["esc/".len()..]);
        b.copy(&key(k)?, &key(&copy)?, Default::default()).await?;
        ensure_eq!(
            b.get_bytes(copy.as_str()).await?,
            expected.as_bytes(),
            format!("get the copy {copy:?}")
        );
        b.delete(&key(k)?, Default::default()).await?;
        expect_err!(b.head(&key(k)?).await, Error::NotFound { .. });
    }
    let left = b.list(&ListOptions::prefix("esc/")).await?;
    ensure!(
        left.objects.is_empty() && left.common_prefixes.is_empty(),
        "listed after deleting every key: {left:?}"
    );
    Ok(())
}

async fn distinct_keys_never_alias(b: Arc<dyn Backend>) -> CheckResult {
    // A backend may refuse a key it cannot store distinctly (InvalidKey,
    // before any I/O); every key it accepts must stay its own object.
    let mut accepted = Vec::new();
    for k in ALIASING_KEYS {
        match b.put_bytes(k, format!("content of {k}")).await {
            Ok(_) => accepted.push(k),
            Err(Error::InvalidKey { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Compared as sets: byte order is the other checks' concern.
    let mut listed: Vec<String> = all_pages(&*b, ListOptions::prefix("alias/"))
        .await?
        .iter()
        .flat_map(keys_of)
        .collect();
    listed.sort();
    ensure_eq!(
        listed,
        sorted(&accepted),
        "keys listed back (a missing key was overwritten by another; an unknown one was never put)"
    );
    for k in accepted {
        ensure_eq!(
            b.get_bytes(k).await?,
            format!("content of {k}").as_bytes(),
            format!("content of {k:?} (another key's write landed on it)")
        );
    }
    Ok(())
}
