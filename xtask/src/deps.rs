//! Make sure a Debian 12 machine has what hnroot's build and tests use. Idempotent and quick
//! when everything is already there.

use std::process::Command;

use anyhow::{bail, Result};

use crate::util;

/// Debian packages the build, the tests and the demo use.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "ovmf",
    "grub-efi-amd64-bin",
    "grub-common",
    "mtools",
    "dosfstools",
    "gdisk",
    "btrfs-progs",
    "xfsprogs",
    "e2fsprogs",
    "busybox-static",
    "cpio",
    "zstd",
    "xz-utils",
    "util-linux",
    "fdisk",
    "binutils",
    "bison",
    "flex",
    "gcc",
    "make",
    "dpkg-dev",
];

/// Rust targets needed besides the host's.
pub const RUST_TARGETS: &[&str] = &["x86_64-unknown-none", "x86_64-unknown-linux-musl"];

/// Install missing packages and Rust targets.
pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages: {} (run as root, or: apt-get install {})",
                missing.join(" "),
                missing.join(" ")
            );
        }
        util::step("apt-get update", &["apt-get", "update", "-q"])?;
        let mut argv = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
        argv.extend(&missing);
        util::step("install Debian packages", &argv)?;
    }
    let have = util::output(&["rustup", "target", "list", "--installed"])?;
    for target in RUST_TARGETS {
        if !have.lines().any(|l| l.trim() == *target) {
            util::step("add Rust target", &["rustup", "target", "add", target])?;
        }
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
