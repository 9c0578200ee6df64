//! `cargo xtask`: hnroot's build, test and demo driver. Every command first makes sure the
//! machine has what it needs (Debian packages, Rust targets, the GRUB source), so the two README
//! commands work on a fresh Debian 12 machine.

mod deps;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "hnroot build, test and demo driver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build and the tests need (apt packages, Rust targets).
    Deps,
    /// Run every check: rustfmt, clippy (warnings denied) and all tests.
    Test,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Deps => deps::ensure(),
        Command::Test => test(),
    }
}

fn test() -> Result<()> {
    deps::ensure()?;
    util::step("rustfmt", &["cargo", "fmt", "--all", "--", "--check"])?;
    util::step(
        "clippy",
        &[
            "cargo",
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    util::step(
        "unit and integration tests",
        &["cargo", "test", "--workspace"],
    )?;
    Ok(())
}
