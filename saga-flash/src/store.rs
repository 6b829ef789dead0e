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

use crate::format::{
    self, ENTRY_HEAD, HEADER_LEN, Head, ID_LEN, KIND_MARK, KIND_RECORD, RECLAIMS_NONE,
};
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
    /// The record's place among the entry's records.
    index: usize,
}

impl Loc {
    fn same_entry(&self, other: &Loc) -> bool {
        (self.sector, self.offset) == (other.sector, other.offset)
    }
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
            let bytes = format::split_records(&payload)
                .and_then(|(_, records)| records.get(loc.index).map(|bytes| bytes.to_vec()));
            let bytes = bytes.ok_or(Error::Corrupt { saga: id, seq })?;
            let record =
                Record::from_bytes(&bytes).map_err(|_| Error::Corrupt { saga: id, seq })?;
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
    /// compensated. Fails with [`Error::Finished`] for a finished saga,
    /// and [`Error::Unknown`] for one the store holds no record of (it
    /// writes nothing then).
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
            let Some(saga) = saga else {
                return Err(Error::Unknown(id));
            };
            if saga.finished.is_some() {
                return Err(Error::Finished(id));
            }
            saga.records.last_key_value().map_or(0, |(seq, _)| seq + 1)
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
        self.borrow()?.append(id, core::slice::from_ref(record))
    }

    /// Writes several records of saga `id` at once, as
    /// [`append`](FlashStore::append) does one: in one entry, so that a
    /// power cut keeps all of them or none (unless they do not fit in one
    /// sector together: then in as few entries as fit, each kept whole or
    /// not at all, in order). A [`FlashJournal`]'s flush writes its records
    /// this way.
    pub fn append_all(&self, id: SagaId, records: &[Record]) -> Result<(), Error> {
        self.borrow()?.append(id, records)
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
    /// let before = store.usage()?;
    /// // Sectors before the head are erased (the unfinished saga's record
    /// // is copied forward first).
    /// assert!(store.reclaim()? >= 1);
    /// let after = store.usage()?;
    /// assert!(after.dead_records < before.dead_records);
    /// assert!(after.free_sectors > before.free_sectors);
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
        let unit = F::WRITE_SIZE;
        let room = F::ERASE_SIZE
            - format::round_up(HEADER_LEN, unit)
            - 2 * format::round_up(ENTRY_HEAD + 4, unit);
        let entry = room - room % unit;
        // The entry's head, the saga id, the count, the record's length.
        let record = entry - ENTRY_HEAD - ID_LEN - 1 - 2;
        record.min(usize::from(u16::MAX) - ID_LEN - 1 - 2)
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

    fn mark_len(&self) -> usize {
        format::round_up(ENTRY_HEAD + 4, self.unit())
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

    /// Reads the log back: headers, then entries, then the index.
    fn load(&mut self) -> Result<(), Error> {
        let header_len = self.header_len();
        let mut found = Vec::new();
        let mut next_seq = 0_u32;
        for sector in 0..self.sectors.len() {
            let header = self.read(sector, 0, header_len)?;
            let Some((seq, reclaims)) = format::parse_header(&header) else {
                continue;
            };
            next_seq = next_seq.max(seq.wrapping_add(1));
            let (entries, end) = self.scan(sector)?;
            found.push((seq, reclaims, sector, entries, end));
        }
        self.next_seq = next_seq;
        // Every sector up to the highest reclaim mark was reclaimed: its
        // live records were copied before the mark was written, and its
        // erase may have been cut short.
        let reclaimed = found
            .iter()
            .flat_map(|(_, _, _, entries, _)| entries)
            .filter(|entry| entry.kind == KIND_MARK && entry.payload.len() == 4)
            .map(|entry| {
                let raw = &entry.payload;
                u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])
            })
            .max();
        let done = |seq: u32| reclaimed.is_some_and(|mark| mark >= seq);
        // A sector opened to reclaim another, whose mark was not written:
        // the reclaim was cut short, and the other still holds every
        // record; this one's copies are dropped, and it is free again.
        found.retain(|(_, reclaims, ..)| *reclaims == RECLAIMS_NONE || done(*reclaims));
        found.retain(|(seq, ..)| !done(*seq));
        found.sort_by_key(|(seq, ..)| *seq);
        for (seq, _, sector, entries, end) in found {
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
                let Some((id, records)) = format::split_records(&entry.payload) else {
                    continue;
                };
                let saga = self.sagas.entry(SagaId(id)).or_default();
                for (index, bytes) in records.into_iter().enumerate() {
                    // A record that does not decode is left out: its saga's
                    // records then have a gap, and `records` says so.
                    let Ok(record) = Record::from_bytes(bytes) else {
                        continue;
                    };
                    if let Event::Finished { outcome, .. } = record.event {
                        saga.finished = Some(outcome);
                    }
                    // A later copy (a reclaim cut short) replaces an
                    // earlier one.
                    let loc = Loc {
                        sector,
                        offset: entry.offset,
                        len: entry.payload.len(),
                        index,
                    };
                    saga.records.insert(record.seq, loc);
                }
            }
        }
        Ok(())
    }

    /// The valid entries of `sector`, and where the next one can go: after
    /// every byte written since the sector was erased.
    ///
    /// A torn write leaves bytes that are no entry (or an entry whose
    /// checksum fails): the scan steps over them a word at a time to any
    /// valid entry after them, and the sector takes no more entries.
    fn scan(&mut self, sector: usize) -> Result<(Vec<Found>, usize), Error> {
        let unit = self.unit();
        let head_len = format::round_up(ENTRY_HEAD, unit);
        let blank = self.blank_suffix(sector)?;
        let mut entries = Vec::new();
        let mut at = self.header_len();
        let mut torn = false;
        while at < blank && at + head_len <= self.sector_size {
            let head = self.read(sector, at, head_len)?;
            if let Head::Entry { kind, len, crc } = format::parse_head(&head) {
                let total = format::round_up(ENTRY_HEAD + len, unit);
                if at + total <= self.sector_size {
                    let bytes = self.read(sector, at, total)?;
                    if format::entry_intact(&bytes, len, crc) {
                        entries.push(Found {
                            kind,
                            offset: at,
                            payload: bytes[ENTRY_HEAD..ENTRY_HEAD + len].to_vec(),
                        });
                        at += total;
                        continue;
                    }
                }
            }
            // Torn bytes: step over a word.
            torn = true;
            at += unit;
        }
        // After torn bytes no more is written to the sector: which of the
        // words a torn write touched cannot be known for sure.
        let end = match torn {
            true => self.sector_size,
            false => at.max(blank),
        };
        Ok((entries, end))
    }

    /// Where the erased bytes at the end of `sector` begin (aligned to the
    /// write size).
    fn blank_suffix(&mut self, sector: usize) -> Result<usize, Error> {
        let unit = self.unit();
        let chunk = format::round_up(64, unit);
        let mut end = self.sector_size;
        while end > 0 {
            let start = end.saturating_sub(chunk);
            let bytes = self.read(sector, start, end - start)?;
            if let Some(last) = bytes.iter().rposition(|&byte| byte != 0xFF) {
                return Ok(format::round_up(start + last + 1, unit));
            }
            end = start;
        }
        Ok(0)
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

    /// Writes `records` (the next of saga `id`, in order) in as few entries
    /// as fit in a sector: one, unless they are very many or large.
    fn append(&mut self, id: SagaId, records: &[Record]) -> Result<(), Error> {
        let saga = self.sagas.get(&id);
        let mut finished = saga.and_then(|saga| saga.finished).is_some();
        let first = saga
            .and_then(|saga| saga.records.last_key_value())
            .map_or(0, |(seq, _)| seq + 1);
        let mut encoded = Vec::with_capacity(records.len());
        for (expected, record) in (first..).zip(records) {
            if finished {
                return Err(Error::Finished(id));
            }
            if record.seq != expected {
                return Err(Error::OutOfOrder {
                    saga: id,
                    expected,
                    found: record.seq,
                });
            }
            finished = matches!(record.event, Event::Finished { .. });
            encoded.push(record.to_bytes());
        }
        // Room for the largest entry even in a sector opened by a reclaim
        // (which holds its mark) that keeps room for one more mark.
        let max = self.sector_size - self.header_len() - 2 * self.mark_len();
        let unit = self.unit();
        let size = |bytes: &[Vec<u8>]| {
            let payload = ID_LEN + 1 + bytes.iter().map(|record| 2 + record.len()).sum::<usize>();
            (format::round_up(ENTRY_HEAD + payload, unit), payload)
        };
        let mut start = 0;
        while start < encoded.len() {
            // As many records as fit in one entry (at least one).
            let mut end = start + 1;
            while end < encoded.len()
                && end - start < usize::from(u8::MAX)
                && size(&encoded[start..=end]).0 <= max
            {
                end += 1;
            }
            let (total, payload_len) = size(&encoded[start..end]);
            if total > max || payload_len > usize::from(u16::MAX) {
                return Err(Error::TooLarge { size: total, max });
            }
            let payload = format::records_payload(id.0, &encoded[start..end]);
            let entry = format::entry(KIND_RECORD, &payload, self.unit());
            let (sector, offset) = self.write_entry(&entry, false)?;
            let saga = self.sagas.entry(id).or_default();
            for (index, record) in records[start..end].iter().enumerate() {
                let loc = Loc {
                    sector,
                    offset,
                    len: payload.len(),
                    index,
                };
                saga.records.insert(record.seq, loc);
                if let Event::Finished { outcome, .. } = record.event {
                    saga.finished = Some(outcome);
                }
            }
            start = end;
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
    /// one more stays free for reclaiming, reclaims the oldest sector into
    /// that last one otherwise.
    fn make_room(&mut self, len: usize, reclaiming: bool) -> Result<(), Error> {
        for _ in 0..=2 * self.sectors.len() {
            // Outside a reclaim, a sector keeps room for a mark at its end,
            // so that the live entries of any one sector, copied to an
            // empty one by a reclaim, leave room for the reclaim's mark.
            let limit = match reclaiming {
                true => self.sector_size,
                false => self.sector_size - self.mark_len(),
            };
            let room = match self.head.map(|head| self.sectors[head]) {
                Some(Sector::Used { end, .. }) => end + len <= limit,
                _ => false,
            };
            if room {
                return Ok(());
            }
            if reclaiming {
                // A reclaim's copies and mark always fit in its sector.
                break;
            }
            match self.free_sectors() {
                0 => break,
                1 => self.reclaim_oldest()?,
                _ => self.open_head(RECLAIMS_NONE)?,
            }
        }
        Err(Error::Full { needed: len })
    }

    /// Opens a free sector as the new head: the next free one after the
    /// head, so that sectors are used in turn (wear levelling), erased
    /// first unless this mount erased it.
    fn free_sectors(&self) -> usize {
        self.sectors
            .iter()
            .filter(|sector| matches!(sector, Sector::Free { .. }))
            .count()
    }

    fn open_head(&mut self, reclaims: u32) -> Result<(), Error> {
        let count = self.sectors.len();
        let start = self.head.map_or(0, |head| head + 1);
        let Some(sector) = (0..count)
            .map(|step| (start + step) % count)
            .find(|&sector| matches!(self.sectors[sector], Sector::Free { .. }))
        else {
            return Err(Error::Full { needed: 0 });
        };
        // Erased first unless this mount erased it: reading `0xFF` does
        // not prove a word unwritten (a torn write may have written
        // `0xFF` words, which flash with ECC cannot take twice).
        if self.sectors[sector] != (Sector::Free { blank: true }) {
            self.erase(sector)?;
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let header = format::header(seq, reclaims, self.unit());
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

    /// Reclaims the oldest sector into the last free one: opens that one,
    /// copies there the unfinished sagas' records the oldest holds, writes
    /// a mark saying the oldest is reclaimed, erases the oldest.
    fn reclaim_oldest(&mut self) -> Result<(), Error> {
        let Some((oldest, seq)) = self.oldest() else {
            return Err(Error::Full { needed: 0 });
        };
        // The entries to copy: each once, though it holds several records.
        let mut copies: Vec<(SagaId, u64, Loc)> = Vec::new();
        for (id, saga) in self
            .sagas
            .iter()
            .filter(|(_, saga)| saga.finished.is_none())
        {
            for (record, loc) in &saga.records {
                let copied = copies
                    .iter()
                    .any(|(other, _, at)| other == id && at.same_entry(loc));
                if loc.sector == oldest && !copied {
                    copies.push((*id, *record, *loc));
                }
            }
        }
        // The copies and the mark go to the head when they fit there
        // (and it is not the sector reclaimed); otherwise to the last free
        // sector, opened for this reclaim: if the power is cut before the
        // mark is written, the next mount drops that sector whole (the
        // records are still in `oldest`), so the free sector a reclaim
        // needs is never lost. Copies left at the head by a cut are
        // duplicates, and the index keeps one of each.
        let unit = self.unit();
        let needed: usize = copies
            .iter()
            .map(|(_, _, loc)| format::round_up(ENTRY_HEAD + loc.len, unit))
            .sum::<usize>()
            + self.mark_len();
        let fits = match self.head.map(|head| (head, self.sectors[head])) {
            Some((head, Sector::Used { end, .. })) => {
                head != oldest && end + needed <= self.sector_size
            }
            _ => false,
        };
        if !fits {
            self.open_head(seq)?;
        }
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
                for moved in saga.records.values_mut().filter(|at| at.same_entry(&loc)) {
                    moved.sector = sector;
                    moved.offset = offset;
                }
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
        let mut live: Vec<usize> = self
            .sagas
            .values()
            .filter(|saga| saga.finished.is_none())
            .flat_map(|saga| saga.records.values())
            .filter(|loc| loc.sector == sector)
            .map(|loc| loc.offset)
            .collect();
        live.sort_unstable();
        live.dedup();
        let live = live.len() as u32;
        entries > live + marks
    }

    fn reclaim(&mut self) -> Result<usize, Error> {
        let mut erased = 0;
        while let Some((oldest, _)) = self.oldest() {
            if self.head == Some(oldest) || !self.has_dead(oldest) || self.free_sectors() == 0 {
                break;
            }
            self.reclaim_oldest()?;
            erased += 1;
        }
        Ok(erased)
    }
}
