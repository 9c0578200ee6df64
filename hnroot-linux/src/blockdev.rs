//! Lists the block devices the kernel knows (`/sys/class/block`, partitions included), probes
//! each with `hnroot-core`'s probers, and finds the one a spec (`LABEL=`, `UUID=`,
//! `PARTLABEL=`, `PARTUUID=`) names: exactly one, or an error that says what was looked for
//! and what was seen. Two matches are an error naming both, never a silent pick, unless a
//! `PARTUUID` pin decides between them. Needs only sysfs and device nodes (devtmpfs): no
//! udev, no `/dev/disk/by-*`, no blkid cache.
//!
//! A search reads no more than its answer needs: devices are probed side by side (a few
//! threads), each only until the core says it cannot hold what is looked for
//! ([`FsProber::may_find`](hnroot_core::probe::FsProber::may_find)): a `LABEL=` search reads
//! the first 68 KiB of most devices once, and the end of a device (its RAID signatures) only
//! when the head matched; a `PARTUUID=` search reads the partition tables and probes only the
//! partition that matched. Whether a device is a partition is read from sysfs only when a
//! partition is looked for or several devices match. Only a search that finds nothing probes
//! everything in full, for the message that lists what each device holds.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

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
    Ok(names(roots)?
        .into_iter()
        .filter_map(|name| read_device(roots, &name))
        .collect())
}

/// A sysfs attribute holding one number (`size`, `partition`, `start`), read without an
/// allocation.
fn read_number(path: &Path) -> Option<u64> {
    use std::io::Read as _;
    let mut buf = [0u8; 32];
    let mut file = std::fs::File::open(path).ok()?;
    let mut got = 0;
    // Bounded: each round reads at least one byte or stops; an attribute longer than the
    // buffer is not a number.
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    std::str::from_utf8(buf.get(..got)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn read_device(roots: &Roots, name: &str) -> Option<BlockDev> {
    let mut dev = read_sized(roots, name)?;
    dev.partition = read_partition(roots, name)?;
    Some(dev)
}

/// A device with its size (`None`: size 0 or unreadable, left out), its partition not looked
/// up.
fn read_sized(roots: &Roots, name: &str) -> Option<BlockDev> {
    let sys = roots.sys_class_block.join(name);
    let size = read_number(&sys.join("size"))?.checked_mul(SYSFS_SECTOR)?;
    if size == 0 {
        return None;
    }
    Some(BlockDev {
        name: name.to_string(),
        // The kernel writes '/' in device names as '!' in sysfs (cciss!c0d0).
        node: roots.dev.join(name.replace('!', "/")),
        size,
        partition: None,
    })
}

/// Whether `name` is a partition, and where (`None`: its sysfs entry went away half-read).
fn read_partition(roots: &Roots, name: &str) -> Option<Option<PartitionOf>> {
    let sys = roots.sys_class_block.join(name);
    let Some(number) = read_number(&sys.join("partition")) else {
        return Some(None);
    };
    let start = read_number(&sys.join("start"))?.checked_mul(SYSFS_SECTOR)?;
    // A partition's sysfs directory sits inside its disk's.
    let real = std::fs::canonicalize(&sys).ok()?;
    let disk = real.parent()?.file_name()?.to_str()?.to_string();
    Some(Some(PartitionOf {
        number: u32::try_from(number).ok()?,
        start,
        disk,
    }))
}

/// The names in `/sys/class/block`, sorted (at most [`MAX_BLOCK_DEVICES`]).
fn names(roots: &Roots) -> Result<Vec<String>, ListError> {
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
    Ok(names)
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
    /// The device ([`BlockDev::partition`] is looked up by [`Scan::partitions`]).
    pub dev: BlockDev,
    /// Its filesystem, or why it could not be read; `None`: not probed in full, because it
    /// cannot be what the search looked for (see [`Scan::complete`]).
    pub fs: Option<io::Result<FsOutcome>>,
    /// For a partition: its table entry, once looked up (see [`Scan::part_entries`]).
    pub part: Option<PartEntry>,
}

/// How far a scan probes each device's filesystem.
#[derive(Clone, Copy)]
pub enum Depth<'a> {
    /// In full, as blkid would.
    Full,
    /// Until it cannot hold a filesystem this accepts (then `fs` is `None`).
    Wanted(&'a (dyn Fn(&FsInfo) -> bool + Sync)),
    /// Not at all (a search by partition table entry).
    None,
}

/// All devices, probed.
#[derive(Debug)]
pub struct Scan {
    /// The devices in name order.
    pub devices: Vec<Probed>,
    /// Reads made.
    pub reads: u64,
    /// Whether every device's [`BlockDev::partition`] has been looked up.
    partitions_known: bool,
    tables: HashMap<String, Option<Table>>,
}

impl std::fmt::Debug for Depth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Depth::Full => "Full",
            Depth::Wanted(_) => "Wanted",
            Depth::None => "None",
        })
    }
}

/// Most threads probing devices side by side.
const MAX_PROBERS: usize = 8;
/// Probing threads per CPU: a thread mostly waits for its device's reads.
const PROBERS_PER_CPU: usize = 2;
/// Devices per probing thread at least (a thread costs about as much as probing a few).
const DEVICES_PER_PROBER: usize = 4;
/// A probing thread's stack: it holds a prober (under 1 KiB) and a few paths.
const PROBER_STACK: usize = 64 << 10;

/// `each` applied to every item, several at a time: this thread and up to [`MAX_PROBERS`] - 1
/// more take items in turn, each thread with its own read buffer. Returns the answers in
/// the items' order (`None` for an item a thread took and never answered: only a bug makes a
/// thread panic).
fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    each: impl Fn(&T, &mut Vec<u8>) -> R + Sync,
) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let work = || -> Vec<(usize, R)> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some((i, item)) = {
            let i = next.fetch_add(1, Ordering::Relaxed);
            items.get(i).map(|item| (i, item))
        } {
            out.push((i, each(item, &mut buf)));
        }
        out
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (items.len() / DEVICES_PER_PROBER)
        .min(cpus.saturating_mul(PROBERS_PER_CPU))
        .clamp(1, MAX_PROBERS);
    let answered = std::thread::scope(|scope| {
        let mut helpers = Vec::new();
        for _ in 1..threads {
            match std::thread::Builder::new()
                .stack_size(PROBER_STACK)
                .spawn_scoped(scope, work)
            {
                Ok(helper) => helpers.push(helper),
                // No more threads to be had: the ones there take every item.
                Err(_) => break,
            }
        }
        let mut answered = work();
        for helper in helpers {
            if let Ok(more) = helper.join() {
                answered.extend(more);
            }
        }
        answered
    });
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, r) in answered {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(r);
        }
    }
    out
}

/// Probe the device at `node` (its first `limit` bytes, if given) to `wanted`'s depth (`None`:
/// in full), reading into `buf`. Returns its size (the end of its node, `limit` at most),
/// what was seen (see [`Probed::fs`]) and the reads made; an error: the node could not be
/// opened.
fn probe_node(
    node: &Path,
    limit: Option<u64>,
    wanted: Option<&(dyn Fn(&FsInfo) -> bool + Sync)>,
    buf: &mut Vec<u8>,
) -> io::Result<(u64, Option<io::Result<FsOutcome>>, u64)> {
    let mut d = Device::open(node)?.with_buffer(std::mem::take(buf));
    let size = limit.map_or(d.size(), |l| l.min(d.size()));
    let outcome = if size == 0 {
        Ok(Some(FsOutcome::Unknown))
    } else {
        match wanted {
            None => d.probe_fs(0, size).map(Some),
            Some(w) => d.probe_fs_for(0, size, w),
        }
    };
    let reads = d.reads();
    *buf = d.into_buffer();
    Ok((size, outcome.transpose(), reads))
}

impl Scan {
    /// List and probe every device's filesystem in full.
    pub fn run(roots: &Roots) -> Result<Scan, ListError> {
        let mut scan = Scan::search(roots, Depth::Full)?;
        scan.partitions(roots);
        Ok(scan)
    }

    /// Every device with a size (partitions not looked up), probed to `depth`, side by side.
    /// A probed device's size is its node's (what a probe reads), the size sysfs gives for one
    /// whose node cannot be opened or that is not probed.
    pub fn search(roots: &Roots, depth: Depth<'_>) -> Result<Scan, ListError> {
        let names = names(roots)?;
        let wanted = match depth {
            Depth::None => {
                let devices = names
                    .iter()
                    .filter_map(|name| read_sized(roots, name))
                    .map(|dev| Probed {
                        dev,
                        fs: None,
                        part: None,
                    })
                    .collect();
                return Ok(Scan {
                    devices,
                    reads: 0,
                    partitions_known: false,
                    tables: HashMap::new(),
                });
            }
            Depth::Full => None,
            Depth::Wanted(w) => Some(w),
        };
        let seen = side_by_side(&names, |name, buf| {
            // The kernel writes '/' in device names as '!' in sysfs (cciss!c0d0).
            let node = roots.dev.join(name.replace('!', "/"));
            let (dev, fs, reads) = match probe_node(&node, None, wanted, buf) {
                Ok((0, _, reads)) => (None, None, reads),
                Ok((size, fs, reads)) => {
                    let dev = BlockDev {
                        name: name.clone(),
                        node,
                        size,
                        partition: None,
                    };
                    (Some(dev), fs, reads)
                }
                // No node to open: sysfs says whether there is a device (an unreadable one).
                Err(e) => (read_sized(roots, name), Some(Err(e)), 0),
            };
            (
                dev.map(|dev| Probed {
                    dev,
                    fs,
                    part: None,
                }),
                reads,
            )
        });
        let mut reads = 0u64;
        let mut devices = Vec::new();
        for (probed, r) in seen.into_iter().flatten() {
            reads = reads.saturating_add(r);
            devices.extend(probed);
        }
        Ok(Scan {
            devices,
            reads,
            partitions_known: false,
            tables: HashMap::new(),
        })
    }

    /// Probe in full every device in `which` (indices into `devices`) that is not yet.
    pub fn complete(&mut self, which: &[usize]) {
        let todo: Vec<usize> = which
            .iter()
            .copied()
            .filter(|&i| self.devices.get(i).is_some_and(|s| s.fs.is_none()))
            .collect();
        let devices = &self.devices;
        let done = side_by_side(&todo, |&i, buf| {
            devices
                .get(i)
                .map(|seen| probe_node(&seen.dev.node, Some(seen.dev.size), None, buf))
        });
        for (&i, answer) in todo.iter().zip(done) {
            let fs = match answer {
                Some(Some(Ok((_, fs, reads)))) => {
                    self.reads = self.reads.saturating_add(reads);
                    fs
                }
                Some(Some(Err(e))) => Some(Err(e)),
                _ => continue,
            };
            if let Some(seen) = self.devices.get_mut(i) {
                seen.fs = fs;
            }
        }
    }

    /// [`Scan::complete`] for every device.
    pub fn complete_all(&mut self) {
        let all: Vec<usize> = (0..self.devices.len()).collect();
        self.complete(&all);
    }

    /// Look up whether each device is a partition, and where (sysfs), once. A device whose
    /// sysfs entry went away meanwhile is taken for a whole device.
    pub fn partitions(&mut self, roots: &Roots) {
        if self.partitions_known {
            return;
        }
        for seen in &mut self.devices {
            seen.dev.partition = read_partition(roots, &seen.dev.name).flatten();
        }
        self.partitions_known = true;
    }

    /// Look up the table entry of every partition in `which` (indices into `devices`), reading
    /// each disk's partition table once. A partition its disk's table does not list (the
    /// table changed since the kernel read it, or hnroot does not know the table type) gets
    /// an empty entry.
    pub fn part_entries(&mut self, roots: &Roots, which: &[usize]) {
        self.partitions(roots);
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
    let outcome = seen.fs.as_ref().and_then(|fs| fs.as_ref().ok());
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
        None => s.push_str(" not probed"),
        Some(Err(e)) => {
            let _ = write!(s, " unreadable ({e})");
        }
        Some(Ok(FsOutcome::Unknown)) => s.push_str(" no filesystem"),
        Some(Ok(FsOutcome::Other(t))) => {
            let _ = write!(s, " {t}");
        }
        Some(Ok(FsOutcome::Ambivalent(types))) => {
            let _ = write!(s, " ambivalent ({types})");
        }
        Some(Ok(FsOutcome::Found(i))) => {
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
        // Only the last look probes every device in full, for the message that lists them.
        let last = start.elapsed() >= deadline;
        match find_with(roots, spec, hints, last) {
            Ok(found) => return Ok((found, start.elapsed())),
            Err(FindError::NotFound { .. }) if !last => {
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
    find_with(roots, spec, hints, true)
}

/// [`find_in`]; `listing`: whether a search that finds nothing probes every device in full for
/// its message (else the message lists the devices with what the search read of them).
fn find_with(
    roots: &Roots,
    spec: &DeviceSpec<'_>,
    hints: &Hints,
    listing: bool,
) -> Result<Found, FindError> {
    let label = |i: &FsInfo| match spec {
        DeviceSpec::Label(l) => i.is_labelled(l.as_bytes()),
        _ => false,
    };
    let uuid = |i: &FsInfo| match spec {
        DeviceSpec::Uuid(u) => i.uuid == Some(*u),
        _ => false,
    };
    let depth = match spec {
        DeviceSpec::Label(_) => Depth::Wanted(&label),
        DeviceSpec::Uuid(_) => Depth::Wanted(&uuid),
        DeviceSpec::PartLabel(_) | DeviceSpec::PartUuid(_) => Depth::None,
    };
    let mut scan = Scan::search(roots, depth)?;
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
            if listing {
                scan.complete_all();
            }
            return Err(FindError::NotFound {
                looked_for,
                count,
                seen: list_of(scan.devices.iter(), count),
            });
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
    // Found by its table entry: what it holds, probed in full.
    scan.complete(&[index]);
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
        fs: seen.fs.and_then(Result::ok).and_then(|o| o.info().cloned()),
        part: seen.part,
        chosen_by,
        devices: count,
        reads,
    })
}
