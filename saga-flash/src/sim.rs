//! [`SimFlash`]: a simulated NOR flash that follows NOR's rules and can
//! lose power at any write or erase, for tests (feature `sim`).
//!
//! The rules it enforces:
//!
//! - an erase sets a whole sector (`E` bytes, aligned) to `0xFF`;
//! - a write (`W`-byte aligned offset and length) can only clear bits: the
//!   byte becomes `old & new`;
//! - a word (`W` bytes) is written at most once between erases: writing it
//!   twice panics, as it is undefined on many NOR parts (ECC flash, for one).
//!
//! [`cut_power_at`](SimFlash::cut_power_at) makes the `k`-th write or erase
//! (counted by [`ops`](SimFlash::ops)) the last: it is done only in part, as
//! a [`Tear`] says, it fails, and every later operation (reads included)
//! fails too, until [`reboot`](SimFlash::reboot) gives a powered flash with
//! the same contents.

use alloc::vec;
use alloc::vec::Vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// How the operation that loses power is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tear {
    /// Not begun: nothing changed.
    Before,
    /// Half done: a write wrote its first half of words and part of the
    /// bits of the next; an erase erased the second half of the sector
    /// (its first bytes, the header among them, are left as they were).
    Partial,
    /// Done in disorder: a write wrote some words, not others, and part of
    /// the bits of some (its first word may be left blank while later ones
    /// are written); an erase set some bits of every byte, and some bytes
    /// wholly, leaving garbage.
    Noise,
}

/// What a [`SimFlash`] fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimError(NorFlashErrorKind);

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "simulated flash: {}", self.0)
    }
}

impl core::error::Error for SimError {}

/// A simulated NOR flash of sectors of `E` bytes, written in words of `W`
/// bytes (read a byte at a time), that can lose power at any write or erase.
///
/// # Examples
///
/// ```
/// use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
/// use saga_flash::sim::{SimFlash, Tear};
///
/// let mut flash = SimFlash::<4, 256>::new(2);
/// flash.write(0, &[0x0F, 0xF0, 0x00, 0xFF])?;
/// let mut bytes = [0; 4];
/// flash.read(0, &mut bytes)?;
/// assert_eq!(bytes, [0x0F, 0xF0, 0x00, 0xFF]);
///
/// flash.cut_power_at(flash.ops(), Tear::Partial);
/// assert!(flash.erase(0, 256).is_err()); // power lost in the middle
/// assert!(flash.read(0, &mut bytes).is_err()); // and nothing works after
/// let mut flash = flash.reboot();
/// flash.read(0, &mut bytes)?;
/// assert_eq!(bytes, [0x0F, 0xF0, 0x00, 0xFF]); // the first half was left
/// # Ok::<(), saga_flash::sim::SimError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SimFlash<const W: usize = 4, const E: usize = 1024> {
    bytes: Vec<u8>,
    written: Vec<bool>,
    erases: Vec<u64>,
    ops: u64,
    cut: Option<(u64, Tear)>,
    dead: bool,
    cut_erase: bool,
    seed: u64,
}

impl<const W: usize, const E: usize> SimFlash<W, E> {
    /// A blank flash of `sectors` sectors.
    pub fn new(sectors: usize) -> Self {
        SimFlash {
            bytes: vec![0xFF; sectors * E],
            written: vec![false; sectors * E / W],
            erases: vec![0; sectors],
            ops: 0,
            cut: None,
            dead: false,
            cut_erase: false,
            seed: 0x2545_F491_4F6C_DD1D,
        }
    }

    /// The flash's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many writes and erases were made (those that failed included).
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Makes write or erase number `op` (as [`ops`](SimFlash::ops) counts
    /// them, from 0) lose power, left as `tear` says.
    pub fn cut_power_at(&mut self, op: u64, tear: Tear) {
        self.cut = Some((op, tear));
    }

    /// Seeds the noise of [`Tear::Noise`], for varied garbage.
    pub fn seed(&mut self, seed: u64) {
        self.seed = seed | 1;
    }

    /// How many times the sector holding byte `offset` was erased (or
    /// began to be), over every boot.
    pub fn erases_of(&self, offset: usize) -> u64 {
        self.erases.get(offset / E).copied().unwrap_or(0)
    }

    /// Whether the power was lost.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Whether the power was lost during an erase (else during a write, or
    /// not at all).
    pub fn cut_hit_erase(&self) -> bool {
        self.cut_erase
    }

    /// The flash after a reboot: the same contents, powered, with no power
    /// cut planned and the operation count at 0.
    pub fn reboot(&self) -> Self {
        SimFlash {
            bytes: self.bytes.clone(),
            written: self.written.clone(),
            erases: self.erases.clone(),
            ops: 0,
            cut: None,
            dead: false,
            cut_erase: false,
            seed: self.seed,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        x
    }

    /// Counts the operation; the tear if power is lost at it.
    fn begin(&mut self) -> Result<Option<Tear>, SimError> {
        if self.dead {
            return Err(SimError(NorFlashErrorKind::Other));
        }
        let op = self.ops;
        self.ops += 1;
        match self.cut {
            Some((at, tear)) if at == op => {
                self.dead = true;
                Ok(Some(tear))
            }
            _ => Ok(None),
        }
    }

    fn program(&mut self, offset: usize, bytes: &[u8], word: usize, mask: u8) {
        let at = offset + word * W;
        let index = at / W;
        assert!(
            !self.written[index],
            "the word at {at:#x} is written twice without an erase"
        );
        self.written[index] = true;
        for (slot, byte) in self.bytes[at..at + W].iter_mut().zip(&bytes[word * W..]) {
            // Only the bits in `mask` of those to clear are cleared.
            *slot &= !(!byte & mask);
        }
    }
}

impl<const W: usize, const E: usize> ErrorType for SimFlash<W, E> {
    type Error = SimError;
}

impl<const W: usize, const E: usize> ReadNorFlash for SimFlash<W, E> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.dead {
            return Err(SimError(NorFlashErrorKind::Other));
        }
        let offset = offset as usize;
        let source = self
            .bytes
            .get(offset..offset + bytes.len())
            .ok_or(SimError(NorFlashErrorKind::OutOfBounds))?;
        bytes.copy_from_slice(source);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl<const W: usize, const E: usize> NorFlash for SimFlash<W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let (from, to) = (from as usize, to as usize);
        if from % E != 0 || to % E != 0 || from > to {
            return Err(SimError(NorFlashErrorKind::NotAligned));
        }
        if to > self.bytes.len() {
            return Err(SimError(NorFlashErrorKind::OutOfBounds));
        }
        let tear = self.begin()?;
        self.cut_erase = tear.is_some();
        for sector in from / E..to / E {
            self.erases[sector] += 1;
        }
        let erase = |flash: &mut Self, range: core::ops::Range<usize>| {
            flash.bytes[range.clone()].fill(0xFF);
            flash.written[range.start / W..range.end / W].fill(false);
        };
        match tear {
            None => {
                erase(self, from..to);
                return Ok(());
            }
            Some(Tear::Before) => {}
            Some(Tear::Partial) => {
                let half = from + ((to - from) / 2 / W) * W;
                erase(self, half..to);
            }
            Some(Tear::Noise) => {
                for at in from..to {
                    let noise = self.random();
                    if noise % 4 == 0 {
                        self.bytes[at] = 0xFF;
                    } else {
                        self.bytes[at] |= (noise >> 8) as u8;
                    }
                }
                // Every word may hold any bits now: only an erase makes
                // it writable again.
                self.written[from / W..to / W].fill(true);
            }
        }
        Err(SimError(NorFlashErrorKind::Other))
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let offset = offset as usize;
        if offset % W != 0 || bytes.len() % W != 0 {
            return Err(SimError(NorFlashErrorKind::NotAligned));
        }
        if offset + bytes.len() > self.bytes.len() {
            return Err(SimError(NorFlashErrorKind::OutOfBounds));
        }
        let words = bytes.len() / W;
        let tear = self.begin()?;
        match tear {
            None => {
                for word in 0..words {
                    self.program(offset, bytes, word, 0xFF);
                }
                return Ok(());
            }
            Some(Tear::Before) => {}
            Some(Tear::Partial) => {
                let half = words / 2;
                for word in 0..half {
                    self.program(offset, bytes, word, 0xFF);
                }
                if half < words {
                    let mask = self.random() as u8;
                    self.program(offset, bytes, half, mask);
                }
            }
            Some(Tear::Noise) => {
                for word in 0..words {
                    match self.random() % 3 {
                        0 => {}
                        1 => self.program(offset, bytes, word, 0xFF),
                        _ => {
                            let mask = self.random() as u8;
                            self.program(offset, bytes, word, mask);
                        }
                    }
                }
            }
        }
        Err(SimError(NorFlashErrorKind::Other))
    }
}
