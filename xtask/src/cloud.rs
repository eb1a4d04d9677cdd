//! The cloud backends' factories for `cargo xtask conformance`: the shared
//! ones of `storage_conformance::cloud`, which the crates' own suite tests
//! use too. Built only with xtask's `full` feature.

use storage_conformance::BackendFactory;
use storage_conformance::cloud::{AzureFactory, GcsFactory, S3Factory, S3Server};

pub use storage_conformance::cloud::when_ready;

/// The factory of the cloud backend `name` (`s3`, `s3-moto`, `azure` or
/// `gcs`), its server started; `retried` as in
/// [`crate::backends::factory`].
pub fn factory(name: &str, retried: bool) -> anyhow::Result<Box<dyn BackendFactory>> {
    Ok(match name {
        "s3" => {
            Box::new(S3Factory::start(S3Server::SeaweedFs, !retried).map_err(anyhow::Error::msg)?)
        }
        "s3-moto" => {
            Box::new(S3Factory::start(S3Server::Moto, !retried).map_err(anyhow::Error::msg)?)
        }
        "azure" => Box::new(AzureFactory::start().map_err(anyhow::Error::msg)?),
        "gcs" => Box::new(GcsFactory::start().map_err(anyhow::Error::msg)?),
        other => anyhow::bail!("{other:?} is not a cloud backend"),
    })
}
