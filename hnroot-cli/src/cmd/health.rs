//! `hnroot health-failed`: a health check of the running system failed (systemd's
//! `boot-complete.target` was not reached; `hnroot-mark-good.service` runs this instead of
//! `mark-good`). The core says what to do (`commands::health_failed`): on a trial, reboot so
//! that GRUB counts the try and rolls back once the tries are used up; otherwise only report,
//! never reboot (a committed image would loop). Either way the failure goes into the history and
//! the command exits 1, so the unit shows as failed.

use std::process::{Command, ExitCode};

use anyhow::Result;
use hnroot_core::cmdline;
use hnroot_core::commands::{self, HealthAction};
use hnroot_core::history::Operator;
use hnroot_core::name::ImageName;
use hnroot_core::reboot::Method;

use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot health-failed`.
#[derive(clap::Args, Debug)]
pub struct HealthFailedArgs {
    #[command(flatten)]
    loc: Location,
    /// Say what would be done; do not reboot.
    #[arg(long)]
    dry_run: bool,
    /// How a trial is rebooted: `firmware` (the default: `systemctl reboot`, GRUB counts the
    /// try), `kexec` or `auto` (as `hnroot reboot --kexec|--auto`: the same decision and try
    /// counted, written before the jump; any failure before it reboots through the firmware).
    /// A unit drop-in sets it with `Environment=HNROOT_HEALTH_REBOOT=auto`.
    #[arg(
        long,
        value_enum,
        env = "HNROOT_HEALTH_REBOOT",
        default_value = "firmware"
    )]
    reboot: RebootMethod,
}

/// `--reboot` of `hnroot health-failed`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootMethod {
    /// Through the firmware and GRUB.
    Firmware,
    /// By kexec, else through the firmware.
    Kexec,
    /// By kexec when the kernel can, else through the firmware.
    Auto,
}

fn run(args: &HealthFailedArgs) -> Result<HealthAction> {
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let hostpart = locate::open_hostpart(&args.loc)?;
    let view = hostpart.observe()?;
    let (state, _) = locate::read_state(&args.loc, &params);
    let obs = view.observation(state);
    let action = commands::health_failed(&obs, params.booted);
    let running = params
        .booted
        .map(|b| b.uuid)
        .or_else(|| obs.bootable(ImageName::Current));
    crate::cmd::history::record(
        &hostpart,
        Operator::HealthFailed,
        Some(params.booted.map_or(ImageName::Current, |b| b.name)),
        running,
        obs.good(),
    );
    match action {
        HealthAction::Reboot { image, tries_left } => warn!(
            "hnroot: a health check failed on the trial of {image} ({tries_left} tries left): \
             not marking it good; rebooting{} so that GRUB {}",
            if args.dry_run {
                " (not: --dry-run)"
            } else {
                ""
            },
            if tries_left > 0 {
                "tries it again"
            } else {
                "rolls back to the good image"
            }
        ),
        HealthAction::Stay => warn!(
            "hnroot: a health check failed, but this boot is not a trial ({}): not marking \
             anything good and not rebooting; see `systemctl --failed`",
            match obs.state {
                hnroot_core::bootstate::StateSeen::Valid(s) => s.to_string(),
                hnroot_core::bootstate::StateSeen::Absent => "no boot state".to_owned(),
                hnroot_core::bootstate::StateSeen::Corrupt => "a corrupt boot state".to_owned(),
            }
        ),
    }
    Ok(action)
}

/// `hnroot health-failed`.
pub fn health_failed(args: &HealthFailedArgs) -> ExitCode {
    match run(args) {
        Ok(HealthAction::Reboot { .. })
            if !args.dry_run && args.reboot != RebootMethod::Firmware =>
        {
            let method = match args.reboot {
                RebootMethod::Kexec => Method::Kexec,
                _ => Method::Auto,
            };
            // A kexec that went ahead exits 0 from `reboot_as`; this command still fails.
            let _ = crate::cmd::reboot::reboot_as(&args.loc, method, None, false);
            ExitCode::from(1)
        }
        Ok(HealthAction::Reboot { .. }) if !args.dry_run => {
            match Command::new("systemctl").arg("reboot").status() {
                Ok(s) if s.success() => say!("hnroot: reboot requested"),
                Ok(s) => warn!("hnroot: systemctl reboot failed ({s}): reboot by hand"),
                Err(e) => warn!("hnroot: cannot start systemctl reboot ({e}): reboot by hand"),
            }
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(2)
        }
    }
}
