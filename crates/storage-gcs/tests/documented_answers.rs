//! Behaviour of real Cloud Storage that fake-gcs-server does not reproduce,
//! pinned by a scripted server that answers as Google's documentation
//! says (each answer cites its page). No cloud account is needed.

use std::collections::BTreeSet;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use storage_conformance::scripted_server::{Reply, Seen, TestServer};
use storage_core::{Backend, Error, ListOptions};
use storage_gcs::GcsConfig;

/// The decoded value of query parameter `name` of `request`.
fn query(request: &Seen, name: &str) -> Option<String> {
    let (_, q) = request.target.split_once('?')?;
    q.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// An object resource as "Objects" (JSON API reference) describes it.
fn object(bucket: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/1"),
        "selfLink": "",
        "mediaLink": "",
        "name": name,
        "bucket": bucket,
        "generation": "1",
        "metageneration": "1",
        "size": "1",
        "contentType": "application/octet-stream",
        "crc32c": "AAAAAA==",
        "timeCreated": "2026-01-01T00:00:00.000Z",
        "updated": "2026-01-01T00:00:00.000Z",
    })
}

/// "Objects: list" (cloud.google.com/storage/docs/json_api/v1/objects/list)
/// over `names`: results in lexicographic order from `startOffset`
/// (inclusive) or after the position a `pageToken` names; with a
/// `delimiter`, names holding it past the `prefix` collapse into one
/// prefix each; "the total number of items and prefixes returned" is at
/// most `maxResults`, and `nextPageToken` is set when more remain.
fn list_as_gcs_documents(names: &BTreeSet<String>, request: &Seen) -> Reply {
    let prefix = query(request, "prefix").unwrap_or_default();
    let delimiter = query(request, "delimiter");
    let start = query(request, "startOffset").unwrap_or_default();
    let token = query(request, "pageToken");
    let max = query(request, "maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000);
    let mut results: Vec<(String, bool)> = Vec::new();
    for name in names {
        if !name.starts_with(&prefix) || name.as_str() < start.as_str() {
            continue;
        }
        let entry = match delimiter.as_deref().and_then(|d| {
            name[prefix.len()..]
                .find(d)
                .map(|i| name[..prefix.len() + i + d.len()].to_owned())
        }) {
            Some(group) => (group, false),
            None => (name.clone(), true),
        };
        if token.as_deref().is_some_and(|t| entry.0.as_str() <= t) {
            continue;
        }
        if results.last() != Some(&entry) {
            results.push(entry);
        }
    }
    let more = results.len() > max;
    results.truncate(max);
    let mut body = serde_json::json!({"kind": "storage#objects"});
    let items: Vec<_> = results
        .iter()
        .filter(|(_, is_object)| *is_object)
        .map(|(name, _)| object("b", name))
        .collect();
    let prefixes: Vec<_> = results
        .iter()
        .filter(|(_, is_object)| !*is_object)
        .map(|(name, _)| name.clone())
        .collect();
    if !items.is_empty() {
        body["items"] = items.into();
    }
    if !prefixes.is_empty() {
        body["prefixes"] = prefixes.into();
    }
    if more && let Some((last, _)) = results.last() {
        body["nextPageToken"] = last.clone().into();
    }
    Reply::status(200)
        .header("content-type", "application/json")
        .body(body.to_string())
}

fn store(server: &TestServer) -> impl std::future::Future<Output = storage_gcs::GcsBackend> {
    let config = GcsConfig::emulator(server.url(), "b").request_timeout(Duration::from_secs(5));
    async move { config.build().await.expect("client") }
}

/// Lists everything with `page_size`, page by page; fails the test rather
/// than looping when the listing does not end within 200 requests.
async fn list_all(
    backend: &storage_gcs::GcsBackend,
    server: &TestServer,
    page_size: usize,
) -> (Vec<String>, Vec<String>) {
    let mut options = ListOptions {
        delimiter: true,
        page_size: Some(page_size),
        ..ListOptions::default()
    };
    let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
    loop {
        let page = tokio::time::timeout(Duration::from_secs(10), backend.list(&options))
            .await
            .expect("a listing page took over 10 s: the client repeats a request")
            .expect("list");
        assert!(
            server.seen().len() < 200,
            "the listing did not end after {} requests",
            server.seen().len()
        );
        objects.extend(page.objects.iter().map(|o| o.key.to_string()));
        prefixes.extend(page.common_prefixes);
        match page.continuation {
            Some(next) => options.continuation = Some(next),
            None => return (objects, prefixes),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delimiter_listing_ends_when_gcs_counts_prefixes_against_max_results() {
    // One object, then many groups: a page can hold an object already
    // returned plus prefixes only, which a bound from objects alone never
    // moves past.
    let mut names: BTreeSet<String> = ["a", "z"].iter().map(|s| s.to_string()).collect();
    for group in ["b", "c", "d", "e", "f", "g"] {
        names.insert(format!("{group}/1"));
        names.insert(format!("{group}/2"));
    }
    let server = {
        let names = names.clone();
        TestServer::start(move |request| {
            if request.method == "GET" && request.path().ends_with("/b/b/o") {
                list_as_gcs_documents(&names, request)
            } else {
                Reply::status(500)
            }
        })
    };
    let backend = store(&server).await;
    for page_size in [1, 2, 3] {
        let (objects, prefixes) = list_all(&backend, &server, page_size).await;
        assert_eq!(objects, ["a", "z"], "page size {page_size}");
        assert_eq!(
            prefixes,
            ["b/", "c/", "d/", "e/", "f/", "g/"],
            "page size {page_size}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_page_with_nothing_new_is_an_error_not_a_loop() {
    // A server that always answers the same truncated page.
    let server = TestServer::start(|_| {
        Reply::status(200)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "kind": "storage#objects",
                    "items": [object("b", "a")],
                    "nextPageToken": "a",
                })
                .to_string(),
            )
    });
    let backend = store(&server).await;
    let options = ListOptions {
        start_after: Some("a".to_owned()),
        ..ListOptions::default()
    };
    let result = tokio::time::timeout(Duration::from_secs(10), backend.list(&options))
        .await
        .expect("the listing repeated its request instead of failing");
    assert!(
        matches!(
            result,
            Err(Error::Backend {
                transient: false,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(server.seen().len(), 1, "{:?}", server.seen());
}
