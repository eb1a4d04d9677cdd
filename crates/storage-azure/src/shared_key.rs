//! Shared Key authorization: every request signed with the account key in
//! its `Authorization` header.
//!
//! Format (Azure Storage REST reference, "Authorize with Shared Key",
//! version 2015-02-21 and later): `Authorization: SharedKey
//! account:base64(HMAC-SHA256(key, string-to-sign))`, where the
//! string-to-sign is
//!
//! ```text
//! VERB \n Content-Encoding \n Content-Language \n Content-Length (empty for 0) \n
//! Content-MD5 \n Content-Type \n Date \n If-Modified-Since \n If-Match \n
//! If-None-Match \n If-Unmodified-Since \n Range \n
//! CanonicalizedHeaders   every x-ms-* header, lower-case, sorted, "name:value\n"
//! CanonicalizedResource  "/account" + encoded URL path, then for each query
//!                        parameter sorted by lower-case name "\nname:v1,v2"
//! ```
//!
//! The request time travels as `x-ms-date` (so `Date` is empty).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use time::OffsetDateTime;

use crate::sas::AccountKey;

/// A per-try pipeline policy that signs each request with Shared Key.
#[derive(Debug)]
pub(crate) struct SharedKeyPolicy {
    key: AccountKey,
}

impl SharedKeyPolicy {
    pub(crate) fn new(key: AccountKey) -> Self {
        SharedKeyPolicy { key }
    }
}

/// The string-to-sign of `request` (whose `x-ms-date` is already set).
pub(crate) fn string_to_sign(account: &str, request: &Request) -> String {
    let headers = request.headers();
    let header = |name: &str| crate::core::header(headers, name).unwrap_or("");
    let content_length = match header("content-length") {
        "" | "0" => match request.body().len() {
            Some(len) if len > 0 => len.to_string(),
            _ => String::new(),
        },
        len => len.to_owned(),
    };
    let mut out = format!(
        "{}\n{}\n{}\n{content_length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        request.method().as_ref(),
        header("content-encoding"),
        header("content-language"),
        header("content-md5"),
        header("content-type"),
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    );
    let mut ms: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ms-"))
        .map(|(name, value)| (name.as_str(), value.as_str().trim()))
        .collect();
    ms.sort_unstable();
    for (name, value) in ms {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    let url = request.url();
    out.push('/');
    out.push_str(account);
    out.push_str(url.path());
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in url.query_pairs() {
        query
            .entry(name.to_lowercase())
            .or_default()
            .push(value.into_owned());
    }
    for (name, mut values) in query {
        values.sort();
        out.push('\n');
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

#[allow(elided_lifetimes_in_paths)] // the trait's signature, from async_trait
#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let now = azure_core::time::to_rfc7231(&OffsetDateTime::now_utc());
        request.insert_header("x-ms-date", now);
        let signature = self.key.sign(&string_to_sign(&self.key.account, request));
        request.insert_header(
            "authorization",
            format!("SharedKey {}:{signature}", self.key.account),
        );
        crate::sas::send_next(ctx, request, next).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::{Method, Url};

    #[test]
    fn the_string_to_sign_follows_the_documented_layout() {
        let url = Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/box/a%20b/c?comp=block&blockid=QUJD&Timeout=5",
        )
        .expect("url");
        let mut request = Request::new(url, Method::Put);
        request.insert_header("x-ms-version", "2026-04-06");
        request.insert_header("x-ms-date", "Sun, 22 Nov 2026 03:00:00 GMT");
        request.insert_header("content-length", "3");
        request.insert_header("if-match", "\"0x1\"");
        assert_eq!(
            string_to_sign("devstoreaccount1", &request),
            "PUT\n\n\n3\n\n\n\n\n\"0x1\"\n\n\n\n\
             x-ms-date:Sun, 22 Nov 2026 03:00:00 GMT\nx-ms-version:2026-04-06\n\
             /devstoreaccount1/devstoreaccount1/box/a%20b/c\nblockid:QUJD\ncomp:block\ntimeout:5"
        );
    }

    /// "Authorize with Shared Key", Shared Key format for 2009-09-19 and
    /// later, constructing the canonicalized resource string: the resource's
    /// encoded URI path as sent (so a blob named `a/b c` signs as
    /// `a%2Fb%20c`, the form every request of this crate sends), then each
    /// query parameter with its name lower-cased and its name and value
    /// URL-decoded, sorted by name, as `name:value`.
    #[test]
    fn the_canonicalized_resource_keeps_the_encoded_path_and_decodes_the_query() {
        let url = Url::parse(
            "https://myaccount.blob.core.windows.net/mycontainer/a%2Fb%20c%2B%23?restype=container&comp=list&prefix=a%20b%2F&startFrom=x%2By",
        )
        .expect("url");
        let mut request = Request::new(url, Method::Get);
        request.insert_header("x-ms-version", "2026-04-06");
        request.insert_header("x-ms-date", "Sun, 22 Nov 2026 03:00:00 GMT");
        let signed = string_to_sign("myaccount", &request);
        let resource = signed
            .split_once("x-ms-version:2026-04-06\n")
            .map(|(_, r)| r)
            .expect("the canonicalized resource");
        assert_eq!(
            resource,
            "/myaccount/mycontainer/a%2Fb%20c%2B%23\ncomp:list\nprefix:a b/\nrestype:container\nstartfrom:x+y"
        );
    }
}
