//! A whole disk for `hnroot install`: what holds it (observed from sysfs, the mount table and
//! the swap list, for the core's `install::disk_layout`), and the partitioning and
//! filesystems the core's steps ask for (sgdisk, mkfs).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::install::{DiskFacts, DiskLayout, DiskUse, HostpartFs};
use hnroot_core::layout::{ESP_LABEL, HOSTPART_LABEL};
use hnroot_core::probe::ext::ExtFeatures;
use hnroot_linux::blockdev::{self, BlockDev, Roots};
use hnroot_linux::loopdev;

use crate::tool::run;

/// How long to wait for the kernel to show a new partition's device node.
const PARTITION_WAIT: Duration = Duration::from_secs(10);

/// The disk, as found.
#[derive(Clone, Debug)]
pub struct Disk {
    /// Its device node.
    pub node: PathBuf,
    /// Its kernel name (`sda`, `loop3`).
    pub name: String,
    /// What the core needs.
    pub facts: DiskFacts,
    /// When it is in use: by what (a mount point, a swap area, a holder).
    pub used_by: Option<String>,
}

/// `major:minor` of a device node.
fn dev_numbers(node: &Path) -> Result<(u32, u32)> {
    let meta = std::fs::metadata(node)
        .with_context(|| format!("looked for the disk {}; cannot stat it", node.display()))?;
    if !meta.file_type().is_block_device() {
        bail!(
            "{} is not a block device: hnroot install takes a whole disk (/dev/sdX, /dev/nvmeXnY, \
             a loop device attached with losetup -P)",
            node.display()
        );
    }
    let rdev = meta.rdev();
    Ok((libc::major(rdev), libc::minor(rdev)))
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The kernel name of the block device `major:minor`.
fn name_of(major: u32, minor: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    link.file_name()?.to_str().map(str::to_owned)
}

/// The kernel names of the disk and its partitions.
fn family(roots: &Roots, disk: &str) -> Vec<String> {
    let mut names = vec![disk.to_owned()];
    if let Ok(devs) = blockdev::list(roots) {
        names.extend(
            devs.into_iter()
                .filter(|d| d.partition.as_ref().is_some_and(|p| p.disk == disk))
                .map(|d| d.name),
        );
    }
    names
}

/// `major:minor` of every member of the family.
fn family_numbers(roots: &Roots, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| read_trim(&roots.sys_class_block.join(n).join("dev")))
        .collect()
}

/// The device a mounted filesystem's `major:minor` ultimately lives on: itself, or for a loop
/// device the filesystem its backing file is on (one level: the running hnroot root is a loop
/// device over a file on hostpart).
fn backing_numbers(numbers: &str, mountinfo: &str) -> Vec<String> {
    let mut out = vec![numbers.to_owned()];
    let Some((major, minor)) = numbers.split_once(':') else {
        return out;
    };
    let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
        return out;
    };
    if let Some(name) = name_of(major, minor) {
        if let Some(file) = read_trim(Path::new(&format!("/sys/block/{name}/loop/backing_file"))) {
            // The mount holding the backing file: the longest mount point that prefixes it.
            let holder = mountinfo
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    Some((*f.get(4)?, *f.get(2)?))
                })
                .filter(|(mp, _)| Path::new(&file).starts_with(mp))
                .max_by_key(|(mp, _)| mp.len());
            if let Some((_, dev)) = holder {
                out.push(dev.to_owned());
            }
        }
    }
    out
}

/// Look at the disk `node`: its size, its sector size, and whether anything holds it.
pub fn observe(node: &Path) -> Result<Disk> {
    let roots = Roots::default();
    let (major, minor) = dev_numbers(node)?;
    let name = name_of(major, minor).ok_or_else(|| {
        anyhow!(
            "{} ({major}:{minor}) is not in /sys/dev/block",
            node.display()
        )
    })?;
    let sys = roots.sys_class_block.join(&name);
    if sys.join("partition").exists() {
        bail!(
            "{} is a partition: hnroot install takes the whole disk it is on",
            node.display()
        );
    }
    let size = read_trim(&sys.join("size"))
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| s * 512)
        .ok_or_else(|| anyhow!("cannot read the size of {} from sysfs", node.display()))?;
    let logical_sector = read_trim(&sys.join("queue/logical_block_size"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let members = family(&roots, &name);
    let numbers = family_numbers(&roots, &members);
    // The running root first: it is the most important thing to name.
    let (used, used_by) = mount_use(&numbers)
        .or_else(|| swap_use(&numbers))
        .or_else(|| loop_use(&roots, &name, &members))
        .or_else(|| holder_use(&roots, &members))
        .map_or((DiskUse::Unused, None), |(u, why)| (u, Some(why)));
    Ok(Disk {
        node: node.to_owned(),
        name,
        facts: DiskFacts {
            size,
            logical_sector,
            used,
        },
        used_by,
    })
}

/// A filesystem of the disk's family (`numbers`: the disk and its partitions, `MAJ:MIN`)
/// mounted, the running root named first.
fn mount_use(numbers: &[String]) -> Option<(DiskUse, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounted = None;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(dev), Some(mount_point)) = (f.get(2), f.get(4)) else {
            continue;
        };
        let lives_on = backing_numbers(dev, &mountinfo);
        if lives_on.iter().any(|d| numbers.contains(d)) {
            if *mount_point == "/" {
                return Some((
                    DiskUse::RunningRoot,
                    "the running system's root filesystem (/)".to_owned(),
                ));
            }
            if mounted.is_none() && numbers.contains(&(*dev).to_owned()) {
                mounted = Some((DiskUse::Mounted, format!("mounted at {mount_point}")));
            }
        }
    }
    mounted
}

/// A swap area of the disk's family.
fn swap_use(numbers: &[String]) -> Option<(DiskUse, String)> {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let mut found = None;
    for line in swaps.lines().skip(1) {
        let Some(path) = line.split_whitespace().next() else {
            continue;
        };
        if let Ok((ma, mi)) = dev_numbers(Path::new(path)) {
            if numbers.contains(&format!("{ma}:{mi}")) {
                found = Some((DiskUse::Swap, format!("swap on {path}")));
            }
        }
    }
    found
}

/// A loop device over a member of the family, or over a file on one. Loop devices do not show
/// in holders/: each one's backing file is asked for (by LOOP_GET_STATUS64).
fn loop_use(roots: &Roots, name: &str, members: &[String]) -> Option<(DiskUse, String)> {
    let numbers_of = |dev: u64| format!("{}:{}", libc::major(dev), libc::minor(dev));
    let member = |n: &str| {
        members
            .iter()
            .find(|m| read_trim(&roots.sys_class_block.join(m).join("dev")).as_deref() == Some(n))
            .cloned()
    };
    loopdev::attached(Path::new("/sys/block"), Path::new("/dev"))
        .into_iter()
        .filter(|lo| lo.name != name)
        .find_map(|lo| {
            let over = (lo.backing_rdev != 0)
                .then(|| member(&numbers_of(lo.backing_rdev)))
                .flatten()
                .map(|m| format!("{} is a loop device over {m}", lo.node.display()));
            over.or_else(|| {
                member(&numbers_of(lo.backing_dev))
                    .map(|m| format!("{} is a loop device over a file on {m}", lo.node.display()))
            })
        })
        .map(|why| (DiskUse::Held, why))
}

/// A member of the family held by another device (device-mapper, RAID).
fn holder_use(roots: &Roots, members: &[String]) -> Option<(DiskUse, String)> {
    members.iter().find_map(|member| {
        let holders: Vec<String> =
            std::fs::read_dir(roots.sys_class_block.join(member).join("holders"))
                .map(|r| {
                    r.filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
        (!holders.is_empty()).then(|| {
            (
                DiskUse::Held,
                format!("{member} is held by {}", holders.join(", ")),
            )
        })
    })
}

/// Wipe the disk's old signatures and write the GPT of `layout`: partition 1 the ESP (type
/// EF00, name `EFI-BOOT`), partition 2 hostpart (type 8300, name `hostpart`).
pub fn partition(disk: &Disk, layout: &DiskLayout) -> Result<()> {
    let sector = u64::from(disk.facts.logical_sector);
    let first = |b: u64| b / sector;
    let last = |b: u64| b / sector - 1;
    run(Command::new("wipefs")
        .arg("--all")
        .arg("--force")
        .arg(&disk.node))?;
    run(Command::new("sgdisk").arg("--zap-all").arg(&disk.node))?;
    run(Command::new("sgdisk")
        .arg(format!(
            "--new=1:{}:{}",
            first(layout.esp.start),
            last(layout.esp.end())
        ))
        .arg("--typecode=1:EF00")
        .arg(format!("--change-name=1:{ESP_LABEL}"))
        .arg(format!(
            "--new=2:{}:{}",
            first(layout.hostpart.start),
            last(layout.hostpart.end())
        ))
        .arg("--typecode=2:8300")
        .arg(format!("--change-name=2:{HOSTPART_LABEL}"))
        .arg(&disk.node))?;
    // sgdisk asks the kernel to re-read the table, which a loop device (and a disk another
    // program holds open) may not do; partx tells the kernel about each partition directly.
    run(Command::new("partx").arg("--update").arg(&disk.node))?;
    Ok(())
}

/// The device node of partition `number` of the disk, once the kernel shows it.
pub fn partition_node(disk: &Disk, number: u32) -> Result<PathBuf> {
    let roots = Roots::default();
    let deadline = Instant::now() + PARTITION_WAIT;
    loop {
        let found: Option<BlockDev> = blockdev::list(&roots).ok().and_then(|devs| {
            devs.into_iter().find(|d| {
                d.partition
                    .as_ref()
                    .is_some_and(|p| p.disk == disk.name && p.number == number)
            })
        });
        if let Some(dev) = found {
            if dev.node.exists() {
                return Ok(dev.node);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "looked for partition {number} of {} for {} s; the kernel shows none (a loop \
                 device must be attached with losetup -P)",
                disk.node.display(),
                PARTITION_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// FAT32 labelled `EFI-BOOT`.
pub fn make_esp(node: &Path) -> Result<()> {
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", ESP_LABEL])
        .arg(node))?;
    Ok(())
}

/// hostpart's filesystem labelled `hostpart`.
pub fn make_hostpart(node: &Path, fs: HostpartFs) -> Result<()> {
    make_fs(node, fs, HOSTPART_LABEL)
}

/// `mkfs.ext4 -O` turning off the features GRUB cannot read that mke2fs could turn on.
pub fn ext4_features_off() -> String {
    ExtFeatures::MKE2FS_SETS
        .codes()
        .map(|c| format!("^{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A filesystem of type `fs` labelled `label` on `target` (a partition or an image file),
/// made whatever was there before (ext4 without the features GRUB cannot read).
pub fn make_fs(target: &Path, fs: HostpartFs, label: &str) -> Result<()> {
    make_fs_with(target, fs, label, None)
}

/// [`make_fs`] with the filesystem's UUID given (`None`: a fresh one).
pub fn make_fs_with(
    target: &Path,
    fs: HostpartFs,
    label: &str,
    uuid: Option<&hnroot_core::uuid::FsUuid>,
) -> Result<()> {
    let mut cmd = match fs {
        HostpartFs::Ext4 => {
            let mut c = Command::new("mkfs.ext4");
            c.args(["-q", "-F", "-O", &ext4_features_off()]);
            c
        }
        HostpartFs::Btrfs => {
            let mut c = Command::new("mkfs.btrfs");
            c.args(["-q", "-f"]);
            c
        }
        HostpartFs::Xfs => {
            let mut c = Command::new("mkfs.xfs");
            c.args(["-q", "-f"]);
            c
        }
    };
    if let Some(u) = uuid {
        match fs {
            HostpartFs::Ext4 | HostpartFs::Btrfs => cmd.arg("-U").arg(u.to_string()),
            HostpartFs::Xfs => cmd.arg("-m").arg(format!("uuid={u}")),
        };
    }
    run(cmd.arg("-L").arg(label).arg(target))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ext superblock of an image file, as the core parses it.
    fn ext_sb(path: &Path) -> hnroot_core::probe::ext::ExtSuperblock {
        let bytes = std::fs::read(path).unwrap();
        hnroot_core::probe::ext::parse(&bytes[1024..2048]).unwrap()
    }

    /// A distribution's `mke2fs.conf` that turns on inline_data and casefold for ext4 (as
    /// MKE2FS_CONFIG, for every mkfs this test binary runs): `make_fs` still makes a
    /// filesystem GRUB reads, which a plain `mkfs.ext4` under the same configuration does not.
    #[test]
    fn ext4_is_made_without_the_features_grub_cannot_read_whatever_mke2fs_conf_says() {
        if Command::new("mkfs.ext4").arg("-V").output().is_err() {
            eprintln!("skipping: no mkfs.ext4");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mke2fs.conf");
        std::fs::write(
            &conf,
            "[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,\
             metadata_csum,64bit,dir_nlink,extra_isize,inline_data,casefold\n\t}\n",
        )
        .unwrap();
        std::env::set_var("MKE2FS_CONFIG", &conf);
        let image = dir.path().join("fs.img");
        let sized = || {
            std::fs::File::create(&image)
                .unwrap()
                .set_len(64 << 20)
                .unwrap()
        };
        sized();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image)).unwrap();
        let plain = ext_sb(&image).grub_lacks;
        assert!(
            plain.contains(ExtFeatures::INLINE_DATA | ExtFeatures::CASEFOLD),
            "the configuration took effect: {plain:?}"
        );
        sized();
        make_fs(&image, HostpartFs::Ext4, "hn-root").unwrap();
        let made = ext_sb(&image);
        assert!(made.grub_lacks.is_empty(), "{:?}", made.grub_lacks);
        assert_eq!(made.label.unwrap().as_bytes(), b"hn-root");
    }

    #[test]
    fn a_regular_file_is_not_a_disk() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = observe(f.path()).unwrap_err().to_string();
        assert!(err.contains("not a block device"), "{err}");
    }
}
