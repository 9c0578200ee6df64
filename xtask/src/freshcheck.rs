//! `cargo xtask fresh-check [--debian 12|13]`: the README's promise shown on a fresh machine
//! rather than on a developer's. It builds a `debootstrap --variant=minbase` tree of a supported
//! build machine's release (Debian 12 by default, or 13), gives it what the
//! README's base names (the Debian archive in its sources, the Rust toolchain as rustup installs
//! it, with the C linker and CA certificates rustup's toolchain needs, and the machine's own
//! local certificate authorities), puts a clean clone of
//! this repository's `HEAD` inside, and runs `cargo xtask deps --check` and `cargo xtask demo`
//! in that chroot, timing both. Nothing of the host's caches (`target/`, cargo's registry,
//! installed packages) reaches the tree. Slow (tens of minutes) and not part of `cargo xtask
//! test`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use hnroot_testkit::apt::{MIRROR, SECURITY_MIRROR};
use hnroot_testkit::buildenv;
use hnroot_testkit::release::Debian;

/// What rustup's toolchain needs on a Debian machine, and git-less HTTPS for cargo: the README's
/// base, installed before anything of hnroot runs.
const BASE_PACKAGES: &[&str] = &["gcc", "libc6-dev", "ca-certificates"];
/// Rust targets `cargo xtask deps` must add itself; removed from the copied toolchain so the
/// tree starts as a fresh rustup install does.
const ADDED_BY_DEPS: &[&str] = crate::deps::RUST_TARGETS;

/// `cargo xtask fresh-check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the tree after the run (for a look inside); it is removed otherwise.
    #[arg(long)]
    pub keep: bool,
    /// The release of the fresh build machine: 12 (bookworm) or 13 (trixie).
    #[arg(long, default_value_t = Debian::Bookworm)]
    pub debian: Debian,
}

/// Mounts made inside the tree, unmounted (recursively, lazily) when dropped.
struct Mounts {
    targets: Vec<PathBuf>,
}

impl Mounts {
    fn bind(&mut self, from: &Path, to: &Path, recursive: bool) -> Result<()> {
        fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        let flag = if recursive { "--rbind" } else { "--bind" };
        buildenv::run(Command::new("mount").arg(flag).arg(from).arg(to))?;
        buildenv::run(Command::new("mount").arg("--make-rslave").arg(to))?;
        self.targets.push(to.to_path_buf());
        Ok(())
    }

    fn fs(&mut self, fstype: &str, to: &Path) -> Result<()> {
        fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        buildenv::run(Command::new("mount").args(["-t", fstype, fstype]).arg(to))?;
        self.targets.push(to.to_path_buf());
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for target in self.targets.iter().rev() {
            let _ = Command::new("umount")
                .args(["-R", "-l"])
                .arg(target)
                .status();
        }
    }
}

/// `cargo xtask fresh-check`.
pub fn run(args: &Args) -> Result<()> {
    if !buildenv::is_root() {
        bail!("fresh-check needs root (debootstrap, chroot, mounts)");
    }
    let started = Instant::now();
    let suite = args.debian.suite();
    let work = buildenv::build_root().join("fresh-check");
    let root = work.join("root");
    if root.exists() {
        // A previous run that was interrupted may have left mounts behind.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&root)
            .status();
    }
    buildenv::fresh_dir(&work)?;

    let t = Instant::now();
    buildenv::step(
        &format!("fresh-check: debootstrap a minbase {} tree", args.debian),
        &[
            "debootstrap",
            "--variant=minbase",
            suite,
            &root.display().to_string(),
            MIRROR,
        ],
    )?;
    let debootstrap_time = t.elapsed();
    // The sources an installation of the release has (debootstrap writes only the main suite).
    fs::write(
        root.join("etc/apt/sources.list"),
        format!(
            "deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\n\
             deb {SECURITY_MIRROR} {suite}-security main\n"
        ),
    )
    .context("writing the tree's sources.list")?;
    fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))
        .context("copying /etc/resolv.conf into the tree")?;

    let mut mounts = Mounts {
        targets: Vec::new(),
    };
    mounts.fs("proc", &root.join("proc"))?;
    mounts.fs("sysfs", &root.join("sys"))?;
    mounts.bind(Path::new("/dev"), &root.join("dev"), true)?;
    mounts.fs("tmpfs", &root.join("tmp"))?;

    // The machine's own trust anchors (a network with an intercepting proxy has its CA here),
    // which any machine on this network has: `update-ca-certificates` adds them to the tree's
    // bundle when ca-certificates is installed below.
    let local_cas = Path::new("/usr/local/share/ca-certificates");
    if local_cas.is_dir() {
        let inside = root.join("usr/local/share");
        fs::create_dir_all(&inside)?;
        buildenv::run(Command::new("cp").arg("-a").arg(local_cas).arg(&inside))?;
    }

    let t = Instant::now();
    chroot(
        &root,
        "the README's base: the Rust toolchain's C linker and CA certificates",
        &format!(
            "apt-get update -q && apt-get install -y -q --no-install-recommends {}",
            BASE_PACKAGES.join(" ")
        ),
    )?;
    install_toolchain(&root)?;
    let base_time = t.elapsed();

    let clone = root.join("root/hnroot");
    buildenv::step(
        "fresh-check: a clean clone of HEAD",
        &[
            "git",
            "clone",
            "--quiet",
            "--no-hardlinks",
            &buildenv::workspace_root().display().to_string(),
            &clone.display().to_string(),
        ],
    )?;
    let head = buildenv::run(Command::new("git").args(["-C"]).arg(&clone).args([
        "log",
        "-1",
        "--format=%h %s",
    ]))?;

    let t = Instant::now();
    chroot(
        &root,
        "cargo xtask deps --check",
        "cd /root/hnroot && cargo xtask deps --check",
    )?;
    let deps_time = t.elapsed();
    let t = Instant::now();
    chroot(
        &root,
        "cargo xtask demo",
        "cd /root/hnroot && cargo xtask demo",
    )?;
    let demo_time = t.elapsed();
    drop(mounts);

    let cache = dir_size(&clone.join("target"));
    let mins = |d: Duration| format!("{:.1} min", d.as_secs_f64() / 60.0);
    println!(
        "\nfresh-check passed on a minbase {} tree, clone of {}",
        args.debian,
        head.trim()
    );
    println!(
        "  debootstrap --variant=minbase     {}",
        mins(debootstrap_time)
    );
    println!("  base (gcc, ca-certificates, rust) {}", mins(base_time));
    println!("  cargo xtask deps --check          {}", mins(deps_time));
    println!("  cargo xtask demo                  {}", mins(demo_time));
    println!(
        "  target/ after the demo            {:.1} GiB",
        cache as f64 / f64::from(1u32 << 30)
    );
    println!(
        "  all                               {}",
        mins(started.elapsed())
    );
    if !args.keep {
        fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    }
    Ok(())
}

/// Run `script` with bash in the tree as root, with the environment a login shell there has.
fn chroot(root: &Path, what: &str, script: &str) -> Result<()> {
    buildenv::step(
        &format!("fresh-check (chroot): {what}"),
        &[
            "chroot",
            &root.display().to_string(),
            "/usr/bin/env",
            "-i",
            "HOME=/root",
            "TERM=dumb",
            "LANG=C.UTF-8",
            "PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "/bin/bash",
            "-euo",
            "pipefail",
            "-c",
            script,
        ],
    )
}

/// The Rust toolchain as a fresh rustup installation has it: the active toolchain, rustup's
/// settings and its proxies in `~/.cargo/bin`, without the targets `cargo xtask deps` adds.
fn install_toolchain(root: &Path) -> Result<()> {
    let home = PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?);
    let rustup =
        std::env::var_os("RUSTUP_HOME").map_or_else(|| home.join(".rustup"), PathBuf::from);
    let cargo = std::env::var_os("CARGO_HOME").map_or_else(|| home.join(".cargo"), PathBuf::from);
    let active = buildenv::run(Command::new("rustup").args(["show", "active-toolchain"]))?;
    let toolchain = active
        .split_whitespace()
        .next()
        .context("rustup show active-toolchain printed nothing")?
        .to_string();
    let inside = root.join("root");
    fs::create_dir_all(inside.join(".rustup/toolchains"))?;
    fs::create_dir_all(inside.join(".cargo"))?;
    let copy = |from: &Path, to: &Path| -> Result<()> {
        buildenv::run(Command::new("cp").arg("-a").arg(from).arg(to)).map(|_| ())
    };
    copy(
        &fs::canonicalize(rustup.join("toolchains").join(&toolchain))?,
        &inside.join(".rustup/toolchains").join(&toolchain),
    )?;
    fs::write(
        inside.join(".rustup/settings.toml"),
        format!("version = \"12\"\ndefault_toolchain = \"{toolchain}\"\nprofile = \"default\"\n"),
    )?;
    copy(&cargo.join("bin"), &inside.join(".cargo/bin"))?;
    // Only rustup and its proxies: tools installed with `cargo install` are not part of a
    // fresh toolchain.
    for entry in fs::read_dir(inside.join(".cargo/bin"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !rustup_proxy(name) {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    chroot(
        root,
        "the toolchain without the targets `cargo xtask deps` adds",
        &format!(
            "for t in {}; do rustup target remove \"$t\" 2>/dev/null || true; done; rustc --version",
            ADDED_BY_DEPS.join(" ")
        ),
    )
}

/// The programs rustup installs in `~/.cargo/bin`.
fn rustup_proxy(name: &str) -> bool {
    matches!(
        name,
        "rustup"
            | "cargo"
            | "rustc"
            | "rustdoc"
            | "rust-gdb"
            | "rust-gdbgui"
            | "rust-lldb"
            | "rustfmt"
            | "cargo-fmt"
            | "cargo-clippy"
            | "clippy-driver"
            | "rust-analyzer"
            | "cargo-miri"
    )
}

/// Bytes in the files under `dir` (bounded walk).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut budget = 2_000_000usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if budget == 0 {
                return total;
            }
            budget -= 1;
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total = total.saturating_add(m.len()),
                Err(_) => {}
            }
        }
    }
    total
}
