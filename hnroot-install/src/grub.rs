//! GRUB as hnroot installs it: one EFI executable (`\EFI\BOOT\BOOTX64.EFI`) built by
//! `grub-mkstandalone` from the installed GRUB's x86_64-efi modules, with `hnroot.mod`, every
//! module `grub.cfg` needs, `grub.cfg` itself and an SBAT section built in. One file, so a
//! Secure Boot signer signs one file and nothing is loaded from disk that was not signed.
//!
//! `hnroot.mod` must be built against the exact GRUB it is loaded by: GRUB checks no version
//! when it loads a module. The module kit ([`ModuleKit`], `/usr/lib/hnroot/grub`) holds one directory
//! per GRUB build the module was built for, named by that build's Debian version
//! (`2.06-13+deb12u2/`), each with `hnroot.mod`, the version record beside it and the SBAT
//! metadata; `grub.cfg` is shared. The installed GRUB names its own build in `modinfo.sh`
//! (`grub_package_version`); the core's `install::grub_fits` refuses any other pair.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::install::grub_fits;
use object::{Object, ObjectSection};

/// Where Debian's `grub-efi-amd64-bin` keeps its modules.
pub const GRUB_MODULES_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// Where the hnroot package installs its module kit.
pub const KIT_DIR: &str = "/usr/lib/hnroot/grub";

/// The module's file name in a kit's version directory.
pub const MODULE_FILE: &str = "hnroot.mod";

/// The record of the GRUB build, beside the module.
pub const VERSION_RECORD: &str = "hnroot.mod.grub-version";

/// The SBAT metadata in a kit's version directory.
pub const SBAT_FILE: &str = "sbat.csv";

/// The production GRUB configuration in the kit.
pub const GRUB_CFG: &str = "grub.cfg";

/// The module's section holding the GRUB build it was built against.
pub const VERSION_SECTION: &str = ".hnroot.grub-version";

/// Built into every image; grub-mkstandalone adds their dependencies from `moddep.lst`.
/// - part_gpt: the disk's partition table; fat, ext2, btrfs, xfs: the ESP and hostpart;
/// - search (with search_label, search_fs_uuid): find hostpart; loopback: the image file;
/// - probe: read the image's filesystem UUID and hostpart's PARTUUID for the command line;
/// - linux: load the kernel and initrd (EFI handover); efi_gop: hand the framebuffer over;
/// - normal, configfile, echo, test, true (`true` and `false`), sleep, ls, reboot, halt: the
///   configuration's script and its errors (`grub.cfg` fails an entry with `false`);
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

/// Bound on the entries of a GRUB module directory (Debian's has about 280).
const MAX_MODULE_DIR_ENTRIES: usize = 2000;

/// An installed GRUB: its x86_64-efi modules and the build they come from.
#[derive(Clone, Debug)]
pub struct Grub {
    /// The module directory (`kernel.img`, `*.mod`, `moddep.lst`, `modinfo.sh`).
    pub modules_dir: PathBuf,
    /// Its Debian build (`grub_package_version` in `modinfo.sh`).
    pub version: String,
    /// The `grub-mkstandalone` that builds images from it.
    pub mkstandalone: PathBuf,
}

impl Grub {
    /// The GRUB whose modules are in `dir`, built with `grub-mkstandalone` from `PATH`.
    pub fn at(dir: &Path) -> Result<Grub> {
        if !dir.join("kernel.img").is_file() {
            bail!(
                "looked for GRUB's x86_64-efi modules in {}: there is no kernel.img there \
                 (apt-get install grub-efi-amd64-bin)",
                dir.display()
            );
        }
        let info = dir.join("modinfo.sh");
        let text = fs::read_to_string(&info).with_context(|| {
            format!(
                "looked for the GRUB build in {}; cannot read it",
                info.display()
            )
        })?;
        let version = modinfo_value(&text, "grub_package_version")
            .or_else(|| modinfo_value(&text, "grub_version"))
            .ok_or_else(|| {
                anyhow!(
                    "{} names no grub_package_version: cannot tell which hnroot.mod fits",
                    info.display()
                )
            })?;
        Ok(Grub {
            modules_dir: dir.to_owned(),
            version,
            mkstandalone: PathBuf::from("grub-mkstandalone"),
        })
    }
}

impl Grub {
    /// The image builder, found before anything is written: a path names one program, a bare
    /// name is looked up on `PATH` as `Command` would.
    pub fn find_mkstandalone(&self) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let tool = &self.mkstandalone;
        let runnable = |p: &Path| {
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        let bare = tool.components().count() == 1;
        let found = if bare {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(tool))
                    .find(|c| runnable(c))
            })
        } else {
            runnable(tool).then(|| tool.clone())
        };
        found.ok_or_else(|| {
            anyhow!(
                "looked for GRUB's image builder {} ({}) to build the EFI image from {}: {}; \
                 install grub-common, or name the one of that GRUB with --grub-mkstandalone",
                tool.display(),
                if bare { "on PATH" } else { "a path" },
                self.modules_dir.display(),
                if bare {
                    "it is not on PATH"
                } else {
                    "there is no executable file there"
                }
            )
        })
    }
}

/// `name="value"` in a `modinfo.sh`.
fn modinfo_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(name)?.strip_prefix('=')?;
        let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

/// `hnroot.mod` with what it says about itself.
#[derive(Clone, Debug)]
pub struct Module {
    /// The module file.
    pub path: PathBuf,
    /// Its `.modname`.
    pub name: String,
    /// Its `.moddeps`.
    pub deps: Vec<String>,
    /// The GRUB build it was built against (its version section, equal to the record beside it).
    pub built_for: String,
    /// The SBAT metadata to embed.
    pub sbat: PathBuf,
}

impl Module {
    /// The module in `dir` (a kit's version directory): `hnroot.mod`, its version record and
    /// `sbat.csv`; both version records must agree.
    pub fn load(dir: &Path) -> Result<Module> {
        let path = dir.join(MODULE_FILE);
        let (name, deps, inside) = identity(&path)?;
        let inside = inside.ok_or_else(|| {
            anyhow!(
                "{} has no {VERSION_SECTION} section: it does not say which GRUB it fits",
                path.display()
            )
        })?;
        let record = dir.join(VERSION_RECORD);
        let beside = fs::read_to_string(&record)
            .with_context(|| format!("cannot read {}", record.display()))?;
        if beside.trim() != inside {
            bail!(
                "{} says it was built for GRUB {inside}, the record beside it ({}) says {}: \
                 refusing a module whose origin is unclear",
                path.display(),
                record.display(),
                beside.trim()
            );
        }
        let sbat = dir.join(SBAT_FILE);
        if !sbat.is_file() {
            bail!(
                "{} is missing: the image needs SBAT metadata",
                sbat.display()
            );
        }
        Ok(Module {
            path,
            name,
            deps,
            built_for: inside,
            sbat,
        })
    }
}

/// A GRUB module's `.modname`, `.moddeps` and (hnroot's) version section.
fn identity(path: &Path) -> Result<(String, Vec<String>, Option<String>)> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let elf = object::File::parse(&*bytes)
        .with_context(|| format!("{} is not an ELF object", path.display()))?;
    let section = |name: &str| -> Option<Vec<String>> {
        let data = elf.section_by_name(name)?.data().ok()?;
        Some(
            data.split(|b| *b == 0)
                .map(|s| String::from_utf8_lossy(s).trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    };
    let name = section(".modname")
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| anyhow!("{} has no .modname: not a GRUB module", path.display()))?;
    let deps = section(".moddeps").unwrap_or_default();
    let version = section(VERSION_SECTION).and_then(|v| v.into_iter().next());
    Ok((name, deps, version))
}

/// The module kit: one directory per GRUB build, and the shared `grub.cfg`.
#[derive(Clone, Debug)]
pub struct ModuleKit {
    /// Its directory ([`KIT_DIR`] when installed from the package).
    pub dir: PathBuf,
}

impl ModuleKit {
    /// The kit in `dir`.
    pub fn at(dir: &Path) -> ModuleKit {
        ModuleKit {
            dir: dir.to_owned(),
        }
    }

    /// The GRUB builds the kit has a module for.
    pub fn builds(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter(|e| e.path().join(MODULE_FILE).is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The module built for `grub`, or a refusal naming both versions.
    pub fn module_for(&self, grub: &Grub) -> Result<Module> {
        let dir = self.dir.join(&grub.version);
        if !dir.join(MODULE_FILE).is_file() {
            let builds = self.builds();
            let nearest = builds.first().map(String::as_str).unwrap_or("(none)");
            let mismatch = grub_fits(nearest, &grub.version)
                .err()
                .map(|m| m.to_string())
                .unwrap_or_default();
            bail!(
                "looked for hnroot.mod built for GRUB {} in {}; the kit has modules for: {}. \
                 {mismatch}; nothing was written",
                grub.version,
                self.dir.display(),
                if builds.is_empty() {
                    "none".to_owned()
                } else {
                    builds.join(", ")
                }
            );
        }
        let module = Module::load(&dir)?;
        grub_fits(&module.built_for, &grub.version).map_err(|m| anyhow!("{m}"))?;
        Ok(module)
    }

    /// The kit's `grub.cfg`.
    pub fn grub_cfg(&self) -> Result<String> {
        let path = self.dir.join(GRUB_CFG);
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// The SBAT metadata of an image: Debian's lines for its GRUB build (its template from the
/// `grub2` source, `debian/sbat.debian.csv.in`, with the versions filled in) and hnroot's own.
pub fn sbat_csv(debian_template: &str, grub_version: &str, hnroot_version: &str) -> String {
    let upstream = grub_version.split('-').next().unwrap_or(grub_version);
    let mut out: String = debian_template
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            format!(
                "{}\n",
                l.replace("@UPSTREAM_VERSION@", upstream)
                    .replace("@DEB_VERSION@", grub_version)
            )
        })
        .collect();
    out.push_str(&format!(
        "hnroot,1,hnroot,hnroot,{hnroot_version},https://example.invalid/hnroot\n"
    ));
    out
}

/// Build `out`: GRUB from `grub` with `module`, [`BASE_MODULES`] and `extra_modules` built in,
/// `grub_cfg` embedded as `(memdisk)/boot/grub/grub.cfg`, and the module's SBAT metadata. `work`
/// is scratch space (emptied). The image is written beside `out` and renamed over it.
pub fn build_efi(
    grub: &Grub,
    module: &Module,
    grub_cfg: &str,
    extra_modules: &[&str],
    work: &Path,
    out: &Path,
) -> Result<()> {
    grub_fits(&module.built_for, &grub.version).map_err(|m| anyhow!("{m}"))?;
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("cannot empty {}", work.display()))?;
    }
    let merged = work.join("modules");
    merge_module_dir(&grub.modules_dir, module, &merged)?;
    let mut modules: Vec<&str> = BASE_MODULES.to_vec();
    modules.extend_from_slice(extra_modules);
    modules.push(&module.name);
    let mut seen = std::collections::BTreeSet::new();
    modules.retain(|m| seen.insert(*m));
    for m in &modules {
        if !merged.join(format!("{m}.mod")).is_file() {
            bail!(
                "GRUB module {m}.mod is not in {}: the installed GRUB lacks it",
                grub.modules_dir.display()
            );
        }
    }
    let cfg = work.join("grub.cfg");
    fs::write(&cfg, grub_cfg).with_context(|| format!("cannot write {}", cfg.display()))?;
    let list = modules.join(" ");
    let partial = out.with_extension("partial");
    let output = Command::new(&grub.mkstandalone)
        .args(["-O", "x86_64-efi"])
        .arg(format!("--directory={}", merged.display()))
        .arg(format!("--modules={list}"))
        .arg(format!("--install-modules={list}"))
        .args(["--fonts=", "--locales=", "--themes="])
        .arg(format!("--sbat={}", module.sbat.display()))
        .arg(format!("--output={}", partial.display()))
        .arg(format!("boot/grub/grub.cfg={}", cfg.display()))
        .output()
        .with_context(|| {
            format!(
                "cannot start {} (apt-get install grub-common)",
                grub.mkstandalone.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            grub.mkstandalone.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    check_carries(&partial, module)?;
    fs::rename(&partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    Ok(())
}

/// Copy GRUB's module directory into `merged`, add `module` and its `moddep.lst` line.
fn merge_module_dir(base: &Path, module: &Module, merged: &Path) -> Result<()> {
    fs::create_dir_all(merged).with_context(|| format!("cannot create {}", merged.display()))?;
    let entries = fs::read_dir(base).with_context(|| format!("cannot list {}", base.display()))?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_MODULE_DIR_ENTRIES {
            bail!(
                "more than {MAX_MODULE_DIR_ENTRIES} entries in {}",
                base.display()
            );
        }
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), merged.join(entry.file_name()))
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    for dep in &module.deps {
        if !merged.join(format!("{dep}.mod")).is_file() {
            bail!(
                "{} needs GRUB module {dep}, which {} does not have",
                module.path.display(),
                base.display()
            );
        }
    }
    fs::copy(&module.path, merged.join(format!("{}.mod", module.name)))
        .with_context(|| format!("cannot copy {}", module.path.display()))?;
    let moddep_path = merged.join("moddep.lst");
    let moddep = fs::read_to_string(&moddep_path)
        .with_context(|| format!("{} has no moddep.lst", base.display()))?;
    let prefix = format!("{}:", module.name);
    let mut out: String = moddep
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{}: {}\n", module.name, module.deps.join(" ")));
    fs::write(&moddep_path, out).context("cannot write the merged moddep.lst")?;
    Ok(())
}

/// The image must carry the module: grub-mkstandalone puts built-in modules in uncompressed, so
/// the module's `hnroot_decide` symbol and its last 256 bytes are in it.
fn check_carries(image: &Path, module: &Module) -> Result<()> {
    let data = fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let module_bytes = fs::read(&module.path)?;
    let tail = &module_bytes[module_bytes.len().saturating_sub(256)..];
    let has = |hay: &[u8], n: &[u8]| !n.is_empty() && hay.windows(n.len()).any(|w| w == n);
    if !has(&data, b"hnroot_decide") || !has(&data, tail) {
        bail!(
            "{} does not contain {} (looked for its symbol table and its last 256 bytes)",
            image.display(),
            module.path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_names_the_build() {
        let text = "grub_version=\"2.06\"\n\ngrub_package_version=\"2.06-13+deb12u2\"\n";
        assert_eq!(
            modinfo_value(text, "grub_package_version").as_deref(),
            Some("2.06-13+deb12u2")
        );
        assert_eq!(modinfo_value(text, "grub_version").as_deref(), Some("2.06"));
        assert_eq!(modinfo_value(text, "grub_package"), None);
    }

    #[test]
    fn sbat_fills_debians_template_and_adds_hnroot() {
        let template = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n\
            grub,5,Free Software Foundation,grub,@UPSTREAM_VERSION@,https://www.gnu.org/software/grub/\n\
            grub.debian,5,Debian,grub2,@DEB_VERSION@,https://tracker.debian.org/pkg/grub2\n";
        let csv = sbat_csv(template, "2.06-13+deb12u2", "0.1.0");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].contains(",grub,2.06,"), "{csv}");
        assert!(lines[2].contains(",grub2,2.06-13+deb12u2,"), "{csv}");
        assert!(lines[3].starts_with("hnroot,1,"), "{csv}");
        assert!(!csv.contains('@'), "{csv}");
    }

    #[test]
    fn the_installed_grub_is_read_from_its_module_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Grub::at(dir.path()).is_err(), "no kernel.img");
        fs::write(dir.path().join("kernel.img"), b"").unwrap();
        fs::write(
            dir.path().join("modinfo.sh"),
            "grub_package_version=\"2.12-9+deb13u4\"\n",
        )
        .unwrap();
        assert_eq!(Grub::at(dir.path()).unwrap().version, "2.12-9+deb13u4");
    }

    #[test]
    fn an_image_must_carry_the_module_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hnroot.mod");
        let tail: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        fs::write(&path, [b"hnroot_decide".as_slice(), &tail].concat()).unwrap();
        let module = Module {
            path,
            name: "hnroot".into(),
            deps: vec![],
            built_for: "x".into(),
            sbat: PathBuf::new(),
        };
        let image = dir.path().join("BOOTX64.EFI");
        fs::write(
            &image,
            [b"MZ..".as_slice(), b"hnroot_decide", &tail, b"end"].concat(),
        )
        .unwrap();
        check_carries(&image, &module).unwrap();
        fs::write(
            &image,
            [b"MZ..".as_slice(), b"hnroot_decide", &tail[..200]].concat(),
        )
        .unwrap();
        let err = check_carries(&image, &module).unwrap_err().to_string();
        assert!(err.contains("does not contain"), "{err}");
    }

    /// A real module of the installed GRUB (search.mod, with real .moddeps) stands in for
    /// hnroot.mod: its identity is read from its sections and merged into moddep.lst.
    #[test]
    fn a_module_is_merged_with_its_dependencies() {
        let base = Path::new(GRUB_MODULES_DIR);
        if !base.join("search.mod").is_file() {
            eprintln!("SKIPPED: no {GRUB_MODULES_DIR} (apt-get install grub-efi-amd64-bin)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("extra.mod");
        fs::copy(base.join("search.mod"), &path).unwrap();
        let (name, deps, version) = identity(&path).unwrap();
        assert_eq!(name, "search");
        assert_eq!(version, None);
        let module = Module {
            path,
            name,
            deps,
            built_for: "x".into(),
            sbat: PathBuf::new(),
        };
        let merged = dir.path().join("merged");
        merge_module_dir(base, &module, &merged).unwrap();
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

    /// The kit `cargo xtask test` builds (HNROOT_GRUB_KIT) holds a module for Debian 12's and
    /// Debian 13's GRUB, and gives each GRUB build the module built for it.
    #[test]
    fn the_built_kit_gives_each_grub_its_own_module() {
        let Some(dir) = std::env::var_os("HNROOT_GRUB_KIT") else {
            assert!(
                std::env::var_os("HNROOT_REQUIRE_GRUB_KIT").is_none(),
                "HNROOT_REQUIRE_GRUB_KIT is set but HNROOT_GRUB_KIT is not"
            );
            eprintln!("SKIPPED: no module kit (HNROOT_GRUB_KIT; `cargo xtask grub-module`)");
            return;
        };
        let kit = ModuleKit::at(Path::new(&dir));
        let builds = kit.builds();
        for series in ["2.06-", "2.12-"] {
            assert!(
                builds.iter().any(|b| b.starts_with(series)),
                "the kit lacks a GRUB {series}* build: {builds:?}"
            );
        }
        for version in &builds {
            let grub = Grub {
                modules_dir: PathBuf::from("/nonexistent"),
                version: version.clone(),
                mkstandalone: PathBuf::from("grub-mkstandalone"),
            };
            let module = kit.module_for(&grub).unwrap();
            assert_eq!(&module.built_for, version);
            assert_eq!(module.path, kit.dir.join(version).join(MODULE_FILE));
            assert_eq!(module.name, "hnroot");
            let sbat = fs::read_to_string(&module.sbat).unwrap();
            assert!(sbat.contains(&format!(",grub2,{version},")), "{sbat}");
        }
        let other = Grub {
            modules_dir: PathBuf::from("/nonexistent"),
            version: "2.12-9+deb13u99".into(),
            mkstandalone: PathBuf::from("grub-mkstandalone"),
        };
        let err = kit.module_for(&other).unwrap_err().to_string();
        for version in &builds {
            assert!(err.contains(version.as_str()), "{err}");
        }
    }

    #[test]
    fn a_kit_without_the_matching_build_names_both_versions() {
        let kit_dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(kit_dir.path().join("2.06-13+deb12u2")).unwrap();
        fs::write(
            kit_dir.path().join("2.06-13+deb12u2").join(MODULE_FILE),
            b"x",
        )
        .unwrap();
        let grub = Grub {
            modules_dir: PathBuf::from("/nonexistent"),
            version: "2.12-9+deb13u4".into(),
            mkstandalone: PathBuf::from("grub-mkstandalone"),
        };
        let err = ModuleKit::at(kit_dir.path())
            .module_for(&grub)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2.12-9+deb13u4") && err.contains("2.06-13+deb12u2"),
            "{err}"
        );
    }
}
