//! Fetches a Debian release's kernel package once (whatever its `linux-image-amd64` names
//! today: never pinned), caches it unpacked under
//! `target/hnroot-build/kernel/<suite>/<release>_<debian version>/` (vmlinuz, the modules tree
//! — `lib/modules` on Debian 12, `usr/lib/modules` on Debian 13 — and a `modules.dep` made by
//! `depmod -b`, since the .deb does not ship one), and resolves which module files (`.ko`, or
//! `.ko.xz`/`.ko.zst` as the kernel ships them) an initramfs must load, in load order, for a
//! list of wanted modules. It never loads anything on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::apt::Apt;
use crate::buildenv;
use crate::release::Debian;
pub use hnroot_install::modules::{ko_module_name, modules_in, ModuleSet};

/// The meta package whose dependency names the current kernel image package.
pub const META_PACKAGE: &str = "linux-image-amd64";

/// What the suites' initramfs and the baseline linuxrc initramfs load: the virtio disk (block
/// driver and its PCI transport), loop, ext4 for the image and an ext4 hostpart, btrfs for a
/// btrfs hostpart, XFS for an XFS one, vfat with the code pages FAT's defaults need (437, iso8859-1 for the ESP's
/// boot state), overlay for the writable layer, dm-verity for sealed images (loaded only when
/// one boots). ext4's and btrfs's checksum algorithms come in
/// through `modules.softdep`. (The product's list, for servers, is
/// `hnroot_install::modules::BOOT_MODULES`.)
pub const BOOT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "loop",
    "ext4",
    "btrfs",
    "xfs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "overlay",
    "dm_verity",
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
    /// `lib/modules/<release>` (or `usr/lib/modules/<release>`) with `modules.dep` generated.
    pub modules_dir: PathBuf,
    /// The kernel's build configuration (`boot/config-<release>`).
    pub config: PathBuf,
}

/// The kernel `linux-image-amd64` of this machine's Debian release points at today (see
/// [`fetch_for`]).
pub fn fetch_current() -> Result<Kernel> {
    fetch_for(crate::release::this_machine()?)
}

/// The kernel `linux-image-amd64` of `release` points at today, downloaded and unpacked if not
/// cached. Without apt metadata (offline) the newest kernel cached for the release is used.
pub fn fetch_for(release: Debian) -> Result<Kernel> {
    let apt = Apt::for_suite(release.suite())?;
    match current_package(&apt) {
        Ok((package, version)) => fetch(&apt, release, &package, &version),
        Err(e) => {
            let cached = newest_cached(release)?.ok_or_else(|| {
                anyhow!(
                    "{e:#}; and no kernel is cached under {} (run `apt-get update` and retry)",
                    cache_dir(release).display()
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

/// `linux-image-<release>` of Debian `debian` at Debian version `version`, from the cache or
/// `apt`.
pub fn fetch(apt: &Apt, debian: Debian, package: &str, version: &str) -> Result<Kernel> {
    let release = package
        .strip_prefix("linux-image-")
        .ok_or_else(|| anyhow!("kernel package {package:?} is not named linux-image-<release>"))?
        .to_string();
    let dir = cache_dir(debian).join(format!("{release}_{version}"));
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
    // Debian 13's package puts its modules under usr/lib/modules (merged /usr); depmod -b looks
    // under BASE/lib/modules, as a merged-/usr system's /lib -> usr/lib link makes it find them.
    if !tree.join("lib").exists() && tree.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", tree.join("lib"))
            .with_context(|| format!("cannot link {}/lib to usr/lib", tree.display()))?;
    }
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

/// `target/hnroot-build/kernel/<suite>`.
pub fn cache_dir(release: Debian) -> PathBuf {
    buildenv::build_root().join("kernel").join(release.suite())
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

fn newest_cached(release: Debian) -> Result<Option<Kernel>> {
    let Ok(entries) = fs::read_dir(cache_dir(release)) else {
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
        let config = tree.join("boot").join(format!("config-{release}"));
        let modules_dir = ["usr/lib/modules", "lib/modules"]
            .iter()
            .map(|base| tree.join(base).join(release))
            .find(|d| d.join("modules.dep").is_file())
            .unwrap_or_else(|| tree.join("lib/modules").join(release));
        for needed in [
            vmlinuz.clone(),
            modules_dir.join("modules.dep"),
            config.clone(),
        ] {
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
            config,
        })
    }

    /// How this kernel's modules are stored, and whether the kernel can load them as
    /// `hnroot-init` does: a compressed module (`.ko.xz`, `.ko.zst`, `.ko.gz`) is handed to
    /// `finit_module` with `MODULE_INIT_COMPRESSED_FILE`, which needs the kernel's own
    /// decompressor (`CONFIG_MODULE_DECOMPRESS`) for that format. Fails, naming the option,
    /// when the kernel could not load its own modules that way.
    pub fn module_format(&self, load_order: &[String]) -> Result<ModuleFormat> {
        let config = fs::read_to_string(&self.config)
            .with_context(|| format!("cannot read {}", self.config.display()))?;
        module_format(&config, load_order)
            .with_context(|| format!("kernel {} ({})", self.release, self.config.display()))
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

/// How a kernel's modules are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleFormat {
    /// Plain `.ko` files.
    Plain,
    /// Compressed with this tool's format (`xz`, `zstd`, `gzip`); the kernel decompresses them
    /// itself when `hnroot-init` passes `MODULE_INIT_COMPRESSED_FILE`.
    Compressed(&'static str),
}

/// The [`ModuleFormat`] of the module files `load_order`, checked against a kernel `config`.
pub fn module_format(config: &str, load_order: &[String]) -> Result<ModuleFormat> {
    const FORMATS: &[(&str, &str, &str)] = &[
        (".ko.xz", "xz", "CONFIG_MODULE_COMPRESS_XZ"),
        (".ko.zst", "zstd", "CONFIG_MODULE_COMPRESS_ZSTD"),
        (".ko.gz", "gzip", "CONFIG_MODULE_COMPRESS_GZIP"),
    ];
    let set = |option: &str| config.lines().any(|l| l.trim() == format!("{option}=y"));
    let mut format = None;
    for ko in load_order {
        let this = if ko.ends_with(".ko") {
            ModuleFormat::Plain
        } else {
            let (_, name, option) = FORMATS
                .iter()
                .find(|(suffix, _, _)| ko.ends_with(suffix))
                .ok_or_else(|| anyhow!("{ko}: not a .ko, .ko.xz, .ko.zst or .ko.gz file"))?;
            if !set("CONFIG_MODULE_DECOMPRESS") || !set(option) {
                bail!(
                    "{ko} is {name}-compressed but the kernel cannot decompress modules itself \
                     (needs CONFIG_MODULE_DECOMPRESS=y and {option}=y): hnroot-init hands \
                     compressed modules to finit_module(MODULE_INIT_COMPRESSED_FILE)"
                );
            }
            ModuleFormat::Compressed(name)
        };
        match format {
            None => format = Some(this),
            Some(f) if f == this => {}
            Some(f) => bail!("{ko} is {this:?} but earlier modules are {f:?}: mixed formats"),
        }
    }
    Ok(format.unwrap_or(ModuleFormat::Plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_modules_need_the_kernels_own_decompressor() {
        let xz = ["kernel/fs/ext4/ext4.ko.xz".to_string()];
        // Debian 13's 6.12 configuration, the lines that matter.
        let trixie = "CONFIG_MODULE_COMPRESS=y\nCONFIG_MODULE_COMPRESS_XZ=y\n\
                      CONFIG_MODULE_DECOMPRESS=y\n";
        assert_eq!(
            module_format(trixie, &xz).unwrap(),
            ModuleFormat::Compressed("xz")
        );
        let no_decompress = "CONFIG_MODULE_COMPRESS_XZ=y\n# CONFIG_MODULE_DECOMPRESS is not set\n";
        let err = module_format(no_decompress, &xz).unwrap_err().to_string();
        assert!(err.contains("CONFIG_MODULE_DECOMPRESS=y"), "{err}");
        let zst = ["kernel/fs/ext4/ext4.ko.zst".to_string()];
        let err = module_format(trixie, &zst).unwrap_err().to_string();
        assert!(err.contains("CONFIG_MODULE_COMPRESS_ZSTD=y"), "{err}");
        let plain = ["kernel/fs/ext4/ext4.ko".to_string()];
        assert_eq!(module_format("", &plain).unwrap(), ModuleFormat::Plain);
        let mixed = [plain[0].clone(), xz[0].clone()];
        assert!(module_format(trixie, &mixed).is_err());
    }
}
