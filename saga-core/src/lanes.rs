//! Wakers for steps that run side by side: one waker per lane, so that a
//! wake-up polls only the step that was woken (no busy polling).

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Waker;

use futures_util::task::AtomicWaker;

/// One waker per lane, made once when the saga is built and reused by every
/// run. A lane's waker marks the lane as woken and wakes the run.
pub(crate) struct LaneWakers {
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
}

struct Shared {
    run: AtomicWaker,
    woken: Vec<AtomicBool>,
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
        self.shared.woken[self.lane].store(true, Ordering::Release);
        self.shared.run.wake();
    }
}

impl LaneWakers {
    pub(crate) fn new(lanes: usize) -> Self {
        let shared = Arc::new(Shared {
            run: AtomicWaker::new(),
            woken: (0..lanes).map(|_| AtomicBool::new(false)).collect(),
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
        self.shared.woken[lane].store(true, Ordering::Release);
    }

    /// Whether the lane was woken since it was last polled; clears the mark.
    pub(crate) fn take(&self, lane: usize) -> bool {
        self.shared.woken[lane].swap(false, Ordering::AcqRel)
    }

    pub(crate) fn waker(&self, lane: usize) -> &Waker {
        &self.wakers[lane]
    }
}
