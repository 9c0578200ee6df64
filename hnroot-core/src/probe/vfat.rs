//! FAT12/16/32 as libblkid's `superblocks/vfat.c` sees it: the boot sector's validity checks,
//! the volume label from the root directory (`LABEL`), the boot sector's label
//! (`LABEL_FATBOOT`, unless it is `NO NAME`), the volume serial number (`UUID`), and for FAT32
//! the FSINFO signatures and the root directory's cluster chain (at most 99 clusters, as
//! libblkid). Never reads a disk: [`FatWalk`] asks for the directory bytes it needs.

use core::fmt;
use core::ops::Range;

use super::bytes::{is_power_of_two, Fields};
use super::label::{Label, Trim};
use super::{Read, MAX_READ};
use crate::uuid::FsUuid;

/// Bytes of the boot sector the checks need.
pub const BOOT_SECTOR_LEN: usize = 512;
/// Bytes of the FAT32 FSINFO structure.
pub const FSINFO_LEN: usize = 512;
/// Bytes of one directory entry.
pub const DIR_ENTRY_LEN: usize = 32;
/// libblkid's `maxloop`: clusters of a FAT32 root directory searched for the label, plus one.
pub const MAX_ROOT_CLUSTERS: u8 = 100;
/// Devices up to this size are "tiny" (floppies) for libblkid: root directory entries are read
/// one by one, so a directory cut short by the end of the device is still searched.
pub const TINY_DEVICE_SIZE: u64 = 1440 * 1024;

// The BIOS parameter block, shared by all FAT variants.
const BPB_SECTOR_SIZE: Range<usize> = 0x0b..0x0d;
const BPB_CLUSTER_SIZE: usize = 0x0d;
const BPB_RESERVED: Range<usize> = 0x0e..0x10;
const BPB_FATS: usize = 0x10;
const BPB_DIR_ENTRIES: Range<usize> = 0x11..0x13;
const BPB_SECTORS: Range<usize> = 0x13..0x15;
const BPB_MEDIA: usize = 0x15;
const BPB_FAT_LENGTH: Range<usize> = 0x16..0x18;
const BPB_TOTAL_SECT: Range<usize> = 0x20..0x24;
// FAT12/16 extended BPB.
const MS_EXT_BOOT_SIGN: usize = 0x26;
const MS_SERNO: Range<usize> = 0x27..0x2b;
const MS_LABEL: Range<usize> = 0x2b..0x36;
const MS_MAGIC: Range<usize> = 0x36..0x3e;
// FAT32 extended BPB.
const VS_FAT32_LENGTH: Range<usize> = 0x24..0x28;
const VS_ROOT_CLUSTER: Range<usize> = 0x2c..0x30;
const VS_FSINFO_SECTOR: Range<usize> = 0x30..0x32;
const VS_EXT_BOOT_SIGN: usize = 0x42;
const VS_SERNO: Range<usize> = 0x43..0x47;
const VS_LABEL: Range<usize> = 0x47..0x52;
const VS_MAGIC: Range<usize> = 0x52..0x5a;
const PMAGIC: Range<usize> = 0x1fe..0x200;

// FSINFO.
const FSINFO_SIGNATURE1: Range<usize> = 0..4;
const FSINFO_SIGNATURE2: Range<usize> = 484..488;

// Directory entries.
const DIR_NAME: Range<usize> = 0..11;
const DIR_ATTR: usize = 11;
const DIR_CLUSTER_HIGH: Range<usize> = 20..22;
const DIR_CLUSTER_LOW: Range<usize> = 26..28;

const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
const ATTR_MASK: u8 = 0x3f;
const ENTRY_FREE: u8 = 0xe5;
/// A first name byte of 0x05 stands for 0xE5 (a real 0xE5 marks a free entry).
const ENTRY_KANJI_E5: u8 = 0x05;

const FAT12_MAX: u32 = 0xff4;
const FAT16_MAX: u32 = 0xfff4;
const FAT32_MAX: u32 = 0x0fff_fff6;
const FAT32_ENTRY_MASK: u32 = 0x0fff_ffff;

const EXT_BOOT_SIGN_OLD: u8 = 0x28;
const EXT_BOOT_SIGN: u8 = 0x29;

/// The label mkfs and Windows write when there is none.
pub const NO_NAME: [u8; 11] = *b"NO NAME    ";

/// The magics libblkid's vfat prober looks for, in its order: (offset, bytes).
const MAGICS: [(usize, &[u8]); 9] = [
    (VS_MAGIC.start, b"MSWIN"),
    (VS_MAGIC.start, b"FAT32   "),
    (MS_MAGIC.start, b"MSDOS"),
    (MS_MAGIC.start, b"FAT16   "),
    (MS_MAGIC.start, b"FAT12   "),
    (MS_MAGIC.start, b"FAT     "),
    (0, &[0xeb]),
    (0, &[0xe9]),
    (PMAGIC.start, &[0x55, 0xaa]),
];

/// Why a boot sector is not FAT.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FatReject {
    /// Fewer than [`BOOT_SECTOR_LEN`] bytes.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// None of the FAT magics (`MSWIN`, `FAT32   `, ..., a jump instruction, 0x55AA).
    Magic,
    /// Recognised only by a jump instruction or 0x55AA, and 0x55AA is missing.
    BootSignature,
    /// A JFS or HPFS pseudo boot sector (OS/2 puts one in front of those).
    JfsOrHpfs,
    /// No FAT copies.
    NoFats,
    /// No reserved sectors.
    NoReservedSectors,
    /// Media descriptor neither 0xF0 nor 0xF8..=0xFF.
    Media {
        /// Value found.
        found: u8,
    },
    /// Sectors per cluster not a power of two.
    ClusterSize {
        /// Value found.
        found: u8,
    },
    /// Bytes per sector not a power of two between 512 and 4096.
    SectorSize {
        /// Value found.
        found: u16,
    },
    /// More clusters than the FAT type allows.
    TooManyClusters {
        /// Clusters computed.
        count: u32,
        /// Most allowed.
        max: u32,
    },
    /// The FAT32 FSINFO sector lies beyond the device.
    FsInfoUnreadable,
    /// The FAT32 FSINFO sector has neither valid signatures nor zeros.
    FsInfoSignature,
}

impl fmt::Display for FatReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatReject::TooShort { len } => {
                write!(
                    f,
                    "FAT boot sector needs {BOOT_SECTOR_LEN} bytes, got {len}"
                )
            }
            FatReject::Magic => f.write_str("no FAT magic"),
            FatReject::BootSignature => f.write_str("no 0x55AA boot signature"),
            FatReject::JfsOrHpfs => f.write_str("a JFS/HPFS pseudo boot sector"),
            FatReject::NoFats => f.write_str("FAT boot sector with no FATs"),
            FatReject::NoReservedSectors => f.write_str("FAT boot sector with no reserved sectors"),
            FatReject::Media { found } => write!(f, "FAT media descriptor {found:#04x}"),
            FatReject::ClusterSize { found } => write!(f, "FAT sectors per cluster {found}"),
            FatReject::SectorSize { found } => write!(f, "FAT bytes per sector {found}"),
            FatReject::TooManyClusters { count, max } => {
                write!(f, "FAT with {count} clusters, at most {max} allowed")
            }
            FatReject::FsInfoUnreadable => f.write_str("FAT32 FSINFO sector beyond the device"),
            FatReject::FsInfoSignature => f.write_str("FAT32 FSINFO signature invalid"),
        }
    }
}

/// Where the root directory is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FatLayout {
    /// FAT12/16: a fixed root directory after the FATs.
    Fat12Or16 {
        /// Byte offset of the root directory (libblkid's 32-bit arithmetic).
        root_start: u64,
        /// Its entries.
        root_entries: u32,
    },
    /// FAT32: the root directory is a cluster chain.
    Fat32 {
        /// First cluster of the root directory.
        root_cluster: u32,
        /// Cluster numbers below this are followed (entries in one FAT).
        fat_entries: u32,
        /// First sector of the data area.
        data_start_sector: u32,
        /// Sector of the FSINFO structure, 0 for none.
        fsinfo_sector: u16,
    },
    /// Neither a 16-bit nor a 32-bit FAT length: valid, but libblkid reads no label or UUID.
    Neither,
}

/// A boot sector that passed libblkid's checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BootSector {
    /// Bytes per sector.
    pub sector_size: u32,
    /// Sectors per cluster.
    pub cluster_sectors: u32,
    /// Reserved sectors before the first FAT.
    pub reserved_sectors: u32,
    /// Sectors of the filesystem (`BPB_TotSec16`, or `BPB_TotSec32` when that is 0).
    pub total_sectors: u32,
    /// Where the root directory is.
    pub layout: FatLayout,
    /// The boot sector's label field, when the extended boot signature says it is there.
    pub boot_label: Option<[u8; 11]>,
    /// The volume serial number as stored (little endian), when present.
    pub serial: Option<[u8; 4]>,
}

/// Check a boot sector as libblkid's `fat_valid_superblock` does (BitLocker aside: see
/// [`super::other`]).
pub fn parse_boot_sector(bs: &[u8]) -> Result<BootSector, FatReject> {
    let f = Fields::new(bs, BOOT_SECTOR_LEN).ok_or(FatReject::TooShort { len: bs.len() })?;
    check_magic(&f)?;
    let g = geometry(&f)?;
    let (layout, boot_label, serial) = layout_of(&f, &g);
    Ok(BootSector {
        sector_size: g.sector_size,
        cluster_sectors: g.cluster_sectors,
        reserved_sectors: g.reserved,
        total_sectors: g.sect_count,
        layout,
        boot_label,
        serial,
    })
}

/// One of the FAT magics, and with a short one the boot signature and not JFS or HPFS.
fn check_magic(f: &Fields<'_>) -> Result<(), FatReject> {
    let magic_len = MAGICS
        .iter()
        .find(|(at, magic)| f.bytes(*at..at.saturating_add(magic.len())) == *magic)
        .map(|(_, magic)| magic.len())
        .ok_or(FatReject::Magic)?;
    if magic_len <= 2 {
        if f.bytes(PMAGIC) != [0x55, 0xaa] {
            return Err(FatReject::BootSignature);
        }
        let ms_magic = f.bytes(MS_MAGIC);
        if ms_magic == b"JFS     " || ms_magic == b"HPFS    " {
            return Err(FatReject::JfsOrHpfs);
        }
    }
    Ok(())
}

/// The BPB's numbers libblkid checks and computes with.
struct Geometry {
    reserved: u32,
    sector_size: u32,
    cluster_sectors: u32,
    dir_entries: u32,
    sect_count: u32,
    fat16_length: u32,
    fat32_length: u32,
    fat_size: u32,
}

/// The BPB checked as libblkid checks it, in its order, and the cluster count bounded.
fn geometry(f: &Fields<'_>) -> Result<Geometry, FatReject> {
    let fats = u32::from(f.u8(BPB_FATS));
    if fats == 0 {
        return Err(FatReject::NoFats);
    }
    let reserved = u32::from(f.le16(BPB_RESERVED));
    if reserved == 0 {
        return Err(FatReject::NoReservedSectors);
    }
    let media = f.u8(BPB_MEDIA);
    if !(media >= 0xf8 || media == 0xf0) {
        return Err(FatReject::Media { found: media });
    }
    let cluster_size = f.u8(BPB_CLUSTER_SIZE);
    if !is_power_of_two(u32::from(cluster_size)) {
        return Err(FatReject::ClusterSize {
            found: cluster_size,
        });
    }
    let sector_size_16 = f.le16(BPB_SECTOR_SIZE);
    let sector_size = u32::from(sector_size_16);
    if !is_power_of_two(sector_size) || !(512..=4096).contains(&sector_size) {
        return Err(FatReject::SectorSize {
            found: sector_size_16,
        });
    }
    let cluster_sectors = u32::from(cluster_size);
    let dir_entries = u32::from(f.le16(BPB_DIR_ENTRIES));
    let mut sect_count = u32::from(f.le16(BPB_SECTORS));
    if sect_count == 0 {
        sect_count = f.le32(BPB_TOTAL_SECT);
    }
    let fat16_length = u32::from(f.le16(BPB_FAT_LENGTH));
    let fat32_length = f.le32(VS_FAT32_LENGTH);
    let fat_length = if fat16_length == 0 {
        fat32_length
    } else {
        fat16_length
    };
    // libblkid computes these in unsigned 32-bit arithmetic; so do we, wrapping included.
    let fat_size = fat_length.wrapping_mul(fats);
    // At most 65535 * 32 + 4095: no overflow.
    let dir_size = dir_entries
        .wrapping_mul(DIR_ENTRY_LEN as u32)
        .div_ceil(sector_size);
    let count = sect_count
        .wrapping_sub(reserved.wrapping_add(fat_size).wrapping_add(dir_size))
        .checked_div(cluster_sectors)
        .unwrap_or(0);
    let max = if fat16_length == 0 && fat32_length != 0 {
        FAT32_MAX
    } else if count > FAT12_MAX {
        FAT16_MAX
    } else {
        FAT12_MAX
    };
    if count > max {
        return Err(FatReject::TooManyClusters { count, max });
    }
    Ok(Geometry {
        reserved,
        sector_size,
        cluster_sectors,
        dir_entries,
        sect_count,
        fat16_length,
        fat32_length,
        fat_size,
    })
}

/// FAT12/16 or FAT32, with the boot sector's label and serial where its extended boot
/// signature says they are.
#[allow(clippy::type_complexity)]
fn layout_of(f: &Fields<'_>, g: &Geometry) -> (FatLayout, Option<[u8; 11]>, Option<[u8; 4]>) {
    if g.fat16_length != 0 {
        let sign = f.u8(MS_EXT_BOOT_SIGN);
        let root_start = g
            .reserved
            .wrapping_add(g.fat_size)
            .wrapping_mul(g.sector_size);
        (
            FatLayout::Fat12Or16 {
                root_start: u64::from(root_start),
                root_entries: g.dir_entries,
            },
            (sign == EXT_BOOT_SIGN).then(|| f.array(MS_LABEL)),
            matches!(sign, EXT_BOOT_SIGN | EXT_BOOT_SIGN_OLD).then(|| f.array(MS_SERNO)),
        )
    } else if g.fat32_length != 0 {
        let fat_entries = u64::from(g.fat32_length).wrapping_mul(u64::from(g.sector_size)) >> 2;
        (
            FatLayout::Fat32 {
                root_cluster: f.le32(VS_ROOT_CLUSTER),
                // libblkid keeps this in 32 bits.
                fat_entries: fat_entries as u32,
                data_start_sector: g.reserved.wrapping_add(g.fat_size),
                fsinfo_sector: f.le16(VS_FSINFO_SECTOR),
            },
            (f.u8(VS_EXT_BOOT_SIGN) == EXT_BOOT_SIGN).then(|| f.array(VS_LABEL)),
            Some(f.array(VS_SERNO)),
        )
    } else {
        (FatLayout::Neither, None, None)
    }
}

/// libblkid's FSINFO check: both signatures valid or zero.
pub fn check_fsinfo(fsinfo: &[u8]) -> Result<(), FatReject> {
    let f = Fields::new(fsinfo, FSINFO_LEN).ok_or(FatReject::FsInfoUnreadable)?;
    let sig1 = f.bytes(FSINFO_SIGNATURE1);
    let sig2 = f.bytes(FSINFO_SIGNATURE2);
    let sig1_ok = sig1 == b"RRaA" || sig1 == b"RRdA" || sig1 == [0; 4];
    let sig2_ok = sig2 == b"rrAa" || sig2 == [0; 4];
    if sig1_ok && sig2_ok {
        Ok(())
    } else {
        Err(FatReject::FsInfoSignature)
    }
}

/// What a run of directory entries says about the volume label.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DirScan {
    /// The volume label entry's name (0x05 already turned back into 0xE5).
    Label([u8; 11]),
    /// An entry starting with 0: the directory ends here.
    End,
    /// Neither: look further.
    More,
}

/// Search complete 32-byte entries of `entries` for the volume label, as libblkid's
/// `search_fat_label`: skip free entries, entries with a cluster and long-name entries; the
/// first entry with the volume-ID attribute (and not the directory attribute) is the label.
pub fn scan_dir(entries: &[u8]) -> DirScan {
    for entry in entries.chunks_exact(DIR_ENTRY_LEN) {
        let Some(e) = Fields::new(entry, DIR_ENTRY_LEN) else {
            break;
        };
        let mut name: [u8; 11] = e.array(DIR_NAME);
        let attr = e.u8(DIR_ATTR);
        match name[0] {
            0 => return DirScan::End,
            ENTRY_FREE => continue,
            _ => {}
        }
        if e.le16(DIR_CLUSTER_HIGH) != 0
            || e.le16(DIR_CLUSTER_LOW) != 0
            || attr & ATTR_MASK == ATTR_LONG_NAME
        {
            continue;
        }
        if attr & (ATTR_VOLUME_ID | ATTR_DIR) == ATTR_VOLUME_ID {
            if name[0] == ENTRY_KANJI_E5 {
                name[0] = ENTRY_FREE;
            }
            return DirScan::Label(name);
        }
    }
    DirScan::More
}

/// What [`FatWalk`] is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Check the FAT32 FSINFO sector at this offset.
    FsInfo(u64),
    /// Search the directory bytes `pos..end` for the label.
    Dir { pos: u64, end: u64 },
    /// Read the FAT entry of `cluster` at this offset (FAT32).
    FatEntry(u64),
    /// Finished; `label` holds what was found.
    Done,
    /// Not FAT after all.
    Rejected(FatReject),
}

/// Bytes of the directory region `pos..end` to read next.
fn dir_chunk(pos: u64, end: u64) -> usize {
    usize::try_from(end.saturating_sub(pos)).map_or(MAX_READ, |n| n.min(MAX_READ))
}

/// The reads after the boot sector: FSINFO and the root directory, in the order libblkid
/// makes them. Small, `Copy`, no references: the FFI layer can hold it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FatWalk {
    boot: BootSector,
    device_size: u64,
    stage: Stage,
    /// FAT32: the cluster whose directory bytes are being searched.
    cluster: u32,
    /// FAT32: libblkid's `maxloop`.
    loops_left: u8,
    label: Option<[u8; 11]>,
}

/// A FAT filesystem, fully probed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FatVolume {
    /// `LABEL`: the root directory's volume label entry.
    pub label: Option<Label>,
    /// `LABEL_FATBOOT`: the boot sector's label, unless `NO NAME`.
    pub label_fatboot: Option<Label>,
    /// `UUID`: the volume serial number, unless zero.
    pub uuid: Option<FsUuid>,
    /// Bytes the filesystem spans: its sectors times the sector size, unless it counts none.
    pub size: Option<u64>,
    /// Its logical sector size (512 to 4096): the smallest unit it reads and writes.
    pub sector_size: u32,
}

impl FatWalk {
    /// Start after a valid boot sector on a device of `device_size` bytes.
    pub fn new(boot: BootSector, device_size: u64) -> FatWalk {
        let mut walk = FatWalk {
            boot,
            device_size,
            stage: Stage::Done,
            cluster: 0,
            loops_left: MAX_ROOT_CLUSTERS,
            label: None,
        };
        walk.stage = match boot.layout {
            FatLayout::Fat32 { fsinfo_sector, .. } if fsinfo_sector != 0 => {
                let offset = u64::from(fsinfo_sector).wrapping_mul(u64::from(boot.sector_size));
                if offset.saturating_add(FSINFO_LEN as u64) > device_size {
                    Stage::Rejected(FatReject::FsInfoUnreadable)
                } else {
                    Stage::FsInfo(offset)
                }
            }
            _ => walk.first_dir_stage(),
        };
        walk
    }

    fn tiny(&self) -> bool {
        self.device_size <= TINY_DEVICE_SIZE
    }

    fn first_dir_stage(&mut self) -> Stage {
        match self.boot.layout {
            FatLayout::Fat12Or16 {
                root_start,
                root_entries,
            } => {
                let len = u64::from(root_entries).wrapping_mul(DIR_ENTRY_LEN as u64);
                self.dir_stage(root_start, len).unwrap_or(Stage::Done)
            }
            FatLayout::Fat32 { root_cluster, .. } => {
                self.cluster = root_cluster;
                self.next_cluster_stage()
            }
            FatLayout::Neither => Stage::Done,
        }
    }

    /// Searching `len` bytes at `offset`, as far as libblkid can read them; `None` when it
    /// cannot read them at all.
    fn dir_stage(&self, offset: u64, len: u64) -> Option<Stage> {
        let end = offset.checked_add(len)?;
        if len == 0 {
            return None;
        }
        if end <= self.device_size {
            return Some(Stage::Dir { pos: offset, end });
        }
        if !self.tiny() || offset >= self.device_size {
            // A large device's directory is read in one piece: all or nothing.
            return None;
        }
        // A floppy's is read entry by entry, up to the last whole entry on the device.
        let room = self.device_size.saturating_sub(offset);
        let whole = room & !(DIR_ENTRY_LEN as u64).wrapping_sub(1);
        (whole > 0).then_some(Stage::Dir {
            pos: offset,
            end: offset.saturating_add(whole),
        })
    }

    /// FAT32: the loop head of libblkid's root directory search.
    fn next_cluster_stage(&mut self) -> Stage {
        let FatLayout::Fat32 {
            fat_entries,
            data_start_sector,
            ..
        } = self.boot.layout
        else {
            return Stage::Done;
        };
        let next = self.cluster;
        if next == 0 || next >= fat_entries {
            return Stage::Done;
        }
        self.loops_left = self.loops_left.saturating_sub(1);
        if self.loops_left == 0 {
            return Stage::Done;
        }
        let sector = data_start_sector
            .wrapping_add(next.wrapping_sub(2).wrapping_mul(self.boot.cluster_sectors));
        let offset = u64::from(sector).wrapping_mul(u64::from(self.boot.sector_size));
        let len = u64::from(self.cluster_bytes());
        match self.dir_stage(offset, len) {
            Some(stage) => stage,
            None => self.fat_entry_stage(),
        }
    }

    fn cluster_bytes(&self) -> u32 {
        // At most 128 * 4096.
        self.boot
            .cluster_sectors
            .wrapping_mul(self.boot.sector_size)
    }

    /// FAT32: after a cluster without the label, find the next one.
    fn fat_entry_stage(&self) -> Stage {
        let at = u64::from(self.boot.reserved_sectors)
            .wrapping_mul(u64::from(self.boot.sector_size))
            .wrapping_add(u64::from(self.cluster).wrapping_mul(4));
        // libblkid reads a whole cluster's worth of bytes there; it must fit on the device.
        if at.saturating_add(u64::from(self.cluster_bytes())) > self.device_size {
            return Stage::Done;
        }
        Stage::FatEntry(at)
    }

    /// The read this walk needs next, or `None` when it is finished.
    pub fn next_read(&self) -> Option<Read> {
        match self.stage {
            Stage::FsInfo(offset) => Some(Read {
                offset,
                len: FSINFO_LEN,
            }),
            Stage::Dir { pos, end } => Some(Read {
                offset: pos,
                len: dir_chunk(pos, end),
            }),
            Stage::FatEntry(offset) => Some(Read { offset, len: 4 }),
            Stage::Done | Stage::Rejected(_) => None,
        }
    }

    /// Hand in the bytes of [`FatWalk::next_read`] (fewer at the end of the device).
    pub fn feed(&mut self, data: &[u8]) {
        self.stage = match self.stage {
            Stage::FsInfo(_) => match check_fsinfo(data) {
                Ok(()) => self.first_dir_stage(),
                Err(e) => Stage::Rejected(e),
            },
            Stage::Dir { pos, end } => {
                let asked = dir_chunk(pos, end);
                let next = pos.saturating_add(asked as u64);
                match scan_dir(data) {
                    DirScan::Label(name) => {
                        self.label = Some(name);
                        Stage::Done
                    }
                    DirScan::More if data.len() >= asked && next < end => {
                        Stage::Dir { pos: next, end }
                    }
                    // End of directory, end of region, or a short read (the device ended).
                    DirScan::End | DirScan::More => match self.boot.layout {
                        FatLayout::Fat32 { .. } => self.fat_entry_stage(),
                        _ => Stage::Done,
                    },
                }
            }
            Stage::FatEntry(_) => match data.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                Some(entry) => {
                    self.cluster = u32::from_le_bytes(entry) & FAT32_ENTRY_MASK;
                    self.next_cluster_stage()
                }
                None => Stage::Done,
            },
            done @ (Stage::Done | Stage::Rejected(_)) => done,
        };
    }

    /// The result, once [`FatWalk::next_read`] is `None`.
    pub fn finish(&self) -> Result<FatVolume, FatReject> {
        if let Stage::Rejected(e) = self.stage {
            return Err(e);
        }
        let label_fatboot = self
            .boot
            .boot_label
            .filter(|l| *l != NO_NAME)
            .and_then(|l| Label::from_field(&l, Trim::Both));
        let uuid = self
            .boot
            .serial
            .filter(|s| *s != [0; 4])
            .map(|[a, b, c, d]| FsUuid::VolumeId([d, c, b, a]));
        Ok(FatVolume {
            label: self.label.and_then(|l| Label::from_field(&l, Trim::Right)),
            label_fatboot,
            uuid,
            size: (self.boot.total_sectors != 0).then(|| {
                u64::from(self.boot.total_sectors).saturating_mul(u64::from(self.boot.sector_size))
            }),
            sector_size: self.boot.sector_size,
        })
    }
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// A FAT16 boot sector as `mkfs.vfat -n EFI-BOOT` makes it for a 64 MiB device.
    pub(crate) fn fat16_boot() -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
        b[3..11].copy_from_slice(b"mkfs.fat");
        b[BPB_SECTOR_SIZE].copy_from_slice(&512u16.to_le_bytes());
        b[BPB_CLUSTER_SIZE] = 4;
        b[BPB_RESERVED].copy_from_slice(&4u16.to_le_bytes());
        b[BPB_FATS] = 2;
        b[BPB_DIR_ENTRIES].copy_from_slice(&512u16.to_le_bytes());
        b[BPB_MEDIA] = 0xf8;
        b[BPB_FAT_LENGTH].copy_from_slice(&128u16.to_le_bytes());
        b[BPB_TOTAL_SECT].copy_from_slice(&131072u32.to_le_bytes());
        b[MS_EXT_BOOT_SIGN] = EXT_BOOT_SIGN;
        b[MS_SERNO].copy_from_slice(&[0xef, 0xbe, 0xad, 0xde]);
        b[MS_LABEL].copy_from_slice(b"EFI-BOOT   ");
        b[MS_MAGIC].copy_from_slice(b"FAT16   ");
        b[PMAGIC].copy_from_slice(&[0x55, 0xaa]);
        b
    }

    fn label_entry(name: &[u8; 11]) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[DIR_NAME].copy_from_slice(name);
        e[DIR_ATTR] = ATTR_VOLUME_ID;
        e
    }

    #[test]
    fn fat16_geometry_label_and_serial() {
        let boot = parse_boot_sector(&fat16_boot()).unwrap();
        assert_eq!(
            boot.layout,
            FatLayout::Fat12Or16 {
                root_start: (4 + 256) * 512,
                root_entries: 512
            }
        );
        let mut walk = FatWalk::new(boot, 64 << 20);
        assert_eq!(
            walk.next_read(),
            Some(Read {
                offset: 260 * 512,
                len: 512 * 32
            })
        );
        let mut dir = [0u8; 512 * 32];
        dir[..32].copy_from_slice(&label_entry(b"EFI-BOOT   "));
        walk.feed(&dir);
        assert_eq!(walk.next_read(), None);
        let vol = walk.finish().unwrap();
        assert_eq!(vol.label.unwrap().as_bytes(), b"EFI-BOOT");
        assert_eq!(vol.label_fatboot.unwrap().as_bytes(), b"EFI-BOOT");
        assert_eq!(vol.uuid, Some(FsUuid::VolumeId([0xde, 0xad, 0xbe, 0xef])));
        assert_eq!(vol.size, Some(64 << 20));
    }

    #[test]
    fn one_field_changed_each() {
        let cases: [(usize, u8, FatReject); 4] = [
            (BPB_FATS, 0, FatReject::NoFats),
            (BPB_MEDIA, 0x12, FatReject::Media { found: 0x12 }),
            (BPB_CLUSTER_SIZE, 3, FatReject::ClusterSize { found: 3 }),
            (
                BPB_SECTOR_SIZE.start + 1,
                0x01,
                FatReject::SectorSize { found: 0x100 },
            ),
        ];
        for (at, value, want) in cases {
            let mut b = fat16_boot();
            b[at] = value;
            assert_eq!(parse_boot_sector(&b), Err(want));
        }
        let mut b = fat16_boot();
        b[BPB_RESERVED].fill(0);
        assert_eq!(parse_boot_sector(&b), Err(FatReject::NoReservedSectors));
    }

    #[test]
    fn weak_magic_needs_the_boot_signature() {
        let mut b = fat16_boot();
        b[MS_MAGIC].copy_from_slice(b"XXXXXXXX");
        assert!(parse_boot_sector(&b).is_ok(), "jump byte + 0x55AA");
        b[PMAGIC].fill(0);
        assert_eq!(parse_boot_sector(&b), Err(FatReject::BootSignature));
        b[0] = 0;
        assert_eq!(parse_boot_sector(&b), Err(FatReject::Magic));
        let mut b = fat16_boot();
        b[MS_MAGIC].copy_from_slice(b"JFS     ");
        assert_eq!(parse_boot_sector(&b), Err(FatReject::JfsOrHpfs));
    }

    #[test]
    fn too_many_clusters() {
        let mut b = fat16_boot();
        b[BPB_CLUSTER_SIZE] = 1;
        b[BPB_TOTAL_SECT].copy_from_slice(&0x0100_0000u32.to_le_bytes());
        assert!(matches!(
            parse_boot_sector(&b),
            Err(FatReject::TooManyClusters { max: FAT16_MAX, .. })
        ));
    }

    #[test]
    fn dir_scan_rules() {
        let mut dir = [0u8; 32 * 5];
        // A long-name entry, a deleted label, a label with a cluster, then the label.
        dir[0..11].copy_from_slice(b"AXXXXXXXXXX");
        dir[11] = ATTR_LONG_NAME;
        dir[32..43].copy_from_slice(&label_entry(b"\xe5OLD       ")[..11]);
        dir[43] = ATTR_VOLUME_ID;
        dir[64..75].copy_from_slice(b"CLUSTER    ");
        dir[75] = ATTR_VOLUME_ID;
        dir[64 + 26] = 9;
        dir[96..128].copy_from_slice(&label_entry(b"\x05BC        "));
        assert_eq!(scan_dir(&dir), DirScan::Label(*b"\xe5BC        "));
        assert_eq!(scan_dir(&[0u8; 64]), DirScan::End);
        let mut subdir = label_entry(b"SUBDIR     ");
        subdir[DIR_ATTR] = ATTR_VOLUME_ID | ATTR_DIR;
        assert_eq!(scan_dir(&subdir), DirScan::More);
    }

    #[test]
    fn no_name_boot_label_is_not_reported() {
        let mut b = fat16_boot();
        b[MS_LABEL].copy_from_slice(&NO_NAME);
        let mut walk = FatWalk::new(parse_boot_sector(&b).unwrap(), 64 << 20);
        walk.feed(&[0u8; 512 * 32]);
        let vol = walk.finish().unwrap();
        assert_eq!(vol.label_fatboot, None);
        assert_eq!(vol.label, None);
    }

    #[test]
    fn root_directory_beyond_a_large_device_gives_no_label() {
        // Root directory at (4000 + 256) * 512 bytes, on a 2 MiB device: not readable at all.
        let mut b = fat16_boot();
        b[BPB_RESERVED].copy_from_slice(&4000u16.to_le_bytes());
        let boot = parse_boot_sector(&b).unwrap();
        let walk = FatWalk::new(boot, 2 << 20);
        assert_eq!(walk.next_read(), None);
        assert_eq!(walk.finish().unwrap().label, None);
        // A floppy-sized device searches the entries that fit.
        let boot = parse_boot_sector(&fat16_boot()).unwrap();
        let walk = FatWalk::new(boot, 260 * 512 + 100);
        assert!(walk.tiny());
        assert_eq!(
            walk.next_read(),
            Some(Read {
                offset: 260 * 512,
                len: 96
            })
        );
    }

    #[test]
    fn fsinfo_signatures() {
        let mut s = [0u8; 512];
        assert_eq!(check_fsinfo(&s), Ok(()));
        s[0..4].copy_from_slice(b"RRaA");
        s[484..488].copy_from_slice(b"rrAa");
        assert_eq!(check_fsinfo(&s), Ok(()));
        s[484] = b'x';
        assert_eq!(check_fsinfo(&s), Err(FatReject::FsInfoSignature));
        assert_eq!(check_fsinfo(&s[..100]), Err(FatReject::FsInfoUnreadable));
    }
}
