//! What the CLI tests share: running the `hnroot` binary, root images made by `mkfs.ext4 -d`
//! (with the boot files every image carries), and publisher keys and signatures made by the
//! `minisign` tool a publisher would use.

#![allow(dead_code)]

pub mod http;
#[allow(unused_imports)]
pub use http::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
pub const B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
pub const C: &str = "cccccccc-0000-4000-8000-00000000000c";

pub fn hnroot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hnroot"))
        .args(args)
        .output()
        .expect("hnroot runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn ok(args: &[&str]) -> String {
    let out = hnroot(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("valid JSON")
}

/// An ext4 root image of `mib` MiB with `/boot/kernel`, `/boot/initramfs`, an `os-release`
/// naming `version`, and some bulk so that its middle holds data.
pub fn image_sized(path: &Path, uuid: &str, version: &str, mib: u64) {
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    std::fs::create_dir_all(t.join("boot")).unwrap();
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::write(t.join("boot/kernel"), b"kernel").unwrap();
    std::fs::write(t.join("boot/initramfs"), b"initramfs").unwrap();
    std::fs::write(
        t.join("etc/os-release"),
        format!("PRETTY_NAME=\"test\"\nIMAGE_ID=fleet\nIMAGE_VERSION={version}\n"),
    )
    .unwrap();
    // Not periodic (xorshift): a content-defined chunker finds its cuts inside it, so the same
    // bulk gives the same chunks in every image, wherever the filesystem put it. (A periodic
    // pattern has no cut points: its maximum-size chunks then depend on where the last cut
    // before it fell, in metadata that differs from image to image.)
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bulk: Vec<u8> = (0..(mib << 19))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(t.join("bulk"), bulk).unwrap();
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", uuid, "-L", "root", "-d"])
        .arg(t)
        .arg(path)
        .arg(format!("{mib}M"))
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn image(path: &Path, uuid: &str) {
    image_sized(path, uuid, "1", 8);
}

/// A publisher's key pair (no password), as `minisign -G` makes it.
pub struct Keys {
    pub public: PathBuf,
    pub secret: PathBuf,
}

pub fn keys(dir: &Path, name: &str) -> Keys {
    let public = dir.join(format!("{name}.pub"));
    let secret = dir.join(format!("{name}.key"));
    let out = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output()
        .expect("minisign runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Keys { public, secret }
}

/// `minisign -Sm FILE`: writes FILE.minisig.
pub fn sign(file: &Path, keys: &Keys, comment: &str) {
    let out = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(&keys.secret)
        .arg("-m")
        .arg(file)
        .args(["-t", comment])
        .output()
        .expect("minisign runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A trusted-keys directory holding `keys`' public key.
pub fn trust(dir: &Path, keys: &Keys) -> PathBuf {
    let trusted = dir.join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&keys.public, trusted.join(keys.public.file_name().unwrap())).unwrap();
    trusted
}

/// Root, and loop devices: what the tests on real mounted filesystems need.
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED: needs root and loop devices");
        return false;
    }
    true
}

/// A filesystem made by `mkfs` (`args`) on a file of `mib` MiB, mounted with a loop device in
/// a temporary directory; unmounted and detached when dropped.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
}

impl Mounted {
    pub fn new(mkfs: &[&str], mib: u64) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let out = Command::new(mkfs[0])
            .args(&mkfs[1..])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{mkfs:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mounted { dir, mnt }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// The loader kit `cargo xtask test` hands over (`HNROOT_GRUB_KIT`); without it the test is
/// skipped, saying so, unless `HNROOT_REQUIRE_GRUB_KIT` makes that a failure.
pub fn kit() -> Option<PathBuf> {
    match std::env::var_os("HNROOT_GRUB_KIT") {
        Some(k) => Some(PathBuf::from(k)),
        None if std::env::var_os("HNROOT_REQUIRE_GRUB_KIT").is_some() => {
            panic!("HNROOT_REQUIRE_GRUB_KIT is set but HNROOT_GRUB_KIT is not")
        }
        None => {
            eprintln!(
                "SKIPPED: no loader kit (HNROOT_GRUB_KIT); `cargo xtask grub-module` builds one, \
                 `cargo xtask test` hands it over"
            );
            None
        }
    }
}
