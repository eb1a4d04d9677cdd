//! Options of a store's URL (its query) and of the caller, taken one by one,
//! so that a name nobody takes is an error rather than silently ignored; and
//! the key prefix of a URL's path. Shared by every backend's `from_url` and
//! by the `storage` facade.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// The serde form of every backend's config: the URL and options its
/// `from_url` takes, for example (JSON)
/// `{"url": "s3://my-bucket/app/", "options": {"region": "eu-west-1"}}`.
/// `S3Config`, `GcsConfig` and `AzureConfig` deserialize from it (through
/// their `from_url`, so what it leaves unset comes from the environment),
/// and the `storage` facade opens it with every layer option.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlForm {
    /// The store's URL, for example `s3://bucket/prefix`.
    pub url: String,
    /// Options by name, as in the URL's query (and winning over it).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Options not yet taken, by name.
#[derive(Debug, Clone, Default)]
pub struct UrlOptions {
    /// The URL without its query, for messages (the query may hold
    /// secrets).
    url: String,
    pairs: BTreeMap<String, String>,
}

impl UrlOptions {
    /// The pairs of `query` (a URL's query, without `?`), then `extra`
    /// (which win over the query); `shown` is the URL without its query,
    /// for messages.
    ///
    /// Query names and values are percent-decoded (RFC 3986 section 2.1)
    /// and nothing else: a `+` stays a `+`, as base64 account keys and
    /// secrets need (unlike `application/x-www-form-urlencoded`, where it
    /// is a space).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name given twice in the query or
    /// twice in `extra`, or a pair that does not decode as UTF-8.
    pub fn new(
        query: Option<&str>,
        shown: &str,
        extra: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut pairs = BTreeMap::new();
        for pair in query.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, value) = (decode(name, shown)?, decode(value, shown)?);
            if pairs.insert(name.clone(), value).is_some() {
                return Err(Error::invalid_argument(format!(
                    "option `{name}` is given twice in the query of {shown}"
                )));
            }
        }
        let mut given = std::collections::BTreeSet::new();
        for (name, value) in extra {
            if !given.insert(name.clone()) {
                return Err(Error::invalid_argument(format!(
                    "option `{name}` is given twice for {shown}"
                )));
            }
            pairs.insert(name, value);
        }
        Ok(UrlOptions {
            url: shown.to_owned(),
            pairs,
        })
    }

    /// The URL without its query.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets option `name` to `value` unless it was given.
    pub fn set_if_absent(&mut self, name: &str, value: String) {
        self.pairs.entry(name.to_owned()).or_insert(value);
    }

    /// Takes the string option `name`.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.pairs.remove(name)
    }

    /// Takes the boolean option `name`: `true`/`false`, `1`/`0`, `yes`/`no`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the option for any other value.
    pub fn take_bool(&mut self, name: &str) -> Result<Option<bool>> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            _ => Err(Error::invalid_argument(format!(
                "option `{name}` of {}: {value:?} is not a boolean (true or false)",
                self.url
            ))),
        }
    }

    /// The options not taken yet, in name order.
    pub fn remaining(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Fails if any option is left: nobody knows it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first unknown option and the
    /// `known` ones.
    pub fn finish(&self, known: &[&str]) -> Result<()> {
        match self.pairs.keys().next() {
            None => Ok(()),
            Some(name) => Err(Error::invalid_argument(format!(
                "unknown option `{name}` for {} (known: {})",
                self.url,
                known.join(", ")
            ))),
        }
    }
}

/// `url` without its query, for messages (the query may hold secrets).
pub fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(head, _)| head)
}

/// The bucket of a `{expected}://bucket/prefix` URL: its host, given as
/// `host` with the URL's `scheme` (as the `url` crate parsed them).
///
/// # Errors
/// [`Error::InvalidArgument`] naming `shown` when the scheme is not
/// `expected` or there is no host.
pub fn bucket_host<'a>(
    scheme: &str,
    host: Option<&'a str>,
    expected: &str,
    shown: &str,
) -> Result<&'a str> {
    if scheme != expected {
        return Err(Error::invalid_argument(format!(
            "{shown} is not an {expected}:// URL"
        )));
    }
    match host {
        Some(host) if !host.is_empty() => Ok(host),
        _ => Err(Error::invalid_argument(format!(
            "{shown} names no bucket (expected {expected}://bucket/prefix)"
        ))),
    }
}

/// A URL's path (as the `url` crate returns it, percent-encoded) as a key
/// prefix: without its leading `/`, percent-decoded, ending with `/` unless
/// empty, so `s3://b/logs` holds `logs/a`, never `logsa`.
///
/// # Errors
/// [`Error::InvalidArgument`] when the decoded path is not UTF-8.
pub fn path_prefix(path: &str, shown: &str) -> Result<String> {
    let path = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| {
            Error::invalid_argument(format!(
                "the path of {shown} holds a percent-encoded sequence that is not UTF-8"
            ))
        })?;
    Ok(if path.is_empty() || path.ends_with('/') {
        path.into_owned()
    } else {
        format!("{path}/")
    })
}

/// `text` percent-decoded as UTF-8.
fn decode(text: &str, url: &str) -> Result<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| {
            Error::invalid_argument(format!(
                "the query of {url} holds a percent-encoded sequence that is not UTF-8"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plus_in_a_value_stays_a_plus() {
        let mut parsed =
            UrlOptions::new(Some("access_key=ab+cd%2Fef=="), "az://a/c", []).expect("options");
        assert_eq!(parsed.take("access_key").as_deref(), Some("ab+cd/ef=="));
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let twice = [("retry", "true"), ("retry", "false")].map(|(k, v)| (k.into(), v.into()));
        assert!(matches!(
            UrlOptions::new(None, "memory://", twice),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            UrlOptions::new(Some("a=1&a=2"), "memory://", []),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn a_path_becomes_a_decoded_prefix_with_a_slash() {
        assert_eq!(
            path_prefix("/my%20logs", "s3://b").expect("prefix"),
            "my logs/"
        );
        assert_eq!(path_prefix("/", "s3://b").expect("prefix"), "");
        assert_eq!(path_prefix("/a/b/", "s3://b").expect("prefix"), "a/b/");
    }
}
