//! The heap (embedded-alloc's linked-list allocator over 32 KiB), wrapped in
//! a global allocator that counts allocations, and a painted stack to
//! measure the deepest stack use.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use embedded_alloc::LlffHeap;

/// Bytes of RAM given to the heap.
pub const HEAP_SIZE: usize = 32 * 1024;

static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];

/// The allocator, counting what goes through it.
pub struct CountingHeap {
    heap: LlffHeap,
    allocations: AtomicUsize,
    deallocations: AtomicUsize,
    reallocations: AtomicUsize,
    // Bytes requested and not yet freed, and the most there ever were.
    live_bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
}

/// What the counters say at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// `LlffHeap::used`: bytes the allocator holds for live blocks.
    pub used: usize,
    pub allocations: usize,
    pub deallocations: usize,
    pub reallocations: usize,
}

impl Stats {
    /// Blocks allocated and not freed.
    pub fn live_blocks(&self) -> usize {
        self.allocations - self.deallocations
    }
}

#[global_allocator]
pub static HEAP: CountingHeap = CountingHeap {
    heap: LlffHeap::empty(),
    allocations: AtomicUsize::new(0),
    deallocations: AtomicUsize::new(0),
    reallocations: AtomicUsize::new(0),
    live_bytes: AtomicUsize::new(0),
    peak_bytes: AtomicUsize::new(0),
};

impl CountingHeap {
    pub fn stats(&self) -> Stats {
        Stats {
            used: self.heap.used(),
            allocations: self.allocations.load(Ordering::Relaxed),
            deallocations: self.deallocations.load(Ordering::Relaxed),
            reallocations: self.reallocations.load(Ordering::Relaxed),
        }
    }

    /// The most bytes requested and live at once since boot.
    pub fn peak(&self) -> usize {
        self.peak_bytes.load(Ordering::Relaxed)
    }

    fn grew(&self, bytes: usize) {
        let live = self.live_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_bytes.fetch_max(live, Ordering::Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        self.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `LlffHeap`'s, with the same arguments;
// the counters are only atomics on the side.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = unsafe { self.heap.alloc(layout) };
        if !block.is_null() {
            self.allocations.fetch_add(1, Ordering::Relaxed);
            self.grew(layout.size());
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        self.deallocations.fetch_add(1, Ordering::Relaxed);
        self.shrank(layout.size());
        unsafe { self.heap.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { self.heap.realloc(block, layout, new_size) };
        if !moved.is_null() {
            self.reallocations.fetch_add(1, Ordering::Relaxed);
            self.shrank(layout.size());
            self.grew(new_size);
        }
        moved
    }
}

/// Gives the heap its memory; called once, first thing in `main`.
pub fn init() {
    // SAFETY: called once, before anything allocates; the memory is a
    // static that nothing else names.
    unsafe { HEAP.heap.init(&raw mut HEAP_MEMORY as usize, HEAP_SIZE) }
}

// ---------------------------------------------------------------------------
// The stack: cortex-m-rt puts it at the top of RAM, growing down to
// `_stack_end` (the end of the statics, heap memory included).

const PAINT: u32 = 0x5A5A_A5A5;
/// Left unpainted below the current stack pointer: `paint_stack`'s own frame.
const MARGIN: usize = 256;

unsafe extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

fn stack_bounds() -> (usize, usize) {
    let top = &raw const _stack_start as usize;
    let bottom = &raw const _stack_end as usize;
    (bottom.next_multiple_of(4), top)
}

/// Fills the unused stack with a pattern, so that `stack_peak` can tell how
/// deep it was ever used.
pub fn paint_stack() {
    let (bottom, _) = stack_bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut word = bottom;
    while word + 4 <= sp - MARGIN {
        // SAFETY: between the end of the statics and below the live stack
        // (with a margin for this frame): memory nothing uses yet.
        unsafe { core::ptr::write_volatile(word as *mut u32, PAINT) };
        word += 4;
    }
}

/// The deepest the stack went since `paint_stack`, in bytes from its top.
pub fn stack_peak() -> usize {
    let (bottom, top) = stack_bounds();
    let mut word = bottom;
    // SAFETY: reads of RAM inside the stack region.
    while word < top && unsafe { core::ptr::read_volatile(word as *const u32) } == PAINT {
        word += 4;
    }
    top - word
}
