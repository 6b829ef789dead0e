//! [`FlashStore`]: the log of every saga's records on NOR flash, its index
//! in RAM, and reclaim.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use embedded_storage::nor_flash::{NorFlash, NorFlashError};
use saga_core::journal::{Event, Outcome, Record, SagaId};

use crate::format::{self, ENTRY_HEAD, HEADER_LEN, Head, ID_LEN, KIND_MARK, KIND_RECORD};
use crate::{Error, FlashJournal};

/// The smallest sector the store takes, in bytes.
const MIN_SECTOR: usize = 128;

/// Sagas' journals on NOR flash: one append-only log of records, tagged by
/// [`SagaId`], spread over two or more erase sectors used in turn.
///
/// [`mount`](FlashStore::mount) reads the log back after a reboot (or
/// formats nothing: a blank flash is an empty store), keeping an index of
/// where each record is in RAM (a few bytes per record; the records
/// themselves stay on flash). A saga's journal, from
/// [`journal`](FlashStore::journal), writes through the store; several
/// journals may be in use at once, on one executor or several threads: a
/// store is a handle (cloning it gives another handle to the same log; a
/// journal holds one, so that it can be owned by a run), and each operation holds the store's lock
/// until it returns. The lock is never waited for: an operation that finds
/// it held fails with [`Error::Busy`] (a journal's flush yields and tries
/// again instead), so the store cannot deadlock, even when used from an
/// interrupt handler. The store is `Send` and `Sync` when the flash driver
/// is `Send`, so journals work with [`Saga`](saga_core::Saga)'s `Send`
/// steps.
///
/// Writes are blocking: a journal's flush writes its records (and erases a
/// sector when one must be reclaimed) before it returns `Ready`.
///
/// See the [crate docs](crate) for the on-flash format and what a power cut
/// can and cannot lose.
///
/// # Examples
///
/// ```
/// use saga_core::journal::{replay, Outcome, SagaId, SagaState, Start};
/// use saga_core::{Saga, SagaBuilder};
/// use saga_flash::FlashStore;
/// use saga_flash::sim::SimFlash;
///
/// let store = FlashStore::mount(SimFlash::<4, 1024>::new(4))?;
/// let id = SagaId(1);
/// let mut saga: Saga<String> = SagaBuilder::new()
///     .add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) })
///     .build();
/// let mut journal = store.journal(id)?;
/// let run = saga.run_journaled(&mut journal, Start::new("one-step", 1, vec![]))?;
/// smol::block_on(run).map_err(|error| error.to_string())?;
///
/// // After a reboot: mount the same flash again.
/// drop(journal);
/// let store = FlashStore::mount(store.into_flash().unwrap().reboot())?;
/// let history = replay(&store.records(id)?)?;
/// assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
/// assert!(store.unfinished()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FlashStore<F> {
    inner: Arc<spin::Mutex<Inner<F>>>,
}

impl<F> Clone for FlashStore<F> {
    /// Another handle to the same store.
    fn clone(&self) -> Self {
        FlashStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F> fmt::Debug for FlashStore<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("FlashStore");
        if let Some(inner) = self.inner.try_lock() {
            out.field("sectors", &inner.sectors.len())
                .field("head", &inner.head)
                .field("sagas", &inner.sagas.len())
                .field("failed", &inner.failed);
        }
        out.finish_non_exhaustive()
    }
}

/// One saga as [`FlashStore::list`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SagaInfo {
    /// The saga.
    pub id: SagaId,
    /// How many of its records are on flash (a finished saga's shrink as
    /// they are reclaimed).
    pub records: usize,
    /// How it ended, once its [`Finished`](Event::Finished) record is on
    /// flash.
    pub finished: Option<Outcome>,
}

/// How the store's sectors are used, from [`FlashStore::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// The sectors the store spans.
    pub sectors: usize,
    /// Sectors holding no live data (erased, or to be erased before use).
    pub free_sectors: usize,
    /// Bytes written in sectors in use, headers and padding included.
    pub used_bytes: usize,
    /// Records of unfinished sagas (those reclaim keeps).
    pub live_records: usize,
    /// Records on flash of finished sagas, not yet reclaimed.
    pub dead_records: usize,
    /// Sectors erased since the store was mounted.
    pub erases: u64,
}

struct Inner<F> {
    flash: F,
    base: u32,
    sector_size: usize,
    sectors: Vec<Sector>,
    sagas: BTreeMap<SagaId, SagaIndex>,
    /// The sector written to: the one in use with the highest sequence
    /// number.
    head: Option<usize>,
    /// The sequence number of the next sector opened.
    next_seq: u32,
    failed: bool,
    erases: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sector {
    /// No live data: erased (`blank`), or to be checked and erased before
    /// use.
    Free { blank: bool },
    /// In the log, at `seq`; entries end at `end` (the sector's size when
    /// it takes no more).
    Used {
        seq: u32,
        end: usize,
        entries: u32,
        marks: u32,
    },
}

#[derive(Debug, Default)]
struct SagaIndex {
    records: BTreeMap<u64, Loc>,
    finished: Option<Outcome>,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    sector: usize,
    offset: usize,
    /// The entry's payload length.
    len: usize,
}

/// A valid entry found by a scan.
struct Found {
    kind: u8,
    offset: usize,
    payload: Vec<u8>,
}

impl<F: NorFlash> FlashStore<F> {
    /// Mounts the store on the whole of `flash`: reads every sector's
    /// header and entries back and builds the index. A blank flash is an
    /// empty store; so is one whose sectors hold anything else (another
    /// program's data is overwritten as the log needs the room).
    ///
    /// Fails with [`Error::Geometry`] when the flash has fewer than two
    /// sectors or its sizes do not suit the format, and with
    /// [`Error::Flash`] when the driver fails.
    pub fn mount(flash: F) -> Result<Self, Error> {
        let capacity = u32::try_from(flash.capacity())
            .map_err(|_| Error::Geometry("the flash is larger than 4 GiB"))?;
        Self::mount_range(flash, 0..capacity)
    }

    /// Mounts the store on `range` of `flash` (byte offsets, aligned to the
    /// erase size), leaving the rest alone, as
    /// [`mount`](FlashStore::mount) does for the whole flash.
    ///
    /// ```
    /// use saga_flash::{Error, FlashStore};
    /// use saga_flash::sim::SimFlash;
    ///
    /// let store = FlashStore::mount_range(SimFlash::<4, 1024>::new(8), 4096..8192)?;
    /// assert_eq!(store.usage()?.sectors, 4);
    /// let unaligned = FlashStore::mount_range(SimFlash::<4, 1024>::new(8), 100..8192);
    /// assert!(matches!(unaligned, Err(Error::Geometry(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn mount_range(flash: F, range: Range<u32>) -> Result<Self, Error> {
        let (write, erase, read) = (F::WRITE_SIZE, F::ERASE_SIZE, F::READ_SIZE);
        if write == 0 || read == 0 || erase == 0 || erase % write != 0 || write % read != 0 {
            return Err(Error::Geometry(
                "the erase size must be a multiple of the write size, and that of the read size",
            ));
        }
        if erase < MIN_SECTOR || erase > usize::from(u16::MAX) * 4 {
            return Err(Error::Geometry("sectors must be 128 bytes to 256 KiB"));
        }
        let erase32 = erase as u32;
        if range.start % erase32 != 0
            || range.end % erase32 != 0
            || range.end as usize > flash.capacity()
        {
            return Err(Error::Geometry(
                "the range must be whole sectors of the flash",
            ));
        }
        let count = (range.end.saturating_sub(range.start) / erase32) as usize;
        if count < 2 {
            return Err(Error::Geometry("the store needs two sectors or more"));
        }
        let mut inner = Inner {
            flash,
            base: range.start,
            sector_size: erase,
            sectors: vec![Sector::Free { blank: false }; count],
            sagas: BTreeMap::new(),
            head: None,
            next_seq: 0,
            failed: false,
            erases: 0,
        };
        inner.load()?;
        Ok(FlashStore {
            inner: Arc::new(spin::Mutex::new(inner)),
        })
    }

    /// The journal of saga `id`: a new saga (its first record is number
    /// 0), or one on flash (its next record is numbered on from its last,
    /// as [`History::next_seq`](saga_core::journal::History::next_seq)
    /// says). Fails with [`Error::Finished`] for a finished saga.
    pub fn journal(&self, id: SagaId) -> Result<FlashJournal<F>, Error> {
        let inner = self.borrow()?;
        let saga = inner.sagas.get(&id);
        if saga.is_some_and(|saga| saga.finished.is_some()) {
            return Err(Error::Finished(id));
        }
        let next = saga
            .and_then(|saga| saga.records.last_key_value())
            .map_or(0, |(seq, _)| seq + 1);
        Ok(FlashJournal::new(self.clone(), id, next))
    }

    /// Every record of saga `id` on flash, in order (none for a saga the
    /// store does not hold): what [`replay`](saga_core::journal::replay)
    /// reads before [`Saga::resume`](saga_core::Saga::resume).
    ///
    /// Fails with [`Error::Corrupt`] when the records are not numbered
    /// `0, 1, 2, ...` or one no longer matches its checksum, and with
    /// [`Error::Reclaimed`] for a finished saga whose records were partly
    /// reclaimed.
    pub fn records(&self, id: SagaId) -> Result<Vec<Record>, Error> {
        let mut inner = self.borrow()?;
        let Some(saga) = inner.sagas.get(&id) else {
            return Ok(Vec::new());
        };
        let finished = saga.finished.is_some();
        let locs: Vec<(u64, Loc)> = saga.records.iter().map(|(seq, loc)| (*seq, *loc)).collect();
        let mut records = Vec::with_capacity(locs.len());
        for (want, (seq, loc)) in (0..).zip(locs) {
            let broken = match finished {
                true => Error::Reclaimed(id),
                false => Error::Corrupt {
                    saga: id,
                    seq: want,
                },
            };
            if seq != want {
                return Err(broken);
            }
            let payload = inner
                .read_payload(loc)?
                .ok_or(Error::Corrupt { saga: id, seq })?;
            let record = Record::from_bytes(&payload[ID_LEN..])
                .map_err(|_| Error::Corrupt { saga: id, seq })?;
            records.push(record);
        }
        Ok(records)
    }

    /// The sagas whose [`Finished`](Event::Finished) record is not on
    /// flash: those to resume after a reboot, in the order of their ids.
    pub fn unfinished(&self) -> Result<Vec<SagaId>, Error> {
        let inner = self.borrow()?;
        Ok(inner
            .sagas
            .iter()
            .filter(|(_, saga)| saga.finished.is_none())
            .map(|(id, _)| *id)
            .collect())
    }

    /// Every saga with records on flash, in the order of their ids.
    pub fn list(&self) -> Result<Vec<SagaInfo>, Error> {
        let inner = self.borrow()?;
        Ok(inner
            .sagas
            .iter()
            .map(|(id, saga)| SagaInfo {
                id: *id,
                records: saga.records.len(),
                finished: saga.finished,
            })
            .collect())
    }

    /// Gives saga `id` up: appends its [`Finished`](Event::Finished)
    /// record with [`Outcome::Abandoned`] and `reason`, so that it is no
    /// longer resumed and its records can be reclaimed. Nothing is
    /// compensated. Fails with [`Error::Finished`] for a finished saga.
    ///
    /// ```
    /// use saga_core::journal::{Event, Record, SagaId};
    /// use saga_flash::FlashStore;
    /// use saga_flash::sim::SimFlash;
    ///
    /// let store = FlashStore::mount(SimFlash::<4, 1024>::new(2))?;
    /// let created = Record { seq: 0, event: Event::Created {
    ///     definition: "trip".into(), version: 1, fingerprint: 7, parameters: vec![],
    /// } };
    /// store.append(SagaId(3), &created)?;
    /// assert_eq!(store.unfinished()?, [SagaId(3)]);
    /// store.abandon(SagaId(3), "the device was returned")?;
    /// assert!(store.unfinished()?.is_empty());
    /// # Ok::<(), saga_flash::Error>(())
    /// ```
    pub fn abandon(&self, id: SagaId, reason: &str) -> Result<(), Error> {
        let seq = {
            let inner = self.borrow()?;
            let saga = inner.sagas.get(&id);
            if saga.is_some_and(|saga| saga.finished.is_some()) {
                return Err(Error::Finished(id));
            }
            saga.and_then(|saga| saga.records.last_key_value())
                .map_or(0, |(seq, _)| seq + 1)
        };
        let event = Event::Finished {
            outcome: Outcome::Abandoned,
            message: reason.into(),
        };
        self.append(id, &Record { seq, event })
    }

    /// Writes one record of saga `id` to flash, durable when this returns
    /// `Ok` (what a [`FlashJournal`]'s flush does for each record). The
    /// record must be the saga's next ([`Error::OutOfOrder`]), and the
    /// saga unfinished ([`Error::Finished`]). When the head sector is full,
    /// the oldest sector is reclaimed first (see
    /// [`reclaim`](FlashStore::reclaim)); [`Error::Full`] when the
    /// unfinished sagas fill the flash.
    pub fn append(&self, id: SagaId, record: &Record) -> Result<(), Error> {
        self.borrow()?.append(id, record)
    }

    /// Reclaims the space of finished sagas: erases, oldest first, each
    /// sector that holds records of finished sagas, after copying the
    /// unfinished sagas' records it holds to the head of the log. Stops at
    /// the first sector without such records, and never erases the head.
    /// Returns how many sectors were erased.
    ///
    /// The store also reclaims by itself, when the head is full and only
    /// one free sector is left. A power cut at any point of a reclaim
    /// loses no record of an unfinished saga and brings back no record of a
    /// finished one (see the [crate docs](crate#reclaim)).
    ///
    /// ```
    /// use saga_core::journal::{Event, Outcome, Record, SagaId};
    /// use saga_flash::FlashStore;
    /// use saga_flash::sim::SimFlash;
    ///
    /// let store = FlashStore::mount(SimFlash::<4, 256>::new(4))?;
    /// let created = |seq| Record { seq, event: Event::Created {
    ///     definition: "blink".into(), version: 1, fingerprint: 7, parameters: vec![0; 40],
    /// } };
    /// let finished = Record { seq: 1, event: Event::Finished {
    ///     outcome: Outcome::Committed, message: String::new(),
    /// } };
    /// for id in 0..4 {
    ///     store.append(SagaId(id), &created(0))?;
    ///     store.append(SagaId(id), &finished)?;
    /// }
    /// store.append(SagaId(9), &created(0))?; // unfinished
    ///     /// // The three sectors before the head are erased (the unfinished
    /// // saga's record is copied to the head first).
    /// assert_eq!(store.reclaim()?, 3);
    /// assert_eq!(store.usage()?.free_sectors, 3);
    /// assert_eq!(store.unfinished()?, [SagaId(9)]);
    /// assert_eq!(store.records(SagaId(9))?, [created(0)]);
    /// # Ok::<(), saga_flash::Error>(())
    /// ```
    pub fn reclaim(&self) -> Result<usize, Error> {
        self.borrow()?.reclaim()
    }

    /// How the sectors are used.
    pub fn usage(&self) -> Result<Usage, Error> {
        let inner = self.borrow()?;
        let mut usage = Usage {
            sectors: inner.sectors.len(),
            free_sectors: 0,
            used_bytes: 0,
            live_records: 0,
            dead_records: 0,
            erases: inner.erases,
        };
        for sector in &inner.sectors {
            match sector {
                Sector::Free { .. } => usage.free_sectors += 1,
                Sector::Used { end, .. } => usage.used_bytes += end,
            }
        }
        for saga in inner.sagas.values() {
            match saga.finished {
                None => usage.live_records += saga.records.len(),
                Some(_) => usage.dead_records += saga.records.len(),
            }
        }
        Ok(usage)
    }

    /// The largest record, as [`Record::to_bytes`] encodes it, that fits
    /// in a sector.
    pub fn max_record_len(&self) -> usize {
        let sector = F::ERASE_SIZE - format::round_up(HEADER_LEN, F::WRITE_SIZE);
        let entry = sector - sector % F::WRITE_SIZE;
        (entry - ENTRY_HEAD - ID_LEN).min(usize::from(u16::MAX) - ID_LEN)
    }

    /// The flash, back, once the store is no longer needed: `Err` with the
    /// store itself while another handle to it (a clone, or a journal) is
    /// alive.
    pub fn into_flash(self) -> Result<F, Self> {
        Arc::try_unwrap(self.inner)
            .map(|inner| inner.into_inner().flash)
            .map_err(|inner| FlashStore { inner })
    }

    fn borrow(&self) -> Result<spin::MutexGuard<'_, Inner<F>>, Error> {
        let inner = self.inner.try_lock().ok_or(Error::Busy)?;
        match inner.failed {
            true => Err(Error::Failed),
            false => Ok(inner),
        }
    }
}

impl<F: NorFlash> Inner<F> {
    fn unit(&self) -> usize {
        F::WRITE_SIZE
    }

    fn header_len(&self) -> usize {
        format::round_up(HEADER_LEN, self.unit())
    }

    fn address(&self, sector: usize, offset: usize) -> u32 {
        self.base + (sector * self.sector_size + offset) as u32
    }

    fn flash_error(&mut self, error: F::Error) -> Error {
        self.failed = true;
        Error::Flash(error.kind())
    }

    fn read(&mut self, sector: usize, offset: usize, len: usize) -> Result<Vec<u8>, Error> {
        let mut bytes = vec![0; len];
        let address = self.address(sector, offset);
        match self.flash.read(address, &mut bytes) {
            Ok(()) => Ok(bytes),
            Err(error) => Err(self.flash_error(error)),
        }
    }

    fn write(&mut self, sector: usize, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let address = self.address(sector, offset);
        self.flash
            .write(address, bytes)
            .map_err(|error| self.flash_error(error))
    }

    fn erase(&mut self, sector: usize) -> Result<(), Error> {
        let from = self.address(sector, 0);
        let to = from + self.sector_size as u32;
        self.erases += 1;
        self.flash
            .erase(from, to)
            .map_err(|error| self.flash_error(error))?;
        self.sectors[sector] = Sector::Free { blank: true };
        Ok(())
    }

    /// Whether bytes `from..` of `sector` are all erased.
    fn blank_from(&mut self, sector: usize, from: usize) -> Result<bool, Error> {
        let chunk = format::round_up(64, self.unit());
        let mut at = from;
        while at < self.sector_size {
            let len = chunk.min(self.sector_size - at);
            if !self.read(sector, at, len)?.iter().all(|&byte| byte == 0xFF) {
                return Ok(false);
            }
            at += len;
        }
        Ok(true)
    }

    /// Reads the log back: headers, then entries, then the index.
    fn load(&mut self) -> Result<(), Error> {
        let header_len = self.header_len();
        let mut found = Vec::new();
        let mut next_seq = 0_u32;
        for sector in 0..self.sectors.len() {
            let header = self.read(sector, 0, header_len)?;
            let Some(seq) = format::parse_header(&header) else {
                continue;
            };
            next_seq = next_seq.max(seq.wrapping_add(1));
            let (entries, end) = self.scan(sector)?;
            found.push((seq, sector, entries, end));
        }
        self.next_seq = next_seq;
        // Every sector up to the highest reclaim mark was reclaimed: its
        // live records were copied before the mark was written, and its
        // erase may have been cut short.
        let reclaimed = found
            .iter()
            .flat_map(|(_, _, entries, _)| entries)
            .filter(|entry| entry.kind == KIND_MARK && entry.payload.len() == 4)
            .map(|entry| {
                u32::from_le_bytes([
                    entry.payload[0],
                    entry.payload[1],
                    entry.payload[2],
                    entry.payload[3],
                ])
            })
            .max();
        found.retain(|(seq, ..)| reclaimed.is_none_or(|mark| *seq > mark));
        found.sort_by_key(|(seq, ..)| *seq);
        for (seq, sector, entries, end) in found {
            let marks = entries
                .iter()
                .filter(|entry| entry.kind == KIND_MARK)
                .count() as u32;
            self.sectors[sector] = Sector::Used {
                seq,
                end,
                entries: entries.len() as u32,
                marks,
            };
            self.head = Some(sector);
            for entry in entries
                .into_iter()
                .filter(|entry| entry.kind == KIND_RECORD)
            {
                let Some(id) = entry.payload.get(..ID_LEN) else {
                    continue;
                };
                let mut raw = [0; ID_LEN];
                raw.copy_from_slice(id);
                let id = SagaId(u128::from_le_bytes(raw));
                // A record that does not decode is left out: its saga's
                // records then have a gap, and `records` says so.
                let Ok(record) = Record::from_bytes(&entry.payload[ID_LEN..]) else {
                    continue;
                };
                let saga = self.sagas.entry(id).or_default();
                if let Event::Finished { outcome, .. } = record.event {
                    saga.finished = Some(outcome);
                }
                // A later copy (a reclaim cut short) replaces an earlier one.
                let loc = Loc {
                    sector,
                    offset: entry.offset,
                    len: entry.payload.len(),
                };
                saga.records.insert(record.seq, loc);
            }
        }
        Ok(())
    }

    /// The valid entries of `sector`, and where they end: the sector's
    /// size when a torn entry, or anything but erased bytes after the last
    /// entry, means no more can be written to it.
    fn scan(&mut self, sector: usize) -> Result<(Vec<Found>, usize), Error> {
        let unit = self.unit();
        let head_len = format::round_up(ENTRY_HEAD, unit);
        let mut entries = Vec::new();
        let mut at = self.header_len();
        let mut torn = false;
        while at + head_len <= self.sector_size {
            let head = self.read(sector, at, head_len)?;
            let (kind, len, crc) = match format::parse_head(&head) {
                Head::Blank => break,
                Head::Torn => {
                    torn = true;
                    break;
                }
                Head::Entry { kind, len, crc } => (kind, len, crc),
            };
            let total = format::round_up(ENTRY_HEAD + len, unit);
            if at + total > self.sector_size {
                torn = true;
                break;
            }
            let bytes = self.read(sector, at, total)?;
            if !format::entry_intact(&bytes, len, crc) {
                torn = true;
                break;
            }
            entries.push(Found {
                kind,
                offset: at,
                payload: bytes[ENTRY_HEAD..ENTRY_HEAD + len].to_vec(),
            });
            at += total;
        }
        if !torn && !self.blank_from(sector, at)? {
            torn = true;
        }
        Ok((entries, if torn { self.sector_size } else { at }))
    }

    /// The payload of the entry at `loc`, `None` when it no longer matches
    /// its checksum.
    fn read_payload(&mut self, loc: Loc) -> Result<Option<Vec<u8>>, Error> {
        let total = format::round_up(ENTRY_HEAD + loc.len, self.unit());
        let bytes = self.read(loc.sector, loc.offset, total)?;
        Ok(match format::parse_head(&bytes) {
            Head::Entry { len, crc, .. }
                if len == loc.len && format::entry_intact(&bytes, len, crc) =>
            {
                Some(bytes[ENTRY_HEAD..ENTRY_HEAD + len].to_vec())
            }
            _ => None,
        })
    }

    fn append(&mut self, id: SagaId, record: &Record) -> Result<(), Error> {
        let saga = self.sagas.get(&id);
        if saga.is_some_and(|saga| saga.finished.is_some()) {
            return Err(Error::Finished(id));
        }
        let expected = saga
            .and_then(|saga| saga.records.last_key_value())
            .map_or(0, |(seq, _)| seq + 1);
        if record.seq != expected {
            return Err(Error::OutOfOrder {
                saga: id,
                expected,
                found: record.seq,
            });
        }
        let mut payload = Vec::with_capacity(ID_LEN + 32);
        payload.extend_from_slice(&id.0.to_le_bytes());
        payload.extend_from_slice(&record.to_bytes());
        let entry = format::entry(KIND_RECORD, &payload, self.unit());
        let max = self.sector_size - self.header_len();
        if entry.len() > max || payload.len() > usize::from(u16::MAX) {
            return Err(Error::TooLarge {
                size: entry.len(),
                max,
            });
        }
        let (sector, offset) = self.write_entry(&entry, false)?;
        let saga = self.sagas.entry(id).or_default();
        saga.records.insert(
            record.seq,
            Loc {
                sector,
                offset,
                len: payload.len(),
            },
        );
        if let Event::Finished { outcome, .. } = record.event {
            saga.finished = Some(outcome);
        }
        Ok(())
    }

    /// Writes `entry` at the head, making room first; where it went.
    fn write_entry(&mut self, entry: &[u8], reclaiming: bool) -> Result<(usize, usize), Error> {
        self.make_room(entry.len(), reclaiming)?;
        let head = self.head.expect("make_room leaves a head");
        let Sector::Used { end, .. } = self.sectors[head] else {
            unreachable!("the head is in use");
        };
        // Counted before the write: a torn entry closes the sector anyway.
        if let Sector::Used {
            end,
            entries,
            marks,
            ..
        } = &mut self.sectors[head]
        {
            *end += entry.len();
            *entries += 1;
            if entry[2] == KIND_MARK {
                *marks += 1;
            }
        }
        if let Err(error) = self.write(head, end, entry) {
            if let Sector::Used { end, .. } = &mut self.sectors[head] {
                *end = self.sector_size;
            }
            return Err(error);
        }
        Ok((head, end))
    }

    /// Makes room for `len` bytes at the head: opens a free sector while
    /// one more stays free for reclaiming, reclaims the oldest sector
    /// otherwise. A reclaim itself may take the last free sector.
    fn make_room(&mut self, len: usize, reclaiming: bool) -> Result<(), Error> {
        for _ in 0..=2 * self.sectors.len() {
            if let Some(head) = self.head
                && let Sector::Used { end, .. } = self.sectors[head]
                && end + len <= self.sector_size
            {
                return Ok(());
            }
            let free = self
                .sectors
                .iter()
                .filter(|sector| matches!(sector, Sector::Free { .. }))
                .count();
            if free >= 2 || (reclaiming && free >= 1) {
                self.open_head()?;
            } else if reclaiming {
                break;
            } else {
                self.reclaim_oldest()?;
            }
        }
        Err(Error::Full { needed: len })
    }

    /// Opens a free sector as the new head: the next free one after the
    /// head, so that sectors are used in turn (wear levelling), erased
    /// first unless it is known to be blank.
    fn open_head(&mut self) -> Result<(), Error> {
        let count = self.sectors.len();
        let start = self.head.map_or(0, |head| head + 1);
        let Some(sector) = (0..count)
            .map(|step| (start + step) % count)
            .find(|&sector| matches!(self.sectors[sector], Sector::Free { .. }))
        else {
            return Err(Error::Full { needed: 0 });
        };
        if self.sectors[sector] != (Sector::Free { blank: true }) && !self.blank_from(sector, 0)? {
            self.erase(sector)?;
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let header = format::header(seq, self.unit());
        // The sector takes no entries until its header is written.
        self.sectors[sector] = Sector::Free { blank: false };
        self.write(sector, 0, &header)?;
        self.sectors[sector] = Sector::Used {
            seq,
            end: header.len(),
            entries: 0,
            marks: 0,
        };
        self.head = Some(sector);
        Ok(())
    }

    /// The sector in use with the lowest sequence number.
    fn oldest(&self) -> Option<(usize, u32)> {
        self.sectors
            .iter()
            .enumerate()
            .filter_map(|(index, sector)| match sector {
                Sector::Used { seq, .. } => Some((index, *seq)),
                Sector::Free { .. } => None,
            })
            .min_by_key(|(_, seq)| *seq)
    }

    /// Reclaims the oldest sector: copies the unfinished sagas' records it
    /// holds to the head, writes a mark saying it is reclaimed, erases it.
    fn reclaim_oldest(&mut self) -> Result<(), Error> {
        let Some((oldest, seq)) = self.oldest() else {
            return Err(Error::Full { needed: 0 });
        };
        if self.head == Some(oldest) {
            // Copies must go elsewhere: close it.
            if let Sector::Used { end, .. } = &mut self.sectors[oldest] {
                *end = self.sector_size;
            }
        }
        let copies: Vec<(SagaId, u64, Loc)> = self
            .sagas
            .iter()
            .filter(|(_, saga)| saga.finished.is_none())
            .flat_map(|(id, saga)| saga.records.iter().map(move |(seq, loc)| (*id, *seq, *loc)))
            .filter(|(_, _, loc)| loc.sector == oldest)
            .collect();
        for (id, record, loc) in copies {
            let total = format::round_up(ENTRY_HEAD + loc.len, self.unit());
            let bytes = self.read(loc.sector, loc.offset, total)?;
            if self.read_payload(loc)?.is_none() {
                return Err(Error::Corrupt {
                    saga: id,
                    seq: record,
                });
            }
            let (sector, offset) = self.write_entry(&bytes, true)?;
            if let Some(saga) = self.sagas.get_mut(&id) {
                saga.records.insert(
                    record,
                    Loc {
                        sector,
                        offset,
                        ..loc
                    },
                );
            }
        }
        let mark = format::entry(KIND_MARK, &seq.to_le_bytes(), self.unit());
        self.write_entry(&mark, true)?;
        self.erase(oldest)?;
        if self.head == Some(oldest) {
            self.head = None;
        }
        // What is left of it: finished sagas' records, gone now.
        for saga in self.sagas.values_mut() {
            saga.records.retain(|_, loc| loc.sector != oldest);
        }
        self.sagas.retain(|_, saga| !saga.records.is_empty());
        Ok(())
    }

    /// Whether `sector` holds records of finished sagas (or old copies).
    fn has_dead(&self, sector: usize) -> bool {
        let Sector::Used { entries, marks, .. } = self.sectors[sector] else {
            return false;
        };
        let live = self
            .sagas
            .values()
            .filter(|saga| saga.finished.is_none())
            .flat_map(|saga| saga.records.values())
            .filter(|loc| loc.sector == sector)
            .count() as u32;
        entries > live + marks
    }

    fn reclaim(&mut self) -> Result<usize, Error> {
        let mut erased = 0;
        while let Some((oldest, _)) = self.oldest() {
            if self.head == Some(oldest) || !self.has_dead(oldest) {
                break;
            }
            self.reclaim_oldest()?;
            erased += 1;
        }
        Ok(erased)
    }
}
