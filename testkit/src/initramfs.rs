//! Builds hnroot's standalone initramfs and never installs or boots it. `hnroot-init`, built
//! as a static musl binary and stripped, is `/init`; the kernel modules the boot needs for one
//! kernel sit under `/lib/modules/<release>/` with a `modules.dep` limited to them and the
//! kernel's `modules.builtin`; `/etc/hnroot/modules` names the modules to load (softdep
//! providers such as `crc32c_generic` included, since hnroot-init only follows `modules.dep`);
//! busybox is optional, for the emergency shell at `/bin/sh`. The archive is written in memory
//! (rootless: `/dev/console` is a header, not a mknod) and compressed with zstd or gzip.
//! `cargo xtask initramfs` is its command line (`testkit/src/bin/initramfs.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::buildenv;
use crate::busybox;
use crate::kernel;
pub use hnroot_install::initramfs::{compress, release_of, Built, Compress, Spec, MODULE_LIST};

/// The Rust target of the early-boot binaries: static, no libc on the image needed.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The variable cc-rs reads for [`MUSL_TARGET`]'s C compiler.
const MUSL_CC_VAR: &str = "CC_x86_64_unknown_linux_musl";

/// The default module set: [`kernel::BOOT_MODULES`].
pub fn default_modules() -> Vec<String> {
    kernel::BOOT_MODULES.iter().map(|m| m.to_string()).collect()
}

/// Build `package`'s binary `bin` for [`MUSL_TARGET`] (release profile) and return a stripped
/// copy under `target/hnroot-build/bin/`, checked to be statically linked.
pub fn static_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> {bin}: cargo build --release --target {MUSL_TARGET} -p {package}");
    let mut build = Command::new(&cargo);
    build
        .args(["build", "--quiet", "--release", "--target", MUSL_TARGET])
        .args(["-p", package, "--bin", bin])
        .current_dir(buildenv::workspace_root())
        .stdin(Stdio::null());
    // C code under a crate (ring, below the CLI's TLS) is compiled for the target by musl's
    // gcc wrapper (musl-tools), not the host's gcc and glibc headers.
    if std::env::var_os(MUSL_CC_VAR).is_none() {
        build.env(MUSL_CC_VAR, "musl-gcc");
    }
    let status = build
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!(
            "building {bin} for {MUSL_TARGET} failed ({status}); are the target and musl-gcc \
             installed? (`cargo xtask deps` adds the target with rustup and musl-tools)"
        );
    }
    let built = buildenv::target_dir()
        .join(MUSL_TARGET)
        .join("release")
        .join(bin);
    let dir = buildenv::build_root().join("bin");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join(bin);
    let tmp = dir.join(format!("{bin}.strip-tmp"));
    buildenv::run(Command::new("strip").arg("-o").arg(&tmp).arg(&built))
        .with_context(|| format!("stripping {}", built.display()))?;
    let elf = fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    if !busybox::is_static(&elf).with_context(|| format!("{} is not an ELF", tmp.display()))? {
        bail!(
            "{} has an ELF interpreter: not a static binary, it cannot run as /init of an \
             initramfs without a libc",
            built.display()
        );
    }
    fs::rename(&tmp, &out)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), out.display()))?;
    Ok(out)
}

/// The host's static busybox, for [`Spec::busybox`].
pub fn host_busybox() -> Result<hnroot_install::initramfs::Busybox> {
    let bb = busybox::host()?;
    Ok(hnroot_install::initramfs::Busybox {
        binary: bb.binary,
        applets: bb.applets,
    })
}

/// Build the initramfs described by `spec` at `out` (the product's builder).
pub fn build(spec: &Spec, out: &Path) -> Result<Built> {
    hnroot_install::initramfs::build(spec, out)
}
