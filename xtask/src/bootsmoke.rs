//! `cargo xtask boot-smoke`: builds the whole chain from what exists today (Debian's kernel and
//! GRUB, the prototype linuxrc, a test root image) and boots it in QEMU: OVMF -> GRUB ->
//! kernel from inside `hn-root.img` -> linuxrc -> switch_root -> the test init's
//! `hnroot-test: booted` line -> poweroff, on an ext4 and a btrfs hostpart. It reports the time
//! each boot took to reach every milestone. It asserts what booted, never how fast.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use regex::Regex;

use crate::buildenv;
use crate::disk::{self, BuiltFs, Disk, EspSpec, HostFs, HostpartSpec, ImageFile, PartSpec};
use crate::grubimage::{self, GrubImageSpec, SmokeCfg};
use crate::kernel::{self, Kernel, ModuleSet};
use crate::linuxrc;
use crate::qemu::{Vm, VmSpec};

/// The image name GRUB and the linuxrc boot.
pub const IMAGE_NAME: &str = "hn-root.img";
/// A file placed in hostpart's `data/` so the test init's `ls /data0/` shows it.
const DATA_MARKER: &str = "smoke-data-marker";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hostpart filesystems to boot from (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "ext4,btrfs")]
    pub hostpart_fs: Vec<HostFs>,
    /// Boots per filesystem; each one is timed.
    #[arg(long, default_value_t = 1)]
    pub boots: u32,
    /// Deadline for one boot, power-on to QEMU exit, in seconds.
    #[arg(long, default_value_t = 240)]
    pub timeout: u64,
    /// Appended to the kernel command line (e.g. `quiet`).
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Before the timed boots, cut the power (SIGKILL QEMU) once the linuxrc has mounted
    /// hostpart read-write, so the timed boots start from an uncleanly unmounted hostpart
    /// (GRUB does not replay journals; this shows it still finds the image).
    #[arg(long)]
    pub power_cut: bool,
    /// GRUB module files to build into BOOTX64.EFI besides Debian's (e.g. the hnroot.mod of
    /// `cargo xtask grub-module`); GRUB loads built-in modules at start, so a module that does
    /// not link shows up on the console before the config runs.
    #[arg(long)]
    pub grub_module: Vec<PathBuf>,
}

/// Everything one kernel's boot chain needs that does not depend on the hostpart.
#[derive(Debug, Clone)]
pub struct Chain {
    pub kernel: Kernel,
    pub modules: ModuleSet,
    pub initramfs: linuxrc::Initramfs,
    pub root: BuiltFs,
    pub version: String,
    pub esp: PathBuf,
}

/// A smoke disk for one hostpart filesystem.
#[derive(Debug, Clone)]
pub struct SmokeDisk {
    pub fs: HostFs,
    pub hostpart: BuiltFs,
    pub disk: Disk,
}

/// When each milestone appeared on the console, from QEMU start (host time), plus the guest's
/// own uptime at the linuxrc's start and at switch_root.
#[derive(Debug, Clone)]
pub struct BootTimes {
    pub grub_cfg: Duration,
    pub grub_boot: Duration,
    pub kernel: Duration,
    pub init: Duration,
    pub switch_root: Duration,
    pub booted: Duration,
    pub exited: Duration,
    pub guest_linuxrc_start: f64,
    pub guest_switch_root: f64,
    /// The test init's `hnroot-test: booted ...` line.
    pub booted_line: String,
}

/// Build the chain under `work`: fetch the kernel, resolve modules, build the linuxrc
/// initramfs, a root image of `version`, BOOTX64.EFI with the smoke grub.cfg, and the ESP.
pub fn build_chain(
    work: &Path,
    version: &str,
    extra_cmdline: &str,
    grub_modules: &[PathBuf],
) -> Result<Chain> {
    let kernel = kernel::fetch_current()?;
    eprintln!(
        "==> kernel: {} (Debian {}), {}",
        kernel.release,
        kernel.deb_version,
        kernel.vmlinuz.display()
    );
    let modules = kernel.modules_for(kernel::BOOT_MODULES)?;
    eprintln!("==> modules built in: {}", modules.builtin.join(" "));
    eprintln!(
        "==> modules to load ({}): {}",
        modules.load_order.len(),
        modules
            .load_order
            .iter()
            .map(|ko| ko.rsplit('/').next().unwrap_or(ko))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let initramfs = linuxrc::build(&kernel, &modules, &work.join("initramfs.zst"))?;
    eprintln!(
        "==> initramfs: {} ({} KiB cpio, {} KiB zstd, {} modules)",
        initramfs.path.display(),
        initramfs.cpio_bytes / 1024,
        initramfs.compressed_bytes / 1024,
        initramfs.modules
    );
    let root = disk::build_root_image(
        &disk::RootImageSpec::new(version, &kernel.vmlinuz, &initramfs.path),
        &work.join(IMAGE_NAME),
    )?;
    eprintln!(
        "==> root image: {} ({} MiB, ext4 UUID {}, version {version})",
        root.path.display(),
        root.size / disk::MIB,
        root.uuid
    );
    let bootx64 = work.join("BOOTX64.EFI");
    let cfg = grubimage::smoke_grub_cfg(&SmokeCfg {
        extra_cmdline: extra_cmdline.to_string(),
        ..SmokeCfg::default()
    });
    let mut grub = GrubImageSpec::new(cfg);
    grub.extra_module_files = grub_modules.to_vec();
    grubimage::build_bootx64(&grub, &work.join("grub"), &bootx64)?;
    eprintln!(
        "==> GRUB: {} with {} and {} extra module file(s)",
        bootx64.display(),
        grub.modules.join(" "),
        grub.extra_module_files.len()
    );
    let esp = disk::build_esp(&EspSpec::new(&bootx64), &work.join("esp.img"))?;
    Ok(Chain {
        kernel,
        modules,
        initramfs,
        root,
        version: version.to_string(),
        esp,
    })
}

/// Build a disk: the chain's ESP and a hostpart of `fs` holding the root image as
/// `hn-root.img` and a marker file in `data/`.
pub fn build_smoke_disk(chain: &Chain, fs: HostFs, work: &Path) -> Result<SmokeDisk> {
    let mut spec = HostpartSpec::new(fs).image(IMAGE_NAME, &chain.root.path);
    spec.files.push(ImageFile::new(
        &format!("data/{DATA_MARKER}"),
        0o644,
        "smoke\n",
    ));
    let hostpart = disk::build_hostpart(&spec, &work.join(format!("hostpart-{fs}.img")))?;
    let disk = disk::build_disk(
        &[
            PartSpec::esp(&chain.esp),
            PartSpec::hostpart(&hostpart.path),
        ],
        &work.join(format!("disk-{fs}.img")),
    )?;
    Ok(SmokeDisk { fs, hostpart, disk })
}

/// Boot `disk` once and check every milestone of the chain, the booted version and UUID, and
/// that hostpart and /data0 were visible; QEMU must exit (poweroff) within `timeout`.
pub fn boot_once(
    name: &str,
    disk: &Path,
    expect_version: &str,
    expect_uuid: &disk::Uuid,
    run_dir: &Path,
    timeout: Duration,
) -> Result<BootTimes> {
    let mut vm = Vm::start(&VmSpec::new(name, &[disk], run_dir))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    let re = |s: &str| Regex::new(s).context("milestone regex");
    let grub_cfg = vm.wait_for(&re(r"hnroot-grub: searching")?, left(&vm))?.at;
    let grub_boot = vm.wait_for(&re(r"hnroot-grub: booting")?, left(&vm))?.at;
    let kernel = vm.wait_for(&re(r"Linux version \S+")?, left(&vm))?.at;
    let init = vm
        .wait_for(&re(r"Run /init as init process")?, left(&vm))?
        .at;
    let start = vm.wait_for(&re(r"linuxrc: start at uptime=([0-9.]+)")?, left(&vm))?;
    let switch = vm.wait_for(
        &re(r"linuxrc: switch_root to /newroot \S+ at uptime=([0-9.]+)")?,
        left(&vm),
    )?;
    let booted = vm.wait_for(
        &re(r"hnroot-test: booted version=(\S+) uuid=(\S+)")?,
        left(&vm),
    )?;
    let (got_version, got_uuid) = (&booted.groups[1], &booted.groups[2]);
    if got_version != expect_version || *got_uuid != expect_uuid.to_string() {
        bail!(
            "{name}: booted version={got_version} uuid={got_uuid}, expected version=\
             {expect_version} uuid={expect_uuid}\n--- serial tail ---\n{}",
            vm.tail(crate::qemu::TAIL_LINES)
        );
    }
    let status = wait_hostpart_data_poweroff(&mut vm, IMAGE_NAME, DATA_MARKER, timeout)?;
    let exited = vm.elapsed();
    if !status.success() {
        bail!("{name}: QEMU exited with {status} after the guest powered off");
    }
    let guest = |h: &crate::qemu::Hit| h.groups[1].parse::<f64>().unwrap_or(f64::NAN);
    Ok(BootTimes {
        grub_cfg,
        grub_boot,
        kernel,
        init,
        switch_root: switch.at,
        booted: booted.at,
        exited,
        guest_linuxrc_start: guest(&start),
        guest_switch_root: guest(&switch),
        booted_line: booted.line,
    })
}

/// Boot `disk` until the linuxrc has mounted hostpart read-write, then cut the power.
pub fn cut_power_after_hostpart_mount(name: &str, disk: &Path, run_dir: &Path) -> Result<()> {
    let mut vm = Vm::start(&VmSpec::new(name, &[disk], run_dir))?;
    let hit = vm.cut_power_after(
        &Regex::new(r"linuxrc: mounted hostpart \S+ at /hostpart rw")?,
        Duration::from_millis(200),
        Duration::from_secs(240),
    )?;
    eprintln!(
        "==> {name}: power cut {:.1} s after `{}`",
        vm.elapsed().as_secs_f64() - hit.at.as_secs_f64(),
        hit.line.trim()
    );
    Ok(())
}

/// `cargo xtask boot-smoke`.
pub fn run(args: &Args) -> Result<()> {
    if args.boots == 0 || args.hostpart_fs.is_empty() {
        bail!("boot-smoke: nothing to do (--boots 0 or no --hostpart-fs)");
    }
    let work = buildenv::fresh_dir(&buildenv::build_root().join("boot-smoke"))?;
    let chain = build_chain(&work, "smoke-1", &args.cmdline, &args.grub_module)?;
    let mut rows = Vec::new();
    for fs in &args.hostpart_fs {
        let smoke = build_smoke_disk(&chain, *fs, &work)?;
        let parts: Vec<String> = smoke
            .disk
            .partitions
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} MiB at LBA {} PARTUUID {}",
                    p.number,
                    p.name,
                    p.sectors * disk::SECTOR / disk::MIB,
                    p.first_lba,
                    p.partuuid
                )
            })
            .collect();
        eprintln!(
            "==> disk: {} (GPT {}; {}; hostpart is {} UUID {})",
            smoke.disk.path.display(),
            smoke.disk.disk_guid,
            parts.join("; "),
            smoke.fs,
            smoke.hostpart.uuid
        );
        if args.power_cut {
            let name = format!("boot-smoke {} power cut", smoke.fs);
            let run_dir = work.join("runs").join(format!("{}-cut", smoke.fs));
            cut_power_after_hostpart_mount(&name, &smoke.disk.path, &run_dir)?;
        }
        for i in 1..=args.boots {
            let name = format!("boot-smoke {} #{i}", smoke.fs);
            let run_dir = work.join("runs").join(format!("{}-{i}", smoke.fs));
            eprintln!(
                "==> {name}: booting (serial log {}/serial.log)",
                run_dir.display()
            );
            let t = boot_once(
                &name,
                &smoke.disk.path,
                &chain.version,
                &chain.root.uuid,
                &run_dir,
                Duration::from_secs(args.timeout),
            )?;
            eprintln!(
                "==> {name}: `{}` {:.1} s after power-on; QEMU exited at {:.1} s",
                t.booted_line.trim(),
                t.booted.as_secs_f64(),
                t.exited.as_secs_f64()
            );
            rows.push((smoke.fs.to_string(), i, t));
        }
    }
    print_table(&chain, &rows);
    Ok(())
}

fn print_table(chain: &Chain, rows: &[(String, u32, BootTimes)]) {
    println!();
    println!(
        "boot-smoke: kernel {} (Debian {}), {} modules in a {} KiB initramfs, root image {} MiB",
        chain.kernel.release,
        chain.kernel.deb_version,
        chain.modules.load_order.len(),
        chain.initramfs.compressed_bytes / 1024,
        chain.root.size / disk::MIB
    );
    println!("timings in seconds from QEMU start (host clock; TCG, 1 vCPU); the last column is");
    println!("the guest's own uptime from the linuxrc's start to switch_root");
    println!(
        "{:<6} {:>2} {:>8} {:>9} {:>7} {:>6} {:>8} {:>7} {:>7} | {:>14}",
        "fs",
        "#",
        "grub.cfg",
        "grub boot",
        "kernel",
        "/init",
        "switch",
        "booted",
        "exited",
        "guest rc->swr"
    );
    for (fs, i, t) in rows {
        println!(
            "{:<6} {:>2} {:>8.1} {:>9.1} {:>7.1} {:>6.1} {:>8.1} {:>7.1} {:>7.1} | {:>14.2}",
            fs,
            i,
            t.grub_cfg.as_secs_f64(),
            t.grub_boot.as_secs_f64(),
            t.kernel.as_secs_f64(),
            t.init.as_secs_f64(),
            t.switch_root.as_secs_f64(),
            t.booted.as_secs_f64(),
            t.exited.as_secs_f64(),
            t.guest_switch_root - t.guest_linuxrc_start
        );
    }
}

/// The test init's closing lines, after `booted ...`: `/hostpart` listing `image`, `/data0/`
/// holding the `marker` file, its power-off; then QEMU's exit status. Every wait ends within
/// `timeout` of the VM's start.
pub fn wait_hostpart_data_poweroff(
    vm: &mut Vm,
    image: &str,
    marker: &str,
    timeout: Duration,
) -> Result<ExitStatus> {
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    let re = |s: &str| Regex::new(s).context("test init regex");
    vm.wait_for(&re(r"hnroot-test: ls /hostpart:")?, left(vm))?;
    vm.wait_for(&re(&format!(r" {}\n", regex::escape(image)))?, left(vm))?;
    vm.wait_for(&re(r"hnroot-test: ls /data0/:")?, left(vm))?;
    vm.wait_for(&re(&regex::escape(marker))?, left(vm))?;
    vm.wait_for(&re(r"hnroot-test: powering off")?, left(vm))?;
    vm.wait_exit(left(vm))
}
