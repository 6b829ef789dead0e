//! A minimal `embassy-time` driver over the Cortex-M SysTick timer.
//!
//! QEMU's `lm3s6965evb` has no embassy HAL, so the example brings its own
//! time driver. It is deliberately simple:
//!
//! - SysTick fires every millisecond (the `tick-hz-1_000` rate this crate
//!   selects on `embassy-time-driver`); its exception handler adds one to a
//!   64-bit tick counter, which is what [`Driver::now`] returns.
//! - The timer queue is a fixed table of [`ALARMS`] `(deadline, waker)`
//!   slots. [`Driver::schedule_wake`] puts a waker in it; the SysTick handler
//!   wakes and frees the slots whose deadline has come.
//!
//! A production driver would be tickless (a compare-match timer set to the
//! nearest deadline, so the core sleeps between them) and would keep an
//! intrusive queue in the executor's task headers instead of a fixed table;
//! for an example that runs under QEMU for a second, ticking every
//! millisecond is plenty.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::{Driver, TICK_HZ};

/// The core clock SysTick counts. QEMU's LM3S6965 runs at 12.5 MHz out of
/// reset (its 200 MHz PLL reference divided by the reset `RCC.SYSDIV` of 16).
const CORE_HZ: u64 = 12_500_000;

/// SysTick reload value for one tick: SysTick counts `RELOAD + 1` cycles
/// between exceptions.
const RELOAD: u32 = (CORE_HZ / TICK_HZ - 1) as u32;

/// How many timers can be pending at once. embassy's `Timer` registers its
/// task's waker, so this counts tasks waiting on a timer, not timer futures;
/// the example has one task.
const ALARMS: usize = 4;

/// A pending wake: the deadline in ticks, and the waker to wake then.
type Alarm = Option<(u64, Waker)>;

struct SysTickDriver {
    /// Ticks since `init`. 64 bits so it never wraps; the Cortex-M3 has no
    /// 64-bit atomics, so it is read and written under a critical section.
    ticks: Mutex<Cell<u64>>,
    /// Pending wakes; `None` is a free slot.
    alarms: Mutex<RefCell<[Alarm; ALARMS]>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    alarms: Mutex::new(RefCell::new([const { None }; ALARMS])),
});

impl SysTickDriver {
    fn now_in(&self, cs: CriticalSection<'_>) -> u64 {
        self.ticks.borrow(cs).get()
    }

    /// One tick: advance the clock, then wake whatever is due. The wakers
    /// are taken out under the critical section and woken after it, so that
    /// waking (which pends the executor) never runs with interrupts masked.
    fn on_tick(&self) {
        let mut due: [Option<Waker>; ALARMS] = [const { None }; ALARMS];
        critical_section::with(|cs| {
            let now = self.now_in(cs) + 1;
            self.ticks.borrow(cs).set(now);
            let mut alarms = self.alarms.borrow_ref_mut(cs);
            for (slot, out) in alarms.iter_mut().zip(due.iter_mut()) {
                if slot.as_ref().is_some_and(|(at, _)| *at <= now) {
                    *out = slot.take().map(|(_, waker)| waker);
                }
            }
        });
        for waker in due.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.now_in(cs))
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        let due_now = critical_section::with(|cs| {
            if at <= self.now_in(cs) {
                return true;
            }
            let mut alarms = self.alarms.borrow_ref_mut(cs);
            // The same task sleeping again: keep the earlier deadline. A
            // task woken early polls its timers, and each one that has not
            // expired registers again.
            if let Some((deadline, _)) = alarms
                .iter_mut()
                .flatten()
                .find(|(_, pending)| pending.will_wake(waker))
            {
                *deadline = (*deadline).min(at);
                return false;
            }
            match alarms.iter_mut().find(|slot| slot.is_none()) {
                Some(free) => *free = Some((at, waker.clone())),
                None => panic!("time driver: more than {ALARMS} tasks waiting on timers"),
            }
            false
        });
        if due_now {
            waker.wake_by_ref();
        }
    }
}

/// Starts the clock: SysTick on the core clock, one exception per tick.
pub fn init(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    DRIVER.on_tick();
}
