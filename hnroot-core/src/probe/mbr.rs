//! MBR ("dos") partition tables as libblkid's `partitions/dos.c` accepts them: the 0x55AA
//! signature, boot indicators of 0 or 0x80, no GPT protective entry, and not the boot sector
//! of a FAT (or exFAT, NTFS) filesystem. Primary partitions are numbered 1 to 4 by position;
//! logical partitions (5 and up) come from the chain of extended boot records, walked by
//! [`EbrWalker`] one sector at a time with a bound. Never reads a disk.

use core::fmt;
use core::ops::Range;

use super::bytes::Fields;
use super::pt::{Partition, PartitionKind};
use super::{vfat, ProbeStep, Read};
use crate::uuid::PartUuid;

/// Bytes of the sector holding an MBR or EBR.
pub const SECTOR_LEN: usize = 512;
/// Most extended boot records followed (libblkid stops after 100 without a data partition;
/// hnroot also stops after this many in all, and when a link does not move forward).
pub const MAX_EBRS: u32 = 128;

const MBR_DISK_ID: Range<usize> = 440..444;
const MBR_PT_OFFSET: usize = 446;
const MBR_ENTRY_LEN: usize = 16;
const MBR_PMAGIC: Range<usize> = 510..512;

const P_BOOT_IND: usize = 0;
const P_SYS_IND: usize = 4;
const P_START: Range<usize> = 8..12;
const P_SIZE: Range<usize> = 12..16;

/// AIX disks start with "IBMA" in EBCDIC.
const AIX_MAGIC: [u8; 4] = [0xc9, 0xc2, 0xd4, 0xc1];
const EXFAT_MAGIC: Range<usize> = 3..11;
const NTFS_MAGIC: Range<usize> = 3..11;

/// Partition type of a GPT protective entry.
pub const TYPE_GPT_PROTECTIVE: u8 = 0xee;
const TYPE_DOS_EXTENDED: u8 = 0x05;
const TYPE_W95_EXTENDED: u8 = 0x0f;
const TYPE_LINUX_EXTENDED: u8 = 0x85;

/// libblkid's limit on extended boot records in a row without a data partition.
const MAX_EBRS_WITHOUT_DATA: u32 = 100;

/// Why a sector is not an MBR partition table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MbrReject {
    /// Fewer than 512 bytes.
    TooShort,
    /// No 0x55AA at offset 510.
    Signature,
    /// An AIX disk.
    Aix,
    /// A boot indicator other than 0 or 0x80.
    BootIndicator {
        /// Entry (0-based).
        index: usize,
        /// Value found.
        found: u8,
    },
    /// A GPT protective entry: this is a GPT disk.
    Protective,
    /// The boot sector of a FAT filesystem (libblkid's `blkid_probe_is_vfat`).
    Fat,
    /// The boot sector of an exFAT filesystem.
    Exfat,
    /// The boot sector of an NTFS filesystem.
    Ntfs,
}

impl fmt::Display for MbrReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MbrReject::TooShort => f.write_str("MBR sector not fully read"),
            MbrReject::Signature => f.write_str("no 0x55AA signature"),
            MbrReject::Aix => f.write_str("an AIX disk"),
            MbrReject::BootIndicator { index, found } => {
                write!(
                    f,
                    "MBR entry {} has boot indicator {found:#04x}",
                    index.saturating_add(1)
                )
            }
            MbrReject::Protective => f.write_str("a GPT protective MBR"),
            MbrReject::Fat => f.write_str("a FAT boot sector"),
            MbrReject::Exfat => f.write_str("an exFAT boot sector"),
            MbrReject::Ntfs => f.write_str("an NTFS boot sector"),
        }
    }
}

/// One 16-byte partition entry, in 512-byte units as libblkid keeps them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MbrEntry {
    /// Boot indicator (0 or 0x80).
    pub boot_ind: u8,
    /// Partition type.
    pub sys_type: u8,
    /// Start, in 512-byte sectors (libblkid's 32-bit arithmetic).
    pub start: u32,
    /// Size, in 512-byte sectors.
    pub size: u32,
}

impl MbrEntry {
    fn is_extended(&self) -> bool {
        matches!(
            self.sys_type,
            TYPE_DOS_EXTENDED | TYPE_W95_EXTENDED | TYPE_LINUX_EXTENDED
        )
    }
}

fn entries(f: &Fields<'_>, ssf: u32) -> [MbrEntry; 4] {
    let mut out = [MbrEntry::default(); 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let at = MBR_PT_OFFSET.wrapping_add(i.wrapping_mul(MBR_ENTRY_LEN));
        let e = f.bytes(at..at.wrapping_add(MBR_ENTRY_LEN));
        let Some(e) = Fields::new(e, MBR_ENTRY_LEN) else {
            continue;
        };
        *slot = MbrEntry {
            boot_ind: e.u8(P_BOOT_IND),
            sys_type: e.u8(P_SYS_IND),
            start: e.le32(P_START).wrapping_mul(ssf),
            size: e.le32(P_SIZE).wrapping_mul(ssf),
        };
    }
    out
}

/// Whether sector 0 is a protective MBR as libblkid's GPT prober requires: 0x55AA and an
/// entry of type 0xEE.
pub fn is_protective(sector0: &[u8]) -> bool {
    let Some(f) = Fields::new(sector0, SECTOR_LEN) else {
        return false;
    };
    f.bytes(MBR_PMAGIC) == [0x55, 0xaa]
        && entries(&f, 1)
            .iter()
            .any(|e| e.sys_type == TYPE_GPT_PROTECTIVE)
}

/// A valid MBR partition table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MbrTable {
    /// The disk signature at offset 440 (`PTUUID`, and the first half of each `PARTUUID`).
    pub disk_id: u32,
    /// The four primary entries.
    pub primary: [MbrEntry; 4],
}

/// Check sector 0 as libblkid's `probe_dos_pt` does. `sector_size` is the device's logical
/// sector size (entries count in those).
pub fn parse(sector0: &[u8], sector_size: u32) -> Result<MbrTable, MbrReject> {
    let f = Fields::new(sector0, SECTOR_LEN).ok_or(MbrReject::TooShort)?;
    if f.bytes(MBR_PMAGIC) != [0x55, 0xaa] {
        return Err(MbrReject::Signature);
    }
    if f.bytes(0..4) == AIX_MAGIC {
        return Err(MbrReject::Aix);
    }
    let ssf = (sector_size / 512).max(1);
    let primary = entries(&f, ssf);
    for (index, e) in primary.iter().enumerate() {
        if e.boot_ind != 0 && e.boot_ind != 0x80 {
            return Err(MbrReject::BootIndicator {
                index,
                found: e.boot_ind,
            });
        }
    }
    if primary.iter().any(|e| e.sys_type == TYPE_GPT_PROTECTIVE) {
        return Err(MbrReject::Protective);
    }
    if vfat::parse_boot_sector(sector0).is_ok() {
        return Err(MbrReject::Fat);
    }
    if f.bytes(EXFAT_MAGIC) == b"EXFAT   " {
        return Err(MbrReject::Exfat);
    }
    if f.bytes(NTFS_MAGIC) == b"NTFS    " {
        return Err(MbrReject::Ntfs);
    }
    Ok(MbrTable {
        disk_id: f.le32(MBR_DISK_ID),
        primary,
    })
}

fn partuuid(disk_id: u32, number: u32) -> Option<PartUuid> {
    let partition = u8::try_from(number).ok()?;
    (disk_id != 0).then_some(PartUuid::Mbr {
        signature: disk_id,
        partition,
    })
}

fn partition(disk_id: u32, number: u32, e: &MbrEntry, start: u32, logical: bool) -> Partition {
    Partition {
        number,
        start: u64::from(start).wrapping_mul(512),
        size: u64::from(e.size).wrapping_mul(512),
        name: None,
        partuuid: partuuid(disk_id, number),
        kind: PartitionKind::Mbr {
            sys_type: e.sys_type,
            bootable: e.boot_ind == 0x80,
            logical,
        },
    }
}

impl MbrTable {
    /// `PTUUID`: the disk signature as 8 hex digits, unless it is 0.
    pub fn ptuuid(&self) -> Option<u32> {
        (self.disk_id != 0).then_some(self.disk_id)
    }

    /// The primary partitions with a size, numbered 1 to 4 by position (extended containers
    /// included, as libblkid lists them).
    pub fn primaries(&self) -> impl Iterator<Item = Partition> + '_ {
        self.primary
            .iter()
            .zip(1u32..)
            .filter(|(e, _)| e.size != 0)
            .map(|(e, n)| partition(self.disk_id, n, e, e.start, false))
    }

    /// A walker over the logical partitions, if a primary entry is an extended partition
    /// (libblkid follows each one; so does this, the first one only, which is what every
    /// partitioning tool writes).
    pub fn logical(&self) -> Option<EbrWalker> {
        let ext = self
            .primary
            .iter()
            .find(|e| e.size != 0 && e.is_extended())?;
        Some(EbrWalker {
            disk_id: self.disk_id,
            ex_start: ext.start,
            ex_size: ext.size,
            cur_start: ext.start,
            cur_size: ext.size,
            without_data: 0,
            ebrs: 0,
            next_number: 5,
            found: [None; 4],
            done: false,
        })
    }
}

/// Walks the chain of extended boot records: asks for one 512-byte sector at a time and
/// yields the logical partitions it describes. `Copy`, no references.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EbrWalker {
    disk_id: u32,
    ex_start: u32,
    ex_size: u32,
    cur_start: u32,
    cur_size: u32,
    without_data: u32,
    ebrs: u32,
    next_number: u32,
    /// Partitions of the last record not yet handed out: (absolute start, entry).
    found: [Option<(u32, MbrEntry)>; 4],
    done: bool,
}

impl EbrWalker {
    /// The next logical partition (`Done(Some)`), the end (`Done(None)`), or a sector to read
    /// first.
    pub fn step(&mut self) -> ProbeStep<Option<Partition>> {
        if let Some(slot) = self.found.iter_mut().find(|s| s.is_some()) {
            if let Some((start, e)) = slot.take() {
                let number = self.next_number;
                self.next_number = self.next_number.saturating_add(1);
                return ProbeStep::Done(Some(partition(self.disk_id, number, &e, start, true)));
            }
        }
        if self.done {
            return ProbeStep::Done(None);
        }
        ProbeStep::Read(Read {
            offset: u64::from(self.cur_start).wrapping_mul(512),
            len: SECTOR_LEN,
        })
    }

    /// Hand in the sector [`EbrWalker::step`] asked for.
    pub fn feed(&mut self, sector: &[u8]) {
        if self.done {
            return;
        }
        self.ebrs = self.ebrs.saturating_add(1);
        self.without_data = self.without_data.saturating_add(1);
        let f = match Fields::new(sector, SECTOR_LEN) {
            Some(f) if f.bytes(MBR_PMAGIC) == [0x55, 0xaa] => f,
            _ => {
                self.done = true;
                return;
            }
        };
        let list = entries(&f, 1);
        for (i, e) in list.iter().enumerate() {
            if e.size == 0 || e.is_extended() {
                continue;
            }
            let abs = self.cur_start.wrapping_add(e.start);
            if i >= 2
                && (e.start.wrapping_add(e.size) > self.cur_size
                    || abs < self.ex_start
                    || abs.wrapping_add(e.size) > self.ex_start.wrapping_add(self.ex_size))
            {
                continue;
            }
            if let Some(slot) = self.found.get_mut(i) {
                *slot = Some((abs, *e));
            }
            self.without_data = 0;
        }
        let next = list
            .iter()
            .find(|e| e.size != 0 && e.is_extended() && e.start != 0);
        match next {
            Some(link)
                if self.without_data <= MAX_EBRS_WITHOUT_DATA
                    && self.ebrs < MAX_EBRS
                    && self.ex_start.wrapping_add(link.start) > self.cur_start =>
            {
                self.cur_start = self.ex_start.wrapping_add(link.start);
                self.cur_size = link.size;
            }
            _ => self.done = true,
        }
    }
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn entry(boot: u8, sys: u8, start: u32, size: u32) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[P_BOOT_IND] = boot;
        e[P_SYS_IND] = sys;
        e[P_START].copy_from_slice(&start.to_le_bytes());
        e[P_SIZE].copy_from_slice(&size.to_le_bytes());
        e
    }

    fn sector(list: &[[u8; 16]]) -> [u8; 512] {
        let mut s = [0u8; 512];
        for (i, e) in list.iter().enumerate() {
            s[MBR_PT_OFFSET + 16 * i..MBR_PT_OFFSET + 16 * (i + 1)].copy_from_slice(e);
        }
        s[MBR_DISK_ID].copy_from_slice(&0x8f83_78c0u32.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    #[test]
    fn primaries_like_the_corpus() {
        // util-linux's dos+bsd image: #1 at 32 (7648 sectors), #2 at 7680 (8704).
        let s = sector(&[entry(0, 0x83, 32, 7648), entry(0x80, 0xa5, 7680, 8704)]);
        let t = parse(&s, 512).unwrap();
        let p: Vec<_> = t.primaries().collect();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[1].number, p[1].start, p[1].size),
            (2, 7680 * 512, 8704 * 512)
        );
        assert_eq!(std::format!("{}", p[0].partuuid.unwrap()), "8f8378c0-01");
        assert_eq!(t.logical(), None);
    }

    #[test]
    fn refusals() {
        let ok = sector(&[entry(0, 0x83, 2048, 2048)]);
        let mut s = ok;
        s[511] = 0;
        assert_eq!(parse(&s, 512), Err(MbrReject::Signature));
        let s = sector(&[entry(0x12, 0x83, 2048, 2048)]);
        assert_eq!(
            parse(&s, 512),
            Err(MbrReject::BootIndicator {
                index: 0,
                found: 0x12
            })
        );
        let s = sector(&[entry(0, 0xee, 1, 100)]);
        assert_eq!(parse(&s, 512), Err(MbrReject::Protective));
        assert!(is_protective(&s));
        assert!(!is_protective(&ok));
        let mut s = ok;
        s[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(parse(&s, 512), Err(MbrReject::Ntfs));
        assert_eq!(parse(&ok[..100], 512), Err(MbrReject::TooShort));
    }

    #[test]
    fn logical_chain() {
        // Extended partition at 1000 (size 5000): two logical partitions, then the end.
        let mbr = sector(&[entry(0, 0x83, 100, 800), entry(0, 0x05, 1000, 5000)]);
        let t = parse(&mbr, 512).unwrap();
        let mut w = t.logical().unwrap();
        let ebr1 = sector(&[entry(0, 0x83, 10, 990), entry(0, 0x05, 1000, 2000)]);
        let ebr2 = sector(&[entry(0, 0x83, 10, 1990)]);
        let mut got = Vec::new();
        let mut reads = Vec::new();
        for _ in 0..10 {
            match w.step() {
                ProbeStep::Read(r) => {
                    reads.push(r.offset / 512);
                    w.feed(if r.offset == 1000 * 512 { &ebr1 } else { &ebr2 });
                }
                ProbeStep::Done(Some(p)) => got.push((p.number, p.start / 512, p.size / 512)),
                ProbeStep::Done(None) => break,
            }
        }
        assert_eq!(reads, [1000, 2000]);
        assert_eq!(got, [(5, 1010, 990), (6, 2010, 1990)]);
    }

    #[test]
    fn a_looping_chain_ends() {
        let mbr = sector(&[entry(0, 0x05, 1000, 5000)]);
        let mut w = parse(&mbr, 512).unwrap().logical().unwrap();
        // Each record links back to itself.
        let ebr = sector(&[entry(0, 0x83, 10, 10), entry(0, 0x05, 0, 5000)]);
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 1000);
            match w.step() {
                ProbeStep::Read(_) => w.feed(&ebr),
                ProbeStep::Done(Some(_)) => {}
                ProbeStep::Done(None) => break,
            }
        }
    }
}
