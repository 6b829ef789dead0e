//! The journal foundations (`saga_core::journal`, `Saga::fingerprint`,
//! `Saga::unsaved_outputs`, `Step::output`/`save_output`/`restore`), written
//! from the rustdoc alone: codecs, records, replay, histories, the registry,
//! contexts, ids, fingerprints and the error types.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    // The docs' own spelling: `.sleeper(|duration| smol::Timer::after(duration))`.
    clippy::redundant_closure,
    clippy::single_range_in_vec_init
)]

use std::error::Error as StdError;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use saga_core::journal::{
    Codec, DecodeError, Event, History, Journal, JournalError, JournalErrorKind, Outcome, Progress,
    Quarantined, Reader, Record, Registry, ReplayError, SagaContext, SagaId, SagaState,
    StepHistory, Unwind, replay,
};
use saga_core::{
    FnStep, Restored, Retry, Saga, SagaBuilder, Step, StepOutput, StepPolicy, TypedStep,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn encoded<T: Codec>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// Encodes, decodes back, checks equality; then checks that every strict
/// prefix and one trailing byte are errors (not panics).
fn round_trip<T: Codec + PartialEq + Debug>(value: T) {
    let bytes = encoded(&value);
    assert_eq!(T::decode(&bytes).as_ref(), Ok(&value), "{value:?}");
    for cut in 0..bytes.len() {
        assert!(
            T::decode(&bytes[..cut]).is_err(),
            "{value:?} decoded from {cut} of {} bytes",
            bytes.len()
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    let error = T::decode(&trailing).expect_err("trailing byte accepted");
    assert_eq!(
        error.offset(),
        bytes.len(),
        "{value:?}: trailing byte offset"
    );
}

fn created() -> Event {
    Event::Created {
        definition: "trip".into(),
        version: 3,
        fingerprint: 0xfeed,
        parameters: vec![1, 2, 3],
    }
}

/// Numbers `events` from 0, after a `Created`.
fn records(events: Vec<Event>) -> Vec<Record> {
    std::iter::once(created())
        .chain(events)
        .enumerate()
        .map(|(seq, event)| Record {
            seq: seq as u64,
            event,
        })
        .collect()
}

fn replay_events(events: Vec<Event>) -> Result<History, ReplayError> {
    replay(&records(events))
}

/// Asserts that the last of `events` (after `Created`) is illegal, and that
/// every record before it is fine.
fn assert_last_illegal(events: Vec<Event>) {
    let all = records(events);
    let last = all.len() as u64 - 1;
    replay(&all[..all.len() - 1]).expect("the records before the last are legal");
    match replay(&all) {
        Err(ReplayError::Illegal { seq, why }) => {
            assert_eq!(seq, last, "wrong record blamed ({why})");
            assert!(!why.is_empty());
        }
        other => panic!("expected Illegal at {last}, got {other:?}"),
    }
}

fn a_started(step: u32, attempt: u32) -> Event {
    Event::ActionStarted { step, attempt }
}
fn a_ok(step: u32) -> Event {
    Event::ActionSucceeded { step, output: None }
}
fn a_failed(step: u32, attempt: u32, message: &str) -> Event {
    Event::ActionFailed {
        step,
        attempt,
        message: message.into(),
    }
}
fn c_started(step: u32, attempt: u32) -> Event {
    Event::CompensationStarted { step, attempt }
}
fn c_ok(step: u32) -> Event {
    Event::CompensationSucceeded { step }
}
fn c_failed(step: u32, attempt: u32, message: &str) -> Event {
    Event::CompensationFailed {
        step,
        attempt,
        message: message.into(),
    }
}
fn unwinding(step: u32, reason: Unwind) -> Event {
    Event::Unwinding { step, reason }
}
fn finished(outcome: Outcome) -> Event {
    Event::Finished {
        outcome,
        message: String::new(),
    }
}

fn untouched() -> StepHistory {
    StepHistory {
        action: Progress::NotStarted,
        action_attempts: 0,
        output: None,
        compensation: Progress::NotStarted,
        compensation_attempts: 0,
    }
}

/// A step with only the required methods.
struct Bare;
impl Step<String> for Bare {
    fn poll_action(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }
    fn poll_compensate(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }
    fn reset(self: Pin<&mut Self>) {}
    fn cancel(self: Pin<&mut Self>) {}
}

/// A step that says what it keeps (and saves a `u32` when it says `Saved`).
struct Keeps(StepOutput, Option<u32>);
impl Step<String> for Keeps {
    fn poll_action(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        self.get_mut().1 = Some(42);
        Poll::Ready(Ok(()))
    }
    fn poll_compensate(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }
    fn reset(self: Pin<&mut Self>) {}
    fn cancel(self: Pin<&mut Self>) {}
    fn output(&self) -> StepOutput {
        self.0
    }
    fn save_output(&self, out: &mut Vec<u8>) {
        if let Some(value) = self.1 {
            value.encode(out);
        }
    }
    fn restore(self: Pin<&mut Self>, restored: Restored<'_>) -> Result<(), DecodeError> {
        if let Restored::Succeeded(Some(bytes)) = restored {
            self.get_mut().1 = Some(u32::decode(bytes)?);
        }
        Ok(())
    }
}

/// A plain step that succeeds both ways (a macro, so that `FnStep`'s own
/// methods stay available).
macro_rules! ok_step {
    () => {
        FnStep::new(
            || std::future::ready(Ok::<(), String>(())),
            || std::future::ready(Ok::<(), String>(())),
        )
    };
}

fn named(names: &[&'static str]) -> Saga<String> {
    let mut builder = SagaBuilder::new();
    for name in names {
        builder = builder.step(ok_step!().named(*name));
    }
    builder.build()
}

fn one_step(_: &u64, _: &SagaContext) -> Saga<String> {
    named(&["one"])
}
fn two_steps(_: &u64, _: &SagaContext) -> Saga<String> {
    named(&["one", "two"])
}

fn assert_error<T: StdError + Send + Sync + 'static>() {}

// ---------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------

#[test]
fn codec_round_trips_every_integer_at_its_extremes() {
    macro_rules! each {
        ($($t:ty),*) => {$(
            for value in [<$t>::MIN, <$t>::MAX, 0 as $t, 1 as $t, (<$t>::MAX / 3) as $t] {
                round_trip(value);
            }
        )*};
    }
    each!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128);
    round_trip(-1_i64);
    round_trip(-1_i128);
}

#[test]
fn codec_integers_are_little_endian_and_fixed_width() {
    // `//!` of the codec module: "little-endian integers".
    assert_eq!(encoded(&0x0102_u16), [0x02, 0x01]);
    assert_eq!(encoded(&0x0102_0304_u32), [0x04, 0x03, 0x02, 0x01]);
    assert_eq!(encoded(&1_u64), [1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(encoded(&-1_i32), [0xff; 4]);
    assert_eq!(encoded(&7_u8), [7]);
}

#[test]
fn codec_round_trips_bool_char_string_and_unit() {
    round_trip(true);
    round_trip(false);
    for c in ['a', '\0', 'é', '€', '🦀', char::MAX, '\u{d7ff}', '\u{e000}'] {
        round_trip(c);
    }
    for s in ["", "a", "hello, world", "naïve 🦀 ünïcödé", "\0\0"] {
        round_trip(String::from(s));
    }
    round_trip("x".repeat(70_000));
    assert!(encoded(&()).is_empty(), "() has no bytes");
    assert_eq!(<()>::decode(&[]), Ok(()));
    assert!(<()>::decode(&[0]).is_err(), "trailing byte after ()");
}

#[test]
fn codec_round_trips_vec_and_option_nested() {
    round_trip(Vec::<u8>::new());
    round_trip(vec![1_u8, 2, 3]);
    round_trip(vec![String::from("a"), String::new(), String::from("ccc")]);
    round_trip(vec![vec![1_u32], vec![], vec![2, 3]]);
    round_trip(None::<u32>);
    round_trip(Some(7_u32));
    round_trip(Some(None::<u8>));
    round_trip(Some(Some(0_u8)));
    round_trip(vec![Some(1_i16), None, Some(-1)]);
    round_trip(Some(vec![String::from("x")]));
    round_trip(vec![(); 3]);
}

#[test]
fn codec_round_trips_tuples_of_one_to_four() {
    round_trip((5_u8,));
    round_trip((1_u16, String::from("two")));
    round_trip((true, 'c', -3_i64));
    round_trip((1_u8, 2_u32, String::from("three"), Some(vec![4_u64])));
    round_trip(((1_u8, 2_u8), (String::new(),), ()));
    // Fields are written in order.
    assert_eq!(encoded(&(1_u8, 2_u8, 3_u8, 4_u8)), [1, 2, 3, 4]);
}

#[test]
fn codec_outcome_and_unwind_round_trip() {
    for outcome in [
        Outcome::Committed,
        Outcome::Compensated,
        Outcome::Stuck,
        Outcome::Abandoned,
    ] {
        round_trip(outcome);
    }
    for reason in [
        Unwind::Failed,
        Unwind::Aborted,
        Unwind::Deadline,
        Unwind::Panicked,
        Unwind::Propagated,
    ] {
        round_trip(reason);
    }
}

#[test]
fn codec_invalid_bool_char_and_utf8_are_errors() {
    assert!(bool::decode(&[2]).is_err(), "2 is no bool");
    assert!(bool::decode(&[0xff]).is_err());
    // A surrogate, beyond char::MAX, and all ones.
    for bytes in [
        encoded(&0xd800_u32),
        encoded(&0x0011_0000_u32),
        vec![0xff; 4],
    ] {
        assert!(char::decode(&bytes).is_err(), "{bytes:?} decoded as a char");
    }
    let mut bytes = encoded(&String::from("ab"));
    *bytes.last_mut().unwrap() = 0xff;
    assert!(String::decode(&bytes).is_err(), "invalid UTF-8 accepted");
    let mut option = encoded(&Some(5_u8));
    option[0] = 2;
    assert!(
        Option::<u8>::decode(&option).is_err(),
        "option tag 2 accepted"
    );
}

#[test]
fn decode_error_offset_points_at_the_invalid_byte() {
    assert_eq!(bool::decode(&[2]).expect_err("2 is no bool").offset(), 0);
    let mut option = encoded(&Some(5_u8));
    option[0] = 2;
    assert_eq!(Option::<u8>::decode(&option).unwrap_err().offset(), 0);
}

#[test]
fn codec_huge_length_prefix_is_an_error_not_an_allocation() {
    let empty = encoded(&Vec::<u8>::new());
    assert!(!empty.is_empty(), "a Vec carries its length");
    let huge = vec![0xff; empty.len()];
    assert!(Vec::<u8>::decode(&huge).is_err());
    assert!(Vec::<u64>::decode(&huge).is_err());
    assert!(String::decode(&huge).is_err());
}

#[test]
fn codec_user_type_reads_fields_in_order() {
    #[derive(Debug, PartialEq)]
    struct Booking {
        id: String,
        nights: u32,
    }
    impl Codec for Booking {
        fn encode(&self, out: &mut Vec<u8>) {
            self.id.encode(out);
            self.nights.encode(out);
        }
        fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
            Ok(Booking {
                id: reader.read()?,
                nights: reader.read()?,
            })
        }
    }
    round_trip(Booking {
        id: "H-7".into(),
        nights: 3,
    });
    round_trip(vec![
        Booking {
            id: "a".into(),
            nights: 1,
        },
        Booking {
            id: String::new(),
            nights: u32::MAX,
        },
    ]);
}

#[test]
fn reader_reads_in_order_and_tracks_its_offset() {
    let mut bytes = Vec::new();
    7_u8.encode(&mut bytes);
    0x0102_u16.encode(&mut bytes);
    String::from("hi").encode(&mut bytes);
    bytes.extend_from_slice(&[9, 9, 9]);
    let mut reader = Reader::new(&bytes);
    assert_eq!(reader.offset(), 0);
    assert_eq!(reader.read::<u8>(), Ok(7));
    assert_eq!(reader.offset(), 1);
    assert_eq!(reader.read::<u16>(), Ok(0x0102));
    assert_eq!(reader.offset(), 3);
    assert_eq!(reader.read::<String>().as_deref(), Ok("hi"));
    let before_take = reader.offset();
    let error = reader.finish().expect_err("three bytes unread");
    assert_eq!(error.offset(), before_take);
    assert_eq!(reader.error("custom").offset(), before_take);
    assert!(reader.take(4).is_err(), "took more than there is");
    assert_eq!(reader.take(2), Ok(&[9_u8, 9][..]));
    assert_eq!(reader.offset(), before_take + 2);
    assert_eq!(reader.take(1), Ok(&[9_u8][..]));
    assert_eq!(reader.finish(), Ok(()));
    assert!(reader.read::<u8>().is_err(), "read past the end");
}

#[test]
fn decode_error_new_offset_display_and_error_trait() {
    let error = DecodeError::new("bad tag", 17);
    assert_eq!(error.offset(), 17);
    assert!(error.to_string().contains("bad tag"), "{error}");
    assert_eq!(error.clone(), error);
    assert_ne!(error, DecodeError::new("bad tag", 18));
    let dynamic: &dyn StdError = &error;
    assert!(dynamic.source().is_none());
    assert_error::<DecodeError>();
}

// ---------------------------------------------------------------------------
// Record
// ---------------------------------------------------------------------------

fn every_event() -> Vec<Event> {
    let mut events = vec![
        created(),
        Event::Created {
            definition: String::new(),
            version: u32::MAX,
            fingerprint: u64::MAX,
            parameters: vec![],
        },
        a_started(0, 1),
        a_started(u32::MAX, u32::MAX),
        Event::ActionSucceeded {
            step: 4,
            output: Some(vec![0, 255, 7]),
        },
        Event::ActionSucceeded {
            step: 4,
            output: Some(vec![]),
        },
        a_ok(5),
        a_failed(2, 3, "no seats 🦀"),
        a_failed(2, 3, ""),
        Event::Retrying {
            step: 1,
            compensation: false,
            attempt: 2,
        },
        Event::Retrying {
            step: 1,
            compensation: true,
            attempt: 9,
        },
        c_started(3, 1),
        c_ok(3),
        c_failed(3, 2, "refund failed"),
        Event::Reopened,
    ];
    for reason in [
        Unwind::Failed,
        Unwind::Aborted,
        Unwind::Deadline,
        Unwind::Panicked,
        Unwind::Propagated,
    ] {
        events.push(unwinding(6, reason));
    }
    for outcome in [
        Outcome::Committed,
        Outcome::Compensated,
        Outcome::Stuck,
        Outcome::Abandoned,
    ] {
        events.push(Event::Finished {
            outcome,
            message: format!("{outcome}"),
        });
    }
    events
}

#[test]
fn record_bytes_round_trip_for_every_event() {
    for (i, event) in every_event().into_iter().enumerate() {
        for seq in [0, i as u64, u64::MAX] {
            let record = Record {
                seq,
                event: event.clone(),
            };
            let bytes = record.to_bytes();
            assert_eq!(Record::from_bytes(&bytes).as_ref(), Ok(&record));
            // Also through `Codec`.
            assert_eq!(Record::decode(&encoded(&record)).as_ref(), Ok(&record));
        }
    }
}

#[test]
fn record_bytes_torn_or_trailing_are_errors() {
    for event in every_event() {
        let record = Record { seq: 3, event };
        let bytes = record.to_bytes();
        for cut in 0..bytes.len() {
            assert!(
                Record::from_bytes(&bytes[..cut]).is_err(),
                "{record:?} from {cut} bytes"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(
            Record::from_bytes(&trailing).is_err(),
            "{record:?} + 1 byte"
        );
    }
}

#[test]
fn record_from_garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(7);
    assert!(Record::from_bytes(&[0xff; 64]).is_err());
    for _ in 0..20_000 {
        let len = rng.usize(0..48);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if let Ok(record) = Record::from_bytes(&bytes) {
            // Whatever decodes must encode back to the same bytes.
            assert_eq!(record.to_bytes(), bytes);
        }
    }
}

// ---------------------------------------------------------------------------
// replay: structure
// ---------------------------------------------------------------------------

#[test]
fn replay_first_record_must_be_number_0_created() {
    assert_eq!(replay(&[]), Err(ReplayError::Empty));
    // Only the first: a second `Created` does not follow.
    assert_last_illegal(vec![created()]);
    let not_created = [Record {
        seq: 0,
        event: a_started(0, 1),
    }];
    assert_eq!(replay(&not_created), Err(ReplayError::NotCreated));
    let not_zero = [Record {
        seq: 1,
        event: created(),
    }];
    assert_eq!(replay(&not_zero), Err(ReplayError::NotCreated));
    let history = replay(&[Record {
        seq: 0,
        event: created(),
    }])
    .unwrap();
    assert_eq!(history.definition, "trip");
    assert_eq!(history.version, 3);
    assert_eq!(history.fingerprint, 0xfeed);
    assert_eq!(history.parameters, [1, 2, 3]);
    assert_eq!(history.state(), SagaState::Forward);
}

#[test]
fn replay_reports_gaps_and_repeats() {
    let mut all = records(vec![a_started(0, 1), a_ok(0), a_started(1, 1)]);
    all.remove(2);
    assert_eq!(
        replay(&all),
        Err(ReplayError::Gap {
            expected: 2,
            found: 3
        })
    );
    let mut repeated = records(vec![a_started(0, 1), a_ok(0)]);
    repeated[2].seq = 1;
    assert_eq!(
        replay(&repeated),
        Err(ReplayError::Gap {
            expected: 2,
            found: 1
        })
    );

    // The documented example.
    let history = replay_events(vec![a_started(0, 1)]).unwrap();
    assert_eq!(history.state(), SagaState::Forward);
    assert_eq!(history.step(0).action, Progress::InFlight);
    assert_eq!(history.step(0).action_attempts, 1);
}

// ---------------------------------------------------------------------------
// replay: illegal transitions
// ---------------------------------------------------------------------------

#[test]
fn illegal_action_succeeded_not_in_flight() {
    assert_last_illegal(vec![a_ok(0)]);
    assert_last_illegal(vec![a_started(0, 1), a_ok(0), a_ok(0)]);
    assert_last_illegal(vec![a_started(0, 1), a_failed(0, 1, "x"), a_ok(0)]);
}

#[test]
fn illegal_action_failed_not_in_flight() {
    assert_last_illegal(vec![a_failed(0, 1, "x")]);
    assert_last_illegal(vec![a_started(0, 1), a_ok(0), a_failed(0, 1, "x")]);
}

#[test]
fn illegal_attempts_out_of_order() {
    // Attempts are numbered from 1.
    assert_last_illegal(vec![a_started(0, 0)]);
    assert_last_illegal(vec![a_started(0, 2)]);
    // The attempt that follows is the one `Retrying` named.
    assert_last_illegal(vec![
        a_started(0, 1),
        a_failed(0, 1, "x"),
        Event::Retrying {
            step: 0,
            compensation: false,
            attempt: 2,
        },
        a_started(0, 3),
    ]);
    // An outcome for another attempt than the one in flight.
    assert_last_illegal(vec![a_started(0, 1), a_failed(0, 2, "x")]);
}

#[test]
fn illegal_the_same_attempt_started_twice() {
    assert_last_illegal(vec![a_started(0, 1), a_started(0, 1)]);
    assert_last_illegal(vec![
        a_started(0, 1),
        a_failed(0, 1, "x"),
        Event::Retrying {
            step: 0,
            compensation: false,
            attempt: 2,
        },
        a_started(0, 2),
        a_started(0, 2),
    ]);
}

#[test]
fn illegal_retrying_without_a_failed_attempt() {
    assert_last_illegal(vec![Event::Retrying {
        step: 0,
        compensation: false,
        attempt: 2,
    }]);
    assert_last_illegal(vec![
        a_started(0, 1),
        Event::Retrying {
            step: 0,
            compensation: false,
            attempt: 2,
        },
    ]);
}

#[test]
fn illegal_action_started_again_after_it_succeeded() {
    assert_last_illegal(vec![a_started(0, 1), a_ok(0), a_started(0, 2)]);
}

#[test]
fn illegal_compensation_before_unwinding() {
    assert_last_illegal(vec![a_started(0, 1), a_ok(0), c_started(0, 1)]);
    assert_last_illegal(vec![a_started(0, 1), a_ok(0), c_ok(0)]);
}

#[test]
fn illegal_compensation_outcome_not_in_flight() {
    let unwound = vec![
        a_started(0, 1),
        a_ok(0),
        a_started(1, 1),
        a_failed(1, 1, "x"),
        unwinding(1, Unwind::Failed),
    ];
    let mut succeeded = unwound.clone();
    succeeded.push(c_ok(0));
    assert_last_illegal(succeeded);
    let mut failed = unwound.clone();
    failed.push(c_failed(0, 1, "y"));
    assert_last_illegal(failed);
    let mut first_attempt_two = unwound;
    first_attempt_two.push(c_started(0, 2));
    assert_last_illegal(first_attempt_two);
}

#[test]
fn illegal_actions_after_unwinding_and_unwinding_twice() {
    let unwound = vec![
        a_started(0, 1),
        a_failed(0, 1, "x"),
        unwinding(0, Unwind::Failed),
    ];
    let mut action = unwound.clone();
    action.push(a_started(1, 1));
    assert_last_illegal(action);
    let mut twice = unwound;
    twice.push(unwinding(0, Unwind::Aborted));
    assert_last_illegal(twice);
}

#[test]
fn illegal_anything_but_reopened_after_finished() {
    let done = vec![a_started(0, 1), a_ok(0), finished(Outcome::Committed)];
    for next in [
        a_started(1, 1),
        a_ok(0),
        unwinding(0, Unwind::Aborted),
        c_started(0, 1),
        finished(Outcome::Committed),
        finished(Outcome::Abandoned),
        created(),
    ] {
        let mut events = done.clone();
        events.push(next);
        assert_last_illegal(events);
    }
}

#[test]
fn illegal_reopened_unless_finished_stuck() {
    // In the forward phase, while unwinding, and after every other outcome.
    assert_last_illegal(vec![Event::Reopened]);
    assert_last_illegal(vec![
        a_started(0, 1),
        a_failed(0, 1, "x"),
        unwinding(0, Unwind::Failed),
        Event::Reopened,
    ]);
    for outcome in [Outcome::Committed, Outcome::Abandoned] {
        assert_last_illegal(vec![finished(outcome), Event::Reopened]);
    }
    // Compensated: only after unwinding.
    assert_last_illegal(vec![
        a_started(0, 1),
        a_failed(0, 1, "x"),
        unwinding(0, Unwind::Failed),
        c_started(0, 1),
        c_ok(0),
        finished(Outcome::Compensated),
        Event::Reopened,
    ]);
}

#[test]
fn illegal_compensated_or_stuck_without_unwinding() {
    // `replay`: "a saga ends compensated or stuck only after its `Unwinding`
    // record".
    for outcome in [Outcome::Compensated, Outcome::Stuck] {
        assert_last_illegal(vec![a_started(0, 1), a_ok(0), finished(outcome)]);
    }
}

#[test]
fn illegal_committed_after_unwinding() {
    // `Outcome::Committed`: "Every action succeeded."
    assert_last_illegal(vec![
        a_started(0, 1),
        a_failed(0, 1, "x"),
        unwinding(0, Unwind::Failed),
        c_started(0, 1),
        c_ok(0),
        finished(Outcome::Committed),
    ]);
}

#[test]
fn illegal_compensation_after_a_propagated_unwind() {
    // `Unwind::Propagated`: "The classifier chose not to compensate: nothing
    // is undone."
    assert_last_illegal(vec![
        a_started(0, 1),
        a_ok(0),
        a_started(1, 1),
        a_failed(1, 1, "x"),
        unwinding(1, Unwind::Propagated),
        c_started(0, 1),
    ]);
}

#[test]
fn replay_error_display_and_error_trait() {
    let errors = [
        ReplayError::Empty,
        ReplayError::NotCreated,
        ReplayError::Gap {
            expected: 4,
            found: 6,
        },
        ReplayError::Illegal {
            seq: 9,
            why: "a compensation before unwinding",
        },
    ];
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for (error, text) in errors.iter().zip(&shown) {
        assert!(!text.is_empty(), "{error:?}");
    }
    for (i, a) in shown.iter().enumerate() {
        for b in &shown[i + 1..] {
            assert_ne!(a, b, "two errors display the same");
        }
    }
    assert!(
        shown[3].contains("a compensation before unwinding"),
        "{}",
        shown[3]
    );
    assert_error::<ReplayError>();
}

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

#[test]
fn history_of_a_committed_saga() {
    let history = replay_events(vec![
        a_started(0, 1),
        Event::ActionSucceeded {
            step: 0,
            output: Some(vec![4, 2]),
        },
        a_started(1, 1),
        a_ok(1),
        finished(Outcome::Committed),
    ])
    .unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.unwinding(), None);
    assert_eq!(history.last_error(), None);
    assert_eq!(history.next_seq(), 6);
    assert_eq!(history.steps_mentioned(), 2);
    assert_eq!(
        *history.step(0),
        StepHistory {
            action: Progress::Succeeded,
            action_attempts: 1,
            output: Some(vec![4, 2]),
            compensation: Progress::NotStarted,
            compensation_attempts: 0,
        }
    );
    assert_eq!(history.step(1).action, Progress::Succeeded);
    assert_eq!(history.step(1).output, None);
}

#[test]
fn history_step_the_journal_says_nothing_of_is_untouched() {
    let history = replay_events(vec![a_started(0, 1)]).unwrap();
    assert_eq!(*history.step(1), untouched());
    assert_eq!(*history.step(1_000_000), untouched());
    let fresh = replay_events(vec![]).unwrap();
    assert_eq!(fresh.steps_mentioned(), 0);
    assert_eq!(*fresh.step(0), untouched());
    assert_eq!(fresh.next_seq(), 1);
}

#[test]
fn history_follows_action_retries() {
    let mut history = replay_events(vec![a_started(0, 1)]).unwrap();
    let step = |h: &History| (h.step(0).action, h.step(0).action_attempts);
    assert_eq!(step(&history), (Progress::InFlight, 1));
    let rest = [
        (a_failed(0, 1, "first"), (Progress::Failed, 1)),
        (
            Event::Retrying {
                step: 0,
                compensation: false,
                attempt: 2,
            },
            (Progress::Retrying, 1),
        ),
        (a_started(0, 2), (Progress::InFlight, 2)),
        (a_failed(0, 2, "second"), (Progress::Failed, 2)),
        (
            Event::Retrying {
                step: 0,
                compensation: false,
                attempt: 3,
            },
            (Progress::Retrying, 2),
        ),
        (a_started(0, 3), (Progress::InFlight, 3)),
        (a_ok(0), (Progress::Succeeded, 3)),
    ];
    for (event, expected) in rest {
        let seq = history.next_seq();
        history.apply(&Record { seq, event }).unwrap();
        assert_eq!(history.next_seq(), seq + 1);
        assert_eq!(step(&history), expected);
    }
    assert_eq!(history.last_error(), Some("second"));
    assert_eq!(history.state(), SagaState::Forward);
}

#[test]
fn history_of_a_compensated_saga() {
    let events = vec![
        a_started(0, 1),
        a_ok(0),
        a_started(1, 1),
        a_failed(1, 1, "no hotel"),
        unwinding(1, Unwind::Failed),
        c_started(1, 1),
        c_ok(1),
        c_started(0, 1),
        c_failed(0, 1, "refund down"),
        Event::Retrying {
            step: 0,
            compensation: true,
            attempt: 2,
        },
        c_started(0, 2),
    ];
    let history = replay_events(events.clone()).unwrap();
    assert_eq!(history.state(), SagaState::Unwinding);
    assert_eq!(history.unwinding(), Some((1, Unwind::Failed)));
    assert_eq!(history.last_error(), Some("refund down"));
    assert_eq!(history.step(1).action, Progress::Failed);
    assert_eq!(history.step(1).compensation, Progress::Succeeded);
    assert_eq!(history.step(1).compensation_attempts, 1);
    assert_eq!(history.step(0).action, Progress::Succeeded);
    assert_eq!(history.step(0).compensation, Progress::InFlight);
    assert_eq!(history.step(0).compensation_attempts, 2);
    assert_eq!(history.steps_mentioned(), 2);

    let mut done = events;
    done.extend([c_ok(0), finished(Outcome::Compensated)]);
    let history = replay_events(done).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert_eq!(history.step(0).compensation, Progress::Succeeded);
    assert_eq!(history.unwinding(), Some((1, Unwind::Failed)));
}

#[test]
fn history_compensation_failed_without_retry_is_failed() {
    let history = replay_events(vec![
        a_started(0, 1),
        a_ok(0),
        a_started(1, 1),
        a_failed(1, 1, "x"),
        unwinding(1, Unwind::Aborted),
        c_started(0, 1),
        c_failed(0, 1, "stuck"),
        Event::Finished {
            outcome: Outcome::Stuck,
            message: "saga stuck".into(),
        },
    ])
    .unwrap();
    assert_eq!(history.step(0).compensation, Progress::Failed);
    assert_eq!(history.state(), SagaState::Finished(Outcome::Stuck));
    assert_eq!(history.unwinding(), Some((1, Unwind::Aborted)));
}

#[test]
fn history_reopened_after_stuck_unwinds_once_more() {
    let mut events = vec![
        a_started(0, 1),
        a_ok(0),
        a_started(1, 1),
        a_failed(1, 1, "x"),
        unwinding(1, Unwind::Failed),
        c_started(1, 1),
        c_ok(1),
        c_started(0, 1),
        c_failed(0, 1, "refund down"),
        finished(Outcome::Stuck),
        Event::Reopened,
    ];
    let history = replay_events(events.clone()).unwrap();
    assert_eq!(history.state(), SagaState::Unwinding);
    // "its failed compensations are attempted again": some numbering of the
    // next attempt is accepted (the docs do not say which).
    let accepted: Vec<u32> = [1, 2]
        .into_iter()
        .filter(|&attempt| {
            let mut next = events.clone();
            next.push(c_started(0, attempt));
            replay_events(next).is_ok()
        })
        .collect();
    assert_eq!(accepted.len(), 1, "accepted attempts {accepted:?}");
    events.extend([
        c_started(0, accepted[0]),
        c_ok(0),
        finished(Outcome::Compensated),
    ]);
    let history = replay_events(events).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert_eq!(history.step(0).compensation, Progress::Succeeded);
}

#[test]
fn history_propagated_then_stuck_is_legal() {
    let history = replay_events(vec![
        a_started(0, 1),
        a_ok(0),
        a_started(1, 1),
        a_failed(1, 1, "fatal"),
        unwinding(1, Unwind::Propagated),
        Event::Finished {
            outcome: Outcome::Stuck,
            message: "fatal".into(),
        },
    ])
    .unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Stuck));
    assert_eq!(history.unwinding(), Some((1, Unwind::Propagated)));
    assert_eq!(history.step(0).compensation, Progress::NotStarted);
}

#[test]
fn history_apply_matches_replay_and_checks_numbers() {
    let all = records(vec![
        a_started(0, 1),
        a_ok(0),
        a_started(1, 1),
        a_failed(1, 1, "x"),
        unwinding(1, Unwind::Deadline),
        c_started(1, 1),
        c_ok(1),
    ]);
    let mut history = replay(&all[..1]).unwrap();
    for record in &all[1..] {
        history.apply(record).unwrap();
    }
    assert_eq!(history, replay(&all).unwrap());
    assert_eq!(history.next_seq(), all.len() as u64);
    let skip = Record {
        seq: history.next_seq() + 1,
        event: c_started(0, 1),
    };
    assert_eq!(
        history.apply(&skip),
        Err(ReplayError::Gap {
            expected: all.len() as u64,
            found: all.len() as u64 + 1
        })
    );
    let illegal = Record {
        seq: history.next_seq(),
        event: a_started(2, 1),
    };
    assert!(matches!(
        history.apply(&illegal),
        Err(ReplayError::Illegal { seq, .. }) if seq == all.len() as u64
    ));
}

// ---------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------

#[test]
fn registry_builds_from_encoded_parameters_and_passes_the_context() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut registry: Registry<String> = Registry::new();
    registry.register(
        "transfer",
        1,
        move |amount: &(u64, String), context: &SagaContext| {
            log.lock()
                .unwrap()
                .push((amount.clone(), context.id(), context.epoch()));
            let ran = log.clone();
            let amount = amount.0;
            let id = context.id();
            SagaBuilder::new()
                .add_step(
                    move || {
                        let ran = ran.clone();
                        async move {
                            ran.lock().unwrap().push(((amount, "ran".into()), id, 99));
                            Ok::<_, String>(())
                        }
                    },
                    || async { Ok(()) },
                )
                .build()
        },
    );
    let parameters = registry.encode_parameters(&(250_u64, String::from("eur")));
    assert_eq!(parameters, encoded(&(250_u64, String::from("eur"))));
    let context = SagaContext::new(SagaId(5)).with_epoch(3);
    let mut saga = registry
        .build("transfer", 1, &parameters, &context)
        .unwrap();
    assert_eq!(saga.len(), 1);
    smol::block_on(saga.run()).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ((250, "eur".into()), SagaId(5), 3),
            ((250, "ran".into()), SagaId(5), 99)
        ]
    );
}

#[test]
fn registry_latest_and_replacing() {
    let mut registry: Registry<String> = Registry::new();
    assert_eq!(registry.latest("trip"), None);
    registry
        .register("trip", 2, one_step)
        .register("trip", 7, one_step)
        .register("trip", 3, one_step)
        .register("other", 9, one_step);
    assert_eq!(registry.latest("trip"), Some(7));
    assert_eq!(registry.latest("other"), Some(9));
    assert_eq!(registry.latest("tri"), None);
    let context = SagaContext::new(SagaId(1));
    let parameters = registry.encode_parameters(&0_u64);
    assert_eq!(
        registry
            .build("trip", 2, &parameters, &context)
            .unwrap()
            .len(),
        1
    );
    registry.register("trip", 2, two_steps);
    assert_eq!(
        registry
            .build("trip", 2, &parameters, &context)
            .unwrap()
            .len(),
        2,
        "the second registration replaces the first"
    );
    assert_eq!(
        registry
            .build("trip", 3, &parameters, &context)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn registry_unknown_definition_or_version_is_quarantined() {
    let mut registry: Registry<String> = Registry::default();
    registry.register("trip", 1, one_step);
    let context = SagaContext::new(SagaId(1));
    let parameters = registry.encode_parameters(&1_u64);
    match registry.build("refund", 1, &parameters, &context) {
        Err(Quarantined::UnknownDefinition { name, version }) => {
            assert_eq!((name.as_str(), version), ("refund", 1));
        }
        other => panic!("{other:?}"),
    }
    match registry.build("trip", 2, &parameters, &context) {
        Err(error @ Quarantined::UnknownDefinition { .. }) => {
            assert_eq!(
                error,
                Quarantined::UnknownDefinition {
                    name: "trip".into(),
                    version: 2
                }
            );
            assert!(error.to_string().contains("trip"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn registry_bad_parameters_are_quarantined() {
    let mut registry: Registry<String> = Registry::new();
    registry.register("trip", 1, one_step);
    let context = SagaContext::new(SagaId(1));
    let good = registry.encode_parameters(&1_u64);
    let mut trailing = good.clone();
    trailing.push(0);
    for bad in [&good[..3], &[][..], &trailing[..]] {
        match registry.build("trip", 1, bad, &context) {
            Err(Quarantined::Parameters(error)) => {
                let quarantined = Quarantined::Parameters(error.clone());
                let source = quarantined
                    .source()
                    .expect("the decode error is the source");
                assert_eq!(source.to_string(), error.to_string());
                assert!(!quarantined.to_string().is_empty());
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

fn history_of(definition: &str, version: u32, fingerprint: u64, parameters: Vec<u8>) -> History {
    replay(&[Record {
        seq: 0,
        event: Event::Created {
            definition: definition.into(),
            version,
            fingerprint,
            parameters,
        },
    }])
    .unwrap()
}

#[test]
fn registry_rebuild_checks_the_fingerprint() {
    let mut registry: Registry<String> = Registry::new();
    registry.register("trip", 1, one_step);
    let context = SagaContext::new(SagaId(1));
    let parameters = registry.encode_parameters(&0_u64);
    let journaled = registry
        .build("trip", 1, &parameters, &context)
        .unwrap()
        .fingerprint();
    let history = history_of("trip", 1, journaled, parameters.clone());
    assert_eq!(registry.rebuild(&history, &context).unwrap().len(), 1);

    // The definition changed shape under the same version.
    registry.register("trip", 1, two_steps);
    let current = two_steps(&0, &context).fingerprint();
    assert_ne!(current, journaled);
    match registry.rebuild(&history, &context) {
        Err(error) => {
            assert_eq!(
                error,
                Quarantined::FingerprintChanged {
                    recorded: journaled,
                    current
                }
            );
            assert!(!error.to_string().is_empty());
        }
        Ok(saga) => panic!("rebuilt a saga of {} steps", saga.len()),
    }
    // Registering the old shape under the old version finishes it.
    registry
        .register("trip", 1, one_step)
        .register("trip", 2, two_steps);
    assert!(registry.rebuild(&history, &context).is_ok());
    assert_eq!(registry.latest("trip"), Some(2));
}

#[test]
fn registry_rebuild_unknown_and_bad_parameters() {
    let mut registry: Registry<String> = Registry::new();
    registry.register("trip", 1, one_step);
    let context = SagaContext::new(SagaId(1));
    let unknown = history_of("trip", 4, 0, encoded(&0_u64));
    assert_eq!(
        registry.rebuild(&unknown, &context).err(),
        Some(Quarantined::UnknownDefinition {
            name: "trip".into(),
            version: 4
        })
    );
    let bad = history_of("trip", 1, 0, vec![1]);
    assert!(matches!(
        registry.rebuild(&bad, &context),
        Err(Quarantined::Parameters(_))
    ));
}

#[test]
fn quarantined_displays_and_converts_from_replay_errors() {
    let corrupt: Quarantined = ReplayError::Gap {
        expected: 1,
        found: 2,
    }
    .into();
    assert_eq!(
        corrupt,
        Quarantined::Corrupt(ReplayError::Gap {
            expected: 1,
            found: 2
        })
    );
    let source = corrupt.source().expect("the replay error is the source");
    assert_eq!(
        source.to_string(),
        ReplayError::Gap {
            expected: 1,
            found: 2
        }
        .to_string()
    );
    let all = [
        Quarantined::UnknownDefinition {
            name: "trip".into(),
            version: 1,
        },
        Quarantined::Parameters(DecodeError::new("truncated", 2)),
        Quarantined::FingerprintChanged {
            recorded: 1,
            current: 2,
        },
        corrupt,
    ];
    let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
    for (i, a) in shown.iter().enumerate() {
        assert!(!a.is_empty());
        for b in &shown[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_error::<Quarantined>();
}

// ---------------------------------------------------------------------------
// SagaContext, SagaId
// ---------------------------------------------------------------------------

#[test]
fn saga_id_displays_as_32_hex_digits() {
    assert_eq!(
        SagaId(0xabc).to_string(),
        "00000000000000000000000000000abc"
    );
    assert_eq!(SagaId(0).to_string(), "0".repeat(32));
    assert_eq!(SagaId(u128::MAX).to_string(), "f".repeat(32));
    let id = SagaId(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    assert_eq!(id.to_string(), "0123456789abcdeffedcba9876543210");
    assert_eq!(SagaId::default(), SagaId(0));
    assert!(SagaId(1) < SagaId(2));
}

#[test]
fn saga_context_key_and_epoch() {
    let context = SagaContext::new(SagaId(7));
    assert_eq!(context.id(), SagaId(7));
    assert_eq!(context.epoch(), 0);
    assert_eq!(context.key(2), "00000000000000000000000000000007-2");
    let leased = context.with_epoch(12);
    assert_eq!(leased.epoch(), 12);
    assert_eq!(leased.id(), SagaId(7));
    // The same in every run of this saga, whatever the lease.
    assert_eq!(leased.key(2), context.key(2));
    assert_eq!(SagaContext::new(SagaId(7)).key(0), context.key(0));
    // Different for every other saga and step.
    let mut keys: Vec<String> = Vec::new();
    for id in [1_u128, 2, 12, 0x1_0000_0000_0000_0000] {
        for step in [0, 1, 2, 10, 12] {
            keys.push(SagaContext::new(SagaId(id)).key(step));
        }
    }
    let count = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), count);
}

// ---------------------------------------------------------------------------
// Saga::fingerprint, Saga::unsaved_outputs, Step's journal methods
// ---------------------------------------------------------------------------

#[test]
fn fingerprint_is_stable_and_follows_names_and_count() {
    assert_eq!(
        named(&["a", "b"]).fingerprint(),
        named(&["a", "b"]).fingerprint()
    );
    let fingerprints = [
        named(&[]).fingerprint(),
        named(&["a"]).fingerprint(),
        named(&["a", "b"]).fingerprint(),
        named(&["b", "a"]).fingerprint(),
        named(&["a", "b", "c"]).fingerprint(),
        named(&["ab"]).fingerprint(),
        named(&["a", "c"]).fingerprint(),
        SagaBuilder::<String>::new()
            .step(ok_step!())
            .build()
            .fingerprint(),
        SagaBuilder::<String>::new()
            .step(ok_step!())
            .step(ok_step!())
            .build()
            .fingerprint(),
    ];
    for (i, a) in fingerprints.iter().enumerate() {
        for (j, b) in fingerprints.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "shapes {i} and {j} share a fingerprint");
        }
    }
    assert_eq!(named(&[]).fingerprint(), named(&[]).fingerprint());
}

#[test]
fn fingerprint_follows_parallel_groups() {
    let sequential: Saga<String> = SagaBuilder::new()
        .step(ok_step!().named("a"))
        .step(ok_step!().named("b"))
        .step(ok_step!().named("c"))
        .build();
    let front: Saga<String> = SagaBuilder::new()
        .parallel(|group| {
            group
                .step(ok_step!().named("a"))
                .step(ok_step!().named("b"))
        })
        .step(ok_step!().named("c"))
        .build();
    let back: Saga<String> = SagaBuilder::new()
        .step(ok_step!().named("a"))
        .parallel(|group| {
            group
                .step(ok_step!().named("b"))
                .step(ok_step!().named("c"))
        })
        .build();
    let all: Saga<String> = SagaBuilder::new()
        .parallel(|group| {
            group
                .step(ok_step!().named("a"))
                .step(ok_step!().named("b"))
                .step(ok_step!().named("c"))
        })
        .build();
    let f = [
        sequential.fingerprint(),
        front.fingerprint(),
        back.fingerprint(),
        all.fingerprint(),
    ];
    assert_eq!(front.parallel_groups().collect::<Vec<_>>(), [0..2]);
    for (i, a) in f.iter().enumerate() {
        for b in &f[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn fingerprint_follows_what_steps_compensate_and_save() {
    let compensates: Saga<String> = SagaBuilder::new().step(ok_step!().named("a")).build();
    let does_not: Saga<String> = SagaBuilder::new()
        .step(ok_step!().named("a").compensate_failed_action(false))
        .build();
    assert_ne!(compensates.fingerprint(), does_not.fingerprint());
    let nothing: Saga<String> = SagaBuilder::new()
        .step(Keeps(StepOutput::Nothing, None))
        .build();
    let saved: Saga<String> = SagaBuilder::new()
        .step(Keeps(StepOutput::Saved, None))
        .build();
    let unsaved: Saga<String> = SagaBuilder::new()
        .step(Keeps(StepOutput::Unsaved, None))
        .build();
    assert_ne!(nothing.fingerprint(), saved.fingerprint());
    assert_ne!(saved.fingerprint(), unsaved.fingerprint());
    assert_ne!(nothing.fingerprint(), unsaved.fingerprint());
}

#[test]
fn fingerprint_ignores_retry_and_timeout_policies() {
    let plain = named(&["a", "b"]).fingerprint();
    let retried: Saga<String> = SagaBuilder::new()
        .action_retry(Retry::attempts(5))
        .compensation_retry(Retry::attempts(3))
        .step(ok_step!().named("a"))
        .step_with(
            ok_step!().named("b"),
            StepPolicy::new().retry(Retry::attempts(2)),
        )
        .build();
    assert_eq!(retried.fingerprint(), plain);
    let timed: Saga<String> = SagaBuilder::new()
        .sleeper(|duration| smol::Timer::after(duration))
        .action_timeout(Duration::from_secs(1))
        .compensation_timeout(Duration::from_secs(2))
        .saga_timeout(Duration::from_secs(60))
        .step(ok_step!().named("a"))
        .step_with(
            ok_step!().named("b"),
            StepPolicy::new()
                .timeout(Duration::from_millis(5))
                .retry(Retry::attempts(4).constant(Duration::from_millis(1))),
        )
        .build();
    assert_eq!(timed.fingerprint(), plain);
}

#[test]
fn unsaved_outputs_lists_steps_that_say_unsaved() {
    let saga: Saga<String> = SagaBuilder::new()
        .step(Keeps(StepOutput::Unsaved, None))
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .step(Keeps(StepOutput::Saved, None))
        .step(Keeps(StepOutput::Nothing, None))
        .step(Keeps(StepOutput::Unsaved, None))
        .step(Bare)
        .build();
    assert_eq!(saga.unsaved_outputs().collect::<Vec<_>>(), [0, 4]);
    assert_eq!(named(&["a", "b"]).unsaved_outputs().count(), 0);
}

#[test]
fn unsaved_outputs_lists_typed_steps_without_a_codec() {
    let saga: Saga<String> = SagaBuilder::new()
        .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
        .add_typed_step(
            || async { Ok::<_, String>(1_u32) },
            |_: u32| async { Ok(()) },
        )
        .step(Keeps(StepOutput::Saved, None))
        .step(TypedStep::by_ref(
            || async { Ok::<_, String>(String::new()) },
            |_: &String| async { Ok(()) },
        ))
        .step(Keeps(StepOutput::Unsaved, None))
        .step(Bare)
        .build();
    assert_eq!(saga.unsaved_outputs().collect::<Vec<_>>(), [1, 3, 4]);
    assert_eq!(named(&["a", "b"]).unsaved_outputs().count(), 0);
}

#[test]
fn step_journal_methods_default_to_nothing() {
    let mut bare = Bare;
    assert_eq!(Step::<String>::output(&bare), StepOutput::Nothing);
    let mut out = vec![9];
    Step::<String>::save_output(&bare, &mut out);
    assert_eq!(out, [9], "the default saves nothing");
    assert_eq!(
        Step::<String>::restore(Pin::new(&mut bare), Restored::Attempted),
        Ok(())
    );
    assert_eq!(
        Step::<String>::restore(Pin::new(&mut bare), Restored::Succeeded(Some(&[1, 2]))),
        Ok(())
    );
    assert_eq!(
        Step::<String>::restore(Pin::new(&mut bare), Restored::Succeeded(None)),
        Ok(())
    );
    assert_eq!(Step::<String>::output(&ok_step!()), StepOutput::Nothing);
}

#[test]
fn typed_steps_keep_an_unsaved_value() {
    let by_value =
        TypedStep::by_value(|| async { Ok::<_, String>(1_u8) }, |_: u8| async { Ok(()) });
    let by_ref = TypedStep::by_ref(
        || async { Ok::<_, String>(1_u8) },
        |_: &u8| async { Ok(()) },
    );
    let by_option = TypedStep::by_option(
        || async { Ok::<_, String>(1_u8) },
        |_: Option<u8>| async { Ok(()) },
    );
    assert_eq!(Step::<String>::output(&by_value), StepOutput::Unsaved);
    assert_eq!(Step::<String>::output(&by_ref), StepOutput::Unsaved);
    assert_eq!(Step::<String>::output(&by_option), StepOutput::Unsaved);
}

#[test]
fn a_user_step_saves_and_restores_its_value() {
    // The protocol as the docs describe it: `save_output` after a successful
    // action, `restore` with those bytes instead of running the action.
    let mut first = Keeps(StepOutput::Saved, None);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(
        Step::<String>::poll_action(Pin::new(&mut first), &mut cx),
        Poll::Ready(Ok(()))
    );
    let mut bytes = Vec::new();
    Step::<String>::save_output(&first, &mut bytes);
    let record = Record {
        seq: 2,
        event: Event::ActionSucceeded {
            step: 0,
            output: Some(bytes.clone()),
        },
    };
    let history = replay(&[
        Record {
            seq: 0,
            event: created(),
        },
        Record {
            seq: 1,
            event: a_started(0, 1),
        },
        Record::from_bytes(&record.to_bytes()).unwrap(),
    ])
    .unwrap();
    let saved = history.step(0).output.as_deref();
    assert_eq!(saved, Some(&bytes[..]));
    let mut second = Keeps(StepOutput::Saved, None);
    Step::<String>::restore(Pin::new(&mut second), Restored::Succeeded(saved)).unwrap();
    assert_eq!(second.1, Some(42));
    assert!(
        Step::<String>::restore(Pin::new(&mut second), Restored::Succeeded(Some(&[1]))).is_err()
    );
}

// ---------------------------------------------------------------------------
// Journal, JournalError
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<Record>>>, Option<JournalErrorKind>);
impl Journal for Shared {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        if let Some(kind) = self.1 {
            return Err(JournalError::new(kind, "refused"));
        }
        self.0.lock().unwrap().push(record.clone());
        Ok(())
    }
    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        match self.1 {
            Some(kind) => Poll::Ready(Err(JournalError::new(kind, "cannot flush"))),
            None => Poll::Ready(Ok(())),
        }
    }
}

fn append_and_flush<J: Journal>(mut journal: J, record: &Record) -> Result<(), JournalError> {
    journal.append(record)?;
    let mut cx = Context::from_waker(Waker::noop());
    match journal.poll_flush(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("an in-memory journal is durable at once"),
    }
}

#[test]
fn journal_is_object_safe_and_forwards_through_box_and_mut() {
    let journal = Shared::default();
    let record = Record {
        seq: 0,
        event: created(),
    };
    let boxed: Box<dyn Journal> = Box::new(journal.clone());
    append_and_flush(boxed, &record).unwrap();
    let mut by_ref = journal.clone();
    append_and_flush(&mut by_ref, &record).unwrap();
    append_and_flush(&mut by_ref as &mut dyn Journal, &record).unwrap();
    assert_eq!(journal.0.lock().unwrap().len(), 3);

    let fenced = Shared(Arc::default(), Some(JournalErrorKind::Fenced));
    let boxed: Box<dyn Journal + Send> = Box::new(fenced);
    let error = append_and_flush(boxed, &record).unwrap_err();
    assert_eq!(error.kind(), JournalErrorKind::Fenced);
    assert_eq!(error.message(), "refused");
}

#[test]
fn journal_error_kind_message_display_and_error_trait() {
    for kind in [
        JournalErrorKind::Storage,
        JournalErrorKind::Fenced,
        JournalErrorKind::Closed,
    ] {
        let error = JournalError::new(kind, format!("disk {kind:?}"));
        assert_eq!(error.kind(), kind);
        assert_eq!(error.message(), format!("disk {kind:?}"));
        assert!(
            error.to_string().contains(&format!("disk {kind:?}")),
            "{error}"
        );
        assert_eq!(error.clone(), error);
    }
    assert_ne!(
        JournalError::new(JournalErrorKind::Storage, "x"),
        JournalError::new(JournalErrorKind::Closed, "x")
    );
    assert_error::<JournalError>();
}

#[test]
fn outcome_displays_distinctly_and_unwind_and_outcome_tags_are_checked() {
    let mut bad = encoded(&Outcome::Stuck);
    bad[0] = 0xff;
    assert!(Outcome::decode(&bad).is_err());
    let mut bad = encoded(&Unwind::Deadline);
    bad[0] = 0xff;
    assert!(Unwind::decode(&bad).is_err());
    let shown: Vec<String> = [
        Outcome::Committed,
        Outcome::Compensated,
        Outcome::Stuck,
        Outcome::Abandoned,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    for (i, a) in shown.iter().enumerate() {
        assert!(!a.is_empty());
        for b in &shown[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
