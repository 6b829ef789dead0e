//! What a run borrows from its saga to keep its steps in flight: the lanes,
//! their wakers, and the outcome of each member of the block being run.
//! Made once by `build()`; every run leaves it as it found it.

use alloc::vec::Vec;
use core::ops::{Index, IndexMut};

use super::wakers::LaneWakers;
use super::{Ending, Kind};

/// What a run borrows from its saga to keep its lanes. A saga of single
/// steps needs one lane and one outcome, kept inline: building it allocates
/// nothing here.
pub(crate) struct Scratch<E> {
    pub(super) lanes: Lanes<E>,
    // How many lanes have a step in flight.
    pub(super) busy: usize,
    // Lanes other than lane 0 freed during this wave, to reuse first.
    pub(super) spare: Vec<usize>,
    // Lanes `fresh..` have not been used in this wave. A wave takes lanes in
    // index order, so its members are polled in member order, run after run.
    pub(super) fresh: usize,
    // Per member of the block in the forward phase.
    pub(super) outcomes: Outcomes,
    // `None` when no wave runs more than one step at a time.
    pub(super) wakers: Option<LaneWakers>,
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

    pub(super) fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// A wave starts: every lane is free, and taken in index order again.
    pub(super) fn reset_pool(&mut self) {
        self.spare.clear();
        self.fresh = 1;
    }

    /// A free lane, when fewer than `limit` steps are in flight.
    #[inline(always)]
    pub(super) fn claim(&mut self, limit: usize) -> Option<usize> {
        if self.busy >= limit {
            return None;
        }
        if self.lanes.first.stage == Stage::Free {
            return Some(0);
        }
        if let Some(lane) = self.spare.pop() {
            return Some(lane);
        }
        let lane = self.fresh;
        self.fresh += 1;
        (lane < self.lanes.len()).then_some(lane)
    }

    /// Takes `lane` (free, so with no error kept) for the first attempt at
    /// `kind` of `step`.
    #[inline(always)]
    pub(super) fn occupy(&mut self, lane: usize, step: usize, kind: Kind) {
        let slot = &mut self.lanes[lane];
        slot.step = step;
        slot.kind = kind;
        slot.attempt = 1;
        slot.stage = Stage::Running;
        self.busy += 1;
    }

    /// Marks `lane` to be polled in a wave of several steps side by side.
    pub(super) fn mark(&self, lane: usize) {
        if let Some(wakers) = &self.wakers {
            wakers.mark(lane);
        }
    }

    /// Frees a lane whose step ended.
    #[inline(always)]
    pub(super) fn release(&mut self, lane: usize) {
        let slot = &mut self.lanes[lane];
        if slot.stage == Stage::Free {
            return;
        }
        slot.stage = Stage::Free;
        slot.panic = None;
        slot.last_error = None;
        self.busy -= 1;
        if lane != 0 {
            self.spare.push(lane);
        }
    }

    /// The run is over (finished or dropped): nothing of it may reach the
    /// next run.
    pub(super) fn end_run(&mut self) {
        if let Some(wakers) = &mut self.wakers {
            wakers.end_run();
        }
    }

    /// The lowest step in flight, with its attempt number.
    pub(super) fn lowest_in_flight(&self) -> Option<(usize, u32)> {
        (0..self.lanes.len())
            .map(|lane| &self.lanes[lane])
            .filter(|lane| lane.stage != Stage::Free)
            .map(|lane| (lane.step, lane.attempt))
            .min()
    }
}

pub(super) struct Lanes<E> {
    pub(super) first: Lane<E>,
    pub(super) rest: Vec<Lane<E>>,
}

impl<E> Lanes<E> {
    pub(super) fn len(&self) -> usize {
        1 + self.rest.len()
    }
}

impl<E> Index<usize> for Lanes<E> {
    type Output = Lane<E>;

    #[inline]
    fn index(&self, lane: usize) -> &Lane<E> {
        match lane.checked_sub(1) {
            None => &self.first,
            Some(rest) => &self.rest[rest],
        }
    }
}

impl<E> IndexMut<usize> for Lanes<E> {
    #[inline]
    fn index_mut(&mut self, lane: usize) -> &mut Lane<E> {
        match lane.checked_sub(1) {
            None => &mut self.first,
            Some(rest) => &mut self.rest[rest],
        }
    }
}

/// The outcome of each member of the forward block.
pub(super) struct Outcomes {
    pub(super) single: Outcome,
    // Sized for the widest group when the saga is built.
    pub(super) many: Vec<Outcome>,
    pub(super) width: usize,
}

impl Outcomes {
    pub(super) fn reset(&mut self, width: usize) {
        self.width = width;
        self.single = Outcome::NotStarted;
        if width > 1 {
            self.many.clear();
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
pub(super) struct Lane<E> {
    pub(super) step: usize,
    pub(super) kind: Kind,
    pub(super) attempt: u32,
    pub(super) stage: Stage,
    // While backing off: the last attempt's error, and whether it timed out.
    pub(super) last_error: Option<(E, bool)>,
    // Set by `fail_in_flight`: the attempt is to fail with this panic.
    pub(super) panic: Option<Panic<E>>,
    #[cfg(feature = "tracing")]
    pub(super) span: tracing::Span,
}

/// A panic that fails a lane's attempt.
pub(super) struct Panic<E> {
    pub(super) error: E,
    pub(super) ending: Ending,
    // The panic came from a callback deciding about the attempt (classifier,
    // jitter) or timing it (sleeper): the attempt is the last one, and the
    // observer already heard of its own failure when `announced`.
    pub(super) last: bool,
    pub(super) announced: bool,
    // A crash cut the attempt short before a restart (see `Crashed`).
    pub(super) crashed: bool,
}

impl<E> Default for Lane<E> {
    fn default() -> Self {
        Lane {
            step: 0,
            kind: Kind::Action,
            attempt: 0,
            stage: Stage::Free,
            last_error: None,
            panic: None,
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Free,
    Running,
    // Started, and waiting for its record to be durable (with a journal).
    Journaling,
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
