//! [`TimedOut`] and [`Aborted`]: why a step was cut short, as errors that a
//! saga's error type can be made from.

use core::fmt;

/// An action, a compensation or the whole saga ran out of time.
///
/// A saga with a [`Sleeper`](crate::Sleeper) needs `E: From<TimedOut>`, so
/// that a timed-out step reports an `E` like any other failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl core::error::Error for TimedOut {}

/// The saga was stopped through its [`AbortHandle`](crate::AbortHandle).
///
/// An abortable run needs `E: From<Aborted>`, so that the report carries an
/// `E` like any other failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("aborted")
    }
}

impl core::error::Error for Aborted {}
