//! Debian's GRUB of a release as the harness builds images from it
//! ([`hnroot_install::grub::Grub`]): its x86_64-efi modules (`kernel.img`, `*.mod`, `modinfo.sh`)
//! and a `grub-mkstandalone` that runs on the build machine. The build machine's own release
//! uses the installed `grub-efi-amd64-bin` and `grub-mkstandalone`; another release's
//! `grub-efi-amd64-bin` is fetched at the pinned version ([`Debian::grub`]) into
//! `target/hnroot-build/grub-bin/<version>/` and unpacked with `dpkg-deb -x`, never installed,
//! and its `grub-mkstandalone` is built from the same `grub2` source tree the module is built
//! against ([`grubmod::tree_mkstandalone`]): trixie's packaged tools need glibc 2.38, bookworm
//! has 2.36.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use hnroot_install::grub::{Grub, GRUB_MODULES_DIR};

use crate::apt::{self, Apt};
use crate::buildenv;
use crate::grubmod::{self, GRUB_BINARY_PACKAGE};
use crate::release::Debian;

/// Marks a complete unpacked package; written last.
const COMPLETE_STAMP: &str = ".complete";

/// `release`'s GRUB: modules and image builder, checked to be the pinned build.
pub fn grub(release: Debian) -> Result<Grub> {
    let _lock = buildenv::lock(&format!("grubbin-{}", release.suite()))?;
    let build = release.grub();
    let grub = if build.installed {
        grubmod::check_installed_package(release)?;
        Grub::at(Path::new(GRUB_MODULES_DIR))?
    } else {
        let mut grub = Grub::at(&unpacked_modules(release)?)?;
        grub.mkstandalone = grubmod::tree_mkstandalone(release)?;
        grub
    };
    if grub.version != build.version {
        bail!(
            "{}/modinfo.sh names GRUB build {}, but {release}'s GRUB is pinned at {}",
            grub.modules_dir.display(),
            grub.version,
            build.version
        );
    }
    Ok(grub)
}

/// `usr/lib/grub/x86_64-efi` of `release`'s `grub-efi-amd64-bin`, unpacked into the cache once.
fn unpacked_modules(release: Debian) -> Result<PathBuf> {
    let build = release.grub();
    let dir = buildenv::build_root().join("grub-bin").join(build.version);
    let modules = dir.join("tree/usr/lib/grub/x86_64-efi");
    let stamp_text = format!("{GRUB_BINARY_PACKAGE}={}\n", build.version);
    if fs::read_to_string(dir.join(COMPLETE_STAMP)).ok().as_deref() == Some(stamp_text.as_str())
        && modules.join("kernel.img").is_file()
    {
        return Ok(modules);
    }
    eprintln!(
        "==> GRUB ({release}): fetching {GRUB_BINARY_PACKAGE}={} into {}",
        build.version,
        dir.display()
    );
    let staging = buildenv::fresh_dir(&dir.with_extension("partial"))?;
    let apt = Apt::for_suite(release.suite())?;
    let deb = match apt.download(GRUB_BINARY_PACKAGE, build.version, &staging) {
        Ok(deb) => deb,
        Err(e) => {
            let Some(deb) = build.pool.map(|p| p.bin) else {
                return Err(e);
            };
            eprintln!(
                "    apt has no {GRUB_BINARY_PACKAGE} {} ({e:#}); fetching {} from the pool, \
                 checked against its pinned SHA-256",
                build.version, deb.path
            );
            apt::download_pool_file(&deb, &staging)?
        }
    };
    buildenv::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(staging.join("tree")),
    )
    .with_context(|| format!("unpacking {}", deb.display()))?;
    fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    if !modules.join("kernel.img").is_file() {
        bail!(
            "{GRUB_BINARY_PACKAGE} {} unpacked without {}",
            build.version,
            modules.join("kernel.img").display()
        );
    }
    buildenv::write_atomic(&dir.join(COMPLETE_STAMP), stamp_text.as_bytes())?;
    Ok(modules)
}
