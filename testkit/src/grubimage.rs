//! Builds `BOOTX64.EFI` — Debian's GRUB 2.06 (`grub-mkstandalone -O x86_64-efi`) with
//! `hnroot.mod` built in and an embedded `grub.cfg` — and never installs it on the host. Every
//! image the suites boot hnroot-init with embeds the production `grub-module/grub.cfg`
//! verbatim ([`production`], built once and cached). A test's own script ([`test_script`]) is
//! for the two places the production configuration cannot serve: `grub-test`, which runs
//! `hnroot select` and `hnroot status` on each test disk and halts without booting anything,
//! and the busybox linuxrc side of `bench-initramfs`, which cannot read the production command
//! line. No image is built without `hnroot.mod`, and every image is checked to carry it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::buildenv::{self, cached, fnv1a, read};
use crate::grubmod::{self, Module};

/// The production GRUB configuration, relative to the workspace root.
pub const GRUB_CFG: &str = "grub-module/grub.cfg";

/// Debian's x86_64-efi modules (grub-efi-amd64-bin).
pub const DEBIAN_MODULE_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// Built into every image; grub-mkstandalone adds their dependencies from moddep.lst.
/// - part_gpt: the disk's partition table; fat, ext2, btrfs, xfs: the ESP and hostpart;
/// - search (with search_label, search_fs_uuid): find hostpart; loopback: the image file;
/// - probe: read the image's filesystem UUID and hostpart's PARTUUID for the command line;
/// - linux: load the kernel and initrd (EFI handover); efi_gop: hand the framebuffer over;
/// - normal, configfile, echo, test, true (`true` and `false`), sleep, ls, reboot, halt: the
///   config's script and errors (`grub-module/grub.cfg` fails an entry with `false`);
/// - gzio, zstd: compressed btrfs extents.
pub const BASE_MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "ext2",
    "btrfs",
    "xfs",
    "search",
    "search_label",
    "search_fs_uuid",
    "loopback",
    "probe",
    "linux",
    "efi_gop",
    "normal",
    "configfile",
    "echo",
    "test",
    "true",
    "sleep",
    "ls",
    "reboot",
    "halt",
    "gzio",
    "zstd",
];

/// Bound on files copied when merging a module directory (Debian's has ~280).
const MAX_MODULE_DIR_ENTRIES: usize = 2000;

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

/// The image every boot of the suites goes through: Debian's GRUB with `hnroot.mod` and the
/// production `grub.cfg` verbatim, built (with the module) unless cached under
/// `target/hnroot-build/grub-image/` for this configuration and this module.
pub fn production() -> Result<GrubImage> {
    let module = grubmod::build()?;
    grubmod::check_installed(&module.path)?;
    let grub_cfg = production_cfg()?;
    let dir = buildenv::build_root().join("grub-image");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join("BOOTX64.EFI");
    let key = format!(
        "bootx64 v2 {:016x} {:016x} {}",
        fnv1a(grub_cfg.as_bytes()),
        fnv1a(&read(&module.path)?),
        BASE_MODULES.join(",")
    );
    let hit = cached(&out, &key, || {
        build(&grub_cfg, &[], &module, &dir.join("work"), &out)
    })?;
    Ok(GrubImage {
        path: out,
        grub_cfg,
        module,
        cached: hit,
    })
}

/// An image with `hnroot.mod` and a test's own `script` as its grub.cfg instead of the
/// production one, with `extra_modules` besides [`BASE_MODULES`] (grub-test's `time`). Its
/// users: `grub-test` (the script drives `hnroot select` and `hnroot status` on the test disks
/// and halts) and `bench-initramfs`'s linuxrc side (see there why). Written to
/// `dir/BOOTX64.EFI`, never cached.
pub fn test_script(script: &str, extra_modules: &[&str], dir: &Path) -> Result<GrubImage> {
    let module = grubmod::build()?;
    grubmod::check_installed(&module.path)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join("BOOTX64.EFI");
    build(
        script,
        extra_modules,
        &module,
        &dir.join("grub-image"),
        &out,
    )?;
    Ok(GrubImage {
        path: out,
        grub_cfg: script.to_string(),
        module,
        cached: false,
    })
}

/// Build `out` with `grub_cfg` embedded and `hnroot.mod` plus [`BASE_MODULES`] and
/// `extra_modules` built in, then check that the image carries the module. `work` is a scratch
/// directory for the configuration file and the merged module directory.
fn build(
    grub_cfg: &str,
    extra_modules: &[&str],
    module: &Module,
    work: &Path,
    out: &Path,
) -> Result<()> {
    let work = buildenv::fresh_dir(work)?;
    let base = Path::new(DEBIAN_MODULE_DIR);
    if !base.join("kernel.img").is_file() {
        bail!(
            "{} has no kernel.img: not a GRUB x86_64-efi module directory (apt-get install \
             grub-efi-amd64-bin)",
            base.display()
        );
    }
    let mut modules: Vec<String> = BASE_MODULES
        .iter()
        .chain(extra_modules)
        .map(|m| m.to_string())
        .collect();
    let module_dir = work.join("modules");
    modules.extend(merge_module_dir(
        base,
        std::slice::from_ref(&module.path),
        &module_dir,
    )?);
    let mut seen = BTreeSet::new();
    modules.retain(|m| seen.insert(m.clone()));
    for m in &modules {
        if !module_dir.join(format!("{m}.mod")).is_file() {
            bail!("GRUB module {m}.mod is not in {}", module_dir.display());
        }
    }
    let cfg = work.join("grub.cfg");
    fs::write(&cfg, grub_cfg).with_context(|| format!("cannot write {}", cfg.display()))?;
    let list = modules.join(" ");
    let partial = out.with_extension("partial");
    buildenv::run(
        Command::new("grub-mkstandalone")
            .args(["-O", "x86_64-efi"])
            .arg(format!("--directory={}", module_dir.display()))
            .arg(format!("--modules={list}"))
            .arg(format!("--install-modules={list}"))
            .args(["--fonts=", "--locales=", "--themes="])
            .arg(format!("--output={}", partial.display()))
            .arg(format!("boot/grub/grub.cfg={}", cfg.display())),
    )
    .context("building BOOTX64.EFI")?;
    check_carries_module(&partial, &module.path)?;
    fs::rename(&partial, out)
        .with_context(|| format!("cannot move {} to {}", partial.display(), out.display()))?;
    Ok(())
}

/// `image` must carry the module: grub-mkstandalone puts built-in modules into the image
/// uncompressed, so the module's `hnroot_decide` symbol and its last 256 bytes are in it.
fn check_carries_module(image: &Path, module: &Path) -> Result<()> {
    let data = read(image)?;
    let module_bytes = read(module)?;
    let tail = &module_bytes[module_bytes.len().saturating_sub(256)..];
    let has = |hay: &[u8], n: &[u8]| hay.windows(n.len()).any(|w| w == n);
    if !has(&data, b"hnroot_decide") || !has(&data, tail) {
        bail!(
            "{} does not contain {} (looked for its symbol table and last 256 bytes)",
            image.display(),
            module.display()
        );
    }
    Ok(())
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

/// Copy `base` into `merged`, add `extras`, append their moddep.lst lines; return their names.
fn merge_module_dir(base: &Path, extras: &[PathBuf], merged: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(merged).with_context(|| format!("cannot create {}", merged.display()))?;
    let mut copied = 0usize;
    for entry in fs::read_dir(base).with_context(|| format!("cannot list {}", base.display()))? {
        let entry = entry?;
        copied += 1;
        if copied > MAX_MODULE_DIR_ENTRIES {
            bail!(
                "more than {MAX_MODULE_DIR_ENTRIES} entries in {}",
                base.display()
            );
        }
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), merged.join(entry.file_name()))
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    let mut moddep = fs::read_to_string(merged.join("moddep.lst"))
        .with_context(|| format!("{} has no moddep.lst", base.display()))?;
    let mut names = Vec::new();
    for file in extras {
        let (name, deps) = module_identity(file, merged)?;
        fs::copy(file, merged.join(format!("{name}.mod")))
            .with_context(|| format!("cannot copy {}", file.display()))?;
        for dep in &deps {
            if !merged.join(format!("{dep}.mod")).is_file() {
                bail!(
                    "{} ({name}) depends on GRUB module {dep}, which {} does not have",
                    file.display(),
                    base.display()
                );
            }
        }
        let prefix = format!("{name}:");
        moddep = moddep
            .lines()
            .filter(|l| !l.starts_with(&prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        moddep.push_str(&format!("{name}: {}\n", deps.join(" ")));
        names.push(name);
    }
    fs::write(merged.join("moddep.lst"), moddep).context("cannot write merged moddep.lst")?;
    Ok(names)
}

/// A GRUB module's name (`.modname`) and dependencies (`.moddeps`), via objcopy.
fn module_identity(file: &Path, scratch: &Path) -> Result<(String, Vec<String>)> {
    let name_out = scratch.join("modname.bin");
    let deps_out = scratch.join("moddeps.bin");
    let discard = scratch.join("discard.o");
    for section in [(".modname", &name_out), (".moddeps", &deps_out)] {
        let _ = fs::remove_file(section.1);
    }
    buildenv::run(
        Command::new("objcopy")
            .arg(format!("--dump-section=.modname={}", name_out.display()))
            .arg(format!("--dump-section=.moddeps={}", deps_out.display()))
            .arg(file)
            .arg(&discard),
    )
    .or_else(|_| {
        // A module without dependencies has no .moddeps section.
        buildenv::run(
            Command::new("objcopy")
                .arg(format!("--dump-section=.modname={}", name_out.display()))
                .arg(file)
                .arg(&discard),
        )
    })
    .with_context(|| {
        format!(
            "{} is not a GRUB module (no .modname section)",
            file.display()
        )
    })?;
    let _ = fs::remove_file(&discard);
    let split = |bytes: Vec<u8>| -> Vec<String> {
        bytes
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let name = split(fs::read(&name_out)?)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{} has an empty .modname section", file.display()))?;
    let deps = fs::read(&deps_out).map(split).unwrap_or_default();
    Ok((name, deps))
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
    fn the_production_cfg_selects_with_the_module_and_boots_from_the_loop_device() {
        let cfg = production_cfg().unwrap();
        assert!(cfg.contains("if ! hnroot select; then"), "{cfg}");
        assert!(cfg.contains("linux (loop)/boot/kernel "), "{cfg}");
        assert!(cfg.contains("initrd (loop)/boot/initramfs"), "{cfg}");
    }

    #[test]
    fn a_module_inside_an_image_is_found_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("hnroot.mod");
        let tail: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        fs::write(&module, [b"hnroot_decide".as_slice(), &tail].concat()).unwrap();
        let image = dir.path().join("BOOTX64.EFI");
        fs::write(
            &image,
            [b"MZ..".as_slice(), b"hnroot_decide", &tail, b"end"].concat(),
        )
        .unwrap();
        check_carries_module(&image, &module).unwrap();
        fs::write(
            &image,
            [b"MZ..".as_slice(), b"hnroot_decide", &tail[..200]].concat(),
        )
        .unwrap();
        let err = check_carries_module(&image, &module)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not contain"), "{err}");
    }

    #[test]
    fn extra_module_is_merged_with_its_dependencies() {
        let base = Path::new(DEBIAN_MODULE_DIR);
        if !base.join("search.mod").is_file() {
            eprintln!("skipping: no {DEBIAN_MODULE_DIR}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // search.mod stands in for hnroot.mod: a real module with real .moddeps.
        let extra = dir.path().join("extra.mod");
        fs::copy(base.join("search.mod"), &extra).unwrap();
        let merged = dir.path().join("merged");
        let names = merge_module_dir(base, &[extra], &merged).unwrap();
        assert_eq!(names, ["search"]);
        let moddep = fs::read_to_string(merged.join("moddep.lst")).unwrap();
        let lines: Vec<&str> = moddep
            .lines()
            .filter(|l| l.starts_with("search:"))
            .collect();
        assert_eq!(
            lines,
            ["search: extcmd search_fs_uuid search_fs_file search_label"]
        );
    }
}
