//! Exports `Instrumented`'s metrics in the Prometheus text format.
//!
//! `cargo run -p storage --features instrument --example prometheus` prints
//! the exposition a scrape of `/metrics` would return. A service serves the
//! same text from its own HTTP endpoint (or enables the exporter's
//! `http-listener` feature and calls `PrometheusBuilder::install`).

use metrics_exporter_prometheus::PrometheusBuilder;
use storage::BackendExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let store = storage::open("memory://?instrument=true").await?;
    store.put_bytes("reports/1.csv", "a,b\n1,2\n").await?;
    let _ = store.get_bytes("reports/1.csv").await?;
    let _ = store.get_bytes("reports/missing.csv").await; // counted as not_found
    println!("{}", prometheus.render());
    Ok(())
}
