//! The options of [`open_with`](crate::open_with): a URL's query pairs and
//! the caller's pairs, taken one by one so that a name nobody takes is an
//! error rather than silently ignored.

use std::collections::BTreeMap;

use storage_core::{Error, Result};

/// Options not yet taken, by name.
#[derive(Debug)]
pub(crate) struct Options {
    /// The URL without its query, for messages.
    url: String,
    pairs: BTreeMap<String, String>,
}

impl Options {
    /// The query pairs of `url`, then `extra` (which win over the query).
    ///
    /// Query values are percent-decoded (RFC 3986 section 2.1) and nothing
    /// else: a `+` stays a `+`, as base64 account keys and secrets need
    /// (unlike `application/x-www-form-urlencoded`, where it is a space).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name given twice in the query or
    /// twice in `extra`, or a pair that does not decode as UTF-8.
    pub(crate) fn new(
        url: &url::Url,
        extra: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut shown = url.clone();
        shown.set_query(None);
        let shown = shown.to_string();
        let mut pairs = BTreeMap::new();
        for pair in url.query().unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, value) = (decode(name, &shown)?, decode(value, &shown)?);
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
                    "option `{name}` is given twice to open_with for {shown}"
                )));
            }
            pairs.insert(name, value);
        }
        Ok(Options { url: shown, pairs })
    }

    /// The URL without its query.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Sets option `name` to `value` unless it was given.
    pub(crate) fn set_if_absent(&mut self, name: &str, value: String) {
        self.pairs.entry(name.to_owned()).or_insert(value);
    }

    /// Takes the string option `name`.
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.pairs.remove(name)
    }

    /// Takes the boolean option `name`: `true`/`false`, `1`/`0`, `yes`/`no`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the option for any other value.
    pub(crate) fn take_bool(&mut self, name: &str) -> Result<Option<bool>> {
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

    /// Fails if any option is left: nobody knows it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first unknown option and the
    /// ones this URL's scheme knows.
    pub(crate) fn finish(&self, known: &[&str]) -> Result<()> {
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

    fn options(url: &str) -> Result<Options> {
        Options::new(&url::Url::parse(url).expect("url"), [])
    }

    #[test]
    fn a_plus_in_a_value_stays_a_plus() {
        let mut parsed = options("az://a/c?access_key=ab+cd%2Fef==").expect("options");
        assert_eq!(parsed.take("access_key").as_deref(), Some("ab+cd/ef=="));
    }

    #[test]
    fn the_url_in_messages_has_no_query() {
        let parsed = options("s3://b/p?secret_access_key=s3cr3t").expect("options");
        assert_eq!(parsed.url(), "s3://b/p");
    }

    #[test]
    fn a_name_given_twice_to_open_with_is_refused() {
        let url = url::Url::parse("memory://").expect("url");
        let twice = [("retry", "true"), ("retry", "false")].map(|(k, v)| (k.into(), v.into()));
        assert!(matches!(
            Options::new(&url, twice),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
