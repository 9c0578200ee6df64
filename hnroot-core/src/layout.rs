//! The on-disk layout every side agrees on: partition labels, where the boot-state block and
//! the revert marker live, what an image must contain, and where a running system finds it
//! all. The one definition: GRUB's module reads these through `hnroot.h`, the initramfs, the
//! CLI and the test harness through this module. (The image file names are
//! [`crate::name::ImageName`].)
//!
//! Paths inside a filesystem are relative to its root and never start with `/`; a driver that
//! needs an absolute form (GRUB: `(hd0,gpt2)/system-revert`) prefixes `/` itself.

use crate::probe::FsType;

/// Filesystem label of the host partition that holds the images and `data/`.
pub const HOSTPART_LABEL: &str = "hostpart";

/// Filesystem label of the EFI system partition that holds GRUB and the boot-state block.
pub const ESP_LABEL: &str = "EFI-BOOT";

/// The boot-state block, relative to the ESP's root (see [`crate::bootstate`]).
pub const BOOTSTATE_PATH: &str = "hnroot/bootstate";

/// The directory of [`BOOTSTATE_PATH`] on the ESP.
pub const BOOTSTATE_DIR: &str = "hnroot";

/// Its presence in hostpart's top directory asks for a revert on the next boot.
pub const REVERT_MARKER: &str = "system-revert";

/// The kernel every image carries, relative to the image's root.
pub const KERNEL_PATH: &str = "boot/kernel";

/// The initramfs every image carries, relative to the image's root.
pub const INITRAMFS_PATH: &str = "boot/initramfs";

/// hostpart's data directory (`/data0` on a running system points here).
pub const DATA_DIR: &str = "data";

/// The directory inside [`DATA_DIR`] where hnroot keeps its own records on hostpart.
pub const RECORDS_DIR: &str = "data/hnroot";

/// Where each image's writable layer lives on hostpart: `<this>/<image UUID>/upper` (and
/// `work`), the upper layer of the overlay root the initramfs mounts over the read-only
/// image. What a running image changes persists across its reboots and stays its own: an
/// update starts from the new image's files, a rollback returns to the old image's layer.
pub const OVERLAY_DIR: &str = "data/hnroot/overlay";

/// The host state: this server's identity (hostname, machine ID, SSH host keys, network and
/// configuration-management identity, further files), relative to hostpart's root. It belongs
/// to the host, not to an image: updates, reverts and rollbacks never touch it. See
/// [`crate::identity`] for what it holds and how each boot projects it into the new root.
pub const HOST_DIR: &str = "data/host";

/// Where a running system finds the shared state repository: `<this>/hosts/<hostname>/` holds a
/// copy of each host's state (see [`crate::hostsync`]).
pub const WAREHOUSE_MOUNT: &str = "/warehouse";

/// The directory of hosts inside the repository.
pub const WAREHOUSE_HOSTS: &str = "hosts";

/// The switch history (see [`crate::history`]), relative to hostpart's root.
pub const HISTORY_PATH: &str = "data/hnroot/history";

/// Where `hnroot stage` copies an image before it becomes `hn-root-new.img`: this prefix, 16
/// hex digits naming the source, and [`PARTIAL_SUFFIX`]. Never an image name, so no decision
/// ever looks at it.
pub const PARTIAL_PREFIX: &str = ".hn-root-new.";

/// See [`PARTIAL_PREFIX`].
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The image's own kernel arguments, inside the image (read by GRUB through the loopback; see
/// [`crate::bootline`]). Under `/usr`: they are the image's, published with it, not a setting
/// the running system edits (its writable layer never reaches GRUB).
pub const IMAGE_ARGS_PATH: &str = "usr/lib/hnroot/kernel-args";

/// The fleet's default kernel arguments, a file of the fleet's built into the loader (in GRUB's
/// memdisk, `(memdisk)/hnroot/kernel-args`; on the build machine or server
/// `/etc/hnroot/loader/kernel-args`, which `hnroot install` and `hnroot bootloader update` put
/// there). Without it the loader's built-in defaults apply (see [`crate::bootline`]).
pub const FLEET_ARGS_NAME: &str = "kernel-args";

/// [`FLEET_ARGS_NAME`] in the loader's memdisk (`(memdisk)/hnroot/kernel-args` to GRUB), where
/// `hnroot reboot` reads it from the loader's bytes ([`crate::memdisk`]).
pub const FLEET_ARGS_MEMDISK_PATH: &str = "hnroot/kernel-args";

/// The loader's trusted keys in its memdisk (`(memdisk)/hnroot/seal-keys` to GRUB's `hnroot
/// select --seal-keys`): the `.pub` files one after another.
pub const SEAL_KEYS_MEMDISK_PATH: &str = "hnroot/seal-keys";

/// The loader's marker that only sealed images boot (`(memdisk)/hnroot/require-sealed` to
/// `hnroot select --require-sealed-file`).
pub const REQUIRE_SEALED_MEMDISK_PATH: &str = "hnroot/require-sealed";

/// The host's own kernel arguments, in its host state on hostpart (see [`crate::bootline`]).
pub const HOST_ARGS_PATH: &str = "data/host/kernel-args";

/// Where a running hnroot system has hostpart mounted.
pub const HOSTPART_MOUNT: &str = "/hostpart";

/// Where a running hnroot system has the ESP mounted.
pub const ESP_MOUNT: &str = "/boot/loader";

/// The data directory's path on a running system: a symbolic link to `/hostpart/data`.
pub const DATA_LINK: &str = "/data0";

/// The init the initramfs starts in the image unless `init=` says otherwise.
pub const DEFAULT_INIT: &str = "/sbin/init";

/// Whether hostpart may be a filesystem of this type: one GRUB reads and the initramfs can
/// checkpoint so that GRUB, which replays no journal, sees every switch (ext2/3/4: a journal
/// checkpoint or a freeze; XFS: a freeze; btrfs: a transaction commit). `hnroot install` makes
/// ext4, btrfs or XFS ([`crate::install::HostpartFs`]); an ext2 or ext3 hostpart made by hand
/// boots as well.
pub const fn hostpart_fs_ok(fs: FsType) -> bool {
    matches!(
        fs,
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Btrfs | FsType::Xfs
    )
}

/// Whether the boot-state file may live on a filesystem of this type: GRUB rewrites it in place
/// through its block list, so the filesystem must keep a file's blocks where they are when it is
/// rewritten: FAT (the ESP's) or ext2/3/4; never btrfs, whose copy-on-write moves them (XFS is
/// not offered either: hnroot has never had GRUB write through an XFS block list).
pub const fn bootstate_fs_ok(fs: FsType) -> bool {
    matches!(
        fs,
        FsType::Vfat | FsType::Ext2 | FsType::Ext3 | FsType::Ext4
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystems_for_hostpart_and_the_boot_state() {
        use crate::install::HostpartFs;
        for fs in HostpartFs::ALL {
            let t = FsType::ALL
                .into_iter()
                .find(|t| t.as_str() == fs.as_str())
                .unwrap();
            assert!(
                hostpart_fs_ok(t),
                "install makes {fs:?}, the boot must accept it"
            );
        }
        assert!(!hostpart_fs_ok(FsType::Vfat));
        assert!(bootstate_fs_ok(FsType::Vfat) && bootstate_fs_ok(FsType::Ext4));
        assert!(
            !bootstate_fs_ok(FsType::Btrfs),
            "copy-on-write moves blocks"
        );
    }

    #[test]
    fn relative_paths_are_relative() {
        for p in [
            BOOTSTATE_PATH,
            REVERT_MARKER,
            KERNEL_PATH,
            INITRAMFS_PATH,
            DATA_DIR,
            RECORDS_DIR,
            HOST_DIR,
            WAREHOUSE_HOSTS,
            IMAGE_ARGS_PATH,
            HOST_ARGS_PATH,
        ] {
            assert!(
                !p.starts_with('/') && !p.ends_with('/') && !p.contains(".."),
                "{p}"
            );
        }
        assert!(BOOTSTATE_PATH.starts_with(BOOTSTATE_DIR));
        assert!(RECORDS_DIR.starts_with(DATA_DIR));
        assert!(HOST_DIR.starts_with(DATA_DIR));
        assert!(HOST_ARGS_PATH.starts_with(HOST_DIR));
        for p in [
            HOSTPART_MOUNT,
            ESP_MOUNT,
            DATA_LINK,
            DEFAULT_INIT,
            WAREHOUSE_MOUNT,
        ] {
            assert!(p.starts_with('/'), "{p}");
        }
    }
}
