//! The `linearizability` check catches a backend that answers a failed
//! condition before the conflicting write is visible: a write is accepted
//! (conditions of later writes see it at once) but becomes visible to reads
//! and is acknowledged only after a delay, so a task can be told
//! `AlreadyExists` or `PreconditionFailed` and then read the very state that
//! the condition said was gone. Sequential use never shows it, and neither
//! do checks that look only at final states.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use storage_conformance::{BackendReport, Filter, FnFactory, Status, run, suites};
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, ETag, Error, GetOptions, GetResult, Key,
    ListOptions, ListPage, MemoryBackend, ObjectMeta, PutMode, PutOptions, Result,
};
use tokio::sync::Mutex;

/// How long an accepted write stays invisible to reads.
const VISIBILITY_DELAY: Duration = Duration::from_millis(5);

/// What the condition table holds for a key.
#[derive(Debug, Clone)]
enum Condition {
    /// An accepted write is not visible yet: its ETag is not known.
    Pending,
    /// The visible version's ETag.
    Present(ETag),
}

/// A memory backend whose preconditions are checked against accepted writes
/// before those writes are visible.
#[derive(Debug, Default)]
struct EarlyConditions {
    /// What reads see.
    visible: MemoryBackend,
    /// What preconditions are checked against; a missing key is absent.
    conditions: Mutex<HashMap<Key, Condition>>,
}

impl EarlyConditions {
    fn refuse(key: &Key, mode: &PutMode, current: Option<&Condition>) -> Option<Error> {
        let etag = match current {
            Some(Condition::Present(etag)) => Some(etag.clone()),
            _ => None,
        };
        match mode {
            PutMode::Overwrite => None,
            PutMode::IfNotExists => current.map(|_| Error::AlreadyExists {
                key: key.to_string(),
            }),
            PutMode::IfMatch(expected) => {
                (etag.as_ref() != Some(expected)).then(|| Error::PreconditionFailed {
                    key: key.to_string(),
                    expected: expected.clone(),
                    actual: etag,
                })
            }
        }
    }
}

#[async_trait]
impl Backend for EarlyConditions {
    fn name(&self) -> &str {
        "early-conditions"
    }

    fn capabilities(&self) -> Capabilities {
        self.visible.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, mut options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        {
            let mut conditions = self.conditions.lock().await;
            if let Some(refusal) = Self::refuse(key, &options.mode, conditions.get(key)) {
                return Err(refusal);
            }
            conditions.insert(key.clone(), Condition::Pending);
        }
        tokio::time::sleep(VISIBILITY_DELAY).await;
        let mut conditions = self.conditions.lock().await;
        options.mode = PutMode::Overwrite;
        let meta = self.visible.put(key, body, options).await?;
        conditions.insert(key.clone(), Condition::Present(meta.etag.clone()));
        Ok(meta)
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.visible.get(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.visible.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        let mut conditions = self.conditions.lock().await;
        if let Some(expected) = &options.if_match {
            let mode = PutMode::IfMatch(expected.clone());
            if let Some(refusal) = Self::refuse(key, &mode, conditions.get(key)) {
                return Err(refusal);
            }
        }
        conditions.remove(key);
        self.visible.delete(key, DeleteOptions::default()).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.visible.list(options).await
    }
}

async fn linearizability_report(early_conditions: bool) -> BackendReport {
    let factory = FnFactory::new("mutant", move |_check| async move {
        Ok(if early_conditions {
            Arc::new(EarlyConditions::default()) as Arc<dyn Backend>
        } else {
            Arc::new(MemoryBackend::new()) as Arc<dyn Backend>
        })
    });
    let filter = Filter {
        suites: vec!["concurrency".into()],
        names: vec!["linearizability".into()],
        ..Default::default()
    };
    run(&factory, &suites::all(), &filter).await
}

#[tokio::test(flavor = "multi_thread")]
async fn answering_a_condition_before_the_write_is_visible_fails_linearizability() {
    let report = linearizability_report(true).await;
    let check = report.checks.first().expect("the check ran");
    assert_eq!(check.status, Status::Failed, "{:?}", check.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_backend_passes_linearizability() {
    let report = linearizability_report(false).await;
    let check = report.checks.first().expect("the check ran");
    assert_eq!(check.status, Status::Passed, "{:?}", check.message);
}
