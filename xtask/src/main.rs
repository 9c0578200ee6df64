//! `cargo xtask`: hnroot's command runner. Every command first makes sure the machine has what
//! it needs (Debian packages, Rust targets), so the README's two commands work on a fresh
//! Debian 12 machine. It runs the checks (rustfmt, clippy, the workspace tests, fuzzing, the
//! header and C ABI checks) itself; the parts of the test harness are the library
//! `hnroot-testkit` (`testkit/`) and the system-test suites are the binaries of
//! `hnroot-system-tests` (`tests/`), which the suite commands here build and run with the
//! arguments given. It holds no test logic of its own.

mod cffi;
mod deps;
mod freshcheck;
mod fuzz;
mod header;

use std::ffi::OsStr;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hnroot_testkit::{blkid_corpus, buildenv, grubmod};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "hnroot build, test and demo driver")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

/// Arguments handed to a suite binary as they are (`--help` included).
#[derive(clap::Args, Debug)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Subcommand)]
enum Task {
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
    /// Run every check: rustfmt, clippy (warnings denied), all tests and the system-test suites.
    Test,
    /// Build the GRUB module hnroot.mod for each supported GRUB (Debian 12's 2.06, Debian 13's
    /// 2.12; GRUB source, Rust staticlib, C, GRUB's verifier) and the kit
    /// target/hnroot-build/grub-kit; --debian 12|13 for one.
    #[command(disable_help_flag = true)]
    GrubModule(Forwarded),
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
    /// Build hnroot.mod into a Debian release's GRUB (--debian 12|13, default 13) and run every
    /// decision scenario under OVMF + QEMU.
    #[command(disable_help_flag = true)]
    GrubTest(Forwarded),
    /// Build hnroot's standalone initramfs: static hnroot-init as /init, the kernel modules
    /// the boot needs, optionally busybox; prints its size with and without modules.
    #[command(disable_help_flag = true)]
    Initramfs(Forwarded),
    /// Test the initramfs-tools integration (boot=hnroot script and hook): the script in a
    /// fake root under busybox and klibc sh, mkinitramfs in a debootstrapped Debian 12 tree,
    /// and QEMU boots of the result.
    #[command(disable_help_flag = true)]
    InitramfsToolsTest(Forwarded),
    /// Benchmark: kernel start -> switch_root with hnroot-init as /init against the busybox-sh
    /// linuxrc, side by side in QEMU; prints medians, ratios and sizes.
    #[command(disable_help_flag = true)]
    BenchInitramfs(Forwarded),
    /// The scenario suite: the whole chain (OVMF, GRUB with hnroot.mod, kernel, hnroot-init)
    /// in QEMU on real disks: update, mark-good, revert, rollback, power cuts, bad inputs.
    #[command(disable_help_flag = true)]
    E2e(Forwarded),
    /// One full life cycle in QEMU, narrated: v1, stage v2, v2 boots directly, revert,
    /// automatic rollback of a bad v3; what GRUB chose and why, what the initramfs did.
    #[command(disable_help_flag = true)]
    Demo(Forwarded),
    /// The README's two commands' promise on a fresh machine: a debootstrapped minbase Debian 12
    /// tree with the Rust toolchain and a clean clone of HEAD runs `cargo xtask deps --check`
    /// and `cargo xtask demo` in a chroot (slow; not part of `cargo xtask test`).
    FreshCheck(freshcheck::Args),
    /// Build the hnroot Debian package (target/hnroot-build/deb/hnroot_<version>_amd64.deb).
    #[command(disable_help_flag = true)]
    Deb(Forwarded),
    /// hnroot on a real Debian with systemd: package, image build, install, stage, and QEMU
    /// boots (an update committed by its health checks, a failing health check rolled back).
    #[command(disable_help_flag = true)]
    Distro(Forwarded),
    /// Build a scenario disk (rootless): GPT, ESP with GRUB + hnroot.mod and the boot state,
    /// hostpart (ext4 or btrfs) with test images.
    #[command(disable_help_flag = true)]
    Disk(Forwarded),
}

/// A program of the workspace that a command runs: its package and binary.
struct Binary {
    package: &'static str,
    name: &'static str,
}

impl Binary {
    /// A system-test suite (or the disk command), `tests/src/bin/<name>`.
    const fn suite(name: &'static str) -> Binary {
        Binary {
            package: "hnroot-system-tests",
            name,
        }
    }

    /// A front end of a harness part, `testkit/src/bin/<name>`.
    const fn tool(name: &'static str) -> Binary {
        Binary {
            package: "hnroot-testkit",
            name,
        }
    }

    /// `cargo run --quiet -p PACKAGE --bin NAME -- ARGS` in the workspace root; its exit
    /// status.
    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<std::process::ExitStatus> {
        Command::new("cargo")
            .args([
                "run",
                "--quiet",
                "-p",
                self.package,
                "--bin",
                self.name,
                "--",
            ])
            .args(args)
            .current_dir(buildenv::workspace_root())
            .status()
            .with_context(|| format!("cannot run cargo to start {}", self.name))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let forward = |binary: Binary, f: Forwarded| -> Result<ExitCode> {
        deps::ensure()?;
        let status = binary.run(&f.args)?;
        Ok(match status.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => {
                eprintln!("{} ended by a signal ({status})", binary.name);
                ExitCode::FAILURE
            }
        })
    };
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Task::Deps { check: false } => done(deps::ensure()),
        Task::Deps { check: true } => done(deps::check()),
        Task::BlkidCorpus => done(deps::ensure().and_then(|()| {
            println!("{}", blkid_corpus::fetch()?.display());
            Ok(())
        })),
        Task::Test => done(test()),
        Task::Header { check } => done(header::run(check)),
        Task::CFfiTest => done(cffi::run()),
        Task::Fuzz { seconds } => done(fuzz::run(seconds)),
        Task::FreshCheck(args) => done(deps::ensure().and_then(|()| freshcheck::run(&args))),
        Task::GrubModule(f) => forward(Binary::tool("grub-module"), f),
        Task::Initramfs(f) => forward(Binary::tool("initramfs"), f),
        Task::GrubTest(f) => forward(Binary::suite("grub-test"), f),
        Task::InitramfsToolsTest(f) => forward(Binary::suite("initramfs-tools-test"), f),
        Task::BenchInitramfs(f) => forward(Binary::suite("bench-initramfs"), f),
        Task::E2e(f) => forward(Binary::suite("e2e"), f),
        Task::Demo(f) => forward(Binary::suite("demo"), f),
        Task::Disk(f) => forward(Binary::suite("disk"), f),
        Task::Deb(f) => forward(Binary::tool("deb"), f),
        Task::Distro(f) => forward(Binary::suite("distro"), f),
    };
    result.unwrap_or_else(|e| {
        eprintln!("Error: {e:?}");
        ExitCode::FAILURE
    })
}

/// Run a suite with `args`; fail if it fails.
fn suite(name: &'static str, args: &[&str]) -> Result<()> {
    let status = Binary::suite(name).run(args)?;
    if !status.success() {
        bail!("{name} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test() -> Result<()> {
    deps::ensure()?;
    buildenv::step("rustfmt", &["cargo", "fmt", "--all", "--", "--check"])?;
    buildenv::step(
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
    // `hnroot install` is tested with the module kit: one build per supported GRUB (Debian 12's
    // 2.06, Debian 13's 2.12).
    let kit = grubmod::build_kit()?;
    buildenv::step_env(
        "unit and integration tests",
        &["cargo", "test", "--workspace"],
        &[
            (blkid_corpus::ENV, corpus.as_os_str()),
            (blkid_corpus::REQUIRE_ENV, OsStr::new("1")),
            (grubmod::KIT_ENV, kit.dir.as_os_str()),
            (grubmod::REQUIRE_KIT_ENV, OsStr::new("1")),
        ],
    )?;
    fuzz::run(10)?;
    header::run(true)?;
    cffi::run()?;
    // hnroot.mod in each supported GRUB under OVMF + QEMU: every decision, 4 boots (~2 min
    // each). Both in full: the GRUBs differ (2.12's disk read hook, its filesystem drivers).
    suite("grub-test", &["--debian", "12"])?;
    suite("grub-test", &["--debian", "13"])?;
    // boot=hnroot under initramfs-tools: fake root, mkinitramfs in a cached debootstrapped
    // Debian 12 tree (~3 min the first time), QEMU boots (~100 s with the tree cached).
    suite("initramfs-tools-test", &[])?;
    // The whole chain in QEMU (issue 6) on Debian 12: life cycle, power cuts on ext4 and btrfs
    // (3 seeds each), bad inputs; ~15-25 min on 2 cores with TCG, per-scenario times printed.
    suite("e2e", &["--debian", "12"])?;
    // On Debian 13 (GRUB 2.12, kernel 6.12 with xz-compressed modules) only what differs by
    // release: the life cycle (GRUB 2.12 choosing and counting, hnroot-init loading compressed
    // modules, stage/mark-good/revert/rollback) and power cuts on a btrfs hostpart (GRUB
    // 2.12's btrfs driver after an interrupted switch, 6.12's btrfs with its softdeps). The
    // bad-input scenarios are decided by the core alike on both and stay on Debian 12.
    suite(
        "e2e",
        &[
            "--debian",
            "13",
            "--only",
            "lifecycle-ext4",
            "--only",
            "power-cut-btrfs",
            "--cuts",
            "2",
        ],
    )?;
    // A real Debian with systemd (issue 14): the package, image build, install, stage, an
    // update committed by its health checks and a failing health check rolled back; the Debian
    // tree is made once (~5 min) and cached.
    suite("distro", &[])?;
    Ok(())
}
