//! `hnroot status` and `hnroot explain`: what is on hostpart (each image judged as GRUB and
//! the initramfs judge it, with its version), what the boot state says, what is running, what
//! GRUB will boot next and why, and (explain) the steps the initramfs will take. Everything is
//! decided by the core GRUB and the initramfs call; this module observes and prints.

use std::process::ExitCode;

use anyhow::Result;
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline::{self, parse_tries};
use hnroot_core::decide::{decide, Config, Decision, Reason};
use hnroot_core::floor::FloorSeen;
use hnroot_core::layout::REVERT_MARKER;
use hnroot_core::name::ImageName;
use hnroot_core::plan::{plan, Booted, ChangePlan, ChangeStep, PlanError};
use hnroot_core::verdict::Verdict;
use hnroot_linux::hostpart::HostpartView;
use hnroot_linux::image::Judged;
use serde_json::{json, Value};

use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot explain` and `hnroot status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    loc: Location,
    /// Print JSON (stable field names: image, reason, fallbacks, plan, images, ...).
    #[arg(long)]
    json: bool,
    /// Tries a new image gets, as GRUB's `hnroot select --tries` (1 to 100) [default: the
    /// ESP's loader's, from its counting settings, else 3].
    #[arg(long, value_parser = tries_arg)]
    tries: Option<u8>,
    /// Directory of trusted minisign public keys (*.pub), against which each image's seal is
    /// checked.
    #[arg(long, value_name = "DIR", default_value = crate::cmd::stage::KEYS_DIR)]
    keys: std::path::PathBuf,
}

/// `--tries` parsed by the core's one parser of it (GRUB's and `hnroot.tries=`'s).
pub fn tries_arg(text: &str) -> Result<u8, String> {
    parse_tries(text).map_err(|e| e.to_string())
}

/// Everything one report holds.
struct Report {
    view: HostpartView,
    state: StateSeen,
    state_source: String,
    decision: Decision,
    /// The initramfs's plan for the boot GRUB would make, on the same directory.
    plan: Option<Result<ChangePlan, PlanError>>,
    /// The identity steps of the next boot (explain only), or why there are none.
    identity: Option<Result<crate::cmd::host::IdentityView>>,
    running: Option<Booted>,
    /// How the running root is verified (when this runs on an hnroot-booted system).
    verity: Option<hnroot_core::seal::RootVerity>,
    /// What `hnroot reboot` would start by kexec (explain only), or why it would reboot
    /// through the firmware.
    kexec: Option<Result<crate::cmd::reboot::KexecPlan, crate::cmd::reboot::NoKexec>>,
    /// Each bootable image's seal, as `hnroot_linux::seal::describe` says it.
    seals: Vec<(ImageName, String)>,
    /// The version floor.
    floor: FloorSeen,
    /// Tries, K and the waits, as the ESP's loader counts.
    counting: Config,
    /// The counting was read from the ESP's loader (else: the defaults).
    counting_read: bool,
    /// GRUB's menu countdown in seconds, as the ESP's loader carries it (`None`: not read).
    menu_timeout: Option<u16>,
    /// hostpart's space (full or not), or why it is unknown.
    space: Result<hnroot_core::space::Space, String>,
    /// Why the boot-state file cannot be read, when it cannot (a damaged FAT, a failing
    /// disk): GRUB cannot read it either, so it cannot write it, and boots are not counted.
    unreadable: Option<String>,
}

/// How the running root is verified: the kernel's `hnroot.roothash=` (`root_hash_given`) and
/// what device-mapper says of `hnroot-init`'s dm-verity device, judged by the core.
pub(crate) fn running_verity(root_hash_given: bool) -> hnroot_core::seal::RootVerity {
    use hnroot_linux::dm;
    let targets = dm::status(std::path::Path::new("/dev"), dm::ROOT_NAME)
        .ok()
        .flatten()
        .unwrap_or_default();
    let status = targets
        .iter()
        .find(|t| t.target == "verity")
        .map(|t| t.status.as_str());
    hnroot_core::seal::RootVerity::judge(root_hash_given, status)
}

/// The seal of each bootable image on hostpart, judged with the trusted keys of `keys_dir`.
fn seals_of(
    hostpart: &hnroot_linux::hostpart::Hostpart,
    view: &HostpartView,
    keys_dir: &std::path::Path,
) -> Vec<(ImageName, String)> {
    use hnroot_linux::seal as facts;
    let keys: Vec<_> = facts::load_keys(keys_dir)
        .map(|(k, _)| k.into_iter().map(|(_, k)| k).collect())
        .unwrap_or_default();
    ImageName::ALL
        .into_iter()
        .filter(|n| {
            matches!(
                view.image(*n).map(|j| &j.verdict),
                Some(Verdict::Bootable(_))
            )
        })
        .map(|name| {
            let seen = hostpart
                .open_image(name)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    let outcome = facts::probe(&f).map_err(|e| e.to_string())?;
                    facts::judge_file(&f, &outcome, &keys).map_err(|e| e.to_string())
                });
            let described = match seen {
                Ok(s) => facts::describe(&s),
                Err(e) => format!("seal unreadable ({e})"),
            };
            (name, described)
        })
        .collect()
}

fn image_json(j: &Judged) -> Value {
    let mut v = match &j.verdict {
        Verdict::Absent => json!({ "state": "absent" }),
        Verdict::Refused(r) => {
            json!({ "state": "not-bootable", "code": r.code(), "why": r.to_string() })
        }
        Verdict::Bootable(b) => json!({
            "state": "bootable", "code": "bootable", "size": b.length, "type": b.fs_type.as_str(),
            "uuid": b.uuid.to_string(), "label": j.label,
        }),
    };
    if let Some(o) = &j.os_release {
        v["image_id"] = json!(o.image_id);
        v["image_version"] = json!(o.image_version);
        v["version"] = json!(o.version());
    }
    v
}

fn state_json(state: &StateSeen) -> Value {
    match state {
        StateSeen::Absent => json!({ "status": "absent" }),
        StateSeen::Corrupt => json!({ "status": "corrupt" }),
        StateSeen::Valid(BootState::Committed { good, unhealthy }) => json!({
            "status": "valid", "state": "committed", "good": good.to_string(),
            "unhealthy_boots": unhealthy.boots(),
        }),
        StateSeen::Valid(BootState::Trial(t)) => json!({
            "status": "valid", "state": "trial", "image": t.image.to_string(),
            "tries_left": t.tries.left(), "tries_total": t.tries.total(),
            "good": t.good.map(|g| g.to_string()),
            "unhealthy_boots": t.tries.others().boots(),
        }),
    }
}

fn step_json(step: &ChangeStep) -> Value {
    let mut v = json!({ "step": step.code(), "text": step.to_string() });
    match step {
        ChangeStep::Rename { from, to, .. } => {
            v["from"] = json!(from.file_name());
            v["to"] = json!(to.file_name());
        }
        ChangeStep::WriteBootState(s) => v["state"] = state_json(&StateSeen::Valid(*s)),
        ChangeStep::Mount { image, uuid } => {
            v["image"] = json!(image.file_name());
            v["uuid"] = json!(uuid.to_string());
        }
        _ => {}
    }
    v
}

impl Report {
    fn gather(args: &StatusArgs, with_plan: bool) -> Result<Report> {
        let cmdline_text = locate::running_cmdline();
        let params = cmdline::parse(&cmdline_text);
        let hostpart = locate::open_hostpart(&args.loc)?;
        // The images as the loader judges them (its seal policy, when it has one).
        let view = {
            let state_file = locate::locate_state(&args.loc, &params).ok();
            locate::observe_as_loader(&hostpart, state_file.as_ref())?
        };
        let (view, loader) = view;
        let (state, state_source) = locate::read_state(&args.loc, &params);
        // Counted as the loader counts (its tries, K and waits).
        let config = Config {
            tries: args.tries.unwrap_or(loader.counting.tries),
            ..loader.counting
        };
        let decision = decide(&view.observation(state), &config);
        let plan = with_plan.then(|| {
            // The initramfs sees the state GRUB just wrote, on the same directory.
            let after = match decision.boot().and_then(|b| b.write) {
                Some(s) => StateSeen::Valid(s),
                None => state,
            };
            let booted = decision.boot().map(|b| Booted {
                name: b.image,
                uuid: b.uuid,
            });
            plan(&view.observation(after), booted)
        });
        let identity = with_plan
            .then(|| crate::cmd::host::identity_view(&args.loc, &hostpart).map(|(_, v)| v));
        let kexec = with_plan.then(|| {
            let state_file = locate::locate_state(&args.loc, &params).ok();
            crate::cmd::reboot::kexec_plan(
                hnroot_core::reboot::Method::Auto,
                &decision,
                &view,
                &params,
                state_file.as_ref(),
                config.tries,
            )
        });
        let seals = seals_of(&hostpart, &view, &args.keys);
        let floor = hnroot_linux::seal::read_floor(&hostpart);
        let space = hostpart.space().map_err(|e| e.to_string());
        let unreadable = locate::locate_state(&args.loc, &params)
            .ok()
            .and_then(|file| match file.read() {
                (_, Some(e @ hnroot_linux::bootstate_file::BootStateFileError::Io { .. })) => {
                    Some(e.to_string())
                }
                _ => None,
            });
        let verity = params
            .booted
            .map(|_| running_verity(params.root_hash.is_some()));
        Ok(Report {
            unreadable,
            space,
            verity,
            kexec,
            seals,
            floor,
            view,
            state,
            state_source,
            decision,
            plan,
            identity,
            running: params.booted,
            counting: config,
            counting_read: loader.read,
            menu_timeout: loader.menu_timeout,
        })
    }

    fn json(&self) -> Value {
        let mut images = serde_json::Map::new();
        for name in ImageName::ALL {
            if let Some(j) = self.view.image(name) {
                let mut v = image_json(j);
                if let Some((_, seal)) = self.seals.iter().find(|(n, _)| *n == name) {
                    v["seal"] = json!(seal);
                }
                images.insert(name.file_name().to_owned(), v);
            }
        }
        let boot = self.decision.boot();
        let (attempt, of) = match boot.map(|b| b.reason) {
            Some(Reason::Update { attempt, of } | Reason::Trial { attempt, of }) => {
                (Some(attempt), Some(of))
            }
            _ => (None, None),
        };
        let notes = self.decision.notes();
        let mut v = json!({
            "images": images,
            "revert_requested": self.view.revert_requested,
            "partials": self.view.partials.iter().map(|p| json!({ "name": p.name, "size": p.size })).collect::<Vec<_>>(),
            "boot_state": state_json(&self.state),
            "counting": { "tries": self.counting.tries, "boot_limit": self.counting.boot_limit,
                "wait_first": self.counting.wait_first, "wait_max": self.counting.wait_max },
            "counting_source": if self.counting_read { "loader" } else { "defaults" },
            "menu_timeout": self.menu_timeout,
            "boot_state_source": self.state_source,
            "image": boot.map(|b| b.image.file_name()),
            "uuid": boot.map(|b| b.uuid.to_string()),
            "reason": self.decision.reason_code().code(),
            "reason_text": boot.map(|b| b.reason.to_string()),
            "attempt": attempt,
            "of": of,
            "fallbacks": boot.map(|b| b.fallbacks.iter().map(|(n, _)| n.file_name()).collect::<Vec<_>>()).unwrap_or_default(),
            "write": boot.and_then(|b| b.write).map(|s| state_json(&StateSeen::Valid(s))),
            "notes": notes.sentences().collect::<Vec<_>>(),
            "note_codes": notes.codes().collect::<Vec<_>>(),
            "record": self.decision.record().to_string(),
            "message": self.decision.to_string(),
            "floor": match &self.floor {
                FloorSeen::None => Value::Null,
                FloorSeen::Set(v) => json!(v.as_str()),
                FloorSeen::Unreadable => json!("unreadable"),
            },
        });
        v["counted"] = json!(self.unreadable.is_none());
        v["boot_state_unreadable"] = json!(self.unreadable);
        v["space"] = match &self.space {
            Ok(s) => json!({ "state": s.code(), "free_bytes": s.free(), "total_bytes": s.total() }),
            Err(e) => json!({ "state": "unknown", "error": e }),
        };
        if let Some(p) = &self.plan {
            v["plan"] = match p {
                Ok(p) => json!({
                    "kind": p.kind.code(),
                    "steps": p.steps.iter().map(step_json).collect::<Vec<_>>(),
                    "notes": p.notes.sentences().collect::<Vec<_>>(),
                    "note_codes": p.notes.codes().collect::<Vec<_>>(),
                }),
                Err(e) => json!({ "error": e.to_string() }),
            };
        }
        match &self.identity {
            Some(Ok(i)) => v["identity"] = i.json.clone(),
            Some(Err(e)) => v["identity"] = json!({ "error": format!("{e:#}") }),
            None => {}
        }
        match &self.kexec {
            Some(Ok(k)) => {
                v["kexec"] = json!({
                    "image": k.boot.booted.name.file_name(),
                    "uuid": k.boot.booted.uuid.to_string(),
                    "reason": k.boot.reason.code().code(),
                    "cmdline": k.cmdline,
                    "args": k.args_record,
                    "defaults": k.defaults_from,
                    "write": k.boot.write.map(|s| state_json(&StateSeen::Valid(s))),
                })
            }
            Some(Err((why, detail))) => {
                v["kexec"] =
                    json!({ "firmware": why.code(), "why": why.sentence(), "detail": detail })
            }
            None => {}
        }
        if let Some(r) = &self.running {
            v["running"] = json!({ "image": r.name.file_name(), "uuid": r.uuid.to_string(),
                "now_at": self.where_running().map(ImageName::file_name),
                "verity": self.verity.map(|v| v.code()) });
        }
        v
    }

    /// Which file now holds the running image, by UUID.
    fn where_running(&self) -> Option<ImageName> {
        let r = self.running?;
        self.view
            .observation(self.state)
            .find(r.uuid, &ImageName::ALL)
    }

    fn text(&self, hostpart: &std::path::Path) {
        match &self.space {
            Ok(space) => say!("hostpart {}: {space}", hostpart.display()),
            Err(e) => say!("hostpart {}: free space unknown ({e})", hostpart.display()),
        }
        for name in ImageName::ALL {
            let Some(j) = self.view.image(name) else {
                continue;
            };
            let line = match &j.verdict {
                Verdict::Absent => continue,
                Verdict::Refused(r) => format!("UNUSABLE ({}): {r}", r.code()),
                Verdict::Bootable(b) => {
                    let version = j
                        .os_release
                        .as_ref()
                        .and_then(|o| o.version())
                        .map(|v| format!("  version {v}"))
                        .unwrap_or_default();
                    let seal = self
                        .seals
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, s)| format!("  {s}"))
                        .unwrap_or_default();
                    format!(
                        "{:<6} UUID={}  {} MiB{version}{seal}",
                        b.fs_type.as_str(),
                        b.uuid,
                        b.length >> 20
                    )
                }
            };
            say!("  {:<22} {line}", name.file_name());
        }
        if self.view.revert_requested {
            let what = match self.decision.boot().map(|b| b.reason) {
                Some(Reason::ManualRevert) => "present: the next boot reverts to hn-root-old.img",
                _ => "present, but the next boot cannot revert (no bootable hn-root-old.img): it only removes the marker",
            };
            say!("  {REVERT_MARKER:<22} {what}");
        }
        for p in &self.view.partials {
            say!(
                "  {:<22} partial copy of an interrupted `hnroot stage` ({} MiB): the same stage resumes it, `hnroot discard-partials` removes it",
                p.name,
                p.size >> 20
            );
        }
        let state = match &self.state {
            StateSeen::Valid(s) => s.to_string(),
            StateSeen::Absent => "none recorded".to_owned(),
            StateSeen::Corrupt => "CORRUPT (or unreadable): hn-root.img goes on trial".to_owned(),
        };
        say!("boot state: {state}  [{}]", self.state_source);
        say!(
            "counting: {} ({})",
            hnroot_core::counting::Summary(&self.counting),
            if self.counting_read {
                "as the ESP's loader counts"
            } else {
                "the defaults: no loader was read on the ESP"
            }
        );
        if let Some(seconds) = self.menu_timeout {
            say!(
                "menu: {} (as the ESP's loader shows it)",
                hnroot_core::menu::Summary(seconds)
            );
        }
        match &self.floor {
            FloorSeen::None => {}
            FloorSeen::Set(v) => say!("version floor: {v} (stage refuses older images)"),
            FloorSeen::Unreadable => say!(
                "version floor: UNREADABLE ({}): every stage is refused until it is fixed",
                hnroot_core::floor::FLOOR_PATH
            ),
        }
        if let Some(r) = &self.running {
            let now = self.where_running().map_or_else(
                || "no longer on hostpart".to_owned(),
                |n| format!("now {n}"),
            );
            say!("running: booted as {} (UUID {}), {now}", r.name, r.uuid);
            if let Some(v) = self.verity {
                say!("  root: {v}");
            }
        }
        say!("next boot: {}", self.decision);
        if let Some(w) = self.decision.boot().and_then(|b| b.write) {
            match &self.unreadable {
                None => say!("  GRUB records before booting: {w}"),
                Some(why) => say!(
                    "  NOT COUNTED: GRUB cannot record this boot ({why}): it boots the image \
                     without counting (and says so), so a failing image is not rolled back; \
                     repair the ESP's filesystem (fsck) or its disk, then `hnroot bootstate \
                     init --force` makes a new boot-state file"
                ),
            }
        }
        match &self.plan {
            Some(Ok(p)) => {
                say!(
                    "initramfs plan ({}, {} steps):",
                    p.kind.code(),
                    p.steps.len()
                );
                for (i, s) in p.steps.iter().enumerate() {
                    say!("  {}. {s}", i + 1);
                }
                for note in p.notes.sentences() {
                    say!("  note: {note}");
                }
            }
            Some(Err(e)) => say!("initramfs plan: none: {e}"),
            None => {}
        }
        match &self.identity {
            Some(Ok(i)) => {
                say!(
                    "identity (this host's state, projected at every boot; {} steps):",
                    i.steps.len()
                );
                for (n, s) in i.steps.iter().enumerate() {
                    say!("  {}. {s}", n + 1);
                }
                for r in &i.refused {
                    say!("  not projected: {r}");
                }
                for note in &i.notes {
                    say!("  note: {note}");
                }
            }
            Some(Err(e)) => say!("identity: not planned: {e:#}"),
            None => {}
        }
        match &self.kexec {
            Some(Ok(k)) => {
                say!(
                    "hnroot reboot: kexec into {} ({}), the firmware and GRUB skipped",
                    k.boot.booted.name,
                    k.boot.reason
                );
                say!("  command line: {}", k.cmdline);
                say!("  {}; defaults: {}", k.args_record, k.defaults_from);
                if let Some(w) = k.boot.write {
                    say!("  recorded before the jump: {w}");
                }
            }
            Some(Err((why, detail))) => say!(
                "hnroot reboot: through the firmware ({}): {}{}",
                why.code(),
                why.sentence(),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
            None => {}
        }
    }
}

fn run(args: &StatusArgs, with_plan: bool) -> ExitCode {
    match Report::gather(args, with_plan) {
        Ok(report) => {
            if args.json {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&report.json()).unwrap_or_default()
                );
            } else {
                report.text(&args.loc.hostpart);
            }
            if report.decision.boot().is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `hnroot explain`: the decision and the initramfs's plan.
pub fn explain(args: &StatusArgs) -> ExitCode {
    run(args, true)
}

/// `hnroot status`: what is there, what is running, what the next boot does.
pub fn status(args: &StatusArgs) -> ExitCode {
    run(args, false)
}
