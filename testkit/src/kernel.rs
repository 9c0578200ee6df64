//! Fetches Debian's kernel package once, caches it unpacked under
//! `target/hnroot-build/kernel/<release>_<debian version>/` (vmlinuz, the modules tree and a
//! `modules.dep` made by `depmod -b`, since the .deb does not ship one), and resolves which .ko
//! files an initramfs must load, in load order, for a list of wanted modules. It never loads
//! anything on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::apt::Apt;
use crate::buildenv;
pub use hnroot_install::modules::{ko_module_name, modules_in, ModuleSet};

/// The meta package whose dependency names the current kernel image package.
pub const META_PACKAGE: &str = "linux-image-amd64";

/// What the suites' initramfs and the baseline linuxrc initramfs load: the virtio disk (block
/// driver and its PCI transport), loop, ext4 for the image and an ext4 hostpart, btrfs for a
/// btrfs hostpart, vfat with the code pages FAT's defaults need (437, iso8859-1 for the ESP's
/// boot state), overlay for the writable layer. ext4's and btrfs's checksum algorithms come in
/// through `modules.softdep`. (The product's list, for servers, is
/// `hnroot_install::modules::BOOT_MODULES`.)
pub const BOOT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "loop",
    "ext4",
    "btrfs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "overlay",
];

/// Marks a complete cache entry; written last.
const COMPLETE_STAMP: &str = ".complete";

/// An unpacked Debian kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of this kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// Debian package version, e.g. `6.1.192-2`.
    pub deb_version: String,
    /// The bootable image (`boot/vmlinuz-<release>` in the package).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` with `modules.dep` generated.
    pub modules_dir: PathBuf,
}

/// The kernel `linux-image-amd64` of this machine's Debian release points at today, downloaded
/// and unpacked if not cached. Without apt metadata (offline) the newest cached kernel is used.
pub fn fetch_current() -> Result<Kernel> {
    let apt = Apt::for_suite(&crate::apt::debian_suite()?)?;
    match current_package(&apt) {
        Ok((package, version)) => fetch(&apt, &package, &version),
        Err(e) => {
            let cached = newest_cached()?.ok_or_else(|| {
                anyhow!(
                    "{e:#}; and no kernel is cached under {} (run `apt-get update` and retry)",
                    cache_dir().display()
                )
            })?;
            eprintln!(
                "==> kernel: cannot ask apt which kernel is current ({e:#}); using the cached {}",
                cached.release
            );
            Ok(cached)
        }
    }
}

/// `linux-image-<release>` at Debian version `version`, from the cache or `apt`.
pub fn fetch(apt: &Apt, package: &str, version: &str) -> Result<Kernel> {
    let release = package
        .strip_prefix("linux-image-")
        .ok_or_else(|| anyhow!("kernel package {package:?} is not named linux-image-<release>"))?
        .to_string();
    let dir = cache_dir().join(format!("{release}_{version}"));
    if dir.join(COMPLETE_STAMP).is_file() {
        return Kernel::at(&dir, &release, version);
    }
    eprintln!(
        "==> kernel: downloading {package}={version} into {}",
        dir.display()
    );
    let staging = buildenv::fresh_dir(&dir.with_extension("partial"))?;
    let deb = apt
        .download(package, version, &staging)
        .context("downloading the kernel package")?;
    let tree = staging.join("tree");
    buildenv::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
    // The package ships no modules.dep: its postinst runs depmod. Do the same, rootless.
    buildenv::run(Command::new("depmod").arg("-b").arg(&tree).arg(&release))
        .context("generating modules.dep for the downloaded kernel")?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    buildenv::write_atomic(
        &dir.join(COMPLETE_STAMP),
        format!("{package}={version}\n").as_bytes(),
    )?;
    Kernel::at(&dir, &release, version)
}

/// `target/hnroot-build/kernel`.
pub fn cache_dir() -> PathBuf {
    buildenv::build_root().join("kernel")
}

/// Package name and candidate version of the kernel `linux-image-amd64` depends on.
fn current_package(apt: &Apt) -> Result<(String, String)> {
    let deps = apt.cache_query(&["depends", META_PACKAGE])?;
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| {
            anyhow!("`apt-cache depends {META_PACKAGE}` names no linux-image-* package: {deps}")
        })?
        .to_string();
    let version = apt.candidate(&package)?;
    Ok((package, version))
}

fn newest_cached() -> Result<Option<Kernel>> {
    let Ok(entries) = fs::read_dir(cache_dir()) else {
        return Ok(None);
    };
    let mut complete: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(COMPLETE_STAMP).is_file())
        .collect();
    complete.sort();
    let Some(dir) = complete.pop() else {
        return Ok(None);
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (release, version) = name
        .split_once('_')
        .ok_or_else(|| anyhow!("cache entry {} is not <release>_<version>", dir.display()))?;
    Kernel::at(&dir, release, version).map(Some)
}

impl Kernel {
    fn at(dir: &Path, release: &str, deb_version: &str) -> Result<Self> {
        let tree = dir.join("tree");
        let vmlinuz = tree.join("boot").join(format!("vmlinuz-{release}"));
        let modules_dir = tree.join("lib/modules").join(release);
        for needed in [vmlinuz.clone(), modules_dir.join("modules.dep")] {
            if !needed.is_file() {
                bail!(
                    "kernel cache {} is incomplete: no {}; delete the directory to fetch again",
                    dir.display(),
                    needed.display()
                );
            }
        }
        Ok(Self {
            release: release.to_string(),
            deb_version: deb_version.to_string(),
            vmlinuz,
            modules_dir,
        })
    }

    /// The .ko files to load, in order, so that every module in `wanted` is available. A name
    /// may be a module (`virtio_blk`, `nls_iso8859-1` or `nls_iso8859_1`) or an alias
    /// (`crypto-crc32c`). Hard dependencies come from `modules.dep`, `pre:` soft dependencies
    /// from `modules.softdep`; an alias provided by a built-in module needs nothing, otherwise
    /// the `*_generic` provider is preferred (it loads on every CPU), else the first listed.
    pub fn modules_for(&self, wanted: &[&str]) -> Result<ModuleSet> {
        modules_in(&self.modules_dir, &self.release, wanted)
    }
}
