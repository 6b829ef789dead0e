//! The workspace conformance suite for saga: see the files under `tests/`.
