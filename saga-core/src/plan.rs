//! [`Plan`]: everything `build()` decides once about a saga (its blocks, its
//! policies, its modes), which every run reads and none changes.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use crate::group::GroupSpec;
use crate::marker::SagaKind;
use crate::policy::{Effective, Overrides, PolicyData};
use crate::{CompensationMode, InFlight};

/// The immutable part of a saga: a run borrows it and owns only its own
/// progress (see `run`). Its callbacks are stored as the saga's kind `S`
/// says (`Send + Sync` in a `Saga`).
pub(crate) struct Plan<E, S: ?Sized + SagaKind<E>> {
    // Decides what a failed action's error leads to.
    pub(crate) classify: Option<Box<S::Classifier>>,
    pub(crate) compensation_mode: CompensationMode,
    pub(crate) on_abort: InFlight,
    pub(crate) defaults: PolicyData,
    // Sorted by step index.
    pub(crate) overrides: Overrides,
    pub(crate) saga_timeout: Option<Duration>,
    pub(crate) observer: Option<Box<S::Observer>>,
    // Sorted, disjoint, non-empty member ranges.
    pub(crate) groups: Vec<GroupSpec>,
}

impl<E, S: ?Sized + SagaKind<E>> Default for Plan<E, S> {
    fn default() -> Self {
        Plan {
            classify: None,
            compensation_mode: CompensationMode::default(),
            on_abort: InFlight::default(),
            defaults: PolicyData::default(),
            overrides: Overrides::new(),
            saga_timeout: None,
            observer: None,
            groups: Vec::new(),
        }
    }
}

impl<E, S: ?Sized + SagaKind<E>> Plan<E, S> {
    /// The retry and timeout settings of `step`.
    pub(crate) fn step(&self, step: usize) -> Effective<'_> {
        Effective::lookup(&self.overrides, &self.defaults, step)
    }

    /// Sets `step`'s own policy, replacing one set before (steps are added
    /// in order, so `overrides` stays sorted).
    pub(crate) fn set_override(&mut self, step: usize, policy: PolicyData) {
        match self.overrides.last_mut() {
            Some((last, data)) if *last == step => *data = policy,
            _ => self.overrides.push((step, policy)),
        }
    }

    /// The index in `groups` of the first group that does not end before
    /// `step`.
    pub(crate) fn group_index(&self, step: usize) -> usize {
        self.groups
            .partition_point(|group| group.members.end <= step)
    }

    /// The group containing `step`, if any.
    pub(crate) fn group_of(&self, step: usize) -> Option<&GroupSpec> {
        self.groups
            .get(self.group_index(step))
            .filter(|group| group.members.contains(&step))
    }

    /// How many lanes (steps in flight at once) a run can need.
    pub(crate) fn lanes(&self, steps: usize) -> usize {
        let busiest = self.groups.iter().map(|group| group.limit).max();
        let busiest = busiest.unwrap_or(1);
        match self.compensation_mode {
            CompensationMode::Concurrent => busiest.max(steps),
            _ => busiest,
        }
        .max(1)
    }

    /// The most members of one group (1 when there is none).
    pub(crate) fn widest_group(&self) -> usize {
        let widest = self.groups.iter().map(|group| group.members.len()).max();
        widest.unwrap_or(1)
    }
}
