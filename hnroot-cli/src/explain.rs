//! `hnroot explain` and `hnroot status`: what is on hostpart, what the boot state says, what
//! GRUB will boot next and why, and (explain) the steps the initramfs will take. Everything is
//! decided by the same core GRUB and the initramfs call; this module only observes and prints.

use std::fmt::Write as _;
use std::process::ExitCode;

use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline;
use hnroot_core::decide::{decide, Config, Decision, Reason};
use hnroot_core::name::{ImageName, REVERT_MARKER};
use hnroot_core::plan::{plan, Booted, Plan, PlanError, Step};
use hnroot_linux::hostpart::{HostpartSeen, ImageFile};
use serde_json::{json, Value};

use crate::machine::{self, Location};

/// Options of `hnroot explain` and `hnroot status`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    loc: Location,
    /// Print JSON (stable field names: image, reason, fallbacks, plan, ...).
    #[arg(long)]
    json: bool,
    /// Tries a new image gets, as GRUB's `hnroot select --tries` (default 3).
    #[arg(long, default_value_t = Config::default().tries)]
    tries: u8,
}

/// Everything one explanation holds.
struct Report {
    seen: HostpartSeen,
    state: StateSeen,
    state_source: String,
    decision: Decision,
    /// The initramfs's plan for the boot GRUB would make, on the same directory.
    plan: Option<Result<Plan, PlanError>>,
    running: Option<Booted>,
}

fn image_json(file: &ImageFile) -> Value {
    match file {
        ImageFile::Absent => json!({ "state": "absent" }),
        ImageFile::Unreadable { size, why } => {
            json!({ "state": "unreadable", "size": size, "why": why })
        }
        ImageFile::Readable {
            size,
            fs_type,
            uuid,
            label,
        } => json!({
            "state": "readable", "size": size, "type": fs_type.as_str(), "uuid": uuid.to_string(), "label": label,
        }),
    }
}

fn state_json(state: &StateSeen) -> Value {
    match state {
        StateSeen::Absent => json!({ "status": "absent" }),
        StateSeen::Corrupt => json!({ "status": "corrupt" }),
        StateSeen::Valid(BootState::Committed { good }) => {
            json!({ "status": "valid", "state": "committed", "good": good.to_string() })
        }
        StateSeen::Valid(BootState::Trial(t)) => json!({
            "status": "valid", "state": "trial", "image": t.image.to_string(),
            "tries_left": t.tries.left(), "tries_total": t.tries.total(),
            "good": t.good.map(|g| g.to_string()),
        }),
    }
}

fn step_json(step: &Step) -> Value {
    let mut v = json!({ "step": step.code(), "text": step.to_string() });
    match step {
        Step::Rename { from, to, .. } => {
            v["from"] = json!(from.file_name());
            v["to"] = json!(to.file_name());
        }
        Step::WriteBootState(s) => v["state"] = state_json(&StateSeen::Valid(*s)),
        Step::Mount { image, uuid } => {
            v["image"] = json!(image.file_name());
            v["uuid"] = json!(uuid.to_string());
        }
        _ => {}
    }
    v
}

fn notes_list<T: std::fmt::Display>(notes: T) -> Vec<String> {
    let text = notes.to_string();
    if text.is_empty() {
        Vec::new()
    } else {
        text.split("; ").map(str::to_owned).collect()
    }
}

impl Report {
    fn gather(args: &ExplainArgs, with_plan: bool) -> anyhow::Result<Report> {
        let cmdline_text = machine::running_cmdline();
        let params = cmdline::parse(&cmdline_text);
        let (_, seen) = machine::observe_hostpart(&args.loc)?;
        let (state, state_source) = machine::read_state(&args.loc, &params);
        let config = Config { tries: args.tries };
        let decision = decide(&seen.observation(state), &config);
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
            plan(&seen.observation(after), booted)
        });
        Ok(Report {
            seen,
            state,
            state_source,
            decision,
            plan,
            running: params.booted,
        })
    }

    fn json(&self) -> Value {
        let mut images = serde_json::Map::new();
        for name in ImageName::ALL {
            images.insert(
                name.file_name().to_owned(),
                image_json(self.seen.image(name)),
            );
        }
        let boot = self.decision.boot();
        let (attempt, of) = match boot.map(|b| b.reason) {
            Some(Reason::Update { attempt, of } | Reason::Trial { attempt, of }) => {
                (Some(attempt), Some(of))
            }
            _ => (None, None),
        };
        let mut v = json!({
            "images": images,
            "revert_requested": self.seen.revert_requested,
            "boot_state": state_json(&self.state),
            "boot_state_source": self.state_source,
            "image": boot.map(|b| b.image.file_name()),
            "uuid": boot.map(|b| b.uuid.to_string()),
            "reason": boot.map_or("nothing-bootable", |b| b.reason.code()),
            "reason_text": boot.map(|b| b.reason.to_string()),
            "attempt": attempt,
            "of": of,
            "fallbacks": boot.map(|b| b.fallbacks.iter().map(|(n, _)| n.file_name()).collect::<Vec<_>>()).unwrap_or_default(),
            "write": boot.and_then(|b| b.write).map(|s| state_json(&StateSeen::Valid(s))),
            "notes": notes_list(self.decision.notes()),
            "message": self.decision.to_string(),
        });
        if let Some(p) = &self.plan {
            v["plan"] = match p {
                Ok(p) => json!({
                    "kind": p.kind.code(),
                    "steps": p.steps.iter().map(step_json).collect::<Vec<_>>(),
                    "notes": notes_list(p.notes),
                }),
                Err(e) => json!({ "error": e.to_string() }),
            };
        }
        if let Some(r) = &self.running {
            v["running"] = json!({ "image": r.name.file_name(), "uuid": r.uuid.to_string(),
                "now_at": self.where_running().map(ImageName::file_name) });
        }
        v
    }

    /// Which file now holds the running image, by UUID.
    fn where_running(&self) -> Option<ImageName> {
        let r = self.running?;
        let obs = self.seen.observation(self.state);
        obs.find(r.uuid, &ImageName::ALL)
    }

    fn text(&self, hostpart: &std::path::Path) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "hostpart {}:", hostpart.display());
        for name in ImageName::ALL {
            let line = match self.seen.image(name) {
                ImageFile::Absent => continue,
                ImageFile::Unreadable { why, .. } => format!("UNUSABLE: {why}"),
                ImageFile::Readable {
                    size,
                    fs_type,
                    uuid,
                    ..
                } => {
                    format!("{:<6} UUID={uuid}  {} MiB", fs_type.as_str(), size >> 20)
                }
            };
            let _ = writeln!(out, "  {:<22} {line}", name.file_name());
        }
        if self.seen.revert_requested {
            let _ = writeln!(out, "  {REVERT_MARKER:<22} present: the next boot reverts");
        }
        let state = match &self.state {
            StateSeen::Valid(s) => s.to_string(),
            StateSeen::Absent => "none recorded".to_owned(),
            StateSeen::Corrupt => "CORRUPT (both copies invalid)".to_owned(),
        };
        let _ = writeln!(out, "boot state: {state}  [{}]", self.state_source);
        if let Some(r) = &self.running {
            let now = self.where_running().map_or_else(
                || "no longer on hostpart".to_owned(),
                |n| format!("now {n}"),
            );
            let _ = writeln!(
                out,
                "running: booted as {} (UUID {}), {now}",
                r.name, r.uuid
            );
        }
        let _ = writeln!(out, "next boot: {}", self.decision);
        if let Some(w) = self.decision.boot().and_then(|b| b.write) {
            let _ = writeln!(out, "  GRUB records before booting: {w}");
        }
        match &self.plan {
            Some(Ok(p)) => {
                let _ = writeln!(
                    out,
                    "initramfs plan ({}, {} steps):",
                    p.kind.code(),
                    p.steps.len()
                );
                for (i, s) in p.steps.iter().enumerate() {
                    let _ = writeln!(out, "  {}. {s}", i + 1);
                }
                if !p.notes.is_empty() {
                    let _ = writeln!(out, "  note: {}", p.notes);
                }
            }
            Some(Err(e)) => {
                let _ = writeln!(out, "initramfs plan: none: {e}");
            }
            None => {}
        }
        out
    }
}

fn run(args: &ExplainArgs, with_plan: bool) -> ExitCode {
    match Report::gather(args, with_plan) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.json()).unwrap_or_default()
                );
            } else {
                print!("{}", report.text(&args.loc.hostpart));
            }
            if report.decision.boot().is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("hnroot: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `hnroot explain`: the decision and the initramfs's plan.
pub fn explain(args: &ExplainArgs) -> ExitCode {
    run(args, true)
}

/// `hnroot status`: what is there, what is running, what the next boot does.
pub fn status(args: &ExplainArgs) -> ExitCode {
    run(args, false)
}
