//! [`TimedOut`], [`Aborted`] and [`Panicked`]: why a step was cut short, as
//! errors that a saga's error type can be made from.
//!
//! Each is a `core::error::Error + Send + Sync + 'static`, so the error types
//! that take any such error take them as they are:
//! `Box<dyn core::error::Error + Send + Sync>` and `anyhow::Error` (through
//! their blanket `From` impls), and an enum with a `thiserror` `#[from]`
//! variant for each. `String` takes all three here (their `Display`), and
//! `&'static str` takes the two that have no message of their own.

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use core::any::Any;
use core::fmt;

/// An action, a compensation or the whole saga ran out of time.
///
/// A saga with a [`Sleeper`](crate::Sleeper) needs `E: From<TimedOut>`, so
/// that a timed-out step reports an `E` like any other failure. `String`,
/// `&'static str`, `Box<dyn Error + Send + Sync>` and `anyhow::Error` have it
/// already.
///
/// # Examples
///
/// ```
/// use saga_core::TimedOut;
///
/// assert_eq!(String::from(TimedOut), "timed out");
/// assert_eq!(<&str>::from(TimedOut), "timed out");
/// let boxed: Box<dyn std::error::Error + Send + Sync> = TimedOut.into();
/// assert_eq!(boxed.to_string(), "timed out");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl core::error::Error for TimedOut {}

impl From<TimedOut> for String {
    fn from(timed_out: TimedOut) -> Self {
        timed_out.to_string()
    }
}

impl From<TimedOut> for &'static str {
    fn from(_: TimedOut) -> Self {
        "timed out"
    }
}

/// The saga was stopped through its [`AbortHandle`](crate::AbortHandle).
///
/// An abortable run needs `E: From<Aborted>`, so that the report carries an
/// `E` like any other failure. `String`, `&'static str`,
/// `Box<dyn Error + Send + Sync>` and `anyhow::Error` have it already.
///
/// # Examples
///
/// ```
/// use saga_core::Aborted;
///
/// assert_eq!(String::from(Aborted), "aborted");
/// assert_eq!(<&str>::from(Aborted), "aborted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("aborted")
    }
}

impl core::error::Error for Aborted {}

impl From<Aborted> for String {
    fn from(aborted: Aborted) -> Self {
        aborted.to_string()
    }
}

impl From<Aborted> for &'static str {
    fn from(_: Aborted) -> Self {
        "aborted"
    }
}

/// A step panicked. The core cannot catch panics (it has no `std`);
/// `rt::CatchPanics` (with the `std` [feature](crate#features)) and the
/// runtime adapters do, and report them as `E::from(Panicked)`,
/// so a saga that catches panics needs `E: From<Panicked>`. `String`,
/// `Box<dyn Error + Send + Sync>` and `anyhow::Error` have it already (with
/// the message); `&'static str` has not, as it could not keep the message.
///
/// # Examples
///
/// ```
/// use saga_core::Panicked;
///
/// let panic = Panicked::new("index out of bounds");
/// assert_eq!(panic.message(), "index out of bounds");
/// assert_eq!(String::from(panic), "panicked: index out of bounds");
/// ```
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

impl From<Panicked> for String {
    fn from(panicked: Panicked) -> Self {
        panicked.to_string()
    }
}

/// The process running a durable saga stopped (a crash, a kill, a power
/// cut) and a later run resumed it from its journal: what stands for an
/// error the earlier process met, or for an attempt it left with no
/// outcome.
///
/// A resumed run reports `E::from(Crashed)` for an action attempt cut short
/// by the crash that its retry policy does not allow to run again (the
/// report's [`StopReason`](crate::StopReason) is `Crashed`), and for the
/// errors the journal holds only as their message ([`recorded`](Crashed::recorded)):
/// the failure the saga was unwinding from, and compensations that had
/// already failed. So a saga resumed from a [journal](crate::journal) needs
/// `E: From<Crashed>`. `String`, `Box<dyn Error + Send + Sync>` and
/// `anyhow::Error` have it already.
///
/// # Examples
///
/// ```
/// use saga_core::Crashed;
///
/// assert_eq!(String::from(Crashed::new()), "cut short by a crash");
/// let failed = Crashed::recorded("card declined");
/// assert_eq!(failed.message(), Some("card declined"));
/// assert_eq!(String::from(failed), "card declined (before a restart)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Crashed {
    message: Option<String>,
}

impl Crashed {
    /// An attempt left with no outcome by a crash.
    pub fn new() -> Self {
        Crashed { message: None }
    }

    /// An error met before the crash, of which the journal kept this
    /// message.
    pub fn recorded(message: impl Into<String>) -> Self {
        Crashed {
            message: Some(message.into()),
        }
    }

    /// The recorded error's message, if it stands for one.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for Crashed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => write!(f, "{message} (before a restart)"),
            None => f.write_str("cut short by a crash"),
        }
    }
}

impl core::error::Error for Crashed {}

impl From<Crashed> for String {
    fn from(crashed: Crashed) -> Self {
        crashed.to_string()
    }
}
