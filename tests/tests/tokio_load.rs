//! 10,000 sagas spawned at once with saga-tokio, with seeded random
//! failures, panics, flaky compensations and aborts: every saga ends fully
//! applied or fully compensated, and the books balance. Current-thread and
//! multi-thread.

#[macro_use]
mod runtime_support;

on_tokio!(ten_thousand_sagas_balance_the_books);
