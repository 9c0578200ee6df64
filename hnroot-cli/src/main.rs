//! `hnroot`: the operator's command. Every subcommand observes the machine through
//! `hnroot-linux`, asks `hnroot-core`, and prints the answer (text, or `--json`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hnroot", version, about = "image-based, roll-back-able root filesystems")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
