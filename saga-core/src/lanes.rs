//! Wakers for steps that run side by side: one waker per lane, so that a
//! wake-up polls only the step that was woken (no busy polling).

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::Waker;

use futures_util::task::AtomicWaker;

/// Lanes per word of the wake bitset.
pub(crate) const WORD: usize = usize::BITS as usize;

/// One waker per lane, made once when the saga is built and reused by every
/// run. A lane's waker marks the lane as woken and wakes the run.
pub(crate) struct LaneWakers {
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
}

struct Shared {
    run: AtomicWaker,
    // One bit per lane, so a poll finds the woken lanes a word at a time.
    woken: Vec<AtomicUsize>,
}

struct LaneWaker {
    shared: Arc<Shared>,
    lane: usize,
}

impl Wake for LaneWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.mark(self.lane);
        self.shared.run.wake();
    }
}

impl Shared {
    fn mark(&self, lane: usize) {
        self.woken[lane / WORD].fetch_or(1 << (lane % WORD), Ordering::Release);
    }
}

impl LaneWakers {
    pub(crate) fn new(lanes: usize) -> Self {
        let shared = Arc::new(Shared {
            run: AtomicWaker::new(),
            woken: (0..lanes.div_ceil(WORD))
                .map(|_| AtomicUsize::new(0))
                .collect(),
        });
        let wakers = (0..lanes)
            .map(|lane| {
                Waker::from(Arc::new(LaneWaker {
                    shared: shared.clone(),
                    lane,
                }))
            })
            .collect();
        LaneWakers { shared, wakers }
    }

    /// Remembers the run's waker, for lanes to wake.
    pub(crate) fn register(&self, run: &Waker) {
        self.shared.run.register(run);
    }

    /// Marks a lane to be polled (a step just started in it).
    pub(crate) fn mark(&self, lane: usize) {
        self.shared.mark(lane);
    }

    /// How many words of [`WORD`] lanes there are.
    pub(crate) fn words(&self) -> usize {
        self.shared.woken.len()
    }

    /// The lanes of word `word` (bit `i` is lane `WORD * word + i`) woken
    /// since they were last taken; clears them.
    pub(crate) fn take_word(&self, word: usize) -> usize {
        self.shared.woken[word].swap(0, Ordering::AcqRel)
    }

    pub(crate) fn waker(&self, lane: usize) -> &Waker {
        &self.wakers[lane]
    }
}
