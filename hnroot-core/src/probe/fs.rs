//! The filesystem prober: which filesystem a device (or partition) holds, with its label,
//! FAT boot label and UUID, decided the way `blkid -p` decides it. Performs no I/O: it asks
//! for reads through [`FsProber::step`] and is handed the bytes through [`FsProber::feed`].

use core::convert::Infallible;
use core::fmt;

use super::other::{self, BitLocker, OtherType};
use super::vfat::{self, BootSector, FatWalk};
use super::{btrfs, bytes_of, ext, run, xfs, Label, ProbeStep, Prober, Read, MAX_READ};
use crate::uuid::FsUuid;

/// A filesystem type hnroot recognises, in libblkid's probing order. `as_str` is blkid's
/// `TYPE=`. `Ext4dev` and `Jbd` exist so that an ext superblock libblkid calls `ext4dev` or
/// `jbd` is neither mislabelled nor missed (blkid finds their labels too).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum FsType {
    /// FAT12, FAT16 or FAT32: `vfat`.
    Vfat,
    /// XFS (v4 or v5).
    Xfs,
    /// An ext filesystem flagged for in-development code (`tune2fs -E test_fs`).
    Ext4dev,
    /// ext4.
    Ext4,
    /// ext3.
    Ext3,
    /// ext2.
    Ext2,
    /// An ext3/4 external journal device.
    Jbd,
    /// btrfs.
    Btrfs,
}

impl FsType {
    /// Every type, in libblkid's probing order.
    pub const ALL: [FsType; 8] = [
        FsType::Vfat,
        FsType::Xfs,
        FsType::Ext4dev,
        FsType::Ext4,
        FsType::Ext3,
        FsType::Ext2,
        FsType::Jbd,
        FsType::Btrfs,
    ];

    /// blkid's `TYPE=` string.
    pub fn as_str(&self) -> &'static str {
        match self {
            FsType::Vfat => "vfat",
            FsType::Xfs => "xfs",
            FsType::Ext4dev => "ext4dev",
            FsType::Ext4 => "ext4",
            FsType::Ext3 => "ext3",
            FsType::Ext2 => "ext2",
            FsType::Jbd => "jbd",
            FsType::Btrfs => "btrfs",
        }
    }

    fn bit(self) -> u8 {
        1u8 << (self as u8)
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of filesystem types, iterated in libblkid's probing order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FsTypes(u8);

impl FsTypes {
    /// No type.
    pub const EMPTY: FsTypes = FsTypes(0);

    /// Just `t`.
    pub fn of(t: FsType) -> FsTypes {
        FsTypes(t.bit())
    }

    /// Add `t`.
    pub fn insert(&mut self, t: FsType) {
        self.0 |= t.bit();
    }

    /// Whether `t` is in the set.
    pub fn contains(&self, t: FsType) -> bool {
        self.0 & t.bit() != 0
    }

    /// Number of types.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The types, in libblkid's order.
    pub fn iter(&self) -> impl Iterator<Item = FsType> + '_ {
        FsType::ALL.into_iter().filter(|t| self.contains(*t))
    }

    /// The first type in libblkid's order.
    pub fn first(&self) -> Option<FsType> {
        self.iter().next()
    }
}

impl fmt::Debug for FsTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// `vfat, ext4`.
impl fmt::Display for FsTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(t.as_str())?;
        }
        Ok(())
    }
}

/// What blkid reports for a recognised filesystem.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FsInfo {
    /// `TYPE`.
    pub fs_type: FsType,
    /// `LABEL`.
    pub label: Option<Label>,
    /// `LABEL_FATBOOT` (FAT only): the boot sector's label.
    pub label_fatboot: Option<Label>,
    /// `UUID`.
    pub uuid: Option<FsUuid>,
    /// Bytes of the device the filesystem says it spans (ext: block count × block size; XFS:
    /// data blocks × block size; btrfs: this device's `total_bytes`; FAT: sectors × sector
    /// size), when it says. Not one of blkid's tags: blkid reports a truncated filesystem as
    /// if it were whole; [`FsInfo::missing_bytes`] tells one apart.
    pub size: Option<u64>,
    /// The smallest unit the filesystem reads and writes its device in (ext: the block size;
    /// XFS: `sectsize`; btrfs: `sectorsize`; FAT: bytes per sector), when it says: a device
    /// whose logical block size is larger cannot mount it (the loop device's block size is
    /// chosen from it, [`crate::loopdev::geometry`]). Not one of blkid's tags.
    pub io_unit: Option<u32>,
    /// ext only: the incompatible features it uses that GRUB cannot read (none for the other
    /// filesystems, whose features GRUB's drivers are not asked about).
    pub grub_lacks: super::ext::ExtFeatures,
}

impl FsInfo {
    /// How many bytes of the filesystem are missing from a device (or image file) of
    /// `device_size` bytes: `Some(n)` when the filesystem spans more than the device holds
    /// (a copy cut short, a file truncated: the kernel refuses to mount it, GRUB would read
    /// past its end), `None` when it fits or its size is unknown.
    pub fn missing_bytes(&self, device_size: u64) -> Option<u64> {
        self.size
            .and_then(|size| size.checked_sub(device_size))
            .filter(|&missing| missing > 0)
    }

    /// Whether it is labelled `wanted`: blkid's `LABEL=`, byte for byte (no case folding; a FAT
    /// volume's boot-sector label does not count).
    pub fn is_labelled(&self, wanted: &[u8]) -> bool {
        self.label.as_ref().is_some_and(|l| l.as_bytes() == wanted)
    }
}

/// The answer for one device, as `blkid -p` would give it.
// No allocator in the core: the labels live inline, so `Found` is large on purpose.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FsOutcome {
    /// Exactly one filesystem (or the first one, on a floppy-sized device, as libblkid).
    Found(FsInfo),
    /// No filesystem hnroot knows (the device may hold one it does not know).
    Unknown,
    /// More than one filesystem superblock is valid: blkid's "ambivalent result". Nothing is
    /// reported for such a device, so nothing can be found on it by label.
    Ambivalent(FsTypes),
    /// A RAID member, LVM volume or encrypted volume: blkid reports that instead of any
    /// filesystem.
    Other(OtherType),
}

impl FsOutcome {
    /// The filesystem, if exactly one was found.
    pub fn info(&self) -> Option<&FsInfo> {
        match self {
            FsOutcome::Found(info) => Some(info),
            _ => None,
        }
    }

    /// Whether this is one filesystem labelled `wanted`: blkid's `LABEL=`, byte for byte (no
    /// case folding; a FAT volume's boot-sector label does not count). GRUB and Linux find
    /// hostpart and the ESP by this one rule.
    pub fn is_labelled(&self, wanted: &[u8]) -> bool {
        self.info().is_some_and(|i| i.is_labelled(wanted))
    }
}

/// libblkid ignores devices this small.
const MIN_DEVICE_SIZE: u64 = 1024;

/// Bytes of the first read: everything before the btrfs superblock.
pub const HEAD_LEN: usize = MAX_READ;

/// Where the prober is, in this order; each phase but `Head` may be skipped (see
/// [`FsProber::enter`]). btrfs and FAT come right after the head so that what lies inside it
/// is served from it without another read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Read the first [`HEAD_LEN`] bytes: FAT, ext, XFS, LUKS, LVM2 and MD 1.1/1.2 are there.
    Head,
    /// The btrfs superblock at 64 KiB.
    Btrfs,
    /// FSINFO and the root directory of a FAT filesystem.
    Fat(FatWalk),
    /// Confirm BitLocker: its FVE metadata header.
    BitLockerFve(u64),
    /// MD metadata 0.90 and 1.0 near the end: both in one read, or the 0.90 one.
    MdTail(Read),
    /// MD metadata 1.0, when it is too far from the 0.90 one for one read.
    MdTail2(Read),
    /// Finished.
    Done,
}

impl Phase {
    /// Whether this phase (or one before it) can still add a filesystem: the later ones only
    /// find RAID and crypto signatures.
    fn finds_filesystems(&self) -> bool {
        matches!(self, Phase::Head | Phase::Btrfs | Phase::Fat(_))
    }

    /// Position in the sequence, to continue after it.
    fn index(&self) -> u8 {
        match self {
            Phase::Head => 0,
            Phase::Btrfs => 1,
            Phase::Fat(_) => 2,
            Phase::BitLockerFve(_) => 3,
            Phase::MdTail(_) => 4,
            Phase::MdTail2(_) => 5,
            Phase::Done => 6,
        }
    }
}

/// The reads that hold the end-of-device MD superblocks (0.90 and 1.0), on devices above
/// 64 KiB: one read when they are at most [`MAX_READ`] apart (any size that is a multiple of
/// 64 KiB: 56 KiB + 256 bytes), else one read each.
fn md_tail(size: u64) -> (Option<Read>, Option<Read>) {
    let (Some(md0), Some(md1)) = (other::md0_offset(size), other::md1_0_offset(size)) else {
        return (None, None);
    };
    let start = md0.min(md1);
    let end = md0
        .saturating_add(other::MD0_LEN as u64)
        .max(md1.saturating_add(other::MD1_LEN as u64))
        .min(size);
    match usize::try_from(end.saturating_sub(start)) {
        Ok(len) if len > 0 && len <= MAX_READ => (Some(Read { offset: start, len }), None),
        _ => (
            Some(Read {
                offset: md0,
                len: other::MD0_LEN,
            }),
            Some(Read {
                offset: md1,
                len: other::MD1_LEN,
            }),
        ),
    }
}

/// Identifies the filesystem on a device of known size, asking for the bytes it needs.
///
/// Reads, in order (each only when needed; see [`FsProber::reads`]):
/// 1. the first [`HEAD_LEN`] bytes (64 KiB): the FAT boot sector and usually its FSINFO, the
///    ext and XFS superblocks, LUKS and LVM2 headers, MD 1.1/1.2 superblocks;
/// 2. the btrfs superblock at 64 KiB (devices of 1 MiB and more);
/// 3. a FAT root directory that is not inside the first read (FAT12/16: one read, more only
///    for a root directory above [`MAX_READ`] bytes; FAT32: each cluster of the root
///    directory up to the one holding the label, with one 4-byte FAT read per cluster after
///    the first — libblkid's bounded loop of at most 99 clusters);
/// 4. BitLocker's FVE header, only if the boot sector carries a BitLocker magic;
/// 5. the last bytes of the device, holding MD 0.90 and 1.0 superblocks (one read when the
///    size is a multiple of 64 KiB, else two; not on floppy-sized devices).
///
/// So a device costs three reads, and every filesystem type at most two, except a FAT root
/// directory outside the first read (one more, or several for a FAT32 root directory whose
/// label is not in its first cluster). The prober is `Clone` and holds no references (about
/// 700 bytes).
#[derive(Clone, Debug)]
pub struct FsProber {
    size: u64,
    phase: Phase,
    asked: Option<Read>,
    reads: u32,
    other: Option<OtherType>,
    fve: Option<u64>,
    boot: Option<BootSector>,
    hits: FsTypes,
    best: Option<FsInfo>,
}

/// Most reads an [`FsProber`] can ask for (head, btrfs, BitLocker, two MD, FSINFO, and a FAT32
/// root directory of 99 clusters of up to 512 KiB plus their FAT entries).
pub const MAX_FS_READS: u32 = 6 + 99 * (512 * 1024 / MAX_READ as u32 + 1);

impl FsProber {
    /// A prober for a device (or partition) of `device_size` bytes.
    pub fn new(device_size: u64) -> FsProber {
        FsProber {
            size: device_size,
            phase: if device_size <= MIN_DEVICE_SIZE {
                Phase::Done
            } else {
                Phase::Head
            },
            asked: None,
            reads: 0,
            other: None,
            fve: None,
            boot: None,
            hits: FsTypes::EMPTY,
            best: None,
        }
    }

    /// The device size the prober was made for (compare with [`FsInfo::missing_bytes`]).
    pub fn device_size(&self) -> u64 {
        self.size
    }

    /// Reads asked for so far.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    /// Whether the probe can still end in [`FsOutcome::Found`] with a filesystem `wanted`
    /// accepts (a label, a UUID looked for). Once the phases that find filesystems (the head,
    /// btrfs, FAT's root directory) are done, the later ones (BitLocker, the MD superblocks at
    /// the end) can only turn a filesystem into a RAID or crypto member: if what was found so
    /// far is not wanted, nothing read later makes it so, and a search may stop reading this
    /// device. A RAID, LVM or crypto signature already seen ends it at once. `true` means
    /// "read on", not "found": only the finished probe says that.
    pub fn may_find(&self, wanted: impl Fn(&FsInfo) -> bool) -> bool {
        if self.other.is_some() {
            return false;
        }
        if self.phase.finds_filesystems() {
            return true;
        }
        self.outcome().info().is_some_and(wanted)
    }

    /// What to do next: read (then [`FsProber::feed`]) or the answer.
    pub fn step(&mut self) -> ProbeStep<FsOutcome> {
        if let Some(read) = self.asked {
            return ProbeStep::Read(read);
        }
        match self.pending() {
            Some(read) => {
                self.asked = Some(read);
                self.reads = self.reads.saturating_add(1);
                ProbeStep::Read(read)
            }
            None => ProbeStep::Done(self.outcome()),
        }
    }

    /// Hand in the bytes of the read [`FsProber::step`] asked for. Fewer bytes than asked
    /// (the device ended, or could not be read) count as "not this filesystem". Bytes handed
    /// in without a pending read are ignored.
    pub fn feed(&mut self, data: &[u8]) {
        let Some(asked) = self.asked.take() else {
            return;
        };
        self.consume(data);
        // Later reads that lie inside these bytes are served from them (bounded: each
        // consume moves the state forward, and there are at most MAX_FS_READS of them).
        for _ in 0..MAX_FS_READS {
            let Some(next) = self.pending() else {
                break;
            };
            let Some(inside) = asked.sub(data, next) else {
                break;
            };
            self.consume(inside);
        }
    }

    /// The read the current phase needs, if any.
    fn pending(&self) -> Option<Read> {
        match self.phase {
            Phase::Head => Some(Read {
                offset: 0,
                len: usize::try_from(self.size).map_or(HEAD_LEN, |s| s.min(HEAD_LEN)),
            }),
            Phase::BitLockerFve(offset) => Some(Read {
                offset,
                len: other::BITLOCKER_FVE_LEN,
            }),
            Phase::MdTail(read) | Phase::MdTail2(read) => Some(read),
            Phase::Btrfs => Some(Read {
                offset: btrfs::SB_OFFSET,
                len: btrfs::SB_LEN,
            }),
            Phase::Fat(walk) => walk.next_read(),
            Phase::Done => None,
        }
    }

    fn tiny(&self) -> bool {
        self.size <= vfat::TINY_DEVICE_SIZE
    }

    /// Take the bytes of the current phase's read and move on.
    fn consume(&mut self, data: &[u8]) {
        match self.phase {
            Phase::Head => self.consume_head(data),
            Phase::BitLockerFve(_) => {
                if other::is_bitlocker_fve(data) {
                    self.found_other(OtherType::BitLocker);
                }
            }
            Phase::MdTail(read) | Phase::MdTail2(read) => {
                let at = |offset: Option<u64>, len: usize| {
                    offset.and_then(|offset| read.sub(data, Read { offset, len }))
                };
                let md0 = other::md0_offset(self.size);
                let md1 = other::md1_0_offset(self.size);
                let is_md0 = at(md0, other::MD0_LEN)
                    .zip(md0)
                    .is_some_and(|(sb, off)| other::is_md0(sb, off, self.size));
                let is_md1 = at(md1, other::MD1_LEN)
                    .zip(md1)
                    .is_some_and(|(sb, off)| other::is_md1(sb, off));
                if is_md0 || is_md1 {
                    self.found_other(OtherType::LinuxRaidMember);
                }
            }
            Phase::Btrfs => {
                if let Ok(sb) = btrfs::parse(data) {
                    self.hit(FsInfo {
                        fs_type: FsType::Btrfs,
                        label: sb.label,
                        label_fatboot: None,
                        uuid: sb.uuid,
                        size: sb.size,
                        io_unit: Some(sb.sector_size),
                        grub_lacks: ext::ExtFeatures::empty(),
                    });
                }
            }
            Phase::Fat(mut walk) => {
                walk.feed(data);
                self.phase = Phase::Fat(walk);
                if walk.next_read().is_some() {
                    return;
                }
                self.finish_fat(&walk);
            }
            Phase::Done => return,
        }
        self.enter(self.phase.index().saturating_add(1));
    }

    fn consume_head(&mut self, head: &[u8]) {
        if !self.tiny() {
            if other::is_md1(head.get(..other::MD1_LEN).unwrap_or(&[]), 0)
                || other::is_md1(
                    head.get(other::MD1_2_OFFSET as usize..).unwrap_or(&[]),
                    other::MD1_2_OFFSET,
                )
            {
                self.found_other(OtherType::LinuxRaidMember);
            }
            if other::is_lvm2(head) {
                self.found_other(OtherType::Lvm2Member);
            }
        }
        if other::is_luks(head) {
            self.found_other(OtherType::CryptoLuks);
        }
        match other::bitlocker(head) {
            BitLocker::Yes => self.found_other(OtherType::BitLocker),
            BitLocker::CheckFve(offset)
                if offset.saturating_add(other::BITLOCKER_FVE_LEN as u64) <= self.size =>
            {
                self.fve = Some(offset);
            }
            BitLocker::CheckFve(_) | BitLocker::No => {}
        }
        self.boot = vfat::parse_boot_sector(head).ok();
        if let Ok(sb) = xfs::parse(head) {
            self.hit(FsInfo {
                fs_type: FsType::Xfs,
                label: sb.label,
                label_fatboot: None,
                uuid: sb.uuid,
                size: sb.size,
                io_unit: Some(sb.sector_size),
                grub_lacks: ext::ExtFeatures::empty(),
            });
        }
        let ext_sb = head.get(ext::SB_OFFSET as usize..).unwrap_or(&[]);
        if let Ok(sb) = ext::parse(ext_sb) {
            for t in sb.types.iter() {
                self.hit(FsInfo {
                    fs_type: t,
                    label: sb.label.clone(),
                    label_fatboot: None,
                    uuid: sb.uuid,
                    size: sb.size,
                    io_unit: sb.block_size,
                    grub_lacks: sb.grub_lacks,
                });
            }
        }
    }

    /// Enter the first applicable phase at or after position `index`.
    fn enter(&mut self, index: u8) {
        for i in index..Phase::Done.index() {
            let next = match i {
                1 if self.other.is_none() && self.size >= btrfs::MIN_DEVICE_SIZE => {
                    Some(Phase::Btrfs)
                }
                2 if self.other.is_none() => {
                    self.boot.map(|b| Phase::Fat(FatWalk::new(b, self.size)))
                }
                3 => self.fve.map(Phase::BitLockerFve),
                4 if !self.tiny() => md_tail(self.size).0.map(Phase::MdTail),
                5 if !self.tiny() => md_tail(self.size).1.map(Phase::MdTail2),
                _ => None,
            };
            if let Some(phase) = next {
                self.phase = phase;
                if let Phase::Fat(walk) = phase {
                    if walk.next_read().is_none() {
                        self.finish_fat(&walk);
                        continue;
                    }
                }
                return;
            }
        }
        self.phase = Phase::Done;
    }

    fn finish_fat(&mut self, walk: &FatWalk) {
        if let Ok(vol) = walk.finish() {
            self.hit(FsInfo {
                fs_type: FsType::Vfat,
                label: vol.label,
                label_fatboot: vol.label_fatboot,
                uuid: vol.uuid,
                size: vol.size,
                io_unit: Some(vol.sector_size),
                grub_lacks: ext::ExtFeatures::empty(),
            });
        }
    }

    /// A RAID/crypto signature; the one libblkid probes first wins.
    fn found_other(&mut self, t: OtherType) {
        let rank = |t: OtherType| match t {
            OtherType::LinuxRaidMember => 0,
            OtherType::Lvm2Member => 1,
            OtherType::CryptoLuks => 2,
            OtherType::BitLocker => 3,
        };
        if self.other.is_none_or(|o| rank(t) < rank(o)) {
            self.other = Some(t);
        }
    }

    fn hit(&mut self, info: FsInfo) {
        self.hits.insert(info.fs_type);
        if self.best.as_ref().is_none_or(|b| info.fs_type < b.fs_type) {
            self.best = Some(info);
        }
    }

    fn outcome(&self) -> FsOutcome {
        if let Some(other) = self.other {
            return FsOutcome::Other(other);
        }
        match &self.best {
            None => FsOutcome::Unknown,
            Some(best) if self.hits.len() == 1 || self.tiny() => FsOutcome::Found(best.clone()),
            Some(_) => FsOutcome::Ambivalent(self.hits),
        }
    }
}

impl Prober for FsProber {
    type Outcome = FsOutcome;
    const MAX_READS: u32 = MAX_FS_READS;

    fn step(&mut self) -> ProbeStep<FsOutcome> {
        FsProber::step(self)
    }

    fn feed(&mut self, data: &[u8]) {
        FsProber::feed(self, data)
    }
}

/// Run an [`FsProber`] over a whole device image held in memory (tests, fuzzing, tools).
/// Returns the outcome (`Unknown` should the prober never answer) and the number of reads
/// asked for.
pub fn probe_fs_image(image: &[u8]) -> (FsOutcome, u32) {
    let mut prober = FsProber::new(image.len() as u64);
    let Ok(outcome) = run(&mut prober, |read| {
        Ok::<_, Infallible>(bytes_of(image, read))
    });
    (outcome.unwrap_or(FsOutcome::Unknown), prober.reads())
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn tiny_and_empty_devices() {
        assert_eq!(probe_fs_image(&[]), (FsOutcome::Unknown, 0));
        assert_eq!(probe_fs_image(&[0; 1024]), (FsOutcome::Unknown, 0));
        assert_eq!(probe_fs_image(&[0; 4096]), (FsOutcome::Unknown, 1));
    }

    #[test]
    fn reads_on_an_empty_large_device() {
        let image: Vec<u8> = vec![0; 2 << 20];
        // The head, btrfs, and the tail (both MD superblocks).
        assert_eq!(probe_fs_image(&image), (FsOutcome::Unknown, 3));
        assert_eq!(
            md_tail(2 << 20),
            (
                Some(Read {
                    offset: (2 << 20) - 0x10000,
                    len: 0x10000 - 0x2000 + 256
                }),
                None
            )
        );
        // Far apart: one read each.
        let size = (5 << 20) + 0xffff;
        let (a, b) = md_tail(size);
        assert_eq!(a.unwrap().offset, (5 << 20) - 0x10000);
        assert_eq!(b.unwrap().offset, (5 << 20) + 0xf000 - 0x2000);
        let mut odd = vec![0u8; size as usize];
        odd[0] = 1;
        assert_eq!(probe_fs_image(&odd), (FsOutcome::Unknown, 4));
    }

    #[test]
    fn step_repeats_until_fed() {
        let mut p = FsProber::new(1 << 20);
        let first = p.step();
        assert_eq!(p.step(), first);
        assert_eq!(p.reads(), 1);
        p.feed(&[]);
        assert_ne!(p.step(), first);
    }

    #[test]
    fn types_are_in_libblkid_order() {
        let mut t = FsTypes::of(FsType::Btrfs);
        t.insert(FsType::Vfat);
        assert_eq!(std::format!("{t}"), "vfat, btrfs");
        assert_eq!(t.first(), Some(FsType::Vfat));
        assert_eq!(t.len(), 2);
    }
}
