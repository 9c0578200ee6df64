//! Builds `BOOTX64.EFI`: Debian's GRUB 2.06 (`grub-mkstandalone -O x86_64-efi`) with an
//! explicit list of built-in modules and an embedded `grub.cfg`, plus any extra module files
//! (the GRUB module engineer's `hnroot.mod`). Also writes the smoke-test `grub.cfg` that boots
//! the kernel and initramfs inside hostpart's image file. It never installs anything on the host.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::buildenv;

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

/// What to build into `BOOTX64.EFI`.
#[derive(Debug, Clone)]
pub struct GrubImageSpec {
    /// A GRUB x86_64-efi module directory (`kernel.img`, `*.mod`, `moddep.lst`): Debian's by
    /// default, or a GRUB build's `grub-core` output.
    pub module_dir: PathBuf,
    /// Modules built in; `BASE_MODULES` by default. Extra module files are added to this list.
    pub modules: Vec<String>,
    /// `.mod` files from elsewhere (e.g. `hnroot.mod`): merged into a copy of `module_dir`,
    /// their `moddep.lst` line taken from their `.moddeps` section, and built in.
    pub extra_module_files: Vec<PathBuf>,
    /// The embedded configuration (`(memdisk)/boot/grub/grub.cfg`).
    pub grub_cfg: String,
}

impl GrubImageSpec {
    pub fn new(grub_cfg: String) -> Self {
        Self {
            module_dir: PathBuf::from(DEBIAN_MODULE_DIR),
            modules: BASE_MODULES.iter().map(|m| m.to_string()).collect(),
            extra_module_files: Vec::new(),
            grub_cfg,
        }
    }
}

/// Options of the smoke-test configuration.
#[derive(Debug, Clone)]
pub struct SmokeCfg {
    /// Label of the filesystem holding the image (`hostpart`).
    pub hostpart_label: String,
    /// Image file name on hostpart (`hn-root.img`).
    pub image: String,
    /// Appended to the kernel command line.
    pub extra_cmdline: String,
}

impl Default for SmokeCfg {
    fn default() -> Self {
        Self {
            hostpart_label: crate::disk::HOSTPART_LABEL.to_string(),
            image: "hn-root.img".to_string(),
            extra_cmdline: String::new(),
        }
    }
}

/// The smoke-test grub.cfg: find hostpart by label, loop-mount the image, boot its
/// `/boot/kernel` with `/boot/initramfs`. Each step prints an `hnroot-grub:` line; any failure
/// prints what was looked for and reboots after 10 s, so a boot never hangs in GRUB.
pub fn smoke_grub_cfg(cfg: &SmokeCfg) -> String {
    format!(
        r#"# hnroot boot-chain smoke configuration (written by xtask/src/grubimage.rs).
# Boots the kernel and initramfs inside an image file on hostpart; no hnroot module involved.
set timeout=0
set hnroot_label="{label}"
set hnroot_image="{image}"

function hnroot_fail {{
  echo "hnroot-grub: FATAL: $1"
  echo "hnroot-grub: devices:"
  ls
  echo "hnroot-grub: rebooting in 10 s"
  sleep 10
  reboot
}}

echo "hnroot-grub: searching for a filesystem labelled $hnroot_label"
if search --no-floppy --label "$hnroot_label" --set=hostpart; then
  echo "hnroot-grub: hostpart is ($hostpart)"
else
  hnroot_fail "no filesystem labelled $hnroot_label"
fi
if loopback loop "($hostpart)/$hnroot_image"; then
  echo "hnroot-grub: loopback loop ($hostpart)/$hnroot_image"
else
  hnroot_fail "cannot open ($hostpart)/$hnroot_image as a loopback device"
fi
if probe --fs-uuid --set=hnroot_uuid (loop); then
  echo "hnroot-grub: image filesystem UUID $hnroot_uuid"
else
  hnroot_fail "($hostpart)/$hnroot_image holds no filesystem GRUB can read"
fi
if probe --part-uuid --set=hnroot_partuuid ($hostpart); then
  echo "hnroot-grub: hostpart PARTUUID $hnroot_partuuid"
else
  set hnroot_partuuid=""
fi
if linux (loop)/boot/kernel console=ttyS0 panic=10 hnroot.image=$hnroot_image hnroot.uuid=$hnroot_uuid hnroot.hostpart=LABEL=$hnroot_label{extra}; then
  echo "hnroot-grub: loaded (loop)/boot/kernel"
else
  hnroot_fail "cannot load (loop)/boot/kernel from $hnroot_image"
fi
if initrd (loop)/boot/initramfs; then
  echo "hnroot-grub: loaded (loop)/boot/initramfs"
else
  hnroot_fail "cannot load (loop)/boot/initramfs from $hnroot_image"
fi
echo "hnroot-grub: booting $hnroot_image"
boot
hnroot_fail "boot returned"
"#,
        label = cfg.hostpart_label,
        image = cfg.image,
        extra = if cfg.extra_cmdline.is_empty() {
            String::new()
        } else {
            format!(" {}", cfg.extra_cmdline)
        },
    )
}

/// Build `out` (BOOTX64.EFI). `work` is a scratch directory for the config file and, when
/// extra modules are given, the merged module directory.
pub fn build_bootx64(spec: &GrubImageSpec, work: &Path, out: &Path) -> Result<()> {
    let work = buildenv::fresh_dir(work)?;
    let kernel_img = spec.module_dir.join("kernel.img");
    if !kernel_img.is_file() {
        bail!(
            "{} has no kernel.img: not a GRUB x86_64-efi module directory (apt-get install \
             grub-efi-amd64-bin, or point at a GRUB build's grub-core output)",
            spec.module_dir.display()
        );
    }
    let mut modules = spec.modules.clone();
    let module_dir = if spec.extra_module_files.is_empty() {
        spec.module_dir.clone()
    } else {
        let merged = work.join("modules");
        let added = merge_module_dir(&spec.module_dir, &spec.extra_module_files, &merged)?;
        modules.extend(added);
        merged
    };
    let mut seen = BTreeSet::new();
    modules.retain(|m| seen.insert(m.clone()));
    for m in &modules {
        if !module_dir.join(format!("{m}.mod")).is_file() {
            bail!("GRUB module {m}.mod is not in {}", module_dir.display());
        }
    }
    let cfg = work.join("grub.cfg");
    fs::write(&cfg, &spec.grub_cfg).with_context(|| format!("cannot write {}", cfg.display()))?;
    let list = modules.join(" ");
    buildenv::run(
        Command::new("grub-mkstandalone")
            .args(["-O", "x86_64-efi"])
            .arg(format!("--directory={}", module_dir.display()))
            .arg(format!("--modules={list}"))
            .arg(format!("--install-modules={list}"))
            .args(["--fonts=", "--locales=", "--themes="])
            .arg(format!("--output={}", out.display()))
            .arg(format!("boot/grub/grub.cfg={}", cfg.display())),
    )
    .context("building BOOTX64.EFI")?;
    Ok(())
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
    fn smoke_cfg_boots_from_the_loop_device() {
        let cfg = smoke_grub_cfg(&SmokeCfg {
            extra_cmdline: "quiet".into(),
            ..SmokeCfg::default()
        });
        assert!(cfg.contains(r#"search --no-floppy --label "$hnroot_label" --set=hostpart"#));
        assert!(cfg.contains(r#"loopback loop "($hostpart)/$hnroot_image""#));
        assert!(cfg.contains("linux (loop)/boot/kernel console=ttyS0 panic=10 "));
        assert!(cfg.contains("hnroot.hostpart=LABEL=$hnroot_label quiet; then"));
        assert!(cfg.contains("initrd (loop)/boot/initramfs"));
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
