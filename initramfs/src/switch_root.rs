//! `switch_root` the way systemd (`switch-root.c`) and u-root (`switch_root_linux.go`) do it:
//! make every mount private (so no move propagates back), move `/dev`, `/proc`, `/sys`, `/run`
//! into the new root (or detach them if it has no such directory), hold the old root open,
//! move the new root onto `/` and chroot into it, then delete the initramfs's own files through
//! the held descriptor without ever crossing into another mount, and exec the image's init
//! with the arguments the kernel gave. Only ever runs as PID 1 in an initramfs (the old root
//! must be ramfs or tmpfs before anything is deleted).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use hnroot_linux::fsat::{mount_of, remove_children};
use hnroot_linux::mounts::{self, SysError};

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

fn fs_type(fd: &OwnedFd) -> io::Result<i64> {
    // SAFETY: zeroed statfs is a valid out-buffer.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and out-pointer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
    Ok(s.f_type as i64)
}

/// Switch to `new_root` and exec `init` with `args`. Returns only on failure.
pub fn switch_root(new_root: &Path, init: &str, args: &[String]) -> SysError {
    let fail = |what: String| SysError {
        what,
        source: io::Error::last_os_error(),
    };
    let Ok(prog) = CString::new(init) else {
        return SysError {
            what: format!("exec {init}"),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        };
    };
    let argv_owned: Vec<CString> = std::iter::once(prog.clone())
        .chain(args.iter().filter_map(|a| CString::new(a.as_str()).ok()))
        .collect();
    // No move may propagate back into another namespace's view.
    if let Err(e) = mounts::mount(
        Path::new("none"),
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    ) {
        warn!("{e}: moving mounts anyway");
    }
    // Hold the old root and the new root open before moving anything.
    let old_root = match std::fs::File::open("/") {
        Ok(f) => OwnedFd::from(f),
        Err(e) => {
            return SysError {
                what: "open /".into(),
                source: e,
            }
        }
    };
    let new_root_dir = match std::fs::File::open(new_root) {
        Ok(f) => f,
        Err(e) => {
            return SysError {
                what: format!("open new root {}", new_root.display()),
                source: e,
            }
        }
    };
    move_api_mounts(new_root);
    // SAFETY: a valid directory descriptor.
    if unsafe { libc::fchdir(new_root_dir.as_raw_fd()) } != 0 {
        return fail(format!("chdir {}", new_root.display()));
    }
    if let Err(e) = mounts::move_mount(Path::new("."), Path::new("/")) {
        return e;
    }
    // SAFETY: NUL-terminated path.
    if unsafe { libc::chroot(c".".as_ptr()) } != 0 {
        return fail("chroot .".into());
    }
    // SAFETY: NUL-terminated path.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        return fail("chdir /".into());
    }
    // The old root is out of sight now; empty it through the held descriptor, on its own
    // mount only, and only if it is the initramfs.
    match fs_type(&old_root) {
        Ok(RAMFS_MAGIC) | Ok(TMPFS_MAGIC) => {
            if let Some(mnt) = mount_of(&old_root) {
                let mut budget = MAX_ENTRIES;
                let removed = remove_children(&old_root, mnt, &mut budget, 0);
                info!("removed {removed} initramfs entries");
            }
        }
        Ok(other) => warn!(
            "the old root is not an initramfs (filesystem type {other:#x}): its files are kept"
        ),
        Err(e) => warn!("cannot tell what the old root is ({e}): its files are kept"),
    }
    drop(old_root);
    info!(
        "switch_root done, exec {init}{}",
        if args.is_empty() {
            String::new()
        } else {
            format!(" {}", args.join(" "))
        }
    );
    let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: NUL-terminated program and a NULL-terminated argv that outlive the call; returns
    // only on failure.
    unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
    fail(format!("exec {init}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_stays_on_its_mount_and_goes_through_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/b/c/f"), b"x").unwrap();
        std::fs::write(d.join("top"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", d.join("link")).unwrap();
        let fd = OwnedFd::from(std::fs::File::open(d).unwrap());
        let mnt = mount_of(&fd).unwrap();
        // Another mount's ID: nothing is removed.
        let mut budget = MAX_ENTRIES;
        assert_eq!(remove_children(&fd, mnt.wrapping_add(1), &mut budget, 0), 0);
        let mut budget = MAX_ENTRIES;
        assert_eq!(remove_children(&fd, mnt, &mut budget, 0), 6);
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
        assert!(Path::new("/etc").is_dir(), "the link's target is untouched");
    }
}
