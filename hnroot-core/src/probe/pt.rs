//! The partition-table prober: GPT (primary header, else the backup at the last LBA) or MBR,
//! decided as libblkid's partitions chain decides it. Performs no I/O: it asks for reads
//! through [`PtProber::step`] and is handed the bytes through [`PtProber::feed`].

use super::bytes::{crc_continue, CRC32};
use super::gpt::{self, GptHeader, GptReject, GptTable};
use super::mbr::{self, MbrTable};
use super::{bytes_of, run, Label, ProbeStep, Prober, Read, MAX_READ};
use crate::uuid::PartUuid;
use core::convert::Infallible;

/// One partition, as blkid reports it (`PART_ENTRY_*`, `PARTLABEL`, `PARTUUID`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Partition {
    /// Partition number (`/dev/sda<number>`): GPT entry position from 1; MBR 1-4 primary,
    /// 5 and up logical.
    pub number: u32,
    /// Start, in bytes from the start of the disk.
    pub start: u64,
    /// Size, in bytes.
    pub size: u64,
    /// `PARTLABEL`: the GPT partition name.
    pub name: Option<Label>,
    /// `PARTUUID`: the GPT unique GUID, or `<disk signature>-<number>` on MBR (none when the
    /// disk signature is 0).
    pub partuuid: Option<PartUuid>,
    /// Table-specific details.
    pub kind: PartitionKind,
}

/// Table-specific partition details.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PartitionKind {
    /// A GPT entry.
    Gpt {
        /// Partition type GUID, in textual byte order.
        type_guid: [u8; 16],
        /// Attribute bits.
        attributes: u64,
    },
    /// An MBR entry.
    Mbr {
        /// Partition type byte.
        sys_type: u8,
        /// Boot indicator set.
        bootable: bool,
        /// A logical partition inside an extended one.
        logical: bool,
    },
}

impl PartitionKind {
    /// An MBR extended partition (a container for logical partitions). Linux gives its
    /// device node a size of 1 KiB, so nothing is found inside it.
    pub fn is_mbr_extended(&self) -> bool {
        matches!(
            self,
            PartitionKind::Mbr {
                sys_type: 0x05 | 0x0f | 0x85,
                logical: false,
                ..
            }
        )
    }
}

/// The partition table of a disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PtOutcome {
    /// A GPT; read its entry array ([`GptTable::entries`]) to list the partitions.
    Gpt(GptTable),
    /// An MBR; [`MbrTable::primaries`] and [`MbrTable::logical`] list the partitions.
    Mbr(MbrTable),
    /// A protective MBR whose GPT headers are both damaged: blkid's `PTTYPE=PMBR`, no
    /// partitions.
    ProtectiveMbrOnly,
    /// No partition table hnroot knows.
    None,
}

/// libblkid's GPT prober ignores floppy-sized devices.
const GPT_MIN_DEVICE_SIZE: u64 = 1440 * 1024 + 1;

/// Which GPT header is being checked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HeaderCopy {
    Primary,
    Backup,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// The first [`MAX_READ`] bytes: MBR, primary GPT header and usually its entries.
    Head,
    /// The last [`MAX_READ`] bytes: backup GPT header and usually its entries.
    Tail,
    /// An entry array outside the read that held its header: `pos..end`, CRC so far.
    Entries {
        header: GptHeader,
        which: HeaderCopy,
        pos: u64,
        crc: u32,
    },
    Done(PtOutcome),
}

/// Identifies the partition table of a disk of known size and logical sector size.
///
/// Reads: the first [`MAX_READ`] bytes (MBR and primary GPT with its entries on any disk
/// made by common tools); the last [`MAX_READ`] bytes only when the primary GPT header is
/// damaged; an entry array elsewhere in pieces of at most [`MAX_READ`] bytes (at most
/// [`gpt::MAX_ENTRIES_BYTES`]). `Copy`, no references.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PtProber {
    size: u64,
    sector_size: u32,
    phase: Phase,
    asked: Option<Read>,
    reads: u32,
}

/// Most reads a [`PtProber`] asks for: head, tail, and two entry arrays in pieces.
pub const MAX_PT_READS: u32 = 2 + 2 * (gpt::MAX_ENTRIES_BYTES / MAX_READ as u32);

impl PtProber {
    /// A prober for a disk of `device_size` bytes with logical sectors of `sector_size` bytes
    /// (a power of two from 512 to 65536; anything else is taken as 512).
    pub fn new(device_size: u64, sector_size: u32) -> PtProber {
        let sector_size = if sector_size.is_power_of_two() && (512..=65536).contains(&sector_size) {
            sector_size
        } else {
            512
        };
        PtProber {
            size: device_size,
            sector_size,
            phase: if device_size < u64::from(sector_size) {
                Phase::Done(PtOutcome::None)
            } else {
                Phase::Head
            },
            asked: None,
            reads: 0,
        }
    }

    /// Reads asked for so far.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    fn last_lba(&self) -> u64 {
        self.size
            .checked_div(u64::from(self.sector_size))
            .unwrap_or(0)
            .saturating_sub(1)
    }

    fn ssz(&self) -> u64 {
        u64::from(self.sector_size)
    }

    /// What to do next: read (then [`PtProber::feed`]) or the answer.
    pub fn step(&mut self) -> ProbeStep<PtOutcome> {
        if let Some(read) = self.asked {
            return ProbeStep::Read(read);
        }
        match self.pending() {
            Some(read) => {
                self.asked = Some(read);
                self.reads = self.reads.saturating_add(1);
                ProbeStep::Read(read)
            }
            None => match self.phase {
                Phase::Done(outcome) => ProbeStep::Done(outcome),
                _ => ProbeStep::Done(PtOutcome::None),
            },
        }
    }

    fn pending(&self) -> Option<Read> {
        match self.phase {
            Phase::Head => Some(Read {
                offset: 0,
                len: usize::try_from(self.size).map_or(MAX_READ, |s| s.min(MAX_READ)),
            }),
            Phase::Tail => {
                let end = self.last_lba().saturating_add(1).saturating_mul(self.ssz());
                let start = end.saturating_sub(MAX_READ as u64);
                Some(Read {
                    offset: start,
                    len: usize::try_from(end.saturating_sub(start)).unwrap_or(MAX_READ),
                })
            }
            Phase::Entries { header, pos, .. } => {
                let end = header
                    .entries_offset
                    .saturating_add(u64::from(header.entries_len));
                Some(Read {
                    offset: pos,
                    len: usize::try_from(end.saturating_sub(pos))
                        .map_or(MAX_READ, |n| n.min(MAX_READ)),
                })
            }
            Phase::Done(_) => None,
        }
    }

    /// Hand in the bytes of the read [`PtProber::step`] asked for (fewer at the end of the
    /// device). Bytes handed in without a pending read are ignored.
    pub fn feed(&mut self, data: &[u8]) {
        let Some(asked) = self.asked.take() else {
            return;
        };
        self.phase = match self.phase {
            Phase::Head => self.after_head(asked, data),
            Phase::Tail => self.after_tail(asked, data),
            Phase::Entries {
                header,
                which,
                pos,
                crc,
            } => {
                let crc = crc_continue(&CRC32, crc, data);
                let pos = pos.saturating_add(data.len() as u64);
                let end = header
                    .entries_offset
                    .saturating_add(u64::from(header.entries_len));
                if data.len() < asked.len {
                    self.gpt_failed(which)
                } else if pos < end {
                    Phase::Entries {
                        header,
                        which,
                        pos,
                        crc,
                    }
                } else if crc == header.entries_crc {
                    Phase::Done(PtOutcome::Gpt(GptTable { header }))
                } else {
                    self.gpt_failed(which)
                }
            }
            done @ Phase::Done(_) => done,
        };
    }

    fn after_head(&self, asked: Read, head: &[u8]) -> Phase {
        let sector0 = head.get(..mbr::SECTOR_LEN).unwrap_or(&[]);
        if let Ok(table) = mbr::parse(sector0, self.sector_size) {
            return Phase::Done(PtOutcome::Mbr(table));
        }
        if self.size < GPT_MIN_DEVICE_SIZE || !mbr::is_protective(sector0) {
            return Phase::Done(PtOutcome::None);
        }
        self.try_header(asked, head, gpt::PRIMARY_LBA, HeaderCopy::Primary)
    }

    fn after_tail(&self, asked: Read, tail: &[u8]) -> Phase {
        self.try_header(asked, tail, self.last_lba(), HeaderCopy::Backup)
    }

    /// Check the header at `lba`, which must lie in `data` (read for `asked`).
    fn try_header(&self, asked: Read, data: &[u8], lba: u64, which: HeaderCopy) -> Phase {
        let sector = Read {
            offset: lba.saturating_mul(self.ssz()),
            len: self.sector_size as usize,
        };
        let header = asked
            .sub(data, sector)
            .ok_or(GptReject::TooShort)
            .and_then(|s| gpt::parse_header(s, lba, self.last_lba(), self.sector_size));
        let header = match header {
            Ok(h)
                if h.entries_offset
                    .checked_add(u64::from(h.entries_len))
                    .is_some_and(|end| end <= self.size) =>
            {
                h
            }
            _ => return self.gpt_failed(which),
        };
        let entries = Read {
            offset: header.entries_offset,
            len: header.entries_len as usize,
        };
        match asked.sub(data, entries) {
            Some(bytes) => {
                if CRC32.checksum(bytes) == header.entries_crc {
                    Phase::Done(PtOutcome::Gpt(GptTable { header }))
                } else {
                    self.gpt_failed(which)
                }
            }
            None => Phase::Entries {
                header,
                which,
                pos: header.entries_offset,
                // The CRC of nothing, to continue from.
                crc: CRC32.checksum(&[]),
            },
        }
    }

    fn gpt_failed(&self, which: HeaderCopy) -> Phase {
        match which {
            HeaderCopy::Primary => Phase::Tail,
            HeaderCopy::Backup => Phase::Done(PtOutcome::ProtectiveMbrOnly),
        }
    }
}

impl Prober for PtProber {
    type Outcome = PtOutcome;
    const MAX_READS: u32 = MAX_PT_READS;

    fn step(&mut self) -> ProbeStep<PtOutcome> {
        PtProber::step(self)
    }

    fn feed(&mut self, data: &[u8]) {
        PtProber::feed(self, data)
    }
}

/// Run a [`PtProber`] over a disk image held in memory (tests, fuzzing, tools). Returns the
/// outcome (`None` should the prober never answer) and the number of reads asked for.
pub fn probe_pt_image(image: &[u8], sector_size: u32) -> (PtOutcome, u32) {
    let mut prober = PtProber::new(image.len() as u64, sector_size);
    let Ok(outcome) = run(&mut prober, |read| {
        Ok::<_, Infallible>(bytes_of(image, read))
    });
    (outcome.unwrap_or(PtOutcome::None), prober.reads())
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::probe::gpt::tests::disk;

    #[test]
    fn primary_gpt_in_one_read() {
        let img = disk();
        let (out, reads) = probe_pt_image(&img, 512);
        let PtOutcome::Gpt(t) = out else {
            panic!("{out:?}")
        };
        assert!(!t.from_backup());
        assert_eq!(reads, 1);
        assert_eq!(
            std::format!("{}", t.disk_guid()),
            "11111111-1111-1111-1111-111111111111"
        );
    }

    #[test]
    fn backup_gpt_when_the_primary_is_zeroed() {
        let mut img = disk();
        img[512..1024].fill(0);
        let (out, reads) = probe_pt_image(&img, 512);
        let PtOutcome::Gpt(t) = out else {
            panic!("{out:?}")
        };
        assert!(t.from_backup());
        assert_eq!(reads, 2);
        let (off, len) = t.entries();
        let parts: std::vec::Vec<_> = t
            .partitions(&img[off as usize..off as usize + len])
            .unwrap()
            .collect();
        assert_eq!(parts.len(), 1);
    }

    #[test]
    fn both_headers_damaged_is_pmbr() {
        let mut img = disk();
        img[512..1024].fill(0);
        let n = img.len();
        img[n - 512..].fill(0);
        assert_eq!(probe_pt_image(&img, 512).0, PtOutcome::ProtectiveMbrOnly);
        img[510] = 0;
        assert_eq!(probe_pt_image(&img, 512).0, PtOutcome::None);
    }

    #[test]
    fn damaged_primary_entries_fall_back_too() {
        let mut img = disk();
        img[1024 + 56] ^= 0x20;
        let PtOutcome::Gpt(t) = probe_pt_image(&img, 512).0 else {
            panic!()
        };
        assert!(t.from_backup());
    }

    #[test]
    fn small_devices() {
        assert_eq!(probe_pt_image(&[], 512), (PtOutcome::None, 0));
        assert_eq!(probe_pt_image(&[0; 600], 512), (PtOutcome::None, 1));
    }
}
