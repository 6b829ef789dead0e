//! [`Run`]: the poll-driven state machine of one saga run.
//!
//! One engine, whose rules each live in one file:
//!
//! - `attempt.rs`: one step's attempts in a lane (timeouts, retries,
//!   backoff, the classifier, cutting an attempt short);
//! - `forward.rs`: the blocks (runs of single steps, parallel groups) as
//!   forward waves, a member's end, interrupts (abort, deadline) and panics
//!   outside any step, and what the failed block leaves to undo;
//! - `backward.rs`: which steps are compensated, in which waves (by the
//!   compensation mode), and what a failed compensation stops;
//! - `sequence.rs` and the side-by-side loops of `forward.rs` and
//!   `backward.rs`: how a wave's steps are started and polled, one at a
//!   time in lane 0 or several at once with a waker each (the wave's shape
//!   decides, once per wave; the rules above are the same for both);
//! - `observe.rs`: the transitions an observer (and `tracing`) receives;
//! - `scratch.rs`, `wakers.rs`: the lanes a run borrows from its saga.
//!
//! A run borrows the saga's [`Plan`] (decided by `build()`) and owns only its
//! progress. Each step in flight occupies a *lane*; a single step uses lane 0
//! and the run's own waker, a wave of several steps side by side gives each
//! its lane's waker, so that only the woken steps are polled.

mod attempt;
mod backward;
mod durable;
mod forward;
mod observe;
mod scratch;
mod sequence;
mod table;
mod wakers;

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

pub(crate) use durable::Link;
pub(crate) use scratch::Scratch;
use scratch::{Panic, Stage};
pub use table::StepTable;
pub(crate) use table::sealed::Sealed as TableSealed;

use crate::abort::Attachment;
use crate::marker::SagaKind;
use crate::plan::Plan;
use crate::sleep::{Slot, Timers};
use crate::{AbortHandle, Aborted, Observer, SagaError, Step, StepFailure, StopReason, TimedOut};

/// The future of one saga run, returned by [`Saga::run`](crate::Saga::run).
///
/// A small state machine over the saga's steps. It holds no step futures
/// itself (each step keeps its own in flight, and timers and wakers live in
/// the saga), allocates nothing per poll, and never recurses, so sagas of any
/// length run on a small stack.
///
/// It is `Unpin`, and `Send` when the saga's steps and `E` are.
///
/// # Cancel safety
///
/// Dropping a `Run` before it completes stops the saga without compensating:
/// the steps in flight are [reset](Step::reset), so their futures are
/// dropped, and the steps already applied stay applied. Poll it to
/// completion, use an [`AbortHandle`] to stop it with compensation, or spawn
/// it with a runtime adapter.
///
/// # Panics
///
/// Polling a `Run` after it returned `Ready` panics. A panic in a step or in
/// a callback of the saga (classifier, jitter function, observer, sleeper)
/// unwinds out of `poll`. Wrapped in `rt::CatchPanics` (with the `std`
/// [feature](crate#features); `rt::detach` and the runtime adapters' `spawn`
/// wrap every run in it), the panic instead fails what was panicking, and
/// the saga compensates by its rules.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Run<
    'a,
    E,
    S: ?Sized + SagaKind<E> = dyn Step<E> + Send + 'static,
    B: ?Sized + StepTable<E> = [Pin<Box<S>>],
> {
    steps: Pin<&'a mut B>,
    plan: &'a Plan<E, S>,
    scratch: &'a mut Scratch<E>,
    // `None` without a sleeper, and once the sleeper panicked.
    timers: Option<&'a mut S::Timers>,
    timed_out: Option<fn(TimedOut) -> E>,
    abort: Option<Abort<E>>,
    // `None` without an observer, and once the observer panicked.
    observer: Option<&'a S::Observer>,
    // The classifier or the jitter functions panicked in this run: they are
    // not asked again.
    classifier_muted: bool,
    jitter_muted: bool,
    phase: Phase,
    // The wave in progress, in `Forward` and `Backward`. It lives only here,
    // never in a local copy kept across a call, so that a panic in a step
    // (see `fail_in_flight`) cannot lose an update.
    wave: Wave,
    // Set at the first failure of the forward phase; completed backward.
    failure: Option<SagaError<E>>,
    // The block whose members' outcomes are in `scratch.outcomes`.
    failed_block: Option<(usize, usize)>,
    interrupt: Option<Interrupted>,
    // An abort handle or a deadline may interrupt the forward phase, and
    // `interrupt` is not set yet: there is something to look at between
    // steps.
    watch: bool,
    // Nothing observes a run's transitions (no observer, no timers, no
    // `tracing` subscriber): one step's end and the next one's start are
    // then seen by nobody in between.
    quiet: bool,
    // Neither a journal, an observer nor a `tracing` span hears the
    // transitions (set at the start).
    unheard: bool,
    // A panic outside any lane, to fail the forward phase with.
    stray_failure: Option<E>,
    // The foreign code being called, for `fail_in_flight`.
    calling: Calling,
    // The observer is being told that this lane's attempt failed (or is to
    // be retried; `true`: a panic fails it for good).
    failing_lane: Option<(usize, bool)>,
    // The journal of a durable run (`None`: the run keeps no journal).
    durable: Option<Box<Link<'a, E, S::Journal>>>,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// The saga's timers as a run borrows them, and how a timeout becomes an `E`.
pub(crate) type BorrowedClock<'a, E, S> = (&'a mut <S as SagaKind<E>>::Timers, fn(TimedOut) -> E);

struct Abort<E> {
    // Registered at the first poll of the forward phase, detached when it
    // ends (or when the run is dropped).
    handle: Attachment,
    aborted: fn(Aborted) -> E,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    // `wave` is the forward wave in progress.
    Forward,
    // `wave` is the backward wave in progress.
    Backward,
    // Finished; the result is yet to be returned.
    Done,
    // The result was returned.
    Reported,
}

/// The steps `start..end` being run (forward) or compensated (backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Wave {
    start: usize,
    end: usize,
    // Forward: the next member to start, ascending. Backward: steps
    // `start..next` are still to start, the last one first.
    next: usize,
    // At most this many steps in flight (in lanes `0..limit`).
    limit: usize,
    // Forward: single steps one after another (not a group), whose only
    // outcome kept is the current step's.
    sequence: bool,
    cut_short_on_failure: bool,
    // No new step starts: a member failed, or the run was interrupted.
    halted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Action,
    Compensation,
}

/// An abort or a deadline, and where it found the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interrupted {
    deadline: bool,
}

impl Interrupted {
    fn reason(self) -> StopReason {
        match self.deadline {
            true => StopReason::Deadline,
            false => StopReason::Aborted,
        }
    }
}

/// How an attempt ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    // It returned an error.
    Failed,
    // Its timeout elapsed and it was cut short.
    TimedOut,
    // It panicked, or was interrupted, and was cut short.
    CutShort,
    // It never began: the sleeper panicked starting the timeout of an
    // action's first attempt, before the action was called.
    Unstarted,
}

/// Foreign code the run is calling, so that a panic caught around `poll`
/// (see `fail_in_flight`) is charged to the right place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calling {
    Nothing,
    Step(usize),
    Classifier(usize),
    Jitter(usize),
    // A lane's timer, or the saga's deadline (`None`).
    Sleeper(Option<usize>),
    // The timer of an action's first attempt, started before the action.
    FirstTimer(usize),
    Observer,
}

impl<'a, E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'a, E, S, B> {
    pub(crate) fn new(
        steps: Pin<&'a mut B>,
        plan: &'a Plan<E, S>,
        scratch: &'a mut Scratch<E>,
        timers: Option<BorrowedClock<'a, E, S>>,
    ) -> Self {
        let (timers, timed_out) = match timers {
            Some((timers, timed_out)) => (Some(timers), Some(timed_out)),
            None => (None, None),
        };
        Run {
            steps,
            plan,
            scratch,
            timers,
            timed_out,
            abort: None,
            observer: plan.observer.as_deref(),
            classifier_muted: false,
            jitter_muted: false,
            phase: Phase::Start,
            wave: Wave::default(),
            failure: None,
            failed_block: None,
            interrupt: None,
            watch: false,
            quiet: false,
            unheard: false,
            stray_failure: None,
            calling: Calling::Nothing,
            failing_lane: None,
            durable: None,
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        }
    }

    /// The run writes its transitions to `link`'s journal.
    pub(crate) fn journaled(mut self, link: Box<Link<'a, E, S::Journal>>) -> Self {
        self.durable = Some(link);
        self
    }

    /// Attaches an [`AbortHandle`]: after [`abort`](AbortHandle::abort), the
    /// run starts no further action and compensates what was applied (see
    /// [`InFlight`](crate::InFlight) for the actions in flight). The run then
    /// fails with `E::from(Aborted)`, or with an in-flight action's own error
    /// when it failed while finishing; [`SagaError::aborted`] is `true` either
    /// way. An abort that lands while an action waits to be retried ends it
    /// with `E::from(Aborted)`. Compensations are never interrupted by an
    /// abort.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub fn abortable(mut self, handle: &AbortHandle) -> Self
    where
        E: From<Aborted>,
    {
        self.attach_abort(handle);
        self
    }

    /// [`abortable`](Run::abortable), in place.
    pub(crate) fn attach_abort(&mut self, handle: &AbortHandle)
    where
        E: From<Aborted>,
    {
        self.abort = Some(Abort {
            handle: handle.attach(),
            aborted: E::from,
        });
    }

    /// Tells the run that its last poll panicked, with `error` standing for
    /// the panic; the run goes on by the saga's rules when polled again.
    /// `rt::CatchPanics` calls it; what the panic fails is the table in its
    /// docs, decided by `calling` (what was being called when it panicked).
    /// A callback that panicked is not called again in this run, so polling
    /// again always makes progress.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn fail_in_flight(&mut self, error: E) {
        // The panic may have cut short a poll of several lanes: those woken
        // and not polled yet are polled next time.
        if let Some(wakers) = &self.scratch.wakers {
            wakers.remark_woken();
        }
        let calling = core::mem::replace(&mut self.calling, Calling::Nothing);
        match calling {
            Calling::Step(lane) => self.fail_lane(lane, error, Ending::CutShort, false, false),
            Calling::Classifier(lane) => {
                self.classifier_muted = true;
                self.fail_lane(lane, error, Ending::Failed, true, true);
            }
            Calling::Jitter(lane) => {
                self.jitter_muted = true;
                self.fail_lane(lane, error, Ending::Failed, true, true);
            }
            Calling::Sleeper(lane) => {
                self.stop_all_timers();
                self.timers = None;
                match lane {
                    Some(lane) => self.fail_lane(lane, error, Ending::CutShort, true, false),
                    None => self.fail_forward(error),
                }
            }
            Calling::FirstTimer(lane) => {
                self.stop_all_timers();
                self.timers = None;
                // Nothing of the step ran, and nobody heard it start.
                self.fail_lane(lane, error, Ending::Unstarted, true, true);
            }
            Calling::Observer => {
                self.observer = None;
                match self.failing_lane.take() {
                    Some((lane, last)) => self.fail_lane(lane, error, Ending::Failed, last, true),
                    None => self.fail_forward(error),
                }
            }
            Calling::Nothing => self.fail_forward(error),
        }
    }

    /// A panic to fail a lane's attempt with, at its next poll.
    fn fail_lane(&mut self, lane: usize, error: E, ending: Ending, last: bool, announced: bool) {
        let slot = &mut self.scratch.lanes[lane];
        if slot.stage == Stage::Free {
            return self.fail_forward(error);
        }
        if slot.panic.is_some() {
            // Cancelling the attempt its first panic failed panicked too:
            // it fails with the first.
            return;
        }
        slot.stage = Stage::Running;
        slot.panic = Some(Panic {
            error,
            ending,
            last,
            announced,
            crashed: false,
        });
        if let Some(wakers) = &self.scratch.wakers {
            wakers.mark(lane);
        }
    }

    /// A panic outside any lane: it fails the forward phase, if it is not
    /// over.
    fn fail_forward(&mut self, error: E) {
        if let Phase::Start | Phase::Forward = self.phase {
            self.stray_failure.get_or_insert(error);
        }
    }

    fn set_timer(&mut self, slot: Slot, duration: Option<Duration>) {
        let Some(timers) = self.timers.as_deref_mut() else {
            return;
        };
        match duration {
            Some(duration) => {
                self.calling = Calling::Sleeper(slot.lane());
                timers.start(slot, duration);
                self.calling = Calling::Nothing;
            }
            None => timers.stop(slot),
        }
    }

    /// Whether the timer in `slot` elapsed (`false` while it runs, when it is
    /// stopped, and without a clock).
    fn timer_elapsed(&mut self, slot: Slot, cx: &mut Context<'_>) -> bool {
        let Some(timers) = self.timers.as_deref_mut() else {
            return false;
        };
        self.calling = Calling::Sleeper(slot.lane());
        let elapsed = timers.poll_elapsed(slot, cx).is_ready();
        self.calling = Calling::Nothing;
        elapsed
    }

    fn stop_all_timers(&mut self) {
        if let Some(timers) = self.timers.as_deref_mut() {
            timers.stop(Slot::Saga);
            for lane in 0..self.scratch.lane_count() {
                timers.stop(Slot::Lane(lane));
            }
        }
    }

    fn timed_out_error(&self) -> Option<E> {
        self.timed_out.map(|timed_out| timed_out(TimedOut))
    }

    /// A failure of `step`'s action, for the report (with the step's name).
    fn step_failure(
        &self,
        step: usize,
        error: E,
        attempts: u32,
        timed_out: bool,
        reason: StopReason,
    ) -> StepFailure<E> {
        StepFailure {
            step,
            name: self.steps.step_name(step).map(String::from),
            error,
            attempts,
            timed_out,
            reason,
            compensation: false,
        }
    }

    /// Whether the run has returned its result.
    /// The steps, for the flow that owns the run to take its values.
    pub(crate) fn steps_mut(&mut self) -> Pin<&mut B> {
        self.steps.as_mut()
    }

    #[cfg(feature = "std")]
    pub(crate) fn completed(&self) -> bool {
        self.phase == Phase::Reported
    }

    /// Whether an abort landed that the run has not acted on yet.
    fn abort_landed(&self) -> bool {
        self.watch && (self.abort.as_ref()).is_some_and(|abort| abort.handle.is_aborted())
    }

    /// The error an interrupt fails steps with.
    fn interrupt_error(&self, deadline: bool) -> Option<E> {
        if deadline {
            self.timed_out_error()
        } else {
            self.abort.as_ref().map(|abort| (abort.aborted)(Aborted))
        }
    }

    /// The run starts: the first block, the deadline, the observer.
    fn start(&mut self) {
        // The phase moves first, so that a panic below is not met again.
        self.phase = match self.durable.is_some() {
            true => self.start_durable(),
            false => self.forward_wave(0),
        };
        let deadline = self.plan.saga_timeout.filter(|_| self.timers.is_some());
        self.watch = deadline.is_some() || self.abort.is_some();
        self.unheard = self.observer.is_none() && self.durable.is_none();
        #[cfg(feature = "tracing")]
        {
            self.unheard &= self.span.is_disabled();
        }
        self.quiet = self.unheard && self.timers.is_none();
        if deadline.is_some() {
            self.set_timer(Slot::Saga, deadline);
        }
        if let Some(observer) = self.observer {
            self.calling = Calling::Observer;
            observer.saga_started(self.steps.step_count());
            self.calling = Calling::Nothing;
        }
    }

    /// The run ends: the report in its final order, the observer told.
    fn report(&mut self) -> Result<(), SagaError<E>> {
        self.set_timer(Slot::Saga, None);
        if let Some(failure) = &mut self.failure {
            failure.finish();
        }
        if let Some(observer) = self.observer {
            self.calling = Calling::Observer;
            observer.saga_finished(self.failure.as_ref().map_or(Ok(()), Err));
            self.calling = Calling::Nothing;
        }
        // `Reported` stays behind, so that a further poll panics.
        self.phase = Phase::Reported;
        self.scratch.end_run();
        match self.failure.take() {
            None => Ok(()),
            Some(failure) => Err(failure),
        }
    }
}

// The run never pins its fields (steps and timers are pinned in their own
// boxes), so it is `Unpin` whatever `E` is.
impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Unpin for Run<'_, E, S, B> {}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Future for Run<'_, E, S, B> {
    type Output = Result<(), SagaError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        #[cfg(feature = "tracing")]
        let _entered = {
            if this.phase == Phase::Start {
                this.span = crate::trace::saga_span(this.steps.step_count());
            }
            this.span.clone().entered()
        };
        loop {
            let progress = match this.phase {
                Phase::Forward => this.poll_forward(cx),
                Phase::Backward => this.poll_backward(cx),
                Phase::Start => {
                    this.start();
                    continue;
                }
                Phase::Done => {
                    if this.durable.is_some() && !this.close_journal(cx) {
                        return Poll::Pending;
                    }
                    return Poll::Ready(this.report());
                }
                Phase::Reported => panic!("saga `Run` polled after it completed"),
            };
            if progress.is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Drop for Run<'_, E, S, B> {
    fn drop(&mut self) {
        // Dropped mid-step: drop what is in flight now, not at the next run.
        for lane in 0..self.scratch.lane_count() {
            if self.scratch.lanes[lane].stage != Stage::Free {
                let step = self.scratch.lanes[lane].step;
                self.scratch.release(lane);
                if step < self.steps.step_count() {
                    self.steps.as_mut().reset(step);
                }
            }
        }
        if self.phase != Phase::Reported {
            self.stop_all_timers();
            self.scratch.end_run();
        }
    }
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> fmt::Debug for Run<'_, E, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("steps", &self.steps.step_count())
            .field("phase", &self.phase)
            .field("failed", &self.failure.is_some())
            .field("abortable", &self.abort.is_some())
            .field("timed", &self.timers.is_some())
            .finish()
    }
}
