//! Load: many concurrent sagas on the tokio multi-thread runtime, moving money
//! between shared accounts, with random delays (`tokio::time::sleep` of 0 to
//! 1 ms, or `yield_now`) and random failures at every step. The books must
//! balance: the total is conserved, every account ends exactly where the
//! successful transfers put it, and every saga is either fully applied or
//! fully compensated.
//!
//! 100,000 sagas in the normal run (about a second in a debug build); a
//! million in the ignored soak (`cargo test -p saga-tests --test load --
//! --ignored`). The RNG is seeded
//! (override with `SAGA_LOAD_SEED=<u64>`).
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use saga_core::{FnStep, Saga, SagaBuilder, TypedStep};

const ACCOUNTS: usize = 16;
const INITIAL: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declined {
    Debit,
    Credit,
    Audit,
    Confirm,
}

/// Where a planned saga fails, if it does: the step index and its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The debit fails after taking the money (a partly applied action).
    DebitAfterApplying,
    /// The credit fails before paying in.
    CreditBeforeApplying,
    /// The audit record fails before it is written.
    AuditBeforeApplying,
    /// The confirmation fails; it changes nothing.
    Confirm,
}

impl Fault {
    fn step(self) -> usize {
        match self {
            Fault::DebitAfterApplying => 0,
            Fault::CreditBeforeApplying => 1,
            Fault::AuditBeforeApplying => 2,
            Fault::Confirm => 3,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Delay {
    None,
    Yield,
    Sleep(u64),
}

async fn pause(delay: Delay) {
    match delay {
        Delay::None => {}
        Delay::Yield => tokio::task::yield_now().await,
        Delay::Sleep(micros) => tokio::time::sleep(Duration::from_micros(micros)).await,
    }
}

#[derive(Debug, Clone)]
struct Plan {
    from: usize,
    to: usize,
    amount: i64,
    fault: Option<Fault>,
    // One per action and per compensation of the four steps.
    delays: [Delay; 8],
}

fn plan(rng: &mut fastrand::Rng) -> Plan {
    let from = rng.usize(..ACCOUNTS);
    let to = (from + 1 + rng.usize(..ACCOUNTS - 1)) % ACCOUNTS;
    let fault = match rng.u8(..16) {
        0 => Some(Fault::DebitAfterApplying),
        1 => Some(Fault::CreditBeforeApplying),
        2 => Some(Fault::AuditBeforeApplying),
        3 => Some(Fault::Confirm),
        _ => None,
    };
    let delays = std::array::from_fn(|_| match rng.u8(..10) {
        0..=3 => Delay::None,
        4..=6 => Delay::Yield,
        _ => Delay::Sleep(rng.u64(..=1000)),
    });
    Plan {
        from,
        to,
        amount: rng.i64(1..=500),
        fault,
        delays,
    }
}

/// The shared books.
#[derive(Debug)]
struct Bank {
    balances: Vec<AtomicI64>,
    audit_records: AtomicI64,
}

/// What one saga has applied so far: money out of `from`, into `to`.
#[derive(Debug, Default)]
struct Moved {
    out: AtomicI64,
    into: AtomicI64,
}

/// The credit's receipt, handed to its compensation by value.
#[derive(Debug)]
struct Receipt {
    account: usize,
    amount: i64,
}

fn transfer(bank: &Arc<Bank>, moved: &Arc<Moved>, plan: &Plan) -> Saga<Declined> {
    let Plan {
        from,
        to,
        amount,
        fault,
        delays: d,
    } = plan.clone();
    let (b0, m0, b0c, m0c) = (bank.clone(), moved.clone(), bank.clone(), moved.clone());
    let (b1, m1, b1c, m1c) = (bank.clone(), moved.clone(), bank.clone(), moved.clone());
    let (b2, b2c) = (bank.clone(), bank.clone());
    SagaBuilder::new()
        // Debit: pysagas form, compensated even when it fails (after applying).
        .add_step(
            move || {
                let (bank, moved) = (b0.clone(), m0.clone());
                async move {
                    pause(d[0]).await;
                    bank.balances[from].fetch_sub(amount, Ordering::SeqCst);
                    moved.out.fetch_add(amount, Ordering::SeqCst);
                    pause(d[0]).await;
                    if fault == Some(Fault::DebitAfterApplying) {
                        Err(Declined::Debit)
                    } else {
                        Ok(())
                    }
                }
            },
            move || {
                let (bank, moved) = (b0c.clone(), m0c.clone());
                async move {
                    pause(d[1]).await;
                    bank.balances[from].fetch_add(amount, Ordering::SeqCst);
                    moved.out.fetch_sub(amount, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        // Credit: typed, the receipt goes to the compensation.
        .add_typed_step(
            move || {
                let (bank, moved) = (b1.clone(), m1.clone());
                async move {
                    pause(d[2]).await;
                    if fault == Some(Fault::CreditBeforeApplying) {
                        return Err(Declined::Credit);
                    }
                    bank.balances[to].fetch_add(amount, Ordering::SeqCst);
                    moved.into.fetch_add(amount, Ordering::SeqCst);
                    Ok(Receipt {
                        account: to,
                        amount,
                    })
                }
            },
            move |receipt: Receipt| {
                let (bank, moved) = (b1c.clone(), m1c.clone());
                async move {
                    pause(d[3]).await;
                    bank.balances[receipt.account].fetch_sub(receipt.amount, Ordering::SeqCst);
                    moved.into.fetch_sub(receipt.amount, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        // Audit: by option; a failed audit wrote nothing.
        .step(TypedStep::by_option(
            move || {
                let bank = b2.clone();
                async move {
                    pause(d[4]).await;
                    if fault == Some(Fault::AuditBeforeApplying) {
                        return Err(Declined::Audit);
                    }
                    bank.audit_records.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
            move |written: Option<()>| {
                let bank = b2c.clone();
                async move {
                    pause(d[5]).await;
                    if written.is_some() {
                        bank.audit_records.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            },
        ))
        // Confirm: changes nothing, so its own failure needs no undo.
        .step(
            FnStep::new(
                move || async move {
                    pause(d[6]).await;
                    if fault == Some(Fault::Confirm) {
                        Err(Declined::Confirm)
                    } else {
                        Ok(())
                    }
                },
                move || async move {
                    pause(d[7]).await;
                    Ok(())
                },
            )
            .compensate_failed_action(false),
        )
        .build()
}

fn seed() -> u64 {
    std::env::var("SAGA_LOAD_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5a6a_2026)
}

fn books_balance(sagas: usize) {
    let seed = seed();
    println!("load: {sagas} concurrent sagas, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let plans: Vec<Plan> = (0..sagas).map(|_| plan(&mut rng)).collect();
    let bank = Arc::new(Bank {
        balances: (0..ACCOUNTS).map(|_| AtomicI64::new(INITIAL)).collect(),
        audit_records: AtomicI64::new(0),
    });

    let runtime = support::multi_thread_runtime();
    let handles: Vec<_> = plans
        .iter()
        .map(|plan| {
            let (bank, plan) = (bank.clone(), plan.clone());
            runtime.spawn(async move {
                let moved = Arc::new(Moved::default());
                let mut saga = transfer(&bank, &moved, &plan);
                let result = saga.run().await;
                (result, moved)
            })
        })
        .collect();
    let outcomes = runtime.block_on(async {
        let mut outcomes = Vec::with_capacity(handles.len());
        for handle in handles {
            outcomes.push(handle.await.expect("a saga task panicked"));
        }
        outcomes
    });

    let mut expected = vec![INITIAL; ACCOUNTS];
    let mut succeeded = 0;
    for (i, (plan, (result, moved))) in plans.iter().zip(&outcomes).enumerate() {
        let out = moved.out.load(Ordering::SeqCst);
        let into = moved.into.load(Ordering::SeqCst);
        match (result, plan.fault) {
            (Ok(()), None) => {
                assert_eq!(
                    (out, into),
                    (plan.amount, plan.amount),
                    "saga {i} half applied"
                );
                expected[plan.from] -= plan.amount;
                expected[plan.to] += plan.amount;
                succeeded += 1;
            }
            (Err(error), Some(fault)) => {
                assert_eq!(error.failed_step(), fault.step(), "saga {i}");
                assert!(error.is_fully_compensated(), "saga {i}: {error:?}");
                assert_eq!((out, into), (0, 0), "saga {i} not fully compensated");
            }
            (result, fault) => panic!("saga {i}: planned {fault:?}, got {result:?}"),
        }
    }
    let balances: Vec<i64> = bank
        .balances
        .iter()
        .map(|b| b.load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        balances.iter().sum::<i64>(),
        INITIAL * ACCOUNTS as i64,
        "money was made or lost"
    );
    assert_eq!(balances, expected);
    assert_eq!(bank.audit_records.load(Ordering::SeqCst), succeeded);
    // The plan mixes successes and every kind of failure.
    assert!(succeeded > 0 && succeeded < sagas as i64);
    println!(
        "load: {succeeded} applied, {} compensated",
        sagas as i64 - succeeded
    );
}

#[test]
fn a_hundred_thousand_concurrent_sagas_keep_the_books_balanced() {
    books_balance(100_000);
}

#[test]
#[ignore = "soak: a million concurrent sagas; run with --ignored"]
fn a_million_concurrent_sagas_keep_the_books_balanced() {
    books_balance(1_000_000);
}
