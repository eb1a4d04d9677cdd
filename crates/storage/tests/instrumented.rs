//! `Instrumented`: one span per operation with its fields (captured by a
//! test subscriber) and the metrics recorded (captured by a test recorder).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use storage::instrumented::{BYTES_READ, BYTES_WRITTEN, DURATION, ERRORS, OPERATIONS};
use storage::{Backend, BackendExt, Instrumented, MemoryBackend};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// The fields of one span, as strings.
type Fields = BTreeMap<String, String>;

/// Keeps the fields of every span named `storage` when it closes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Fields>>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut Visitor(fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && span.name() == "storage"
            && let Some(fields) = span.extensions_mut().remove::<Fields>()
        {
            self.0.lock().expect("capture").push(fields);
        }
    }
}

/// Runs `work` on a current-thread runtime with the capturing subscriber
/// and a debugging recorder in place, and returns the spans and metrics.
fn observe<F>(work: impl FnOnce() -> F) -> (Vec<Fields>, Snapshotter)
where
    F: std::future::Future<Output = ()>,
{
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || runtime.block_on(work()))
    });
    let spans = capture.0.lock().expect("capture").clone();
    (spans, snapshotter)
}

/// One snapshot of the recorded metrics (taking one resets the counters).
type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The value of the metric `name` whose labels include every pair of
/// `labels`.
fn metric<'a>(
    snapshot: &'a Snapshot,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, ..)| {
            key.key().name() == name
                && labels.iter().all(|(k, v)| {
                    key.key()
                        .labels()
                        .any(|label| label.key() == *k && label.value() == *v)
                })
        })
        .map(|(_, _, _, value)| value)
}

#[test]
fn a_put_emits_one_span_with_its_fields() {
    let (spans, _) = observe(|| async {
        let store = Instrumented::new(MemoryBackend::new());
        store.put_bytes("a/b.txt", "hello").await.expect("put");
    });
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span["backend"], "memory");
    assert_eq!(span["operation"], "put");
    assert_eq!(span["key"], "a/b.txt");
    assert_eq!(span["bytes"], "5");
    assert_eq!(span["outcome"], "ok");
    assert!(!span.contains_key("error_kind"), "{span:?}");
    assert!(span["duration_ms"].parse::<f64>().is_ok(), "{span:?}");
}

#[test]
fn a_failed_operation_records_its_error_kind_in_the_span() {
    let (spans, _) = observe(|| async {
        let store = Instrumented::new(MemoryBackend::new());
        let missing = store.get_bytes("missing").await;
        assert!(missing.is_err());
    });
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0]["operation"], "get");
    assert_eq!(spans[0]["outcome"], "error");
    assert_eq!(spans[0]["error_kind"], "not_found");
}

#[test]
fn the_metrics_count_operations_errors_bytes_and_latency() {
    let (_, snapshotter) = observe(|| async {
        let store = Instrumented::new(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>);
        store.put_bytes("k", "0123456789").await.expect("put");
        store.get_bytes("k").await.expect("get");
        store.get_bytes("k").await.expect("get");
        assert!(store.head(&"nope".parse().expect("key")).await.is_err());
    });
    let snapshot: Snapshot = snapshotter.snapshot().into_vec();
    let counter = |name, labels: &[(&str, &str)]| match metric(&snapshot, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    };
    assert_eq!(
        counter(OPERATIONS, &[("operation", "get"), ("outcome", "ok")]),
        2
    );
    assert_eq!(
        counter(ERRORS, &[("operation", "head"), ("kind", "not_found")]),
        1
    );
    assert_eq!(counter(BYTES_WRITTEN, &[("backend", "memory")]), 10);
    assert_eq!(counter(BYTES_READ, &[("backend", "memory")]), 20);
    match metric(&snapshot, DURATION, &[("operation", "put")]) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 1),
        other => panic!("{DURATION}: {other:?}"),
    }
}
