//! One expected boot of a scenario's story and the checks of a [`BootRecord`] against it,
//! shared by `e2e` and `demo`. It judges records; it never boots anything.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use hnroot_core::bootstate::StateSeen;
use hnroot_core::name::ImageName;
use hnroot_core::observe::ImageSeen;
use hnroot_testkit::bootparts::{self, Behaviour, BootParts, ImageDef};
use hnroot_testkit::console::{BootRecord, End};
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
    },
    ImageDef {
        version: "v2",
        behaviour: Behaviour::Good,
    },
    ImageDef {
        version: "v3-bad",
        behaviour: Behaviour::InitExits,
    },
    ImageDef {
        version: "v4-nokernel",
        behaviour: Behaviour::BadKernel,
    },
];

/// One expected boot of a scenario's story.
#[derive(Debug, Clone)]
pub struct Expect {
    /// What this boot is about, for messages.
    pub what: &'static str,
    /// GRUB's decision line must start with `booting <grub>`.
    pub grub: String,
    /// Text GRUB's decision line must also contain (a note), if any.
    pub grub_note: Option<&'static str>,
    /// The image the kernel must come from (`hnroot.image=`), when it is not GRUB's choice
    /// (GRUB's fallback entry).
    pub loaded: Option<&'static str>,
    /// hnroot-init's plan kind.
    pub plan: &'static str,
    /// The version whose init reports.
    pub version: &'static str,
    /// hostpart as the booted system lists it: (file, version), every `hn-root*.img`.
    pub hostpart: Vec<(&'static str, &'static str)>,
    /// How the boot must end.
    pub end: End,
}

/// An [`Expect`] without a note and with the kernel from GRUB's choice.
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
        version,
        hostpart: hostpart.to_vec(),
        end,
    }
}

/// Check one boot against what was expected; the error shows the boot's console tail.
pub fn check_boot(parts: &BootParts, rec: &BootRecord, e: &Expect) -> Result<()> {
    let mut problems = Vec::new();
    let decision = rec
        .decision
        .as_deref()
        .unwrap_or("(no decision line from GRUB)");
    if !decision.starts_with(&format!("booting {}", e.grub)) {
        problems.push(format!("GRUB: expected `booting {}...`", e.grub));
    }
    if let Some(note) = e.grub_note {
        if !decision.contains(note) {
            problems.push(format!("GRUB: expected the note `{note}`"));
        }
    }
    let want_loaded = e.loaded.or(rec.grub_image());
    if rec.cmdline_image.as_deref() != want_loaded {
        problems.push(format!(
            "kernel command line: hnroot.image={:?}, expected {:?}",
            rec.cmdline_image, want_loaded
        ));
    }
    if rec.plan_kind.as_deref() != Some(e.plan) {
        problems.push(format!(
            "hnroot-init: plan {:?}, expected {}",
            rec.plan_kind, e.plan
        ));
    }
    if rec.plan_steps != Some(rec.steps.len()) {
        problems.push(format!(
            "hnroot-init: plan announced {:?} steps, {} logged",
            rec.plan_steps,
            rec.steps.len()
        ));
    }
    for step in &rec.steps {
        if step.contains("FAILED") || step.contains("NOT recorded") {
            problems.push(format!("hnroot-init: `{step}`"));
        }
    }
    if let Some(f) = &rec.fatal {
        problems.push(format!("hnroot-init: FATAL: {f}"));
    }
    let want_uuid = parts.uuid(e.version)?.to_string();
    if rec.version.as_deref() != Some(e.version) || rec.uuid.as_deref() != Some(&want_uuid) {
        problems.push(format!(
            "test init: booted version={:?} uuid={:?}, expected version={} uuid={want_uuid}",
            rec.version, rec.uuid, e.version
        ));
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
        "boot {} ({}): {}\n  GRUB said: {decision}\n--- console tail of this boot ---\n{}",
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
                if img.seen != ImageSeen::Readable(bootparts::core_uuid(k.fs.uuid))
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
/// [`bootparts::STAGE_DIR`] on hostpart) with `hnroot stage`.
pub fn action_stage(version: &str) -> String {
    format!(
        "hnroot stage /hostpart/{}/{version}.img",
        bootparts::STAGE_DIR
    )
}
