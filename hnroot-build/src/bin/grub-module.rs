//! `cargo xtask grub-module`: build hnroot's GRUB from Debian's pinned `grub2` source, `hnroot.mod`
//! against it, and the loader kit around them (`target/hnroot-build/grub-kit`, see
//! [`hnroot_build::grubmod`]) and print where they are. It never installs anything.

use anyhow::Result;
use clap::Parser;
use hnroot_build::grubmod;

/// `cargo xtask grub-module`.
#[derive(Debug, Parser)]
#[command(
    name = "grub-module",
    about = "Build hnroot's GRUB (Debian's pinned grub2 source), the module hnroot.mod (Rust \
             staticlib, C, GRUB's verifier) and the loader kit target/hnroot-build/grub-kit."
)]
struct Args {}

fn main() -> Result<()> {
    let _ = Args::parse();
    let kit = grubmod::build_kit()?;
    println!(
        "{}: {} bytes, for Debian grub2 {} (x86_64-efi); loader kit {} (record: {})",
        kit.module.path.display(),
        std::fs::metadata(&kit.module.path)?.len(),
        kit.grub_version,
        kit.dir.display(),
        kit.record_text.lines().collect::<Vec<_>>().join("; ")
    );
    Ok(())
}
