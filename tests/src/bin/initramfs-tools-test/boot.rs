//! Part 3: the package-way image boots in QEMU with `boot=hnroot` through the production chain
//! (hnroot's GRUB, `hnroot.mod`, `grub-module/grub.cfg` verbatim, a boot state that commits the
//! image, so GRUB passes `hnroot.hostpart=PARTUUID=` and `hnroot.esp=PARTUUID=` as in the
//! field): to the test root's init from an ext4 and from a btrfs hostpart, and to the panic of
//! a hostpart the initramfs cannot see. It boots throw-away disks only.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hnroot_testkit::bootparts::{committed_block, core_uuid};
use hnroot_testkit::buildenv;
use hnroot_testkit::disk::{
    self, BuiltDisk, BuiltFs, DiskSpec, EspSpec, HostFs, HostpartSpec, ImageFile,
};
use hnroot_testkit::grubimage::{self, GrubImage};
use hnroot_testkit::qemu::{DiskBus, Vm, VmSpec};
use regex::Regex;

use crate::debian_tree::DebianTree;
use crate::fake_root::failure_suffix;

const IMAGE_NAME: &str = "hn-root.img";
const VERSION: &str = "initramfs-tools-1";
const DATA_MARKER: &str = "initramfs-tools-data-marker";

/// The production GRUB image, after checking that every `linux` line of its grub.cfg passes
/// the core's command line whole (`${hnroot_cmdline}`, `${hnroot_fallback_cmdline}`) and that
/// the core's command line carries `boot=hnroot` (initramfs-tools needs it; hnroot's own
/// initramfs ignores it). The boots below prove the two together.
fn production_grub() -> Result<GrubImage> {
    // The debootstrapped tree is Debian 12: its GRUB.
    let grub = grubimage::production(grubimage::Menu::Skipped)?;
    let linux: Vec<&str> = grub
        .grub_cfg
        .lines()
        .filter(|l| l.trim_start().starts_with("linux (loop)/boot/kernel "))
        .collect();
    if linux.is_empty() {
        bail!(
            "{} has no `linux (loop)/boot/kernel ...` line",
            grubimage::GRUB_CFG
        );
    }
    if let Some(l) = linux
        .iter()
        .find(|l| !l.contains("${hnroot_cmdline}") && !l.contains("${hnroot_fallback_cmdline}"))
    {
        bail!(
            "{}: this linux line does not pass the core's command line: {}",
            grubimage::GRUB_CFG,
            l.trim()
        );
    }
    let sample = hnroot_core::cmdline::KernelArgs {
        booted: hnroot_core::plan::Booted {
            name: hnroot_core::name::ImageName::Current,
            uuid: hnroot_core::uuid::FsUuid::Uuid([0x11; 16]),
        },
        hostpart: None,
        esp: None,
        tries: 3,
        reason: hnroot_core::ReasonCode::Normal,
        via: hnroot_core::cmdline::BootVia::Loader,
        root_hash: None,
    }
    .to_string();
    if !sample.split_whitespace().any(|w| w == "boot=hnroot") {
        bail!(
            "the core's kernel command line lacks boot=hnroot, so an initramfs-tools initramfs \
             would not run hnroot's script: {sample}"
        );
    }
    Ok(grub)
}

/// The disk every boot here uses: the production GRUB on the ESP with a boot state that
/// commits `root`, hostpart of `fs` holding `root` as `hn-root.img` and a marker in `data/`.
fn build_disk(
    work: &Path,
    name: &str,
    grub: &GrubImage,
    root: &BuiltFs,
    fs: HostFs,
) -> Result<BuiltDisk> {
    let mut esp = EspSpec::new(grub);
    esp.bootstate = Some(committed_block(core_uuid(root.uuid)));
    let mut hostpart = HostpartSpec::new(fs).image(IMAGE_NAME, &root.path);
    hostpart.files.push(ImageFile::new(
        &format!("data/{DATA_MARKER}"),
        0o644,
        "initramfs-tools\n",
    ));
    disk::build(
        &DiskSpec {
            name: name.to_string(),
            esp,
            hostpart,
        },
        &buildenv::fresh_dir(&work.join(name))?,
    )
}

fn re(s: &str) -> Result<Regex> {
    Regex::new(s).with_context(|| format!("boot milestone regex {s:?}"))
}

/// Boot `boot=hnroot` from a hostpart of `fs` to the test init and its poweroff: GRUB's
/// PARTUUIDs on the command line, hostpart found by that PARTUUID and mounted, the committed
/// boot state read from the ESP, the image mounted and checked by UUID, hostpart moved into
/// it. The filesystem drivers are not loaded by hnroot-init here (initramfs-tools owns the
/// modules): mount(2) has them loaded on demand, which this boot proves for each hostpart type.
fn boot_good(
    work: &Path,
    grub: &GrubImage,
    root: &BuiltFs,
    fs: HostFs,
    timeout: Duration,
) -> Result<()> {
    let name = format!("good-{fs}");
    let disk = build_disk(work, &name, grub, root, fs)?;
    let partuuid = regex::escape(&disk.hostpart.partuuid.to_string());
    let uuid = regex::escape(&root.uuid.to_string());
    let run_dir = work.join("runs").join(&name);
    eprintln!(
        "==> initramfs-tools-test: booting boot=hnroot through hnroot.mod and the production \
         grub.cfg, hostpart {fs} (serial log {}/serial.log)",
        run_dir.display()
    );
    let mut vm = Vm::start(&VmSpec::new(
        &format!("initramfs-tools boot=hnroot, production GRUB, {fs} hostpart"),
        &[&disk.path],
        &run_dir,
    ))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    vm.wait_for(&re(r"Loading, please wait")?, left(&vm))?;
    vm.wait_for(&re(r"Begin: Mounting root file system")?, left(&vm))?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: cmdline: GRUB booted {} \(UUID {uuid}\), hostpart PARTUUID={partuuid}",
            regex::escape(IMAGE_NAME)
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: hostpart: found /dev/vda2 \({fs}, LABEL=hostpart, PARTUUID={partuuid}\)"
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: mounted hostpart /dev/vda2 \({fs}, LABEL=hostpart, PARTUUID={partuuid}\) rw at /run/hnroot/hostpart"
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        // GRUB counted this boot (rule 9: every boot until healthy); mark-good resets it.
        &re(&format!(
            r"hnroot: boot state: committed \(good {uuid}, 1 boot since the last healthy one\)"
        ))?,
        left(&vm),
    )?;
    let mounted = vm.wait_for(
        &re(&format!(
            r"hnroot: step 1/1: mount hn-root.img \(UUID {uuid}\) as root: mounted /dev/loop\d+ \(ext4, UUID={uuid}\) read-only at /run/hnroot/image, root at /root \(writable layer \S+/data/hnroot/overlay/{uuid}/upper\)"
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

/// A hostpart GRUB finds and the initramfs cannot see: the same disk on an NVMe controller,
/// which OVMF and GRUB read but this initramfs has no driver for (`MODULES=list` with virtio
/// only). GRUB passes hostpart's PARTUUID; hnroot-init waits for it (`hnroot.timeout`'s
/// default), tries `LABEL=hostpart`, and fails; the script's panic message carries its FATAL
/// line, and `panic=10` (the production grub.cfg's) reboots.
fn boot_missing_hostpart(
    work: &Path,
    grub: &GrubImage,
    root: &BuiltFs,
    timeout: Duration,
) -> Result<()> {
    let name = "missing-hostpart";
    let disk = build_disk(work, name, grub, root, HostFs::Ext4)?;
    let partuuid = disk.hostpart.partuuid.to_string();
    let run_dir = work.join("runs").join(name);
    eprintln!(
        "==> initramfs-tools-test: booting with a hostpart the initramfs cannot see (its disk \
         on NVMe; serial log {}/serial.log)",
        run_dir.display()
    );
    let mut spec = VmSpec::new("initramfs-tools missing hostpart", &[&disk.path], &run_dir);
    spec.bus = DiskBus::Nvme;
    let mut vm = Vm::start(&spec)?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    vm.wait_for(
        &re(&format!(
            r"hnroot: cmdline: GRUB booted {} \(UUID {}\), hostpart PARTUUID={}",
            regex::escape(IMAGE_NAME),
            regex::escape(&root.uuid.to_string()),
            regex::escape(&partuuid)
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: hostpart: PARTUUID={} not found; trying LABEL=hostpart",
            regex::escape(&partuuid)
        ))?,
        left(&vm),
    )?;
    let fatal = vm.wait_for(&re(r"hnroot: FATAL: (hostpart: .*)")?, left(&vm))?;
    if !fatal.groups[1].contains("labelled 'hostpart'") {
        bail!(
            "the FATAL line does not name the label looked for last (hostpart): {}",
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

/// Boot the mkinitramfs image with `boot=hnroot` through the production chain from an ext4
/// and a btrfs hostpart, then once with a hostpart the initramfs cannot see.
pub(crate) fn tests(
    tree: &DebianTree,
    initrd: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<()> {
    buildenv::fresh_dir(work)?;
    let grub = production_grub()?;
    let root = disk::build_root_image(
        &disk::RootImageSpec::new(VERSION, &tree.vmlinuz, initrd),
        &work.join(IMAGE_NAME),
    )?;
    boot_good(work, &grub, &root, HostFs::Ext4, timeout)?;
    boot_good(work, &grub, &root, HostFs::Btrfs, timeout)?;
    boot_missing_hostpart(work, &grub, &root, timeout)
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
