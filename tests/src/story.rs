//! One expected boot of a scenario's story and the checks of a [`BootRecord`] against it,
//! shared by `e2e` and `demo`. It judges records; it never boots anything.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use hnroot_core::bootstate::StateSeen;
use hnroot_core::name::ImageName;
use hnroot_core::observe::ImageSeen;
use hnroot_testkit::bootparts::{self, Behaviour, BootParts, ImageDef};
use hnroot_testkit::console::{field, BootRecord, End};
use hnroot_testkit::inspect::HostpartView;

/// Bound on one boot, power-on (or the previous boot's end) to its end: a TCG boot takes
/// ~20 s, a kernel panic adds `panic=10`.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Bound on QEMU's exit after the guest said it powers off.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);
/// The test images every scenario draws from.
pub const IMAGES: &[ImageDef] = &[
    ImageDef {
        version: "v1",
        behaviour: Behaviour::Good,
        args: None,
    },
    ImageDef {
        version: "v2",
        behaviour: Behaviour::Good,
        args: None,
    },
    ImageDef {
        version: "v3-bad",
        behaviour: Behaviour::InitExits,
        args: None,
    },
    ImageDef {
        version: "v4-nokernel",
        behaviour: Behaviour::BadKernel,
        args: None,
    },
    ImageDef {
        version: "v5-noinit",
        behaviour: Behaviour::NoInit,
        args: None,
    },
    ImageDef {
        version: "v6-args",
        behaviour: Behaviour::Good,
        args: Some(V6_ARGS),
    },
];

/// The kernel arguments image `v6-args` carries: a console of its own (`tty0`, the screen;
/// kept, and the test's serial port named last so it stays the kernel's `/dev/console`; a
/// second *serial* console cannot be shown: Linux registers the 8250 console for one port only,
/// the first `console=ttyS` named, so `console=ttyS1` would take every line from ttyS0),
/// hnroot's own words and an init, which only hnroot may set (refused, named in GRUB's record).
pub const V6_ARGS: &str = "# v6-args: a console of its own\nconsole=tty0 console=ttyS0 \
                           no_timer_check\nhnroot.image=hn-root-old.img init=/bin/sh\n";

/// One expected boot of a scenario's story.
#[derive(Debug, Clone)]
pub struct Expect {
    /// What this boot is about, for messages.
    pub what: &'static str,
    /// `key=value` words GRUB's `decision:` record must hold, e.g. `reason=update
    /// image=hn-root-new.img try=1/3` (the record's stable codes, not its sentence).
    pub grub: String,
    /// A note code GRUB's record must list in `notes=`, if any.
    pub grub_note: Option<&'static str>,
    /// The image the kernel must come from (`hnroot.image=`), when it is not GRUB's choice
    /// (GRUB's fallback entry).
    pub loaded: Option<&'static str>,
    /// hnroot-init's plan kind (`plan=` of its first `record:`).
    pub plan: &'static str,
    /// A step of that plan that must fail, as logged (`rename hn-root.img ->
    /// hn-root-cancelled.img`), after which a second plan must mount the booted image where it
    /// lies (one step). `None`: every step must succeed.
    pub failed_step: Option<&'static str>,
    /// The version whose init reports, or `None` when the boot must end before any userland
    /// (hnroot-init's fallback reboot).
    pub version: Option<&'static str>,
    /// hostpart as the booted system lists it: (file, version), every `hn-root*.img`.
    pub hostpart: Vec<(&'static str, &'static str)>,
    /// How the boot must end.
    pub end: End,
    /// Words an operator types at GRUB's menu onto the chosen entry's kernel command line
    /// (`single`). Whatever boots must be started with exactly these arguments (none when
    /// `None`): the kernel hands such words to PID 1, hnroot-init to the image's init.
    pub typed: Option<&'static str>,
}

/// An [`Expect`] without a note, a failed step or another kernel than GRUB's choice, in which
/// `version` boots.
pub fn expect(
    what: &'static str,
    grub: &str,
    plan: &'static str,
    version: &'static str,
    hostpart: &[(&'static str, &'static str)],
    end: End,
) -> Expect {
    Expect {
        what,
        grub: grub.to_string(),
        grub_note: None,
        loaded: None,
        plan,
        failed_step: None,
        version: Some(version),
        hostpart: hostpart.to_vec(),
        end,
        typed: None,
    }
}

/// Check the plans hnroot-init logged against `e`: the first of kind `e.plan`; every step
/// logged and successful, except `e.failed_step`, which must end the first plan and be followed
/// by a one-step plan that mounts the booted image where it lies.
fn check_plans(rec: &BootRecord, e: &Expect, problems: &mut Vec<String>) {
    let Some(first) = rec.plans.first() else {
        problems.push("hnroot-init: no `record:` line (no plan)".to_string());
        return;
    };
    if field(&first.record, "plan") != Some(e.plan) {
        problems.push(format!(
            "hnroot-init: `record: {}`, expected plan={}",
            first.record, e.plan
        ));
    }
    let failed: Vec<&String> = rec
        .plans
        .iter()
        .flat_map(|p| &p.steps)
        .filter(|s| s.contains(": FAILED: "))
        .collect();
    match e.failed_step {
        None => {
            for step in failed {
                problems.push(format!("hnroot-init: `{step}`"));
            }
            for run in &rec.plans {
                if run.announced() != Some(run.steps.len()) {
                    problems.push(format!(
                        "hnroot-init: `record: {}` announced {:?} steps, {} logged",
                        run.record,
                        run.announced(),
                        run.steps.len()
                    ));
                }
            }
        }
        Some(want) => {
            let ends_first = first
                .steps
                .last()
                .is_some_and(|s| s.contains(&format!(": {want}: FAILED: ")));
            if failed.len() != 1 || !ends_first {
                problems.push(format!(
                    "hnroot-init: expected exactly the step `{want}` to fail, ending the plan; \
                     failed: {failed:?}"
                ));
            }
            match rec.plans.get(1..) {
                Some([then]) if then.announced() == Some(1) && then.steps.len() == 1 => {}
                _ => problems.push(format!(
                    "hnroot-init: after the failed step expected one plan of one mount step; \
                     plans after the first: {:?}",
                    rec.plans.get(1..)
                )),
            }
        }
    }
}

/// Check one boot against what was expected; the error shows the boot's console tail.
pub fn check_boot(parts: &BootParts, rec: &BootRecord, e: &Expect) -> Result<()> {
    let mut problems = Vec::new();
    let record = rec.grub_record.as_deref().unwrap_or("");
    if rec.grub_record.is_none() {
        problems.push("GRUB printed no `hnroot: decision:` record".to_string());
    }
    for word in e.grub.split_whitespace() {
        let (key, want) = word.split_once('=').unwrap_or((word, ""));
        if field(record, key) != Some(want) {
            problems.push(format!(
                "GRUB: expected {key}={want}, its record has {key}={}",
                field(record, key).unwrap_or("(none)")
            ));
        }
    }
    if let Some(note) = e.grub_note {
        if !field(record, "notes").is_some_and(|n| n.split(',').any(|c| c == note)) {
            problems.push(format!("GRUB: expected the note {note} in its record"));
        }
    }
    let want_loaded = e.loaded.or(field(record, "image"));
    if rec.cmdline_image.as_deref() != want_loaded {
        problems.push(format!(
            "kernel command line: hnroot.image={:?}, expected {:?}",
            rec.cmdline_image, want_loaded
        ));
    }
    check_plans(rec, e, &mut problems);
    // Every image mounted as the root is read through a loop device doing direct I/O (the
    // suites' hostparts, ext4 and btrfs, allow it).
    for io in rec.loop_io() {
        if io != "direct" {
            problems.push(format!(
                "hnroot-init: the root's loop device does io={io}, expected io=direct"
            ));
        }
    }
    if e.version.is_some() && rec.loop_io().is_empty() {
        problems.push("hnroot-init: no mount step says how its loop device does I/O (io=)".into());
    }
    let fails = matches!(e.end, End::AfterFailureReboot | End::Stopped);
    match (&rec.fatal, fails) {
        (Some(f), false) => problems.push(format!("hnroot-init: FATAL: {f}")),
        (None, true) => problems.push(format!(
            "hnroot-init: expected a FATAL line before `{}`",
            e.end
        )),
        _ => {}
    }
    match e.version {
        Some(version) => {
            let want_uuid = parts.uuid(version)?.to_string();
            if rec.version.as_deref() != Some(version) || rec.uuid.as_deref() != Some(&want_uuid) {
                problems.push(format!(
                    "test init: booted version={:?} uuid={:?}, expected version={version} \
                     uuid={want_uuid}",
                    rec.version, rec.uuid
                ));
            }
        }
        None => {
            if let Some(v) = &rec.version {
                problems.push(format!("test init: {v} booted; expected no userland"));
            }
        }
    }
    let typed: Vec<&str> = e
        .typed
        .map_or(Vec::new(), |t| t.split_whitespace().collect());
    if !typed.is_empty() {
        let on_cmdline: Vec<&str> = rec
            .cmdline
            .as_deref()
            .map_or(Vec::new(), |c| c.split_whitespace().collect());
        if !on_cmdline.ends_with(&typed) {
            problems.push(format!(
                "kernel command line: expected it to end with {typed:?} typed at GRUB's \
                 editor: {:?}",
                rec.cmdline
            ));
        }
    }
    if e.version.is_some() {
        let args: Option<Vec<&str>> = rec
            .init_args
            .as_ref()
            .map(|a| a.iter().map(String::as_str).collect());
        if args.as_deref() != Some(&typed[..]) {
            problems.push(format!(
                "test init: started with the arguments {:?}, expected {typed:?}",
                rec.init_args
            ));
        }
    }
    // "*": the file is there, whatever UUID its first bytes show (garbage).
    let mut listed: Vec<(String, String)> = rec
        .images
        .iter()
        .map(|(n, u)| {
            let any = e.hostpart.iter().any(|(w, v)| w == n && *v == "*");
            (n.clone(), if any { "*".to_string() } else { u.clone() })
        })
        .collect();
    listed.sort();
    let mut want: Vec<(String, String)> = e
        .hostpart
        .iter()
        .map(|(n, v)| match *v {
            "*" => Ok((n.to_string(), "*".to_string())),
            v => Ok((n.to_string(), parts.uuid(v)?.to_string())),
        })
        .collect::<Result<_>>()?;
    want.sort();
    if listed != want {
        problems.push(format!(
            "hostpart as the booted system lists it: {}; expected {}",
            describe_images(parts, &listed),
            describe_images(parts, &want)
        ));
    }
    if rec.end != Some(e.end) {
        problems.push(format!(
            "boot ended with {}, expected {}",
            rec.end.map_or("nothing".to_string(), |x| x.to_string()),
            e.end
        ));
    }
    if let Some(exit) = &rec.action_exit {
        if !exit.ends_with("exit=0") {
            problems.push(format!(
                "the action `{}` failed: {exit}; it printed:\n      {}",
                rec.action.as_deref().unwrap_or("?"),
                rec.action_output.join("\n      ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "boot {} ({}): {}\n  GRUB's record: {record}\n--- console tail of this boot ---\n{}",
        rec.index,
        e.what,
        problems.join("\n  "),
        rec.tail(hnroot_testkit::qemu::TAIL_LINES)
    )
}

/// `name=version` for each (file, UUID) of a list, `?` for a UUID no test image has.
pub fn describe_images(parts: &BootParts, list: &[(String, String)]) -> String {
    if list.is_empty() {
        return "(no image files)".to_string();
    }
    list.iter()
        .map(|(n, u)| {
            let v = hnroot_core::FsUuid::parse(u)
                .ok()
                .and_then(|u| parts.version_of(&u))
                .unwrap_or("?");
            format!("{n}={v}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A boot state as one word or the state's own description.
pub fn describe_state(state: &StateSeen) -> String {
    match state {
        StateSeen::Absent => "absent".to_string(),
        StateSeen::Corrupt => "corrupt".to_string(),
        StateSeen::Valid(s) => s.to_string(),
    }
}

/// The image files of an offline view must be exactly `want` (name, version), each one
/// byte-for-byte the test image of that version.
pub fn check_images(
    parts: &BootParts,
    hp: &HostpartView,
    want: &[(ImageName, &str)],
) -> Result<()> {
    let mut problems = Vec::new();
    for name in ImageName::ALL {
        let got = hp.image(name);
        let wanted = want.iter().find(|(n, _)| *n == name);
        match (got, wanted) {
            (None, None) => {}
            (Some(img), Some((_, v))) => {
                let k = parts.image(v)?;
                if img.seen != ImageSeen::Bootable(bootparts::core_uuid(k.fs.uuid))
                    || img.digest != k.digest
                {
                    problems.push(format!(
                        "{name} is not the unchanged {v} image ({:?}, {} bytes, digest \
                         {:016x}; {v} has {} bytes, digest {:016x})",
                        img.seen, img.size, img.digest, k.fs.size, k.digest
                    ));
                }
            }
            (Some(img), None) => problems.push(format!("{name} should not exist ({:?})", img.seen)),
            (None, Some((_, v))) => problems.push(format!("{name} ({v}) is missing")),
        }
    }
    ensure!(
        problems.is_empty(),
        "hostpart offline ({hp}): {}",
        problems.join("; ")
    );
    Ok(())
}

/// The test init's action that stages the test image `version` (copied under
/// [`bootparts::STAGE_DIR`] on hostpart, its signature beside it) with `hnroot stage`, which
/// checks the signature against the publisher's key in the image's `/etc/hnroot/keys`.
pub fn action_stage(version: &str) -> String {
    format!(
        "hnroot stage /hostpart/{}/{version}.img",
        bootparts::STAGE_DIR
    )
}
