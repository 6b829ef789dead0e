//! [`Run`]: the poll-driven state machine of one saga run.
//!
//! A run walks the saga's blocks (a single step, or a parallel group) forward,
//! then, on failure, backward. Each step in flight occupies a *lane*: a
//! small driver of its attempts (timeout, retry, backoff). A single step uses
//! lane 0 and the run's own waker; a parallel group or a concurrent backward
//! phase uses several lanes, each with a waker of its own, so that only the
//! woken steps are polled.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::ops::{Index, IndexMut};
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use crate::group::GroupSpec;
use crate::lanes::{LaneWakers, WORD};
use crate::saga::Policy;
use crate::sleep::{Slot, Timers};
use crate::{
    AbortHandle, Aborted, CompensationMode, InFlight, Observer, Recovery, SagaError, Step,
    StepFailure, StepRef, TimedOut,
};

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
/// Polling a `Run` after it returned `Ready` panics.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Run<'a, E, S: ?Sized + Step<E> = dyn Step<E> + Send + 'static> {
    steps: &'a mut [Pin<Box<S>>],
    policy: &'a Policy<E>,
    groups: &'a [GroupSpec],
    scratch: &'a mut Scratch<E>,
    clock: Option<Clock<'a, E>>,
    abort: Option<Abort<E>>,
    phase: Phase,
    // Set at the first failure of the forward phase; completed backward.
    failure: Option<SagaError<E>>,
    // The block whose members' outcomes are in `scratch.outcomes`.
    failed_block: Option<(usize, usize)>,
    interrupt: Option<Interrupted>,
    // A panic reported by `fail_in_flight` outside any lane.
    stray_failure: Option<E>,
    // The lane being polled, for `fail_in_flight`.
    polling: Option<usize>,
    // Single steps, no clock, abort handle or observer: the sequential fast
    // path applies (the general lanes machinery takes over on a failure).
    fast: bool,
    // The fast path's position (see `Phase::Sequential`), kept up to date
    // before each step is polled so that `fail_in_flight` finds it.
    cursor: usize,
    // Compensations the fast path completed, not yet in the report.
    compensated: usize,
    // The fast path returned `Pending`: the step at `cursor` is in flight.
    resumed: bool,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// What a run borrows from its saga to keep its lanes. A saga of single
/// steps needs one lane and one outcome, kept inline: building it allocates
/// nothing here.
pub(crate) struct Scratch<E> {
    lanes: Lanes<E>,
    // How many lanes have a step in flight.
    busy: usize,
    // Lanes other than lane 0 freed during this wave, to reuse first.
    spare: Vec<usize>,
    // Lanes `fresh..` have not been used in this wave. A wave takes lanes in
    // index order, so its members are polled in member order, run after run.
    fresh: usize,
    // Per member of the block in the forward phase.
    outcomes: Outcomes,
    // `None` when no block needs more than one lane.
    wakers: Option<LaneWakers>,
}

impl<E> Scratch<E> {
    pub(crate) fn new(lanes: usize, widest_block: usize) -> Self {
        let lanes = lanes.max(1);
        Scratch {
            lanes: Lanes {
                first: Lane::default(),
                rest: (1..lanes).map(|_| Lane::default()).collect(),
            },
            busy: 0,
            spare: Vec::with_capacity(lanes - 1),
            fresh: 1,
            outcomes: Outcomes {
                single: Outcome::NotStarted,
                many: Vec::with_capacity(if widest_block > 1 { widest_block } else { 0 }),
                width: 1,
            },
            wakers: (lanes > 1).then(|| LaneWakers::new(lanes)),
        }
    }

    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }
}

struct Lanes<E> {
    first: Lane<E>,
    rest: Vec<Lane<E>>,
}

impl<E> Lanes<E> {
    fn len(&self) -> usize {
        1 + self.rest.len()
    }
}

impl<E> Index<usize> for Lanes<E> {
    type Output = Lane<E>;

    fn index(&self, lane: usize) -> &Lane<E> {
        match lane.checked_sub(1) {
            None => &self.first,
            Some(rest) => &self.rest[rest],
        }
    }
}

impl<E> IndexMut<usize> for Lanes<E> {
    fn index_mut(&mut self, lane: usize) -> &mut Lane<E> {
        match lane.checked_sub(1) {
            None => &mut self.first,
            Some(rest) => &mut self.rest[rest],
        }
    }
}

/// The outcome of each member of the forward block.
struct Outcomes {
    single: Outcome,
    // Sized for the widest group when the saga is built.
    many: Vec<Outcome>,
    width: usize,
}

impl Outcomes {
    fn reset(&mut self, width: usize) {
        self.width = width;
        self.single = Outcome::NotStarted;
        self.many.clear();
        if width > 1 {
            self.many.resize(width, Outcome::NotStarted);
        }
    }
}

impl Index<usize> for Outcomes {
    type Output = Outcome;

    fn index(&self, member: usize) -> &Outcome {
        if self.width == 1 {
            &self.single
        } else {
            &self.many[member]
        }
    }
}

impl IndexMut<usize> for Outcomes {
    fn index_mut(&mut self, member: usize) -> &mut Outcome {
        if self.width == 1 {
            &mut self.single
        } else {
            &mut self.many[member]
        }
    }
}

/// One step in flight: which attempt, and what it waits for.
struct Lane<E> {
    step: usize,
    attempt: u32,
    stage: Stage,
    // While backing off: the last attempt's error, and whether it timed out.
    last_error: Option<(E, bool)>,
    // Set by `fail_in_flight`: the attempt panicked.
    panicked: Option<E>,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl<E> Default for Lane<E> {
    fn default() -> Self {
        Lane {
            step: 0,
            attempt: 0,
            stage: Stage::Free,
            last_error: None,
            panicked: None,
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Free,
    Running,
    BackingOff,
}

/// What a member of the forward block did, as far as the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    NotStarted,
    Running,
    Applied,
    // Its action returned an error.
    Failed,
    // Its action was dropped before finishing: possibly applied.
    CutShort,
}

/// The saga's timers, as a run borrows them.
pub(crate) struct Clock<'a, E> {
    pub(crate) timers: &'a mut (dyn Timers + 'static),
    pub(crate) timed_out: fn(TimedOut) -> E,
}

struct Abort<E> {
    handle: AbortHandle,
    aborted: fn(Aborted) -> E,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    // The fast path: single steps, no clock, abort or observer. Steps
    // `cursor..` are to run; `cursor` may be in flight.
    Sequential,
    // The fast path backward: steps `0..cursor` are to compensate.
    SequentialBack,
    Forward(Wave),
    Backward(Wave),
    // Finished; the result is yet to be returned.
    Done,
    // The result was returned.
    Reported,
}

/// The steps `start..end` being run (forward) or compensated (backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wave {
    start: usize,
    end: usize,
    // Forward: the next member to start, ascending. Backward: steps
    // `start..next` are still to start, the last one first.
    next: usize,
    // At most this many steps in flight (in lanes `0..limit`).
    limit: usize,
    on_failure: InFlight,
    // No new step starts: a member failed, or the run was interrupted.
    halted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Action,
    Compensation,
}

/// An abort or a deadline, and where it found the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interrupted {
    deadline: bool,
    step: usize,
    attempts: u32,
}

/// How an attempt ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    // It returned an error.
    Failed,
    // Its timeout elapsed and it was cut short.
    TimedOut,
    // It panicked, or was interrupted, and was cut short.
    CutShort,
}

impl Ending {
    fn outcome(self) -> Outcome {
        match self {
            Ending::Failed => Outcome::Failed,
            Ending::TimedOut | Ending::CutShort => Outcome::CutShort,
        }
    }
}

enum LaneEnd<E> {
    Succeeded,
    Failed(StepFailure<E>, Recovery, Ending),
    // Cut short because another member of its group failed: no error of its own.
    Cancelled,
}

/// A transition, for the observer (and `tracing`).
enum Transition<'e, E> {
    Started(Kind, u32),
    Succeeded(Kind, u32),
    Failed(Kind, u32, &'e E),
    Retried(Kind, u32, Duration),
    Aborted,
    DeadlinePassed,
}

impl<'a, E, S: ?Sized + Step<E>> Run<'a, E, S> {
    pub(crate) fn new(
        steps: &'a mut [Pin<Box<S>>],
        policy: &'a Policy<E>,
        groups: &'a [GroupSpec],
        scratch: &'a mut Scratch<E>,
        clock: Option<Clock<'a, E>>,
    ) -> Self {
        // A clock is only needed per step for timeouts; backoff happens after
        // a failure, in the lanes machinery.
        let fast = !policy.has_timeouts()
            && groups.is_empty()
            && policy.observer.is_none()
            && cfg!(not(feature = "tracing"));
        Run {
            steps,
            policy,
            groups,
            scratch,
            clock,
            abort: None,
            phase: Phase::Start,
            failure: None,
            failed_block: None,
            interrupt: None,
            stray_failure: None,
            polling: None,
            fast,
            cursor: 0,
            compensated: 0,
            resumed: false,
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        }
    }

    /// Attaches an [`AbortHandle`]: after [`abort`](AbortHandle::abort), the
    /// run starts no further action and compensates what was applied (see
    /// [`InFlight`] for the actions in flight). The run then fails with
    /// `E::from(Aborted)`, or with an in-flight action's own error when it
    /// failed while finishing; [`SagaError::aborted`] is `true` either way.
    /// Compensations are never interrupted by an abort.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub fn abortable(mut self, handle: &AbortHandle) -> Self
    where
        E: From<Aborted>,
    {
        self.abort = Some(Abort {
            handle: handle.clone(),
            aborted: E::from,
        });
        self
    }

    /// Fails the attempt in flight with `error`, as if it had returned it,
    /// except that it is first [cancelled](Step::cancel): an action counts as
    /// failed and possibly applied, a compensation as failed (and may be
    /// retried). The run goes on by the saga's rules when polled again.
    ///
    /// This is how a runtime adapter turns a panic inside a step into a
    /// failed step: it polls the run under `catch_unwind` and, on a panic,
    /// calls `fail_in_flight(E::from(Panicked::from_payload(..)))`. When the
    /// panic did not come from a step (an observer, say), the forward phase
    /// stops starting steps and fails with `error`; while compensating, and
    /// on a completed run, it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::panic::{AssertUnwindSafe, catch_unwind};
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    /// use saga_core::{Panicked, SagaBuilder};
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Error(String);
    /// impl From<Panicked> for Error {
    ///     fn from(panic: Panicked) -> Self { Error(panic.message().to_owned()) }
    /// }
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
    ///     .add_step(
    ///         || async { if true { panic!("bug in step 1") } Ok::<_, Error>(()) },
    ///         || async { Ok(()) },
    ///     )
    ///     .build();
    ///
    /// let mut run = pin!(saga.run());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let result = loop {
    ///     match catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(&mut cx))) {
    ///         Ok(Poll::Ready(result)) => break result,
    ///         Ok(Poll::Pending) => {}
    ///         Err(payload) => {
    ///             let panic = Panicked::from_payload(payload.as_ref());
    ///             run.as_mut().get_mut().fail_in_flight(Error::from(panic));
    ///         }
    ///     }
    /// };
    /// let error = result.unwrap_err();
    /// assert_eq!(*error.error(), Error("bug in step 1".into()));
    /// assert!(error.is_fully_compensated());
    /// ```
    pub fn fail_in_flight(&mut self, error: E) {
        let lane = self
            .polling
            .take()
            .filter(|&lane| self.scratch.lanes[lane].stage != Stage::Free);
        match (lane, self.phase) {
            (Some(lane), Phase::Forward(_) | Phase::Backward(_)) => {
                self.scratch.lanes[lane].panicked = Some(error);
                if let Some(wakers) = &self.scratch.wakers {
                    wakers.mark(lane);
                }
            }
            (None, Phase::Sequential) if self.cursor < self.steps.len() => {
                self.enter_lane(self.cursor, Kind::Action);
                self.scratch.lanes[0].panicked = Some(error);
            }
            (None, Phase::SequentialBack) if self.cursor > 0 => {
                self.flush_compensated();
                self.enter_lane(self.cursor - 1, Kind::Compensation);
                self.scratch.lanes[0].panicked = Some(error);
            }
            (None, Phase::Start | Phase::Forward(_)) => self.stray_failure = Some(error),
            _ => {}
        }
    }

    // ---- observer ----------------------------------------------------------

    fn transition(&self, step: usize, transition: Transition<'_, E>) {
        #[cfg(feature = "tracing")]
        crate::trace::transition(transition_label(&transition));
        let Some(observer) = self.policy.observer.as_deref() else {
            return;
        };
        let at = StepRef {
            index: step,
            name: self.steps[step].name(),
        };
        notify(observer, at, transition);
    }

    // ---- timers and interrupts --------------------------------------------

    fn set_timer(&mut self, slot: Slot, duration: Option<Duration>) {
        if let Some(clock) = &mut self.clock {
            match duration {
                Some(duration) => clock.timers.start(slot, duration),
                None => clock.timers.stop(slot),
            }
        }
    }

    fn poll_timer(&mut self, slot: Slot, cx: &mut Context<'_>) -> bool {
        self.clock
            .as_mut()
            .is_some_and(|clock| clock.timers.poll_elapsed(slot, cx).is_ready())
    }

    fn timed_out_error(&self) -> Option<E> {
        self.clock.as_ref().map(|clock| (clock.timed_out)(TimedOut))
    }

    /// The error an interrupt fails steps with.
    fn interrupt_error(&self, deadline: bool) -> Option<E> {
        if deadline {
            self.timed_out_error()
        } else {
            self.abort.as_ref().map(|abort| (abort.aborted)(Aborted))
        }
    }

    // ---- lanes --------------------------------------------------------------

    /// Polls the step in `lane`, with the lane's own waker when the wave
    /// runs several steps side by side (and the run's waker otherwise).
    fn poll_lane_in(&mut self, lane: usize, kind: Kind, cx: &mut Context<'_>) -> Poll<LaneEnd<E>> {
        let wave = self.wave();
        match self.scratch.wakers.as_ref().filter(|_| wave.limit > 1) {
            Some(wakers) => {
                let waker = wakers.waker(lane).clone();
                self.poll_lane(lane, kind, wave.halted, &mut Context::from_waker(&waker))
            }
            None => self.poll_lane(lane, kind, wave.halted, cx),
        }
    }

    /// A free lane, when the wave may start one more step.
    fn claim_lane(&mut self) -> Option<usize> {
        if self.scratch.busy == self.wave().limit {
            return None;
        }
        if self.scratch.lanes[0].stage == Stage::Free {
            return Some(0);
        }
        if let Some(lane) = self.scratch.spare.pop() {
            return Some(lane);
        }
        let lane = self.scratch.fresh;
        self.scratch.fresh += 1;
        (lane < self.scratch.lanes.len()).then_some(lane)
    }

    /// A wave starts: every lane is free, and taken in index order again.
    fn reset_pool(&mut self) {
        self.scratch.spare.clear();
        self.scratch.fresh = 1;
    }

    /// Frees a lane whose step ended.
    fn release_lane(&mut self, lane: usize) {
        let slot = &mut self.scratch.lanes[lane];
        if slot.stage == Stage::Free {
            return;
        }
        slot.stage = Stage::Free;
        slot.panicked = None;
        self.scratch.busy -= 1;
        if lane != 0 {
            self.scratch.spare.push(lane);
        }
    }

    /// Starts the action or the compensation of `step` in `lane`.
    fn start_lane(&mut self, lane: usize, step: usize, kind: Kind) {
        #[cfg(feature = "tracing")]
        let _entered = {
            let action = kind == Kind::Action;
            let span = crate::trace::step_span(&self.span, step, self.steps[step].name(), action);
            self.scratch.lanes[lane].span = span.clone();
            span.entered()
        };
        // Taken before anything that may panic, so `fail_in_flight` finds it.
        let slot = &mut self.scratch.lanes[lane];
        slot.step = step;
        slot.attempt = 1;
        slot.stage = Stage::Running;
        self.scratch.busy += 1;
        self.polling = Some(lane);
        self.begin_attempt(lane, step, 1, kind);
        if let Some(wakers) = &self.scratch.wakers {
            wakers.mark(lane);
        }
        self.polling = None;
    }

    fn begin_attempt(&mut self, lane: usize, step: usize, attempt: u32, kind: Kind) {
        let policy = self.policy.step(step);
        let timeout = match kind {
            Kind::Action => policy.action_timeout(),
            Kind::Compensation => policy.compensation_timeout(),
        };
        self.set_timer(Slot::Lane(lane), timeout);
        let slot = &mut self.scratch.lanes[lane];
        slot.step = step;
        slot.attempt = attempt;
        slot.stage = Stage::Running;
        slot.last_error = None;
        self.transition(step, Transition::Started(kind, attempt));
    }

    /// Drives the step in `lane` through its attempts.
    fn poll_lane(
        &mut self,
        lane: usize,
        kind: Kind,
        halted: bool,
        cx: &mut Context<'_>,
    ) -> Poll<LaneEnd<E>> {
        #[cfg(feature = "tracing")]
        let _entered = self.scratch.lanes[lane].span.clone().entered();
        self.polling = Some(lane);
        let end = self.drive_lane(lane, kind, halted, cx);
        self.polling = None;
        end
    }

    fn drive_lane(
        &mut self,
        lane: usize,
        kind: Kind,
        halted: bool,
        cx: &mut Context<'_>,
    ) -> Poll<LaneEnd<E>> {
        loop {
            let Lane {
                step,
                attempt,
                stage,
                ..
            } = self.scratch.lanes[lane];
            match stage {
                Stage::Free => return Poll::Ready(LaneEnd::Succeeded),
                Stage::BackingOff => {
                    if !self.poll_timer(Slot::Lane(lane), cx) {
                        return Poll::Pending;
                    }
                    self.begin_attempt(lane, step, attempt + 1, kind);
                }
                Stage::Running => {
                    let (error, ending) =
                        if let Some(error) = self.scratch.lanes[lane].panicked.take() {
                            self.steps[step].as_mut().cancel();
                            (error, Ending::CutShort)
                        } else {
                            let current = self.steps[step].as_mut();
                            let polled = match kind {
                                Kind::Action => current.poll_action(cx),
                                Kind::Compensation => current.poll_compensate(cx),
                            };
                            match polled {
                                Poll::Ready(Ok(())) => {
                                    self.set_timer(Slot::Lane(lane), None);
                                    self.release_lane(lane);
                                    self.transition(step, Transition::Succeeded(kind, attempt));
                                    return Poll::Ready(LaneEnd::Succeeded);
                                }
                                Poll::Ready(Err(error)) => (error, Ending::Failed),
                                Poll::Pending => {
                                    if !self.poll_timer(Slot::Lane(lane), cx) {
                                        return Poll::Pending;
                                    }
                                    self.steps[step].as_mut().cancel();
                                    let Some(error) = self.timed_out_error() else {
                                        unreachable!("a lane timer only runs with a clock")
                                    };
                                    (error, Ending::TimedOut)
                                }
                            }
                        };
                    self.set_timer(Slot::Lane(lane), None);
                    self.transition(step, Transition::Failed(kind, attempt, &error));
                    if let Some(end) = self.after_attempt_error(lane, kind, halted, error, ending) {
                        return Poll::Ready(end);
                    }
                }
            }
        }
    }

    /// An attempt failed: schedule a retry (`None`), or end the lane.
    fn after_attempt_error(
        &mut self,
        lane: usize,
        kind: Kind,
        halted: bool,
        error: E,
        ending: Ending,
    ) -> Option<LaneEnd<E>> {
        let Lane { step, attempt, .. } = self.scratch.lanes[lane];
        let policy = self.policy.step(step);
        let (retry, recovery) = match kind {
            Kind::Action => {
                let recovery = self.policy.recovery_for(&error);
                let retry = policy
                    .action_retry()
                    .filter(|_| recovery == Recovery::Retry);
                (retry, recovery)
            }
            Kind::Compensation => {
                let retries = self.steps[step].retries_compensation();
                (
                    policy.compensation_retry().filter(|_| retries),
                    Recovery::Compensate,
                )
            }
        };
        // Once the block failed or the run was interrupted, no new attempt starts.
        let retry = retry.filter(|retry| {
            attempt < retry.max_attempts() && (kind == Kind::Compensation || !halted)
        });
        let timed_out = ending == Ending::TimedOut;
        if let Some(retry) = retry {
            let delay = retry.delay_before(attempt + 1);
            self.transition(step, Transition::Retried(kind, attempt + 1, delay));
            if delay.is_zero() || self.clock.is_none() {
                self.begin_attempt(lane, step, attempt + 1, kind);
            } else {
                self.set_timer(Slot::Lane(lane), Some(delay));
                let slot = &mut self.scratch.lanes[lane];
                slot.stage = Stage::BackingOff;
                slot.last_error = Some((error, timed_out));
            }
            return None;
        }
        self.release_lane(lane);
        let recovery = match recovery {
            Recovery::Propagate => Recovery::Propagate,
            Recovery::Retry | Recovery::Compensate => Recovery::Compensate,
        };
        let failure = StepFailure {
            step,
            error,
            attempts: attempt,
            timed_out,
            compensation: false,
        };
        Some(LaneEnd::Failed(failure, recovery, ending))
    }

    /// Ends the lane's step from outside: cuts a running attempt short (it
    /// fails with `error`, or is merely cancelled without one), or gives up
    /// retrying (it fails with its last error).
    fn stop_lane(&mut self, lane: usize, error: Option<E>) -> LaneEnd<E> {
        let Lane {
            step,
            attempt,
            stage,
            ..
        } = self.scratch.lanes[lane];
        self.set_timer(Slot::Lane(lane), None);
        self.release_lane(lane);
        let last_error = self.scratch.lanes[lane].last_error.take();
        let (error, timed_out, ending) = match (stage, last_error, error) {
            (Stage::BackingOff, Some((error, timed_out)), _) => (error, timed_out, Ending::Failed),
            (Stage::Free, ..) => return LaneEnd::Cancelled,
            (_, _, error) => {
                self.steps[step].as_mut().cancel();
                match error {
                    Some(error) => (error, false, Ending::CutShort),
                    None => return LaneEnd::Cancelled,
                }
            }
        };
        let failure = StepFailure {
            step,
            error,
            attempts: attempt,
            timed_out,
            compensation: false,
        };
        LaneEnd::Failed(failure, Recovery::Compensate, ending)
    }

    // ---- blocks ---------------------------------------------------------------

    /// The group containing `step`, if any.
    fn group_of(&self, step: usize) -> Option<&'a GroupSpec> {
        let groups: &'a [GroupSpec] = self.groups;
        let found = groups.partition_point(|group| group.members.end <= step);
        groups
            .get(found)
            .filter(|group| group.members.contains(&step))
    }

    fn forward_wave(&mut self, start: usize) -> Phase {
        if start == self.steps.len() {
            return Phase::Done;
        }
        if self.fast && self.interrupt.is_none() {
            self.cursor = start;
            self.resumed = false;
            return Phase::Sequential;
        }
        self.lanes_wave(start)
    }

    /// The forward wave over the block at `start`, in the lanes machinery.
    fn lanes_wave(&mut self, start: usize) -> Phase {
        let (end, limit, on_failure) = match self.group_of(start) {
            Some(group) => (group.members.end, group.limit, group.on_failure),
            None => (start + 1, 1, InFlight::Finish),
        };
        self.scratch.outcomes.reset(end - start);
        self.reset_pool();
        Phase::Forward(Wave {
            start,
            end,
            next: start,
            limit,
            on_failure,
            halted: false,
        })
    }

    /// The backward wave over the block that ends at `end`.
    fn backward_wave(&mut self, end: usize) -> Phase {
        let Some(last) = end.checked_sub(1) else {
            return Phase::Done;
        };
        let sequential = matches!(
            self.policy.compensation_mode,
            CompensationMode::StopOnError | CompensationMode::ContinueOnError
        );
        if self.fast && sequential {
            // Only the failed step may not need compensation: leave it out
            // here, so that the fast path compensates all it passes.
            self.cursor = match self.failed_block {
                Some((step, block_end)) if block_end == end && !self.needs_compensation(step) => {
                    step
                }
                _ => end,
            };
            return Phase::SequentialBack;
        }
        let group = self.group_of(last);
        let (start, limit) = match self.policy.compensation_mode {
            CompensationMode::Concurrent => (0, self.scratch.lanes()),
            CompensationMode::ConcurrentGroups => {
                group.map_or((last, 1), |group| (group.members.start, group.limit))
            }
            _ => (group.map_or(last, |group| group.members.start), 1),
        };
        self.reset_pool();
        Phase::Backward(Wave {
            start,
            end,
            next: end,
            limit,
            on_failure: InFlight::Finish,
            halted: false,
        })
    }

    fn outcome_mut(&mut self, step: usize, start: usize) -> &mut Outcome {
        &mut self.scratch.outcomes[step - start]
    }

    /// Whether `step` is to be compensated: every step before the failed
    /// block, and the members of the failed block that ran (by rule 3).
    fn needs_compensation(&self, step: usize) -> bool {
        match self.failed_block {
            Some((start, end)) if (start..end).contains(&step) => match self.scratch.outcomes
                [step - start]
            {
                Outcome::Applied => true,
                Outcome::Failed | Outcome::CutShort => self.steps[step].compensates_failed_action(),
                Outcome::NotStarted | Outcome::Running => false,
            },
            _ => true,
        }
    }

    /// Records an action failure: the first is the saga's error, later ones
    /// (in the same parallel group) are concurrent failures.
    fn record_failure(&mut self, failure: StepFailure<E>, recovery: Recovery) {
        match &mut self.failure {
            Some(first) => first.record_concurrent_failure(failure),
            None => {
                let name = self.steps[failure.step].name();
                self.failure = Some(SagaError::new(failure, name, recovery));
            }
        }
    }

    /// The wave in progress. Waves live only in `self.phase`, never in a
    /// local copy, so that a panic in a step (see `fail_in_flight`) cannot
    /// lose an update.
    fn wave(&self) -> Wave {
        match self.phase {
            Phase::Forward(wave) | Phase::Backward(wave) => wave,
            Phase::Start
            | Phase::Sequential
            | Phase::SequentialBack
            | Phase::Done
            | Phase::Reported => {
                unreachable!("no wave outside the forward and backward phases")
            }
        }
    }

    fn update_wave(&mut self, update: impl FnOnce(&mut Wave)) {
        if let Phase::Forward(wave) | Phase::Backward(wave) = &mut self.phase {
            update(wave);
        }
    }

    /// How many of the wave's lanes have a step in flight.
    fn in_flight(&self) -> usize {
        self.scratch.busy
    }

    fn lowest_in_flight(&self) -> Option<usize> {
        (0..self.scratch.lanes.len())
            .map(|lane| &self.scratch.lanes[lane])
            .filter(|lane| lane.stage != Stage::Free)
            .map(|lane| lane.step)
            .min()
    }

    /// Polls the steps in flight that were woken (the one step of a single
    /// step wave at every poll); returns whether one of them ended.
    fn poll_lanes(&mut self, kind: Kind, cx: &mut Context<'_>) -> bool {
        let mut ended = false;
        if self.wave().limit == 1 {
            if self.scratch.lanes[0].stage != Stage::Free {
                ended |= self.poll_and_end(0, kind, cx);
            }
            return ended;
        }
        let words = self.scratch.wakers.as_ref().map_or(0, LaneWakers::words);
        for word in 0..words {
            let mut woken = self
                .scratch
                .wakers
                .as_ref()
                .map_or(0, |wakers| wakers.take_word(word));
            while woken != 0 {
                let lane = word * WORD + woken.trailing_zeros() as usize;
                woken &= woken - 1;
                if self.scratch.lanes[lane].stage != Stage::Free {
                    ended |= self.poll_and_end(lane, kind, cx);
                }
            }
        }
        ended
    }

    fn poll_and_end(&mut self, lane: usize, kind: Kind, cx: &mut Context<'_>) -> bool {
        let step = self.scratch.lanes[lane].step;
        let Poll::Ready(end) = self.poll_lane_in(lane, kind, cx) else {
            return false;
        };
        match kind {
            Kind::Action => self.end_member(end, step),
            Kind::Compensation => self.end_compensation(end),
        }
        true
    }

    /// A compensation of the backward wave ended.
    fn end_compensation(&mut self, end: LaneEnd<E>) {
        let Some(failure) = &mut self.failure else {
            unreachable!("the backward phase always has a failure to report")
        };
        match end {
            LaneEnd::Succeeded | LaneEnd::Cancelled => failure.record_compensated(),
            LaneEnd::Failed(error, ..) => {
                failure.record_compensation_error(error);
                if self.policy.compensation_mode == CompensationMode::StopOnError {
                    self.update_wave(|wave| wave.halted = true);
                }
            }
        }
    }

    /// A member of the forward wave ended.
    fn end_member(&mut self, end: LaneEnd<E>, step: usize) {
        let wave = self.wave();
        let outcome = match end {
            LaneEnd::Succeeded => Outcome::Applied,
            LaneEnd::Cancelled => Outcome::CutShort,
            LaneEnd::Failed(failure, recovery, ending) => {
                self.record_failure(failure, recovery);
                ending.outcome()
            }
        };
        *self.outcome_mut(step, wave.start) = outcome;
        let failed = matches!(outcome, Outcome::Failed | Outcome::CutShort);
        if failed && !wave.halted {
            self.update_wave(|wave| wave.halted = true);
            if wave.on_failure == InFlight::CutShort {
                self.stop_members(false);
            }
        }
    }

    /// Stops the members in flight. Those waiting to retry fail with their
    /// last error. Running ones are cut short: after an interrupt (when it
    /// cuts), each fails with the interrupt's error; after a sibling failed,
    /// they are cancelled with no error of their own.
    fn stop_members(&mut self, interrupted: bool) {
        for lane in 0..self.scratch.lanes.len() {
            let Lane { step, stage, .. } = self.scratch.lanes[lane];
            let error = match stage {
                Stage::Free => continue,
                Stage::BackingOff => None,
                Stage::Running if !interrupted => None,
                Stage::Running => match self.interrupt {
                    Some(interrupt)
                        if interrupt.deadline || self.policy.on_abort == InFlight::CutShort =>
                    {
                        self.interrupt_error(interrupt.deadline)
                    }
                    // Aborted with `InFlight::Finish`: let it finish.
                    _ => continue,
                },
            };
            let end = self.stop_lane(lane, error);
            self.end_member(end, step);
        }
    }

    // ---- the sequential fast path ------------------------------------------------

    /// Runs actions one after the other while they succeed at once or suspend;
    /// a failure hands over to the lanes machinery (retries, compensation).
    #[inline(always)]
    fn poll_sequential(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let resumed = core::mem::take(&mut self.resumed);
        if let Some(abort) = &self.abort {
            if abort.handle.poll_aborted(cx) {
                self.sequential_aborted(resumed);
                return Poll::Ready(());
            }
        }
        let Run {
            steps,
            cursor,
            abort,
            resumed,
            ..
        } = self;
        let abort = abort.as_ref().map(|abort| &abort.handle);
        let mut failed = None;
        while let Some(current) = steps.get_mut(*cursor) {
            match current.as_mut().poll_action(cx) {
                Poll::Ready(Ok(())) => *cursor += 1,
                Poll::Ready(Err(error)) => {
                    failed = Some(error);
                    break;
                }
                Poll::Pending => {
                    *resumed = true;
                    return Poll::Pending;
                }
            }
            // An abort stops the saga before its next action.
            if abort.is_some_and(AbortHandle::is_aborted) {
                self.sequential_aborted(false);
                return Poll::Ready(());
            }
        }
        match failed {
            None => self.phase = Phase::Done,
            Some(error) => self.sequential_failed(self.cursor, Kind::Action, error),
        }
        Poll::Ready(())
    }

    /// An abort reached the fast path: the lanes machinery handles it, with
    /// the step at the cursor in flight (`in_flight`) or not started.
    #[cold]
    #[inline(never)]
    fn sequential_aborted(&mut self, in_flight: bool) {
        if self.cursor == self.steps.len() {
            self.phase = Phase::Done;
        } else if in_flight {
            self.enter_lane(self.cursor, Kind::Action);
        } else {
            self.phase = self.lanes_wave(self.cursor);
        }
    }

    /// Compensates steps one after the other, last first, while they succeed
    /// at once or suspend; a failure hands over to the lanes machinery.
    #[inline]
    fn poll_sequential_back(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Every step below the cursor needs compensation (see `backward_wave`).
        let Run {
            steps,
            cursor,
            compensated,
            ..
        } = self;
        let mut failed = None;
        for current in steps[..*cursor].iter_mut().rev() {
            match current.as_mut().poll_compensate(cx) {
                Poll::Ready(Ok(())) => {
                    *cursor -= 1;
                    *compensated += 1;
                }
                Poll::Ready(Err(error)) => {
                    failed = Some(error);
                    break;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.flush_compensated();
        match failed {
            None => self.phase = Phase::Done,
            Some(error) => self.sequential_failed(self.cursor - 1, Kind::Compensation, error),
        }
        Poll::Ready(())
    }

    /// Moves the fast path's count of compensations into the report.
    fn flush_compensated(&mut self) {
        if let Some(failure) = &mut self.failure {
            failure.record_compensated_many(core::mem::take(&mut self.compensated));
        }
    }

    /// Moves `step`'s attempt in flight from the fast path into lane 0, as if
    /// the lanes machinery had started it.
    #[cold]
    fn enter_lane(&mut self, step: usize, kind: Kind) {
        let wave = Wave {
            start: step,
            end: step + 1,
            next: if kind == Kind::Action { step + 1 } else { step },
            limit: 1,
            on_failure: InFlight::Finish,
            halted: false,
        };
        self.phase = match kind {
            Kind::Action => {
                self.scratch.outcomes.reset(1);
                self.scratch.outcomes[0] = Outcome::Running;
                Phase::Forward(wave)
            }
            Kind::Compensation => Phase::Backward(wave),
        };
        let lane = &mut self.scratch.lanes[0];
        lane.step = step;
        lane.attempt = 1;
        lane.stage = Stage::Running;
        self.scratch.busy = 1;
    }

    /// The fast path met a failure: hand the attempt to lane 0 and let the
    /// general machinery decide (retry, compensate, report).
    #[cold]
    #[inline(never)]
    fn sequential_failed(&mut self, step: usize, kind: Kind, error: E) {
        self.enter_lane(step, kind);
        self.polling = Some(0);
        let end = self.after_attempt_error(0, kind, false, error, Ending::Failed);
        self.polling = None;
        if let Some(end) = end {
            match kind {
                Kind::Action => self.end_member(end, step),
                Kind::Compensation => self.end_compensation(end),
            }
        }
    }

    // ---- the forward phase ----------------------------------------------------

    /// Starts what can start, polls what was woken. `Ready` when a step
    /// ended (so more may start, or the wave may be over); steps that just
    /// started were polled already, so they are no reason to poll again.
    fn poll_forward(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(error) = self.stray_failure.take() {
            let wave = self.wave();
            let step = self
                .lowest_in_flight()
                .unwrap_or(wave.next.min(wave.end - 1));
            let failure = StepFailure {
                step,
                error,
                attempts: 0,
                timed_out: false,
                compensation: false,
            };
            self.record_failure(failure, Recovery::Compensate);
            self.update_wave(|wave| wave.halted = true);
        }
        if self.interrupt.is_none() {
            if let Some(deadline) = self.poll_interrupt(cx) {
                self.interrupt_forward(deadline);
            }
        }
        let mut progress = false;
        loop {
            let wave = self.wave();
            if wave.halted || wave.next == wave.end {
                break;
            }
            let Some(lane) = self.claim_lane() else {
                break;
            };
            self.update_wave(|wave| wave.next += 1);
            *self.outcome_mut(wave.next, wave.start) = Outcome::Running;
            self.start_lane(lane, wave.next, Kind::Action);
        }
        if let Some(wakers) = &self.scratch.wakers {
            wakers.register(cx.waker());
        }
        progress |= self.poll_lanes(Kind::Action, cx);
        let wave = self.wave();
        if self.in_flight() == 0 && (wave.halted || wave.next == wave.end) {
            self.finish_forward_wave(wave);
            return Poll::Ready(());
        }
        if progress {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// `Some(deadline)` when the deadline passed or the run was aborted.
    fn poll_interrupt(&mut self, cx: &mut Context<'_>) -> Option<bool> {
        if self.poll_timer(Slot::Saga, cx) {
            return Some(true);
        }
        let abort = self.abort.as_ref()?;
        abort.handle.poll_aborted(cx).then_some(false)
    }

    fn interrupt_forward(&mut self, deadline: bool) {
        let wave = self.wave();
        let step = self
            .lowest_in_flight()
            .unwrap_or(wave.next.min(wave.end - 1));
        let attempts = (0..self.scratch.lanes.len())
            .map(|lane| &self.scratch.lanes[lane])
            .find(|lane| lane.stage != Stage::Free && lane.step == step)
            .map_or(0, |lane| lane.attempt);
        self.interrupt = Some(Interrupted {
            deadline,
            step,
            attempts,
        });
        self.set_timer(Slot::Saga, None);
        self.transition(
            step,
            if deadline {
                Transition::DeadlinePassed
            } else {
                Transition::Aborted
            },
        );
        self.update_wave(|wave| wave.halted = true);
        self.stop_members(true);
    }

    fn finish_forward_wave(&mut self, wave: Wave) {
        if self.failure.is_none() {
            if let Some(interrupted) = self.interrupt {
                // Interrupted, and every member in flight finished well.
                let Some(error) = self.interrupt_error(interrupted.deadline) else {
                    unreachable!("interrupts only come from an abort handle or a clock")
                };
                let failure = StepFailure {
                    step: interrupted.step,
                    error,
                    attempts: interrupted.attempts,
                    timed_out: false,
                    compensation: false,
                };
                self.record_failure(failure, Recovery::Compensate);
            }
        }
        let Some(failure) = &mut self.failure else {
            self.phase = self.forward_wave(wave.end);
            return;
        };
        if let Some(interrupted) = self.interrupt {
            if interrupted.deadline {
                failure.record_deadline();
            } else {
                failure.record_aborted();
            }
        }
        let propagate = failure.recovery() == Recovery::Propagate;
        self.set_timer(Slot::Saga, None);
        self.failed_block = Some((wave.start, wave.end));
        let mut left_applied = Vec::new();
        for step in wave.start..wave.end {
            let outcome = self.scratch.outcomes[step - wave.start];
            let compensable = self.needs_compensation(step);
            // Cut short with no compensation to undo it, or propagated: left applied.
            let cut_short =
                outcome == Outcome::CutShort && !self.steps[step].compensates_failed_action();
            if cut_short || (propagate && compensable) {
                left_applied.push(step);
            }
        }
        if let Some(failure) = &mut self.failure {
            left_applied
                .into_iter()
                .for_each(|step| failure.record_left_applied(step));
            if propagate {
                failure.record_never_compensated(0..wave.start);
            }
        }
        self.phase = if propagate {
            Phase::Done
        } else {
            self.backward_wave(wave.end)
        };
    }

    // ---- the backward phase -----------------------------------------------------

    fn poll_backward(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut progress = false;
        loop {
            let wave = self.wave();
            if wave.halted || wave.next == wave.start {
                break;
            }
            let step = wave.next - 1;
            if self.needs_compensation(step) {
                let Some(lane) = self.claim_lane() else {
                    break;
                };
                self.update_wave(|wave| wave.next = step);
                self.start_lane(lane, step, Kind::Compensation);
            } else {
                self.update_wave(|wave| wave.next = step);
            }
        }
        if let Some(wakers) = &self.scratch.wakers {
            wakers.register(cx.waker());
        }
        progress |= self.poll_lanes(Kind::Compensation, cx);
        let wave = self.wave();
        if self.in_flight() > 0 || (wave.next > wave.start && !wave.halted) {
            return if progress {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        if wave.halted {
            // Stopped at a failed compensation: the rest stays applied.
            let left: Vec<usize> = (wave.start..wave.next)
                .filter(|&step| self.needs_compensation(step))
                .collect();
            if let Some(failure) = &mut self.failure {
                failure.record_never_compensated(0..wave.start);
                left.into_iter()
                    .for_each(|step| failure.record_left_applied(step));
            }
            self.phase = Phase::Done;
        } else {
            self.phase = self.backward_wave(wave.start);
        }
        Poll::Ready(())
    }
}

fn notify<E>(
    observer: &(dyn Observer<E> + Send + Sync),
    at: StepRef<'_>,
    transition: Transition<'_, E>,
) {
    match transition {
        Transition::Started(Kind::Action, attempt) => observer.action_started(at, attempt),
        Transition::Started(Kind::Compensation, attempt) => {
            observer.compensation_started(at, attempt)
        }
        Transition::Succeeded(Kind::Action, attempt) => observer.action_succeeded(at, attempt),
        Transition::Succeeded(Kind::Compensation, attempt) => {
            observer.compensation_succeeded(at, attempt)
        }
        Transition::Failed(Kind::Action, attempt, error) => {
            observer.action_failed(at, attempt, error)
        }
        Transition::Failed(Kind::Compensation, attempt, error) => {
            observer.compensation_failed(at, attempt, error)
        }
        Transition::Retried(Kind::Action, next, delay) => observer.action_retried(at, next, delay),
        Transition::Retried(Kind::Compensation, next, delay) => {
            observer.compensation_retried(at, next, delay)
        }
        Transition::Aborted => observer.aborted(at),
        Transition::DeadlinePassed => observer.deadline_passed(at),
    }
}

#[cfg(feature = "tracing")]
fn transition_label<E>(transition: &Transition<'_, E>) -> (&'static str, u32) {
    match *transition {
        Transition::Started(Kind::Action, attempt) => ("action started", attempt),
        Transition::Started(Kind::Compensation, attempt) => ("compensation started", attempt),
        Transition::Succeeded(Kind::Action, attempt) => ("action succeeded", attempt),
        Transition::Succeeded(Kind::Compensation, attempt) => ("compensation succeeded", attempt),
        Transition::Failed(Kind::Action, attempt, _) => ("action failed", attempt),
        Transition::Failed(Kind::Compensation, attempt, _) => ("compensation failed", attempt),
        Transition::Retried(Kind::Action, next, _) => ("action retried", next),
        Transition::Retried(Kind::Compensation, next, _) => ("compensation retried", next),
        Transition::Aborted => ("aborted", 0),
        Transition::DeadlinePassed => ("deadline passed", 0),
    }
}

// The run never pins its fields (steps and timers are pinned in their own
// boxes), so it is `Unpin` whatever `E` is.
impl<E, S: ?Sized + Step<E>> Unpin for Run<'_, E, S> {}

impl<E, S: ?Sized + Step<E>> Future for Run<'_, E, S> {
    type Output = Result<(), SagaError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The fast path first, in a small frame: a step that suspends comes
        // back here on every wake-up.
        let fast = match this.phase {
            Phase::Sequential => this.poll_sequential(cx),
            Phase::SequentialBack => this.poll_sequential_back(cx),
            _ => Poll::Ready(()),
        };
        if fast.is_pending() {
            return Poll::Pending;
        }
        this.poll_general(cx)
    }
}

impl<E, S: ?Sized + Step<E>> Run<'_, E, S> {
    /// Everything but the fast path: starting, the lanes machinery, and
    /// completing with the report.
    #[inline(never)]
    fn poll_general(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SagaError<E>>> {
        let this = self;
        #[cfg(feature = "tracing")]
        let _entered = {
            if this.phase == Phase::Start {
                this.span = crate::trace::saga_span(this.steps.len());
            }
            this.span.clone().entered()
        };
        loop {
            let progress = match this.phase {
                Phase::Start => {
                    if let Some(observer) = this.policy.observer.as_deref() {
                        observer.saga_started(this.steps.len());
                    }
                    let deadline = this.policy.saga_timeout;
                    this.set_timer(Slot::Saga, deadline);
                    this.phase = this.forward_wave(0);
                    Poll::Ready(())
                }
                Phase::Sequential => this.poll_sequential(cx),
                Phase::SequentialBack => this.poll_sequential_back(cx),
                Phase::Forward(_) => this.poll_forward(cx),
                Phase::Backward(_) => this.poll_backward(cx),
                Phase::Done => Poll::Ready(()),
                Phase::Reported => panic!("saga `Run` polled after it completed"),
            };
            if progress.is_pending() {
                return Poll::Pending;
            }
            if this.phase == Phase::Done {
                // `Reported` stays behind, so that a further poll panics.
                this.phase = Phase::Reported;
                this.set_timer(Slot::Saga, None);
                let result = match this.failure.take() {
                    None => Ok(()),
                    Some(mut failure) => {
                        failure.finish();
                        Err(failure)
                    }
                };
                if let Some(observer) = this.policy.observer.as_deref() {
                    observer.saga_finished(result.as_ref().map(drop));
                }
                return Poll::Ready(result);
            }
        }
    }
}

impl<E, S: ?Sized + Step<E>> Drop for Run<'_, E, S> {
    fn drop(&mut self) {
        // Dropped mid-step: drop what is in flight now, not at the next run.
        let in_flight = match self.phase {
            Phase::Sequential => Some(self.cursor),
            Phase::SequentialBack => self.cursor.checked_sub(1),
            _ => None,
        };
        if let Some(step) = in_flight.and_then(|step| self.steps.get_mut(step)) {
            step.as_mut().reset();
        }
        if let Phase::Forward(_) | Phase::Backward(_) = self.phase {
            for lane in 0..self.scratch.lanes.len() {
                let Lane { step, stage, .. } = self.scratch.lanes[lane];
                if stage != Stage::Free {
                    self.release_lane(lane);
                    if let Some(step) = self.steps.get_mut(step) {
                        step.as_mut().reset();
                    }
                }
                self.set_timer(Slot::Lane(lane), None);
            }
        }
        self.set_timer(Slot::Saga, None);
    }
}

impl<E, S: ?Sized + Step<E>> fmt::Debug for Run<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("steps", &self.steps.len())
            .field("phase", &self.phase)
            .field("failed", &self.failure.is_some())
            .field("abortable", &self.abort.is_some())
            .field("timed", &self.clock.is_some())
            .finish()
    }
}
