//! Builds hnroot's GRUB ([`GRUB`]): Debian's `grub2` source package at the pinned version,
//! fetched from the archive's pool (the `.dsc` checked against its pinned SHA-256, every file it
//! lists against the `.dsc`'s sums), unpacked with Debian's patches applied (`dpkg-source -x`),
//! its build system regenerated as Debian's own build does (`./autogen.sh`: Debian's patches
//! change `configure.ac` and `Makefile.core.def`), configured for `x86_64-efi` and built: every
//! module of `grub-core`, and `grub-mkimage` linked statically, so the one binary the package
//! ships runs on every Debian release (Debian 12's C library or a newer one). Nothing is
//! installed; the tree stays under `target/hnroot-build/grub/<version>/`, cached by a stamp.
//!
//! [`crate::grubmod`] builds `hnroot.mod` against the same tree, and lays out the loader kit the
//! package ships (`/usr/lib/hnroot/grub`): this GRUB's modules with `hnroot.mod`, its
//! `grub-mkimage`, `grub.cfg` and the SBAT metadata.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::apt;
use crate::buildenv::{self, run};
use crate::release::GRUB;

/// `configure`'s options besides the version ([`configure_args`]): the EFI platform on x86_64;
/// the host tools without the libraries the loader kit does not need (device-mapper, liblzma,
/// ZFS, FUSE, fonts and themes), linked statically.
pub const CONFIGURE_ARGS: &[&str] = &[
    "--with-platform=efi",
    "--target=x86_64",
    "--disable-werror",
    "--disable-device-mapper",
    "--disable-liblzma",
    "--disable-libzfs",
    "--disable-grub-mount",
    "--disable-grub-mkfont",
    "--disable-grub-themes",
    "LDFLAGS=-static",
    // GRUB's genmoddep.awk needs GNU awk (asorti); Debian builds with gawk too.
    "AWK=gawk",
];

/// Every option `configure` gets: the package version as Debian's build passes it
/// (`PACKAGE_VERSION`, which becomes `grub_package_version` in `modinfo.sh` and the version
/// GRUB reports), then [`CONFIGURE_ARGS`].
pub fn configure_args() -> Vec<String> {
    let mut args = vec![
        format!("PACKAGE_VERSION={}", GRUB.version),
        format!("PACKAGE_STRING=GRUB {}", GRUB.version),
    ];
    args.extend(CONFIGURE_ARGS.iter().map(|a| (*a).to_owned()));
    args
}

/// What a built tree is checked for, relative to it.
const PRODUCTS: &[&str] = &[
    "grub-core/kernel.img",
    "grub-core/kernel_syms.lst",
    "grub-core/moddep.lst",
    "grub-core/modinfo.sh",
    "grub-core/build-grub-module-verifier",
    "grub-core/linux.mod",
    "grub-core/fat.mod",
    "grub-mkimage",
    "config.h",
];

/// `target/hnroot-build/grub/<version>/`: the source package and its tree.
fn grub_dir() -> PathBuf {
    buildenv::build_root().join("grub").join(GRUB.version)
}

/// The built tree of [`GRUB`] (built once; later calls check the stamp and the products).
pub fn tree() -> Result<PathBuf> {
    let _lock = buildenv::lock("grub-tree")?;
    let dir = grub_dir();
    let tree = dir.join(format!("grub2-{}", GRUB.upstream()));
    let stamp = tree.join(".hnroot-built");
    let stamp_text = format!("{} {}\n", GRUB.version, configure_args().join(" "));
    if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str())
        && PRODUCTS.iter().all(|p| tree.join(p).exists())
    {
        return Ok(tree);
    }
    eprintln!(
        "==> hnroot's GRUB: building Debian grub2 {} in {} (once; about 3 minutes on 2 cores)",
        GRUB.version,
        tree.display()
    );
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dsc = apt::download_pool_source(&GRUB.dsc, &dir)?;
    apt::unpack_source(&dsc, &tree)?;
    if !tree.join("autogen.sh").exists() {
        bail!(
            "grub2 {} did not unpack into {}; looked for its autogen.sh",
            GRUB.version,
            tree.display()
        );
    }
    let started = Instant::now();
    run(Command::new("./autogen.sh")
        .env("PYTHON", "python3")
        .current_dir(&tree))
    .context("regenerating GRUB's build system (./autogen.sh, as Debian's build does)")?;
    run(Command::new("./configure")
        .args(configure_args())
        .current_dir(&tree))
    .context("configuring GRUB (see config.log in the tree)")?;
    eprintln!("    autogen and configure: {:.0?}", started.elapsed());
    let jobs = format!("-j{}", jobs());
    run(Command::new("make")
        .args([jobs.as_str(), "-C", "grub-core"])
        .current_dir(&tree))
    .context("building GRUB's modules (make -C grub-core)")?;
    run(Command::new("make")
        .args([jobs.as_str(), "-C", "grub-core/lib/gnulib"])
        .current_dir(&tree))
    .context("building GRUB's gnulib for its host tools")?;
    run(Command::new("make")
        .args([jobs.as_str(), "grub-mkimage"])
        .current_dir(&tree))
    .context("building grub-mkimage")?;
    eprintln!("    built in {:.0?}", started.elapsed());
    let info = fs::read_to_string(tree.join("grub-core/modinfo.sh"))?;
    if !info.contains(&format!("grub_package_version=\"{}\"", GRUB.version)) {
        bail!(
            "the built GRUB's modinfo.sh does not name {} as its package version",
            GRUB.version
        );
    }
    for product in PRODUCTS {
        if !tree.join(product).exists() {
            bail!("GRUB built but {} is missing", tree.join(product).display());
        }
    }
    check_static(&tree.join("grub-mkimage"))?;
    fs::write(&stamp, stamp_text).context("writing the GRUB tree stamp")?;
    Ok(tree)
}

/// `grub-core/` of the built tree: `kernel.img`, every `*.mod`, `moddep.lst`, `modinfo.sh`.
pub fn modules_dir() -> Result<PathBuf> {
    Ok(tree()?.join("grub-core"))
}

/// Parallel jobs for make: the machine's cores.
fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A program the package ships must run without the build machine's C library.
pub fn check_static(program: &Path) -> Result<()> {
    let data = fs::read(program).with_context(|| format!("reading {}", program.display()))?;
    if crate::binaries::is_dynamic(&data)
        .with_context(|| format!("{} is not an ELF program", program.display()))?
    {
        bail!(
            "{} is dynamically linked: it would need the build machine's C library on the \
             server; configure GRUB with LDFLAGS=-static",
            program.display()
        );
    }
    Ok(())
}
