//! [`TimedOut`] and [`Aborted`]: why a step was cut short, as errors that a
//! saga's error type can be made from.

use alloc::borrow::ToOwned;
use alloc::string::String;
use core::any::Any;
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

/// A step panicked. The core cannot catch panics (it has no `std`);
/// `rt::CatchPanics` (with the `std` [feature](crate#features)) and the
/// runtime adapters do, and report them as `E::from(Panicked)`,
/// so a saga that catches panics needs `E: From<Panicked>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Panicked {
    message: String,
}

impl Panicked {
    /// A panic with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Panicked {
            message: message.into(),
        }
    }

    /// Reads the message out of a panic payload (as returned by
    /// `std::panic::catch_unwind`): a `&str` or `String` payload, or a
    /// placeholder for any other.
    pub fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
        Panicked { message }
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.message)
    }
}

impl core::error::Error for Panicked {}
