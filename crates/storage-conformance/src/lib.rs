//! The storage contract as an executable suite.
//!
//! Each rule of DESIGN section 2 is one or more named async checks, grouped
//! in suites (`core`, `cas`, `list`, `range`, `metadata`, `concurrency`,
//! `errors`). [`run`] takes a [`BackendFactory`] (a fresh, empty backend per
//! check) and a [`Filter`] and returns a [`BackendReport`]; every check is
//! gated by the backend's [`Capabilities`](storage_core::Capabilities), so a
//! check a backend cannot run is reported as unsupported, never as passed.
//!
//! A backend crate proves the contract in one test:
//!
//! ```
//! use std::sync::Arc;
//! use storage_conformance::{BackendFactory, Filter, Status, run, suites};
//! use storage_core::{Backend, MemoryBackend};
//!
//! struct Memory;
//!
//! #[async_trait::async_trait]
//! impl BackendFactory for Memory {
//!     fn name(&self) -> &str { "memory" }
//!     async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
//!         Ok(Arc::new(MemoryBackend::new()))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let filter = Filter { suites: vec!["cas".into()], ..Default::default() };
//! let report = run(&Memory, &suites::all(), &filter).await;
//! assert!(report.checks.iter().all(|c| c.status != Status::Failed));
//! # });
//! ```
#![warn(missing_docs)]

mod check;
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
pub mod cloud;
pub mod fault_proxy;
pub mod faults;
pub mod hooks;
pub mod linearizability;
mod runner;
pub mod scripted_server;
pub mod servers;
pub mod spy;
pub mod suites;
pub mod support;

pub use check::{Check, CheckFn, CheckResult, Failure, Requires};
pub use hooks::Hooks;
pub use runner::{
    BackendFactory, BackendReport, CHECK_TIMEOUT, CheckReport, Declared, Filter, FnFactory, Status,
    Tally, assert_no_failures, prefix_limitation, run,
};
pub use spy::Spy;
