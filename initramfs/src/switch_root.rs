//! `switch_root` the way systemd and u-root do it: move `/dev`, `/proc`, `/sys`, `/run` into the
//! new root (or detach them if it has no such directory), delete the initramfs's own files
//! without crossing into any mount, move the new root onto `/`, chroot into it and exec its
//! init. Only ever runs as PID 1 in an initramfs (it checks `/` is ramfs or tmpfs first).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::mounts::{self, SysError};
use crate::{info, warn};

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Most directory entries deleted (bounds the walk over a damaged initramfs).
const MAX_ENTRIES: usize = 1 << 20;

/// The API filesystems that follow us into the new root.
pub const MOVED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

/// Move the API filesystems under `new_root`.
pub fn move_api_mounts(new_root: &Path) {
    for m in MOVED {
        let target = new_root.join(m.trim_start_matches('/'));
        if target.is_dir() {
            match mounts::move_mount(Path::new(m), &target) {
                Ok(()) => info!("moved {m} to {}", target.display()),
                Err(e) => warn!("{e}; detaching {m} instead"),
            }
        } else {
            warn!("the new root has no {m} directory: detaching {m}");
        }
        if mounts::is_mount_point(Path::new(m)) {
            let _ = mounts::umount(Path::new(m), libc::MNT_DETACH);
        }
    }
}

fn statfs_type(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: zeroed statfs is a valid out-buffer; the path is NUL-terminated.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
    Ok(s.f_type as i64)
}

/// Delete everything under `dir` that lives on device `dev`, never entering another mount.
/// Returns the number of entries removed.
fn remove_children(dir: &Path, dev: u64, budget: &mut usize) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            removed += remove_children(&path, dev, budget);
            if std::fs::remove_dir(&path).is_ok() {
                removed += 1;
            }
        } else if std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Switch to `new_root` and exec `init`. Returns only on failure.
pub fn switch_root(new_root: &Path, init: &str) -> SysError {
    let fail = |what: String| SysError {
        what,
        source: io::Error::last_os_error(),
    };
    // Hold the new root open before moving anything.
    let Ok(new_root_dir) = File::open(new_root) else {
        return fail(format!("open new root {}", new_root.display()));
    };
    let init_in_root = new_root.join(init.trim_start_matches('/'));
    if std::fs::symlink_metadata(&init_in_root).is_err() {
        return SysError {
            what: format!("init {init} in the new root"),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "no such file: pass init= to choose another",
            ),
        };
    }
    move_api_mounts(new_root);
    // SAFETY: a valid directory descriptor.
    if unsafe { libc::fchdir(new_root_dir.as_raw_fd()) } != 0 {
        return fail(format!("chdir {}", new_root.display()));
    }
    match statfs_type(Path::new("/")) {
        Ok(RAMFS_MAGIC) | Ok(TMPFS_MAGIC) => {
            if let Ok(root) = std::fs::metadata("/") {
                let mut budget = MAX_ENTRIES;
                let removed = remove_children(Path::new("/"), root.dev(), &mut budget);
                info!("removed {removed} initramfs entries");
            }
        }
        Ok(other) => {
            warn!("/ is not an initramfs (filesystem type {other:#x}): its files are kept")
        }
        Err(e) => warn!("cannot tell what / is ({e}): its files are kept"),
    }
    if let Err(e) = mounts::move_mount(Path::new("."), Path::new("/")) {
        return e;
    }
    let dot = c".";
    // SAFETY: NUL-terminated path.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return fail("chroot .".into());
    }
    let slash = c"/";
    // SAFETY: NUL-terminated path.
    if unsafe { libc::chdir(slash.as_ptr()) } != 0 {
        return fail("chdir /".into());
    }
    info!("switch_root done, exec {init}");
    let Ok(prog) = CString::new(init) else {
        return SysError {
            what: format!("exec {init}"),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        };
    };
    let argv = [prog.as_ptr(), std::ptr::null()];
    // SAFETY: NUL-terminated program and a NULL-terminated argv; returns only on failure.
    unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
    fail(format!("exec {init}"))
}
