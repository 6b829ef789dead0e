//! [`replay`]: from a saga's records to its [`History`], checking that they
//! are gap-free and that each transition is legal.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::record::{Event, Outcome, Record, Unwind};

/// Where one side of a step (its action, or its compensation) got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Progress {
    /// No attempt was started.
    NotStarted,
    /// An attempt was started and has no recorded outcome: it may have
    /// happened, in part or in full, or not at all.
    InFlight,
    /// The last attempt failed, and another one was to follow.
    Retrying,
    /// The last attempt failed and none was to follow.
    Failed,
    /// It succeeded.
    Succeeded,
}

/// What the journal says of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepHistory {
    /// Where the action got to.
    pub action: Progress,
    /// How many action attempts were started.
    pub action_attempts: u32,
    /// The action's saved value, once it succeeded (for a step that saves one).
    pub output: Option<Vec<u8>>,
    /// Where the compensation got to.
    pub compensation: Progress,
    /// How many compensation attempts were started.
    pub compensation_attempts: u32,
}

impl StepHistory {
    const UNTOUCHED: StepHistory = StepHistory {
        action: Progress::NotStarted,
        action_attempts: 0,
        output: None,
        compensation: Progress::NotStarted,
        compensation_attempts: 0,
    };
}

/// Where a saga is, by its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SagaState {
    /// Running its actions.
    Forward,
    /// Compensating.
    Unwinding,
    /// Ended.
    Finished(Outcome),
}

/// A saga as its journal tells it: what [`replay`] returns, and what a
/// resumed run starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The definition's name.
    pub definition: String,
    /// The definition's version.
    pub version: u32,
    /// The fingerprint of the saga's shape when it was started.
    pub fingerprint: u64,
    /// The encoded parameters.
    pub parameters: Vec<u8>,
    steps: Vec<StepHistory>,
    unwinding: Option<(u32, Unwind)>,
    finished: Option<Outcome>,
    last_error: Option<String>,
    next_seq: u64,
}

impl History {
    /// Where the saga is.
    pub fn state(&self) -> SagaState {
        match (self.finished, self.unwinding) {
            (Some(outcome), _) => SagaState::Finished(outcome),
            (None, Some(_)) => SagaState::Unwinding,
            (None, None) => SagaState::Forward,
        }
    }

    /// The step the saga unwinds from and why, once it began to compensate.
    pub fn unwinding(&self) -> Option<(usize, Unwind)> {
        self.unwinding.map(|(step, why)| (step as usize, why))
    }

    /// What the journal says of `step` (untouched when it says nothing).
    pub fn step(&self, step: usize) -> &StepHistory {
        self.steps.get(step).unwrap_or(&StepHistory::UNTOUCHED)
    }

    /// How many steps the journal mentions (one more than the highest).
    pub fn steps_mentioned(&self) -> usize {
        self.steps.len()
    }

    /// The last error recorded, as it displayed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The number the next record takes.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Applies one more record, as [`replay`] does: a store can keep a
    /// history up to date as it appends.
    pub fn apply(&mut self, record: &Record) -> Result<(), ReplayError> {
        if record.seq != self.next_seq {
            return Err(ReplayError::Gap {
                expected: self.next_seq,
                found: record.seq,
            });
        }
        let illegal = |why: &'static str| ReplayError::Illegal {
            seq: record.seq,
            why,
        };
        if self.finished.is_some() && record.event != Event::Reopened {
            return Err(illegal("a record after the saga finished"));
        }
        let unwinding = self.unwinding.is_some();
        match &record.event {
            Event::Created { .. } => return Err(illegal("a second `Created` record")),
            Event::ActionStarted { step, attempt } => {
                if unwinding {
                    return Err(illegal("an action started while unwinding"));
                }
                let history = self.touch(*step);
                let follows = match history.action {
                    Progress::NotStarted => *attempt == 1,
                    // A crash cut the attempt short, or a retry follows.
                    Progress::InFlight | Progress::Retrying => {
                        *attempt == history.action_attempts + 1
                    }
                    Progress::Failed | Progress::Succeeded => false,
                };
                if !follows {
                    return Err(illegal("an action attempt out of order"));
                }
                history.action = Progress::InFlight;
                history.action_attempts = *attempt;
            }
            Event::ActionSucceeded { step, output } => {
                let history = self.touch(*step);
                if unwinding || history.action != Progress::InFlight {
                    return Err(illegal("an action succeeded that was not in flight"));
                }
                history.action = Progress::Succeeded;
                history.output = output.clone();
            }
            Event::ActionFailed {
                step,
                attempt,
                message,
            } => {
                let history = self.touch(*step);
                // A retry that an interrupt then cancels fails again.
                let in_flight = matches!(history.action, Progress::InFlight | Progress::Retrying);
                if unwinding || !in_flight || *attempt != history.action_attempts {
                    return Err(illegal("an action failed that was not in flight"));
                }
                history.action = Progress::Failed;
                self.last_error = Some(message.clone());
            }
            Event::Retrying {
                step,
                compensation,
                attempt,
            } => {
                let history = self.touch(*step);
                let (progress, attempts) = match compensation {
                    false => (&mut history.action, history.action_attempts),
                    true => (&mut history.compensation, history.compensation_attempts),
                };
                if *progress != Progress::Failed || *attempt != attempts + 1 {
                    return Err(illegal("a retry of an attempt that did not fail"));
                }
                *progress = Progress::Retrying;
            }
            Event::Unwinding { step, reason } => {
                if unwinding {
                    return Err(illegal("unwinding twice"));
                }
                self.unwinding = Some((*step, *reason));
            }
            Event::CompensationStarted { step, attempt } => {
                if let Some((_, Unwind::Propagated)) = self.unwinding {
                    return Err(illegal(
                        "a compensation after a propagated failure, not reopened",
                    ));
                }
                let history = self.touch(*step);
                let follows = match history.compensation {
                    Progress::NotStarted => *attempt == 1,
                    Progress::InFlight | Progress::Retrying | Progress::Failed => {
                        *attempt == history.compensation_attempts + 1
                    }
                    Progress::Succeeded => false,
                };
                if !unwinding || history.action == Progress::NotStarted || !follows {
                    return Err(illegal("a compensation attempt out of order"));
                }
                history.compensation = Progress::InFlight;
                history.compensation_attempts = *attempt;
            }
            Event::CompensationSucceeded { step } => {
                let history = self.touch(*step);
                if history.compensation != Progress::InFlight {
                    return Err(illegal("a compensation succeeded that was not in flight"));
                }
                history.compensation = Progress::Succeeded;
            }
            Event::CompensationFailed {
                step,
                attempt,
                message,
            } => {
                let history = self.touch(*step);
                if history.compensation != Progress::InFlight
                    || *attempt != history.compensation_attempts
                {
                    return Err(illegal("a compensation failed that was not in flight"));
                }
                history.compensation = Progress::Failed;
                self.last_error = Some(message.clone());
            }
            Event::Reopened => {
                if self.finished != Some(Outcome::Stuck) {
                    return Err(illegal("only a stuck saga can be reopened"));
                }
                self.finished = None;
                let step = self.unwinding.map_or(0, |(step, _)| step);
                self.unwinding = Some((step, Unwind::Failed));
                // Its failed compensations are to be attempted again.
                for history in &mut self.steps {
                    if history.compensation == Progress::Failed {
                        history.compensation = Progress::Retrying;
                    }
                }
            }
            Event::Finished { outcome, message } => {
                if unwinding && *outcome == Outcome::Committed {
                    return Err(illegal("committed after it began to unwind"));
                }
                // Compensated or stuck: only a saga that began to unwind
                // (an operator may abandon one in any state).
                if !unwinding && matches!(outcome, Outcome::Compensated | Outcome::Stuck) {
                    return Err(illegal("compensated or stuck without unwinding"));
                }
                self.finished = Some(*outcome);
                if !message.is_empty() {
                    self.last_error = Some(message.clone());
                }
            }
        }
        self.next_seq += 1;
        Ok(())
    }

    fn touch(&mut self, step: u32) -> &mut StepHistory {
        let step = step as usize;
        if self.steps.len() <= step {
            self.steps.resize(step + 1, StepHistory::UNTOUCHED);
        }
        &mut self.steps[step]
    }
}

/// Reads a saga's records, in order, into its [`History`].
///
/// The first record must be number 0, [`Event::Created`]; each next one is
/// numbered one more, and must follow from those before it (an action
/// succeeds only after it started, a saga ends compensated or stuck only
/// after its `Unwinding` record, nothing follows `Finished`, ...).
/// Anything else is an error, and the saga is not to be resumed.
///
/// # Examples
///
/// ```
/// use saga_core::journal::{replay, Event, Progress, Record, ReplayError, SagaState};
///
/// let records = [
///     Record { seq: 0, event: Event::Created {
///         definition: "trip".into(), version: 1, fingerprint: 7, parameters: vec![],
///     } },
///     Record { seq: 1, event: Event::ActionStarted { step: 0, attempt: 1 } },
/// ];
/// let history = replay(&records)?;
/// assert_eq!(history.state(), SagaState::Forward);
/// assert_eq!(history.step(0).action, Progress::InFlight); // cut short by a crash
///
/// let gap = [records[0].clone(), Record { seq: 2, ..records[1].clone() }];
/// assert_eq!(replay(&gap), Err(ReplayError::Gap { expected: 1, found: 2 }));
/// # Ok::<(), ReplayError>(())
/// ```
pub fn replay<'r>(records: impl IntoIterator<Item = &'r Record>) -> Result<History, ReplayError> {
    let mut records = records.into_iter();
    let mut history = match records.next() {
        Some(Record {
            seq: 0,
            event:
                Event::Created {
                    definition,
                    version,
                    fingerprint,
                    parameters,
                },
        }) => History {
            definition: definition.clone(),
            version: *version,
            fingerprint: *fingerprint,
            parameters: parameters.clone(),
            steps: Vec::new(),
            unwinding: None,
            finished: None,
            last_error: None,
            next_seq: 1,
        },
        Some(_) => return Err(ReplayError::NotCreated),
        None => return Err(ReplayError::Empty),
    };
    for record in records {
        history.apply(record)?;
    }
    Ok(history)
}

/// Records that cannot be resumed from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// There are no records.
    Empty,
    /// The first record is not number 0, `Created`.
    NotCreated,
    /// A record is missing: `found` came where `expected` should have.
    Gap {
        /// The number that should have come.
        expected: u64,
        /// The number that came.
        found: u64,
    },
    /// Record `seq` does not follow from those before it.
    Illegal {
        /// The record's number.
        seq: u64,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Empty => f.write_str("the journal has no records"),
            ReplayError::NotCreated => {
                f.write_str("the journal does not begin with a `Created` record numbered 0")
            }
            ReplayError::Gap { expected, found } => {
                write!(
                    f,
                    "record {expected} is missing (record {found} came instead)"
                )
            }
            ReplayError::Illegal { seq, why } => write!(f, "record {seq} is illegal: {why}"),
        }
    }
}

impl core::error::Error for ReplayError {}
