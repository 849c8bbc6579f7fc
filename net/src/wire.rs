//! The primitives of Kafka's wire format that Spate encodes and walks by hand, where
//! kafka-protocol's generated codecs would copy the records: the Fetch response encoder
//! ([`crate::fetch_response`]) and the streamed Produce reader ([`crate::produce_stream`]).
//!
//! Kafka's rules (KIP-482 for the flexible versions): integers are big-endian; in flexible
//! versions, strings, byte fields and arrays carry their length + 1 as an unsigned varint
//! (0 = null) and every structure ends with tagged fields (an unsigned varint count, then
//! tag, size and bytes of each); older versions use an i16 length for strings and an i32
//! length for bytes and arrays, -1 for null.

use bytes::BufMut;

/// The longest unsigned varint of a u32: 5 bytes of 7 bits.
pub const UVARINT_BYTES_MAX: usize = 5;

/// Writing Kafka's primitives to a buffer.
pub trait WireWrite: BufMut {
    /// An unsigned varint (7 bits a byte, least significant first).
    fn put_uvarint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.put_u8(value as u8);
    }

    /// An array's element count.
    fn put_array_length(&mut self, flexible: bool, length: usize) {
        if flexible {
            self.put_uvarint(length as u32 + 1);
        } else {
            self.put_i32(length as i32);
        }
    }

    /// A null array.
    fn put_null_array(&mut self, flexible: bool) {
        if flexible {
            self.put_u8(0);
        } else {
            self.put_i32(-1);
        }
    }

    /// A (non-null) string.
    fn put_string(&mut self, flexible: bool, value: &[u8]) {
        if flexible {
            self.put_uvarint(value.len() as u32 + 1);
        } else {
            self.put_i16(value.len() as i16);
        }
        self.put_slice(value);
    }

    /// The length of a bytes field (records, for one), `None` for null; the bytes follow.
    fn put_bytes_length(&mut self, flexible: bool, length: Option<usize>) {
        match (flexible, length) {
            (true, Some(length)) => self.put_uvarint(length as u32 + 1),
            (true, None) => self.put_u8(0),
            (false, Some(length)) => self.put_i32(length as i32),
            (false, None) => self.put_i32(-1),
        }
    }

    /// An empty set of tagged fields.
    fn put_no_tagged_fields(&mut self) {
        self.put_u8(0);
    }
}

impl<B: BufMut> WireWrite for B {}

/// Decodes an unsigned varint one byte at a time, as a reader that walks a stream gets them.
#[derive(Debug, Default)]
pub struct UvarintDecoder {
    value: u32,
    bytes: usize,
}

/// What [`UvarintDecoder::push`] made of a byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Uvarint {
    /// More bytes follow.
    Incomplete,
    /// The value, complete.
    Done(u32),
    /// A sixth byte: no u32 is that long, the field is malformed.
    TooLong,
}

impl UvarintDecoder {
    /// Takes the next byte of the varint.
    pub fn push(&mut self, byte: u8) -> Uvarint {
        if self.bytes == UVARINT_BYTES_MAX {
            return Uvarint::TooLong;
        }
        self.value |= u32::from(byte & 0x7f) << (7 * self.bytes);
        self.bytes += 1;
        if byte & 0x80 == 0 {
            Uvarint::Done(self.value)
        } else if self.bytes == UVARINT_BYTES_MAX {
            Uvarint::TooLong
        } else {
            Uvarint::Incomplete
        }
    }
}

/// A length field's value as a count of bytes or elements: -1 (null) is none; any other
/// negative is `None`, a malformed field.
pub fn nullable_length(value: i64) -> Option<usize> {
    match value {
        -1 => Some(0),
        value => usize::try_from(value).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Option<u32> {
        let mut decoder = UvarintDecoder::default();
        for &byte in bytes {
            match decoder.push(byte) {
                Uvarint::Incomplete => {}
                Uvarint::Done(value) => return Some(value),
                Uvarint::TooLong => return None,
            }
        }
        None
    }

    #[test]
    fn varints_are_kafkas() {
        let cases: [(u32, &[u8]); 5] = [
            (0, &[0]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (u32::MAX, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, encoded) in cases {
            let mut bytes = BytesMut::new();
            bytes.put_uvarint(value);
            assert_eq!(&bytes[..], encoded, "{value}");
            assert_eq!(decode(encoded), Some(value));
        }
    }

    proptest! {
        #[test]
        fn varints_round_trip(value in any::<u32>()) {
            let mut bytes = BytesMut::new();
            bytes.put_uvarint(value);
            prop_assert!(bytes.len() <= UVARINT_BYTES_MAX);
            prop_assert_eq!(decode(&bytes), Some(value));
        }
    }

    #[test]
    fn a_sixth_byte_is_refused() {
        let mut decoder = UvarintDecoder::default();
        for _ in 0..4 {
            assert_eq!(decoder.push(0xff), Uvarint::Incomplete);
        }
        assert_eq!(decoder.push(0xff), Uvarint::TooLong);
    }

    #[test]
    fn lengths() {
        assert_eq!(nullable_length(-1), Some(0));
        assert_eq!(nullable_length(7), Some(7));
        assert_eq!(nullable_length(-2), None);
    }
}
