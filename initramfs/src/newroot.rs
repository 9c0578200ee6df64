//! Preparing the mounted image as the new root: the image's init must be there before
//! anything irreversible happens, and hostpart stays reachable at `/hostpart` with `/data0`
//! resolving to its `data/`.

use std::os::fd::AsRawFd;
use std::path::Path;

use hnroot_linux::fsat::{self, InRoot};
use hnroot_linux::mounts;

use crate::{error, info, warn};

/// Why the image cannot be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoInit(pub String);

/// Check that `init` (an absolute path) names an executable regular file inside `newroot`,
/// resolved by the file layer as the image will see it (links inside the image, absolute ones
/// from its root, `..` never above it). Checked before `switch_root`, while a failure can still
/// boot another image. Returns the path it resolves to inside the image.
pub fn check_init(newroot: &Path, init: &str) -> Result<String, NoInit> {
    let root = InRoot::open(newroot).map_err(|e| NoInit(format!("{}: {e}", newroot.display())))?;
    let fd = root.resolve(init, libc::O_PATH).map_err(|e| {
        NoInit(match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => {
                format!("{init} does not exist in the image (or a link on the way leads nowhere)")
            }
            Some(libc::ELOOP) => format!("{init}: too many levels of symbolic links"),
            _ => format!("{init}: {e}"),
        })
    })?;
    let resolved = inside(&root, &fd).unwrap_or_else(|| init.to_owned());
    let st = fsat::fstat(&fd).map_err(|e| NoInit(format!("{init} ({resolved}): {e}")))?;
    if !matches!(fsat::kind_of(&st), fsat::Kind::File(_)) {
        return Err(NoInit(format!("{init} ({resolved}) is not a regular file")));
    }
    if st.st_mode & 0o111 == 0 {
        return Err(NoInit(format!("{init} ({resolved}) is not executable")));
    }
    Ok(resolved)
}

/// Where `fd` lies inside `root`, as a path from the root (`/lib/systemd/systemd`): what the
/// kernel says of both through `/proc/self/fd`, for the log.
fn inside(root: &InRoot, fd: &std::os::fd::OwnedFd) -> Option<String> {
    let of = |fd: &std::os::fd::OwnedFd| {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
    };
    let top = of(&root.resolve("", libc::O_PATH).ok()?)?;
    let at = of(fd)?;
    let rel = at.strip_prefix(&top).ok()?;
    Some(format!("/{}", rel.display()))
}

/// Under a systemd initrd (dracut's systemd mode) every mount is shared, and the kernel refuses
/// to move a mount out of a shared parent (`EINVAL`): hostpart, mounted under `scratch`
/// (`/run/hnroot`), could not move into the new root. A private bind mount of `scratch` on itself
/// gives what is mounted there a parent that is not shared; it goes into the running system with
/// `/run`. Where the parent is not shared (initramfs-tools, hnroot's own `/init`) nothing is done.
pub fn private_scratch(scratch: &Path) {
    if mounts::is_shared(scratch) != Some(true) {
        return;
    }
    let made = mounts::mkdir_p(scratch)
        .and_then(|()| mounts::bind(scratch, scratch))
        .and_then(|()| mounts::make_private(scratch));
    match made {
        Ok(()) => info!(
            "{} is under a shared mount (a systemd initrd): made it a private mount of its own, so hostpart can move into the new root",
            scratch.display()
        ),
        Err(e) => warn!("{e}: hostpart may not move into the new root"),
    }
}

/// Keep hostpart reachable at `<newroot>/hostpart` and make `/data0` resolve to its `data/`.
pub fn keep_hostpart(newroot: &Path, hostpart_mnt: &Path) {
    let target = newroot.join("hostpart");
    if !target.is_dir() {
        error!(
            "the image has no /hostpart directory: hostpart stays mounted but out of reach after switch_root (add /hostpart to the image)"
        );
        return;
    }
    match mounts::move_mount(hostpart_mnt, &target) {
        Ok(()) => info!("moved hostpart to {}", target.display()),
        Err(e) => {
            error!("{e}: hostpart will not be reachable in the new root");
            return;
        }
    }
    let data = target.join("data");
    if !data.is_dir() {
        match std::fs::create_dir(&data) {
            Ok(()) => info!("created {}", data.display()),
            Err(e) => warn!("cannot create {}: {e}", data.display()),
        }
    }
    let data0 = newroot.join("data0");
    match std::fs::symlink_metadata(&data0) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&data0) {
            Ok(t) if t == Path::new("/hostpart/data") => {
                info!("/data0 -> /hostpart/data (symlink in the image)")
            }
            Ok(t) => warn!(
                "/data0 in the image points to {}, not /hostpart/data",
                t.display()
            ),
            Err(e) => warn!("cannot read the /data0 link: {e}"),
        },
        Ok(m) if m.is_dir() => match mounts::bind(&data, &data0) {
            Ok(()) => info!("bind-mounted /hostpart/data on /data0"),
            Err(e) => warn!("{e}: /data0 is an empty directory"),
        },
        _ => warn!("the image has no /data0: add a symlink /data0 -> /hostpart/data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn the_init_is_resolved_inside_the_new_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("lib/systemd")).unwrap();
        std::fs::create_dir_all(r.join("sbin")).unwrap();
        std::fs::write(r.join("lib/systemd/systemd"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            r.join("lib/systemd/systemd"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // Debian's /sbin/init: an absolute link, which must resolve inside the image.
        symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
        assert_eq!(check_init(r, "/sbin/init").unwrap(), "/lib/systemd/systemd");
        symlink("/nowhere", r.join("sbin/dangling")).unwrap();
        let e = check_init(r, "/sbin/dangling").unwrap_err();
        assert!(
            e.0.contains("/sbin/dangling does not exist in the image"),
            "{e:?}"
        );
        std::fs::write(r.join("sbin/plain"), b"x").unwrap();
        assert!(check_init(r, "/sbin/plain")
            .unwrap_err()
            .0
            .contains("not executable"));
        assert!(check_init(r, "/sbin/missing")
            .unwrap_err()
            .0
            .contains("does not exist"));
        symlink("loop", r.join("sbin/loop")).unwrap();
        assert!(check_init(r, "/sbin/loop")
            .unwrap_err()
            .0
            .contains("symbolic links"));
    }
}
