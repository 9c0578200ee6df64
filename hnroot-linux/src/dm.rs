//! device-mapper through its control node (`/dev/mapper/control`, the kernel's
//! `linux/dm-ioctl.h`, interface version 4): create the read-only dm-verity device a sealed
//! image is mounted through, read a device's status (dm-verity says `V`, verified so far, or
//! `C`, a corrupt block was read), remove a device.
//!
//! The ioctls are spoken here rather than through a crate or a tool: the maintained Rust crate
//! (`devicemapper`, Stratis's) links libdevmapper found by pkg-config and generates its
//! bindings with bindgen at build time, which the static musl `hnroot-init` cannot carry, and
//! `veritysetup` would bring libcryptsetup, libdevmapper and a crypto library into an
//! initramfs that has one static binary. Five commands of a stable ABI are enough; the layout
//! is written out byte by byte (no struct is reinterpreted) and checked against the kernel in
//! the QEMU suites.
//!
//! The verification itself (the root hash, the tree's layout, the table line) is decided by
//! `hnroot_core::seal`; this module only hands the kernel what it was given.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `sizeof(struct dm_ioctl)`.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC: usize = 40;
const DM_NAME_LEN: usize = 128;
const DM_MAX_TYPE_NAME: usize = 16;
/// The interface version asked for: 4.0.0 (any 4.x kernel answers).
const VERSION: [u32; 3] = [4, 0, 0];

// Offsets in `struct dm_ioctl`.
const O_DATA_SIZE: usize = 12;
const O_DATA_START: usize = 16;
const O_TARGET_COUNT: usize = 20;
const O_FLAGS: usize = 28;
const O_DEV: usize = 40;
const O_NAME: usize = 48;

// Commands.
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;
const DM_TABLE_STATUS: u8 = 12;

// Flags.
const DM_READONLY_FLAG: u32 = 1 << 0;
const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;

/// `_IOWR(0xfd, cmd, struct dm_ioctl)`.
const fn request(cmd: u8) -> libc::c_ulong {
    (3 << 30) | ((HEADER as libc::c_ulong) << 16) | (0xfd << 8) | cmd as libc::c_ulong
}

/// The name every `hnroot-init` gives the verified root device (`/dev/mapper/hnroot-root` once
/// udev runs): the running system's `hnroot status` asks the kernel about it by this name.
pub const ROOT_NAME: &str = "hnroot-root";

/// How long devtmpfs may take to show `/dev/dm-N` after the device is created.
const NODE_WAIT: Duration = Duration::from_secs(5);

/// The control node.
fn control(dev: &Path) -> io::Result<File> {
    let path = dev.join("mapper/control");
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: {e} (device-mapper, dm_mod, is not loaded or not built)",
                    path.display()
                ),
            )
        })
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(s) = buf.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    if let Some(s) = buf.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

/// A NUL-terminated text from `buf` at `at` (at most `max` bytes).
fn get_text(buf: &[u8], at: usize, max: usize) -> String {
    let s = buf
        .get(at..buf.len().min(at.saturating_add(max)))
        .unwrap_or_default();
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    String::from_utf8_lossy(s.get(..end).unwrap_or_default()).into_owned()
}

/// A request buffer of `size` bytes (a multiple of 8) for device `name`.
fn buffer(name: &str, size: usize, flags: u32) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device-mapper name {name:?}: 1 to 127 bytes, no '/'"),
        ));
    }
    let mut buf = vec![0u8; size];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, i * 4, *v);
    }
    put_u32(
        &mut buf,
        O_DATA_SIZE,
        u32::try_from(size).unwrap_or(u32::MAX),
    );
    put_u32(&mut buf, O_DATA_START, HEADER as u32);
    put_u32(&mut buf, O_FLAGS, flags);
    if let Some(s) = buf.get_mut(O_NAME..O_NAME + name.len()) {
        s.copy_from_slice(name.as_bytes());
    }
    Ok(buf)
}

/// One command on the control node; `buf` is the request and receives the answer. The error
/// is the kernel's, with its errno.
fn raw(ctl: &File, cmd: u8, buf: &mut [u8]) -> io::Result<()> {
    if buf.len() < HEADER || buf.len() != get_u32(buf, O_DATA_SIZE) as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `buf` is a writable `struct dm_ioctl` of `data_size` bytes (checked above); the
    // kernel reads and writes at most `data_size` bytes of it.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), request(cmd) as _, buf.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`raw`], the error saying `what` was asked.
fn call(ctl: &File, cmd: u8, buf: &mut [u8], what: &str) -> io::Result<()> {
    raw(ctl, cmd, buf).map_err(|e| io::Error::new(e.kind(), format!("device-mapper {what}: {e}")))
}

/// A device-mapper device created here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmDevice {
    /// Its name (`hnroot-root`).
    pub name: String,
    /// Its node under the `dev` it was created with (`/dev/dm-0`).
    pub node: PathBuf,
}

/// `MAJOR:MINOR` of the block device at `node`, as a table names its devices.
pub fn dev_numbers(node: &Path) -> io::Result<String> {
    let meta = std::fs::metadata(node)?;
    if !meta.file_type().is_block_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a block device", node.display()),
        ));
    }
    let rdev = meta.rdev();
    Ok(format!("{}:{}", libc::major(rdev), libc::minor(rdev)))
}

/// Create the read-only device `name` of `sectors` 512-byte sectors with one `target` line
/// (`verity` and its parameters, from `hnroot_core::seal::Verity::dm_table`), activate it,
/// and wait for its node under `dev`. On a failure after the device exists, it is removed
/// again.
pub fn create_readonly(
    dev: &Path,
    name: &str,
    sectors: u64,
    target: &str,
    params: &str,
) -> io::Result<DmDevice> {
    if target.is_empty() || target.len() >= DM_MAX_TYPE_NAME || params.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device-mapper target {target:?} or its parameters"),
        ));
    }
    let ctl = control(dev)?;
    let mut create = buffer(name, HEADER, 0)?;
    call(&ctl, DM_DEV_CREATE, &mut create, &format!("create {name}"))?;
    let devno = get_u64(&create, O_DEV);
    let node = dev.join(format!("dm-{}", libc::minor(devno as libc::dev_t)));
    let loaded = load_and_resume(&ctl, name, sectors, target, params)
        .and_then(|()| wait_for_node(&node, devno));
    match loaded {
        Ok(()) => Ok(DmDevice {
            name: name.to_owned(),
            node,
        }),
        Err(e) => {
            let _ = remove_with(&ctl, name);
            Err(e)
        }
    }
}

fn load_and_resume(
    ctl: &File,
    name: &str,
    sectors: u64,
    target: &str,
    params: &str,
) -> io::Result<()> {
    // The parameters, NUL-terminated, padded so the next spec would be 8-aligned.
    let params_len = (params.len() + 1).next_multiple_of(8);
    let size = HEADER + SPEC + params_len;
    let mut load = buffer(name, size, DM_READONLY_FLAG)?;
    put_u32(&mut load, O_TARGET_COUNT, 1);
    let spec = HEADER;
    put_u64(&mut load, spec, 0);
    put_u64(&mut load, spec + 8, sectors);
    put_u32(
        &mut load,
        spec + 20,
        u32::try_from(SPEC + params_len).unwrap_or(0),
    );
    if let Some(s) = load.get_mut(spec + 24..spec + 24 + target.len()) {
        s.copy_from_slice(target.as_bytes());
    }
    if let Some(s) = load.get_mut(spec + SPEC..spec + SPEC + params.len()) {
        s.copy_from_slice(params.as_bytes());
    }
    call(
        ctl,
        DM_TABLE_LOAD,
        &mut load,
        &format!("load the {target} table of {name}"),
    )?;
    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG: resume, which makes the loaded table live.
    let mut resume = buffer(name, HEADER, 0)?;
    call(
        ctl,
        DM_DEV_SUSPEND,
        &mut resume,
        &format!("activate {name}"),
    )
}

fn wait_for_node(node: &Path, devno: u64) -> io::Result<()> {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        match std::fs::metadata(node) {
            Ok(m) if m.file_type().is_block_device() && m.rdev() == devno => return Ok(()),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not the device-mapper device {}:{}",
                    node.display(),
                    libc::major(devno as libc::dev_t),
                    libc::minor(devno as libc::dev_t)
                )))
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{} did not appear within {} s: {e}",
                        node.display(),
                        NODE_WAIT.as_secs()
                    ),
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn remove_with(ctl: &File, name: &str) -> io::Result<()> {
    let mut buf = buffer(name, HEADER, 0)?;
    call(ctl, DM_DEV_REMOVE, &mut buf, &format!("remove {name}"))
}

/// Remove the device `name` (it must not be open).
pub fn remove(dev: &Path, name: &str) -> io::Result<()> {
    remove_with(&control(dev)?, name)
}

/// One target of a device's live table, with its status text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// Its target type (`verity`).
    pub target: String,
    /// The target's status text (dm-verity: `V`, or `C` once a corrupt block was read).
    pub status: String,
}

/// The status of each target of device `name`; `Ok(None)` when there is no such device (or no
/// device-mapper at all).
pub fn status(dev: &Path, name: &str) -> io::Result<Option<Vec<TargetStatus>>> {
    let ctl = match control(dev) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = 16 * 1024;
    let mut buf = buffer(name, size, 0)?;
    match raw(&ctl, DM_TABLE_STATUS, &mut buf) {
        Ok(()) => {}
        // No device of that name.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("device-mapper status of {name}: {e}"),
            ))
        }
    }
    if get_u32(&buf, O_FLAGS) & DM_BUFFER_FULL_FLAG != 0 {
        return Err(io::Error::other(format!(
            "device-mapper status of {name}: longer than {size} bytes"
        )));
    }
    let start = get_u32(&buf, O_DATA_START) as usize;
    let count = get_u32(&buf, O_TARGET_COUNT);
    let mut out = Vec::new();
    let mut at = start;
    for _ in 0..count.min(64) {
        if at.saturating_add(SPEC) > buf.len() {
            break;
        }
        out.push(TargetStatus {
            target: get_text(&buf, at + 24, DM_MAX_TYPE_NAME),
            status: get_text(&buf, at + SPEC, buf.len()),
        });
        // On a status answer `next` counts from the first spec.
        let next = get_u32(&buf, at + 20) as usize;
        if next == 0 {
            break;
        }
        at = start.saturating_add(next);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_match_the_kernels_numbers() {
        // From <linux/dm-ioctl.h> as the C compiler computes them.
        assert_eq!(request(DM_DEV_CREATE), 0xc138_fd03);
        assert_eq!(request(DM_TABLE_LOAD), 0xc138_fd09);
        assert_eq!(request(DM_TABLE_STATUS), 0xc138_fd0c);
    }

    #[test]
    fn a_request_carries_version_size_and_name() {
        let b = buffer("hnroot-root", 320, DM_READONLY_FLAG).unwrap();
        assert_eq!(get_u32(&b, 0), 4);
        assert_eq!(get_u32(&b, O_DATA_SIZE), 320);
        assert_eq!(get_u32(&b, O_DATA_START), 312);
        assert_eq!(get_u32(&b, O_FLAGS), 1);
        assert_eq!(get_text(&b, O_NAME, DM_NAME_LEN), "hnroot-root");
        assert!(buffer("a/b", 312, 0).is_err());
        assert!(buffer(&"x".repeat(128), 312, 0).is_err());
    }
}
