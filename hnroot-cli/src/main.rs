//! `hnroot`: the operator's command. Every subcommand observes the machine through
//! `hnroot-linux`, asks `hnroot-core`, and prints the answer (text, or `--json`).

use std::process::ExitCode;

mod explain;
mod find_cmd;
mod machine;
mod operate;
mod probe_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hnroot",
    version,
    about = "image-based, roll-back-able root filesystems"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What is on hostpart, what is running, what the next boot will do and why.
    Status(explain::ExplainArgs),
    /// The next boot's decision and the initramfs's plan, step by step (--json for scripts).
    Explain(explain::ExplainArgs),
    /// Record the running hn-root.img as good: ends its trial.
    MarkGood(operate::PlainArgs),
    /// Copy an image to hostpart as hn-root-new.img; the next boot boots it as an update.
    Stage(operate::StageArgs),
    /// Ask for a revert to hn-root-old.img on the next boot (creates system-revert).
    Revert(operate::PlainArgs),
    /// Manage the boot-state file on the ESP.
    #[command(subcommand)]
    Bootstate(BootstateCommand),
    /// Show what blkid would about devices or image files: type, label, UUID, partitions.
    Probe(probe_cmd::ProbeArgs),
    /// Print the device a LABEL=, UUID=, PARTLABEL= or PARTUUID= spec names.
    Find(find_cmd::FindArgs),
}

#[derive(Subcommand)]
enum BootstateCommand {
    /// Create the boot-state file, recording hn-root.img as good.
    Init(operate::InitArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Status(args) => explain::status(&args),
        Command::Explain(args) => explain::explain(&args),
        Command::MarkGood(args) => operate::mark_good_cmd(&args),
        Command::Stage(args) => operate::stage(&args),
        Command::Revert(args) => operate::revert(&args),
        Command::Bootstate(BootstateCommand::Init(args)) => operate::bootstate_init(&args),
        Command::Probe(args) => probe_cmd::run(&args),
        Command::Find(args) => find_cmd::run(&args),
    }
}
