//! `hnroot sysprep`'s work on a root tree (a directory, or an image mounted somewhere): each
//! entry of the core's list (`hnroot_core::sysprep::ENTRIES`) found, acted on or only listed
//! (`--dry-run`), and the leftover check that `hnroot sysprep`, `hnroot image build` and `hnroot
//! stage` run. Walks through held descriptors only (the `fsat` layer): never follows a link,
//! never enters another mount (told by mount ID: a directory or file bind-mounted into the
//! tree from the same filesystem is another mount), never truncates a file another name shares
//! (a `cp -al` clone of the tree), bounded.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use hnroot_core::sysprep::{self, Action, Entry, Found, Names, ENTRIES, MAX_MATCHES};

use crate::fsat::remove_tree;
use crate::fsat::{self, Kind};

/// Most bytes of a configuration file `DropCertname` rewrites.
const MAX_CONF: usize = 1 << 20;

/// Most entries removed below one match (a directory tree).
const MAX_REMOVED: usize = 1 << 20;

/// Deepest directory `RemoveFiles` walks into.
const MAX_DEPTH: usize = 16;

/// One thing sysprep did (or would do), or could not do.
#[derive(Debug)]
pub struct Done {
    /// What it is (`SSH host keys`).
    pub what: &'static str,
    /// Its path in the tree, from its root (`/etc/ssh/ssh_host_rsa_key`).
    pub path: String,
    /// The action's code (`remove`, `empty`, ...).
    pub action: &'static str,
    /// What was done (`removed`, `emptied (33 bytes)`, `would remove`), or why not.
    pub outcome: Result<String, LeftAlone>,
}

/// Why sysprep left an entry as it is.
#[derive(Debug)]
pub enum LeftAlone {
    /// Another filesystem is mounted there.
    MountPoint(Kind),
    /// The action edits a regular file and this is something else.
    NotRegular(Kind),
    /// A directory's removal left entries (another mount inside it?).
    PartlyRemoved {
        /// Entries removed.
        removed: usize,
    },
    /// A configuration file larger than sysprep reads.
    TooLarge,
    /// The change failed.
    Io(io::Error),
}

impl From<io::Error> for LeftAlone {
    fn from(e: io::Error) -> LeftAlone {
        LeftAlone::Io(e)
    }
}

impl std::fmt::Display for LeftAlone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeftAlone::MountPoint(kind) => write!(
                f,
                "{kind} mounted here from elsewhere (a mount point): left as it is"
            ),
            LeftAlone::NotRegular(kind) => {
                write!(f, "{kind}, not a regular file: left as it is")
            }
            LeftAlone::PartlyRemoved { removed } => write!(
                f,
                "removed {removed} entries, some are left (another mount in it?)"
            ),
            LeftAlone::TooLarge => write!(f, "larger than {MAX_CONF} bytes: left as it is"),
            LeftAlone::Io(e) => e.fmt(f),
        }
    }
}

/// Something host-specific still in a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// What it is.
    pub what: &'static str,
    /// Its path from the tree's root.
    pub path: String,
}

/// Whether `name` in `dir` lies on the tree's own mount `mnt` (not a mount point).
fn on_mount(dir: &OwnedFd, name: &str, mnt: u64) -> bool {
    fsat::mount_id(dir, name).ok() == Some(mnt)
}

/// The directories an entry's `dir` names (a `*` component expands to every directory there),
/// as (path from the root, descriptor); only directories on the tree's mount `mnt`.
fn expand(root: &OwnedFd, pattern: &str, mnt: u64) -> Vec<(String, OwnedFd)> {
    let mut found: Vec<(String, OwnedFd)> = match fsat::open_dir(root, ".") {
        Ok(Some(d)) => vec![(String::new(), d)],
        _ => return Vec::new(),
    };
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for (path, dir) in &found {
            let names: Vec<String> = if part == "*" {
                fsat::list(dir, MAX_MATCHES)
                    .map(|(n, _)| n)
                    .unwrap_or_default()
            } else {
                vec![part.to_owned()]
            };
            for name in names {
                if !on_mount(dir, &name, mnt) {
                    continue;
                }
                if let Ok(Some(d)) = fsat::open_dir(dir, &name) {
                    next.push((format!("{path}/{name}"), d));
                }
            }
        }
        found = next;
    }
    found
}

/// The names an entry covers in one of its directories, with what each is.
fn matches(dir: &OwnedFd, names: Names) -> Vec<(String, Kind)> {
    let listed: Vec<String> = match names {
        Names::Exact(n) => vec![n.to_owned()],
        _ => fsat::list(dir, MAX_MATCHES)
            .map(|(n, _)| n)
            .unwrap_or_default(),
    };
    listed
        .into_iter()
        .filter(|n| names.matches(n))
        .filter_map(|n| match fsat::kind(dir, &n) {
            Ok(Kind::Absent) => None,
            Ok(k) => Some((n, k)),
            Err(_) => Some((n, Kind::Other)),
        })
        .collect()
}

fn has_certname(dir: &OwnedFd, name: &str) -> bool {
    fsat::read_file(dir, name, MAX_CONF).is_ok_and(|(data, _)| {
        String::from_utf8_lossy(&data)
            .lines()
            .any(sysprep::is_certname_line)
    })
}

fn open_root(root: &Path) -> io::Result<(OwnedFd, u64)> {
    let c = std::ffi::CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: NUL-terminated path; the result is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mnt = fsat::mount_id(&fd, "")?;
    Ok((fd, mnt))
}

/// Remove (or, with `dry_run`, count) the regular files in `dir` and below, not crossing into
/// another mount.
fn remove_files(dir: &OwnedFd, mnt: u64, depth: usize, dry_run: bool) -> usize {
    if depth > MAX_DEPTH {
        return 0;
    }
    let Ok((names, _)) = fsat::list(dir, MAX_MATCHES) else {
        return 0;
    };
    let mut removed: usize = 0;
    for name in names {
        if !on_mount(dir, &name, mnt) {
            continue;
        }
        match fsat::kind(dir, &name) {
            Ok(Kind::File(_)) if dry_run || fsat::unlink(dir, &name).is_ok() => {
                removed = removed.saturating_add(1);
            }
            Ok(Kind::Dir) => {
                if let Ok(Some(sub)) = fsat::open_dir(dir, &name) {
                    removed = removed.saturating_add(remove_files(&sub, mnt, depth + 1, dry_run));
                }
            }
            _ => {}
        }
    }
    removed
}

fn act(
    dir: &OwnedFd,
    name: &str,
    kind: Kind,
    entry: &Entry,
    mnt: u64,
    dry_run: bool,
) -> Option<Result<String, LeftAlone>> {
    let would = |s: &str| Some(Ok(format!("would {s}")));
    if !on_mount(dir, name, mnt) {
        return Some(Err(LeftAlone::MountPoint(kind)));
    }
    match (entry.action, kind) {
        (Action::Empty, Kind::File(0)) => None,
        (Action::Empty, Kind::File(len)) => {
            if dry_run {
                return would(&format!("empty ({len} bytes)"));
            }
            Some(
                fsat::empty(dir, name)
                    .map(|how| match how {
                        fsat::Emptied::Truncated => format!("emptied ({len} bytes)"),
                        fsat::Emptied::Replaced(links) => format!(
                            "replaced by an empty file ({len} bytes; it had {links} links: the \
                             other {} keep the old contents)",
                            links - 1
                        ),
                    })
                    .map_err(LeftAlone::Io),
            )
        }
        (Action::DropCertname, Kind::File(_)) => {
            if !has_certname(dir, name) {
                return None;
            }
            if dry_run {
                return would("remove its certname lines");
            }
            Some(drop_certname(dir, name))
        }
        (Action::Empty | Action::DropCertname, _) => Some(Err(LeftAlone::NotRegular(kind))),
        (Action::Remove, Kind::Dir) => {
            if dry_run {
                return would("remove (a directory, with everything in it)");
            }
            let mut budget = MAX_REMOVED;
            let n = remove_tree(dir, name, mnt, &mut budget);
            match fsat::kind(dir, name) {
                Ok(Kind::Absent) => Some(Ok(format!("removed ({n} entries)"))),
                _ => Some(Err(LeftAlone::PartlyRemoved { removed: n })),
            }
        }
        (Action::Remove, _) => {
            if dry_run {
                return would("remove");
            }
            Some(
                fsat::unlink(dir, name)
                    .map(|()| "removed".to_owned())
                    .map_err(LeftAlone::Io),
            )
        }
        (Action::RemoveFiles, Kind::Dir) => {
            let sub = fsat::open_dir(dir, name).ok().flatten()?;
            let n = remove_files(&sub, mnt, 1, dry_run);
            let verb = if dry_run { "would remove" } else { "removed" };
            (n > 0).then(|| Ok(format!("{verb} {n} file(s) in it")))
        }
        (Action::RemoveFiles, Kind::File(_)) => {
            if dry_run {
                return would("remove");
            }
            Some(
                fsat::unlink(dir, name)
                    .map(|()| "removed".to_owned())
                    .map_err(LeftAlone::Io),
            )
        }
        (Action::RemoveFiles, _) => None,
    }
}

fn drop_certname(dir: &OwnedFd, name: &str) -> Result<String, LeftAlone> {
    let file = fsat::open_file(dir, name)?;
    let st = fsat::fstat(&OwnedFd::from(file))?;
    let (data, more) = fsat::read_file(dir, name, MAX_CONF)?;
    if more {
        return Err(LeftAlone::TooLarge);
    }
    let text = String::from_utf8_lossy(&data);
    let mut kept = String::with_capacity(text.len());
    let mut dropped = 0usize;
    for line in text.split_inclusive('\n') {
        if sysprep::is_certname_line(line) {
            dropped += 1;
        } else {
            kept.push_str(line);
        }
    }
    // A new file renamed over this name, with the owner and mode it had: never rewritten in
    // place, so a hard-link clone's copy keeps its lines.
    let meta = fsat::Meta {
        mode: st.st_mode & 0o7777,
        exact: true,
        owner: Some((st.st_uid, st.st_gid)),
    };
    let len = kept.len() as u64;
    fsat::write_from(dir, name, &mut kept.as_bytes(), meta, true, len)?;
    Ok(format!("removed {dropped} certname line(s)"))
}

/// Clean the tree at `root` (or, with `dry_run`, list what would be done), entry by entry.
pub fn apply(root: &Path, dry_run: bool) -> io::Result<Vec<Done>> {
    let (root_fd, mnt) = open_root(root)?;
    let mut done = Vec::new();
    for entry in &ENTRIES {
        for (dir_path, dir) in expand(&root_fd, entry.dir, mnt) {
            for (name, kind) in matches(&dir, entry.names) {
                if let Some(outcome) = act(&dir, &name, kind, entry, mnt, dry_run) {
                    done.push(Done {
                        what: entry.what,
                        path: format!("{dir_path}/{name}"),
                        action: entry.action.code(),
                        outcome,
                    });
                }
            }
        }
    }
    Ok(done)
}

/// What host-specific files the tree at `root` still holds (the identity entries only).
pub fn leftovers(root: &Path) -> io::Result<Vec<Leftover>> {
    let (root_fd, mnt) = open_root(root)?;
    let mut out = Vec::new();
    for entry in ENTRIES.iter().filter(|e| e.identity) {
        for (dir_path, dir) in expand(&root_fd, entry.dir, mnt) {
            for (name, kind) in matches(&dir, entry.names) {
                let found = match kind {
                    Kind::File(len) => Found::File {
                        len,
                        certname: entry.action == Action::DropCertname && has_certname(&dir, &name),
                    },
                    _ => Found::Other,
                };
                if sysprep::leftover(entry, found) {
                    out.push(Leftover {
                        what: entry.what,
                        path: format!("{dir_path}/{name}"),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_populated_tree_is_cleaned_and_then_clean() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(r, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        put(r, "etc/hostname", "build-host\n");
        put(r, "etc/ssh/ssh_host_ed25519_key", "secret");
        put(r, "etc/ssh/ssh_host_ed25519_key.pub", "public");
        put(r, "etc/ssh/sshd_config", "# kept\n");
        put(r, "var/lib/dhcp/dhclient.eth0.leases", "lease");
        put(r, "etc/udev/rules.d/70-persistent-net.rules", "rule");
        put(r, "var/log/apt/history.log", "log");
        put(r, "var/log/journal/0123/system.journal", "j");
        put(r, "root/.bash_history", "ls");
        put(r, "home/alice/.bash_history", "ls");
        put(r, "etc/puppetlabs/puppet/ssl/certs/web.pem", "cert");
        put(
            r,
            "etc/puppetlabs/puppet/puppet.conf",
            "[main]\nserver = puppet\ncertname = web01\n",
        );
        put(r, "var/lib/systemd/random-seed", "seed");
        put(r, "boot/kernel", "kernel");
        std::os::unix::fs::symlink("/etc/passwd", r.join("etc/ssh/ssh_host_link")).unwrap();

        let before = leftovers(r).unwrap();
        let paths: Vec<&str> = before.iter().map(|l| l.path.as_str()).collect();
        for p in [
            "/etc/machine-id",
            "/etc/hostname",
            "/etc/ssh/ssh_host_ed25519_key",
            "/var/lib/dhcp/dhclient.eth0.leases",
            "/etc/puppetlabs/puppet/ssl/certs",
            "/etc/puppetlabs/puppet/puppet.conf",
            "/var/lib/systemd/random-seed",
        ] {
            assert!(paths.contains(&p), "{p} in {paths:?}");
        }
        assert!(
            !paths.iter().any(|p| p.contains("log")),
            "clutter is not identity"
        );

        let dry = apply(r, true).unwrap();
        assert!(dry
            .iter()
            .all(|d| matches!(&d.outcome, Ok(o) if o.starts_with("would "))));
        assert_eq!(leftovers(r).unwrap(), before, "a dry run changes nothing");

        let done = apply(r, false).unwrap();
        assert!(done.iter().all(|d| d.outcome.is_ok()), "{done:#?}");
        assert_eq!(leftovers(r).unwrap(), vec![]);
        assert_eq!(std::fs::read(r.join("etc/machine-id")).unwrap(), b"");
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key.pub").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert!(r.join("var/log/apt").is_dir() && !r.join("var/log/apt/history.log").exists());
        assert!(!r.join("home/alice/.bash_history").exists());
        assert_eq!(
            std::fs::read_to_string(r.join("etc/puppetlabs/puppet/puppet.conf")).unwrap(),
            "[main]\nserver = puppet\n"
        );
        assert!(r.join("etc/puppetlabs/puppet/ssl").is_dir());
        assert_eq!(std::fs::read(r.join("boot/kernel")).unwrap(), b"kernel");
        assert!(
            std::fs::symlink_metadata(r.join("etc/ssh/ssh_host_link")).is_err(),
            "the link was removed, not what it points at"
        );
        assert!(std::path::Path::new("/etc/passwd").exists());
        // A second run has nothing left to do.
        assert!(apply(r, false).unwrap().is_empty());
    }

    #[test]
    fn links_on_the_way_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        put(outside.path(), "ssh_host_rsa_key", "not the tree's");
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("etc/ssh")).unwrap();
        apply(t.path(), false).unwrap();
        assert!(outside.path().join("ssh_host_rsa_key").exists());
        assert_eq!(leftovers(t.path()).unwrap(), vec![]);
    }
}
