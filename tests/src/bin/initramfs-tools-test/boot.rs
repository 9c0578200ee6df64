//! Part 3: the package-way image boots in QEMU with `boot=hnroot`, to the test root's init and
//! to the panic of a missing hostpart. It boots throw-away disks only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::{new_block, BootState};
use hnroot_core::uuid::FsUuid;
use hnroot_testkit::disk::{self, EspSpec, HostFs, HostpartSpec, ImageFile, PartSpec};
use hnroot_testkit::grubimage::{self, GrubImageSpec, SmokeCfg};
use hnroot_testkit::qemu::{Vm, VmSpec};
use hnroot_testkit::{buildenv, grubmod};
use regex::Regex;

use crate::debian_tree::DebianTree;
use crate::fake_root::{failure_suffix, MISSING_LABEL};

const IMAGE_NAME: &str = "hn-root.img";
const VERSION: &str = "initramfs-tools-1";
const DATA_MARKER: &str = "initramfs-tools-data-marker";

/// A disk (ESP, hostpart of `fs` holding `root_image`) whose GRUB boots the image's kernel and
/// initramfs with `extra_cmdline`.
fn build_boot_disk(
    work: &Path,
    name: &str,
    root_image: &Path,
    fs: HostFs,
    extra_cmdline: &str,
) -> Result<PathBuf> {
    let dir = buildenv::fresh_dir(&work.join(name))?;
    let cfg = grubimage::smoke_grub_cfg(&SmokeCfg {
        extra_cmdline: extra_cmdline.to_string(),
        ..SmokeCfg::default()
    });
    let bootx64 = dir.join("BOOTX64.EFI");
    grubimage::build_bootx64(&GrubImageSpec::new(cfg), &dir.join("grub"), &bootx64)?;
    let esp = disk::build_esp(&EspSpec::new(&bootx64), &dir.join("esp.img"))?;
    let mut spec = HostpartSpec::new(fs).image(IMAGE_NAME, root_image);
    spec.files.push(ImageFile::new(
        &format!("data/{DATA_MARKER}"),
        0o644,
        "initramfs-tools\n",
    ));
    let hostpart = disk::build_hostpart(&spec, &dir.join("hostpart.img"))?;
    let disk = disk::build_disk(
        &[PartSpec::esp(&esp), PartSpec::hostpart(&hostpart.path)],
        &dir.join("disk.img"),
    )?;
    Ok(disk.path)
}

fn re(s: &str) -> Result<Regex> {
    Regex::new(s).with_context(|| format!("boot milestone regex {s:?}"))
}

/// Boot `boot=hnroot` from a hostpart of `fs` to the test init and its poweroff. The
/// filesystem drivers are not loaded by hnroot-init here (initramfs-tools owns the modules):
/// mount(2) has them loaded on demand, which this boot proves for each hostpart type.
fn boot_good(work: &Path, root: &disk::BuiltFs, fs: HostFs, timeout: Duration) -> Result<()> {
    let name = format!("good-{fs}");
    let disk = build_boot_disk(work, &name, &root.path, fs, "boot=hnroot")?;
    let run_dir = work.join("runs").join(&name);
    eprintln!(
        "==> initramfs-tools-test: booting boot=hnroot from a {fs} hostpart (serial log {}/serial.log)",
        run_dir.display()
    );
    let mut vm = Vm::start(&VmSpec::new(
        &format!("initramfs-tools boot=hnroot, {fs} hostpart"),
        &[&disk],
        &run_dir,
    ))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    vm.wait_for(&re(r"Loading, please wait")?, left(&vm))?;
    vm.wait_for(&re(r"Begin: Mounting root file system")?, left(&vm))?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: mounted hostpart /dev/vda2 \({fs}, LABEL=hostpart\) rw at /run/hnroot/hostpart"
        ))?,
        left(&vm),
    )?;
    let uuid = regex::escape(&root.uuid.to_string());
    let mounted = vm.wait_for(
        &re(&format!(
            r"hnroot: mounted /dev/loop\d+ \(ext4, UUID={uuid}\) ro at /root"
        ))?,
        left(&vm),
    )?;
    vm.wait_for(&re(r"hnroot: moved hostpart to /root/hostpart")?, left(&vm))?;
    let booted = vm.wait_for(
        &re(r"hnroot-test: booted version=(\S+) uuid=(\S+)")?,
        left(&vm),
    )?;
    if booted.groups[1] != VERSION || booted.groups[2] != root.uuid.to_string() {
        bail!(
            "boot=hnroot from {fs} booted `{}`, expected version={VERSION} uuid={}",
            booted.line.trim(),
            root.uuid
        );
    }
    vm.wait_for(
        &re(&format!(
            r"hnroot-test: root=/dev/loop\d+ backing=\S*/{}",
            regex::escape(IMAGE_NAME)
        ))?,
        left(&vm),
    )?;
    let status = wait_hostpart_data_poweroff(&mut vm, IMAGE_NAME, DATA_MARKER, timeout)?;
    if !status.success() {
        bail!("boot=hnroot from {fs}: QEMU exited with {status} after the guest powered off");
    }
    eprintln!(
        "==> initramfs-tools-test: {fs}: `{}` then `{}` ({:.1} s)",
        mounted.line.trim(),
        booted.line.trim(),
        vm.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The production grub.cfg, relative to the workspace root.
const PRODUCTION_GRUB_CFG: &str = "grub-module/grub.cfg";

/// The production grub.cfg, verbatim, after checking that every `linux` line passes
/// `boot=hnroot` (initramfs-tools needs it; hnroot's own initramfs ignores it).
fn production_cfg_with_boot_hnroot() -> Result<String> {
    let path = buildenv::workspace_root().join(PRODUCTION_GRUB_CFG);
    let cfg =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let linux: Vec<&str> = cfg
        .lines()
        .filter(|l| l.trim_start().starts_with("linux (loop)/boot/kernel "))
        .collect();
    if linux.is_empty() {
        bail!(
            "{} has no `linux (loop)/boot/kernel ...` line",
            path.display()
        );
    }
    if let Some(l) = linux
        .iter()
        .find(|l| !l.split_whitespace().any(|w| w == "boot=hnroot"))
    {
        bail!(
            "{}: this linux line lacks boot=hnroot, so an initramfs-tools initramfs would not run hnroot's script: {}",
            path.display(),
            l.trim()
        );
    }
    Ok(cfg)
}

/// `boot=hnroot` through the production chain: Debian's GRUB with hnroot.mod and the
/// production grub.cfg (verbatim), a boot state that commits the image, so GRUB
/// passes `hnroot.hostpart=PARTUUID=` and `hnroot.esp=PARTUUID=` as in the field.
fn boot_production_chain(work: &Path, root: &disk::BuiltFs, timeout: Duration) -> Result<()> {
    let dir = buildenv::fresh_dir(&work.join("production"))?;
    let module = grubmod::build()?;
    grubmod::check_installed(&module.path)?;
    let mut grub = GrubImageSpec::new(production_cfg_with_boot_hnroot()?);
    grub.extra_module_files.push(module.path.clone());
    let bootx64 = dir.join("BOOTX64.EFI");
    grubimage::build_bootx64(&grub, &dir.join("grub"), &bootx64)?;
    let mut esp = EspSpec::new(&bootx64);
    esp.bootstate = Some(
        new_block(&BootState::Committed {
            good: FsUuid::Uuid(root.uuid.0),
        })
        .to_vec(),
    );
    let esp = disk::build_esp(&esp, &dir.join("esp.img"))?;
    let mut host = HostpartSpec::new(HostFs::Ext4).image(IMAGE_NAME, &root.path);
    host.files.push(ImageFile::new(
        &format!("data/{DATA_MARKER}"),
        0o644,
        "initramfs-tools\n",
    ));
    let hostpart = disk::build_hostpart(&host, &dir.join("hostpart.img"))?;
    let built = disk::build_disk(
        &[PartSpec::esp(&esp), PartSpec::hostpart(&hostpart.path)],
        &dir.join("disk.img"),
    )?;
    let partuuid = built
        .partitions
        .get(1)
        .map(|p| p.partuuid.to_string())
        .context("the production-chain disk has no second partition")?;
    let run_dir = work.join("runs").join("production");
    eprintln!(
        "==> initramfs-tools-test: booting boot=hnroot through hnroot.mod and the production \
         grub.cfg (serial log {}/serial.log)",
        run_dir.display()
    );
    let mut vm = Vm::start(&VmSpec::new(
        "initramfs-tools boot=hnroot, production GRUB",
        &[&built.path],
        &run_dir,
    ))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    let uuid = root.uuid.to_string();
    vm.wait_for(&re(r"Loading, please wait")?, left(&vm))?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: cmdline: GRUB booted {} \(UUID {}\), hostpart PARTUUID={}",
            regex::escape(IMAGE_NAME),
            regex::escape(&uuid),
            regex::escape(&partuuid)
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: hostpart: found /dev/vda2 \(ext4, LABEL=hostpart, PARTUUID={}\)",
            regex::escape(&partuuid)
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: boot state: committed \(good {}\)",
            regex::escape(&uuid)
        ))?,
        left(&vm),
    )?;
    let mounted = vm.wait_for(
        &re(&format!(
            r"hnroot: mounted /dev/loop\d+ \(ext4, UUID={}\) ro at /root",
            regex::escape(&uuid)
        ))?,
        left(&vm),
    )?;
    let booted = vm.wait_for(
        &re(r"hnroot-test: booted version=(\S+) uuid=(\S+)")?,
        left(&vm),
    )?;
    if booted.groups[1] != VERSION || booted.groups[2] != uuid {
        bail!(
            "production chain booted `{}`, expected version={VERSION} uuid={uuid}",
            booted.line.trim()
        );
    }
    vm.wait_for(&re(&regex::escape(DATA_MARKER))?, left(&vm))?;
    vm.wait_for(&re(r"hnroot-test: powering off")?, left(&vm))?;
    let status = vm.wait_exit(left(&vm))?;
    if !status.success() {
        bail!("production chain: QEMU exited with {status} after the guest powered off");
    }
    eprintln!(
        "==> initramfs-tools-test: production chain: `{}` ({:.1} s)",
        mounted.line.trim(),
        vm.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Boot the mkinitramfs image with `boot=hnroot`: through hnroot.mod and the production
/// grub.cfg from an ext4 hostpart, through the smoke grub.cfg from a btrfs hostpart, then once
/// with a hostpart that is not there.
pub(crate) fn tests(
    tree: &DebianTree,
    initrd: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<()> {
    buildenv::fresh_dir(work)?;
    let root = disk::build_root_image(
        &disk::RootImageSpec::new(VERSION, &tree.vmlinuz, initrd),
        &work.join(IMAGE_NAME),
    )?;
    boot_production_chain(work, &root, timeout)?;
    boot_good(work, &root, HostFs::Btrfs, timeout)?;

    let bad = build_boot_disk(
        work,
        "missing-hostpart",
        &root.path,
        HostFs::Ext4,
        &format!("boot=hnroot hnroot.hostpart=LABEL={MISSING_LABEL} hnroot.timeout=2 panic=1"),
    )?;
    eprintln!("==> initramfs-tools-test: booting with a missing hostpart (serial log {}/runs/missing-hostpart/serial.log)", work.display());
    let mut vm = Vm::start(&VmSpec::new(
        "initramfs-tools missing hostpart",
        &[&bad],
        &work.join("runs/missing-hostpart"),
    ))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    let fatal = vm.wait_for(&re(r"hnroot: FATAL: (hostpart: .*)")?, left(&vm))?;
    if !fatal.groups[1].contains(MISSING_LABEL) {
        bail!(
            "the FATAL line does not name the label looked for ({MISSING_LABEL}): {}",
            fatal.line.trim()
        );
    }
    let panic_line = format!(
        "{} {}. Fix it in this shell",
        regex::escape(&format!("hnroot: FATAL: {}", fatal.groups[1])),
        regex::escape(&failure_suffix("/root", 2))
    );
    vm.wait_for(&re(&panic_line)?, left(&vm))?;
    vm.wait_for(
        &re(r"Rebooting automatically due to panic= boot argument")?,
        left(&vm),
    )?;
    let status = vm.wait_exit(left(&vm))?;
    if !status.success() {
        bail!("missing hostpart: QEMU exited with {status} after the guest rebooted");
    }
    Ok(())
}

/// The test init's closing lines, after `booted ...`: `/hostpart` listing `image`, `/data0/`
/// holding the `marker` file, its power-off; then QEMU's exit status. Every wait ends within
/// `timeout` of the VM's start.
fn wait_hostpart_data_poweroff(
    vm: &mut Vm,
    image: &str,
    marker: &str,
    timeout: Duration,
) -> Result<ExitStatus> {
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    vm.wait_for(&re(r"hnroot-test: ls /hostpart:")?, left(vm))?;
    vm.wait_for(&re(&format!(r" {}\n", regex::escape(image)))?, left(vm))?;
    vm.wait_for(&re(r"hnroot-test: ls /data0/:")?, left(vm))?;
    vm.wait_for(&re(&regex::escape(marker))?, left(vm))?;
    vm.wait_for(&re(r"hnroot-test: powering off")?, left(vm))?;
    vm.wait_exit(left(vm))
}
