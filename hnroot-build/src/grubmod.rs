//! Builds `hnroot.mod`, the GRUB module that asks `hnroot-core` what to boot, against the exact
//! source of hnroot's own GRUB ([`GRUB`], built by [`crate::grub`]), and lays out the loader kit
//! the package ships (`cargo xtask grub-module`). It never installs anything.
//!
//! The steps (all artifacts under `target/hnroot-build/`):
//!
//! 1. **GRUB.** The built tree of [`crate::grub::tree`]: its headers, `config.h`, the module
//!    flags its `grub-core/Makefile` uses, its `kernel_syms.lst` and module verifier.
//! 2. **Rust half.** `hnroot-ffi` as a `staticlib` for `x86_64-unknown-none` (profile `grub`:
//!    LTO, `opt-level="s"`, panic=abort), partially linked with `--gc-sections` and a script
//!    that merges rustc's per-function sections; every global but the `hnroot_*` API made local
//!    (GRUB registers every global of a module, so a module-local `memcpy` would shadow the
//!    kernel's).
//! 3. **C half.** `grub-module/*.c` compiled with the flags that GRUB tree's own
//!    `grub-core/Makefile` uses for a module (read from the configured tree, not copied here),
//!    and `HNROOT_GRUB_UPSTREAM` (212) where GRUB's interfaces differ between releases.
//! 4. **Module.** `ld -r` of both, GOT-relative relocations relaxed ([`crate::relax`]), then what
//!    GRUB's `genmod.sh` does: `.modname` and `.moddeps` sections, `strip` with GRUB's keep list,
//!    that GRUB's `build-grub-module-verifier`; then every undefined symbol checked against
//!    `kernel_syms.lst` and the exports of that GRUB's modules listed as dependencies.
//! 5. **Kit** ([`build_kit`]): `x86_64-efi/` (the GRUB's `kernel.img`, modules and lists, with
//!    `hnroot.mod` and its `moddep.lst` line), the static `grub-mkimage`, `grub.cfg`, `sbat.csv`
//!    (Debian's template from the same source, and hnroot's line) and `loader-record` (the
//!    version record every image built from the kit carries: `hnroot_core::loader`).
//!
//! GRUB checks no version when it loads a module, so a mismatch would be silent: the version is
//! recorded in the module (section [`VERSION_SECTION`]) and [`check_built_for`] and
//! `hnroot_install::grub::LoaderKit::at` refuse a module built for another GRUB.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::buildenv::{self, run};
use crate::grub;
use crate::relax;
use crate::release::GRUB;

/// The module's name (`.modname`) and file stem.
pub const MODULE_NAME: &str = "hnroot";
/// Modules `hnroot.mod` needs loaded first (`.moddeps`): `extcmd` for the option parser, `disk`
/// for `grub_disk_write`, `loopback` for opening image files as disks. Filesystems and
/// partitions are identified by hnroot-core's probers, not by GRUB's `probe` command; the one
/// filesystem driver an image needs is loaded on demand (`grub_dl_load`); `gcry_sha256` hashes a
/// sealed image's boot files.
pub const MODULE_DEPS: &[&str] = &["extcmd", "disk", "loopback", "gcry_sha256"];
/// Non-allocated section of the module holding the GRUB version it was built against.
pub const VERSION_SECTION: &str = ".hnroot.grub-version";

const RUST_TARGET: &str = "x86_64-unknown-none";
/// Symbols `genmod.sh` keeps when it strips a module.
const STRIP_KEEP: &[&str] = &[
    "grub_mod_init",
    "grub_mod_fini",
    "_grub_mod_init",
    "_grub_mod_fini",
];
/// Sections `genmod.sh` removes.
const STRIP_REMOVE: &[&str] = &[
    ".note.gnu.gold-version",
    ".note.GNU-stack",
    ".gnu.build.attributes",
    ".rel.gnu.build.attributes",
    ".rela.gnu.build.attributes",
    ".eh_frame",
    ".rela.eh_frame",
    ".rel.eh_frame",
    ".note",
    ".comment",
    ".ARM.exidx",
];

/// Merge rustc's per-function sections (one `.text.*` per function) into one of each kind and
/// drop what GRUB never loads: LLVM bitcode, notes, unwind tables.
const RUST_LINK_SCRIPT: &str = "SECTIONS
{
  .text : { *(.text .text.*) }
  .rodata : { *(.rodata .rodata.*) }
  .data : { *(.data .data.*) *(.data.rel.ro .data.rel.ro.*) }
  .bss : { *(.bss .bss.*) *(COMMON) }
  /DISCARD/ : { *(.llvmbc) *(.llvmcmd) *(.comment) *(.note .note.*) *(.eh_frame) }
}
";

/// A built module.
#[derive(Debug, Clone)]
pub struct Module {
    /// `target/hnroot-build/grub-module/<GRUB version>/hnroot.mod`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Where the module and its version record are written.
pub fn output_dir() -> PathBuf {
    buildenv::build_root()
        .join("grub-module")
        .join(GRUB.version)
}

/// The environment variable that hands the kit's directory to the workspace tests
/// (`hnroot install`'s CLI tests, the kit's own test).
pub const KIT_ENV: &str = hnroot_install::grub::KIT_ENV;

/// Set (by `cargo xtask test`) when a missing kit is a failure rather than a skip.
pub const REQUIRE_KIT_ENV: &str = "HNROOT_REQUIRE_GRUB_KIT";

/// The loader kit as the package installs it (`/usr/lib/hnroot/grub`).
pub fn kit_dir() -> PathBuf {
    buildenv::build_root().join("grub-kit")
}

/// Build the module and lay out the loader kit around it ([`kit_dir`]), checked by the product's
/// own reader (`LoaderKit::at`): what `hnroot install`, the images of the suites and the Debian
/// package take.
pub fn build_kit() -> Result<hnroot_install::grub::LoaderKit> {
    use hnroot_install::grub as g;
    let _lock = buildenv::lock("grub-kit")?;
    let module = build()?;
    let tree = grub::tree()?;
    let core = tree.join("grub-core");
    let kit = kit_dir();
    // The kit is replaced only when what goes into it changed: suites running side by side read
    // it while another one asks for it.
    let cfg_path = buildenv::workspace_root().join("grub-module/grub.cfg");
    let key = format!(
        "kit v1 {} {:016x} {:016x} {:016x} {}\n",
        GRUB.version,
        buildenv::fnv1a(&buildenv::read(&module.path)?),
        buildenv::fnv1a(&buildenv::read(&cfg_path)?),
        buildenv::fnv1a(&buildenv::read(&tree.join("grub-mkimage"))?),
        env!("CARGO_PKG_VERSION"),
    );
    let key_file = kit.with_extension("key");
    if fs::read_to_string(&key_file).ok().as_deref() == Some(key.as_str()) {
        if let Ok(k) = g::LoaderKit::at(&kit) {
            return Ok(k);
        }
    }
    let _ = fs::remove_file(&key_file);
    let staging = buildenv::fresh_dir(&kit.with_extension("partial"))?;
    let modules = staging.join(g::MODULES_SUBDIR);
    fs::create_dir_all(&modules)?;
    let mut copied = 0usize;
    for entry in fs::read_dir(&core).with_context(|| format!("listing {}", core.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = name.ends_with(".mod")
            || name.ends_with(".lst")
            || matches!(name.as_str(), "kernel.img" | "modinfo.sh");
        if wanted && entry.file_type()?.is_file() {
            fs::copy(entry.path(), modules.join(&name))
                .with_context(|| format!("copying {}", entry.path().display()))?;
            copied += 1;
        }
    }
    if copied < 100 {
        bail!(
            "only {copied} modules and lists in {}: the GRUB build looks incomplete",
            core.display()
        );
    }
    fs::copy(&module.path, modules.join(g::MODULE_FILE))
        .with_context(|| format!("copying {} into the kit", module.path.display()))?;
    let moddep_path = modules.join("moddep.lst");
    let moddep = fs::read_to_string(&moddep_path).context("reading GRUB's moddep.lst")?;
    let mut lines: String = moddep
        .lines()
        .filter(|l| !l.starts_with(&format!("{MODULE_NAME}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    lines.push_str(&format!("{MODULE_NAME}: {}\n", MODULE_DEPS.join(" ")));
    fs::write(&moddep_path, lines)?;
    run(Command::new("strip")
        .arg("-o")
        .arg(staging.join(g::MKIMAGE))
        .arg(tree.join("grub-mkimage")))
    .context("copying grub-mkimage into the kit")?;
    grub::check_static(&staging.join(g::MKIMAGE))?;
    let template_path = tree.join("debian/sbat.debian.csv.in");
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("reading Debian's SBAT template {}", template_path.display()))?;
    let hnroot_version = env!("CARGO_PKG_VERSION");
    fs::write(
        staging.join(g::SBAT_FILE),
        g::sbat_csv(&template, GRUB.version, hnroot_version),
    )?;
    let version = hnroot_core::loader::Version::parse(hnroot_version)
        .with_context(|| format!("hnroot's version {hnroot_version} is not major.minor.patch"))?;
    let record = hnroot_core::loader::Record::current(version, GRUB.version);
    let mut text = [0u8; hnroot_core::loader::RECORD_MAX];
    let n = record
        .encode(&mut text)
        .map_err(|e| anyhow::anyhow!("the version record: {e}"))?;
    fs::write(staging.join(g::RECORD_FILE), &text[..n])?;
    fs::copy(
        buildenv::workspace_root().join("grub-module/grub.cfg"),
        staging.join(g::GRUB_CFG),
    )
    .context("copying grub.cfg into the kit")?;
    if kit.exists() {
        fs::remove_dir_all(&kit).with_context(|| format!("removing {}", kit.display()))?;
    }
    fs::rename(&staging, &kit)
        .with_context(|| format!("moving {} to {}", staging.display(), kit.display()))?;
    let built = g::LoaderKit::at(&kit)?;
    buildenv::write_atomic(&key_file, key.as_bytes())?;
    Ok(built)
}

/// Build `hnroot.mod` for hnroot's GRUB.
pub fn build() -> Result<Module> {
    let tree = grub::tree()?;
    let flags = ModuleFlags::read(&tree)?;
    let staticlib = build_staticlib()?;

    let out = output_dir();
    let work = out.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let rust = link_rust(&staticlib, &work)?;
    let objects = compile_c(&tree, &flags, &work)?;
    let merged = work.join("hnroot.module");
    let mut link = Command::new(&flags.cc);
    link.args(&flags.ldflags)
        .arg("-o")
        .arg(&merged)
        .args(&objects)
        .arg(&rust);
    run(&mut link)?;
    let relaxed = relax::relax_file(&merged)?;
    eprintln!(
        "    relaxed {} GOT-relative relocations ({} calls, {} jumps, {} loads)",
        relaxed.total(),
        relaxed.calls,
        relaxed.jumps,
        relaxed.loads
    );

    let module = genmod(&tree, &flags, &merged, &work)?;
    check_symbols(&tree, &module, &tree.join("grub-core"))?;

    let final_path = out.join(format!("{MODULE_NAME}.mod"));
    fs::copy(&module, &final_path)
        .with_context(|| format!("copying the module to {}", final_path.display()))?;
    fs::write(
        version_record_path(&final_path),
        format!("{}\n", GRUB.version),
    )
    .context("writing the GRUB version record")?;
    // Read both records back as every consumer of the module will.
    check_built_for(&final_path, GRUB.version)?;
    let size = fs::metadata(&final_path)?.len();
    Ok(Module {
        path: final_path,
        size,
    })
}

/// The version record beside a module file.
pub fn version_record_path(module: &Path) -> PathBuf {
    let mut name = module.as_os_str().to_owned();
    name.push(".grub-version");
    PathBuf::from(name)
}

/// Refuse `module` unless both its version records (the section inside and the file beside it)
/// name `grub_version` (the GRUB build it is to be loaded by). Call before putting the module
/// into a GRUB image or directory.
pub fn check_built_for(module: &Path, grub_version: &str) -> Result<()> {
    let data = fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF object", module.display()))?;
    let inside = file
        .section_by_name(VERSION_SECTION)
        .and_then(|s| s.data().ok())
        .map(|d| String::from_utf8_lossy(d).trim_end_matches('\0').to_owned())
        .with_context(|| {
            format!(
                "{} has no {VERSION_SECTION} section: not built by `cargo xtask grub-module`; \
                 rebuild it",
                module.display()
            )
        })?;
    let record = version_record_path(module);
    let beside = fs::read_to_string(&record)
        .with_context(|| format!("reading {}", record.display()))?
        .trim()
        .to_owned();
    if inside != grub_version || beside != grub_version {
        bail!(
            "{} was built for Debian grub2 {inside} (record beside it: {beside}) but is to be \
             loaded by GRUB {grub_version}; GRUB would load it without checking. Not using \
             it: rebuild with `cargo xtask grub-module`",
            module.display()
        );
    }
    Ok(())
}

/// The compile and link flags GRUB's `grub-core/Makefile` gives a module, as `make` expands them.
struct ModuleFlags {
    cc: String,
    /// Preprocessor and compiler flags, with `-DGRUB_FILE` left for the caller.
    cflags: Vec<String>,
    ldflags: Vec<String>,
    objcopy: String,
    strip: String,
}

impl ModuleFlags {
    fn read(tree: &Path) -> Result<ModuleFlags> {
        let probe = buildenv::build_root()
            .join("grub")
            .join("print-module-flags.mk");
        fs::write(
            &probe,
            "hnroot-print-flags:\n\
             \t$(info CC=$(TARGET_CC))\n\
             \t$(info CFLAGS=$(DEFS) $(DEFAULT_INCLUDES) $(INCLUDES) $(AM_CPPFLAGS) \
             $(CPPFLAGS_MODULE) $(CPPFLAGS) $(AM_CFLAGS) $(CFLAGS_MODULE) $(CFLAGS))\n\
             \t$(info LDFLAGS=$(AM_CFLAGS) $(CFLAGS_MODULE) $(CFLAGS) $(AM_LDFLAGS) \
             $(LDFLAGS_MODULE) $(LDFLAGS))\n\
             \t$(info OBJCOPY=$(TARGET_OBJCOPY))\n\
             \t$(info STRIP=$(TARGET_STRIP))\n\
             \t@:\n",
        )?;
        let text = run(Command::new("make")
            .args(["-s", "-f", "Makefile", "-f"])
            .arg(&probe)
            .arg("hnroot-print-flags")
            .current_dir(tree.join("grub-core")))?;
        let get = |key: &str| -> Result<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(str::to_owned)
                .with_context(|| format!("GRUB's Makefile printed no {key}: {text}"))
        };
        let words = |s: String| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let flags = ModuleFlags {
            cc: get("CC")?,
            cflags: words(get("CFLAGS")?)
                .into_iter()
                .filter(|f| !f.starts_with("-DGRUB_FILE="))
                .collect(),
            ldflags: words(get("LDFLAGS")?),
            objcopy: get("OBJCOPY")?,
            strip: get("STRIP")?,
        };
        for needed in [
            "-mcmodel=large",
            "-mno-red-zone",
            "-ffreestanding",
            "-nostdinc",
        ] {
            if !flags.cflags.iter().any(|f| f == needed) {
                bail!("GRUB's module flags lack {needed}: {:?}", flags.cflags);
            }
        }
        // A module is a relocatable object: 2.06 links with -Wl,-r,-d, 2.12 with -Wl,-r (its
        // modules are built -fno-common, leaving -d nothing to allocate).
        if !flags
            .ldflags
            .iter()
            .any(|f| f == "-Wl,-r,-d" || f == "-Wl,-r")
        {
            bail!(
                "GRUB's module link flags lack -Wl,-r (a relocatable link): {:?}",
                flags.ldflags
            );
        }
        Ok(flags)
    }
}

/// `cargo rustc -p hnroot-ffi --profile grub --target x86_64-unknown-none --crate-type staticlib`.
fn build_staticlib() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    buildenv::step(
        "hnroot-ffi staticlib for GRUB",
        &[
            &cargo,
            "rustc",
            "-p",
            "hnroot-ffi",
            "--profile",
            "grub",
            "--target",
            RUST_TARGET,
            "--features",
            "panic-handler",
            "--crate-type",
            "staticlib",
        ],
    )?;
    let lib = buildenv::target_dir()
        .join(RUST_TARGET)
        .join("grub")
        .join("libhnroot_ffi.a");
    if !lib.exists() {
        bail!("cargo built hnroot-ffi but {} is missing", lib.display());
    }
    Ok(lib)
}

/// Partially link the staticlib into one object holding only what the `hnroot_*` API reaches,
/// with only that API global. Returns the object.
fn link_rust(staticlib: &Path, work: &Path) -> Result<PathBuf> {
    let whole = work.join("rust-whole.o");
    run(Command::new("ld")
        .args(["-r", "--whole-archive"])
        .arg(staticlib)
        .arg("-o")
        .arg(&whole))?;
    let data = fs::read(&whole)?;
    let file = object::File::parse(&*data).context("parsing the Rust object")?;
    let exports: BTreeSet<String> = file
        .symbols()
        .filter(|s| s.is_global() && s.is_definition())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .filter(|n| n.starts_with("hnroot_"))
        .collect();
    if !exports.contains("hnroot_decide") {
        bail!(
            "the hnroot-ffi staticlib exports no hnroot_decide; found {:?}",
            exports
        );
    }
    let script = work.join("rust-sections.ld");
    fs::write(&script, RUST_LINK_SCRIPT)?;
    let rust = work.join("rust.o");
    let mut gc = Command::new("ld");
    gc.args(["-r", "--gc-sections", "-T"]).arg(&script);
    for name in &exports {
        gc.arg(format!("--undefined={name}"));
    }
    gc.arg("-o").arg(&rust).arg(&whole);
    run(&mut gc)?;
    let mut localise = Command::new("objcopy");
    for name in &exports {
        localise.arg(format!("--keep-global-symbol={name}"));
    }
    localise
        .args(["-R", ".llvmbc", "-R", ".llvmcmd"])
        .arg(&rust);
    run(&mut localise)?;
    eprintln!(
        "    Rust half: {} bytes before, {} after --gc-sections; exports {}",
        fs::metadata(&whole)?.len(),
        fs::metadata(&rust)?.len(),
        exports.iter().cloned().collect::<Vec<_>>().join(" ")
    );
    Ok(rust)
}

/// The C files of the module, one per job (`grub-module/hnroot-grub.h` lists them).
pub const C_SOURCES: &[&str] = &[
    "hnroot.c",
    "probe.c",
    "device.c",
    "observe.c",
    "bootstate.c",
    "verify.c",
];

/// Compile every file of [`C_SOURCES`] with GRUB's module flags, warnings as errors.
fn compile_c(tree: &Path, flags: &ModuleFlags, work: &Path) -> Result<Vec<PathBuf>> {
    let dir = buildenv::workspace_root().join("grub-module");
    let build = GRUB;
    let upstream = build.upstream_number()?;
    let mut objects = Vec::new();
    for name in C_SOURCES {
        let source = dir.join(name);
        let object = work.join(name.replace(".c", ".o"));
        let mut cc = Command::new(&flags.cc);
        cc.args(&flags.cflags)
            .arg(format!("-DGRUB_FILE=\"grub-module/{name}\""))
            .arg(format!("-DHNROOT_GRUB_VERSION=\"{}\"", build.version))
            .arg(format!("-DHNROOT_GRUB_UPSTREAM={upstream}"))
            .arg("-Werror")
            .arg("-I")
            .arg(
                buildenv::workspace_root()
                    .join("hnroot-ffi")
                    .join("include"),
            )
            .arg("-I")
            .arg(&dir)
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .current_dir(tree.join("grub-core"));
        run(&mut cc)
            .with_context(|| format!("compiling grub-module/{name} with GRUB's module flags"))?;
        objects.push(object);
    }
    Ok(objects)
}

/// What `genmod.sh` does to `merged`: name and dependency sections, GRUB's strip, GRUB's
/// verifier. Adds the version section. Returns the finished module (in `work`).
fn genmod(tree: &Path, flags: &ModuleFlags, merged: &Path, work: &Path) -> Result<PathBuf> {
    let module = work.join(format!("{MODULE_NAME}.mod"));
    let modname = work.join("modname");
    let moddeps = work.join("moddeps");
    let version = work.join("grub-version");
    fs::write(&modname, format!("{MODULE_NAME}\0"))?;
    fs::write(
        &moddeps,
        MODULE_DEPS
            .iter()
            .map(|d| format!("{d}\0"))
            .collect::<String>(),
    )?;
    fs::write(&version, format!("{}\0", GRUB.version))?;
    let mut sections = Command::new(&flags.objcopy);
    sections
        .args(["-R", ".modname", "-R", ".moddeps"])
        .arg(format!("--add-section=.modname={}", modname.display()))
        .arg(format!("--add-section=.moddeps={}", moddeps.display()))
        .arg(format!(
            "--add-section={VERSION_SECTION}={}",
            version.display()
        ))
        .arg(merged)
        .arg(&module);
    run(&mut sections)?;
    let mut strip = Command::new(&flags.strip);
    strip.arg("--strip-unneeded");
    for keep in STRIP_KEEP {
        strip.args(["-K", keep]);
    }
    for remove in STRIP_REMOVE {
        strip.args(["-R", remove]);
    }
    strip.arg(&module);
    run(&mut strip)?;
    let verifier = tree.join("grub-core").join("build-grub-module-verifier");
    run(Command::new(&verifier).arg(&module).args(["x86_64", "efi"]))
        .context("GRUB's module verifier rejected hnroot.mod")?;
    Ok(module)
}

/// Every undefined symbol must be exported by GRUB's kernel or by a module in [`MODULE_DEPS`]
/// (from `grub_modules`, the GRUB build's module directory); the only globals defined must be
/// the module hooks and the `hnroot_*` API.
fn check_symbols(tree: &Path, module: &Path, grub_modules: &Path) -> Result<()> {
    let kernel_syms = tree.join("grub-core").join("kernel_syms.lst");
    let mut available: BTreeSet<String> = fs::read_to_string(&kernel_syms)?
        .lines()
        .filter_map(|l| l.strip_prefix("defined kernel "))
        .map(str::to_owned)
        .collect();
    if available.len() < 100 {
        bail!(
            "{} lists only {} kernel symbols; the GRUB tree looks broken",
            kernel_syms.display(),
            available.len()
        );
    }
    for dep in MODULE_DEPS {
        let path = grub_modules.join(format!("{dep}.mod"));
        let data = fs::read(&path).with_context(|| {
            format!(
                "reading dependency {} (from the GRUB build)",
                path.display()
            )
        })?;
        let file = object::File::parse(&*data)?;
        available.extend(
            file.symbols()
                .filter(|s| s.is_global() && s.is_definition())
                .filter_map(|s| s.name().ok().map(str::to_owned)),
        );
    }
    let data = fs::read(module)?;
    let file = object::File::parse(&*data)?;
    let mut missing = Vec::new();
    let mut stray_globals = Vec::new();
    for symbol in file.symbols() {
        let name = symbol.name().unwrap_or("?").to_owned();
        if symbol.is_undefined() {
            if !name.is_empty() && !available.contains(&name) {
                missing.push(name);
            }
        } else if symbol.is_global()
            && !name.starts_with("hnroot_")
            && !STRIP_KEEP.contains(&name.as_str())
        {
            stray_globals.push(name);
        }
    }
    if !missing.is_empty() {
        bail!(
            "hnroot.mod needs symbols that neither GRUB's kernel ({}) nor its dependencies ({}) \
             export, so GRUB would refuse to load it: {}",
            kernel_syms.display(),
            MODULE_DEPS.join(", "),
            missing.join(", ")
        );
    }
    if !stray_globals.is_empty() {
        bail!(
            "hnroot.mod defines globals besides grub_mod_init/fini and hnroot_*; GRUB would \
             register them and they could shadow the kernel's: {}",
            stray_globals.join(", ")
        );
    }
    Ok(())
}
