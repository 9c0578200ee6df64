//! Finding hostpart and the ESP in early boot: the specs GRUB put on the command line
//! (`hnroot.hostpart=PARTUUID=...`, `hnroot.esp=PARTUUID=...`), waiting for the devices to
//! appear within `hnroot.timeout=`; a hostpart found by label among several is chosen by the
//! core's rule with GRUB's PARTUUIDs as the pin and the boot disk, as GRUB chose it.

use std::time::{Duration, Instant};

use hnroot_core::cmdline::{BootParams, DeviceSpec};
use hnroot_core::layout;
use hnroot_core::PartUuid;
use hnroot_linux::blockdev::{self, FindError, Found, Hints, Roots};

use crate::{error, info, warn};

/// Wait for the device `spec` names, at most `timeout`. Ambiguity fails at once: waiting will
/// not make it go away.
fn wait_for(
    roots: &Roots,
    poll: Duration,
    what: &str,
    spec: &DeviceSpec<'_>,
    hints: &Hints,
    timeout: Duration,
) -> Result<(Found, Duration), FindError> {
    let start = Instant::now();
    loop {
        match blockdev::find_in(roots, spec, hints) {
            Ok(found) => return Ok((found, start.elapsed())),
            Err(FindError::NotFound { .. }) if start.elapsed() < timeout => {
                std::thread::sleep(poll);
            }
            Err(e) => {
                if matches!(e, FindError::NotFound { .. }) {
                    error!(
                        "{what}: gave up after {:.1} s",
                        start.elapsed().as_secs_f32()
                    );
                }
                return Err(e);
            }
        }
    }
}

/// `/dev/vda2 (ext4, LABEL=hostpart, PARTUUID=...)`, labels escaped.
pub fn describe_found(found: &Found) -> String {
    let mut extra = Vec::new();
    if let Some(fs) = &found.fs {
        extra.push(fs.fs_type.as_str().to_owned());
        if let Some(label) = &fs.label {
            extra.push(format!("LABEL={label}"));
        }
    }
    if let Some(partuuid) = found.part.as_ref().and_then(|p| p.partuuid) {
        extra.push(format!("PARTUUID={partuuid}"));
    }
    if extra.is_empty() {
        found.node.display().to_string()
    } else {
        format!("{} ({})", found.node.display(), extra.join(", "))
    }
}

fn partuuid_of(spec: Option<DeviceSpec<'_>>) -> Option<PartUuid> {
    match spec {
        Some(DeviceSpec::PartUuid(p)) => Some(p),
        _ => None,
    }
}

/// Find hostpart: the spec on the command line, then, if GRUB's `PARTUUID=` is not there,
/// `LABEL=hostpart` with that PARTUUID as the pin and the ESP's disk as the boot disk.
pub fn find_hostpart(
    roots: &Roots,
    poll: Duration,
    params: &BootParams<'_>,
) -> Result<Found, String> {
    let spec = params.hostpart_spec();
    let timeout = Duration::from_secs(u64::from(params.timeout()));
    let hints = Hints {
        pin: partuuid_of(params.hostpart),
        boot_disk_of: partuuid_of(params.esp),
    };
    info!(
        "hostpart: looking for {} (up to {} s)",
        blockdev::describe(&spec),
        params.timeout()
    );
    let found = match wait_for(roots, poll, "hostpart", &spec, &hints, timeout) {
        Ok((found, took)) => {
            info!(
                "hostpart: found {} after {:.1} s",
                describe_found(&found),
                took.as_secs_f32()
            );
            found
        }
        Err(FindError::NotFound { .. }) if hints.pin.is_some() => {
            let label = DeviceSpec::Label(layout::HOSTPART_LABEL);
            warn!("hostpart: {spec} not found; trying {label}");
            let found =
                blockdev::find_in(roots, &label, &hints).map_err(|e| format!("hostpart: {e}"))?;
            warn!(
                "hostpart: using {} found by label, not by the PARTUUID GRUB passed",
                describe_found(&found)
            );
            found
        }
        Err(e) => return Err(format!("hostpart: {e}")),
    };
    if let Some(by) = found.chosen_by {
        info!("hostpart: chosen among several: {by:?}");
    }
    Ok(found)
}

/// Find the ESP (`hnroot.esp=` or `LABEL=EFI-BOOT`), waiting at most `wait`.
pub fn find_esp(
    roots: &Roots,
    poll: Duration,
    params: &BootParams<'_>,
    wait: Duration,
) -> Result<Found, FindError> {
    let spec = params.esp_spec();
    let hints = Hints {
        pin: partuuid_of(params.esp),
        boot_disk_of: partuuid_of(params.esp),
    };
    wait_for(roots, poll, "ESP", &spec, &hints, wait).map(|(found, _)| found)
}
