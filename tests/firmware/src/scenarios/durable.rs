//! Durable sagas on the device: a `Journal` over a byte array standing for
//! a flash page (records as `Record::to_bytes`, length-prefixed, written by
//! a flush that is busy for one poll). A committed run; then a "power cut"
//! while step 1 runs (the run stalls, is dropped, and what was not flushed
//! is lost), a reboot that reads the page back, replays it and resumes:
//! compensating, with step 0's saved value read from the page, or, with a
//! retry left, running step 1 again to commit. A changed shape is refused.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll};

use saga_core::journal::{
    DurableError, Journal, JournalError, JournalErrorKind, Outcome, Progress, Record, Refused,
    SagaState, Start, replay,
};
use saga_core::{Retry, Saga, SagaBuilder, StopReason, TypedStep};

use crate::exec::{self, Never, Stall, Yield};
use crate::support::{Error, Shared, check, check_eq, drive};

const PAGE: usize = 1024;

/// A flash page: bytes written only by a flush, in order.
#[derive(Debug)]
struct Page {
    bytes: [u8; PAGE],
    written: usize,
    flushes: u32,
}

impl Page {
    fn new() -> Self {
        Page {
            bytes: [0xFF; PAGE],
            written: 0,
            flushes: 0,
        }
    }

    /// The records on the page, as a reboot reads them back.
    fn records(&self) -> Result<Vec<Record>, String> {
        let mut records = Vec::new();
        let mut at = 0;
        while at < self.written {
            let len = usize::from(u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]]));
            let record = Record::from_bytes(&self.bytes[at + 2..at + 2 + len])
                .map_err(|error| alloc::format!("record at byte {at}: {error:?}"))?;
            records.push(record);
            at += 2 + len;
        }
        Ok(records)
    }
}

/// The journal over a page: appends go to RAM, a flush programs them (busy
/// for one poll, as a flash controller would be). Dropping it loses what
/// was not flushed. It shares the page rather than borrowing it: a saga's
/// journal is a `dyn Journal + Send + 'static`.
struct PageJournal {
    page: Shared<Page>,
    buffered: Vec<u8>,
    busy: bool,
}

impl PageJournal {
    fn new(page: &Shared<Page>) -> Self {
        PageJournal {
            page: page.clone(),
            buffered: Vec::new(),
            busy: false,
        }
    }
}

impl Journal for PageJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let bytes = record.to_bytes();
        let len = u16::try_from(bytes.len())
            .map_err(|_| JournalError::new(JournalErrorKind::Storage, "record too long"))?;
        self.buffered.extend_from_slice(&len.to_le_bytes());
        self.buffered.extend_from_slice(&bytes);
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        if self.buffered.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if !self.busy {
            self.busy = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.busy = false;
        let buffered = &self.buffered;
        let programmed = self.page.with(|page| {
            let start = page.written;
            let end = start + buffered.len();
            if end > PAGE {
                return Err(JournalError::new(JournalErrorKind::Storage, "page full"));
            }
            page.bytes[start..end].copy_from_slice(buffered);
            page.written = end;
            page.flushes += 1;
            Ok(())
        });
        if programmed.is_ok() {
            self.buffered.clear();
        }
        Poll::Ready(programmed)
    }
}

/// Step 0 books (a saved `u32`, 7) and its compensation records what it
/// received; step 1 hangs in the first "process" when `hang`; step 2 is
/// plain. `retries` attempts for each action.
fn trip(received: &Arc<AtomicU32>, hang: bool, retries: u32) -> Saga<Error> {
    let received = received.clone();
    SagaBuilder::new()
        .action_retry(Retry::attempts(retries))
        .step(
            TypedStep::by_value(
                || async {
                    Yield(1).await;
                    Ok(7u32)
                },
                move |booking: u32| {
                    let received = received.clone();
                    async move {
                        received.store(booking, Ordering::Relaxed);
                        Ok(())
                    }
                },
            )
            .saved(),
        )
        .add_step(
            move || async move {
                if hang {
                    Never.await;
                }
                Ok(())
            },
            || async { Ok(()) },
        )
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build()
}

/// Runs `trip(.., hang = true, ..)` on `page` until it stalls in step 1,
/// then drops it: the power cut.
fn crash(page: &Shared<Page>, retries: u32) -> Result<(), String> {
    let received = Arc::new(AtomicU32::new(0));
    let mut saga = trip(&received, true, retries);
    let mut journal = PageJournal::new(page);
    let run = saga
        .run_journaled(&mut journal, Start::new("trip", 1, Vec::new()))
        .map_err(|refused| alloc::format!("refused: {refused:?}"))?;
    match exec::block_on(run) {
        Err(Stall::Idle { .. }) => Ok(()),
        Err(stall) => Err(alloc::format!("the crashing run: {stall:?}")),
        Ok(result) => Err(alloc::format!("the crashing run ended: {result:?}")),
    }
}

pub fn run() -> Result<(), String> {
    // Committed: once per step and once at the end, one flush each.
    let page = Shared::new(Page::new());
    let received = Arc::new(AtomicU32::new(0));
    let mut saga = trip(&received, false, 1);
    let mut journal = PageJournal::new(&page);
    let run = saga
        .run_journaled(&mut journal, Start::new("trip", 1, Vec::new()))
        .map_err(|refused| alloc::format!("refused: {refused:?}"))?;
    let result = drive("journaled run", run)?;
    check!(result.is_ok(), "the journaled run failed: {:?}", result);
    drop(journal);
    let records = page.with(|page| page.records())?;
    check_eq!(records.len(), 8, "records (created, 2 per step, finished)");
    check_eq!(page.with(|page| page.flushes), 4, "flushes");
    let history = replay(&records).map_err(|error| alloc::format!("replay: {error:?}"))?;
    check_eq!(
        history.state(),
        SagaState::Finished(Outcome::Committed),
        "state"
    );

    // A power cut in step 1, no retry left: the reboot compensates step 1
    // (cut short by the crash) and step 0, with the value from the page.
    let page = Shared::new(Page::new());
    crash(&page, 1)?;
    let records = page.with(|page| page.records())?;
    let history = replay(&records).map_err(|error| alloc::format!("replay: {error:?}"))?;
    check_eq!(history.state(), SagaState::Forward, "state after the crash");
    check_eq!(history.step(0).action, Progress::Succeeded, "step 0");
    check_eq!(history.step(1).action, Progress::InFlight, "step 1");
    let received = Arc::new(AtomicU32::new(0));
    let mut saga = trip(&received, false, 1);
    let mut journal = PageJournal::new(&page);
    let resumed = saga
        .resume(&mut journal, &history)
        .map_err(|refused| alloc::format!("resume refused: {refused:?}"))?;
    let error = match drive("resumed run", resumed)? {
        Err(DurableError::Saga(error)) => error,
        other => return Err(alloc::format!("the resumed run: {other:?}")),
    };
    check_eq!(error.reason(), StopReason::Crashed, "reason");
    check_eq!(error.failed_step(), 1, "failed step");
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(
        received.load(Ordering::Relaxed),
        7,
        "step 0's value, from the page"
    );
    drop(journal);
    let history = replay(&page.with(|page| page.records())?)
        .map_err(|error| alloc::format!("replay: {error:?}"))?;
    check_eq!(
        history.state(),
        SagaState::Finished(Outcome::Compensated),
        "state after the resume"
    );

    // The same crash with a retry left: step 1 runs again, and it commits.
    let page = Shared::new(Page::new());
    crash(&page, 2)?;
    let history = replay(&page.with(|page| page.records())?)
        .map_err(|error| alloc::format!("replay: {error:?}"))?;
    let mut saga = trip(&received, false, 2);
    let mut journal = PageJournal::new(&page);
    let resumed = saga
        .resume(&mut journal, &history)
        .map_err(|refused| alloc::format!("resume refused: {refused:?}"))?;
    let result = drive("resumed run", resumed)?;
    check!(result.is_ok(), "the resumed run failed: {:?}", result);
    drop(journal);
    let history = replay(&page.with(|page| page.records())?)
        .map_err(|error| alloc::format!("replay: {error:?}"))?;
    check_eq!(
        history.state(),
        SagaState::Finished(Outcome::Committed),
        "state after the resume"
    );
    check_eq!(history.step(1).action_attempts, 2, "step 1's attempts");

    // A saga of another shape is refused, with nothing run.
    let page = Shared::new(Page::new());
    crash(&page, 1)?;
    let history = replay(&page.with(|page| page.records())?)
        .map_err(|error| alloc::format!("replay: {error:?}"))?;
    let mut other: Saga<Error> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let mut journal = PageJournal::new(&page);
    check!(
        matches!(
            other.resume(&mut journal, &history),
            Err(Refused::FingerprintChanged { .. })
        ),
        "a changed shape was not refused"
    );
    Ok(())
}
