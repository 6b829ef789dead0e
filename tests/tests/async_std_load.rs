//! 10,000 sagas spawned at once with saga-async-std, with seeded random
//! failures, panics, flaky compensations and aborts: every saga ends fully
//! applied or fully compensated, and the books balance.

#[macro_use]
mod runtime_support;

on_async_std!(ten_thousand_sagas_balance_the_books);
