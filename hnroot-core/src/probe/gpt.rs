//! GUID partition tables as libblkid's `partitions/gpt.c` accepts them: a protective MBR, a
//! header whose CRC32, own LBA and usable range check out, and an entry array whose CRC32
//! matches; the backup header at the last LBA when the primary is damaged. Partition names are
//! UTF-16LE, decoded to UTF-8 as libblkid does. Never reads a disk.

use core::fmt;
use core::ops::Range;

use super::bytes::{crc_of, Fields, CRC32, ZEROS};
use super::label::{Label, Trim};
use super::pt::{Partition, PartitionKind};
use crate::uuid::PartUuid;

/// Bytes of a header libblkid requires (the header may be longer, up to a sector).
pub const HEADER_MIN_LEN: u32 = 92;
/// Bytes of one partition entry (libblkid accepts no other size).
pub const ENTRY_LEN: usize = 128;
/// Largest entry array hnroot reads (8192 entries). libblkid allows up to 4 GiB; no tool
/// writes more than a few hundred entries.
pub const MAX_ENTRIES_BYTES: u32 = 1024 * 1024;
/// LBA of the primary header.
pub const PRIMARY_LBA: u64 = 1;

const H_SIGNATURE: Range<usize> = 0..8;
const H_HEADER_SIZE: Range<usize> = 12..16;
const H_HEADER_CRC: Range<usize> = 16..20;
const H_MY_LBA: Range<usize> = 24..32;
const H_FIRST_USABLE: Range<usize> = 40..48;
const H_LAST_USABLE: Range<usize> = 48..56;
const H_DISK_GUID: Range<usize> = 56..72;
const H_ENTRIES_LBA: Range<usize> = 72..80;
const H_NUM_ENTRIES: Range<usize> = 80..84;
const H_ENTRY_SIZE: Range<usize> = 84..88;
const H_ENTRIES_CRC: Range<usize> = 88..92;

const E_TYPE: Range<usize> = 0..16;
const E_UNIQUE: Range<usize> = 16..32;
const E_START: Range<usize> = 32..40;
const E_END: Range<usize> = 40..48;
const E_ATTRIBUTES: Range<usize> = 48..56;
const E_NAME: Range<usize> = 56..128;

const SIGNATURE: [u8; 8] = *b"EFI PART";

/// Why a sector is not a usable GPT header, or its entries are not usable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GptReject {
    /// Fewer bytes than a sector.
    TooShort,
    /// No `EFI PART`.
    Signature,
    /// Header size below 92 bytes or above the sector size.
    HeaderSize {
        /// Value found.
        found: u32,
    },
    /// Header CRC32 mismatch.
    HeaderCrc {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// The header does not say it is at the LBA it was read from.
    MyLba {
        /// Value found.
        found: u64,
        /// LBA it was read from.
        expected: u64,
    },
    /// First/last usable LBA out of order or beyond the device.
    UsableRange,
    /// The header lies inside the usable range.
    HeaderInsideUsable,
    /// No entries, or an entry size other than 128.
    EntriesUndefined,
    /// An entry array larger than [`MAX_ENTRIES_BYTES`].
    EntriesTooLarge {
        /// Bytes.
        bytes: u64,
    },
    /// The entry array lies (partly) beyond the device, or was not fully read.
    EntriesUnreadable,
    /// Entry array CRC32 mismatch.
    EntriesCrc {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
}

impl fmt::Display for GptReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptReject::TooShort => f.write_str("GPT header sector not fully read"),
            GptReject::Signature => f.write_str("no GPT signature 'EFI PART'"),
            GptReject::HeaderSize { found } => write!(f, "GPT header size {found}"),
            GptReject::HeaderCrc { stored, computed } => write!(
                f,
                "GPT header CRC32 mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            GptReject::MyLba { found, expected } => {
                write!(
                    f,
                    "GPT header says it is at LBA {found}, read from LBA {expected}"
                )
            }
            GptReject::UsableRange => f.write_str("GPT usable LBA range invalid"),
            GptReject::HeaderInsideUsable => f.write_str("GPT header inside the usable range"),
            GptReject::EntriesUndefined => f.write_str("GPT entry array undefined"),
            GptReject::EntriesTooLarge { bytes } => write!(
                f,
                "GPT entry array of {bytes} bytes (hnroot reads at most {MAX_ENTRIES_BYTES})"
            ),
            GptReject::EntriesUnreadable => f.write_str("GPT entry array beyond the device"),
            GptReject::EntriesCrc { stored, computed } => write!(
                f,
                "GPT entry array CRC32 mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
        }
    }
}

/// A GPT header that passed libblkid's checks (before its entry array is checked).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GptHeader {
    /// LBA the header was read from (1, or the last LBA for the backup).
    pub lba: u64,
    /// Logical sector size the LBAs are in.
    pub sector_size: u32,
    /// First LBA partitions may use.
    pub first_usable: u64,
    /// Last LBA partitions may use.
    pub last_usable: u64,
    /// The disk GUID (`PTUUID`), in textual byte order.
    pub disk_guid: [u8; 16],
    /// Byte offset of the entry array.
    pub entries_offset: u64,
    /// Bytes of the entry array.
    pub entries_len: u32,
    /// CRC32 the entry array must have.
    pub entries_crc: u32,
}

/// On disk a GUID's first three fields are little endian; blkid prints them big endian.
pub fn guid_from_disk(raw: [u8; 16]) -> [u8; 16] {
    let [a0, a1, a2, a3, b0, b1, c0, c1, rest @ ..] = raw;
    let [d0, d1, d2, d3, d4, d5, d6, d7] = rest;
    [
        a3, a2, a1, a0, b1, b0, c1, c0, d0, d1, d2, d3, d4, d5, d6, d7,
    ]
}

/// Check the header in `sector` (one logical sector read from `lba`) on a device whose last
/// LBA is `last_lba`, as libblkid's `get_gpt_header` does (entry array aside).
pub fn parse_header(
    sector: &[u8],
    lba: u64,
    last_lba: u64,
    sector_size: u32,
) -> Result<GptHeader, GptReject> {
    let ssz = sector_size as usize;
    let f = Fields::new(sector, ssz.max(HEADER_MIN_LEN as usize)).ok_or(GptReject::TooShort)?;
    if f.array::<8>(H_SIGNATURE) != SIGNATURE {
        return Err(GptReject::Signature);
    }
    let hsz = f.le32(H_HEADER_SIZE);
    if hsz > sector_size || hsz < HEADER_MIN_LEN {
        return Err(GptReject::HeaderSize { found: hsz });
    }
    let stored = f.le32(H_HEADER_CRC);
    let computed = crc_of(
        &CRC32,
        &[
            f.bytes(0..H_HEADER_CRC.start),
            ZEROS.get(..H_HEADER_CRC.len()).unwrap_or(&[]),
            f.bytes(H_HEADER_CRC.end..hsz as usize),
        ],
    );
    if stored != computed {
        return Err(GptReject::HeaderCrc { stored, computed });
    }
    let my_lba = f.le64(H_MY_LBA);
    if my_lba != lba {
        return Err(GptReject::MyLba {
            found: my_lba,
            expected: lba,
        });
    }
    let first_usable = f.le64(H_FIRST_USABLE);
    let last_usable = f.le64(H_LAST_USABLE);
    if last_usable < first_usable || first_usable > last_lba || last_usable > last_lba {
        return Err(GptReject::UsableRange);
    }
    if first_usable < lba && lba < last_usable {
        return Err(GptReject::HeaderInsideUsable);
    }
    let entry_size = f.le32(H_ENTRY_SIZE);
    let bytes = u64::from(f.le32(H_NUM_ENTRIES)).wrapping_mul(u64::from(entry_size));
    if bytes == 0 || bytes >= u64::from(u32::MAX) || entry_size as usize != ENTRY_LEN {
        return Err(GptReject::EntriesUndefined);
    }
    if bytes > u64::from(MAX_ENTRIES_BYTES) {
        return Err(GptReject::EntriesTooLarge { bytes });
    }
    let entries_offset = f
        .le64(H_ENTRIES_LBA)
        .checked_mul(u64::from(sector_size))
        .ok_or(GptReject::EntriesUnreadable)?;
    Ok(GptHeader {
        lba,
        sector_size,
        first_usable,
        last_usable,
        disk_guid: guid_from_disk(f.array(H_DISK_GUID)),
        entries_offset,
        // Bounded by MAX_ENTRIES_BYTES above.
        entries_len: bytes as u32,
        entries_crc: f.le32(H_ENTRIES_CRC),
    })
}

/// A GPT whose header and entry array passed libblkid's checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GptTable {
    /// The header in force (primary, or backup when the primary is damaged).
    pub header: GptHeader,
}

impl GptTable {
    /// Whether the backup header was used because the primary one is damaged.
    pub fn from_backup(&self) -> bool {
        self.header.lba != PRIMARY_LBA
    }

    /// The disk GUID as blkid's `PTUUID`.
    pub fn disk_guid(&self) -> PartUuid {
        PartUuid::Gpt(self.header.disk_guid)
    }

    /// Where the entry array is: read these bytes and pass them to
    /// [`GptTable::partitions`].
    pub fn entries(&self) -> (u64, usize) {
        (self.header.entries_offset, self.header.entries_len as usize)
    }

    /// The partitions, from the entry array read by the caller (checked against its CRC32
    /// again, so bytes read from a changed disk are not trusted).
    pub fn partitions<'a>(&self, entries: &'a [u8]) -> Result<GptPartitions<'a>, GptReject> {
        let entries = entries
            .get(..self.header.entries_len as usize)
            .ok_or(GptReject::EntriesUnreadable)?;
        let computed = CRC32.checksum(entries);
        if computed != self.header.entries_crc {
            return Err(GptReject::EntriesCrc {
                stored: self.header.entries_crc,
                computed,
            });
        }
        Ok(GptPartitions {
            entries: entries.chunks_exact(ENTRY_LEN),
            index: 0,
            header: self.header,
        })
    }
}

/// The used entries of a GPT, in entry order (numbered from 1 by position, as the kernel
/// and libblkid do). Unused entries and entries outside the usable range are skipped.
#[derive(Clone, Debug)]
pub struct GptPartitions<'a> {
    entries: core::slice::ChunksExact<'a, u8>,
    index: u32,
    header: GptHeader,
}

impl Iterator for GptPartitions<'_> {
    type Item = Partition;

    fn next(&mut self) -> Option<Partition> {
        for entry in self.entries.by_ref() {
            self.index = self.index.saturating_add(1);
            let Some(e) = Fields::new(entry, ENTRY_LEN) else {
                continue;
            };
            let type_guid: [u8; 16] = e.array(E_TYPE);
            if type_guid == [0; 16] {
                continue;
            }
            let start = e.le64(E_START);
            // libblkid's unsigned arithmetic: an end before the start wraps to a huge size.
            let size = e.le64(E_END).wrapping_sub(start).wrapping_add(1);
            let last = start.wrapping_add(size).wrapping_sub(1);
            if start < self.header.first_usable || last > self.header.last_usable {
                continue;
            }
            let ssz = u64::from(self.header.sector_size);
            return Some(Partition {
                number: self.index,
                start: start.wrapping_mul(ssz),
                size: size.wrapping_mul(ssz),
                name: decode_name(e.bytes(E_NAME)),
                partuuid: Some(PartUuid::Gpt(guid_from_disk(e.array(E_UNIQUE)))),
                kind: PartitionKind::Gpt {
                    type_guid: guid_from_disk(type_guid),
                    attributes: e.le64(E_ATTRIBUTES),
                },
            });
        }
        None
    }
}

/// A partition name: UTF-16LE up to the first NUL, as UTF-8 the way libblkid's
/// `ul_encode_to_utf8` writes it (surrogate pairs combined; a lone surrogate is encoded as is,
/// which is not valid UTF-8), trailing white space removed.
pub fn decode_name(raw: &[u8]) -> Option<Label> {
    /// libblkid's buffer for the name (`par->name`).
    const OUT: usize = 128;
    let mut out = [0u8; OUT];
    let mut j = 0usize;
    let mut units = raw
        .chunks_exact(2)
        .map(|u| {
            u16::from_le_bytes([
                u.first().copied().unwrap_or(0),
                u.get(1).copied().unwrap_or(0),
            ])
        })
        .peekable();
    while let Some(unit) = units.next() {
        let mut c = u32::from(unit);
        if (0xd800..=0xdbff).contains(&c) {
            if let Some(&low) = units.peek() {
                if (0xdc00..=0xdfff).contains(&low) {
                    c = 0x10000u32
                        .wrapping_add(c.wrapping_sub(0xd800) << 10)
                        .wrapping_add(u32::from(low).wrapping_sub(0xdc00));
                    units.next();
                }
            }
        }
        if c == 0 {
            break;
        }
        let mut buf = [0u8; 4];
        let n = encode_utf8_raw(c, &mut buf);
        // libblkid stops when the next character does not fit (keeping room for a NUL).
        if j.saturating_add(n) >= OUT {
            break;
        }
        for (k, b) in buf.iter().take(n).enumerate() {
            if let Some(slot) = out.get_mut(j.wrapping_add(k)) {
                *slot = *b;
            }
        }
        j = j.saturating_add(n);
    }
    Label::from_field(out.get(..j).unwrap_or(&[]), Trim::Right)
}

/// UTF-8 encoding of any value below 0x110000, surrogates included.
fn encode_utf8_raw(c: u32, buf: &mut [u8; 4]) -> usize {
    // Each `as u8` keeps the low bits on purpose.
    if c < 0x80 {
        buf[0] = c as u8;
        1
    } else if c < 0x800 {
        buf[0] = 0xc0 | (c >> 6) as u8;
        buf[1] = 0x80 | (c & 0x3f) as u8;
        2
    } else if c < 0x10000 {
        buf[0] = 0xe0 | (c >> 12) as u8;
        buf[1] = 0x80 | ((c >> 6) & 0x3f) as u8;
        buf[2] = 0x80 | (c & 0x3f) as u8;
        3
    } else {
        buf[0] = 0xf0 | ((c >> 18) & 0x07) as u8;
        buf[1] = 0x80 | ((c >> 12) & 0x3f) as u8;
        buf[2] = 0x80 | ((c >> 6) & 0x3f) as u8;
        buf[3] = 0x80 | (c & 0x3f) as u8;
        4
    }
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    pub(crate) fn utf16(s: &str) -> [u8; 72] {
        let mut out = [0u8; 72];
        for (i, u) in s.encode_utf16().enumerate() {
            out[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        out
    }

    /// A 4 MiB disk as `sgdisk -n 1:2048:4095 -c 1:hostpart` makes it: (image, last LBA).
    pub(crate) fn disk() -> Vec<u8> {
        let ssz = 512usize;
        let size = 4 << 20;
        let last = (size / ssz - 1) as u64;
        let mut img = vec![0u8; size];
        // Protective MBR.
        img[446 + 4] = 0xee;
        img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        img[446 + 12..446 + 16].copy_from_slice(&(last as u32).to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xaa;
        let mut entries = vec![0u8; 128 * ENTRY_LEN];
        let e = &mut entries[..ENTRY_LEN];
        e[E_TYPE].copy_from_slice(&[
            0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
            0x7d, 0xe4,
        ]);
        e[E_UNIQUE].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        e[E_START].copy_from_slice(&2048u64.to_le_bytes());
        e[E_END].copy_from_slice(&4095u64.to_le_bytes());
        e[E_NAME].copy_from_slice(&utf16("hostpart"));
        let ecrc = CRC32.checksum(&entries);
        img[2 * ssz..34 * ssz].copy_from_slice(&entries);
        let backup_entries_lba = last - 32;
        let b = backup_entries_lba as usize * ssz;
        img[b..b + entries.len()].copy_from_slice(&entries);
        for (lba, alt, elba) in [(1u64, last, 2u64), (last, 1, backup_entries_lba)] {
            let mut h = [0u8; 92];
            h[H_SIGNATURE].copy_from_slice(&SIGNATURE);
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            h[H_HEADER_SIZE].copy_from_slice(&92u32.to_le_bytes());
            h[H_MY_LBA].copy_from_slice(&lba.to_le_bytes());
            h[32..40].copy_from_slice(&alt.to_le_bytes());
            h[H_FIRST_USABLE].copy_from_slice(&34u64.to_le_bytes());
            h[H_LAST_USABLE].copy_from_slice(&(last - 33).to_le_bytes());
            h[H_DISK_GUID].copy_from_slice(&[0x11; 16]);
            h[H_ENTRIES_LBA].copy_from_slice(&elba.to_le_bytes());
            h[H_NUM_ENTRIES].copy_from_slice(&128u32.to_le_bytes());
            h[H_ENTRY_SIZE].copy_from_slice(&128u32.to_le_bytes());
            h[H_ENTRIES_CRC].copy_from_slice(&ecrc.to_le_bytes());
            let crc = CRC32.checksum(&h);
            h[H_HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
            let at = lba as usize * ssz;
            img[at..at + 92].copy_from_slice(&h);
        }
        img
    }

    #[test]
    fn header_and_partitions() {
        let img = disk();
        let last = (img.len() / 512 - 1) as u64;
        let h = parse_header(&img[512..1024], 1, last, 512).unwrap();
        assert_eq!(h.entries_offset, 1024);
        let t = GptTable { header: h };
        let parts: Vec<_> = t.partitions(&img[1024..1024 + 16384]).unwrap().collect();
        assert_eq!(parts.len(), 1);
        let p = &parts[0];
        assert_eq!((p.number, p.start, p.size), (1, 2048 * 512, 2048 * 512));
        assert_eq!(p.name.as_ref().unwrap().as_bytes(), b"hostpart");
        assert_eq!(
            std::format!("{}", p.partuuid.unwrap()),
            "04030201-0605-0807-090a-0b0c0d0e0f10"
        );
        let PartitionKind::Gpt { type_guid, .. } = p.kind else {
            panic!("not GPT")
        };
        assert_eq!(
            std::format!("{}", PartUuid::Gpt(type_guid)),
            "0fc63daf-8483-4772-8e79-3d69d8477de4"
        );
    }

    #[test]
    fn header_checks() {
        let img = disk();
        let last = (img.len() / 512 - 1) as u64;
        let sector = &img[512..1024];
        assert_eq!(
            parse_header(sector, 2, last, 512),
            Err(GptReject::MyLba {
                found: 1,
                expected: 2
            })
        );
        let mut bad = sector.to_vec();
        bad[H_FIRST_USABLE.start] ^= 1;
        assert!(matches!(
            parse_header(&bad, 1, last, 512),
            Err(GptReject::HeaderCrc { .. })
        ));
        assert_eq!(
            parse_header(&sector[..100], 1, last, 512),
            Err(GptReject::TooShort)
        );
        assert_eq!(
            parse_header(&[0u8; 512], 1, last, 512),
            Err(GptReject::Signature)
        );
        assert_eq!(
            parse_header(sector, 1, last - 40, 512),
            Err(GptReject::UsableRange)
        );
    }

    #[test]
    fn entries_crc_is_checked_again() {
        let img = disk();
        let last = (img.len() / 512 - 1) as u64;
        let t = GptTable {
            header: parse_header(&img[512..1024], 1, last, 512).unwrap(),
        };
        let mut entries = img[1024..1024 + 16384].to_vec();
        entries[56] = b'H';
        assert!(matches!(
            t.partitions(&entries),
            Err(GptReject::EntriesCrc { .. })
        ));
        assert_eq!(
            t.partitions(&entries[..100]).err(),
            Some(GptReject::EntriesUnreadable)
        );
    }

    #[test]
    fn names_like_libblkid() {
        assert_eq!(
            decode_name(&utf16("EFI system")).unwrap().as_bytes(),
            b"EFI system"
        );
        assert_eq!(
            decode_name(&utf16("hôst ✓ 😀")).unwrap().as_str(),
            Some("hôst ✓ 😀")
        );
        assert_eq!(
            decode_name(&utf16("trailing   ")).unwrap().as_bytes(),
            b"trailing"
        );
        assert_eq!(decode_name(&utf16("")), None);
        // A lone surrogate is encoded as three bytes, like libblkid does.
        let mut raw = [0u8; 72];
        raw[0..2].copy_from_slice(&0xd800u16.to_le_bytes());
        raw[2..4].copy_from_slice(&(b'a' as u16).to_le_bytes());
        assert_eq!(
            decode_name(&raw).unwrap().as_bytes(),
            &[0xed, 0xa0, 0x80, b'a']
        );
    }
}
