//! `hnroot sysprep` on an image file (or a directory tree), and the leftover check on an image
//! that `hnroot stage` runs before it publishes one: the image loop-mounted (read-write to clean
//! it, read-only without journal replay to look), the work done by `hnroot_linux::sysprep` on
//! the core's list, the image unmounted and synced.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hnroot_core::probe::{FsOutcome, FsType};
use hnroot_linux::sysprep::{self, Done, Leftover};
use hnroot_linux::{image, loopdev, mounts};

/// An image loop-mounted on a temporary directory; unmounted when dropped.
#[derive(Debug)]
pub struct MountedImage {
    mnt: tempfile::TempDir,
    _lo: loopdev::LoopDevice,
}

impl MountedImage {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.mnt.path()
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        if let Ok(d) = fs::File::open(self.mnt.path()) {
            let _ = d.sync_all();
        }
        let _ = mounts::umount(self.mnt.path(), 0);
    }
}

/// Loop-mount the image file `path`: read-write, or read-only without replaying a journal (so
/// looking never writes).
pub fn mount_image(path: &Path, writable: bool) -> Result<MountedImage> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let fs_type = match image::probe_file(&file)
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        FsOutcome::Found(info) => info.fs_type,
        other => bail!(
            "{} holds no filesystem hnroot recognises ({other:?})",
            path.display()
        ),
    };
    let (name, read_only_options) = match fs_type {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev => ("ext4", "noload"),
        FsType::Xfs => ("xfs", "norecovery"),
        FsType::Btrfs => ("btrfs", "rescue=nologreplay"),
        other => bail!(
            "{} is {}: images are ext4, btrfs or XFS",
            path.display(),
            other.as_str()
        ),
    };
    let lo = loopdev::attach(Path::new("/dev"), &file, "hnroot-sysprep", writable)
        .context("cannot attach the image to a loop device (this needs root)")?;
    let mnt = tempfile::Builder::new()
        .prefix("hnroot-sysprep-")
        .tempdir()
        .context("cannot make a mount point")?;
    let (flags, options) = if writable {
        (libc::MS_NOSUID | libc::MS_NODEV, None)
    } else {
        (
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(read_only_options),
        )
    };
    mounts::mount(&lo.node, mnt.path(), Some(name), flags, options)?;
    Ok(MountedImage { mnt, _lo: lo })
}

/// What `hnroot sysprep` did and what is left.
#[derive(Debug)]
pub struct Report {
    /// Each action (or, in a dry run, what would be done).
    pub done: Vec<Done>,
    /// Host-specific files still there afterwards (before, in a dry run).
    pub leftovers: Vec<Leftover>,
}

/// Clean the image file or directory tree `target` (with `dry_run`, only list what would be
/// done), then check it.
pub fn sysprep(target: &Path, dry_run: bool) -> Result<Report> {
    let meta = fs::metadata(target).with_context(|| format!("cannot find {}", target.display()))?;
    let mounted;
    let root = if meta.is_dir() {
        target
    } else {
        mounted = mount_image(target, !dry_run)?;
        mounted.path()
    };
    let done = sysprep::apply(root, dry_run)
        .with_context(|| format!("cannot walk {}", target.display()))?;
    let leftovers = sysprep::leftovers(root)?;
    Ok(Report { done, leftovers })
}

/// The host-specific files in the image file or tree `target` (looked at read-only).
pub fn check(target: &Path) -> Result<Vec<Leftover>> {
    if fs::metadata(target)?.is_dir() {
        return Ok(sysprep::leftovers(target)?);
    }
    let mounted = mount_image(target, false)?;
    Ok(sysprep::leftovers(mounted.path())?)
}

/// The leftover check's findings as warning lines (none when clean).
pub fn warnings(leftovers: &[Leftover]) -> Vec<String> {
    if leftovers.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "the image holds {} host-specific file(s): every server that boots it would share them; run `hnroot sysprep IMAGE` before publishing it",
        leftovers.len()
    )];
    lines.extend(
        leftovers
            .iter()
            .map(|l| format!("  {} ({})", l.path, l.what)),
    );
    lines
}
