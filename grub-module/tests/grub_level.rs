//! `cargo xtask grub-test`: `hnroot.mod` built into Debian's GRUB 2.06 (grub-mkstandalone),
//! booted under OVMF in QEMU (TCG), deciding on real disks. One VM carries one GPT disk per
//! scenario (ESP + hostpart, built rootless by `disk.rs`), and its embedded `grub.cfg` runs
//! `time hnroot select` on each, printing the variables on the serial console; the VM is booted
//! several times on the same disks so that trial counting must persist through GRUB's in-place
//! writes. Every printed decision is compared with what `hnroot-core` decides on the observation
//! the scenario was built to be, and with the reason the scenario is about; the boot-state file
//! is read back from the disk image and decoded after each boot. It never boots a kernel.
//!
//! Included into xtask from `grub-module/tests/` (`#[path]` in `xtask/src/main.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::{new_block, Block, BootState, StateSeen, Trial, Tries};
use hnroot_core::decide::{decide, Config};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::uuid::FsUuid;
use regex::Regex;

use crate::disk::{self, EspSpec, HostFs, HostpartSpec, ImageFile, PartSpec, Uuid};
use crate::grubimage::{self, GrubImageSpec};
use crate::grubmod;
use crate::qemu::{Vm, VmSpec};

/// Boots of the same disks: the staged image's three tries, then the rollback.
const BOOTS: usize = 4;
/// One boot: OVMF, GRUB, every scenario's `hnroot select`, halt.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Size of each tiny root image (an empty ext4 filesystem is all GRUB needs to see).
const IMAGE_MIB: u64 = 2;
const ESP_MIB: u64 = 40;

/// An image file as a scenario places it on hostpart.
#[derive(Clone, Copy, Debug)]
enum Img {
    /// An ext4 filesystem with this UUID.
    Fs(Uuid),
    /// A file of the same size that is no filesystem.
    Garbage,
}

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
    images: Vec<(ImageName, Img)>,
    revert: bool,
    state: StateFile,
    /// `hnroot_reason` on the first boot, and the image chosen (None: select fails).
    first: (&'static str, Option<ImageName>),
    /// Text the module must print besides the decision (e.g. why it did not write).
    printed: Option<&'static str>,
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
            printed: None,
            hostpart_label: "hp",
            esp_label: "esp",
            attach: Attach::ReadWrite,
        }
    }

    fn img(mut self, name: ImageName, img: Img) -> Scenario {
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
                Img::Fs(uuid) => ImageSeen::Readable(FsUuid::Uuid(uuid.0)),
                Img::Garbage => ImageSeen::Unreadable,
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
        .img(Current, Img::Fs(a))
        .state(committed_a);
    // The only filesystem labelled `hostpart`; its ESP shares `EFI-BOOT` with `update`.
    normal.hostpart_label = disk::HOSTPART_LABEL;
    normal.esp_label = disk::ESP_LABEL;
    let mut update = Scenario::new("update", "update", Some(New))
        .img(Current, Img::Fs(a))
        .img(New, Img::Fs(b))
        .state(committed_a);
    update.esp_label = disk::ESP_LABEL;
    let mut revert = Scenario::new("manual-revert", "manual-revert", Some(Old))
        .img(Current, Img::Fs(a))
        .img(Old, Img::Fs(c))
        .state(committed_a);
    revert.revert = true;
    let mut refused = Scenario::new("revert-refused", "revert-refused", Some(Current))
        .img(Current, Img::Fs(a))
        .state(committed_a);
    refused.revert = true;
    let mut corrupt =
        Scenario::new("corrupt-state", "trial", Some(Current)).img(Current, Img::Fs(a));
    corrupt.state = StateFile::Bytes(
        (0..disk::BOOTSTATE_LEN)
            .map(|i| (i * 7 + 3) as u8)
            .collect(),
    );
    let mut missing = Scenario::new("missing-state", "update", Some(New))
        .img(Current, Img::Fs(a))
        .img(New, Img::Fs(b));
    missing.state = StateFile::Missing;
    missing.printed = Some("does not exist");
    let mut readonly = Scenario::new("read-only-disk", "update", Some(New))
        .img(Current, Img::Fs(a))
        .img(New, Img::Fs(b))
        .state(committed_a);
    readonly.attach = Attach::ReadOnly;
    readonly.printed = Some("cannot record this boot");
    Ok(vec![
        normal,
        update,
        Scenario::new("trial", "trial", Some(Current))
            .img(Current, Img::Fs(a))
            .img(Old, Img::Fs(c))
            .state(trial(a, 2, Some(c))?),
        revert,
        refused,
        Scenario::new("trial-exhausted", "trial-exhausted", Some(Current))
            .img(Current, Img::Fs(a))
            .state(trial(a, 0, None)?),
        Scenario::new("rollback", "automatic-rollback", Some(Old))
            .img(Current, Img::Fs(a))
            .img(Old, Img::Fs(c))
            .state(trial(a, 0, Some(c))?),
        Scenario::new("missing-image", "recovery", Some(Old))
            .img(Old, Img::Fs(c))
            .state(BootState::Committed { good: fs_uuid(c) }),
        Scenario::new("unreadable-image", "recovery", Some(Old))
            .img(Current, Img::Garbage)
            .img(Old, Img::Fs(c))
            .state(committed_a),
        corrupt,
        missing,
        Scenario::new("nothing-bootable", "nothing-bootable", None)
            .img(Current, Img::Garbage)
            .state(committed_a),
        readonly,
    ])
}

/// A scenario's disk as built.
struct Built {
    disk: PathBuf,
    esp_offset: u64,
    partuuid: Uuid,
}

fn build_image(path: &Path, img: Img) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(IMAGE_MIB * disk::MIB)?;
    drop(file);
    match img {
        Img::Fs(uuid) => {
            grubmod::run(
                Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-U", &uuid.to_string(), "-L", "hn-root"])
                    .args(["-O", "^metadata_csum_seed,^orphan_file,^has_journal"])
                    .arg(path),
            )?;
        }
        Img::Garbage => {
            let garbage: Vec<u8> = (0..IMAGE_MIB * disk::MIB)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            fs::write(path, garbage)?;
        }
    }
    Ok(())
}

fn build_scenario(s: &Scenario, bootx64: &Path, dir: &Path) -> Result<Built> {
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
            hnroot_core::name::REVERT_MARKER,
            0o644,
            Vec::new(),
        ));
    }
    let hostpart = disk::build_hostpart(&host, &dir.join("hostpart.img"))?;
    let mut esp = EspSpec::new(bootx64);
    esp.label = s.esp_label.to_owned();
    esp.size_mib = ESP_MIB;
    if let StateFile::Bytes(bytes) = &s.state {
        esp.bootstate = bytes.clone();
    }
    let esp_path = disk::build_esp(&esp, &dir.join("esp.img"))?;
    if matches!(s.state, StateFile::Missing) {
        grubmod::run(
            Command::new("mdel")
                .arg("-i")
                .arg(&esp_path)
                .arg(format!("::{}", disk::BOOTSTATE_PATH))
                .env("MTOOLS_SKIP_CHECK", "1"),
        )?;
    }
    let built = disk::build_disk(
        &[PartSpec::esp(&esp_path), PartSpec::hostpart(&hostpart.path)],
        &dir.join("disk.img"),
    )?;
    let _ = fs::remove_file(&esp_path);
    let _ = fs::remove_file(&hostpart.path);
    let esp_part = built.partitions.first().context("disk without ESP")?;
    let host_part = built.partitions.get(1).context("disk without hostpart")?;
    Ok(Built {
        disk: built.path.clone(),
        esp_offset: esp_part.first_lba * disk::SECTOR,
        partuuid: host_part.partuuid,
    })
}

/// The boot-state file as it is on the disk image now, or None when there is no such file.
fn state_on_disk(built: &Built, scratch: &Path) -> Result<Option<Vec<u8>>> {
    let out = scratch.join("bootstate.read");
    let _ = fs::remove_file(&out);
    let status = Command::new("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{}", built.disk.display(), built.esp_offset))
        .arg(format!("::{}", disk::BOOTSTATE_PATH))
        .arg(&out)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .context("running mcopy")?;
    if !status.status.success() {
        return Ok(None);
    }
    Ok(Some(fs::read(&out)?))
}

fn seen_of(bytes: &Option<Vec<u8>>) -> StateSeen {
    match bytes {
        None => StateSeen::Absent,
        Some(b) => Block::decode(b).map_or(StateSeen::Corrupt, |block| block.seen()),
    }
}

/// The embedded configuration: for each disk, `time hnroot select` and the variables; then
/// the label searches; then power off.
fn test_cfg(count: usize, label_disk: usize) -> String {
    let disks: Vec<String> = (0..count).map(|i| format!("hd{i}")).collect();
    format!(
        r#"# hnroot GRUB-level test configuration (grub-module/tests/grub_level.rs).
set pager=0
echo "hnroot-test: grub up"
for d in {disks}; do
  set hnroot_partuuid=
  echo "hnroot-test: begin $d"
  if time hnroot select --hostpart ($d,gpt2) --esp ($d,gpt1); then
    echo "hnroot-test: result $d rc=0 reason=$hnroot_reason image=$hnroot_image uuid=$hnroot_uuid fallback=$hnroot_fallback_image fallback_uuid=$hnroot_fallback_uuid fallbacks=[$hnroot_fallbacks] partuuid=$hnroot_partuuid"
  else
    echo "hnroot-test: result $d rc=1 reason=$hnroot_reason partuuid=$hnroot_partuuid"
  fi
  echo "hnroot-test: end $d"
done
echo "hnroot-test: begin label-hostpart"
if hnroot select --set-prefix lbl_ --esp (hd{label_disk},gpt1); then
  echo "hnroot-test: result label-hostpart rc=0 hostpart=$lbl_hostpart reason=$lbl_reason"
else
  echo "hnroot-test: result label-hostpart rc=1"
fi
echo "hnroot-test: end label-hostpart"
echo "hnroot-test: begin label-esp"
if hnroot select --set-prefix dup_ --hostpart (hd{label_disk},gpt2); then
  echo "hnroot-test: result label-esp rc=0 esp=$dup_esp"
else
  echo "hnroot-test: result label-esp rc=1"
fi
echo "hnroot-test: end label-esp"
echo "hnroot-test: done"
halt
"#,
        disks = disks.join(" ")
    )
}

/// What one `begin..end` block of the console says.
#[derive(Debug, Default)]
struct Block_ {
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

fn blocks(log: &str) -> Vec<(String, Block_)> {
    let begin = Regex::new(r"hnroot-test: begin (\S+)").unwrap_or_else(|_| unreachable!());
    let mut out: Vec<(String, Block_)> = Vec::new();
    for line in unwrap_lines(log) {
        let line = line.as_str();
        if let Some(c) = begin.captures(line) {
            out.push((c[1].to_owned(), Block_::default()));
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

/// Build everything, boot [`BOOTS`] times, check every scenario after every boot.
pub fn run() -> Result<()> {
    let module = grubmod::build()?;
    grubmod::check_installed(&module.path)?;
    println!("grub-test: hnroot.mod is {} bytes", module.size);
    let work = grubmod::build_root().join("grub-test");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;

    let scenarios = scenarios()?;
    let label_disk = scenarios
        .iter()
        .position(|s| s.hostpart_label == disk::HOSTPART_LABEL)
        .context("no scenario labelled hostpart")?;
    let cfg = test_cfg(scenarios.len(), label_disk);
    let mut spec = GrubImageSpec::new(cfg);
    spec.modules
        .extend(["time", "true", "halt"].map(String::from));
    spec.extra_module_files.push(module.path.clone());
    let bootx64 = work.join("BOOTX64.EFI");
    grubimage::build_bootx64(&spec, &work.join("grub-image"), &bootx64)?;
    check_image_contains_module(&bootx64)?;

    let mut built = Vec::new();
    for s in &scenarios {
        built.push(build_scenario(s, &bootx64, &work.join("disks"))?);
    }
    // Read-write disks first (qemu.rs attaches them), the read-only one last: GRUB numbers
    // the disks in that order, which the PARTUUIDs printed confirm.
    let rw: Vec<&Path> = scenarios
        .iter()
        .zip(&built)
        .filter(|(s, _)| s.attach == Attach::ReadWrite)
        .map(|(_, b)| b.disk.as_path())
        .collect();
    let order: Vec<usize> = (0..scenarios.len())
        .filter(|&i| scenarios[i].attach == Attach::ReadWrite)
        .chain((0..scenarios.len()).filter(|&i| scenarios[i].attach == Attach::ReadOnly))
        .collect();
    if order.iter().enumerate().any(|(pos, &i)| pos != i) {
        bail!("read-only scenarios must come last in the list (GRUB numbers disks in order)");
    }

    let done = Regex::new("hnroot-test: done")?;
    let mut failures = Vec::new();
    let mut timings = Vec::new();
    for boot in 1..=BOOTS {
        let before: Vec<Option<Vec<u8>>> = built
            .iter()
            .map(|b| state_on_disk(b, &work))
            .collect::<Result<_>>()?;
        let mut vm_spec = VmSpec::new(&format!("grub-test boot {boot}"), &rw, &work.join("vm"));
        vm_spec.no_reboot = true;
        for (s, b) in scenarios.iter().zip(&built) {
            if s.attach == Attach::ReadOnly {
                vm_spec.extra_args.extend([
                    "-drive".to_owned(),
                    format!("file={},format=raw,if=virtio,readonly=on", b.disk.display()),
                ]);
            }
        }
        let mut vm = Vm::start(&vm_spec)?;
        vm.wait_for(&done, BOOT_TIMEOUT)?;
        vm.wait_exit(Duration::from_secs(60))?;
        let log = vm.log();
        fs::write(work.join(format!("serial-boot{boot}.log")), &log)?;
        let found = blocks(&log);
        for (i, (s, b)) in scenarios.iter().zip(&built).enumerate() {
            let dev = format!("hd{i}");
            let Some((_, block)) = found.iter().find(|(name, _)| *name == dev) else {
                failures.push(format!("boot {boot} {}: no output for {dev}", s.name));
                continue;
            };
            if let Some(t) = &block.elapsed {
                timings.push(format!("boot {boot} {}: {t}", s.name));
            }
            let after = state_on_disk(b, &work)?;
            check_scenario(s, b, boot, &before[i], &after, block, &mut failures);
        }
        if boot == 1 {
            check_labels(&found, &scenarios, &built, label_disk, &mut failures);
        }
    }
    println!("grub-test: `time hnroot select` per scenario (GRUB's clock, TCG):");
    for t in &timings {
        println!("  {t}");
    }
    let total = scenarios.len() * BOOTS + 2;
    if !failures.is_empty() {
        bail!(
            "grub-test: {} of {total} checks failed (serial logs in {}):\n  {}",
            failures.len(),
            work.display(),
            failures.join("\n  ")
        );
    }
    println!("grub-test: {total} passed, 0 failed");
    Ok(())
}

fn check_scenario(
    s: &Scenario,
    b: &Built,
    boot: usize,
    before: &Option<Vec<u8>>,
    after: &Option<Vec<u8>>,
    block: &Block_,
    failures: &mut Vec<String>,
) {
    let name = format!("boot {boot} {}", s.name);
    let obs = s.observation(seen_of(before));
    let decision = decide(&obs, &Config::default());
    let expected_line = format!("hnroot: {decision}");
    let mut fail =
        |what: String| failures.push(format!("{name}: {what}\n{}{}", block.text, block.result));
    if !block.text.lines().any(|l| l.trim() == expected_line) {
        fail(format!("expected the line `{expected_line}`"));
    }
    let partuuid = field(&block.result, "partuuid");
    if partuuid != b.partuuid.to_string() {
        fail(format!("PARTUUID {partuuid:?}, disk has {}", b.partuuid));
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
    if let Some(text) = s.printed {
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
}

fn check_labels(
    found: &[(String, Block_)],
    scenarios: &[Scenario],
    built: &[Built],
    label_disk: usize,
    failures: &mut Vec<String>,
) {
    let get = |name: &str| found.iter().find(|(n, _)| n == name).map(|(_, b)| b);
    match get("label-hostpart") {
        Some(b)
            if field(&b.result, "rc") == "0"
                && field(&b.result, "hostpart") == format!("hd{label_disk},gpt2") => {}
        other => failures.push(format!(
            "hostpart by label: expected rc=0 hostpart=hd{label_disk},gpt2 ({} is the only \
             filesystem labelled hostpart, PARTUUID {}); got {other:?}",
            scenarios[label_disk].name, built[label_disk].partuuid
        )),
    }
    match get("label-esp") {
        Some(b)
            if field(&b.result, "rc") == "1"
                && b.text.contains("2 filesystems are labelled `EFI-BOOT'") => {}
        other => failures.push(format!(
            "two ESPs labelled EFI-BOOT: expected a refusal naming both; got {other:?}"
        )),
    }
}

/// The built EFI image must carry hnroot.mod: grub-mkstandalone puts modules in a memdisk or
/// the module section, uncompressed, so the module's version record and name are in it.
fn check_image_contains_module(bootx64: &Path) -> Result<()> {
    let data = fs::read(bootx64)?;
    let needle = b"hnroot_decide";
    let module = fs::read(grubmod::output_dir().join("hnroot.mod"))?;
    let has = |hay: &[u8], n: &[u8]| hay.windows(n.len()).any(|w| w == n);
    if !has(&data, needle) || !has(&data, &module[module.len() - 256..]) {
        bail!(
            "{} does not contain hnroot.mod (looked for its symbol table and last 256 bytes)",
            bootx64.display()
        );
    }
    Ok(())
}
