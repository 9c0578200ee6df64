//! Per-host identity: one image boots on every server, and each server comes up as itself. What
//! makes a server itself lives on its hostpart, in the **host state** ([`crate::layout::HOST_DIR`],
//! `/hostpart/data/host` on a running system), and belongs to the host, not to an image: it
//! survives updates, reverts and rollbacks. This module decides, at every boot, how the host
//! state is projected into the new root (before `switch_root`) and what a new server creates on
//! its first boot. The initramfs observes the host state and the new root, asks [`plan`], and
//! carries the steps out with the shared executor; `hnroot explain` shows the same steps.
//!
//! ## The host state
//!
//! | in `data/host/`       | what it is                          | in the running system                  | how            |
//! |-----------------------|-------------------------------------|----------------------------------------|----------------|
//! | `hostname`            | the hostname, one line              | `/etc/hostname`                        | bind (file)    |
//! | `machine-id`          | machine-id(5)                       | `/etc/machine-id`                      | copy           |
//! | `ssh/`                | `ssh_host_{rsa,ecdsa,ed25519}_key{,.pub}` | read by sshd in place            | sshd drop-in   |
//! | `network/`            | systemd-networkd `.network` files   | `/etc/systemd/network`                 | bind (dir)     |
//! | `interfaces.d/`       | ifupdown snippets                   | `/etc/network/interfaces.d`            | bind (dir)     |
//! | `puppet/ssl/`         | the Puppet agent's certificates     | `/etc/puppetlabs/puppet/ssl`           | bind (dir)     |
//! | `puppet/puppet.conf`  | its configuration (`certname`)      | `/etc/puppetlabs/puppet/puppet.conf`   | bind (file)    |
//! | `files/...`           | any further file: `files/etc/x`     | `/etc/x`                               | bind (file)    |
//! | `log`                 | what first boots and syncs created  | —                                      | —              |
//!
//! Nothing is written into the image file. A bind mount shows the host's file at its place in
//! the new root; what the running system changes there (an edited network file, a key added to
//! `ssh/`) changes the host state. A program that replaces a bind-mounted *file* by renaming a
//! new one over it (`hostnamectl set-hostname`, `sed -i`) fails with EBUSY rather than losing
//! the change at the next boot; edit such files in place, or in `/hostpart/data/host`. Mount
//! points missing from the image are created in the writable layer.
//!
//! `machine-id` is copied instead (into the writable layer), because systemd treats a mounted
//! `/etc/machine-id` as a transient ID: `systemd-machine-id-commit.service` would try to commit
//! it and fail. A running system never changes its machine ID, so nothing is lost. SSH host
//! keys stay where they are: a generated `sshd_config.d` drop-in ([`SSHD_DROP_IN`]) points sshd
//! at them, so a key made later (by `hnroot-host-keys.service`) lands in the host state.
//!
//! ## First boot
//!
//! A host state without `machine-id` gets one from random bytes the driver passes in; without
//! `hostname`, one chosen by [`crate::hostname::choose`] (`hnroot.hostname=`, the DMI serial,
//! the first MAC, the machine ID); both are written exclusively (never replacing a file) before
//! they are projected. SSH host keys need the image's own `ssh-keygen`: `hnroot-host-keys.service`
//! makes them after `switch_root`, before sshd starts. A host-state file that exists but is not
//! valid is never replaced: it is reported and not projected.
//!
//! ## Failures
//!
//! A projection never fails the image: each step that fails is logged and the next one runs
//! (a bind of a file whose creation failed then fails too, and says so); the image boots with
//! whatever it carries itself for what could not be projected.

use core::fmt;

use heapless::Vec;

use crate::hostname::{self, Hostname, HostnameSource, Sources};
use crate::machineid::MachineId;

/// A fixed part of the host state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Item {
    /// `hostname`.
    Hostname,
    /// `machine-id`.
    MachineId,
    /// `ssh/`: the SSH host keys.
    Ssh,
    /// `network/`: systemd-networkd configuration.
    Network,
    /// `interfaces.d/`: ifupdown configuration.
    InterfacesD,
    /// `puppet/ssl/`: the Puppet agent's certificates.
    PuppetSsl,
    /// `puppet/puppet.conf`: the Puppet agent's configuration, with its `certname`.
    PuppetConf,
}

/// What a host-state entry is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

impl Kind {
    /// `file` or `directory`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
        }
    }
}

/// How an item reaches the running system.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Projection {
    /// Bind-mounted at its place in the new root.
    Bind,
    /// Copied into the new root's writable layer.
    Copy,
    /// Read in place through a generated configuration file.
    Referenced,
}

impl Item {
    /// Every item, in the order a plan projects them.
    pub const ALL: [Item; 7] = [
        Item::MachineId,
        Item::Hostname,
        Item::Ssh,
        Item::Network,
        Item::InterfacesD,
        Item::PuppetSsl,
        Item::PuppetConf,
    ];

    /// Its path inside the host state directory.
    pub const fn host_path(self) -> &'static str {
        match self {
            Item::Hostname => "hostname",
            Item::MachineId => "machine-id",
            Item::Ssh => "ssh",
            Item::Network => "network",
            Item::InterfacesD => "interfaces.d",
            Item::PuppetSsl => "puppet/ssl",
            Item::PuppetConf => "puppet/puppet.conf",
        }
    }

    /// Where it appears in the new root (relative to its `/`), for the items that appear there.
    pub const fn root_path(self) -> Option<&'static str> {
        match self {
            Item::Hostname => Some("etc/hostname"),
            Item::MachineId => Some("etc/machine-id"),
            Item::Ssh => None,
            Item::Network => Some("etc/systemd/network"),
            Item::InterfacesD => Some("etc/network/interfaces.d"),
            Item::PuppetSsl => Some("etc/puppetlabs/puppet/ssl"),
            Item::PuppetConf => Some("etc/puppetlabs/puppet/puppet.conf"),
        }
    }

    /// File or directory.
    pub const fn kind(self) -> Kind {
        match self {
            Item::Hostname | Item::MachineId | Item::PuppetConf => Kind::File,
            Item::Ssh | Item::Network | Item::InterfacesD | Item::PuppetSsl => Kind::Dir,
        }
    }

    /// How it reaches the running system.
    pub const fn projection(self) -> Projection {
        match self {
            Item::MachineId => Projection::Copy,
            Item::Ssh => Projection::Referenced,
            _ => Projection::Bind,
        }
    }

    /// A stable one-word name for logs and JSON.
    pub const fn code(self) -> &'static str {
        match self {
            Item::Hostname => "hostname",
            Item::MachineId => "machine-id",
            Item::Ssh => "ssh",
            Item::Network => "network",
            Item::InterfacesD => "interfaces.d",
            Item::PuppetSsl => "puppet-ssl",
            Item::PuppetConf => "puppet-conf",
        }
    }

    const fn index(self) -> usize {
        match self {
            Item::MachineId => 0,
            Item::Hostname => 1,
            Item::Ssh => 2,
            Item::Network => 3,
            Item::InterfacesD => 4,
            Item::PuppetSsl => 5,
            Item::PuppetConf => 6,
        }
    }
}

/// The mirror tree inside the host state: `files/etc/x` appears at `/etc/x`.
pub const FILES_DIR: &str = "files";

/// The host state's own log (first-boot creations, syncs), one line each; never projected or
/// synced.
pub const LOG_FILE: &str = "log";

/// Most files of the mirror tree projected; the driver lists at most this many and counts the
/// rest as skipped.
pub const MAX_MIRROR_FILES: usize = 64;

/// Deepest path in the mirror tree the driver walks into.
pub const MAX_MIRROR_DEPTH: usize = 12;

/// Longest relative path in the mirror tree.
pub const MAX_MIRROR_PATH: usize = 255;

/// The SSH host key types every host has, as `ssh-keygen -t` names them, and their files in
/// `ssh/` (each with a `.pub` beside it): OpenSSH's defaults.
pub const SSH_KEYS: [(&str, &str); 3] = [
    ("rsa", "ssh_host_rsa_key"),
    ("ecdsa", "ssh_host_ecdsa_key"),
    ("ed25519", "ssh_host_ed25519_key"),
];

/// Where the sshd drop-in is written in the new root.
pub const SSHD_DROP_IN_PATH: &str = "etc/ssh/sshd_config.d/hnroot-host-keys.conf";

/// The sshd drop-in: sshd reads the host keys from the host state (hostpart is mounted at
/// `/hostpart` before sshd starts). Debian's `sshd_config` includes `sshd_config.d/*.conf`
/// first, and the first `HostKey` lines sshd reads are the ones it uses.
pub const SSHD_DROP_IN: &str = "\
# Written at every boot by hnroot-init: this host's SSH host keys are part of its host state on
# hostpart, not of the image (hnroot-host-keys.service creates the missing ones before sshd).
HostKey /hostpart/data/host/ssh/ssh_host_rsa_key
HostKey /hostpart/data/host/ssh/ssh_host_ecdsa_key
HostKey /hostpart/data/host/ssh/ssh_host_ed25519_key
";

/// Top directories of the new root the mirror tree never projects into: the kernel's and
/// systemd's own file systems, hostpart itself, and the image's boot files.
const MIRROR_FORBIDDEN_TOP: [&str; 9] = [
    "proc",
    "sys",
    "dev",
    "run",
    "tmp",
    "hostpart",
    "data0",
    "boot",
    "lost+found",
];

/// What the driver found at a host-state path (never following a link).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Entry {
    /// Nothing there.
    #[default]
    Absent,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Something else: a symbolic link, a device, a FIFO; never used.
    Other,
}

/// What the driver saw of the host state.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostSeen<'a> {
    /// The host state directory itself.
    pub dir: Entry,
    /// Each item, by [`Item::ALL`]'s order (use [`HostSeen::with`] and [`HostSeen::entry`]).
    pub items: [Entry; 7],
    /// The text of `hostname` when it is a file (the driver reads at most 4 KiB; `None` when
    /// it could not be read as UTF-8).
    pub hostname: Option<&'a str>,
    /// The text of `machine-id` when it is a file, likewise.
    pub machine_id: Option<&'a str>,
    /// How many of [`SSH_KEYS`]' private keys `ssh/` holds.
    pub ssh_keys: usize,
    /// The regular files of the mirror tree, relative to [`FILES_DIR`], at most
    /// [`MAX_MIRROR_FILES`].
    pub files: &'a [&'a str],
    /// Entries of the mirror tree not listed: not regular files (links, devices), deeper than
    /// [`MAX_MIRROR_DEPTH`], or beyond [`MAX_MIRROR_FILES`].
    pub files_skipped: usize,
}

impl<'a> HostSeen<'a> {
    /// How `item` was seen.
    pub fn entry(&self, item: Item) -> Entry {
        self.items.get(item.index()).copied().unwrap_or_default()
    }

    /// The same with `item` seen as `entry`.
    pub fn with(mut self, item: Item, entry: Entry) -> HostSeen<'a> {
        if let Some(slot) = self.items.get_mut(item.index()) {
            *slot = entry;
        }
        self
    }
}

/// What the driver saw of the new root (the mounted image, or the running one for `hnroot
/// explain`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct RootSeen {
    /// Whether it has an SSH server (`/usr/sbin/sshd`); `None` when not looked at.
    pub sshd: Option<bool>,
}

/// Where a projected file comes from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Source<'a> {
    /// A fixed item.
    Item(Item),
    /// A file of the mirror tree (relative to [`FILES_DIR`]; the same path in the new root).
    Mirror(&'a str),
}

impl<'a> Source<'a> {
    /// Its place in the new root, relative to `/`.
    pub fn target(&self) -> &'a str {
        match self {
            Source::Item(i) => i.root_path().unwrap_or(""),
            Source::Mirror(rel) => rel,
        }
    }

    /// File or directory.
    pub fn kind(&self) -> Kind {
        match self {
            Source::Item(i) => i.kind(),
            Source::Mirror(_) => Kind::File,
        }
    }
}

impl fmt::Display for Source<'_> {
    /// Its path inside the host state directory.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Item(i) => f.write_str(i.host_path()),
            Source::Mirror(rel) => write!(f, "{FILES_DIR}/{rel}"),
        }
    }
}

/// One step of an identity plan.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IdentityStep<'a> {
    /// Create the host state directory and its `ssh/` (mode 0700) where missing, never
    /// following a link.
    MakeHostDirs,
    /// Write `machine-id` into the host state, exclusively (never replacing a file), synced.
    CreateMachineId(MachineId),
    /// Write `hostname` into the host state, exclusively, synced.
    CreateHostname {
        /// The name.
        name: Hostname,
        /// Where it came from.
        source: HostnameSource,
    },
    /// Copy the host state's `machine-id` to `/etc/machine-id` in the new root (replacing the
    /// image's, in the writable layer).
    CopyMachineId,
    /// Bind-mount a host-state file or directory at its place in the new root, creating the
    /// mount point there (in the writable layer) when the image lacks it. Paths in the new root
    /// resolve inside it: a link in the image never leads out of it.
    Bind(Source<'a>),
    /// Write [`SSHD_DROP_IN`] to [`SSHD_DROP_IN_PATH`] in the new root.
    WriteSshdDropIn,
}

impl IdentityStep<'_> {
    /// A stable one-word name for JSON.
    pub const fn code(&self) -> &'static str {
        match self {
            IdentityStep::MakeHostDirs => "make-host-dirs",
            IdentityStep::CreateMachineId(_) => "create-machine-id",
            IdentityStep::CreateHostname { .. } => "create-hostname",
            IdentityStep::CopyMachineId => "copy-machine-id",
            IdentityStep::Bind(_) => "bind",
            IdentityStep::WriteSshdDropIn => "write-sshd-drop-in",
        }
    }

    /// Whether the step creates host state (first boot), as opposed to projecting it.
    pub const fn creates(&self) -> bool {
        matches!(
            self,
            IdentityStep::CreateMachineId(_) | IdentityStep::CreateHostname { .. }
        )
    }
}

impl fmt::Display for IdentityStep<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityStep::MakeHostDirs => {
                f.write_str("create the host state directory (and its ssh/)")
            }
            IdentityStep::CreateMachineId(_) => f.write_str("create machine-id (random)"),
            IdentityStep::CreateHostname { name, source } => {
                write!(f, "create hostname {name} (from {source})")
            }
            IdentityStep::CopyMachineId => f.write_str("copy machine-id -> /etc/machine-id"),
            IdentityStep::Bind(src) => write!(
                f,
                "bind {src} -> /{} ({})",
                src.target(),
                src.kind().as_str()
            ),
            IdentityStep::WriteSshdDropIn => write!(
                f,
                "write /{SSHD_DROP_IN_PATH} (sshd uses the host keys in ssh/)"
            ),
        }
    }
}

/// Why something in the host state is not projected.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Why {
    /// It is not what the item is (a directory where a file belongs, a link, a device).
    WrongKind {
        /// What it should be.
        expected: Kind,
    },
    /// `hostname` or `machine-id` holds no valid value (kept as it is: never overwritten).
    Invalid,
    /// A mirror path into a place hnroot never projects into (`/proc`, `/boot`, `/hostpart`,
    /// ...), or not a plain relative path.
    Forbidden,
    /// A mirror path a fixed item owns (`etc/hostname`, a file inside a projected directory).
    Shadowed(Item),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::WrongKind { expected } => write!(f, "not a {} (links are never followed)", expected.as_str()),
            Why::Invalid => f.write_str("holds no valid value: left as it is and not used; fix or remove it"),
            Why::Forbidden => f.write_str("hnroot never projects there (/proc, /sys, /dev, /run, /tmp, /boot, /hostpart, or not a plain relative path)"),
            Why::Shadowed(i) => write!(f, "the host state's {} owns that place", i.host_path()),
        }
    }
}

/// Something in the host state not projected, and why.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Refused<'a> {
    /// What.
    pub what: Source<'a>,
    /// Why.
    pub why: Why,
}

crate::codes::notes! {
    /// What the plan noticed; each is one sentence in the boot log.
    pub struct IdentityNotes: u32 {
        /// No host state yet: this is the server's first boot with hnroot.
        const FIRST_BOOT = 1 << 0 => ("first-boot", "no host state yet: this server's identity is created now and kept on hostpart");
        /// The host state path exists but is not a directory: nothing is projected or created.
        const HOST_DIR_UNUSABLE = 1 << 1 => ("host-dir-unusable", "the host state path on hostpart is not a directory: no identity is projected; move it away");
        /// `hnroot.hostname=` differs from the host state's hostname, which stands.
        const PARAMETER_IGNORED = 1 << 2 => ("parameter-ignored", "hnroot.hostname= differs from the host state's hostname, which stands (edit /hostpart/data/host/hostname to rename)");
        /// No SSH host keys yet: `hnroot-host-keys.service` creates them before sshd starts.
        const SSH_KEYS_PENDING = 1 << 3 => ("ssh-keys-pending", "the host state holds no SSH host keys yet: hnroot-host-keys.service creates them before sshd starts");
        /// The mirror tree had entries that are not listed (see [`HostSeen::files_skipped`]).
        const MIRROR_SKIPPED = 1 << 4 => ("mirror-skipped", "entries of files/ that are not regular files, too deep, or too many were skipped");
        /// More refusals than the plan lists.
        const MORE_REFUSED = 1 << 5 => ("more-refused", "more host-state entries were refused than are listed");
        /// No random bytes (the driver could not read any): no machine ID is created, and
        /// systemd runs with a transient one.
        const NO_RANDOM = 1 << 6 => ("no-random", "no random bytes to make a machine ID: none is created, systemd runs with a transient one");
        /// No hostname could be chosen (no parameter, serial, MAC or machine ID).
        const NO_HOSTNAME = 1 << 7 => ("no-hostname", "no hostname could be chosen (no hnroot.hostname=, DMI serial, MAC or machine ID): the image's stands");
    }
}

/// Most steps a plan has: host dirs, two creations, the copy, the drop-in, five item binds and
/// the mirror tree.
pub const MAX_STEPS: usize = 10 + MAX_MIRROR_FILES;

/// Most refusals a plan lists.
pub const MAX_REFUSED: usize = 16;

/// The identity plan of one boot.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct IdentityPlan<'a> {
    /// In order. Each runs whether the ones before it succeeded or not.
    pub steps: Vec<IdentityStep<'a>, MAX_STEPS>,
    /// What is in the host state but not projected.
    pub refused: Vec<Refused<'a>, MAX_REFUSED>,
    /// What the plan noticed.
    pub notes: IdentityNotes,
}

impl IdentityPlan<'_> {
    /// The plan as one line of stable `key=value` words:
    /// `steps=5 created=machine-id,hostname refused=0 notes=first-boot` (logged after
    /// `identity: `, apart from the switch plan's `record:` line).
    pub fn record(&self) -> Record<'_, '_> {
        Record(self)
    }

    fn push<'b>(steps: &mut Vec<IdentityStep<'b>, MAX_STEPS>, step: IdentityStep<'b>) {
        // MAX_STEPS counts every fixed step and MAX_MIRROR_FILES binds; the mirror loop stops
        // at its bound, so this push cannot fail.
        let _ = steps.push(step);
    }
}

/// See [`IdentityPlan::record`].
#[derive(Clone, Copy, Debug)]
pub struct Record<'p, 'a>(&'p IdentityPlan<'a>);

impl fmt::Display for Record<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        write!(f, "steps={} created=", p.steps.len())?;
        crate::codes::write_codes(
            f,
            p.steps.iter().filter_map(|s| match s {
                IdentityStep::CreateMachineId(_) => Some("machine-id"),
                IdentityStep::CreateHostname { .. } => Some("hostname"),
                _ => None,
            }),
        )?;
        write!(f, " refused={} notes=", p.refused.len())?;
        crate::codes::write_codes(f, p.notes.codes())
    }
}

/// Whether a mirror path is a plain relative path hnroot may project into: components that
/// are neither empty, `.` nor `..`, no control characters, not under
/// `MIRROR_FORBIDDEN_TOP`, at most [`MAX_MIRROR_PATH`] bytes.
pub fn mirror_path_allowed(rel: &str) -> bool {
    if rel.is_empty() || rel.len() > MAX_MIRROR_PATH || rel.chars().any(char::is_control) {
        return false;
    }
    let mut parts = rel.split('/');
    let Some(top) = parts.next() else {
        return false;
    };
    if MIRROR_FORBIDDEN_TOP.contains(&top) {
        return false;
    }
    core::iter::once(top)
        .chain(parts)
        .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// Whether `path` is `dir` or inside it (both relative, without trailing `/`).
fn within(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Plan this boot's identity work from what the driver saw of the host state and the new root,
/// the sources a new hostname may come from, and 16 random bytes (used only when the host has
/// no machine ID yet; `None` when the driver could read none).
pub fn plan<'a>(
    host: &HostSeen<'a>,
    root: &RootSeen,
    sources: &Sources<'_>,
    random: Option<[u8; 16]>,
) -> IdentityPlan<'a> {
    let first_boot = match host.dir {
        Entry::Dir => false,
        Entry::Absent => true,
        Entry::File | Entry::Other => {
            return IdentityPlan {
                notes: IdentityNotes::HOST_DIR_UNUSABLE,
                ..IdentityPlan::default()
            }
        }
    };
    let mut p = Planner {
        plan: IdentityPlan::default(),
        host,
        first_boot,
    };
    if first_boot {
        p.plan.notes |= IdentityNotes::FIRST_BOOT;
    }
    if first_boot || p.seen(Item::Ssh) == Entry::Absent {
        p.push(IdentityStep::MakeHostDirs);
    }
    let machine_id = p.machine_id(random);
    p.hostname(sources, machine_id.as_ref());
    p.ssh(root);
    let bound = p.other_items();
    if !first_boot {
        p.mirror(&bound);
    }
    p.plan
}

/// A plan being made from what was seen of the host state.
struct Planner<'a, 'h> {
    plan: IdentityPlan<'a>,
    host: &'h HostSeen<'a>,
    first_boot: bool,
}

impl<'a> Planner<'a, '_> {
    /// How `item` was seen: an absent directory is seen with nothing in it, whatever the driver
    /// filled in.
    fn seen(&self, item: Item) -> Entry {
        if self.first_boot {
            Entry::Absent
        } else {
            self.host.entry(item)
        }
    }

    fn push(&mut self, step: IdentityStep<'a>) {
        IdentityPlan::push(&mut self.plan.steps, step);
    }

    fn refuse(&mut self, what: Source<'a>, why: Why) {
        if self.plan.refused.push(Refused { what, why }).is_err() {
            self.plan.notes |= IdentityNotes::MORE_REFUSED;
        }
    }

    fn wrong_kind(&mut self, item: Item) {
        self.refuse(
            Source::Item(item),
            Why::WrongKind {
                expected: item.kind(),
            },
        );
    }

    /// machine-id: created when absent, copied when valid, reported otherwise. Returns the one
    /// the host has now.
    fn machine_id(&mut self, random: Option<[u8; 16]>) -> Option<MachineId> {
        let id = match self.seen(Item::MachineId) {
            Entry::Absent => match random {
                Some(bytes) => {
                    let id = MachineId::from_random(bytes);
                    self.push(IdentityStep::CreateMachineId(id));
                    Some(id)
                }
                None => {
                    self.plan.notes |= IdentityNotes::NO_RANDOM;
                    None
                }
            },
            Entry::File => match self.host.machine_id.map(MachineId::parse) {
                Some(Ok(id)) => Some(id),
                _ => {
                    self.refuse(Source::Item(Item::MachineId), Why::Invalid);
                    None
                }
            },
            Entry::Dir | Entry::Other => {
                self.wrong_kind(Item::MachineId);
                None
            }
        };
        if id.is_some() {
            self.push(IdentityStep::CopyMachineId);
        }
        id
    }

    /// hostname: created when absent (from the sources, or from the machine ID), bound when
    /// valid, reported otherwise.
    fn hostname(&mut self, sources: &Sources<'_>, machine_id: Option<&MachineId>) {
        match self.seen(Item::Hostname) {
            Entry::Absent => match hostname::choose(sources, machine_id) {
                Some((name, source)) => {
                    self.push(IdentityStep::CreateHostname { name, source });
                    self.push(IdentityStep::Bind(Source::Item(Item::Hostname)));
                }
                None => self.plan.notes |= IdentityNotes::NO_HOSTNAME,
            },
            Entry::File => match self.host.hostname.map(Hostname::parse) {
                Some(Ok(name)) => {
                    if sources
                        .parameter
                        .and_then(hostname::sanitize)
                        .is_some_and(|wanted| wanted != name)
                    {
                        self.plan.notes |= IdentityNotes::PARAMETER_IGNORED;
                    }
                    self.push(IdentityStep::Bind(Source::Item(Item::Hostname)));
                }
                _ => self.refuse(Source::Item(Item::Hostname), Why::Invalid),
            },
            Entry::Dir | Entry::Other => self.wrong_kind(Item::Hostname),
        }
    }

    /// SSH host keys: read in place by sshd, through a drop-in.
    fn ssh(&mut self, root: &RootSeen) {
        match self.seen(Item::Ssh) {
            Entry::Absent | Entry::Dir => {
                if root.sshd != Some(false) {
                    self.push(IdentityStep::WriteSshdDropIn);
                    if self.seen(Item::Ssh) == Entry::Absent || self.host.ssh_keys < SSH_KEYS.len()
                    {
                        self.plan.notes |= IdentityNotes::SSH_KEYS_PENDING;
                    }
                }
            }
            Entry::File | Entry::Other => self.wrong_kind(Item::Ssh),
        }
    }

    /// The other items: bound when present as what they are. Returns which were bound, by
    /// [`Item::index`].
    fn other_items(&mut self) -> [bool; 7] {
        let mut bound = [false; 7];
        for item in [
            Item::Network,
            Item::InterfacesD,
            Item::PuppetSsl,
            Item::PuppetConf,
        ] {
            let entry = self.seen(item);
            let want = match item.kind() {
                Kind::File => Entry::File,
                Kind::Dir => Entry::Dir,
            };
            if entry == want {
                self.push(IdentityStep::Bind(Source::Item(item)));
                if let Some(b) = bound.get_mut(item.index()) {
                    *b = true;
                }
            } else if entry != Entry::Absent {
                self.wrong_kind(item);
            }
        }
        bound
    }

    /// The mirror tree: each regular file at its path, unless a fixed item owns the place.
    fn mirror(&mut self, bound: &[bool; 7]) {
        let host = self.host;
        for &rel in host.files.iter().take(MAX_MIRROR_FILES) {
            let src = Source::Mirror(rel);
            if !mirror_path_allowed(rel) {
                self.refuse(src, Why::Forbidden);
                continue;
            }
            let owner = Item::ALL.into_iter().find(|&item| {
                let Some(target) = item.root_path() else {
                    return false;
                };
                match item.kind() {
                    Kind::File => rel == target,
                    Kind::Dir => {
                        bound.get(item.index()).copied().unwrap_or(false) && within(rel, target)
                    }
                }
            });
            match owner {
                Some(item) => self.refuse(src, Why::Shadowed(item)),
                None => self.push(IdentityStep::Bind(src)),
            }
        }
        if host.files_skipped > 0 || host.files.len() > MAX_MIRROR_FILES {
            self.plan.notes |= IdentityNotes::MIRROR_SKIPPED;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec as StdVec;

    const ID: &str = "0123456789abcdef0123456789abcdef\n";

    fn populated<'a>(files: &'a [&'a str]) -> HostSeen<'a> {
        HostSeen {
            dir: Entry::Dir,
            hostname: Some("web01\n"),
            machine_id: Some(ID),
            ssh_keys: 3,
            files,
            ..HostSeen::default()
        }
        .with(Item::Hostname, Entry::File)
        .with(Item::MachineId, Entry::File)
        .with(Item::Ssh, Entry::Dir)
        .with(Item::Network, Entry::Dir)
        .with(Item::InterfacesD, Entry::Dir)
        .with(Item::PuppetSsl, Entry::Dir)
        .with(Item::PuppetConf, Entry::File)
    }

    fn texts(p: &IdentityPlan<'_>) -> StdVec<std::string::String> {
        p.steps.iter().map(ToString::to_string).collect()
    }

    const SSHD: RootSeen = RootSeen { sshd: Some(true) };

    #[test]
    fn a_populated_host_state_is_projected_item_by_item() {
        let files = ["etc/ceph/ceph.conf", "etc/hosts"];
        let p = plan(
            &populated(&files),
            &SSHD,
            &Sources::default(),
            Some([0; 16]),
        );
        assert_eq!(
            texts(&p),
            [
                "copy machine-id -> /etc/machine-id",
                "bind hostname -> /etc/hostname (file)",
                "write /etc/ssh/sshd_config.d/hnroot-host-keys.conf (sshd uses the host keys in ssh/)",
                "bind network -> /etc/systemd/network (directory)",
                "bind interfaces.d -> /etc/network/interfaces.d (directory)",
                "bind puppet/ssl -> /etc/puppetlabs/puppet/ssl (directory)",
                "bind puppet/puppet.conf -> /etc/puppetlabs/puppet/puppet.conf (file)",
                "bind files/etc/ceph/ceph.conf -> /etc/ceph/ceph.conf (file)",
                "bind files/etc/hosts -> /etc/hosts (file)",
            ]
        );
        assert!(p.refused.is_empty());
        assert_eq!(p.notes, IdentityNotes::empty());
        assert_eq!(
            p.record().to_string(),
            "steps=9 created=- refused=0 notes=-"
        );
    }

    #[test]
    fn a_first_boot_creates_the_identity_then_projects_it() {
        let sources = Sources {
            dmi_serial: Some("SRV-0003"),
            ..Sources::default()
        };
        let host = HostSeen {
            dir: Entry::Absent,
            // Whatever a driver filled in, an absent directory holds nothing.
            files: &["etc/hosts"],
            ..HostSeen::default()
        }
        .with(Item::Hostname, Entry::File);
        let p = plan(&host, &SSHD, &sources, Some([0xab; 16]));
        let id = MachineId::from_random([0xab; 16]);
        assert_eq!(
            p.steps.as_slice(),
            &[
                IdentityStep::MakeHostDirs,
                IdentityStep::CreateMachineId(id),
                IdentityStep::CopyMachineId,
                IdentityStep::CreateHostname {
                    name: Hostname::parse("srv-0003").unwrap(),
                    source: HostnameSource::DmiSerial
                },
                IdentityStep::Bind(Source::Item(Item::Hostname)),
                IdentityStep::WriteSshdDropIn,
            ]
        );
        assert_eq!(
            p.notes,
            IdentityNotes::FIRST_BOOT | IdentityNotes::SSH_KEYS_PENDING
        );
        assert_eq!(
            p.record().to_string(),
            "steps=6 created=machine-id,hostname refused=0 notes=first-boot,ssh-keys-pending"
        );
        assert!(p.steps.iter().filter(|s| s.creates()).count() == 2);
    }

    #[test]
    fn a_host_state_with_a_machine_id_names_a_new_hostname_after_it() {
        let host = HostSeen {
            dir: Entry::Dir,
            machine_id: Some(ID),
            ..HostSeen::default()
        }
        .with(Item::MachineId, Entry::File)
        .with(Item::Ssh, Entry::Dir);
        let p = plan(&host, &SSHD, &Sources::default(), Some([0xff; 16]));
        assert!(p.steps.contains(&IdentityStep::CreateHostname {
            name: Hostname::parse("hn-0123456789ab").unwrap(),
            source: HostnameSource::MachineId
        }));
        assert!(!p
            .steps
            .iter()
            .any(|s| matches!(s, IdentityStep::CreateMachineId(_))));
        assert!(!p.steps.contains(&IdentityStep::MakeHostDirs));
    }

    #[test]
    fn invalid_or_misshapen_items_are_reported_never_replaced() {
        let host = HostSeen {
            hostname: Some("Web_01\n"),
            machine_id: Some(""),
            ..populated(&[])
        }
        .with(Item::Network, Entry::File)
        .with(Item::PuppetConf, Entry::Other);
        let p = plan(&host, &SSHD, &Sources::default(), Some([0; 16]));
        assert!(!p.steps.iter().any(|s| s.creates()), "{:?}", p.steps);
        assert!(!p.steps.contains(&IdentityStep::CopyMachineId));
        assert!(!p
            .steps
            .contains(&IdentityStep::Bind(Source::Item(Item::Hostname))));
        assert_eq!(
            p.refused.as_slice(),
            &[
                Refused {
                    what: Source::Item(Item::MachineId),
                    why: Why::Invalid
                },
                Refused {
                    what: Source::Item(Item::Hostname),
                    why: Why::Invalid
                },
                Refused {
                    what: Source::Item(Item::Network),
                    why: Why::WrongKind {
                        expected: Kind::Dir
                    }
                },
                Refused {
                    what: Source::Item(Item::PuppetConf),
                    why: Why::WrongKind {
                        expected: Kind::File
                    }
                },
            ]
        );
        let unusable = HostSeen {
            dir: Entry::File,
            ..populated(&[])
        };
        let p = plan(&unusable, &SSHD, &Sources::default(), Some([0; 16]));
        assert!(p.steps.is_empty());
        assert_eq!(p.notes, IdentityNotes::HOST_DIR_UNUSABLE);
    }

    #[test]
    fn the_host_states_hostname_stands_over_the_parameter() {
        let sources = Sources {
            parameter: Some("Web01"),
            ..Sources::default()
        };
        let p = plan(&populated(&[]), &SSHD, &sources, Some([0; 16]));
        assert_eq!(
            p.notes,
            IdentityNotes::empty(),
            "the same name, spelt otherwise"
        );
        let sources = Sources {
            parameter: Some("db07"),
            ..Sources::default()
        };
        let p = plan(&populated(&[]), &SSHD, &sources, Some([0; 16]));
        assert_eq!(p.notes, IdentityNotes::PARAMETER_IGNORED);
        assert!(p
            .steps
            .contains(&IdentityStep::Bind(Source::Item(Item::Hostname))));
    }

    #[test]
    fn mirror_paths_stay_out_of_what_hnroot_and_the_items_own() {
        let files = [
            "etc/hostname",
            "etc/systemd/network/10-lan.network",
            "etc/puppetlabs/puppet/ssl/x.pem",
            "boot/kernel",
            "proc/x",
            "etc/../boot/kernel",
            "etc//x",
            "etc/ok",
        ];
        let p = plan(
            &populated(&files),
            &SSHD,
            &Sources::default(),
            Some([0; 16]),
        );
        let refused: StdVec<_> = p.refused.iter().map(|r| (r.what, r.why)).collect();
        assert_eq!(
            refused,
            [
                (
                    Source::Mirror("etc/hostname"),
                    Why::Shadowed(Item::Hostname)
                ),
                (
                    Source::Mirror("etc/systemd/network/10-lan.network"),
                    Why::Shadowed(Item::Network)
                ),
                (
                    Source::Mirror("etc/puppetlabs/puppet/ssl/x.pem"),
                    Why::Shadowed(Item::PuppetSsl)
                ),
                (Source::Mirror("boot/kernel"), Why::Forbidden),
                (Source::Mirror("proc/x"), Why::Forbidden),
                (Source::Mirror("etc/../boot/kernel"), Why::Forbidden),
                (Source::Mirror("etc//x"), Why::Forbidden),
            ]
        );
        assert!(p
            .steps
            .contains(&IdentityStep::Bind(Source::Mirror("etc/ok"))));
        // Without a network/ directory, a file under /etc/systemd/network is the mirror's.
        let host = populated(&files).with(Item::Network, Entry::Absent);
        let p = plan(&host, &SSHD, &Sources::default(), Some([0; 16]));
        assert!(p.steps.contains(&IdentityStep::Bind(Source::Mirror(
            "etc/systemd/network/10-lan.network"
        ))));
    }

    #[test]
    fn the_plan_is_bounded() {
        let names: StdVec<std::string::String> = (0..MAX_MIRROR_FILES + 5)
            .map(|i| std::format!("etc/f{i}"))
            .collect();
        let files: StdVec<&str> = names.iter().map(std::string::String::as_str).collect();
        let host = HostSeen {
            files_skipped: 0,
            ..populated(&files)
        };
        let p = plan(&host, &SSHD, &Sources::default(), Some([0; 16]));
        let mirrored = p
            .steps
            .iter()
            .filter(|s| matches!(s, IdentityStep::Bind(Source::Mirror(_))))
            .count();
        assert_eq!(mirrored, MAX_MIRROR_FILES);
        assert!(p.notes.contains(IdentityNotes::MIRROR_SKIPPED));
        // First boot with the most steps, and a full mirror: everything fits.
        assert!(p.steps.len() < MAX_STEPS);
    }

    #[test]
    fn without_random_bytes_no_machine_id_is_made_up() {
        let host = HostSeen {
            dir: Entry::Absent,
            ..HostSeen::default()
        };
        let p = plan(&host, &SSHD, &Sources::default(), None);
        assert!(!p.steps.iter().any(|s| s.creates()), "{:?}", p.steps);
        assert!(p
            .notes
            .contains(IdentityNotes::NO_RANDOM | IdentityNotes::NO_HOSTNAME));
        let sources = Sources {
            dmi_serial: Some("SRV-0003"),
            ..Sources::default()
        };
        let p = plan(&host, &SSHD, &sources, None);
        assert_eq!(p.steps.iter().filter(|s| s.creates()).count(), 1);
        assert!(
            p.notes.contains(IdentityNotes::NO_RANDOM)
                && !p.notes.contains(IdentityNotes::NO_HOSTNAME)
        );
    }

    #[test]
    fn no_sshd_in_the_image_no_drop_in() {
        let p = plan(
            &populated(&[]),
            &RootSeen { sshd: Some(false) },
            &Sources::default(),
            Some([0; 16]),
        );
        assert!(!p.steps.contains(&IdentityStep::WriteSshdDropIn));
        let p = plan(
            &populated(&[]),
            &RootSeen { sshd: None },
            &Sources::default(),
            Some([0; 16]),
        );
        assert!(
            p.steps.contains(&IdentityStep::WriteSshdDropIn),
            "unknown: planned"
        );
    }

    #[test]
    fn every_item_has_a_distinct_place() {
        let mut seen: StdVec<&str> = StdVec::new();
        for item in Item::ALL {
            assert!(!seen.contains(&item.host_path()));
            seen.push(item.host_path());
            if let Some(t) = item.root_path() {
                assert!(mirror_path_allowed(t), "{t}");
            }
            assert_eq!(Item::ALL.get(item.index()), Some(&item));
        }
        assert!(SSHD_DROP_IN.contains("/hostpart/data/host/ssh/ssh_host_ed25519_key"));
        for (_, file) in SSH_KEYS {
            assert!(SSHD_DROP_IN.contains(&std::format!(
                "HostKey {}/{}/{}/{file}\n",
                crate::layout::HOSTPART_MOUNT,
                crate::layout::HOST_DIR,
                Item::Ssh.host_path()
            )));
        }
    }
}
