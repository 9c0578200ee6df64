//! GRUB as hnroot installs it: one EFI executable (`\EFI\BOOT\BOOTX64.EFI`) assembled by
//! `grub-mkimage` from the loader kit the package ships ([`LoaderKit`], `/usr/lib/hnroot/grub`):
//! hnroot's own GRUB (built from Debian's pinned `grub2` source by `hnroot-build`), with
//! `hnroot.mod` and every module `grub.cfg` needs built in, `grub.cfg` and the fleet's own files
//! in a memdisk inside the image, an SBAT section, and hnroot's version record in a `.hnroot`
//! section ([`hnroot_core::loader`]). One file, so a Secure Boot signer signs one file and
//! nothing is loaded from disk that was not signed; and no GRUB of the server's distribution is
//! used or needed.
//!
//! The kit:
//!
//! | in the kit            | what it is                                                       |
//! |-----------------------|------------------------------------------------------------------|
//! | `x86_64-efi/`         | the GRUB build's `kernel.img`, modules, `moddep.lst`, `modinfo.sh`, with `hnroot.mod` |
//! | `grub-mkimage`        | that build's image packer (static)                                |
//! | `grub.cfg`            | the production configuration                                      |
//! | `sbat.csv`            | SBAT metadata: Debian's lines for the GRUB build, and hnroot's     |
//! | `loader-record`       | the version record every image built from the kit carries         |
//!
//! `hnroot.mod` must be built against the exact GRUB it is loaded by (GRUB checks no version when
//! it loads a module): the kit holds one GRUB build and the module built for it, and
//! [`LoaderKit::at`] refuses a kit whose module, modules and record name different builds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::install::grub_fits;
use hnroot_core::loader::{self, Record};
use object::{Object, ObjectSection};

use crate::pe;

/// Where the hnroot package installs its loader kit.
pub const KIT_DIR: &str = "/usr/lib/hnroot/grub";

/// Where an image carries the loader its publisher built and signed for Secure Boot (`hnroot
/// bootloader presign`): what `hnroot bootloader update` writes on a server whose loader is
/// signed, where no signing key is.
pub const PRESIGNED_LOADER: &str = "/usr/lib/hnroot/presigned/BOOTX64.EFI";

/// The GRUB modules' directory in the kit.
pub const MODULES_SUBDIR: &str = "x86_64-efi";

/// The image packer in the kit.
pub const MKIMAGE: &str = "grub-mkimage";

/// The module's file name in the modules' directory.
pub const MODULE_FILE: &str = "hnroot.mod";

/// The SBAT metadata in the kit.
pub const SBAT_FILE: &str = "sbat.csv";

/// The production GRUB configuration in the kit.
pub const GRUB_CFG: &str = "grub.cfg";

/// The version record in the kit.
pub const RECORD_FILE: &str = "loader-record";

/// The module's section holding the GRUB build it was built against.
pub const VERSION_SECTION: &str = ".hnroot.grub-version";

/// Where the embedded configuration lies in the image's memdisk, and the prefix GRUB starts
/// with (its `normal` reads `$prefix/grub.cfg`).
pub const MEMDISK_PREFIX: &str = "(memdisk)/boot/grub";

/// The directory of the fleet's files in the memdisk (`(memdisk)/hnroot/...`).
pub const MEMDISK_FLEET_DIR: &str = "hnroot";
/// The fleet file of trusted keys (`(memdisk)/hnroot/seal-keys`): the minisign public keys,
/// one after another, that the loader checks sealed images with.
pub const SEAL_KEYS_FILE: &str = "seal-keys";
/// The fleet file that makes the loader boot only sealed images
/// (`(memdisk)/hnroot/require-sealed`).
pub const REQUIRE_SEALED_FILE: &str = "require-sealed";

/// Built into every image; grub-mkimage adds their dependencies from `moddep.lst`.
/// - part_gpt: the disk's partition table; fat, ext2, btrfs, xfs: the ESP and hostpart;
/// - search (with search_label, search_fs_uuid): find hostpart; loopback: the image file;
/// - probe: read the image's filesystem UUID and hostpart's PARTUUID for the command line;
/// - linux: load the kernel and initrd (EFI handover); efi_gop: hand the framebuffer over;
/// - normal, configfile, echo, test, true (`true` and `false`), sleep, ls, reboot, halt: the
///   configuration's script and its errors (`grub.cfg` fails an entry with `false`);
/// - gzio, zstd: compressed btrfs extents;
/// - memdisk, tar: the memdisk holding `grub.cfg` and the fleet's files.
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
    "memdisk",
    "tar",
];

/// `hnroot.mod` with what it says about itself.
#[derive(Clone, Debug)]
pub struct Module {
    /// The module file.
    pub path: PathBuf,
    /// Its `.modname`.
    pub name: String,
    /// Its `.moddeps`.
    pub deps: Vec<String>,
    /// The GRUB build it was built against (its version section).
    pub built_for: String,
}

impl Module {
    /// The module at `path`; it must say which GRUB it was built for.
    pub fn load(path: &Path) -> Result<Module> {
        let (name, deps, inside) = identity(path)?;
        let built_for = inside.ok_or_else(|| {
            anyhow!(
                "{} has no {VERSION_SECTION} section: it does not say which GRUB it fits",
                path.display()
            )
        })?;
        Ok(Module {
            path: path.to_owned(),
            name,
            deps,
            built_for,
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

/// `name="value"` in a `modinfo.sh`.
fn modinfo_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(name)?.strip_prefix('=')?;
        let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

/// The loader kit: one GRUB build, `hnroot.mod` built for it, its image packer, the
/// configuration, SBAT metadata and the version record, checked to agree.
#[derive(Clone, Debug)]
pub struct LoaderKit {
    /// Its directory ([`KIT_DIR`] when installed from the package).
    pub dir: PathBuf,
    /// The GRUB modules' directory.
    pub modules_dir: PathBuf,
    /// The GRUB build (`grub_package_version` in `modinfo.sh`).
    pub grub_version: String,
    /// `hnroot.mod`.
    pub module: Module,
    /// The image packer.
    pub mkimage: PathBuf,
    /// The SBAT metadata.
    pub sbat: PathBuf,
    /// The version record's text.
    pub record_text: String,
}

impl LoaderKit {
    /// The kit in `dir`, every part looked for before anything is built or written.
    pub fn at(dir: &Path) -> Result<LoaderKit> {
        let modules_dir = dir.join(MODULES_SUBDIR);
        let hint = "the hnroot package ships it (apt-get install --reinstall hnroot), `cargo \
                    xtask grub-module` builds one";
        if !modules_dir.join("kernel.img").is_file() {
            bail!(
                "looked for hnroot's GRUB in the loader kit {}: there is no {}/kernel.img; {hint}",
                dir.display(),
                MODULES_SUBDIR
            );
        }
        let info = modules_dir.join("modinfo.sh");
        let text = fs::read_to_string(&info)
            .with_context(|| format!("looked for the GRUB build in {}", info.display()))?;
        let grub_version = modinfo_value(&text, "grub_package_version")
            .or_else(|| modinfo_value(&text, "grub_version"))
            .ok_or_else(|| {
                anyhow!(
                    "{} names no grub_package_version: cannot tell which GRUB this is",
                    info.display()
                )
            })?;
        let module = Module::load(&modules_dir.join(MODULE_FILE))?;
        grub_fits(&module.built_for, &grub_version).map_err(|m| anyhow!("{m}"))?;
        let mkimage = dir.join(MKIMAGE);
        if !is_executable(&mkimage) {
            bail!(
                "looked for GRUB's image packer at {}: there is no executable file there; {hint}",
                mkimage.display()
            );
        }
        let sbat = dir.join(SBAT_FILE);
        if !sbat.is_file() {
            bail!(
                "{} is missing: the image needs SBAT metadata; {hint}",
                sbat.display()
            );
        }
        let record_path = dir.join(RECORD_FILE);
        let record_text = fs::read_to_string(&record_path)
            .with_context(|| format!("cannot read the version record {}", record_path.display()))?;
        let record = loader::parse_record(record_text.as_bytes())
            .map_err(|e| anyhow!("{}: {e}", record_path.display()))?;
        if record.grub != grub_version {
            bail!(
                "{} names GRUB {}, but the kit's GRUB is {grub_version}: a kit from two builds",
                record_path.display(),
                record.grub
            );
        }
        Ok(LoaderKit {
            dir: dir.to_owned(),
            modules_dir,
            grub_version,
            module,
            mkimage,
            sbat,
            record_text,
        })
    }

    /// The record every image built from the kit carries.
    pub fn record(&self) -> Result<Record<'_>> {
        loader::parse_record(self.record_text.as_bytes())
            .map_err(|e| anyhow!("the kit's version record: {e}"))
    }

    /// The kit's `grub.cfg`.
    pub fn grub_cfg(&self) -> Result<String> {
        let path = self.dir.join(GRUB_CFG);
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
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

/// A file the fleet puts into the image (`(memdisk)/hnroot/<name>`): its kernel-argument
/// defaults, later its trusted keys. Inside the image, so the image's one signature covers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetFile {
    /// Its name under `(memdisk)/hnroot/` (one path component).
    pub name: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Build `out` from `kit`: GRUB with [`BASE_MODULES`], `extra_modules` and `hnroot.mod` built in,
/// `grub_cfg` and `fleet` in the memdisk, the kit's SBAT metadata and version record. `work` is
/// scratch space (emptied). The image is written beside `out`, checked, and renamed over it.
pub fn build_efi(
    kit: &LoaderKit,
    grub_cfg: &str,
    extra_modules: &[&str],
    fleet: &[FleetFile],
    work: &Path,
    out: &Path,
) -> Result<()> {
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("cannot empty {}", work.display()))?;
    }
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut modules: Vec<&str> = BASE_MODULES.to_vec();
    modules.extend_from_slice(extra_modules);
    modules.push(&kit.module.name);
    let mut seen = std::collections::BTreeSet::new();
    modules.retain(|m| seen.insert(*m));
    for m in &modules {
        if !kit.modules_dir.join(format!("{m}.mod")).is_file() {
            bail!(
                "GRUB module {m}.mod is not in {}: the kit's GRUB lacks it",
                kit.modules_dir.display()
            );
        }
    }
    let mut files = vec![(
        "boot/grub/grub.cfg".to_owned(),
        grub_cfg.as_bytes().to_vec(),
    )];
    for f in fleet {
        if f.name.is_empty() || f.name.contains('/') || f.name.starts_with('.') {
            bail!(
                "fleet file name {:?}: one plain name under (memdisk)/{MEMDISK_FLEET_DIR}/",
                f.name
            );
        }
        files.push((format!("{MEMDISK_FLEET_DIR}/{}", f.name), f.data.clone()));
    }
    let memdisk = work.join("memdisk.tar");
    fs::write(&memdisk, crate::tar::ustar(&files)?)
        .with_context(|| format!("cannot write {}", memdisk.display()))?;
    let partial = out.with_extension("partial");
    crate::tool::run_with_hint(
        Command::new(&kit.mkimage)
            .args(["-O", "x86_64-efi"])
            .arg("-d")
            .arg(&kit.modules_dir)
            .args(["-p", MEMDISK_PREFIX])
            .arg("-m")
            .arg(&memdisk)
            .arg("--sbat")
            .arg(&kit.sbat)
            // No shim_lock verifier: under Secure Boot, GRUB would otherwise ask shim to verify
            // every kernel and refuse them all without shim. hnroot's loader is started by the
            // firmware itself (signed with the operator's db key, `sign_efi`) and verifies the
            // kernel and initramfs through the image's seal, which a signed loader requires
            // (`hnroot_core::loader::Signing`).
            .arg("--disable-shim-lock")
            .arg("-o")
            .arg(&partial)
            .args(&modules),
        "the loader kit's grub-mkimage: is the hnroot package whole?",
    )?;
    check_carries(&partial, &kit.module)?;
    let image = fs::read(&partial).with_context(|| format!("cannot read {}", partial.display()))?;
    let image = pe::add_section(&image, &loader::SECTION_NAME, kit.record_text.as_bytes())
        .with_context(|| format!("adding the version record to {}", partial.display()))?;
    // Read the record back as `hnroot bootloader status` will.
    match loader::identify(Some(&image)) {
        loader::Loader::Recorded(_) => {}
        other => bail!(
            "{}: the version record does not read back ({other:?})",
            partial.display()
        ),
    }
    fs::write(&partial, &image).with_context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    Ok(())
}

/// A Secure Boot signing key and its certificate (PEM files, as `sbsign` takes them): the
/// operator's key whose certificate is in the firmware's `db`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecureBootKey {
    /// The private key.
    pub key: PathBuf,
    /// The certificate.
    pub cert: PathBuf,
}

/// Sign the EFI image `efi` in place for Secure Boot (`sbsign`, into a file beside it, checked
/// with `sbverify --cert`, then renamed over it).
pub fn sign_efi(efi: &Path, key: &SecureBootKey) -> Result<()> {
    let signed = efi.with_extension("signed");
    crate::tool::run_with_hint(
        Command::new("sbsign")
            .arg("--key")
            .arg(&key.key)
            .arg("--cert")
            .arg(&key.cert)
            .arg("--output")
            .arg(&signed)
            .arg(efi),
        "sbsign signs the loader for Secure Boot (package sbsigntool)",
    )
    .with_context(|| format!("signing {} for Secure Boot", efi.display()))?;
    crate::tool::run_with_hint(
        Command::new("sbverify")
            .arg("--cert")
            .arg(&key.cert)
            .arg(&signed),
        "sbverify checks the signature (package sbsigntool)",
    )
    .with_context(|| {
        format!(
            "the signed loader does not verify with {}",
            key.cert.display()
        )
    })?;
    fs::rename(&signed, efi)
        .with_context(|| format!("cannot rename {} to {}", signed.display(), efi.display()))?;
    Ok(())
}

/// The image must carry the module: grub-mkimage puts built-in modules in uncompressed, so the
/// module's `hnroot_decide` symbol and its last 256 bytes are in it.
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

/// The environment variable that hands a built kit to the workspace tests.
pub const KIT_ENV: &str = "HNROOT_GRUB_KIT";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_names_the_build() {
        let text = "grub_version=\"2.12\"\n\ngrub_package_version=\"2.12-9+deb13u2\"\n";
        assert_eq!(
            modinfo_value(text, "grub_package_version").as_deref(),
            Some("2.12-9+deb13u2")
        );
        assert_eq!(modinfo_value(text, "grub_version").as_deref(), Some("2.12"));
        assert_eq!(modinfo_value(text, "grub_package"), None);
    }

    #[test]
    fn sbat_fills_debians_template_and_adds_hnroot() {
        let template = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n\
            grub,5,Free Software Foundation,grub,@UPSTREAM_VERSION@,https://www.gnu.org/software/grub/\n\
            grub.debian,5,Debian,grub2,@DEB_VERSION@,https://tracker.debian.org/pkg/grub2\n";
        let csv = sbat_csv(template, "2.12-9+deb13u2", "0.1.0");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].contains(",grub,2.12,"), "{csv}");
        assert!(lines[2].contains(",grub2,2.12-9+deb13u2,"), "{csv}");
        assert!(lines[3].starts_with("hnroot,1,"), "{csv}");
        assert!(!csv.contains('@'), "{csv}");
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

    #[test]
    fn a_kit_without_grub_is_refused_naming_what_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = LoaderKit::at(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("kernel.img") && err.contains("hnroot package"),
            "{err}"
        );
    }

    /// The kit `cargo xtask test` builds (HNROOT_GRUB_KIT): one GRUB build, hnroot.mod built
    /// for it, an image packer that runs here, and an image built from it that carries the
    /// module and reads back its record.
    #[test]
    fn the_built_kit_builds_an_image_with_its_record() {
        let Some(dir) = std::env::var_os(KIT_ENV) else {
            assert!(
                std::env::var_os("HNROOT_REQUIRE_GRUB_KIT").is_none(),
                "HNROOT_REQUIRE_GRUB_KIT is set but {KIT_ENV} is not"
            );
            eprintln!("SKIPPED: no loader kit ({KIT_ENV}; `cargo xtask grub-module`)");
            return;
        };
        let kit = LoaderKit::at(Path::new(&dir)).unwrap();
        assert_eq!(kit.module.built_for, kit.grub_version);
        assert_eq!(kit.module.name, "hnroot");
        let sbat = fs::read_to_string(&kit.sbat).unwrap();
        assert!(
            sbat.contains(&format!(",grub2,{},", kit.grub_version)),
            "{sbat}"
        );
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("BOOTX64.EFI");
        let fleet = [FleetFile {
            name: "cmdline".into(),
            data: b"console=ttyS1,115200\n".to_vec(),
        }];
        build_efi(
            &kit,
            &kit.grub_cfg().unwrap(),
            &[],
            &fleet,
            &work.path().join("w"),
            &out,
        )
        .unwrap();
        let image = fs::read(&out).unwrap();
        let loader::Loader::Recorded(r) = loader::identify(Some(&image)) else {
            panic!("no record in the image");
        };
        assert_eq!(r, kit.record().unwrap());
        assert!(image
            .windows(b"console=ttyS1,115200".len())
            .any(|w| w == b"console=ttyS1,115200"));
        // What `hnroot reboot` reads back from the loader's bytes: the fleet's file and the
        // configuration, through the memdisk as grub-mkimage laid it out.
        assert_eq!(
            hnroot_core::memdisk::file(&image, "hnroot/cmdline"),
            Ok(Some(&b"console=ttyS1,115200\n"[..]))
        );
        assert_eq!(
            hnroot_core::memdisk::file(&image, "boot/grub/grub.cfg"),
            Ok(Some(kit.grub_cfg().unwrap().as_bytes()))
        );
        assert_eq!(
            hnroot_core::memdisk::file(&image, hnroot_core::layout::FLEET_ARGS_MEMDISK_PATH),
            Ok(None)
        );
        assert_eq!(
            format!(
                "{MEMDISK_FLEET_DIR}/{}",
                hnroot_core::layout::FLEET_ARGS_NAME
            ),
            hnroot_core::layout::FLEET_ARGS_MEMDISK_PATH
        );
        let bad = [FleetFile {
            name: "../x".into(),
            data: vec![],
        }];
        assert!(build_efi(&kit, "", &[], &bad, &work.path().join("w"), &out).is_err());
    }
}
