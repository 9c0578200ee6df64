//! `hnroot install`: whether a disk may become an hnroot disk, where its partitions go, and the
//! steps that make it one. The CLI observes the disk (its size, its sector size, whether any of
//! it is in use), asks here, and carries out the steps in order; `--dry-run` prints them.
//!
//! The layout: GPT; partition 1 the ESP (FAT32 labelled [`crate::layout::ESP_LABEL`], at
//! least [`ESP_MIN`]); partition 2 hostpart (labelled [`crate::layout::HOSTPART_LABEL`]) on the
//! rest. Both start on a 1 MiB boundary, as every partitioning tool aligns today.

use core::fmt;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// The smallest ESP: FAT32 needs 65,525 clusters, 32 MiB at 512-byte clusters; firmware is
/// happiest with more, and GRUB's image with every module is a few MiB. 128 MiB leaves room
/// for a second boot loader during a migration.
pub const ESP_MIN: u64 = 128 * MIB;

/// The ESP's size unless `--esp-size` says otherwise.
pub const ESP_DEFAULT: u64 = 256 * MIB;

/// Where the first partition starts (the GPT and its alignment before it).
pub const FIRST_PARTITION: u64 = MIB;

/// Left free at the end of the disk: the backup GPT (33 sectors of 512 bytes, 6 of 4096)
/// rounded up to the alignment.
pub const TAIL_RESERVE: u64 = MIB;

/// hostpart's room besides the images: filesystem metadata and journal, `data/` with the
/// switch history and the writable layers' first files.
pub const HOSTPART_SPARE: u64 = 512 * MIB;

/// How many images hostpart must hold at once: during an update the current, the staged and
/// the old image lie side by side (`hnroot stage` refuses a copy that does not fit).
pub const IMAGE_COPIES: u64 = 3;

/// The filesystem of hostpart: one GRUB reads and the initramfs can checkpoint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostpartFs {
    /// ext4 (the default: fsck and resize tools everywhere).
    Ext4,
    /// btrfs (reflink copies for `hnroot stage` from the same filesystem).
    Btrfs,
    /// XFS (reflink copies as well).
    Xfs,
}

impl HostpartFs {
    /// Every choice, in the order the help lists them.
    pub const ALL: [HostpartFs; 3] = [HostpartFs::Ext4, HostpartFs::Btrfs, HostpartFs::Xfs];

    /// The name `mkfs.<name>` and `mount -t` use.
    pub const fn as_str(self) -> &'static str {
        match self {
            HostpartFs::Ext4 => "ext4",
            HostpartFs::Btrfs => "btrfs",
            HostpartFs::Xfs => "xfs",
        }
    }

    /// The choice named `name`.
    pub fn parse(name: &str) -> Option<HostpartFs> {
        HostpartFs::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// What else holds the disk, as the CLI found it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DiskUse {
    /// Nothing: no partition of it is mounted, used for swap or held by another device.
    Unused,
    /// The disk or one of its partitions is mounted.
    Mounted,
    /// The running system's root filesystem is on it (or on an image on it).
    RunningRoot,
    /// It or one of its partitions is active swap.
    Swap,
    /// Another block device is built on it: device-mapper or RAID (its `holders/` in sysfs),
    /// or a loop device over it, over one of its partitions, or over a file on one of them
    /// (loop devices never show in `holders/`).
    Held,
}

/// The disk as the CLI observed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DiskFacts {
    /// Its size in bytes.
    pub size: u64,
    /// Its logical sector size in bytes.
    pub logical_sector: u32,
    /// What holds it.
    pub used: DiskUse,
}

/// What the operator asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InstallRequest {
    /// The first image's size in bytes.
    pub image_size: u64,
    /// The ESP's size in bytes.
    pub esp_size: u64,
    /// `--yes`: the operator agreed that everything on the disk is destroyed.
    pub confirmed: bool,
    /// `--dry-run`: print the plan, write nothing (confirmation is not needed).
    pub dry_run: bool,
}

/// A byte range on the disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Extent {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Extent {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

/// Where the partitions go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DiskLayout {
    /// Partition 1.
    pub esp: Extent,
    /// Partition 2.
    pub hostpart: Extent,
}

/// Why `hnroot install` refuses a disk. Checked in this order, so the most dangerous reason is
/// the one reported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InstallRefusal {
    /// The disk is in use.
    InUse(DiskUse),
    /// Neither 512 nor 4096 bytes per logical sector.
    SectorSize(u32),
    /// `--esp-size` below [`ESP_MIN`] or not a whole number of MiB.
    EspSize(u64),
    /// The disk cannot hold the ESP and [`IMAGE_COPIES`] images.
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes the disk has.
        size: u64,
    },
    /// Without `--yes` (and without `--dry-run`) nothing is destroyed.
    NotConfirmed,
}

impl InstallRefusal {
    /// A stable one-word name for scripts and tests.
    pub const fn code(&self) -> &'static str {
        match self {
            InstallRefusal::InUse(DiskUse::Mounted) => "disk-mounted",
            InstallRefusal::InUse(DiskUse::RunningRoot) => "disk-holds-running-root",
            InstallRefusal::InUse(DiskUse::Swap) => "disk-is-swap",
            InstallRefusal::InUse(DiskUse::Held) => "disk-held",
            InstallRefusal::InUse(DiskUse::Unused) => "disk-in-use",
            InstallRefusal::SectorSize(_) => "sector-size",
            InstallRefusal::EspSize(_) => "esp-size",
            InstallRefusal::TooSmall { .. } => "disk-too-small",
            InstallRefusal::NotConfirmed => "not-confirmed",
        }
    }
}

impl core::error::Error for InstallRefusal {}

impl fmt::Display for InstallRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallRefusal::InUse(DiskUse::Mounted) => f.write_str(
                "the disk (or a partition of it) is mounted: unmount it first; hnroot install \
                 never repartitions a disk in use",
            ),
            InstallRefusal::InUse(DiskUse::RunningRoot) => f.write_str(
                "the running system's root filesystem is on this disk: hnroot install never \
                 repartitions it (to convert this server in place, use --esp DIR)",
            ),
            InstallRefusal::InUse(DiskUse::Swap) => {
                f.write_str("the disk (or a partition of it) is active swap: swapoff it first")
            }
            InstallRefusal::InUse(DiskUse::Held) => f.write_str(
                "another device is built on this disk (device-mapper, RAID, or a loop device over \
                 it or a file on it): remove that first (dmsetup remove, mdadm --stop, losetup \
                 -d)",
            ),
            InstallRefusal::InUse(DiskUse::Unused) => f.write_str("the disk is in use"),
            InstallRefusal::SectorSize(s) => write!(
                f,
                "the disk has {s}-byte logical sectors; hnroot install lays out disks of 512 or \
                 4096"
            ),
            InstallRefusal::EspSize(s) => write!(
                f,
                "an ESP of {s} bytes: it must be a whole number of MiB and at least {} MiB",
                ESP_MIN / MIB
            ),
            InstallRefusal::TooSmall { needed, size } => write!(
                f,
                "the disk has {} MiB; hnroot needs {} MiB: the ESP, {IMAGE_COPIES} copies of the \
                 image (current, staged and old lie side by side during an update) and {} MiB \
                 for hostpart's own use",
                size / MIB,
                needed.div_ceil(MIB),
                HOSTPART_SPARE / MIB
            ),
            InstallRefusal::NotConfirmed => f.write_str(
                "hnroot install destroys everything on the disk: pass --yes to go ahead (or \
                 --dry-run to see the plan)",
            ),
        }
    }
}

const fn align_down(n: u64) -> u64 {
    n.saturating_sub(n % MIB)
}

/// The disk's layout, or why it may not be used.
pub fn disk_layout(
    facts: &DiskFacts,
    request: &InstallRequest,
) -> Result<DiskLayout, InstallRefusal> {
    if facts.used != DiskUse::Unused {
        return Err(InstallRefusal::InUse(facts.used));
    }
    if !matches!(facts.logical_sector, 512 | 4096) {
        return Err(InstallRefusal::SectorSize(facts.logical_sector));
    }
    if request.esp_size < ESP_MIN || request.esp_size % MIB != 0 {
        return Err(InstallRefusal::EspSize(request.esp_size));
    }
    let esp = Extent {
        start: FIRST_PARTITION,
        size: request.esp_size,
    };
    let needed = esp
        .end()
        .saturating_add(request.image_size.saturating_mul(IMAGE_COPIES))
        .saturating_add(HOSTPART_SPARE)
        .saturating_add(TAIL_RESERVE);
    if facts.size < needed {
        return Err(InstallRefusal::TooSmall {
            needed,
            size: facts.size,
        });
    }
    if !request.confirmed && !request.dry_run {
        return Err(InstallRefusal::NotConfirmed);
    }
    // `needed` covers both subtractions: facts.size >= esp.end() + TAIL_RESERVE + ...
    let hostpart_end = align_down(facts.size.saturating_sub(TAIL_RESERVE));
    Ok(DiskLayout {
        esp,
        hostpart: Extent {
            start: esp.end(),
            size: hostpart_end.saturating_sub(esp.end()),
        },
    })
}

/// One step of an install, in the order they run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InstallStep {
    /// Wipe old signatures and write a GPT with the ESP and hostpart.
    PartitionDisk,
    /// FAT32 labelled `EFI-BOOT` on partition 1.
    MakeEspFs,
    /// hostpart's filesystem, labelled `hostpart`, on partition 2.
    MakeHostpartFs(HostpartFs),
    /// The image copied to hostpart as `hn-root.img` through `hnroot stage`'s verified path
    /// (`commands::first_image`).
    CopyFirstImage,
    /// `data/` (and hnroot's records in it) on hostpart.
    MakeDataDir,
    /// GRUB (one EFI image with `hnroot.mod` and `grub.cfg`) as `\EFI\BOOT\BOOTX64.EFI`.
    InstallGrub,
    /// The boot-state file GRUB rewrites in place, unless a valid one is there.
    CreateBootState,
    /// A firmware boot entry for `\EFI\BOOT\BOOTX64.EFI` (efibootmgr), when the firmware's
    /// variables are reachable and the disk is a real one.
    RegisterBootEntry,
}

/// The steps of `hnroot install --disk`.
pub const DISK_STEPS: [InstallStep; 7] = [
    InstallStep::PartitionDisk,
    InstallStep::MakeEspFs,
    InstallStep::MakeHostpartFs(HostpartFs::Ext4),
    InstallStep::CopyFirstImage,
    InstallStep::MakeDataDir,
    InstallStep::InstallGrub,
    InstallStep::CreateBootState,
];

/// The steps of `hnroot install --esp DIR` (an existing layout converted in place).
pub const ESP_STEPS: [InstallStep; 2] = [InstallStep::InstallGrub, InstallStep::CreateBootState];

/// The steps of an install: onto a whole disk with hostpart on `fs`, or (`fs: None`) only the
/// ESP part; a firmware boot entry last when `register`.
pub fn install_steps(fs: Option<HostpartFs>, register: bool) -> impl Iterator<Item = InstallStep> {
    let disk = fs.map(|fs| {
        DISK_STEPS.into_iter().map(move |s| match s {
            InstallStep::MakeHostpartFs(_) => InstallStep::MakeHostpartFs(fs),
            other => other,
        })
    });
    let esp = fs.is_none().then_some(ESP_STEPS.into_iter());
    disk.into_iter()
        .flatten()
        .chain(esp.into_iter().flatten())
        .chain(register.then_some(InstallStep::RegisterBootEntry))
}

impl fmt::Display for InstallStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallStep::PartitionDisk => {
                f.write_str("wipe the disk's signatures and write a GPT: ESP, hostpart")
            }
            InstallStep::MakeEspFs => f.write_str("make the ESP: FAT32 labelled EFI-BOOT"),
            InstallStep::MakeHostpartFs(fs) => {
                write!(f, "make hostpart: {} labelled hostpart", fs.as_str())
            }
            InstallStep::CopyFirstImage => f.write_str(
                "copy the image to hostpart as hn-root.img (signature and verdict checked as by \
                 hnroot stage)",
            ),
            InstallStep::MakeDataDir => f.write_str("create data/ on hostpart"),
            InstallStep::InstallGrub => f.write_str(
                "write GRUB with hnroot.mod and grub.cfg built in as \\EFI\\BOOT\\BOOTX64.EFI",
            ),
            InstallStep::CreateBootState => {
                f.write_str("create the boot-state file (the first image committed good)")
            }
            InstallStep::RegisterBootEntry => {
                f.write_str("register a firmware boot entry for \\EFI\\BOOT\\BOOTX64.EFI")
            }
        }
    }
}

/// The GRUB a module was built for does not match the GRUB being installed: GRUB checks no
/// version when it loads a module, so a mismatch would fail at boot (or worse, silently).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GrubMismatch<'a> {
    /// The Debian `grub2` version `hnroot.mod` was built against.
    pub module: &'a str,
    /// The GRUB modules' version being installed.
    pub installed: &'a str,
}

impl fmt::Display for GrubMismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hnroot.mod was built for GRUB {}, but GRUB {} is installed: GRUB checks no module \
             versions, so the pair is refused; install the hnroot.mod built for GRUB {} (or that \
             GRUB)",
            self.module, self.installed, self.installed
        )
    }
}

/// Whether `hnroot.mod` built for Debian GRUB `module` fits the installed GRUB `installed`:
/// only the exact same build does.
pub fn grub_fits<'a>(module: &'a str, installed: &'a str) -> Result<(), GrubMismatch<'a>> {
    if module.trim() == installed.trim() && !module.trim().is_empty() {
        Ok(())
    } else {
        Err(GrubMismatch { module, installed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::vec::Vec;

    const GIB: u64 = 1 << 30;

    fn facts(size: u64) -> DiskFacts {
        DiskFacts {
            size,
            logical_sector: 512,
            used: DiskUse::Unused,
        }
    }

    fn request(image_size: u64) -> InstallRequest {
        InstallRequest {
            image_size,
            esp_size: ESP_DEFAULT,
            confirmed: true,
            dry_run: false,
        }
    }

    #[test]
    fn the_layout_is_aligned_and_fills_the_disk() {
        let size = 10 * GIB + 12345;
        let l = disk_layout(&facts(size), &request(GIB)).unwrap();
        assert_eq!(
            l.esp,
            Extent {
                start: MIB,
                size: ESP_DEFAULT
            }
        );
        assert_eq!(l.hostpart.start, MIB + ESP_DEFAULT);
        assert_eq!(l.hostpart.start % MIB, 0);
        assert_eq!(l.hostpart.end() % MIB, 0);
        assert!(l.hostpart.end() <= size - TAIL_RESERVE);
        assert!(size - TAIL_RESERVE - l.hostpart.end() < MIB);
    }

    #[test]
    fn the_smallest_disk_holds_three_images_and_the_spare() {
        let image = 700 * MIB;
        let needed = MIB + ESP_DEFAULT + 3 * image + HOSTPART_SPARE + TAIL_RESERVE;
        assert!(disk_layout(&facts(needed), &request(image)).is_ok());
        assert_eq!(
            disk_layout(&facts(needed - 1), &request(image)),
            Err(InstallRefusal::TooSmall {
                needed,
                size: needed - 1
            })
        );
    }

    #[test]
    fn refusals_in_order_of_danger() {
        let busy = DiskFacts {
            used: DiskUse::RunningRoot,
            logical_sector: 520,
            size: 1,
        };
        let unconfirmed = InstallRequest {
            confirmed: false,
            ..request(GIB)
        };
        assert_eq!(
            disk_layout(&busy, &unconfirmed),
            Err(InstallRefusal::InUse(DiskUse::RunningRoot))
        );
        let odd = DiskFacts {
            logical_sector: 520,
            ..facts(100 * GIB)
        };
        assert_eq!(
            disk_layout(&odd, &unconfirmed),
            Err(InstallRefusal::SectorSize(520))
        );
        assert_eq!(
            disk_layout(&facts(GIB), &unconfirmed).map_err(|e| e.code()),
            Err("disk-too-small"),
            "a disk that cannot work is said so before asking for --yes"
        );
        assert_eq!(
            disk_layout(&facts(100 * GIB), &unconfirmed),
            Err(InstallRefusal::NotConfirmed)
        );
        let dry = InstallRequest {
            dry_run: true,
            ..unconfirmed
        };
        assert!(
            disk_layout(&facts(100 * GIB), &dry).is_ok(),
            "a dry run needs no --yes"
        );
    }

    #[test]
    fn esp_size_bounds() {
        for bad in [ESP_MIN - MIB, ESP_MIN + 1, 0] {
            let r = InstallRequest {
                esp_size: bad,
                ..request(GIB)
            };
            assert_eq!(
                disk_layout(&facts(100 * GIB), &r),
                Err(InstallRefusal::EspSize(bad))
            );
        }
        let r = InstallRequest {
            esp_size: ESP_MIN,
            ..request(GIB)
        };
        assert!(disk_layout(&facts(100 * GIB), &r).is_ok());
    }

    #[test]
    fn steps_of_a_disk_install_and_of_an_esp_install() {
        let disk: Vec<_> = install_steps(Some(HostpartFs::Xfs), true).collect();
        assert_eq!(disk.first(), Some(&InstallStep::PartitionDisk));
        assert!(disk.contains(&InstallStep::MakeHostpartFs(HostpartFs::Xfs)));
        assert_eq!(disk.last(), Some(&InstallStep::RegisterBootEntry));
        let pos = |s| disk.iter().position(|x| *x == s).unwrap();
        assert!(pos(InstallStep::CopyFirstImage) < pos(InstallStep::CreateBootState));
        let esp: Vec<_> = install_steps(None, false).collect();
        assert_eq!(esp, ESP_STEPS);
    }

    #[test]
    fn only_the_exact_grub_build_fits() {
        assert!(grub_fits("2.06-13+deb12u2", "2.06-13+deb12u2\n").is_ok());
        assert!(grub_fits("2.06-13+deb12u2", "2.06-13+deb12u1").is_err());
        assert!(grub_fits("2.06-13+deb12u2", "2.12-9+deb13u4").is_err());
        assert!(grub_fits("", "").is_err());
        let text = format!(
            "{}",
            grub_fits("2.06-13+deb12u2", "2.12-9+deb13u4").unwrap_err()
        );
        assert!(
            text.contains("2.06-13+deb12u2") && text.contains("2.12-9+deb13u4"),
            "{text}"
        );
    }

    #[test]
    fn hostpart_fs_names_round_trip() {
        for fs in HostpartFs::ALL {
            assert_eq!(HostpartFs::parse(fs.as_str()), Some(fs));
        }
        assert_eq!(HostpartFs::parse("vfat"), None);
    }
}
