//! Wakers for steps that run side by side: one waker per lane, so that a
//! wake-up polls only the step that was woken (no busy polling), and a
//! waker that outlived its run never polls a step of a later run.

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::task::Waker;

use futures_util::task::AtomicWaker;

/// Lanes per word of the wake bitset.
pub(super) const WORD: usize = usize::BITS as usize;

/// One waker per lane, made when the saga is built and reused by every run.
/// A lane's waker flags itself, marks its lane in a bitset (so that a poll
/// finds the woken lanes a word at a time) and wakes the run.
pub(crate) struct LaneWakers {
    shared: Arc<Shared>,
    lanes: Vec<LaneSlot>,
}

struct LaneSlot {
    inner: Arc<LaneWaker>,
    waker: Waker,
}

struct Shared {
    run: AtomicWaker,
    // One bit per lane: a hint of which lanes' wakers to check.
    marked: Vec<AtomicUsize>,
}

struct LaneWaker {
    shared: Arc<Shared>,
    lane: usize,
    // The authority: set by this waker, taken by the run. A retired waker's
    // flag is no lane's, so a late wake-up through it polls nothing.
    woken: AtomicBool,
    retired: AtomicBool,
}

impl Wake for LaneWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        self.woken.store(true, Ordering::Release);
        self.shared.mark(self.lane);
        self.shared.run.wake();
    }
}

impl Shared {
    fn mark(&self, lane: usize) {
        self.marked[lane / WORD].fetch_or(1 << (lane % WORD), Ordering::Release);
    }
}

impl LaneSlot {
    fn new(shared: &Arc<Shared>, lane: usize) -> Self {
        let inner = Arc::new(LaneWaker {
            shared: shared.clone(),
            lane,
            woken: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        });
        let waker = Waker::from(inner.clone());
        LaneSlot { inner, waker }
    }
}

impl LaneWakers {
    pub(super) fn new(lanes: usize) -> Self {
        let shared = Arc::new(Shared {
            run: AtomicWaker::new(),
            marked: (0..lanes.div_ceil(WORD))
                .map(|_| AtomicUsize::new(0))
                .collect(),
        });
        let lanes = (0..lanes)
            .map(|lane| LaneSlot::new(&shared, lane))
            .collect();
        LaneWakers { shared, lanes }
    }

    /// Remembers the run's waker, for lanes to wake.
    pub(super) fn register(&self, run: &Waker) {
        self.shared.run.register(run);
    }

    /// Marks a lane to be polled (a step just started in it, or failed from
    /// outside).
    pub(super) fn mark(&self, lane: usize) {
        self.lanes[lane].inner.woken.store(true, Ordering::Release);
        self.shared.mark(lane);
    }

    /// How many words of [`WORD`] lanes there are.
    pub(super) fn words(&self) -> usize {
        self.shared.marked.len()
    }

    /// The lanes of word `word` (bit `i` is lane `WORD * word + i`) marked
    /// since they were last taken; clears them. Only a hint: check each
    /// with [`take_woken`](LaneWakers::take_woken).
    pub(super) fn take_word(&self, word: usize) -> usize {
        self.shared.marked[word].swap(0, Ordering::AcqRel)
    }

    /// Whether the lane's current waker was woken since last asked.
    pub(super) fn take_woken(&self, lane: usize) -> bool {
        self.lanes[lane].inner.woken.swap(false, Ordering::AcqRel)
    }

    /// Marks again every lane whose waker was woken: after a panic, which
    /// may have cut a poll short between taking a word and polling its lanes.
    pub(super) fn remark_woken(&self) {
        for (lane, slot) in self.lanes.iter().enumerate() {
            if slot.inner.woken.load(Ordering::Acquire) {
                self.shared.mark(lane);
            }
        }
    }

    pub(super) fn waker(&self, lane: usize) -> &Waker {
        &self.lanes[lane].waker
    }

    /// A run ended: clears every mark, and replaces each lane waker that a
    /// future still holds a clone of (so that its late wake-ups reach no
    /// later run). Allocates only for those.
    pub(super) fn end_run(&mut self) {
        for word in &self.shared.marked {
            word.store(0, Ordering::Release);
        }
        for lane in 0..self.lanes.len() {
            let slot = &mut self.lanes[lane];
            slot.inner.woken.store(false, Ordering::Release);
            // Ours are the slot's `Arc` and the `Waker` made from it.
            if Arc::strong_count(&slot.inner) > 2 {
                slot.inner.retired.store(true, Ordering::Release);
                *slot = LaneSlot::new(&self.shared, lane);
            }
        }
    }
}
