//! The booted image mounted as the new root (the executor's `Mount` step): attached to a loop
//! device, its filesystem UUID checked on the loop device against what GRUB booted, then
//! mounted read-only under a writable overlay whose upper layer is the image's own directory on
//! hostpart (`hnroot_core::overlay`), or with `hnroot.rw` read-write at the new root itself.
//! An overlay that cannot be made leaves the image booting read-only: the image is fine.
//! The loop device does direct I/O where hostpart's filesystem allows it, else buffered I/O
//! (said in a warning); the mount step's text ends with the stable words `verity=on` or
//! `verity=off`, then `io=direct` or `io=buffered`.
//!
//! A sealed image booted with its root hash (`hnroot.roothash=`, put on the line by the loader
//! that verified the seal) is mounted through dm-verity (`hnroot_linux::dm`, the device
//! `hnroot-root` over the loop device, the mapping decided by `hnroot_core::seal::mapping`):
//! every block read from it is checked against the tree, and a block changed since sealing
//! fails its read with an I/O error. Such an image is never mounted unverified: a seal that does
//! not give the mapping fails the mount, and `hnroot.rw` is ignored for it.

use std::fs::File;
use std::path::{Path, PathBuf};

use hnroot_core::name::ImageName;
use hnroot_core::probe::FsOutcome;
use hnroot_core::seal::{self, SealFacts};
use hnroot_core::uuid::FsUuid;
use hnroot_linux::dm;
use hnroot_linux::exec::{MountError, RootMounter};
use hnroot_linux::hostpart::Hostpart;
use hnroot_linux::loopdev;
use hnroot_linux::mounts;
use hnroot_linux::probe::Device;

use crate::boot::Env;
use crate::drivers::Drivers;
use crate::{info, warn};

/// Carries out `Mount` for the executor; remembers what it mounted.
pub struct ImageMounter<'a> {
    /// Where things are.
    pub env: &'a Env,
    /// Module loading for the image's filesystem and overlayfs.
    pub drivers: &'a mut Drivers,
    /// `hnroot.rw`: the image itself read-write, no overlay.
    pub rw: bool,
    /// `hnroot.roothash=`: the booted image is sealed, and mounted through dm-verity.
    pub root_hash: Option<[u8; 32]>,
    /// What was mounted.
    pub mounted: Option<(ImageName, FsUuid)>,
}

impl std::fmt::Debug for ImageMounter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageMounter")
            .field("rw", &self.rw)
            .field("root_hash", &self.root_hash.is_some())
            .field("mounted", &self.mounted)
            .finish_non_exhaustive()
    }
}

impl ImageMounter<'_> {
    /// Where the read-only image sits under the overlay (`/run/hnroot/image`; moved with
    /// `/run` into the running system, where it shows the image as published).
    fn lower(&self) -> PathBuf {
        self.env.scratch.join("image")
    }

    /// The overlay over the mounted image at the new root. On failure the image is still
    /// mounted at [`Self::lower`].
    fn mount_overlay(&mut self, hostpart: &Hostpart, uuid: FsUuid) -> Result<String, MountError> {
        let (upper, work) = hostpart.overlay_layer(uuid)?;
        self.drivers.for_overlay();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower().display(),
            upper.display(),
            work.display()
        );
        mounts::mount(
            Path::new("overlay"),
            &self.env.newroot,
            Some("overlay"),
            0,
            Some(&options),
        )?;
        // overlayfs mounts read-only, rather than failing, when it cannot prepare its work
        // directory (hostpart full): the image's layer is there, its writes are not possible.
        if mounts::is_read_only(&self.env.newroot).unwrap_or(false) {
            warn!(
                "overlay: the kernel mounted the writable layer {} READ-ONLY (it could not prepare its work directory {} on hostpart; full?): the layer's files are there, what needs to write will fail; the image is not counted as failed for this",
                upper.display(),
                work.display()
            );
            return Ok(format!(
                "writable layer {}, mounted read-only by the kernel",
                upper.display()
            ));
        }
        Ok(format!("writable layer {}", upper.display()))
    }

    /// Map `image` (open as `file`, attached at `loop_node`, its filesystem of `fs_bytes` with
    /// UUID `uuid`) through dm-verity with the loader's `root_hash`.
    fn map_verity(
        &mut self,
        file: &File,
        image: ImageName,
        loop_node: &Path,
        uuid: FsUuid,
        fs_bytes: u64,
        root_hash: &[u8; 32],
    ) -> Result<dm::DmDevice, MountError> {
        let device = |what: &str| {
            let what = what.to_owned();
            move |source| MountError::Device {
                image,
                what,
                source,
            }
        };
        let (file_len, block) =
            hnroot_linux::seal::last_block(file).map_err(device("read its seal block"))?;
        let facts = SealFacts {
            file_len,
            last_block: block.as_deref(),
            fs_uuid: uuid,
            fs_bytes,
        };
        let verity =
            seal::mapping(&facts, root_hash).map_err(|error| MountError::Seal { image, error })?;
        self.drivers.for_verity();
        let numbers = dm::dev_numbers(loop_node).map_err(device("stat its loop device"))?;
        let table = verity.dm_table(&numbers).to_string();
        let mapped = dm::create_readonly(
            &self.env.roots.dev,
            dm::ROOT_NAME,
            verity.sectors(),
            "verity",
            &table,
        )
        .map_err(device("map it through dm-verity"))?;
        info!(
            "{image}: dm-verity over {} as {} ({}, {} data blocks, root hash from the loader): \
             every block read is checked against the seal",
            loop_node.display(),
            mapped.node.display(),
            mapped.name,
            verity.data_blocks()
        );
        Ok(mapped)
    }
}

impl RootMounter for ImageMounter<'_> {
    fn mount(
        &mut self,
        hostpart: &Hostpart,
        image: ImageName,
        uuid: FsUuid,
    ) -> Result<String, MountError> {
        let rw = self.rw && self.root_hash.is_none();
        if self.rw && !rw {
            warn!(
                "hnroot.rw ignored: {image} is booted sealed (hnroot.roothash=), so it is \
                 mounted read-only through dm-verity"
            );
        }
        let file = if rw {
            hostpart.open_image_rw(image)
        } else {
            hostpart.open_image(image)
        }?;
        let device = |what: String| {
            move |source| MountError::Device {
                image,
                what,
                source,
            }
        };
        let size = file.metadata().map_err(device("stat".into()))?.len();
        let lo = loopdev::attach(&self.env.roots.dev, &file, image.file_name(), rw)
            .map_err(device("attach to a loop device".into()))?;
        let mode = if rw { "read-write" } else { "read-only" };
        match &lo.io {
            loopdev::LoopIo::Direct => {
                info!(
                    "attached {image} to {} {mode}, direct I/O",
                    lo.node.display()
                )
            }
            io @ loopdev::LoopIo::Buffered(_) => warn!(
                "attached {image} to {} {mode} with {io}; the boot goes on",
                lo.node.display()
            ),
        }
        let io = lo.io.code();
        let outcome = Device::open(&lo.node)
            .and_then(|mut d| d.probe_fs(0, size))
            .map_err(device(format!("probe {}", lo.node.display())))?;
        let info = match outcome {
            FsOutcome::Found(info) if info.uuid == Some(uuid) => info,
            FsOutcome::Found(info) => {
                return Err(MountError::NotTheImage {
                    image,
                    node: lo.node.clone(),
                    found: info.uuid,
                    booted: uuid,
                })
            }
            other => {
                return Err(MountError::NoFilesystem {
                    image,
                    node: lo.node.clone(),
                    found: format!("{other:?}"),
                })
            }
        };
        let (node, verity) = match self.root_hash {
            None => (lo.node.clone(), "off"),
            Some(hash) => {
                let fs_bytes = info.size.unwrap_or(u64::MAX);
                let mapped = self.map_verity(&file, image, &lo.node, uuid, fs_bytes, &hash)?;
                (mapped.node, "on")
            }
        };
        self.drivers.for_fs(info.fs_type);
        mounts::mkdir_p(&self.env.newroot)?;
        let fs = info.fs_type.as_str();
        if rw {
            mounts::mount(&node, &self.env.newroot, Some(fs), 0, None)?;
            self.mounted = Some((image, uuid));
            return Ok(format!(
                "mounted {} ({fs}, UUID={uuid}) read-write at {} (hnroot.rw: the image itself changes) verity={verity} io={io}",
                node.display(),
                self.env.newroot.display()
            ));
        }
        let lower = self.lower();
        mounts::mkdir_p(&lower)?;
        mounts::mount(&node, &lower, Some(fs), libc::MS_RDONLY, None)?;
        let how = match self.mount_overlay(hostpart, uuid) {
            Ok(layer) => layer,
            Err(e) => {
                // The image is fine: boot it read-only rather than count it as failed.
                warn!(
                    "overlay over {image}: {e}; booting the image read-only without a writable layer (what needs to write will fail; the image is not counted as failed for this)"
                );
                mounts::move_mount(&lower, &self.env.newroot)?;
                "no writable layer".to_owned()
            }
        };
        self.mounted = Some((image, uuid));
        Ok(format!(
            "mounted {} ({fs}, UUID={uuid}) read-only at {}, root at {} ({how}) verity={verity} io={io}",
            node.display(),
            lower.display(),
            self.env.newroot.display()
        ))
    }
}
