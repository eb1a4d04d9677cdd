//! Malformed URLs, unknown schemes and unknown options fail with
//! `InvalidArgument` naming the part that is wrong, before any I/O.

use storage::{Error, open, open_with};

/// The message of the `InvalidArgument` that opening `url` fails with.
async fn refusal(url: &str) -> String {
    match open(url).await {
        Err(Error::InvalidArgument { message }) => message,
        Err(other) => panic!("{url}: expected InvalidArgument, got {other:?}"),
        Ok(backend) => panic!("{url}: opened {backend:?}"),
    }
}

#[tokio::test]
async fn a_url_that_does_not_parse_is_named() {
    let message = refusal("no scheme here").await;
    assert!(message.contains("does not parse"), "{message}");
    assert!(message.contains("no scheme here"), "{message}");
}

#[tokio::test]
async fn an_unknown_scheme_is_named_with_the_known_ones() {
    let message = refusal("ftp://host/path").await;
    assert!(message.contains("unknown scheme `ftp`"), "{message}");
    assert!(message.contains("s3, gs, az"), "{message}");
}

#[tokio::test]
async fn an_unknown_option_is_named_with_the_known_ones() {
    let message = refusal("memory://?retires=3").await;
    assert!(message.contains("unknown option `retires`"), "{message}");
    assert!(message.contains("retry"), "{message}");
}

#[tokio::test]
async fn a_malformed_boolean_is_named() {
    let message = refusal("memory://?instrument=maybe").await;
    assert!(message.contains("option `instrument`"), "{message}");
    assert!(message.contains("\"maybe\""), "{message}");
}

#[tokio::test]
async fn an_option_given_twice_in_the_query_is_refused() {
    let message = refusal("memory://?prefix=a/&prefix=b/").await;
    assert!(message.contains("`prefix` is given twice"), "{message}");
}

#[tokio::test]
async fn a_memory_url_with_a_path_is_refused() {
    let message = refusal("memory://host/path").await;
    assert!(message.contains("memory:// takes none"), "{message}");
}

#[tokio::test]
async fn a_bad_namespace_prefix_is_named() {
    let message = refusal("memory://?prefix=no-slash").await;
    assert!(message.contains("\"no-slash\""), "{message}");
}

#[tokio::test]
async fn options_given_to_open_with_win_over_the_query() {
    let store = open_with("memory://?prefix=a/", [("prefix", "b/")])
        .await
        .expect("open");
    assert!(format!("{store:?}").contains("\"b/\""), "{store:?}");
}

#[cfg(not(feature = "s3"))]
#[tokio::test]
async fn a_scheme_whose_feature_is_off_names_the_feature() {
    let message = refusal("s3://bucket/prefix").await;
    assert!(message.contains("`s3` feature"), "{message}");
}

#[cfg(not(feature = "retry"))]
#[tokio::test]
async fn a_layer_whose_feature_is_off_names_the_feature() {
    let message = refusal("memory://?retry=true").await;
    assert!(message.contains("`retry` feature"), "{message}");
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn an_s3_url_without_a_bucket_is_named() {
    let message = refusal("s3:///prefix").await;
    assert!(message.contains("names no bucket"), "{message}");
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn half_a_key_pair_is_refused() {
    let message = refusal("s3://b/?access_key_id=AKIA").await;
    assert!(message.contains("go together"), "{message}");
}

#[cfg(feature = "azure")]
#[tokio::test]
async fn an_azure_url_without_a_container_is_named() {
    let message = refusal("az://account").await;
    assert!(message.contains("names no container"), "{message}");
}

#[cfg(feature = "fs")]
#[tokio::test]
async fn a_file_url_with_a_remote_host_is_refused() {
    let message = refusal("file://server/share/dir").await;
    assert!(message.contains("is local"), "{message}");
}
