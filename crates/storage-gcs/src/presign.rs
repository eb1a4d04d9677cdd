//! V4 signed URLs of `GcsBackend`.

use std::time::Duration;

use gcloud_storage::sign::{SignedURLMethod, SignedURLOptions};
use storage_core::{Backend, Error, Key, PresignMethod, Result};

use crate::backend::GcsBackend;

impl GcsBackend {
    /// The V4 signed URL of [`Backend::presign`] (GCS: "V4 signing
    /// process with Cloud Storage tools"), at most 7 days; it names
    /// `storage.googleapis.com`.
    pub(crate) async fn signed_url(
        &self,
        key: &Key,
        method: PresignMethod,
        expires_in: Duration,
    ) -> Result<String> {
        self.check_name(key)?;
        let method = match method {
            PresignMethod::Get => SignedURLMethod::GET,
            PresignMethod::Put => SignedURLMethod::PUT,
        };
        if !self.can_sign() || !self.auth().await?.can_sign {
            return Err(Error::Unsupported {
                operation: "signed URLs without a service account key",
                backend: self.name().to_owned(),
            });
        }
        if expires_in > Duration::from_secs(7 * 24 * 3600) || expires_in.is_zero() {
            return Err(Error::invalid_argument(
                "a signed URL expires after 1 second to 7 days",
            ));
        }
        let options = SignedURLOptions {
            method,
            expires: expires_in,
            ..Default::default()
        };
        self.client()
            .await?
            .signed_url(self.bucket(), &self.full_name(key), None, None, options)
            .await
            .map_err(|e| Error::invalid_argument(format!("signing a URL for {key}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GcsConfig;

    #[tokio::test]
    async fn signed_urls_need_a_service_account_key() {
        let store = GcsConfig::emulator("http://127.0.0.1:1", "b")
            .build()
            .expect("config");
        let key = Key::new("k").expect("key");
        assert!(!store.capabilities().presigned_urls);
        assert!(matches!(
            store
                .presign(PresignMethod::Get, &key, Duration::from_secs(60))
                .await,
            Err(Error::Unsupported { .. })
        ));
    }
}
