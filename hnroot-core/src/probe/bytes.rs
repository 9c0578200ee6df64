//! Reading fixed fields out of a buffer whose length was checked first. Never panics: a field
//! beyond the checked length reads as zeros, which the parsers rule out by construction (every
//! field constant lies inside the length they check).

use core::ops::Range;

/// A buffer of at least `min_len` bytes, as checked by [`Fields::new`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// `Some` when `buf` holds at least `min_len` bytes.
    pub(crate) fn new(buf: &'a [u8], min_len: usize) -> Option<Fields<'a>> {
        (buf.len() >= min_len).then_some(Fields(buf))
    }

    /// The bytes of `range` (empty if beyond the buffer).
    pub(crate) fn bytes(&self, range: Range<usize>) -> &'a [u8] {
        self.0.get(range).unwrap_or(&[])
    }

    /// The bytes of `range` as an array (zeros if `range` is not `N` bytes inside the buffer).
    pub(crate) fn array<const N: usize>(&self, range: Range<usize>) -> [u8; N] {
        self.0
            .get(range)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .unwrap_or([0; N])
    }

    pub(crate) fn u8(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }

    pub(crate) fn le16(&self, range: Range<usize>) -> u16 {
        u16::from_le_bytes(self.array(range))
    }

    pub(crate) fn le32(&self, range: Range<usize>) -> u32 {
        u32::from_le_bytes(self.array(range))
    }

    pub(crate) fn le64(&self, range: Range<usize>) -> u64 {
        u64::from_le_bytes(self.array(range))
    }

    pub(crate) fn be16(&self, range: Range<usize>) -> u16 {
        u16::from_be_bytes(self.array(range))
    }

    pub(crate) fn be32(&self, range: Range<usize>) -> u32 {
        u32::from_be_bytes(self.array(range))
    }

    pub(crate) fn be64(&self, range: Range<usize>) -> u64 {
        u64::from_be_bytes(self.array(range))
    }
}

/// CRC32C (Castagnoli) as the crc crate computes it (init and final xor `!0`).
pub(crate) const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
/// CRC32 (IEEE, as in zlib, GPT and LVM2).
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The CRC of `parts` concatenated, computed with `crc` (reflected, 32-bit).
pub(crate) fn crc_of(crc: &'static crc::Crc<u32>, parts: &[&[u8]]) -> u32 {
    let mut digest = crc.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

/// Continue a reflected 32-bit CRC whose `finalize()` value over earlier bytes was `so_far`
/// (for algorithms with `xorout = !0`, like CRC32 and CRC32C).
pub(crate) fn crc_continue(crc: &'static crc::Crc<u32>, so_far: u32, more: &[u8]) -> u32 {
    // finalize() returned state ^ !0; digest_with_initial(x) starts from x.reverse_bits().
    let mut digest = crc.digest_with_initial((so_far ^ !0).reverse_bits());
    digest.update(more);
    digest.finalize()
}

/// `len` zero bytes, in pieces, for CRCs over fields that count as zero.
pub(crate) const ZEROS: [u8; 8] = [0; 8];

/// True when `range` is a power of two (0 is not).
pub(crate) fn is_power_of_two(n: u32) -> bool {
    n != 0 && n & n.wrapping_sub(1) == 0
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn crc_continues_across_pieces() {
        let data = b"123456789abcdefghijklmnop";
        for split in 0..data.len() {
            let (a, b) = data.split_at(split);
            assert_eq!(
                crc_continue(&CRC32, CRC32.checksum(a), b),
                CRC32.checksum(data)
            );
            assert_eq!(
                crc_continue(&CRC32C, CRC32C.checksum(a), b),
                CRC32C.checksum(data)
            );
        }
        assert_eq!(CRC32.checksum(b"123456789"), 0xcbf4_3926);
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn fields_read_zero_beyond_the_buffer() {
        let f = Fields::new(&[1, 2, 3], 3).unwrap();
        assert_eq!(f.le16(0..2), 0x0201);
        assert_eq!(f.le32(1..5), 0);
        assert_eq!(f.u8(9), 0);
        assert!(Fields::new(&[1], 2).is_none());
    }
}
