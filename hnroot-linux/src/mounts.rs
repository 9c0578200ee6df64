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
