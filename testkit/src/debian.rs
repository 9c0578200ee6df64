//! Real Debian trees for the distro suite: a stock `mmdebstrap` tree with systemd and Debian's
//! kernel, its initrd made by initramfs-tools or by dracut (made once per suite, initrd builder
//! and package list, cached under `target/hnroot-build/debian/`), copies of it to change, and a
//! chroot with `/proc`, `/sys` and `/dev` to install a package into a copy the way apt would on
//! a server.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::buildenv;

/// What a minimal server image has: systemd as init, Debian's kernel with initramfs-tools, the
/// packages `hnroot`'s own package depends on (so it installs with dpkg alone), the
/// distribution's GRUB packages as a Debian installation has them (hnroot's package brings its
/// own GRUB and must leave these alone), and OpenSSH's server (host keys are part of a host's
/// identity).
pub const SYSTEMD_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "linux-image-amd64",
    "initramfs-tools",
    "zstd",
    "e2fsprogs",
    "btrfs-progs",
    "xfsprogs",
    "dosfstools",
    "mtools",
    "gdisk",
    "grub-common",
    "grub-efi-amd64-bin",
    "openssh-server",
    "iproute2",
];

/// What the servers of the fleet suite need besides [`SYSTEMD_PACKAGES`]: Python for Ansible's
/// modules, the NFS client for `/warehouse` (and `/etc/protocols`, which `mount.nfs4` looks
/// `tcp` up in). The distro suite's trees carry them too, so that one cached tree per release
/// serves both suites (one `mmdebstrap` fewer in CI).
pub const SERVER_EXTRAS: &[&str] = &["nfs-common", "python3", "netbase"];

/// What makes the tree's initrd. Debian's `dracut` conflicts with `initramfs-tools`: a tree has
/// one or the other, and Debian's kernel package accepts either (`linux-initramfs-tool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitrdBuilder {
    /// `initramfs-tools` (`update-initramfs`, `mkinitramfs`): Debian's default.
    InitramfsTools,
    /// `dracut` (Debian's package runs `dracut` from the kernel's postinst hook and from the
    /// `update-initramfs` trigger).
    Dracut,
}

impl InitrdBuilder {
    /// The Debian package.
    pub fn package(self) -> &'static str {
        match self {
            InitrdBuilder::InitramfsTools => "initramfs-tools",
            InitrdBuilder::Dracut => "dracut",
        }
    }

    /// [`SYSTEMD_PACKAGES`] with this builder in place of initramfs-tools (the same order, so a
    /// tree's cache key does not change with this function).
    pub fn packages(self) -> Vec<&'static str> {
        SYSTEMD_PACKAGES
            .iter()
            .map(|&p| {
                if p == InitrdBuilder::InitramfsTools.package() {
                    self.package()
                } else {
                    p
                }
            })
            .collect()
    }
}

/// Marks a complete tree; written last.
const STAMP: &str = ".hnroot-tree";

/// A cached Debian tree.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The tree (never changed after it was made: copy it first).
    pub dir: PathBuf,
    /// The Debian suite (`bookworm`, `trixie`).
    pub suite: String,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// The mirror the trees come from.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// A stock `mmdebstrap --variant=apt` tree of `suite` with [`SYSTEMD_PACKAGES`] (and `extra`),
/// made unless cached.
pub fn systemd_tree(suite: &str, extra: &[&str]) -> Result<Tree> {
    systemd_tree_with(suite, InitrdBuilder::InitramfsTools, extra)
}

/// [`systemd_tree`] with the initrd made by `builder`.
pub fn systemd_tree_with(suite: &str, builder: InitrdBuilder, extra: &[&str]) -> Result<Tree> {
    let _lock = buildenv::lock("debian-tree")?;
    let mut packages = builder.packages();
    packages.extend_from_slice(extra);
    // The archive's current packages, GRUB's included: the hnroot package brings its own GRUB
    // and leaves the distribution's alone.
    let key = format!(
        "mmdebstrap --variant=apt --include={} {suite} {MIRROR}\n",
        packages.join(",")
    );
    let flavour = match builder {
        InitrdBuilder::InitramfsTools => "systemd",
        InitrdBuilder::Dracut => "systemd-dracut",
    };
    let name = format!(
        "{suite}-{flavour}-{:08x}",
        buildenv::fnv1a(key.as_bytes()) as u32
    );
    let dir = buildenv::build_root().join("debian").join(&name);
    if fs::read_to_string(dir.join(STAMP)).ok().as_deref() == Some(key.as_str()) {
        return Ok(Tree {
            dir,
            suite: suite.to_owned(),
            cached: true,
        });
    }
    if dir.exists() {
        remove(&dir)?;
    }
    fs::create_dir_all(dir.parent().context("no parent")?)?;
    eprintln!(
        "==> Debian {suite} tree (mmdebstrap, systemd, kernel, {}; a few minutes, then cached)",
        builder.package()
    );
    let log = dir.with_extension("log");
    let out = Command::new("mmdebstrap")
        .args(["--variant=apt", "--mode=root", "--format=directory"])
        .arg(format!("--include={}", packages.join(",")))
        .arg(suite)
        .arg(&dir)
        .arg(MIRROR)
        .output()
        .context("cannot start mmdebstrap (cargo xtask deps installs it)")?;
    fs::write(
        &log,
        [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
    )?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "mmdebstrap {suite} failed ({}); log {}; last lines:\n{}",
            out.status,
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    fs::write(dir.join(STAMP), &key)?;
    Ok(Tree {
        dir,
        suite: suite.to_owned(),
        cached: false,
    })
}

/// Mount points at or under `dir`.
fn mounts_under(dir: &Path) -> Result<Vec<String>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let d = dir.to_string_lossy().into_owned();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == d || mp.starts_with(&format!("{d}/")))
        .map(str::to_owned)
        .collect())
}

/// Remove a tree, refusing while anything is mounted in it.
pub fn remove(dir: &Path) -> Result<()> {
    let mounted = mounts_under(dir)?;
    if !mounted.is_empty() {
        bail!(
            "not removing {}: still mounted in it: {}",
            dir.display(),
            mounted.join(" ")
        );
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

/// A copy of `from` at `to` (`cp -a`, replacing what is there).
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    remove(to)?;
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    buildenv::run(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(from)
            .arg(to),
    )
    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    let _ = fs::remove_file(to.join(STAMP));
    Ok(())
}

/// A tree with `/proc`, `/sys` and `/dev` mounted, to run programs in with `chroot`; unmounted
/// when dropped.
#[derive(Debug)]
pub struct Chroot {
    /// The tree.
    pub dir: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Chroot {
    /// Mount the API filesystems into `dir`.
    pub fn enter(dir: &Path) -> Result<Chroot> {
        let mut c = Chroot {
            dir: dir.to_owned(),
            mounted: Vec::new(),
        };
        for (what, fstype, at) in [
            ("proc", Some("proc"), "proc"),
            ("sysfs", Some("sysfs"), "sys"),
            ("/dev", None, "dev"),
        ] {
            let target = dir.join(at);
            fs::create_dir_all(&target)?;
            let mut cmd = Command::new("mount");
            match fstype {
                Some(t) => cmd.args(["-t", t, what]),
                None => cmd.args(["--bind", what]),
            };
            buildenv::run(cmd.arg(&target))?;
            c.mounted.push(target);
        }
        Ok(c)
    }

    /// Run `argv` in the chroot with a clean environment; its output.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        buildenv::run(
            Command::new("chroot")
                .arg(&self.dir)
                .args(argv)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LANG", "C.UTF-8"),
        )
        .with_context(|| format!("in the chroot {}", self.dir.display()))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// Install the package file `deb` into `tree` with dpkg in a chroot (its maintainer scripts and
/// triggers run: initramfs-tools, or dracut, rebuilds the initrd with hnroot's hook or module).
pub fn install_deb(tree: &Path, deb: &Path) -> Result<String> {
    let name = deb
        .file_name()
        .context("a .deb without a file name")?
        .to_string_lossy()
        .into_owned();
    let inside = tree.join("tmp").join(&name);
    fs::copy(deb, &inside).with_context(|| format!("cannot copy {}", deb.display()))?;
    let chroot = Chroot::enter(tree)?;
    let out = chroot.run(&["dpkg", "-i", &format!("/tmp/{name}")]);
    drop(chroot);
    let _ = fs::remove_file(&inside);
    out
}
