//! The Linux side's view of a built disk, to hold GRUB's against: hostpart loop-mounted
//! read-only from the disk image itself (`mount -o ro,loop,offset=,sizelimit=`; this needs
//! root) and observed by `hnroot-linux` exactly as the initramfs and `hnroot status` observe it
//! (`Hostpart::open(dir)?.observe()`: every image name's verdict, the revert marker); and the
//! boot-state file judged by `hnroot-linux` from its mtools copy, which keeps a directory a
//! directory (the kernels the suites run on may have no vfat to mount the ESP with). It never
//! writes to the disk: the loop device is read-only and so is the mount, with no journal or
//! log replay.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use hnroot_core::bootstate::StateSeen;
use hnroot_linux::hostpart::{Hostpart, HostpartView};

use crate::buildenv;
use crate::disk::{BuiltDisk, HostFs};
use crate::inspect::{self, StateEntry};

/// A read-only mount, unmounted (and its loop device released) when dropped.
#[derive(Debug)]
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// hostpart of `disk` as hnroot-linux observes it, mounted read-only at `mountpoint` (created
/// if needed) for as long as it takes.
pub fn hostpart(disk: &BuiltDisk, mountpoint: &Path) -> Result<HostpartView> {
    hostpart_as(disk, mountpoint, None)
}

/// [`hostpart`] as a loader with the seal policy `policy` sees it (each bootable image's seal
/// judged, as `hnroot select --seal-keys` does).
pub fn hostpart_as(
    disk: &BuiltDisk,
    mountpoint: &Path,
    policy: Option<&hnroot_linux::image::SealPolicy>,
) -> Result<HostpartView> {
    fs::create_dir_all(mountpoint)
        .with_context(|| format!("cannot create {}", mountpoint.display()))?;
    let (fs_type, no_replay) = match disk.fs {
        HostFs::Ext4 => ("ext4", "noload"),
        HostFs::Btrfs => ("btrfs", "rescue=nologreplay"),
        HostFs::Xfs => ("xfs", "norecovery"),
    };
    let offset = BuiltDisk::offset(&disk.hostpart);
    let size = disk.hostpart.sectors * crate::disk::SECTOR;
    buildenv::run(
        Command::new("mount")
            .args(["-t", fs_type, "-o"])
            .arg(format!(
                "ro,{no_replay},loop,offset={offset},sizelimit={size}"
            ))
            .arg(&disk.path)
            .arg(mountpoint),
    )
    .with_context(|| {
        format!(
            "loop-mounting hostpart of {} read-only (root is needed)",
            disk.name
        )
    })?;
    let mounted = Mounted(mountpoint.to_path_buf());
    let view = Hostpart::open(&mounted.0)
        .and_then(|hp| match policy {
            Some(p) => hp.observe_sealed(p),
            None => hp.observe(),
        })
        .with_context(|| format!("hnroot-linux observing hostpart of {}", disk.name))?;
    drop(mounted);
    Ok(view)
}

/// The boot-state path on the ESP of `disk`, copied to `copy` (see
/// [`inspect::copy_boot_state`]), and what hnroot-linux's reader judges the copy to be.
pub fn boot_state(disk: &BuiltDisk, copy: &Path) -> Result<(StateEntry, StateSeen)> {
    let entry = inspect::copy_boot_state(disk, copy)?;
    let (seen, _why) = hnroot_linux::bootstate_file::seen(copy);
    Ok((entry, seen))
}
