//! Where an `AzureConfig` comes from besides its builder: the environment,
//! connection strings, `az://` and `https://` URLs, and serde.

use super::*;

/// Deserializes from [`UrlForm`] (`{"url": "az://…", "options": {…}}`)
/// through [`AzureConfig::from_url`], so the environment fills in what the
/// form leaves out.
impl<'de> serde::Deserialize<'de> for AzureConfig {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let form = UrlForm::deserialize(deserializer)?;
        AzureConfig::from_url(&form.url, form.options).map_err(serde::de::Error::custom)
    }
}

/// Where an Azure URL points.
#[derive(Debug, PartialEq)]
struct UrlParts {
    account: String,
    container: String,
    prefix: String,
    /// The origin of an `https://` URL.
    endpoint: Option<String>,
}

/// Whether `url` is an account's `https://` URL.
fn is_account_url(url: &Url) -> bool {
    matches!(url.scheme(), "https" | "http")
        && url
            .host_str()
            .is_some_and(|host| host.ends_with(".blob.core.windows.net"))
}

/// The query of an account's `https://` URL when it is a SAS token (it
/// holds a `sig` parameter), as given.
fn portal_sas(url: &Url) -> Option<String> {
    let query = url.query()?;
    let is_sas = query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("sig"));
    (is_account_url(url) && is_sas).then(|| query.to_owned())
}

fn url_parts(url: &Url, shown: &str) -> Result<UrlParts> {
    let host = url.host_str().unwrap_or_default();
    let (account, endpoint) = match url.scheme() {
        "az" | "azure" => (host.to_owned(), None),
        "https" | "http" if is_account_url(url) => (
            host.split('.').next().unwrap_or_default().to_owned(),
            Some(url.origin().ascii_serialization()),
        ),
        _ => {
            return Err(Error::invalid_argument(format!(
                "{shown} is neither az://account/container nor https://account.blob.core.windows.net/container"
            )));
        }
    };
    if account.is_empty() {
        return Err(Error::invalid_argument(format!("{shown} names no account")));
    }
    let path = url.path().trim_start_matches('/');
    let (container, prefix) = path.split_once('/').unwrap_or((path, ""));
    if container.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{shown} names no container (expected az://account/container/prefix)"
        )));
    }
    Ok(UrlParts {
        account,
        container: container.to_owned(),
        prefix: path_prefix(prefix, shown)?,
        endpoint,
    })
}

impl AzureConfig {
    /// Settings for `container` from the environment, as the Azure SDKs and
    /// the Azure CLI read it:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `AZURE_STORAGE_CONNECTION_STRING` | a connection string (see [`AzureConfig::from_connection_string`]); when set, the variables below are not read |
    /// | `AZURE_STORAGE_ACCOUNT` (or `AZURE_STORAGE_ACCOUNT_NAME`) | the account name |
    /// | `AZURE_STORAGE_KEY` (or `AZURE_STORAGE_ACCOUNT_KEY`) | the account key |
    /// | `AZURE_STORAGE_SAS_TOKEN` | a SAS token, used when no key is set |
    /// | `AZURE_STORAGE_ENDPOINT` (or `AZURE_STORAGE_BLOB_ENDPOINT`) | the blob endpoint, for clouds other than the public one and emulators |
    ///
    /// With neither key nor SAS token and the `identity` feature on,
    /// workload identity is used where `AZURE_FEDERATED_TOKEN_FILE` is set
    /// and a managed identity otherwise; without the feature, requests go
    /// unauthenticated (public containers only).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no account is named or the
    /// connection string is malformed; [`Error::Unauthenticated`] when an
    /// identity credential cannot be built.
    pub fn from_env(container: impl Into<String>) -> Result<Self> {
        Self::from_vars(container, |name| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        })
    }

    /// [`AzureConfig::from_env`] over a lookup of variables.
    fn from_vars(
        container: impl Into<String>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let container = container.into();
        if let Some(connection) = var("AZURE_STORAGE_CONNECTION_STRING") {
            return Self::from_connection_string(&connection, container);
        }
        let either = |a: &str, b: &str| var(a).or_else(|| var(b));
        let account =
            either("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_NAME").ok_or_else(|| {
                Error::invalid_argument("AZURE_STORAGE_ACCOUNT (or a connection string) is not set")
            })?;
        let mut config = AzureConfig::new(account, container);
        if let Some(endpoint) = either("AZURE_STORAGE_ENDPOINT", "AZURE_STORAGE_BLOB_ENDPOINT") {
            config = config.endpoint(endpoint);
        }
        if let Some(key) = either("AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY") {
            return Ok(config.account_key(key));
        }
        if let Some(sas) = var("AZURE_STORAGE_SAS_TOKEN") {
            return Ok(config.sas_token(sas));
        }
        #[cfg(feature = "identity")]
        let config = match var("AZURE_FEDERATED_TOKEN_FILE") {
            Some(_) => config.workload_identity_credential()?,
            None => config.managed_identity_credential()?,
        };
        Ok(config)
    }

    /// Settings for `container` from an Azure Storage connection string
    /// ("Configure Azure Storage connection strings"): `;`-separated
    /// `Name=value` pairs, of which `AccountName`, `AccountKey`,
    /// `SharedAccessSignature`, `BlobEndpoint`, `DefaultEndpointsProtocol`
    /// and `EndpointSuffix` are read, and `UseDevelopmentStorage=true`
    /// names the emulator (Azurite at `http://127.0.0.1:10000`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a pair without `=`, or when neither
    /// `AccountName` nor a `BlobEndpoint` to take it from is given.
    pub fn from_connection_string(connection: &str, container: impl Into<String>) -> Result<Self> {
        let mut pairs = std::collections::HashMap::new();
        for pair in connection
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                Error::invalid_argument(format!(
                    "connection string: {:?} is not Name=value",
                    pair.split('=').next().unwrap_or_default()
                ))
            })?;
            pairs.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let get = |name: &str| pairs.get(name).cloned();
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let endpoint = format!("http://127.0.0.1:10000/{EMULATOR_ACCOUNT}");
            return Ok(AzureConfig::emulator(endpoint, container));
        }
        let endpoint = get("blobendpoint");
        let account = get("accountname")
            .or_else(|| account_of_endpoint(endpoint.as_deref()?))
            .ok_or_else(|| {
                Error::invalid_argument(
                    "connection string: no AccountName, and no BlobEndpoint that names the account",
                )
            })?;
        let endpoint = endpoint.or_else(|| {
            let protocol = get("defaultendpointsprotocol");
            let suffix = get("endpointsuffix");
            (protocol.is_some() || suffix.is_some()).then(|| {
                format!(
                    "{}://{account}.blob.{}",
                    protocol.as_deref().unwrap_or("https"),
                    suffix.as_deref().unwrap_or("core.windows.net")
                )
            })
        });
        let mut config = AzureConfig::new(account, container);
        if let Some(endpoint) = endpoint {
            config = config.endpoint(endpoint);
        }
        if let Some(key) = get("accountkey") {
            config = config.account_key(key);
        } else if let Some(sas) = get("sharedaccesssignature") {
            config = config.sas_token(sas);
        }
        Ok(config)
    }

    /// Settings from a URL and `options` (the same names, winning over the
    /// query):
    /// - `az://account/container/prefix`, or
    /// - `https://account.blob.core.windows.net/container/prefix` (the
    ///   account is the host's first label, so private endpoints such as
    ///   `acct.privatelink.blob.core.windows.net` work; the URL's origin is
    ///   the endpoint). A query holding `sig` is a SAS token as the portal
    ///   copies it, used whole, not read as options.
    ///
    /// The path after the container, percent-decoded, is the key prefix (a
    /// `/` is added if it does not end with one). The options are
    /// [`URL_OPTIONS`]: `access_key`, `sas_token` (they exclude each
    /// other), `endpoint` (for example
    /// `http://127.0.0.1:10000/devstoreaccount1`), `use_emulator` (`true`:
    /// Azurite's well-known key, and its endpoint
    /// `http://127.0.0.1:10000/{account}` unless one is given). Without a
    /// key or token: [`AzureConfig::from_env`]'s credential (and endpoint)
    /// when the environment names the URL's account (a connection string,
    /// or `AZURE_STORAGE_ACCOUNT`); otherwise `AZURE_STORAGE_KEY`, then
    /// `AZURE_STORAGE_SAS_TOKEN`, for the URL's account.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the part that is wrong: a URL that
    /// does not parse, another scheme or host, no account or container, an
    /// unknown option (with the known ones), both a key and a token.
    /// Messages never show the query.
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let shown = without_query(url);
        let mut parsed = Url::parse(url)
            .map_err(|e| Error::invalid_argument(format!("URL {shown:?} does not parse: {e}")))?;
        let parts = url_parts(&parsed, shown)?;
        let portal_sas = portal_sas(&parsed);
        if portal_sas.is_some() {
            parsed.set_query(None);
        }
        let extra = options.into_iter().map(|(k, v)| (k.into(), v.into()));
        let mut options = UrlOptions::new(parsed.query(), shown, extra)?;
        if let Some(sas) = portal_sas {
            options.set_if_absent("sas_token", sas);
        }
        let emulator = options.take_bool("use_emulator")? == Some(true);
        let endpoint = options
            .take("endpoint")
            .or(parts.endpoint)
            .or_else(|| emulator.then(|| format!("http://127.0.0.1:10000/{}", parts.account)));
        let mut config = Self::new(parts.account, parts.container).prefix(parts.prefix);
        if let Some(endpoint) = endpoint {
            config = config.endpoint(endpoint);
        }
        let key = options
            .take("access_key")
            .or_else(|| emulator.then(|| EMULATOR_KEY.to_owned()));
        match (key, options.take("sas_token")) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_argument(format!(
                    "{shown}: `access_key` (or `use_emulator`) and `sas_token` exclude each other"
                )));
            }
            (Some(key), None) => config = config.account_key(key),
            (None, Some(sas)) => config = config.sas_token(sas),
            (None, None) => match Self::from_env(config.container.clone()) {
                // The environment names this account (`AZURE_STORAGE_ACCOUNT`
                // or a connection string): its credential, and its endpoint
                // unless the URL gave one.
                Ok(env) if env.account == config.account => {
                    config.credential = env.credential;
                    if config.endpoint.is_none() {
                        config.endpoint = env.endpoint;
                    }
                }
                // It names another account, or none: a bare key or token
                // is taken for the URL's account.
                _ => {
                    let var = |name| {
                        std::env::var(name)
                            .ok()
                            .filter(|v: &String| !v.trim().is_empty())
                    };
                    if let Some(key) = var("AZURE_STORAGE_KEY") {
                        config = config.account_key(key);
                    } else if let Some(sas) = var("AZURE_STORAGE_SAS_TOKEN") {
                        config = config.sas_token(sas);
                    }
                }
            },
        }
        options.finish(&URL_OPTIONS)?;
        Ok(config)
    }

    /// The SAS token an account's `https://` URL carries as its whole
    /// query, as the portal copies it (a query holding `sig`), or `None`
    /// for any other URL: what [`AzureConfig::from_url`] takes as the
    /// token rather than as options.
    pub fn portal_sas(url: &str) -> Option<String> {
        Url::parse(url).ok().as_ref().and_then(portal_sas)
    }
}

/// The account a blob endpoint names: the first path segment of an
/// emulator-style URL (an IP address or `localhost`, as
/// `http://127.0.0.1:10000/devstoreaccount1`), otherwise the first label
/// of a `{account}.blob.…` host; `None` for any other host (a custom
/// domain names no account).
fn account_of_endpoint(endpoint: &str) -> Option<String> {
    let url = Url::parse(endpoint).ok()?;
    let host = url.host_str()?;
    let emulator = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok();
    if emulator {
        return url
            .path_segments()?
            .find(|s| !s.is_empty())
            .map(str::to_owned);
    }
    let (account, rest) = host.split_once('.')?;
    rest.starts_with("blob.").then(|| account.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn account_and_key_come_from_the_cli_variables() {
        let config = AzureConfig::from_vars(
            "c",
            vars(&[
                ("AZURE_STORAGE_ACCOUNT", "acct"),
                ("AZURE_STORAGE_KEY", "a2V5"),
            ]),
        )
        .expect("config");
        assert_eq!(config.account, "acct");
        assert!(
            matches!(config.credential, Some(AzureCredential::AccountKey(ref k)) if k == "a2V5")
        );
        assert_eq!(
            config.container_url().expect("url").as_str(),
            "https://acct.blob.core.windows.net/c"
        );
    }

    #[test]
    fn a_sas_token_is_used_when_no_key_is_set() {
        let config = AzureConfig::from_vars(
            "c",
            vars(&[
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                ("AZURE_STORAGE_SAS_TOKEN", "sv=2026-04-06&sig=x"),
            ]),
        )
        .expect("config");
        assert!(matches!(config.credential, Some(AzureCredential::Sas(_))));
    }

    #[test]
    fn a_connection_string_wins_and_names_the_endpoint() {
        let config = AzureConfig::from_vars(
            "c",
            vars(&[
                (
                    "AZURE_STORAGE_CONNECTION_STRING",
                    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
                ),
                ("AZURE_STORAGE_ACCOUNT", "other"),
            ]),
        )
        .expect("config");
        assert_eq!(config.account, "acct");
        assert_eq!(
            config.container_url().expect("url").as_str(),
            "https://acct.blob.core.chinacloudapi.cn/c"
        );
        assert!(matches!(
            config.credential,
            Some(AzureCredential::AccountKey(_))
        ));
    }

    #[test]
    fn a_blob_endpoint_and_sas_connection_string_names_the_account_from_the_host() {
        let config = AzureConfig::from_connection_string(
            "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2026&sig=a%2Bb=",
            "c",
        )
        .expect("config");
        assert_eq!(config.account, "acct");
        assert!(
            matches!(config.credential, Some(AzureCredential::Sas(ref s)) if s == "sv=2026&sig=a%2Bb=")
        );
        assert_eq!(
            config.container_url().expect("url").as_str(),
            "https://acct.blob.core.windows.net/c"
        );
    }

    #[test]
    fn an_emulator_blob_endpoint_names_the_account_in_its_path() {
        let config = AzureConfig::from_connection_string(
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;SharedAccessSignature=sv=x",
            "c",
        )
        .expect("config");
        assert_eq!(config.account, "devstoreaccount1");
        assert_eq!(
            config.container_url().expect("url").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/c"
        );
        let custom = AzureConfig::from_connection_string(
            "BlobEndpoint=https://files.example.com;SharedAccessSignature=sv=x",
            "c",
        );
        assert!(
            matches!(custom, Err(Error::InvalidArgument { .. })),
            "{custom:?}"
        );
    }

    #[test]
    fn a_protocol_without_a_suffix_keeps_the_public_cloud() {
        let config = AzureConfig::from_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5",
            "c",
        )
        .expect("config");
        assert_eq!(
            config.container_url().expect("url").as_str(),
            "http://acct.blob.core.windows.net/c"
        );
    }

    #[test]
    fn use_development_storage_names_azurite() {
        let config =
            AzureConfig::from_connection_string("UseDevelopmentStorage=true", "c").expect("config");
        assert_eq!(config.account, EMULATOR_ACCOUNT);
        assert_eq!(
            config.container_url().expect("url").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/c"
        );
    }

    #[test]
    fn no_account_is_a_clear_error() {
        let err = AzureConfig::from_vars("c", vars(&[("AZURE_STORAGE_KEY", "a2V5")]));
        assert!(matches!(err, Err(Error::InvalidArgument { .. })), "{err:?}");
        let bad = AzureConfig::from_connection_string("AccountName", "c");
        assert!(matches!(bad, Err(Error::InvalidArgument { .. })), "{bad:?}");
    }

    fn parts(url: &str) -> Result<UrlParts> {
        url_parts(&Url::parse(url).expect("url"), url)
    }

    #[test]
    fn an_az_url_names_account_container_and_prefix() {
        assert_eq!(
            parts("az://acct/box/logs/2026").expect("parts"),
            UrlParts {
                account: "acct".into(),
                container: "box".into(),
                prefix: "logs/2026/".into(),
                endpoint: None,
            }
        );
    }

    #[test]
    fn an_https_url_takes_the_first_label_as_account_and_keeps_the_origin() {
        let got =
            parts("https://acct.privatelink.blob.core.windows.net/box/a%20b/").expect("parts");
        assert_eq!(got.account, "acct");
        assert_eq!(got.container, "box");
        assert_eq!(got.prefix, "a b/");
        assert_eq!(
            got.endpoint.as_deref(),
            Some("https://acct.privatelink.blob.core.windows.net")
        );
    }

    #[test]
    fn a_portal_sas_url_is_read_as_a_token() {
        let url =
            Url::parse("https://acct.blob.core.windows.net/box?sv=2022-11-02&sp=r&sig=abc%2B")
                .expect("url");
        assert_eq!(
            portal_sas(&url).as_deref(),
            Some("sv=2022-11-02&sp=r&sig=abc%2B")
        );
        let plain =
            Url::parse("https://acct.blob.core.windows.net/box?use_emulator=true").expect("url");
        assert_eq!(portal_sas(&plain), None);
    }
}
