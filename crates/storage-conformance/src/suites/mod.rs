//! The suites of checks, one module each.

pub mod batch;
pub mod cas;
pub mod concurrency;
pub mod conditional;
pub mod core;
pub mod crypto;
pub mod errors;
pub mod list;
pub mod metadata;
pub mod range;
pub mod staging;
pub mod txn;
pub mod watch;

use crate::Check;

/// The names of every suite, in the order they run.
pub const SUITES: [&str; 13] = [
    "core",
    "cas",
    "list",
    "range",
    "conditional",
    "batch",
    "metadata",
    "concurrency",
    "errors",
    "watch",
    "staging",
    "txn",
    "crypto",
];

/// Every check of every suite, in suite order.
pub fn all() -> Vec<Check> {
    [
        core::checks(),
        cas::checks(),
        list::checks(),
        range::checks(),
        conditional::checks(),
        batch::checks(),
        metadata::checks(),
        concurrency::checks(),
        errors::checks(),
        watch::checks(),
        staging::checks(),
        txn::checks(),
        crypto::checks(),
    ]
    .concat()
}
