//! Lists the block devices the kernel knows (`/sys/class/block`, partitions included), probes
//! each with `hnroot-core`'s probers, and finds the one a spec (`LABEL=`, `UUID=`,
//! `PARTLABEL=`, `PARTUUID=`) names: exactly one, or an error that says what was looked for
//! and what was seen. Two matches are an error naming both, never a silent pick, unless a
//! `PARTUUID` pin decides between them. Needs only sysfs and device nodes (devtmpfs): no
//! udev, no `/dev/disk/by-*`, no blkid cache.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use hnroot_core::cmdline::DeviceSpec;
use hnroot_core::device::{choose, Candidate, Choice, ChosenBy, MAX_CANDIDATES};
use hnroot_core::probe::{FsInfo, FsOutcome, Label};
use hnroot_core::PartUuid;

use crate::probe::{Device, Table};

/// Most entries of `/sys/class/block` looked at.
pub const MAX_BLOCK_DEVICES: usize = 4096;
/// Most devices named in an error message.
const MAX_LISTED: usize = 32;
/// sysfs sizes and offsets are in 512-byte units whatever the device's sector size.
const SYSFS_SECTOR: u64 = 512;

/// Where the kernel's view of block devices is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Roots {
    /// `/sys/class/block`.
    pub sys_class_block: PathBuf,
    /// `/dev`, where the device nodes are.
    pub dev: PathBuf,
}

impl Default for Roots {
    fn default() -> Roots {
        Roots {
            sys_class_block: PathBuf::from("/sys/class/block"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// A block device as sysfs describes it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockDev {
    /// Kernel name (`sda1`, `nvme0n1p2`).
    pub name: String,
    /// Device node (`/dev/sda1`).
    pub node: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// For a partition: its number, start and disk.
    pub partition: Option<PartitionOf>,
}

/// Where a partition device sits on its disk.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PartitionOf {
    /// Partition number (sysfs `partition`).
    pub number: u32,
    /// Start in bytes (sysfs `start`, 512-byte units).
    pub start: u64,
    /// Kernel name of the disk.
    pub disk: String,
}

/// The device list could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot list block devices in {}: {source}; no device can be looked up without it (is sysfs mounted?)", dir.display())]
pub struct ListError {
    /// The directory.
    pub dir: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Every block device with a size, sorted by name (at most [`MAX_BLOCK_DEVICES`]). Devices
/// of size 0 (unattached loop devices, empty drives) and devices whose sysfs entry vanishes
/// while it is read are left out.
pub fn list(roots: &Roots) -> Result<Vec<BlockDev>, ListError> {
    let dir = &roots.sys_class_block;
    let entries = std::fs::read_dir(dir).map_err(|source| ListError {
        dir: dir.clone(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries.take(MAX_BLOCK_DEVICES) {
        let entry = entry.map_err(|source| ListError {
            dir: dir.clone(),
            source,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|name| read_device(roots, &name))
        .collect())
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_device(roots: &Roots, name: &str) -> Option<BlockDev> {
    let sys = roots.sys_class_block.join(name);
    let size = read_number(&sys.join("size"))?.checked_mul(SYSFS_SECTOR)?;
    if size == 0 {
        return None;
    }
    let partition = match read_number(&sys.join("partition")) {
        Some(number) => {
            let start = read_number(&sys.join("start"))?.checked_mul(SYSFS_SECTOR)?;
            // A partition's sysfs directory sits inside its disk's.
            let real = std::fs::canonicalize(&sys).ok()?;
            let disk = real.parent()?.file_name()?.to_str()?.to_string();
            Some(PartitionOf {
                number: u32::try_from(number).ok()?,
                start,
                disk,
            })
        }
        None => None,
    };
    Some(BlockDev {
        name: name.to_string(),
        // The kernel writes '/' in device names as '!' in sysfs (cciss!c0d0).
        node: roots.dev.join(name.replace('!', "/")),
        size,
        partition,
    })
}

/// A partition's entry in its disk's partition table.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PartEntry {
    /// `PARTLABEL`.
    pub partlabel: Option<Label>,
    /// `PARTUUID`.
    pub partuuid: Option<PartUuid>,
}

/// One device and what the probes saw on it.
#[derive(Debug)]
pub struct Probed {
    /// The device.
    pub dev: BlockDev,
    /// Its filesystem, or why it could not be read.
    pub fs: io::Result<FsOutcome>,
    /// For a partition: its table entry, once looked up (see [`Scan::part_entry`]).
    pub part: Option<PartEntry>,
}

/// All devices, probed.
#[derive(Debug)]
pub struct Scan {
    /// The devices in name order.
    pub devices: Vec<Probed>,
    /// Reads made.
    pub reads: u64,
    tables: HashMap<String, Option<Table>>,
}

impl Scan {
    /// List and probe every device's filesystem.
    pub fn run(roots: &Roots) -> Result<Scan, ListError> {
        let devices = list(roots)?;
        let mut reads = 0u64;
        let seen = devices
            .into_iter()
            .map(|dev| {
                let fs = Device::open(&dev.node).and_then(|mut d| {
                    let size = dev.size.min(d.size());
                    let out = d.probe_fs(0, size);
                    reads = reads.saturating_add(d.reads());
                    out
                });
                Probed {
                    dev,
                    fs,
                    part: None,
                }
            })
            .collect();
        Ok(Scan {
            devices: seen,
            reads,
            tables: HashMap::new(),
        })
    }

    /// Look up the table entry of every partition in `which` (indices into `devices`), reading
    /// each disk's partition table once. A partition its disk's table does not list (the
    /// table changed since the kernel read it, or hnroot does not know the table type) gets
    /// an empty entry.
    pub fn part_entries(&mut self, roots: &Roots, which: &[usize]) {
        for &i in which {
            let Some(seen) = self.devices.get(i) else {
                continue;
            };
            let Some(p) = seen.dev.partition.clone() else {
                continue;
            };
            if seen.part.is_some() {
                continue;
            }
            if !self.tables.contains_key(&p.disk) {
                let node = self
                    .devices
                    .iter()
                    .find(|s| s.dev.name == p.disk)
                    .map(|s| s.dev.node.clone())
                    .unwrap_or_else(|| roots.dev.join(p.disk.replace('!', "/")));
                let table = Device::open(&node).ok().and_then(|mut d| {
                    let t = d.probe_table().ok().flatten();
                    self.reads = self.reads.saturating_add(d.reads());
                    t
                });
                self.tables.insert(p.disk.clone(), table);
            }
            let entry = self
                .tables
                .get(&p.disk)
                .and_then(Option::as_ref)
                .and_then(|t| {
                    t.partitions
                        .iter()
                        .find(|q| q.number == p.number && q.start == p.start)
                })
                .map(|q| PartEntry {
                    partlabel: q.name.clone(),
                    partuuid: q.partuuid,
                })
                .unwrap_or_default();
            if let Some(seen) = self.devices.get_mut(i) {
                seen.part = Some(entry);
            }
        }
    }

    /// [`Scan::part_entries`] for every partition.
    pub fn all_part_entries(&mut self, roots: &Roots) {
        let all: Vec<usize> = (0..self.devices.len()).collect();
        self.part_entries(roots, &all);
    }
}

/// The one device a spec names.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Found {
    /// Kernel name.
    pub name: String,
    /// Device node.
    pub node: PathBuf,
    /// Its filesystem, if one was recognised.
    pub fs: Option<FsInfo>,
    /// Its table entry, if it is a partition and the entry was looked up.
    pub part: Option<PartEntry>,
    /// How the core chose it among several (`None`: it was the only one).
    pub chosen_by: Option<ChosenBy>,
    /// Block devices looked at.
    pub devices: usize,
    /// Reads made.
    pub reads: u64,
}

/// What breaks a tie between several devices that match: the core's rule
/// (`hnroot_core::device`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Hints {
    /// The PARTUUID the boot loader named for this device.
    pub pin: Option<PartUuid>,
    /// A PARTUUID on the boot disk (the ESP the boot loader named): candidates on the same
    /// disk are preferred.
    pub boot_disk_of: Option<PartUuid>,
}

/// No device, or more than one, matches.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The device list could not be read.
    #[error(transparent)]
    List(#[from] ListError),
    /// Nothing matches.
    #[error("no {looked_for} among {count} block devices ({seen}); nothing was selected")]
    NotFound {
        /// What was looked for (`filesystem labelled 'hostpart'`).
        looked_for: String,
        /// Devices looked at.
        count: usize,
        /// What each one holds.
        seen: String,
    },
    /// More than one matches, and the core's rule picks none.
    #[error("{count} block devices have a {looked_for}: {matches}; {why}")]
    Ambiguous {
        /// What was looked for.
        looked_for: String,
        /// How many match.
        count: usize,
        /// The matching devices with their PARTUUIDs.
        matches: String,
        /// The core's reason.
        why: String,
    },
}

/// What a spec looks for, in words.
pub fn describe(spec: &DeviceSpec<'_>) -> String {
    match spec {
        DeviceSpec::Label(l) => format!("filesystem labelled '{}'", escaped(l.as_bytes())),
        DeviceSpec::Uuid(u) => format!("filesystem with UUID {u}"),
        DeviceSpec::PartLabel(l) => {
            format!("partition named '{}' (PARTLABEL)", escaped(l.as_bytes()))
        }
        DeviceSpec::PartUuid(u) => format!("partition with PARTUUID {u}"),
    }
}

/// Label bytes safe to print (the core's escaping).
fn escaped(bytes: &[u8]) -> String {
    Label::from_bytes(bytes)
        .map(|l| l.to_string())
        .unwrap_or_default()
}

fn is_part_spec(spec: &DeviceSpec<'_>) -> bool {
    matches!(spec, DeviceSpec::PartLabel(_) | DeviceSpec::PartUuid(_))
}

/// Whether `seen` is what `spec` names (blkid compares labels byte for byte).
pub fn matches(spec: &DeviceSpec<'_>, seen: &Probed) -> bool {
    let outcome = seen.fs.as_ref().ok();
    let info = outcome.and_then(FsOutcome::info);
    let part = seen.part.as_ref();
    match spec {
        DeviceSpec::Label(l) => outcome.is_some_and(|o| o.is_labelled(l.as_bytes())),
        DeviceSpec::Uuid(u) => info.and_then(|i| i.uuid).is_some_and(|x| x == *u),
        DeviceSpec::PartLabel(l) => part
            .and_then(|p| p.partlabel.as_ref())
            .is_some_and(|x| x.as_bytes() == l.as_bytes()),
        DeviceSpec::PartUuid(u) => part.and_then(|p| p.partuuid).is_some_and(|x| x == *u),
    }
}

/// `sda1 vfat 'EFI-BOOT'`: what a device holds, for error messages (labels escaped).
pub fn summary(seen: &Probed) -> String {
    let mut s = seen.dev.name.clone();
    match &seen.fs {
        Err(e) => {
            let _ = write!(s, " unreadable ({e})");
        }
        Ok(FsOutcome::Unknown) => s.push_str(" no filesystem"),
        Ok(FsOutcome::Other(t)) => {
            let _ = write!(s, " {t}");
        }
        Ok(FsOutcome::Ambivalent(types)) => {
            let _ = write!(s, " ambivalent ({types})");
        }
        Ok(FsOutcome::Found(i)) => {
            let _ = write!(s, " {}", i.fs_type);
            match &i.label {
                Some(l) => {
                    let _ = write!(s, " '{l}'");
                }
                None => s.push_str(" (no label)"),
            }
        }
    }
    if let Some(p) = &seen.part {
        if let Some(l) = &p.partlabel {
            let _ = write!(s, " PARTLABEL='{l}'");
        }
        if let Some(u) = &p.partuuid {
            let _ = write!(s, " PARTUUID={u}");
        }
    }
    s
}

fn list_of<'a>(items: impl Iterator<Item = &'a Probed>, total: usize) -> String {
    let mut out: Vec<String> = items.take(MAX_LISTED).map(summary).collect();
    if total > MAX_LISTED {
        out.push(format!("and {} more", total - MAX_LISTED));
    }
    out.join(", ")
}

/// Find the one device `spec` names on this machine (`/sys/class/block`, `/dev`).
pub fn find(spec: &DeviceSpec<'_>, hints: &Hints) -> Result<Found, FindError> {
    find_in(&Roots::default(), spec, hints)
}

/// [`find_in`], waiting for the device to appear: scans every `poll` until it is found or
/// `deadline` has passed (then the last `NotFound`, whose message lists what was there).
/// Ambiguity fails at once: waiting will not make it go away. Returns how long it took.
pub fn find_waiting(
    roots: &Roots,
    spec: &DeviceSpec<'_>,
    hints: &Hints,
    deadline: std::time::Duration,
    poll: std::time::Duration,
) -> Result<(Found, std::time::Duration), FindError> {
    let start = std::time::Instant::now();
    loop {
        match find_in(roots, spec, hints) {
            Ok(found) => return Ok((found, start.elapsed())),
            Err(FindError::NotFound { .. }) if start.elapsed() < deadline => {
                std::thread::sleep(poll.min(deadline.saturating_sub(start.elapsed())));
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`find`] with other roots (tests use a fake sysfs tree and image files as devices).
///
/// Exactly one match is the answer. With several, the core chooses (`hnroot_core::device`):
/// the one carrying the pin, else the one on the boot disk, else an error naming them all.
pub fn find_in(roots: &Roots, spec: &DeviceSpec<'_>, hints: &Hints) -> Result<Found, FindError> {
    let mut scan = Scan::run(roots)?;
    if is_part_spec(spec) {
        scan.all_part_entries(roots);
    }
    let hits: Vec<usize> = (0..scan.devices.len())
        .filter(|&i| scan.devices.get(i).is_some_and(|s| matches(spec, s)))
        .collect();
    let looked_for = describe(spec);
    let count = scan.devices.len();
    let (index, chosen_by) = match hits.as_slice() {
        [] => {
            return Err(FindError::NotFound {
                looked_for,
                count,
                seen: list_of(scan.devices.iter(), count),
            })
        }
        [one] => (*one, None),
        many => {
            // Every partition's table entry: the pins and the boot disk come from them.
            scan.all_part_entries(roots);
            let partuuid_of = |i: usize| {
                scan.devices
                    .get(i)
                    .and_then(|s| s.part.as_ref())
                    .and_then(|p| p.partuuid)
            };
            let disk_of = |i: usize| {
                scan.devices
                    .get(i)
                    .and_then(|s| s.dev.partition.as_ref())
                    .map(|p| p.disk.clone())
            };
            let boot_disk = hints.boot_disk_of.and_then(|pin| {
                (0..scan.devices.len())
                    .find(|&i| partuuid_of(i) == Some(pin))
                    .and_then(disk_of)
            });
            let candidates: Vec<Candidate> = many
                .iter()
                .take(MAX_CANDIDATES)
                .map(|&i| Candidate {
                    pinned: hints.pin.is_some() && partuuid_of(i) == hints.pin,
                    on_boot_disk: boot_disk.is_some() && disk_of(i) == boot_disk,
                })
                .collect();
            let matches = list_of(many.iter().filter_map(|&i| scan.devices.get(i)), many.len());
            match choose(&candidates, many.len()) {
                Choice::Chosen { index, by } => match many.get(index) {
                    Some(&i) => (i, Some(by)),
                    None => {
                        return Err(FindError::Ambiguous {
                            looked_for,
                            count: many.len(),
                            matches,
                            why: "the choice is out of range (a bug in hnroot)".into(),
                        })
                    }
                },
                other => {
                    return Err(FindError::Ambiguous {
                        looked_for,
                        count: many.len(),
                        matches,
                        why: other.to_string(),
                    })
                }
            }
        }
    };
    let reads = scan.reads;
    let seen = scan
        .devices
        .into_iter()
        .nth(index)
        .ok_or_else(|| FindError::NotFound {
            looked_for: describe(spec),
            count,
            seen: String::new(),
        })?;
    Ok(Found {
        name: seen.dev.name,
        node: seen.dev.node,
        fs: seen.fs.ok().and_then(|o| o.info().cloned()),
        part: seen.part,
        chosen_by,
        devices: count,
        reads,
    })
}
