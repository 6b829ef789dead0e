//! [`ParallelGroup`]: steps whose actions run concurrently inside one run.

use core::ops::Range;

use crate::InFlight;

/// Settings of a group of steps whose actions run concurrently, added with
/// [`SagaBuilder::parallel_with`](crate::SagaBuilder::parallel_with).
///
/// Members are polled together inside the one run future (nothing is
/// spawned), each with a waker of its own, so a wake-up polls only the member
/// that was woken. When a member fails, the others run to completion by
/// default ([`InFlight::Finish`]: nothing in flight is abandoned) or are cut
/// short ([`InFlight::CutShort`]: they then count as failed and possibly
/// applied). Then every member that ran is compensated (each by its own
/// failed-action rule), then the steps before the group, in reverse.
///
/// # Examples
///
/// ```
/// use saga_core::{InFlight, ParallelGroup, SagaBuilder};
///
/// let mut saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .parallel_with(ParallelGroup::new().limit(2).on_failure(InFlight::CutShort), |group| {
///         group
///             .add_step(|| async { Ok(()) }, || async { Ok(()) })
///             .add_step(|| async { Err::<(), _>("hotel full") }, || async { Ok(()) })
///             .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     })
///     .build();
///
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(error.failed_step(), 2);
/// assert!(error.is_fully_compensated());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ParallelGroup {
    limit: Option<usize>,
    on_failure: InFlight,
}

impl ParallelGroup {
    /// All members at once; the others finish when one fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `limit` members in flight at a time (at least 1); members
    /// start in order as others finish. Also bounds how many of its members
    /// are compensated at once under
    /// [`CompensationMode::ConcurrentGroups`](crate::CompensationMode::ConcurrentGroups);
    /// [`CompensationMode::Concurrent`](crate::CompensationMode::Concurrent)
    /// compensates every step at once, whatever the limits.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit.max(1));
        self
    }

    /// What happens to the members in flight when one fails: let them finish
    /// (the default), or cut them short.
    pub fn on_failure(mut self, in_flight: InFlight) -> Self {
        self.on_failure = in_flight;
        self
    }

    pub(crate) fn spec(self, members: Range<usize>) -> GroupSpec {
        let width = members.len();
        GroupSpec {
            limit: self.limit.map_or(width, |limit| limit.min(width)),
            on_failure: self.on_failure,
            members,
        }
    }
}

/// A group as a saga stores it: its members' indices and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSpec {
    pub(crate) members: Range<usize>,
    pub(crate) limit: usize,
    pub(crate) on_failure: InFlight,
}
