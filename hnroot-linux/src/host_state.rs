//! The host state on hostpart (`data/host`, see `hnroot_core::identity`) as the Linux drivers
//! see and change it: what it holds, for the core's identity plan; what a new server's
//! hostname may come from (DMI serial, MAC addresses); random bytes for a machine ID; and the
//! steps of an identity plan carried out — files created in the host state (exclusively, synced),
//! bind mounts into the new root, files written there. Everything on hostpart goes through
//! descriptors that never follow a link; everything in the new root resolves inside it.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use hnroot_core::hostsync;
use hnroot_core::identity::{
    self, Entry, HostSeen, IdentityStep, Item, Kind, RootSeen, Source, FILES_DIR, LOG_FILE,
    MAX_MIRROR_DEPTH, MAX_MIRROR_FILES, SSHD_DROP_IN, SSHD_DROP_IN_PATH, SSH_KEYS,
};
use hnroot_core::layout;

use crate::fsat::{self, InRoot};
use crate::hostpart::Hostpart;
use crate::mounts;

/// Most bytes of `hostname` or `machine-id` read.
const MAX_TEXT: usize = 4096;

/// The host state's log stops growing at this size.
const MAX_LOG: u64 = 1 << 20;

/// Most directory entries looked at in one directory of the mirror tree.
const MAX_DIR_ENTRIES: usize = 1024;

/// What was seen of the host state, owning what the core's [`HostSeen`] borrows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostObserved {
    /// The host state directory.
    pub dir: Entry,
    /// Each item, in [`Item::ALL`]'s order.
    pub items: Vec<(Item, Entry)>,
    /// `hostname`'s text.
    pub hostname: Option<String>,
    /// `machine-id`'s text.
    pub machine_id: Option<String>,
    /// Private SSH host keys in `ssh/`.
    pub ssh_keys: usize,
    /// Regular files of the mirror tree, relative to `files/`, sorted.
    pub files: Vec<String>,
    /// Entries of the mirror tree not listed.
    pub files_skipped: usize,
}

impl HostObserved {
    /// The mirror tree's names, to borrow in [`HostObserved::seen`].
    pub fn file_names(&self) -> Vec<&str> {
        self.files.iter().map(String::as_str).collect()
    }

    /// The core's view, borrowing `files` (from [`HostObserved::file_names`]).
    pub fn seen<'a>(&'a self, files: &'a [&'a str]) -> HostSeen<'a> {
        let mut seen = HostSeen {
            dir: self.dir,
            hostname: self.hostname.as_deref(),
            machine_id: self.machine_id.as_deref(),
            ssh_keys: self.ssh_keys,
            files,
            files_skipped: self.files_skipped,
            ..HostSeen::default()
        };
        for &(item, entry) in &self.items {
            seen = seen.with(item, entry);
        }
        seen
    }
}

fn entry(kind: fsat::Kind) -> Entry {
    match kind {
        fsat::Kind::Absent => Entry::Absent,
        fsat::Kind::File(_) => Entry::File,
        fsat::Kind::Dir => Entry::Dir,
        fsat::Kind::Link | fsat::Kind::Other => Entry::Other,
    }
}

/// The host state directory, if it is one.
pub fn open_dir(hostpart: &Hostpart) -> io::Result<Option<OwnedFd>> {
    fsat::open_path(hostpart.dir(), layout::HOST_DIR)
}

fn read_text(dir: &OwnedFd, name: &str) -> Option<String> {
    let (data, more) = fsat::read_file(dir, name, MAX_TEXT).ok()?;
    if more {
        return None;
    }
    String::from_utf8(data).ok()
}

/// Look at the host state on `hostpart`.
pub fn observe(hostpart: &Hostpart) -> io::Result<HostObserved> {
    let mut out = HostObserved {
        dir: entry(fsat::kind_path(hostpart.dir(), layout::HOST_DIR)?),
        ..HostObserved::default()
    };
    if out.dir != Entry::Dir {
        return Ok(out);
    }
    let Some(dir) = open_dir(hostpart)? else {
        out.dir = Entry::Absent;
        return Ok(out);
    };
    for item in Item::ALL {
        out.items
            .push((item, entry(fsat::kind_path(&dir, item.host_path())?)));
    }
    let is_file = |out: &HostObserved, item: Item| {
        out.items
            .iter()
            .any(|&(i, e)| i == item && e == Entry::File)
    };
    if is_file(&out, Item::Hostname) {
        out.hostname = read_text(&dir, Item::Hostname.host_path());
    }
    if is_file(&out, Item::MachineId) {
        out.machine_id = read_text(&dir, Item::MachineId.host_path());
    }
    if let Ok(Some(ssh)) = fsat::open_dir(&dir, Item::Ssh.host_path()) {
        out.ssh_keys = SSH_KEYS
            .iter()
            .filter(|(_, file)| matches!(fsat::kind(&ssh, file), Ok(fsat::Kind::File(_))))
            .count();
    }
    if let Ok(Some(files)) = fsat::open_dir(&dir, FILES_DIR) {
        walk_mirror(&files, "", 1, &mut out);
    }
    out.files.sort();
    Ok(out)
}

/// List the regular files under `dir` (the mirror tree at `prefix`), bounded in depth, count
/// and entries per directory; everything else counts as skipped.
fn walk_mirror(dir: &OwnedFd, prefix: &str, depth: usize, out: &mut HostObserved) {
    let Ok((names, more)) = fsat::list(dir, MAX_DIR_ENTRIES) else {
        out.files_skipped = out.files_skipped.saturating_add(1);
        return;
    };
    if more {
        out.files_skipped = out.files_skipped.saturating_add(1);
    }
    for name in names {
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        match fsat::kind(dir, &name) {
            Ok(fsat::Kind::File(_)) if out.files.len() < MAX_MIRROR_FILES => out.files.push(rel),
            Ok(fsat::Kind::Dir) if depth < MAX_MIRROR_DEPTH => {
                if let Ok(Some(sub)) = fsat::open_dir(dir, &name) {
                    walk_mirror(&sub, &rel, depth.saturating_add(1), out);
                }
            }
            _ => out.files_skipped = out.files_skipped.saturating_add(1),
        }
    }
}

/// Look at the new root (mounted at `root`): whether it has an SSH server.
pub fn observe_root(root: &Path) -> RootSeen {
    let sshd = InRoot::open(root)
        .and_then(|r| r.kind("usr/sbin/sshd"))
        .ok()
        .map(|k| matches!(k, fsat::Kind::File(_)));
    RootSeen { sshd }
}

/// Everything a boot's identity plan is made from, gathered in one place for the initramfs and
/// for `hnroot host show`/`explain`: the host state, the new root (whether it has sshd), what
/// could name a new server, and random bytes for a new machine ID.
#[derive(Debug)]
pub struct Inputs {
    /// The host state.
    pub observed: HostObserved,
    /// The new root (`sshd: None` when there is none to look at).
    pub root: RootSeen,
    /// The DMI serial and MAC addresses.
    pub names: NameSources,
    /// 16 bytes from the random source, if it could be read.
    pub random: Option<[u8; 16]>,
    /// Why there are none.
    pub random_error: Option<String>,
}

impl Inputs {
    /// Look at the host state on `hostpart`, the new root at `root` (if there is one), sysfs at
    /// `sys` and the random source at `dev/urandom`.
    pub fn gather(
        hostpart: &Hostpart,
        root: Option<&Path>,
        sys: &Path,
        dev: &Path,
    ) -> io::Result<Inputs> {
        let observed = observe(hostpart)?;
        let urandom = dev.join("urandom");
        let (random, random_error) = match random_bytes(&urandom) {
            Ok(b) => (Some(b), None),
            Err(e) => (
                None,
                Some(format!("cannot read {}: {e}", urandom.display())),
            ),
        };
        Ok(Inputs {
            observed,
            root: root.map_or(RootSeen { sshd: None }, observe_root),
            names: name_sources(sys),
            random,
            random_error,
        })
    }

    /// The core's identity plan from these inputs and `hnroot.hostname=` (`parameter`), handed
    /// to `f` (the plan borrows what was gathered).
    pub fn with_plan<R>(
        &self,
        parameter: Option<&str>,
        f: impl FnOnce(&identity::IdentityPlan<'_>) -> R,
    ) -> R {
        let files = self.observed.file_names();
        let host = self.observed.seen(&files);
        let macs = self.names.mac_refs();
        let sources = hnroot_core::hostname::Sources {
            parameter,
            dmi_serial: self.names.dmi_serial.as_deref(),
            macs: &macs,
        };
        let plan = identity::plan(&host, &self.root, &sources, self.random);
        // Bound, not returned directly: the plan (which borrows `files`) must be dropped before
        // the locals it borrows, which a temporary in the tail expression is not.
        #[allow(clippy::let_and_return)]
        let out = f(&plan);
        out
    }
}

/// What could name a new server, read from sysfs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameSources {
    /// `<sys>/class/dmi/id/product_serial`.
    pub dmi_serial: Option<String>,
    /// The addresses of the network interfaces that have a device behind them (not loopback,
    /// bridges or other virtual interfaces).
    pub macs: Vec<String>,
}

impl NameSources {
    /// The MAC addresses as the core takes them.
    pub fn mac_refs(&self) -> Vec<&str> {
        self.macs.iter().map(String::as_str).collect()
    }
}

/// Read the DMI serial and the MAC addresses under `sys` (`/sys`).
pub fn name_sources(sys: &Path) -> NameSources {
    let dmi_serial = std::fs::read_to_string(sys.join("class/dmi/id/product_serial"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let mut macs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(sys.join("class/net")) {
        for e in entries.take(MAX_DIR_ENTRIES).flatten() {
            let p = e.path();
            if !p.join("device").exists() {
                continue;
            }
            if let Ok(a) = std::fs::read_to_string(p.join("address")) {
                macs.push(a.trim().to_owned());
            }
        }
    }
    macs.sort();
    NameSources { dmi_serial, macs }
}

/// 16 bytes from the kernel's random source at `dev` (`/dev/urandom`).
pub fn random_bytes(dev: &Path) -> io::Result<[u8; 16]> {
    let mut b = [0u8; 16];
    std::fs::File::open(dev)?.read_exact(&mut b)?;
    Ok(b)
}

/// Why an identity step failed (the boot goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// A system call on a host-state or new-root path failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, on what.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Something else than the step needs is at a path: nothing is projected there.
    #[error("{0}")]
    Found(String),
    /// The step needs a new root and the driver has none.
    #[error("this driver has no new root")]
    NoNewRoot,
    /// The bind mount failed.
    #[error(transparent)]
    Mount(#[from] mounts::SysError),
}

fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProjectError {
    let what = what.into();
    move |source| ProjectError::Io { what, source }
}

fn host_dir(hostpart: &Hostpart) -> Result<OwnedFd, ProjectError> {
    match open_dir(hostpart) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(ProjectError::Found(format!(
            "{} does not exist",
            layout::HOST_DIR
        ))),
        Err(e) => Err(io(layout::HOST_DIR)(e)),
    }
}

/// Append `line` to the host state's log, with the time (seconds since the epoch). Never
/// fails the caller: what cannot be logged is returned as a note.
pub fn log(hostpart: &Hostpart, line: &str) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = match host_dir(hostpart) {
        Ok(d) => d,
        Err(e) => return Some(format!("not logged in the host state: {e}")),
    };
    fsat::append_line(&dir, LOG_FILE, &format!("{now} {line}"), 0o644, MAX_LOG)
        .err()
        .map(|e| format!("not logged in {}/{LOG_FILE}: {e}", layout::HOST_DIR))
}

/// Open the host-state path `rel` (`O_PATH`, never through a link) and check it is a `kind`.
fn open_host_path(dir: &OwnedFd, rel: &str, kind: Kind) -> Result<OwnedFd, ProjectError> {
    let (parent, name) = fsat::split(rel);
    let parent_fd = match parent {
        Some(p) => fsat::open_path(dir, p)
            .map_err(io(p))?
            .ok_or_else(|| ProjectError::Found(format!("{p} does not exist")))?,
        None => fsat::open_dir(dir, ".")
            .map_err(io("the host state directory"))?
            .ok_or_else(|| ProjectError::Found("the host state directory vanished".into()))?,
    };
    let fd = fsat::open_handle(&parent_fd, name).map_err(io(rel))?;
    let got = fsat::fstat(&fd).map(|st| fsat::kind_of(&st));
    match (kind, got) {
        (Kind::File, Ok(fsat::Kind::File(_))) | (Kind::Dir, Ok(fsat::Kind::Dir)) => Ok(fd),
        (_, Ok(other)) => Err(ProjectError::Found(format!(
            "{rel} is {other}, not a {}",
            kind.as_str()
        ))),
        (_, Err(e)) => Err(io(rel)(e)),
    }
}

/// Carry out one step of an identity plan: on `hostpart`'s host state and in the new root at
/// `newroot` (when the driver has one). Says what it did, or why it failed.
pub fn carry_out(
    hostpart: &Hostpart,
    newroot: Option<&Path>,
    step: &IdentityStep<'_>,
) -> Result<String, ProjectError> {
    let root = || -> Result<InRoot, ProjectError> {
        let path = newroot.ok_or(ProjectError::NoNewRoot)?;
        InRoot::open(path).map_err(io(path.display().to_string()))
    };
    match *step {
        IdentityStep::MakeHostDirs => {
            let dir = fsat::make_path(hostpart.dir(), layout::HOST_DIR, 0o755)
                .map_err(io(format!("create {}", layout::HOST_DIR)))?;
            fsat::make_dir(&dir, Item::Ssh.host_path(), 0o700)
                .map_err(io(format!("create {}/ssh", layout::HOST_DIR)))?;
            fsat::sync_dir(&dir).map_err(io(layout::HOST_DIR))?;
            Ok(format!("{0} and {0}/ssh are there", layout::HOST_DIR))
        }
        IdentityStep::CreateMachineId(id) => {
            let dir = host_dir(hostpart)?;
            fsat::write_file(
                &dir,
                Item::MachineId.host_path(),
                format!("{id}\n").as_bytes(),
                0o444,
                false,
            )
            .map_err(io(format!("write {}/machine-id", layout::HOST_DIR)))?;
            let note = log(hostpart, &format!("created machine-id {id}"));
            Ok(format!("created machine-id {id}{}", suffix(note)))
        }
        IdentityStep::CreateHostname { name, source } => {
            let dir = host_dir(hostpart)?;
            fsat::write_file(
                &dir,
                Item::Hostname.host_path(),
                format!("{name}\n").as_bytes(),
                0o644,
                false,
            )
            .map_err(io(format!("write {}/hostname", layout::HOST_DIR)))?;
            let note = log(
                hostpart,
                &format!("created hostname {name} (from {})", source.code()),
            );
            Ok(format!(
                "created hostname {name} from {source}{}",
                suffix(note)
            ))
        }
        IdentityStep::CopyMachineId => copy_machine_id(hostpart, &root()?),
        IdentityStep::Bind(src) => bind(hostpart, &root()?, src),
        IdentityStep::WriteSshdDropIn => {
            root()?
                .write(SSHD_DROP_IN_PATH, SSHD_DROP_IN.as_bytes(), 0o644)
                .map_err(io(format!("write /{SSHD_DROP_IN_PATH}")))?;
            Ok("ok".into())
        }
    }
}

/// The host state's machine ID written into the new root: the parsed ID, never a part of the
/// file (what is written is what was judged).
fn copy_machine_id(hostpart: &Hostpart, root: &InRoot) -> Result<String, ProjectError> {
    let dir = host_dir(hostpart)?;
    let (data, more) = fsat::read_file(&dir, Item::MachineId.host_path(), 64)
        .map_err(io(format!("read {}/machine-id", layout::HOST_DIR)))?;
    let id = std::str::from_utf8(&data)
        .ok()
        .filter(|_| !more)
        .and_then(|t| hnroot_core::machineid::MachineId::parse(t).ok())
        .ok_or_else(|| {
            ProjectError::Found(format!(
                "{}/machine-id is no longer a machine ID (changed since it was looked at)",
                layout::HOST_DIR
            ))
        })?;
    let target = Item::MachineId.root_path().unwrap_or("etc/machine-id");
    root.write(target, format!("{id}\n").as_bytes(), 0o444)
        .map_err(io(format!("write /{target}")))?;
    Ok(format!("/{target} is {id}"))
}

/// Bind the host state's `src` over its place in the new root (a mount point made there when
/// missing; one of another kind is refused).
fn bind(hostpart: &Hostpart, root: &InRoot, src: Source<'_>) -> Result<String, ProjectError> {
    let dir = host_dir(hostpart)?;
    let host_rel = src.to_string();
    let from = open_host_path(&dir, &host_rel, src.kind())?;
    let target = src.target();
    let to = match src.kind() {
        Kind::File => root.make_file(target, 0o644),
        Kind::Dir => root.make_dir(target),
    }
    .map_err(io(format!("the mount point /{target} in the new root")))?;
    let got = fsat::fstat(&to).map(|st| fsat::kind_of(&st));
    match (src.kind(), got) {
        (Kind::File, Ok(fsat::Kind::File(_))) | (Kind::Dir, Ok(fsat::Kind::Dir)) => {}
        (k, Ok(other)) => {
            return Err(ProjectError::Found(format!(
                "the image has {other} at /{target}, not a {}: not projected",
                k.as_str()
            )))
        }
        (_, Err(e)) => return Err(io(format!("/{target}"))(e)),
    }
    mounts::bind_fds(
        &from,
        &to,
        &format!("{}/{host_rel} on /{target}", layout::HOST_DIR),
    )?;
    Ok("ok".into())
}

fn suffix(note: Option<String>) -> String {
    note.map(|n| format!(" ({n})")).unwrap_or_default()
}

/// The regular files under `dir` (relative paths, sorted), never following a link, at most
/// `max` and [`hostsync::MAX_SYNC_DEPTH`] deep; other entries are listed with what they are.
pub fn list_tree(dir: &OwnedFd, max: usize) -> Vec<(String, fsat::Kind)> {
    let mut out = Vec::new();
    list_into(dir, "", 1, max, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn list_into(
    dir: &OwnedFd,
    prefix: &str,
    depth: usize,
    max: usize,
    out: &mut Vec<(String, fsat::Kind)>,
) {
    let Ok((names, _)) = fsat::list(dir, MAX_DIR_ENTRIES) else {
        return;
    };
    for name in names {
        if out.len() >= max {
            return;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        match fsat::kind(dir, &name) {
            Ok(fsat::Kind::Dir) if depth < hostsync::MAX_SYNC_DEPTH => {
                if let Ok(Some(sub)) = fsat::open_dir(dir, &name) {
                    list_into(&sub, &rel, depth.saturating_add(1), max, out);
                }
            }
            Ok(k) => out.push((rel, k)),
            Err(_) => out.push((rel, fsat::Kind::Other)),
        }
    }
}

/// The identity plan's steps as `hnroot explain` and the boot log number them.
pub fn describe(plan: &identity::IdentityPlan<'_>) -> Vec<String> {
    plan.steps.iter().map(ToString::to_string).collect()
}

/// A refused entry as one line.
pub fn describe_refused(r: &identity::Refused<'_>) -> String {
    let what = match r.what {
        Source::Item(i) => i.host_path().to_owned(),
        Source::Mirror(rel) => format!("{FILES_DIR}/{rel}"),
    };
    format!("{}/{what}: {}", layout::HOST_DIR, r.why)
}
