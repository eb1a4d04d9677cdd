//! Presigned URLs (SigV4 query signing) and public URLs of `S3Backend`.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use storage_core::{Error, Key, PresignMethod, Result};

use crate::backend::S3Backend;
use crate::error::{Context, from_sdk};

impl S3Backend {
    /// The presigned URL of [`storage_core::Backend::presign`]: SigV4 query signing, at
    /// most 7 days (S3 API reference, "Authenticating Requests: Using Query
    /// Parameters").
    pub(crate) async fn presigned(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        self.check_length(key)?;
        let config = presigning(expires_in)?;
        match method {
            PresignMethod::Get => {
                let request = self
                    .sdk()
                    .await
                    .get_object()
                    .bucket(&self.config.bucket)
                    .key(self.full_key(key))
                    .presigned(config)
                    .await;
                presigned_uri(request, "presign GetObject", self.bucket(), key)
            }
            PresignMethod::Put => {
                let request = self
                    .sdk()
                    .await
                    .put_object()
                    .bucket(&self.config.bucket)
                    .key(self.full_key(key))
                    .presigned(config)
                    .await;
                presigned_uri(request, "presign PutObject", self.bucket(), key)
            }
        }
    }

    /// The public URL of `key` under the configured public base URL, if any.
    pub fn public_url(&self, key: &Key) -> Option<String> {
        let base = self.config.public_base_url.as_deref()?;
        Some(format!(
            "{}/{}",
            base.trim_end_matches('/'),
            self.full_key(key)
        ))
    }
}

/// The presigning settings for an expiry (S3 allows at most 7 days).
fn presigning(expires_in: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(expires_in).map_err(|e| Error::invalid_argument(e.to_string()))
}

/// The URL of a presigned request, or its mapped error.
fn presigned_uri<E>(
    request: std::result::Result<
        aws_sdk_s3::presigning::PresignedRequest,
        aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    >,
    op: &str,
    bucket: &str,
    key: &Key,
) -> Result<String>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    request
        .map(|r| r.uri().to_owned())
        .map_err(|e| from_sdk(e, op, bucket, key.as_str(), Context::Plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::S3Config;

    #[tokio::test]
    async fn public_urls_join_the_base_the_prefix_and_the_key() {
        let store = S3Config::new("bucket")
            .region("us-east-1")
            .credentials("id", "secret", None)
            .prefix("tenant/")
            .public_base_url("https://cdn.example.com/")
            .build()
            .expect("config");
        let key = Key::new("img/logo.png").expect("key");
        assert_eq!(
            store.public_url(&key).as_deref(),
            Some("https://cdn.example.com/tenant/img/logo.png")
        );
    }
}
