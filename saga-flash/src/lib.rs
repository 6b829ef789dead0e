//! A durable store for [`saga_core`]'s journaled sagas on NOR flash, for
//! microcontrollers: a device that loses power mid-saga resumes it, or
//! finishes compensating it, after the reboot.
//!
//! `#![no_std]` with `alloc`, no `unsafe`, over the blocking
//! [`embedded_storage::nor_flash::NorFlash`] traits that flash drivers
//! implement (internal flash, SPI NOR).
//!
//! A [`FlashStore`] is one append-only log on two or more erase sectors,
//! holding the records of every saga, each tagged by its [`SagaId`](saga_core::journal::SagaId). It
//! hands out a [`FlashJournal`] per saga ([`FlashStore::journal`]), which a
//! run writes through ([`Saga::run_journaled`](saga_core::Saga::run_journaled));
//! after a reboot, [`FlashStore::mount`] reads the log back,
//! [`FlashStore::unfinished`] says which sagas to finish, and
//! [`FlashStore::records`] gives each one's records for
//! [`replay`](saga_core::journal::replay) and
//! [`Saga::resume`](saga_core::Saga::resume). The space of finished sagas
//! is reclaimed as the log needs it, or when asked
//! ([`FlashStore::reclaim`]).
//!
//! # What a power cut can and cannot lose
//!
//! - A record is kept once the journal's flush returned `Ready(Ok)`: its
//!   bytes were written, with a checksum, before the flush returned.
//!   Records appended and not yet flushed may be lost; since the core makes
//!   an attempt's "started" record durable before it runs the attempt, no
//!   action or compensation ever ran unrecorded.
//! - A flush is one write of one entry holding all its records, so a cut
//!   keeps all of them or none (the "started" records of a parallel
//!   group's members, say, are all there or all absent). Only a flush too
//!   large for one sector is split, into entries kept or lost whole, in
//!   order.
//! - A cut in the middle of a write leaves a torn entry. Its checksum does
//!   not match, so it is ignored, and nothing more is written to that
//!   sector: the next write goes to a fresh one. A saga's records read back
//!   are always a prefix of what was appended: never a gap, never a record
//!   that was not written whole.
//! - Reclaiming never loses an unfinished saga's records, whenever the power
//!   is cut (see [Reclaim](#reclaim)), never brings a finished saga back,
//!   and never loses the free sector the next reclaim needs.
//! - What the format cannot catch: a cut that leaves bits only weakly
//!   programmed (reading right now, flipping later) is a hardware matter;
//!   keep brown-out detection on. A checksum matching torn bytes by chance
//!   has odds of one in 2³².
//!
//! Actions and compensations run *at least once* (one that ran and whose
//! outcome was not yet durable runs again after the reboot, or is
//! compensated): make them idempotent, keyed by
//! [`SagaContext::key`](saga_core::journal::SagaContext::key).
//!
//! # On flash
//!
//! Each sector starts with a header: a magic number, the sector's sequence
//! number (its place in the log: each sector opened gets the next one), the
//! sequence number of the sector it was opened to reclaim (`u32::MAX` for
//! none) and a CRC-32 of the three. Entries follow, each padded to the
//! write size. Each word is written once between erases, and a sector is
//! erased before each use (so flash that forbids writing a word twice, such
//! as flash with ECC, is fine):
//!
//! ```text
//! sector: magic u32 | sequence u32 | reclaims u32 | crc u32 | entry | entry | ... | 0xFF ...
//! entry:  length u16 | kind u8 | 0 u8 | crc u32 | payload | 0xFF padding
//! records payload: saga id (16 bytes) | count u8 | (length u16 | Record::to_bytes())...
//! mark payload:    sequence number of a reclaimed sector (u32)
//! ```
//!
//! An entry takes 25 bytes, plus 2 and its bytes per record, rounded up to
//! the write size: an action's "started" record (18 bytes) alone takes 48
//! bytes with 4- or 8-byte writes; a committed saga of three steps (eight
//! records in four flushes) takes 272 bytes. Every sector keeps room for
//! one mark (12 bytes with 4-byte writes) at its end.
//!
//! The RAM index holds, for each saga, where each of its records is (a few
//! words per record); records are read from flash when asked for.
//!
//! # Reclaim
//!
//! Sectors are used in turn (each sector opened is the next free one after
//! the head, which spreads the erases evenly). One sector is always kept
//! free. When the head sector is full and only that one is left, the oldest
//! sector is reclaimed:
//!
//! 1. the entries it holds of unfinished sagas are copied forward: to the
//!    head if they fit there with the mark, else to the free sector, opened
//!    with a header naming the sector it reclaims;
//! 2. a *mark* entry naming the oldest sector's sequence number is written
//!    after the copies;
//! 3. the oldest sector is erased.
//!
//! A cut during 1 or 2 leaves copies of entries that are still in the old
//! sector. Copies at the head are duplicates, and the index keeps one of
//! each (they are the same bytes); a sector opened for the reclaim, with no
//! mark for it anywhere, is dropped whole at the next mount and is free
//! again, so the free sector is never used up by cuts. A cut during 3 may
//! leave the sector partly erased, with its header and some entries still
//! readable: the mark says to ignore it, so a finished saga's records never
//! come back to look unfinished. Sectors are reclaimed strictly oldest
//! first, so one mark covers every sector up to its number, and the newest
//! mark is always in a sector not yet reclaimed.
//!
//! A live entry is copied forward each time its sector is reclaimed; the
//! entries of any one sector always fit in an empty one with a mark, so a
//! reclaim always completes; [`Error::Full`] means the unfinished sagas
//! fill the flash. A finished saga's records go as their sectors are
//! reclaimed ([`FlashStore::reclaim`] reclaims every sector before the head
//! that holds some); [`FlashStore::list`] shows the sagas still on flash.
//!
//! # Examples
//!
//! A saga cut short by a power cut, and finished after the reboot:
//!
//! ```
//! use std::future::pending;
//! use std::pin::pin;
//! use std::task::{Context, Waker};
//! use saga_core::journal::{replay, Outcome, SagaId, SagaState, Start};
//! use saga_core::{Retry, Saga, SagaBuilder};
//! use saga_flash::FlashStore;
//! use saga_flash::sim::SimFlash;
//!
//! fn build(hang: bool) -> Saga<String> {
//!     SagaBuilder::new()
//!         .action_retry(Retry::attempts(2))
//!         .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
//!         .add_step(
//!             move || async move {
//!                 if hang {
//!                     pending::<()>().await; // the power goes here
//!                 }
//!                 Ok::<_, String>(())
//!             },
//!             || async { Ok(()) },
//!         )
//!         .build()
//! }
//!
//! let id = SagaId(42);
//! let store = FlashStore::mount(SimFlash::<4, 1024>::new(4))?;
//! {
//!     let mut saga = build(true);
//!     let mut journal = store.journal(id)?;
//!     let run = saga.run_journaled(&mut journal, Start::new("valve", 1, vec![]))?;
//!     let mut run = pin!(run);
//!     let mut cx = Context::from_waker(Waker::noop());
//!     assert!(run.as_mut().poll(&mut cx).is_pending());
//! } // the power is cut: the run is gone, the flash stays
//!
//! let store = FlashStore::mount(store.into_flash().unwrap().reboot())?;
//! for id in store.unfinished()? {
//!     let history = replay(&store.records(id)?)?;
//!     let mut saga = build(false);
//!     let mut journal = store.journal(id)?;
//!     smol::block_on(saga.resume(&mut journal, &history)?).map_err(|e| e.to_string())?;
//! }
//! let history = replay(&store.records(id)?)?;
//! assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `sim` (off): the `sim` module, a simulated NOR flash
//!   that can lose power at any write or erase, for tests.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod format;
mod journal;
#[cfg(feature = "sim")]
pub mod sim;
mod store;

pub use error::Error;
pub use journal::FlashJournal;
pub use store::{FlashStore, SagaInfo, Usage};
