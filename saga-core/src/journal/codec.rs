//! [`Codec`]: how a value is written to a journal and read back, with no
//! dependency: little-endian integers, length-prefixed bytes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A value that can be saved in a journal and read back after a restart:
/// a durable saga's parameters, and the output of a typed step that its
/// compensation (or a later step) reads.
///
/// Implemented for integers, `bool`, `char`, `String`, `Vec<T>`,
/// `Option<T>`, `()` and tuples of up to four codecs. Implement it for your
/// own types by writing their fields in order; [`Reader`] reads them back.
/// Bridging to serde is a few lines (encode with your format of choice into
/// `out`, decode from `bytes`).
///
/// # Examples
///
/// ```
/// use saga_core::journal::{Codec, DecodeError, Reader};
///
/// #[derive(Debug, PartialEq)]
/// struct Booking {
///     id: String,
///     nights: u32,
/// }
///
/// impl Codec for Booking {
///     fn encode(&self, out: &mut Vec<u8>) {
///         self.id.encode(out);
///         self.nights.encode(out);
///     }
///
///     fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
///         Ok(Booking { id: reader.read()?, nights: reader.read()? })
///     }
/// }
///
/// let booking = Booking { id: "H-7".into(), nights: 3 };
/// let mut bytes = Vec::new();
/// booking.encode(&mut bytes);
/// assert_eq!(Booking::decode(&bytes)?, booking);
/// assert!(Booking::decode(&bytes[..3]).is_err()); // torn: a clear error
/// # Ok::<(), DecodeError>(())
/// ```
pub trait Codec: Sized {
    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value from `reader`, leaving it after the value's bytes.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Reads a value from exactly `bytes`: trailing bytes are an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

/// Bytes that could not be decoded: truncated, trailing, or invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    what: &'static str,
    offset: usize,
}

impl DecodeError {
    /// An error at byte `offset`, saying what was wrong (for `Display`).
    pub fn new(what: &'static str, offset: usize) -> Self {
        DecodeError { what, offset }
    }

    /// The byte offset at which decoding failed.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode at byte {}: {}", self.offset, self.what)
    }
}

impl core::error::Error for DecodeError {}

/// Reads [`Codec`] values from bytes, in order.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    /// Reads one value.
    pub fn read<T: Codec>(&mut self) -> Result<T, DecodeError> {
        T::decode_from(self)
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let rest = &self.bytes[self.offset..];
        if rest.len() < len {
            return Err(self.error("unexpected end of the bytes"));
        }
        self.offset += len;
        Ok(&rest[..len])
    }

    /// An error at the current offset.
    pub fn error(&self, what: &'static str) -> DecodeError {
        DecodeError::new(what, self.offset)
    }

    /// How many bytes were read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Succeeds if every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.offset == self.bytes.len() {
            true => Ok(()),
            false => Err(self.error("trailing bytes")),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// A length written by `encode_len`.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let len = u32::decode_from(self)?;
        usize::try_from(len).map_err(|_| self.error("length too large"))
    }
}

fn encode_len(len: usize, out: &mut Vec<u8>) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    len.encode(out);
}

macro_rules! int_codec {
    ($($int:ty),*) => {$(
        impl Codec for $int {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$int>::from_le_bytes(reader.array()?))
            }
        }
    )*};
}

int_codec!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl Codec for usize {
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out);
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let value = u64::decode_from(reader)?;
        usize::try_from(value).map_err(|_| reader.error("usize out of range"))
    }
}

impl Codec for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = reader.offset();
        match u8::decode_from(reader)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::new("a bool is 0 or 1", at)),
        }
    }
}

impl Codec for char {
    fn encode(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode(out);
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = reader.offset();
        let value = u32::decode_from(reader)?;
        char::from_u32(value).ok_or_else(|| DecodeError::new("not a char", at))
    }
}

impl Codec for () {
    fn encode(&self, _out: &mut Vec<u8>) {}

    fn decode_from(_reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(())
    }
}

impl Codec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = reader.len()?;
        let start = reader.offset();
        let bytes = reader.take(len)?;
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| DecodeError::new("not UTF-8", start))
    }
}

impl<T: Codec> Codec for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        self.iter().for_each(|item| item.encode(out));
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = reader.len()?;
        // Bounded by the bytes left, so that a corrupt length cannot ask
        // for more memory than the input could fill.
        let mut items = Vec::with_capacity(len.min(reader.bytes.len() - reader.offset));
        for _ in 0..len {
            items.push(T::decode_from(reader)?);
        }
        Ok(items)
    }
}

impl<T: Codec> Codec for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
        }
    }

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = reader.offset();
        match u8::decode_from(reader)? {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(reader)?)),
            _ => Err(DecodeError::new("an option tag is 0 or 1", at)),
        }
    }
}

macro_rules! tuple_codec {
    ($($name:ident),+) => {
        impl<$($name: Codec),+> Codec for ($($name,)+) {
            #[allow(non_snake_case, reason = "the names are the type parameters")]
            fn encode(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.encode(out);)+
            }

            fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(($($name::decode_from(reader)?,)+))
            }
        }
    };
}

tuple_codec!(A);
tuple_codec!(A, B);
tuple_codec!(A, B, C);
tuple_codec!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn round_trip<T: Codec + PartialEq + fmt::Debug>(value: T) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        assert_eq!(T::decode(&bytes).unwrap(), value);
        for cut in 0..bytes.len() {
            assert!(T::decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn values_round_trip_and_every_truncation_fails() {
        round_trip(0x1234_5678_u32);
        round_trip(-5_i64);
        round_trip(String::from("héllo"));
        round_trip(Some((1_u8, String::from("x"), true)));
        round_trip(vec![String::from("a"), String::new()]);
        round_trip('∑');
    }

    #[test]
    fn invalid_bytes_are_errors() {
        assert!(bool::decode(&[2]).is_err());
        assert!(String::decode(&[2, 0, 0, 0, 0xff, 0xfe]).is_err());
        assert!(u8::decode(&[1, 2]).is_err());
        // A huge length with few bytes fails without a huge allocation.
        assert!(Vec::<u8>::decode(&[0xff, 0xff, 0xff, 0xff, 1]).is_err());
    }
}
