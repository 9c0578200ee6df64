//! `cargo xtask grub-module`: build `target/hnroot-build/grub-module/hnroot.mod` (see
//! [`hnroot_testkit::grubmod`]) and print its path and size. It never installs the module.

use anyhow::Result;
use clap::Parser;
use hnroot_testkit::grubmod;

/// `cargo xtask grub-module`: no options.
#[derive(Debug, Parser)]
#[command(
    name = "grub-module",
    about = "Build the GRUB module target/hnroot-build/grub-module/hnroot.mod (GRUB source, Rust \
             staticlib, C, GRUB's verifier)."
)]
struct Args {}

fn main() -> Result<()> {
    Args::parse();
    let module = grubmod::build()?;
    println!(
        "{}: {} bytes, for Debian grub2 {} (x86_64-efi)",
        module.path.display(),
        module.size,
        grubmod::GRUB_DEBIAN_VERSION
    );
    Ok(())
}
