//! Linearizability of histories of single-key register operations (Wing–Gong search with memoization).
//!
//! A [`History`] records operations that tasks ran concurrently on the keys of
//! a backend: who ran them ([`Operation::process`]), when they were invoked
//! and when they returned (instants of one [`Clock`]), what they asked
//! ([`Input`]) and what they were told ([`Output`]). [`History::check`]
//! decides whether the history is linearizable (Herlihy & Wing, 1990): whether
//! every operation can be given one instant between its invocation and its
//! response at which it took effect, such that the operations in that order
//! are a legal run of a register per key.
//!
//! The search is Wing & Gong's (1993): repeatedly pick an operation that may
//! take effect next (one invoked before every pending response), apply it to
//! the model, and backtrack when none fits; with Lowe's memoization (2017) of
//! the pairs (set of linearized operations, model state) already explored, as
//! Porcupine and Knossos do. Linearizability is local, so each key's
//! operations are checked on their own (P-compositionality).
//!
//! # The register model
//! A key holds nothing or one version `(value, ETag)`:
//!
//! | operation | output | legal when | then holds |
//! |---|---|---|---|
//! | get | `Found(v, e)` | it holds `(v, e)` | the same |
//! | get | `NotFound` | it holds nothing | nothing |
//! | put, any mode | `Written(e)` | the mode's condition holds | `(value, e)` |
//! | put `IfNotExists` | `AlreadyExists` | it holds a version | the same |
//! | put `IfMatch(c)` | `PreconditionFailed` | it holds nothing or an ETag ≠ `c` | the same |
//! | delete | `Deleted` | `if_match` is unset or names its ETag | nothing |
//! | delete `if_match: c` | `PreconditionFailed` | it holds nothing or an ETag ≠ `c` | the same |
//!
//! Any other pairing of input and output is illegal. ETags are opaque: the
//! model takes the one a put returned as the new version's ETag.
//!
//! # Unknown outcomes
//! An operation whose answer was an unexpected error ([`Output::Unknown`]: a
//! timeout, a reset connection) may have taken effect or not, at any instant
//! after its invocation, even after its recorded response (the request may
//! still be in flight): the checker treats its response as never coming, as
//! Porcupine and Knossos treat crashed operations. A put that took effect this
//! way writes a version whose ETag nobody saw: the first get that returns
//! the value binds it. An `IfMatch(c)` against such a version matches when
//! some definite output in the key's history pairs its value with `c`, since
//! a task can only know `c` from a get or put that reported it. Writes must
//! therefore carry values unique per write, so that a value names one
//! version. A get with an unknown outcome constrains nothing and is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use storage_core::{ETag, PutMode};

/// A step budget that histories of a few hundred operations on a handful of
/// keys never come near: each search step is one attempt to place an
/// operation, and a history that is linearizable with little overlap needs
/// about one step per operation.
pub const DEFAULT_STEP_BUDGET: u64 = 1_000_000;

/// A logical clock shared by the tasks recording a history: each reading is
/// one more than the previous, so that `a.response < b.invocation` means `a`
/// returned before `b` was invoked.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// A clock whose first reading is 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next instant; take it just before invoking an operation and just
    /// after it returns.
    pub fn now(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// What an operation asked of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Read the whole object.
    Get,
    /// Write `value` under the precondition `mode`.
    Put {
        /// The precondition.
        mode: PutMode,
        /// The content written; unique per write in a history.
        value: Bytes,
    },
    /// Delete the object, only if it has this ETag when `if_match` is set.
    Delete {
        /// The ETag the object must have.
        if_match: Option<ETag>,
    },
}

/// What an operation was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A get read this content and ETag.
    Found {
        /// The content read.
        value: Bytes,
        /// The version's ETag.
        etag: ETag,
    },
    /// A get found no object.
    NotFound,
    /// A put succeeded and returned the new version's ETag.
    Written {
        /// The new version's ETag.
        etag: ETag,
    },
    /// A put with `IfNotExists` found the key present.
    AlreadyExists,
    /// A put or delete with an ETag condition found the key missing or with
    /// another ETag.
    PreconditionFailed,
    /// A delete succeeded.
    Deleted,
    /// Any other answer (an error such as a timeout): the operation may or may
    /// not have taken effect.
    Unknown {
        /// The error, for reports.
        error: String,
    },
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The task that ran it; used only in reports.
    pub process: usize,
    /// The key it ran on.
    pub key: String,
    /// What it asked.
    pub input: Input,
    /// What it was told.
    pub output: Output,
    /// The [`Clock`] reading just before it was invoked.
    pub invocation: u64,
    /// The [`Clock`] reading just after it returned; ignored when the output
    /// is [`Output::Unknown`].
    pub response: u64,
}

/// Concurrent operations on keys, in any order.
#[derive(Debug, Clone, Default)]
pub struct History {
    operations: Vec<Operation>,
}

/// The answer of [`History::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations have a legal linearization.
    Linearizable,
    /// The operations on `key` have none.
    NotLinearizable {
        /// The first key, in byte order, without a linearization.
        key: String,
        /// The longest linearizable prefix found and the operations that
        /// could not be placed after it, one per line.
        explanation: String,
    },
    /// The search on `key` used its whole step budget without an answer.
    BudgetExhausted {
        /// The key being searched.
        key: String,
        /// The budget, in steps.
        steps: u64,
        /// As for [`Verdict::NotLinearizable`], from the search so far.
        explanation: String,
    },
}

impl Verdict {
    /// Whether the history was shown to be linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable { key, explanation } => {
                write!(
                    f,
                    "the operations on {key} are not linearizable: {explanation}"
                )
            }
            Verdict::BudgetExhausted {
                key,
                steps,
                explanation,
            } => write!(
                f,
                "search budget of {steps} steps exhausted on {key}: {explanation}"
            ),
        }
    }
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one operation.
    pub fn push(&mut self, operation: Operation) {
        self.operations.push(operation);
    }

    /// The operations, in the order they were added.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// How many operations have an [`Output::Unknown`] outcome.
    pub fn unknown_outcomes(&self) -> usize {
        self.operations
            .iter()
            .filter(|op| matches!(op.output, Output::Unknown { .. }))
            .count()
    }

    /// Whether the history is linearizable against the register model of the
    /// module docs, searching each key in byte order with at most
    /// `step_budget` steps per key (see [`DEFAULT_STEP_BUDGET`]).
    pub fn check(&self, step_budget: u64) -> Verdict {
        let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
        for op in &self.operations {
            by_key.entry(op.key.as_str()).or_default().push(op);
        }
        for (key, ops) in by_key {
            let register = Register::new(&ops);
            let key = key.to_owned();
            match register.search(step_budget) {
                Search::Linearizable => {}
                Search::Stuck { best } => {
                    let explanation = register.explain(&best);
                    return Verdict::NotLinearizable { key, explanation };
                }
                Search::Exhausted { best } => {
                    let explanation = register.explain(&best);
                    return Verdict::BudgetExhausted {
                        key,
                        steps: step_budget,
                        explanation,
                    };
                }
            }
        }
        Verdict::Linearizable
    }
}

impl FromIterator<Operation> for History {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> Self {
        History {
            operations: iter.into_iter().collect(),
        }
    }
}

impl Extend<Operation> for History {
    fn extend<I: IntoIterator<Item = Operation>>(&mut self, iter: I) {
        self.operations.extend(iter);
    }
}

/// The model state: nothing, or a version as (value id, ETag id if known).
type State = Option<(u32, Option<u32>)>;

/// A put's precondition with the ETag interned.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Overwrite,
    IfNotExists,
    IfMatch(u32),
}

/// An [`Input`] with values and ETags interned.
#[derive(Debug, Clone, Copy)]
enum Call {
    Get,
    Put { mode: Mode, value: u32 },
    Delete { if_match: Option<u32> },
}

/// An [`Output`] with values and ETags interned.
#[derive(Debug, Clone, Copy)]
enum Return {
    Found { value: u32, etag: u32 },
    NotFound,
    Written { etag: u32 },
    AlreadyExists,
    PreconditionFailed,
    Deleted,
    Unknown,
}

/// One operation of a key, ready for the search.
#[derive(Debug)]
struct Step<'a> {
    source: &'a Operation,
    call: Call,
    ret: Return,
    invocation: u64,
    /// `u64::MAX` for an unknown outcome: the response never comes.
    response: u64,
}

/// Dense ids for values or ETags, and back.
#[derive(Debug)]
struct Interner<T> {
    ids: HashMap<T, u32>,
    items: Vec<T>,
}

impl<T: Hash + Eq + Clone> Interner<T> {
    fn new() -> Self {
        Interner {
            ids: HashMap::new(),
            items: Vec::new(),
        }
    }

    fn id(&mut self, item: &T) -> u32 {
        if let Some(&id) = self.ids.get(item) {
            return id;
        }
        let id = self.items.len() as u32;
        self.items.push(item.clone());
        self.ids.insert(item.clone(), id);
        id
    }
}

/// How a search ended; `best` is the longest linearized prefix found, as
/// indices into [`Register::steps`].
#[derive(Debug)]
enum Search {
    Linearizable,
    Stuck { best: Vec<usize> },
    Exhausted { best: Vec<usize> },
}

/// One key's operations and its register model.
#[derive(Debug)]
struct Register<'a> {
    steps: Vec<Step<'a>>,
    /// (value, ETag) pairs reported by definite outputs.
    observed: HashSet<(u32, u32)>,
    values: Interner<Bytes>,
    etags: Interner<ETag>,
}

impl<'a> Register<'a> {
    fn new(ops: &[&'a Operation]) -> Self {
        let mut values = Interner::new();
        let mut etags = Interner::new();
        let mut observed = HashSet::new();
        let mut steps = Vec::with_capacity(ops.len());
        for &op in ops {
            let call = match &op.input {
                Input::Get => Call::Get,
                Input::Put { mode, value } => Call::Put {
                    mode: match mode {
                        PutMode::Overwrite => Mode::Overwrite,
                        PutMode::IfNotExists => Mode::IfNotExists,
                        PutMode::IfMatch(e) => Mode::IfMatch(etags.id(e)),
                    },
                    value: values.id(value),
                },
                Input::Delete { if_match } => Call::Delete {
                    if_match: if_match.as_ref().map(|e| etags.id(e)),
                },
            };
            let ret = match &op.output {
                Output::Found { value, etag } => Return::Found {
                    value: values.id(value),
                    etag: etags.id(etag),
                },
                Output::NotFound => Return::NotFound,
                Output::Written { etag } => Return::Written {
                    etag: etags.id(etag),
                },
                Output::AlreadyExists => Return::AlreadyExists,
                Output::PreconditionFailed => Return::PreconditionFailed,
                Output::Deleted => Return::Deleted,
                Output::Unknown { .. } => Return::Unknown,
            };
            match (call, ret) {
                (Call::Get, Return::Unknown) => continue,
                (_, Return::Found { value, etag })
                | (Call::Put { value, .. }, Return::Written { etag }) => {
                    observed.insert((value, etag));
                }
                _ => {}
            }
            let response = match ret {
                Return::Unknown => u64::MAX,
                _ => op.response,
            };
            steps.push(Step {
                source: op,
                call,
                ret,
                invocation: op.invocation,
                response,
            });
        }
        Register {
            steps,
            observed,
            values,
            etags,
        }
    }

    /// Whether the version held has ETag `etag`.
    fn matches(&self, state: State, etag: u32) -> bool {
        match state {
            None => false,
            Some((_, Some(held))) => held == etag,
            Some((value, None)) => self.observed.contains(&(value, etag)),
        }
    }

    fn admits(&self, mode: Mode, state: State) -> bool {
        match mode {
            Mode::Overwrite => true,
            Mode::IfNotExists => state.is_none(),
            Mode::IfMatch(etag) => self.matches(state, etag),
        }
    }

    /// The state after `step` takes effect in `state`, or `None` if its
    /// output is illegal there (the table of the module docs).
    fn apply(&self, state: State, step: &Step<'_>) -> Option<State> {
        match (step.call, step.ret) {
            (Call::Get, Return::Found { value, etag }) => match state {
                Some((held, known)) if held == value && known.is_none_or(|e| e == etag) => {
                    Some(Some((value, Some(etag))))
                }
                _ => None,
            },
            (Call::Get, Return::NotFound) => state.is_none().then_some(state),
            (Call::Get, Return::Unknown) => Some(state),
            (Call::Put { mode, value }, Return::Written { etag }) => self
                .admits(mode, state)
                .then_some(Some((value, Some(etag)))),
            (Call::Put { mode, value }, Return::Unknown) => Some(if self.admits(mode, state) {
                Some((value, None))
            } else {
                state
            }),
            (
                Call::Put {
                    mode: Mode::IfNotExists,
                    ..
                },
                Return::AlreadyExists,
            ) => state.is_some().then_some(state),
            (
                Call::Put {
                    mode: Mode::IfMatch(etag),
                    ..
                }
                | Call::Delete {
                    if_match: Some(etag),
                },
                Return::PreconditionFailed,
            ) => (!self.matches(state, etag)).then_some(state),
            (Call::Delete { if_match }, Return::Deleted) => if_match
                .is_none_or(|e| self.matches(state, e))
                .then_some(None),
            (Call::Delete { if_match }, Return::Unknown) => {
                Some(if if_match.is_none_or(|e| self.matches(state, e)) {
                    None
                } else {
                    state
                })
            }
            _ => None,
        }
    }

    /// Wing & Gong's search with Lowe's memoization, over a doubly linked
    /// list of invocation and response events in time order.
    fn search(&self, budget: u64) -> Search {
        let n = self.steps.len();
        // Events: (instant, is response, step); invocations sort before
        // responses at equal instants, so such operations overlap.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, step) in self.steps.iter().enumerate() {
            events.push((step.invocation, false, i));
            events.push((step.response, true, i));
        }
        events.sort_unstable();
        let (head, tail) = (2 * n, 2 * n + 1);
        let mut next = vec![tail; 2 * n + 2];
        let mut prev = vec![head; 2 * n + 2];
        let order: Vec<usize> = std::iter::once(head)
            .chain(0..2 * n)
            .chain(std::iter::once(tail))
            .collect();
        for pair in order.windows(2) {
            next[pair[0]] = pair[1];
            prev[pair[1]] = pair[0];
        }
        let mut invocation_node = vec![0; n];
        let mut response_node = vec![0; n];
        for (node, &(_, is_response, i)) in events.iter().enumerate() {
            if is_response {
                response_node[i] = node;
            } else {
                invocation_node[i] = node;
            }
        }
        let unlink = |next: &mut [usize], prev: &mut [usize], node: usize| {
            next[prev[node]] = next[node];
            prev[next[node]] = prev[node];
        };
        let relink = |next: &mut [usize], prev: &mut [usize], node: usize| {
            next[prev[node]] = node;
            prev[next[node]] = node;
        };

        let mut linearized = vec![0u64; n.div_ceil(64)];
        let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
        let mut stack: Vec<(usize, State)> = Vec::new();
        let mut best: Vec<usize> = Vec::new();
        let mut state: State = None;
        let mut node = next[head];
        let mut steps = 0u64;
        while next[head] != tail {
            steps += 1;
            if steps > budget {
                return Search::Exhausted { best };
            }
            let invocation = events
                .get(node)
                .and_then(|&(_, is_response, i)| (!is_response).then_some(i));
            if let Some(i) = invocation {
                if let Some(after) = self.apply(state, &self.steps[i]) {
                    linearized[i / 64] |= 1 << (i % 64);
                    if cache.insert((linearized.clone(), after)) {
                        stack.push((i, state));
                        state = after;
                        unlink(&mut next, &mut prev, invocation_node[i]);
                        unlink(&mut next, &mut prev, response_node[i]);
                        if stack.len() > best.len() {
                            best = stack.iter().map(|&(j, _)| j).collect();
                        }
                        node = next[head];
                        continue;
                    }
                    linearized[i / 64] &= !(1 << (i % 64));
                }
                node = next[node];
            } else {
                // A response comes before any invocation that could take
                // effect: undo the last choice.
                let Some((j, before)) = stack.pop() else {
                    return Search::Stuck { best };
                };
                state = before;
                linearized[j / 64] &= !(1 << (j % 64));
                relink(&mut next, &mut prev, response_node[j]);
                relink(&mut next, &mut prev, invocation_node[j]);
                node = next[invocation_node[j]];
            }
        }
        Search::Linearizable
    }

    /// The longest linearized prefix, the state after it and the operations
    /// that may take effect next but cannot, for a failure message.
    fn explain(&self, best: &[usize]) -> String {
        const SHOWN: usize = 8;
        let mut state = None;
        for &i in best {
            state = self.apply(state, &self.steps[i]).unwrap_or(state);
        }
        let placed: HashSet<usize> = best.iter().copied().collect();
        let rest: Vec<usize> = (0..self.steps.len())
            .filter(|i| !placed.contains(i))
            .collect();
        let horizon = rest
            .iter()
            .map(|&i| self.steps[i].response)
            .min()
            .unwrap_or(u64::MAX);
        let mut out = format!(
            "linearized {} of {} operations",
            best.len(),
            self.steps.len()
        );
        if !best.is_empty() {
            out.push_str(", ending with:");
            for &i in &best[best.len().saturating_sub(SHOWN)..] {
                out.push_str(&format!("\n  {}", self.steps[i].source));
            }
        }
        out.push_str(&format!(
            "\nthen the key holds {}; none of the operations that may take effect next can:",
            self.describe(state)
        ));
        for &i in rest
            .iter()
            .filter(|&&i| self.steps[i].invocation <= horizon)
            .take(SHOWN)
        {
            let step = &self.steps[i];
            let why = match self.apply(state, step) {
                None => "impossible in that state",
                Some(_) => "possible, but no linearization of the rest follows",
            };
            out.push_str(&format!("\n  {} ({why})", step.source));
        }
        out
    }

    fn describe(&self, state: State) -> String {
        let Some((value, etag)) = state else {
            return "nothing".to_owned();
        };
        let value = self
            .values
            .items
            .get(value as usize)
            .map_or_else(String::new, show);
        match etag.and_then(|e| self.etags.items.get(e as usize)) {
            Some(etag) => format!("{value} with ETag {etag}"),
            None => format!("{value} with an ETag not yet observed"),
        }
    }
}

/// Content as a short quoted string.
fn show(value: &Bytes) -> String {
    let text = String::from_utf8_lossy(value);
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Get => f.write_str("get"),
            Input::Put { mode, value } => match mode {
                PutMode::Overwrite => write!(f, "put {}", show(value)),
                PutMode::IfNotExists => write!(f, "put if-not-exists {}", show(value)),
                PutMode::IfMatch(e) => write!(f, "put if-match {e} {}", show(value)),
            },
            Input::Delete { if_match: None } => f.write_str("delete"),
            Input::Delete { if_match: Some(e) } => write!(f, "delete if-match {e}"),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Found { value, etag } => write!(f, "found {} with ETag {etag}", show(value)),
            Output::NotFound => f.write_str("not found"),
            Output::Written { etag } => write!(f, "written with ETag {etag}"),
            Output::AlreadyExists => f.write_str("already exists"),
            Output::PreconditionFailed => f.write_str("precondition failed"),
            Output::Deleted => f.write_str("deleted"),
            Output::Unknown { error } => write!(f, "unknown outcome ({error})"),
        }
    }
}

impl fmt::Display for Operation {
    /// For example `process 2: get → not found [invoked 40, returned 47]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "process {}: {} → {} [invoked {}, ",
            self.process, self.input, self.output, self.invocation
        )?;
        match self.output {
            Output::Unknown { .. } => f.write_str("no definite response]"),
            _ => write!(f, "returned {}]", self.response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: usize, span: (u64, u64), input: Input, output: Output) -> Operation {
        Operation {
            process,
            key: "k".to_owned(),
            input,
            output,
            invocation: span.0,
            response: span.1,
        }
    }

    fn put(mode: PutMode, value: &'static str) -> Input {
        Input::Put {
            mode,
            value: Bytes::from(value),
        }
    }

    fn written(etag: &str) -> Output {
        Output::Written {
            etag: ETag::new(etag),
        }
    }

    fn found(value: &'static str, etag: &str) -> Output {
        Output::Found {
            value: Bytes::from(value),
            etag: ETag::new(etag),
        }
    }

    fn unknown() -> Output {
        Output::Unknown {
            error: "timed out".to_owned(),
        }
    }

    fn if_match(etag: &str) -> PutMode {
        PutMode::IfMatch(ETag::new(etag))
    }

    fn verdict(ops: Vec<Operation>) -> Verdict {
        History::from_iter(ops).check(DEFAULT_STEP_BUDGET)
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::IfNotExists, "a"), written("1")),
            op(1, (2, 3), Input::Get, found("a", "1")),
            op(0, (4, 5), put(if_match("1"), "b"), written("2")),
            op(1, (6, 7), Input::Delete { if_match: None }, Output::Deleted),
            op(0, (8, 9), Input::Get, Output::NotFound),
        ]);
        assert!(v.is_linearizable(), "{v}");
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_rejected() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(0, (2, 3), put(PutMode::Overwrite, "b"), written("2")),
            op(1, (4, 5), Input::Get, found("a", "1")),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v}");
    }

    #[test]
    fn a_read_overlapping_a_write_may_see_the_old_version() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(0, (2, 5), put(PutMode::Overwrite, "b"), written("2")),
            op(1, (3, 4), Input::Get, found("a", "1")),
        ]);
        assert!(v.is_linearizable(), "{v}");
    }

    #[test]
    fn a_read_overlapping_a_write_may_see_the_new_version() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(0, (2, 5), put(PutMode::Overwrite, "b"), written("2")),
            op(1, (3, 4), Input::Get, found("b", "2")),
        ]);
        assert!(v.is_linearizable(), "{v}");
    }

    #[test]
    fn two_successful_creates_of_one_key_are_rejected() {
        let v = verdict(vec![
            op(0, (0, 3), put(PutMode::IfNotExists, "a"), written("1")),
            op(1, (1, 2), put(PutMode::IfNotExists, "b"), written("2")),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v}");
    }

    #[test]
    fn compare_and_swap_on_a_superseded_etag_is_rejected() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(1, (2, 3), put(PutMode::Overwrite, "b"), written("2")),
            op(0, (4, 5), put(if_match("1"), "c"), written("3")),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v}");
    }

    #[test]
    fn a_precondition_failure_explained_only_by_a_later_write_is_rejected() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(
                1,
                (2, 3),
                put(if_match("1"), "c"),
                Output::PreconditionFailed,
            ),
            op(0, (4, 5), put(PutMode::Overwrite, "b"), written("2")),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v}");
    }

    #[test]
    fn an_unknown_outcome_put_may_have_taken_effect() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(0, (2, 3), put(PutMode::Overwrite, "b"), unknown()),
            op(1, (4, 5), Input::Get, found("b", "7")),
            op(1, (6, 7), put(if_match("7"), "c"), written("8")),
        ]);
        assert!(v.is_linearizable(), "{v}");
    }

    #[test]
    fn an_unknown_outcome_put_may_not_have_taken_effect() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(0, (2, 3), put(PutMode::Overwrite, "b"), unknown()),
            op(1, (4, 5), Input::Get, found("a", "1")),
        ]);
        assert!(v.is_linearizable(), "{v}");
    }

    #[test]
    fn an_unknown_outcome_put_cannot_be_undone() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(0, (2, 3), put(PutMode::Overwrite, "b"), unknown()),
            op(1, (4, 5), Input::Get, found("b", "7")),
            op(1, (6, 7), Input::Get, found("a", "1")),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v}");
    }

    #[test]
    fn the_explanation_names_the_operation_that_cannot_be_placed() {
        let v = verdict(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(0, (2, 3), put(PutMode::Overwrite, "b"), written("2")),
            op(1, (4, 5), Input::Get, found("a", "1")),
        ]);
        let text = v.to_string();
        assert!(
            text.contains("linearized 2 of 3")
                && text.contains("process 1: get → found \"a\" with ETag 1"),
            "{text}"
        );
    }

    #[test]
    fn an_exhausted_budget_is_reported() {
        let history = History::from_iter(vec![
            op(0, (0, 1), put(PutMode::Overwrite, "a"), written("1")),
            op(1, (2, 3), Input::Get, found("a", "1")),
        ]);
        let v = history.check(1);
        assert!(matches!(v, Verdict::BudgetExhausted { .. }), "{v}");
    }

    /// Whether some order of `register`'s operations that respects real time
    /// is a legal run, by trying every such order.
    fn brute_force(register: &Register<'_>, placed: &mut Vec<bool>, state: State) -> bool {
        let rest: Vec<usize> = (0..placed.len()).filter(|&i| !placed[i]).collect();
        let horizon = rest.iter().map(|&i| register.steps[i].response).min();
        let Some(horizon) = horizon else {
            return true;
        };
        rest.into_iter()
            .filter(|&i| register.steps[i].invocation <= horizon)
            .any(|i| match register.apply(state, &register.steps[i]) {
                None => false,
                Some(after) => {
                    placed[i] = true;
                    let found = brute_force(register, placed, after);
                    placed[i] = false;
                    found
                }
            })
    }

    /// A random history of six operations on one key, with small sets of
    /// values and ETags so that some histories are linearizable.
    fn random_history(rng: &mut u64) -> Vec<Operation> {
        let mut next = |n: u64| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng % n
        };
        let values = ["v0", "v1", "v2", "v3", "v4", "v5"];
        (0..6)
            .map(|i| {
                let start = next(12);
                let span = (start, start + 1 + next(6));
                let etag = |n: u64| ETag::new(format!("{n}"));
                let (input, output) = match next(4) {
                    0 => {
                        let output = match next(3) {
                            0 => Output::NotFound,
                            _ => {
                                let j = next(6);
                                found(values[j as usize], &format!("{j}"))
                            }
                        };
                        (Input::Get, output)
                    }
                    1 | 2 => {
                        let mode = match next(3) {
                            0 => PutMode::Overwrite,
                            1 => PutMode::IfNotExists,
                            _ => PutMode::IfMatch(etag(next(6))),
                        };
                        let output = match (next(5), &mode) {
                            (0, _) => unknown(),
                            (1, PutMode::IfNotExists) => Output::AlreadyExists,
                            (1, PutMode::IfMatch(_)) => Output::PreconditionFailed,
                            _ => written(&format!("{i}")),
                        };
                        (put(mode, values[i]), output)
                    }
                    _ => {
                        let if_match = (next(2) == 0).then(|| etag(next(6)));
                        let output = match next(4) {
                            0 => unknown(),
                            1 if if_match.is_some() => Output::PreconditionFailed,
                            _ => Output::Deleted,
                        };
                        (Input::Delete { if_match }, output)
                    }
                };
                op(i, span, input, output)
            })
            .collect()
    }

    #[test]
    fn the_search_agrees_with_trying_every_order() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut linearizable = 0;
        for round in 0..5000 {
            let ops = random_history(&mut rng);
            let refs: Vec<&Operation> = ops.iter().collect();
            let register = Register::new(&refs);
            let expected = brute_force(&register, &mut vec![false; register.steps.len()], None);
            let verdict = History::from_iter(ops.clone()).check(DEFAULT_STEP_BUDGET);
            assert_eq!(
                verdict.is_linearizable(),
                expected,
                "round {round}: {verdict}\n{ops:#?}"
            );
            linearizable += usize::from(expected);
        }
        println!("{linearizable} of 5000 random histories are linearizable");
    }
}
