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
    /// Packages besides the systemd tree's own (the distro and fleet suites' tree:
    /// `--extra nfs-common,python3,netbase`; bench-root's adds `fio`).
    #[arg(long, value_delimiter = ',')]
    extra: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let extra: Vec<&str> = args.extra.iter().map(String::as_str).collect();
    let tree = debian::systemd_tree(&args.suite, &extra)?;
    println!(
        "{} ({}{})",
        tree.dir.display(),
        tree.suite,
        if tree.cached { ", cached" } else { "" }
    );
    Ok(())
}
