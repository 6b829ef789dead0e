//! [`Record`]: one transition of a durable saga, as its journal keeps it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::codec::{Codec, DecodeError, Reader};

/// One transition of a saga, numbered: the first record of a journal is
/// number 0 ([`Event::Created`]), and each next one is one more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's place in the saga's journal, gap-free from 0.
    pub seq: u64,
    /// What happened.
    pub event: Event,
}

/// What a [`Record`] says happened. Steps are numbered from 0 in the
/// order they were added; attempts from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The saga was started: its definition, the fingerprint of its shape
    /// and its encoded parameters.
    Created {
        /// The definition's name.
        definition: String,
        /// The definition's version.
        version: u32,
        /// The fingerprint of the saga's shape when it was started.
        fingerprint: u64,
        /// The parameters the saga was built from.
        parameters: Vec<u8>,
    },
    /// An action attempt is about to be polled for the first time.
    ActionStarted {
        /// The step.
        step: u32,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// The step's action succeeded.
    ActionSucceeded {
        /// The step.
        step: u32,
        /// The action's encoded value, for a step that saves one.
        output: Option<Vec<u8>>,
    },
    /// An action attempt failed, timed out or was cut short.
    ActionFailed {
        /// The step.
        step: u32,
        /// The attempt.
        attempt: u32,
        /// The error, as it displays.
        message: String,
    },
    /// A failed attempt is to be followed by another (after its backoff).
    Retrying {
        /// The step.
        step: u32,
        /// Whether the compensation is retried (else the action).
        compensation: bool,
        /// The attempt that follows.
        attempt: u32,
    },
    /// The forward phase stopped and the saga compensates from here.
    Unwinding {
        /// The step the saga failed at (as [`SagaError::failed_step`](crate::SagaError::failed_step)).
        step: u32,
        /// Why it stopped.
        reason: Unwind,
    },
    /// A compensation attempt is about to be polled for the first time.
    CompensationStarted {
        /// The step.
        step: u32,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// The step's compensation succeeded.
    CompensationSucceeded {
        /// The step.
        step: u32,
    },
    /// A compensation attempt failed or timed out.
    CompensationFailed {
        /// The step.
        step: u32,
        /// The attempt.
        attempt: u32,
        /// The error, as it displays.
        message: String,
    },
    /// An operator asked for what a stuck saga left applied to be
    /// compensated again: the saga unwinds once more, and its failed
    /// compensations are attempted again.
    Reopened,
    /// The saga ended. No record follows but [`Event::Reopened`].
    Finished {
        /// How.
        outcome: Outcome,
        /// The saga's error as it displays (empty when committed).
        message: String,
    },
}

/// Why a saga began to compensate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unwind {
    /// An action failed (or timed out, or was cut short).
    Failed,
    /// The run was aborted.
    Aborted,
    /// The saga's deadline passed.
    Deadline,
    /// A panic stopped it.
    Panicked,
    /// The classifier chose not to compensate: nothing is undone.
    Propagated,
}

/// How a saga ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Every action succeeded.
    Committed,
    /// An action failed and everything applied was compensated.
    Compensated,
    /// It failed and something is left applied (a compensation failed, or
    /// the failure was propagated): an operator has to look at it.
    Stuck,
    /// An operator gave it up.
    Abandoned,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Committed => "committed",
            Outcome::Compensated => "compensated",
            Outcome::Stuck => "stuck",
            Outcome::Abandoned => "abandoned",
        })
    }
}

impl Record {
    /// The record's bytes, for a store that keeps bytes (a file, flash).
    ///
    /// ```
    /// use saga_core::journal::{Event, Record};
    ///
    /// let record = Record { seq: 3, event: Event::ActionStarted { step: 1, attempt: 2 } };
    /// let bytes = record.to_bytes();
    /// assert_eq!(Record::from_bytes(&bytes)?, record);
    /// # Ok::<(), saga_core::journal::DecodeError>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads a record written by [`to_bytes`](Record::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Record, DecodeError> {
        Record::decode(bytes)
    }
}

impl Unwind {
    fn tag(self) -> u8 {
        match self {
            Unwind::Failed => 0,
            Unwind::Aborted => 1,
            Unwind::Deadline => 2,
            Unwind::Panicked => 3,
            Unwind::Propagated => 4,
        }
    }
}

impl Outcome {
    fn tag(self) -> u8 {
        match self {
            Outcome::Committed => 0,
            Outcome::Compensated => 1,
            Outcome::Stuck => 2,
            Outcome::Abandoned => 3,
        }
    }
}

impl Codec for Unwind {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = reader.offset();
        Ok(match u8::decode_from(reader)? {
            0 => Unwind::Failed,
            1 => Unwind::Aborted,
            2 => Unwind::Deadline,
            3 => Unwind::Panicked,
            4 => Unwind::Propagated,
            _ => return Err(DecodeError::new("unknown unwind reason", at)),
        })
    }
}

impl Codec for Outcome {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = reader.offset();
        Ok(match u8::decode_from(reader)? {
            0 => Outcome::Committed,
            1 => Outcome::Compensated,
            2 => Outcome::Stuck,
            3 => Outcome::Abandoned,
            _ => return Err(DecodeError::new("unknown outcome", at)),
        })
    }
}

// The format's version, first in every record: a later format can still
// read these.
const FORMAT: u8 = 1;

impl Codec for Record {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORMAT);
        self.seq.encode(out);
        match &self.event {
            Event::Created {
                definition,
                version,
                fingerprint,
                parameters,
            } => {
                out.push(0);
                definition.encode(out);
                version.encode(out);
                fingerprint.encode(out);
                parameters.encode(out);
            }
            Event::ActionStarted { step, attempt } => {
                out.push(1);
                step.encode(out);
                attempt.encode(out);
            }
            Event::ActionSucceeded { step, output } => {
                out.push(2);
                step.encode(out);
                output.encode(out);
            }
            Event::ActionFailed {
                step,
                attempt,
                message,
            } => {
                out.push(3);
                step.encode(out);
                attempt.encode(out);
                message.encode(out);
            }
            Event::Unwinding { step, reason } => {
                out.push(4);
                step.encode(out);
                reason.encode(out);
            }
            Event::CompensationStarted { step, attempt } => {
                out.push(5);
                step.encode(out);
                attempt.encode(out);
            }
            Event::CompensationSucceeded { step } => {
                out.push(6);
                step.encode(out);
            }
            Event::CompensationFailed {
                step,
                attempt,
                message,
            } => {
                out.push(7);
                step.encode(out);
                attempt.encode(out);
                message.encode(out);
            }
            Event::Retrying {
                step,
                compensation,
                attempt,
            } => {
                out.push(9);
                step.encode(out);
                compensation.encode(out);
                attempt.encode(out);
            }
            Event::Reopened => out.push(10),
            Event::Finished { outcome, message } => {
                out.push(8);
                outcome.encode(out);
                message.encode(out);
            }
        }
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = reader.offset();
        if u8::decode_from(reader)? != FORMAT {
            return Err(DecodeError::new("unknown record format", at));
        }
        let seq = reader.read()?;
        let kind_at = reader.offset();
        let event = match u8::decode_from(reader)? {
            0 => Event::Created {
                definition: reader.read()?,
                version: reader.read()?,
                fingerprint: reader.read()?,
                parameters: reader.read()?,
            },
            1 => Event::ActionStarted {
                step: reader.read()?,
                attempt: reader.read()?,
            },
            2 => Event::ActionSucceeded {
                step: reader.read()?,
                output: reader.read()?,
            },
            3 => Event::ActionFailed {
                step: reader.read()?,
                attempt: reader.read()?,
                message: reader.read()?,
            },
            4 => Event::Unwinding {
                step: reader.read()?,
                reason: reader.read()?,
            },
            5 => Event::CompensationStarted {
                step: reader.read()?,
                attempt: reader.read()?,
            },
            6 => Event::CompensationSucceeded {
                step: reader.read()?,
            },
            7 => Event::CompensationFailed {
                step: reader.read()?,
                attempt: reader.read()?,
                message: reader.read()?,
            },
            8 => Event::Finished {
                outcome: reader.read()?,
                message: reader.read()?,
            },
            9 => Event::Retrying {
                step: reader.read()?,
                compensation: reader.read()?,
                attempt: reader.read()?,
            },
            10 => Event::Reopened,
            _ => return Err(DecodeError::new("unknown record kind", kind_at)),
        };
        Ok(Record { seq, event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn every_kind_round_trips_and_truncations_fail() {
        let events = vec![
            Event::Created {
                definition: "trip".into(),
                version: 2,
                fingerprint: 0xfeed,
                parameters: vec![1, 2, 3],
            },
            Event::ActionStarted {
                step: 0,
                attempt: 1,
            },
            Event::ActionSucceeded {
                step: 0,
                output: Some(vec![9]),
            },
            Event::ActionFailed {
                step: 1,
                attempt: 1,
                message: "busy".into(),
            },
            Event::Unwinding {
                step: 1,
                reason: Unwind::Deadline,
            },
            Event::CompensationStarted {
                step: 0,
                attempt: 1,
            },
            Event::CompensationSucceeded { step: 0 },
            Event::CompensationFailed {
                step: 0,
                attempt: 3,
                message: "down".into(),
            },
            Event::Retrying {
                step: 2,
                compensation: true,
                attempt: 2,
            },
            Event::Reopened,
            Event::Finished {
                outcome: Outcome::Stuck,
                message: "x".into(),
            },
        ];
        for (seq, event) in events.into_iter().enumerate() {
            let record = Record {
                seq: seq as u64,
                event,
            };
            let bytes = record.to_bytes();
            assert_eq!(Record::from_bytes(&bytes).unwrap(), record);
            for cut in 0..bytes.len() {
                assert!(Record::from_bytes(&bytes[..cut]).is_err());
            }
        }
    }
}
