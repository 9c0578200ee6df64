//! Attach an image file to a loop device with `LOOP_CONFIGURE` (one ioctl: file, flags and name
//! at once), read-only unless asked otherwise, falling back to `LOOP_SET_FD` +
//! `LOOP_SET_STATUS64` on kernels older than 5.8.
//!
//! Every device is asked for direct I/O (`LO_FLAGS_DIRECT_IO`, as `losetup --direct-io`): the
//! loop device then reads and writes the image file without the page cache, so the image's
//! blocks are cached once (as the image filesystem's) instead of twice (the backing file's
//! too). A backing filesystem that cannot do direct I/O (ramfs; tmpfs before Linux 6.6; a
//! block size the loop device's sectors do not fit) gets buffered I/O instead: newer kernels
//! refuse `LOOP_CONFIGURE` with the flag (`EINVAL`), older ones drop the flag silently, so what
//! the device does is read back from the kernel ([`LoopIo`]) and the caller reports it.
//!
//! The device's logical block size is hnroot's choice, not the kernel's
//! ([`hnroot_core::loopdev::geometry`]): from the image's superblock (its filesystem's smallest
//! unit) and the backing file's direct-I/O alignment (`statx`), so that the image always mounts
//! (an XFS of 512-byte sectors on a 4Kn hostpart too) and direct I/O is asked for only at a
//! block size where it can work.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hnroot_core::loopdev::{geometry, Direct, Geometry};

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_SET_DIRECT_IO: libc::c_ulong = 0x4C08;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// How a loop device reaches its backing file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoopIo {
    /// Direct I/O: no page cache for the backing file; the image's blocks are cached once.
    Direct,
    /// Buffered I/O: the kernel would not do direct I/O on this backing file; why.
    Buffered(String),
}

impl LoopIo {
    /// The stable word for records (`io=direct`, `io=buffered`).
    pub fn code(&self) -> &'static str {
        match self {
            LoopIo::Direct => "direct",
            LoopIo::Buffered(_) => "buffered",
        }
    }
}

impl std::fmt::Display for LoopIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoopIo::Direct => f.write_str("direct I/O"),
            LoopIo::Buffered(why) => write!(
                f,
                "buffered I/O ({why}; the image's pages are cached twice, as the image file's \
                 and as its filesystem's)"
            ),
        }
    }
}

/// A configured loop device.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub node: PathBuf,
    /// Kept open so the device stays configured until the filesystem is mounted.
    pub file: File,
    /// Direct or buffered I/O, as the kernel says after configuring it.
    pub io: LoopIo,
}

/// How long to wait for devtmpfs to create `/dev/loopN` after `LOOP_CTL_GET_FREE`.
const NODE_WAIT: Duration = Duration::from_secs(5);

/// Devices tried: the one `LOOP_CTL_GET_FREE` names can be taken by another process before
/// we configure it (`EBUSY`); then ask for a free one again, as util-linux's `losetup` does.
const MAX_ATTEMPTS: usize = 16;

/// Attach `image` (an open file) to a free loop device under `dev` (normally `/dev`), named
/// `name`, read-only unless `writable`, with direct I/O where the backing filesystem allows it
/// (else buffered, said in [`LoopDevice::io`]). The device is detached automatically when its
/// last user (the mounted filesystem) goes away.
pub fn attach(
    dev: &std::path::Path,
    image: &File,
    name: &str,
    writable: bool,
) -> io::Result<LoopDevice> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev.join("loop-control"))?;
    let geometry = geometry(io_unit(image), dio_align(image));
    let mut busy = None;
    for _ in 0..MAX_ATTEMPTS {
        match attach_free(dev, &control, image, name, writable, geometry) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy = Some(e),
            done => return done,
        }
    }
    let e = busy.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY));
    Err(io::Error::new(
        e.kind(),
        format!(
            "{MAX_ATTEMPTS} free loop devices were each taken before we could configure them: {e}"
        ),
    ))
}

/// One try of [`attach`]: the device `LOOP_CTL_GET_FREE` names.
fn attach_free(
    dev: &std::path::Path,
    control: &File,
    image: &File,
    name: &str,
    writable: bool,
    geometry: Geometry,
) -> io::Result<LoopDevice> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let node = dev.join(format!("loop{n}"));
    let deadline = Instant::now() + NODE_WAIT;
    let file = loop {
        match OpenOptions::new().read(true).write(writable).open(&node) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("{}: {e}", node.display())));
            }
        }
    };
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR
            | if geometry.direct == Direct::Ask {
                LO_FLAGS_DIRECT_IO
            } else {
                0
            }
            | if writable { 0 } else { LO_FLAGS_READ_ONLY },
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    };
    let bytes = name.as_bytes();
    let len = bytes.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..len].copy_from_slice(&bytes[..len]);
    let fd = u32::try_from(image.as_raw_fd())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    match configure(&file, fd, geometry.block_size, info) {
        Ok(()) => {
            let io = match geometry.direct {
                Direct::Ask => io_of(&file, None),
                not_asked => LoopIo::Buffered(not_asked.to_string()),
            };
            return Ok(LoopDevice { node, file, io });
        }
        Err(e)
            if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOTTY) =>
        {
            return Err(e)
        }
        Err(_) => {}
    }
    // EINVAL: either a kernel that refuses direct I/O on this backing file (recent kernels,
    // 6.18 on ramfs for one, say so at once), or one without LOOP_CONFIGURE. Without the flag,
    // once more.
    info.lo_flags &= !LO_FLAGS_DIRECT_IO;
    match configure(&file, fd, geometry.block_size, info) {
        Ok(()) => {
            let why = format!(
                "the kernel refused direct I/O on the backing file: {} (its filesystem cannot \
                 do it)",
                io::Error::from_raw_os_error(libc::EINVAL)
            );
            let io = io_of(&file, Some(why));
            return Ok(LoopDevice { node, file, io });
        }
        Err(e)
            if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOTTY) =>
        {
            return Err(e)
        }
        Err(_) => {}
    }
    // Kernels before 5.8: two steps, then direct I/O asked for on its own. Their block size
    // stays the kernel's 512 (they have no `STATX_DIOALIGN`, so the geometry asked for 512).
    // SAFETY: LOOP_SET_FD takes the backing file's descriptor.
    if unsafe { libc::ioctl(file.as_raw_fd(), LOOP_SET_FD as _, image.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `info` is a valid loop_info64 that outlives the call.
    if unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            &info as *const LoopInfo64,
        )
    } != 0
    {
        let e = io::Error::last_os_error();
        // SAFETY: LOOP_CLR_FD takes no argument.
        unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CLR_FD as _) };
        return Err(e);
    }
    let why = match geometry.direct {
        Direct::Ask => {
            // SAFETY: LOOP_SET_DIRECT_IO takes an unsigned long, 1 for on.
            let r = unsafe {
                libc::ioctl(
                    file.as_raw_fd(),
                    LOOP_SET_DIRECT_IO as _,
                    1 as libc::c_ulong,
                )
            };
            (r != 0).then(|| {
                format!(
                    "the kernel refused direct I/O on the backing file: {} (its filesystem \
                     cannot do it)",
                    io::Error::last_os_error()
                )
            })
        }
        not_asked => Some(not_asked.to_string()),
    };
    let io = io_of(&file, why);
    Ok(LoopDevice { node, file, io })
}

/// `LOOP_CONFIGURE` of the open loop device `file` with the backing descriptor `fd`, at
/// `block_size` (never 0, the kernel's choice: Linux 6.18 would choose the backing file's
/// direct-I/O alignment, which an image of smaller units does not mount from).
fn configure(file: &File, fd: u32, block_size: u32, info: LoopInfo64) -> io::Result<()> {
    let config = LoopConfig {
        fd,
        block_size,
        info,
        reserved: [0; 8],
    };
    // SAFETY: `config` is a valid loop_config that outlives the call.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &config as *const LoopConfig,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What the configured device does, as the kernel says: its flags after configuring (older
/// kernels drop `LO_FLAGS_DIRECT_IO` silently where they cannot do it). `refused`: why it was
/// refused outright, if it was.
fn io_of(file: &File, refused: Option<String>) -> LoopIo {
    match (status(file), refused) {
        (Ok(info), _) if info.lo_flags & LO_FLAGS_DIRECT_IO != 0 => LoopIo::Direct,
        (_, Some(why)) => LoopIo::Buffered(why),
        (Ok(_), None) => LoopIo::Buffered(
            "the kernel turned direct I/O off (the filesystem holding the image cannot do it, \
             or its sectors are larger than the loop device's)"
                .into(),
        ),
        (Err(e), None) => LoopIo::Buffered(format!("the loop device's flags cannot be read: {e}")),
    }
}

/// `LOOP_GET_STATUS64` of an open loop device.
fn status(file: &File) -> io::Result<LoopInfo64> {
    // SAFETY: zeroed loop_info64 is a valid out-buffer.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a loop_info64 of the kernel's layout that outlives the
    // call.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            LOOP_GET_STATUS64 as _,
            &mut info as *mut LoopInfo64,
        )
    };
    if r == 0 {
        Ok(info)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The smallest unit the filesystem in the open image file `image` works in, from its
/// superblock (the core's prober); `None` when no filesystem is found (a new, empty file) or
/// it cannot be read.
fn io_unit(image: &File) -> Option<u32> {
    crate::image::probe_file(image).ok()?.info()?.io_unit
}

/// `STATX_DIOALIGN` (Linux 6.1), spelled here: not every libc target has it.
const STATX_DIOALIGN: u32 = 0x2000;

/// The alignment direct I/O on the open file `image` needs (`statx`'s `stx_dio_offset_align`),
/// when the kernel says (Linux 6.1 and later, on filesystems that report it; 0 there means
/// no direct I/O, left for the kernel to refuse).
fn dio_align(image: &File) -> Option<u32> {
    // SAFETY: zeroed statx is a valid out-buffer.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, an empty NUL-terminated name with AT_EMPTY_PATH, and an
    // out-pointer of the kernel's layout that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_statx,
            image.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            STATX_DIOALIGN,
            &mut stx as *mut libc::statx,
        )
    };
    (r == 0 && stx.stx_mask & STATX_DIOALIGN != 0 && stx.stx_dio_offset_align != 0)
        .then_some(stx.stx_dio_offset_align)
}

/// `LOOP_GET_STATUS64`: a configured loop device's `struct loop_info64`.
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;

/// Most block devices looked at when listing loop devices.
const MAX_BLOCK_DEVICES: usize = 4096;

/// A configured loop device and what backs it, as the kernel says (`LOOP_GET_STATUS64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Its kernel name (`loop3`).
    pub name: String,
    /// Its device node (`/dev/loop3`).
    pub node: PathBuf,
    /// The device number of the filesystem holding the backing file (`st_dev`).
    pub backing_dev: u64,
    /// The backing file's inode number.
    pub backing_ino: u64,
    /// The backing file's own device number when it is a device node (`st_rdev`), else 0.
    pub backing_rdev: u64,
}

impl Attached {
    /// Whether the file with this `stat` backs it.
    #[allow(clippy::unnecessary_cast)] // st_dev's and st_ino's widths differ between libcs.
    pub fn backed_by(&self, st: &libc::stat) -> bool {
        self.backing_dev == st.st_dev as u64 && self.backing_ino == st.st_ino as u64
    }
}

/// Every configured loop device: `sys_block` (`/sys/block`) lists them, each asked through its
/// node under `dev` (`/dev`). A device that cannot be asked is left out.
pub fn attached(sys_block: &std::path::Path, dev: &std::path::Path) -> Vec<Attached> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.take(MAX_BLOCK_DEVICES).flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with("loop") || !sys_block.join(&name).join("loop").is_dir() {
            continue;
        }
        let node = dev.join(&name);
        let Ok(file) = OpenOptions::new().read(true).open(&node) else {
            continue;
        };
        let Ok(info) = status(&file) else {
            continue;
        };
        out.push(Attached {
            name,
            node,
            backing_dev: info.lo_device,
            backing_ino: info.lo_inode,
            backing_rdev: info.lo_rdevice,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The loop devices the open file `file` backs (none: nothing uses it as a disk).
pub fn backed_by(file: &File) -> io::Result<Vec<Attached>> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and out-pointer.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attached(
        std::path::Path::new("/sys/block"),
        std::path::Path::new("/dev"),
    )
    .into_iter()
    .filter(|a| a.backed_by(&st))
    .collect())
}
