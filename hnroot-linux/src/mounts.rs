//! Thin wrappers over mount(2) and friends that say what they did in their errors.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A failed system call: what, on what, and the errno.
#[derive(Debug)]
pub struct SysError {
    /// What was attempted, with its arguments.
    pub what: String,
    /// The error.
    pub source: io::Error,
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for SysError {}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

fn c_str(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// `mount(source, target, fstype, flags, data)`.
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), SysError> {
    let (s, t) = (c(source), c(target));
    let fs = fstype.map(c_str);
    let d = data.map(c_str);
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r != 0 {
        return Err(SysError {
            what: format!(
                "mount {} on {} (type {}, options {})",
                source.display(),
                target.display(),
                fstype.unwrap_or("-"),
                data.unwrap_or("-")
            ),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Move the mount at `from` to `to` (`mount --move`).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), SysError> {
    mount(from, to, None, libc::MS_MOVE, None).map_err(|e| SysError {
        what: format!("move mount {} to {}", from.display(), to.display()),
        source: e.source,
    })
}

/// Bind-mount `from` on `to`.
pub fn bind(from: &Path, to: &Path) -> Result<(), SysError> {
    mount(from, to, None, libc::MS_BIND, None)
}

/// Remount `target` with `flags` (`MS_REMOUNT` added).
pub fn remount(target: &Path, flags: libc::c_ulong) -> Result<(), SysError> {
    mount(
        Path::new("none"),
        target,
        None,
        libc::MS_REMOUNT | flags,
        None,
    )
}

/// Why an image could not be mounted read-only.
#[derive(Debug, thiserror::Error)]
pub enum ReadOnlyMountError {
    /// Its filesystem is not one an image is (ext2/3/4, XFS, btrfs).
    #[error("a {} filesystem is not one an image is (ext4, btrfs or XFS)", .0.as_str())]
    Unsupported(hnroot_core::probe::FsType),
    /// The mount failed.
    #[error(transparent)]
    Mount(#[from] SysError),
}

/// Mount the image filesystem of `fs_type` on the block device `node` (a read-only loop device)
/// at `at`, read-only and without replaying its journal or log (ext: `noload`, XFS:
/// `norecovery`, btrfs: `rescue=nologreplay`), never executing or opening devices from it:
/// looking at an image changes none of its bytes. The one such mount every command uses.
pub fn mount_image_readonly(
    node: &Path,
    fs_type: hnroot_core::probe::FsType,
    at: &Path,
) -> Result<(), ReadOnlyMountError> {
    use hnroot_core::probe::FsType;
    let (name, options) = match fs_type {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev => ("ext4", "noload"),
        FsType::Xfs => ("xfs", "norecovery"),
        FsType::Btrfs => ("btrfs", "rescue=nologreplay"),
        other => return Err(ReadOnlyMountError::Unsupported(other)),
    };
    mount(
        node,
        at,
        Some(name),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(options),
    )?;
    Ok(())
}

/// `umount2(target, flags)`.
pub fn umount(target: &Path, flags: libc::c_int) -> Result<(), SysError> {
    let t = c(target);
    // SAFETY: NUL-terminated path.
    if unsafe { libc::umount2(t.as_ptr(), flags) } != 0 {
        return Err(SysError {
            what: format!("unmount {}", target.display()),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Is the filesystem mounted at `path` read-only (`statvfs`'s `ST_RDONLY`)? The kernel may
/// make a mount read-only that was asked for read-write: overlayfs does when it cannot prepare
/// its work directory (a full upper filesystem).
pub fn is_read_only(path: &Path) -> Result<bool, SysError> {
    let p = c(path);
    // SAFETY: zeroed statvfs is a valid out-buffer.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-buffer, both outliving the call.
    if unsafe { libc::statvfs(p.as_ptr(), &mut s) } != 0 {
        return Err(SysError {
            what: format!("statvfs {}", path.display()),
            source: io::Error::last_os_error(),
        });
    }
    Ok(s.f_flag & libc::ST_RDONLY != 0)
}

/// Create `path` and its parents (mode 0755); existing directories are fine.
pub fn mkdir_p(path: &Path) -> Result<(), SysError> {
    std::fs::create_dir_all(path).map_err(|source| SysError {
        what: format!("create directory {}", path.display()),
        source,
    })
}

/// Is `path` a mount point (its device differs from its parent's)?
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev() || me.ino() == parent.ino()
}

/// Bind-mount what the descriptor `from` names on what `to` names (both may be `O_PATH`), through
/// `/proc/self/fd`: the mount lands on exactly the file or directory that was resolved, not on
/// whatever a path names by now. `what` names both for the error.
pub fn bind_fds(
    from: &std::os::fd::OwnedFd,
    to: &std::os::fd::OwnedFd,
    what: &str,
) -> Result<(), SysError> {
    use std::os::fd::AsRawFd;
    let src = format!("/proc/self/fd/{}", from.as_raw_fd());
    let dst = format!("/proc/self/fd/{}", to.as_raw_fd());
    mount(Path::new(&src), Path::new(&dst), None, libc::MS_BIND, None).map_err(|e| SysError {
        what: format!("bind mount {what}"),
        source: e.source,
    })
}

/// Whether the mount that holds `path` (the longest mount point that is `path` or one of its
/// parents; of several mounts there, the last one, which covers the others) has shared
/// propagation, from the text of `/proc/self/mountinfo`. `None` when no line covers `path`.
/// The kernel refuses to move a mount out of a shared parent (`EINVAL`), which is what every
/// mount is under a systemd PID 1 (it makes `/` shared, recursively).
pub fn shared_in(mountinfo: &str, path: &Path) -> Option<bool> {
    let mut best: Option<(usize, bool)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional fields...] - type source opts
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = unescape_octal(point);
        let point = Path::new(&point);
        if !path.starts_with(point) {
            continue;
        }
        let depth = point.components().count();
        let shared = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .any(|f| f.starts_with("shared:"));
        if best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, shared));
        }
    }
    best.map(|(_, shared)| shared)
}

/// [`shared_in`] for this process's mounts.
pub fn is_shared(path: &Path) -> Option<bool> {
    shared_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?, path)
}

/// Make `path` a private mount (`mount --make-private`).
pub fn make_private(path: &Path) -> Result<(), SysError> {
    mount(Path::new("none"), path, None, libc::MS_PRIVATE, None)
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let code = b.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .all(|x| (b'0'..=b'7').contains(x))
                .then(|| d.iter().fold(0u32, |n, x| n * 8 + u32::from(x - b'0')))
        });
        match (c, code.and_then(|n| u8::try_from(n).ok())) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From a dracut initrd under systemd (every mount shared), then hnroot-init's private bind
    /// mount of /run/hnroot on itself.
    const SYSTEMD_INITRD: &str = "\
1 0 0:2 / / rw shared:1 - rootfs rootfs rw
22 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 1 0:5 / /dev rw,nosuid shared:8 - devtmpfs devtmpfs rw,size=4096k
26 1 0:24 / /run rw,nosuid,nodev shared:12 - tmpfs tmpfs rw,mode=755
41 26 8:2 / /run/hnroot/hostpart rw,nosuid,nodev,relatime shared:20 - ext4 /dev/sda2 rw
";

    #[test]
    fn the_covering_mount_decides() {
        let p = Path::new("/run/hnroot/hostpart");
        assert_eq!(
            shared_in(SYSTEMD_INITRD, Path::new("/run/hnroot")),
            Some(true)
        );
        assert_eq!(shared_in(SYSTEMD_INITRD, Path::new("/sysroot")), Some(true));
        assert_eq!(shared_in(SYSTEMD_INITRD, p), Some(true));
        let private = format!(
            "{SYSTEMD_INITRD}42 26 0:24 /hnroot /run/hnroot rw,nosuid,nodev - tmpfs tmpfs rw\n"
        );
        assert_eq!(shared_in(&private, Path::new("/run/hnroot")), Some(false));
        assert_eq!(
            shared_in(&private, Path::new("/run/hnroot/image")),
            Some(false),
            "a path under the private mount is held by it, not by /run"
        );
        assert_eq!(shared_in(&private, Path::new("/run/other")), Some(true));
        assert_eq!(
            shared_in(&private, Path::new("/run/hnrootx")),
            Some(true),
            "/run/hnrootx is not under /run/hnroot"
        );
        // initramfs-tools: nothing shared, and several optional fields.
        let plain = "1 0 0:2 / / rw - rootfs rootfs rw\n\
                     26 1 0:24 / /run rw,nosuid master:3 - tmpfs tmpfs rw\n";
        assert_eq!(shared_in(plain, Path::new("/run/hnroot")), Some(false));
        assert_eq!(shared_in("", Path::new("/run")), None);
    }

    #[test]
    fn a_later_mount_on_the_same_point_covers_an_earlier_one() {
        let text = "26 1 0:24 / /run rw shared:12 - tmpfs tmpfs rw\n\
                    27 1 0:25 / /run rw - tmpfs tmpfs rw\n";
        assert_eq!(shared_in(text, Path::new("/run/hnroot")), Some(false));
    }

    #[test]
    fn escaped_mount_points_are_read_as_the_kernel_meant() {
        let text = "1 0 0:2 / / rw - rootfs rootfs rw\n\
                    30 1 0:26 / /mnt/a\\040b rw shared:4 - tmpfs tmpfs rw\n";
        assert_eq!(shared_in(text, Path::new("/mnt/a b/c")), Some(true));
        assert_eq!(shared_in(text, Path::new("/mnt/a")), Some(false));
    }
}
