//! What PID 1 does when the boot sequence fails: record the failed image in the boot state and
//! reboot, when the core predicts GRUB will then boot a different image; otherwise stop on
//! purpose — an emergency shell if the initramfs has one, else an intentional freeze — and
//! never spin silently or loop.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hnroot_core::plan::{after_failure, Fallback};

use crate::boot::{write_boot_state, Failure};
use crate::{error, info};

/// The emergency shell, if the initramfs carries one (busybox).
pub const SHELL: &str = "/bin/sh";

/// Handle a failure of the boot sequence as PID 1. Never returns.
pub fn handle(failure: &Failure) -> ! {
    error!("FATAL: {}", failure.message);
    reboot_into_another_image(failure);
    stop()
}

/// If the core predicts that recording the failure makes GRUB boot a different image, record it
/// and reboot (does not return). Otherwise say why not and return.
pub fn reboot_into_another_image(failure: &Failure) {
    let Some(ctx) = &failure.fallback else {
        error!("fallback: hostpart or the booted image is unknown: nothing to fall back to");
        return;
    };
    match after_failure(&ctx.obs, ctx.failed, &ctx.config) {
        Fallback::Reboot { write, next, next_uuid } => match write_boot_state(ctx.esp.as_deref(), &write) {
            Ok(()) => {
                info!(
                    "fallback: recorded image {} as failed; rebooting so GRUB boots {next} (UUID {next_uuid})",
                    ctx.failed
                );
                reboot();
            }
            Err(e) => error!("fallback: cannot record the failure ({e}): rebooting would boot the same image again"),
        },
        Fallback::Stop => error!("fallback: no other image would boot"),
    }
}

/// Sync and reboot; if the reboot itself fails, stop.
pub fn reboot() -> ! {
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: reboot(2) with a valid command; only returns on failure.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    error!("reboot failed: {}", std::io::Error::last_os_error());
    stop()
}

/// Stop on purpose: run the emergency shell while there is one, else sleep forever.
pub fn stop() -> ! {
    if Path::new(SHELL).exists() {
        loop {
            error!("emergency shell on the console: fix hostpart, then `reboot -f` (hnroot will decide again)");
            match Command::new(SHELL).status() {
                Ok(status) => info!("emergency shell exited ({status}); starting it again"),
                Err(e) => {
                    error!("cannot start {SHELL}: {e}");
                    break;
                }
            }
        }
    }
    error!("stopped on purpose: no emergency shell in this initramfs; power-cycle the machine after fixing hostpart");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
