//! What a run borrows from its saga to keep its steps in flight: the lanes,
//! and the outcome of each member of the block being run.

use alloc::vec::Vec;
use core::ops::{Index, IndexMut};

use crate::lanes::LaneWakers;

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
    // `None` when no block needs more than one lane.
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

    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
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
pub(super) struct Lane<E> {
    pub(super) step: usize,
    pub(super) attempt: u32,
    pub(super) stage: Stage,
    // While backing off: the last attempt's error, and whether it timed out.
    pub(super) last_error: Option<(E, bool)>,
    // Set by `fail_in_flight`: the attempt panicked.
    pub(super) panicked: Option<E>,
    #[cfg(feature = "tracing")]
    pub(super) span: tracing::Span,
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
pub(super) enum Stage {
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
