//! The bytes on flash: sector headers, entries and their checksum.
//!
//! A sector begins with a header: a magic number, the sector's sequence
//! number (its place in the log: a sector opened later has a higher one),
//! the sequence number of the sector it was opened to reclaim (`u32::MAX`
//! for none) and a CRC-32 of the three, padded with `0xFF` to the write
//! size. Entries
//! follow, each padded to the write size:
//!
//! ```text
//! len: u16 LE | kind: u8 | 0: u8 | crc: u32 LE | payload (len bytes) | 0xFF padding
//! ```
//!
//! The CRC-32 covers the first four bytes and the payload. A record
//! entry's payload is the saga id (16 bytes, little-endian), a count, and
//! for each record its length (`u16` LE) and its
//! [`Record::to_bytes`](saga_core::journal::Record::to_bytes); a reclaim
//! mark's payload is the sequence number (`u32` LE) of the sector that is
//! about to be erased.

use alloc::vec::Vec;

/// The first word of a sector header.
pub(crate) const MAGIC: u32 = 0x5A6A_F1A5;
/// The header's bytes before padding: magic, sequence number, the
/// sequence number of the sector it reclaims, CRC.
pub(crate) const HEADER_LEN: usize = 16;
/// A header's "reclaims" field of a sector opened for new records.
pub(crate) const RECLAIMS_NONE: u32 = u32::MAX;
/// An entry's bytes before its payload.
pub(crate) const ENTRY_HEAD: usize = 8;
/// The entry holds one or more records of one saga (those of one flush).
pub(crate) const KIND_RECORD: u8 = 1;
/// The entry marks every sector up to a sequence number as reclaimed.
pub(crate) const KIND_MARK: u8 = 2;
/// The bytes of a saga id in a record entry.
pub(crate) const ID_LEN: usize = 16;

/// CRC-32 (IEEE, reflected), bit by bit: small code, no table.
pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0_u32;
    for part in parts {
        for &byte in *part {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
    }
    !crc
}

/// The payload of a record entry: `id`, then each record's bytes.
pub(crate) fn records_payload(id: u128, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(ID_LEN + 1 + records.iter().map(|r| 2 + r.len()).sum::<usize>());
    out.extend_from_slice(&id.to_le_bytes());
    out.push(records.len() as u8);
    for record in records {
        out.extend_from_slice(&(record.len() as u16).to_le_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// A record entry's saga id and records' bytes; `None` when it is
/// malformed.
pub(crate) fn split_records(payload: &[u8]) -> Option<(u128, Vec<&[u8]>)> {
    let mut id = [0; ID_LEN];
    id.copy_from_slice(payload.get(..ID_LEN)?);
    let count = usize::from(*payload.get(ID_LEN)?);
    let mut rest = &payload[ID_LEN + 1..];
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?]));
        records.push(rest.get(2..2 + len)?);
        rest = &rest[2 + len..];
    }
    rest.is_empty()
        .then_some((u128::from_le_bytes(id), records))
}

/// `len` rounded up to a multiple of `unit`.
pub(crate) fn round_up(len: usize, unit: usize) -> usize {
    len.div_ceil(unit) * unit
}

/// A sector header for sequence number `seq`, opened to reclaim sector
/// `reclaims` (or [`RECLAIMS_NONE`]), padded to `unit` bytes.
pub(crate) fn header(seq: u32, reclaims: u32, unit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(round_up(HEADER_LEN, unit));
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&reclaims.to_le_bytes());
    let crc = crc32(&[&out]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.resize(round_up(HEADER_LEN, unit), 0xFF);
    out
}

/// The sequence number and "reclaims" field of a valid header, `None` for
/// anything else (erased, torn, garbage).
pub(crate) fn parse_header(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < HEADER_LEN {
        return None;
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(0) != MAGIC || crc32(&[&bytes[..12]]) != word(12) {
        return None;
    }
    Some((word(4), word(8)))
}

/// An entry of `kind` holding `payload`, padded to `unit` bytes.
pub(crate) fn entry(kind: u8, payload: &[u8], unit: usize) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(round_up(ENTRY_HEAD + payload.len(), unit));
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.push(0);
    let crc = crc32(&[&out, payload]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(round_up(out.len(), unit), 0xFF);
    out
}

/// What the first [`ENTRY_HEAD`] bytes at an entry's place say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// Erased: no entry was begun here.
    Blank,
    /// An entry of `kind` with `len` payload bytes, to be checked
    /// against `crc`.
    Entry { kind: u8, len: usize, crc: u32 },
    /// Anything else: a torn write or garbage.
    Torn,
}

pub(crate) fn parse_head(bytes: &[u8]) -> Head {
    if bytes[..ENTRY_HEAD].iter().all(|&byte| byte == 0xFF) {
        return Head::Blank;
    }
    let len = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
    let (kind, reserved) = (bytes[2], bytes[3]);
    if !matches!(kind, KIND_RECORD | KIND_MARK) || reserved != 0 {
        return Head::Torn;
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Head::Entry { kind, len, crc }
}

/// Whether a whole entry's bytes (head, payload, padding) match its CRC.
pub(crate) fn entry_intact(bytes: &[u8], len: usize, crc: u32) -> bool {
    bytes.len() >= ENTRY_HEAD + len
        && crc32(&[&bytes[..4], &bytes[ENTRY_HEAD..ENTRY_HEAD + len]]) == crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn headers_and_entries_round_trip_and_damage_is_seen() {
        let bytes = header(7, RECLAIMS_NONE, 8);
        assert_eq!(bytes.len(), 16);
        assert_eq!(parse_header(&bytes), Some((7, RECLAIMS_NONE)));
        let mut torn = bytes.clone();
        torn[4] &= 0x01;
        assert_eq!(parse_header(&torn), None);
        assert_eq!(parse_header(&[0xFF; 16]), None);

        let entry = entry(KIND_RECORD, b"hello", 4);
        assert_eq!(entry.len(), 16);
        let Head::Entry { kind, len, crc } = parse_head(&entry) else {
            panic!("not an entry");
        };
        assert_eq!((kind, len), (KIND_RECORD, 5));
        assert!(entry_intact(&entry, len, crc));
        let mut torn = entry.clone();
        torn[10] = 0;
        assert!(!entry_intact(&torn, len, crc));
        assert_eq!(parse_head(&[0xFF; 8]), Head::Blank);
        assert_eq!(parse_head(&[0, 0, 0x7F, 0, 0, 0, 0, 0]), Head::Torn);
    }
}
