//! `cargo xtask demo`: the README's main command. On a fresh Debian 12 machine it installs what
//! it needs, builds everything (kernel, hnroot-init initramfs, GRUB with hnroot.mod, test
//! images) and narrates one life cycle of a server in QEMU: v1 boots and stages v2; v2 boots
//! directly and asks for a revert; v1 is back and stages a bad v3; v3 is tried and fails every
//! try (its init exits, the kernel panics); GRUB rolls back to v1. For every boot it prints what
//! GRUB chose and why, what the initramfs did, what booted and hostpart as the booted system
//! saw it; then hostpart and the boot state read offline, and a summary table. Each boot is
//! also checked against what the rules say, so the demo fails loudly rather than narrating a
//! story that did not happen.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use hnroot_system_tests::story::{self, Expect};
use hnroot_testkit::bootparts::{BootParts, DiskContents, STAGE_DIR};
use hnroot_testkit::buildenv;
use hnroot_testkit::console::{BootRecord, End, Session};
use hnroot_testkit::disk::{self, HostFs};
use hnroot_testkit::inspect::{self, View};
use hnroot_testkit::release::Debian;

/// The test images the story uses.
const DEMO_IMAGES: &[&str] = &["v1", "v2", "v3-bad"];

/// One boot of the story: what the narrator says before showing it, and what must happen.
struct Chapter {
    title: String,
    expect: Expect,
}

fn chapters(tries: u8) -> Vec<Chapter> {
    let mut book = vec![
        Chapter {
            title: "v1 is installed and committed; the operator stages v2 (`hnroot stage`)".into(),
            expect: story::expect(
                "v1 boots",
                "reason=normal image=hn-root.img",
                "normal",
                "v1",
                &[("hn-root.img", "v1")],
                End::Reboot,
            ),
        },
        Chapter {
            title: "the staged v2 boots directly, on trial; the operator asks for a revert \
                    (`hnroot revert`)"
                .into(),
            expect: story::expect(
                "v2 boots directly",
                &format!("reason=update image=hn-root-new.img try=1/{tries}"),
                "update",
                "v2",
                &[("hn-root.img", "v2"), ("hn-root-old.img", "v1")],
                End::Reboot,
            ),
        },
        Chapter {
            title: "the revert: v1 boots and is current again; the operator stages v3, which \
                    is broken"
                .into(),
            expect: story::expect(
                "revert to v1",
                "reason=manual-revert image=hn-root-old.img",
                "revert",
                "v1",
                &[("hn-root.img", "v1"), ("hn-root-broken.img", "v2")],
                End::Reboot,
            ),
        },
    ];
    for attempt in 1..=tries {
        let (grub, plan) = if attempt == 1 {
            (
                format!("reason=update image=hn-root-new.img try=1/{tries}"),
                "update",
            )
        } else {
            (
                format!("reason=trial image=hn-root.img try={attempt}/{tries}"),
                "normal",
            )
        };
        book.push(Chapter {
            title: format!(
                "v3 try {attempt} of {tries}: its init exits, the kernel panics and reboots \
                 (panic=10); nobody runs `hnroot mark-good`"
            ),
            expect: story::expect(
                "v3 on trial",
                &grub,
                plan,
                "v3-bad",
                &[
                    ("hn-root.img", "v3-bad"),
                    ("hn-root-old.img", "v1"),
                    ("hn-root-broken.img", "v2"),
                ],
                End::Panic,
            ),
        });
    }
    book.push(Chapter {
        title: "v3 used all its tries: GRUB rolls back to v1 by itself; `hnroot status` says \
                what the next boot does"
            .into(),
        expect: story::expect(
            "automatic rollback to v1",
            "reason=automatic-rollback image=hn-root-old.img",
            "rollback",
            "v1",
            &[("hn-root.img", "v1"), ("hn-root-broken.img", "v3-bad")],
            End::Poweroff,
        ),
    });
    book
}

/// `cargo xtask demo [--debian 12|13]`.
#[derive(Debug, Parser)]
#[command(
    name = "demo",
    about = "One full life cycle in QEMU, narrated: v1, stage v2, v2 boots directly, revert, \
             automatic rollback of a bad v3; what GRUB chose and why, what the initramfs did."
)]
struct Args {
    /// The Debian release whose kernel boots (under hnroot's own GRUB): 12 (kernel 6.1) or 13
    /// (kernel 6.12).
    #[arg(long, default_value_t = Debian::NEWEST)]
    debian: Debian,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    println!(
        "hnroot demo on {}'s parts (GRUB {}): building the kernel, initramfs, GRUB image and \
         test images (cached under target/hnroot-build/)",
        args.debian,
        hnroot_testkit::release::GRUB.version
    );
    let parts = BootParts::build(args.debian, story::IMAGES)?;
    for (what, took, cached) in &parts.timings {
        println!(
            "  {:>6.1} s  {what}{}",
            took.as_secs_f64(),
            if *cached { " (cached)" } else { "" }
        );
    }
    let tries = parts.tries();
    let work = buildenv::fresh_dir(&buildenv::build_root().join("demo"))?;
    let mut spec = DiskContents::committed("demo", HostFs::Ext4, "v1");
    spec.stage_sources = vec!["v2", "v3-bad"];
    spec.actions = vec![
        story::action_stage("v2"),
        "hnroot revert".to_string(),
        story::action_stage("v3-bad"),
        "hnroot status".to_string(),
    ];
    let disk = parts.disk(&spec, &work)?;
    println!();
    println!(
        "The disk: {} — GPT; ESP `{}`: hnroot's GRUB (Debian's grub2 source) with hnroot.mod and \
         grub-module/grub.cfg, boot state \"v1 committed\"; hostpart `{}` (ext4): hn-root.img \
         = v1, and v2 and v3-bad in {STAGE_DIR}/ for the operator to stage.",
        disk.path.display(),
        disk::ESP_LABEL,
        disk::HOSTPART_LABEL
    );
    for version in DEMO_IMAGES {
        let image = parts.image(version)?;
        println!(
            "  {:<8} ext4 UUID {}  ({} MiB){}",
            image.version,
            image.fs.uuid,
            image.fs.size / disk::MIB,
            if *version == "v3-bad" {
                "  its init exits at once: a broken release"
            } else {
                ""
            }
        );
    }
    println!(
        "Kernel: Debian {} ({}); initramfs: hnroot-init as /init + {} modules, {} KiB; QEMU \
         with TCG, one VM rebooting in place.",
        parts.kernel.release,
        parts.kernel.deb_version,
        parts.initramfs.modules.len(),
        parts.initramfs.compressed_bytes.div_ceil(1024)
    );

    let book = chapters(tries);
    let boot_started = Instant::now();
    let mut session = Session::start("demo", &[&disk.path], &work.join("qemu"))?;
    let mut records = Vec::new();
    for (i, chapter) in book.iter().enumerate() {
        println!("\n--- boot {}: {}", i + 1, chapter.title);
        let rec = session.next_boot(story::BOOT_TIMEOUT)?;
        narrate(&parts, &rec);
        story::check_boot(&parts, &rec, &chapter.expect)
            .with_context(|| format!("the demo's boot {} did not go as the rules say", i + 1))?;
        records.push(rec);
    }
    session.wait_poweroff(story::POWEROFF_TIMEOUT)?;
    let boot_time = boot_started.elapsed();

    let scratch = inspect::scratch_for(&disk);
    let hp = inspect::hostpart(&disk, View::AfterReplay, &scratch)?;
    let (_, state) = inspect::boot_state(&disk, &scratch)?;
    println!("\n--- afterwards, read offline from the disk image");
    println!("  hostpart: {hp}");
    for image in &hp.images {
        let version = match image.seen {
            hnroot_core::observe::ImageSeen::Bootable(u) => parts.version_of(&u).unwrap_or("?"),
            _ => "unreadable",
        };
        println!("    {:<20} {version}", image.name.file_name());
    }
    println!("  boot state: {}", story::describe_state(&state));
    story::check_images(
        &parts,
        &hp,
        &[
            (hnroot_core::name::ImageName::Current, "v1"),
            (hnroot_core::name::ImageName::Broken, "v3-bad"),
        ],
    )
    .context("hostpart after the demo")?;
    println!("  hn-root.img is byte for byte the v1 image the demo started with.");

    println!("\n--- summary");
    println!(
        "  {:>2}  {:<16} {:<52} {:<12} {:<7} {:<13} hostpart after the boot",
        "#", "GRUB chose", "why", "initramfs", "booted", "ended"
    );
    for rec in &records {
        let d = rec.decision.as_deref().unwrap_or("");
        println!(
            "  {:>2}  {:<16} {:<52} {:<12} {:<7} {:<13} {}",
            rec.index,
            rec.grub_image().unwrap_or("?"),
            rec.grub_reason()
                .unwrap_or(d)
                .replace("used all its tries without mark-good", "out of tries"),
            format!(
                "{} ({})",
                rec.plan_kind.as_deref().unwrap_or("-"),
                rec.plan_steps.unwrap_or(0)
            ),
            rec.version.as_deref().unwrap_or("-"),
            match rec.end {
                Some(End::Panic) => "kernel panic".to_string(),
                Some(e) => e.to_string(),
                None => "?".to_string(),
            },
            story::describe_images(&parts, &rec.images)
        );
    }
    println!(
        "\n{} boots in {:.0} s of QEMU (TCG); {:.0} s in all. One boot per update (v2 on the \
         boot after staging), a revert by marker file, and an automatic rollback after {tries} \
         failed tries.",
        records.len(),
        boot_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Print one boot: GRUB's decision, the kernel's source, hnroot-init's plan and steps, what
/// booted, hostpart as it saw it, the action.
fn narrate(parts: &BootParts, rec: &BootRecord) {
    println!(
        "  GRUB       {}",
        rec.decision.as_deref().unwrap_or("(no decision line)")
    );
    for line in rec
        .grub
        .iter()
        .filter(|l| !l.starts_with("hnroot: booting") && !l.contains("video mode"))
    {
        println!("             {line}");
    }
    if let Some(image) = &rec.cmdline_image {
        println!("  kernel     from {image} (hnroot.image= on its command line)");
    }
    if let Some(state) = rec.init_line("boot state:") {
        println!("  initramfs  {state}");
    }
    match (&rec.plan_kind, rec.plan_steps) {
        (Some(kind), Some(n)) => println!(
            "  initramfs  plan: {kind} ({n} steps){}",
            rec.plan_notes
                .as_ref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
        _ => println!("  initramfs  (no plan line)"),
    }
    for step in &rec.steps {
        println!("             {step}");
    }
    if let Some(f) = &rec.fatal {
        println!("  initramfs  FATAL: {f}");
    }
    match (&rec.version, &rec.uuid) {
        (Some(v), Some(u)) => println!("  booted     {v} (UUID {u})"),
        _ => println!("  booted     (no userland report)"),
    }
    println!(
        "  hostpart   {}",
        story::describe_images(parts, &rec.images)
    );
    if let Some(action) = &rec.action {
        if action != ":" {
            println!("  operator   {action}");
            for line in &rec.action_output {
                println!("             {line}");
            }
        }
    }
    println!(
        "  ended      {} after {:.1} s",
        rec.end.map_or("?".to_string(), |e| e.to_string()),
        rec.took.as_secs_f64()
    );
}

/// The README's commands run without options: every default must parse (clap turns a
/// `default_value_t` into text and parses it back, which once failed for `--debian`).
#[cfg(test)]
mod default_args {
    use clap::Parser;

    #[test]
    fn the_defaults_parse() {
        let args = super::Args::try_parse_from(["demo"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.debian, hnroot_testkit::release::Debian::NEWEST);
    }
}
