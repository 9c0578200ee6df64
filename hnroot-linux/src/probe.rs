//! Drives `hnroot-core`'s probers over a block device or an image file with positioned reads
//! (`pread`), counting them: the filesystem on the whole device, its partition table, and the
//! filesystem in each partition. Decides nothing itself; it only carries bytes to the core.
//!
//! Reads are exactly what the probers ask for: the kernel's read-ahead is off for every device
//! opened here (`POSIX_FADV_RANDOM`; a 64 KiB read would otherwise pull in 128 KiB, and the
//! next run finds none of it cached, since closing a block device drops its page cache). The
//! first read of a device of 1 MiB or more takes the btrfs superblock right after the first
//! 64 KiB with it, so that probing the head costs one read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hnroot_core::probe::{
    btrfs, run, FsInfo, FsOutcome, FsProber, Partition, ProbeStep, PtOutcome, PtProber, Read,
    HEAD_LEN, MAX_FS_READS,
};
use hnroot_core::PartUuid;

/// Logical sector size when the kernel does not say (image files).
pub const DEFAULT_SECTOR_SIZE: u32 = 512;
/// Size Linux gives the device node of an MBR extended partition.
const EXTENDED_NODE_SIZE: u64 = 1024;
/// Most logical partitions read from an MBR's extended partition chain.
const MAX_LOGICAL_PARTITIONS: usize = 256;

/// An open device or image file, with the reads made so far.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
    size: u64,
    /// Known, or looked up in sysfs when a partition table is probed.
    sector_size: Option<u32>,
    reads: u64,
    /// The bytes of the last read, reused for the next.
    buf: Vec<u8>,
    /// Where the last read was and how many bytes it got (`None`: `buf` holds nothing read).
    buf_at: Option<(u64, usize)>,
}

/// The partition table of a disk, with its partitions.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Table {
    /// Which table.
    pub kind: TableKind,
    /// Its partitions, in table order.
    pub partitions: Vec<Partition>,
}

/// Kinds of partition tables, as blkid's `PTTYPE`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TableKind {
    /// `gpt`.
    Gpt {
        /// `PTUUID`: the disk GUID.
        disk_guid: PartUuid,
        /// The primary header is damaged and the backup was used.
        from_backup: bool,
    },
    /// `dos`.
    Mbr {
        /// `PTUUID`: the disk signature, unless 0.
        disk_id: Option<u32>,
    },
    /// `PMBR`: a protective MBR whose GPT is unusable; no partitions.
    ProtectiveMbrOnly,
}

impl TableKind {
    /// blkid's `PTTYPE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TableKind::Gpt { .. } => "gpt",
            TableKind::Mbr { .. } => "dos",
            TableKind::ProtectiveMbrOnly => "PMBR",
        }
    }

    /// blkid's `PTUUID`.
    pub fn ptuuid(&self) -> Option<String> {
        match self {
            TableKind::Gpt { disk_guid, .. } => Some(disk_guid.to_string()),
            TableKind::Mbr { disk_id } => disk_id.map(|id| format!("{id:08x}")),
            TableKind::ProtectiveMbrOnly => None,
        }
    }
}

/// Everything about one disk (or image): its own filesystem, its table, and the filesystem
/// of each partition.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DiskReport {
    /// Size in bytes.
    pub size: u64,
    /// The filesystem on the whole device.
    pub fs: FsOutcome,
    /// The partition table, if any.
    pub table: Option<Table>,
    /// Each partition with the filesystem inside it.
    pub partitions: Vec<(Partition, FsOutcome)>,
}

impl Device {
    /// Open `path` read-only. The size is the end of the file or block device; the logical
    /// sector size comes from sysfs for block devices (looked up when first needed), 512
    /// otherwise.
    pub fn open(path: &Path) -> io::Result<Device> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        // Never block on a FIFO or a terminal: only files and block devices are probed.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)?;
        let kind = file.metadata()?.file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or a block device: nothing to probe",
            ));
        }
        let size = device_size(&file)?;
        no_read_ahead(&file);
        Ok(Device {
            file,
            path: path.to_path_buf(),
            size,
            sector_size: None,
            reads: 0,
            buf: Vec::new(),
            buf_at: None,
        })
    }

    /// Use an open file whose size and logical sector size are already known.
    pub fn from_file(file: File, path: &Path, size: u64, sector_size: u32) -> Device {
        no_read_ahead(&file);
        Device {
            file,
            path: path.to_path_buf(),
            size,
            sector_size: Some(sector_size),
            reads: 0,
            buf: Vec::new(),
            buf_at: None,
        }
    }

    /// Use `buf` for its reads (a buffer an earlier device gave back with
    /// [`Device::into_buffer`]: one allocation for many devices).
    pub fn with_buffer(mut self, buf: Vec<u8>) -> Device {
        self.buf = buf;
        self.buf_at = None;
        self
    }

    /// Its read buffer, for the next device.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// The path it was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Logical sector size in bytes.
    pub fn sector_size(&mut self) -> u32 {
        *self
            .sector_size
            .get_or_insert_with(|| logical_sector_size(&self.file).unwrap_or(DEFAULT_SECTOR_SIZE))
    }

    /// `pread` calls made so far.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// `len` bytes at `offset`, fewer at the end of the device.
    pub fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        Ok(self.read_into_buf(offset, len)?.to_vec())
    }

    /// `len` bytes at `offset` (fewer at the end of the device) into the device's own buffer,
    /// reused from read to read: no allocation, no fresh pages to fault in, per read.
    fn read_into_buf(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        self.buf_at = None;
        if self.buf.len() < len {
            // Zeroed by the allocator (fresh pages are), not by a pass over it.
            self.buf = vec![0u8; len];
        }
        let Some(buf) = self.buf.get_mut(..len) else {
            return Ok(&[]);
        };
        let mut got = 0usize;
        // Bounded: each round either reads at least one byte or stops.
        while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
            self.reads = self.reads.saturating_add(1);
            let at = offset.saturating_add(got as u64);
            match self.file.read_at(rest, at) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "reading {len} bytes at offset {offset} of {}: {e}",
                            self.path.display()
                        ),
                    ))
                }
            }
        }
        self.buf_at = Some((offset, got));
        Ok(self.buf.get(..got).unwrap_or(&[]))
    }

    /// The bytes the filesystem prober asks for (`r`, relative to `base`): from the bytes of
    /// the last read when they hold them; the head together with the btrfs superblock behind
    /// it when the device has room for one.
    fn read_for_prober(&mut self, base: u64, size: u64, r: Read) -> io::Result<&[u8]> {
        let at = base.saturating_add(r.offset);
        if let Some((start, len)) = self.buf_at {
            if at >= start {
                let from = usize::try_from(at - start).unwrap_or(usize::MAX);
                if from.checked_add(r.len).is_some_and(|end| end <= len) {
                    return Ok(self.buf.get(from..from + r.len).unwrap_or(&[]));
                }
            }
        }
        let with_btrfs = r.offset == 0
            && r.len == HEAD_LEN
            && btrfs::SB_OFFSET == HEAD_LEN as u64
            && size >= btrfs::SB_OFFSET.saturating_add(btrfs::SB_LEN as u64);
        if !with_btrfs {
            return self.read_into_buf(at, r.len);
        }
        let both = self.read_into_buf(at, HEAD_LEN + btrfs::SB_LEN)?;
        Ok(both.get(..HEAD_LEN).unwrap_or(both))
    }

    /// The filesystem in the `size` bytes at `offset` (the whole device: `0, self.size()`).
    pub fn probe_fs(&mut self, offset: u64, size: u64) -> io::Result<FsOutcome> {
        self.drive_fs(offset, size, None::<fn(&FsInfo) -> bool>)?
            .ok_or_else(|| self.unfinished())
    }

    /// [`Device::probe_fs`] for a search: it stops reading once the device cannot hold a
    /// filesystem `wanted` accepts (the core's [`FsProber::may_find`]), and then answers `None`.
    /// A device that may hold one is probed to the end, as blkid would: `Some` outcome.
    pub fn probe_fs_for(
        &mut self,
        offset: u64,
        size: u64,
        wanted: impl Fn(&FsInfo) -> bool,
    ) -> io::Result<Option<FsOutcome>> {
        self.drive_fs(offset, size, Some(wanted))
    }

    fn drive_fs(
        &mut self,
        offset: u64,
        size: u64,
        wanted: Option<impl Fn(&FsInfo) -> bool>,
    ) -> io::Result<Option<FsOutcome>> {
        self.buf_at = None;
        let mut prober = FsProber::new(size);
        for _ in 0..=MAX_FS_READS {
            match prober.step() {
                ProbeStep::Read(_) if wanted.as_ref().is_some_and(|w| !prober.may_find(w)) => {
                    return Ok(None)
                }
                ProbeStep::Read(r) => {
                    let data = self.read_for_prober(offset, size, r)?;
                    prober.feed(data);
                }
                ProbeStep::Done(outcome) => return Ok(Some(outcome)),
            }
        }
        Err(self.unfinished())
    }

    fn unfinished(&self) -> io::Error {
        io::Error::other(format!(
            "filesystem probe of {} did not finish within {MAX_FS_READS} reads (a bug in hnroot)",
            self.path.display()
        ))
    }

    /// The partition table, with its partitions.
    pub fn probe_table(&mut self) -> io::Result<Option<Table>> {
        let sector_size = self.sector_size();
        let outcome = run(&mut PtProber::new(self.size, sector_size), |r| {
            self.read_at(r.offset, r.len)
        })?;
        let Some(outcome) = outcome else {
            return Err(io::Error::other(format!(
                "partition table probe of {} did not finish (a bug in hnroot)",
                self.path.display()
            )));
        };
        Ok(match outcome {
            PtOutcome::None => None,
            PtOutcome::ProtectiveMbrOnly => Some(Table {
                kind: TableKind::ProtectiveMbrOnly,
                partitions: Vec::new(),
            }),
            PtOutcome::Gpt(table) => {
                let (offset, len) = table.entries();
                let entries = self.read_at(offset, len)?;
                let partitions = table
                    .partitions(&entries)
                    .map_err(|e| {
                        io::Error::other(format!(
                            "GPT of {} changed while it was read: {e}",
                            self.path.display()
                        ))
                    })?
                    .collect();
                Some(Table {
                    kind: TableKind::Gpt {
                        disk_guid: table.disk_guid(),
                        from_backup: table.from_backup(),
                    },
                    partitions,
                })
            }
            PtOutcome::Mbr(table) => {
                let mut partitions: Vec<Partition> = table.primaries().collect();
                if let Some(mut walker) = table.logical() {
                    // Bounded by the walker (mbr::MAX_EBRS records) and by this count.
                    for _ in 0..MAX_LOGICAL_PARTITIONS * 2 {
                        match walker.step() {
                            ProbeStep::Read(r) => {
                                let data = self.read_at(r.offset, r.len)?;
                                walker.feed(&data);
                            }
                            ProbeStep::Done(Some(p))
                                if partitions.len() < MAX_LOGICAL_PARTITIONS =>
                            {
                                partitions.push(p)
                            }
                            ProbeStep::Done(_) => break,
                        }
                    }
                }
                Some(Table {
                    kind: TableKind::Mbr {
                        disk_id: table.ptuuid(),
                    },
                    partitions,
                })
            }
        })
    }

    /// The whole device: its filesystem, its table, and each partition's filesystem (a
    /// partition reaching past the end of an image is probed as far as the image goes).
    pub fn probe_disk(&mut self) -> io::Result<DiskReport> {
        let fs = self.probe_fs(0, self.size)?;
        let table = self.probe_table()?;
        let mut partitions = Vec::new();
        for p in table.iter().flat_map(|t| t.partitions.iter()) {
            let room = self.size.saturating_sub(p.start);
            // The kernel's node for an extended partition is 1 KiB long: blkid finds nothing.
            let size = if p.kind.is_mbr_extended() {
                EXTENDED_NODE_SIZE
            } else {
                p.size
            };
            let outcome = self.probe_fs(p.start, size.min(room))?;
            partitions.push((p.clone(), outcome));
        }
        Ok(DiskReport {
            size: self.size,
            fs,
            table,
            partitions,
        })
    }
}

/// Turn the kernel's read-ahead off for `file`: the probers ask for exactly what they need.
/// Only a hint: a file that does not take it is read as it is.
fn no_read_ahead(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor owned by `file` for the duration of the call; the call only
    // changes how the kernel reads ahead on it.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
    }
}

/// Size of an open file or block device: where a seek to the end lands.
fn device_size(file: &File) -> io::Result<u64> {
    use std::io::Seek;
    let mut f = file;
    f.seek(io::SeekFrom::End(0))
}

/// The logical sector size of a block device from sysfs (its own `queue/`, or its parent's
/// for a partition); `None` for anything else.
fn logical_sector_size(file: &File) -> Option<u32> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    ["queue/logical_block_size", "../queue/logical_block_size"]
        .iter()
        .find_map(|p| std::fs::read_to_string(base.join(p)).ok())
        .and_then(|s| s.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn short_reads_at_the_end() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[7u8; 100]).unwrap();
        let mut d = Device::open(f.path()).unwrap();
        assert_eq!(d.size(), 100);
        assert_eq!(d.read_at(90, 20).unwrap(), vec![7u8; 10]);
        assert_eq!(d.read_at(200, 20).unwrap(), Vec::<u8>::new());
        assert!(d.reads() >= 2);
    }

    #[test]
    fn an_empty_file_is_nothing() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut d = Device::open(f.path()).unwrap();
        let r = d.probe_disk().unwrap();
        assert_eq!(r.fs, FsOutcome::Unknown);
        assert_eq!(r.table, None);
        assert_eq!(d.reads(), 0);
    }
}
