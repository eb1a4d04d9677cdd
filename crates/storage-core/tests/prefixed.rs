//! `Prefixed`: the contract holds through the view, and the view is a
//! namespace (it neither sees nor touches keys outside its prefix).

use std::sync::Arc;

use async_trait::async_trait;
use storage_conformance::{
    BackendFactory, Check, Declared, Filter, assert_no_failures, prefix_limitation, run, suites,
};
use storage_core::{Backend, BackendExt, Error, GetOptions, ListOptions, MemoryBackend, Prefixed};

/// Each check's view shares its store with a key outside the prefix and one
/// that merely starts with the prefix's letters: no check may see either.
struct PrefixedMemory;

const PREFIX: &str = "tenant/";

#[async_trait]
impl BackendFactory for PrefixedMemory {
    fn name(&self) -> &str {
        "memory+prefixed"
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let inner = Arc::new(MemoryBackend::new());
        for outside in ["other/k", "tenant-b"] {
            inner
                .put_bytes(outside, "outside")
                .await
                .map_err(|e| e.to_string())?;
        }
        let view = Prefixed::new(inner, PREFIX).map_err(|e| e.to_string())?;
        Ok(Arc::new(view))
    }

    fn limitation(&self, check: &Check) -> Option<Declared> {
        prefix_limitation(PREFIX.len(), check)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_suite_passes_through_a_prefixed_view() {
    assert_no_failures(&run(&PrefixedMemory, &suites::all(), &Filter::default()).await);
}

#[tokio::test]
async fn keys_are_stored_under_the_prefix_and_listed_without_it() {
    let inner = Arc::new(MemoryBackend::new());
    let view = Prefixed::new(inner.clone(), "a/b/").expect("prefix");
    view.put_bytes("x/1", "one").await.expect("put");
    assert_eq!(
        inner.get_bytes("a/b/x/1").await.expect("inner get"),
        "one".as_bytes()
    );
    let page = view
        .list(&ListOptions {
            delimiter: true,
            ..ListOptions::prefix("")
        })
        .await
        .expect("list");
    assert_eq!(page.common_prefixes, vec!["x/".to_owned()]);
    let got = view
        .get(&"x/1".parse().expect("key"), GetOptions::default())
        .await
        .expect("get");
    assert_eq!(got.meta.key.as_str(), "x/1");
}

#[test]
fn a_prefix_must_be_a_key_and_a_slash() {
    for bad in ["a", "/a/", "a//", "a/.staging/", "a\u{1}/"] {
        let made = Prefixed::new(MemoryBackend::new(), bad);
        assert!(
            matches!(made, Err(Error::InvalidArgument { .. })),
            "{bad:?} was accepted"
        );
    }
    assert!(Prefixed::new(MemoryBackend::new(), "").is_ok());
}

#[tokio::test]
async fn a_key_too_long_with_the_prefix_is_refused_before_any_write() {
    let inner = Arc::new(MemoryBackend::new());
    let view = Prefixed::new(inner.clone(), "p/").expect("prefix");
    let key = "k".repeat(1023);
    let put = view.put_bytes(key.as_str(), "x").await;
    assert!(matches!(put, Err(Error::InvalidKey { .. })), "{put:?}");
    assert!(
        inner
            .list(&ListOptions::prefix(""))
            .await
            .expect("list")
            .objects
            .is_empty()
    );
}
