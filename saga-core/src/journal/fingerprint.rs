//! The fingerprint of a saga's shape: what a journal must still match for
//! the saga to resume from it.

use crate::StepOutput;
use crate::group::GroupSpec;
use crate::run::StepTable;

/// FNV-1a, 64 bits: small, dependency-free, and stable across builds and
/// platforms (a journal outlives the binary that wrote it).
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn number(&mut self, number: usize) {
        self.bytes(&(number as u64).to_le_bytes());
    }
}

/// The steps (how many, their names, what they compensate and save) and the
/// parallel groups. Policies (retries, timeouts) are not part of it: they
/// may change between versions of a binary without stranding a journal.
pub(crate) fn fingerprint<E, B: ?Sized + StepTable<E>>(steps: &B, groups: &[GroupSpec]) -> u64 {
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    hash.number(steps.step_count());
    for step in 0..steps.step_count() {
        match steps.step_name(step) {
            Some(name) => {
                hash.number(name.len() + 1);
                hash.bytes(name.as_bytes());
            }
            None => hash.number(0),
        }
        let output = match steps.output(step) {
            StepOutput::Nothing => 0,
            StepOutput::Saved => 1,
            StepOutput::Unsaved => 2,
        };
        let flags = u8::from(steps.compensates_failed_action(step))
            | u8::from(steps.retries_compensation(step)) << 1
            | output << 2;
        hash.bytes(&[flags]);
    }
    hash.number(groups.len());
    for group in groups {
        hash.number(group.members.start);
        hash.number(group.members.end);
    }
    hash.0
}
