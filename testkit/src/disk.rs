//! Builds hnroot's test disks without root or loop devices, and never boots them: ext4 root
//! images (`mkfs.ext4 -d`) holding a kernel, an initramfs, busybox and a test `/sbin/init`; the
//! hostpart filesystem (ext4 or btrfs, `--rootdir`) holding image files and `data/`; the FAT ESP
//! (`mkfs.vfat` + mtools) holding a [`GrubImage`] as `EFI/BOOT/BOOTX64.EFI` and the boot-state
//! file; and the GPT disk around them (`sgdisk` on a plain file, `dd conv=notrunc,sparse`).
//! Each builder takes a small spec, reads back what it made (UUIDs, partition starts) and
//! returns it. [`build`] is the one way a suite makes a disk to boot: the ESP as partition 1,
//! hostpart as partition 2.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::buildenv;
use crate::busybox;
use crate::grubimage::GrubImage;

/// One MiB.
pub const MIB: u64 = 1024 * 1024;
/// GPT sector size used for the disks we build.
pub const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries, like every partitioning tool does today.
const ALIGN_SECTORS: u64 = MIB / SECTOR;
/// The label GRUB and the initramfs look for.
pub const HOSTPART_LABEL: &str = "hostpart";
/// The ESP's label and GPT partition name.
pub const ESP_LABEL: &str = "EFI-BOOT";
/// Where the boot-state block lives on the ESP.
pub const BOOTSTATE_PATH: &str = "hnroot/bootstate";
/// The boot-state block's size.
pub const BOOTSTATE_LEN: usize = 1024;
/// GPT type code of an ESP (sgdisk short form).
pub const TYPE_ESP: &str = "EF00";
/// GPT type code of a Linux filesystem (sgdisk short form).
pub const TYPE_LINUX_FS: &str = "8300";
/// The ext4 superblock starts at byte 1024; its UUID is at offset 104 within it.
const EXT4_UUID_OFFSET: usize = 1024 + 104;
/// The inode flag `chattr +i` sets on ext4.
const EXT4_IMMUTABLE_FL: u32 = 0x10;
/// ext4 labels hold 16 bytes.
const EXT4_LABEL_MAX: usize = 16;
/// mkfs.btrfs refuses devices much smaller than this with the default profiles.
const BTRFS_MIN_MIB: u64 = 256;
/// mkfs.xfs refuses filesystems under 300 MiB (xfsprogs 5.19 and later).
const XFS_MIN_MIB: u64 = 300;
/// The test init is the image's whole userland; a version string is pasted into it.
const VERSION_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+";
/// Bound on files in a staging tree when sizing it.
const MAX_STAGING_ENTRIES: usize = 100_000;

/// A filesystem or partition UUID (RFC 4122 text form, lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// A random (version 4) UUID from /dev/urandom.
    pub fn random() -> Result<Self> {
        let mut bytes = [0u8; 16];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("cannot read /dev/urandom")?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Ok(Self(bytes))
    }

    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let groups: Vec<&str> = text.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            bail!("{text:?} is not a UUID (8-4-4-4-12 hex digits)");
        }
        let hex: String = groups.concat();
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = hex
                .get(2 * i..2 * i + 2)
                .ok_or_else(|| anyhow!("{text:?} is too short for a UUID"))?;
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| anyhow!("{text:?} has a non-hex digit"))?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A file to place in an image: path relative to the filesystem root, mode, contents.
#[derive(Debug, Clone)]
pub struct ImageFile {
    /// Relative to the filesystem root, without `..`.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// The bytes.
    pub contents: Vec<u8>,
}

impl ImageFile {
    /// A file at `path` with `mode` holding `contents`.
    pub fn new(path: &str, mode: u32, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.to_string(),
            mode,
            contents: contents.into(),
        }
    }
}

/// A filesystem image that was built: where, its UUID as read back, its size.
#[derive(Debug, Clone)]
pub struct BuiltFs {
    /// The image file.
    pub path: PathBuf,
    /// Its filesystem UUID, read back from the image.
    pub uuid: Uuid,
    /// Its size in bytes.
    pub size: u64,
}

/// What goes into a root image (`hn-root*.img`).
#[derive(Debug, Clone)]
pub struct RootImageSpec {
    /// Printed by the test init as `version=<V>`; letters, digits and `.-_+` only.
    pub version: String,
    /// The ext4 UUID; random when `None`.
    pub uuid: Option<Uuid>,
    /// Becomes `/boot/kernel`.
    pub kernel: PathBuf,
    /// Becomes `/boot/initramfs`.
    pub initramfs: PathBuf,
    /// Shell commands the test init runs after printing what booted, before powering off
    /// (e.g. `hnroot mark-good`, `touch /hostpart/system-revert`). Empty for none.
    pub init_extra: String,
    /// More files (e.g. `usr/bin/hnroot`).
    pub files: Vec<ImageFile>,
    /// `/sbin/init` is this symbolic link instead of the test init (an image whose init is
    /// missing: a link to nowhere).
    pub init_link: Option<String>,
    /// Image size; by default the content plus a quarter plus 16 MiB.
    pub size_mib: Option<u64>,
}

impl RootImageSpec {
    /// A root image of `version` with `kernel` and `initramfs`, a random UUID, no extras.
    pub fn new(version: &str, kernel: &Path, initramfs: &Path) -> Self {
        Self {
            version: version.to_string(),
            uuid: None,
            kernel: kernel.to_path_buf(),
            initramfs: initramfs.to_path_buf(),
            init_extra: String::new(),
            files: Vec::new(),
            init_link: None,
            size_mib: None,
        }
    }
}

/// The filesystem of hostpart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostFs {
    /// ext4.
    Ext4,
    /// btrfs.
    Btrfs,
    /// XFS (as `hnroot install --hostpart-fs xfs` makes it).
    Xfs,
}

impl fmt::Display for HostFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostFs::Ext4 => "ext4",
            HostFs::Btrfs => "btrfs",
            HostFs::Xfs => "xfs",
        })
    }
}

/// A hostpart entry that is not a file's bytes: what a hand-made or hostile hostpart may hold
/// where hnroot expects an image file or the revert marker. `mkfs.ext4 -d` copies each of
/// them as it is (the builder's test reads them back with debugfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostpartEntry {
    /// A symbolic link with this target, written as given (relative, absolute, dangling,
    /// leaving hostpart, pointing at itself).
    Symlink(String),
    /// A second name (hard link) of the file at this path, relative to hostpart's root; that
    /// file must be placed first (an image, a copy or a file of the spec).
    HardLink(String),
    /// An empty directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
}

/// What goes into the hostpart filesystem.
#[derive(Debug, Clone)]
pub struct HostpartSpec {
    /// Its filesystem.
    pub fs: HostFs,
    /// `hostpart` unless a scenario wants a wrong or duplicate label.
    pub label: String,
    /// Random when `None`.
    pub uuid: Option<Uuid>,
    /// (name on hostpart, source file), e.g. ("hn-root.img", built root image).
    pub images: Vec<(String, PathBuf)>,
    /// More files, relative to hostpart's root (e.g. `data/hello`, `system-revert`).
    pub files: Vec<ImageFile>,
    /// (path relative to hostpart's root, source file): big files copied in, e.g. an image
    /// kept in `data/` for the test init to stage.
    pub copies: Vec<(String, PathBuf)>,
    /// (path relative to hostpart's root, entry): links, directories and FIFOs, placed after
    /// everything else (ext4 hostparts only).
    pub entries: Vec<(String, HostpartEntry)>,
    /// Entries of the top directory given the immutable attribute (`chattr +i`: nobody can
    /// rename, replace or remove them); ext4 only.
    pub immutable: Vec<String>,
    /// Size; by default the content times 1.5 plus 64 MiB (at least 256 MiB for btrfs).
    pub size_mib: Option<u64>,
}

impl HostpartSpec {
    /// An empty hostpart of `fs` labelled `hostpart`, random UUID, sized by its content.
    pub fn new(fs: HostFs) -> Self {
        Self {
            fs,
            label: HOSTPART_LABEL.to_string(),
            uuid: None,
            images: Vec::new(),
            files: Vec::new(),
            copies: Vec::new(),
            entries: Vec::new(),
            immutable: Vec::new(),
            size_mib: None,
        }
    }

    /// The same with `source` as the image file `name` in hostpart's top directory.
    pub fn image(mut self, name: &str, source: &Path) -> Self {
        self.images.push((name.to_string(), source.to_path_buf()));
        self
    }

    /// Copy `source` to `path` (relative to hostpart's root, subdirectories allowed).
    pub fn image_at(mut self, path: &str, source: &Path) -> Self {
        self.copies.push((path.to_string(), source.to_path_buf()));
        self
    }

    /// Place `entry` at `path` (relative to hostpart's root, subdirectories allowed).
    pub fn entry(mut self, path: &str, entry: HostpartEntry) -> Self {
        self.entries.push((path.to_string(), entry));
        self
    }
}

/// What goes onto the ESP.
#[derive(Debug, Clone)]
pub struct EspSpec {
    /// Becomes `EFI/BOOT/BOOTX64.EFI` (a [`GrubImage`]'s file).
    pub bootx64: PathBuf,
    /// The FAT label (`EFI-BOOT` unless a scenario is about labels).
    pub label: String,
    /// Contents of `hnroot/bootstate`; 1024 zero bytes by default (preallocated, so that
    /// GRUB can later overwrite it in place without allocating); `None`: no such file.
    pub bootstate: Option<Vec<u8>>,
    /// More files on the ESP.
    pub files: Vec<ImageFile>,
    /// Empty directories on the ESP, made after the files (e.g. `hnroot/bootstate` as a
    /// directory where the boot-state file belongs, with `bootstate: None`).
    pub dirs: Vec<String>,
    /// FAT32 needs at least ~33 MiB with 512-byte clusters; 64 MiB by default.
    pub size_mib: u64,
}

impl EspSpec {
    /// An ESP labelled `EFI-BOOT` with `grub` as its boot loader and a blank boot-state file.
    pub fn new(grub: &GrubImage) -> Self {
        Self {
            bootx64: grub.path.clone(),
            label: ESP_LABEL.to_string(),
            bootstate: Some(vec![0; BOOTSTATE_LEN]),
            files: Vec::new(),
            dirs: Vec::new(),
            size_mib: 64,
        }
    }
}

/// One partition to put on a GPT disk.
#[derive(Debug, Clone)]
pub struct PartSpec {
    /// GPT partition name (`EFI-BOOT`, `hostpart`).
    pub name: String,
    /// sgdisk type code (`EF00`, `8300`).
    pub type_code: String,
    /// The filesystem image that fills the partition (the partition is its size, in MiB).
    pub image: PathBuf,
    /// PARTUUID; random when `None`.
    pub partuuid: Option<Uuid>,
}

impl PartSpec {
    /// `image` as the ESP (`EF00`, named `EFI-BOOT`).
    pub fn esp(image: &Path) -> Self {
        Self {
            name: ESP_LABEL.to_string(),
            type_code: TYPE_ESP.to_string(),
            image: image.to_path_buf(),
            partuuid: None,
        }
    }

    /// `image` as hostpart (`8300`, named `hostpart`).
    pub fn hostpart(image: &Path) -> Self {
        Self {
            name: HOSTPART_LABEL.to_string(),
            type_code: TYPE_LINUX_FS.to_string(),
            image: image.to_path_buf(),
            partuuid: None,
        }
    }
}

/// A partition as written and read back with `sgdisk -i`.
#[derive(Debug, Clone)]
pub struct Partition {
    /// 1-based GPT entry number (`/dev/vda<number>`).
    pub number: u32,
    /// GPT partition name.
    pub name: String,
    /// First sector.
    pub first_lba: u64,
    /// Length in sectors.
    pub sectors: u64,
    /// The partition's unique GUID.
    pub partuuid: Uuid,
}

/// A GPT disk image that was built.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The raw disk image.
    pub path: PathBuf,
    /// The GPT disk GUID.
    pub disk_guid: Uuid,
    /// The partitions, in order.
    pub partitions: Vec<Partition>,
}

/// Build an ext4 root image at `out` from `spec`: `/boot/kernel`, `/boot/initramfs`,
/// `/bin/busybox` with applet links, the test `/sbin/init`, the mount points `/hostpart`,
/// `/proc`, `/sys`, `/dev`, `/run`, `/tmp`, and `/data0 -> /hostpart/data`.
pub fn build_root_image(spec: &RootImageSpec, out: &Path) -> Result<BuiltFs> {
    if spec.version.is_empty() || !spec.version.chars().all(|c| VERSION_CHARS.contains(c)) {
        bail!(
            "root image version {:?} must be non-empty and use only {VERSION_CHARS}",
            spec.version
        );
    }
    let stage = buildenv::fresh_dir(&out.with_extension("staging"))?;
    for dir in [
        "bin", "sbin", "boot", "etc", "hostpart", "proc", "sys", "dev", "run", "tmp", "root",
        "usr", "usr/sbin",
    ] {
        mkdir(&stage.join(dir))?;
    }
    let bb = busybox::host()?;
    write_file(&stage.join("bin/busybox"), 0o755, &bb.binary)?;
    for applet in &bb.applets {
        symlink("busybox", stage.join("bin").join(applet))
            .with_context(|| format!("cannot link bin/{applet} in {}", stage.display()))?;
    }
    symlink("/hostpart/data", stage.join("data0")).context("cannot create /data0")?;
    copy(&spec.kernel, &stage.join("boot/kernel"))?;
    copy(&spec.initramfs, &stage.join("boot/initramfs"))?;
    match &spec.init_link {
        Some(target) => symlink(target, stage.join("sbin/init"))
            .with_context(|| format!("cannot link sbin/init in {}", stage.display()))?,
        None => write_file(
            &stage.join("sbin/init"),
            0o755,
            test_init(&spec.version, &spec.init_extra).as_bytes(),
        )?,
    }
    write_file(
        &stage.join("etc/hnroot-version"),
        0o644,
        format!("{}\n", spec.version).as_bytes(),
    )?;
    place_files(&stage, &spec.files)?;

    let content = tree_size(&stage)?;
    let size_mib = spec
        .size_mib
        .unwrap_or(content / MIB + content / MIB / 4 + 16);
    let uuid = match spec.uuid {
        Some(u) => u,
        None => Uuid::random()?,
    };
    let label: String = format!("hnroot-{}", spec.version)
        .chars()
        .take(EXT4_LABEL_MAX)
        .collect();
    mkfs_ext4(&stage, out, size_mib, &label, uuid)?;
    fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    let got = ext4_uuid(out)?;
    if got != uuid {
        bail!("mkfs.ext4 -U {uuid} made {} with UUID {got}", out.display());
    }
    Ok(BuiltFs {
        path: out.to_path_buf(),
        uuid,
        size: size_mib * MIB,
    })
}

/// Where a scenario puts the actions the test init carries out, one line per boot (on hostpart).
pub const ACTIONS_PATH: &str = "data/e2e/actions";
/// Where hnroot-init leaves the image mounted read-only under its writable overlay (its
/// `/run/hnroot/image`, moved with `/run` into the running system).
const IMAGE_MOUNT: &str = "/run/hnroot/image";
/// The test init's count of boots that reached the actions, next to them.
pub const BOOT_COUNT_PATH: &str = "data/e2e/boots";

/// The test `/sbin/init` of root images: prints what booted in `hnroot-test:` lines that
/// scenarios wait for (with the arguments it was started with: the kernel command line's
/// words for init), shows `/hostpart` (with each image file's ext4 UUID) and `/data0`, runs
/// `extra` (what this image does on every boot, e.g. fail), then the scenario's action for
/// this boot: line N of `/hostpart/data/e2e/actions` on the N-th boot that gets there (counted
/// in `/hostpart/data/e2e/boots`). It reboots while actions remain, else powers off.
pub fn test_init(version: &str, extra: &str) -> String {
    format!(
        r#"#!/bin/sh
# hnroot test init (written by hnroot-testkit, testkit/src/disk.rs): report what booted on the
# console, show hostpart, run the scenario's action for this boot, then reboot or power off.
# PID 1: never exits on its own.
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
[ -e /proc/mounts ] || mount -t proc proc /proc
[ -d /sys/block ] || mount -t sysfs sysfs /sys
# The image is mounted read-only; the hnroot CLI needs a writable /tmp for its ESP mount.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
read -r up _ </proc/uptime
echo "hnroot-test: init started at uptime=$up"
ext4_uuid() {{
  hexdump -s {uuid_offset} -n 16 -e '4/1 "%02x" "-" 2/1 "%02x" "-" 2/1 "%02x" "-" 2/1 "%02x" "-" 6/1 "%02x" "
"' "$1" 2>/dev/null
}}
rootdev=$(awk '$2 == "/" {{ d = $1 }} END {{ print d }}' /proc/mounts)
# Under hnroot's writable overlay the image itself is mounted read-only at {image_mnt}.
imagedev=$(awk '$2 == "{image_mnt}" {{ d = $1 }} END {{ print d }}' /proc/mounts)
[ -n "$imagedev" ] && rootdev=$imagedev
uuid=$(ext4_uuid "$rootdev")
echo "hnroot-test: booted version={version} uuid=${{uuid:-unknown}}"
echo "hnroot-test: args $#: $*"
backing=$(cat "/sys/block/${{rootdev#/dev/}}/loop/backing_file" 2>/dev/null)
echo "hnroot-test: root=$rootdev backing=${{backing:-none}}"
echo "hnroot-test: cmdline=$(cat /proc/cmdline)"
echo "hnroot-test: mounts:"
grep -E ' (/|/hostpart|{image_mnt}) ' /proc/mounts
echo "hnroot-test: ls /hostpart:"
ls -la /hostpart
for f in /hostpart/hn-root*.img; do
  [ -f "$f" ] || continue
  echo "hnroot-test: image ${{f#/hostpart/}} uuid=$(ext4_uuid "$f") size=$(stat -c %s "$f")"
done
echo "hnroot-test: ls /data0/:"
ls -la /data0/
{extra}
next=poweroff
actions=/hostpart/{actions}
if [ -f "$actions" ]; then
  n=$(cat /hostpart/{count} 2>/dev/null)
  n=$(( ${{n:-0}} + 1 ))
  echo "$n" > /hostpart/{count}
  sync
  action=$(sed -n "${{n}}p" "$actions")
  echo "hnroot-test: action $n: ${{action:-none}}"
  if [ -n "$action" ]; then
    sh -c "$action"
    echo "hnroot-test: action $n exit=$?"
  fi
  [ "$n" -lt "$(wc -l < "$actions")" ] && next=reboot
fi
sync
if [ "$next" = reboot ]; then
  echo "hnroot-test: rebooting"
  reboot -f
else
  echo "hnroot-test: powering off"
  poweroff -f
fi
echo "hnroot-test: $next -f returned; halting here"
while :; do sleep 3600; done
"#,
        uuid_offset = EXT4_UUID_OFFSET,
        image_mnt = IMAGE_MOUNT,
        actions = ACTIONS_PATH,
        count = BOOT_COUNT_PATH,
    )
}

/// Build the hostpart filesystem at `out`: the images under their names, `data/`, the files.
pub fn build_hostpart(spec: &HostpartSpec, out: &Path) -> Result<BuiltFs> {
    let stage = buildenv::fresh_dir(&out.with_extension("staging"))?;
    mkdir(&stage.join("data"))?;
    for (name, source) in &spec.images {
        if name.is_empty() || name.contains('/') {
            bail!("hostpart image name {name:?} must be a plain file name");
        }
        copy(source, &stage.join(name))?;
    }
    for (path, source) in &spec.copies {
        let rel = Path::new(path);
        if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            bail!("hostpart copy path {path:?} must be relative without '..'");
        }
        if let Some(parent) = stage.join(rel).parent() {
            mkdir(parent)?;
        }
        copy(source, &stage.join(rel))?;
    }
    place_files(&stage, &spec.files)?;
    if !spec.entries.is_empty() && spec.fs != HostFs::Ext4 {
        bail!(
            "links, directories and FIFOs on hostpart are built on ext4 only (mkfs.ext4 -d is \
             checked to copy them as they are; mkfs.btrfs --rootdir is not)"
        );
    }
    place_entries(&stage, &spec.entries)?;
    let content = tree_size(&stage)?;
    let mut size_mib = spec
        .size_mib
        .unwrap_or(content / MIB + content / MIB / 2 + 64);
    let uuid = match spec.uuid {
        Some(u) => u,
        None => Uuid::random()?,
    };
    if spec.fs != HostFs::Ext4 && !spec.immutable.is_empty() {
        bail!("immutable entries on hostpart are made with debugfs: ext4 only");
    }
    match spec.fs {
        HostFs::Ext4 => {
            mkfs_ext4(&stage, out, size_mib, &spec.label, uuid)?;
            for name in &spec.immutable {
                set_immutable(out, name)?;
            }
        }
        HostFs::Btrfs => {
            size_mib = size_mib.max(BTRFS_MIN_MIB);
            sized_file(out, size_mib)?;
            buildenv::run(
                Command::new("mkfs.btrfs")
                    .args(["-q", "-f", "-L", &spec.label, "-U", &uuid.to_string()])
                    .arg("--rootdir")
                    .arg(&stage)
                    .arg(out),
            )
            .with_context(|| format!("building the btrfs hostpart ({size_mib} MiB)"))?;
        }
        HostFs::Xfs => {
            size_mib = size_mib.max(XFS_MIN_MIB);
            sized_file(out, size_mib)?;
            buildenv::run(
                Command::new("mkfs.xfs")
                    .args(["-q", "-f", "-L", &spec.label, "-m"])
                    .arg(format!("uuid={uuid}"))
                    .arg(out),
            )
            .with_context(|| format!("building the XFS hostpart ({size_mib} MiB)"))?;
            // mkfs.xfs has no --rootdir: the staging tree is copied in through a loop mount
            // (the kernel's XFS, as the server's will be), then unmounted cleanly.
            copy_in_mounted(out, "xfs", &stage)?;
        }
    }
    fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    let got = match spec.fs {
        HostFs::Ext4 => ext4_uuid(out)?,
        HostFs::Btrfs => btrfs_fsid(out)?,
        HostFs::Xfs => xfs_uuid(out)?,
    };
    if got != uuid {
        bail!(
            "{} hostpart {} has UUID {got}, asked for {uuid}",
            spec.fs,
            out.display()
        );
    }
    Ok(BuiltFs {
        path: out.to_path_buf(),
        uuid,
        size: size_mib * MIB,
    })
}

/// Build the FAT32 ESP at `out`: `EFI/BOOT/BOOTX64.EFI`, `hnroot/bootstate`, the files.
pub fn build_esp(spec: &EspSpec, out: &Path) -> Result<PathBuf> {
    if out.exists() {
        fs::remove_file(out).with_context(|| format!("cannot remove {}", out.display()))?;
    }
    buildenv::run(
        Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", &spec.label, "-C"])
            .arg(out)
            .arg((spec.size_mib * 1024).to_string()),
    )
    .with_context(|| format!("building the ESP ({} MiB)", spec.size_mib))?;
    let mut files = vec![ImageFile::new(
        "EFI/BOOT/BOOTX64.EFI",
        0o644,
        read(&spec.bootx64)?,
    )];
    if let Some(bootstate) = &spec.bootstate {
        files.push(ImageFile::new(BOOTSTATE_PATH, 0o644, bootstate.clone()));
    }
    files.extend(spec.files.iter().cloned());
    let scratch = buildenv::fresh_dir(&out.with_extension("staging"))?;
    let mut made_dirs = BTreeSet::new();
    let mut mmd = |path: &str, parents_only: bool| -> Result<()> {
        let parts: Vec<&str> = path.split('/').collect();
        let depths = if parents_only {
            1..parts.len()
        } else {
            1..parts.len() + 1
        };
        for depth in depths {
            let dir = parts[..depth].join("/");
            if made_dirs.insert(dir.clone()) {
                mtools(
                    Command::new("mmd")
                        .arg("-i")
                        .arg(out)
                        .arg(format!("::{dir}")),
                )?;
            }
        }
        Ok(())
    };
    for (i, file) in files.iter().enumerate() {
        mmd(&file.path, true)?;
        let local = scratch.join(i.to_string());
        fs::write(&local, &file.contents)
            .with_context(|| format!("cannot write {}", local.display()))?;
        mtools(
            Command::new("mcopy")
                .arg("-i")
                .arg(out)
                .arg(&local)
                .arg(format!("::{}", file.path)),
        )?;
    }
    for dir in &spec.dirs {
        mmd(dir, false)?;
    }
    fs::remove_dir_all(&scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
    Ok(out.to_path_buf())
}

/// Assemble a GPT disk at `out` from partition images, in order, each on a 1 MiB boundary
/// and exactly its image's size (rounded up to MiB). The partitions are read back with
/// `sgdisk -i` and checked against what was asked.
pub fn build_disk(parts: &[PartSpec], out: &Path) -> Result<Disk> {
    if parts.is_empty() || parts.len() > 128 {
        bail!("a GPT disk needs 1 to 128 partitions, got {}", parts.len());
    }
    let disk_guid = Uuid::random()?;
    let mut sgdisk = Command::new("sgdisk");
    sgdisk.arg(format!("--disk-guid={disk_guid}"));
    let mut next_lba = ALIGN_SECTORS;
    let mut planned = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let number = u32::try_from(i + 1)?;
        let bytes = fs::metadata(&part.image)
            .with_context(|| format!("partition {number} image {}", part.image.display()))?
            .len();
        let sectors = bytes.div_ceil(MIB) * ALIGN_SECTORS;
        if sectors == 0 {
            bail!("partition {number} image {} is empty", part.image.display());
        }
        let partuuid = match part.partuuid {
            Some(u) => u,
            None => Uuid::random()?,
        };
        let first = next_lba;
        let last = first + sectors - 1;
        sgdisk
            .arg(format!("--new={number}:{first}:{last}"))
            .arg(format!("--typecode={number}:{}", part.type_code))
            .arg(format!("--change-name={number}:{}", part.name))
            .arg(format!("--partition-guid={number}:{partuuid}"));
        planned.push(Partition {
            number,
            name: part.name.clone(),
            first_lba: first,
            sectors,
            partuuid,
        });
        next_lba = last + 1;
    }
    // One spare MiB at the end holds the backup GPT (33 sectors).
    let total = (next_lba + ALIGN_SECTORS) * SECTOR;
    if out.exists() {
        fs::remove_file(out).with_context(|| format!("cannot remove {}", out.display()))?;
    }
    File::create(out)
        .and_then(|f| f.set_len(total))
        .with_context(|| format!("cannot create the {total}-byte disk {}", out.display()))?;
    // No -q: sgdisk 1.0.9 with -q on a blank file silently writes no partition table.
    buildenv::run(sgdisk.arg(out))?;
    for (part, spec) in planned.iter().zip(parts) {
        let info = buildenv::run(
            Command::new("sgdisk")
                .arg(format!("--info={}", part.number))
                .arg(out),
        )?;
        let first = sgdisk_field(&info, "First sector:")?;
        let got_guid = Uuid::parse(&sgdisk_field(&info, "Partition unique GUID:")?)?;
        let first: u64 = first
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("sgdisk --info gives first sector {first:?}"))?;
        if first != part.first_lba || got_guid != part.partuuid {
            bail!(
                "{}: partition {} reads back at LBA {first} with PARTUUID {got_guid}, written \
                 at {} with {}",
                out.display(),
                part.number,
                part.first_lba,
                part.partuuid
            );
        }
        buildenv::run(
            Command::new("dd")
                .arg(format!("if={}", spec.image.display()))
                .arg(format!("of={}", out.display()))
                .arg("bs=1M")
                .arg(format!("seek={}", part.first_lba / ALIGN_SECTORS))
                .args(["conv=notrunc,sparse", "status=none"]),
        )?;
    }
    Ok(Disk {
        path: out.to_path_buf(),
        disk_guid,
        partitions: planned,
    })
}

/// A disk as hnroot boots from it: a GPT disk whose partition 1 is the ESP and partition 2
/// hostpart.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// Names the disk in messages.
    pub name: String,
    /// Partition 1.
    pub esp: EspSpec,
    /// Partition 2.
    pub hostpart: HostpartSpec,
}

/// A disk [`build`] made.
#[derive(Debug, Clone)]
pub struct BuiltDisk {
    /// The spec's name.
    pub name: String,
    /// The raw disk image.
    pub path: PathBuf,
    /// hostpart's filesystem.
    pub fs: HostFs,
    /// Partition 1 as written and read back.
    pub esp: Partition,
    /// Partition 2 as written and read back.
    pub hostpart: Partition,
}

impl BuiltDisk {
    /// Byte offset of a partition on the disk.
    pub fn offset(part: &Partition) -> u64 {
        part.first_lba * SECTOR
    }
}

/// Build the disk `spec` describes as `dir/disk.img` (`dir` is created if needed; the
/// partition images are made there and removed once they are on the disk).
pub fn build(spec: &DiskSpec, dir: &Path) -> Result<BuiltDisk> {
    mkdir(dir)?;
    let hostpart = build_hostpart(&spec.hostpart, &dir.join("hostpart.img"))?;
    let esp = build_esp(&spec.esp, &dir.join("esp.img"))?;
    let built = build_disk(
        &[PartSpec::esp(&esp), PartSpec::hostpart(&hostpart.path)],
        &dir.join("disk.img"),
    )?;
    for scratch in [&esp, &hostpart.path] {
        fs::remove_file(scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
    }
    let (Some(esp), Some(hostpart)) = (built.partitions.first(), built.partitions.get(1)) else {
        bail!("{}: built a disk without two partitions", spec.name);
    };
    Ok(BuiltDisk {
        name: spec.name.clone(),
        path: built.path.clone(),
        fs: spec.hostpart.fs,
        esp: esp.clone(),
        hostpart: hostpart.clone(),
    })
}

/// A second disk with nothing but a hostpart-like partition (`spec`'s label may be
/// `hostpart`), as `dir/disk.img`: another server's disk plugged in.
pub fn build_hostpart_only(spec: &HostpartSpec, dir: &Path) -> Result<PathBuf> {
    mkdir(dir)?;
    let hostpart = build_hostpart(spec, &dir.join("hostpart.img"))?;
    let built = build_disk(&[PartSpec::hostpart(&hostpart.path)], &dir.join("disk.img"))?;
    fs::remove_file(&hostpart.path)
        .with_context(|| format!("cannot remove {}", hostpart.path.display()))?;
    Ok(built.path)
}

/// A copy of a disk image (sparse), so several runs can start from one built state.
pub fn copy_disk(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        mkdir(parent)?;
    }
    buildenv::run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))?;
    Ok(())
}

/// The ext4 UUID of an image file, read from its superblock.
pub fn ext4_uuid(image: &Path) -> Result<Uuid> {
    let mut head = [0u8; EXT4_UUID_OFFSET + 16];
    File::open(image)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("cannot read the ext4 superblock of {}", image.display()))?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&head[EXT4_UUID_OFFSET..]);
    Ok(Uuid(uuid))
}

fn xfs_uuid(image: &Path) -> Result<Uuid> {
    let out = buildenv::run(Command::new("xfs_admin").arg("-u").arg(image))?;
    let uuid = out
        .lines()
        .find_map(|l| l.strip_prefix("UUID = "))
        .ok_or_else(|| anyhow!("xfs_admin -u of {} printed no UUID: {out}", image.display()))?;
    Uuid::parse(uuid.trim())
}

/// Copy the contents of `stage` into the filesystem image `image` of type `fs_type` through a
/// loop mount (root), keeping modes and times; unmounted before returning, also on failure.
pub fn copy_in_mounted(image: &Path, fs_type: &str, stage: &Path) -> Result<()> {
    let mnt = buildenv::fresh_dir(&image.with_extension("mnt"))?;
    buildenv::run(
        Command::new("mount")
            .args(["-t", fs_type, "-o", "loop"])
            .arg(image)
            .arg(&mnt),
    )
    .with_context(|| {
        format!(
            "loop-mounting {} to fill it (root is needed)",
            image.display()
        )
    })?;
    let copied = buildenv::run(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", stage.display()))
            .arg(&mnt),
    );
    let unmounted = buildenv::run(Command::new("umount").arg(&mnt));
    copied.with_context(|| format!("copying {} into {}", stage.display(), image.display()))?;
    unmounted?;
    fs::remove_dir(&mnt).with_context(|| format!("cannot remove {}", mnt.display()))?;
    Ok(())
}

fn btrfs_fsid(image: &Path) -> Result<Uuid> {
    let dump = buildenv::run(
        Command::new("btrfs")
            .args(["inspect-internal", "dump-super"])
            .arg(image),
    )?;
    let fsid = dump
        .lines()
        .find_map(|l| l.strip_prefix("fsid"))
        .ok_or_else(|| anyhow!("btrfs dump-super of {} has no fsid line", image.display()))?;
    Uuid::parse(fsid)
}

fn sgdisk_field(info: &str, key: &str) -> Result<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| anyhow!("sgdisk --info output has no {key:?} line:\n{info}"))
}

fn mkfs_ext4(stage: &Path, out: &Path, size_mib: u64, label: &str, uuid: Uuid) -> Result<()> {
    sized_file(out, size_mib)?;
    // The features GRUB cannot read are turned off as `hnroot image build` turns them off;
    // metadata_csum_seed too, which hnroot's GRUB 2.12 reads but the loaders of hnroot before
    // its own GRUB (Debian 12's GRUB 2.06, which e2e's compat-previous boots) refuse;
    // orphan_file (e2fsprogs 1.47) is left off so older tools can inspect the images.
    // 4 KiB blocks even on small filesystems (mke2fs would pick 1 KiB below 512 MiB): GRUB
    // reads the kernel through a loop device on hostpart, and 1 KiB blocks on both levels
    // make that several times slower under TCG.
    buildenv::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label, "-U", &uuid.to_string()])
            .args(["-b", "4096"])
            .arg("-O")
            .arg(format!(
                "^metadata_csum_seed,^orphan_file,{}",
                hnroot_install::disk::ext4_features_off()
            ))
            .args(["-E", "root_owner=0:0"])
            .arg("-d")
            .arg(stage)
            .arg(out),
    )
    .with_context(|| {
        format!(
            "building ext4 {} ({size_mib} MiB) from {}",
            out.display(),
            stage.display()
        )
    })?;
    Ok(())
}

/// `chattr +i` on the entry `name` of the top directory of the ext4 image `fs`, offline: its
/// inode flags read and written back with `EXT4_IMMUTABLE_FL` added.
fn set_immutable(fs: &Path, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        bail!("immutable entry {name:?} must be a plain name in the top directory");
    }
    let stat = buildenv::run(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat /{name}"))
            .arg(fs),
    )?;
    let flags = stat
        .lines()
        .find_map(|l| l.split("Flags: 0x").nth(1))
        .and_then(|f| u32::from_str_radix(f.split_whitespace().next()?, 16).ok())
        .ok_or_else(|| anyhow!("debugfs shows no flags for /{name} in {}", fs.display()))?;
    buildenv::run(
        Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!(
                "set_inode_field /{name} flags 0x{:x}",
                flags | EXT4_IMMUTABLE_FL
            ))
            .arg(fs),
    )?;
    Ok(())
}

fn sized_file(path: &Path, size_mib: u64) -> Result<()> {
    if path.exists() {
        fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    File::create(path)
        .and_then(|f| f.set_len(size_mib * MIB))
        .with_context(|| format!("cannot create the {size_mib} MiB file {}", path.display()))
}

fn mtools(cmd: &mut Command) -> Result<String> {
    // The ESP is a plain file without a partition table; skip mtools' geometry check.
    buildenv::run(cmd.env("MTOOLS_SKIP_CHECK", "1"))
}

fn place_files(root: &Path, files: &[ImageFile]) -> Result<()> {
    for file in files {
        let rel = Path::new(&file.path);
        if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            bail!(
                "image file path {:?} must be relative without '..'",
                file.path
            );
        }
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            mkdir(parent)?;
        }
        write_file(&dest, file.mode, &file.contents)?;
    }
    Ok(())
}

fn place_entries(root: &Path, entries: &[(String, HostpartEntry)]) -> Result<()> {
    for (path, entry) in entries {
        let rel = Path::new(path);
        if path.is_empty() || rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            bail!("hostpart entry path {path:?} must be relative without '..'");
        }
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            mkdir(parent)?;
        }
        let what = || format!("cannot place {entry:?} at {}", dest.display());
        match entry {
            HostpartEntry::Symlink(target) => symlink(target, &dest).with_context(what)?,
            HostpartEntry::HardLink(to) => {
                let to = Path::new(to);
                if to.is_absolute() || to.components().any(|c| c.as_os_str() == "..") {
                    bail!("hard link target {to:?} must be relative to hostpart without '..'");
                }
                fs::hard_link(root.join(to), &dest).with_context(what)?
            }
            HostpartEntry::Directory => fs::create_dir(&dest).with_context(what)?,
            HostpartEntry::Fifo => {
                buildenv::run(Command::new("mkfifo").arg(&dest)).with_context(what)?;
            }
        }
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

fn write_file(path: &Path, mode: u32, data: &[u8]) -> Result<()> {
    fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// Bytes of regular files under `root` (symlinks not followed), bounded.
fn tree_size(root: &Path) -> Result<u64> {
    let mut total = 0u64;
    let mut todo = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            seen += 1;
            if seen > MAX_STAGING_ENTRIES {
                bail!(
                    "more than {MAX_STAGING_ENTRIES} entries under {}",
                    root.display()
                );
            }
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trips_and_rejects_garbage() {
        let text = "01234567-89ab-cdef-0123-456789abcdef";
        assert_eq!(Uuid::parse(text).unwrap().to_string(), text);
        assert_eq!(
            Uuid::parse("01234567-89AB-CDEF-0123-456789ABCDEF")
                .unwrap()
                .to_string(),
            text
        );
        assert!(Uuid::parse("01234567-89ab-cdef-0123-456789abcde").is_err());
        assert!(Uuid::parse("0123456g-89ab-cdef-0123-456789abcdef").is_err());
        let r = Uuid::random().unwrap();
        assert_eq!(r.0[6] >> 4, 4);
        assert_eq!(Uuid::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn ext4_uuid_is_read_from_a_real_mkfs_image() {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("stage");
        fs::create_dir(&stage).unwrap();
        fs::write(stage.join("hello"), b"hi").unwrap();
        let img = dir.path().join("fs.img");
        let uuid = Uuid::parse("11111111-2222-4333-8444-555555555555").unwrap();
        if Command::new("mkfs.ext4").arg("-V").output().is_err() {
            eprintln!("skipping: no mkfs.ext4");
            return;
        }
        mkfs_ext4(&stage, &img, 8, "t", uuid).unwrap();
        assert_eq!(ext4_uuid(&img).unwrap(), uuid);
    }

    /// `mkfs.ext4 -d` keeps links, hard links, directories and FIFOs as they are: read back
    /// from the built filesystem with debugfs (type, link target, link count).
    #[test]
    fn hostpart_entries_are_built_as_they_are() {
        if Command::new("mkfs.ext4").arg("-V").output().is_err()
            || Command::new("debugfs").arg("-V").output().is_err()
        {
            eprintln!("skipping: no mkfs.ext4 or debugfs");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("a.img");
        fs::write(&source, b"an image").unwrap();
        let mut spec = HostpartSpec::new(HostFs::Ext4)
            .image("hn-root.img", &source)
            .entry("backup.img", HostpartEntry::HardLink("hn-root.img".into()))
            .entry(
                "hn-root-old.img",
                HostpartEntry::Symlink("/keep/x.img".into()),
            )
            .entry("hn-root-new.img", HostpartEntry::Fifo)
            .entry("keep/hn-root-broken.img", HostpartEntry::Directory);
        spec.size_mib = Some(8);
        let out = dir.path().join("hostpart.img");
        build_hostpart(&spec, &out).unwrap();
        let stat = |path: &str| {
            buildenv::run(
                Command::new("debugfs")
                    .arg("-R")
                    .arg(format!("stat {path}"))
                    .arg(&out),
            )
            .unwrap()
        };
        let current = stat("/hn-root.img");
        assert!(current.contains("Type: regular"), "{current}");
        assert!(current.contains("Links: 2"), "{current}");
        let backup = stat("/backup.img");
        let inode = |s: &str| s.split_whitespace().nth(1).map(str::to_owned);
        assert_eq!(inode(&backup), inode(&current), "one inode, two names");
        let link = stat("/hn-root-old.img");
        assert!(link.contains("Type: symlink"), "{link}");
        assert!(link.contains("Fast link dest: \"/keep/x.img\""), "{link}");
        assert!(stat("/hn-root-new.img").contains("Type: FIFO"));
        assert!(stat("/keep/hn-root-broken.img").contains("Type: directory"));

        let escaping = HostpartSpec::new(HostFs::Ext4).entry("../x", HostpartEntry::Directory);
        assert!(build_hostpart(&escaping, &dir.path().join("x.img")).is_err());
        let btrfs = HostpartSpec::new(HostFs::Btrfs).entry("x", HostpartEntry::Fifo);
        let e = build_hostpart(&btrfs, &dir.path().join("b.img")).unwrap_err();
        assert!(e.to_string().contains("ext4 only"), "{e}");
    }

    #[test]
    fn gpt_disk_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.img");
        let b = dir.path().join("b.img");
        fs::write(&a, vec![0xa5u8; 3 * MIB as usize]).unwrap();
        File::create(&b).unwrap().set_len(2 * MIB).unwrap();
        if Command::new("sgdisk").arg("--version").output().is_err() {
            eprintln!("skipping: no sgdisk");
            return;
        }
        let disk = build_disk(
            &[PartSpec::esp(&a), PartSpec::hostpart(&b)],
            &dir.path().join("disk.img"),
        )
        .unwrap();
        assert_eq!(disk.partitions[0].first_lba, 2048);
        assert_eq!(disk.partitions[1].first_lba, 2048 + 3 * 2048);
        let bytes = fs::read(&disk.path).unwrap();
        assert_eq!(bytes.len() as u64, (1 + 3 + 2 + 1) * MIB);
        assert_eq!(&bytes[MIB as usize..MIB as usize + 4], &[0xa5; 4]);
        assert_eq!(bytes[4 * MIB as usize - 1], 0xa5);
        assert_eq!(bytes[4 * MIB as usize], 0);
        assert_eq!(&bytes[512..520], b"EFI PART");
    }

    #[test]
    fn test_init_carries_the_version() {
        let init = test_init("v1.2", "echo extra-step");
        assert!(init.contains("hnroot-test: booted version=v1.2 uuid="));
        assert!(init.contains("\necho \"hnroot-test: args $#: $*\"\n"));
        assert!(init.contains("\necho extra-step\n"));
        assert!(init.contains("-s 1128 -n 16"));
    }
}
