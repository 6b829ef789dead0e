//! [`Retry`]: how many times an action or a compensation is attempted, and
//! how long to wait in between.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::{Timed, Untimed};

/// A retry policy: at most `n` attempts, with no wait (immediate retries) or
/// with a constant or exponential backoff, optionally jittered.
///
/// The type parameter records whether the policy needs a timer:
/// `Retry<Untimed>` retries at once and works in any saga (generic code
/// included); `Retry<Timed>` waits between attempts and is only accepted by
/// a builder that has a [`Sleeper`](crate::Sleeper) (a compile error
/// otherwise). See [timing](crate::SagaBuilder#timing-what-needs-a-sleeper).
///
/// Retried actions and compensations should be idempotent: an attempt that
/// failed or timed out may have partly happened.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use saga_core::Retry;
///
/// let immediate = Retry::attempts(3);
/// assert_eq!(immediate.max_attempts(), 3);
/// assert_eq!(immediate.delay_before(2), Duration::ZERO);
///
/// let backoff = Retry::attempts(5)
///     .exponential(Duration::from_millis(100), Duration::from_millis(500));
/// let delays: Vec<_> = (2..=5).map(|attempt| backoff.delay_before(attempt)).collect();
/// assert_eq!(delays, [100, 200, 400, 500].map(Duration::from_millis));
/// ```
pub struct Retry<T = Untimed> {
    spec: RetrySpec,
    timing: PhantomData<fn() -> T>,
}

/// A retry policy with its timing marker erased, as a saga stores it.
#[derive(Clone)]
pub(crate) struct RetrySpec {
    max_attempts: u32,
    backoff: Backoff,
    jitter: Option<Arc<dyn Fn(Duration) -> Duration + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backoff {
    None,
    Constant(Duration),
    Exponential {
        initial: Duration,
        factor: u32,
        max: Duration,
    },
}

impl Retry<Untimed> {
    /// At most `max_attempts` attempts, retried at once. The first attempt
    /// counts, and one attempt is always made (`attempts(0)` means 1).
    pub fn attempts(max_attempts: u32) -> Self {
        Retry {
            spec: RetrySpec {
                max_attempts: max_attempts.max(1),
                backoff: Backoff::None,
                jitter: None,
            },
            timing: PhantomData,
        }
    }

    /// One attempt, no retry: the default.
    pub fn never() -> Self {
        Self::attempts(1)
    }

    /// Waits `delay` before each retry.
    pub fn constant(self, delay: Duration) -> Retry<Timed> {
        self.with_backoff(Backoff::Constant(delay))
    }

    /// Waits `initial` before the first retry, then twice as long before each
    /// next one (see [`factor`](Retry::factor)), never more than `max`.
    pub fn exponential(self, initial: Duration, max: Duration) -> Retry<Timed> {
        self.with_backoff(Backoff::Exponential {
            initial,
            factor: 2,
            max,
        })
    }

    fn with_backoff(self, backoff: Backoff) -> Retry<Timed> {
        Retry {
            spec: RetrySpec {
                backoff,
                ..self.spec
            },
            timing: PhantomData,
        }
    }
}

impl Retry<Timed> {
    /// The growth factor of an exponential backoff (2 by default; 0 and 1
    /// make it constant).
    pub fn factor(mut self, factor: u32) -> Self {
        if let Backoff::Exponential { factor: f, .. } = &mut self.spec.backoff {
            // 0 would make every wait after the first zero: constant, as 1.
            *f = factor.max(1);
        }
        self
    }

    /// Passes each computed delay through `jitter`, a source of randomness of
    /// your choice (the core has none): for "full jitter", return a random
    /// duration between zero and the delay.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use saga_core::Retry;
    ///
    /// let halved = Retry::attempts(3)
    ///     .constant(Duration::from_millis(100))
    ///     .jitter(|delay| delay / 2);
    /// assert_eq!(halved.delay_before(2), Duration::from_millis(50));
    /// ```
    pub fn jitter<J>(mut self, jitter: J) -> Self
    where
        J: Fn(Duration) -> Duration + Send + Sync + 'static,
    {
        self.spec.jitter = Some(Arc::new(jitter));
        self
    }
}

impl<T> Retry<T> {
    /// The most attempts made, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.spec.max_attempts
    }

    /// How long to wait before attempt number `attempt` (2 is the first
    /// retry). Zero for immediate retries and for the first attempt.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        self.spec.delay_before(attempt)
    }

    pub(crate) fn into_spec(self) -> Box<RetrySpec> {
        Box::new(self.spec)
    }
}

impl RetrySpec {
    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub(crate) fn delay_before(&self, attempt: u32) -> Duration {
        let delay = self.backoff_before(attempt);
        match &self.jitter {
            Some(jitter) if !delay.is_zero() => jitter(delay),
            _ => delay,
        }
    }

    /// The jitter function, if any.
    pub(crate) fn jitter(&self) -> Option<&(dyn Fn(Duration) -> Duration + Send + Sync)> {
        self.jitter.as_deref()
    }

    /// The wait before `attempt`, before jitter.
    pub(crate) fn backoff_before(&self, attempt: u32) -> Duration {
        let retry = attempt.saturating_sub(1);
        if retry == 0 {
            return Duration::ZERO;
        }
        match self.backoff {
            Backoff::None => Duration::ZERO,
            Backoff::Constant(delay) => delay,
            Backoff::Exponential {
                initial,
                factor,
                max,
            } => factor
                .checked_pow(retry - 1)
                .and_then(|growth| initial.checked_mul(growth))
                .map_or(max, |delay| delay.min(max)),
        }
    }
}

impl<T> Clone for Retry<T> {
    fn clone(&self) -> Self {
        Retry {
            spec: self.spec.clone(),
            timing: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Retry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.spec.fmt(f)
    }
}

impl fmt::Debug for RetrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter.is_some())
            .finish()
    }
}
