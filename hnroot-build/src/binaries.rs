//! The static programs the package ships and the images carry: `hnroot` and `hnroot-init`,
//! built for `x86_64-unknown-linux-musl` (no C library needed on the server or in an initramfs),
//! stripped, checked to be static.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use object::Object;

use crate::buildenv;

/// The Rust target of the static binaries.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The variable cc-rs reads for [`MUSL_TARGET`]'s C compiler.
const MUSL_CC_VAR: &str = "CC_x86_64_unknown_linux_musl";

/// Whether an ELF program asks for a dynamic loader (has an `.interp` section).
pub fn is_dynamic(elf: &[u8]) -> Result<bool> {
    let file = object::File::parse(elf).context("not an ELF file")?;
    Ok(file.section_by_name(".interp").is_some())
}

/// The Cargo profile each static program is built with (the workspace's `Cargo.toml`):
/// `hnroot-init` for size, in every initramfs; the rest `release`.
pub fn profile_of(bin: &str) -> &'static str {
    match bin {
        "hnroot-init" => "initramfs",
        _ => "release",
    }
}

/// Build `package`'s binary `bin` for [`MUSL_TARGET`] (profile [`profile_of`]) and return a
/// stripped copy under `target/hnroot-build/bin/`, checked to be statically linked.
pub fn static_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let _lock = buildenv::lock(&format!("static-{bin}"))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile = profile_of(bin);
    eprintln!("==> {bin}: cargo build --profile {profile} --target {MUSL_TARGET} -p {package}");
    let mut build = Command::new(&cargo);
    build
        .args([
            "build",
            "--quiet",
            "--profile",
            profile,
            "--target",
            MUSL_TARGET,
        ])
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
        .join(profile)
        .join(bin);
    let dir = buildenv::build_root().join("bin");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join(bin);
    let tmp = dir.join(format!("{bin}.strip-tmp"));
    buildenv::run(Command::new("strip").arg("-o").arg(&tmp).arg(&built))
        .with_context(|| format!("stripping {}", built.display()))?;
    let elf = fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    if is_dynamic(&elf).with_context(|| format!("{} is not an ELF", tmp.display()))? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_is_dynamic_and_garbage_is_refused() {
        assert!(is_dynamic(&fs::read("/bin/sh").unwrap()).unwrap());
        assert!(is_dynamic(b"\x7fELF").is_err());
    }
}
