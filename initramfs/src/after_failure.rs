//! What `hnroot-init` does when the boot sequence fails: record the failed image in the boot
//! state and reboot when the core predicts GRUB will then boot a different image
//! (`after_failure`); otherwise stop on purpose, with the reason on the console, and never spin:
//! the emergency shell (if the initramfs has one) runs once, and when it exits, or after a
//! bounded wait without one, the machine reboots and hnroot decides again.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hnroot_core::decide::Config;
use hnroot_core::history;
use hnroot_core::name::ImageName;
use hnroot_core::observe::Observation;
use hnroot_core::plan::{after_failure, AfterFailure};
use hnroot_linux::esp::{EspError, StateFile};
use hnroot_linux::esp_loader::LoaderSettings;
use hnroot_linux::history_file;
use hnroot_linux::hostpart::Hostpart;

use crate::boot::{FailedBoot, Failure};
use crate::{error, info, warn};

/// The emergency shell, if the initramfs carries one (busybox).
pub const SHELL: &str = "/bin/sh";

/// How long a stop without a shell waits before it reboots (`hnroot.stop=` does not exist:
/// a server that stops with nobody at its console is better rebooted, to decide again).
pub const STOP_WAIT: Duration = Duration::from_secs(600);

/// How often a waiting stop says again why it stopped.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// Handle a failure of the boot sequence as PID 1. Never returns.
pub fn handle(failure: &Failure) -> ! {
    let message = failure.message();
    error!("FATAL: {message}");
    reboot_into_another_image(failure);
    stop(&message)
}

/// If the core predicts that recording the failure makes GRUB boot a different image, record it
/// and reboot (does not return). Otherwise say why not and return.
pub fn reboot_into_another_image(failure: &Failure) {
    let Some(ctx) = &failure.failed_boot else {
        error!("after failure: hostpart or the booted image is unknown: nothing to fall back to");
        return;
    };
    let (obs, config) = as_the_loader(ctx);
    match after_failure(&obs, ctx.failed, &config) {
        AfterFailure::Reboot {
            write,
            next,
            next_uuid,
        } => match ctx
            .esp
            .as_ref()
            .ok_or(EspError::Unavailable)
            .and_then(|file| file.write(&write))
        {
            Ok(()) => {
                record_failure(ctx, next);
                info!(
                    "after failure: recorded image {} as failed; rebooting so GRUB boots {next} (UUID {next_uuid})",
                    ctx.failed
                );
                reboot();
            }
            Err(e) => error!(
                "after failure: cannot record the failure ({e}): rebooting would boot the same image again"
            ),
        },
        AfterFailure::Stop => error!(
            "after failure: no other image would boot without retrying one that already failed"
        ),
    }
}

/// The failed boot's observation and settings as the loader on the ESP will judge them at the
/// next boot: an image its seal policy refuses (a broken seal, an unsealed image where seals
/// are required) is not bootable to the prediction, since GRUB will not boot it, and its
/// counting settings (K and the waits; the tries as GRUB passed them) count. Reading the
/// loader and judging seals costs time, so it is done here, after a failure, never on the way
/// of a good boot. Without the ESP's loader: the observation and settings as they were.
pub fn as_the_loader(ctx: &FailedBoot) -> (Observation, Config) {
    let mut obs = ctx.obs;
    let Some(root) = ctx.esp.as_ref().and_then(StateFile::esp_root) else {
        return (obs, ctx.config);
    };
    let (settings, notes) = LoaderSettings::read(&root);
    for note in notes {
        warn!("after failure: {note}");
    }
    let config = Config {
        tries: ctx.config.tries,
        ..settings.counting
    };
    let Some(policy) = settings.seal.filter(|p| p.require || !p.keys.is_empty()) else {
        return (obs, config);
    };
    let view = match Hostpart::open(&ctx.hostpart).and_then(|h| h.observe_sealed(&policy)) {
        Ok(view) => view,
        Err(e) => {
            warn!("after failure: cannot judge the images under the loader's seal policy ({e}): predicting without it");
            return (obs, config);
        }
    };
    for name in ImageName::ALL {
        let Some(judged) = view.image(name) else {
            continue;
        };
        let seen = judged.verdict.seen();
        if obs.bootable(name).is_some() && seen.uuid().is_none() {
            info!(
                "after failure: {} is not bootable to the loader ({}): GRUB will not boot it",
                name.file_name(),
                judged.verdict
            );
            obs.set(name, seen);
        }
    }
    (obs, config)
}

/// Append the failed boot to the switch history (never fatal): the image GRUB booted, where
/// the failed image lies now (the plan may have renamed it before it failed), its UUID.
fn record_failure(ctx: &crate::boot::FailedBoot, next: ImageName) {
    let Ok(hostpart) = hnroot_linux::hostpart::Hostpart::open(&ctx.hostpart) else {
        return;
    };
    let record = history::Record::failed(
        history_file::now(),
        ctx.reason,
        ctx.booted,
        ctx.failed,
        &ctx.obs,
    );
    match history_file::append(&hostpart, record) {
        Ok(r) => info!("history: {r} (rebooting into {next})"),
        Err(e) => error!("history: cannot record the failed boot: {e}"),
    }
}

/// Sync and reboot; if the reboot itself fails, wait forever (there is nothing else to do).
pub fn reboot() -> ! {
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: reboot(2) with a valid command; only returns on failure.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    error!("reboot failed: {}", std::io::Error::last_os_error());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Stop on purpose, saying `why`: the emergency shell once if there is one, else a wait of
/// [`STOP_WAIT`] that repeats the reason every minute; then reboot, so hnroot decides again
/// (a device that appeared late, a disk that was fixed). Bounded: never a restart loop.
pub fn stop(why: &str) -> ! {
    if Path::new(SHELL).exists() {
        error!("emergency shell on the console: fix hostpart, then leave the shell; the machine then reboots and hnroot decides again");
        match Command::new(SHELL).status() {
            Ok(status) => info!("emergency shell exited ({status}): rebooting"),
            Err(e) => error!("cannot start {SHELL}: {e}"),
        }
        reboot();
    }
    let started = Instant::now();
    while started.elapsed() < STOP_WAIT {
        error!(
            "stopped: {why}; no emergency shell in this initramfs; rebooting in {} s to decide again (power-cycle after fixing hostpart)",
            STOP_WAIT.saturating_sub(started.elapsed()).as_secs()
        );
        std::thread::sleep(REMIND_EVERY.min(STOP_WAIT.saturating_sub(started.elapsed())));
    }
    reboot()
}
