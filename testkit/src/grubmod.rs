//! Builds `hnroot.mod`, the GRUB module that asks `hnroot-core` what to boot, against the exact
//! source of the GRUB that will load it (`cargo xtask grub-module`). It never installs the
//! module anywhere; it refuses to build when the installed GRUB is not the one the source
//! matches.
//!
//! The steps (all artifacts under `target/hnroot-build/`):
//!
//! 1. **GRUB headers.** Debian's `grub2` source at [`GRUB_DEBIAN_VERSION`] (`apt-get source`,
//!    with a deb-src entry added when the machine has none), autotools outputs touched so `make`
//!    does not rerun aclocal, `configure --with-platform=efi --target=x86_64`, then only
//!    `make -C grub-core kernel_syms.lst build-grub-module-verifier`. Cached by a stamp file.
//! 2. **Rust half.** `hnroot-ffi` as a `staticlib` for `x86_64-unknown-none` (profile `grub`:
//!    LTO, `opt-level="s"`, panic=abort), partially linked with `--gc-sections` and a script
//!    that merges rustc's per-function sections; every global but the `hnroot_*` API made local
//!    (GRUB registers every global of a module, so a module-local `memcpy` would shadow the
//!    kernel's).
//! 3. **C half.** `grub-module/hnroot.c` compiled with the flags GRUB's own `grub-core/Makefile`
//!    uses for a module (read from the configured tree, not copied here).
//! 4. **Module.** `ld -r` of both, GOT-relative relocations relaxed ([`crate::relax`]), then what
//!    GRUB's `genmod.sh` does: `.modname` and `.moddeps` sections, `strip` with GRUB's keep list,
//!    GRUB's `build-grub-module-verifier`; then every undefined symbol checked against
//!    `kernel_syms.lst` and the exports of the modules listed as dependencies.
//!
//! GRUB checks no version when it loads a module, so a mismatch would be silent: the version is
//! recorded in the module (section [`VERSION_SECTION`]) and beside it (`hnroot.mod.grub-version`),
//! and [`check_installed`] refuses a module built for another GRUB.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::buildenv::{self, run};
use crate::relax;

/// The Debian `grub2` source version the module is built against. It must equal the installed
/// `grub-efi-amd64-bin`: changing it means re-checking `hnroot.c` against the new headers.
pub const GRUB_DEBIAN_VERSION: &str = "2.06-13+deb12u2";
/// The binary package whose modules and `grub-mkimage` the module goes with.
pub const GRUB_BINARY_PACKAGE: &str = "grub-efi-amd64-bin";
/// Where the installed GRUB keeps its x86_64-efi modules.
pub const GRUB_MODULE_DIR: &str = "/usr/lib/grub/x86_64-efi";
/// The module's name (`.modname`) and file stem.
pub const MODULE_NAME: &str = "hnroot";
/// Modules `hnroot.mod` needs loaded first (`.moddeps`): `extcmd` for the option parser, `disk`
/// for `grub_disk_write`, `loopback` for opening image files as disks. Filesystems and
/// partitions are identified by hnroot-core's probers, not by GRUB's `probe` command; the one
/// filesystem driver an image needs is loaded on demand (`grub_dl_load`).
pub const MODULE_DEPS: &[&str] = &["extcmd", "disk", "loopback"];
/// Non-allocated section of the module holding the GRUB version it was built against.
pub const VERSION_SECTION: &str = ".hnroot.grub-version";

const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/hnroot-src.sources";
const DEB_SRC_ENTRY: &str = "Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";
const CONFIGURE_ARGS: &[&str] = &["--with-platform=efi", "--target=x86_64", "--disable-werror"];
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
    /// `target/hnroot-build/grub-module/hnroot.mod`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Where the module and its version record are written.
pub fn output_dir() -> PathBuf {
    buildenv::build_root().join("grub-module")
}

/// The environment variable that hands the kit's directory to the workspace tests
/// (`hnroot install`'s CLI tests).
pub const KIT_ENV: &str = "HNROOT_GRUB_KIT";

/// Set (by `cargo xtask test`) when a missing kit is a failure rather than a skip.
pub const REQUIRE_KIT_ENV: &str = "HNROOT_REQUIRE_GRUB_KIT";

/// The module kit as the package installs it (`/usr/lib/hnroot/grub`): `grub.cfg`, and per GRUB
/// build a directory with `hnroot.mod`, its version record and `sbat.csv`
/// (`hnroot_install::grub::Kit`).
pub fn kit_dir() -> PathBuf {
    buildenv::build_root().join("grub-kit")
}

/// Build the module (as [`build`]) and lay out the kit around it: what `hnroot install` and the
/// Debian package take. SBAT metadata: Debian's template from the very `grub2` source the
/// module was built against, and hnroot's line.
pub fn build_kit() -> Result<hnroot_install::grub::Kit> {
    let module = build()?;
    let tree = prepare_grub_tree()?;
    let kit = kit_dir();
    let dir = kit.join(GRUB_DEBIAN_VERSION);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let template_path = tree.join("debian/sbat.debian.csv.in");
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("reading Debian's SBAT template {}", template_path.display()))?;
    let sbat =
        hnroot_install::grub::sbat_csv(&template, GRUB_DEBIAN_VERSION, env!("CARGO_PKG_VERSION"));
    fs::write(dir.join(hnroot_install::grub::SBAT_FILE), sbat)?;
    fs::copy(&module.path, dir.join(hnroot_install::grub::MODULE_FILE))
        .with_context(|| format!("copying {} into the kit", module.path.display()))?;
    fs::copy(
        version_record_path(&module.path),
        dir.join(hnroot_install::grub::VERSION_RECORD),
    )
    .context("copying the version record into the kit")?;
    fs::copy(
        buildenv::workspace_root().join("grub-module/grub.cfg"),
        kit.join(hnroot_install::grub::GRUB_CFG),
    )
    .context("copying grub.cfg into the kit")?;
    Ok(hnroot_install::grub::Kit::at(&kit))
}

/// Build `hnroot.mod`; print where it is and its size.
pub fn build() -> Result<Module> {
    check_installed_package()?;
    let tree = prepare_grub_tree()?;
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
    check_symbols(&tree, &module)?;

    let final_path = out.join(format!("{MODULE_NAME}.mod"));
    fs::copy(&module, &final_path)
        .with_context(|| format!("copying the module to {}", final_path.display()))?;
    fs::write(
        version_record_path(&final_path),
        format!("{GRUB_DEBIAN_VERSION}\n"),
    )
    .context("writing the GRUB version record")?;
    // Read both records back as every consumer of the module will.
    check_installed(&final_path)?;
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
/// name the installed GRUB. Call before putting the module into a GRUB image or directory.
pub fn check_installed(module: &Path) -> Result<()> {
    let installed = check_installed_package()?;
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
    if inside != installed || beside != installed {
        bail!(
            "{} was built for Debian grub2 {inside} (record beside it: {beside}) but \
             {GRUB_BINARY_PACKAGE} {installed} is installed; GRUB would load it without checking. \
             Not using it: rebuild with `cargo xtask grub-module`",
            module.display()
        );
    }
    Ok(())
}

/// The installed `grub-efi-amd64-bin` version, which must be [`GRUB_DEBIAN_VERSION`].
fn check_installed_package() -> Result<String> {
    let version =
        run(Command::new("dpkg-query").args(["-W", "-f=${Version}", GRUB_BINARY_PACKAGE]))
            .with_context(|| {
                format!("{GRUB_BINARY_PACKAGE} is not installed (`cargo xtask deps`)")
            })?;
    let version = version.trim().to_owned();
    if version != GRUB_DEBIAN_VERSION {
        bail!(
            "{GRUB_BINARY_PACKAGE} {version} is installed, but hnroot.mod is built against Debian \
             grub2 {GRUB_DEBIAN_VERSION}; GRUB does not check module versions, so a mix would \
             fail silently or crash at boot. Not building. Install {GRUB_BINARY_PACKAGE}=\
             {GRUB_DEBIAN_VERSION}, or review grub-module/ against the new headers and update \
             GRUB_DEBIAN_VERSION in testkit/src/grubmod.rs"
        );
    }
    Ok(version)
}

/// The configured GRUB tree under `target/hnroot-build/grub/`, prepared once.
fn prepare_grub_tree() -> Result<PathBuf> {
    let dir = buildenv::build_root().join("grub");
    let upstream = GRUB_DEBIAN_VERSION
        .split('-')
        .next()
        .context("GRUB version without upstream part")?;
    let tree = dir.join(format!("grub2-{upstream}"));
    let stamp = tree.join(".hnroot-prepared");
    let stamp_text = format!("{GRUB_DEBIAN_VERSION} {}\n", CONFIGURE_ARGS.join(" "));
    let products = [
        tree.join("grub-core/kernel_syms.lst"),
        tree.join("grub-core/build-grub-module-verifier"),
        tree.join("config.h"),
    ];
    if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str())
        && products.iter().all(|p| p.exists())
    {
        return Ok(tree);
    }
    eprintln!("==> GRUB headers: preparing {}", tree.display());
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fetch_source(&dir)?;
    if !tree.join("configure").exists() {
        bail!(
            "apt-get source grub2={GRUB_DEBIAN_VERSION} did not unpack into {}; looked for \
             its configure script",
            tree.display()
        );
    }
    touch_autotools_outputs(&tree)?;
    let started = std::time::Instant::now();
    run(Command::new("./configure")
        .args(CONFIGURE_ARGS)
        .current_dir(&tree))
    .context("configuring GRUB (see config.log in the tree)")?;
    eprintln!("    configure: {:.0?}", started.elapsed());
    run(Command::new("make")
        .args([
            "-C",
            "grub-core",
            "kernel_syms.lst",
            "build-grub-module-verifier",
        ])
        .current_dir(&tree))
    .context("making GRUB's symbol list and module verifier")?;
    for product in &products {
        if !product.exists() {
            bail!("GRUB tree prepared but {} is missing", product.display());
        }
    }
    fs::write(&stamp, stamp_text).context("writing the GRUB tree stamp")?;
    Ok(tree)
}

/// `apt-get source grub2=VERSION` into `dir`, adding a deb-src entry (and updating the package
/// lists) when the first try finds no source package.
fn fetch_source(dir: &Path) -> Result<()> {
    let spec = format!("grub2={GRUB_DEBIAN_VERSION}");
    let mut get = Command::new("apt-get");
    get.args(["source", "-q", &spec]).current_dir(dir);
    if run(&mut get).is_ok() {
        return Ok(());
    }
    if !Path::new(DEB_SRC_FILE).exists() {
        eprintln!("    no deb-src entry for bookworm: writing {DEB_SRC_FILE}");
        fs::write(DEB_SRC_FILE, DEB_SRC_ENTRY).with_context(|| {
            format!("cannot write {DEB_SRC_FILE} (root needed to add a deb-src entry)")
        })?;
    }
    run(Command::new("apt-get").args(["update", "-q"])).context("apt-get update")?;
    run(&mut get).with_context(|| {
        format!(
            "apt-get source {spec} failed even with the deb-src entry in {DEB_SRC_FILE}; the \
             archive may no longer carry this version"
        )
    })?;
    Ok(())
}

/// Give every autotools output one fresh timestamp (newer than the Debian-patched inputs), so
/// `make` does not try to rerun aclocal/automake/autoconf, which the machine need not have.
fn touch_autotools_outputs(tree: &Path) -> Result<()> {
    let mut outputs = Vec::new();
    let mut stack = vec![tree.to_path_buf()];
    // Bounded walk: the GRUB tree has a few thousand entries.
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > 100_000 {
            bail!("more than 100000 directories under {}", tree.display());
        }
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type()?.is_dir() {
                if name != ".git" && name != ".pc" {
                    stack.push(path);
                }
            } else if matches!(
                name.as_ref(),
                "configure"
                    | "aclocal.m4"
                    | "config.h.in"
                    | "Makefile.in"
                    | "Makefile.util.am"
                    | "Makefile.core.am"
            ) || name.ends_with(".in") && dir == tree
            {
                outputs.push(path);
            }
        }
    }
    if outputs.is_empty() {
        bail!("no autotools outputs found in {}", tree.display());
    }
    let mut touch = Command::new("touch");
    touch.args(&outputs);
    run(&mut touch)?;
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
        if !flags.ldflags.iter().any(|f| f == "-Wl,-r,-d") {
            bail!(
                "GRUB's module link flags lack -Wl,-r,-d: {:?}",
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
];

/// Compile every file of [`C_SOURCES`] with GRUB's module flags, warnings as errors.
fn compile_c(tree: &Path, flags: &ModuleFlags, work: &Path) -> Result<Vec<PathBuf>> {
    let dir = buildenv::workspace_root().join("grub-module");
    let mut objects = Vec::new();
    for name in C_SOURCES {
        let source = dir.join(name);
        let object = work.join(name.replace(".c", ".o"));
        let mut cc = Command::new(&flags.cc);
        cc.args(&flags.cflags)
            .arg(format!("-DGRUB_FILE=\"grub-module/{name}\""))
            .arg(format!("-DHNROOT_GRUB_VERSION=\"{GRUB_DEBIAN_VERSION}\""))
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
    fs::write(&version, format!("{GRUB_DEBIAN_VERSION}\0"))?;
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

/// Every undefined symbol must be exported by GRUB's kernel or by a module in [`MODULE_DEPS`];
/// the only globals defined must be the module hooks and the `hnroot_*` API.
fn check_symbols(tree: &Path, module: &Path) -> Result<()> {
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
        let path = Path::new(GRUB_MODULE_DIR).join(format!("{dep}.mod"));
        let data = fs::read(&path).with_context(|| {
            format!(
                "reading dependency {} (from {GRUB_BINARY_PACKAGE})",
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
