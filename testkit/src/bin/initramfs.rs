//! `cargo xtask initramfs`: build hnroot's standalone initramfs (static `hnroot-init` as `/init`,
//! the modules the boot needs, optionally busybox) and print its size with and without modules.
//! It builds one file; it never installs or boots it.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use hnroot_testkit::initramfs::{self, Compress, Spec};
use hnroot_testkit::kernel;

/// `cargo xtask initramfs`.
#[derive(Debug, Parser)]
#[command(
    name = "initramfs",
    about = "Build hnroot's standalone initramfs: static hnroot-init as /init, the kernel \
             modules the boot needs, optionally busybox; prints its size with and without \
             modules."
)]
struct Args {
    /// `lib/modules/<release>` of the kernel the initramfs is for (depmod'ed: modules.dep,
    /// modules.softdep, modules.alias, modules.builtin, modules.builtin.modinfo). Default: the
    /// Debian kernel `cargo xtask` fetches and caches under target/hnroot-build/kernel.
    #[arg(long)]
    kernel_modules: Option<PathBuf>,
    /// Where to write the compressed archive.
    #[arg(long)]
    out: PathBuf,
    /// Add the host's static busybox as /bin/sh (and its applets): hnroot-init then offers an
    /// emergency shell on a fatal error instead of stopping.
    #[arg(long)]
    busybox: bool,
    #[arg(long, value_enum, default_value = "zstd")]
    compress: Compress,
    /// Modules to include besides the default set (virtio, loop, ext4, btrfs, vfat and code
    /// pages), e.g. `--module xfs` for an XFS hostpart. Repeatable.
    #[arg(long = "module")]
    modules: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let modules_dir = match &args.kernel_modules {
        Some(dir) => dir.clone(),
        None => kernel::fetch_current()?.modules_dir,
    };
    let init = initramfs::static_binary("hnroot-init", "hnroot-init")?;
    let mut wanted = initramfs::default_modules();
    wanted.extend(args.modules.iter().cloned());
    let spec = Spec {
        init,
        modules_dir: Some(modules_dir.clone()),
        modules_root: None,
        wanted,
        busybox: if args.busybox {
            Some(initramfs::host_busybox()?)
        } else {
            None
        },
        compress: args.compress,
    };
    let built = initramfs::build(&spec, &args.out)?;
    let bare_path = args.out.with_extension("no-modules.tmp");
    let bare = initramfs::build(
        &Spec {
            modules_dir: None,
            modules_root: None,
            ..spec.clone()
        },
        &bare_path,
    )?;
    fs::remove_file(&bare_path)
        .with_context(|| format!("cannot remove {}", bare_path.display()))?;
    println!(
        "{}: {} KiB ({:?}; cpio {} KiB), hnroot-init {} KiB, {} modules for {}{}",
        built.path.display(),
        built.compressed_bytes.div_ceil(1024),
        args.compress,
        built.cpio_bytes.div_ceil(1024),
        built.init_bytes.div_ceil(1024),
        built.modules.len(),
        initramfs::release_of(&modules_dir)?,
        if args.busybox { ", busybox" } else { "" }
    );
    println!(
        "  without modules: {} KiB compressed, {} KiB cpio (goal: under 1024 KiB)",
        bare.compressed_bytes.div_ceil(1024),
        bare.cpio_bytes.div_ceil(1024)
    );
    println!(
        "  modules: {}",
        built
            .modules
            .iter()
            .map(|ko| kernel::ko_module_name(ko))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !built.builtin.is_empty() {
        println!("  built into the kernel: {}", built.builtin.join(" "));
    }
    Ok(())
}
