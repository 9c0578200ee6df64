//! Signatures that are not filesystems but that libblkid reports *instead of* any filesystem
//! on the same device: Linux MD RAID members, LVM2 physical volumes, LUKS and BitLocker
//! volumes. libblkid probes these first and stops at the first one it finds
//! (`superblocks_safeprobe`), so a RAID1 member whose data is a FAT filesystem is reported as
//! `linux_raid_member`, not as `vfat` — and must not be found by label. Checks follow
//! libblkid's `linux_raid.c`, `lvm.c`, `luks.c` and `bitlocker.c` (primary headers only).
//! Never reads a disk.

use core::fmt;
use core::ops::Range;

use super::bytes::{Fields, CRC32};

/// A signature libblkid reports in place of a filesystem.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum OtherType {
    /// `linux_raid_member`: an MD RAID component (metadata 0.90, 1.0, 1.1 or 1.2).
    LinuxRaidMember,
    /// `LVM2_member`: an LVM2 physical volume.
    Lvm2Member,
    /// `crypto_LUKS`: a LUKS1 or LUKS2 volume.
    CryptoLuks,
    /// `BitLocker`: a BitLocker volume.
    BitLocker,
}

impl OtherType {
    /// blkid's `TYPE=` string.
    pub fn as_str(&self) -> &'static str {
        match self {
            OtherType::LinuxRaidMember => "linux_raid_member",
            OtherType::Lvm2Member => "LVM2_member",
            OtherType::CryptoLuks => "crypto_LUKS",
            OtherType::BitLocker => "BitLocker",
        }
    }
}

impl fmt::Display for OtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The area MD metadata 0.90 reserves at the end of a device.
pub const MD_RESERVED_BYTES: u64 = 0x10000;
/// Bytes of an MD 0.90 superblock the check needs.
pub const MD0_LEN: usize = 64;
/// Bytes of an MD 1.x superblock the check needs.
pub const MD1_LEN: usize = 256;
/// Offset of MD metadata 1.2 (1.1 is at 0).
pub const MD1_2_OFFSET: u64 = 0x1000;

const MD_MAGIC: u32 = 0xa92b_4efc;
const MD0_MAGIC: Range<usize> = 0..4;
const MD0_SIZE_KIB: Range<usize> = 32..36;
const MD1_MAGIC: Range<usize> = 0..4;
const MD1_MAJOR: Range<usize> = 4..8;
const MD1_SUPER_OFFSET: Range<usize> = 144..152;

/// Where MD metadata 0.90 would be on a device of `size` bytes (only above 64 KiB).
pub fn md0_offset(size: u64) -> Option<u64> {
    (size > MD_RESERVED_BYTES)
        .then(|| (size & !(MD_RESERVED_BYTES.wrapping_sub(1))).wrapping_sub(MD_RESERVED_BYTES))
}

/// Where MD metadata 1.0 would be on a device of `size` bytes (only above 64 KiB).
pub fn md1_0_offset(size: u64) -> Option<u64> {
    (size > MD_RESERVED_BYTES).then(|| (size & !0xfff).wrapping_sub(0x2000))
}

/// MD metadata 0.90 at `offset` of a device of `size` bytes (either byte order).
pub fn is_md0(sb: &[u8], offset: u64, size: u64) -> bool {
    let Some(f) = Fields::new(sb, MD0_LEN) else {
        return false;
    };
    let array_kib = if f.le32(MD0_MAGIC) == MD_MAGIC {
        f.le32(MD0_SIZE_KIB)
    } else if f.be32(MD0_MAGIC) == MD_MAGIC {
        f.be32(MD0_SIZE_KIB)
    } else {
        return false;
    };
    let array = u64::from(array_kib) << 10;
    size >= array.saturating_add(MD_RESERVED_BYTES) && offset >= array
}

/// MD metadata 1.x at `offset`: magic, major version 1, and the superblock knows where it is.
pub fn is_md1(sb: &[u8], offset: u64) -> bool {
    let Some(f) = Fields::new(sb, MD1_LEN) else {
        return false;
    };
    f.le32(MD1_MAGIC) == MD_MAGIC
        && f.le32(MD1_MAJOR) == 1
        && f.le64(MD1_SUPER_OFFSET) == offset >> 9
}

/// Bytes at the start of a device that hold every LVM2 label position.
pub const LVM2_AREA: usize = 2048;
const LVM2_SECTOR: usize = 512;
const LVM2_ID: Range<usize> = 0..8;
const LVM2_SECTOR_XL: Range<usize> = 8..16;
const LVM2_CRC: Range<usize> = 16..20;
const LVM2_CRC_FROM: usize = 20;
const LVM2_TYPE: Range<usize> = 24..32;
/// LVM2 seeds its CRC32 with this instead of `!0`, and does not invert at the end.
const LVM2_CRC_SEED: u32 = 0xf597_a6cf;

/// An LVM2 physical volume label in one of the first four sectors.
pub fn is_lvm2(head: &[u8]) -> bool {
    (0..4u64).any(|sector| {
        let at = LVM2_SECTOR.wrapping_mul(sector as usize);
        let Some(label) = head.get(at..at.wrapping_add(LVM2_SECTOR)) else {
            return false;
        };
        let Some(f) = Fields::new(label, LVM2_SECTOR) else {
            return false;
        };
        if f.bytes(LVM2_ID) != b"LABELONE" || f.bytes(LVM2_TYPE) != b"LVM2 001" {
            return false;
        }
        if f.le64(LVM2_SECTOR_XL) != sector {
            return false;
        }
        let mut digest = CRC32.digest_with_initial(LVM2_CRC_SEED.reverse_bits());
        digest.update(f.bytes(LVM2_CRC_FROM..LVM2_SECTOR));
        let computed = digest.finalize() ^ !0;
        computed == f.le32(LVM2_CRC)
    })
}

/// Bytes of a LUKS2 binary header (libblkid reads this much even for LUKS1).
pub const LUKS_HEADER_LEN: usize = 4096;
const LUKS_MAGIC: Range<usize> = 0..6;
const LUKS_VERSION: Range<usize> = 6..8;
const LUKS2_HDR_OFFSET: Range<usize> = 256..264;

/// A LUKS primary header at the start of the device.
pub fn is_luks(head: &[u8]) -> bool {
    let Some(f) = Fields::new(head, LUKS_HEADER_LEN) else {
        return false;
    };
    if f.bytes(LUKS_MAGIC) != b"LUKS\xba\xbe" {
        return false;
    }
    // A LUKS2 header must say it is at offset 0.
    f.be16(LUKS_VERSION) != 2 || f.be64(LUKS2_HDR_OFFSET) == 0
}

/// What the first sector says about BitLocker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BitLocker {
    /// Not BitLocker.
    No,
    /// BitLocker (Vista).
    Yes,
    /// BitLocker (Windows 7 or To Go) if the FVE metadata at this offset has its signature.
    CheckFve(u64),
}

/// Bytes of the FVE metadata header.
pub const BITLOCKER_FVE_LEN: usize = 12;
const BDE_MAGIC_VISTA: &[u8; 11] = b"\xeb\x52\x90-FVE-FS-";
const BDE_MAGIC_WIN7: &[u8; 11] = b"\xeb\x58\x90-FVE-FS-";
const BDE_MAGIC_TOGO: &[u8; 11] = b"\xeb\x58\x90MSWIN4.1";
const BDE_WIN7_FVE_OFFSET: Range<usize> = 176..184;
const BDE_TOGO_FVE_OFFSET: Range<usize> = 440..448;
const BDE_FVE_SIGNATURE: Range<usize> = 0..8;

/// BitLocker's boot sector magics.
pub fn bitlocker(sector0: &[u8]) -> BitLocker {
    let Some(f) = Fields::new(sector0, 512) else {
        return BitLocker::No;
    };
    let start = f.bytes(0..11);
    let fve = if start == BDE_MAGIC_VISTA {
        return BitLocker::Yes;
    } else if start == BDE_MAGIC_WIN7 {
        f.le64(BDE_WIN7_FVE_OFFSET)
    } else if start == BDE_MAGIC_TOGO {
        f.le64(BDE_TOGO_FVE_OFFSET)
    } else {
        return BitLocker::No;
    };
    if fve == 0 {
        BitLocker::No
    } else {
        BitLocker::CheckFve(fve)
    }
}

/// The FVE metadata header's signature.
pub fn is_bitlocker_fve(fve: &[u8]) -> bool {
    Fields::new(fve, BITLOCKER_FVE_LEN).is_some_and(|f| f.bytes(BDE_FVE_SIGNATURE) == b"-FVE-FS-")
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn md_offsets() {
        assert_eq!(md0_offset(0x10000), None);
        assert_eq!(md0_offset(0x30123), Some(0x20000));
        assert_eq!(md1_0_offset(0x30123), Some(0x2e000));
    }

    #[test]
    fn md1_needs_its_own_offset() {
        let mut sb = [0u8; MD1_LEN];
        sb[MD1_MAGIC].copy_from_slice(&MD_MAGIC.to_le_bytes());
        sb[MD1_MAJOR].copy_from_slice(&1u32.to_le_bytes());
        sb[MD1_SUPER_OFFSET].copy_from_slice(&8u64.to_le_bytes());
        assert!(is_md1(&sb, 4096));
        assert!(!is_md1(&sb, 0));
        sb[MD1_MAJOR].copy_from_slice(&2u32.to_le_bytes());
        assert!(!is_md1(&sb, 4096));
        assert!(!is_md1(&sb[..100], 4096));
    }

    #[test]
    fn md0_array_must_fit() {
        let mut sb = [0u8; MD0_LEN];
        sb[MD0_MAGIC].copy_from_slice(&MD_MAGIC.to_be_bytes());
        sb[MD0_SIZE_KIB].copy_from_slice(&64u32.to_be_bytes());
        assert!(is_md0(&sb, 0x20000, 0x30000));
        assert!(!is_md0(&sb, 0x8000, 0x30000));
        assert!(!is_md0(&sb, 0x20000, 0x18000));
    }

    /// LVM2's own CRC: bitwise, seed 0xf597a6cf, no final inversion.
    fn lvm_crc(data: &[u8]) -> u32 {
        let mut crc = LVM2_CRC_SEED;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn lvm2_label_in_sector_one() {
        let mut head = [0u8; LVM2_AREA];
        let l = &mut head[512..1024];
        l[LVM2_ID].copy_from_slice(b"LABELONE");
        l[LVM2_SECTOR_XL].copy_from_slice(&1u64.to_le_bytes());
        l[LVM2_CRC_FROM..24].copy_from_slice(&32u32.to_le_bytes());
        l[LVM2_TYPE].copy_from_slice(b"LVM2 001");
        let crc = lvm_crc(&l[LVM2_CRC_FROM..]);
        l[LVM2_CRC].copy_from_slice(&crc.to_le_bytes());
        assert!(is_lvm2(&head));
        head[600] ^= 1;
        assert!(!is_lvm2(&head));
    }

    #[test]
    fn luks_headers() {
        let mut h = [0u8; LUKS_HEADER_LEN];
        h[LUKS_MAGIC].copy_from_slice(b"LUKS\xba\xbe");
        h[LUKS_VERSION].copy_from_slice(&1u16.to_be_bytes());
        assert!(is_luks(&h));
        h[LUKS_VERSION].copy_from_slice(&2u16.to_be_bytes());
        assert!(is_luks(&h));
        h[LUKS2_HDR_OFFSET].copy_from_slice(&0x4000u64.to_be_bytes());
        assert!(!is_luks(&h));
        assert!(!is_luks(&h[..600]));
    }

    #[test]
    fn bitlocker_magics() {
        let mut s = [0u8; 512];
        assert_eq!(bitlocker(&s), BitLocker::No);
        s[..11].copy_from_slice(BDE_MAGIC_VISTA);
        assert_eq!(bitlocker(&s), BitLocker::Yes);
        s[..11].copy_from_slice(BDE_MAGIC_WIN7);
        assert_eq!(bitlocker(&s), BitLocker::No);
        s[BDE_WIN7_FVE_OFFSET].copy_from_slice(&0x2000u64.to_le_bytes());
        assert_eq!(bitlocker(&s), BitLocker::CheckFve(0x2000));
        assert!(is_bitlocker_fve(b"-FVE-FS-\x00\x00\x02\x00"));
        assert!(!is_bitlocker_fve(b"-FVE-FS-"));
    }
}
