//! The workspace conformance suite for saga: see `tests/README.md` and the
//! files under `tests/tests/`. The repeat-injection aid that used to live
//! here is `saga_core::testing`.
