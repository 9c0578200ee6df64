//! `cargo xtask e2e`: the scenario suite, the whole chain in QEMU (issue 6). Each scenario
//! builds a GPT disk (ESP with Debian's GRUB 2.06 + `hnroot.mod` and the production grub.cfg;
//! ext4 or btrfs hostpart with test images), boots it under OVMF with TCG — rebooting in place
//! for as many boots as the scenario's story needs — reads every boot off the serial console (GRUB's
//! decision line, the kernel's command line, hnroot-init's plan and steps, the test init's
//! report) and then reads the disk offline (hostpart listing and image digests, the boot-state
//! block decoded with the core's codec). It compares both with what the rules say must happen,
//! and prints a time table. Timings are printed, never asserted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::decide::{decide, Config, Decision};
use hnroot_core::name::ImageName;
use hnroot_core::observe::ImageSeen;
use regex::Regex;

use clap::Parser;
use hnroot_system_tests::story::{
    action_stage, check_boot, check_images, describe_images, describe_state, expect, Expect,
    BOOT_TIMEOUT, IMAGES, POWEROFF_TIMEOUT,
};
use hnroot_testkit::bootparts::{BootParts, DiskContents, ImageContent, StateInit};
use hnroot_testkit::buildenv::{self, fnv1a};
use hnroot_testkit::console::{BootRecord, End, Session, INIT_LINE};
use hnroot_testkit::disk::{self, BuiltDisk, HostFs};
use hnroot_testkit::inspect::{self, HostpartView, View};
use hnroot_testkit::qemu;
use hnroot_testkit::release::Debian;

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
             hnroot-init) in QEMU on real disks: update, mark-good, revert, rollback, power cuts, \
             bad inputs."
)]
struct Args {
    /// Power cuts per hostpart filesystem (ext4, btrfs) in the power-cut scenarios.
    #[arg(long, default_value_t = 3)]
    cuts: u32,
    /// Run only the scenarios whose name contains one of these (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Seed for the power-cut moments (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// The Debian release whose parts boot: 12 (GRUB 2.06, kernel 6.1) or 13 (GRUB 2.12,
    /// kernel 6.12).
    #[arg(long, default_value_t = Debian::NEWEST)]
    debian: Debian,
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
        "revert-refused",
        "7 system-revert without hn-root-old.img",
        revert_refused,
    ),
    (
        "two-hostparts",
        "7 two filesystems labelled hostpart on two disks: the one on GRUB's disk boots",
        two_hostparts,
    ),
];

fn main() -> Result<()> {
    run_suite(&Args::parse())
}

fn run_suite(args: &Args) -> Result<()> {
    let chosen: Vec<&(&str, &str, ScenarioFn)> = SCENARIOS
        .iter()
        .filter(|(name, _, _)| args.only.is_empty() || args.only.iter().any(|o| name.contains(o)))
        .collect();
    if chosen.is_empty() {
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
        work: buildenv::fresh_dir(
            &buildenv::build_root()
                .join("e2e")
                .join(args.debian.suite())
                .join("runs"),
        )?,
        seed,
        cuts: args.cuts,
    };
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
        "  {:<18} {:>5} {:>9} {:>9}  result",
        "scenario", "boots", "QEMU s", "total s"
    );
    let mut failed = Vec::new();
    for (name, report, took, ok) in &rows {
        println!(
            "  {:<18} {:>5} {:>9.1} {:>9.1}  {}",
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
        "  {:<18} {:>5} {:>9.1} {:>9.1}",
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
        "boot {} ({:.1} s): GRUB {} | plan {}{} | {} | ended: {}",
        rec.index,
        rec.took.as_secs_f64(),
        rec.decision.as_deref().unwrap_or("(no decision)"),
        rec.plan_kind.as_deref().unwrap_or("-"),
        rec.plan_steps
            .map(|n| format!(" ({n} steps)"))
            .unwrap_or_default(),
        match (&rec.version, &rec.images) {
            (Some(v), images) => format!("booted {v}; hostpart {}", describe_images(parts, images)),
            (None, _) => "no userland".to_string(),
        },
        rec.end.map_or("?".to_string(), |e| e.to_string())
    )
}

/// Boot `disk` in one QEMU through the expected boots; returns the records.
fn run_story(
    run: &SuiteRun<'_>,
    report: &mut Report,
    disks: &[&Path],
    name: &str,
    story: &[Expect],
) -> Result<Vec<BootRecord>> {
    let run_dir = run.work.join(name).join("qemu");
    let t = Instant::now();
    let mut session = Session::start(name, disks, &run_dir)?;
    let mut records = Vec::new();
    for e in story {
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

/// Scenarios 1, 2, 5, 3, 4 as one life: eight boots in one QEMU.
fn lifecycle(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let parts = run.parts;
    let tries = parts.tries();
    let mut spec = DiskContents::committed("lifecycle-ext4", HostFs::Ext4, "v1");
    spec.stage_sources = vec!["v2", "v3-bad"];
    spec.actions = vec![
        action_stage("v2"),
        "hnroot mark-good".to_string(),
        "hnroot revert".to_string(),
        action_stage("v3-bad"),
        ":".to_string(),
    ];
    let disk = parts.disk(&spec, &run.work)?;
    let rollback =
        "hn-root-old.img (automatic rollback: hn-root.img used all its tries without mark-good)";
    let mut story = vec![
        expect(
            "1: plain boot of v1; stages v2",
            "hn-root.img (normal)",
            "normal",
            "v1",
            &[("hn-root.img", "v1")],
            End::Reboot,
        ),
        expect(
            "2: the staged v2 boots directly; marks it good",
            &format!("hn-root-new.img (update, trial 1 of {tries})"),
            "update",
            "v2",
            &[("hn-root.img", "v2"), ("hn-root-old.img", "v1")],
            End::Reboot,
        ),
        expect(
            "5: v2 marked good boots as committed; requests a revert",
            "hn-root.img (normal)",
            "normal",
            "v2",
            &[("hn-root.img", "v2"), ("hn-root-old.img", "v1")],
            End::Reboot,
        ),
        expect(
            "3: manual revert to v1; stages the bad v3",
            "hn-root-old.img (manual revert: system-revert present)",
            "revert",
            "v1",
            &[("hn-root.img", "v1"), ("hn-root-broken.img", "v2")],
            End::Reboot,
        ),
    ];
    for attempt in 1..=tries {
        let grub = if attempt == 1 {
            format!("hn-root-new.img (update, trial 1 of {tries})")
        } else {
            format!("hn-root.img (trial {attempt} of {tries})")
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
        rollback,
        "rollback",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-broken.img", "v3-bad")],
        End::Poweroff,
    ));
    let records = run_story(run, report, &[&disk.path], "lifecycle-ext4", &story)?;

    // 2: one boot per update.
    let staged_at = records
        .iter()
        .position(|r| r.action.as_deref() == Some(action_stage("v2").as_str()))
        .context("no boot staged v2")?;
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
    // 5: after mark-good the boot state names v2 committed, and the next boot counts nothing.
    let v2 = parts.uuid("v2")?;
    let committed_v2 = format!("boot state: {}", BootState::Committed { good: v2 });
    for i in [2usize, 3] {
        let rec = &records[i];
        ensure!(
            rec.init_line(&committed_v2).is_some(),
            "boot {}: hnroot-init should read `{committed_v2}` (mark-good during boot 2, no \
             tries consumed since); it logged: {:?}",
            rec.index,
            rec.init_line("boot state")
        );
    }
    report.note(format!(
        "mark-good: boots 3 and 4 read `{committed_v2}`: no try consumed after mark-good"
    ));
    // 4: the failed trial is counted down; then the rollback.
    for (i, rec) in records.iter().enumerate().skip(4).take(usize::from(tries)) {
        let left = usize::from(tries) - (i - 4) - 1;
        let want = format!("{left} of {tries} tries left");
        ensure!(
            rec.init_line("boot state:")
                .is_some_and(|l| l.contains(&want)),
            "boot {}: hnroot-init should read a trial with {want}; it logged {:?}",
            rec.index,
            rec.init_line("boot state")
        );
    }
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(
        parts,
        &hp,
        &[(ImageName::Current, "v1"), (ImageName::Broken, "v3-bad")],
    )?;
    ensure!(!hp.revert_marker, "system-revert is still on hostpart");
    let v1 = parts.uuid("v1")?;
    ensure!(
        state == StateSeen::Valid(BootState::Committed { good: v1 }),
        "boot state after the rollback is {}, expected committed v1 ({v1})",
        describe_state(&state)
    );
    let next = decide(&hp.observation(state), &Config { tries });
    report.note(format!("next boot would be: {next}"));
    ensure!(
        next.boot().map(|b| (b.image, b.uuid)) == Some((ImageName::Current, v1)),
        "the next boot after the rollback should be hn-root.img (v1): {next}"
    );
    Ok(())
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
    power_cut(run, report, HostFs::Ext4)
}

fn power_cut_btrfs(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    power_cut(run, report, HostFs::Btrfs)
}

/// 6: an update (v1 committed, v2 staged) whose switch loses power at a random moment after
/// hnroot-init prints its plan; GRUB must then decide exactly what the core decides on the disk
/// as GRUB sees it, a valid image must boot, and v1 (the last known good) must be intact.
fn power_cut(run: &SuiteRun<'_>, report: &mut Report, fs: HostFs) -> Result<()> {
    let parts = run.parts;
    let name = format!("power-cut-{fs}");
    let base = parts.disk(
        &DiskContents::committed(&name, fs, "v1").with(ImageName::New, ImageContent::Image("v2")),
        &run.work,
    )?;
    if run.cuts == 0 {
        bail!("--cuts 0 cuts nothing: leave {name} out with --only, or cut at least once");
    }
    let salt: u64 = if fs == HostFs::Btrfs { 0xb7f5 } else { 0xe474 };
    let mut rng = Rng((run.seed ^ salt) | 1);
    // Where the cuts landed (the last hnroot-init line before each) and how often GRUB's
    // view was behind Linux's (the initramfs found the booted image under a newer name).
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let mut stale_views = 0usize;
    let mut lagging = 0usize;
    let plan_re = Regex::new(&format!("(?m){INIT_LINE}plan: "))?;
    let config = Config {
        tries: parts.tries(),
    };
    let v1 = parts.uuid("v1")?;
    let v2 = parts.uuid("v2")?;
    for i in 0..run.cuts {
        let slot = CUT_WINDOW.as_secs_f64() / f64::from(run.cuts);
        let delay = Duration::from_secs_f64(slot * (f64::from(i) + rng.unit()));
        let dir = run.work.join(&name).join(format!("cut{}", i + 1));
        let disk = BuiltDisk {
            path: dir.join("disk.img"),
            ..base.clone()
        };
        disk::copy_disk(&base.path, &disk.path)?;
        let t = Instant::now();
        let mut session = Session::start(
            &format!("{name} cut {}", i + 1),
            &[&disk.path],
            &dir.join("qemu-cut"),
        )?;
        let (cut, _) = session.cut_power(&plan_re, delay, BOOT_TIMEOUT)?;
        report.qemu += t.elapsed();
        report.boots += 1;
        let last = cut
            .init
            .iter()
            .rev()
            .find(|l| l.starts_with("step ") || l.starts_with("plan: "))
            .cloned()
            .unwrap_or_default();
        let at = last
            .split(':')
            .next()
            .unwrap_or("before the plan")
            .to_string();
        *landed.entry(at).or_default() += 1;
        report.note(format!(
            "cut {}: {:.0} ms after `plan: {} ...`; last line before the cut: `{last}`",
            i + 1,
            delay.as_secs_f64() * 1000.0,
            cut.plan_kind.as_deref().unwrap_or("?"),
        ));
        ensure!(
            cut.plan_kind.as_deref() == Some("update"),
            "cut {}: hnroot-init planned {:?}, expected an update",
            i + 1,
            cut.plan_kind
        );
        let (seen_by_grub, _, state) = inspect(&disk, View::AsGrubSees, report)?;
        let expected = decide(&seen_by_grub.observation(state), &config);
        let Decision::Boot(boot) = &expected else {
            bail!(
                "cut {}: the core finds nothing bootable on this disk: {expected}",
                i + 1
            );
        };
        let version = parts
            .version_of(&boot.uuid)
            .context("the core decides to boot an image that is not in the parts")?;
        let t = Instant::now();
        let mut session = Session::start(
            &format!("{name} after cut {}", i + 1),
            &[&disk.path],
            &dir.join("qemu"),
        )?;
        let rec = session.next_boot(BOOT_TIMEOUT)?;
        report.boots += 1;
        report.note(summary(parts, &rec));
        let decision = rec.decision.clone().unwrap_or_default();
        ensure!(
            decision == expected.to_string(),
            "cut {}: GRUB decided `{decision}`; the core, on hostpart as GRUB sees it offline, \
             decides `{expected}`\n--- console tail ---\n{}",
            i + 1,
            rec.tail(qemu::TAIL_LINES)
        );
        ensure!(
            rec.version.as_deref() == Some(version)
                && rec.uuid.as_deref() == Some(boot.uuid.to_string().as_str())
                && rec.fatal.is_none()
                && rec.end == Some(End::Poweroff),
            "cut {}: expected {version} ({}) to boot and power off; got version {:?}, FATAL \
             {:?}, end {:?}\n--- console tail ---\n{}",
            i + 1,
            boot.uuid,
            rec.version,
            rec.fatal,
            rec.end,
            rec.tail(qemu::TAIL_LINES)
        );
        session.wait_poweroff(POWEROFF_TIMEOUT)?;
        report.qemu += t.elapsed();
        let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
        let holding = |uuid| {
            hp.images
                .iter()
                .filter(|img| img.seen == ImageSeen::Readable(uuid))
                .map(|img| img.name)
                .collect::<Vec<_>>()
        };
        let (at_v1, at_v2) = (holding(v1), holding(v2));
        ensure!(
            at_v1.len() == 1
                && matches!(at_v1[0], ImageName::Current | ImageName::Old)
                && at_v2.len() == 1,
            "cut {}: after recovery v1 (last known good) is at {at_v1:?} and v2 at {at_v2:?}; \
             expected each exactly once, v1 as hn-root.img or hn-root-old.img",
            i + 1
        );
        let want = [(at_v1[0], "v1"), (at_v2[0], "v2")];
        check_images(parts, &hp, &want)?;
        ensure!(
            matches!(state, StateSeen::Valid(_)),
            "cut {}: boot state after recovery is {}",
            i + 1,
            describe_state(&state)
        );
        let next = decide(&hp.observation(state), &config);
        ensure!(
            next.boot().is_some(),
            "cut {}: after recovery nothing would boot: {next}",
            i + 1
        );
        if rec
            .plan_notes
            .as_deref()
            .is_some_and(|n| n.contains("GRUB saw hostpart before the last switch"))
        {
            stale_views += 1;
        }
        // GRUB's next decision is made on the disk as it lies, journal not replayed. When it
        // differs from the decision on Linux's view, GRUB is still behind after the recovery
        // boot: boot once more and require that this too ends in a valid image, v1 intact.
        let (grub_view, _, grub_state) = inspect(&disk, View::AsGrubSees, report)?;
        let grub_next = decide(&grub_view.observation(grub_state), &config);
        if grub_next != next {
            lagging += 1;
            report.note(format!(
                "cut {}: after the recovery boot GRUB's view is still behind: GRUB will decide \
                 `{grub_next}`, Linux's view says `{next}`; booting once more",
                i + 1
            ));
            let Decision::Boot(again) = &grub_next else {
                bail!(
                    "cut {}: GRUB would find nothing bootable: {grub_next}",
                    i + 1
                );
            };
            let version = parts
                .version_of(&again.uuid)
                .context("GRUB would boot an image that is not in the parts")?;
            let t = Instant::now();
            let mut session = Session::start(
                &format!("{name} after cut {}, second boot", i + 1),
                &[&disk.path],
                &dir.join("qemu-again"),
            )?;
            let rec = session.next_boot(BOOT_TIMEOUT)?;
            report.boots += 1;
            report.note(summary(parts, &rec));
            ensure!(
                rec.decision.as_deref() == Some(grub_next.to_string().as_str())
                    && rec.version.as_deref() == Some(version)
                    && rec.fatal.is_none()
                    && rec.end == Some(End::Poweroff),
                "cut {}, second boot: expected GRUB to decide `{grub_next}` and {version} to \
                 boot and power off\n--- console tail ---\n{}",
                i + 1,
                rec.tail(qemu::TAIL_LINES)
            );
            session.wait_poweroff(POWEROFF_TIMEOUT)?;
            report.qemu += t.elapsed();
            let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
            let at_v1: Vec<ImageName> = hp
                .images
                .iter()
                .filter(|img| img.seen == ImageSeen::Readable(v1))
                .map(|img| img.name)
                .collect();
            ensure!(
                at_v1.len() == 1 && matches!(at_v1[0], ImageName::Current | ImageName::Old),
                "cut {}, second boot: v1 is at {at_v1:?}",
                i + 1
            );
            check_images(
                parts,
                &HostpartView {
                    images: hp
                        .images
                        .iter()
                        .filter(|img| img.name == at_v1[0])
                        .cloned()
                        .collect(),
                    ..hp.clone()
                },
                &[(at_v1[0], "v1")],
            )?;
            ensure!(
                matches!(state, StateSeen::Valid(_)),
                "cut {}, second boot: boot state {}",
                i + 1,
                describe_state(&state)
            );
        }
        // Passed: the copy is not needed (long --cuts runs would fill the disk).
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    report.note(format!(
        "{} cuts landed after: {}; GRUB's view behind Linux's in {stale_views} recovery \
         boots; still behind after the recovery boot in {lagging} cuts",
        run.cuts,
        landed
            .iter()
            .map(|(at, n)| format!("{at} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
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
    let mut records = run_story(run, report, &[&disk.path], &spec.name, &[e])?;
    let rec = records.pop().context("no boot")?;
    Ok((rec, disk))
}

/// 7: a staged image GRUB cannot read is ignored with a note, v1 boots normally, and
/// nothing renames or removes the file (a file that cannot be read is never moved).
fn unreadable_new(
    run: &SuiteRun<'_>,
    report: &mut Report,
    name: &str,
    content: ImageContent,
    listed_as: &'static str,
    why: Why,
) -> Result<()> {
    let parts = run.parts;
    let spec = DiskContents::committed(name, HostFs::Ext4, "v1").with(ImageName::New, content);
    let mut e = expect(
        "unreadable hn-root-new.img",
        "hn-root.img (normal)",
        "normal",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-new.img", listed_as)],
        End::Poweroff,
    );
    e.grub_note = Some("hn-root-new.img ignored: not a readable filesystem");
    let (rec, disk) = one_boot(run, report, &spec, e)?;
    // GRUB's console wraps at 80 columns, anywhere in a word; the record joins the pieces
    // with a space: compare without white space.
    let grub_says = "/hn-root-new.img is unreadable: ";
    let grub_line = rec
        .grub
        .iter()
        .find_map(|l| l.split_once(grub_says).map(|(_, why)| why))
        .with_context(|| format!("GRUB printed no `hnroot: ...{grub_says}...` line"))?;
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    ensure!(
        squeeze(grub_line).starts_with(&squeeze(why.grub)),
        "GRUB said hn-root-new.img is unreadable because `{grub_line}`, not `{}...`",
        why.grub
    );
    report.note(format!("GRUB: hn-root-new.img is unreadable: {grub_line}"));
    let init_says = "hostpart: hn-root-new.img: unusable: ";
    let init_line = rec
        .init_line(init_says)
        .with_context(|| format!("hnroot-init printed no `{init_says}...` line"))?;
    ensure!(
        init_line[init_says.len()..].starts_with(why.init),
        "hnroot-init said `{init_line}`, not `{init_says}{}...`",
        why.init
    );
    report.note(format!("hnroot-init: {init_line}"));
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
        state
            == StateSeen::Valid(BootState::Committed {
                good: parts.uuid("v1")?
            }),
        "the boot state should not change: {}",
        describe_state(&state)
    );
    Ok(())
}

/// How GRUB and hnroot-init each say why an image is unusable: the start of the reason.
struct Why {
    grub: &'static str,
    init: &'static str,
}

/// 7: hn-root-new.img is pseudo-random bytes.
fn garbage_new(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let size = run.parts.image("v2")?.fs.size;
    let why = Why {
        grub: "no filesystem hnroot recognises in it",
        init: "no ext2/3/4, XFS, btrfs or FAT filesystem found",
    };
    unreadable_new(
        run,
        report,
        "garbage-new",
        ImageContent::Garbage(size),
        "*",
        why,
    )
}

/// 7: hn-root-new.img is v2 without its last MiB (a copy cut short near its end): the
/// superblock (v2's UUID), `/boot/kernel` and `/boot/initramfs` are intact, so only the
/// filesystem's own size gives it away; the kernel would refuse to mount it.
fn truncated_new(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let size = run.parts.image("v2")?.fs.size;
    let why = Why {
        grub: "it is truncated: its ext4 filesystem spans",
        init: "truncated: its ext4 filesystem spans",
    };
    unreadable_new(
        run,
        report,
        "truncated-new",
        ImageContent::Truncated("v2", size - (1 << 20)),
        "v2",
        why,
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
            &format!("hn-root-new.img (update, trial {attempt} of {tries})"),
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
        "hn-root.img (normal)",
        "normal",
        "v1",
        &[("hn-root.img", "v1"), ("hn-root-broken.img", "v4-nokernel")],
        End::Poweroff,
    ));
    let disk = parts.disk(&spec, &run.work)?;
    let records = run_story(run, report, &[&disk.path], &spec.name, &story)?;
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
        state
            == StateSeen::Valid(BootState::Committed {
                good: parts.uuid("v1")?
            }),
        "boot state after the rollback: {}",
        describe_state(&state)
    );
    Ok(())
}

/// 7: no hn-root.img: hn-root-old.img boots (recovery) and is promoted.
fn missing_current(run: &SuiteRun<'_>, report: &mut Report) -> Result<()> {
    let spec = DiskContents::committed("missing-current", HostFs::Ext4, "v1")
        .without(ImageName::Current)
        .with(ImageName::Old, ImageContent::Image("v1"));
    let (_, disk) = one_boot(
        run,
        report,
        &spec,
        expect(
            "hn-root.img missing",
            "hn-root-old.img (recovery: hn-root.img is missing)",
            "promote",
            "v1",
            &[("hn-root.img", "v1")],
            End::Poweroff,
        ),
    )?;
    let (hp, _, state) = inspect(&disk, View::AfterReplay, report)?;
    check_images(run.parts, &hp, &[(ImageName::Current, "v1")])?;
    ensure!(
        state
            == StateSeen::Valid(BootState::Committed {
                good: run.parts.uuid("v1")?
            }),
        "boot state: {}",
        describe_state(&state)
    );
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
        &format!("hn-root.img (trial 1 of {tries})"),
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Reboot,
    );
    first.grub_note = Some("boot state corrupt");
    let second = expect(
        "after mark-good: normal",
        "hn-root.img (normal)",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    run_story(run, report, &[&disk.path], &spec.name, &[first, second])?;
    let (_, _, state) = inspect(&disk, View::AfterReplay, report)?;
    ensure!(
        state
            == StateSeen::Valid(BootState::Committed {
                good: parts.uuid("v1")?
            }),
        "boot state after mark-good: {}",
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
        "hn-root.img (system-revert present but there is no readable hn-root-old.img",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    e.grub_note = Some("revert refused");
    let (rec, disk) = one_boot(run, report, &spec, e)?;
    ensure!(
        rec.plan_notes
            .as_deref()
            .is_some_and(|n| n.contains("system-revert removed")),
        "hnroot-init should say it removes system-revert: plan notes {:?}",
        rec.plan_notes
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
/// of the ESP holding this GRUB); hnroot-init mounts exactly that one (GRUB's PARTUUID=), v1
/// boots normally, and the other disk is not written to. The refusal (neither candidate on
/// GRUB's disk) is proven by grub-test.
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
        "hn-root.img (normal)",
        "normal",
        "v1",
        &[("hn-root.img", "v1")],
        End::Poweroff,
    );
    let mut records = run_story(run, report, &[&disk.path, &other], &spec.name, &[e])?;
    let rec = records.pop().context("no boot")?;
    let pick = "hnroot: 2 filesystems are labelled `hostpart' ((hd0,gpt2), (hd1,gpt1)): using \
                (hd0,gpt2), the one on the disk GRUB started from (hd0)";
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    let said = rec
        .grub
        .iter()
        .find(|l| squeeze(l).contains(&squeeze(pick)));
    ensure!(
        said.is_some(),
        "expected GRUB to say `{pick}...`; it said:\n{}",
        rec.grub.join("\n")
    );
    report.note(format!("GRUB: {}", said.map_or("", String::as_str)));
    let found = rec
        .init_line("hostpart: found ")
        .context("hnroot-init printed no `hostpart: found ...` line")?;
    ensure!(
        found.starts_with("hostpart: found /dev/vda2 "),
        "hnroot-init should mount the first disk's partition 2 (GRUB's PARTUUID): `{found}`"
    );
    report.note(format!("hnroot-init: {found}"));
    ensure!(
        fnv1a(&std::fs::read(&other)?) == other_before,
        "the other disk labelled hostpart changed"
    );
    report.note("the other disk is byte for byte what it was".to_string());
    Ok(())
}
