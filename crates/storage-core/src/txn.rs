//! Multi-key transactions over any backend with conditional puts (DESIGN
//! section 2, "Staging and transactions").
//!
//! See [`Txn`] for the protocol and [`reconcile`] for crash recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use crate::staging::{parse_attachment, parse_staged, promote_name};
use crate::{
    Backend, Body, DeleteOptions, ETag, Error, GetOptions, Key, ListOptions, ObjectMeta, PutMode,
    PutOptions, Result, StagedListOptions, TxnId,
};

/// Age past which a lock whose transaction has no decision is taken over,
/// and past which [`reconcile`] may discard an undecided transaction: 5
/// minutes.
pub const LOCK_TTL: Duration = Duration::from_secs(300);

/// First line of a decision record.
const RECORD_HEADER: &str = "storage-txn 1";

/// How long [`reconcile`] keeps the `aborted` decision record of a
/// transaction it (or a lock takeover) aborted: 24 hours. While it exists,
/// the transaction's own commit cannot write its decision, so a commit
/// stalled that long between its last check and its decision still fails
/// cleanly instead of promoting over discarded staged writes.
pub const ABORTED_KEEP: Duration = Duration::from_secs(24 * 3600);

/// The lock of `key`: `K/.staging/.lock`.
fn lock_key(key: &Key) -> Result<Key> {
    crate::raw::stored_key(&format!("{key}/.staging/.lock")).map_err(|_| Error::InvalidKey {
        key: key.to_string(),
        reason: "the key and its lock suffix must fit in 1024 bytes",
    })
}

/// The key a lock name locks, for names ending `/.staging/.lock`.
fn locked_key(name: &str) -> Option<Key> {
    Key::new(name.strip_suffix("/.staging/.lock")?).ok()
}

/// The creation time a [`TxnId::generate`]d id carries, if it has one.
fn txn_time(txn: &TxnId) -> Option<SystemTime> {
    let (millis, _) = txn.as_str().split_once('-')?;
    let millis = u64::from_str_radix(millis, 16).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// How old `txn` is. An id without a time counts as infinitely old; one
/// from the future (another host's clock runs ahead) as new.
fn txn_age(txn: &TxnId) -> Duration {
    match txn_time(txn) {
        Some(created) => SystemTime::now()
            .duration_since(created)
            .unwrap_or(Duration::ZERO),
        None => Duration::MAX,
    }
}

/// A multi-key transaction.
///
/// A [`Txn`] stages its writes (`K/.staging/T`), then [`Txn::commit`]:
///
/// 1. locks every key, in byte order, by creating `K/.staging/.lock`
///    (holding the transaction id) with `IfNotExists`; a key locked by
///    another live transaction fails the commit with [`Error::Locked`]
///    before anything is decided;
/// 2. checks every write's condition against the key's current version;
///    a failed condition aborts the transaction cleanly (locks released,
///    staged writes discarded);
/// 3. writes the decision record `.txn/T` with `IfNotExists`, listing the
///    keys: from here on the transaction happens, whatever fails;
/// 4. promotes every staged write ([`Backend::promote`]) with its
///    condition, rolling forward (overwriting) where a writer outside the
///    transactions changed the key after step 2;
/// 5. releases the locks, then deletes the decision record.
///
/// A process that dies at any step leaves either no decision (nothing
/// happened: [`reconcile`] discards the staged writes and stale locks once
/// they are older than its TTL) or a decision (everything happens:
/// [`reconcile`] promotes what is still staged and cleans up). Transactions
/// are serialized by the locks: of two transactions racing on a key, one
/// fails with [`Error::Locked`] or with the failed condition, never both
/// commit. Conditions are checked against writers outside the
/// transactions only up to the decision.
///
/// A lock older than [`LOCK_TTL`] whose transaction has no decision is
/// taken over, and [`reconcile`] discards such a transaction's staged
/// writes: both first decide the transaction as aborted, by writing its
/// decision record saying `aborted` with `IfNotExists`, so that a commit
/// that stalled meanwhile finds the decision taken and fails with
/// [`Error::Locked`] instead of promoting over what was discarded. A commit
/// also refuses to start when its transaction is older than half the TTL,
/// and to decide when it is older than the TTL. A lock whose transaction
/// is already decided as aborted is taken over at once, whatever its age.
/// Transaction ages come from the time in a generated [`TxnId`]; hosts'
/// clocks must agree to well within [`LOCK_TTL`].
///
/// Known imprecision: a commit that finished but failed to delete a staged
/// copy (a non-atomic promote whose delete failed) leaves that copy to
/// [`reconcile`], which, finding no record, decides the finished
/// transaction as `aborted` before removing it. Nothing is lost (the
/// promotion had happened), but that record, kept for [`ABORTED_KEEP`],
/// misnames the transaction's outcome.
#[derive(Debug)]
pub struct Txn<'a, B: Backend + ?Sized> {
    backend: &'a B,
    id: TxnId,
    /// What is staged, and the condition each promote carries.
    writes: Vec<(Entry, PutMode)>,
}

/// One thing a transaction writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    /// The write of a key, staged at `K/.staging/T`.
    Write(Key),
    /// Attachment `NAME` of key `K`, staged at
    /// `K/.staging/T/attachments/NAME` and promoted to `K/NAME`.
    Attachment(Key, String),
}

impl Entry {
    /// The key the entry writes when the transaction commits.
    fn target(&self) -> Result<Key> {
        match self {
            Entry::Write(key) => Ok(key.clone()),
            Entry::Attachment(key, name) => Key::new(format!("{key}/{name}")),
        }
    }

    /// Where the entry is staged in `txn`.
    fn staged(&self, txn: &TxnId) -> Result<Key> {
        match self {
            Entry::Write(key) => key.staged(txn),
            Entry::Attachment(key, name) => key.staged_attachment(txn, name),
        }
    }

    /// The key whose staged state holds the entry.
    fn owner(&self) -> &Key {
        match self {
            Entry::Write(key) | Entry::Attachment(key, _) => key,
        }
    }

    /// Its line in the decision record: the key, or the key, a tab and
    /// the attachment's name (neither holds control characters).
    fn line(&self) -> String {
        match self {
            Entry::Write(key) => key.to_string(),
            Entry::Attachment(key, name) => format!("{key}\t{name}"),
        }
    }

    fn parse(line: &str) -> Result<Entry> {
        match line.split_once('\t') {
            Some((key, name)) => {
                let key = Key::new(key)?;
                Key::new(name)?;
                Ok(Entry::Attachment(key, name.to_owned()))
            }
            None => Ok(Entry::Write(Key::new(line)?)),
        }
    }

    /// Promotes the staged entry to its target under `mode`.
    async fn promote<B: Backend + ?Sized>(
        &self,
        backend: &B,
        txn: &TxnId,
        mode: PutMode,
    ) -> Result<ObjectMeta> {
        match self {
            Entry::Write(key) => backend.promote(key, txn, mode).await,
            Entry::Attachment(key, name) => {
                let staged = key.staged_attachment(txn, name)?;
                promote_name(backend, &staged, &self.target()?, mode).await
            }
        }
    }
}

/// What a finished [`Txn::commit`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// The keys written, in byte order.
    pub promoted: Vec<Key>,
    /// Keys whose condition no longer held when they were promoted (a
    /// writer outside the transactions changed them after the decision);
    /// they were overwritten, since the decision is final.
    pub rolled_forward: Vec<Key>,
    /// Cleanup steps that failed and are left to [`reconcile`] (the
    /// decision record stays, naming them).
    pub cleanup_failures: Vec<String>,
}

impl<'a, B: Backend + ?Sized> Txn<'a, B> {
    /// A new transaction on `backend` with a fresh id.
    pub fn begin(backend: &'a B) -> Self {
        Txn {
            backend,
            id: TxnId::generate(),
            writes: Vec::new(),
        }
    }

    /// A new transaction with the given id, which must carry its creation
    /// time as [`TxnId::generate`]'s ids do (13 hex digits of milliseconds
    /// since the Unix epoch, `-`, anything): stale-lock takeover and
    /// [`reconcile`] read the time from it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an id without a creation time, or one
    /// older than half of [`LOCK_TTL`] (it could not commit safely).
    pub fn with_id(backend: &'a B, id: TxnId) -> Result<Self> {
        let timed = id
            .as_str()
            .split_once('-')
            .is_some_and(|(millis, _)| millis.len() == 13)
            && txn_time(&id).is_some();
        if !timed || txn_age(&id) > LOCK_TTL / 2 {
            return Err(Error::invalid_argument(format!(
                "transaction id {id} does not carry a recent creation time (as TxnId::generate makes)"
            )));
        }
        Ok(Txn {
            backend,
            id,
            writes: Vec::new(),
        })
    }

    /// The transaction's id.
    pub fn id(&self) -> &TxnId {
        &self.id
    }

    /// Stages `body` as the write of `key`; `options.mode` is the condition
    /// the commit checks and promotes with. Staging a key again replaces
    /// the earlier write.
    ///
    /// # Errors
    /// Those of [`Backend::stage`].
    pub async fn stage(&mut self, key: &Key, body: Body, options: PutOptions) -> Result<()> {
        let mode = options.mode.clone();
        self.backend.stage(key, &self.id, body, options).await?;
        let entry = Entry::Write(key.clone());
        self.writes.retain(|(e, _)| *e != entry);
        self.writes.push((entry, mode));
        Ok(())
    }

    /// Stages `body` as attachment `name` of `key`, stored at
    /// `K/.staging/T/attachments/NAME` until the commit promotes it to
    /// `K/NAME` (overwriting what is there); rollback and [`reconcile`]
    /// discard it. At most `max_bytes` bytes are accepted: a longer body
    /// fails as soon as it passes the limit, and nothing of it is stored.
    /// The body is streamed, never held whole (a replayable body within
    /// the limit is passed on as it is; any other is read through a guard
    /// and so becomes one-shot). A dropped call leaves at most a whole
    /// staged attachment, which [`reconcile`] removes.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an invalid `name` or a staged or final
    /// name over 1024 bytes, and [`Error::TooLarge`] for a declared
    /// length over `max_bytes`, both before any I/O; [`Error::TooLarge`]
    /// when a stream passes `max_bytes`; the errors of [`Backend::put`].
    pub async fn attach(
        &mut self,
        key: &Key,
        name: &str,
        body: Body,
        max_bytes: u64,
    ) -> Result<()> {
        let staged = key.staged_attachment(&self.id, name)?;
        let entry = Entry::Attachment(key.clone(), name.to_owned());
        entry.target()?;
        let body = size_guard(body, &staged, max_bytes)?;
        self.backend
            .put(&staged, body, PutOptions::default())
            .await?;
        self.writes.retain(|(e, _)| *e != entry);
        self.writes.push((entry, PutMode::Overwrite));
        Ok(())
    }

    /// Commits: every staged write happens, or none does; see [`Txn`] for
    /// the steps.
    ///
    /// # Errors
    /// Before the decision (nothing happened, the staged writes are
    /// discarded): [`Error::Locked`] for a key another transaction holds
    /// or for this transaction taken over (decided aborted) while it ran,
    /// [`Error::AlreadyExists`] or [`Error::PreconditionFailed`] for a
    /// failed condition, [`Error::InvalidArgument`] for a transaction too
    /// old to commit safely, and the backend's errors. A transient
    /// [`Error::Backend`] when the decision's outcome is unknown (nothing
    /// is undone; [`reconcile`] settles it). After the decision
    /// the commit returns `Ok`: failures to promote or clean up are
    /// reported in [`CommitReport`] or, when a promote fails, returned as
    /// the backend's error with the decision in place, so that
    /// [`reconcile`] finishes the transaction.
    pub async fn commit(mut self) -> Result<CommitReport> {
        self.writes.sort_by_key(|(entry, _)| entry.target().ok());
        let mut locked = Vec::new();
        if let Err(e) = self.prepare(&mut locked).await {
            self.abort(&locked).await;
            return Err(e);
        }
        let record = Key::txn_record(&self.id);
        if txn_age(&self.id) > LOCK_TTL {
            self.abort(&locked).await;
            return Err(Error::invalid_argument(format!(
                "transaction {} took longer than the lock TTL to reach its decision, and may have lost its locks",
                self.id
            )));
        }
        let decision = decision_text(self.writes.iter().map(|(e, _)| e));
        let decided = self
            .backend
            .put(
                &record,
                Body::from(decision.clone()),
                PutOptions::mode(PutMode::IfNotExists),
            )
            .await;
        let record_etag = match decided {
            Ok(meta) => meta.etag,
            Err(Error::AlreadyExists { .. }) => match read_decision(self.backend, &record).await {
                // Taken over while this commit stalled: nothing happened.
                Ok(Some((_, Decision::Aborted))) => {
                    self.abort(&locked).await;
                    return Err(Error::Locked {
                        path: record.to_string(),
                    });
                }
                // Written by an earlier attempt of this commit whose
                // answer was lost.
                Ok(Some((etag, Decision::Committed(_)))) => etag,
                // Gone again (a reconcile may have finished this very
                // transaction) or unreadable: the outcome is unknown, and
                // nothing may be undone.
                Ok(None) | Err(_) => {
                    return Err(Error::Backend {
                        transient: true,
                        message: format!(
                            "the decision of transaction {} is unknown: its record existed, then could not be read; reconcile settles it",
                            self.id
                        ),
                        source: None,
                    });
                }
            },
            Err(e) => {
                // The record may have been written with its answer lost:
                // then reconcile rolls it forward; otherwise nothing
                // happened and the locks go.
                if !e.is_transient() {
                    self.abort(&locked).await;
                }
                return Err(e);
            }
        };
        let mut report = CommitReport::default();
        for (entry, mode) in &self.writes {
            let target = entry.target()?;
            match entry.promote(self.backend, &self.id, mode.clone()).await {
                // Gone: a concurrent reconcile promoted it.
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(Error::AlreadyExists { .. } | Error::PreconditionFailed { .. }) => {
                    match entry
                        .promote(self.backend, &self.id, PutMode::Overwrite)
                        .await
                    {
                        Ok(_) => report.rolled_forward.push(target.clone()),
                        Err(Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
            report.promoted.push(target);
        }
        report.cleanup_failures = finish(self.backend, &self.id, &locked, &record_etag).await;
        Ok(report)
    }

    /// Steps 1 and 2: locks every key (filling `locked`) and checks every
    /// condition.
    async fn prepare(&self, locked: &mut Vec<(Key, ETag)>) -> Result<()> {
        if txn_age(&self.id) > LOCK_TTL / 2 {
            return Err(Error::invalid_argument(format!(
                "transaction {} is older than half the lock TTL and may have lost its locks",
                self.id
            )));
        }
        let mut targets = Vec::new();
        for (entry, _) in &self.writes {
            let target = entry.target()?;
            if targets.last() == Some(&target) {
                return Err(Error::invalid_argument(format!(
                    "transaction {} writes {target} twice (a write and an attachment)",
                    self.id
                )));
            }
            targets.push(target);
        }
        for target in &targets {
            let etag = lock(self.backend, target, &self.id).await?;
            locked.push((target.clone(), etag));
        }
        // Every staged object must be there before anything is decided: a
        // promote that finds nothing counts as done.
        for (entry, _) in &self.writes {
            self.backend.head(&entry.staged(&self.id)?).await?;
        }
        for ((_, mode), target) in self.writes.iter().zip(&targets) {
            if *mode == PutMode::Overwrite {
                continue;
            }
            let current = match self.backend.head(target).await {
                Ok(meta) => Some(meta.etag),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            crate::raw::check_put_mode(target, mode, current.as_ref())?;
        }
        Ok(())
    }

    /// Undoes a commit that decided nothing: releases `locked` and
    /// discards the staged writes. Failures are left to [`reconcile`].
    async fn abort(&self, locked: &[(Key, ETag)]) {
        release(self.backend, &self.id, locked).await;
        for key in self.owners() {
            let _ = self.backend.discard(key, &self.id).await;
        }
    }

    /// Every key with staged state in this transaction, once each.
    fn owners(&self) -> BTreeSet<&Key> {
        self.writes.iter().map(|(e, _)| e.owner()).collect()
    }

    /// Discards every staged write; nothing is decided.
    ///
    /// # Errors
    /// Those of [`Backend::discard`]; what is left, [`reconcile`] removes.
    pub async fn rollback(self) -> Result<()> {
        for key in self.owners() {
            self.backend.discard(key, &self.id).await?;
        }
        Ok(())
    }
}

/// The decision record's text: a header, the state, one entry per line
/// ([`Entry::line`]).
fn decision_text<'e>(entries: impl Iterator<Item = &'e Entry>) -> String {
    let mut text = format!("{RECORD_HEADER}\ncommitted\n");
    for entry in entries {
        text.push_str(&entry.line());
        text.push('\n');
    }
    text
}

/// What a decision record says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Everything happens: the entries to promote.
    Committed(Vec<Entry>),
    /// Nothing happens: decided by a lock takeover or [`reconcile`].
    Aborted,
}

/// The text of an `aborted` decision record.
fn aborted_text() -> String {
    format!("{RECORD_HEADER}\naborted\n")
}

/// Parses a decision record.
fn parse_decision(text: &[u8]) -> Result<Decision> {
    let text = std::str::from_utf8(text)
        .map_err(|_| Error::backend(false, "a decision record is not UTF-8", "txn"))?;
    let mut lines = text.lines();
    let unknown = || Error::backend(false, "a decision record has an unknown format", "txn");
    if lines.next() != Some(RECORD_HEADER) {
        return Err(unknown());
    }
    match lines.next() {
        Some("committed") => Ok(Decision::Committed(
            lines.map(Entry::parse).collect::<Result<_>>()?,
        )),
        Some("aborted") => Ok(Decision::Aborted),
        _ => Err(unknown()),
    }
}

/// The version and content of decision record `record`, or `None` when
/// there is none.
async fn read_decision<B: Backend + ?Sized>(
    backend: &B,
    record: &Key,
) -> Result<Option<(ETag, Decision)>> {
    let found = match backend.get(record, GetOptions::default()).await {
        Ok(found) => found,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let etag = found.meta.etag.clone();
    let text = found.bytes().await?;
    Ok(Some((etag, parse_decision(&text)?)))
}

/// Decides `txn` as aborted unless it has committed: writes its record
/// saying `aborted` with `IfNotExists`. Returns whether the transaction is
/// aborted (by this call or earlier); `false` means it committed.
async fn decide_aborted<B: Backend + ?Sized>(backend: &B, txn: &TxnId) -> Result<bool> {
    // Without conditional puts no transaction can lock a key, so none can
    // have decided anything.
    if !backend.capabilities().conditional_put {
        return Ok(true);
    }
    let record = Key::txn_record(txn);
    match backend
        .put(
            &record,
            Body::from(aborted_text()),
            PutOptions::mode(PutMode::IfNotExists),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(Error::AlreadyExists { .. }) => Ok(matches!(
            read_decision(backend, &record).await?,
            Some((_, Decision::Aborted))
        )),
        Err(e) => Err(e),
    }
}

/// [`decide_aborted`], at most once per transaction in one [`reconcile`]
/// (a transaction with thousands of staged writes is decided once).
async fn decide_aborted_once<B: Backend + ?Sized>(
    backend: &B,
    known: &mut BTreeMap<TxnId, bool>,
    txn: &TxnId,
) -> Result<bool> {
    if let Some(aborted) = known.get(txn) {
        return Ok(*aborted);
    }
    let aborted = decide_aborted(backend, txn).await?;
    known.insert(txn.clone(), aborted);
    Ok(aborted)
}

/// Takes the lock of `key` for `txn`, taking over a stale one.
async fn lock<B: Backend + ?Sized>(backend: &B, key: &Key, txn: &TxnId) -> Result<ETag> {
    let name = lock_key(key)?;
    for _ in 0..3 {
        let created = backend
            .put(
                &name,
                Body::from(txn.to_string()),
                PutOptions::mode(PutMode::IfNotExists),
            )
            .await;
        match created {
            Ok(meta) => return Ok(meta.etag),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let Some((etag, holder)) = read_lock(backend, &name).await? else {
            continue;
        };
        let stale = match &holder {
            Some(holder) if holder == txn => return Ok(etag),
            Some(holder) if txn_age(holder) > LOCK_TTL => decide_aborted(backend, holder).await?,
            // A holder already decided as aborted (by a reconcile, or its
            // own failed commit) will never use its lock: no need to wait
            // for the TTL.
            Some(holder) => matches!(
                read_decision(backend, &Key::txn_record(holder)).await?,
                Some((_, Decision::Aborted))
            ),
            None => true,
        };
        if !stale {
            return Err(Error::Locked {
                path: name.to_string(),
            });
        }
        match backend
            .delete(
                &name,
                DeleteOptions {
                    if_match: Some(etag),
                },
            )
            .await
        {
            Ok(()) | Err(Error::PreconditionFailed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Error::Locked {
        path: name.to_string(),
    })
}

/// The version of lock `name` and the transaction it names (`None` for a
/// lock that names none), or `None` when there is no lock.
async fn read_lock<B: Backend + ?Sized>(
    backend: &B,
    name: &Key,
) -> Result<Option<(ETag, Option<TxnId>)>> {
    let held = match backend.get(name, Default::default()).await {
        Ok(held) => held,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let etag = held.meta.etag.clone();
    let holder = held.bytes().await?;
    let holder = std::str::from_utf8(&holder)
        .ok()
        .and_then(|h| TxnId::new(h).ok());
    Ok(Some((etag, holder)))
}

/// Releases `locked` (held by `txn`), each only if it is still this
/// version; failures are returned as descriptions.
///
/// Without conditional deletes, a lock is read first and deleted only if
/// it still names `txn`: a lock taken over meanwhile (past [`LOCK_TTL`]) is
/// left to its new holder, though a takeover between that read and the
/// delete can still lose its lock (such a backend cannot do better).
async fn release<B: Backend + ?Sized>(
    backend: &B,
    txn: &TxnId,
    locked: &[(Key, ETag)],
) -> Vec<String> {
    let conditional = backend.capabilities().conditional_delete;
    let mut failures = Vec::new();
    for (key, etag) in locked {
        let released = match lock_key(key) {
            Ok(name) if conditional => {
                let if_match = Some(etag.clone());
                backend.delete(&name, DeleteOptions { if_match }).await
            }
            Ok(name) => match read_lock(backend, &name).await {
                Ok(Some((_, Some(holder)))) if holder == *txn => {
                    backend.delete(&name, DeleteOptions::default()).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match released {
            Ok(()) | Err(Error::PreconditionFailed { .. } | Error::NotFound { .. }) => {}
            Err(e) => failures.push(format!("releasing the lock of {key}: {e}")),
        }
    }
    failures
}

/// Step 5: releases the locks, then deletes the decision record; when a
/// step fails, the record stays (for [`reconcile`]) and the failures are
/// returned.
async fn finish<B: Backend + ?Sized>(
    backend: &B,
    txn: &TxnId,
    locked: &[(Key, ETag)],
    record_etag: &ETag,
) -> Vec<String> {
    let failures = release(backend, txn, locked).await;
    if !failures.is_empty() {
        return failures;
    }
    let record = Key::txn_record(txn);
    let if_match = backend
        .capabilities()
        .conditional_delete
        .then(|| record_etag.clone());
    match backend.delete(&record, DeleteOptions { if_match }).await {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("deleting the decision record of {txn}: {e}")],
    }
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Committed transactions it finished.
    pub finished: Vec<TxnId>,
    /// Keys it promoted for them.
    pub promoted: Vec<Key>,
    /// Staged writes of undecided transactions it discarded (their staged
    /// names).
    pub discarded: Vec<Key>,
    /// Stale locks it removed.
    pub unlocked: Vec<Key>,
    /// What failed; a later reconcile tries again.
    pub failures: Vec<String>,
}

/// Finishes what crashed transactions left: promotes the staged writes of
/// every committed transaction and removes its locks and record; discards
/// the staged writes of transactions without a decision that are older
/// than `older_than`, and locks older than that whose transaction has no
/// decision, after deciding each such transaction as aborted (an `aborted`
/// decision record, which it removes once older than [`ABORTED_KEEP`]), so
/// that a commit stalled meanwhile cannot decide it afterwards. A decision
/// record left by a failed cleanup is how a later reconcile knows to try
/// again. Safe to run beside live transactions (pass at least
/// [`LOCK_TTL`] to leave undecided ones alone) and beside itself.
///
/// # Errors
/// The backend's errors while listing; failures on single objects are
/// reported in [`ReconcileReport::failures`].
pub async fn reconcile<B: Backend + ?Sized>(
    backend: &B,
    older_than: Duration,
) -> Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    // Decided transactions: roll the committed forward; note the aborted,
    // and remove their records once old enough.
    let records: Vec<Key> = reserved_names(backend, ".txn/").await?;
    let mut decided = BTreeSet::new();
    let mut aborted = BTreeSet::new();
    let mut known = BTreeMap::new();
    for record in records {
        let Some(txn) = record
            .as_str()
            .strip_prefix(".txn/")
            .and_then(|t| TxnId::new(t).ok())
        else {
            continue;
        };
        match read_decision(backend, &record).await {
            Ok(Some((etag, Decision::Aborted))) => {
                aborted.insert(txn.clone());
                if txn_age(&txn) > ABORTED_KEEP {
                    let if_match = backend.capabilities().conditional_delete.then_some(etag);
                    if let Err(e) = backend.delete(&record, DeleteOptions { if_match }).await {
                        report
                            .failures
                            .push(format!("removing the aborted record of {txn}: {e}"));
                    }
                }
                continue;
            }
            Ok(Some((_, Decision::Committed(entries)))) => {
                decided.insert(txn.clone());
                if let Err(e) = roll_forward(backend, &record, &txn, &entries, &mut report).await {
                    report.failures.push(format!("finishing {txn}: {e}"));
                }
            }
            // Finished meanwhile.
            Ok(None) => {}
            Err(e) => {
                decided.insert(txn.clone());
                report
                    .failures
                    .push(format!("reading the decision of {txn}: {e}"));
            }
        }
    }
    // Undecided transactions: discard what is old enough.
    let mut options = StagedListOptions::default();
    loop {
        let page = backend.list_staged(&options).await?;
        for staged in &page.staged {
            let old = txn_age(&staged.txn) > older_than;
            if decided.contains(&staged.txn) || !(old || aborted.contains(&staged.txn)) {
                continue;
            }
            match decide_aborted_once(backend, &mut known, &staged.txn).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    report
                        .failures
                        .push(format!("reading the decision of {}: {e}", staged.txn));
                    continue;
                }
            }
            let discarded = match &staged.key {
                Some(key) => backend.discard(key, &staged.txn).await,
                None => {
                    backend
                        .delete(&staged.meta.key, DeleteOptions::default())
                        .await
                }
            };
            match discarded {
                Ok(()) => report.discarded.push(staged.meta.key.clone()),
                Err(e) => report
                    .failures
                    .push(format!("discarding {}: {e}", staged.meta.key)),
            }
        }
        match page.continuation {
            Some(next) => options.start_after = Some(next),
            None => break,
        }
    }
    // Stale locks, and attachments of undecided transactions.
    for name in reserved_names(backend, "").await? {
        if let Some(key) = locked_key(name.as_str()) {
            let unlocked =
                unlock_if_stale(backend, &key, &name, older_than, &mut known, &mut report).await;
            if let Err(e) = unlocked {
                report.failures.push(format!("unlocking {key}: {e}"));
            }
            continue;
        }
        let Some((_, txn, _)) = parse_attachment(name.as_str()) else {
            continue;
        };
        if decided.contains(&txn) || !(txn_age(&txn) > older_than || aborted.contains(&txn)) {
            continue;
        }
        match decide_aborted_once(backend, &mut known, &txn).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                report
                    .failures
                    .push(format!("reading the decision of {txn}: {e}"));
                continue;
            }
        }
        match backend.delete(&name, DeleteOptions::default()).await {
            Ok(()) => report.discarded.push(name),
            Err(e) => report.failures.push(format!("discarding {name}: {e}")),
        }
    }
    Ok(report)
}

/// Promotes what `txn` still has staged, then removes its locks and its
/// decision record.
async fn roll_forward<B: Backend + ?Sized>(
    backend: &B,
    record: &Key,
    txn: &TxnId,
    entries: &[Entry],
    report: &mut ReconcileReport,
) -> Result<()> {
    // The commit releases its locks only after every promote: while it
    // holds them all, promotes may be missing; once it released one, what
    // is still staged is only cleanup (promoting it again could overwrite
    // later writes).
    let mut locks = Vec::new();
    for entry in entries {
        let name = lock_key(&entry.target()?)?;
        let ours = match read_lock(backend, &name).await? {
            Some((etag, Some(holder))) if holder == *txn => Some(etag),
            _ => None,
        };
        locks.push((name, ours));
    }
    let promoting = locks.iter().all(|(_, ours)| ours.is_some());
    for entry in entries {
        if promoting {
            match entry.promote(backend, txn, PutMode::Overwrite).await {
                Ok(_) => report.promoted.push(entry.target()?),
                // Promoted before the crash.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        } else {
            // A concurrent reconcile may have removed it already.
            match backend
                .delete(&entry.staged(txn)?, DeleteOptions::default())
                .await
            {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let conditional = backend.capabilities().conditional_delete;
    for (name, ours) in locks {
        let Some(etag) = ours else { continue };
        let if_match = conditional.then_some(etag);
        match backend.delete(&name, DeleteOptions { if_match }).await {
            // Released meanwhile, by a concurrent reconcile or the commit.
            Ok(()) | Err(Error::PreconditionFailed { .. } | Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    backend.delete(record, DeleteOptions::default()).await?;
    report.finished.push(txn.clone());
    Ok(())
}

/// Removes the lock `name` of `key` when its transaction has no decision
/// and is older than `older_than` (or the lock names none).
async fn unlock_if_stale<B: Backend + ?Sized>(
    backend: &B,
    key: &Key,
    name: &Key,
    older_than: Duration,
    known: &mut BTreeMap<TxnId, bool>,
    report: &mut ReconcileReport,
) -> Result<()> {
    let Some((etag, holder)) = read_lock(backend, name).await? else {
        return Ok(());
    };
    let stale = match &holder {
        Some(holder) => {
            txn_age(holder) > older_than && decide_aborted_once(backend, known, holder).await?
        }
        None => true,
    };
    if stale {
        let if_match = backend.capabilities().conditional_delete.then_some(etag);
        match backend.delete(name, DeleteOptions { if_match }).await {
            Ok(()) => report.unlocked.push(key.clone()),
            Err(Error::PreconditionFailed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every stored name under `prefix` with a reserved segment.
async fn reserved_names<B: Backend + ?Sized>(backend: &B, prefix: &str) -> Result<Vec<Key>> {
    let mut options = ListOptions {
        prefix: prefix.to_owned(),
        reserved: true,
        ..ListOptions::default()
    };
    let mut names = Vec::new();
    loop {
        let page = backend.list(&options).await?;
        names.extend(
            page.objects
                .into_iter()
                .map(|m| m.key)
                .filter(|k| k.is_reserved() && parse_staged(k.as_str()).is_none()),
        );
        match page.continuation {
            Some(next) => options.continuation = Some(next),
            None => return Ok(names),
        }
    }
}

/// `body`, failing with [`Error::TooLarge`] once more than `limit` bytes
/// pass (a replayable body within the limit is returned as it is).
fn size_guard(body: Body, key: &Key, limit: u64) -> Result<Body> {
    let too_large = |size| Error::TooLarge {
        key: Some(key.to_string()),
        size,
        limit,
    };
    let len = body.len();
    if let Some(len) = len {
        if len > limit {
            return Err(too_large(len));
        }
        if body.is_replayable() {
            return Ok(body);
        }
    }
    let key = key.to_string();
    // State: bytes seen, and whether the stream already failed (it then
    // ends).
    let guarded = body
        .into_stream()
        .scan((0u64, false), move |(seen, failed), chunk| {
            let next = match chunk {
                _ if *failed => None,
                Err(e) => {
                    *failed = true;
                    Some(Err(e))
                }
                Ok(chunk) => {
                    *seen += chunk.len() as u64;
                    if *seen > limit {
                        *failed = true;
                        Some(Err(Error::TooLarge {
                            key: Some(key.clone()),
                            size: *seen,
                            limit,
                        }))
                    } else {
                        Some(Ok(chunk))
                    }
                }
            };
            futures::future::ready(next)
        });
    Ok(Body::stream(guarded.boxed(), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    #[test]
    fn an_id_from_another_host_s_future_is_new_not_stale() {
        let ahead = SystemTime::now() + Duration::from_secs(60);
        let millis = ahead
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let id = TxnId::new(format!("{millis:013x}-0")).expect("id");
        assert_eq!(txn_age(&id), Duration::ZERO);
    }

    #[test]
    fn with_id_needs_a_recent_creation_time() {
        let store = MemoryBackend::new();
        for bad in ["t1", "abc-1", "0000000000001-x"] {
            let id = TxnId::new(bad).expect("id");
            assert!(Txn::with_id(&store, id).is_err(), "{bad} was accepted");
        }
        assert!(Txn::with_id(&store, TxnId::generate()).is_ok());
    }

    #[test]
    fn decision_records_round_trip() {
        let entries = [
            Entry::Write(Key::new("a/b").expect("key")),
            Entry::Attachment(Key::new("a").expect("key"), "files/x".into()),
        ];
        let text = decision_text(entries.iter());
        assert_eq!(
            parse_decision(text.as_bytes()).expect("parse"),
            Decision::Committed(entries.to_vec())
        );
        assert_eq!(
            parse_decision(aborted_text().as_bytes()).expect("parse"),
            Decision::Aborted
        );
    }
}
