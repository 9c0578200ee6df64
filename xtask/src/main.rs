//! `cargo xtask`: hnroot's build, test and demo driver. Every command first makes sure the
//! machine has what it needs (Debian packages, Rust targets, the GRUB source), so the two README
//! commands work on a fresh Debian 12 machine.

mod apt;
mod benchinit;
mod blkid_corpus;
mod bootsmoke;
mod buildenv;
mod busybox;
mod cffi;
mod cpio;
mod demo;
mod deps;
mod disk;
mod e2e;
mod freshcheck;
mod fuzz;
mod grubimage;
mod grubmod;
// The GRUB-level test lives with the module it tests.
#[path = "../../grub-module/tests/grub_level.rs"]
mod grub_level;
mod header;
mod initramfs;
mod itools;
mod kernel;
mod linuxrc;
mod qemu;
mod relax;
mod scenario;
mod scenario_boot;
mod scenario_inspect;
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
    /// Install what the build and the tests need (apt packages, Rust targets); with --check,
    /// then name every program of the table (xtask/src/deps.rs) still missing from PATH.
    Deps {
        /// After installing, check that every program of the table is on PATH.
        #[arg(long)]
        check: bool,
    },
    /// Fetch util-linux's blkid test corpus (Debian's source package at the installed version)
    /// into target/hnroot-build/blkid-corpus/ and print its path.
    BlkidCorpus,
    /// Run every check: rustfmt, clippy (warnings denied) and all tests.
    Test,
    /// Build the GRUB module target/hnroot-build/grub-module/hnroot.mod (GRUB source, Rust
    /// staticlib, C, GRUB's verifier).
    GrubModule,
    /// Generate hnroot-ffi/include/hnroot.h with cbindgen (--check: fail if it is stale).
    Header {
        /// Compare with the committed header instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Run every fuzz target for a short while (cargo-fuzz, installed if missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 20)]
        seconds: u32,
    },
    /// Compile hnroot-ffi/tests/c/test_ffi.c against the header and the host staticlib; run it.
    CFfiTest,
    /// Build hnroot.mod into Debian's GRUB and run every decision scenario under OVMF + QEMU.
    GrubTest,
    /// Build the boot chain from today's parts (Debian kernel and GRUB, prototype linuxrc,
    /// test root image) and boot it in QEMU on ext4 and btrfs hostparts, timing each boot.
    BootSmoke(bootsmoke::Args),
    /// Build hnroot's standalone initramfs: static hnroot-init as /init, the kernel modules
    /// the boot needs, optionally busybox; prints its size with and without modules.
    Initramfs(initramfs::Args),
    /// Test the initramfs-tools integration (boot=hnroot script and hook): the script in a
    /// fake root under busybox and klibc sh, mkinitramfs in a debootstrapped Debian 12 tree,
    /// and a QEMU boot of the result.
    InitramfsToolsTest(itools::Args),
    /// Benchmark: kernel start -> switch_root with hnroot-init as /init against the busybox-sh
    /// linuxrc, side by side in QEMU on the same disk; prints medians, ratios and sizes.
    BenchInitramfs(benchinit::Args),
    /// The scenario suite: the whole chain (OVMF, GRUB with hnroot.mod, kernel, hnroot-init)
    /// in QEMU on real disks: update, mark-good, revert, rollback, power cuts, bad inputs.
    E2e(e2e::Args),
    /// One full life cycle in QEMU, narrated: v1, stage v2, v2 boots directly, revert,
    /// automatic rollback of a bad v3; what GRUB chose and why, what the initramfs did.
    Demo,
    /// The README's two commands' promise on a fresh machine: a debootstrapped minbase Debian 12
    /// tree with the Rust toolchain and a clean clone of HEAD runs `cargo xtask deps --check`
    /// and `cargo xtask demo` in a chroot (slow; not part of `cargo xtask test`).
    FreshCheck(freshcheck::Args),
    /// Build a scenario disk (rootless): GPT, ESP with GRUB + hnroot.mod and the boot state,
    /// hostpart (ext4 or btrfs) with test images.
    Disk(scenario::DiskArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Deps { check: false } => deps::ensure(),
        Command::Deps { check: true } => deps::check(),
        Command::BlkidCorpus => {
            deps::ensure()?;
            println!("{}", blkid_corpus::fetch()?.display());
            Ok(())
        }
        Command::Test => test(),
        Command::GrubModule => {
            deps::ensure()?;
            let module = grubmod::build()?;
            println!(
                "{}: {} bytes, for Debian grub2 {} (x86_64-efi)",
                module.path.display(),
                module.size,
                grubmod::GRUB_DEBIAN_VERSION
            );
            Ok(())
        }
        Command::Header { check } => header::run(check),
        Command::CFfiTest => cffi::run(),
        Command::Fuzz { seconds } => fuzz::run(seconds),
        Command::GrubTest => {
            deps::ensure()?;
            grub_level::run()
        }
        Command::BootSmoke(args) => {
            deps::ensure()?;
            bootsmoke::run(&args)
        }
        Command::Initramfs(args) => {
            deps::ensure()?;
            initramfs::run(&args)
        }
        Command::E2e(args) => {
            deps::ensure()?;
            e2e::run(&args)
        }
        Command::Demo => {
            deps::ensure()?;
            demo::run()
        }
        Command::Disk(args) => {
            deps::ensure()?;
            scenario::disk_command(&args, e2e::IMAGES)
        }
        Command::InitramfsToolsTest(args) => {
            deps::ensure()?;
            itools::run(&args)
        }
        Command::FreshCheck(args) => {
            deps::ensure()?;
            freshcheck::run(&args)
        }
        Command::BenchInitramfs(args) => {
            deps::ensure()?;
            benchinit::run(&args)
        }
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
    // The probes are checked against util-linux's own corpus: fetched first, required here.
    let corpus = blkid_corpus::fetch()?;
    util::step_env(
        "unit and integration tests",
        &["cargo", "test", "--workspace"],
        &[
            (blkid_corpus::ENV, corpus.as_os_str()),
            (blkid_corpus::REQUIRE_ENV, std::ffi::OsStr::new("1")),
        ],
    )?;
    fuzz::run(10)?;
    header::run(true)?;
    cffi::run()?;
    // Builds hnroot.mod (GRUB source, verifier) and runs it in GRUB under OVMF + QEMU.
    grub_level::run()?;
    // boot=hnroot under initramfs-tools: fake root, mkinitramfs in a cached debootstrapped
    // tree (~3 min the first time), two QEMU boots (~100 s with the tree cached).
    itools::run(&itools::Args::default())?;
    // The whole chain in QEMU (issue 6): life cycle, power cuts on ext4 and btrfs (3 seeds
    // each), bad inputs; ~15-25 min on 2 cores with TCG, per-scenario times printed.
    e2e::run(&e2e::Args::ci())?;
    Ok(())
}
