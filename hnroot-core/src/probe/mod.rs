//! Probes that recognise filesystems (FAT, ext2/3/4, XFS, btrfs) and partition tables (GPT,
//! MBR) exactly as libblkid does, so that GRUB, the initramfs and `blkid` agree on which device
//! is `LABEL=hostpart`. They never perform I/O: a prober asks for the bytes it needs
//! ([`ProbeStep::Read`]), the driver reads them and hands them back ([`FsProber::feed`]), and at the
//! end the prober answers ([`ProbeStep::Done`]). [`run`] is that loop, bounded:
//!
//! ```text
//! let outcome = run(&mut FsProber::new(device_size), |read| device_bytes_at(read.offset, read.len))?;
//! ```
//!
//! (the GRUB module drives the same probers from C through `hnroot-ffi`, step by step).
//!
//! The behavioural reference is util-linux's libblkid (`libblkid/src/superblocks/{vfat,ext,
//! xfs,btrfs}.c`, `superblocks.c` for the probing order and "ambivalent result", and
//! `libblkid/src/partitions/{gpt,dos}.c`). The probers read as little as possible: one read of
//! the first 64 KiB serves the FAT, ext and XFS superblocks, a second the btrfs superblock, a
//! third the RAID member signatures at the end of the device; only a FAT root directory
//! outside the first read costs more (see [`FsProber`]).
//!
//! Every parser checks length, then magic, then checksum, then flags, and returns a typed
//! reason when a buffer is not its filesystem; none of them can panic on any input.

mod bytes;
mod label;

pub mod btrfs;
pub mod ext;
pub mod fs;
pub mod gpt;
pub mod mbr;
pub mod other;
pub mod pt;
pub mod vfat;
pub mod xfs;

pub use fs::{
    probe_fs_image, FsInfo, FsOutcome, FsProber, FsType, FsTypes, HEAD_LEN, MAX_FS_READS,
};
pub use label::{Label, LABEL_CAPACITY};
pub use other::OtherType;
pub use pt::{probe_pt_image, Partition, PartitionKind, PtOutcome, PtProber, MAX_PT_READS};

/// Largest read a prober ever asks for, in bytes.
pub const MAX_READ: usize = 64 * 1024;

/// The bytes a prober needs next: `len` bytes at byte `offset` of the device (or of the
/// partition being probed). `len` is never 0 and never more than [`MAX_READ`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Read {
    /// Byte offset from the start of the device.
    pub offset: u64,
    /// Number of bytes.
    pub len: usize,
}

impl Read {
    /// One past the last byte, saturating.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len as u64)
    }

    /// The part of `data` (the bytes read for `self`) that holds `inner`, if all of it is
    /// there.
    pub(crate) fn sub<'d>(&self, data: &'d [u8], inner: Read) -> Option<&'d [u8]> {
        let start = inner.offset.checked_sub(self.offset)?;
        let start = usize::try_from(start).ok()?;
        data.get(start..start.checked_add(inner.len)?)
    }
}

/// What a prober wants next.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ProbeStep<T> {
    /// Read these bytes and hand them to `feed`.
    Read(Read),
    /// The answer; further calls to `step` return it again.
    Done(T),
}

/// A prober [`run`] can drive: [`FsProber`] and [`PtProber`].
pub trait Prober {
    /// Its answer.
    type Outcome;
    /// Most reads it asks for before it answers.
    const MAX_READS: u32;
    /// What to do next.
    fn step(&mut self) -> ProbeStep<Self::Outcome>;
    /// The bytes of the read `step` asked for (fewer when the device ended).
    fn feed(&mut self, data: &[u8]);
}

/// Drive `prober` to its answer, `read` giving the bytes of each read it asks for (fewer at
/// the end of the device); an error of `read` stops the run. `Ok(None)` when the prober has
/// not answered after [`Prober::MAX_READS`] reads, which would be a bug in it.
pub fn run<P: Prober, B: AsRef<[u8]>, E>(
    prober: &mut P,
    mut read: impl FnMut(Read) -> Result<B, E>,
) -> Result<Option<P::Outcome>, E> {
    for _ in 0..=P::MAX_READS {
        match prober.step() {
            ProbeStep::Read(r) => {
                let data = read(r)?;
                prober.feed(data.as_ref());
            }
            ProbeStep::Done(outcome) => return Ok(Some(outcome)),
        }
    }
    Ok(None)
}

/// The bytes of `read` in a device held in memory: fewer (or none) past its end.
pub fn bytes_of(image: &[u8], read: Read) -> &[u8] {
    let start = usize::try_from(read.offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(read.len).min(image.len());
    image.get(start..end).unwrap_or(&[])
}
