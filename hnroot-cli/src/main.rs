//! `hnroot`: the operator's command. Every subcommand follows the drivers' contract: observe
//! the machine through `hnroot-linux`, ask `hnroot-core` (a decision, a plan, or why not),
//! have the shared executor carry out the plan, and print what happened and what the next boot
//! will do (text, or `--json`). Nothing it prints can make it panic or stop half-way.

use std::process::ExitCode;

mod chunker;
mod cmd;
mod delta;
mod locate;
mod out;
mod progress;
mod source;

use clap::{Parser, Subcommand};
use cmd::{
    bootloader, bootstate, find, health, history, host, image, install, mark_good, metrics, probe,
    publish, reboot, revert, stage, status, sysprep,
};

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
    /// What is on hostpart (each image's verdict and version), what is running, what the next
    /// boot will do and why.
    Status(status::StatusArgs),
    /// The next boot's decision and the initramfs's plan, step by step (--json for scripts).
    Explain(status::StatusArgs),
    /// Record the running hn-root.img as good: ends its trial.
    MarkGood(mark_good::MarkGoodArgs),
    /// A health check failed (boot-complete.target not reached): on a trial, reboot so GRUB
    /// counts the try and rolls back; otherwise only report. Run by hnroot-mark-good.service.
    HealthFailed(health::HealthFailedArgs),
    /// Copy a signed image (a path or an http(s) URL) to hostpart as hn-root-new.img; the next
    /// boot boots it as an update.
    Stage(stage::StageArgs),
    /// Put a signed image where a web server serves it, with the chunk index that lets a
    /// stage fetch only the chunks the server does not already hold.
    Publish(publish::PublishArgs),
    /// Make a bare disk an hnroot disk (GPT, ESP, hostpart, the first image, GRUB with
    /// hnroot.mod), or with --esp DIR only install GRUB and the boot state into an ESP.
    Install(install::InstallArgs),
    /// Build root images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Remove one host's identity from an image before publishing it (machine ID, SSH host
    /// keys, hostname, DHCP leases, persistent network names, logs, shell histories, Puppet
    /// certificates, random seeds), then check nothing host-specific is left.
    Sysprep(sysprep::SysprepArgs),
    /// This server's identity, kept in its host state on hostpart (/hostpart/data/host).
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Remove the partial files interrupted stages left on hostpart.
    DiscardPartials(stage::DiscardArgs),
    /// What every boot and every operator command did, oldest first.
    History(history::HistoryArgs),
    /// This server's hnroot state for Prometheus (node_exporter's textfile format): running and
    /// staged versions, trial, rollbacks, failed health checks, the last switch and stage.
    Metrics(metrics::MetricsArgs),
    /// Ask for a revert to hn-root-old.img on the next boot (creates system-revert).
    Revert(revert::RevertArgs),
    /// Reboot into the image the boot loader would choose: by kexec (the firmware and GRUB
    /// skipped, the boot state written as GRUB writes it) or through the firmware.
    Reboot(reboot::RebootArgs),
    /// Manage the boot-state file on the ESP.
    #[command(subcommand)]
    Bootstate(BootstateCommand),
    /// The boot loader on the ESP against the one this system carries; update it safely.
    #[command(subcommand)]
    Bootloader(bootloader::BootloaderCommand),
    /// Show what blkid would about devices or image files: type, label, UUID, partitions.
    Probe(probe::ProbeArgs),
    /// Print the device a LABEL=, UUID=, PARTLABEL= or PARTUUID= spec names.
    Find(find::FindArgs),
}

#[derive(Subcommand)]
enum BootstateCommand {
    /// Create the boot-state file, recording hn-root.img as good.
    Init(bootstate::InitArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Status(args) => status::status(&args),
        Command::Explain(args) => status::explain(&args),
        Command::MarkGood(args) => mark_good::mark_good(&args),
        Command::Stage(args) => stage::stage(&args),
        Command::Publish(args) => publish::run(&args),
        Command::HealthFailed(args) => health::health_failed(&args),
        Command::Install(args) => install::install(&args),
        Command::Image(cmd) => image::image(&cmd),
        Command::Sysprep(args) => sysprep::sysprep_cmd(&args),
        Command::Host(cmd) => host::host(&cmd),
        Command::DiscardPartials(args) => stage::discard(&args),
        Command::History(args) => history::history(&args),
        Command::Metrics(args) => metrics::metrics(&args),
        Command::Revert(args) => revert::revert(&args),
        Command::Reboot(args) => reboot::reboot(&args),
        Command::Bootstate(BootstateCommand::Init(args)) => bootstate::init(&args),
        Command::Bootloader(cmd) => bootloader::bootloader(&cmd),
        Command::Probe(args) => probe::run(&args),
        Command::Find(args) => find::run(&args),
    };
    out::finish(code)
}
