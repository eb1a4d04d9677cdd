//! What a check is, what it needs from a backend, and the assertions checks use.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use storage_core::{Backend, Capabilities, Error, Locality};

use crate::Hooks;

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

/// The body of a check: given a fresh backend and the factory's [`Hooks`]
/// for it, assert one rule.
pub type CheckFn = fn(Arc<dyn Backend>, Hooks) -> BoxFuture<'static, CheckResult>;

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
    /// [`Capabilities::unique_etags`].
    UniqueEtags,
    /// [`Capabilities::server_side_copy`].
    ServerSideCopy,
    /// Data that does not live in the process's memory, so that the client
    /// side of a transfer can be bounded.
    OutOfProcessStorage,
    /// No change feed: the check asserts that `watch` answers
    /// [`Error::Unsupported`].
    NoChangeFeed,
    /// No conditional put: the check asserts that a conditional put answers
    /// [`Error::Unsupported`].
    NoConditionalPut,
    /// No conditional delete: the check asserts that a conditional delete
    /// answers [`Error::Unsupported`].
    NoConditionalDelete,
    /// The factory's [`Hooks::tamper`].
    TamperHook,
    /// The factory's [`Hooks::wrong_credentials`].
    WrongCredentialsHook,
    /// The factory's [`Hooks::missing_bucket`].
    MissingBucketHook,
    /// The factory's [`Hooks::reopen`].
    ReopenHook,
    /// The factory's [`Hooks::below`].
    BelowHook,
}

impl Requires {
    /// Why a backend with `caps`, made by a factory offering `hooks`, cannot
    /// run the check, or `None` if it can.
    pub fn missing(self, caps: &Capabilities, hooks: &Hooks) -> Option<&'static str> {
        let (has, reason) = match self {
            Requires::TamperHook => (
                hooks.tamper.is_some(),
                "has no test hook to corrupt stored bytes behind its back",
            ),
            Requires::ReopenHook => (
                hooks.reopen.is_some(),
                "keeps no state of its own to close and reopen (no test hook to reopen it)",
            ),
            Requires::BelowHook => (
                hooks.below.is_some(),
                "is not a layer over a store the suite can read behind its back (no encryption layer under test)",
            ),
            Requires::MissingBucketHook => (
                hooks.missing_bucket.is_some(),
                "has no test hook for a missing bucket or container (or has none)",
            ),
            Requires::WrongCredentialsHook => (
                hooks.wrong_credentials.is_some(),
                "has no test hook for a client with refused credentials (or takes no credentials)",
            ),
            Requires::ConditionalPut => (caps.conditional_put, "no conditional put"),
            Requires::ConditionalDelete => (caps.conditional_delete, "no conditional delete"),
            Requires::Checksums => (caps.checksums, "does not record SHA-256 checksums"),
            Requires::ChangeFeed => (caps.change_feed, "has no change feed"),
            Requires::ServerSideCopy => (caps.server_side_copy, "copies through the client"),
            Requires::UniqueEtags => (
                caps.unique_etags,
                "derives ETags from the content (the same bytes give the same ETag)",
            ),
            Requires::OutOfProcessStorage => (
                caps.locality != Locality::Memory,
                "keeps objects in process memory, so a transfer cannot be bounded",
            ),
            Requires::NoChangeFeed => (
                !caps.change_feed,
                "has a change feed, so the Unsupported answer does not apply",
            ),
            Requires::NoConditionalPut => (
                !caps.conditional_put,
                "has conditional puts, so the Unsupported answer does not apply",
            ),
            Requires::NoConditionalDelete => (
                !caps.conditional_delete,
                "has conditional deletes, so the Unsupported answer does not apply",
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
    /// It measures this process's memory, so the runner runs it before every
    /// other check of the run: in a fresh process, nothing freed by earlier
    /// checks can hide what it measures.
    pub first: bool,
    /// Its body.
    pub run: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Check({}/{})", self.suite, self.name)
    }
}

impl Check {
    /// Whether the check needs one of the factory's [`Hooks`].
    pub fn needs_a_hook(&self) -> bool {
        self.requires.iter().any(|r| {
            matches!(
                r,
                Requires::TamperHook
                    | Requires::WrongCredentialsHook
                    | Requires::MissingBucketHook
                    | Requires::ReopenHook
            )
        })
    }

    /// Why a backend with `caps`, made by a factory offering `hooks`, cannot
    /// run this check, if it cannot.
    pub fn unsupported_reason(&self, caps: &Capabilities, hooks: &Hooks) -> Option<&'static str> {
        self.requires.iter().find_map(|r| r.missing(caps, hooks))
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
            first: false,
            run: |backend, _hooks| Box::pin($name(backend)),
        }
    };
    ($suite:expr, $name:ident, [$($req:ident),*], first) => {
        $crate::Check {
            suite: $suite,
            name: stringify!($name),
            requires: &[$($crate::Requires::$req),*],
            first: true,
            run: |backend, _hooks| Box::pin($name(backend)),
        }
    };
    ($suite:expr, $name:ident, [$($req:ident),*], hooks) => {
        $crate::Check {
            suite: $suite,
            name: stringify!($name),
            requires: &[$($crate::Requires::$req),*],
            first: false,
            run: |backend, hooks| Box::pin($name(backend, hooks)),
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
