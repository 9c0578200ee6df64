//! `cargo xtask bench-initramfs`: how long the early boot takes with `hnroot-init` as `/init`
//! (`cargo xtask initramfs`) against the busybox-sh prototype linuxrc (`benches/linuxrc.sh`,
//! the seed's approach), side by side in QEMU: the same Debian kernel, the same modules, a root
//! image each (alike but for `/boot/initramfs` and the filesystem UUID) on a disk each, built
//! alike by the one disk builder, with the same GRUB image builder. hnroot-init boots through
//! the production chain (`hnroot.mod`, `grub-module/grub.cfg` verbatim, a committed boot
//! state), as in the field. The linuxrc cannot: it finds hostpart with busybox's `findfs`,
//! which knows `LABEL=` and `UUID=` but not the production command line's
//! `hnroot.hostpart=PARTUUID=`, and busybox's sh runs its own applets before any `PATH` lookup,
//! so nothing in its initramfs can stand in; only `benches/linuxrc.sh` itself could change.
//! So its GRUB image carries `hnroot.mod` too but boots with [`LINUXRC_GRUB_CFG`], which
//! loop-mounts `hn-root.img` and passes `hnroot.hostpart=LABEL=hostpart`. What differs is
//! therefore GRUB's part (not measured: every figure starts at the kernel's start) and how
//! hostpart is named (hnroot-init also mounts the ESP that `hnroot.esp=PARTUUID=` names to read
//! the boot state; the linuxrc has none). Boots alternate between the two programs so that
//! host noise spreads over both. Every figure comes from the guest's own clock: the kernel's timestamp on
//! `Run /init as init process`, and the uptime the test root's init prints first thing after
//! `switch_root` (`hnroot-test: init started at uptime=`), so QEMU's start, OVMF and GRUB do
//! not count. Under TCG the guest clock still follows the host's, so the host's load shows;
//! `--icount N` makes it count instructions instead (2^N ns each), and then one boot repeats
//! the next to the millisecond (I/O then costs nothing, so that round measures CPU work).
//! It prints medians and ratios and the initramfs sizes; it asserts what booted, never how
//! fast.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use regex::Regex;

use clap::Parser;
use hnroot_testkit::bootparts::{committed_block, core_uuid};
use hnroot_testkit::buildenv;
use hnroot_testkit::disk::{self, BuiltFs, DiskSpec, EspSpec, HostFs, HostpartSpec};
use hnroot_testkit::grubimage::{self, GrubImage};
use hnroot_testkit::initramfs::{self, Compress};
use hnroot_testkit::kernel::{self, ModuleSet};
use hnroot_testkit::linuxrc;
use hnroot_testkit::qemu::{Vm, VmSpec};

const IMAGE_NAME: &str = "hn-root.img";
const VERSION: &str = "bench-1";

/// The linuxrc side's grub.cfg (see the module documentation for why it is not the production
/// one): find hostpart by label, loop-mount `hn-root.img`, boot its kernel and initramfs with
/// the parameters the linuxrc reads, the production `console=` and `panic=`.
const LINUXRC_GRUB_CFG: &str = r#"# bench-initramfs, linuxrc side (tests/src/bin/bench-initramfs.rs).
set timeout=0
if ! search --no-floppy --label hostpart --set=hostpart; then
  echo "bench-initramfs: no filesystem labelled hostpart"
  halt
fi
loopback loop "($hostpart)/hn-root.img"
probe --fs-uuid --set=uuid (loop)
linux (loop)/boot/kernel hnroot.image=hn-root.img hnroot.uuid=$uuid hnroot.hostpart=LABEL=hostpart console=ttyS0 panic=10
initrd (loop)/boot/initramfs
boot
"#;
/// The goal of issue 5: hnroot-init takes at most 0.7 of the linuxrc's time.
const GOAL: f64 = 0.7;

/// `cargo xtask bench-initramfs`.
#[derive(Debug, Parser)]
#[command(
    name = "bench-initramfs",
    about = "Benchmark: kernel start -> switch_root with hnroot-init as /init against the \
             busybox-sh linuxrc, side by side in QEMU on the same disk; prints medians, ratios \
             and sizes."
)]
struct Args {
    /// Boots per program; the programs alternate.
    #[arg(long, default_value_t = 5)]
    boots: u32,
    /// Deadline for one boot, power-on to QEMU exit, in seconds.
    #[arg(long, default_value_t = 240)]
    timeout: u64,
    /// Run QEMU with `-icount shift=N`: the guest clock counts instructions (2^N ns each)
    /// instead of following the host's, so the host's load stops showing in the figures.
    #[arg(long)]
    icount: Option<u32>,
    /// Leave this module (and what only it needs) out of hnroot-init's initramfs, e.g.
    /// `btrfs` to see what loading filesystem drivers on demand would give on an ext4
    /// hostpart. Repeatable. The comparison is then no longer like for like, and says so.
    #[arg(long = "hnroot-without")]
    hnroot_without: Vec<String>,
}

/// The program under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    HnrootInit,
    Linuxrc,
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::HnrootInit => "hnroot-init",
            Program::Linuxrc => "linuxrc",
        }
    }

    /// Its line just before `switch_root`, as it prints it.
    fn switch_line(self) -> &'static str {
        match self {
            Program::HnrootInit => r"hnroot: switch_root to /newroot ",
            Program::Linuxrc => r"linuxrc: switch_root to /newroot ",
        }
    }
}

/// One boot's figures, guest seconds since kernel start.
#[derive(Debug, Clone)]
struct Sample {
    program: Program,
    /// The kernel starts `/init` (after unpacking the initramfs).
    run_init: f64,
    /// The real init runs (its first line reads /proc/uptime).
    real_init: f64,
    /// hnroot-init's own figure for loading the modules (`hnroot: modules: loaded N (...) in
    /// X s`); the linuxrc prints none.
    modules: Option<f64>,
    /// hnroot-init's steps and the guest seconds each took (see [`step_shares`]); empty for
    /// the linuxrc.
    steps: Vec<(&'static str, f64)>,
}

impl Sample {
    /// `/init` start → real init: the initramfs program's own share.
    fn program_time(&self) -> f64 {
        self.real_init - self.run_init
    }
}

/// Sizes of one initramfs, with and without modules.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    compressed: u64,
    cpio: u64,
    bare_compressed: u64,
    bare_cpio: u64,
    modules: usize,
}

fn main() -> Result<()> {
    let args = &Args::parse();
    if args.boots == 0 {
        bail!("bench-initramfs: --boots 0 leaves nothing to measure");
    }
    let work = buildenv::fresh_dir(&buildenv::build_root().join("bench-initramfs"))?;
    // The build machine's release: its kernel and (below) its GRUB.
    let release = hnroot_testkit::release::this_machine()?;
    let kernel = kernel::fetch_for(release)?;
    let modules = kernel.modules_for(kernel::BOOT_MODULES)?;

    let init = initramfs::static_binary("hnroot-init", "hnroot-init")?;
    let spec = initramfs::Spec {
        init,
        modules_dir: Some(kernel.modules_dir.clone()),
        modules_root: None,
        wanted: initramfs::default_modules()
            .into_iter()
            .filter(|m| !args.hnroot_without.contains(m))
            .collect(),
        busybox: None,
        compress: Compress::Zstd,
    };
    for m in &args.hnroot_without {
        if !initramfs::default_modules().contains(m) {
            bail!(
                "--hnroot-without {m}: not one of the modules both initramfs load ({})",
                initramfs::default_modules().join(" ")
            );
        }
    }
    let hnroot = initramfs::build(&spec, &work.join("initramfs-hnroot.zst"))?;
    if args.hnroot_without.is_empty() && hnroot.modules != modules.load_order {
        bail!(
            "the two initramfs would load different modules, the comparison would be unfair:\n  \
             hnroot-init: {}\n  linuxrc:     {}",
            hnroot.modules.join(" "),
            modules.load_order.join(" ")
        );
    }
    let hnroot_bare = initramfs::build(
        &initramfs::Spec {
            modules_dir: None,
            modules_root: None,
            ..spec.clone()
        },
        &work.join("initramfs-hnroot-bare.zst"),
    )?;
    let rc = linuxrc::build(&kernel, &modules, &work.join("initramfs-linuxrc.zst"))?;
    let rc_bare = linuxrc::build(
        &kernel,
        &ModuleSet::default(),
        &work.join("initramfs-linuxrc-bare.zst"),
    )?;
    let sizes_hnroot = Sizes {
        compressed: hnroot.compressed_bytes,
        cpio: hnroot.cpio_bytes,
        bare_compressed: hnroot_bare.compressed_bytes,
        bare_cpio: hnroot_bare.cpio_bytes,
        modules: hnroot.modules.len(),
    };
    let sizes_rc = Sizes {
        compressed: rc.compressed_bytes,
        cpio: rc.cpio_bytes,
        bare_compressed: rc_bare.compressed_bytes,
        bare_cpio: rc_bare.cpio_bytes,
        modules: rc.modules,
    };

    // A GRUB image, a root image (its own initramfs) and a disk per program, built alike.
    let production = grubimage::production(grubimage::Menu::Default)?;
    let baseline = grubimage::test_script(LINUXRC_GRUB_CFG, &[], &[], &work.join("linuxrc-grub"))?;
    let mut disks = Vec::new();
    for (program, grub, initramfs) in [
        (Program::HnrootInit, &production, &hnroot.path),
        (Program::Linuxrc, &baseline, &rc.path),
    ] {
        disks.push((
            program,
            build_disk(&work, program, grub, &kernel.vmlinuz, initramfs)?,
        ));
    }

    let timeout = Duration::from_secs(args.timeout);
    let mut samples = Vec::new();
    for i in 1..=args.boots {
        for (program, (disk, root)) in &disks {
            let name = format!("bench-initramfs {} #{i}", program.name());
            let run_dir = work.join("runs").join(format!("{}-{i}", program.name()));
            eprintln!(
                "==> {name}: booting (serial log {}/serial.log)",
                run_dir.display()
            );
            let s = boot_once(
                &name,
                *program,
                disk,
                &root.uuid,
                &run_dir,
                timeout,
                args.icount,
            )?;
            eprintln!(
                "==> {name}: /init at {:.3} s, real init at {:.2} s",
                s.run_init, s.real_init
            );
            samples.push(s);
        }
    }
    report(&kernel, args, &samples, sizes_hnroot, sizes_rc);
    Ok(())
}

/// `program`'s disk: a root image with `kernel` and `initramfs` as hn-root.img on an ext4
/// hostpart, `grub` and a boot state committing the image on the ESP.
fn build_disk(
    work: &Path,
    program: Program,
    grub: &GrubImage,
    kernel: &Path,
    initramfs: &Path,
) -> Result<(PathBuf, BuiltFs)> {
    let dir = buildenv::fresh_dir(&work.join(program.name()))?;
    let root = disk::build_root_image(
        &disk::RootImageSpec::new(VERSION, kernel, initramfs),
        &dir.join(IMAGE_NAME),
    )?;
    let mut esp = EspSpec::new(grub);
    esp.bootstate = Some(committed_block(core_uuid(root.uuid)));
    let built = disk::build(
        &DiskSpec {
            name: program.name().to_string(),
            esp,
            hostpart: HostpartSpec::new(HostFs::Ext4).image(IMAGE_NAME, &root.path),
        },
        &dir,
    )?;
    Ok((built.path, root))
}

fn boot_once(
    name: &str,
    program: Program,
    disk: &Path,
    uuid: &disk::Uuid,
    run_dir: &Path,
    timeout: Duration,
    icount: Option<u32>,
) -> Result<Sample> {
    let mut spec = VmSpec::new(name, &[disk], run_dir);
    // Every boot starts from the same disk: writes go to a throw-away overlay.
    spec.extra_args.push("-snapshot".into());
    if let Some(shift) = icount {
        spec.extra_args.push("-icount".into());
        spec.extra_args.push(format!("shift={shift},sleep=on"));
    }
    let mut vm = Vm::start(&spec)?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    let re = |s: &str| Regex::new(s).context("bench milestone regex");
    let run_init = vm.wait_for(
        &re(r"\[\s*([0-9]+\.[0-9]+)\] Run /init as init process")?,
        left(&vm),
    )?;
    let modules = match program {
        Program::HnrootInit => Some(
            vm.wait_for(
                &re(r"hnroot: modules: loaded \d+ \([^)]*\) in ([0-9]+\.[0-9]+) s")?,
                left(&vm),
            )?
            .groups[1]
                .clone(),
        ),
        Program::Linuxrc => None,
    };
    vm.wait_for(&re(program.switch_line())?, left(&vm))?;
    let real = vm.wait_for(
        &re(r"hnroot-test: init started at uptime=([0-9]+\.[0-9]+)")?,
        left(&vm),
    )?;
    let booted = vm.wait_for(
        &re(r"hnroot-test: booted version=(\S+) uuid=(\S+)")?,
        left(&vm),
    )?;
    if booted.groups[1] != VERSION || booted.groups[2] != uuid.to_string() {
        bail!(
            "{name}: booted `{}`, expected version={VERSION} uuid={uuid}",
            booted.line.trim()
        );
    }
    vm.wait_for(&re(r"hnroot-test: powering off")?, left(&vm))?;
    let status = vm.wait_exit(left(&vm))?;
    if !status.success() {
        bail!("{name}: QEMU exited with {status} after the guest powered off");
    }
    let number = |s: &str| -> Result<f64> {
        s.parse()
            .with_context(|| format!("{name}: {s:?} is not a number of seconds"))
    };
    let run_init = number(&run_init.groups[1])?;
    let real_init = number(&real.groups[1])?;
    let steps = match program {
        Program::HnrootInit => step_shares(&vm.log(), run_init, real_init)
            .with_context(|| format!("{name}: reading hnroot-init's steps from the console"))?,
        Program::Linuxrc => Vec::new(),
    };
    Ok(Sample {
        program,
        run_init,
        real_init,
        modules: modules.as_deref().map(number).transpose()?,
        steps,
    })
}

/// hnroot-init's steps, by how the line that ends each one starts (after `hnroot: `); the first
/// pattern that matches counts. A line matching none belongs to the step before it.
const STEPS: &[(&str, &str)] = &[
    ("hnroot-init ", "start (exec /init, open the log)"),
    ("cmdline: ", "command line"),
    (
        "modules: loaded * for ext4",
        "modules: hostpart's filesystem",
    ),
    (
        "modules: loaded * for btrfs",
        "modules: hostpart's filesystem",
    ),
    (
        "modules: loaded * for xfs",
        "modules: hostpart's filesystem",
    ),
    ("modules: loaded * for vfat", "modules: the ESP's (vfat)"),
    (
        "modules: loaded * for the writable layer",
        "modules: overlay",
    ),
    ("modules: loaded ", "modules: disk drivers"),
    ("hostpart: looking ", "find hostpart"),
    ("hostpart: found ", "find hostpart"),
    ("hostpart: chosen ", "find hostpart"),
    ("mounted hostpart ", "mount hostpart"),
    ("boot state: ", "ESP and boot state"),
    ("hostpart: ", "observe hostpart (judge every image)"),
    ("plan: ", "plan"),
    ("record: ", "plan"),
    ("attached ", "attach the loop device"),
    ("step ", "mount image and overlay"),
    ("init ", "check the image's init"),
    ("identity", "identity projection"),
    ("history: ", "history record"),
    ("writable layers: ", "stale layer cleanup"),
    ("moved hostpart ", "keep hostpart in the new root"),
    ("created ", "keep hostpart in the new root"),
    ("/data0 ", "keep hostpart in the new root"),
    (
        "bind-mounted /hostpart/data",
        "keep hostpart in the new root",
    ),
    ("switch_root to ", "switch_root"),
    ("moved /", "switch_root"),
    ("removed ", "switch_root"),
    ("switch_root done", "switch_root"),
];

/// The step a `hnroot: ` line (its text after the prefix) ends, from [`STEPS`]: a `*` in a
/// pattern stands for any text without a space.
fn step_of(text: &str) -> Option<&'static str> {
    STEPS.iter().find_map(|(pattern, step)| {
        let matched = match pattern.split_once('*') {
            None => text.starts_with(pattern),
            Some((head, tail)) => text.strip_prefix(head).is_some_and(|rest| {
                rest.split_once(' ')
                    .is_some_and(|(_, after)| after.starts_with(tail.trim_start()))
            }),
        };
        matched.then_some(*step)
    })
}

/// The kernel's line when its random number generator is ready: reading random bytes before it
/// (the identity step's machine ID on a first boot) waits for it.
const CRNG_READY: &str = "random: crng init done";
/// The share before [`CRNG_READY`], when it comes while hnroot-init runs.
const CRNG_WAIT: &str = "wait for the kernel's random pool";
/// Steps that are the kernel loading modules (the same work for the linuxrc).
fn is_module_step(step: &str) -> bool {
    step.starts_with("modules: ")
}

/// Each step's guest seconds in one boot's console `log`: the time from the kernel's timestamp
/// on one `hnroot: ` line to the next belongs to the step the later line ends (hnroot-init
/// logs a step when it is done), from `run_init` (`Run /init`) on; what follows the last line
/// up to `real_init` is the real init's exec. The kernel's [`CRNG_READY`] line ends a share of
/// its own ([`CRNG_WAIT`]): nothing hnroot-init logs comes while it waits for random bytes.
/// Steps in boot order, each once, summed.
fn step_shares(log: &str, run_init: f64, real_init: f64) -> Result<Vec<(&'static str, f64)>> {
    let line = Regex::new(&format!(
        r"^\[\s*([0-9]+\.[0-9]+)\] (?:hnroot: (.*)|({CRNG_READY}))$"
    ))
    .context("step regex")?;
    let mut steps: Vec<(&'static str, f64)> = Vec::new();
    let mut add = |step: &'static str, secs: f64| match steps.iter_mut().find(|(s, _)| *s == step) {
        Some((_, total)) => *total += secs,
        None => steps.push((step, secs)),
    };
    let mut last = run_init;
    let mut current = None;
    for caps in log.lines().filter_map(|l| line.captures(l.trim_end())) {
        let at: f64 = caps[1].parse().context("a kernel timestamp")?;
        if at < run_init {
            continue;
        }
        let Some(text) = caps.get(2) else {
            // The random pool became ready: only between hnroot-init's first and last lines.
            if current.is_some() {
                add(CRNG_WAIT, at - last);
                last = at;
            }
            continue;
        };
        let step = step_of(text.as_str()).or(current).with_context(|| {
            format!(
                "`hnroot: {}` names no step this benchmark knows",
                text.as_str()
            )
        })?;
        add(step, at - last);
        current = Some(step);
        last = at;
    }
    if current.is_none() {
        bail!("no `[time] hnroot: ` line after `Run /init` at {run_init} s");
    }
    add("exec the real init", (real_init - last).max(0.0));
    Ok(steps)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

fn report(kernel: &kernel::Kernel, args: &Args, samples: &[Sample], hnroot: Sizes, rc: Sizes) {
    println!();
    println!(
        "bench-initramfs: kernel {} (Debian {}), QEMU TCG 1 vCPU, {} boots each, alternating; \
         hnroot-init through the production grub.cfg; guest clock {}",
        kernel.release,
        kernel.deb_version,
        args.boots,
        args.icount
            .map_or("follows the host's".to_string(), |n| format!(
                "counts instructions (-icount shift={n})"
            ))
    );
    println!(
        "guest seconds: kernel start -> `Run /init` -> real init (test init's first /proc/uptime)"
    );
    println!(
        "{:<12} {:>2} {:>10} {:>10} {:>16} {:>8}",
        "program", "#", "/init", "real init", "/init->real init", "modules"
    );
    let mut counters = [0u32; 2];
    for s in samples {
        let k = usize::from(s.program == Program::Linuxrc);
        counters[k] += 1;
        println!(
            "{:<12} {:>2} {:>10.3} {:>10.2} {:>16.2} {:>8}",
            s.program.name(),
            counters[k],
            s.run_init,
            s.real_init,
            s.program_time(),
            s.modules.map_or("-".to_string(), |m| format!("{m:.2}"))
        );
    }
    let of = |p: Program, f: fn(&Sample) -> f64| {
        median(samples.iter().filter(|s| s.program == p).map(f).collect())
    };
    let total_h = of(Program::HnrootInit, |s| s.real_init);
    let total_l = of(Program::Linuxrc, |s| s.real_init);
    let prog_h = of(Program::HnrootInit, Sample::program_time);
    let prog_l = of(Program::Linuxrc, Sample::program_time);
    let init_h = of(Program::HnrootInit, |s| s.run_init);
    let init_l = of(Program::Linuxrc, |s| s.run_init);
    println!();
    println!(
        "medians        kernel start -> /init   /init -> real init   kernel start -> real init"
    );
    println!("hnroot-init    {init_h:>22.3} {prog_h:>20.2} {total_h:>27.2}");
    println!("linuxrc        {init_l:>22.3} {prog_l:>20.2} {total_l:>27.2}");
    println!(
        "ratio hnroot-init / linuxrc: kernel start -> real init {:.2}, /init -> real init {:.2} \
         (goal <= {GOAL})",
        total_h / total_l,
        prog_h / prog_l
    );
    let modules_h = median(samples.iter().filter_map(|s| s.modules).collect());
    if args.hnroot_without.is_empty() {
        println!(
            "both load the same {} modules; hnroot-init says that took it {modules_h:.2} s \
             (median), the rest of its /init -> real init is {:.2} s",
            hnroot.modules,
            prog_h - modules_h
        );
    } else {
        println!(
            "NOT like for like: hnroot-init's initramfs lacks {} ({} modules against the \
             linuxrc's {}); loading them took it {modules_h:.2} s (median), the rest {:.2} s",
            args.hnroot_without.join(" "),
            hnroot.modules,
            rc.modules,
            prog_h - modules_h
        );
    }
    print_steps(samples, prog_h, prog_l);
    println!();
    for (name, s) in [("hnroot-init", hnroot), ("linuxrc", rc)] {
        println!(
            "initramfs {name:<12} {:>6} KiB zstd ({:>6} KiB cpio) with {} modules; {:>5} KiB zstd \
             ({:>5} KiB cpio) without",
            kib(s.compressed),
            kib(s.cpio),
            s.modules,
            kib(s.bare_compressed),
            kib(s.bare_cpio)
        );
    }
}

/// hnroot-init's steps: the median of each over the boots, its share of hnroot-init's `/init`
/// -> real init, and of the linuxrc's.
fn print_steps(samples: &[Sample], prog_h: f64, prog_l: f64) {
    let mut order: Vec<&'static str> = Vec::new();
    for (step, _) in samples.iter().flat_map(|s| &s.steps) {
        if !order.contains(step) {
            order.push(step);
        }
    }
    println!();
    println!(
        "hnroot-init's steps (guest seconds from the kernel's timestamps on its lines; medians)"
    );
    println!(
        "{:<40} {:>8} {:>12} {:>14}",
        "step", "seconds", "of its time", "of linuxrc's"
    );
    let mut sum = 0.0;
    for step in order {
        let t = median(
            samples
                .iter()
                .filter(|s| s.program == Program::HnrootInit)
                .map(|s| {
                    s.steps
                        .iter()
                        .filter(|(n, _)| *n == step)
                        .map(|(_, t)| t)
                        .sum()
                })
                .collect(),
        );
        sum += t;
        println!(
            "{step:<40} {t:>8.3} {:>11.1}% {:>13.1}%",
            100.0 * t / prog_h,
            100.0 * t / prog_l
        );
    }
    println!("{:<40} {sum:>8.3}", "(sum of the medians)");
    let per_boot = |pick: fn(&str) -> bool| {
        median(
            samples
                .iter()
                .filter(|s| s.program == Program::HnrootInit)
                .map(|s| {
                    s.steps
                        .iter()
                        .filter(|(n, _)| pick(n))
                        .map(|(_, t)| t)
                        .sum()
                })
                .collect(),
        )
    };
    let modules = per_boot(is_module_step);
    let random = per_boot(|n| n == CRNG_WAIT);
    let own = per_boot(|n| !is_module_step(n) && n != CRNG_WAIT);
    println!(
        "of hnroot-init's {prog_h:.2} s: the kernel loading modules {modules:.2} s, waiting for \
         the random pool {random:.2} s, the rest {own:.2} s ({:.2} of the linuxrc's time)",
        own / prog_l
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    /// A console from a real boot (the e2e suite's lifecycle-ext4, Debian 12), abridged only
    /// by leaving lines out.
    const CONSOLE: &str = "\
[    5.455838] Run /init as init process
[    5.544182] hnroot: hnroot-init 0.1.0 starting as PID 1 on Linux 6.1.0-57-amd64
[    5.552880] hnroot: cmdline: GRUB booted hn-root.img (UUID e3519ef1-e6a1-44c7-ad20-893bfb2a772f), hostpart PARTUUID=6ab0ac03-2908-4e50-b692-f4dde56c3766
[    5.666924] ACPI: \\_SB_.GSIF: Enabled at IRQ 21
[    5.812309] hnroot: modules: loaded 10 (virtio_pci_legacy_dev virtio_pci_modern_dev virtio_ring virtio virtio_pci virtio_blk loop crc32c_generic blake2b_generic xxhash_generic) in 0.24 s, 0 already present
[    5.813252] hnroot: hostpart: looking for partition with PARTUUID 6ab0ac03-2908-4e50-b692-f4dde56c3766 (up to 30 s)
[    5.856114] hnroot: hostpart: found /dev/vda2 (ext4, LABEL=hostpart, PARTUUID=6ab0ac03-2908-4e50-b692-f4dde56c3766) after 0.0 s
[    6.150110] hnroot: modules: loaded 4 for ext4 (crc16 mbcache jbd2 ext4) in 0.29 s, 0 already present
[    6.194473] hnroot: mounted hostpart /dev/vda2 (ext4, LABEL=hostpart, PARTUUID=6ab0ac03-2908-4e50-b692-f4dde56c3766) rw at /hostpart
[    6.271802] hnroot: modules: loaded 5 for vfat (fat vfat nls_cp437 nls_ascii nls_iso8859_1) in 0.03 s, 0 already present
[    6.282489] hnroot: boot state: committed (good e3519ef1-e6a1-44c7-ad20-893bfb2a772f) (from /dev/vda1 hnroot/bootstate)
[    6.320389] hnroot: hostpart: hn-root.img: ext4 UUID=e3519ef1-e6a1-44c7-ad20-893bfb2a772f (35651584 bytes)
[    6.321082] hnroot: plan: normal (1 steps)
[    6.321277] hnroot: record: plan=normal steps=1 mount=hn-root.img uuid=e3519ef1-e6a1-44c7-ad20-893bfb2a772f notes=-
[    6.329254] hnroot: attached hn-root.img to /dev/loop0 read-only, direct I/O
[    6.436011] hnroot: modules: loaded 1 for the writable layer (overlay) in 0.04 s, 0 already present
[    6.476049] hnroot: step 1/1: mount hn-root.img (UUID e3519ef1-e6a1-44c7-ad20-893bfb2a772f) as root: mounted /dev/loop0 (ext4) read-only at /run/hnroot/image io=direct
[    6.491989] hnroot: init /sbin/init (/sbin/init) is there
[    9.473326] random: crng init done
[    9.492772] hnroot: identity: steps=5 created=machine-id,hostname refused=0 notes=first-boot
[    9.493031] hnroot: identity: no host state yet: this server's identity is created now and kept on hostpart
[    9.612309] hnroot: identity step 5/5: bind hostname -> /etc/hostname (file): ok
[    9.624558] hnroot: history: #1 boot hn-root.img (UUID e3519ef1-e6a1-44c7-ad20-893bfb2a772f) reason normal plan normal good e3519ef1-e6a1-44c7-ad20-893bfb2a772f
[    9.636507] hnroot: moved hostpart to /newroot/hostpart
[    9.637230] hnroot: /data0 -> /hostpart/data (symlink in the image)
[    9.647107] hnroot: switch_root to /newroot (hn-root.img, UUID e3519ef1-e6a1-44c7-ad20-893bfb2a772f), exec /sbin/init
[    9.648621] hnroot: moved /dev to /newroot/dev
[    9.691023] hnroot: removed 58 initramfs entries
[    9.696982] hnroot: switch_root done, exec /sbin/init
hnroot-test: init started at uptime=10.12
";

    #[test]
    fn each_step_gets_the_time_up_to_its_line() {
        let steps = step_shares(CONSOLE, 5.455838, 10.12).unwrap();
        let names: Vec<&str> = steps.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "start (exec /init, open the log)",
                "command line",
                "modules: disk drivers",
                "find hostpart",
                "modules: hostpart's filesystem",
                "mount hostpart",
                "modules: the ESP's (vfat)",
                "ESP and boot state",
                "observe hostpart (judge every image)",
                "plan",
                "attach the loop device",
                "modules: overlay",
                "mount image and overlay",
                "check the image's init",
                "wait for the kernel's random pool",
                "identity projection",
                "history record",
                "keep hostpart in the new root",
                "switch_root",
                "exec the real init",
            ]
        );
        let of = |name: &str| steps.iter().find(|(n, _)| *n == name).unwrap().1;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(
            of("start (exec /init, open the log)"),
            5.544182 - 5.455838
        ));
        assert!(close(of("find hostpart"), 5.856114 - 5.812309));
        assert!(close(of("modules: the ESP's (vfat)"), 6.271802 - 6.194473));
        assert!(close(of("ESP and boot state"), 6.282489 - 6.271802));
        assert!(close(
            of("wait for the kernel's random pool"),
            9.473326 - 6.491989
        ));
        assert!(close(of("identity projection"), 9.612309 - 9.473326));
        assert!(close(of("switch_root"), 9.696982 - 9.637230));
        assert!(close(of("exec the real init"), 10.12 - 9.696982));
        let total: f64 = steps.iter().map(|(_, t)| t).sum();
        assert!(
            close(total, 10.12 - 5.455838),
            "the steps cover /init -> real init"
        );
    }

    #[test]
    fn a_line_no_step_names_is_an_error_before_any_step() {
        let log =
            "[    1.000000] Run /init as init process\n[    1.100000] hnroot: something new\n";
        let err = step_shares(log, 1.0, 2.0).unwrap_err().to_string();
        assert!(
            err.contains("`hnroot: something new` names no step"),
            "{err}"
        );
        assert!(step_shares("[    1.0] Run /init as init process\n", 1.0, 2.0).is_err());
    }
}
