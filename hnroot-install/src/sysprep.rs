//! `hnroot sysprep` on an image file (or a directory tree), and the leftover check on an image
//! that `hnroot stage` runs before it publishes one: the image loop-mounted read-only without
//! journal replay to look (so looking never writes: a signed image with nothing to clean still
//! verifies afterwards), read-write only when there is something to change, the work done by
//! `hnroot_linux::sysprep` on the core's list, the image unmounted and synced. An image file
//! that backs a loop device (the running `hn-root.img`, an image mounted elsewhere) is refused,
//! naming the device: mounting it a second time read-write would corrupt it.

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

/// Refuse the open image `file` (at `path`) when it backs a loop device.
fn refuse_in_use(file: &fs::File, path: &Path) -> Result<()> {
    let users = loopdev::backed_by(file)
        .with_context(|| format!("cannot tell whether {} is in use", path.display()))?;
    if !users.is_empty() {
        let nodes: Vec<String> = users.iter().map(|a| a.node.display().to_string()).collect();
        bail!(
            "{} backs the loop device {} (in use: mounted, or the running system's image): \
             sysprep works on an image nothing uses; copy it, or detach the device first \
             (losetup -d); nothing was changed",
            path.display(),
            nodes.join(", ")
        );
    }
    Ok(())
}

/// Loop-mount the image file `path`: read-write, or read-only without replaying a journal (so
/// looking never writes). A file that backs a loop device already is refused for a read-write
/// mount.
pub fn mount_image(path: &Path, writable: bool) -> Result<MountedImage> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if !file.metadata()?.is_file() {
        bail!(
            "{} is not a regular file: sysprep takes an image file or a directory tree",
            path.display()
        );
    }
    if writable {
        refuse_in_use(&file, path)?;
    }
    let fs_type = match image::probe_file(&file)
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        FsOutcome::Found(info) => info.fs_type,
        other => bail!(
            "{} holds no filesystem hnroot recognises ({other:?})",
            path.display()
        ),
    };
    let name = match fs_type {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev => "ext4",
        FsType::Xfs => "xfs",
        FsType::Btrfs => "btrfs",
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
    if writable {
        mounts::mount(
            &lo.node,
            mnt.path(),
            Some(name),
            libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )?;
    } else {
        mounts::mount_image_readonly(&lo.node, fs_type, mnt.path())?;
    }
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
/// done), then check it. An image is looked at read-only first and mounted read-write only when
/// there is something to change; one that backs a loop device is refused.
pub fn sysprep(target: &Path, dry_run: bool) -> Result<Report> {
    let meta = fs::metadata(target).with_context(|| format!("cannot find {}", target.display()))?;
    if meta.is_dir() {
        let done = sysprep::apply(target, dry_run)
            .with_context(|| format!("cannot walk {}", target.display()))?;
        let leftovers = sysprep::leftovers(target)?;
        return Ok(Report { done, leftovers });
    }
    let file =
        fs::File::open(target).with_context(|| format!("cannot open {}", target.display()))?;
    refuse_in_use(&file, target)?;
    drop(file);
    let (planned, before) = {
        let looked = mount_image(target, false)?;
        let planned = sysprep::apply(looked.path(), true)
            .with_context(|| format!("cannot walk {}", target.display()))?;
        (planned, sysprep::leftovers(looked.path())?)
    };
    if dry_run || !planned.iter().any(|d| d.outcome.is_ok()) {
        // Nothing to change (or only asked what, or only what sysprep leaves as it is): the
        // image is never mounted read-write.
        return Ok(Report {
            done: planned,
            leftovers: before,
        });
    }
    let mounted = mount_image(target, true)?;
    let done = sysprep::apply(mounted.path(), false)
        .with_context(|| format!("cannot walk {}", target.display()))?;
    let leftovers = sysprep::leftovers(mounted.path())?;
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
