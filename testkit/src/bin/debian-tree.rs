//! Make (or find cached) the stock Debian tree the distro suite builds its images from, and
//! print where it is.

use anyhow::Result;
use clap::Parser;
use hnroot_testkit::debian;

/// Options.
#[derive(Debug, Parser)]
#[command(
    name = "debian-tree",
    about = "Make the cached mmdebstrap tree (systemd, Debian's kernel) the distro suite builds images from."
)]
struct Args {
    /// The Debian suite.
    #[arg(long, default_value = "bookworm")]
    suite: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tree = debian::systemd_tree(&args.suite, &[])?;
    println!(
        "{} ({}{})",
        tree.dir.display(),
        tree.suite,
        if tree.cached { ", cached" } else { "" }
    );
    Ok(())
}
