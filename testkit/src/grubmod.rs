//! Builds `hnroot.mod`, the GRUB module that asks `hnroot-core` what to boot, once for each
//! GRUB build hnroot supports ([`Debian::grub`]: Debian 12's 2.06, Debian 13's 2.12), each
//! against the exact source of the GRUB that will load it (`cargo xtask grub-module`). It never
//! installs the module anywhere and never changes the machine's apt sources.
//!
//! The steps for one build (all artifacts under `target/hnroot-build/`):
//!
//! 1. **GRUB headers.** Debian's `grub2` source at that build's version, fetched with the
//!    release's private apt configuration ([`crate::apt`]; from the archive's pool, checked
//!    against the pinned SHA-256 sums, when apt's index has moved past the version), unpacked
//!    with `dpkg-source` under `grub/<version>/`, autotools outputs touched so `make` does not
//!    rerun aclocal, `configure --with-platform=efi --target=x86_64`, then only
//!    `make -C grub-core kernel_syms.lst build-grub-module-verifier`. Cached by a stamp file.
//! 2. **Rust half.** `hnroot-ffi` as a `staticlib` for `x86_64-unknown-none` (profile `grub`:
//!    LTO, `opt-level="s"`, panic=abort), partially linked with `--gc-sections` and a script
//!    that merges rustc's per-function sections; every global but the `hnroot_*` API made local
//!    (GRUB registers every global of a module, so a module-local `memcpy` would shadow the
//!    kernel's).
//! 3. **C half.** `grub-module/*.c` compiled with the flags that GRUB tree's own
//!    `grub-core/Makefile` uses for a module (read from the configured tree, not copied here),
//!    and `HNROOT_GRUB_UPSTREAM` (206, 212) where GRUB's interfaces differ.
//! 4. **Module.** `ld -r` of both, GOT-relative relocations relaxed ([`crate::relax`]), then what
//!    GRUB's `genmod.sh` does: `.modname` and `.moddeps` sections, `strip` with GRUB's keep list,
//!    that GRUB's `build-grub-module-verifier`; then every undefined symbol checked against
//!    `kernel_syms.lst` and the exports of that GRUB's modules listed as dependencies.
//!
//! GRUB checks no version when it loads a module, so a mismatch would be silent: the version is
//! recorded in the module (section [`VERSION_SECTION`]) and beside it (`hnroot.mod.grub-version`),
//! and [`check_built_for`] refuses a module built for another GRUB. The module kit
//! ([`build_kit`]) holds one directory per build, as the package installs it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::apt::{self, Apt};
use crate::buildenv::{self, run};
use crate::grubbin;
use crate::relax;
use crate::release::Debian;

/// The binary package whose modules and `grub-mkimage` the module goes with.
pub const GRUB_BINARY_PACKAGE: &str = "grub-efi-amd64-bin";
/// The module's name (`.modname`) and file stem.
pub const MODULE_NAME: &str = "hnroot";
/// Modules `hnroot.mod` needs loaded first (`.moddeps`): `extcmd` for the option parser, `disk`
/// for `grub_disk_write`, `loopback` for opening image files as disks. Filesystems and
/// partitions are identified by hnroot-core's probers, not by GRUB's `probe` command; the one
/// filesystem driver an image needs is loaded on demand (`grub_dl_load`).
pub const MODULE_DEPS: &[&str] = &["extcmd", "disk", "loopback"];
/// Non-allocated section of the module holding the GRUB version it was built against.
pub const VERSION_SECTION: &str = ".hnroot.grub-version";

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
    /// `target/hnroot-build/grub-module/<GRUB version>/hnroot.mod`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Where the module for `release`'s GRUB and its version record are written.
pub fn output_dir(release: Debian) -> PathBuf {
    buildenv::build_root()
        .join("grub-module")
        .join(release.grub().version)
}

/// The environment variable that hands the kit's directory to the workspace tests
/// (`hnroot install`'s CLI tests).
pub const KIT_ENV: &str = "HNROOT_GRUB_KIT";

/// Set (by `cargo xtask test`) when a missing kit is a failure rather than a skip.
pub const REQUIRE_KIT_ENV: &str = "HNROOT_REQUIRE_GRUB_KIT";

/// The module kit as the package installs it (`/usr/lib/hnroot/grub`): `grub.cfg`, and per GRUB
/// build a directory with `hnroot.mod`, its version record and `sbat.csv`
/// (`hnroot_install::grub::ModuleKit`).
pub fn kit_dir() -> PathBuf {
    buildenv::build_root().join("grub-kit")
}

/// Build the module for every supported GRUB ([`Debian::ALL`]) and lay out the kit around them:
/// what `hnroot install` and the Debian package take.
pub fn build_kit() -> Result<hnroot_install::grub::ModuleKit> {
    let mut kit = None;
    for release in Debian::ALL {
        kit = Some(build_into_kit(release)?);
    }
    kit.context("no Debian release to build for")
}

/// Build the module for `release`'s GRUB (as [`build`]) and put it into the kit beside the
/// builds already there. SBAT metadata: Debian's template from the very `grub2` source the
/// module was built against, and hnroot's line.
pub fn build_into_kit(release: Debian) -> Result<hnroot_install::grub::ModuleKit> {
    let _lock = buildenv::lock("grub-kit")?;
    let version = release.grub().version;
    let module = build(release)?;
    let tree = prepare_grub_tree(release)?;
    let kit = kit_dir();
    let dir = kit.join(version);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let template_path = tree.join("debian/sbat.debian.csv.in");
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("reading Debian's SBAT template {}", template_path.display()))?;
    let sbat = hnroot_install::grub::sbat_csv(&template, version, env!("CARGO_PKG_VERSION"));
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
    Ok(hnroot_install::grub::ModuleKit::at(&kit))
}

/// Build `hnroot.mod` for `release`'s GRUB.
pub fn build(release: Debian) -> Result<Module> {
    let grub = grubbin::grub(release)?;
    let tree = prepare_grub_tree(release)?;
    let flags = ModuleFlags::read(&tree)?;
    let staticlib = build_staticlib()?;

    let out = output_dir(release);
    let work = out.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let rust = link_rust(&staticlib, &work)?;
    let objects = compile_c(release, &tree, &flags, &work)?;
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

    let module = genmod(release, &tree, &flags, &merged, &work)?;
    check_symbols(&tree, &module, &grub.modules_dir)?;

    let final_path = out.join(format!("{MODULE_NAME}.mod"));
    fs::copy(&module, &final_path)
        .with_context(|| format!("copying the module to {}", final_path.display()))?;
    fs::write(
        version_record_path(&final_path),
        format!("{}\n", release.grub().version),
    )
    .context("writing the GRUB version record")?;
    // Read both records back as every consumer of the module will.
    check_built_for(&final_path, &grub.version)?;
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
             loaded by {GRUB_BINARY_PACKAGE} {grub_version}; GRUB would load it without \
             checking. Not using it: rebuild with `cargo xtask grub-module`",
            module.display()
        );
    }
    Ok(())
}

/// The installed `grub-efi-amd64-bin` version, which must be `release`'s GRUB build (the build
/// machine's own release).
pub fn check_installed_package(release: Debian) -> Result<String> {
    let wanted = release.grub().version;
    let version =
        run(Command::new("dpkg-query").args(["-W", "-f=${Version}", GRUB_BINARY_PACKAGE]))
            .with_context(|| {
                format!("{GRUB_BINARY_PACKAGE} is not installed (`cargo xtask deps`)")
            })?;
    let version = version.trim().to_owned();
    if version != wanted {
        bail!(
            "{GRUB_BINARY_PACKAGE} {version} is installed, but hnroot.mod for {release} is built \
             against Debian grub2 {wanted}; GRUB does not check module versions, so a mix would \
             fail silently or crash at boot. Not building. Install {GRUB_BINARY_PACKAGE}=\
             {wanted}, or review grub-module/ against the new headers and update \
             testkit/src/release.rs"
        );
    }
    Ok(version)
}

/// `target/hnroot-build/grub/<version>/`: `release`'s `grub2` source package and its tree.
fn grub_dir(release: Debian) -> PathBuf {
    buildenv::build_root()
        .join("grub")
        .join(release.grub().version)
}

/// The configured GRUB tree of `release`'s build under `target/hnroot-build/grub/<version>/`,
/// prepared once.
pub fn prepare_grub_tree(release: Debian) -> Result<PathBuf> {
    let build = release.grub();
    let dir = grub_dir(release);
    let tree = dir.join(format!("grub2-{}", build.upstream()));
    let stamp = tree.join(".hnroot-prepared");
    let stamp_text = format!("{} {}\n", build.version, CONFIGURE_ARGS.join(" "));
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
    eprintln!("==> GRUB headers ({release}): preparing {}", tree.display());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dsc = fetch_source(release, &dir)?;
    apt::unpack_source(&dsc, &tree)?;
    if !tree.join("configure").exists() {
        bail!(
            "grub2 {} did not unpack into {}; looked for its configure script",
            build.version,
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

/// `grub-mkstandalone` built from `release`'s configured GRUB tree (once): the image builder of
/// that very GRUB, for a GRUB whose own packaged tools need a newer C library than the build
/// machine's.
pub fn tree_mkstandalone(release: Debian) -> Result<PathBuf> {
    let tree = prepare_grub_tree(release)?;
    let tool = tree.join("grub-mkstandalone");
    if tool.is_file() {
        return Ok(tool);
    }
    eprintln!(
        "==> grub-mkstandalone ({release}): building it from {}",
        tree.display()
    );
    run(Command::new("make")
        .args(["-C", "grub-core/lib/gnulib"])
        .current_dir(&tree))
    .context("making GRUB's gnulib for its host tools")?;
    // Automake builds BUILT_SOURCES (the script parser bison and flex generate, ...) before
    // `all`, not before a single program: make them first.
    let probe = grub_dir(release).join("print-built-sources.mk");
    fs::write(
        &probe,
        "hnroot-print-built-sources:\n\t$(info BUILT_SOURCES=$(BUILT_SOURCES))\n\t@:\n",
    )?;
    let printed = run(Command::new("make")
        .args(["-s", "-f", "Makefile", "-f"])
        .arg(&probe)
        .arg("hnroot-print-built-sources")
        .current_dir(&tree))?;
    let built_sources: Vec<&str> = printed
        .lines()
        .find_map(|l| l.strip_prefix("BUILT_SOURCES="))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    if built_sources.is_empty() {
        bail!(
            "GRUB's Makefile in {} printed no BUILT_SOURCES",
            tree.display()
        );
    }
    run(Command::new("make")
        .args(&built_sources)
        .arg("grub-mkstandalone")
        .current_dir(&tree))
    .context("making grub-mkstandalone in the GRUB tree")?;
    if !tool.is_file() {
        bail!("make grub-mkstandalone left no {}", tool.display());
    }
    Ok(tool)
}

/// The `.dsc` of `release`'s `grub2` source in `dir`: through the release's private apt
/// configuration, or, when its index no longer lists the version, from the archive's pool
/// checked against the sums pinned in [`Debian::grub`].
fn fetch_source(release: Debian, dir: &Path) -> Result<PathBuf> {
    let build = release.grub();
    let apt = Apt::for_suite(release.suite())?;
    match apt.download_source("grub2", build.version, dir) {
        Ok(dsc) => Ok(dsc),
        Err(e) => {
            let Some(dsc) = build.pool.map(|p| p.dsc) else {
                return Err(e);
            };
            eprintln!(
                "    apt has no grub2 {} ({e:#}); fetching {} from the pool, checked against \
                 its pinned SHA-256",
                build.version, dsc.path
            );
            apt::download_pool_source(&dsc, dir)
        }
    }
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
];

/// Compile every file of [`C_SOURCES`] with GRUB's module flags, warnings as errors.
fn compile_c(
    release: Debian,
    tree: &Path,
    flags: &ModuleFlags,
    work: &Path,
) -> Result<Vec<PathBuf>> {
    let dir = buildenv::workspace_root().join("grub-module");
    let build = release.grub();
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
fn genmod(
    release: Debian,
    tree: &Path,
    flags: &ModuleFlags,
    merged: &Path,
    work: &Path,
) -> Result<PathBuf> {
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
    fs::write(&version, format!("{}\0", release.grub().version))?;
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
