//! The `tracing` feature: one span per run, one per step's action and
//! compensation, an event per transition, all captured by a minimal
//! subscriber. Run with `cargo test -p saga-core --features tracing`.
#![cfg(feature = "tracing")]
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::fmt::Debug;
use std::future::ready;
use std::sync::Mutex;

use saga_core::{FnStep, SagaBuilder};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Debug, Clone, PartialEq)]
struct SpanSeen {
    name: &'static str,
    fields: String,
    parent: Option<u64>,
}

#[derive(Default)]
struct Capture {
    spans: Mutex<Vec<SpanSeen>>,
    stack: Mutex<Vec<u64>>,
    // (innermost span's fields, message)
    events: Mutex<Vec<(String, String)>>,
}

#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        } else {
            self.0.push_str(&format!("{}={value:?}", field.name()));
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        let parent = span.parent().map(Id::into_u64).or_else(|| {
            span.is_contextual()
                .then(|| self.stack.lock().unwrap().last().copied())
                .flatten()
        });
        let mut spans = self.spans.lock().unwrap();
        spans.push(SpanSeen {
            name: span.metadata().name(),
            fields: fields.0,
            parent,
        });
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = self.spans.lock().unwrap();
        let inner = self
            .stack
            .lock()
            .unwrap()
            .last()
            .map(|id| spans[*id as usize - 1].fields.clone());
        self.events
            .lock()
            .unwrap()
            .push((inner.unwrap_or_default(), fields.0));
    }

    fn enter(&self, span: &Id) {
        self.stack.lock().unwrap().push(span.into_u64());
    }

    fn exit(&self, _: &Id) {
        self.stack.lock().unwrap().pop();
    }
}

#[test]
fn a_run_has_one_span_its_steps_have_theirs_and_every_transition_is_an_event() {
    let capture = std::sync::Arc::new(Capture::default());
    // The only test in this binary: a global subscriber is fine (and the only
    // kind `tracing` offers without its `std` feature).
    tracing::subscriber::set_global_default(CaptureHandle(capture.clone())).unwrap();
    {
        let mut saga = SagaBuilder::new()
            .step(
                FnStep::new(
                    || async {
                        // Pending once, so the run is polled (and entered) twice.
                        let mut yielded = false;
                        std::future::poll_fn(|cx| {
                            if yielded {
                                std::task::Poll::Ready(())
                            } else {
                                yielded = true;
                                cx.waker().wake_by_ref();
                                std::task::Poll::Pending
                            }
                        })
                        .await;
                        Ok::<(), &str>(())
                    },
                    || ready(Ok(())),
                )
                .named("book"),
            )
            .add_step(|| ready(Err::<(), _>("no room")), || ready(Ok(())))
            .build();
        assert!(smol::block_on(saga.run()).is_err());
    }

    let spans = capture.spans.lock().unwrap().clone();
    let sagas: Vec<_> = spans.iter().filter(|span| span.name == "saga").collect();
    assert_eq!(
        sagas.len(),
        1,
        "one span per run, however often it is polled: {spans:?}"
    );
    assert_eq!(sagas[0].fields, "steps=2");
    let steps: Vec<&str> = spans
        .iter()
        .filter(|span| span.name == "saga_step")
        .map(|span| span.fields.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "step=0 name=\"book\" phase=\"action\"",
            "step=1 name=\"\" phase=\"action\"",
            "step=1 name=\"\" phase=\"compensation\"",
            "step=0 name=\"book\" phase=\"compensation\"",
        ]
    );
    assert!(
        spans
            .iter()
            .filter(|span| span.name == "saga_step")
            .all(|span| span.parent == Some(1))
    );

    let events = capture.events.lock().unwrap().clone();
    let messages: Vec<String> = events
        .iter()
        .map(|(span, message)| format!("{span}: {message}"))
        .collect();
    assert_eq!(
        messages,
        [
            "step=0 name=\"book\" phase=\"action\": action started attempt=1",
            "step=0 name=\"book\" phase=\"action\": action succeeded attempt=1",
            "step=1 name=\"\" phase=\"action\": action started attempt=1",
            "step=1 name=\"\" phase=\"action\": action failed attempt=1",
            "step=1 name=\"\" phase=\"compensation\": compensation started attempt=1",
            "step=1 name=\"\" phase=\"compensation\": compensation succeeded attempt=1",
            "step=0 name=\"book\" phase=\"compensation\": compensation started attempt=1",
            "step=0 name=\"book\" phase=\"compensation\": compensation succeeded attempt=1",
        ]
    );
}

/// `with_default` takes the subscriber by value; share it with the test.
struct CaptureHandle(std::sync::Arc<Capture>);

impl Subscriber for CaptureHandle {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.new_span(span)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values);
    }
    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.0.record_follows_from(span, follows);
    }
    fn event(&self, event: &Event<'_>) {
        self.0.event(event);
    }
    fn enter(&self, span: &Id) {
        self.0.enter(span);
    }
    fn exit(&self, span: &Id) {
        self.0.exit(span);
    }
}
