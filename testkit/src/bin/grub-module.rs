//! `cargo xtask grub-module`: build `hnroot.mod` for every supported GRUB (Debian 12's 2.06,
//! Debian 13's 2.12) and the module kit around them (`target/hnroot-build/grub-kit`, see
//! [`hnroot_testkit::grubmod`]) and print where they are. It never installs the module.

use anyhow::Result;
use clap::Parser;
use hnroot_testkit::grubmod;
use hnroot_testkit::release::Debian;

/// `cargo xtask grub-module`.
#[derive(Debug, Parser)]
#[command(
    name = "grub-module",
    about = "Build the GRUB module hnroot.mod for each supported GRUB (GRUB source, Rust \
             staticlib, C, GRUB's verifier) and the module kit target/hnroot-build/grub-kit."
)]
struct Args {
    /// Only for this Debian release's GRUB (12 or 13); default: every supported release.
    #[arg(long)]
    debian: Option<Debian>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let releases: Vec<Debian> = match args.debian {
        Some(d) => vec![d],
        None => Debian::ALL.to_vec(),
    };
    for release in releases {
        let kit = grubmod::build_into_kit(release)?;
        let version = release.grub().version;
        let module = kit.dir.join(version).join("hnroot.mod");
        println!(
            "{}: {} bytes, for Debian grub2 {version} ({release}, x86_64-efi); kit {} holds {}",
            module.display(),
            std::fs::metadata(&module)?.len(),
            kit.dir.display(),
            kit.builds().join(", ")
        );
    }
    Ok(())
}
