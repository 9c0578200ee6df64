//! Looks at a scenario disk offline, after QEMU has stopped, and never writes to it: hostpart's top directory (names,
//! sizes), what each image file is (probed with the core's prober, as the initramfs and the CLI
//! do, plus a digest to prove an image came through unchanged), the revert marker, the switch
//! history (`data/hnroot/history`, decoded with the core's codec), and the boot-state block (read with mtools, decoded with the core's codec). The partition is copied
//! out of the disk image with `dd`, so nothing is loop-mounted and nothing needs root.
//!
//! Two views of an ext4 hostpart: [`View::AsGrubSees`] reads the partition as it lies on disk,
//! journal not replayed (GRUB does not replay journals, nor does debugfs), which is exactly
//! the input GRUB's next decision gets; [`View::AfterReplay`] lets `e2fsck -p` replay the
//! journal and check the filesystem first (what Linux sees after mounting). A btrfs hostpart is
//! read by `btrfs restore`, which reads the committed trees and ignores the log tree, as GRUB
//! does; its `AfterReplay` view adds `btrfs check --readonly` and is only the full truth after
//! a clean shutdown (the test init syncs before powering off).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::{Block, StateFile, StateSeen};
use hnroot_core::history::{self, Record, RecordError};
use hnroot_core::layout::{HISTORY_PATH, REVERT_MARKER};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::probe::{probe_fs_image, FsOutcome};

use crate::buildenv::{self, fnv1a};
use crate::disk::{self, BuiltDisk, HostFs};

/// Bound on entries read from hostpart's top directory.
const MAX_ENTRIES: usize = 1000;

/// Which state of hostpart to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// On-disk bytes as they are: GRUB's view.
    AsGrubSees,
    /// After journal replay and a filesystem check: Linux's view.
    AfterReplay,
}

/// One entry of hostpart's top directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its size in bytes (0 for a directory).
    pub size: u64,
}

/// An image file found on hostpart.
#[derive(Debug, Clone)]
pub struct ImageOnDisk {
    /// Which of hnroot's image names it has.
    pub name: ImageName,
    /// What the core's prober makes of it.
    pub seen: ImageSeen,
    /// Its size in bytes.
    pub size: u64,
    /// FNV-1a of the whole file.
    pub digest: u64,
}

/// hostpart as read offline.
#[derive(Debug, Clone)]
pub struct HostpartView {
    /// Top directory, `lost+found` left out, sorted by name.
    pub entries: Vec<Entry>,
    /// The image files among them.
    pub images: Vec<ImageOnDisk>,
    /// Whether `system-revert` is there.
    pub revert_marker: bool,
    /// What the filesystem check said (`AfterReplay`), one line.
    pub check: Option<String>,
}

impl HostpartView {
    /// The image file `name`, if hostpart holds one.
    pub fn image(&self, name: ImageName) -> Option<&ImageOnDisk> {
        self.images.iter().find(|i| i.name == name)
    }

    /// The core's observation of this hostpart with `state`.
    pub fn observation(&self, state: StateSeen) -> Observation {
        let mut obs = Observation {
            revert_requested: self.revert_marker,
            state,
            ..Observation::default()
        };
        for image in &self.images {
            obs.set(image.name, image.seen);
        }
        obs
    }
}

impl fmt::Display for HostpartView {
    /// `hn-root.img (32 MiB) data/ system-revert`, one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.entries {
            if !first {
                f.write_str("  ")?;
            }
            first = false;
            if e.is_dir {
                write!(f, "{}/", e.name)?;
            } else if e.size >= disk::MIB {
                write!(f, "{} ({} MiB)", e.name, e.size / disk::MIB)?;
            } else {
                write!(f, "{} ({} B)", e.name, e.size)?;
            }
        }
        if first {
            f.write_str("(empty)")?;
        }
        Ok(())
    }
}

/// Copy partition `part` of `disk` to `out` (sparse).
pub fn extract_partition(disk: &Path, part: &disk::Partition, out: &Path) -> Result<()> {
    let _ = fs::remove_file(out);
    let mib_sectors = disk::MIB / disk::SECTOR;
    if !part.first_lba.is_multiple_of(mib_sectors) || !part.sectors.is_multiple_of(mib_sectors) {
        bail!(
            "partition {} of {} is not MiB-aligned (LBA {}, {} sectors)",
            part.number,
            disk.display(),
            part.first_lba,
            part.sectors
        );
    }
    buildenv::run(
        Command::new("dd")
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", out.display()))
            .arg("bs=1M")
            .arg(format!("skip={}", part.first_lba / mib_sectors))
            .arg(format!("count={}", part.sectors / mib_sectors))
            .args(["conv=sparse", "status=none"]),
    )
    .with_context(|| {
        format!(
            "copying partition {} out of {}",
            part.number,
            disk.display()
        )
    })?;
    Ok(())
}

/// Read hostpart of `disk` offline in `view`; `scratch` is a work directory.
pub fn hostpart(disk: &BuiltDisk, view: View, scratch: &Path) -> Result<HostpartView> {
    let scratch = buildenv::fresh_dir(scratch)?;
    let part = scratch.join("hostpart.img");
    extract_partition(&disk.path, &disk.hostpart, &part)?;
    let files = scratch.join("files");
    fs::create_dir_all(&files).with_context(|| format!("cannot create {}", files.display()))?;
    let (entries, check) = match disk.fs {
        HostFs::Ext4 => ext4_read(&part, view, &files)?,
        HostFs::Btrfs => btrfs_read(&part, view, &files)?,
        HostFs::Xfs => xfs_read(&part, view, &files)?,
    };
    let mut images = Vec::new();
    for name in ImageName::ALL {
        let Some(entry) = entries.iter().find(|e| e.name == name.file_name()) else {
            continue;
        };
        if entry.is_dir {
            images.push(ImageOnDisk {
                name,
                seen: ImageSeen::NotBootable,
                size: 0,
                digest: 0,
            });
            continue;
        }
        let path = files.join(name.file_name());
        let bytes = fs::read(&path).with_context(|| {
            format!(
                "{} is listed on hostpart of {} but was not extracted to {}",
                name,
                disk.name,
                path.display()
            )
        })?;
        let seen = match probe_fs_image(&bytes).0 {
            FsOutcome::Found(info) => match info.uuid {
                Some(u) if !u.is_nil() => ImageSeen::Bootable(u),
                _ => ImageSeen::NotBootable,
            },
            _ => ImageSeen::NotBootable,
        };
        images.push(ImageOnDisk {
            name,
            seen,
            size: bytes.len() as u64,
            digest: fnv1a(&bytes),
        });
    }
    let revert_marker = entries.iter().any(|e| e.name == REVERT_MARKER);
    fs::remove_dir_all(&scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
    Ok(HostpartView {
        entries,
        images,
        revert_marker,
        check,
    })
}

fn is_image_name(name: &str) -> bool {
    ImageName::from_file_name(name).is_some()
}

/// ext4: optional `e2fsck -fp`, `debugfs ls -p /`, `debugfs dump` of each image file.
fn ext4_read(part: &Path, view: View, files: &Path) -> Result<(Vec<Entry>, Option<String>)> {
    let mut check = None;
    if view == View::AfterReplay {
        let out = Command::new("e2fsck")
            .arg("-fp")
            .arg(part)
            .output()
            .context("cannot run e2fsck")?;
        let code = out.status.code().unwrap_or(-1);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // 0: clean, 1: errors corrected (journal replayed, orphans), 2: same, reboot advised.
        if !(0..=2).contains(&code) {
            bail!(
                "e2fsck -fp on hostpart failed with exit code {code}: the filesystem is damaged \
                 beyond what a journal replay fixes:\n{}",
                said.trim()
            );
        }
        check = Some(format!(
            "e2fsck -fp: exit {code}; {}",
            said.lines().last().unwrap_or("").trim()
        ));
    }
    let listing = buildenv::run(Command::new("debugfs").arg("-R").arg("ls -p /").arg(part))?;
    let mut entries = Vec::new();
    for line in listing.lines().take(MAX_ENTRIES) {
        // /inode/mode/uid/gid/name/size/
        let fields: Vec<&str> = line.trim().split('/').collect();
        if fields.len() < 7 {
            continue;
        }
        let name = fields[5];
        if matches!(name, "." | ".." | "lost+found") || name.is_empty() {
            continue;
        }
        let mode = u32::from_str_radix(fields[2], 8).unwrap_or(0);
        let is_dir = mode & 0o170000 == 0o040000;
        entries.push(Entry {
            name: name.to_string(),
            is_dir,
            size: fields[6].parse().unwrap_or(0),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries
        .iter()
        .filter(|e| !e.is_dir && is_image_name(&e.name))
    {
        let out = files.join(&e.name);
        buildenv::run(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("dump /{} {}", e.name, out.display()))
                .arg(part),
        )?;
    }
    Ok((entries, check))
}

/// A loop mount of the filesystem image `part` (type `fs_type`, options `options`) for the
/// duration of `f`; unmounted after it, whatever it returned.
fn with_mounted<T>(
    part: &Path,
    fs_type: &str,
    options: &str,
    f: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let mnt = buildenv::fresh_dir(&part.with_extension("mnt"))?;
    buildenv::run(
        Command::new("mount")
            .args(["-t", fs_type, "-o"])
            .arg(format!("loop,{options}"))
            .arg(part)
            .arg(&mnt),
    )
    .with_context(|| format!("loop-mounting a copy of hostpart ({fs_type}, {options})"))?;
    let out = f(&mnt);
    let unmounted = buildenv::run(Command::new("umount").arg(&mnt));
    let out = out?;
    unmounted?;
    fs::remove_dir(&mnt).with_context(|| format!("cannot remove {}", mnt.display()))?;
    Ok(out)
}

/// XFS: read through a loop mount of the copy. GRUB's view: `ro,norecovery` (the log not
/// replayed, as GRUB's XFS driver reads the disk). Linux's: a read-write mount first, so the
/// kernel replays the log, then `xfs_repair -n`, then a read-only mount.
fn xfs_read(part: &Path, view: View, files: &Path) -> Result<(Vec<Entry>, Option<String>)> {
    let mut check = None;
    let options = match view {
        View::AsGrubSees => "ro,norecovery",
        View::AfterReplay => {
            with_mounted(part, "xfs", "rw", |_| Ok(()))
                .context("replaying hostpart's XFS log (a read-write mount of a copy)")?;
            let out = Command::new("xfs_repair")
                .arg("-n")
                .arg(part)
                .output()
                .context("cannot run xfs_repair")?;
            if !out.status.success() {
                bail!(
                    "xfs_repair -n on hostpart found damage ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            check = Some("log replayed; xfs_repair -n: no errors".to_string());
            "ro"
        }
    };
    let entries = with_mounted(part, "xfs", options, |mnt| {
        let mut entries = Vec::new();
        for entry in fs::read_dir(mnt)
            .with_context(|| format!("cannot list {}", mnt.display()))?
            .take(MAX_ENTRIES)
        {
            let entry = entry?;
            let meta = entry.metadata()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !meta.is_dir() && is_image_name(&name) {
                fs::copy(entry.path(), files.join(&name))
                    .with_context(|| format!("cannot copy {name} out of hostpart"))?;
            }
            entries.push(Entry {
                name,
                is_dir: meta.is_dir(),
                size: if meta.is_dir() { 0 } else { meta.len() },
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    })?;
    Ok((entries, check))
}

/// btrfs: optional `btrfs check --readonly`, `btrfs restore` of the top directory.
fn btrfs_read(part: &Path, view: View, files: &Path) -> Result<(Vec<Entry>, Option<String>)> {
    let mut check = None;
    if view == View::AfterReplay {
        let out = Command::new("btrfs")
            .args(["check", "--readonly"])
            .arg(part)
            .output()
            .context("cannot run btrfs check")?;
        if !out.status.success() {
            bail!(
                "btrfs check --readonly on hostpart failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        check = Some("btrfs check --readonly: no errors".to_string());
    }
    buildenv::run(
        Command::new("btrfs")
            .args(["restore", "--path-regex", "^/[^/]*$"])
            .arg(part)
            .arg(files),
    )?;
    let mut entries = Vec::new();
    for entry in fs::read_dir(files)
        .with_context(|| format!("cannot list {}", files.display()))?
        .take(MAX_ENTRIES)
    {
        let entry = entry?;
        let meta = entry.metadata()?;
        entries.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            is_dir: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.len() },
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((entries, check))
}

/// The switch history on hostpart of `disk` as Linux sees it (an ext4 journal replayed on a
/// copy first; a btrfs hostpart is read as committed: read it after a clean power-off): every
/// valid record, oldest first, and the count of damaged slots. No history file: no records.
pub fn history(disk: &BuiltDisk, scratch: &Path) -> Result<(Vec<Record>, usize)> {
    let scratch = buildenv::fresh_dir(&scratch.join("history"))?;
    let part = scratch.join("hostpart.img");
    extract_partition(&disk.path, &disk.hostpart, &part)?;
    let out = scratch.join("history");
    match disk.fs {
        HostFs::Ext4 => {
            // Exit codes 0-2: clean, or the journal replayed (see ext4_read).
            let replay = Command::new("e2fsck")
                .arg("-fp")
                .arg(&part)
                .output()
                .context("cannot run e2fsck")?;
            if !matches!(replay.status.code(), Some(0..=2)) {
                bail!(
                    "e2fsck -fp on a copy of hostpart failed ({}): {}",
                    replay.status,
                    String::from_utf8_lossy(&replay.stdout).trim()
                );
            }
            buildenv::run(
                Command::new("debugfs")
                    .arg("-R")
                    .arg(format!("dump /{HISTORY_PATH} {}", out.display()))
                    .arg(&part),
            )?;
        }
        HostFs::Btrfs => {
            let files = scratch.join("files");
            fs::create_dir_all(&files)
                .with_context(|| format!("cannot create {}", files.display()))?;
            buildenv::run(
                Command::new("btrfs")
                    .args(["restore", "--path-regex", "^/(|data(|/hnroot(|/history)))$"])
                    .arg(&part)
                    .arg(&files),
            )?;
            let restored = files.join(HISTORY_PATH);
            if restored.is_file() {
                fs::rename(&restored, &out)
                    .with_context(|| format!("cannot move {}", restored.display()))?;
            }
        }
        HostFs::Xfs => {
            // The log replayed by a read-write mount of the copy, as Linux reads it.
            with_mounted(&part, "xfs", "rw", |mnt| {
                let file = mnt.join(HISTORY_PATH);
                if file.is_file() {
                    fs::copy(&file, &out)
                        .with_context(|| format!("cannot copy {}", file.display()))?;
                }
                Ok(())
            })?;
        }
    }
    // debugfs says nothing useful on a missing file and writes none.
    let bytes = fs::read(&out).unwrap_or_default();
    fs::remove_dir_all(&scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
    let mut records = Vec::new();
    let mut damaged = 0;
    for slot in bytes.chunks_exact(history::RECORD_LEN) {
        match Record::decode(slot) {
            Ok(r) => records.push(r),
            Err(RecordError::Empty) => {}
            Err(_) => damaged += 1,
        }
    }
    records.sort_by_key(|r| r.sequence);
    Ok((records, damaged))
}

/// What is at the boot-state path on an ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEntry {
    /// No such name.
    Absent,
    /// A directory where the file belongs.
    Directory,
    /// A file with these bytes.
    File(Vec<u8>),
}

impl StateEntry {
    /// What the core makes of it (a directory cannot be read as the file: corrupt).
    pub fn seen(&self) -> StateSeen {
        match self {
            StateEntry::Absent => StateFile::Absent.seen(),
            StateEntry::Directory => StateFile::Unreadable.seen(),
            StateEntry::File(bytes) => StateFile::Bytes(bytes).seen(),
        }
    }
}

/// Copy what is at the boot-state path on the ESP of `disk` to `out` as it is there (a
/// file's bytes; a directory as a directory; nothing when there is no such name), with
/// mtools, and say what it is.
pub fn copy_boot_state(disk: &BuiltDisk, out: &Path) -> Result<StateEntry> {
    if out.is_dir() {
        fs::remove_dir_all(out).with_context(|| format!("cannot remove {}", out.display()))?;
    } else if out.exists() {
        fs::remove_file(out).with_context(|| format!("cannot remove {}", out.display()))?;
    }
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let result = Command::new("mcopy")
        .args(["-n", "-s", "-i"])
        .arg(format!(
            "{}@@{}",
            disk.path.display(),
            BuiltDisk::offset(&disk.esp)
        ))
        .arg(format!("::{}", disk::BOOTSTATE_PATH))
        .arg(out)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .context("cannot run mcopy")?;
    if !result.status.success() {
        let err = String::from_utf8_lossy(&result.stderr);
        if err.contains("not found") {
            return Ok(StateEntry::Absent);
        }
        bail!(
            "mcopy of {} from the ESP of {} failed: {}",
            disk::BOOTSTATE_PATH,
            disk.path.display(),
            err.trim()
        );
    }
    if out.is_dir() {
        return Ok(StateEntry::Directory);
    }
    let bytes = fs::read(out).with_context(|| format!("cannot read {}", out.display()))?;
    Ok(StateEntry::File(bytes))
}

/// The boot-state file on the ESP of `disk`: its bytes (`None`: no such file) and what the
/// core decodes from them. A directory at its path is an error here (see [`copy_boot_state`]).
pub fn boot_state(disk: &BuiltDisk, scratch: &Path) -> Result<(Option<Vec<u8>>, StateSeen)> {
    let out = scratch.join("bootstate.read");
    let entry = copy_boot_state(disk, &out)?;
    let _ = fs::remove_file(&out);
    match entry {
        StateEntry::Absent => Ok((None, StateSeen::Absent)),
        StateEntry::Directory => {
            let _ = fs::remove_dir_all(&out);
            bail!(
                "{} on the ESP of {} is a directory, not the boot-state file",
                disk::BOOTSTATE_PATH,
                disk.path.display()
            )
        }
        StateEntry::File(bytes) => {
            let seen = Block::decode(&bytes).map_or(StateSeen::Corrupt, |b| b.seen());
            Ok((Some(bytes), seen))
        }
    }
}

/// A scratch directory for inspecting `disk`.
pub fn scratch_for(disk: &BuiltDisk) -> PathBuf {
    disk.path.with_file_name("inspect")
}
