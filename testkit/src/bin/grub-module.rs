//! `cargo xtask grub-module`: build `hnroot.mod` and the module kit around it
//! (`target/hnroot-build/grub-kit`, see [`hnroot_testkit::grubmod`]) and print where they are. It never installs the module.

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
    let kit = grubmod::build_kit()?;
    let module = kit
        .dir
        .join(grubmod::GRUB_DEBIAN_VERSION)
        .join("hnroot.mod");
    println!(
        "{}: {} bytes, for Debian grub2 {} (x86_64-efi); kit {}",
        module.display(),
        std::fs::metadata(&module)?.len(),
        grubmod::GRUB_DEBIAN_VERSION,
        kit.dir.display()
    );
    Ok(())
}
