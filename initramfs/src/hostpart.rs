//! Finding and mounting hostpart in early boot: the spec GRUB put on the command line
//! (`hnroot.hostpart=PARTUUID=...`), waiting for the device within `hnroot.timeout=`; if GRUB's
//! PARTUUID never appears, `LABEL=hostpart` chosen by the core's rule with that PARTUUID as the
//! pin and the ESP's disk as the boot disk, as GRUB chose it. The filesystem must be one the
//! core accepts for hostpart (`layout::hostpart_fs_ok`).

use std::time::Duration;

use hnroot_core::cmdline::{BootParams, DeviceSpec};
use hnroot_core::layout;
use hnroot_linux::blockdev::{self, FindError, Found, Hints};
use hnroot_linux::esp::partuuid_of;
use hnroot_linux::hostpart::Hostpart;
use hnroot_linux::mounts;

use crate::boot::{BootError, Env};
use crate::drivers::Drivers;
use crate::{error, info, warn};

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

/// Find hostpart: the spec on the command line, then, if GRUB's `PARTUUID=` is not there,
/// `LABEL=hostpart` with that PARTUUID as the pin and the ESP's disk as the boot disk.
fn find(env: &Env, params: &BootParams<'_>) -> Result<Found, FindError> {
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
    let found = match blockdev::find_waiting(&env.roots, &spec, &hints, timeout, env.poll) {
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
            let found = blockdev::find_in(&env.roots, &label, &hints)?;
            warn!(
                "hostpart: using {} found by label, not by the PARTUUID GRUB passed",
                describe_found(&found)
            );
            found
        }
        Err(e) => {
            if matches!(e, FindError::NotFound { .. }) {
                error!("hostpart: gave up after {} s", params.timeout());
            }
            return Err(e);
        }
    };
    if let Some(by) = found.chosen_by {
        info!("hostpart: chosen among several: {by:?}");
    }
    Ok(found)
}

/// Find hostpart, mount it read-write at `env.hostpart_mnt` and hold its top directory.
pub fn mount(
    env: &Env,
    drivers: &mut Drivers,
    params: &BootParams<'_>,
) -> Result<Hostpart, BootError> {
    let found = find(env, params).map_err(BootError::Find)?;
    let fs = found.fs.as_ref().map(|f| f.fs_type);
    let Some(fs) = fs.filter(|&t| layout::hostpart_fs_ok(t)) else {
        return Err(BootError::HostpartFs {
            device: found.node.clone(),
            found: fs,
        });
    };
    drivers.for_fs(fs);
    mounts::mkdir_p(&env.hostpart_mnt).map_err(BootError::Mount)?;
    mounts::mount(
        &found.node,
        &env.hostpart_mnt,
        Some(fs.as_str()),
        libc::MS_NOSUID | libc::MS_NODEV,
        params.hostpart_options,
    )
    .map_err(BootError::Mount)?;
    info!(
        "mounted hostpart {} rw at {}{}",
        describe_found(&found),
        env.hostpart_mnt.display(),
        params
            .hostpart_options
            .map(|o| format!(" with {o}"))
            .unwrap_or_default()
    );
    Ok(Hostpart::open(&env.hostpart_mnt)
        .map_err(BootError::Hostpart)?
        .with_inspect(env.inspect()))
}

/// Say on the console how much room hostpart has, loudly when it is full (the core's
/// judgement, as `hnroot status` reports it): the boot goes on either way, what cannot be
/// written is said where it fails.
pub fn say_space(hostpart: &Hostpart) {
    match hostpart.space() {
        Ok(space) if space.is_full() => warn!("hostpart is {space}"),
        Ok(space) => info!("hostpart has {space}"),
        Err(e) => warn!("hostpart's free space is unknown: {e}"),
    }
}
