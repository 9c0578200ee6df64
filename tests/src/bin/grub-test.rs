//! `cargo xtask grub-test`: `hnroot.mod` built into Debian's GRUB 2.06 (grub-mkstandalone),
//! booted under OVMF in QEMU (TCG), deciding on real disks. One VM carries one GPT disk per
//! scenario (ESP + hostpart, built rootless by the testkit's disk builder), and its GRUB image
//! embeds not the production `grub.cfg` (which would boot the first image it finds) but a
//! script that runs `time hnroot select` on each disk, printing the variables on the serial
//! console ([`grubimage::test_script`]); the VM is booted
//! several times on the same disks so that trial counting must persist through GRUB's in-place
//! writes. Every printed decision is compared with what `hnroot-core` decides on the observation
//! the scenario was built to be, and with the reason the scenario is about; the boot-state file
//! is read back from the disk image and decoded after each boot; the PARTUUIDs printed are the
//! ones sgdisk wrote. Each boot also finds hostpart and the ESP by label (with the core's
//! probers, reading through GRUB): unique on the first boot; from the second boot on, one more
//! disk carries a second `hostpart` and a second `EFI-BOOT`, and both searches must refuse,
//! naming both devices. It never boots a kernel.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::{new_block, Block, BootState, StateSeen, Trial, Tries};
use hnroot_core::decide::{decide, Config};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::uuid::FsUuid;
use regex::Regex;

use clap::Parser;
use hnroot_testkit::buildenv;
use hnroot_testkit::disk::{
    self, BuiltDisk, DiskSpec, EspSpec, HostFs, HostpartSpec, ImageFile, Uuid,
};
use hnroot_testkit::grubimage::{self, GrubImage};
use hnroot_testkit::inspect;
use hnroot_testkit::qemu::{Vm, VmSpec};
use hnroot_testkit::release::Debian;

/// Boots of the same disks: the staged image's three tries, then the rollback.
const BOOTS: usize = 4;
/// GRUB's number of the disk OVMF starts it from: the first one attached.
const BOOT_DISK: usize = 0;
/// One boot: OVMF, GRUB, every scenario's `hnroot select`, halt.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Size of each tiny root image (an empty ext4 filesystem is all GRUB needs to see).
const IMAGE_MIB: u64 = 2;
const ESP_MIB: u64 = 40;

/// An image file as a scenario places it on hostpart.
#[derive(Clone, Copy, Debug)]
enum ImageKind {
    /// An ext4 filesystem with this UUID holding `/boot/kernel` and `/boot/initramfs`.
    Fs(Uuid),
    /// An ext4 filesystem with this UUID but no `/boot/kernel`: GRUB could not boot it.
    NoKernel(Uuid),
    /// A file of the same size that is no filesystem.
    Garbage,
    /// An `Fs` image without its last [`CUT`] bytes: superblock, UUID and `/boot/kernel` are
    /// intact (GRUB could read the kernel), the filesystem's end is not there.
    Truncated(Uuid),
}

/// What a truncated image lacks.
const CUT: u64 = 64 * 1024;

/// The boot-state file as a scenario places it on the ESP.
#[derive(Clone, Debug)]
enum StateFile {
    /// No file.
    Missing,
    /// Exactly these 1024 bytes.
    Bytes(Vec<u8>),
}

/// How the scenario's disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    ReadWrite,
    /// `readonly=on`: GRUB's write fails; the boot must go on.
    ReadOnly,
}

#[derive(Clone, Debug)]
struct Scenario {
    name: &'static str,
    images: Vec<(ImageName, ImageKind)>,
    revert: bool,
    state: StateFile,
    /// `hnroot_reason` on the first boot, and the image chosen (None: select fails).
    first: (&'static str, Option<ImageName>),
    /// Text the module must print besides the decision (e.g. why it did not write).
    printed: Vec<&'static str>,
    /// `--tries N` for `hnroot select` (None: the default).
    tries: Option<u8>,
    hostpart_label: &'static str,
    esp_label: &'static str,
    attach: Attach,
}

impl Scenario {
    fn new(name: &'static str, reason: &'static str, image: Option<ImageName>) -> Scenario {
        Scenario {
            name,
            images: Vec::new(),
            revert: false,
            state: StateFile::Bytes(vec![0; disk::BOOTSTATE_LEN]),
            first: (reason, image),
            printed: Vec::new(),
            tries: None,
            hostpart_label: "hp",
            esp_label: "esp",
            attach: Attach::ReadWrite,
        }
    }

    fn img(mut self, name: ImageName, img: ImageKind) -> Scenario {
        self.images.push((name, img));
        self
    }

    fn state(mut self, state: BootState) -> Scenario {
        self.state = StateFile::Bytes(new_block(&state).to_vec());
        self
    }

    /// What the module should see on hostpart (the boot state is read from the disk).
    fn observation(&self, state: StateSeen) -> Observation {
        let mut obs = Observation {
            revert_requested: self.revert,
            state,
            ..Observation::default()
        };
        for (name, img) in &self.images {
            let seen = match img {
                ImageKind::Fs(uuid) => ImageSeen::Readable(FsUuid::Uuid(uuid.0)),
                ImageKind::NoKernel(_) | ImageKind::Garbage | ImageKind::Truncated(_) => {
                    ImageSeen::Unreadable
                }
            };
            obs.set(*name, seen);
        }
        obs
    }
}

fn fs_uuid(u: Uuid) -> FsUuid {
    FsUuid::Uuid(u.0)
}

fn scenarios() -> Result<Vec<Scenario>> {
    use ImageName::{Current, New, Old};
    let (a, b, c) = (Uuid::random()?, Uuid::random()?, Uuid::random()?);
    let committed_a = BootState::Committed { good: fs_uuid(a) };
    let trial = |image: Uuid, left: u8, good: Option<Uuid>| {
        Tries::new(left, 3).map(|tries| {
            BootState::Trial(Trial {
                image: fs_uuid(image),
                tries,
                good: good.map(fs_uuid),
            })
        })
    };
    let trial = |image, left, good| trial(image, left, good).context("tries out of range");
    let mut normal = Scenario::new("normal", "normal", Some(Current))
        .img(Current, ImageKind::Fs(a))
        .state(committed_a);
    // The only filesystems labelled `hostpart` and `EFI-BOOT` until the duplicate disk is
    // attached (see `duplicate_labels`).
    normal.hostpart_label = disk::HOSTPART_LABEL;
    normal.esp_label = disk::ESP_LABEL;
    let update = Scenario::new("update", "update", Some(New))
        .img(Current, ImageKind::Fs(a))
        .img(New, ImageKind::Fs(b))
        .state(committed_a);
    let mut revert = Scenario::new("manual-revert", "manual-revert", Some(Old))
        .img(Current, ImageKind::Fs(a))
        .img(Old, ImageKind::Fs(c))
        .state(committed_a);
    revert.revert = true;
    let mut refused = Scenario::new("revert-refused", "revert-refused", Some(Current))
        .img(Current, ImageKind::Fs(a))
        .state(committed_a);
    refused.revert = true;
    let mut corrupt =
        Scenario::new("corrupt-state", "trial", Some(Current)).img(Current, ImageKind::Fs(a));
    corrupt.state = StateFile::Bytes(
        (0..disk::BOOTSTATE_LEN)
            .map(|i| (i * 7 + 3) as u8)
            .collect(),
    );
    let mut missing = Scenario::new("missing-state", "update", Some(New))
        .img(Current, ImageKind::Fs(a))
        .img(New, ImageKind::Fs(b));
    missing.state = StateFile::Missing;
    missing.printed = vec!["does not exist", "(update, trial 1 of 5)"];
    // Without a state file no try is counted, so every boot is trial 1 of 5.
    missing.tries = Some(5);
    let mut readonly = Scenario::new("read-only-disk", "update", Some(New))
        .img(Current, ImageKind::Fs(a))
        .img(New, ImageKind::Fs(b))
        .state(committed_a);
    readonly.attach = Attach::ReadOnly;
    readonly.printed = vec!["cannot record this boot"];
    let mut unreadable = Scenario::new("unreadable-image", "recovery", Some(Old))
        .img(Current, ImageKind::Garbage)
        .img(Old, ImageKind::Fs(c))
        .state(committed_a);
    unreadable.printed = vec!["hn-root.img is unreadable: no filesystem hnroot recognises in it"];
    let mut no_kernel = Scenario::new("image-without-kernel", "recovery", Some(Old))
        .img(Current, ImageKind::NoKernel(a))
        .img(Old, ImageKind::Fs(c))
        .state(committed_a);
    no_kernel.printed = vec![
        "hn-root.img is unreadable: GRUB's ext2 driver cannot open /boot/kernel in this ext4 \
         filesystem",
    ];
    let mut truncated = Scenario::new("truncated-image", "recovery", Some(Old))
        .img(Current, ImageKind::Truncated(a))
        .img(Old, ImageKind::Fs(c))
        .state(committed_a);
    truncated.printed = vec![
        "hn-root.img is unreadable: it is truncated: its ext4 filesystem spans 2097152 bytes, \
         the file lacks the last 65536 (an incomplete copy?)",
    ];
    // `update` first: OVMF starts GRUB from the first disk, and `normal` (the one disk
    // labelled `hostpart`/`EFI-BOOT` on the first boot) must not be that disk, or from the
    // second boot on the boot-disk rule would pick it among the duplicates instead of
    // refusing (that rule is proven by the e2e scenario `two-hostparts`).
    Ok(vec![
        update,
        normal,
        Scenario::new("trial", "trial", Some(Current))
            .img(Current, ImageKind::Fs(a))
            .img(Old, ImageKind::Fs(c))
            .state(trial(a, 2, Some(c))?),
        revert,
        refused,
        Scenario::new("trial-exhausted", "trial-exhausted", Some(Current))
            .img(Current, ImageKind::Fs(a))
            .state(trial(a, 0, None)?),
        Scenario::new("rollback", "automatic-rollback", Some(Old))
            .img(Current, ImageKind::Fs(a))
            .img(Old, ImageKind::Fs(c))
            .state(trial(a, 0, Some(c))?),
        Scenario::new("missing-image", "recovery", Some(Old))
            .img(Old, ImageKind::Fs(c))
            .state(BootState::Committed { good: fs_uuid(c) }),
        unreadable,
        no_kernel,
        truncated,
        corrupt,
        missing,
        Scenario::new("nothing-bootable", "nothing-bootable", None)
            .img(Current, ImageKind::Garbage)
            .state(committed_a),
        readonly,
    ])
}

/// The disk attached from the second boot on: a second filesystem labelled `hostpart` and a
/// second `EFI-BOOT`, so that both searches by label meet two candidates.
fn duplicate_labels() -> Result<Scenario> {
    let mut dup = Scenario::new("duplicate-labels", "normal", Some(ImageName::Current))
        .img(ImageName::Current, ImageKind::Fs(Uuid::random()?));
    dup.hostpart_label = disk::HOSTPART_LABEL;
    dup.esp_label = disk::ESP_LABEL;
    Ok(dup)
}

/// What a root image holds for GRUB: `/boot/kernel` (never booted here) and `/boot/initramfs`.
const KERNEL_STAND_IN: &[u8] = b"hnroot grub-test: stands in for a kernel; never booted\n";

fn build_image(path: &Path, img: ImageKind) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(IMAGE_MIB * disk::MIB)?;
    drop(file);
    let uuid = match img {
        ImageKind::Fs(uuid) | ImageKind::NoKernel(uuid) | ImageKind::Truncated(uuid) => uuid,
        ImageKind::Garbage => {
            let garbage: Vec<u8> = (0..IMAGE_MIB * disk::MIB)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            fs::write(path, garbage)?;
            return Ok(());
        }
    };
    let stage = path.with_extension("staging");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    fs::create_dir_all(stage.join("boot"))?;
    fs::write(stage.join("boot/initramfs"), b"")?;
    if matches!(img, ImageKind::Fs(_) | ImageKind::Truncated(_)) {
        fs::write(stage.join("boot/kernel"), KERNEL_STAND_IN)?;
    }
    buildenv::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-U", &uuid.to_string(), "-L", "hn-root"])
            .args(["-O", "^metadata_csum_seed,^orphan_file,^has_journal"])
            .arg("-d")
            .arg(&stage)
            .arg(path),
    )?;
    fs::remove_dir_all(&stage)?;
    if let ImageKind::Truncated(_) = img {
        fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(IMAGE_MIB * disk::MIB - CUT)?;
    }
    Ok(())
}

/// The scenario's disk, through the one disk builder: its image files in `dir/<name>/`, a
/// 24 MiB ext4 hostpart, a 40 MiB ESP with `grub` and the scenario's labels and boot state.
fn build_scenario(s: &Scenario, grub: &GrubImage, dir: &Path) -> Result<BuiltDisk> {
    let dir = dir.join(s.name);
    fs::create_dir_all(&dir)?;
    let mut host = HostpartSpec::new(HostFs::Ext4);
    host.label = s.hostpart_label.to_owned();
    host.size_mib = Some(24);
    for (name, img) in &s.images {
        let path = dir.join(name.file_name());
        build_image(&path, *img)?;
        host = host.image(name.file_name(), &path);
    }
    if s.revert {
        host.files.push(ImageFile::new(
            hnroot_core::layout::REVERT_MARKER,
            0o644,
            Vec::new(),
        ));
    }
    let mut esp = EspSpec::new(grub);
    esp.label = s.esp_label.to_owned();
    esp.size_mib = ESP_MIB;
    esp.bootstate = match &s.state {
        StateFile::Bytes(bytes) => Some(bytes.clone()),
        StateFile::Missing => None,
    };
    disk::build(
        &DiskSpec {
            name: s.name.to_owned(),
            esp,
            hostpart: host,
        },
        &dir,
    )
}

/// The boot-state file as it is on the disk image now, or None when there is no such file.
fn state_on_disk(built: &BuiltDisk, scratch: &Path) -> Result<Option<Vec<u8>>> {
    Ok(inspect::boot_state(built, scratch)?.0)
}

fn seen_of(bytes: &Option<Vec<u8>>) -> StateSeen {
    match bytes {
        None => StateSeen::Absent,
        Some(b) => Block::decode(b).map_or(StateSeen::Corrupt, |block| block.seen()),
    }
}

/// The variables a `result` line shows, with the prefix `P`.
fn result_vars(p: &str) -> String {
    format!(
        "reason=${p}reason image=${p}image uuid=${p}uuid fallback=${p}fallback_image \
         fallback_uuid=${p}fallback_uuid fallbacks=[${p}fallbacks] hostpart=${p}hostpart \
         esp=${p}esp partuuid=${p}partuuid esp_partuuid=${p}esp_partuuid tries=${p}tries"
    )
}

/// The embedded configuration: for each disk, `time hnroot select` and the variables; then
/// the searches by label (timed too); then `hnroot status` on one disk; then power off. Every
/// variable is cleared before each command so that a value cannot be left over from the one
/// before.
fn test_cfg(scenarios: &[Scenario], label_disk: usize, status_disk: usize) -> String {
    let clear = |p: &str| {
        [
            "reason",
            "image",
            "uuid",
            "fallback_image",
            "fallback_uuid",
            "fallbacks",
            "hostpart",
            "esp",
            "partuuid",
            "esp_partuuid",
            "tries",
        ]
        .map(|v| format!("set {p}{v}=\n"))
        .concat()
    };
    // Debian's GRUB 2.12 names the boot location $fw_path, 2.06 $cmdpath: one is empty.
    let mut cfg = String::from(
        "# hnroot GRUB-level test configuration (tests/src/bin/grub-test.rs).\n\
         set pager=0\n\
         echo \"hnroot-test: grub up\"\n\
         echo \"hnroot-test: cmdpath ${cmdpath}${fw_path}\"\n",
    );
    let block = |name: &str, command: &str, p: &str| {
        format!(
            "{clear}echo \"hnroot-test: begin {name}\"\n\
             if time {command}; then\n\
             \x20 echo \"hnroot-test: result {name} rc=0 {vars}\"\n\
             else\n\
             \x20 echo \"hnroot-test: result {name} rc=1 {vars}\"\n\
             fi\n\
             echo \"hnroot-test: end {name}\"\n",
            clear = clear(p),
            vars = result_vars(p)
        )
    };
    for (i, s) in scenarios.iter().enumerate() {
        let tries = s.tries.map_or(String::new(), |n| format!(" --tries {n}"));
        cfg.push_str(&block(
            &format!("hd{i}"),
            &format!("hnroot select --hostpart (hd{i},gpt2) --esp (hd{i},gpt1){tries}"),
            "hnroot_",
        ));
    }
    cfg.push_str(&block(
        "label-both",
        "hnroot select --set-prefix lbl_",
        "lbl_",
    ));
    cfg.push_str(&block(
        "label-esp",
        &format!("hnroot select --set-prefix esp_ --hostpart (hd{label_disk},gpt2)"),
        "esp_",
    ));
    cfg.push_str(&block(
        "status",
        &format!(
            "hnroot status --set-prefix st_ --hostpart (hd{status_disk},gpt2) \
             --esp (hd{status_disk},gpt1)"
        ),
        "st_",
    ));
    cfg.push_str("echo \"hnroot-test: done\"\nhalt\n");
    cfg
}

/// What one `begin..end` block of the console says.
#[derive(Debug, Default)]
struct ConsoleBlock {
    text: String,
    result: String,
    elapsed: Option<String>,
}

/// GRUB's EFI console wraps lines at 80 columns on word boundaries, dropping the space: put
/// every line that does not start with a known prefix back onto the one before it.
fn unwrap_lines(log: &str) -> Vec<String> {
    const STARTS: [&str; 4] = ["hnroot:", "hnroot-test:", "Elapsed time:", "error:"];
    let mut lines: Vec<String> = Vec::new();
    let mut inside = false;
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        let starts = STARTS.iter().any(|p| line.starts_with(p));
        match lines.last_mut() {
            Some(last) if inside && !starts && !line.is_empty() => {
                last.push(' ');
                last.push_str(line);
            }
            _ => lines.push(line.to_owned()),
        }
        inside = starts || (inside && !line.is_empty());
    }
    lines
}

fn blocks(log: &str) -> Vec<(String, ConsoleBlock)> {
    let begin = Regex::new(r"hnroot-test: begin (\S+)").unwrap_or_else(|_| unreachable!());
    let mut out: Vec<(String, ConsoleBlock)> = Vec::new();
    for line in unwrap_lines(log) {
        let line = line.as_str();
        if let Some(c) = begin.captures(line) {
            out.push((c[1].to_owned(), ConsoleBlock::default()));
            continue;
        }
        let Some((_, block)) = out.last_mut() else {
            continue;
        };
        if line.contains("hnroot-test: end ") {
            continue;
        }
        if let Some(rest) = line.split("hnroot-test: result ").nth(1) {
            block.result = rest.to_owned();
        } else if let Some(rest) = line.split("Elapsed time: ").nth(1) {
            block.elapsed = Some(rest.trim().to_owned());
        } else {
            block.text.push_str(line);
            block.text.push('\n');
        }
    }
    out
}

fn field<'a>(result: &'a str, key: &str) -> &'a str {
    result
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or("")
}

/// `cargo xtask grub-test [--debian 12|13]`.
#[derive(Debug, Parser)]
#[command(
    name = "grub-test",
    about = "Build hnroot.mod into Debian's GRUB and run every decision scenario under OVMF + \
             QEMU."
)]
struct Args {
    /// The Debian release whose GRUB runs the scenarios: 12 (GRUB 2.06) or 13 (GRUB 2.12).
    #[arg(long, default_value_t = Debian::NEWEST)]
    debian: Debian,
}

/// Build everything, boot [`BOOTS`] times, check every scenario after every boot.
fn main() -> Result<()> {
    let args = Args::parse();
    let release = args.debian;
    println!("grub-test: {release}, GRUB {}", release.grub().version);
    let work = buildenv::build_root()
        .join("grub-test")
        .join(release.suite());
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;

    let scenarios = scenarios()?;
    let label_disk = scenarios
        .iter()
        .position(|s| s.hostpart_label == disk::HOSTPART_LABEL)
        .context("no scenario labelled hostpart")?;
    // `hnroot status` runs after `select` on the disk whose trial is counted across boots: if
    // it wrote anything, that disk's boot state would not be what select wrote.
    let status_disk = scenarios
        .iter()
        .position(|s| s.name == "update")
        .context("no update scenario")?;
    let cfg = test_cfg(&scenarios, label_disk, status_disk);
    // Not the production grub.cfg: this script calls `hnroot select` and `hnroot status` on
    // each disk itself, prints what they set and halts; it boots nothing.
    let grub = grubimage::test_script(release, &cfg, &["time"], &work)?;
    println!("grub-test: hnroot.mod is {} bytes", grub.module.size);

    let mut built = Vec::new();
    for s in &scenarios {
        built.push(build_scenario(s, &grub, &work.join("disks"))?);
    }
    let duplicate = build_scenario(&duplicate_labels()?, &grub, &work.join("disks"))?;
    // Read-write disks first (qemu.rs attaches them), the read-only one next, the duplicate
    // labels last: GRUB numbers the disks in that order, which the PARTUUIDs printed confirm.
    let rw: Vec<&Path> = scenarios
        .iter()
        .zip(&built)
        .filter(|(s, _)| s.attach == Attach::ReadWrite)
        .map(|(_, b)| b.path.as_path())
        .collect();
    let order: Vec<usize> = (0..scenarios.len())
        .filter(|&i| scenarios[i].attach == Attach::ReadWrite)
        .chain((0..scenarios.len()).filter(|&i| scenarios[i].attach == Attach::ReadOnly))
        .collect();
    if order.iter().enumerate().any(|(pos, &i)| pos != i) {
        bail!("read-only scenarios must come last in the list (GRUB numbers disks in order)");
    }
    if label_disk == BOOT_DISK {
        bail!("the scenario labelled hostpart must not be on the disk GRUB starts from");
    }
    let labels = Labels {
        unique: label_disk,
        unique_disk: &built[label_disk],
        duplicate: scenarios.len(),
    };

    let done = Regex::new("hnroot-test: done")?;
    let mut failures = Vec::new();
    let mut failed_checks = 0;
    let mut total = 0;
    let mut timings = Vec::new();
    for boot in 1..=BOOTS {
        let duplicates_attached = boot > 1;
        let before: Vec<Option<Vec<u8>>> = built
            .iter()
            .map(|b| state_on_disk(b, &work))
            .collect::<Result<_>>()?;
        let mut vm_spec = VmSpec::new(&format!("grub-test boot {boot}"), &rw, &work.join("vm"));
        vm_spec.no_reboot = true;
        let drive = |b: &BuiltDisk, ro: &str| {
            [
                "-drive".to_owned(),
                format!("file={},format=raw,if=virtio{ro}", b.path.display()),
            ]
        };
        for (s, b) in scenarios.iter().zip(&built) {
            if s.attach == Attach::ReadOnly {
                vm_spec.extra_args.extend(drive(b, ",readonly=on"));
            }
        }
        if duplicates_attached {
            vm_spec.extra_args.extend(drive(&duplicate, ""));
        }
        let mut vm = Vm::start(&vm_spec)?;
        vm.wait_for(&done, BOOT_TIMEOUT)?;
        vm.wait_exit(Duration::from_secs(60))?;
        let log = vm.log();
        fs::write(work.join(format!("serial-boot{boot}.log")), &log)?;
        let found = blocks(&log);
        let mut record = |name: String, block: Option<&ConsoleBlock>, problems: Vec<String>| {
            total += 1;
            if let Some(t) = block.and_then(|b| b.elapsed.as_ref()) {
                timings.push(format!("boot {boot} {name}: {t}"));
            }
            if !problems.is_empty() {
                failed_checks += 1;
                let shown = block.map_or(String::new(), |b| format!("{}{}", b.text, b.result));
                failures.push(format!(
                    "boot {boot} {name}: {}\n{shown}",
                    problems.join("; ")
                ));
            }
        };
        for (i, (s, b)) in scenarios.iter().zip(&built).enumerate() {
            let dev = format!("hd{i}");
            let block = found.iter().find(|(name, _)| *name == dev).map(|(_, b)| b);
            let problems = match block {
                None => vec![format!("no output for {dev}")],
                Some(block) => {
                    let after = state_on_disk(b, &work)?;
                    check_scenario(s, b, boot, &before[i], &after, block)
                }
            };
            record(s.name.to_owned(), block, problems);
        }
        let cmdpath = format!("hnroot-test: cmdpath (hd{BOOT_DISK},gpt1)/");
        let problems = if log.contains(&cmdpath) {
            Vec::new()
        } else {
            vec![format!(
                "expected `{cmdpath}...`: GRUB started from another disk"
            )]
        };
        record("cmdpath".to_owned(), None, problems);
        for name in ["label-both", "label-esp", "status"] {
            let block = found.iter().find(|(n, _)| n == name).map(|(_, b)| b);
            let problems = match block {
                None => vec![format!("no output for {name}")],
                Some(block) if name == "status" => {
                    check_status(block, status_disk, &built[status_disk], release)
                }
                Some(block) => check_label(name, block, &labels, duplicates_attached),
            };
            record(name.to_owned(), block, problems);
        }
    }
    println!("grub-test: `time hnroot select` per scenario (GRUB's clock, TCG):");
    for t in &timings {
        println!("  {t}");
    }
    if failed_checks > 0 {
        bail!(
            "grub-test: {failed_checks} of {total} checks failed (serial logs in {}):\n  {}",
            work.display(),
            failures.join("\n  ")
        );
    }
    println!("grub-test: {total} passed, 0 failed");
    Ok(())
}

/// Problems common to every block: no timing printed, GRUB autoloading filesystem modules.
fn common_problems(block: &ConsoleBlock) -> Vec<String> {
    let mut problems = Vec::new();
    if block.elapsed.is_none() {
        problems.push("no `Elapsed time` line from GRUB's `time`".to_owned());
    }
    if block.text.contains(".mod' not found") {
        problems.push(
            "GRUB tried to autoload filesystem modules (the core's prober should have \
             ruled the file out first)"
                .to_owned(),
        );
    }
    problems
}

fn check_scenario(
    s: &Scenario,
    b: &BuiltDisk,
    boot: usize,
    before: &Option<Vec<u8>>,
    after: &Option<Vec<u8>>,
    block: &ConsoleBlock,
) -> Vec<String> {
    let mut problems = common_problems(block);
    let mut fail = |what: String| problems.push(what);
    let obs = s.observation(seen_of(before));
    let tries = s.tries.unwrap_or(hnroot_core::bootstate::DEFAULT_TRIES);
    let decision = decide(&obs, &Config { tries });
    let expected_line = format!("hnroot: {decision}");
    if !block.text.lines().any(|l| l.trim() == expected_line) {
        fail(format!("expected the line `{expected_line}`"));
    }
    for (key, want) in [
        ("partuuid", b.hostpart.partuuid.to_string()),
        ("esp_partuuid", b.esp.partuuid.to_string()),
        ("tries", tries.to_string()),
    ] {
        let got = field(&block.result, key);
        if got != want {
            fail(format!(
                "{key}={got:?}, expected {want} (as sgdisk wrote / as asked)"
            ));
        }
    }
    match decision.boot() {
        Some(chosen) => {
            let code = chosen.reason.code();
            if field(&block.result, "rc") != "0" || field(&block.result, "reason") != code {
                fail(format!("expected rc=0 reason={code}"));
            }
            if field(&block.result, "image") != chosen.image.file_name()
                || field(&block.result, "uuid") != chosen.uuid.to_string()
            {
                fail(format!(
                    "expected image={} uuid={}",
                    chosen.image, chosen.uuid
                ));
            }
            let (fb, fb_uuid) = chosen
                .fallbacks
                .first()
                .map_or((String::new(), String::new()), |(n, u)| {
                    (n.file_name().to_owned(), u.to_string())
                });
            if field(&block.result, "fallback") != fb
                || field(&block.result, "fallback_uuid") != fb_uuid
            {
                fail(format!("expected fallback={fb} fallback_uuid={fb_uuid}"));
            }
        }
        None => {
            if field(&block.result, "rc") != "1"
                || field(&block.result, "reason") != "nothing-bootable"
            {
                fail("expected rc=1 reason=nothing-bootable".to_owned());
            }
        }
    }
    // What the scenario is about, on its first boot.
    if boot == 1 {
        let (reason, image) = s.first;
        let got_reason = decision
            .boot()
            .map_or("nothing-bootable", |c| c.reason.code());
        let got_image = decision.boot().map(|c| c.image);
        if got_reason != reason || got_image != image {
            fail(format!(
                "scenario expects {reason} {image:?}; the core decides {got_reason} {got_image:?}"
            ));
        }
    }
    for text in &s.printed {
        if !block.text.contains(text) {
            fail(format!("expected the module to print `{text}`"));
        }
    }
    // The boot state on disk afterwards: what the core asked to write, where GRUB could.
    let wants = decision.boot().and_then(|c| c.write);
    let expect_written = wants.is_some() && before.is_some() && s.attach == Attach::ReadWrite;
    let state_after = after
        .as_ref()
        .and_then(|a| Block::decode(a).ok())
        .map(|b| b.seen());
    if expect_written {
        if let Some(w) = wants {
            if state_after != Some(StateSeen::Valid(w)) {
                fail(format!(
                    "boot state on disk {state_after:?}, expected {w:?}"
                ));
            }
        }
    } else if after != before {
        fail("the boot-state file changed although nothing was to be written".to_owned());
    }
    problems
}

/// `hnroot status` prints the boot state and both PARTUUIDs (sgdisk's) and sets the variables.
fn check_status(block: &ConsoleBlock, disk: usize, b: &BuiltDisk, release: Debian) -> Vec<String> {
    let mut problems = common_problems(block);
    for text in [
        format!("hnroot: boot state (hd{disk},gpt1)/hnroot/bootstate: "),
        format!(
            "hnroot: hostpart (hd{disk},gpt2) PARTUUID {}, ESP (hd{disk},gpt1) PARTUUID {}, 3 \
             tries; module built for Debian grub2 {}",
            b.hostpart.partuuid,
            b.esp.partuuid,
            release.grub().version
        ),
    ] {
        if !block.text.contains(&text) {
            problems.push(format!("expected `{text}`"));
        }
    }
    for (key, want) in [
        ("rc", "0".to_owned()),
        ("partuuid", b.hostpart.partuuid.to_string()),
        ("esp_partuuid", b.esp.partuuid.to_string()),
    ] {
        let got = field(&block.result, key);
        if got != want {
            problems.push(format!("{key}={got:?}, expected {want}"));
        }
    }
    problems
}

/// Where the searches by label should find, or refuse to guess.
struct Labels<'a> {
    /// GRUB's disk number of the only disk labelled `hostpart`/`EFI-BOOT` on the first boot.
    unique: usize,
    unique_disk: &'a BuiltDisk,
    /// GRUB's disk number of the disk with the duplicate labels (attached from boot 2 on).
    duplicate: usize,
}

/// `label-both` finds hostpart and the ESP by label; `label-esp` only the ESP (hostpart
/// given). Unique labels: the devices and PARTUUIDs sgdisk wrote. Duplicates: a refusal that
/// names both devices.
fn check_label(name: &str, block: &ConsoleBlock, l: &Labels, duplicates: bool) -> Vec<String> {
    let mut problems = common_problems(block);
    let (u, d) = (l.unique, l.duplicate);
    let rc = field(&block.result, "rc");
    if duplicates {
        let (label, part) = if name == "label-both" {
            ("hostpart", "gpt2")
        } else {
            ("EFI-BOOT", "gpt1")
        };
        let wanted = format!("error: 2 filesystems are labelled `{label}' (");
        let why = format!("none on the disk GRUB started from (hd{BOOT_DISK}): refusing to guess");
        let refusal = block.text.lines().find(|l| l.contains(&wanted));
        let names_both = refusal.is_some_and(|line| {
            line.contains(&format!("(hd{u},{part})"))
                && line.contains(&format!("(hd{d},{part})"))
                && line.contains(&why)
        });
        if rc != "1" || !names_both {
            problems.push(format!(
                "expected rc=1 and `{wanted}...` naming (hd{u},{part}) and (hd{d},{part}), \
                 and `{why}`"
            ));
        }
        return problems;
    }
    let mut expect = vec![
        ("rc", "0".to_owned()),
        ("esp", format!("hd{u},gpt1")),
        ("esp_partuuid", l.unique_disk.esp.partuuid.to_string()),
    ];
    if name == "label-both" {
        expect.push(("hostpart", format!("hd{u},gpt2")));
        expect.push(("partuuid", l.unique_disk.hostpart.partuuid.to_string()));
    }
    for (key, want) in expect {
        let got = field(&block.result, key);
        if got != want {
            problems.push(format!("{key}={got:?}, expected {want}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `grub-module/grub.cfg` uses only variables that `hnroot.c` sets and that its header
    /// comment documents, and passes the initramfs everything it needs from GRUB.
    #[test]
    fn grub_cfg_variables_are_set_by_the_module_and_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cfg = fs::read_to_string(root.join("grub-module/grub.cfg")).unwrap();
        let module = fs::read_to_string(root.join("grub-module/hnroot.c")).unwrap();
        let header: String = cfg
            .lines()
            .take_while(|l| l.starts_with('#') || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let used = Regex::new(r"\$\{hnroot_([a-z_]+)\}").unwrap();
        let mut names: Vec<&str> = used
            .captures_iter(&cfg)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for needed in [
            "image",
            "hostpart",
            "cmdline",
            "fallback_image",
            "fallback_cmdline",
        ] {
            assert!(
                names.contains(&needed),
                "grub.cfg does not use hnroot_{needed}: {names:?}"
            );
        }
        for name in names {
            let set = format!("set_var (prefix, \"{name}\"");
            let set_uuid = format!("set_uuid_var (prefix, \"{name}\"");
            let set_cmdline = format!("set_cmdline_var (prefix, \"{name}\"");
            assert!(
                module.contains(&set)
                    || module.contains(&set_uuid)
                    || module.contains(&set_cmdline),
                "grub.cfg uses ${{hnroot_{name}}}, which hnroot.c never sets"
            );
            assert!(
                header.contains(&format!("#   hnroot_{name} ")),
                "grub.cfg's header does not document hnroot_{name}"
            );
        }
        let linux: Vec<&str> = cfg
            .lines()
            .filter(|l| l.trim_start().starts_with("linux "))
            .collect();
        assert_eq!(linux.len(), 2, "the default and the fallback entry");
        // The core composes hnroot's whole part of the command line (hnroot_core::cmdline::
        // KernelArgs, its round trip proven in hnroot-core/tests/cmdline_props.rs); grub.cfg
        // passes it on whole and adds no hnroot parameter of its own.
        for (line, var) in linux
            .iter()
            .zip(["${hnroot_cmdline}", "${hnroot_fallback_cmdline}"])
        {
            assert!(line.contains(var), "`{line}` lacks {var}");
            assert!(
                !line.contains("hnroot."),
                "`{line}` composes hnroot parameters itself"
            );
        }
    }

    #[test]
    fn test_cfg_clears_and_prints_every_variable() {
        let scenarios = scenarios().unwrap();
        let cfg = test_cfg(&scenarios, 0, 1);
        let i = scenarios.iter().position(|s| s.tries == Some(5)).unwrap();
        assert!(cfg.contains(&format!(
            "if time hnroot select --hostpart (hd{i},gpt2) --esp (hd{i},gpt1) --tries 5; then"
        )));
        assert!(cfg.contains("if time hnroot select --set-prefix lbl_; then"));
        for var in ["partuuid", "esp_partuuid", "tries", "hostpart", "esp"] {
            assert!(cfg.contains(&format!("set lbl_{var}=\n")), "{var}");
            assert!(cfg.contains(&format!(" {var}=$lbl_{var}")), "{var}");
        }
    }
}
