//! `cargo xtask e2e`: the scenario suite, the whole chain in QEMU (issues 6, 11, 12). Each
//! scenario builds a GPT disk (ESP with hnroot's GRUB + `hnroot.mod` and the production
//! grub.cfg; ext4 or btrfs hostpart with signed test images), boots it under OVMF with TCG —
//! rebooting in place for as many boots as the scenario's story needs, with QEMU's user
//! network and a file server on the host's 127.0.0.1 where a story stages over HTTP, and keys
//! typed at GRUB's menu where it boots with more kernel words — reads every boot off the
//! serial console (GRUB's `decision:` record and refusal codes, the kernel's command line,
//! hnroot-init's `record:` lines and steps, the test init's report and arguments) and then
//! reads the disk offline (hostpart listing and image digests, the boot-state block and the
//! switch history decoded with the core's codecs). It compares both with what the rules say
//! must happen, by stable codes rather than sentences, and prints a time table. Timings are
//! printed, never asserted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::decide::{decide, Config, Decision, ReasonCode};
use hnroot_core::history::Event;
use hnroot_core::layout::PARTIAL_PREFIX;
use hnroot_core::name::ImageName;
use hnroot_core::observe::ImageSeen;
use hnroot_core::plan::PlanKind;
use hnroot_core::uuid::FsUuid;
use regex::Regex;

use clap::Parser;
use hnroot_system_tests::story::{
    action_stage, check_boot, check_images, describe_images, describe_state, expect, Expect,
    BOOT_TIMEOUT, IMAGES, POWEROFF_TIMEOUT,
};
use hnroot_testkit::bootparts::{
    BootParts, DiskContents, ImageContent, StateInit, KEY_IN_IMAGE, NET_UP_IN_IMAGE,
    TEST_ARGS_RECORD,
};
use hnroot_testkit::buildenv::{self, fnv1a};
use hnroot_testkit::console::{field, BootRecord, End, Session, INIT_LINE};
use hnroot_testkit::disk::{self, BuiltDisk, HostFs};
use hnroot_testkit::grubimage;
use hnroot_testkit::http::FileServer;
use hnroot_testkit::inspect::{self, HostpartView, View};
use hnroot_testkit::qemu::{self, VmSpec};
use hnroot_testkit::release::Debian;
use hnroot_testkit::signing;

/// Power cuts are spread over this long after hnroot-init prints its plan. Its steps (renames,
/// directory sync, checkpoint, boot-state write, loop attach and mount) print their lines
/// within ~100 ms of the plan under TCG; the last stretch lands after the mount, which is a
/// valid moment too. Each cut reports the last step it saw, so the spread is visible.
const CUT_WINDOW: Duration = Duration::from_millis(150);

/// `cargo xtask e2e`. Without arguments (as `cargo xtask test` runs it): every scenario, 3
/// power cuts per filesystem, a seed from the clock (printed, so a failure can be replayed with
/// `--seed`).
#[derive(Debug, Parser)]
#[command(
    name = "e2e",
    about = "The scenario suite: the whole chain (OVMF, GRUB with hnroot.mod, kernel, \
             hnroot-init) in QEMU on real disks: update (staged over HTTP, signed), mark-good, \
             revert, rollback, power cuts, bad inputs, failed steps and a missing init."
)]
struct Args {
    /// Power cuts per hostpart filesystem (ext4, btrfs) in the power-cut scenarios.
    #[arg(long, default_value_t = 3)]
    cuts: u32,
    /// Run only the scenarios whose name contains one of these (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Leave out the scenarios whose name contains one of these (repeatable).
    #[arg(long)]
    skip: Vec<String>,
    /// Seed for the power-cut moments (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// The Debian release whose parts boot under hnroot's GRUB: 12 (kernel 6.1) or 13 (kernel
    /// 6.12).
    #[arg(long, default_value_t = Debian::NEWEST)]
    debian: Debian,
    /// `cargo xtask powercut`: instead of the scenarios, `--cuts` power cuts of each plan of
    /// `--during` on each filesystem of `--fs`, counted (not stopped at the first failure)
    /// and printed as a table; fails when any cut left a disk unbootable or lost an image.
    #[arg(long)]
    campaign: bool,
    /// The campaign's hostpart filesystems.
    #[arg(long, value_delimiter = ',', value_parser = parse_fs, default_value = "ext4,btrfs,xfs")]
    fs: Vec<HostFs>,
    /// The campaign's plans: the switches hnroot-init carries out at boot.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "update,revert,rollback,stage,mark-good,loader-update"
    )]
    during: Vec<CutPlan>,
}

/// `--fs ext4|btrfs|xfs`.
fn parse_fs(s: &str) -> std::result::Result<HostFs, String> {
    match s {
        "ext4" => Ok(HostFs::Ext4),
        "btrfs" => Ok(HostFs::Btrfs),
        "xfs" => Ok(HostFs::Xfs),
        _ => Err(format!("{s}: hostpart is ext4, btrfs or xfs")),
    }
}

/// What a scenario reports for the table; its notes are printed as they come.
#[derive(Debug, Default)]
struct Report {
    boots: usize,
    qemu: Duration,
}

impl Report {
    fn note(&mut self, line: String) {
        println!("    {line}");
    }
}

/// What every scenario of one run of the suite shares: the boot parts, the work directory, the
/// power-cut seed and count.
struct SuiteRun<'a> {
    parts: &'a BootParts,
    work: PathBuf,
    seed: u64,
    cuts: u32,
}

type ScenarioFn = fn(&SuiteRun<'_>, &mut Report) -> Result<()>;

/// The suite, in order. Names are what `--only` matches.
const SCENARIOS: &[(&str, &str, ScenarioFn)] = &[
    (
        "lifecycle-ext4",
        "1 plain boot, 2 update boots directly, 5 mark-good, 3 manual revert, 4 automatic \
         rollback of an image whose init exits (kernel panic)",
        lifecycle,
    ),
    (
        "power-cut-ext4",
        "6 power cut during the switch, ext4 hostpart",
        power_cut_ext4,
    ),
    (
        "power-cut-btrfs",
        "6 power cut during the switch, btrfs hostpart",
        power_cut_btrfs,
    ),
    (
        "power-cut-xfs",
        "6 power cut during the switch, XFS hostpart (issue 24: XFS hostparts boot in e2e)",
        power_cut_xfs,
    ),
    (
        "power-cut-revert-xfs",
        "6 power cut during a revert's switch, XFS hostpart (issue 24: the campaign's CI share)",
        power_cut_revert_xfs,
    ),
    (
        "power-cut-rollback-btrfs",
        "6 power cut during a rollback's switch, btrfs hostpart (issue 24: the campaign's CI \
         share)",
        power_cut_rollback_btrfs,
    ),
    (
        "garbage-new",
        "7 hn-root-new.img is no filesystem",
        garbage_new,
    ),
    (
        "truncated-new",
        "7 hn-root-new.img is cut short",
        truncated_new,
    ),
    (
        "unbootable-new",
        "7 hn-root-new.img holds no bootable kernel (GRUB's fallback entry)",
        unbootable_new,
    ),
    (
        "missing-current",
        "7 hn-root.img is missing",
        missing_current,
    ),
    (
        "corrupt-state",
        "7 the boot-state block is garbage",
        corrupt_state,
    ),
    (
        "full-hostpart",
        "24 a hostpart filled to its last block: the staged v2 switches in and boots (read-only, \
         no room for its writable layer), reverts, and the committed v1 boots with its existing \
         layer, which the kernel mounts read-only; hnroot-init and `hnroot status` say hostpart \
         is full; nothing lost",
        full_hostpart,
    ),
    (
        "esp-faults",
        "24 an ESP Linux cannot write (the partition read-only: mark-good says so, the boot \
         state unchanged) and one whose FAT is damaged under the boot-state file (GRUB cannot \
         read or write it): v1 boots uncounted and GRUB, mark-good and status say so",
        esp_faults,
    ),
    (
        "revert-refused",
        "7 system-revert without hn-root-old.img",
        revert_refused,
    ),
    (
        "unhealthy-committed",
        "24 a committed image that never reaches healthy: after K boots the old committed image \
         boots where it lies, then GRUB waits before each attempt; a healthy boot ends it",
        unhealthy_committed,
    ),
    (
        "two-hostparts",
        "7 two filesystems labelled hostpart on two disks: the one on GRUB's disk boots",
        two_hostparts,
    ),
    (
        "current-unrenamable",
        "11 hn-root.img cannot be renamed during an update and its rollback: each boots the \
         image where it lies, no loop, nothing lost",
        current_unrenamable,
    ),
    (
        "init-missing",
        "11 the staged image has no /sbin/init: the try is counted, hnroot-init reboots, the \
         good image boots",
        init_missing,
    ),
    (
        "installed",
        "14 hnroot install onto a blank disk (a loop device): the disk boots v1",
        installed,
    ),
    (
        "kernel-args",
        "22 the image's kernel arguments (a second serial console) and the host's (in its host \
         state) reach the booted kernel; what only hnroot may set is refused and named",
        kernel_args,
    ),
    (
        "compat-previous",
        "22 the loader's compatibility contract: the previous hnroot's loader (a pinned older \
         commit's) boots an image carrying today's hnroot, and today's loader boots the previous \
         hnroot's image",
        compat_previous,
    ),
    (
        "loader-update-cuts",
        "22 hnroot bootloader update on the FAT ESP, whole and cut by power at every step (14 \
         cuts): every next boot reaches GRUB's decision and boots v1",
        loader_update_cuts,
    ),
    (
        "sealed-verity",
        "23 sealed images: GRUB refuses a sealed image whose kernel changed and boots the other \
         with its root hash; hnroot-init maps it through dm-verity; a data block changed after \
         sealing fails its read with an I/O error and `hnroot status` says the root is corrupt",
        sealed_verity,
    ),
    (
        "secure-boot",
        "23 Secure Boot enforced: OVMF with the operator's key enrolled starts the loader signed \
         with it, which boots a sealed image verified; one byte of the loader changed and the \
         firmware refuses it; the server's loader update, without a key, writes the loader the \
         publisher presigned, which the firmware starts",
        secure_boot,
    ),
    (
        "floor-cut",
        "23 the version floor across a power cut of the mark-good that raises it: read as the old \
         or the new version, never unreadable or lower; the next mark-good raises it",
        floor_cut,
    ),
    (
        "kexec-update",
        "25 update by kexec: no firmware or GRUB between, committed, history says kexec; \
         firmware vs kexec reboot timed",
        kexec_update,
    ),
    (
        "kexec-rollback",
        "25 rollback by kexec: every kexec counts a try, the tries run out, v1 comes back",
        kexec_rollback,
    ),
    (
        "kexec-unloadable",
        "25 a kernel that cannot be loaded: firmware reboot, boot state unchanged",
        kexec_unloadable,
    ),
];

fn main() -> Result<()> {
    run_suite(&Args::parse())
}

/// 22: the compatibility contract, both ways, with the previous hnroot built from
/// [`hnroot_testkit::previous::PREVIOUS_COMMIT`] (its own `disk` command: its GRUB, `hnroot.mod`,
/// `grub.cfg`, kernel, `hnroot-init` and test images). Its loader on a disk of today's images
/// must reach hnroot's decision and boot today's v1; today's loader on its disk must reach the
/// decision and boot its v1 (its `hnroot-init`, its test init).
fn compat_previous(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    use hnroot_testkit::previous;
    let parts = run.parts;
    let dir = buildenv::fresh_dir(&run.work.join("compat-previous"))?;
    let t = Instant::now();
    let theirs = previous::disk()?;
    report.note(format!(
        "the previous hnroot ({}) and its disk: {:.0} s",
        &previous::PREVIOUS_COMMIT[..7],
        t.elapsed().as_secs_f64()
    ));
    let old_loader = dir.join("previous.efi");
    previous::esp_copy_out(&theirs, "/EFI/BOOT/BOOTX64.EFI", &old_loader)?;
    let old_bytes = std::fs::read(&old_loader)?;
    ensure!(
        hnroot_core::loader::identify(Some(&old_bytes)) == hnroot_core::loader::Loader::Unrecorded,
        "the previous loader is not a PE image without a version record"
    );
    let boot_once = |name: &str, disk: &Path| -> Result<BootRecord> {
        let mut session = Session::start(name, &[disk], &dir.join(format!("qemu-{name}")))?;
        let boot = session.next_boot(BOOT_TIMEOUT)?;
        session.wait_poweroff(POWEROFF_TIMEOUT)?;
        Ok(boot)
    };
    let check = |boot: &BootRecord, what: &str| -> Result<()> {
        let decision = boot.decision.as_deref().unwrap_or("");
        ensure!(
            decision.starts_with("booting hn-root.img (normal")
                && boot.text.contains("hnroot-test: booted version=v1"),
            "{what}: GRUB said {decision:?}, expected the normal boot of v1\n{}",
            boot.tail(40)
        );
        Ok(())
    };

    // The previous loader, today's image.
    let mut contents = DiskContents::committed("compat-old-loader", HostFs::Ext4, "v1");
    contents.loader = Some(old_loader.clone());
    let ours = parts.disk(&contents, &dir)?;
    let t = Instant::now();
    let boot = boot_once("old-loader", &ours.path)?;
    report.qemu += t.elapsed();
    report.boots += 1;
    check(&boot, "the previous loader, today's image")?;
    report.note(format!(
        "the previous loader (no version record) booted today's v1: {}",
        boot.decision.as_deref().unwrap_or("")
    ));

    // Today's loader, the previous image.
    let disk = dir.join("previous-disk.img");
    disk::copy_disk(&theirs, &disk)?;
    previous::esp_copy_in(&disk, &parts.grub.path, "/EFI/BOOT/BOOTX64.EFI")?;
    let t = Instant::now();
    let boot = boot_once("new-loader", &disk)?;
    report.qemu += t.elapsed();
    report.boots += 1;
    check(&boot, "today's loader, the previous image")?;
    report.note(format!(
        "today's loader booted the previous hnroot's v1 (its hnroot-init): {}",
        boot.decision.as_deref().unwrap_or("")
    ));
    Ok(())
}

/// The test init's action that updates a Secure Boot server's loader without a signing key:
/// as [`LOADER_UPDATE_ACTION`], with the image's presigned loader (put on hostpart).
const PRESIGNED_UPDATE_ACTION: &str = "mkdir -p /tmp/esp && mount -t vfat \"$(hnroot find \
    LABEL=EFI-BOOT)\" /tmp/esp && hnroot bootloader update --esp /tmp/esp --kit \
    /hostpart/data/e2e/kit --fleet /nonexistent --presigned /hostpart/data/e2e/presigned.efi; \
    umount /tmp/esp";

/// The test init's action that updates the loader: the ESP mounted (the guest's vfat), then
/// the product's command with the kit the scenario put on hostpart.
const LOADER_UPDATE_ACTION: &str = "mkdir -p /tmp/esp && mount -t vfat \"$(hnroot find \
    LABEL=EFI-BOOT)\" /tmp/esp && hnroot bootloader update --esp /tmp/esp --kit \
    /hostpart/data/e2e/kit --fleet /nonexistent; umount /tmp/esp";

/// 22: `hnroot bootloader update` replaces an older loader on the ESP (FAT, mounted in the
/// guest by its vfat driver), run by the test init. First whole (the reference: every step, the
/// history's `loader-updated`, the new loader boots); then cut by power at every step: the
/// moment each step's line (or the plan's last line) shows, so that each of the six steps is
/// interrupted (7 cuts, the last after the sixth step); `--cuts` above 7 repeats the schedule
/// a few milliseconds after each line (`--cuts 14`: every boundary at once and later). After
/// each cut the disk boots again: GRUB must reach hnroot's decision and boot
/// v1, and the ESP's `BOOTX64.EFI` must be, byte for byte, the old loader or the new one.
fn loader_update_cuts(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let dir = buildenv::fresh_dir(&run.work.join("loader-update"))?;
    let rig = LoaderRig::new(parts, &dir)?;
    let (old_bytes, new_bytes) = (rig.old_bytes.clone(), rig.new_bytes.clone());
    let mut contents = DiskContents::committed("loader-update", HostFs::Ext4, "v1");
    rig.put_on(&mut contents);
    let base = parts.disk(&contents, &dir)?;
    let esp_loader = |disk: &BuiltDisk| esp_loader_of(disk, &dir);
    loader_update_cut_series(
        run,
        report,
        &dir,
        &base,
        &old_bytes,
        &new_bytes,
        &esp_loader,
    )
}

/// What a loader update needs on a test disk: the older loader on the ESP (the same GRUB and
/// module, its record saying hnroot 0.0.1), the kit on hostpart for the guest's `hnroot
/// bootloader update`, and the bytes of the old loader and of the new one the update must
/// write.
struct LoaderRig {
    old: PathBuf,
    old_bytes: Vec<u8>,
    new_bytes: Vec<u8>,
    kit_files: Vec<(String, PathBuf)>,
}

impl LoaderRig {
    fn new(parts: &BootParts, dir: &Path) -> Result<LoaderRig> {
        use hnroot_install::grub::{build_efi, FleetFile, SEAL_KEYS_FILE};
        let kit = hnroot_testkit::grubmod::build_kit()?;
        // The older loader: the same GRUB and module, its record saying hnroot 0.0.1.
        let (_, old) = grubimage::older_loader(dir, "0.0.1")?;
        let cfg = grubimage::production_cfg()?;
        let new = dir.join("new.efi");
        // The update builds in the trusted keys of the running image (its /etc/hnroot/keys holds
        // the publisher's key, and only it): the loader expected has them as its seal-keys file.
        let mut key = parts.publisher.public_key()?;
        if !key.ends_with(b"\n") {
            key.push(b'\n');
        }
        let fleet = [FleetFile {
            name: SEAL_KEYS_FILE.into(),
            data: key,
        }];
        build_efi(&kit, &cfg, &[], &fleet, &dir.join("w-new"), &new)?;
        let (old_bytes, new_bytes) = (std::fs::read(&old)?, std::fs::read(&new)?);
        ensure!(
            old_bytes != new_bytes,
            "the old and the new loader are the same bytes"
        );
        let kit_files = kit_on_hostpart(&kit.dir)?;
        Ok(LoaderRig {
            old,
            old_bytes,
            new_bytes,
            kit_files,
        })
    }

    /// `contents` with the older loader on its ESP, the kit on hostpart and the update as the
    /// test init's action.
    fn put_on(&self, contents: &mut DiskContents) {
        contents.loader = Some(self.old.clone());
        contents.actions = vec![LOADER_UPDATE_ACTION.to_owned()];
        contents
            .hostpart_files
            .extend(self.kit_files.iter().cloned());
    }

    /// Which loader `bytes` are: `Some("old")`, `Some("new")`, or `None` (neither: torn).
    fn which(&self, bytes: &[u8]) -> Option<&'static str> {
        if bytes == self.old_bytes {
            Some("old loader")
        } else if bytes == self.new_bytes {
            Some("new loader")
        } else {
            None
        }
    }
}

/// The loader kit at `kit` as hostpart files under `data/e2e/kit/` (what the test init's
/// `hnroot bootloader update --kit /hostpart/data/e2e/kit` builds from).
fn kit_on_hostpart(kit: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut stack = vec![kit.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(kit)?.display().to_string();
                files.push((format!("data/e2e/kit/{rel}"), entry.path()));
            }
        }
    }
    Ok(files)
}

/// The ESP's `BOOTX64.EFI` on `disk`, read with mtools (`dir` holds the copy).
fn esp_loader_of(disk: &BuiltDisk, dir: &Path) -> Result<Vec<u8>> {
    let out = dir.join("loader.read");
    let _ = std::fs::remove_file(&out);
    buildenv::run(
        std::process::Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-n")
            .arg("-i")
            .arg(format!(
                "{}@@{}",
                disk.path.display(),
                BuiltDisk::offset(&disk.esp)
            ))
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&out),
    )?;
    Ok(std::fs::read(&out)?)
}

/// [`loader_update_cuts`]'s reference run and cuts at every step, on `base`.
fn loader_update_cut_series(
    run: &SuiteRun<'_>,
    report: &mut Report,
    dir: &Path,
    base: &BuiltDisk,
    old_bytes: &[u8],
    new_bytes: &[u8],
    esp_loader: &dyn Fn(&BuiltDisk) -> Result<Vec<u8>>,
) -> Result<()> {
    let plan_re = Regex::new(r"(?m)^hnroot: plan 6/6: ")?;
    let done_re = Regex::new(r"(?m)^hnroot: the ESP's loader is now ")?;
    let step_re = Regex::new(r"(?m)^hnroot: step (\d)/6: ([a-z-]+):")?;
    let check_next_boot = |boot: &BootRecord, what: &str| -> Result<()> {
        let decision = boot.decision.as_deref().unwrap_or("");
        ensure!(
            decision.starts_with("booting hn-root.img (normal")
                && boot.text.contains("hnroot-test: booted version=v1"),
            "{what}: the next boot did not reach GRUB's decision and v1 (GRUB said {decision:?})\n{}",
            boot.tail(40)
        );
        Ok(())
    };

    // The reference: the whole update, timed from its plan's last line to its end.
    let reference = BuiltDisk {
        path: dir.join("reference.img"),
        ..base.clone()
    };
    disk::copy_disk(&base.path, &reference.path)?;
    let t = Instant::now();
    let mut session = Session::start(
        "loader-update reference",
        &[&reference.path],
        &dir.join("qemu-ref"),
    )?;
    let planned = session.wait_line(&plan_re, BOOT_TIMEOUT)?;
    let done = session.wait_line(&done_re, BOOT_TIMEOUT)?;
    let boot = session.next_boot(BOOT_TIMEOUT)?;
    session.wait_poweroff(POWEROFF_TIMEOUT)?;
    drop(session);
    let steps: Vec<String> = step_re
        .captures_iter(&boot.text)
        .map(|c| c[2].to_owned())
        .collect();
    ensure!(
        steps
            == [
                "clear-leftovers",
                "write-new",
                "verify-new",
                "exchange",
                "verify-in-place",
                "keep-previous"
            ],
        "the update ran the steps {steps:?}\n{}",
        boot.tail(40)
    );
    let window = done.at.saturating_sub(planned.at);
    ensure!(
        esp_loader(&reference)? == new_bytes,
        "after the update the ESP's BOOTX64.EFI is not the loader the kit builds here"
    );
    let (history, _) = inspect::history(&reference, &inspect::scratch_for(&reference))?;
    ensure!(
        history.iter().any(|r| r.event == Event::LoaderUpdated),
        "the history records no loader-updated"
    );
    let mut session = Session::start(
        "loader-update reference, next boot",
        &[&reference.path],
        &dir.join("qemu-ref2"),
    )?;
    let boot = session.next_boot(BOOT_TIMEOUT)?;
    session.wait_poweroff(POWEROFF_TIMEOUT)?;
    drop(session);
    check_next_boot(&boot, "after the whole update")?;
    report.qemu += t.elapsed();
    report.boots += 2;
    report.note(format!(
        "reference: 6 steps in {:.3} s (plan to done, as the console shows them), the new \
         loader boots v1, history has loader-updated",
        window.as_secs_f64()
    ));

    // The cuts: at every step. Each step prints its line when it is done, so a cut the moment
    // the line of step k (or the plan's last line, for k = 0) shows lands in step k + 1, the
    // last one after the update's sixth step: 7 cuts. `--cuts` above 7 repeats the schedule,
    // each cut of a repetition a few milliseconds after its line (a random share of the step).
    let boundaries: Vec<Regex> =
        std::iter::once(plan_re.clone())
            .chain((1..=6).map(|k| {
                Regex::new(&format!(r"(?m)^hnroot: step {k}/6: ")).expect("a valid regex")
            }))
            .collect();
    let cuts = (run.cuts as usize).max(boundaries.len());
    let mut rng = Rng(run.seed ^ 0x10ad | 1);
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let (mut old_seen, mut new_seen) = (0, 0);
    for i in 0..cuts {
        let at = &boundaries[i % boundaries.len()];
        let delay = if i < boundaries.len() {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(window.as_secs_f64().min(0.05) * rng.unit())
        };
        let disk = BuiltDisk {
            path: dir.join(format!("cut{}.img", i + 1)),
            ..base.clone()
        };
        disk::copy_disk(&base.path, &disk.path)?;
        let t = Instant::now();
        let mut session = Session::start(
            &format!("loader-update cut {}", i + 1),
            &[&disk.path],
            &dir.join(format!("qemu-cut{}", i + 1)),
        )?;
        let (cut, _) = session.cut_power(at, delay, BOOT_TIMEOUT)?;
        drop(session);
        let last = step_re
            .captures_iter(&cut.text)
            .last()
            .map_or("after the plan".to_owned(), |c| format!("after {}", &c[2]));
        *landed.entry(last.clone()).or_default() += 1;
        let loader = esp_loader(&disk)?;
        let which = if loader == old_bytes {
            old_seen += 1;
            "old"
        } else if loader == new_bytes {
            new_seen += 1;
            "new"
        } else {
            bail!(
                "cut {}: {} ms after /{}/ ({last}), the ESP's BOOTX64.EFI ({} bytes) is \
                 neither the old loader nor the new one",
                i + 1,
                delay.as_millis(),
                at.as_str(),
                loader.len()
            );
        };
        let mut session = Session::start(
            &format!("loader-update cut {} next boot", i + 1),
            &[&disk.path],
            &dir.join(format!("qemu-cut{}-next", i + 1)),
        )?;
        let boot = session.next_boot(BOOT_TIMEOUT)?;
        session.wait_poweroff(POWEROFF_TIMEOUT)?;
        drop(session);
        check_next_boot(&boot, &format!("cut {}", i + 1))?;
        report.qemu += t.elapsed();
        report.boots += 2;
        report.note(format!(
            "cut {}: {} ms after /{}/, {last}: the ESP holds the {which} loader, the next boot \
             reached GRUB's decision and v1",
            i + 1,
            delay.as_millis(),
            at.as_str().trim_start_matches("(?m)^")
        ));
        let _ = std::fs::remove_file(&disk.path);
    }
    report.note(format!(
        "{cuts} cuts landed: {}; the ESP held the old loader {old_seen} times, the new one \
         {new_seen} times",
        landed
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// 14: `hnroot install` (the product's command, as a sysadmin runs it) makes a blank disk file,
/// attached to a loop device, an hnroot disk with the signed v1 as its first image; the disk
/// then boots v1 through the GRUB the install built (the loader kit of this build).
fn installed(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    use std::process::Command;
    if !buildenv::is_root() {
        bail!("installed: hnroot install needs root (loop devices)");
    }
    let dir = buildenv::fresh_dir(&run.work.join("installed"))?;
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 30))
        .context("cannot make the blank disk")?;
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    std::fs::copy(&run.parts.publisher.public, keys.join("publisher.pub"))?;
    let node = buildenv::run(
        Command::new("losetup")
            .args(["--find", "--show", "-P"])
            .arg(&disk),
    )?
    .trim()
    .to_owned();
    let cli = hnroot_testkit::initramfs::static_binary("hnroot-cli", "hnroot")?;
    let v1 = run.parts.image("v1")?;
    let said = buildenv::run(
        Command::new(&cli)
            .args([
                "install",
                "--disk",
                &node,
                "--yes",
                "--no-boot-entry",
                "--image",
            ])
            .arg(&v1.fs.path)
            .arg("--keys")
            .arg(&keys)
            .arg("--kit")
            .arg(hnroot_testkit::grubmod::kit_dir()),
    );
    let _ = Command::new("losetup").args(["-d", &node]).status();
    let said = said?;
    report.note(format!(
        "hnroot install: {}",
        said.lines().last().unwrap_or("")
    ));
    let e = expect(
        "the installed disk's first boot",
        "reason=normal image=hn-root.img write=committed",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    run_story(run, report, &[&disk], "installed", &[e], false)?;
    Ok(())
}

fn run_suite(args: &Args) -> Result<()> {
    if args.campaign && !args.only.is_empty() {
        bail!("--campaign runs the power cuts of --during on --fs; --only chooses scenarios");
    }
    let chosen: Vec<&(&str, &str, ScenarioFn)> = SCENARIOS
        .iter()
        .filter(|(name, _, _)| args.only.is_empty() || args.only.iter().any(|o| name.contains(o)))
        .filter(|(name, _, _)| !args.skip.iter().any(|o| name.contains(o)))
        .collect();
    if chosen.is_empty() && !args.campaign {
        bail!(
            "--only {:?} matches no scenario; scenarios: {}",
            args.only,
            SCENARIOS
                .iter()
                .map(|(n, _, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let started = Instant::now();
    println!("e2e: {}", args.debian);
    let parts = BootParts::build(args.debian, IMAGES)?;
    let build_time = started.elapsed();
    println!(
        "e2e: boot parts ready in {:.1} s:",
        build_time.as_secs_f64()
    );
    for (what, took, cached) in &parts.timings {
        println!(
            "  {:>6.1} s  {what}{}",
            took.as_secs_f64(),
            if *cached { " (cached)" } else { "" }
        );
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    println!("e2e: power-cut seed {seed} (rerun the same moments with --seed {seed})");
    let run = SuiteRun {
        parts: &parts,
        // Runs of other scenarios side by side (`cargo xtask test`'s lanes) keep their own.
        work: buildenv::fresh_dir(
            &buildenv::build_root()
                .join("e2e")
                .join(args.debian.suite())
                .join(if args.campaign {
                    "powercut".to_owned()
                } else if args.only.is_empty() {
                    "runs".to_owned()
                } else {
                    format!("runs-{}", args.only.join("+"))
                }),
        )?,
        seed,
        cuts: args.cuts,
    };
    if args.campaign {
        return campaign(&run, &args.fs, &args.during);
    }
    let mut rows = Vec::new();
    for (name, about, f) in chosen {
        println!("\n== {name}: {about}");
        let t = Instant::now();
        let mut report = Report::default();
        let result = f(&run, &mut report);
        let took = t.elapsed();
        match &result {
            Ok(()) => println!("== {name}: passed in {:.1} s", took.as_secs_f64()),
            Err(e) => println!(
                "== {name}: FAILED after {:.1} s:\n{e:#}",
                took.as_secs_f64()
            ),
        }
        rows.push((name, report, took, result.is_ok()));
    }
    println!(
        "\ne2e: time table (host clock; QEMU TCG, 1 vCPU; boot parts {:.1} s)",
        build_time.as_secs_f64()
    );
    println!(
        "  {:<20} {:>5} {:>9} {:>9}  result",
        "scenario", "boots", "QEMU s", "total s"
    );
    let mut failed = Vec::new();
    for (name, report, took, ok) in &rows {
        println!(
            "  {:<20} {:>5} {:>9.1} {:>9.1}  {}",
            name,
            report.boots,
            report.qemu.as_secs_f64(),
            took.as_secs_f64(),
            if *ok { "passed" } else { "FAILED" }
        );
        if !ok {
            failed.push(name.to_string());
        }
    }
    let total_boots: usize = rows.iter().map(|r| r.1.boots).sum();
    println!(
        "  {:<20} {:>5} {:>9.1} {:>9.1}",
        "all",
        total_boots,
        rows.iter().map(|r| r.1.qemu.as_secs_f64()).sum::<f64>(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!(
            "e2e: {} of {} scenarios failed: {} (serial logs under {})",
            failed.len(),
            rows.len(),
            failed.join(", "),
            run.work.display()
        );
    }
    println!("e2e: {} scenarios passed", rows.len());
    Ok(())
}

/// One line about a boot for the log.
fn summary(parts: &BootParts, rec: &BootRecord) -> String {
    format!(
        "boot {} ({:.1} s): GRUB {} | {} | {} | ended: {}",
        rec.index,
        rec.took.as_secs_f64(),
        rec.grub_record.as_deref().unwrap_or("(no decision record)"),
        if rec.plans.is_empty() {
            "no plan".to_string()
        } else {
            rec.plans
                .iter()
                .map(|p| p.record.as_str())
                .collect::<Vec<_>>()
                .join(" | then ")
        },
        match (&rec.version, &rec.images) {
            (Some(v), images) => format!("booted {v}; hostpart {}", describe_images(parts, images)),
            (None, _) => "no userland".to_string(),
        },
        rec.end.map_or("?".to_string(), |e| e.to_string())
    )
}

/// Boot `disks` in one QEMU through the expected boots; returns the records. `net`: the VM
/// has a NIC on QEMU's user network (the guest reaches the host's 127.0.0.1 as 10.0.2.2).
/// A boot whose [`Expect::typed`] has words gets them typed at GRUB's editor.
fn run_story(
    run: &SuiteRun<'_>,
    report: &mut Report,
    disks: &[&Path],
    name: &str,
    story: &[Expect],
    net: bool,
) -> Result<Vec<BootRecord>> {
    let run_dir = run.work.join(name).join("qemu");
    let mut spec = VmSpec::new(name, disks, &run_dir);
    spec.user_net = net;
    run_story_in(run, report, spec, story)
}

/// [`run_story`] on the VM `spec` describes (its firmware, say).
fn run_story_in(
    run: &SuiteRun<'_>,
    report: &mut Report,
    mut spec: VmSpec,
    story: &[Expect],
) -> Result<Vec<BootRecord>> {
    let t = Instant::now();
    spec.serial_input = story.iter().any(|e| e.typed.is_some());
    let mut session = Session::start_vm(spec)?;
    let mut records = Vec::new();
    for e in story {
        if let Some(words) = e.typed {
            let line = grubimage::editor_line(&run.parts.grub.grub_cfg, GRUB_ENTRY, "linux ")?;
            session.append_at_grub_editor(line, words, BOOT_TIMEOUT)?;
            report.note(format!(
                "typed at GRUB's menu: e, down to line {line} (linux), ` {words}`, Ctrl-X"
            ));
        }
        let rec = session.next_boot(BOOT_TIMEOUT)?;
        report.boots += 1;
        report.note(summary(run.parts, &rec));
        check_boot(run.parts, &rec, e)?;
        records.push(rec);
    }
    if story.last().map(|e| e.end) == Some(End::Poweroff) {
        session.wait_poweroff(POWEROFF_TIMEOUT)?;
    } else {
        session.kill()?;
    }
    report.qemu += t.elapsed();
    Ok(records)
}

/// Read hostpart and the boot state offline, after QEMU stopped.
fn inspect(
    disk: &BuiltDisk,
    view: View,
    report: &mut Report,
) -> Result<(HostpartView, Option<Vec<u8>>, StateSeen)> {
    let scratch = inspect::scratch_for(disk);
    let hp = inspect::hostpart(disk, view, &scratch)?;
    let (bytes, state) = inspect::boot_state(disk, &scratch)?;
    report.note(format!(
        "offline ({}): hostpart: {hp}; boot state: {}{}",
        match view {
            View::AsGrubSees => "as GRUB sees it",
            View::AfterReplay => "after journal replay",
        },
        describe_state(&state),
        hp.check
            .as_ref()
            .map(|c| format!("; {c}"))
            .unwrap_or_default()
    ));
    Ok((hp, bytes, state))
}

/// What the lifecycle's first boot fetches over HTTP (issue 12): v2 as published (signed by
/// the publisher whose key the images trust) and a copy of it with one byte of its kernel
/// changed, served with v2's signature.
const SERVED_V2: &str = "v2.img";
const SERVED_TAMPERED: &str = "v2-tampered.img";
/// Marks where the tampered stage's output ends in the action's output.
const TAMPERED_EXIT: &str = "e2e: tampered stage exit=";

/// Publish `image` (signed: `signature`) into `served` as [`SERVED_V2`] with `hnroot publish`
/// (the host's build of it), and sign its chunk index with the test publisher's key.
fn publish(
    parts: &BootParts,
    image: &Path,
    signature: &Path,
    work: &Path,
    served: &Path,
) -> Result<()> {
    let named = buildenv::fresh_dir(&work.join("lifecycle-to-publish"))?;
    link_or_copy(image, &named.join(SERVED_V2))?;
    link_or_copy(signature, &signing::signature_of(&named.join(SERVED_V2)))?;
    let cli = hnroot_testkit::initramfs::static_binary("hnroot-cli", "hnroot")?;
    buildenv::run(
        std::process::Command::new(&cli)
            .arg("publish")
            .arg(named.join(SERVED_V2))
            .arg("--out")
            .arg(served),
    )?;
    parts.publisher.sign(
        &served.join(format!("{SERVED_V2}.hnidx")),
        "hnroot chunk index of v2",
    )?;
    std::fs::remove_dir_all(&named)?;
    Ok(())
}

/// Scenarios 1, 2, 5, 3, 4 as one life in one QEMU, the first update fetched over HTTP: v1
/// brings the network up and stages a tampered v2 (refused: the signature check fails over the
/// copied bytes, nothing is published) and then v2 itself, both from a server on the host's
/// 127.0.0.1; v2 boots directly, is marked good, reverted; the bad v3 (staged from a file on
/// hostpart) fails its tries and is rolled back.
fn lifecycle(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let served = buildenv::fresh_dir(&run.work.join("lifecycle-served"))?;
    let v2 = parts.image("v2")?;
    publish(parts, &v2.fs.path, &v2.signature, &run.work, &served)?;
    let (tampered, at) = parts.tampered("v2", &served)?;
    ensure!(
        tampered.file_name().and_then(|n| n.to_str()) == Some(SERVED_TAMPERED),
        "the tampered copy is {}",
        tampered.display()
    );
    let server = FileServer::start(&served)?;
    report.note(format!(
        "serving {SERVED_V2} and {SERVED_TAMPERED} (byte {at} of v2 changed, in its kernel; \
         v2's signature) on 127.0.0.1:{}, the guest's {}",
        server.port(),
        server.guest_url("")
    ));
    let mut spec = DiskContents::committed("lifecycle-ext4", HostFs::Ext4, "v1");
    spec.stage_sources = vec!["v3-bad"];
    spec.actions = vec![
        format!(
            "/{NET_UP_IN_IMAGE} && {{ hnroot stage --json {}; echo \"{TAMPERED_EXIT}$?\"; }} && \
             hnroot stage --json {}",
            server.guest_url(SERVED_TAMPERED),
            server.guest_url(SERVED_V2)
        ),
        "hnroot mark-good".to_string(),
        "hnroot revert".to_string(),
        action_stage("v3-bad"),
        ":".to_string(),
    ];
    let disk = parts.disk(&spec, &run.work)?;
    let mut story = vec![
        expect(
            "1: plain boot of v1; stages v2 over HTTP (a tampered copy first)",
            "reason=normal image=hn-root.img",
            "normal",
            "v1",
            &[("hn-root.img", "v1")],
            End::Reboot,
        ),
        expect(
            "2: the staged v2 boots directly; marks it good",
            &format!("reason=update image=hn-root-new.img try=1/{tries}"),
            "update",
            "v2",
            &[("hn-root.img", "v2"), ("hn-root-old.img", "v1")],
            End::Reboot,
        ),
        expect(
            "5: v2 marked good boots as committed (GRUB writes nothing); requests a revert",
            "reason=normal image=hn-root.img try=- write=committed",
            "normal",
            "v2",
            &[("hn-root.img", "v2"), ("hn-root-old.img", "v1")],
            End::Reboot,
        ),
        expect(
            "3: manual revert to v1; stages the bad v3",
            "reason=manual-revert image=hn-root-old.img",
            "revert",
            "v1",
            &[("hn-root.img", "v1"), ("hn-root-broken.img", "v2")],
            End::Reboot,
        ),
    ];
    for attempt in 1..=tries {
        let grub = if attempt == 1 {
            format!("reason=update image=hn-root-new.img try=1/{tries}")
        } else {
            format!("reason=trial image=hn-root.img try={attempt}/{tries}")
        };
        story.push(expect(
            "4: the bad v3 on trial: its init exits, the kernel panics",
            &grub,
            if attempt == 1 { "update" } else { "normal" },
            "v3-bad",
            &[
                ("hn-root.img", "v3-bad"),
                ("hn-root-old.img", "v1"),
                ("hn-root-broken.img", "v2"),
            ],
            End::Panic,
        ));
    }
    story.push(expect(
        "4: automatic rollback to v1; v3 kept as hn-root-broken.img",
        "reason=automatic-rollback image=hn-root-old.img",
        "rollback",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-broken.img", "v3-bad")],
        End::Poweroff,
    ));
    let records = run_story(run, report, &[&disk.path], "lifecycle-ext4", &story, true)?;

    // 12: the tampered copy was fetched whole and refused by its signature; v2 was fetched and
    // staged with the key in the guest's /etc/hnroot/keys.
    let out = &records[0].action_output;
    let split = out
        .iter()
        .position(|l| l.starts_with(TAMPERED_EXIT))
        .context("the first boot's action printed no exit status for the tampered stage")?;
    let tampered_exit = &out[split][TAMPERED_EXIT.len()..];
    let tampered_events = json_events(&out[..split]);
    let v2_events = json_events(&out[split + 1..]);
    let failed = tampered_events
        .iter()
        .find(|e| e["event"] == "failed")
        .context("`hnroot stage --json` of the tampered copy reported no `failed` event")?;
    ensure!(
        tampered_exit != "0"
            && failed["step"] == "verify-partial"
            && failed["partial"] == "remove"
            && !tampered_events.iter().any(|e| e["event"] == "staged"),
        "the tampered copy must fail at verify-partial with its partial file removed and exit \
         non-zero; it exited {tampered_exit} with {failed}"
    );
    report.note(format!(
        "tampered copy: exit {tampered_exit}, failed at step {} ({}), partial file {}",
        failed["step"], failed["error"], failed["partial"]
    ));
    let key_in_guest = format!("/{KEY_IN_IMAGE}");
    let started = v2_events
        .iter()
        .find(|e| e["event"] == "verified")
        .context("`hnroot stage --json` of v2 reported no `verified` event")?;
    let staged = v2_events
        .iter()
        .find(|e| e["event"] == "staged")
        .context("`hnroot stage --json` of v2 reported no `staged` event")?;
    ensure!(
        started["signed_by"] == key_in_guest.as_str()
            && staged["uuid"] == parts.uuid("v2")?.to_string().as_str(),
        "v2 must be staged, signed by {key_in_guest}: verified {started}, staged {staged}"
    );
    // The tampered copy has no index: fetched whole. v2 has one: the guest takes what v1 (its
    // hn-root.img) holds and fetches the rest.
    let got = server.served(SERVED_TAMPERED);
    let want = tampered_len(&tampered)?;
    report.note(format!(
        "served {SERVED_TAMPERED}: {} requests, {} bytes",
        got.requests, got.bytes
    ));
    ensure!(
        got.bytes >= want,
        "the guest fetched {} of {SERVED_TAMPERED}'s {want} bytes from the server",
        got.bytes
    );
    let got = server.served(SERVED_V2);
    report.note(format!(
        "served {SERVED_V2} with its chunk index: {} requests, {} of its {} bytes ({}); the \
         guest reused {} bytes of hn-root.img (v1)",
        got.requests, got.bytes, v2.fs.size, staged["range_requests"], staged["bytes_reused"]
    ));
    ensure!(
        staged["delta"] == true
            && staged["bytes_reused"].as_u64().unwrap_or(0) > 0
            && got.bytes < v2.fs.size,
        "v2 was published with a chunk index and v1 is on hostpart: the guest must fetch less \
         than the image; the server sent {} of {} bytes, staged {staged}",
        got.bytes,
        v2.fs.size
    );
    drop(server);

    // 2: one boot per update.
    let staged_at = 0;
    let first_v2 = records
        .iter()
        .position(|r| r.version.as_deref() == Some("v2"))
        .context("v2 never booted")?;
    report.note(format!(
        "update: v2 staged during boot {}, booted on boot {}: {} boot(s) per update",
        staged_at + 1,
        first_v2 + 1,
        first_v2 - staged_at
    ));
    ensure!(
        first_v2 - staged_at == 1,
        "the staged v2 did not boot on the next boot"
    );

    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(
        parts,
        &hp,
        &[(ImageName::Current, "v1"), (ImageName::Broken, "v3-bad")],
    )?;
    ensure!(!hp.revert_marker, "system-revert is still on hostpart");
    let partials: Vec<&str> = hp
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| n.starts_with(PARTIAL_PREFIX))
        .collect();
    ensure!(
        partials.is_empty(),
        "partial files left on hostpart: {partials:?}"
    );
    let v1 = parts.uuid("v1")?;
    ensure!(
        committed_to(&state, v1),
        "boot state after the rollback is {}, expected committed v1 ({v1})",
        describe_state(&state)
    );
    let next = decide(
        &hp.observation(state),
        &Config {
            tries,
            ..Config::default()
        },
    );
    report.note(format!("next boot would be: {next}"));
    ensure!(
        next.boot().map(|b| (b.image, b.uuid)) == Some((ImageName::Current, v1)),
        "the next boot after the rollback should be hn-root.img (v1): {next}"
    );
    check_lifecycle_history(run, report, &disk, tries)
}

/// The lifecycle's switch history: one `stage` per staged image (none for the tampered copy),
/// v2 marked good and then booted without a try, v3's tries counted down, the rollback last.
fn check_lifecycle_history(
    run: &SuiteRun<'_>,
    report: &mut Report,
    disk: &BuiltDisk,
    tries: u8,
) -> Result<()> {
    let parts = run.parts;
    let (history, damaged) = inspect::history(disk, &inspect::scratch_for(disk))?;
    report.note(format!(
        "history: {}",
        history
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let (v1, v2, v3) = (parts.uuid("v1")?, parts.uuid("v2")?, parts.uuid("v3-bad")?);
    ensure!(damaged == 0, "{damaged} damaged history records");
    let staged: Vec<Option<FsUuid>> = history
        .iter()
        .filter(|r| r.event == Event::Stage)
        .map(|r| r.uuid)
        .collect();
    ensure!(
        staged == [Some(v2), Some(v3)],
        "history: stages of {staged:?}, expected v2 then v3 (the tampered copy is never staged)"
    );
    let marked = history
        .iter()
        .position(|r| r.event == Event::MarkedGood && r.uuid == Some(v2))
        .context("history: no marked-good of v2")?;
    let after = history[marked + 1..]
        .iter()
        .find(|r| r.event == Event::Boot)
        .context("history: no boot after v2's mark-good")?;
    ensure!(
        after.uuid == Some(v2) && after.tries.is_none() && after.good == Some(v2),
        "history: the boot after mark-good should run v2 committed, no try counted: {after}"
    );
    let v3_tries: Vec<Option<(u8, u8)>> = history
        .iter()
        .filter(|r| r.event == Event::Boot && r.uuid == Some(v3))
        .map(|r| r.tries)
        .collect();
    let want: Vec<Option<(u8, u8)>> = (0..tries).rev().map(|left| Some((left, tries))).collect();
    ensure!(
        v3_tries == want,
        "history: v3's boots counted tries {v3_tries:?}, expected {want:?}"
    );
    let last = history.last().context("history: empty")?;
    ensure!(
        last.event == Event::Boot
            && last.reason == ReasonCode::AutomaticRollback
            && last.plan == Some(PlanKind::Rollback)
            && last.uuid == Some(v1)
            && last.good == Some(v1),
        "history: the last record should be the rollback to v1: {last}"
    );
    ensure!(
        !history.iter().any(|r| r.event == Event::Missed),
        "history: a boot that never reached the initramfs"
    );
    Ok(())
}

/// The JSON objects among an action's output lines (`hnroot stage --json` events).
fn json_events(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn tampered_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// A hard link of `from` at `to` (a copy where links cannot be made).
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// A small deterministic generator (xorshift64*) for the power-cut moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn power_cut_ext4(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    power_cut(run, report, HostFs::Ext4, CutPlan::Update)
}

fn power_cut_btrfs(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    power_cut(run, report, HostFs::Btrfs, CutPlan::Update)
}

fn power_cut_xfs(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    power_cut(run, report, HostFs::Xfs, CutPlan::Update)
}

fn power_cut_revert_xfs(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    power_cut(run, report, HostFs::Xfs, CutPlan::Revert)
}

fn power_cut_rollback_btrfs(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    power_cut(run, report, HostFs::Btrfs, CutPlan::Rollback)
}

/// A plan cut by power, and the disk that makes hnroot carry it out: the switches hnroot-init
/// makes at boot, and the test init's `hnroot stage` and `hnroot mark-good` in the running
/// system. In each, v1 is the last known good image and v2 the other one; both must survive
/// any cut (a cut stage may leave v2 unpublished, never half-published).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum CutPlan {
    /// v1 committed, v2 staged: v2 becomes `hn-root.img`, v1 `hn-root-old.img`.
    Update,
    /// v2 committed, v1 old, `system-revert` set: v1 becomes `hn-root.img` again.
    Revert,
    /// v2 on trial with no tries left, v1 old and recorded good: v1 becomes `hn-root.img`, v2
    /// `hn-root-broken.img`.
    Rollback,
    /// v1 committed; the running system stages v2 (`hnroot stage`, a signed file on hostpart).
    Stage,
    /// v2 on trial, v1 old; the running system commits v2 (`hnroot mark-good`).
    MarkGood,
    /// v1 committed, an older loader on the ESP; the running system replaces it (`hnroot
    /// bootloader update`).
    LoaderUpdate,
}

/// Cuts of a stage are spread over this long after the test init starts `hnroot stage` (it
/// copies and verifies the 37 MiB image in a second or two under TCG; later cuts land after it
/// finished, which is a valid moment too).
const STAGE_CUT_WINDOW: Duration = Duration::from_millis(2000);
/// Cuts of a mark-good are spread over this long after the test init starts it (it mounts the
/// ESP, writes the boot state and the history in well under a second).
const MARK_GOOD_CUT_WINDOW: Duration = Duration::from_millis(600);
/// Cuts of a loader update are spread over this long after the test init starts it (it
/// mounts the ESP, builds the loader from the kit with grub-mkimage and writes it in 6 steps:
/// about 2 s under TCG; later cuts land after it finished).
const LOADER_UPDATE_CUT_WINDOW: Duration = Duration::from_millis(3000);

impl CutPlan {
    /// The plan kind hnroot carries out (`None`: the loader's update, which is no plan of
    /// hostpart).
    fn kind(self) -> Option<PlanKind> {
        match self {
            CutPlan::Update => Some(PlanKind::Update),
            CutPlan::Revert => Some(PlanKind::Revert),
            CutPlan::Rollback => Some(PlanKind::Rollback),
            CutPlan::Stage => Some(PlanKind::Stage),
            CutPlan::MarkGood => Some(PlanKind::MarkGood),
            CutPlan::LoaderUpdate => None,
        }
    }

    /// The plan's name, as `--during` spells it.
    fn name(self) -> &'static str {
        self.kind().map_or("loader-update", PlanKind::code)
    }

    /// Carried out by hnroot-init at boot (else by the test init's command).
    fn at_boot(self) -> bool {
        matches!(self, CutPlan::Update | CutPlan::Revert | CutPlan::Rollback)
    }

    /// The test init's command, for the plans it carries out.
    fn action(self) -> Option<String> {
        match self {
            CutPlan::Stage => Some(action_stage("v2")),
            CutPlan::MarkGood => Some("hnroot mark-good".to_owned()),
            CutPlan::LoaderUpdate => Some(LOADER_UPDATE_ACTION.to_owned()),
            _ => None,
        }
    }

    /// The console line the cut's delay counts from: hnroot-init's plan, or the test init
    /// starting its action.
    fn trigger(self) -> Result<Regex> {
        let re = match self.action() {
            None => format!("(?m){INIT_LINE}plan: "),
            Some(action) => format!("hnroot-test: action 1: {}", regex::escape(&action)),
        };
        Ok(Regex::new(&re)?)
    }

    /// How long after the trigger the cuts are spread.
    fn window(self) -> Duration {
        match self {
            CutPlan::Stage => STAGE_CUT_WINDOW,
            CutPlan::MarkGood => MARK_GOOD_CUT_WINDOW,
            CutPlan::LoaderUpdate => LOADER_UPDATE_CUT_WINDOW,
            _ => CUT_WINDOW,
        }
    }

    /// The disk before the cut.
    fn contents(self, name: &str, fs: HostFs) -> DiskContents {
        // v2 the current image over v1 the old one, as an update leaves them.
        let after_update = || {
            DiskContents::committed(name, fs, "v2").with(ImageName::Old, ImageContent::Image("v1"))
        };
        let trial = |tries_left| StateInit::Trial {
            image: "v2",
            tries_left,
            good: Some("v1"),
        };
        let mut c = match self {
            CutPlan::Update => DiskContents::committed(name, fs, "v1")
                .with(ImageName::New, ImageContent::Image("v2")),
            CutPlan::Revert => DiskContents {
                revert_marker: true,
                ..after_update()
            },
            CutPlan::Rollback => DiskContents {
                state: trial(0),
                ..after_update()
            },
            CutPlan::Stage => DiskContents {
                stage_sources: vec!["v2"],
                ..DiskContents::committed(name, fs, "v1")
            },
            CutPlan::MarkGood => DiskContents {
                state: trial(2),
                ..after_update()
            },
            // The older loader and the kit: [`LoaderRig::put_on`].
            CutPlan::LoaderUpdate => DiskContents::committed(name, fs, "v1"),
        };
        c.actions = self.action().into_iter().collect();
        c
    }

    /// Spreads the seeds of the plans apart.
    fn salt(self) -> u64 {
        match self {
            CutPlan::Update => 0,
            CutPlan::Revert => 0x5e7e_0000,
            CutPlan::Rollback => 0x4011_0000,
            CutPlan::Stage => 0x57a9_0000,
            CutPlan::MarkGood => 0x9009_0000,
            CutPlan::LoaderUpdate => 0x10ad_0000,
        }
    }
}

/// A plan to cut and, for the loader's update, the loaders it goes between.
#[derive(Clone, Copy)]
struct Cutting<'a> {
    plan: CutPlan,
    rig: Option<&'a LoaderRig>,
}

/// How one cut ended.
#[derive(Debug)]
enum CutEnd {
    /// A valid image booted and both images are intact; `boots` boots after the cut until
    /// GRUB's view and Linux's agreed.
    Settled { boots: u32 },
    /// GRUB did not decide what the core decides on the disk, or no valid image booted.
    Unbootable(anyhow::Error),
    /// An image is missing, doubled or changed, or the boot state is not valid.
    Lost(anyhow::Error),
}

/// What a series of cuts of one plan on one filesystem came to.
#[derive(Debug, Default)]
struct CutTally {
    cuts: u32,
    unbootable: u32,
    lost: u32,
    /// Boots to settle, per settled cut.
    settle: Vec<u32>,
    /// Where the cuts landed (the last hnroot-init line before each).
    landed: BTreeMap<String, usize>,
    /// Recovery boots whose initramfs found GRUB's view behind Linux's.
    stale_views: usize,
    /// What went wrong, per failed cut.
    failures: Vec<String>,
}

/// 6: power cuts at random moments of `plan`'s switch on a `fs` hostpart, each after
/// hnroot-init prints its plan; GRUB must then decide exactly what the core decides on the
/// disk as GRUB sees it, a valid image must boot, and v1 (the last known good) and v2 must each
/// be on hostpart exactly once, unchanged. Fails on the first cut that breaks this.
fn power_cut(run: &SuiteRun<'_>, report: &mut Report, fs: HostFs, plan: CutPlan) -> Result<()> {
    let tally = cut_series(run, report, fs, plan, true)?;
    report.note(format!(
        "{} cuts landed after: {}; GRUB's view behind Linux's in {} recovery boots; boots to \
         settle: {:?}",
        tally.cuts,
        tally
            .landed
            .iter()
            .map(|(at, n)| format!("{at} x{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        tally.stale_views,
        tally.settle
    ));
    Ok(())
}

/// `run.cuts` cuts of `plan` on `fs`, tallied; with `stop_at_first`, the first failed cut is
/// the error.
fn cut_series(
    run: &SuiteRun<'_>,
    report: &mut Report,
    fs: HostFs,
    plan: CutPlan,
    stop_at_first: bool,
) -> Result<CutTally> {
    let name = match plan {
        CutPlan::Update => format!("power-cut-{fs}"),
        _ => format!("power-cut-{}-{fs}", plan.name()),
    };
    let mut contents = plan.contents(&name, fs);
    let rig = match plan {
        CutPlan::LoaderUpdate => {
            let dir = buildenv::fresh_dir(&run.work.join(format!("{name}-loaders")))?;
            let rig = LoaderRig::new(run.parts, &dir)?;
            rig.put_on(&mut contents);
            Some(rig)
        }
        _ => None,
    };
    let base = run.parts.disk(&contents, &run.work)?;
    if run.cuts == 0 {
        bail!("--cuts 0 cuts nothing: leave {name} out with --only, or cut at least once");
    }
    let salt: u64 = match fs {
        HostFs::Ext4 => 0xe474,
        HostFs::Btrfs => 0xb7f5,
        HostFs::Xfs => 0x8f5a,
    };
    let mut rng = Rng((run.seed ^ salt ^ plan.salt()) | 1);
    let mut tally = CutTally::default();
    for i in 0..run.cuts {
        let slot = plan.window().as_secs_f64() / f64::from(run.cuts);
        let delay = Duration::from_secs_f64(slot * (f64::from(i) + rng.unit()));
        let dir = run.work.join(&name).join(format!("cut{}", i + 1));
        let disk = BuiltDisk {
            path: dir.join("disk.img"),
            ..base.clone()
        };
        disk::copy_disk(&base.path, &disk.path)?;
        let label = format!("{name} cut {}", i + 1);
        let cutting = Cutting {
            plan,
            rig: rig.as_ref(),
        };
        let end = cut_once(run, report, &disk, cutting, &label, delay, &mut tally)?;
        tally.cuts += 1;
        match end {
            CutEnd::Settled { boots } => {
                tally.settle.push(boots);
                // Passed: the copy is not needed (long --cuts runs would fill the disk).
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            CutEnd::Unbootable(e) | CutEnd::Lost(e) if stop_at_first => {
                return Err(e.context(format!("{label} (disk kept in {})", dir.display())));
            }
            CutEnd::Unbootable(e) => {
                tally.unbootable += 1;
                tally.failures.push(format!("{label}: unbootable: {e:#}"));
            }
            CutEnd::Lost(e) => {
                tally.lost += 1;
                tally.failures.push(format!("{label}: lost: {e:#}"));
            }
        }
    }
    Ok(tally)
}

/// One cut `delay` after hnroot-init's `plan:` line on `disk`, then boots until settled.
/// Errors are the harness's own (QEMU would not start, the disk cannot be read); what the
/// disk came to is the [`CutEnd`].
fn cut_once(
    run: &SuiteRun<'_>,
    report: &mut Report,
    disk: &BuiltDisk,
    cutting: Cutting<'_>,
    label: &str,
    delay: Duration,
    tally: &mut CutTally,
) -> Result<CutEnd> {
    let Cutting { plan, rig } = cutting;
    let parts = run.parts;
    let dir = disk
        .path
        .parent()
        .context("the disk copy has no directory")?;
    let t = Instant::now();
    let mut session = Session::start(label, &[&disk.path], &dir.join("qemu-cut"))?;
    let (cut, _) = session.cut_power(&plan.trigger()?, delay, BOOT_TIMEOUT)?;
    report.qemu += t.elapsed();
    report.boots += 1;
    let last = cut
        .init
        .iter()
        .rev()
        .find(|l| l.starts_with("step ") || l.starts_with("plan: "))
        .cloned()
        .unwrap_or_default();
    report.note(format!(
        "{label}: {:.0} ms after {}; hnroot-init's last line before the cut: `{last}`",
        delay.as_secs_f64() * 1000.0,
        if plan.at_boot() {
            format!("`plan: {} ...`", cut.plan_kind.as_deref().unwrap_or("?"))
        } else {
            format!(
                "the test init started `{}`",
                plan.action().unwrap_or_default()
            )
        },
    ));
    if plan.at_boot() {
        let at = last
            .split(':')
            .next()
            .unwrap_or("before the plan")
            .to_string();
        *tally.landed.entry(at).or_default() += 1;
        // The `plan: KIND (N steps)` line (the cut waited for it; the `record:` line after it
        // may be cut off): a plan other than the one the disk was made for is the harness's
        // error.
        ensure!(
            cut.plan_kind.as_deref() == Some(plan.name()),
            "{label}: hnroot-init planned {:?}, expected {}",
            cut.plan_kind,
            plan.name()
        );
    }
    let mut boots = 0;
    // Boot until GRUB's view of the disk (journal not replayed) leads to the decision Linux's
    // view does: at most twice (the recovery boot, and once more where GRUB is still behind).
    loop {
        boots += 1;
        let (seen_by_grub, _, state) = inspect(disk, View::AsGrubSees, report)?;
        if boots == 1 && !plan.at_boot() {
            // Where a cut of the running system's command landed: before or after what it
            // publishes, as the next boot finds the disk.
            let v2 = parts.uuid("v2")?;
            let published = seen_by_grub
                .images
                .iter()
                .any(|i| i.name == ImageName::New && i.seen == ImageSeen::Bootable(v2));
            // The loader the firmware finds: the old one or the new one, byte for byte, never
            // a torn one.
            if let Some(rig) = rig {
                let found = esp_loader_of(disk, dir)?;
                let Some(which) = rig.which(&found) else {
                    return Ok(CutEnd::Unbootable(anyhow::anyhow!(
                        "the ESP's BOOTX64.EFI ({} bytes) is neither the old loader nor the new \
                         one",
                        found.len()
                    )));
                };
                *tally.landed.entry(which.to_owned()).or_default() += 1;
            }
            let at = match plan {
                CutPlan::LoaderUpdate => "",
                CutPlan::Stage if published => "v2 published",
                CutPlan::Stage => "v2 not published",
                _ if matches!(&state, StateSeen::Valid(BootState::Committed { .. })) => "committed",
                _ => "still on trial",
            };
            if !at.is_empty() {
                *tally.landed.entry(at.to_owned()).or_default() += 1;
            }
        }
        let config = Config {
            tries: parts.tries(),
            ..Config::default()
        };
        let expected = decide(&seen_by_grub.observation(state), &config);
        let Decision::Boot(boot) = &expected else {
            return Ok(CutEnd::Unbootable(anyhow::anyhow!(
                "the core finds nothing bootable on this disk as GRUB sees it: {expected}"
            )));
        };
        let Some(version) = parts.version_of(&boot.uuid) else {
            return Ok(CutEnd::Lost(anyhow::anyhow!(
                "the core decides to boot {}, which is none of the test images",
                boot.uuid
            )));
        };
        let t = Instant::now();
        let mut session = Session::start(
            &format!("{label}, boot {boots} after it"),
            &[&disk.path],
            &dir.join(format!("qemu-{boots}")),
        )?;
        let rec = match session.next_boot(BOOT_TIMEOUT) {
            Ok(rec) => rec,
            Err(e) => return Ok(CutEnd::Unbootable(e)),
        };
        report.boots += 1;
        report.note(summary(parts, &rec));
        if rec.plans.first().is_some_and(|p| {
            field(&p.record, "notes").is_some_and(|n| n.split(',').any(|c| c == "grub-view-stale"))
        }) {
            tally.stale_views += 1;
        }
        if rec.grub_decision.as_deref() != Some(expected.record().to_string().as_str())
            || rec.grub_args.as_deref() != Some(TEST_ARGS_RECORD)
        {
            return Ok(CutEnd::Unbootable(anyhow::anyhow!(
                "GRUB decided `{}`; the core, on hostpart as GRUB sees it offline, decides `{}` \
                 ({expected})\n--- console tail ---\n{}",
                rec.grub_record.clone().unwrap_or_default(),
                expected.record(),
                rec.tail(qemu::TAIL_LINES)
            )));
        }
        if rec.version.as_deref() != Some(version)
            || rec.uuid.as_deref() != Some(boot.uuid.to_string().as_str())
            || rec.fatal.is_some()
            || rec.end != Some(End::Poweroff)
        {
            return Ok(CutEnd::Unbootable(anyhow::anyhow!(
                "expected {version} ({}) to boot and power off; got version {:?}, FATAL {:?}, \
                 end {:?}\n--- console tail ---\n{}",
                boot.uuid,
                rec.version,
                rec.fatal,
                rec.end,
                rec.tail(qemu::TAIL_LINES)
            )));
        }
        session.wait_poweroff(POWEROFF_TIMEOUT)?;
        report.qemu += t.elapsed();
        let (hp, _, state) = inspect(disk, View::AfterReplay, report)?;
        let v2_required = !matches!(plan, CutPlan::Stage | CutPlan::LoaderUpdate);
        if let Err(e) = both_images_intact(parts, &hp, &state, v2_required) {
            return Ok(CutEnd::Lost(e));
        }
        let next = decide(&hp.observation(state), &config);
        if next.boot().is_none() {
            return Ok(CutEnd::Unbootable(anyhow::anyhow!(
                "after the boot nothing would boot: {next}"
            )));
        }
        // GRUB's next decision is made on the disk as it lies, journal not replayed. When it
        // differs from the decision on Linux's view, GRUB is still behind: boot once more.
        let (grub_view, _, grub_state) = inspect(disk, View::AsGrubSees, report)?;
        let grub_next = decide(&grub_view.observation(grub_state), &config);
        if grub_next == next {
            return Ok(CutEnd::Settled { boots });
        }
        if boots >= 2 {
            return Ok(CutEnd::Unbootable(anyhow::anyhow!(
                "after {boots} boots GRUB's view is still behind: GRUB will decide \
                 `{grub_next}`, Linux's view says `{next}`"
            )));
        }
        report.note(format!(
            "{label}: after the recovery boot GRUB's view is still behind: GRUB will decide \
             `{grub_next}`, Linux's view says `{next}`; booting once more"
        ));
    }
}

/// v1 (the last known good image) as `hn-root.img` or `hn-root-old.img` and v2 somewhere, each
/// exactly once and unchanged (v2 at most once where `v2_required` is false: a stage cut before
/// it published); the boot state valid.
fn both_images_intact(
    parts: &BootParts,
    hp: &HostpartView,
    state: &StateSeen,
    v2_required: bool,
) -> Result<()> {
    let (v1, v2) = (parts.uuid("v1")?, parts.uuid("v2")?);
    let holding = |uuid| {
        hp.images
            .iter()
            .filter(|img| img.seen == ImageSeen::Bootable(uuid))
            .map(|img| img.name)
            .collect::<Vec<_>>()
    };
    let (at_v1, at_v2) = (holding(v1), holding(v2));
    ensure!(
        at_v1.len() == 1
            && matches!(at_v1[0], ImageName::Current | ImageName::Old)
            && (at_v2.len() == 1 || (!v2_required && at_v2.is_empty())),
        "v1 (last known good) is at {at_v1:?} and v2 at {at_v2:?}; expected v1 exactly once, as \
         hn-root.img or hn-root-old.img, and v2 {}",
        if v2_required {
            "exactly once"
        } else {
            "at most once"
        }
    );
    let mut want = vec![(at_v1[0], "v1")];
    want.extend(at_v2.first().map(|&n| (n, "v2")));
    check_images(parts, hp, &want)?;
    ensure!(
        matches!(state, StateSeen::Valid(_)),
        "the boot state is {}",
        describe_state(state)
    );
    Ok(())
}

/// `cargo xtask powercut`: `--cuts` cuts of each plan on each filesystem, tallied instead of
/// stopping at the first failure; a table per filesystem and plan; an error when any cut left
/// the disk unbootable or lost an image.
fn campaign(run: &SuiteRun<'_>, fss: &[HostFs], plans: &[CutPlan]) -> Result<()> {
    let mut rows = Vec::new();
    for &fs in fss {
        for &plan in plans {
            println!(
                "\n== power cuts during {} on {fs}: {} cuts",
                plan.name(),
                run.cuts
            );
            let t = Instant::now();
            let mut report = Report::default();
            let tally = cut_series(run, &mut report, fs, plan, false)?;
            for f in &tally.failures {
                println!("    FAILED {f}");
            }
            rows.push((fs, plan, tally, t.elapsed()));
        }
    }
    println!(
        "\npowercut: seed {}, {} cuts per filesystem and plan, each within {} ms of \
         hnroot-init's plan line (update, revert, rollback), {} ms of the test init starting \
         `hnroot stage`, {} ms of `hnroot mark-good`, {} ms of `hnroot bootloader update`",
        run.seed,
        run.cuts,
        CUT_WINDOW.as_millis(),
        STAGE_CUT_WINDOW.as_millis(),
        MARK_GOOD_CUT_WINDOW.as_millis(),
        LOADER_UPDATE_CUT_WINDOW.as_millis()
    );
    println!("| filesystem | plan | cuts | unbootable | images lost | boots to settle (1 / 2) | recovery boots with GRUB's view behind | landed after (boot-time: last step seen; stage, mark-good: what the next boot found; loader-update: the loader the firmware finds) | minutes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut bad = 0;
    for (fs, plan, t, took) in &rows {
        let ones = t.settle.iter().filter(|&&b| b == 1).count();
        println!(
            "| {fs} | {} | {} | {} | {} | {ones} / {} | {} | {} | {:.1} |",
            plan.name(),
            t.cuts,
            t.unbootable,
            t.lost,
            t.settle.len() - ones,
            t.stale_views,
            t.landed
                .iter()
                .map(|(at, n)| format!("{at} ×{n}"))
                .collect::<Vec<_>>()
                .join(", "),
            took.as_secs_f64() / 60.0
        );
        bad += t.unbootable + t.lost;
    }
    ensure!(
        bad == 0,
        "powercut: {bad} cuts left a disk unbootable or lost an image (their disks are kept \
         under {})",
        run.work.display()
    );
    Ok(())
}

/// A one-boot story on a disk built from `spec`; returns the record and the disk.
fn one_boot(
    run: &SuiteRun<'_>,
    report: &mut Report,
    spec: &DiskContents,
    e: Expect,
) -> Result<(BootRecord, BuiltDisk)> {
    let disk = run.parts.disk(spec, &run.work)?;
    let mut records = run_story(run, report, &[&disk.path], &spec.name, &[e], false)?;
    let rec = records.pop().context("no boot")?;
    Ok((rec, disk))
}

/// 7: a staged image GRUB cannot read is ignored with a note, v1 boots normally, and
/// nothing renames or removes the file (a file that cannot be read is never moved). GRUB and
/// hnroot-init refuse it with the same refusal code.
fn unreadable_new(
    run: &SuiteRun<'_>,
    report: &mut Report,
    name: &str,
    content: ImageContent,
    listed_as: &'static str,
    code: &str,
) -> Result<()> {
    let parts = run.parts;
    let spec = DiskContents::committed(name, HostFs::Ext4, "v1").with(ImageName::New, content);
    let mut e = expect(
        "unreadable hn-root-new.img",
        "reason=normal image=hn-root.img write=committed",
        "normal",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-new.img", listed_as)],
        End::Poweroff,
    );
    e.grub_note = Some("new-unreadable");
    let (rec, disk) = one_boot(run, report, &spec, e)?;
    let new = ImageName::New.file_name().to_string();
    let want = vec![(new, code.to_string())];
    ensure!(
        rec.grub_refused == want && rec.init_refused == want,
        "GRUB and hnroot-init should both refuse hn-root-new.img as `{code}`: GRUB refused \
         {:?}, hnroot-init {:?}",
        rec.grub_refused,
        rec.init_refused
    );
    report.note(format!(
        "GRUB and hnroot-init: hn-root-new.img unreadable ({code})"
    ));
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    let staged = hp
        .image(ImageName::New)
        .context("hn-root-new.img should still be on hostpart")?;
    let source = std::fs::read(disk.path.with_file_name("hn-root-new.img.source"))
        .context("the scenario's copy of the staged file")?;
    ensure!(
        staged.digest == fnv1a(&source),
        "hn-root-new.img changed on hostpart"
    );
    check_images(
        parts,
        &HostpartView {
            images: hp
                .images
                .iter()
                .filter(|i| i.name != ImageName::New)
                .cloned()
                .collect(),
            ..hp.clone()
        },
        &[(ImageName::Current, "v1")],
    )?;
    ensure!(
        committed_to(&state, parts.uuid("v1")?),
        "the boot state should not change: {}",
        describe_state(&state)
    );
    Ok(())
}

/// 7: hn-root-new.img is pseudo-random bytes.
fn garbage_new(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let size = run.parts.image("v2")?.fs.size;
    unreadable_new(
        run,
        report,
        "garbage-new",
        ImageContent::Garbage(size),
        "*",
        "no-filesystem",
    )
}

/// 7: hn-root-new.img is v2 without its last MiB (a copy cut short near its end): the
/// superblock (v2's UUID), `/boot/kernel` and `/boot/initramfs` are intact, so only the
/// filesystem's own size gives it away; the kernel would refuse to mount it.
fn truncated_new(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let size = run.parts.image("v2")?.fs.size;
    unreadable_new(
        run,
        report,
        "truncated-new",
        ImageContent::Truncated("v2", size - (1 << 20)),
        "v2",
        "truncated",
    )
}

/// 7: the staged image's `/boot/kernel` is not a kernel. GRUB reads the image and tries it,
/// but `linux` fails: the menu's fallback entry boots hn-root.img. Every such boot consumes a
/// try of the staged image; the boot that uses the last one already lands on the rollback
/// target, so hnroot-init moves the image aside as hn-root-broken.img and records v1 good.
fn unbootable_new(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let mut spec = DiskContents::committed("unbootable-new", HostFs::Ext4, "v1")
        .with(ImageName::New, ImageContent::Image("v4-nokernel"));
    spec.actions = vec![":".to_string(); usize::from(tries) + 1];
    let mut story = Vec::new();
    for attempt in 1..=tries {
        // The last try's fallback boot is already the rollback target of an exhausted trial:
        // hnroot-init finishes the rollback there, one boot before GRUB would decide it.
        let last = attempt == tries;
        let mut e = expect(
            "hn-root-new.img without a kernel: its entry fails, the fallback entry boots v1",
            &format!("reason=update image=hn-root-new.img try={attempt}/{tries}"),
            if last { "rollback" } else { "normal" },
            "v1",
            if last {
                &[("hn-root.img", "v1"), ("hn-root-broken.img", "v4-nokernel")]
            } else {
                &[("hn-root.img", "v1"), ("hn-root-new.img", "v4-nokernel")]
            },
            End::Reboot,
        );
        e.loaded = Some("hn-root.img");
        story.push(e);
    }
    story.push(expect(
        "after the rollback: hn-root.img boots normally",
        "reason=normal image=hn-root.img",
        "normal",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-broken.img", "v4-nokernel")],
        End::Poweroff,
    ));
    let disk = parts.disk(&spec, &run.work)?;
    let records = run_story(run, report, &[&disk.path], &spec.name, &story, false)?;
    for rec in &records[..usize::from(tries)] {
        let why = rec
            .grub
            .iter()
            .find(|l| l.starts_with("error:") && !l.contains("video mode"))
            .with_context(|| {
                format!(
                    "boot {}: GRUB should say why the staged image's entry failed; it printed {:?}",
                    rec.index, rec.grub
                )
            })?;
        report.note(format!("boot {}: GRUB: {why}", rec.index));
    }
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    ensure!(
        hp.image(ImageName::New).is_none() && hp.image(ImageName::Broken).is_some(),
        "the unbootable image should now be hn-root-broken.img: {hp}"
    );
    check_images(
        parts,
        &hp,
        &[
            (ImageName::Current, "v1"),
            (ImageName::Broken, "v4-nokernel"),
        ],
    )?;
    ensure!(
        committed_to(&state, parts.uuid("v1")?),
        "boot state after the rollback: {}",
        describe_state(&state)
    );
    Ok(())
}

/// Marks the sealed-verity action's lines.
const VERITY_MARK: &str = "e2e-verity:";

/// 23: sealed images through the whole chain. The loader trusts the test publisher's key;
/// hn-root.img is v1 sealed (`hnroot image seal`, version 1.10) with one 4 KiB block of a file
/// changed afterwards (a data block: GRUB checks the seal and the boot files, not every block);
/// hn-root-new.img is v2 sealed with one byte of its kernel changed. GRUB refuses the new image
/// (`seal-kernel-mismatch`) and boots v1 with its root hash on the line; hnroot-init maps v1
/// through dm-verity; in the booted system `hnroot status` first says the root is verified,
/// reading the changed file fails with an I/O error while the block before it reads, and then
/// `hnroot status` says the root is corrupt.
fn sealed_verity(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    use hnroot_install::grub::{FleetFile, SEAL_KEYS_FILE};
    use hnroot_testkit::bootparts::{verity_probe_line, VERITY_PROBE_IN_IMAGE};
    let parts = run.parts;
    let dir = buildenv::fresh_dir(&run.work.join("sealed-verity-files"))?;
    let seal = |version: &str, image: &str| sealed_copy(parts, &dir, version, image);
    // v1: the probe file's block 7 changed by one byte after sealing.
    let current = seal("v1", "1.10")?;
    let changed_block = change_once(&current, verity_probe_line(7).as_bytes())?;
    // v2: one byte of its kernel changed after sealing.
    let new = seal("v2", "1.11")?;
    let kernel = std::fs::read(&parts.kernel.vmlinuz)?;
    let mid = (kernel.len() / 2) & !4095;
    change_once(&new, &kernel[mid + 100..mid + 164])?;
    let loader = grubimage::production_with(
        &[FleetFile {
            name: SEAL_KEYS_FILE.into(),
            data: parts.publisher.public_key()?,
        }],
        &dir.join("loader"),
    )?;
    let mut spec = DiskContents::committed("sealed-verity", HostFs::Ext4, "v1")
        .with(ImageName::Current, ImageContent::File(current))
        .with(ImageName::New, ImageContent::File(new));
    spec.loader = Some(loader.path.clone());
    let probe = format!("/{VERITY_PROBE_IN_IMAGE}");
    spec.actions = vec![format!(
        "hnroot status | sed -n 's/^  root: /{VERITY_MARK} before: /p'; \
         dd if={probe} of=/dev/null bs=4096 count=1 skip=6 iflag=direct 2>/dev/null; \
         echo \"{VERITY_MARK} block 6 exit=$?\"; \
         cat {probe} > /dev/null 2>/tmp/verity-err; \
         echo \"{VERITY_MARK} whole file exit=$? $(cat /tmp/verity-err)\"; \
         hnroot status | sed -n 's/^  root: /{VERITY_MARK} after: /p'; \
         hnroot status --json | grep -o '\"verity\": *\"[a-z]*\"' | sed 's/^/{VERITY_MARK} json /'"
    )];
    let mut e = expect(
        "a sealed v1 whose data block changed boots verified; the sealed v2 whose kernel changed \
         is refused by GRUB",
        "reason=normal image=hn-root.img",
        "normal",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-new.img", "v2")],
        End::Poweroff,
    );
    // GRUB's note for the new image it would not boot (the seal code is in its refusal line).
    e.grub_note = Some("new-unreadable");
    let (rec, _) = one_boot(run, report, &spec, e)?;
    ensure!(
        rec.grub_refused
            .iter()
            .any(|(f, code)| f == "hn-root-new.img" && code == "seal-kernel-mismatch"),
        "GRUB should refuse hn-root-new.img as seal-kernel-mismatch; it refused {:?}",
        rec.grub_refused
    );
    let line = rec.cmdline.clone().unwrap_or_default();
    ensure!(
        line.split_whitespace()
            .any(|w| w.starts_with("hnroot.roothash=") && w.len() == 16 + 64),
        "the sealed image's kernel command line has no root hash: {line}"
    );
    ensure!(
        rec.verity() == ["on"],
        "hnroot-init should mount the sealed image through dm-verity (verity=on); its mount \
         steps say {:?}: {:?}",
        rec.verity(),
        rec.steps
    );
    let said: Vec<&str> = rec
        .action_output
        .iter()
        .filter_map(|l| l.strip_prefix(VERITY_MARK).map(str::trim))
        .collect();
    let has = |prefix: &str| said.iter().find(|l| l.starts_with(prefix)).copied();
    let before = has("before:").unwrap_or("");
    let after = has("after:").unwrap_or("");
    let block6 = has("block 6 exit=").unwrap_or("");
    let whole = has("whole file exit=").unwrap_or("");
    ensure!(
        before.starts_with("before: verified by dm-verity")
            && block6 == "block 6 exit=0"
            && whole.starts_with("whole file exit=1")
            && whole.contains("Input/output error")
            && after.starts_with("after: CORRUPT")
            && said.contains(&"json \"verity\": \"corrupt\""),
        "in the booted system: before any read of the changed block the root must be \
         verified, the block before it must read, the whole file must fail with an I/O error, \
         and then the root must be corrupt (text and JSON); the action printed {said:?}"
    );
    report.note(format!(
        "changed one byte at {changed_block} of hn-root.img after sealing: {whole}; then \
         `hnroot status`: {after}"
    ));
    Ok(())
}

/// 23: Secure Boot enforced. OVMF's Secure Boot firmware with only the test operator's
/// certificate enrolled (PK, KEK, db: `virt-fw-vars`), the loader built with the trusted seal
/// key and the require-sealed marker and signed with the operator's key (`sbsign`, as `hnroot
/// install --sign-key --sign-cert` does), hn-root.img v1 sealed. The sealed image boots through
/// the whole chain (its root verified by dm-verity) and the firmware says Secure Boot is on;
/// then the same disk with one byte of the signed loader changed: the firmware refuses to start
/// it and nothing of GRUB runs.
fn secure_boot(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    use hnroot_install::grub::{FleetFile, REQUIRE_SEALED_FILE, SEAL_KEYS_FILE};
    let parts = run.parts;
    let sb = hnroot_testkit::secureboot::get()?;
    let dir = buildenv::fresh_dir(&run.work.join("secure-boot-files"))?;
    let current = sealed_copy(parts, &dir, "v1", "1.10")?;
    let loader = grubimage::production_with(
        &[
            FleetFile {
                name: SEAL_KEYS_FILE.into(),
                data: parts.publisher.public_key()?,
            },
            FleetFile {
                name: REQUIRE_SEALED_FILE.into(),
                data: b"1\n".to_vec(),
            },
        ],
        &dir.join("loader"),
    )?;
    hnroot_install::grub::sign_efi(&loader.path, &sb.key)?;
    let signed = std::fs::read(&loader.path)?;
    ensure!(
        hnroot_core::loader::authenticode_signed(&signed) == Ok(true),
        "sbsign's output carries no certificate table"
    );
    let mut spec = DiskContents::committed("secure-boot", HostFs::Ext4, "v1")
        .with(ImageName::Current, ImageContent::File(current));
    spec.loader = Some(loader.path.clone());
    let e = expect(
        "Secure Boot on: the signed loader boots the sealed v1, verified",
        "reason=normal image=hn-root.img",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    let disk = parts.disk(&spec, &run.work)?;
    let run_dir = run.work.join("secure-boot").join("qemu");
    let mut vm = VmSpec::new("secure-boot", &[&disk.path], &run_dir);
    vm.secure_boot_vars = Some(sb.vars.clone());
    let records = run_story_in(run, report, vm, &[e])?;
    let rec = &records[0];
    ensure!(
        rec.verity() == ["on"],
        "the sealed image should be mounted through dm-verity: {:?}",
        rec.steps
    );
    let serial = String::from_utf8_lossy(&std::fs::read(run_dir.join("serial.log"))?).into_owned();
    let said = serial
        .lines()
        .find(|l| l.contains("secureboot: Secure boot"))
        .map(str::trim)
        .unwrap_or("");
    ensure!(
        said.ends_with("secureboot: Secure boot enabled"),
        "the kernel should say Secure Boot is enabled; it said {said:?}"
    );
    report.note(format!("booted under Secure Boot: {said}"));

    // The loader with one byte changed (in GRUB's code, far from the signature): refused.
    let tampered = dir.join("BOOTX64-tampered.EFI");
    let mut bytes = signed.clone();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&tampered, &bytes)?;
    spec.name = "secure-boot-tampered".into();
    spec.loader = Some(tampered);
    let disk = parts.disk(&spec, &run.work)?;
    let run_dir = run.work.join("secure-boot-tampered").join("qemu");
    let mut vm = VmSpec::new("secure-boot-tampered", &[&disk.path], &run_dir);
    vm.secure_boot_vars = Some(sb.vars.clone());
    let t = Instant::now();
    let mut session = Session::start_vm(vm)?;
    let refused = session.wait_line(
        &Regex::new(r"BdsDxe: (failed to load|failed to start) Boot\S+ .*(Access Denied|Security Violation)")?,
        BOOT_TIMEOUT,
    );
    session.kill()?;
    report.qemu += t.elapsed();
    let refused = refused.context("OVMF should refuse the changed loader")?;
    let serial = String::from_utf8_lossy(&std::fs::read(run_dir.join("serial.log"))?).into_owned();
    ensure!(
        !serial.contains("hnroot: "),
        "nothing of the changed loader may run; the console shows hnroot's lines"
    );
    report.note(format!(
        "one byte of the signed loader changed at {at}: {}",
        refused.line.trim()
    ));
    secure_boot_presigned(run, report, &sb, &dir)
}

/// 23: a Secure Boot server holds no signing key; its loader update writes the loader the
/// publisher built and signed (`hnroot bootloader presign`, run here with the test operator's
/// key), and the firmware starts it. The ESP holds an older hnroot's loader (0.0.1), signed,
/// with the publisher's key and require-sealed, as `hnroot install --require-sealed --sign-key`
/// builds one; the test init's `hnroot bootloader update --presigned` (no key) writes the
/// presigned loader; the next boot under Secure Boot starts it and boots the sealed v1.
fn secure_boot_presigned(
    run: &SuiteRun<'_>,
    report: &mut Report,
    sb: &hnroot_testkit::secureboot::SecureBoot,
    dir: &Path,
) -> Result<()> {
    use hnroot_install::grub::{build_efi, sign_efi, FleetFile, LoaderKit};
    use hnroot_install::grub::{REQUIRE_SEALED_FILE, SEAL_KEYS_FILE};
    let parts = run.parts;
    let current = sealed_copy(parts, dir, "v1", "1.10")?;
    let (old_kit, _) = grubimage::older_loader(&dir.join("older"), "0.0.1")?;
    let mut key = parts.publisher.public_key()?;
    if !key.ends_with(b"\n") {
        key.push(b'\n');
    }
    let old = dir.join("older-signed.efi");
    build_efi(
        &LoaderKit::at(&old_kit)?,
        &grubimage::production_cfg()?,
        &[],
        &[
            FleetFile {
                name: REQUIRE_SEALED_FILE.into(),
                data: b"1\n".to_vec(),
            },
            FleetFile {
                name: SEAL_KEYS_FILE.into(),
                data: key,
            },
        ],
        &dir.join("older-signed-work"),
        &old,
    )?;
    sign_efi(&old, &sb.key)?;
    // The publisher's step, with the image's kit and trusted keys (the test image's
    // /etc/hnroot/keys holds the publisher's key only; it has no /etc/hnroot/loader).
    let keys = buildenv::fresh_dir(&dir.join("publisher-keys"))?;
    std::fs::write(keys.join("publisher.pub"), parts.publisher.public_key()?)?;
    let kit = hnroot_testkit::grubmod::build_kit()?;
    let presigned = dir.join("presigned.efi");
    let cli = hnroot_testkit::initramfs::static_binary("hnroot-cli", "hnroot")?;
    let said = buildenv::run(
        std::process::Command::new(&cli)
            .args(["bootloader", "presign", "--kit"])
            .arg(&kit.dir)
            .arg("--fleet")
            .arg(dir.join("no-fleet"))
            .arg("--keys")
            .arg(&keys)
            .arg("--sign-key")
            .arg(&sb.key.key)
            .arg("--sign-cert")
            .arg(&sb.key.cert)
            .arg("--out")
            .arg(&presigned),
    )?;
    let presigned_bytes = std::fs::read(&presigned)?;
    let mut spec = DiskContents::committed("secure-boot-presigned", HostFs::Ext4, "v1")
        .with(ImageName::Current, ImageContent::File(current));
    spec.loader = Some(old);
    spec.actions = vec![PRESIGNED_UPDATE_ACTION.to_owned()];
    spec.hostpart_files.extend(kit_on_hostpart(&kit.dir)?);
    spec.hostpart_files
        .push(("data/e2e/presigned.efi".to_owned(), presigned.clone()));
    let disk = parts.disk(&spec, &run.work)?;
    let boot_once = |name: &str| -> Result<BootRecord> {
        let mut vm = VmSpec::new(name, &[&disk.path], &run.work.join(name).join("qemu"));
        vm.secure_boot_vars = Some(sb.vars.clone());
        let mut session = Session::start_vm(vm)?;
        let boot = session.next_boot(BOOT_TIMEOUT)?;
        session.wait_poweroff(POWEROFF_TIMEOUT)?;
        Ok(boot)
    };
    let t = Instant::now();
    let first = boot_once("secure-boot-presigned")?;
    ensure!(
        first.text.contains("hnroot: the image's presigned loader")
            && first
                .text
                .contains("hnroot: the ESP's loader is now hnroot "),
        "the update under Secure Boot did not write the presigned loader\n{}",
        first.tail(40)
    );
    ensure!(
        esp_loader_of(&disk, dir)? == presigned_bytes,
        "after the update the ESP's BOOTX64.EFI is not the presigned loader"
    );
    let second = boot_once("secure-boot-presigned-next")?;
    report.qemu += t.elapsed();
    report.boots += 2;
    ensure!(
        second
            .decision
            .as_deref()
            .is_some_and(|d| d.starts_with("booting hn-root.img (normal"))
            && second.text.contains("hnroot-test: booted version=v1")
            && second.text.contains("Secure boot enabled"),
        "the firmware should start the presigned loader under Secure Boot and boot v1\n{}",
        second.tail(40)
    );
    report.note(format!(
        "presigned: {}; the server's update without a key wrote it, Secure Boot started it",
        said.lines().last().unwrap_or("").trim()
    ));
    Ok(())
}

/// Marks the floor-cut action's lines.
const FLOOR_MARK: &str = "e2e-floor:";

/// 23: the version floor across a power cut of the commit that raises it. hn-root.img is v2
/// sealed as 1.11 on trial, hn-root-old.img v1 sealed as 1.10 and recorded good, the floor 1.10,
/// the loader holding the publisher's key. The test init's `hnroot mark-good` (which commits
/// v2 and raises the floor to 1.11) is cut by power at a random moment of its first 600 ms; the
/// next boot prints the floor as the running system reads it (1.10 or 1.11, never unreadable,
/// never lower), and the boot after it commits again and prints 1.11.
fn floor_cut(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    use hnroot_core::floor::{encode, FLOOR_MAX, FLOOR_PATH};
    use hnroot_install::grub::{FleetFile, SEAL_KEYS_FILE};
    let parts = run.parts;
    let dir = buildenv::fresh_dir(&run.work.join("floor-cut-files"))?;
    let seal = |version: &str, image: &str| sealed_copy(parts, &dir, version, image);
    let (v1, v2) = (seal("v1", "1.10")?, seal("v2", "1.11")?);
    let floor = dir.join("floor");
    let mut text = [0u8; FLOOR_MAX];
    let n = encode(&"1.10".try_into().unwrap(), &mut text).context("encoding the floor")?;
    std::fs::write(&floor, &text[..n])?;
    let loader = grubimage::production_with(
        &[FleetFile {
            name: SEAL_KEYS_FILE.into(),
            data: parts.publisher.public_key()?,
        }],
        &dir.join("loader"),
    )?;
    let print = format!(
        "echo \"{FLOOR_MARK} $(sed -n 's/^version //p' /hostpart/{FLOOR_PATH})\"; \
         hnroot status | sed -n 's/^version floor: /{FLOOR_MARK} status /p'"
    );
    let mut spec = DiskContents {
        // Every try left: a cut before the commit leaves two boots of v2 (the next two
        // actions) before the trial would run out.
        state: StateInit::Trial {
            image: "v2",
            tries_left: parts.tries(),
            good: Some("v1"),
        },
        ..DiskContents::committed("floor-cut", HostFs::Ext4, "v2")
    }
    .with(ImageName::Current, ImageContent::File(v2))
    .with(ImageName::Old, ImageContent::File(v1));
    spec.loader = Some(loader.path.clone());
    spec.hostpart_files.push((FLOOR_PATH.to_owned(), floor));
    spec.actions = vec![
        "hnroot mark-good".to_owned(),
        print.clone(),
        format!("hnroot mark-good; {print}"),
    ];
    let disk = parts.disk(&spec, &run.work)?;
    let mut rng = Rng((run.seed ^ 0xf100_7000) | 1);
    let delay = Duration::from_secs_f64(MARK_GOOD_CUT_WINDOW.as_secs_f64() * rng.unit());
    let qemu_dir = run.work.join("floor-cut");
    let t = Instant::now();
    let mut session = Session::start("floor-cut", &[&disk.path], &qemu_dir.join("qemu-cut"))?;
    let trigger = Regex::new("hnroot-test: action 1: hnroot mark-good")?;
    session.cut_power(&trigger, delay, BOOT_TIMEOUT)?;
    let mut session = Session::start("floor-cut after", &[&disk.path], &qemu_dir.join("qemu"))?;
    let after_cut = session.next_boot(BOOT_TIMEOUT)?;
    let after_again = session.next_boot(BOOT_TIMEOUT)?;
    session.wait_poweroff(POWEROFF_TIMEOUT)?;
    report.qemu += t.elapsed();
    report.boots += 3;
    let said = |rec: &BootRecord| -> Vec<String> {
        rec.action_output
            .iter()
            .filter_map(|l| l.strip_prefix(FLOOR_MARK).map(|s| s.trim().to_owned()))
            .collect()
    };
    let (first, last) = (said(&after_cut), said(&after_again));
    ensure!(
        first.len() == 2
            && (first[0] == "1.10" || first[0] == "1.11")
            && first[1]
                .strip_prefix("status ")
                .is_some_and(|s| s.starts_with(&first[0])),
        "after the cut the floor must read 1.10 or 1.11, the file and `hnroot status` alike; \
         the action printed {first:?}"
    );
    ensure!(
        last.len() == 2 && last[0] == "1.11" && last[1].starts_with("status 1.11"),
        "after the second mark-good the floor must be 1.11; the action printed {last:?}"
    );
    ensure!(
        after_again.version.as_deref() == Some("v2"),
        "v2 must still boot after the cut: {:?}",
        after_again.version
    );
    report.note(format!(
        "mark-good cut {:.0} ms after it started: the next boot read the floor {}; after the \
         second mark-good {}",
        delay.as_secs_f64() * 1000.0,
        first[0],
        last[0]
    ));
    Ok(())
}

/// A copy of test image `version` in `dir`, sealed as `hnroot image seal` does with the test
/// publisher's key (whose public half the images carry), stating `image_version`.
fn sealed_copy(
    parts: &BootParts,
    dir: &Path,
    version: &str,
    image_version: &str,
) -> Result<PathBuf> {
    let out = dir.join(format!("{version}-sealed.img"));
    std::fs::copy(&parts.image(version)?.fs.path, &out)?;
    hnroot_install::seal::seal(
        &hnroot_install::seal::SealRequest {
            image: out.clone(),
            sign_key: parts.publisher.secret_key().to_owned(),
            version: Some(image_version.into()),
            public_key: Some(parts.publisher.public.clone()),
        },
        &hnroot_linux::image::Inspect::default(),
    )
    .with_context(|| format!("sealing a copy of {version}"))?;
    Ok(out)
}

/// Change one byte of `text` (found once, at its first place) in the file at `path`, in
/// place; returns the byte's offset.
fn change_once(path: &Path, text: &[u8]) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let bytes = std::fs::read(path)?;
    let at = bytes
        .windows(text.len())
        .position(|w| w == text)
        .with_context(|| format!("{} does not hold the bytes to change", path.display()))?;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all_at(&[bytes[at] ^ 0x20], at as u64)?;
    Ok(at as u64)
}

/// The production grub.cfg's entry for the image `hnroot select` chose.
const GRUB_ENTRY: &str = "hnroot";
/// What the operator types at GRUB's menu in `missing-current` (issue 11: a kernel word
/// without `=` is an argument of PID 1, which hnroot-init hands on to the image's init).
const TYPED_AT_GRUB: &str = "single";

/// 7: no hn-root.img: hn-root-old.img boots (recovery) and is promoted. The operator at the
/// console boots it with `single` typed at GRUB's menu (issue 11): the kernel passes the word
/// to hnroot-init as an argument, and hnroot-init to the image's init.
fn missing_current(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let mut spec = DiskContents::committed("missing-current", HostFs::Ext4, "v1")
        .without(ImageName::Current)
        .with(ImageName::Old, ImageContent::Image("v1"));
    // The loader with the product's countdown: the keys must reach the menu before it ends.
    spec.loader = Some(run.parts.grub_menu.path.clone());
    let mut e = expect(
        "hn-root.img missing; `single` typed at GRUB's menu",
        "reason=recovery image=hn-root-old.img",
        "promote",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    e.typed = Some(TYPED_AT_GRUB);
    let (rec, disk) = one_boot(run, report, &spec, e)?;
    report.note(format!(
        "the image's init was started with the arguments {:?}",
        rec.init_args.unwrap_or_default()
    ));
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(run.parts, &hp, &[(ImageName::Current, "v1")])?;
    ensure!(
        committed_to(&state, run.parts.uuid("v1")?),
        "boot state: {}",
        describe_state(&state)
    );
    Ok(())
}

/// 22: the kernel command line GRUB composes: the loader's defaults, then `v6-args`'s own file
/// (`console=tty0` beside the test's console, and `hnroot.image=`/`init=`, which only
/// hnroot may set), then the host's `data/host/kernel-args` (`hnroot-test=1`). The booted
/// kernel's command line holds the image's and the host's words and none of the refused ones;
/// GRUB's record names the refusals by source and key, and its message says them.
fn kernel_args(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let dir = buildenv::fresh_dir(&run.work.join("kernel-args-files"))?;
    let host_args = dir.join("host-kernel-args");
    std::fs::write(&host_args, "hnroot-test=1\n")?;
    let mut spec = DiskContents::committed("kernel-args", HostFs::Ext4, "v6-args");
    spec.hostpart_files
        .push((hnroot_core::layout::HOST_ARGS_PATH.to_owned(), host_args));
    let e = expect(
        "the image's and the host's kernel arguments",
        "reason=normal image=hn-root.img args=defaults,image,host \
         refused=image:hnroot.image,image:init",
        "normal",
        "v6-args",
        &[("hn-root.img", "v6-args")],
        End::Poweroff,
    );
    let (rec, _) = one_boot(run, report, &spec, e)?;
    let line = rec.cmdline.clone().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    for want in ["console=tty0", "console=ttyS0", "hnroot-test=1", "panic=10"] {
        ensure!(
            words.contains(&want),
            "the booted kernel's command line lacks {want}: {line}"
        );
    }
    for refused in ["hnroot.image=hn-root-old.img", "init=/bin/sh"] {
        ensure!(
            !words.contains(&refused),
            "the booted kernel's command line has {refused}, which the image may not set: {line}"
        );
    }
    let said = rec.decision.as_deref().unwrap_or("");
    ensure!(
        said.contains(
            "kernel argument hnroot.image= from the image (usr/lib/hnroot/kernel-args) refused"
        ) && said.contains("kernel argument init= from the image"),
        "GRUB's message does not name the refused words: {said}"
    );
    report.note(format!("the booted kernel's command line: {line}"));
    Ok(())
}

/// 7: a garbage boot-state block: hn-root.img goes on trial (not trusted blindly); mark-good
/// commits it and the next boot is normal.
fn corrupt_state(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let mut spec = DiskContents::committed("corrupt-state", HostFs::Ext4, "v1");
    spec.state = StateInit::Bytes(
        (0..hnroot_core::bootstate::BLOCK_LEN)
            .map(|i| (i * 31 + 7) as u8)
            .collect(),
    );
    spec.actions = vec!["hnroot mark-good".to_string(), ":".to_string()];
    let disk = parts.disk(&spec, &run.work)?;
    let mut first = expect(
        "corrupt boot state: hn-root.img on trial; mark-good",
        &format!("reason=trial image=hn-root.img try=1/{tries} write=trial"),
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Reboot,
    );
    first.grub_note = Some("state-corrupt");
    let second = expect(
        "after mark-good: normal",
        "reason=normal image=hn-root.img write=committed",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    run_story(
        run,
        report,
        &[&disk.path],
        &spec.name,
        &[first, second],
        false,
    )?;
    let (_, _, state) = inspect(&disk, View::AfterReplay, report)?;
    ensure!(
        committed_to(&state, parts.uuid("v1")?),
        "boot state after mark-good: {}",
        describe_state(&state)
    );
    Ok(())
}

/// Fill hostpart of `disk` to the last block a writer may take (a file `data/fill` written
/// until `ENOSPC`, through a read-write loop mount of the partition, as root); returns the bytes
/// written and the bytes still available (`statvfs`) when it is full.
fn fill_hostpart(disk: &BuiltDisk, scratch: &Path, layer: Option<FsUuid>) -> Result<(u64, u64)> {
    use std::io::Write;
    use std::process::Command;
    ensure!(
        disk.fs == HostFs::Ext4,
        "fill_hostpart: ext4 hostparts only"
    );
    let mnt = buildenv::fresh_dir(&scratch.join("fill-mnt"))?;
    let offset = BuiltDisk::offset(&disk.hostpart);
    let size = disk.hostpart.sectors * disk::SECTOR;
    buildenv::run(
        Command::new("mount")
            .args(["-t", "ext4", "-o"])
            .arg(format!("loop,offset={offset},sizelimit={size}"))
            .arg(&disk.path)
            .arg(&mnt),
    )
    .context("loop-mounting hostpart read-write to fill it (root is needed)")?;
    let filled = (|| -> Result<(u64, u64)> {
        // A writable layer from earlier boots of `layer`: its upper directory holding a file,
        // its work directory (made before the filling, as a running server's would be).
        if let Some(uuid) = layer {
            let base = mnt
                .join(hnroot_core::layout::OVERLAY_DIR)
                .join(uuid.to_string());
            let upper = base.join(hnroot_core::overlay::UPPER);
            std::fs::create_dir_all(&upper)?;
            std::fs::create_dir_all(base.join(hnroot_core::overlay::WORK))?;
            std::fs::write(upper.join("hnroot-test-layer"), "from-an-earlier-boot\n")?;
        }
        let path = mnt.join("data/fill");
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut written = 0u64;
        for chunk in [1usize << 20, 4096] {
            let buf = vec![0x5au8; chunk];
            loop {
                match file.write_all(&buf) {
                    Ok(()) => written += chunk as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => return Err(e).context("filling hostpart"),
                }
            }
        }
        file.sync_all().context("fsync of data/fill")?;
        let free = hnroot_linux::hostpart::Hostpart::open(&mnt)?.free_bytes()?;
        Ok((written, free))
    })();
    let unmounted = buildenv::run(Command::new("umount").arg(&mnt));
    let filled = filled?;
    unmounted?;
    Ok(filled)
}

/// 24 (faults): hostpart filled to the last block before the machine boots, with v2 staged. The
/// update's switch (renames in hostpart's top directory, which need no new block) and later the
/// revert's run on the full filesystem; v2 has no writable layer yet and none can be made, so it
/// boots read-only and says so; `hnroot revert` (an empty marker file: an inode, no block) brings
/// back v1, committed. Each boot hnroot-init says hostpart is full, and `hnroot status` does.
fn full_hostpart(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let scratch = buildenv::fresh_dir(&run.work.join("full-hostpart-files"))?;
    // The test init's boot count, there already (one block), so that counting needs no new one.
    let boots = scratch.join("boots");
    std::fs::write(&boots, "0\n")?;
    let mut spec = DiskContents::committed("full-hostpart", HostFs::Ext4, "v1")
        .with(ImageName::New, ImageContent::Image("v2"));
    spec.hostpart_files
        .push((disk::BOOT_COUNT_PATH.to_owned(), boots));
    spec.actions = vec![
        "hnroot status; hnroot revert".to_owned(),
        "hnroot status; hnroot mark-good; echo \"hnroot-test: mark-good exit=$?\"; \
         hnroot metrics | sed -n 's/^hnroot_hostpart_full /hnroot-test: metric full /p'; \
         echo \"hnroot-test: layer $(cat /hnroot-test-layer 2>&1)\"; \
         if touch /hnroot-test-write 2>/dev/null; then w=written; else w=refused; fi; \
         echo \"hnroot-test: root write $w\""
            .to_owned(),
    ];
    let disk = parts.disk(&spec, &run.work)?;
    let (written, free) = fill_hostpart(&disk, &scratch, Some(parts.uuid("v1")?))?;
    report.note(format!(
        "hostpart filled: {} MiB written to data/fill, {free} bytes left to a writer",
        written >> 20
    ));
    let v1 = fnv1a(&std::fs::read(&parts.image("v1")?.fs.path)?);
    let v2 = fnv1a(&std::fs::read(&parts.image("v2")?.fs.path)?);
    let story = [
        expect(
            "the staged v2 boots on the full hostpart (read-only); reverts",
            &format!("reason=update image=hn-root-new.img try=1/{tries}"),
            "update",
            "v2",
            &[("hn-root.img", "v2"), ("hn-root-old.img", "v1")],
            End::Reboot,
        ),
        expect(
            "the revert on the full hostpart: v1 committed boots",
            "reason=manual-revert image=hn-root-old.img",
            "revert",
            "v1",
            &[("hn-root.img", "v1"), ("hn-root-broken.img", "v2")],
            End::Poweroff,
        ),
    ];
    let records = run_story(run, report, &[&disk.path], &spec.name, &story, false)?;
    for (i, rec) in records.iter().enumerate() {
        let said = rec.init_line("hostpart is FULL: ").with_context(|| {
            format!(
                "boot {}: hnroot-init did not say hostpart is full\n{}",
                i + 1,
                rec.tail(60)
            )
        })?;
        let status = rec
            .text
            .lines()
            .find(|l| l.starts_with("hostpart /hostpart: "))
            .with_context(|| {
                format!(
                    "boot {}: no `hnroot status` line for hostpart\n{}",
                    i + 1,
                    rec.tail(60)
                )
            })?;
        ensure!(
            status.contains(": FULL: "),
            "boot {}: hnroot status said `{status}`",
            i + 1
        );
        let history = rec
            .init_line("history: cannot record this boot")
            .with_context(|| {
                format!(
                    "boot {}: hnroot-init did not say the boot's history record failed\n{}",
                    i + 1,
                    rec.tail(60)
                )
            })?;
        ensure!(
            history.contains("No space left on device"),
            "boot {}: {history}",
            i + 1
        );
        report.note(format!("boot {}: hnroot-init: {said}", i + 1));
        report.note(format!("boot {}: hnroot status: {status}", i + 1));
    }
    let overlay = records[0]
        .init
        .iter()
        .find(|l| l.starts_with("overlay over "))
        .context("boot 1: hnroot-init said nothing of v2's writable layer")?;
    ensure!(
        overlay.contains("No space left on device")
            && overlay.contains("booting the image read-only"),
        "boot 1: {overlay}"
    );
    report.note(format!("boot 1: {overlay}"));
    // v1's writable layer was there before hostpart filled up: the kernel mounts it read-only
    // (overlayfs cannot make its work directory), hnroot-init says so, the layer's files are
    // there and writes to the root are refused.
    let ro = records[1]
        .init_line("overlay: the kernel mounted the writable layer")
        .with_context(|| {
            format!(
                "boot 2: hnroot-init did not say v1's existing layer is read-only\n{}",
                records[1].tail(60)
            )
        })?;
    ensure!(ro.contains("READ-ONLY"), "boot 2: {ro}");
    for line in [
        "hnroot-test: layer from-an-earlier-boot",
        "hnroot-test: root write refused",
    ] {
        ensure!(
            records[1].text.contains(line),
            "boot 2: expected `{line}` (the existing layer's file, no write)\n{}",
            records[1].tail(40)
        );
    }
    report.note(format!("boot 2: {ro}"));
    // The boot state lives on the ESP: a healthy boot on a full hostpart is recorded (the
    // history record it cannot append is a warning).
    ensure!(
        records[1].text.contains("hnroot-test: mark-good exit=0"),
        "boot 2: mark-good on the full hostpart failed\n{}",
        records[1].tail(40)
    );
    ensure!(
        records[1].text.contains("hnroot-test: metric full 1"),
        "boot 2: hnroot metrics should show hnroot_hostpart_full 1\n{}",
        records[1].tail(40)
    );
    let (view, _, state) = inspect(&disk, View::AfterReplay, report)?;
    ensure!(
        state == StateSeen::Valid(BootState::committed(parts.uuid("v1")?)),
        "boot state after the revert and mark-good: {}",
        describe_state(&state)
    );
    for (name, want, what) in [
        (ImageName::Current, v1, "v1"),
        (ImageName::Broken, v2, "v2"),
    ] {
        let image = view
            .image(name)
            .with_context(|| format!("{} is gone", name.file_name()))?;
        ensure!(
            image.digest == want,
            "{} is not {what} byte for byte",
            name.file_name()
        );
    }
    Ok(())
}

/// The byte offset, in the disk file, of the directory entry of the ESP's boot-state file
/// (`hnroot/bootstate`, FAT32), and the first cluster number past the filesystem's clusters.
/// Reads the BPB and walks the two directories (each bounded to 64 clusters).
fn bootstate_dir_entry(disk: &BuiltDisk) -> Result<(u64, u32)> {
    let bytes = std::fs::read(&disk.path)?;
    let base = usize::try_from(BuiltDisk::offset(&disk.esp))?;
    let at = |off: usize, len: usize| -> Result<&[u8]> {
        bytes
            .get(base + off..base + off + len)
            .with_context(|| format!("ESP offset {off}+{len} is past the disk's end"))
    };
    let u16_at = |off: usize| -> Result<usize> {
        Ok(usize::from(u16::from_le_bytes(at(off, 2)?.try_into()?)))
    };
    let u32_at = |off: usize| -> Result<u32> { Ok(u32::from_le_bytes(at(off, 4)?.try_into()?)) };
    let bps = u16_at(11)?;
    let spc = usize::from(at(13, 1)?[0]);
    let reserved = u16_at(14)?;
    let fats = usize::from(at(16, 1)?[0]);
    let total = usize::try_from(u32_at(32)?)?;
    let fat_size = usize::try_from(u32_at(36)?)?;
    let root = u32_at(44)?;
    ensure!(
        bps >= 512 && spc >= 1 && fats >= 1 && fat_size > 0 && at(82, 5)? == b"FAT32",
        "the ESP is not FAT32 as mkfs.vfat -F 32 makes it"
    );
    let data = reserved + fats * fat_size;
    let clusters = u32::try_from((total - data) / spc)?;
    let cluster_bytes = bps * spc;
    // Directory entries of the directory starting at `first`: (offset within the ESP, entry).
    let entries = |first: u32| -> Result<Vec<(usize, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut c = first;
        for _ in 0..64 {
            ensure!(
                c >= 2 && c < clusters + 2,
                "directory cluster {c} out of range"
            );
            let start = (data + (usize::try_from(c)? - 2) * spc) * bps;
            for i in 0..cluster_bytes / 32 {
                let e = at(start + i * 32, 32)?;
                if e[0] == 0 {
                    return Ok(out);
                }
                if e[0] != 0xe5 && e[11] != 0x0f && e[0] != b'.' {
                    out.push((start + i * 32, e.to_vec()));
                }
            }
            c = u32_at(reserved * bps + usize::try_from(c)? * 4)? & 0x0fff_ffff;
            if c >= 0x0fff_fff8 {
                return Ok(out);
            }
        }
        bail!("a directory longer than 64 clusters")
    };
    let first_cluster = |e: &[u8]| {
        (u32::from(u16::from_le_bytes([e[20], e[21]])) << 16)
            | u32::from(u16::from_le_bytes([e[26], e[27]]))
    };
    let hnroot = entries(root)?
        .into_iter()
        .find(|(_, e)| &e[..11] == b"HNROOT     " && e[11] & 0x10 != 0)
        .context("no directory HNROOT on the ESP")?;
    let files: Vec<(usize, Vec<u8>)> = entries(first_cluster(&hnroot.1))?
        .into_iter()
        .filter(|(_, e)| e[11] & 0x18 == 0)
        .collect();
    ensure!(
        files.len() == 1
            && u32::from_le_bytes(files[0].1[28..32].try_into()?) as usize == disk::BOOTSTATE_LEN,
        "the ESP's hnroot/ holds {} files; expected the boot-state file alone",
        files.len()
    );
    Ok((u64::try_from(base + files[0].0)?, clusters + 2))
}

/// 24 (faults): the ESP as Linux cannot write it, then as GRUB cannot read or write the boot
/// state. Boot 1 (ESP intact, v1 committed, counted by GRUB): the test init makes the ESP's
/// partition read-only (`blockdev --setro`) and runs `hnroot mark-good`, which must fail saying
/// so, and `hnroot status`; the boot state is unchanged (offline). Then, offline, the boot-state
/// file's directory entry is pointed past the filesystem's last cluster (its FAT damaged under
/// it; GRUB's own files untouched). Boot 2: GRUB cannot read the boot state, boots v1 without
/// counting and says so; `mark-good` and `status` say what they found. hostpart is untouched.
fn esp_faults(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let parts = run.parts;
    let mut spec = DiskContents::committed("esp-faults", HostFs::Ext4, "v1");
    spec.actions = vec![
        "blockdev --setro /dev/vda1; hnroot mark-good; echo \"hnroot-test: mark-good exit=$?\"; \
         hnroot status; echo 'hnroot-test: powering off'; sync; poweroff -f"
            .to_owned(),
        "hnroot mark-good; echo \"hnroot-test: mark-good exit=$?\"; hnroot status".to_owned(),
    ];
    let disk = parts.disk(&spec, &run.work)?;
    let v1 = fnv1a(&std::fs::read(&parts.image("v1")?.fs.path)?);
    let read_only = [expect(
        "a read-only ESP: mark-good cannot write",
        "reason=normal image=hn-root.img",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    )];
    let records = run_story(run, report, &[&disk.path], &spec.name, &read_only, false)?;
    let rec = &records[0];
    let said: Vec<&str> = rec
        .text
        .lines()
        .filter(|l| l.starts_with("hnroot: ") || l.starts_with("hnroot-test: mark-good"))
        .collect();
    report.note(format!("boot 1 (read-only ESP): {}", said.join(" | ")));
    ensure!(
        rec.text.contains("hnroot-test: mark-good exit=1")
            && rec
                .text
                .contains("cannot be written: remounting it read-write failed")
            && rec.text.contains("its device is read-only")
            && rec
                .text
                .contains("this healthy boot is not recorded; GRUB goes on counting"),
        "mark-good on a read-only ESP should fail saying so\n{}",
        rec.tail(40)
    );
    let (_, _, before) = inspect(&disk, View::AfterReplay, report)?;
    // GRUB counted boot 1; the mark-good that would have reset the count wrote nothing.
    ensure!(
        committed_to(&before, parts.uuid("v1")?)
            && describe_state(&before).contains("1 boot since the last healthy one"),
        "boot state after the read-only ESP's mark-good: {}",
        describe_state(&before)
    );

    let (entry, bad) = bootstate_dir_entry(&disk)?;
    let f = std::fs::OpenOptions::new().write(true).open(&disk.path)?;
    f.write_all_at(&((bad >> 16) as u16).to_le_bytes(), entry + 20)?;
    f.write_all_at(&(bad as u16).to_le_bytes(), entry + 26)?;
    f.sync_all()?;
    drop(f);
    report.note(format!(
        "the boot-state file's first cluster set to {bad} (one past the last) at byte {entry}"
    ));
    // GRUB cannot read the boot state: as for a corrupt one (rule 8), hn-root.img on trial,
    // and as the core says when the state cannot be written, booted without counting.
    let mut uncounted = expect(
        "a damaged FAT under the boot-state file: v1 boots uncounted",
        &format!("reason=trial image=hn-root.img try=1/{}", parts.tries()),
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    uncounted.grub_note = Some("state-corrupt");
    let damaged = [uncounted];
    let records = run_story(run, report, &[&disk.path], &spec.name, &damaged, false)?;
    let rec = &records[0];
    let said: Vec<&str> = rec
        .text
        .lines()
        .filter(|l| l.starts_with("hnroot: ") || l.starts_with("hnroot-test: mark-good"))
        .collect();
    report.note(format!("boot 2 (damaged FAT): {}", said.join(" | ")));
    ensure!(
        rec.grub
            .iter()
            .any(|l| l.contains("not recording this boot") && l.contains("without counting")),
        "GRUB should say it boots without counting\n{}",
        rec.tail(60)
    );
    ensure!(
        rec.text.contains("hnroot-test: mark-good exit=1")
            && rec.text.contains("read: I/O error")
            && rec
                .text
                .contains("GRUB, which cannot read the file either, boots without counting")
            && rec
                .text
                .contains("NOT COUNTED: GRUB cannot record this boot"),
        "mark-good and status on the damaged ESP should say what they found\n{}",
        rec.tail(40)
    );
    let (view, _, _) = inspect(&disk, View::AfterReplay, report).or_else(|e| {
        report.note(format!("offline read of the damaged ESP: {e:#}"));
        let scratch = inspect::scratch_for(&disk);
        inspect::hostpart(&disk, View::AfterReplay, &scratch).map(|hp| (hp, None, before))
    })?;
    let current = view
        .image(ImageName::Current)
        .context("hn-root.img is gone")?;
    ensure!(current.digest == v1, "hn-root.img is not v1 byte for byte");
    Ok(())
}

/// Whether the boot state is committed to `good`, whatever its count of unhealthy boots.
fn committed_to(state: &StateSeen, good: FsUuid) -> bool {
    matches!(state, StateSeen::Valid(s) if s.is_committed_to(good))
}

/// Rule 9 (issue 24), with the counting settings set at install: the loader carries a fleet
/// `counting` file (K = 2, waits from 2 s doubling to 8 s), as `hnroot install --boot-limit 2
/// --wait-first 2 --wait-max 8` builds it in, and GRUB says so. v1 is committed and v2 is the
/// old committed image; neither reaches healthy (nothing runs `hnroot mark-good`) for six
/// boots. GRUB counts every boot: two of v1, then v2 twice where it lies
/// (`unhealthy-fallback`, nothing renamed, the initramfs mounts it as it is), then both have
/// failed and every boot waits first, with GRUB's `sleep`, taking the two in turn, the wait
/// doubling (2 s, 4 s, 8 s); the seventh boot's system is healthy (`hnroot mark-good`: the
/// cause went away): the count is back to zero and hostpart is as it was.
fn unhealthy_committed(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    use hnroot_install::grub::FleetFile;
    let parts = run.parts;
    let dir = buildenv::fresh_dir(&run.work.join("unhealthy-committed-files"))?;
    let loader = grubimage::production_with(
        &[FleetFile {
            name: hnroot_core::counting::FILE_NAME.into(),
            data: b"# the fleet's\nboot-limit=2\nwait-first=2\nwait-max=8\n".to_vec(),
        }],
        &dir.join("loader"),
    )?;
    let mut spec = DiskContents::committed("unhealthy-committed", HostFs::Ext4, "v1")
        .with(ImageName::Old, ImageContent::Image("v2"));
    spec.loader = Some(loader.path.clone());
    spec.actions = (0..6).map(|_| ":".to_string()).collect();
    spec.actions.push("hnroot mark-good".to_string());
    let disk = parts.disk(&spec, &run.work)?;
    let files = [("hn-root.img", "v1"), ("hn-root-old.img", "v2")];
    let mut boots = Vec::new();
    for n in 1..=2 {
        boots.push(expect(
            "committed v1, no mark-good",
            &format!("reason=normal image=hn-root.img write=committed unhealthy={n}"),
            "normal",
            "v1",
            &files,
            End::Reboot,
        ));
    }
    for n in 3..=4 {
        boots.push(expect(
            "v1 failed K boots: v2 where it lies, no mark-good",
            &format!(
                "reason=unhealthy-fallback image=hn-root-old.img write=committed unhealthy={n}"
            ),
            "as-is",
            "v2",
            &files,
            End::Reboot,
        ));
    }
    for (what, record, how, version, end) in [
        (
            "both failed: GRUB waits 2 s, then v1, no mark-good",
            "reason=backoff image=hn-root.img write=committed unhealthy=5 wait=2",
            "normal",
            "v1",
            End::Reboot,
        ),
        (
            "GRUB waits 4 s, then v2 where it lies, no mark-good",
            "reason=backoff image=hn-root-old.img write=committed unhealthy=6 wait=4",
            "as-is",
            "v2",
            End::Reboot,
        ),
        (
            "GRUB waits 8 s, then v1, healthy: mark-good",
            "reason=backoff image=hn-root.img write=committed unhealthy=7 wait=8",
            "normal",
            "v1",
            End::Poweroff,
        ),
    ] {
        boots.push(expect(what, record, how, version, &files, end));
    }
    let records = run_story(run, report, &[&disk.path], &spec.name, &boots, false)?;
    let said = "hnroot: counting: tries 3, boot limit 2, waits 2 s doubling to 8 s \
                ((memdisk)/hnroot/counting)";
    // Compared without whitespace: the console may wrap a long line anywhere.
    let squeezed = |l: &str| l.split_whitespace().collect::<String>();
    for rec in &records {
        ensure!(
            rec.grub.iter().any(|l| squeezed(l) == squeezed(said)),
            "boot {}: GRUB did not say it counts with the loader's counting file ({said:?}); \
             it said:\n{}",
            rec.index,
            rec.grub.join("\n")
        );
    }
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(
        parts,
        &hp,
        &[(ImageName::Current, "v1"), (ImageName::Old, "v2")],
    )?;
    ensure!(
        state == StateSeen::Valid(BootState::committed(parts.uuid("v1")?)),
        "boot state after the healthy boot: {} (expected committed to v1, no unhealthy boot)",
        describe_state(&state)
    );
    Ok(())
}

/// Rule 4: system-revert without an old image: hn-root.img boots, the marker is removed.
fn revert_refused(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let mut spec = DiskContents::committed("revert-refused", HostFs::Ext4, "v1");
    spec.revert_marker = true;
    let mut e = expect(
        "system-revert without hn-root-old.img",
        "reason=revert-refused image=hn-root.img",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    e.grub_note = Some("revert-refused");
    let (rec, disk) = one_boot(run, report, &spec, e)?;
    let notes = rec.plans.first().and_then(|p| field(&p.record, "notes"));
    ensure!(
        notes.is_some_and(|n| n.split(',').any(|c| c == "revert-refused")),
        "hnroot-init's plan should note revert-refused (it removes system-revert): notes={notes:?}"
    );
    let (hp, _, _) = inspect(&disk, View::AfterReplay, report)?;
    ensure!(
        !hp.revert_marker,
        "system-revert is still on hostpart: {hp}"
    );
    check_images(run.parts, &hp, &[(ImageName::Current, "v1")])
}

/// 7: two filesystems labelled hostpart, on two disks (a disk from another hnroot server
/// plugged in): GRUB names both and uses the one on the disk it was started from (the disk
/// of the ESP holding this GRUB), passing its PARTUUID to the kernel; hnroot-init mounts
/// exactly that one, v1 boots normally, and the other disk is not written to. The refusal
/// (neither candidate on GRUB's disk) is proven by grub-test.
fn two_hostparts(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let spec = DiskContents::committed("two-hostparts", HostFs::Ext4, "v1");
    let disk = parts.disk(&spec, &run.work)?;
    let other = parts.lone_hostpart_disk(
        "two-hostparts-second",
        disk::HOSTPART_LABEL,
        "v2",
        &run.work,
    )?;
    let other_before = fnv1a(&std::fs::read(&other)?);
    let e = expect(
        "two filesystems labelled hostpart: the one on GRUB's disk",
        "reason=normal image=hn-root.img",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    let mut records = run_story(run, report, &[&disk.path, &other], &spec.name, &[e], false)?;
    let rec = records.pop().context("no boot")?;
    // GRUB names both candidates (its devices), in one line.
    let both = rec
        .grub
        .iter()
        .find(|l| l.contains("(hd0,gpt2)") && l.contains("(hd1,gpt1)"))
        .with_context(|| {
            format!(
                "expected GRUB to name both filesystems labelled hostpart, (hd0,gpt2) and \
                 (hd1,gpt1); it said:\n{}",
                rec.grub.join("\n")
            )
        })?;
    report.note(format!("GRUB: {both}"));
    let want = format!("hnroot.hostpart=PARTUUID={}", disk.hostpart.partuuid);
    ensure!(
        rec.cmdline
            .as_deref()
            .is_some_and(|c| c.split_whitespace().any(|w| w == want)),
        "GRUB should pass the first disk's hostpart ({want}) to the kernel: {:?}",
        rec.cmdline
    );
    let found = rec
        .init_line("hostpart: found ")
        .context("hnroot-init printed no `hostpart: found ...` line")?;
    ensure!(
        found.starts_with("hostpart: found /dev/vda2 "),
        "hnroot-init should mount the first disk's partition 2 (GRUB's PARTUUID): `{found}`"
    );
    report.note(format!("kernel: {want}; hnroot-init: {found}"));
    ensure!(
        fnv1a(&std::fs::read(&other)?) == other_before,
        "the other disk labelled hostpart changed"
    );
    report.note("the other disk is byte for byte what it was".to_string());
    Ok(())
}

/// The rename that sets an unreadable hn-root.img aside in an update (and in a rollback) when
/// hn-root-old.img is the only good image.
const SET_CURRENT_ASIDE: &str = "rename hn-root.img -> hn-root-cancelled.img";

/// 11: hn-root.img is a directory nobody may rename (`chattr +i`; a plain directory would just
/// be set aside) while hn-root-old.img (v1) is the image recorded good and v2, staged, is on
/// its last try. The update's first rename fails; the core (`after_step_failure`) has
/// hnroot-init boot v2 where it lies instead of counting the image failed, so the boot reaches
/// v2's init (no fallback reboot). The next boot GRUB rolls back to v1; the rollback's first
/// rename fails the same way and v1 boots where it lies. Afterwards every image is there,
/// byte for byte, and GRUB would boot v1 the same way again: no reboot loop, nothing lost.
fn current_unrenamable(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let mut spec = DiskContents::committed("current-unrenamable", HostFs::Ext4, "v1")
        .with(ImageName::Current, ImageContent::Directory)
        .with(ImageName::Old, ImageContent::Image("v1"))
        .with(ImageName::New, ImageContent::Image("v2"));
    spec.immutable = vec![ImageName::Current];
    // The state the update's first two tries leave (each booted v2 where it lies).
    spec.state = StateInit::Trial {
        image: "v2",
        tries_left: 1,
        good: Some("v1"),
    };
    spec.actions = vec![":".to_string(); 2];
    let listed: &[(&str, &str)] = &[("hn-root-old.img", "v1"), ("hn-root-new.img", "v2")];
    let mut update = expect(
        "v2's last try: the update's rename fails, v2 boots as hn-root-new.img",
        &format!("reason=update image=hn-root-new.img try={tries}/{tries}"),
        "update",
        "v2",
        listed,
        End::Reboot,
    );
    update.failed_step = Some(SET_CURRENT_ASIDE);
    let mut rollback = expect(
        "rollback to v1: the rollback's rename fails, v1 boots as hn-root-old.img",
        "reason=automatic-rollback image=hn-root-old.img",
        "rollback",
        "v1",
        listed,
        End::Poweroff,
    );
    rollback.failed_step = Some(SET_CURRENT_ASIDE);
    let disk = parts.disk(&spec, &run.work)?;
    let records = run_story(
        run,
        report,
        &[&disk.path],
        &spec.name,
        &[update, rollback],
        false,
    )?;
    for (rec, at) in records.iter().zip(["hn-root-new.img", "hn-root-old.img"]) {
        let then = rec.plans.get(1).map(|p| p.record.as_str()).unwrap_or("");
        ensure!(
            field(then, "mount") == Some(at),
            "boot {}: after the failed rename hnroot-init should mount {at} where it lies: \
             `record: {then}`",
            rec.index
        );
        ensure!(
            rec.grub_refused == [("hn-root.img".to_string(), "not-a-file".to_string())],
            "boot {}: GRUB should refuse hn-root.img as not-a-file: {:?}",
            rec.index,
            rec.grub_refused
        );
    }
    report.note(
        "both boots mounted the image where it lies after the failed rename; none rebooted \
         without reaching the image's init"
            .to_string(),
    );
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    ensure!(
        hp.entries
            .iter()
            .any(|e| e.name == ImageName::Current.file_name() && e.is_dir),
        "hn-root.img should still be the directory: {hp}"
    );
    check_images(
        parts,
        &HostpartView {
            images: hp
                .images
                .iter()
                .filter(|i| i.name != ImageName::Current)
                .cloned()
                .collect(),
            ..hp.clone()
        },
        &[(ImageName::Old, "v1"), (ImageName::New, "v2")],
    )?;
    let next = decide(
        &hp.observation(state),
        &Config {
            tries,
            ..Config::default()
        },
    );
    report.note(format!("next boot would be: {next}"));
    ensure!(
        next.boot().map(|b| (b.image, b.uuid)) == Some((ImageName::Old, parts.uuid("v1")?)),
        "GRUB should go on booting v1 from hn-root-old.img: {next}"
    );
    let (history, _) = inspect::history(&disk, &inspect::scratch_for(&disk))?;
    let boots: Vec<(Option<ImageName>, Option<PlanKind>, Option<FsUuid>)> = history
        .iter()
        .filter(|r| r.event == Event::Boot)
        .map(|r| (r.now_at, r.plan, r.uuid))
        .collect();
    let want = [
        (
            Some(ImageName::New),
            Some(PlanKind::Update),
            Some(parts.uuid("v2")?),
        ),
        (
            Some(ImageName::Old),
            Some(PlanKind::Rollback),
            Some(parts.uuid("v1")?),
        ),
    ];
    ensure!(
        boots == want && !history.iter().any(|r| r.event == Event::Failed),
        "history: boots (where, plan, UUID) {boots:?}, expected {want:?}, and no failed boot: {}",
        history
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(())
}

/// 11: the staged image's `/sbin/init` is a link to nowhere. GRUB boots it (update, try 1);
/// hnroot-init makes it hn-root.img, mounts it, finds no init to start and, before anything
/// irreversible, records the try as failed (the trial used up, and a `failed-boot` in the
/// history) and reboots: it does not hang. GRUB then rolls back to v1, which boots, shows the
/// history with `hnroot history` and powers off.
fn init_missing(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let mut spec = DiskContents::committed("init-missing", HostFs::Ext4, "v1")
        .with(ImageName::New, ImageContent::Image("v5-noinit"));
    spec.actions = vec!["hnroot history".to_string()];
    let mut failed = expect(
        "v5 without /sbin/init: hnroot-init records the failed try and reboots",
        &format!("reason=update image=hn-root-new.img try=1/{tries}"),
        "update",
        "v5-noinit",
        &[],
        End::AfterFailureReboot,
    );
    failed.version = None;
    let rollback = expect(
        "the trial is used up: GRUB rolls back to v1",
        "reason=automatic-rollback image=hn-root-old.img",
        "rollback",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-broken.img", "v5-noinit")],
        End::Poweroff,
    );
    let disk = parts.disk(&spec, &run.work)?;
    let records = run_story(
        run,
        report,
        &[&disk.path],
        &spec.name,
        &[failed, rollback],
        false,
    )?;
    report.note(format!(
        "boot 1: FATAL {}",
        records[0].fatal.as_deref().unwrap_or("?")
    ));
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(
        parts,
        &hp,
        &[(ImageName::Current, "v1"), (ImageName::Broken, "v5-noinit")],
    )?;
    let (v1, v5) = (parts.uuid("v1")?, parts.uuid("v5-noinit")?);
    ensure!(
        committed_to(&state, v1),
        "boot state after the rollback: {}",
        describe_state(&state)
    );
    let (history, damaged) = inspect::history(&disk, &inspect::scratch_for(&disk))?;
    let shown: Vec<String> = history.iter().map(|r| r.to_string()).collect();
    report.note(format!("history: {}", shown.join("; ")));
    let [failed, booted] = &history[..] else {
        bail!("history: expected the failed boot and the rollback, found: {shown:?}");
    };
    ensure!(
        damaged == 0
            && failed.event == Event::Failed
            && failed.uuid == Some(v5)
            && failed.reason == ReasonCode::Update
            && failed.image == Some(ImageName::New)
            && failed.now_at == Some(ImageName::Current)
            && failed.good == Some(v1),
        "history: the first record should be v5's failed boot (booted as hn-root-new.img, lying \
         at hn-root.img after the update's renames, v1 good): {failed}"
    );
    ensure!(
        booted.event == Event::Boot
            && booted.reason == ReasonCode::AutomaticRollback
            && booted.plan == Some(PlanKind::Rollback)
            && booted.uuid == Some(v1)
            && booted.good == Some(v1),
        "history: the second record should be the rollback to v1: {booted}"
    );
    let listed = records[1]
        .action_output
        .iter()
        .any(|l| l.contains(Event::Failed.code()));
    ensure!(
        listed,
        "`hnroot history` in v1 should list the failed boot: {:?}",
        records[1].action_output
    );
    Ok(())
}

/// The README's commands run without options: every default must parse (clap turns a
/// `default_value_t` into text and parses it back, which once failed for `--debian`).
/// One boot of a kexec scenario: the console's record and when the test init started (host
/// time since QEMU started).
struct Timed {
    init_at: Duration,
    rec: BootRecord,
}

/// Boot `disk` for `boots` boots, each until it ends, noting when each boot's test init
/// started (for the reboot-to-init times), and stop QEMU.
fn run_timed(
    run: &SuiteRun<'_>,
    report: &mut Report,
    disk: &Path,
    name: &str,
    boots: usize,
) -> Result<Vec<Timed>> {
    let run_dir = run.work.join(name).join("qemu");
    let t = Instant::now();
    let mut session = Session::start_vm(VmSpec::new(name, &[disk], &run_dir))?;
    let init = Regex::new(r"(?m)^hnroot-test: init started")?;
    let mut out: Vec<Timed> = Vec::new();
    for _ in 0..boots {
        let init_at = session.wait_line_at_pace(&init, BOOT_TIMEOUT)?.at;
        let rec = session.next_boot(BOOT_TIMEOUT)?;
        report.boots += 1;
        report.note(summary(run.parts, &rec));
        out.push(Timed { init_at, rec });
    }
    if out.last().and_then(|b| b.rec.end) == Some(End::Poweroff) {
        session.wait_poweroff(POWEROFF_TIMEOUT)?;
    } else {
        session.kill()?;
    }
    report.qemu += t.elapsed();
    Ok(out)
}

/// A boot started by `hnroot reboot`'s kexec: nothing of the firmware or GRUB on the console
/// before the kernel, `hnroot.via=kexec` with the reason and image the core chose on the
/// kernel's command line, `version` reporting.
fn check_kexec_boot(b: &Timed, reason: &str, image: &str, version: &str) -> Result<()> {
    let r = &b.rec;
    let before_kernel = r.text.split("Linux version ").next().unwrap_or("");
    let cmdline = r.cmdline.as_deref().unwrap_or("");
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let problems: Vec<String> = [
        (
            r.grub_record.is_none() && r.grub.is_empty(),
            format!("GRUB printed {:?}", r.grub),
        ),
        (
            !before_kernel.contains("BdsDxe") && !before_kernel.contains("Welcome to GRUB"),
            "the firmware or GRUB ran before the kernel".to_owned(),
        ),
        (
            words.contains(&"hnroot.via=kexec"),
            format!("no hnroot.via=kexec in {cmdline:?}"),
        ),
        (
            words.contains(&format!("hnroot.reason={reason}").as_str()),
            format!("not hnroot.reason={reason}: {cmdline:?}"),
        ),
        (
            words.contains(&format!("hnroot.image={image}").as_str()),
            format!("not hnroot.image={image}: {cmdline:?}"),
        ),
        (
            !words.iter().any(|w| w.starts_with("BOOT_IMAGE=")),
            "BOOT_IMAGE= (GRUB's word) on a kexec'd kernel's line".to_owned(),
        ),
        (
            r.version.as_deref() == Some(version),
            format!("version {:?} booted, not {version}", r.version),
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, why)| why)
    .collect();
    ensure!(
        problems.is_empty(),
        "boot {} (by kexec): {}\n--- console tail ---\n{}",
        r.index,
        problems.join("; "),
        r.tail(40)
    );
    Ok(())
}

/// The words of a kernel command line that are the same for every boot of one disk: all but
/// GRUB's BOOT_IMAGE=, the choice (image, UUID, reason) and how the kernel was started.
fn common_words(cmdline: &str) -> Vec<&str> {
    cmdline
        .split_whitespace()
        .filter(|w| {
            ![
                "BOOT_IMAGE=",
                "hnroot.image=",
                "hnroot.uuid=",
                "hnroot.reason=",
                "hnroot.via=",
            ]
            .iter()
            .any(|p| w.starts_with(p))
        })
        .collect()
}

/// Reboot → the next image's init (host clock): from the line that ended boot `from` to the
/// next boot's test init.
fn reboot_to_init(boots: &[Timed], from: usize) -> Option<Duration> {
    let next = boots.get(from + 1)?;
    Some(next.init_at.saturating_sub(boots.get(from)?.rec.ended_at))
}

/// Issue 25: update by kexec. v1 reboots through the firmware once (`--firmware`, the
/// benchmark's side), stages v2 and reboots by kexec: v2 boots with nothing of the firmware or
/// GRUB between, is committed by mark-good, and the history records its boot as a kexec. Its
/// command line is GRUB's line for it (the same words but the choice and `hnroot.via=kexec`).
fn kexec_update(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let mut spec = DiskContents::committed("kexec-update", HostFs::Ext4, "v1");
    spec.stage_sources = vec!["v2"];
    spec.actions = vec![
        "hnroot reboot --firmware".to_string(),
        format!("{} && hnroot reboot --kexec", action_stage("v2")),
        "hnroot mark-good".to_string(),
    ];
    let disk = parts.disk(&spec, &run.work)?;
    let boots = run_timed(run, report, &disk.path, &spec.name, 3)?;
    let ends: Vec<Option<End>> = boots.iter().map(|b| b.rec.end).collect();
    ensure!(
        ends == [
            Some(End::FirmwareReboot),
            Some(End::Kexec),
            Some(End::Poweroff)
        ],
        "the boots ended {ends:?}"
    );
    let (first, second) = (&boots[0].rec, &boots[1].rec);
    for (rec, version) in [(first, "v1"), (second, "v1")] {
        ensure!(
            rec.grub_decision
                .as_deref()
                .is_some_and(|d| d.contains("reason=normal"))
                && rec.version.as_deref() == Some(version),
            "boot {}: GRUB should boot v1 normally: {:?}, {:?}",
            rec.index,
            rec.grub_record,
            rec.version
        );
    }
    ensure!(
        first.text.contains("through the firmware (asked)"),
        "boot 1: `hnroot reboot --firmware` should say it reboots through the firmware as asked"
    );
    check_kexec_boot(&boots[2], "update", "hn-root-new.img", "v2")?;
    let grub_words = common_words(second.cmdline.as_deref().unwrap_or(""));
    let kexec_words = common_words(boots[2].rec.cmdline.as_deref().unwrap_or(""));
    ensure!(
        grub_words == kexec_words,
        "the kexec line's words differ from GRUB's: GRUB {grub_words:?}, kexec {kexec_words:?}"
    );
    report.note(format!(
        "kexec line = GRUB's line but the choice: {}",
        kexec_words.join(" ")
    ));
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(
        parts,
        &hp,
        &[(ImageName::Current, "v2"), (ImageName::Old, "v1")],
    )?;
    let v2 = parts.uuid("v2")?;
    ensure!(
        committed_to(&state, v2),
        "v2 should be committed: {}",
        describe_state(&state)
    );
    let (history, _) = inspect::history(&disk, &inspect::scratch_for(&disk))?;
    let last_boot = history
        .iter()
        .rev()
        .find(|r| r.event == Event::Boot)
        .context("history: no boot")?;
    ensure!(
        last_boot.via == Some(hnroot_core::cmdline::BootVia::Kexec)
            && last_boot.uuid == Some(v2)
            && last_boot.reason == ReasonCode::Update,
        "history: the last boot should be v2's update by kexec: {last_boot}"
    );
    report.note(format!("history: {last_boot}"));
    let firmware = reboot_to_init(&boots, 0).context("no second boot")?;
    let kexec = reboot_to_init(&boots, 1).context("no third boot")?;
    report.note(format!(
        "benchmark (QEMU/OVMF, TCG, this disk, one run): reboot -> the next image's init: \
         firmware {:.1} s, kexec {:.1} s, kexec/firmware {:.2}",
        firmware.as_secs_f64(),
        kexec.as_secs_f64(),
        kexec.as_secs_f64() / firmware.as_secs_f64()
    ));
    Ok(())
}

/// Issue 25: rollback by kexec. v2 staged and started by kexec, then on trial its health check
/// fails at every boot: `hnroot health-failed --reboot kexec` records it and reboots by kexec,
/// each kexec counting a try exactly as GRUB counts it, and when none is left the kexec starts
/// v1, the rollback, as a firmware boot would.
fn kexec_rollback(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let mut spec = DiskContents::committed("kexec-rollback", HostFs::Ext4, "v1");
    spec.stage_sources = vec!["v2"];
    spec.actions = vec![format!("{} && hnroot reboot --kexec", action_stage("v2"))];
    for _ in 0..tries {
        spec.actions
            .push("hnroot health-failed --reboot kexec".to_string());
    }
    spec.actions.push(":".to_string());
    let disk = parts.disk(&spec, &run.work)?;
    let boots = run_timed(run, report, &disk.path, &spec.name, usize::from(tries) + 2)?;
    // What GRUB would have decided at each boot, from the core on the same sequence: update,
    // then the trial, then the rollback.
    for (i, b) in boots.iter().enumerate().skip(1) {
        let (reason, image, version) = match i {
            1 => ("update", "hn-root-new.img", "v2"),
            i if i <= usize::from(tries) => ("trial", "hn-root.img", "v2"),
            _ => ("automatic-rollback", "hn-root-old.img", "v1"),
        };
        check_kexec_boot(b, reason, image, version)?;
    }
    let recorded: Vec<String> = boots
        .iter()
        .filter_map(|b| {
            b.rec
                .text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("hnroot: reboot: boot state recorded as GRUB records it: ")
                })
                .map(str::to_owned)
        })
        .collect();
    report.note(format!(
        "boot states written before each kexec: {recorded:?}"
    ));
    // GRUB writes before the update's and each trial boot, and (rule 9, issue 24: every boot
    // is counted until one is healthy) before the rollback too, the trial's record with the
    // rollback's boot counted; the initramfs's rollback plan then commits v1. So does the kexec.
    ensure!(
        recorded.len() == usize::from(tries) + 1
            && recorded
                .last()
                .is_some_and(|r| r.contains("0 of") && r.contains("1 other boot,")),
        "the update's, every trial's and the rollback's kexec must record the boot state first, \
         the rollback's counting its boot: {recorded:?}"
    );
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(
        parts,
        &hp,
        &[(ImageName::Current, "v1"), (ImageName::Broken, "v2")],
    )?;
    let v1 = parts.uuid("v1")?;
    ensure!(
        committed_to(&state, v1),
        "after the rollback v1 should be the good image: {}",
        describe_state(&state)
    );
    let (history, _) = inspect::history(&disk, &inspect::scratch_for(&disk))?;
    let kexec_boots: Vec<String> = history
        .iter()
        .filter(|r| r.event == Event::Boot && r.via == Some(hnroot_core::cmdline::BootVia::Kexec))
        .map(|r| {
            format!(
                "{} {}",
                r.reason,
                r.tries.map(|(l, t)| format!("{l}/{t}")).unwrap_or_default()
            )
        })
        .collect();
    report.note(format!("history, kexec boots: {kexec_boots:?}"));
    ensure!(
        kexec_boots.len() == usize::from(tries) + 1
            && !history.iter().any(|r| r.event == Event::Missed),
        "history: {} kexec boots and no missed boot expected: {kexec_boots:?}",
        usize::from(tries) + 1
    );
    let failed = history
        .iter()
        .filter(|r| r.event == Event::HealthFailed)
        .count();
    ensure!(
        failed == usize::from(tries),
        "history: one health-failed per trial boot ({tries}) expected, {failed} found"
    );
    Ok(())
}

/// Issue 25: a kernel that cannot be loaded. The staged image's `/boot/kernel` is no kernel:
/// `hnroot reboot --kexec` says the running kernel refused it and reboots through the firmware
/// with the boot state unchanged (GRUB then counts the update's first try, not its second).
fn kexec_unloadable(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let mut spec = DiskContents::committed("kexec-unloadable", HostFs::Ext4, "v1");
    spec.stage_sources = vec!["v4-nokernel"];
    spec.actions = vec![
        format!("{} && hnroot reboot --kexec", action_stage("v4-nokernel")),
        ":".to_string(),
    ];
    let disk = parts.disk(&spec, &run.work)?;
    let boots = run_timed(run, report, &disk.path, &spec.name, 2)?;
    let first = &boots[0].rec;
    ensure!(
        first.end == Some(End::FirmwareReboot)
            && first.text.contains("through the firmware (kernel-refused)")
            && !first.text.contains("boot state recorded"),
        "boot 1 should refuse the kexec (kernel-refused) before writing anything:\n{}",
        first.tail(30)
    );
    let second = &boots[1].rec;
    let want = format!("reason=update image=hn-root-new.img try=1/{tries}");
    ensure!(
        want.split(' ').all(|w| second
            .grub_decision
            .as_deref()
            .is_some_and(|d| d.split(' ').any(|x| x == w))),
        "boot 2: GRUB should count the update's first try (the kexec wrote nothing): {:?}",
        second.grub_record
    );
    ensure!(
        second.version.as_deref() == Some("v1") && second.end == Some(End::Poweroff),
        "boot 2: GRUB's fallback entry should boot v1: {:?}",
        second.version
    );
    report.note(format!(
        "refused: {}",
        first
            .text
            .lines()
            .find(|l| l.contains("through the firmware"))
            .unwrap_or("")
    ));
    Ok(())
}

#[cfg(test)]
mod default_args {
    use clap::Parser;

    #[test]
    fn the_defaults_parse() {
        let args = super::Args::try_parse_from(["e2e"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.debian, hnroot_testkit::release::Debian::NEWEST);
    }
}
