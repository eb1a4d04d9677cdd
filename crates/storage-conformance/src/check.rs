//! What a check is, what it needs from a backend, and the assertions checks use.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use storage_core::{Backend, Capabilities, Error, Locality};

/// Why a check failed: a sentence naming the rule and what was observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(format!("unexpected error: {e}"))
    }
}

/// The outcome of running one check's body.
pub type CheckResult = Result<(), Failure>;

/// The body of a check: given a fresh backend, assert one rule.
pub type CheckFn = fn(Arc<dyn Backend>) -> BoxFuture<'static, CheckResult>;

/// A capability a check needs; a backend without it reports the check as
/// unsupported instead of running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires {
    /// [`Capabilities::conditional_put`].
    ConditionalPut,
    /// [`Capabilities::conditional_delete`].
    ConditionalDelete,
    /// [`Capabilities::checksums`].
    Checksums,
    /// [`Capabilities::change_feed`].
    ChangeFeed,
    /// Data that does not live in the process's memory, so that the client
    /// side of a transfer can be bounded.
    OutOfProcessStorage,
}

impl Requires {
    /// Why a backend with `caps` cannot run the check, or `None` if it can.
    pub fn missing(self, caps: &Capabilities) -> Option<&'static str> {
        let (has, reason) = match self {
            Requires::ConditionalPut => (caps.conditional_put, "no conditional put"),
            Requires::ConditionalDelete => (caps.conditional_delete, "no conditional delete"),
            Requires::Checksums => (caps.checksums, "does not record SHA-256 checksums"),
            Requires::ChangeFeed => (caps.change_feed, "has no change feed"),
            Requires::OutOfProcessStorage => (
                caps.locality != Locality::Memory,
                "keeps objects in process memory, so a transfer cannot be bounded",
            ),
        };
        (!has).then_some(reason)
    }
}

/// One named check of the contract.
#[derive(Clone, Copy)]
pub struct Check {
    /// The suite it belongs to, for example `"cas"`.
    pub suite: &'static str,
    /// Its name, unique in the suite, saying the rule it asserts.
    pub name: &'static str,
    /// Capabilities it needs.
    pub requires: &'static [Requires],
    /// Its body.
    pub run: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Check({}/{})", self.suite, self.name)
    }
}

impl Check {
    /// Why a backend with `caps` cannot run this check, if it cannot.
    pub fn unsupported_reason(&self, caps: &Capabilities) -> Option<&'static str> {
        self.requires.iter().find_map(|r| r.missing(caps))
    }
}

/// Builds a [`Check`] from an `async fn(Arc<dyn Backend>) -> CheckResult`.
#[macro_export]
#[doc(hidden)]
macro_rules! check {
    ($suite:expr, $name:ident) => {
        $crate::check!($suite, $name, [])
    };
    ($suite:expr, $name:ident, [$($req:ident),*]) => {
        $crate::Check {
            suite: $suite,
            name: stringify!($name),
            requires: &[$($crate::Requires::$req),*],
            run: |backend| Box::pin($name(backend)),
        }
    };
}

/// Fails the check with a formatted message unless the condition holds.
#[macro_export]
#[doc(hidden)]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::Failure(format!($($msg)+)));
        }
    };
}

/// Fails the check unless the two values are equal, naming what was compared.
#[macro_export]
#[doc(hidden)]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $what:expr) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err($crate::Failure(format!(
                        "{}: expected {:?}, got {:?}",
                        $what, r, l
                    )));
                }
            }
        }
    };
}

/// Fails the check unless the result is an error matching the pattern;
/// evaluates to the error.
#[macro_export]
#[doc(hidden)]
macro_rules! expect_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err(e @ $pattern) => e,
            Err(other) => {
                return Err($crate::Failure(format!(
                    "expected {}, got error: {other}",
                    stringify!($pattern)
                )))
            }
            Ok(value) => {
                return Err($crate::Failure(format!(
                    "expected {}, got success: {value:?}",
                    stringify!($pattern)
                )))
            }
        }
    };
}
