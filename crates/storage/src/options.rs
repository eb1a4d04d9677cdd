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
    /// # Errors
    /// [`Error::InvalidArgument`] for a name given twice in the query.
    pub(crate) fn new(
        url: &url::Url,
        extra: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut shown = url.clone();
        shown.set_query(None);
        let mut pairs = BTreeMap::new();
        for (name, value) in url.query_pairs() {
            if pairs.insert(name.to_string(), value.to_string()).is_some() {
                return Err(Error::invalid_argument(format!(
                    "option `{name}` is given twice in the query of {shown}"
                )));
            }
        }
        pairs.extend(extra);
        Ok(Options {
            url: shown.to_string(),
            pairs,
        })
    }

    /// The URL without its query.
    pub(crate) fn url(&self) -> &str {
        &self.url
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
