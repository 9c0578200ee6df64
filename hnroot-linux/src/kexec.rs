//! The running kernel's kexec, for `hnroot reboot`: an image's `/boot/kernel` and
//! `/boot/initramfs` opened read-only from the image mounted read-only (the file checked to be
//! the image the decision chose, by its UUID), loaded with `kexec_file_load(2)`, unloaded again
//! after a failure, and the jump itself when no service manager runs. It decides nothing:
//! which image, which command line and what a failure leaves are `hnroot_core::reboot`'s.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use hnroot_core::layout;
use hnroot_core::uuid::FsUuid;
use hnroot_core::verdict::Verdict;

use crate::fsat::{InRoot, ReadError};
use crate::image::{self, Inspect};
use crate::{loopdev, mounts};

/// Where the kernel says whether kexec is built in (`CONFIG_KEXEC_CORE`) and a kernel loaded.
const KEXEC_LOADED: &str = "/sys/kernel/kexec_loaded";
/// Where the kernel says whether loading kernels was switched off until the next boot.
const LOAD_DISABLED: &str = "/proc/sys/kernel/kexec_load_disabled";
/// The directory that exists while systemd is the service manager (`sd_booted(3)`).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// Why the chosen image's boot files could not be opened, or the kernel not loaded.
#[derive(Debug, thiserror::Error)]
pub enum KexecError {
    /// The image file could not be opened read-only.
    #[error("cannot open {name} read-only: {source}")]
    Open {
        /// Its file name on hostpart.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// The file is not the bootable image with the UUID the decision chose (it changed).
    #[error("{name} is no longer the bootable image with UUID {uuid} the decision chose")]
    Changed {
        /// Its file name.
        name: String,
        /// The UUID chosen.
        uuid: FsUuid,
    },
    /// Attaching or mounting the image read-only failed.
    #[error("cannot mount {name} read-only to read its kernel: {what}")]
    Mount {
        /// Its file name.
        name: String,
        /// What failed.
        what: String,
    },
    /// `/boot/kernel` or `/boot/initramfs` could not be opened in the image.
    #[error("cannot open /{path} in {name}: {source}")]
    BootFile {
        /// Its file name.
        name: String,
        /// The path inside it.
        path: &'static str,
        /// Why.
        source: ReadError,
    },
    /// The command line holds a NUL byte (never, from the core's encoder).
    #[error("the kernel command line holds a NUL byte")]
    Cmdline,
    /// The running kernel has no `kexec_file_load`, or may not use it (`ENOSYS`, or `EPERM`
    /// with loading disabled).
    #[error("kexec_file_load: {0}")]
    Unsupported(io::Error),
    /// The running kernel refused the kernel (`ENOEXEC`: not a kernel it can load;
    /// `EKEYREJECTED`/`EPERM`: a signature it refuses under lockdown; ...).
    #[error("kexec_file_load: {0}")]
    Refused(io::Error),
}

/// What the running kernel says about kexec without changing anything: `Ok` when it can load a
/// kernel from files, else why not.
pub fn available() -> Result<(), String> {
    if !Path::new(KEXEC_LOADED).exists() {
        return Err(format!(
            "{KEXEC_LOADED} does not exist: this kernel is built without kexec"
        ));
    }
    match std::fs::read_to_string(LOAD_DISABLED) {
        Ok(v) if v.trim() == "1" => Err(format!(
            "{LOAD_DISABLED} is 1: loading kernels is switched off until the next boot"
        )),
        _ => Ok(()),
    }
}

/// Whether a kernel is loaded for a kexec now (`None` when the kernel does not say).
pub fn loaded() -> Option<bool> {
    std::fs::read_to_string(KEXEC_LOADED)
        .ok()
        .map(|v| v.trim() == "1")
}

/// Whether systemd runs as the service manager (then `systemctl kexec` stops the services
/// before the jump).
pub fn service_manager_runs() -> bool {
    Path::new(SYSTEMD_RUNNING).is_dir()
}

/// The image `name` in hostpart's top directory `hostpart` mounted read-only (a read-only loop
/// device, no journal replay) for as long as this lives.
struct Mounted {
    dir: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = mounts::umount(&self.dir, libc::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn mount_image(
    hostpart: &std::os::fd::OwnedFd,
    name: &str,
    uuid: FsUuid,
    inspect: &Inspect,
) -> Result<Mounted, KexecError> {
    let file = image::open_in_root(hostpart, name).map_err(|source| KexecError::Open {
        name: name.to_owned(),
        source,
    })?;
    let fs_type = match image::judge_file(&file, inspect).verdict {
        Verdict::Bootable(b) if b.uuid == uuid => b.fs_type,
        _ => {
            return Err(KexecError::Changed {
                name: name.to_owned(),
                uuid,
            })
        }
    };
    let mount_err = |what: String| KexecError::Mount {
        name: name.to_owned(),
        what,
    };
    let lo = loopdev::attach(&inspect.dev, &file, "hnroot-kexec", false)
        .map_err(|e| mount_err(format!("attaching a read-only loop device: {e}")))?;
    mounts::mkdir_p(&inspect.scratch).map_err(|e| mount_err(e.to_string()))?;
    let dir = image::tempdir_in(&inspect.scratch)
        .map_err(|e| mount_err(format!("making a mount point: {e}")))?;
    let mounted = Mounted { dir };
    mounts::mount_image_readonly(&lo.node, fs_type, &mounted.dir)
        .map_err(|e| mount_err(e.to_string()))?;
    Ok(mounted)
}

/// Load the kernel and initramfs of the image `name` (which must still be the bootable image
/// with `uuid`) in hostpart's top directory for a kexec with `cmdline`. The image is mounted
/// read-only for the load alone; the files are opened read-only, links resolved inside it.
pub fn load_image(
    hostpart: &std::os::fd::OwnedFd,
    name: &str,
    uuid: FsUuid,
    cmdline: &str,
    inspect: &Inspect,
) -> Result<(), KexecError> {
    let mounted = mount_image(hostpart, name, uuid, inspect)?;
    let root = InRoot::open(&mounted.dir).map_err(|e| KexecError::Mount {
        name: name.to_owned(),
        what: e.to_string(),
    })?;
    let open = |path: &'static str| {
        root.open_file(path).map_err(|source| KexecError::BootFile {
            name: name.to_owned(),
            path,
            source,
        })
    };
    let kernel = open(layout::KERNEL_PATH)?;
    let initramfs = open(layout::INITRAMFS_PATH)?;
    load(&kernel, &initramfs, cmdline)
}

/// `kexec_file_load(kernel, initramfs, cmdline)`.
pub fn load(kernel: &File, initramfs: &File, cmdline: &str) -> Result<(), KexecError> {
    let line = CString::new(cmdline).map_err(|_| KexecError::Cmdline)?;
    let len = line.as_bytes_with_nul().len();
    // SAFETY: two open descriptors, a NUL-terminated line of `len` bytes with its NUL.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initramfs.as_raw_fd(),
            len,
            line.as_ptr(),
            0 as libc::c_ulong,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    let disabled = std::fs::read_to_string(LOAD_DISABLED).is_ok_and(|v| v.trim() == "1");
    match e.raw_os_error() {
        Some(libc::ENOSYS) => Err(KexecError::Unsupported(e)),
        Some(libc::EPERM) if disabled => Err(KexecError::Unsupported(e)),
        _ => Err(KexecError::Refused(e)),
    }
}

/// Unload a kernel loaded for a kexec (`KEXEC_FILE_UNLOAD`).
pub fn unload() -> io::Result<()> {
    // SAFETY: no descriptors or pointers are read with KEXEC_FILE_UNLOAD.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1 as libc::c_int,
            -1 as libc::c_int,
            0 as libc::c_ulong,
            std::ptr::null::<libc::c_char>(),
            libc::KEXEC_FILE_UNLOAD as libc::c_ulong,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Without a service manager: sync, then start the loaded kernel (`reboot(2)` with
/// `LINUX_REBOOT_CMD_KEXEC`). Returns only when that failed.
pub fn jump() -> io::Error {
    // SAFETY: sync has no arguments; reboot with a command constant.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC);
    }
    io::Error::last_os_error()
}

/// Without a service manager: sync, then reboot through the firmware (`reboot(2)` with
/// `RB_AUTOBOOT`). Returns only when that failed.
pub fn firmware_reboot() -> io::Error {
    // SAFETY: as in `jump`.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel the running kernel cannot load is refused with the kernel's own error, never
    /// loaded: bytes that are no kernel (this needs CAP_SYS_BOOT; without it the refusal is
    /// EPERM, which says so too).
    #[test]
    fn bytes_that_are_no_kernel_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel");
        std::fs::write(
            &k,
            b"hnroot test: this file is not a Linux kernel\n".repeat(64),
        )
        .unwrap();
        let i = dir.path().join("initramfs");
        std::fs::write(&i, b"").unwrap();
        let before = loaded();
        let err = load(
            &File::open(&k).unwrap(),
            &File::open(&i).unwrap(),
            "hnroot.via=kexec",
        )
        .unwrap_err();
        assert!(
            matches!(err, KexecError::Refused(_) | KexecError::Unsupported(_)),
            "{err}"
        );
        assert!(err.to_string().contains("kexec_file_load"), "{err}");
        assert_eq!(loaded(), before, "nothing was loaded");
        assert!(matches!(
            load(&File::open(&k).unwrap(), &File::open(&i).unwrap(), "a\0b"),
            Err(KexecError::Cmdline)
        ));
    }
}
