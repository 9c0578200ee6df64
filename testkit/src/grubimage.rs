//! Builds `BOOTX64.EFI` with the product's own code (`hnroot_install::grub::build_efi`, what
//! `hnroot install` and `hnroot bootloader update` run) from the loader kit built here
//! ([`grubmod::build_kit`]: hnroot's own GRUB with `hnroot.mod`), with an embedded `grub.cfg`,
//! SBAT metadata and the version record; never installed on the host. Every image the suites
//! boot hnroot-init with embeds the production `grub-module/grub.cfg` verbatim ([`production`],
//! built once and cached, with the product's menu countdown or with the menu skipped); one GRUB for every Debian release the suites boot. A test's own
//! script ([`test_script`]) is for the two places the production configuration cannot serve:
//! `grub-test`, which runs `hnroot select` and `hnroot status` on each test disk and halts
//! without booting anything, and the busybox linuxrc side of `bench-initramfs`, which cannot
//! read the production command line. No image is built without `hnroot.mod`; the builder checks
//! that every image carries it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::buildenv::{self, cached, fnv1a, read};
use crate::grubmod::{self, Module};

/// The production GRUB configuration, relative to the workspace root.
pub const GRUB_CFG: &str = "grub-module/grub.cfg";

/// A built `BOOTX64.EFI`.
#[derive(Debug, Clone)]
pub struct GrubImage {
    /// The EFI executable (`EFI/BOOT/BOOTX64.EFI` on an ESP).
    pub path: PathBuf,
    /// The embedded configuration.
    pub grub_cfg: String,
    /// The `hnroot.mod` built in.
    pub module: Module,
    /// Whether the image came from the cache.
    pub cached: bool,
}

impl GrubImage {
    /// The trial length `hnroot select` uses with the embedded configuration.
    pub fn tries(&self) -> u8 {
        tries_in_grub_cfg(&self.grub_cfg)
    }
}

/// The production `grub-module/grub.cfg`, as it is in the workspace.
pub fn production_cfg() -> Result<String> {
    let path = buildenv::workspace_root().join(GRUB_CFG);
    fs::read_to_string(&path)
        .with_context(|| format!("cannot read the production {}", path.display()))
}

/// The loader kit (built first) and its module.
fn kit_and_module() -> Result<(hnroot_install::grub::LoaderKit, Module)> {
    let kit = grubmod::build_kit()?;
    let size = fs::metadata(&kit.module.path)
        .with_context(|| format!("cannot stat {}", kit.module.path.display()))?
        .len();
    let ours = Module {
        path: kit.module.path.clone(),
        size,
    };
    Ok((kit, ours))
}

/// The menu countdown built into a suite's loader.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Menu {
    /// The product's default (no `menu-timeout` file): the disks whose story types at GRUB's
    /// menu, and the benchmarks, which measure what a server does.
    Default,
    /// The fleet setting `hnroot install --menu-timeout 0` builds in (`(memdisk)/hnroot/
    /// menu-timeout` = 0): GRUB boots at once. Every other suite disk: the countdown would
    /// cost every boot two seconds of watching nobody.
    Skipped,
}

/// The image every boot of the suites goes through: hnroot's GRUB with `hnroot.mod` and the
/// production `grub.cfg` verbatim, with the menu countdown `menu`, built (with the kit) unless
/// cached under `target/hnroot-build/grub-image/<GRUB version>/` (`menu-0/` for
/// [`Menu::Skipped`]) for this configuration, this module, its SBAT and its record.
pub fn production(menu: Menu) -> Result<GrubImage> {
    let (kit, ours) = kit_and_module()?;
    let grub_cfg = production_cfg()?;
    let mut dir = buildenv::build_root()
        .join("grub-image")
        .join(&kit.grub_version);
    let fleet = match menu {
        Menu::Default => Vec::new(),
        Menu::Skipped => {
            dir.push("menu-0");
            vec![hnroot_install::grub::FleetFile {
                name: hnroot_core::menu::FILE_NAME.into(),
                data: hnroot_core::menu::Text(0).to_string().into_bytes(),
            }]
        }
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join("BOOTX64.EFI");
    let _lock = buildenv::lock(&format!("grub-image-{}", kit.grub_version))?;
    let key = format!(
        "bootx64 v6 {} {:016x} {:016x} {:016x} {:016x} {:016x} {} {}",
        kit.grub_version,
        fnv1a(grub_cfg.as_bytes()),
        fnv1a(&read(&kit.module.path)?),
        fnv1a(&read(&kit.sbat)?),
        fnv1a(&read(&kit.mkimage)?),
        fnv1a(kit.record_text.as_bytes()),
        hnroot_install::grub::BASE_MODULES.join(","),
        fleet
            .iter()
            .map(|f| format!("{}={:016x}", f.name, fnv1a(&f.data)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let hit = cached(&out, &key, || {
        hnroot_install::grub::build_efi(&kit, &grub_cfg, &[], &fleet, &dir.join("work"), &out)
    })?;
    Ok(GrubImage {
        path: out,
        grub_cfg,
        module: ours,
        cached: hit,
    })
}

/// The production image with the fleet files `fleet` in its memdisk (the trusted seal keys, as
/// `hnroot install --keys` builds them in), written to `dir/BOOTX64.EFI`, never cached.
pub fn production_with(fleet: &[hnroot_install::grub::FleetFile], dir: &Path) -> Result<GrubImage> {
    let (kit, ours) = kit_and_module()?;
    let grub_cfg = production_cfg()?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join("BOOTX64.EFI");
    hnroot_install::grub::build_efi(&kit, &grub_cfg, &[], fleet, &dir.join("grub-image"), &out)?;
    Ok(GrubImage {
        path: out,
        grub_cfg,
        module: ours,
        cached: false,
    })
}

/// An image with `hnroot.mod` and a test's own `script` as its grub.cfg instead of the
/// production one, with `extra_modules` besides the product's base modules (grub-test's
/// `time`) and the fleet files `fleet` in its memdisk. Its users: `grub-test` (the script drives `hnroot select` and `hnroot status` on the
/// test disks and halts) and `bench-initramfs`'s linuxrc side (see there why). Written to
/// `dir/BOOTX64.EFI`, never cached.
pub fn test_script(
    script: &str,
    extra_modules: &[&str],
    fleet: &[hnroot_install::grub::FleetFile],
    dir: &Path,
) -> Result<GrubImage> {
    let (kit, ours) = kit_and_module()?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join("BOOTX64.EFI");
    hnroot_install::grub::build_efi(
        &kit,
        script,
        extra_modules,
        fleet,
        &dir.join("grub-image"),
        &out,
    )?;
    Ok(GrubImage {
        path: out,
        grub_cfg: script.to_string(),
        module: ours,
        cached: false,
    })
}

/// An older loader than the kit builds: the same GRUB, module and configuration, its version
/// record saying hnroot `version` (a loader an earlier hnroot installed, for the update's
/// tests). Its kit (a copy of the built kit with that record) and its image, in `dir`.
pub fn older_loader(dir: &Path, version: &str) -> Result<(PathBuf, PathBuf)> {
    let kit = grubmod::build_kit()?;
    let old_kit = dir.join("older-kit");
    if old_kit.exists() {
        fs::remove_dir_all(&old_kit)
            .with_context(|| format!("cannot remove {}", old_kit.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    buildenv::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&kit.dir)
            .arg(&old_kit),
    )?;
    let line = kit
        .record_text
        .lines()
        .find(|l| l.starts_with("hnroot "))
        .context("the kit's record names no hnroot version")?;
    fs::write(
        old_kit.join(hnroot_install::grub::RECORD_FILE),
        kit.record_text.replace(line, &format!("hnroot {version}")),
    )?;
    let older = hnroot_install::grub::LoaderKit::at(&old_kit)?;
    let out = dir.join("older.efi");
    hnroot_install::grub::build_efi(
        &older,
        &production_cfg()?,
        &[],
        &[],
        &dir.join("older-work"),
        &out,
    )?;
    Ok((old_kit, out))
}

/// The line (0-based) of the menu entry `--id ID` of `cfg` that starts with `command`, as
/// GRUB 2.06's entry editor (`e` at the menu) shows the entry: first a `setparams 'TITLE'`
/// line GRUB adds, then the entry's source from just after its `{` (the rest of that line,
/// empty when the body starts on the next) to its closing `}`.
pub fn editor_line(cfg: &str, id: &str, command: &str) -> Result<usize> {
    let mut lines = cfg.lines();
    let header = format!("--id {id} {{");
    lines
        .by_ref()
        .find(|l| {
            let l = l.trim();
            l.starts_with("menuentry ") && l.ends_with(&header)
        })
        .with_context(|| format!("grub.cfg has no `menuentry ... {header}`"))?;
    // Line 0: setparams; line 1: the rest of the `{` line (empty); then the body.
    lines
        .take_while(|l| l.trim() != "}")
        .position(|l| l.trim_start().starts_with(command))
        .map(|i| i + 2)
        .with_context(|| format!("the entry {id} of grub.cfg has no line starting {command:?}"))
}

/// `--tries N` on the `hnroot select` line of a grub.cfg, or the core's default.
pub fn tries_in_grub_cfg(cfg: &str) -> u8 {
    cfg.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains("hnroot select"))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "--tries")?;
            words.next()?.trim_end_matches(';').parse().ok()
        })
        .unwrap_or(hnroot_core::bootstate::DEFAULT_TRIES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_are_read_from_the_select_line() {
        assert_eq!(tries_in_grub_cfg("if ! hnroot select; then\n"), 3);
        assert_eq!(
            tries_in_grub_cfg("# hnroot select --tries 9\nif ! hnroot select --tries 5; then\n"),
            5
        );
    }

    #[test]
    fn the_editor_shows_setparams_then_the_body() {
        let cfg = "menuentry \"a\" --id x {\n  echo a\n}\nmenuentry \"b\" --id hnroot {\n  \
                   loopback loop x\n  linux (loop)/k\n  initrd (loop)/i\n}\n";
        assert_eq!(editor_line(cfg, "hnroot", "linux ").unwrap(), 3);
        assert_eq!(editor_line(cfg, "hnroot", "loopback ").unwrap(), 2);
        assert!(editor_line(cfg, "hnroot", "echo").is_err());
        assert!(editor_line(cfg, "nope", "linux ").is_err());
        assert_eq!(
            editor_line(&production_cfg().unwrap(), "hnroot", "linux ").unwrap(),
            3
        );
    }

    #[test]
    fn the_production_cfg_selects_with_the_module_and_boots_from_the_loop_device() {
        let cfg = production_cfg().unwrap();
        assert!(
            cfg.contains(
                "if ! hnroot select --defaults \"console=ttyS0 panic=10\" --defaults-file \
                 (memdisk)/hnroot/kernel-args --seal-keys (memdisk)/hnroot/seal-keys \
                 --require-sealed-file (memdisk)/hnroot/require-sealed --counting-file \
                 (memdisk)/hnroot/counting --menu-timeout-file (memdisk)/hnroot/menu-timeout; \
                 then"
            ),
            "{cfg}"
        );
        assert!(cfg.contains("linux (loop)/boot/kernel "), "{cfg}");
        assert!(cfg.contains("initrd (loop)/boot/initramfs"), "{cfg}");
    }
}
