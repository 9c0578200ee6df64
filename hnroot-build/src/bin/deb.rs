//! `cargo xtask deb`: build the hnroot Debian package and print where it is.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use hnroot_build::{buildenv, deb};

/// Options.
#[derive(Debug, Parser)]
#[command(
    name = "deb",
    about = "Build hnroot_<version>_amd64.deb (CLI, hnroot-init, initramfs-tools and dracut integration, systemd unit, hnroot's own GRUB with hnroot.mod)."
)]
struct Args {
    /// Where to write it [default: target/hnroot-build/deb].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let out = args
        .out
        .unwrap_or_else(|| buildenv::build_root().join("deb"));
    let built = deb::build(&out)?;
    println!(
        "{} (version {}, with its own GRUB {})",
        built.path.display(),
        built.version,
        built.grub_build
    );
    Ok(())
}
