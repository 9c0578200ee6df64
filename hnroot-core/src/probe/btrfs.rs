//! The btrfs primary superblock at 64 KiB: magic, CRC32C checksum, label and UUID, as
//! libblkid's `superblocks/btrfs.c` (non-zoned devices). Superblocks with the xxhash, sha256
//! or blake2 checksum types are accepted without verifying the checksum (util-linux 2.38
//! verifies none; later versions verify xxhash and sha256 as well). Never reads a disk.

use core::fmt;
use core::ops::Range;

use super::bytes::{Fields, CRC32C};
use super::label::{Label, Trim};
use crate::uuid::FsUuid;

/// Where the primary superblock starts.
pub const SB_OFFSET: u64 = 64 * 1024;
/// Bytes of the superblock (the checksum covers all but the first 32).
pub const SB_LEN: usize = 4096;
/// libblkid ignores btrfs on devices smaller than this.
pub const MIN_DEVICE_SIZE: u64 = 1024 * 1024;

const CSUM: Range<usize> = 0..32;
const CRC32C_CSUM: Range<usize> = 0..4;
const FSID: Range<usize> = 32..48;
const MAGIC: Range<usize> = 64..72;
const SECTORSIZE: Range<usize> = 144..148;
const CSUM_TYPE: Range<usize> = 196..198;
/// `dev_item.total_bytes`: the size of this device when it was added to the filesystem
/// (`dev_item` starts at 201, `total_bytes` follows its 8-byte `devid`).
const DEV_TOTAL_BYTES: Range<usize> = 209..217;
const LABEL: Range<usize> = 299..555;

const MAGIC_VALUE: [u8; 8] = *b"_BHRfS_M";
const CSUM_TYPE_CRC32C: u16 = 0;

/// Why bytes are not a btrfs superblock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BtrfsReject {
    /// Fewer than [`SB_LEN`] bytes.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// No `_BHRfS_M` at offset 64.
    Magic,
    /// The CRC32C of bytes 32..4096 does not match the stored checksum.
    Checksum {
        /// Stored (first 4 bytes, little endian).
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// `sectorsize` is 0.
    SectorSize,
}

impl fmt::Display for BtrfsReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BtrfsReject::TooShort { len } => {
                write!(f, "btrfs superblock needs {SB_LEN} bytes, got {len}")
            }
            BtrfsReject::Magic => f.write_str("btrfs magic _BHRfS_M not found"),
            BtrfsReject::Checksum { stored, computed } => write!(
                f,
                "btrfs superblock checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            BtrfsReject::SectorSize => f.write_str("btrfs superblock with sector size 0"),
        }
    }
}

/// A valid btrfs superblock.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BtrfsSuperblock {
    /// The label.
    pub label: Option<Label>,
    /// `fsid`, unless all zero.
    pub uuid: Option<FsUuid>,
    /// Bytes of this device the filesystem spans: its `dev_item.total_bytes` (the kernel
    /// refuses a device smaller than that), unless zero.
    pub size: Option<u64>,
    /// `sectorsize` (never 0): the smallest unit it reads and writes.
    pub sector_size: u32,
}

/// Parse the [`SB_LEN`] bytes at [`SB_OFFSET`].
pub fn parse(sb: &[u8]) -> Result<BtrfsSuperblock, BtrfsReject> {
    let f = Fields::new(sb, SB_LEN).ok_or(BtrfsReject::TooShort { len: sb.len() })?;
    if f.array::<8>(MAGIC) != MAGIC_VALUE {
        return Err(BtrfsReject::Magic);
    }
    if f.le16(CSUM_TYPE) == CSUM_TYPE_CRC32C {
        let stored = f.le32(CRC32C_CSUM);
        let computed = CRC32C.checksum(f.bytes(CSUM.end..SB_LEN));
        if stored != computed {
            return Err(BtrfsReject::Checksum { stored, computed });
        }
    }
    let sector_size = f.le32(SECTORSIZE);
    if sector_size == 0 {
        return Err(BtrfsReject::SectorSize);
    }
    let label_field = f.bytes(LABEL);
    let label = if label_field.first().is_some_and(|&b| b != 0) {
        Label::from_field(label_field, Trim::Right)
    } else {
        None
    };
    let fsid = f.array::<16>(FSID);
    let total_bytes = f.le64(DEV_TOTAL_BYTES);
    Ok(BtrfsSuperblock {
        label,
        uuid: (fsid != [0; 16]).then_some(FsUuid::Uuid(fsid)),
        size: (total_bytes != 0).then_some(total_bytes),
        sector_size,
    })
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn sb(label: &[u8]) -> [u8; SB_LEN] {
        let mut b = [0u8; SB_LEN];
        b[MAGIC].copy_from_slice(&MAGIC_VALUE);
        b[FSID].copy_from_slice(&[7; 16]);
        b[SECTORSIZE].copy_from_slice(&4096u32.to_le_bytes());
        b[DEV_TOTAL_BYTES].copy_from_slice(&(256u64 << 20).to_le_bytes());
        b[LABEL][..label.len()].copy_from_slice(label);
        seal(&mut b);
        b
    }

    fn seal(b: &mut [u8; SB_LEN]) {
        let crc = CRC32C.checksum(&b[CSUM.end..]);
        b[CRC32C_CSUM].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn label_uuid_and_checksum() {
        let got = parse(&sb("hôstpart".as_bytes())).unwrap();
        assert_eq!(got.label.unwrap().as_str(), Some("hôstpart"));
        assert_eq!(got.uuid, Some(FsUuid::Uuid([7; 16])));
        assert_eq!(got.size, Some(256 << 20));
        assert_eq!(got.sector_size, 4096);
        let mut b = sb(b"x");
        b[LABEL.start] = b'y';
        assert!(matches!(parse(&b), Err(BtrfsReject::Checksum { .. })));
    }

    #[test]
    fn a_full_256_byte_label() {
        let got = parse(&sb(&[b'L'; 256])).unwrap();
        assert_eq!(got.label.unwrap().as_bytes().len(), 256);
    }

    #[test]
    fn other_checksum_types_are_not_verified() {
        let mut b = sb(b"x");
        b[CSUM_TYPE].copy_from_slice(&1u16.to_le_bytes());
        assert!(parse(&b).is_ok());
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(&[0; 100]), Err(BtrfsReject::TooShort { len: 100 }));
        assert_eq!(parse(&[0; SB_LEN]), Err(BtrfsReject::Magic));
        let mut b = sb(b"x");
        b[SECTORSIZE].fill(0);
        seal(&mut b);
        assert_eq!(parse(&b), Err(BtrfsReject::SectorSize));
    }
}
