//! `cargo xtask header [--check]`: generate `hnroot-ffi/include/hnroot.h` from `hnroot-ffi/src`
//! with cbindgen (settings in `hnroot-ffi/cbindgen.toml`), or, with `--check`, fail when the
//! committed header differs from what cbindgen generates now. It never edits Rust sources.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use hnroot_testkit::buildenv;

/// The committed header.
pub fn header_path() -> PathBuf {
    buildenv::workspace_root()
        .join("hnroot-ffi")
        .join("include")
        .join("hnroot.h")
}

/// The header as cbindgen generates it from the current sources.
pub fn generate() -> Result<Vec<u8>> {
    let crate_dir = buildenv::workspace_root().join("hnroot-ffi");
    let config_path = crate_dir.join("cbindgen.toml");
    let mut config = cbindgen::Config::from_file(&config_path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("reading {}", config_path.display()))?;
    config.after_includes = Some(layout_defines());
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cbindgen could not generate the hnroot-ffi header")?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    // cbindgen ends the file without a newline after the include guard; POSIX text files and
    // `-Wnewline-eof` want one.
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    Ok(out)
}

/// The on-disk layout as C string macros, from `hnroot_core::layout`, the one definition: GRUB's
/// module names no label or path of its own.
fn layout_defines() -> String {
    use hnroot_core::layout;
    let names = [
        (
            "HNROOT_HOSTPART_LABEL",
            layout::HOSTPART_LABEL,
            "Filesystem label of the host partition.",
        ),
        (
            "HNROOT_ESP_LABEL",
            layout::ESP_LABEL,
            "Filesystem label of the EFI system partition.",
        ),
        (
            "HNROOT_BOOTSTATE_PATH",
            layout::BOOTSTATE_PATH,
            "The boot-state block, from the ESP's root.",
        ),
        (
            "HNROOT_REVERT_MARKER",
            layout::REVERT_MARKER,
            "The revert marker in hostpart's top directory.",
        ),
        (
            "HNROOT_KERNEL_PATH",
            layout::KERNEL_PATH,
            "The kernel inside an image, from its root.",
        ),
        (
            "HNROOT_INITRAMFS_PATH",
            layout::INITRAMFS_PATH,
            "The initramfs inside an image, from its root.",
        ),
        (
            "HNROOT_IMAGE_ARGS_PATH",
            layout::IMAGE_ARGS_PATH,
            "The image's own kernel arguments inside it, from its root.",
        ),
        (
            "HNROOT_HOST_ARGS_PATH",
            layout::HOST_ARGS_PATH,
            "The host's own kernel arguments on hostpart, from its root.",
        ),
    ];
    let mut out = String::from("\n/* The on-disk layout (hnroot_core::layout). */\n");
    for (name, value, doc) in names {
        out.push_str(&format!("/** {doc} */\n#define {name} \"{value}\"\n"));
    }
    out
}

/// Write the header (`check == false`) or compare it with the committed one.
pub fn run(check: bool) -> Result<()> {
    let path = header_path();
    let fresh = generate()?;
    if check {
        let committed = fs::read(&path).with_context(|| {
            format!(
                "{} is missing; generate it with `cargo xtask header`",
                path.display()
            )
        })?;
        if committed != fresh {
            let first = committed
                .split(|&b| b == b'\n')
                .zip(fresh.split(|&b| b == b'\n'))
                .position(|(a, b)| a != b)
                .map_or_else(
                    || "lengths differ".to_owned(),
                    |line| format!("first difference at line {}", line + 1),
                );
            bail!(
                "{} is stale ({first}): hnroot-ffi's C ABI changed without regenerating it; \
                 run `cargo xtask header` and commit the result",
                path.display()
            );
        }
        eprintln!("==> header: {} is up to date", path.display());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&path, &fresh).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "==> header: wrote {} ({} bytes)",
        path.display(),
        fresh.len()
    );
    Ok(())
}
