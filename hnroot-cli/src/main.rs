//! `hnroot`: the operator's command. Every subcommand observes the machine through
//! `hnroot-linux`, asks `hnroot-core`, and prints the answer (text, or `--json`).

use std::process::ExitCode;

mod find_cmd;
mod probe_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hnroot", version, about = "image-based, roll-back-able root filesystems")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what blkid would about devices or image files: type, label, UUID, partitions.
    Probe(probe_cmd::ProbeArgs),
    /// Print the device a LABEL=, UUID=, PARTLABEL= or PARTUUID= spec names.
    Find(find_cmd::FindArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Probe(args) => probe_cmd::run(&args),
        Command::Find(args) => find_cmd::run(&args),
    }
}
